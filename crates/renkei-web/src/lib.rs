//! The node's HTTP side (axum): health, Prometheus metrics, the REST API and DICOMweb
//! ([`dicomweb`]: QIDO-RS so far). FHIR routes join here in later work.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests can drive it without a
//! socket.
#![deny(missing_docs)]

pub mod dicomweb;
mod error;
pub mod routes;

use std::sync::Arc;

use axum::Router;

use renkei_dimse::Metrics;
use renkei_store::Store;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<Store>,
    /// DICOM-side metrics.
    pub metrics: Arc<Metrics>,
    /// The remote AE table shared with the DICOM side.
    pub remotes: renkei_dimse::scp::Remotes,
    /// DICOMweb settings (result cap, name folding, access, CORS).
    pub dicomweb: dicomweb::DicomWebOptions,
    /// The pixel pool shared with the DICOM side (WADO-RS conversions, frames, rendering).
    pub pixel_pool: renkei_transcode::PixelPool,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let dicomweb = dicomweb::router(&state.dicomweb);
    Router::new()
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        .merge(routes::statistics::router())
        .merge(routes::remotes::router())
        .merge(dicomweb)
        .with_state(state)
}
