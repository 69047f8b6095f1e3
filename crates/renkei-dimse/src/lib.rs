//! DICOM upper-layer services of the Renkei node, on dicom-ul (tokio).
//!
//! - [`scp`]: the association acceptor: policy, negotiation, C-ECHO and C-STORE.
//! - [`policy`]: which calling AE titles may associate.
//! - [`command`]: DIMSE command sets and status codes.
//! - [`metrics`]: counters and the store-latency histogram.
#![deny(missing_docs)]

pub mod command;
pub mod metrics;
pub mod policy;
pub mod scp;

pub use metrics::Metrics;
pub use policy::AcceptPolicy;
pub use scp::{Scp, ScpOptions};
