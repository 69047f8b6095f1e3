//! DICOM upper-layer services of the Renkei node, on dicom-ul (tokio).
//!
//! - [`command`]: DIMSE command sets and status codes, requests and responses (always).
//! - [`scp`]: the association acceptor: policy, negotiation, C-ECHO and C-STORE
//!   (feature `scp`, default).
//! - [`policy`]: which calling AE titles may associate, and the User Identity that signs a
//!   user in under regional sharing (feature `scp`).
//! - [`metrics`]: counters and the store-latency histogram.
#![deny(missing_docs)]

pub mod command;
#[cfg(feature = "scp")]
pub mod find;
pub mod metrics;
#[cfg(feature = "scp")]
pub mod policy;
#[cfg(feature = "scp")]
pub mod scp;

pub use metrics::Metrics;
#[cfg(feature = "scp")]
pub use policy::AcceptPolicy;
#[cfg(feature = "scp")]
pub use scp::{Scp, ScpOptions};
