//! Decoding pixel data of every common transfer syntax to native samples.
