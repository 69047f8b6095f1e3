/*!
The HTTP side of `renkei admin`: where the token comes from, one blocking request at a
time to the node's REST API, and the node's problem answers turned into [`ApiError`].

The node speaks plain HTTP/1.1 on loopback or the LAN, so the client is `ureq` without
TLS; proxies from the environment are ignored (a proxy between us and a node on the same
network would only get in the way).
*/

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

/// Where the answer of a request went wrong on the node's side: a 4xx or 5xx status with
/// the problem's `detail`.
#[derive(Debug)]
pub(crate) struct ApiError {
    /// HTTP status code.
    pub(crate) status: u16,
    /// The node's reason (`detail` of the problem), or what we could make of the body.
    pub(crate) detail: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.detail, self.status)
    }
}

impl std::error::Error for ApiError {}

/// Which of the three sources gave the token (named in hints after a 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSource {
    /// `--token`, or the `RENKEI_TOKEN` environment variable (clap merges the two).
    Flag,
    /// `<data-dir>/admin.token`.
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Flag => f.write_str("--token / RENKEI_TOKEN"),
            TokenSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The token to send: `--token` (or `RENKEI_TOKEN`, which clap folds into the flag), else
/// the node's `<data-dir>/admin.token`.
pub(crate) fn resolve_token(
    flag: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(String, TokenSource)> {
    if let Some(t) = flag.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok((t.to_string(), TokenSource::Flag));
    }
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                bail!(
                    "{} is empty: pass --token TOKEN or set RENKEI_TOKEN",
                    path.display()
                );
            }
            Ok((token.to_string(), TokenSource::File(path)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "no token to authenticate with. Give one of:\n  \
             --token TOKEN\n  \
             the RENKEI_TOKEN environment variable\n  \
             the node's data directory with --data-dir DIR (or RENKEI_DATA_DIR), whose \
             admin.token the node writes at its first start (looked for {})",
            path.display()
        ),
        Err(e) => Err(anyhow!(e)).with_context(|| {
            format!(
                "cannot read the token file {} (run as the node's user, or pass --token)",
                path.display()
            )
        }),
    }
}

/// A connection profile: base URL and bearer token.
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
    source: TokenSource,
}

/// Longest answer body read (audit listings can be long; nothing else comes close).
const MAX_BODY: u64 = 256 * 1024 * 1024;

impl Client {
    /// A client for the node at `url` (`http://host:port`, maybe with a path prefix).
    pub(crate) fn new(url: &str, token: String, source: TokenSource) -> anyhow::Result<Client> {
        let base = url.trim().trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            bail!(
                "{base}: this renkei is built without TLS and the node serves plain HTTP; \
                 use an http:// URL (or a TLS-terminating proxy's http:// side)"
            );
        }
        if !base.starts_with("http://") {
            bail!("{base}: the node's URL must start with http:// (for example http://127.0.0.1:8042)");
        }
        let agent = ureq::Agent::config_builder()
            // 4xx/5xx are answers to read (the problem's detail), not transport errors
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .user_agent(concat!("renkei/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Client {
            agent,
            base,
            token,
            source,
        })
    }

    /// Where the token came from.
    pub(crate) fn token_source(&self) -> &TokenSource {
        &self.source
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// GET `path` (already encoded, with its query).
    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let result = self
            .agent
            .get(&url)
            .header("Authorization", self.auth())
            .header("Accept", "application/json, application/fhir+json")
            .call();
        self.finish("GET", &url, result)
    }

    /// DELETE `path`.
    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let result = self
            .agent
            .delete(&url)
            .header("Authorization", self.auth())
            .header("Accept", "application/json")
            .call();
        self.finish("DELETE", &url, result)
    }

    /// POST a JSON body.
    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        self.post_as(path, "application/json", body)
    }

    /// POST a JSON body with another media type (FHIR: `application/fhir+json`).
    pub(crate) fn post_as(
        &self,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let bytes = serde_json::to_vec(body)?;
        let result = self
            .agent
            .post(&url)
            .header("Authorization", self.auth())
            .header("Accept", "application/json, application/fhir+json")
            .content_type(content_type)
            .send(&bytes[..]);
        self.finish("POST", &url, result)
    }

    /// POST raw bytes (an HL7 v2 body for `renkei import hl7`) with their media type; the
    /// answer is asked for as JSON.
    pub(crate) fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let result = self
            .agent
            .post(&url)
            .header("Authorization", self.auth())
            .header("Accept", "application/json")
            .content_type(content_type)
            .send(body);
        self.finish("POST", &url, result)
    }

    fn finish(
        &self,
        method: &str,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Answer> {
        let mut response = result.map_err(|e| self.transport_error(method, url, e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| self.transport_error(method, url, e))?;
        tracing::debug!("{method} {url} -> {status} ({} bytes)", text.len());
        if status >= 400 {
            return Err(anyhow!(problem(status, &text, method, url)));
        }
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| {
                format!("{method} {url}: the answer (HTTP {status}) is not JSON")
            })?
        };
        Ok(Answer { status, text, json })
    }

    fn transport_error(&self, method: &str, url: &str, e: ureq::Error) -> anyhow::Error {
        let refused = match &e {
            ureq::Error::Io(io) => io.kind() == io::ErrorKind::ConnectionRefused,
            ureq::Error::ConnectionFailed => true,
            _ => false,
        };
        if refused {
            return anyhow!(
                "cannot connect to {}: connection refused. Is the node running? Start it with \
                 `pacs-node serve --data-dir DIR --http-port PORT …`, or point --url \
                 (RENKEI_URL) at where it listens",
                self.base
            );
        }
        match e {
            ureq::Error::HostNotFound => anyhow!("{method} {url}: host not found"),
            ureq::Error::Timeout(t) => anyhow!("{method} {url}: no answer in time ({t})"),
            other => anyhow!(other).context(format!("{method} {url}")),
        }
    }
}

