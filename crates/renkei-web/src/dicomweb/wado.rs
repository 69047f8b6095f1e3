//! WADO-RS, the Retrieve transaction (PS3.18 10.4): instances, metadata, frames, bulk
//! data, rendered images and thumbnails of stored objects.
//!
//! - Instances (PS3.18 10.4) are `multipart/related; type="application/dicom"`,
//!   one Part-10 file a part, **streamed**: each part is read from its blob file in
//!   [`CHUNK`] pieces through a small channel, so a study of any size costs a few chunks
//!   of memory. A part whose negotiated transfer syntax is the stored one (no
//!   `transfer-syntax`, or `*`, PS3.18 8.7.3.5) is the stored file as is; another
//!   syntax is produced by `renkei_transcode` on the node's [`PixelPool`](renkei_transcode::PixelPool) (the one C-MOVE
//!   and C-GET use), never a lossy one for lossless data: an Accept no instance can
//!   satisfy is answered 406 before any byte is sent.
//! - Metadata (PS3.18 10.4) is a DICOM JSON array, one header at a time (read up to
//!   Pixel Data), with a BulkDataURI for Pixel Data and large binary values.
//! - Frames (PS3.18 10.4) are native little-endian bytes, or the stored
//!   compressed bit stream when the client asks for the stored media type.
//! - Rendered and thumbnail (PS3.18 10.4) are JPEG or PNG from
//!   `renkei_transcode::render`, with the `window`, `viewport` and `quality` parameters
//!   of PS3.18 8.3.5.
//!
//! Every answer carries an ETag computed from the blob hashes (content addressed, so a
//! stored object never changes under its hash) and what was negotiated; `If-None-Match`
//! gets 304.

use std::borrow::Cow;
use std::path::{Path as FsPath, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use renkei_model::charset::CharacterSets;
use renkei_model::InstanceRecord;
use renkei_share::{Actor, AuditEvent, Share};
use renkei_store::Store;
use renkei_transcode::decode::Photometric;
use renkei_transcode::render::{OutputFormat, RenderOptions, VoiFunction};
use renkei_transcode::transcode::{self, Route, TranscodeError, EXPLICIT_LE};

use super::json::{object_to_json, tag_key};
use super::{base_url, path_uid};
use crate::{ApiError, AppState};

/// Bytes read from a blob file (or cut from a converted part) per body chunk.
pub const CHUNK: usize = 1024 * 1024;

/// Stored files up to this size are sent as one piece with their part header and CRLF
/// (one read, one send); larger ones stream in [`CHUNK`]s.
const WHOLE_PART: u64 = 2 * 1024 * 1024;

/// Body chunks buffered between the producer and the connection: memory per streaming
/// response is about `max(CHUNK, WHOLE_PART) * (QUEUE + 1)`.
const QUEUE: usize = 4;

/// Binary values above this many bytes are given as BulkDataURI in metadata, not inline
/// (pydicom's default `bulk_data_threshold`).
pub const BULK_THRESHOLD: usize = 1024;

/// Thumbnails fit in this square unless `viewport` says otherwise.
pub const THUMBNAIL_SIZE: u32 = 128;

/// Largest `viewport` side accepted (an upscaled render is held in memory).
const MAX_VIEWPORT: u32 = 8192;

/// Default quality of rendered JPEG (PS3.18 8.3.5 leaves it to the server).
const DEFAULT_QUALITY: u8 = 90;

const DICOM: &str = "application/dicom";
const OCTET: &str = "application/octet-stream";

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn internal(msg: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(msg.to_string())
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::NotFound(msg.into())
}

/// The segments of a WADO-RS path; those a route lacks are None.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Resource {
    study: String,
    series: Option<String>,
    instance: Option<String>,
    /// The frame list of `…/frames/{frames}/…`.
    frames: Option<String>,
    /// The attribute of `…/bulkdata/{tag}`.
    tag: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Accept (PS3.18 8.7.3; RFC 9110 12.5.1)

/// One media range of Accept: type, parameters and weight.
#[derive(Debug, Clone, PartialEq)]
struct MediaRange {
    /// `type/subtype`, lower case.
    essence: String,
    /// Parameters other than `q`, names in lower case, values unquoted.
    params: Vec<(String, String)>,
    q: f32,
}

impl MediaRange {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `multipart/related` with this `type` (a missing `type`, or `*/*`, counts as
    /// `default`: the server's choice).
    fn multipart_of(&self, default: &str) -> Option<String> {
        (self.essence == "multipart/related").then(|| {
            let t = self.param("type").unwrap_or(default).trim();
            if matches!(t, "*/*" | "*") {
                default.to_string()
            } else {
                t.to_ascii_lowercase()
            }
        })
    }

    fn is_wildcard(&self) -> bool {
        matches!(self.essence.as_str(), "*/*" | "multipart/*")
    }
}

/// Split at `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_range(text: &str) -> Result<Option<MediaRange>, ApiError> {
    let mut pieces = split_unquoted(text, ';').into_iter();
    let essence = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() {
        return Ok(None);
    }
    let mut range = MediaRange {
        essence,
        params: Vec::new(),
        q: 1.0,
    };
    for p in pieces {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().trim_matches('"').trim().to_string();
        if k == "q" {
            range.q = v
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))
                .ok_or_else(|| bad(format!("bad q value {v:?} in Accept")))?;
        } else {
            range.params.push((k, v));
        }
    }
    Ok(Some(range))
}

/// The media ranges of the `Accept` headers and `accept` query parameters (PS3.18
/// 8.3.3.1), best first; ranges with `q=0` are left out. Empty when the client sent none.
fn accept_ranges(headers: &HeaderMap, uri: &Uri) -> Result<Vec<MediaRange>, ApiError> {
    let mut texts: Vec<String> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .map(str::to_string)
        .collect();
    if let Ok(UrlQuery(pairs)) = UrlQuery::<Vec<(String, String)>>::try_from_uri(uri) {
        // an unescaped `+` in a query string decodes as a space
        texts.extend(
            pairs
                .into_iter()
                .filter(|(k, _)| k == "accept")
                .map(|(_, v)| v.replace(' ', "+")),
        );
    }
    let mut ranges = Vec::new();
    for t in &texts {
        for r in split_unquoted(t, ',') {
            if let Some(r) = parse_range(r)? {
                if r.q > 0.0 {
                    ranges.push(r);
                }
            }
        }
    }
    // stable: equal weights keep the client's order
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    Ok(ranges)
}

