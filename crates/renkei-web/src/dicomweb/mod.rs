//! DICOMweb (PS3.18) under `/dicom-web`. For now the Search transaction (QIDO-RS,
//! [`qido`]); WADO-RS and STOW-RS join here.
//!
//! Every route passes through one access hook ([`access`]): loopback peers only unless
//! the node is configured otherwise, until the access-control work brings tokens. CORS
//! answers (preflight included) come from tower-http for the configured origins only.

pub mod json;
pub mod qido;
pub mod stow;
pub mod wado;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WARNING};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{ApiError, AppState};

/// DICOMweb settings of the node.
#[derive(Debug, Clone)]
pub struct DicomWebOptions {
    /// Most matches one search returns (the node's `max_find_results`, shared with
    /// C-FIND); more are cut and flagged with a Warning header.
    pub max_results: usize,
    /// Fold person names when matching, as C-FIND does (`pn_folding`); a search with
    /// `fuzzymatching=true` folds even when this is off.
    pub fold_names: bool,
    /// Accept peers other than loopback (`dicomweb_allow_remote`).
    pub allow_remote: bool,
    /// Origins a browser may call from (`cors_origins`); none means no CORS headers.
    pub cors_origins: Vec<HeaderValue>,
}

impl Default for DicomWebOptions {
    fn default() -> Self {
        DicomWebOptions {
            max_results: 10_000,
            fold_names: true,
            allow_remote: false,
            cors_origins: Vec::new(),
        }
    }
}

/// A configured CORS origin is not a valid header value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// The origin, as configured.
    #[error("invalid CORS origin {0:?}: expected scheme://host[:port]")]
    Invalid(String),
}

impl DicomWebOptions {
    /// Check configured origins (`http://localhost:3000`) and turn them into header values.
    pub fn parse_origins(origins: &[String]) -> Result<Vec<HeaderValue>, OriginError> {
        origins
            .iter()
            .map(|o| {
                let o = o.trim().trim_end_matches('/');
                let scheme_ok = o.starts_with("http://") || o.starts_with("https://");
                match HeaderValue::from_str(o) {
                    Ok(v) if scheme_ok && !o.contains(char::is_whitespace) => Ok(v),
                    _ => Err(OriginError::Invalid(o.to_string())),
                }
            })
            .collect()
    }
}

/// The `/dicom-web` routes, behind the access hook and (when origins are configured) CORS.
pub fn router(opts: &DicomWebOptions) -> Router<AppState> {
    let routes = Router::new()
        .route("/dicom-web/studies", get(qido::studies))
        .route("/dicom-web/studies", axum::routing::post(stow::studies))
        .route("/dicom-web/studies/{study}", axum::routing::post(stow::study))
        .route("/dicom-web/series", get(qido::all_series))
        .route("/dicom-web/instances", get(qido::all_instances))
        .route("/dicom-web/studies/{study}/series", get(qido::study_series))
        .route(
            "/dicom-web/studies/{study}/instances",
            get(qido::study_instances),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances",
            get(qido::series_instances),
        )
        // WADO-RS (PS3.18 10.4)
        .route("/dicom-web/studies/{study}", get(wado::study))
        .route("/dicom-web/studies/{study}/metadata", get(wado::study_metadata))
        .route("/dicom-web/studies/{study}/thumbnail", get(wado::study_thumbnail))
        .route("/dicom-web/studies/{study}/series/{series}", get(wado::series))
        .route(
            "/dicom-web/studies/{study}/series/{series}/metadata",
            get(wado::series_metadata),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/thumbnail",
            get(wado::series_thumbnail),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}",
            get(wado::instance),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata",
            get(wado::instance_metadata_route),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(wado::instance_rendered),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            get(wado::instance_thumbnail),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(wado::frames),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(wado::frame_rendered),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
            get(wado::frame_thumbnail),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
            get(wado::bulkdata),
        )
        .layer(axum::middleware::from_fn_with_state(
            opts.allow_remote,
            access,
        ));
    if opts.cors_origins.is_empty() {
        return routes;
    }
    // outermost, so that preflight requests are answered before the access hook and
    // every answer, errors included, carries the CORS headers a browser needs to read it
    routes.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(opts.cors_origins.clone()))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([ACCEPT, AUTHORIZATION, CONTENT_TYPE])
            .expose_headers([WARNING, CONTENT_TYPE]),
    )
}

/// The authentication/authorization hook of every DICOMweb route: loopback peers only,
/// unless `allow_remote`. The access-control work replaces this with tokens and roles.
pub async fn access(State(allow_remote): State<bool>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical());
    // a request without a peer address (in-process tests) is not known to be local
    if allow_remote || peer.is_some_and(|ip| ip.is_loopback()) {
        next.run(req).await
    } else {
        ApiError::Forbidden("DICOMweb is open to the node's own machine only".into())
            .into_response()
    }
}