/// A successful answer: status, body as text (for --json) and parsed.
pub(crate) struct Answer {
    /// HTTP status (2xx).
    #[allow(dead_code)] // kept for debugging output; the contract's statuses are not checked
    pub(crate) status: u16,
    /// The body as received.
    pub(crate) text: String,
    /// The body parsed (`null` when empty).
    pub(crate) json: Value,
}

/// The [`ApiError`] of a 4xx/5xx answer: the problem's `detail` when the body is one,
/// otherwise the body's text or the status's reason phrase.
fn problem(status: u16, body: &str, method: &str, url: &str) -> ApiError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        ["detail", "title", "error", "message"]
            .iter()
            .find_map(|k| v.get(k).and_then(Value::as_str))
            .map(str::to_string)
            // FHIR OperationOutcome
            .or_else(|| {
                v.get("issue")?.as_array()?.iter().find_map(|i| {
                    i.get("diagnostics")
                        .or_else(|| i.get("details")?.get("text"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
            })
    });
    let detail = match from_json {
        Some(d) if !d.trim().is_empty() => d.trim().to_string(),
        _ => {
            let text = body.trim();
            if text.is_empty() || parsed.is_some() {
                let reason = reason_phrase(status);
                if status == 404 || status == 405 {
                    format!(
                        "{reason}: the node does not serve {method} {} (is it older than the \
                         admin API, or is --url wrong?)",
                        path_of(url)
                    )
                } else {
                    reason.to_string()
                }
            } else {
                let mut t: String = text.chars().take(300).collect();
                if t.len() < text.len() {
                    t.push('…');
                }
                t
            }
        }
    };
    ApiError { status, detail }
}

fn path_of(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.find('/').map_or("/", |i| &rest[i..])
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not found",
        405 => "method not allowed",
        409 => "conflict",
        413 => "request too large",
        415 => "unsupported media type",
        422 => "unprocessable request",
        429 => "too many requests",
        500 => "internal server error",
        502 => "bad gateway",
        503 => "service unavailable",
        504 => "gateway timeout",
        s if s < 500 => "request refused",
        _ => "server error",
    }
}

/// Percent-encode one path segment (RFC 3986 unreserved characters pass as they are).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from (name, value) pairs, with a leading `?` (empty when none).
pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{}={}", segment(k), segment(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("1310000001"), "1310000001");
        assert_eq!(segment("A/B C"), "A%2FB%20C");
        assert_eq!(segment("山田"), "%E5%B1%B1%E7%94%B0");
        assert_eq!(segment("x?y#z%"), "x%3Fy%23z%25");
        assert_eq!(
            query(&[("patient", Some("R 1".into())), ("limit", None)]),
            "?patient=R%201"
        );
        assert_eq!(query(&[("limit", None)]), "");
    }

    #[test]
    fn problems_give_their_detail() {
        let e = problem(
            400,
            r#"{"status":400,"detail":"unknown role \"surgeon\""}"#,
            "POST",
            "http://h:1/api/users",
        );
        assert_eq!(e.to_string(), "unknown role \"surgeon\" (HTTP 400)");
        let e = problem(404, "", "GET", "http://h:1/api/whoami");
        assert_eq!(e.status, 404);
        assert!(e.detail.contains("GET /api/whoami"), "{}", e.detail);
        let e = problem(500, "boom", "GET", "http://h:1/x");
        assert_eq!(e.detail, "boom");
        let e = problem(
            422,
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","diagnostics":"bad date"}]}"#,
            "POST",
            "http://h:1/fhir/Patient",
        );
        assert_eq!(e.detail, "bad date");
    }

    #[test]
    fn token_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_token(None, dir.path()).unwrap_err().to_string();
        for way in ["--token", "RENKEI_TOKEN", "--data-dir", "admin.token"] {
            assert!(err.contains(way), "{err}");
        }
        std::fs::write(dir.path().join("admin.token"), "secret-from-file\n").unwrap();
        let (t, s) = resolve_token(None, dir.path()).unwrap();
        assert_eq!(t, "secret-from-file");
        assert_eq!(s, TokenSource::File(dir.path().join("admin.token")));
        let (t, s) = resolve_token(Some(" flag "), dir.path()).unwrap();
        assert_eq!((t.as_str(), s), ("flag", TokenSource::Flag));
        // an empty --token / RENKEI_TOKEN falls through to the file
        assert_eq!(
            resolve_token(Some(""), dir.path()).unwrap().0,
            "secret-from-file"
        );
    }
}
