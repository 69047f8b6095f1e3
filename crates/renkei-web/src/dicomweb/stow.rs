//! STOW-RS, the Store Instances transaction (PS3.18 10.5): `POST /dicom-web/studies` and
//! `POST /dicom-web/studies/{study}` with a `multipart/related; type="application/dicom"`
//! body, one PS3.10 file per part, or a `multipart/related; type="application/dicom+json"`
//! body of metadata and bulk data parts (`stow_bulk.rs`).
//!
//! The body is parsed as a stream (`multer` over axum's body stream), never collected. Of
//! each part the node keeps at most its first [`HEAD_LIMIT`] bytes in memory, to read the
//! file meta group (transfer syntax, SOP class and instance) and the data set up to Study
//! Instance UID; the rest goes straight into the spool of [`Store::begin_ingest`] as it
//! arrives, and [`Store::finish_ingest`] makes the instance durable on the blocking pool:
//! the C-STORE path, unchanged.
//!
//! An instance of another study than the one in the path is refused before anything is
//! written (PS3.18 10.5.1, study target resource). The answer (PS3.18 10.5.3) is a DICOM
//! JSON data set with ReferencedSOPSequence and FailedSOPSequence; 200 when every instance
//! was stored without warning, 202 when some failed or carry a warning, 409 when all
//! failed.
//! XML metadata (`application/dicom+xml`) gets 415.
//!
//! A body larger than the node's `max_stow_bytes` is answered 413: at once when its
//! Content-Length says so, else when the streamed body grows past it (instances received
//! whole before that stay stored). Every stored instance goes to the same post-store hooks
//! as a C-STORE: the DICOM metrics and the storage-compression queue.

use std::io::{Cursor, Read};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, WARNING};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::Codec;
use dicom_encoding::TransferSyntaxIndex;
use dicom_parser::dataset::{DataSetReader, DataToken};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::{json, Map, Value};

use renkei_model::uid::{is_valid_uid, trim_uid};
use renkei_model::InstanceRecord;
use renkei_share::Received;
use renkei_store::{Ingest, IngestMeta, IngestOutcome, Store, StoreError};

use super::json::tag_key;
use super::{base_url, DICOM_JSON};
use crate::{ApiError, AppState};

/// Most bytes of one part kept in memory to find its file meta group and the data set's
/// UIDs (they come first in any ordinary object).
pub const HEAD_LIMIT: usize = 1024 * 1024;

/// First size at which a part's head is examined; doubled until [`HEAD_LIMIT`].
const FIRST_LOOK: usize = 16 * 1024;

/// Largest file meta group accepted (PS3.10 7.1; ours is about 200 bytes).
const MAX_META: usize = 64 * 1024;

/// What the parts of a request are (the `type` parameter of its Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parts {
    /// PS3.10 files (`application/dicom`, or no `type`).
    Files,
    /// DICOM JSON metadata and bulk data (`application/dicom+json`).
    MetadataAndBulk,
}

/// Failure Reason (0008,1197) and Warning Reason (0008,1196) values (PS3.18 10.5.3,
/// from PS3.4 B.2.3 and C.14.1.1).
pub mod reason {
    /// Processing failure: the node failed to store a valid object.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Refused, out of resources (disk below the reserve, or full).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Data set does not match the SOP class, or the study of the request.
    pub const DATASET_MISMATCH: u16 = 0xA900;
    /// Cannot understand: not a PS3.10 file, or the data set does not parse.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// The transfer syntax of the file is not supported.
    pub const TRANSFER_SYNTAX_NOT_SUPPORTED: u16 = 0xC122;
    /// Warning, coercion of data elements: the file meta group named other UIDs than the
    /// data set, which was stored under its own.
    pub const COERCION: u16 = 0xB000;
}

/// `POST /dicom-web/studies`
pub(super) async fn studies(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    stow(state, None, headers, body).await
}

/// `POST /dicom-web/studies/{study}`
pub(super) async fn study(
    State(state): State<AppState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !is_valid_uid(&study) {
        return Err(ApiError::BadRequest(format!("{study:?} is not a UID")));
    }
    stow(state, Some(study), headers, body).await
}

/// What became of one part (or one instance of a metadata part).
#[derive(Debug)]
pub(super) struct PartResult {
    /// SOP Class UID, as stored or as far as it is known (empty when unknown).
    pub(super) class: String,
    /// SOP Instance UID, likewise.
    pub(super) instance: String,
    pub(super) outcome: Result<Stored, Failure>,
}

