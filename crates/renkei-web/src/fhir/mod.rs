//! FHIR R4 (`application/fhir+json`) under `/fhir`: Patient (create = enrolment, read,
//! `$everything`, `$summary`), the clinical record of `renkei_share::clinical` (read,
//! vread, create, update, history, search; `$check`), ImagingStudy from the PACS index,
//! Consent, AuditEvent, Organization and Binary, and the CapabilityStatement listing
//! exactly that. Every error is an OperationOutcome. Names follow JP Core (docs/FHIR.md).
//!
//! - [`patient`] — Patient create/read and the patient-level operations;
//! - [`resources`] — the type and instance interactions of every other type;
//! - [`bundle`] — searchset Bundles with paging links, the request's query and base URL;
//! - [`capability`] — `/fhir/metadata`.

pub mod bundle;
pub mod capability;
pub mod patient;
pub mod resources;

use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_http::compression::predicate::Predicate;

use renkei_share::clinical::ClinicalError;
use renkei_share::ShareError;

use crate::{ApiError, AppState};

pub use patient::{local_identifier, patient_resource, CONSENT_EXTENSION};
pub use renkei_share::clinical::REGIONAL_ID_SYSTEM;

/// The FHIR media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Largest request body (DocumentReference attachments arrive inline, base64).
const MAX_BODY: usize = 32 << 20;

/// `/fhir/metadata`, outside the token gate: a client reads the CapabilityStatement to
/// learn what the server does before it signs in (FHIR R4 http.html#capabilities; SMART
/// App Launch discovery expects the same), and it names no patient.
pub fn public_router() -> Router<AppState> {
    Router::new().route(
        "/fhir/metadata",
        get(capability::metadata).fallback(method_not_allowed),
    )
}

/// Routes of the FHIR API (behind the token gate; `/fhir/metadata` is [`public_router`]).
pub fn router() -> Router<AppState> {
    let m = |r: MethodRouter<AppState>| r.fallback(method_not_allowed);
    Router::new()
        .route(
            "/fhir/{type}",
            m(get(resources::search_type).post(resources::create_type)),
        )
        .route(
            "/fhir/{type}/{id}",
            m(get(resources::read_instance)
                .put(resources::update_instance)
                .post(resources::type_operation)),
        )
        .route("/fhir/{type}/{id}/{op}", m(get(resources::instance_get)))
        .route("/fhir/{type}/{id}/_history/{vid}", m(get(resources::vread)))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // a patient's $everything is hundreds of KB of JSON that gzip shrinks 30-fold
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .compress_when(
                    tower_http::compression::predicate::SizeAbove::new(
                        crate::dicomweb::MIN_GZIP_BYTES,
                    )
                    .and(crate::dicomweb::compressible),
                ),
        )
}

/// An error as an OperationOutcome: status, issue code, text.
#[derive(Debug)]
pub struct FhirError {
    status: StatusCode,
    code: &'static str,
    text: String,
}

impl FhirError {
    /// An error with a status, an OperationOutcome issue code and a text.
    pub fn new(status: StatusCode, code: &'static str, text: impl Into<String>) -> FhirError {
        FhirError {
            status,
            code,
            text: text.into(),
        }
    }

    /// 400 invalid.
    pub fn bad_request(text: impl Into<String>) -> FhirError {
        FhirError::new(StatusCode::BAD_REQUEST, "invalid", text)
    }

    /// 404 not-found.
    pub fn not_found(text: impl Into<String>) -> FhirError {
        FhirError::new(StatusCode::NOT_FOUND, "not-found", text)
    }
}

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest(d) => FhirError::new(StatusCode::BAD_REQUEST, "invalid", d),
            ApiError::Unauthorized(d) => FhirError::new(StatusCode::UNAUTHORIZED, "login", d),
            ApiError::Forbidden(d) => FhirError::new(StatusCode::FORBIDDEN, "forbidden", d),
            ApiError::NotFound(d) => FhirError::new(StatusCode::NOT_FOUND, "not-found", d),
            ApiError::NotAcceptable(d) => {
                FhirError::new(StatusCode::NOT_ACCEPTABLE, "not-supported", d)
            }
            ApiError::Conflict(d) => FhirError::new(StatusCode::CONFLICT, "conflict", d),
            ApiError::PayloadTooLarge(d) => {
                FhirError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-costly", d)
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                FhirError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "internal error (logged on the node)",
                )
            }
        }
    }
}

impl From<ShareError> for FhirError {
    fn from(e: ShareError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<ClinicalError> for FhirError {
    fn from(e: ClinicalError) -> Self {
        match e {
            ClinicalError::Share(e) => e.into(),
            ClinicalError::Invalid(m) => {
                FhirError::new(StatusCode::UNPROCESSABLE_ENTITY, "processing", m)
            }
            ClinicalError::PreconditionFailed(m) => {
                FhirError::new(StatusCode::PRECONDITION_FAILED, "conflict", m)
            }
            other => FhirError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                other.to_string(),
            ),
        }
    }
}

impl From<tokio::task::JoinError> for FhirError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        fhir(self.status, outcome("error", self.code, &self.text))
    }
}

/// An OperationOutcome with one issue.
pub fn outcome(severity: &str, code: &str, text: &str) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": [{
        "severity": severity, "code": code, "diagnostics": text
    }]})
}

/// A FHIR JSON response.
pub fn fhir(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

async fn method_not_allowed() -> FhirError {
    FhirError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "not-supported",
        "this interaction is not supported here (see /fhir/metadata)",
    )
}

/// Run a clinical operation on the blocking pool.
pub(crate) async fn blocking_fhir<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FhirError> + Send + 'static,
) -> Result<T, FhirError> {
    tokio::task::spawn_blocking(f).await?
}