/// The transfer syntaxes a client accepts for DICOM instances, best first; `None` is
/// "as stored" (no `transfer-syntax` parameter, or `*`).
fn dicom_syntaxes(ranges: &[MediaRange]) -> Result<Vec<Option<String>>, ApiError> {
    if ranges.is_empty() {
        return Ok(vec![None]);
    }
    let mut out = Vec::new();
    for r in ranges {
        let ts = if r.is_wildcard() {
            None
        } else if r.multipart_of(DICOM).as_deref() == Some(DICOM) {
            match r.param("transfer-syntax") {
                None | Some("*") => None,
                Some(uid) => Some(
                    path_uid(uid)
                        .map_err(|_| bad(format!("transfer-syntax={uid:?} is not a UID")))?,
                ),
            }
        } else {
            continue;
        };
        if !out.contains(&ts) {
            out.push(ts);
        }
    }
    if out.is_empty() {
        return Err(ApiError::NotAcceptable(format!(
            "instances are sent as multipart/related; type=\"{DICOM}\" only"
        )));
    }
    Ok(out)
}

/// How one instance goes out: the syntax of its part and the route there.
#[derive(Debug, Clone)]
struct Plan {
    record: InstanceRecord,
    path: PathBuf,
    ts: String,
    route: Route,
}

/// The syntax and route for an instance stored in `stored`, given what the client accepts
/// (`transcode::choose`: as stored first, never lossy for lossless data).
fn plan_syntax(
    stored: &str,
    has_pixels: bool,
    wanted: &[Option<String>],
) -> Option<(String, Route)> {
    let stored = renkei_model::uid::trim_uid(stored);
    if wanted.iter().any(Option::is_none) {
        return Some((stored.to_string(), Route::AsIs));
    }
    let uids: Vec<&str> = wanted.iter().flatten().map(String::as_str).collect();
    transcode::choose(stored, &uids, has_pixels).map(|(i, route)| (uids[i].to_string(), route))
}

// ---------------------------------------------------------------------------------------
// Resolving the resource

/// The instances a WADO-RS path names, checked against the hierarchy; 404 when the path
/// names nothing held.
fn resolve(
    store: &Store,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) -> Result<Vec<InstanceRecord>, ApiError> {
    if let Some(sop) = instance {
        return match store.instance(sop)? {
            Some(r) if r.study_uid == study && Some(r.series_uid.as_str()) == series => Ok(vec![r]),
            _ => Err(not_found(format!("no instance {sop} in this series"))),
        };
    }
    let series_uids = match series {
        Some(s) => match store.series(s)? {
            Some(r) if r.study_uid == study => vec![s.to_string()],
            _ => return Err(not_found(format!("no series {s} in study {study}"))),
        },
        None => store.study_series(study)?,
    };
    let mut out = Vec::new();
    for s in series_uids {
        for uid in store.series_instances(&s)? {
            if let Some(r) = store.instance(&uid)? {
                out.push(r);
            }
        }
    }
    if out.is_empty() {
        return Err(not_found(format!("no instances held for study {study}")));
    }
    Ok(out)
}

async fn resolve_async(
    state: &AppState,
    study: &str,
    series: Option<&str>,
    instance: Option<&str>,
) -> Result<Vec<InstanceRecord>, ApiError> {
    let study = path_uid(study)?;
    let series = series.map(path_uid).transpose()?;
    let instance = instance.map(path_uid).transpose()?;
    let store = state.store.clone();
    let share = state.share.clone();
    let actor = crate::auth::current_actor()?;
    tokio::task::spawn_blocking(move || {
        let records = resolve(&store, &study, series.as_deref(), instance.as_deref())?;
        permit(&store, &share, actor, &study)?;
        Ok(records)
    })
    .await?
}

/// The instances of the resource a path names.
async fn resolve_resource(
    state: &AppState,
    res: &Resource,
) -> Result<Vec<InstanceRecord>, ApiError> {
    resolve_async(
        state,
        &res.study,
        res.series.as_deref(),
        res.instance.as_deref(),
    )
    .await
}

/// The access policy for one WADO-RS request on `study`: 403 with the reason when the
/// actor may not read it; one audit record either way.
fn permit(store: &Store, share: &Share, actor: Actor, study: &str) -> Result<(), ApiError> {
    let key = store
        .study(study)?
        .ok_or_else(|| not_found(format!("no study {study}")))?
        .patient;
    let mut scope = share.image_scope(actor);
    let (allowed, regional) = scope.admit(&key)?;
    let patient = regional.unwrap_or_else(|| format!("{}|{}", key.issuer, key.patient_id));
    scope.finish("WADO-RS", AuditEvent::InstancesAccessed, &patient)?;
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "not permitted: {}",
            scope.last_reason
        )))
    }
}

// ---------------------------------------------------------------------------------------
// Responses

/// A quoted ETag from the parts that determine a representation.
fn etag<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// 304 when `If-None-Match` names `tag` (or `*`).
fn not_modified(headers: &HeaderMap, tag: &str) -> Option<Response> {
    let matches = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*");
    matches.then(|| {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(tag) {
            r.headers_mut().insert(ETAG, v);
        }
        r
    })
}

/// A response with its Content-Type, ETag and (when known) Content-Length.
fn respond(body: Body, content_type: &str, tag: &str, length: Option<u64>) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(ETAG, v);
    }
    // stored objects never change under their hash; clients revalidate with the ETag
    h.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    if let Some(n) = length {
        h.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    r
}

/// The multipart boundary of a response: derived from its ETag, so identical answers are
/// identical bytes; 32 hex digits do not occur in the parts by chance.
fn boundary_of(tag: &str) -> String {
    format!("renkei-{}", tag.trim_matches('"'))
}

fn part_header(boundary: &str, content_type: &str, len: u64) -> String {
    format!("--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n")
}

fn closing(boundary: &str) -> String {
    format!("--{boundary}--\r\n")
}

/// A `multipart/related` answer of parts computed in memory (frames, bulk data).
fn multipart_response(tag: &str, part_type: &str, parts: &[(String, Vec<u8>)]) -> Response {
    let boundary = boundary_of(tag);
    let body = multipart(&boundary, parts);
    let len = body.len() as u64;
    respond(
        Body::from(body),
        &format!("multipart/related; type=\"{part_type}\"; boundary={boundary}"),
        tag,
        Some(len),
    )
}