#[derive(Debug)]
pub(super) struct Stored {
    study: String,
    series: String,
    warning: Option<u16>,
    /// New, already held unchanged, or replaced.
    outcome: IngestOutcome,
}

#[derive(Debug)]
pub(super) struct Failure {
    pub(super) reason: u16,
    pub(super) comment: String,
}

pub(super) fn failure(reason: u16, comment: impl Into<String>) -> Failure {
    Failure {
        reason,
        comment: comment.into(),
    }
}

/// The Failure Reason of a store error (as C-STORE maps it, PS3.4 B.2.3; a failure of the
/// node itself is a processing failure here).
pub(super) fn failure_of(e: &StoreError) -> Failure {
    match e {
        StoreError::OutOfSpace { .. } => failure(reason::OUT_OF_RESOURCES, "out of storage space"),
        StoreError::Unparseable(m) => {
            failure(reason::CANNOT_UNDERSTAND, format!("cannot parse: {m}"))
        }
        StoreError::Invalid(m) => failure(reason::DATASET_MISMATCH, m.clone()),
        other => {
            tracing::warn!(error = %other, "STOW-RS: storage error");
            failure(reason::PROCESSING_FAILURE, "internal storage error")
        }
    }
}

/// A JSON problem body with any status (`ApiError` has no 415).
fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "status": status.as_u16(), "detail": detail.into() })),
    )
        .into_response()
}

/// The answer's media type from `Accept`: DICOM JSON, or plain JSON for a client that asks
/// only for that (PS3.18 10.5.2); else 406. XML answers are not produced.
fn negotiate(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    let types: Vec<String> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(super::essence)
        .filter(|t| !t.is_empty())
        .collect();
    super::json_media(types.iter().map(String::as_str), "the store response is")
}

/// A media type and its parameters (names lower-cased, quotes removed).
pub(super) fn media_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let essence = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    (essence, params)
}

/// The parts and multipart boundary of a STOW-RS request, or the answer refusing it: 415
/// for anything but `multipart/related` of `application/dicom` or `application/dicom+json`
/// parts (PS3.18 10.5.1), 400 without a boundary.
fn request_boundary(headers: &HeaderMap) -> Result<(Parts, String), (StatusCode, String)> {
    let unsupported = |what: &str| {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{what}: STOW-RS takes multipart/related bodies of type=\"application/dicom\" \
                 (PS3.10 files) or type=\"application/dicom+json\" (metadata and bulk data); \
                 application/dicom+xml is not supported"
            ),
        )
    };
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(unsupported("no Content-Type"));
    };
    let Ok(value) = value.to_str() else {
        return Err(unsupported("unreadable Content-Type"));
    };
    let (essence, params) = media_type(value);
    if essence != "multipart/related" {
        return Err(unsupported(&format!("Content-Type {essence}")));
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let parts = match param("type") {
        None => Parts::Files,
        Some(t) if t.eq_ignore_ascii_case("application/dicom") => Parts::Files,
        Some(t) if t.eq_ignore_ascii_case(DICOM_JSON) => Parts::MetadataAndBulk,
        Some(t) => return Err(unsupported(&format!("parts of type {t}"))),
    };
    match param("boundary") {
        Some(b) if !b.is_empty() => Ok((parts, b.to_string())),
        _ => Err((
            StatusCode::BAD_REQUEST,
            "multipart/related without a boundary parameter".to_string(),
        )),
    }
}

async fn stow(
    state: AppState,
    want_study: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let media = negotiate(&headers)?;
    let (parts, boundary) = match request_boundary(&headers) {
        Ok(b) => b,
        Err((status, detail)) => return Ok(problem(status, detail)),
    };
    let limit = state.dicomweb.max_stow_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| limit > 0 && len > limit) {
        tracing::warn!(
            content_length = len,
            limit,
            "STOW-RS: body too large, refused"
        );
        return Err(ApiError::PayloadTooLarge(format!(
            "the request body of {len} bytes is larger than this node takes ({limit} bytes)"
        )));
    }
    let constraints = if limit > 0 {
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit))
    } else {
        multer::Constraints::new()
    };
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut results = Results {
        state: &state,
        list: Vec::new(),
        received: Received::default(),
    };
    let received = match parts {
        Parts::Files => receive_files(&mut multipart, want_study.as_deref(), &mut results).await,
        Parts::MetadataAndBulk => {
            super::stow_bulk::receive(&mut multipart, want_study.as_deref(), &mut results).await
        }
    };
    audit_received(&state, results.received).await;
    let results = results.list;
    if let Err(e) = received {
        return Ok(broken(&e, &results));
    }
    if results.is_empty() {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "the multipart body holds no part",
        ));
    }
    Ok(answer(
        &results,
        want_study.as_deref(),
        &base_url(&headers),
        media,
    ))
}

