//! One error type for every handler. Clients see a short JSON problem; details go to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error a handler returns.
#[derive(Debug)]
pub enum ApiError {
    /// The request is malformed (400), with the reason shown to the client.
    BadRequest(String),
    /// No valid credentials (401), with the reason (missing, unknown, expired, revoked).
    Unauthorized(String),
    /// Not allowed for this client (403).
    Forbidden(String),
    /// No such resource (404).
    NotFound(String),
    /// None of the media types the client accepts can be produced (406).
    NotAcceptable(String),
    /// The request body is larger than the node takes (413), with the limit in words.
    PayloadTooLarge(String),
    /// The change conflicts with what is stored (409).
    Conflict(String),
    /// Something failed inside the node; logged, not shown.
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = |status: StatusCode, detail: String| {
            (
                status,
                Json(serde_json::json!({ "status": status.as_u16(), "detail": detail })),
            )
                .into_response()
        };
        match self {
            ApiError::BadRequest(d) => problem(StatusCode::BAD_REQUEST, d),
            ApiError::Unauthorized(d) => problem(StatusCode::UNAUTHORIZED, d),
            ApiError::Forbidden(d) => problem(StatusCode::FORBIDDEN, d),
            ApiError::Conflict(d) => problem(StatusCode::CONFLICT, d),
            ApiError::NotFound(d) => problem(StatusCode::NOT_FOUND, d),
            ApiError::NotAcceptable(d) => problem(StatusCode::NOT_ACCEPTABLE, d),
            ApiError::PayloadTooLarge(d) => problem(StatusCode::PAYLOAD_TOO_LARGE, d),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({ "status": 500, "title": "internal error" })),
                )
                    .into_response()
            }
        }
    }
}

impl From<renkei_store::StoreError> for ApiError {
    fn from(e: renkei_store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
