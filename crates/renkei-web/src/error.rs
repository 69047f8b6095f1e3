//! One error type for every handler. Clients see a short JSON problem; details go to the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error a handler returns.
#[derive(Debug)]
pub enum ApiError {
    /// Something failed inside the node; logged, not shown.
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
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