/// A whole multipart body built in memory (frames, bulk data: parts already computed).
fn multipart(boundary: &str, parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ct, data) in parts {
        out.extend_from_slice(part_header(boundary, ct, data.len() as u64).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(closing(boundary).as_bytes());
    out
}

type Chunk = Result<Bytes, std::io::Error>;

/// A body fed by a producer task through a bounded channel. When the client goes away,
/// the receiver is dropped and the producer's next send fails, which stops it. The stream
/// may be polled again after its end (the gzip layer does): it answers the end again.
fn channel_body() -> (mpsc::Sender<Chunk>, Body) {
    let (tx, mut rx) = mpsc::channel::<Chunk>(QUEUE);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (tx, Body::from_stream(stream))
}

/// The client stopped reading.
struct Gone;

async fn send(tx: &mpsc::Sender<Chunk>, bytes: impl Into<Bytes>) -> Result<(), Gone> {
    tx.send(Ok(bytes.into())).await.map_err(|_| Gone)
}

/// Abort the body: the client sees a truncated message, never a wrong one.
async fn abort(tx: &mpsc::Sender<Chunk>, what: String) {
    tracing::error!(error = %what, "WADO-RS response aborted");
    let _ = tx.send(Err(std::io::Error::other(what))).await;
}

/// Send `data` in chunks (zero-copy slices).
async fn send_bytes(tx: &mpsc::Sender<Chunk>, data: Bytes) -> Result<(), Gone> {
    let mut at = 0;
    while at < data.len() {
        let end = (at + CHUNK).min(data.len());
        send(tx, data.slice(at..end)).await?;
        at = end;
    }
    Ok(())
}

/// A stored file of `len` bytes as one multipart part: `header`, the file, CRLF. One
/// blocking read into a buffer of the exact size (not zeroed first); blob files never
/// change once published, so the length is the one the index recorded.
fn whole_part(header: String, path: &FsPath, len: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(header.len() + len as usize + 2);
    buf.extend_from_slice(header.as_bytes());
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(len).read_to_end(&mut buf))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if read as u64 != len {
        return Err(format!("{} is shorter than indexed", path.display()));
    }
    buf.extend_from_slice(b"\r\n");
    Ok(buf)
}

/// Stream a large file of `len` bytes in [`CHUNK`] pieces, each read on the blocking pool
/// into an unzeroed buffer; Err(Some(reason)) on a read failure.
async fn send_file(
    tx: &mpsc::Sender<Chunk>,
    path: &FsPath,
    len: u64,
) -> Result<(), Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut sent = 0u64;
    while sent < len {
        let want = (len - sent).min(CHUNK as u64);
        let (p, at) = (path.to_path_buf(), sent);
        let buf = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let mut f = std::fs::File::open(&p)?;
            f.seek(SeekFrom::Start(at))?;
            let mut buf = Vec::with_capacity(want as usize);
            f.take(want).read_to_end(&mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(|e| Some(e.to_string()))?
        .map_err(|e| Some(format!("cannot read {}: {e}", path.display())))?;
        if buf.len() as u64 != want {
            return Err(Some(format!("{} is shorter than indexed", path.display())));
        }
        sent += want;
        send(tx, buf).await.map_err(|Gone| None)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Instances (PS3.18 10.4)

/// The Part-10 file of `path` written in `ts` (a re-encoding or a transcode), as
/// `renkei_transcode` does it for C-MOVE and C-GET.
fn convert(path: &FsPath, ts: &str) -> Result<Vec<u8>, TranscodeError> {
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| TranscodeError::Read(format!("{}: {e}", path.display())))?;
    let obj = transcode::transcode_object(obj, ts)?;
    let mut out = Vec::new();
    obj.write_all(&mut out)
        .map_err(|e| TranscodeError::Write(e.to_string()))?;
    Ok(out)
}

/// A conversion that failed on this object's data (not on the node) is a 406: the client
/// may ask for the stored syntax instead.
fn convert_error(sop: &str, ts: &str, e: TranscodeError) -> ApiError {
    match e {
        TranscodeError::Target(_) | TranscodeError::Encode(_) | TranscodeError::Decode(_) => {
            ApiError::NotAcceptable(format!("instance {sop} cannot be sent in {ts}: {e}"))
        }
        other => internal(format!("{sop} to {ts}: {other}")),
    }
}

fn part_type(ts: &str) -> String {
    format!("{DICOM}; transfer-syntax={ts}")
}

/// `GET /dicom-web/studies/{study}`, `…/series/{series}`, `…/instances/{instance}`
pub(super) async fn instances(
    State(state): State<AppState>,
    Path(res): Path<Resource>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let wanted = dicom_syntaxes(&accept_ranges(&headers, &uri)?)?;
    let records = resolve_resource(&state, &res).await?;
    let mut plans = Vec::with_capacity(records.len());
    for r in records {
        let Some((ts, route)) = plan_syntax(&r.transfer_syntax, r.frames > 0, &wanted) else {
            return Err(ApiError::NotAcceptable(format!(
                "instance {} is stored in {} and cannot be sent without loss in any transfer \
                 syntax asked for",
                r.sop_uid, r.transfer_syntax
            )));
        };
        let path = state.store.blob_path(&r.blob_hash);
        plans.push(Plan {
            record: r,
            path,
            ts,
            route,
        });
    }
    let tag = etag(
        std::iter::once(&b"instances"[..]).chain(
            plans
                .iter()
                .flat_map(|p| [&p.record.blob_hash[..], p.ts.as_bytes()]),
        ),
    );
    if let Some(r) = not_modified(&headers, &tag) {
        return Ok(r);
    }
    let boundary = boundary_of(&tag);
    let content_type = format!("multipart/related; type=\"{DICOM}\"; boundary={boundary}");

    // a single converted instance is prepared before answering, so that a conversion
    // failure is a status code rather than a cut body
    let mut ready: Option<Bytes> = None;
    if let [p] = plans.as_slice() {
        if p.route != Route::AsIs {
            let (path, ts) = (p.path.clone(), p.ts.clone());
            let out = state
                .pixel_pool
                .run(move || convert(&path, &ts))
                .await
                .map_err(internal)?;
            ready = Some(Bytes::from(
                out.map_err(|e| convert_error(&p.record.sop_uid, &p.ts, e))?,
            ));
        }
    }
    // sizes of stored files: the whole length is known when every part is sent as is
    let sizes = {
        let paths: Vec<PathBuf> = plans.iter().map(|p| p.path.clone()).collect();
        tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()))
                .collect::<Result<Vec<u64>, _>>()
        })
        .await?
        .map_err(internal)?
    };
    let length = if let Some(b) = &ready {
        Some(b.len() as u64)
    } else if plans.iter().all(|p| p.route == Route::AsIs) {
        Some(sizes.iter().sum())
    } else {
        None
    }
    .map(|data: u64| {
        let headers: u64 = plans
            .iter()
            .zip(&sizes)
            .map(|(p, size)| {
                let len = ready.as_ref().map_or(*size, |b| b.len() as u64);
                part_header(&boundary, &part_type(&p.ts), len).len() as u64 + 2
            })
            .sum();
        data + headers + closing(&boundary).len() as u64
    });

    let (tx, body) = channel_body();
    let pool = state.pixel_pool.clone();
    tokio::spawn(async move {
        for (p, size) in plans.iter().zip(sizes) {
            let data = match (&p.route, ready.take()) {
                (_, Some(b)) => Some(b),
                (Route::AsIs, None) => None,
                (_, None) => {
                    let (path, ts) = (p.path.clone(), p.ts.clone());
                    match pool.run(move || convert(&path, &ts)).await {
                        Ok(Ok(out)) => Some(Bytes::from(out)),
                        Ok(Err(e)) => {
                            return abort(&tx, format!("{} to {}: {e}", p.record.sop_uid, p.ts))
                                .await
                        }
                        Err(e) => return abort(&tx, e.to_string()).await,
                    }
                }
            };
            let len = data.as_ref().map_or(size, |d| d.len() as u64);
            let header = part_header(&boundary, &part_type(&p.ts), len);
            if data.is_none() && size <= WHOLE_PART {
                // the common case (a CT or MR image): header, file and CRLF in one buffer,
                // one read without zeroing, one send
                let path = p.path.clone();
                let part = tokio::task::spawn_blocking(move || whole_part(header, &path, size))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                match part {
                    Ok(buf) => {
                        if send(&tx, buf).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(e) => return abort(&tx, e).await,
                }
            }
            if send(&tx, header).await.is_err() {
                return;
            }
            let sent = match data {
                Some(d) => send_bytes(&tx, d).await.map_err(|Gone| None),
                None => send_file(&tx, &p.path, size).await,
            };
            match sent {
                Ok(()) => {}
                Err(None) => return,
                Err(Some(e)) => return abort(&tx, e).await,
            }
            if send(&tx, &b"\r\n"[..]).await.is_err() {
                return;
            }
        }
        let _ = send(&tx, closing(&boundary)).await;
    });
    Ok(respond(body, &content_type, &tag, length))
}

