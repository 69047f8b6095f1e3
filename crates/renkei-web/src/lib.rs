//! The node's HTTP side (axum): health, Prometheus metrics, the REST API and DICOMweb
//! ([`dicomweb`]: QIDO-RS so far). FHIR routes join here in later work.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests can drive it without a
//! socket.
#![deny(missing_docs)]

pub mod auth;
pub mod dicomweb;
mod error;
pub mod fhir;
pub mod routes;
pub mod ui;

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
    /// Regional sharing: tokens, the access policy, the audit trail.
    pub share: Arc<renkei_share::Share>,
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let dicomweb = dicomweb::router(&state.dicomweb);
    // everything but /healthz, the pages and /fhir/metadata behind the token gate (auth.rs)
    let gated = Router::new()
        .merge(routes::metrics::router())
        .merge(routes::statistics::router())
        .merge(routes::remotes::router())
        .merge(routes::share::router())
        .merge(routes::hl7::router())
        .merge(fhir::router())
        .merge(dicomweb)
        .layer(axum::middleware::from_fn_with_state(
            state.share.clone(),
            auth::require_token,
        ));
    Router::new()
        .merge(routes::health::router())
        .merge(ui::router()) // the pages ask for the token themselves
        .merge(fhir::public_router())
        .merge(gated)
        .with_state(state)
}
