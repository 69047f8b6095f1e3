//! `/api/remotes`: the remote AEs (C-MOVE destinations, and the calling AEs accepted when
//! the node listens off loopback), changeable while the node runs. Changes are kept in
//! `DATA/remotes.json`, loaded after the config file at the next start (so they survive a
//! restart). Reading needs any token; writes need the regional administrator (on a
//! single-site node, any token holder on the node's own machine).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use renkei_share::{Principal, Role};
use serde::{Deserialize, Serialize};

use crate::{ApiError, AppState};

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/remotes", get(list))
        .route("/api/remotes/{ae}", get(one).put(put).delete(delete))
}

/// A remote AE as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteAe {
    /// AE title (in the URL for PUT).
    #[serde(default)]
    pub ae_title: String,
    /// Host name or address.
    pub host: String,
    /// DICOM port.
    pub port: u16,
}

/// The file the API's changes are kept in.
pub fn remotes_file(data_dir: &Path) -> PathBuf {
    data_dir.join("remotes.json")
}

/// Remotes saved by the API in a data dir (empty when none were saved).
pub fn load_saved(data_dir: &Path) -> Result<Vec<RemoteAe>, String> {
    match std::fs::read(remotes_file(data_dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("remotes.json: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("remotes.json: {e}")),
    }
}

fn snapshot(table: &HashMap<String, (String, u16)>) -> Vec<RemoteAe> {
    let sorted: BTreeMap<_, _> = table.iter().collect();
    sorted
        .into_iter()
        .map(|(ae, (host, port))| RemoteAe {
            ae_title: ae.clone(),
            host: host.clone(),
            port: *port,
        })
        .collect()
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<RemoteAe>>, ApiError> {
    let table = state
        .remotes
        .read()
        .map_err(|_| ApiError::Internal("remotes lock".into()))?;
    Ok(Json(snapshot(&table)))
}

async fn one(
    State(state): State<AppState>,
    UrlPath(ae): UrlPath<String>,
) -> Result<Json<RemoteAe>, ApiError> {
    let table = state
        .remotes
        .read()
        .map_err(|_| ApiError::Internal("remotes lock".into()))?;
    let (host, port) = table
        .get(&ae)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no remote AE {ae:?}")))?;
    Ok(Json(RemoteAe {
        ae_title: ae,
        host,
        port,
    }))
}

/// Changes are for administrators: the regional one, or (single-site node) any token
/// holder on the node's own machine.
fn may_change(state: &AppState, p: &Principal, peer: SocketAddr) -> Result<(), ApiError> {
    if p.role == Role::RegionalAdmin || (state.share.single_site() && peer.ip().is_loopback()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "remote AEs are changed by the regional administrator".into(),
        ))
    }
}

async fn put(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(p): Extension<Principal>,
    UrlPath(ae): UrlPath<String>,
    body: Result<Json<RemoteAe>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<RemoteAe>), ApiError> {
    may_change(&state, &p, peer)?;
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if ae.is_empty() || ae.len() > 16 || ae.contains('\\') || ae.trim() != ae {
        return Err(ApiError::BadRequest(format!(
            "AE title {ae:?} must be 1 to 16 characters, no backslash or surrounding spaces"
        )));
    }
    if body.host.trim().is_empty() || body.port == 0 {
        return Err(ApiError::BadRequest(
            "host and a non-zero port are required".into(),
        ));
    }
    let created = {
        let mut table = state
            .remotes
            .write()
            .map_err(|_| ApiError::Internal("remotes lock".into()))?;
        let created = table
            .insert(ae.clone(), (body.host.trim().to_string(), body.port))
            .is_none();
        save(&state, &table)?;
        created
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(RemoteAe {
            ae_title: ae,
            host: body.host.trim().to_string(),
            port: body.port,
        }),
    ))
}

async fn delete(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(p): Extension<Principal>,
    UrlPath(ae): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    may_change(&state, &p, peer)?;
    let mut table = state
        .remotes
        .write()
        .map_err(|_| ApiError::Internal("remotes lock".into()))?;
    if table.remove(&ae).is_none() {
        return Err(ApiError::NotFound(format!("no remote AE {ae:?}")));
    }
    save(&state, &table)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Write the whole table atomically (temp file, fsync, rename).
fn save(state: &AppState, table: &HashMap<String, (String, u16)>) -> Result<(), ApiError> {
    let path = remotes_file(state.store.data_dir());
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(&snapshot(table))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| ApiError::Internal(format!("saving {}: {e}", path.display())))
}