// ---------------------------------------------------------------------------------------
// Metadata (PS3.18 10.4)

fn instance_url(base: &str, r: &InstanceRecord) -> String {
    format!(
        "{base}/studies/{}/series/{}/instances/{}",
        r.study_uid, r.series_uid, r.sop_uid
    )
}

/// Offset of the data set in a Part-10 file the node wrote: preamble, magic and the
/// explicit VR LE (0002,0000) group length (PS3.10 7.1).
fn dataset_offset(path: &FsPath) -> std::io::Result<u64> {
    use std::io::Read;
    let mut head = [0u8; 144];
    std::fs::File::open(path)?.read_exact(&mut head)?;
    if &head[128..132] != b"DICM" || head[132..136] != [0x02, 0, 0, 0] {
        return Err(std::io::Error::other(
            "not a Part-10 file with a group length",
        ));
    }
    Ok(144
        + u64::from(u32::from_le_bytes([
            head[140], head[141], head[142], head[143],
        ])))
}

/// Top-level text decoded by every value of Specific Character Set, where dicom-rs alone
/// would garble it (ISO 2022 code extensions; see `renkei_model::charset`).
fn fix_text(obj: &mut FileDicomObject<InMemDicomObject>, path: &FsPath) -> Result<(), String> {
    let charsets = CharacterSets::parse(&renkei_model::extract::text(
        obj,
        tags::SPECIFIC_CHARACTER_SET,
    ));
    if !charsets.needs_own_decoding() {
        return Ok(());
    }
    let ts_uid = renkei_model::uid::trim_uid(obj.meta().transfer_syntax()).to_string();
    let Some(ts) = TransferSyntaxRegistry.get(&ts_uid) else {
        return Ok(());
    };
    if ts_uid == transcode::DEFLATED_LE {
        return Ok(());
    }
    let offset = dataset_offset(path).map_err(|e| e.to_string())?;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let reader = std::io::BufReader::new(file);
    for (tag, vr, raw) in renkei_store::rawtext::raw_text_elements(reader, ts)? {
        let text = charsets.decode(&raw, vr == VR::PN);
        obj.put(DataElement::new(
            tag,
            vr,
            PrimitiveValue::from(text.trim_end_matches([' ', '\0'])),
        ));
    }
    Ok(())
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
    )
}

/// One instance's metadata: its header up to Pixel Data in DICOM JSON, with BulkDataURIs
/// for Pixel Data and top-level binary values above [`BULK_THRESHOLD`].
fn instance_metadata(
    path: &FsPath,
    r: &InstanceRecord,
    base: &str,
) -> Result<Map<String, Value>, String> {
    let mut obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    fix_text(&mut obj, path)?;
    let mut out = object_to_json(&obj);
    let url = instance_url(base, r);
    for elem in obj.iter() {
        let tag = elem.header().tag;
        if tag.group() == 0x0002 || !is_binary(elem.vr()) {
            continue;
        }
        if let DicomValue::Primitive(p) = elem.value() {
            if p.calculate_byte_len() > BULK_THRESHOLD {
                out.insert(
                    tag_key(tag),
                    json!({"vr": elem.vr().to_string(), "BulkDataURI": format!("{url}/bulkdata/{}", tag_key(tag))}),
                );
            }
        }
    }
    if r.frames > 0 {
        let native = transcode::is_native(obj.meta().transfer_syntax());
        let bits = obj
            .get(tags::BITS_ALLOCATED)
            .and_then(|e| e.to_int::<u16>().ok())
            .unwrap_or(8);
        let vr = if native && bits > 8 { "OW" } else { "OB" };
        out.insert(
            tag_key(tags::PIXEL_DATA),
            json!({"vr": vr, "BulkDataURI": format!("{url}/bulkdata/{}", tag_key(tags::PIXEL_DATA))}),
        );
    }
    Ok(out)
}

/// DICOM JSON, or plain JSON for a client that asks only for that (PS3.18 8.7.3).
fn json_media(ranges: &[MediaRange]) -> Result<&'static str, ApiError> {
    super::json_media(ranges.iter().map(|r| r.essence.as_str()), "metadata is")
}

/// `GET /dicom-web/studies/{study}/metadata`, `…/series/{series}/metadata`,
/// `…/instances/{instance}/metadata`
pub(super) async fn metadata(
    State(state): State<AppState>,
    Path(res): Path<Resource>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let media = json_media(&accept_ranges(&headers, &uri)?)?;
    let records = resolve_resource(&state, &res).await?;
    let base = base_url(&headers);
    let tag = etag(
        [&b"metadata"[..], base.as_bytes()]
            .into_iter()
            .chain(records.iter().map(|r| &r.blob_hash[..])),
    );
    if let Some(r) = not_modified(&headers, &tag) {
        return Ok(r);
    }
    let store = state.store.clone();
    let one = move |r: InstanceRecord, base: String, store: std::sync::Arc<Store>| async move {
        tokio::task::spawn_blocking(move || {
            let path = store.blob_path(&r.blob_hash);
            instance_metadata(&path, &r, &base)
                .and_then(|m| serde_json::to_vec(&Value::Object(m)).map_err(|e| e.to_string()))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
    };
    if records.len() == 1 {
        let mut body = b"[".to_vec();
        let r = records
            .into_iter()
            .next()
            .ok_or_else(|| internal("no record"))?;
        body.extend(one(r, base, store).await.map_err(internal)?);
        body.push(b']');
        let len = body.len() as u64;
        return Ok(respond(Body::from(body), media, &tag, Some(len)));
    }
    // one header at a time: memory stays at one instance's JSON whatever the study's size
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        if send(&tx, &b"["[..]).await.is_err() {
            return;
        }
        for (i, r) in records.into_iter().enumerate() {
            let sop = r.sop_uid.clone();
            let json = match one(r, base.clone(), store.clone()).await {
                Ok(j) => j,
                Err(e) => return abort(&tx, format!("metadata of {sop}: {e}")).await,
            };
            if i > 0 && send(&tx, &b","[..]).await.is_err() {
                return;
            }
            if send(&tx, json).await.is_err() {
                return;
            }
        }
        let _ = send(&tx, &b"]"[..]).await;
    });
    Ok(respond(body, media, &tag, None))
}