/// The Files body: one PS3.10 file a part.
async fn receive_files(
    multipart: &mut multer::Multipart<'_>,
    want_study: Option<&str>,
    results: &mut Results<'_>,
) -> Result<(), multer::Error> {
    while let Some(field) = multipart.next_field().await? {
        let r = receive_part(results.state, field, want_study).await?;
        results.push(r);
    }
    Ok(())
}

/// The results of a request so far, and the node's post-store hooks.
pub(super) struct Results<'a> {
    pub(super) state: &'a AppState,
    list: Vec<PartResult>,
    /// What was stored, by study, for the request's audit records.
    received: Received,
}

impl Results<'_> {
    /// Add a result: logged when it failed, counted in the DICOM metrics either way.
    pub(super) fn push(&mut self, r: PartResult) {
        let metrics = &self.state.metrics;
        match &r.outcome {
            Ok(s) => {
                self.received.stored(&s.study, s.outcome);
                metrics.stores_ok.fetch_add(1, Ordering::Relaxed)
            }
            Err(f) => {
                self.received.refused(&f.comment);
                tracing::warn!(
                    result = self.list.len() + 1,
                    sop = %r.instance,
                    reason = format_args!("{:#06X}", f.reason),
                    comment = %f.comment,
                    "STOW-RS: instance not stored"
                );
                metrics.stores_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        self.list.push(r);
    }
}

/// The hooks of a durable store, as the DICOM side runs them after C-STORE: latency and
/// duplicate metrics, and the storage-compression queue for new or replaced instances (a
/// full queue is not waited on; the compressor's sweep catches up).
pub(super) fn after_store(
    state: &AppState,
    outcome: IngestOutcome,
    rec: &InstanceRecord,
    bytes: u64,
    took: Duration,
) {
    let metrics = &state.metrics;
    metrics.observe_store(took);
    metrics.bytes_received.fetch_add(bytes, Ordering::Relaxed);
    match outcome {
        IngestOutcome::Stored => tracing::debug!(sop = %rec.sop_uid, "STOW-RS: stored"),
        IngestOutcome::Duplicate => {
            metrics.stores_duplicate.fetch_add(1, Ordering::Relaxed);
            tracing::info!(sop = %rec.sop_uid, "STOW-RS: already stored with identical content")
        }
        IngestOutcome::Replaced => {
            tracing::info!(sop = %rec.sop_uid, "STOW-RS: replaced the stored version")
        }
    }
    if let (Some(tx), IngestOutcome::Stored | IngestOutcome::Replaced) =
        (&state.dicomweb.stored, outcome)
    {
        let _ = tx.try_send(rec.sop_uid.clone());
    }
}

/// The `Stored` result of a durable instance.
pub(super) fn stored(
    rec: InstanceRecord,
    outcome: IngestOutcome,
    warning: Option<u16>,
) -> PartResult {
    PartResult {
        class: rec.sop_class_uid,
        instance: rec.sop_uid,
        outcome: Ok(Stored {
            study: rec.study_uid,
            series: rec.series_uid,
            warning,
            outcome,
        }),
    }
}

/// Record what the request stored, one audit record per study (renkei_share's `received`
/// module), whether or not the body ended well: what was stored is stored.
async fn audit_received(state: &AppState, received: Received) {
    if received.is_empty() {
        return;
    }
    let Ok(actor) = crate::auth::current_actor() else {
        return; // the token gate let nobody through without a principal
    };
    let share = state.share.clone();
    let written =
        tokio::task::spawn_blocking(move || share.audit_received(&actor, "STOW-RS", &received))
            .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the audit record of STOW-RS"),
        Err(e) => tracing::warn!(error = %e, "cannot write the audit record of STOW-RS"),
    }
}

/// The answer to a body that ended badly: 413 past `max_stow_bytes`, else 400 for a body
/// that is not a well-formed multipart message (PS3.18 10.5.3.1). Instances received whole
/// before were stored, and a re-send of them is harmless ("already stored").
fn broken(e: &multer::Error, done: &[PartResult]) -> Response {
    let stored = done.iter().filter(|r| r.outcome.is_ok()).count();
    if let multer::Error::StreamSizeExceeded { limit } = e {
        tracing::warn!(limit, stored, "STOW-RS: body too large, cut");
        return ApiError::PayloadTooLarge(format!(
            "the request body is larger than this node takes ({limit} bytes); {stored} \
             instance(s) received whole before the limit were stored"
        ))
        .into_response();
    }
    tracing::warn!(error = %e, stored, "STOW-RS: malformed multipart body");
    problem(
        StatusCode::BAD_REQUEST,
        format!(
            "malformed multipart body after {} part(s), {stored} of them stored: {e}",
            done.len()
        ),
    )
}

