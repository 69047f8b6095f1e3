//! `GET /api/statistics`: counts of what the node holds, as JSON.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use renkei_store::Stats;

use crate::{ApiError, AppState};

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/statistics", get(statistics))
}

async fn statistics(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let store = state.store.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || store.stats()).await??,
    ))
}