// ---------------------------------------------------------------------------------------
// Frames and bulk data (PS3.18 10.4)

/// A frame list (`1,3,5`, 1-based) as 0-based indexes.
fn frame_list(list: &str) -> Result<Vec<u32>, ApiError> {
    let frames: Vec<u32> = list
        .split(',')
        .map(|f| {
            f.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n - 1)
                .ok_or_else(|| {
                    bad(format!(
                        "{list:?} is not a list of frame numbers (1, 2, ...)"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    if frames.is_empty() {
        return Err(bad("no frame numbers"));
    }
    Ok(frames)
}

/// The media type of a compressed frame's bit stream (PS3.18 8.7.4),
/// None for native syntaxes.
fn frame_media_type(ts: &str) -> Option<&'static str> {
    Some(match renkei_model::uid::trim_uid(ts) {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => return None,
    })
}

/// What a frame request is answered with.
#[derive(Debug, Clone, PartialEq)]
enum FrameForm {
    /// Native little endian samples (`application/octet-stream`, Explicit VR LE).
    Native,
    /// The stored bit stream, in its media type.
    Stored(&'static str),
}

/// The frame form from Accept, for an instance stored in `stored` (PS3.18 8.7.3):
/// uncompressed bytes by default; the stored compressed stream when its media type is
/// asked for; 406 for another compressed type (the node does not re-encode frames).
fn frame_form(ranges: &[MediaRange], stored: &str) -> Result<FrameForm, ApiError> {
    if ranges.is_empty() {
        return Ok(FrameForm::Native);
    }
    let stored_type = frame_media_type(stored);
    let stored_uid = renkei_model::uid::trim_uid(stored);
    for r in ranges {
        if r.is_wildcard() {
            return Ok(FrameForm::Native);
        }
        let Some(t) = r.multipart_of(OCTET) else {
            continue;
        };
        let ts = r.param("transfer-syntax");
        if t == OCTET && matches!(ts, None | Some("*") | Some(EXPLICIT_LE)) {
            return Ok(FrameForm::Native);
        }
        let same_type = match (stored_type, t.as_str()) {
            (Some(s), t) => s == t || (s == "image/dicom-rle" && t == "image/x-dicom-rle"),
            _ => false,
        };
        // the stored bit stream, when its media type (and syntax, if named) is asked for
        if let (true, Some(s)) = (same_type, stored_type) {
            if matches!(ts, None | Some("*")) || ts == Some(stored_uid) {
                return Ok(FrameForm::Stored(s));
            }
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "frames of this instance are available as multipart/related; type=\"{OCTET}\"{}",
        stored_type.map_or(String::new(), |s| format!(" or type=\"{s}\""))
    )))
}

/// Native pixel data as little-endian bytes (dicom-rs holds OW as u16 values).
fn le_bytes(p: &PrimitiveValue) -> Option<Cow<'_, [u8]>> {
    Some(match p {
        PrimitiveValue::U8(v) => Cow::Borrowed(&v[..]),
        PrimitiveValue::U16(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::I16(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::U32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::I32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::F32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::F64(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::Empty => Cow::Borrowed(&[][..]),
        _ => return None,
    })
}

/// A job on the pixel pool failed: why, and whether it is the request's fault.
#[derive(Debug, thiserror::Error)]
enum PixelJobError {
    /// The object's pixels cannot be given in the form asked (406).
    #[error("{0}")]
    NotAcceptable(String),
    /// The node failed (500).
    #[error("{0}")]
    Internal(String),
}

impl From<PixelJobError> for ApiError {
    fn from(e: PixelJobError) -> Self {
        match e {
            PixelJobError::NotAcceptable(m) => ApiError::NotAcceptable(m),
            PixelJobError::Internal(m) => ApiError::Internal(m),
        }
    }
}

fn open_whole(path: &FsPath) -> Result<FileDicomObject<InMemDicomObject>, PixelJobError> {
    OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| PixelJobError::Internal(format!("{}: {e}", path.display())))
}

/// The fragments of frame `f` of encapsulated pixel data (PS3.5 A.4): one frame takes
/// them all; else one fragment a frame, else the Basic Offset Table.
fn stored_frame(
    offsets: &[u32],
    fragments: &[impl AsRef<[u8]>],
    frames: u32,
    f: u32,
) -> Option<Vec<u8>> {
    let cat = |r: std::ops::Range<usize>| -> Vec<u8> {
        fragments[r]
            .iter()
            .flat_map(|x| x.as_ref().to_vec())
            .collect()
    };
    let (n, f) = (frames as usize, f as usize);
    if f >= n || fragments.is_empty() {
        return None;
    }
    if n == 1 {
        return Some(cat(0..fragments.len()));
    }
    if fragments.len() == n {
        return Some(cat(f..f + 1));
    }
    if offsets.len() != n {
        return None;
    }
    let mut starts = Vec::with_capacity(fragments.len());
    let mut pos = 0u64;
    for frag in fragments {
        starts.push(pos);
        pos += 8 + frag.as_ref().len() as u64;
    }
    let begin = u64::from(offsets[f]);
    let end = offsets.get(f + 1).map_or(u64::MAX, |o| u64::from(*o));
    let first = starts.iter().position(|s| *s == begin)?;
    let last = starts.iter().rposition(|s| *s < end)?;
    (last >= first).then(|| cat(first..last + 1))
}

/// The bytes of the given frames of the object at `path`, in `form`.
fn frame_bytes(
    path: &FsPath,
    frames: &[u32],
    form: &FrameForm,
) -> Result<Vec<Vec<u8>>, PixelJobError> {
    let obj = open_whole(path)?;
    let info = renkei_transcode::decode::pixel_info(&obj)
        .map_err(|e| PixelJobError::NotAcceptable(e.to_string()))?;
    let pixel = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| PixelJobError::NotAcceptable("no Pixel Data".into()))?;
    let mut out = Vec::with_capacity(frames.len());
    for &f in frames {
        let bytes = match (form, pixel.value()) {
            (FrameForm::Stored(_), DicomValue::PixelSequence(seq)) => {
                stored_frame(seq.offset_table(), seq.fragments(), info.frames, f).ok_or_else(
                    || PixelJobError::Internal(format!("cannot find the fragments of frame {f}")),
                )?
            }
            // stored native samples, cut per frame (1-bit frames are not byte aligned:
            // decoded below instead)
            (FrameForm::Native, DicomValue::Primitive(p)) if info.bits_allocated % 8 == 0 => {
                let all = le_bytes(p)
                    .ok_or_else(|| PixelJobError::Internal("unexpected Pixel Data value".into()))?;
                // YBR_FULL_422 stores two samples a pixel (PS3.3 C.7.6.3.1.2)
                let samples = if info.photometric == Photometric::YbrFull422 {
                    2
                } else {
                    info.samples_per_pixel as usize
                };
                let len = info.rows as usize
                    * info.cols as usize
                    * samples
                    * (info.bits_allocated as usize / 8);
                let at = f as usize * len;
                all.get(at..at + len)
                    .ok_or_else(|| {
                        PixelJobError::Internal(format!("Pixel Data too short for frame {f}"))
                    })?
                    .to_vec()
            }
            (FrameForm::Native, _) => renkei_transcode::decode::decode_frame(&obj, f)
                .map_err(|e| PixelJobError::Internal(e.to_string()))?
                .samples
                .to_le_bytes(),
            (FrameForm::Stored(_), _) => {
                return Err(PixelJobError::NotAcceptable(
                    "the stored pixel data is not compressed".into(),
                ))
            }
        };
        out.push(bytes);
    }
    Ok(out)
}

/// `GET .../instances/{instance}/frames/{frames}`
pub(super) async fn frames(
    State(state): State<AppState>,
    Path(res): Path<Resource>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let list = res.frames.as_deref().unwrap_or_default();
    let wanted = frame_list(list)?;
    let ranges = accept_ranges(&headers, &uri)?;
    let r = single(&state, &res).await?;
    check_frames(&r, &wanted)?;
    let form = frame_form(&ranges, &r.transfer_syntax)?;
    let (ct, ts) = match &form {
        FrameForm::Native => (OCTET, EXPLICIT_LE.to_string()),
        FrameForm::Stored(t) => (*t, r.transfer_syntax.clone()),
    };
    let part_ct = format!("{ct}; transfer-syntax={ts}");
    let tag = etag([
        &b"frames"[..],
        &r.blob_hash[..],
        list.as_bytes(),
        part_ct.as_bytes(),
    ]);
    if let Some(resp) = not_modified(&headers, &tag) {
        return Ok(resp);
    }
    let path = state.store.blob_path(&r.blob_hash);
    let data = state
        .pixel_pool
        .run(move || frame_bytes(&path, &wanted, &form))
        .await
        .map_err(internal)??;
    let parts: Vec<(String, Vec<u8>)> = data.into_iter().map(|d| (part_ct.clone(), d)).collect();
    Ok(multipart_response(&tag, ct, &parts))
}

/// The one instance a path names.
async fn single(state: &AppState, res: &Resource) -> Result<InstanceRecord, ApiError> {
    resolve_resource(state, res)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| not_found("no such instance"))
}

/// 404 for an instance without pixel data or a frame beyond Number of Frames.
fn check_frames(r: &InstanceRecord, wanted: &[u32]) -> Result<(), ApiError> {
    if r.frames == 0 {
        return Err(not_found(format!("instance {} has no frames", r.sop_uid)));
    }
    // a frame named twice would be read and sent twice: `1,1,1,…` in one request line
    // could make a 512 KB frame gigabytes of response
    let mut seen = std::collections::HashSet::with_capacity(wanted.len());
    if let Some(f) = wanted.iter().find(|f| !seen.insert(**f)) {
        return Err(ApiError::BadRequest(format!(
            "frame {} is listed more than once",
            f + 1
        )));
    }
    if let Some(f) = wanted.iter().find(|f| **f >= r.frames) {
        return Err(not_found(format!(
            "frame {} requested, instance {} has {}",
            f + 1,
            r.sop_uid,
            r.frames
        )));
    }
    Ok(())
}

/// The value of top-level attribute `tag` as octets: Pixel Data as native little-endian
/// samples of every frame (encapsulated data decoded), another binary value as stored.
fn bulk_bytes(path: &FsPath, tag: Tag) -> Result<Option<Vec<u8>>, PixelJobError> {
    let obj = if tag == tags::PIXEL_DATA {
        open_whole(path)?
    } else {
        OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|e| PixelJobError::Internal(format!("{}: {e}", path.display())))?
    };
    let Some(elem) = obj.get(tag) else {
        return Ok(None);
    };
    match elem.value() {
        DicomValue::Primitive(p) if is_binary(elem.vr()) => Ok(le_bytes(p).map(Cow::into_owned)),
        DicomValue::Primitive(_) => Ok(None),
        DicomValue::PixelSequence(_) => {
            let info = renkei_transcode::decode::pixel_info(&obj)
                .map_err(|e| PixelJobError::NotAcceptable(e.to_string()))?;
            let total = info
                .decoded_frame_bytes()
                .saturating_mul(info.frames as usize);
            if total > transcode::MAX_TRANSCODE_BYTES {
                return Err(PixelJobError::NotAcceptable(format!(
                    "{total} bytes decoded is more than one answer may hold; ask for frames"
                )));
            }
            let mut out = Vec::with_capacity(total);
            for f in 0..info.frames {
                let frame = renkei_transcode::decode::decode_frame(&obj, f)
                    .map_err(|e| PixelJobError::Internal(e.to_string()))?;
                out.extend(frame.samples.to_le_bytes());
            }
            Ok(Some(out))
        }
        DicomValue::Sequence(_) => Ok(None),
    }
}

/// `GET .../instances/{instance}/bulkdata/{tag}` (top-level binary attributes; Pixel Data
/// as uncompressed octets).
pub(super) async fn bulkdata(
    State(state): State<AppState>,
    Path(res): Path<Resource>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let tag_text = res.tag.as_deref().unwrap_or_default();
    let tag: Tag = (tag_text.len() == 8 && tag_text.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| tag_text.parse::<Tag>().ok())
        .flatten()
        .ok_or_else(|| bad(format!("{tag_text:?} is not a tag (8 hex digits)")))?;
    let ranges = accept_ranges(&headers, &uri)?;
    if !ranges.is_empty()
        && !ranges
            .iter()
            .any(|r| r.is_wildcard() || r.multipart_of(OCTET).as_deref() == Some(OCTET))
    {
        return Err(ApiError::NotAcceptable(format!(
            "bulk data is available as multipart/related; type=\"{OCTET}\" only"
        )));
    }
    let r = single(&state, &res).await?;
    let tag_etag = etag([&b"bulk"[..], &r.blob_hash[..], tag_text.as_bytes()]);
    if let Some(resp) = not_modified(&headers, &tag_etag) {
        return Ok(resp);
    }
    let path = state.store.blob_path(&r.blob_hash);
    let data = state
        .pixel_pool
        .run(move || bulk_bytes(&path, tag))
        .await
        .map_err(internal)??
        .ok_or_else(|| not_found(format!("no bulk data {tag_text} in this instance")))?;
    Ok(multipart_response(
        &tag_etag,
        OCTET,
        &[(OCTET.to_string(), data)],
    ))
}

// ---------------------------------------------------------------------------------------
// Rendered and thumbnail (PS3.18 10.4, 8.3.5)

/// The rendering parameters of a request (PS3.18 8.3.5).
#[derive(Debug, Clone, PartialEq)]
struct RenderParams {
    window: Option<(f64, f64, Option<VoiFunction>)>,
    viewport: Option<(u32, u32)>,
    quality: Option<u8>,
}

fn render_params(uri: &Uri) -> Result<RenderParams, ApiError> {
    let UrlQuery(pairs) =
        UrlQuery::<Vec<(String, String)>>::try_from_uri(uri).map_err(|e| bad(e.body_text()))?;
    let mut p = RenderParams {
        window: None,
        viewport: None,
        quality: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "window" => {
                let parts: Vec<&str> = v.split(',').map(str::trim).collect();
                let num = |s: &str| s.parse::<f64>().ok().filter(|x| x.is_finite());
                let (Some(c), Some(w)) = (
                    parts.first().and_then(|s| num(s)),
                    parts.get(1).and_then(|s| num(s)),
                ) else {
                    return Err(bad(format!(
                        "window={v:?}: expected center,width[,function]"
                    )));
                };
                // PS3.18 8.3.5: linear, linear-exact, sigmoid
                let f = match parts.get(2).map(|s| s.to_ascii_lowercase()) {
                    None => None,
                    Some(f) => Some(match f.as_str() {
                        "linear" => VoiFunction::Linear,
                        "linear-exact" | "linear_exact" => VoiFunction::LinearExact,
                        "sigmoid" => VoiFunction::Sigmoid,
                        _ => return Err(bad(format!("window function {f:?} unknown"))),
                    }),
                };
                let min = if f == Some(VoiFunction::Linear) || f.is_none() {
                    1.0
                } else {
                    f64::MIN_POSITIVE
                };
                if parts.len() > 3 || w < min {
                    return Err(bad(format!("window={v:?}: width must be at least {min}")));
                }
                p.window = Some((c, w, f));
            }
            "viewport" => {
                let parts: Vec<&str> = v.split(',').map(str::trim).collect();
                if parts.len() != 2 {
                    return Err(bad(format!(
                        "viewport={v:?}: expected vw,vh (cropping is not supported)"
                    )));
                }
                let side = |s: &str| {
                    s.parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_VIEWPORT).contains(n))
                };
                match (side(parts[0]), side(parts[1])) {
                    (Some(w), Some(h)) => p.viewport = Some((w, h)),
                    _ => {
                        return Err(bad(format!(
                            "viewport={v:?}: sides from 1 to {MAX_VIEWPORT}"
                        )))
                    }
                }
            }
            "quality" => {
                p.quality = Some(
                    v.trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|q| (1..=100).contains(q))
                        .ok_or_else(|| bad(format!("quality={v:?}: 1 to 100")))?,
                );
            }
            // PS3.18 8.3.5: annotation is optional for the origin server
            _ => {}
        }
    }
    Ok(p)
}

