//! Errors of the sharing domain. Each variant says which HTTP status family it belongs to
//! (the web layer maps them one to one), and its message is written for the person who
//! sent the request: it names the card, ID, token or role that was wrong.

use renkei_store::StoreError;

/// Why a sharing operation did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The request is malformed (bad check digit, unknown role name, missing field): 400.
    #[error("{0}")]
    BadRequest(String),
    /// No valid credentials (unknown, expired or revoked token): 401.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials, but the policy or the role does not allow this: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The card, patient, user, facility or token does not exist: 404.
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with what is stored (duplicate code, revoked card): 409.
    #[error("{0}")]
    Conflict(String),
    /// The index failed: 500, details logged, not shown.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result of sharing operations.
pub type Result<T, E = ShareError> = std::result::Result<T, E>;
