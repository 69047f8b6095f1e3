//! The one gate of the HTTP side: every route but `/healthz`, the pages (`/ui/`, which ask
//! for a token themselves) and `/fhir/metadata` needs a bearer token
//! (`Authorization: Bearer rk_…`), checked against the sharing domain. The signed-in
//! [`Principal`] goes into the request's extensions, where handlers take it as their
//! [`Actor`]. A missing, unknown, expired or revoked token is a 401 naming which.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use renkei_share::{Actor, Principal, Share, ShareError};

use crate::ApiError;

/// The bearer token of a request, if it sent one.
pub fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: authenticate, or answer 401.
pub async fn require_token(
    State(share): State<Arc<Share>>,
    mut req: Request,
    next: Next,
) -> Response {
    if req.method() == axum::http::Method::OPTIONS {
        // CORS preflights carry no credentials (Fetch standard); the CORS layer answers them
        return next.run(req).await;
    }
    let result = match bearer(&req) {
        None => Err(ShareError::Unauthorized(
            "missing bearer token: send \"Authorization: Bearer <token>\" (the first token is in DATA/admin.token)".into(),
        )),
        Some(t) => share.authenticate(t),
    };
    match result {
        Ok(principal) => {
            req.extensions_mut().insert(principal.clone());
            PRINCIPAL.scope(principal, next.run(req)).await
        }
        Err(e) => {
            // FHIR clients read errors as OperationOutcome (FHIR R4 http.html#2.21.0.4)
            let mut resp = if req.uri().path().starts_with("/fhir/") {
                // the FHIR routes' own mapping (401 "login", store failures without detail)
                crate::fhir::FhirError::from(e).into_response()
            } else {
                ApiError::from(e).into_response()
            };
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"renkei\""),
            );
            resp
        }
    }
}

tokio::task_local! {
    /// The signed-in user of the request being handled (set by [`require_token`] around
    /// the handler's future), for code deep in a handler that is not given it, such as the
    /// one resolver every WADO-RS route goes through.
    static PRINCIPAL: Principal;
}

/// The actor of the request being handled; 401 outside the token gate.
pub fn current_actor() -> Result<Actor, ApiError> {
    PRINCIPAL
        .try_with(|p| Actor::User(p.clone()))
        .map_err(|_| ApiError::Unauthorized("not signed in".into()))
}

/// The facility of the request's signed-in user: what STOW-RS indexes instances without
/// Issuer of Patient ID under.
pub fn current_facility() -> Option<String> {
    PRINCIPAL.try_with(|p| p.facility.clone()).ok().flatten()
}

/// The actor of an authenticated request.
pub fn actor(p: &Principal) -> Actor {
    Actor::User(p.clone())
}

impl From<ShareError> for ApiError {
    fn from(e: ShareError) -> Self {
        match e {
            ShareError::BadRequest(d) => ApiError::BadRequest(d),
            ShareError::Unauthorized(d) => ApiError::Unauthorized(d),
            ShareError::Forbidden(d) => ApiError::Forbidden(d),
            ShareError::NotFound(d) => ApiError::NotFound(d),
            ShareError::Conflict(d) => ApiError::Conflict(d),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Run a sharing operation (index reads and synced writes) on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ShareError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}