/// Where a part is: its head still being gathered, being spooled, or refused (the rest of
/// it is read and dropped).
enum PartState {
    Head { bytes: Vec<u8>, next_look: usize },
    Spooling(Box<Spooling>),
    Refused,
}

struct Spooling {
    ingest: Ingest,
    /// The file meta's SOP Instance and Class UIDs, to tell whether the data set's won.
    meta_instance: String,
    meta_class: String,
}

/// What the head of a part says.
enum Look {
    /// Not enough bytes yet.
    More,
    /// Refused before anything is written, with the SOP Class and Instance UIDs as far
    /// as they are known.
    Refuse(Failure, [String; 2]),
    /// Store it: the ingest metadata and where the data set starts in the head.
    Start { meta: IngestMeta, dataset_at: usize },
}

/// Receive one part: examine its head, spool it, make it durable. An error is a broken
/// body (the request ends); a refused or failed instance is a result.
async fn receive_part(
    state: &AppState,
    mut field: multer::Field<'_>,
    want_study: Option<&str>,
) -> Result<PartResult, multer::Error> {
    let store = &state.store;
    let mut received = 0u64;
    let mut result = PartResult {
        class: String::new(),
        instance: String::new(),
        outcome: Err(failure(reason::CANNOT_UNDERSTAND, "empty part")),
    };
    let mut part = match field.content_type().map(|m| m.essence_str().to_string()) {
        Some(t) if !t.eq_ignore_ascii_case("application/dicom") => {
            result.outcome = Err(failure(
                reason::CANNOT_UNDERSTAND,
                format!("a part of type {t}, not application/dicom"),
            ));
            PartState::Refused
        }
        _ => PartState::Head {
            bytes: Vec::new(),
            next_look: FIRST_LOOK,
        },
    };
    while let Some(chunk) = field.chunk().await? {
        received += chunk.len() as u64;
        match &mut part {
            PartState::Head { bytes, next_look } => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() >= *next_look {
                    *next_look = (*next_look * 2).min(HEAD_LIMIT);
                    let at_limit = bytes.len() >= HEAD_LIMIT;
                    let look = look(bytes, false, at_limit, want_study);
                    if !matches!(look, Look::More) {
                        part = start(store, look, bytes, &mut result);
                    }
                }
            }
            PartState::Spooling(s) => {
                // a buffered write to the page cache, as C-STORE does on the runtime thread
                if let Err(e) = s.ingest.append(&chunk) {
                    result.outcome = Err(failure_of(&e));
                    part = PartState::Refused;
                }
            }
            PartState::Refused => {}
        }
    }
    if let PartState::Head { bytes, .. } = &mut part {
        let look = look(bytes, true, false, want_study);
        part = start(store, look, bytes, &mut result);
    }
    let PartState::Spooling(s) = part else {
        return Ok(result);
    };
    let Spooling {
        ingest,
        meta_instance,
        meta_class,
    } = *s;
    // the part is whole: from here on, as C-STORE from its last fragment
    let started = Instant::now();
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.finish_ingest(ingest)).await {
        Ok(Ok((outcome, rec))) => {
            after_store(state, outcome, &rec, received, started.elapsed());
            let coerced = rec.sop_uid != meta_instance || rec.sop_class_uid != meta_class;
            Ok(stored(rec, outcome, coerced.then_some(reason::COERCION)))
        }
        Ok(Err(e)) => {
            result.outcome = Err(failure_of(&e));
            Ok(result)
        }
        Err(e) => {
            tracing::warn!(error = %e, "STOW-RS: store task failed");
            result.outcome = Err(failure(reason::PROCESSING_FAILURE, "store task failed"));
            Ok(result)
        }
    }
}