/// JPEG (the default) or PNG, from Accept (PS3.18 8.7.4, rendered media types).
fn image_media(ranges: &[MediaRange]) -> Result<&'static str, ApiError> {
    for r in ranges {
        match r.essence.as_str() {
            "image/jpeg" | "image/*" | "*/*" => return Ok("image/jpeg"),
            "image/png" => return Ok("image/png"),
            _ => {}
        }
    }
    if ranges.is_empty() {
        return Ok("image/jpeg");
    }
    Err(ApiError::NotAcceptable(
        "rendered images are available as image/jpeg or image/png".into(),
    ))
}

/// Render frame `frame` (0-based) of `r` per the request.
async fn render(
    state: &AppState,
    r: &InstanceRecord,
    frame: u32,
    headers: &HeaderMap,
    uri: &Uri,
    default_size: Option<(u32, u32)>,
) -> Result<Response, ApiError> {
    let params = render_params(uri)?;
    let media = image_media(&accept_ranges(headers, uri)?)?;
    check_frames(r, &[frame])?;
    let options = RenderOptions {
        window: params.window.map(|(c, w, _)| (c, w)),
        voi_function: params.window.and_then(|(_, _, f)| f),
        size: params.viewport.or(default_size),
        format: if media == "image/png" {
            OutputFormat::Png
        } else {
            OutputFormat::Jpeg(params.quality.unwrap_or(DEFAULT_QUALITY))
        },
    };
    let tag = etag([
        &b"rendered"[..],
        &r.blob_hash[..],
        &frame.to_le_bytes()[..],
        format!("{options:?}").as_bytes(),
    ]);
    if let Some(resp) = not_modified(headers, &tag) {
        return Ok(resp);
    }
    let path = state.store.blob_path(&r.blob_hash);
    let image = state
        .pixel_pool
        .run(move || {
            let obj = open_whole(&path)?;
            renkei_transcode::render::render_frame(&obj, frame, &options)
                .map_err(|e| PixelJobError::NotAcceptable(format!("cannot render: {e}")))
        })
        .await
        .map_err(internal)??;
    let len = image.len() as u64;
    Ok(respond(Body::from(image), media, &tag, Some(len)))
}

