//! The web pages for clinicians and EMS crews (`/ui/`, docs/UI.md): the files of `ui/dist`
//! embedded in the binary (built with npm by the UI's developers and committed, so a
//! `cargo build` needs no npm). These routes need no token — the page asks for one and
//! sends it on every API call.
//!
//! - `GET /ui` redirects to `/ui/`; `GET /ui/` is `index.html`.
//! - Every file is served with its type, an ETag (SHA-256 of its bytes) answered with 304
//!   on `If-None-Match`, `Cache-Control: no-cache` (revalidate: the names are not
//!   fingerprinted), and its gzip variant (built beside it) when the browser accepts gzip.
//! - `GET /ui/config.json`: the page's settings, read from `DATA/ui-config.json` on every
//!   request when that file exists (so it changes without a restart), else
//!   `{"viewer_url": ""}`. `viewer_url` is the URL template of an OHIF-style viewer
//!   (`{study}`, `{base}`, `{dicomweb}`); empty hides the link.

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    LOCATION, VARY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::AppState;

/// One embedded file: name under `/ui/`, media type, bytes, gzip variant.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    gzip: Option<&'static [u8]>,
}

macro_rules! dist {
    ($f:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ui/dist/", $f))
    };
}

/// The files of `ui/dist` (keep in step with `ui/build.mjs`).
static ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: dist!("index.html"),
        gzip: Some(dist!("index.html.gz")),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: dist!("app.js"),
        gzip: Some(dist!("app.js.gz")),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: dist!("app.css"),
        gzip: Some(dist!("app.css.gz")),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: dist!("icon.svg"),
        gzip: None,
    },
];

/// The settings served when `DATA/ui-config.json` does not exist.
const DEFAULT_CONFIG: &str = "{\"viewer_url\": \"\"}\n";

/// The file in the data dir that overrides [`DEFAULT_CONFIG`].
pub const CONFIG_FILE: &str = "ui-config.json";

/// Only the node's own scripts, styles and API; images also from blob: URLs (WADO-RS
/// renders fetched with the token).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'self'";

/// Routes of the pages (outside the token gate).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(redirect))
        .route("/ui/", get(index))
        .route("/ui/config.json", get(config))
        .route("/ui/{*path}", get(file))
}

async fn redirect() -> Response {
    (StatusCode::PERMANENT_REDIRECT, [(LOCATION, "/ui/")]).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = Sha256::digest(a.bytes);
                let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let q0 = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !q0
        })
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == path) else {
        return (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no /ui/{path}\n"),
        )
            .into_response();
    };
    let a = &ASSETS[i];
    let tag = &etags()[i];
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == tag)
        });
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match a.gzip.filter(|_| accepts_gzip(headers)) {
            Some(gz) => {
                let mut r = gz.into_response();
                r.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            None => a.bytes.into_response(),
        }
    };
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(ETAG, v);
    }
    if a.name == "index.html" {
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    }
    r
}

async fn config(State(st): State<AppState>) -> Response {
    let path = st.store.data_dir().join(CONFIG_FILE);
    let body = match tokio::fs::read(&path).await {
        Ok(b) => match serde_json::from_slice::<serde_json::Value>(&b) {
            Ok(v) if v.is_object() => v.to_string(),
            _ => {
                tracing::warn!(path = %path.display(), "not a JSON object: serving the default UI settings");
                DEFAULT_CONFIG.to_string()
            }
        },
        Err(_) => DEFAULT_CONFIG.to_string(),
    };
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_there_and_gzip_matches() {
        for a in ASSETS {
            assert!(!a.bytes.is_empty(), "{} is empty", a.name);
            if let Some(gz) = a.gzip {
                assert_eq!(&gz[..2], &[0x1f, 0x8b], "{}.gz is gzip", a.name);
            }
        }
        let idx = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(idx.contains("app.js") && idx.contains("app.css"));
    }

    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                axum::http::header::ACCEPT_ENCODING,
                HeaderValue::from_str(v).unwrap(),
            );
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br"));
        assert!(h("br;q=1.0, gzip;q=0.8"));
        assert!(!h("gzip;q=0"));
        assert!(!h("br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