/// Act on what the head says: start the ingest with the head's data set bytes, refuse, or
/// keep gathering.
fn start(store: &Store, look: Look, head: &mut Vec<u8>, result: &mut PartResult) -> PartState {
    match look {
        // only a final look can be taken here, and a final look never asks for more
        Look::More => PartState::Head {
            bytes: std::mem::take(head),
            next_look: HEAD_LIMIT,
        },
        Look::Refuse(f, [class, instance]) => {
            result.class = class;
            result.instance = instance;
            result.outcome = Err(f);
            PartState::Refused
        }
        Look::Start { meta, dataset_at } => {
            result.class = meta.sop_class_uid.clone();
            result.instance = meta.sop_instance_uid.clone();
            let (meta_instance, meta_class) =
                (meta.sop_instance_uid.clone(), meta.sop_class_uid.clone());
            let begun = store.begin_ingest(meta).and_then(|mut ingest| {
                // the sender's facility issues local IDs that come without an issuer
                if let Some(f) = crate::auth::current_facility() {
                    ingest.set_default_issuer(&f);
                }
                ingest.append(&head[dataset_at..])?;
                Ok(ingest)
            });
            *head = Vec::new();
            match begun {
                Ok(ingest) => PartState::Spooling(Box::new(Spooling {
                    ingest,
                    meta_instance,
                    meta_class,
                })),
                Err(e) => {
                    result.outcome = Err(failure_of(&e));
                    PartState::Refused
                }
            }
        }
    }
}

/// Read a part's head: its file meta group and the data set up to Study Instance UID.
/// `complete`: the head is the whole part; `at_limit`: it will not grow further.
fn look(head: &[u8], complete: bool, at_limit: bool, want_study: Option<&str>) -> Look {
    let final_look = complete || at_limit;
    let unknown = || [String::new(), String::new()];
    let meta = match parse_meta(head, complete) {
        Ok(m) => m,
        Err(MetaError::Incomplete) if !final_look => return Look::More,
        Err(MetaError::Incomplete) => {
            let f = failure(
                reason::CANNOT_UNDERSTAND,
                "truncated PS3.10 file meta group",
            );
            return Look::Refuse(f, unknown());
        }
        Err(MetaError::Invalid(m)) => {
            return Look::Refuse(failure(reason::CANNOT_UNDERSTAND, m), unknown())
        }
    };
    let meta_uids = [meta.sop_class.clone(), meta.sop_instance.clone()];
    let Some(ts) = TransferSyntaxRegistry.get(&meta.transfer_syntax) else {
        let f = failure(
            reason::TRANSFER_SYNTAX_NOT_SUPPORTED,
            format!("transfer syntax {} is not supported", meta.transfer_syntax),
        );
        return Look::Refuse(f, meta_uids);
    };
    let scan = scan_dataset(&head[meta.dataset_at..], ts);
    if !scan.reached_study_end && !final_look {
        return Look::More;
    }
    // the file meta names the object as a C-STORE command does; the data set's own UIDs
    // fill in what the meta lacks, and win in `finish_ingest` when they differ
    let pick = |from_meta: &str, from_dataset: &Option<String>| {
        if is_valid_uid(trim_uid(from_meta)) {
            trim_uid(from_meta).to_string()
        } else {
            from_dataset
                .clone()
                .unwrap_or_else(|| from_meta.to_string())
        }
    };
    let class = pick(&meta.sop_class, &scan.sop_class);
    let instance = pick(&meta.sop_instance, &scan.sop_instance);
    if let Some(want) = want_study {
        let refusal = match (&scan.study, &scan.error, complete) {
            (Some(study), _, _) if study != want => Some(failure(
                reason::DATASET_MISMATCH,
                format!("Study Instance UID {study} is not the study of the request {want}"),
            )),
            (Some(_), _, _) => None,
            // an instance whose study cannot be told is not stored under a given study
            (None, Some(e), true) => Some(failure(
                reason::CANNOT_UNDERSTAND,
                format!("cannot parse: {e}"),
            )),
            (None, None, true) => Some(failure(reason::DATASET_MISMATCH, "no Study Instance UID")),
            (None, _, false) => Some(failure(
                reason::DATASET_MISMATCH,
                format!(
                    "Study Instance UID not found in the first {} KiB",
                    HEAD_LIMIT / 1024
                ),
            )),
        };
        if let Some(f) = refusal {
            return Look::Refuse(f, [class, instance]);
        }
    }
    Look::Start {
        meta: IngestMeta {
            sop_class_uid: class,
            sop_instance_uid: instance,
            transfer_syntax: meta.transfer_syntax,
            source_ae: String::new(),
        },
        dataset_at: meta.dataset_at,
    }
}

/// What the file meta group (PS3.10 7.1) of a part says.
#[derive(Debug, PartialEq)]
struct PartMeta {
    sop_class: String,
    sop_instance: String,
    transfer_syntax: String,
    /// Offset of the data set in the part.
    dataset_at: usize,
}

#[derive(Debug, PartialEq)]
enum MetaError {
    /// More bytes are needed.
    Incomplete,
    /// Not a PS3.10 file.
    Invalid(String),
}