fn one_frame(list: &str) -> Result<u32, ApiError> {
    match frame_list(list)?.as_slice() {
        [f] => Ok(*f),
        _ => Err(bad("one frame number at a time for rendered frames")),
    }
}

/// The instance and frame (0-based) an instance or frame path names: the first frame
/// when the path has none.
async fn instance_frame(
    state: &AppState,
    res: &Resource,
) -> Result<(InstanceRecord, u32), ApiError> {
    let frame = res.frames.as_deref().map(one_frame).transpose()?;
    Ok((single(state, res).await?, frame.unwrap_or(0)))
}

/// `GET .../instances/{instance}/rendered` (the first frame of a multi-frame object),
/// `.../frames/{frame}/rendered`
pub(super) async fn rendered(
    State(state): State<AppState>,
    Path(res): Path<Resource>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (r, frame) = instance_frame(&state, &res).await?;
    render(&state, &r, frame, &headers, &uri, None).await
}

const THUMB: Option<(u32, u32)> = Some((THUMBNAIL_SIZE, THUMBNAIL_SIZE));

/// `GET .../thumbnail` of a study, series, instance or frame: a study or series is
/// represented by one of its instances ([`representative`]).
pub(super) async fn thumbnail(
    State(state): State<AppState>,
    Path(res): Path<Resource>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (r, frame) = if res.instance.is_some() {
        instance_frame(&state, &res).await?
    } else {
        (representative(resolve_resource(&state, &res).await?)?, 0)
    };
    render(&state, &r, frame, &headers, &uri, THUMB).await
}

