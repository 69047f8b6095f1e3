//! `POST /api/hl7`: HL7 v2 messages over HTTP (body: one message or several, bytes as the
//! sending system wrote them, in any character set MSH-18 declares;
//! `Content-Type: x-application/hl7-v2+er7`). Every message is imported and acknowledged
//! on its own by `renkei_share::hl7`, as the signed-in user; the answer is 200 with the
//! ACKs, whatever they say (an AE or AR is an answer, not an HTTP failure):
//! - as ER7 text (UTF-8, `MSH-18 = UNICODE UTF-8`, segments ended by CR, one ACK after the
//!   other), by default;
//! - as JSON (`Accept: application/json`): one object per message with its code, control
//!   ID, text, issues (segment, field, HL7 table 0357 code), created resources and the ACK
//!   text (`ack`). `renkei import hl7` reads this.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use renkei_share::Principal;

use crate::auth::{actor, blocking};
use crate::{ApiError, AppState};

/// Largest body accepted: a day's SS-MIX2 batch of one system fits.
const MAX_BODY: usize = 32 << 20;

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/hl7", post(import))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn import(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "empty body: send one or more HL7 v2 messages (ER7, starting with MSH)".into(),
        ));
    }
    let json_wanted = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let share = st.share.clone();
    let acks = blocking(move || Ok(share.import_hl7_batch(&actor(&p), &body))).await?;
    if json_wanted {
        let list: Vec<Value> = acks
            .iter()
            .map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or(Value::Null);
                v["ack"] = json!(a.er7());
                v
            })
            .collect();
        return Ok(Json(list).into_response());
    }
    let text: String = acks.iter().map(|a| a.er7()).collect();
    let mut r = text.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("x-application/hl7-v2+er7; charset=utf-8"),
    );
    Ok(r)
}