/// Parse the preamble, `DICM` and the group 0002 elements (explicit VR little endian, with
/// or without a group length). Lenient where it costs nothing: a missing preamble.
fn parse_meta(b: &[u8], complete: bool) -> Result<PartMeta, MetaError> {
    let mut pos = if b.len() >= 132 && &b[128..132] == b"DICM" {
        132
    } else if b.starts_with(b"DICM") {
        4
    } else if b.len() < 132 && !complete {
        return Err(MetaError::Incomplete);
    } else {
        return Err(MetaError::Invalid(
            "not a PS3.10 file: no DICM prefix".into(),
        ));
    };
    let (mut class, mut instance, mut ts) = (None, None, None);
    loop {
        if pos > MAX_META {
            return Err(MetaError::Invalid(format!(
                "file meta group larger than {} KiB",
                MAX_META / 1024
            )));
        }
        if b.len() < pos + 2 {
            if complete {
                break; // a file with no data set: left to the store to refuse
            }
            return Err(MetaError::Incomplete);
        }
        if u16::from_le_bytes([b[pos], b[pos + 1]]) != 0x0002 {
            break;
        }
        let Some(h) = b.get(pos..pos + 8) else {
            return Err(MetaError::Incomplete);
        };
        let element = u16::from_le_bytes([h[2], h[3]]);
        let long = matches!(
            &h[4..6],
            b"OB"
                | b"OW"
                | b"OF"
                | b"OD"
                | b"OL"
                | b"OV"
                | b"SQ"
                | b"SV"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"UV"
        );
        let (len, header) = if long {
            let Some(l) = b.get(pos + 8..pos + 12) else {
                return Err(MetaError::Incomplete);
            };
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize, 12)
        } else {
            (u16::from_le_bytes([h[6], h[7]]) as usize, 8)
        };
        if len > MAX_META {
            return Err(MetaError::Invalid(format!(
                "file meta element (0002,{element:04X}) of {len} bytes"
            )));
        }
        let Some(value) = b.get(pos + header..pos + header + len) else {
            return Err(MetaError::Incomplete);
        };
        let text = || {
            String::from_utf8_lossy(value)
                .trim_end_matches(['\0', ' '])
                .to_string()
        };
        match element {
            0x0002 => class = Some(text()),
            0x0003 => instance = Some(text()),
            0x0010 => ts = Some(text()),
            _ => {}
        }
        pos += header + len;
    }
    let transfer_syntax = ts.filter(|t| !t.is_empty()).ok_or_else(|| {
        MetaError::Invalid("the file meta group has no Transfer Syntax UID".into())
    })?;
    Ok(PartMeta {
        sop_class: class.unwrap_or_default(),
        sop_instance: instance.unwrap_or_default(),
        transfer_syntax,
        dataset_at: pos,
    })
}

/// The data set's UIDs as far as the head holds them.
#[derive(Debug, Default)]
struct Scan {
    sop_class: Option<String>,
    sop_instance: Option<String>,
    study: Option<String>,
    /// An attribute after Study Instance UID was reached (so the head held it if any).
    reached_study_end: bool,
    /// The parser stopped on this (the head ends in an element, or the data is broken).
    error: Option<String>,
}