/// The instance that stands for a series or study: of the first series (in index order)
/// holding images, the one in the middle by Instance Number.
fn representative(records: Vec<InstanceRecord>) -> Result<InstanceRecord, ApiError> {
    let mut images: Vec<InstanceRecord> = records.into_iter().filter(|r| r.frames > 0).collect();
    let Some(first_series) = images.first().map(|r| r.series_uid.clone()) else {
        return Err(not_found("no images to make a thumbnail of"));
    };
    images.retain(|r| r.series_uid == first_series);
    images.sort_by_key(|r| r.instance_number.unwrap_or(i32::MAX));
    let mid = images.len() / 2;
    images
        .into_iter()
        .nth(mid)
        .ok_or_else(|| not_found("no images to make a thumbnail of"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(accept: &str) -> Vec<MediaRange> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
        accept_ranges(&h, &"/x".parse().unwrap()).unwrap()
    }

    const JLS: &str = "1.2.840.10008.1.2.4.80";

    #[test]
    fn accept_is_parsed_with_quotes_and_weights() {
        let r = ranges(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1;q=0.5, \
             multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.80, image/png;q=0",
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].param("transfer-syntax"), Some(JLS));
        assert_eq!(r[1].q, 0.5);
        assert_eq!(
            dicom_syntaxes(&r).unwrap(),
            vec![Some(JLS.to_string()), Some(EXPLICIT_LE.to_string())]
        );
    }

    #[test]
    fn instances_negotiate_as_stored_or_lossless_only() {
        // absent, `*` or a wildcard: as stored
        assert_eq!(dicom_syntaxes(&[]).unwrap(), vec![None]);
        let star = ranges("multipart/related; type=\"application/dicom\"; transfer-syntax=*");
        assert_eq!(dicom_syntaxes(&star).unwrap(), vec![None]);
        assert_eq!(
            plan_syntax(JLS, true, &[None]),
            Some((JLS.to_string(), Route::AsIs))
        );
        // JPEG-LS asked as explicit LE: decoded
        let le = vec![Some(EXPLICIT_LE.to_string())];
        assert_eq!(
            plan_syntax(JLS, true, &le),
            Some((EXPLICIT_LE.to_string(), Route::Transcode))
        );
        // lossy JPEG for lossless data: nothing
        let jpeg = vec![Some("1.2.840.10008.1.2.4.50".to_string())];
        assert_eq!(plan_syntax(EXPLICIT_LE, true, &jpeg), None);
        // other media types: 406
        for a in [
            "application/json",
            "application/dicom",
            "multipart/related; type=\"image/jpeg\"",
        ] {
            assert!(
                matches!(dicom_syntaxes(&ranges(a)), Err(ApiError::NotAcceptable(_))),
                "{a}"
            );
        }
        assert!(matches!(
            dicom_syntaxes(&ranges(
                "multipart/related; type=\"application/dicom\"; transfer-syntax=x"
            )),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn frame_lists() {
        assert_eq!(frame_list("1").unwrap(), vec![0]);
        assert_eq!(frame_list("1, 3,2").unwrap(), vec![0, 2, 1]);
        for bad in ["", "0", "a", "1,,2", "-1", "1.5"] {
            assert!(frame_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frame_media_types() {
        assert_eq!(frame_form(&[], JLS).unwrap(), FrameForm::Native);
        let jls = ranges("multipart/related; type=\"image/jls\"");
        assert_eq!(
            frame_form(&jls, JLS).unwrap(),
            FrameForm::Stored("image/jls")
        );
        assert!(frame_form(&jls, EXPLICIT_LE).is_err());
        assert!(frame_form(&ranges("multipart/related; type=\"image/jp2\""), JLS).is_err());
        let octet = ranges(
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1",
        );
        assert_eq!(frame_form(&octet, JLS).unwrap(), FrameForm::Native);
    }

    #[test]
    fn render_parameters() {
        let p = |q: &str| render_params(&format!("/x?{q}").parse().unwrap());
        let r = p("window=40,400,sigmoid&viewport=256,128&quality=70").unwrap();
        assert_eq!(r.window, Some((40.0, 400.0, Some(VoiFunction::Sigmoid))));
        assert_eq!(r.viewport, Some((256, 128)));
        assert_eq!(r.quality, Some(70));
        for q in [
            "window=40",
            "window=40,0",
            "window=a,b",
            "window=1,2,cubic",
            "viewport=0,10",
            "viewport=1,2,3,4,5,6",
            "quality=0",
            "quality=101",
        ] {
            assert!(p(q).is_err(), "{q}");
        }
        assert_eq!(image_media(&ranges("image/png")).unwrap(), "image/png");
        assert_eq!(image_media(&ranges("*/*")).unwrap(), "image/jpeg");
        assert!(image_media(&ranges("image/gif")).is_err());
    }

    #[test]
    fn multipart_framing() {
        let body = multipart("b", &[("t".into(), b"ab".to_vec()), ("t".into(), vec![])]);
        assert_eq!(
            body,
            b"--b\r\nContent-Type: t\r\nContent-Length: 2\r\n\r\nab\r\n\
              --b\r\nContent-Type: t\r\nContent-Length: 0\r\n\r\n\r\n--b--\r\n"
                .to_vec()
        );
    }

    #[test]
    fn stored_frames_by_fragments_and_offsets() {
        let frags = vec![vec![1u8, 2], vec![3, 4], vec![5, 6]];
        assert_eq!(
            stored_frame(&[], &frags, 1, 0),
            Some(vec![1, 2, 3, 4, 5, 6])
        );
        assert_eq!(stored_frame(&[], &frags, 3, 1), Some(vec![3, 4]));
        // two frames: [0] and [1, 2], offsets of item tags (8 + 2 bytes each)
        assert_eq!(stored_frame(&[0, 10], &frags, 2, 1), Some(vec![3, 4, 5, 6]));
        assert_eq!(stored_frame(&[], &frags, 2, 1), None);
    }
}
