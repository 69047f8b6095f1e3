//! The pixel pipeline: decode every common transfer syntax, encode to the lossless ones
//! (and baseline JPEG for previews), transcode a stored object for a receiver, render a
//! frame to an 8-bit image. CPU-bound: callers run it off the async runtime.

mod attrs;
pub mod decode;
pub mod encode;
mod jpeg;
pub mod pool;
pub mod render;
mod rle;
pub mod transcode;

pub use pool::PixelPool;