/// Read the top-level data set tokens up to Study Instance UID (0020,000D).
fn scan_dataset(bytes: &[u8], ts: &dicom_encoding::TransferSyntax) -> Scan {
    let mut scan = Scan::default();
    let source: Box<dyn Read + '_> = match ts.codec() {
        Codec::Dataset(Some(adapter)) => adapter.adapt_reader(Box::new(Cursor::new(bytes))),
        _ => Box::new(Cursor::new(bytes)),
    };
    let reader = match DataSetReader::new_with_ts(source, ts) {
        Ok(r) => r,
        Err(e) => {
            scan.error = Some(e.to_string());
            return scan;
        }
    };
    let mut depth = 0usize;
    let mut wanted: Option<Tag> = None;
    for token in reader {
        let token = match token {
            Ok(t) => t,
            Err(e) => {
                scan.error = Some(e.to_string());
                return scan;
            }
        };
        match token {
            DataToken::ElementHeader(h) if depth == 0 => {
                if h.tag > tags::STUDY_INSTANCE_UID {
                    scan.reached_study_end = true;
                    return scan;
                }
                wanted = [
                    tags::SOP_CLASS_UID,
                    tags::SOP_INSTANCE_UID,
                    tags::STUDY_INSTANCE_UID,
                ]
                .contains(&h.tag)
                .then_some(h.tag);
            }
            DataToken::PrimitiveValue(v) => {
                if let Some(tag) = wanted.take() {
                    let uid = trim_uid(&v.to_str()).to_string();
                    match tag {
                        tags::SOP_CLASS_UID => scan.sop_class = Some(uid),
                        tags::SOP_INSTANCE_UID => scan.sop_instance = Some(uid),
                        _ => scan.study = Some(uid),
                    }
                }
            }
            DataToken::SequenceStart { tag, .. } => {
                if depth == 0 && tag > tags::STUDY_INSTANCE_UID {
                    scan.reached_study_end = true;
                    return scan;
                }
                depth += 1;
            }
            DataToken::PixelSequenceStart => {
                if depth == 0 {
                    scan.reached_study_end = true;
                    return scan;
                }
                depth += 1;
            }
            DataToken::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    scan
}

/// The Store Instances Response (PS3.18 10.5.3): the data set and the HTTP status.
fn answer(
    results: &[PartResult],
    want_study: Option<&str>,
    base: &str,
    media: &'static str,
) -> Response {
    let uid = |v: &str| {
        if v.is_empty() {
            json!({ "vr": "UI" })
        } else {
            json!({ "vr": "UI", "Value": [v] })
        }
    };
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut warnings = Vec::new();
    let mut studies: Vec<&str> = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let mut item = Map::new();
        item.insert(tag_key(tags::REFERENCED_SOP_CLASS_UID), uid(&r.class));
        item.insert(tag_key(tags::REFERENCED_SOP_INSTANCE_UID), uid(&r.instance));
        match &r.outcome {
            Ok(s) => {
                if !studies.contains(&s.study.as_str()) {
                    studies.push(&s.study);
                }
                let url = format!(
                    "{base}/studies/{}/series/{}/instances/{}",
                    s.study, s.series, r.instance
                );
                item.insert(
                    tag_key(tags::RETRIEVE_URL),
                    json!({ "vr": "UR", "Value": [url] }),
                );
                if let Some(w) = s.warning {
                    item.insert(
                        tag_key(tags::WARNING_REASON),
                        json!({ "vr": "US", "Value": [w] }),
                    );
                }
                referenced.push(Value::Object(item));
            }
            Err(f) => {
                item.insert(
                    tag_key(tags::FAILURE_REASON),
                    json!({ "vr": "US", "Value": [f.reason] }),
                );
                failed.push(Value::Object(item));
                warnings.push(format!("part {}: {}", i + 1, f.comment));
            }
        }
    }
    let mut body = Map::new();
    // the study's URL when the request was for one study, or all it stored is of one
    let study_url = want_study.or(match studies.as_slice() {
        [one] => Some(*one),
        _ => None,
    });
    if let Some(study) = study_url {
        body.insert(
            tag_key(tags::RETRIEVE_URL),
            json!({ "vr": "UR", "Value": [format!("{base}/studies/{study}")] }),
        );
    }
    let any_warning = referenced
        .iter()
        .any(|i| i.get(tag_key(tags::WARNING_REASON)).is_some());
    let status = if referenced.is_empty() {
        StatusCode::CONFLICT
    } else if !failed.is_empty() || any_warning {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if !failed.is_empty() {
        body.insert(
            tag_key(tags::FAILED_SOP_SEQUENCE),
            json!({ "vr": "SQ", "Value": failed }),
        );
    }
    if !referenced.is_empty() {
        body.insert(
            tag_key(tags::REFERENCED_SOP_SEQUENCE),
            json!({ "vr": "SQ", "Value": referenced }),
        );
    }
    let mut response = (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static(media))],
        Json(Value::Object(body)),
    )
        .into_response();
    // the reasons in words, for people (PS3.18 8.10.3 Warning header); a few at most
    for w in warnings.iter().take(10) {
        let text: String = w
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .filter(|&c| c != '"' && c != '\\')
            .take(200)
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("299 renkei: \"{text}\"")) {
            response.headers_mut().append(WARNING, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(tag: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = vec![0x02, 0x00];
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(vr);
        if vr == b"OB" {
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        v.extend_from_slice(value);
        v
    }

    fn part_head(with_preamble: bool) -> Vec<u8> {
        let mut b = if with_preamble {
            vec![0u8; 128]
        } else {
            Vec::new()
        };
        b.extend_from_slice(b"DICM");
        b.extend(element(0x0001, b"OB", &[0, 1]));
        b.extend(element(0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0"));
        b.extend(element(0x0003, b"UI", b"1.2.3.4"));
        b.extend(element(0x0010, b"UI", b"1.2.840.10008.1.2.1\0"));
        b
    }

    #[test]
    fn reads_the_file_meta_group() {
        for preamble in [true, false] {
            let mut b = part_head(preamble);
            let meta_end = b.len();
            // (0008,0016) UI, the data set's first element
            b.extend_from_slice(&[0x08, 0x00, 0x16, 0x00, b'U', b'I', 2, 0, b'1', 0]);
            let m = parse_meta(&b, false).unwrap();
            assert_eq!(m.sop_class, "1.2.840.10008.5.1.4.1.1.2");
            assert_eq!(m.sop_instance, "1.2.3.4");
            assert_eq!(m.transfer_syntax, "1.2.840.10008.1.2.1");
            assert_eq!(m.dataset_at, meta_end);
            // every shorter prefix asks for more, never misreads
            for n in 0..meta_end + 1 {
                assert_eq!(
                    parse_meta(&b[..n], false),
                    Err(MetaError::Incomplete),
                    "{n}"
                );
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_part_10_file() {
        assert!(matches!(
            parse_meta(&[0u8; 200], false),
            Err(MetaError::Invalid(_))
        ));
        assert!(matches!(
            parse_meta(b"hello", true),
            Err(MetaError::Invalid(_))
        ));
        let mut no_ts = vec![0u8; 128];
        no_ts.extend_from_slice(b"DICM");
        no_ts.extend(element(0x0003, b"UI", b"1.2.3.4"));
        no_ts.extend_from_slice(&[0x08, 0x00, 0x16, 0x00]);
        assert!(matches!(
            parse_meta(&no_ts, false),
            Err(MetaError::Invalid(_))
        ));
    }

    #[test]
    fn takes_multipart_related_of_dicom_or_dicom_json() {
        let headers = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            h
        };
        let ok = request_boundary(&headers(
            "multipart/related; type=\"application/dicom\"; boundary=\"0f3c-41ef\"",
        ));
        assert_eq!(ok.ok(), Some((Parts::Files, "0f3c-41ef".to_string())));
        let ok = request_boundary(&headers("Multipart/Related; boundary=abc"));
        assert_eq!(ok.ok(), Some((Parts::Files, "abc".to_string())));
        let ok = request_boundary(&headers(
            "multipart/related; type=\"application/dicom+json\"; boundary=b",
        ));
        assert_eq!(ok.ok(), Some((Parts::MetadataAndBulk, "b".to_string())));
        for (ct, status) in [
            ("application/dicom", 415),
            ("application/dicom+json", 415),
            (
                "multipart/related; type=\"application/dicom+xml\"; boundary=a",
                415,
            ),
            ("multipart/form-data; boundary=a", 415),
            ("multipart/related; type=\"application/dicom\"", 400),
        ] {
            let status_of = request_boundary(&headers(ct))
                .err()
                .map(|(s, _)| s.as_u16());
            assert_eq!(status_of, Some(status), "{ct}");
        }
        assert_eq!(
            request_boundary(&HeaderMap::new())
                .err()
                .map(|(s, _)| s.as_u16()),
            Some(415)
        );
    }

    #[test]
    fn negotiates_the_answer() {
        let accept = |a: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT, HeaderValue::from_str(a).unwrap());
            negotiate(&h).ok()
        };
        assert_eq!(negotiate(&HeaderMap::new()).ok(), Some(DICOM_JSON));
        assert_eq!(accept("application/dicom+json"), Some(DICOM_JSON));
        assert_eq!(accept("application/json"), Some("application/json"));
        assert_eq!(accept("*/*"), Some(DICOM_JSON));
        assert_eq!(accept("application/dicom+xml"), None);
    }

    #[test]
    fn statuses_follow_the_results() {
        let ok = |uid: &str| PartResult {
            class: "1.2".into(),
            instance: uid.into(),
            outcome: Ok(Stored {
                study: "1.9".into(),
                series: "1.8".into(),
                warning: None,
                outcome: IngestOutcome::Stored,
            }),
        };
        let bad = || PartResult {
            class: String::new(),
            instance: String::new(),
            outcome: Err(failure(reason::CANNOT_UNDERSTAND, "broken")),
        };
        let status = |rs: &[PartResult]| answer(rs, None, "/dicom-web", DICOM_JSON).status();
        assert_eq!(status(&[ok("1.1")]), StatusCode::OK);
        assert_eq!(status(&[ok("1.1"), bad()]), StatusCode::ACCEPTED);
        assert_eq!(status(&[bad(), bad()]), StatusCode::CONFLICT);
    }
}
