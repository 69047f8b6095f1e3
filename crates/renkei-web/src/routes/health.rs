//! `GET /healthz`: 200 "ok" while the node serves and its index answers.

use axum::extract::State;
use axum::routing::get;
use axum::Router;

use crate::{ApiError, AppState};

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    // a cheap read proves the index is open and readable
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.instance("0")).await??;
    Ok("ok\n")
}
