//! DICOMweb (PS3.18) under `/dicom-web`: Search ([`qido`]), Retrieve ([`wado`]) and Store
//! ([`stow`], with [`json_read`] for metadata-and-bulk-data requests).
//!
//! Every route is behind the node's token gate (`crate::auth`) and reads through the
//! access policy; on top, the [`access`] hook can keep DICOMweb to loopback peers
//! (`dicomweb_allow_remote = false`). CORS answers (preflight included) come from
//! tower-http for the configured origins only. JSON answers (`application/dicom+json`,
//! `application/json`, problem bodies included) are gzip-compressed, as a stream, for
//! clients that accept it ([`compressible`]); multipart and image answers never are.

pub mod json;
pub mod json_read;
pub mod qido;
pub mod stow;
mod stow_bulk;
pub mod wado;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HOST, WARNING,
};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::mpsc;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
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
    /// Largest STOW-RS request body in bytes (`max_stow_bytes`): a larger Content-Length,
    /// or a streamed body growing past it, is answered 413. 0 is unlimited.
    pub max_stow_bytes: u64,
    /// Told the SOP Instance UID of every instance STOW-RS stored or replaced, as the
    /// DICOM side's `ScpOptions::stored` (the storage-compression queue); never waited on.
    pub stored: Option<mpsc::Sender<String>>,
}

/// Default of [`DicomWebOptions::max_stow_bytes`]: 4 GiB.
pub const DEFAULT_MAX_STOW_BYTES: u64 = 4 << 30;

impl Default for DicomWebOptions {
    fn default() -> Self {
        DicomWebOptions {
            max_results: 10_000,
            fold_names: true,
            allow_remote: false,
            cors_origins: Vec::new(),
            max_stow_bytes: DEFAULT_MAX_STOW_BYTES,
            stored: None,
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
    const INSTANCE: &str = "/dicom-web/studies/{study}/series/{series}/instances/{instance}";
    let routes = Router::new()
        // QIDO-RS (PS3.18 10.6) and STOW-RS (PS3.18 10.5)
        .route(
            "/dicom-web/studies",
            get(qido::search_route).post(stow::studies),
        )
        .route("/dicom-web/series", get(qido::search_route))
        .route("/dicom-web/instances", get(qido::search_route))
        .route("/dicom-web/studies/{study}/series", get(qido::search_route))
        .route(
            "/dicom-web/studies/{study}/instances",
            get(qido::search_route),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/instances",
            get(qido::search_route),
        )
        // WADO-RS (PS3.18 10.4)
        .route(
            "/dicom-web/studies/{study}",
            get(wado::instances).post(stow::study),
        )
        .route("/dicom-web/studies/{study}/metadata", get(wado::metadata))
        .route("/dicom-web/studies/{study}/thumbnail", get(wado::thumbnail))
        .route(
            "/dicom-web/studies/{study}/series/{series}",
            get(wado::instances),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/metadata",
            get(wado::metadata),
        )
        .route(
            "/dicom-web/studies/{study}/series/{series}/thumbnail",
            get(wado::thumbnail),
        )
        .route(INSTANCE, get(wado::instances))
        .route(&format!("{INSTANCE}/metadata"), get(wado::metadata))
        .route(&format!("{INSTANCE}/rendered"), get(wado::rendered))
        .route(&format!("{INSTANCE}/thumbnail"), get(wado::thumbnail))
        .route(&format!("{INSTANCE}/frames/{{frames}}"), get(wado::frames))
        .route(
            &format!("{INSTANCE}/frames/{{frames}}/rendered"),
            get(wado::rendered),
        )
        .route(
            &format!("{INSTANCE}/frames/{{frames}}/thumbnail"),
            get(wado::thumbnail),
        )
        .route(&format!("{INSTANCE}/bulkdata/{{tag}}"), get(wado::bulkdata))
        .layer(axum::middleware::from_fn_with_state(
            opts.allow_remote,
            access,
        ))
        // outside the access hook, so that its problem bodies are compressed too
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(SizeAbove::new(MIN_GZIP_BYTES).and(compressible)),
        )
        .layer(axum::middleware::map_response(weaken_etag));
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

/// JSON answers shorter than this are not worth a gzip header (an empty search, `[]`).
pub(crate) const MIN_GZIP_BYTES: u16 = 32;

/// Whether an answer may be gzip-compressed: JSON only (`application/dicom+json`,
/// `application/json`, `application/fhir+json`). Multipart bodies of DICOM files, frames and bulk data, and rendered
/// images, are mostly compressed pixels already, and large: they go out as they are.
pub fn compressible(_: StatusCode, _: Version, headers: &HeaderMap, _: &Extensions) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| {
            let essence = essence.trim();
            essence.eq_ignore_ascii_case(DICOM_JSON)
                || essence.eq_ignore_ascii_case("application/json")
                || essence.eq_ignore_ascii_case(crate::fhir::FHIR_JSON)
        })
        .unwrap_or(false)
}

/// A compressed answer is another representation than the identity one: its ETag becomes
/// weak (`W/"…"`, as nginx does), which `If-None-Match` still matches (weak comparison,
/// RFC 9110 13.1.2) while byte-range and strong validators no longer take it for the same
/// bytes.
async fn weaken_etag(mut response: Response) -> Response {
    if response.headers().contains_key(CONTENT_ENCODING) {
        let weak = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.starts_with("W/"))
            .and_then(|t| HeaderValue::from_str(&format!("W/{t}")).ok());
        if let Some(weak) = weak {
            response.headers_mut().insert(ETAG, weak);
        }
    }
    response
}

/// `application/dicom+json`, the default media type of JSON answers and of STOW-RS
/// metadata parts.
pub const DICOM_JSON: &str = "application/dicom+json";

/// The `type/subtype` of a media range, in lower case.
fn essence(range: &str) -> String {
    range
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// DICOM JSON, or plain JSON for a client that asks only for that (PS3.18 8.7.3); else
/// 406 saying that `what` (`"metadata is"`) only comes as JSON. `essences` are the media
/// types the client accepts, in lower case; none at all means any.
fn json_media<'a>(
    essences: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Result<&'static str, ApiError> {
    let essences: Vec<&str> = essences.into_iter().collect();
    if essences.is_empty()
        || essences
            .iter()
            .any(|t| matches!(*t, DICOM_JSON | "*/*" | "application/*"))
    {
        Ok(DICOM_JSON)
    } else if essences.contains(&"application/json") {
        Ok("application/json")
    } else {
        Err(ApiError::NotAcceptable(format!(
            "{what} available as {DICOM_JSON} or application/json only"
        )))
    }
}

/// A UID of the path (PS3.5 9.1: digits and dots, at most 64 characters); 400 otherwise.
fn path_uid(uid: &str) -> Result<String, ApiError> {
    if uid.is_empty() || uid.len() > 64 || !uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(ApiError::BadRequest(format!("{uid:?} is not a UID")));
    }
    Ok(uid.to_string())
}

/// `http://HOST/dicom-web` from the request's Host header (relative without one), the base
/// of the URLs in answers.
fn base_url(headers: &HeaderMap) -> String {
    match headers.get(HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if !host.is_empty() => format!("http://{host}/dicom-web"),
        _ => "/dicom-web".to_string(),
    }
}

/// A network restriction on top of tokens: loopback peers only, unless `allow_remote`
/// (the node's default since tokens guard every route).
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
