//! Route groups, each with its own `router()`.

pub mod health;
pub mod hl7;
pub mod metrics;
pub mod remotes;
pub mod share;
pub mod statistics;
