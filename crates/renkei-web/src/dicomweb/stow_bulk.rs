//! STOW-RS of metadata and bulk data (PS3.18 10.5.1.2.2): a
//! `multipart/related; type="application/dicom+json"` body whose metadata part is a DICOM
//! JSON array of instances (PS3.18 F.2) and whose other parts are bulk data, each named by
//! a `Content-Location` equal to a `BulkDataURI` of the metadata.
//!
//! Each instance is read back with [`json_read`](super::json_read), encoded as a data set
//! and fed to the same durable ingest as a PS3.10 part ([`Store::begin_ingest`],
//! [`Store::finish_ingest`]):
//! - in Explicit VR Little Endian, with native Pixel Data from an `application/octet-stream`
//!   part (or InlineBinary);
//! - in the compressed transfer syntax of a Pixel Data part of an image type
//!   (`image/jls; transfer-syntax=1.2.840.10008.1.2.4.80`, or the type's default syntax),
//!   the part's bytes being the single frame's bit stream (one fragment). Multi-frame
//!   compressed Pixel Data is refused: one part cannot be cut into frames.
//!
//! An instance is stored as soon as the metadata and every bulk data part it names have
//! arrived, so memory holds the bulk data of the instances still incomplete (one instance
//! when the parts follow the metadata's order), at most [`MAX_HELD`] bytes; metadata parts
//! are read whole, at most [`MAX_METADATA`] bytes in all per request. An instance that cannot be
//! read (no UIDs, a malformed attribute, a BulkDataURI no part answers) is a failed
//! instance with Failure Reason 0xC000; the others are stored.
//!
//! [`Store::begin_ingest`]: renkei_store::Store::begin_ingest
//! [`Store::finish_ingest`]: renkei_store::Store::finish_ingest

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::header::{CONTENT_LOCATION, CONTENT_TYPE};
use dicom_core::value::{PixelFragmentSequence, PrimitiveValue};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::Value;

use renkei_model::uid::is_valid_uid;
use renkei_store::IngestMeta;
use renkei_transcode::transcode::{self, EXPLICIT_LE};

use super::json::tag_key;
use super::json_read::{bulk_uris, object_from_json, top_level_text, ElementValue};
use super::stow::{
    after_store, failure, failure_of, media_type, reason, stored, Failure, PartResult, Results,
};
use super::DICOM_JSON;
use crate::AppState;

/// Most metadata one request may carry (each part is parsed whole and waits, parsed, for
/// its bulk data).
pub(super) const MAX_METADATA: usize = 64 << 20;

/// Most bulk data held at once for instances not yet complete.
pub(super) const MAX_HELD: usize = 1 << 30;

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const OCTET: &str = "application/octet-stream";

/// One bulk data part, by its Content-Location.
#[derive(Debug)]
struct BulkPart {
    /// Its media type (lower case) and `transfer-syntax` parameter.
    media: String,
    transfer_syntax: Option<String>,
    /// Its bytes, or why they were not kept.
    data: Result<Bytes, String>,
    /// An instance took it: it goes when no instance waiting names it.
    used: bool,
}

/// An instance of the metadata waiting for its bulk data.
#[derive(Debug)]
struct Pending {
    json: Value,
    class: String,
    instance: String,
    uris: Vec<String>,
}

/// Receive a metadata-and-bulk-data body; results go to `results` as instances complete.
pub(super) async fn receive(
    multipart: &mut multer::Multipart<'_>,
    want_study: Option<&str>,
    results: &mut Results<'_>,
) -> Result<(), multer::Error> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut parts: HashMap<String, BulkPart> = HashMap::new();
    let mut held = 0usize;
    let mut metadata = 0usize;
    let mut number = 0usize;
    while let Some(mut field) = multipart.next_field().await? {
        number += 1;
        let (media, params) = field
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type)
            .unwrap_or_else(|| (OCTET.to_string(), Vec::new()));
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_string())
        };
        if media == DICOM_JSON || media == "application/json" {
            // MAX_METADATA bounds the request's metadata, not each part: parsed metadata
            // waits in `pending` for its bulk data, so many parts must not add up
            let room = MAX_METADATA.saturating_sub(metadata);
            let (data, size) = read_part(&mut field, room).await?;
            match data {
                Ok(bytes) => {
                    metadata += bytes.len();
                    add_metadata(&bytes, want_study, &mut pending, results)
                }
                Err(_) => results.push(unknown(format!(
                    "metadata past {} MiB in one request ({size} bytes in this part): send \
                     fewer instances per request",
                    MAX_METADATA >> 20
                ))),
            }
        } else {
            let location = field
                .headers()
                .get(CONTENT_LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string());
            let room = MAX_HELD.saturating_sub(held);
            let (data, size) = read_part(&mut field, room).await?;
            let Some(location) = location else {
                tracing::warn!(
                    part = number,
                    size,
                    "STOW-RS: bulk data part without Content-Location ignored"
                );
                continue;
            };
            let data = data.map_err(|_| {
                format!(
                    "its bulk data part was not kept: more than {} MiB of bulk data waited \
                     for its instances",
                    MAX_HELD >> 20
                )
            });
            if let Ok(d) = &data {
                held += d.len();
            }
            let part = BulkPart {
                media,
                transfer_syntax: param("transfer-syntax"),
                data,
                used: false,
            };
            if let Some(old) = parts.insert(location.clone(), part) {
                held -= old.data.map_or(0, |d| d.len());
                tracing::warn!(%location, "STOW-RS: two bulk data parts with one Content-Location; the last is taken");
            }
        }
        complete(&mut pending, &mut parts, &mut held, results).await;
    }
    for p in pending {
        let missing: Vec<&str> = p
            .uris
            .iter()
            .filter(|u| !parts.contains_key(u.as_str()))
            .map(String::as_str)
            .collect();
        let f = failure(
            reason::CANNOT_UNDERSTAND,
            format!(
                "no bulk data part has the Content-Location of BulkDataURI {}",
                missing.join(", ")
            ),
        );
        results.push(PartResult {
            class: p.class,
            instance: p.instance,
            outcome: Err(f),
        });
    }
    let unused = parts.values().filter(|p| !p.used).count();
    if unused > 0 {
        tracing::warn!(parts = unused, "STOW-RS: bulk data parts no instance named");
    }
    Ok(())
}

/// A failed instance whose UIDs are not known.
fn unknown(comment: String) -> PartResult {
    PartResult {
        class: String::new(),
        instance: String::new(),
        outcome: Err(failure(reason::CANNOT_UNDERSTAND, comment)),
    }
}

/// A part's bytes when there are at most `max` of them (else its size, the rest drained),
/// and its size.
async fn read_part(
    field: &mut multer::Field<'_>,
    max: usize,
) -> Result<(Result<Bytes, usize>, usize), multer::Error> {
    let mut data = Vec::new();
    let mut size = 0usize;
    while let Some(chunk) = field.chunk().await? {
        size += chunk.len();
        if size <= max {
            data.extend_from_slice(&chunk);
        } else {
            data = Vec::new();
        }
    }
    let data = if size <= max {
        Ok(Bytes::from(data))
    } else {
        Err(size)
    };
    Ok((data, size))
}

/// The instances of a metadata part: refused at once when their UIDs are missing or of
/// another study than the request's, else waiting for their bulk data.
fn add_metadata(
    bytes: &[u8],
    want_study: Option<&str>,
    pending: &mut Vec<Pending>,
    results: &mut Results<'_>,
) {
    let items = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => items,
        Ok(one @ Value::Object(_)) => vec![one],
        Ok(_) => {
            return results.push(unknown(
                "the metadata part is not a JSON array of data sets".into(),
            ))
        }
        Err(e) => return results.push(unknown(format!("the metadata part is not JSON: {e}"))),
    };
    for json in items {
        let class = top_level_text(&json, tags::SOP_CLASS_UID).unwrap_or_default();
        let instance = top_level_text(&json, tags::SOP_INSTANCE_UID).unwrap_or_default();
        match check_uids(&json, want_study) {
            Ok(()) => pending.push(Pending {
                uris: bulk_uris(&json).into_iter().map(|(_, u)| u).collect(),
                json,
                class,
                instance,
            }),
            Err(f) => results.push(PartResult {
                class,
                instance,
                outcome: Err(f),
            }),
        }
    }
}

/// The UIDs an instance must have (0xC000 without them), and the study of the request
/// (0xA900 for another).
fn check_uids(json: &Value, want_study: Option<&str>) -> Result<(), Failure> {
    if !json.is_object() {
        return Err(failure(
            reason::CANNOT_UNDERSTAND,
            "an instance of the metadata is not a JSON object",
        ));
    }
    for (tag, name) in [
        (tags::SOP_CLASS_UID, "SOP Class UID"),
        (tags::SOP_INSTANCE_UID, "SOP Instance UID"),
        (tags::STUDY_INSTANCE_UID, "Study Instance UID"),
        (tags::SERIES_INSTANCE_UID, "Series Instance UID"),
    ] {
        match top_level_text(json, tag) {
            Some(uid) if is_valid_uid(&uid) => {}
            Some(uid) => {
                return Err(failure(
                    reason::CANNOT_UNDERSTAND,
                    format!("{name} {uid:?} is not a UID"),
                ))
            }
            None => {
                return Err(failure(
                    reason::CANNOT_UNDERSTAND,
                    format!("no {name} ({})", tag_key(tag)),
                ))
            }
        }
    }
    let study = top_level_text(json, tags::STUDY_INSTANCE_UID).unwrap_or_default();
    match want_study {
        Some(want) if want != study => Err(failure(
            reason::DATASET_MISMATCH,
            format!("Study Instance UID {study} is not the study of the request {want}"),
        )),
        _ => Ok(()),
    }
}

/// Store every waiting instance whose bulk data has all arrived, and let go of the parts
/// no waiting instance names any more.
async fn complete(
    pending: &mut Vec<Pending>,
    parts: &mut HashMap<String, BulkPart>,
    held: &mut usize,
    results: &mut Results<'_>,
) {
    let mut i = 0;
    while i < pending.len() {
        if !pending[i].uris.iter().all(|u| parts.contains_key(u)) {
            i += 1;
            continue;
        }
        let p = pending.remove(i);
        // the parts it needs, shared (Bytes) with the blocking task
        let mut needed = HashMap::new();
        for uri in &p.uris {
            if let Some(part) = parts.get_mut(uri) {
                part.used = true;
                needed.insert(
                    uri.clone(),
                    (
                        part.media.clone(),
                        part.transfer_syntax.clone(),
                        part.data.clone(),
                    ),
                );
            }
        }
        let r = store_instance(results.state, p, needed).await;
        results.push(r);
    }
    parts.retain(|uri, part| {
        let keep = !part.used || pending.iter().any(|p| p.uris.contains(uri));
        if !keep {
            *held -= part.data.as_ref().map_or(0, |d| d.len());
        }
        keep
    });
}

/// The bulk data parts one instance names: media type, `transfer-syntax`, bytes.
type Needed = HashMap<String, (String, Option<String>, Result<Bytes, String>)>;

/// Build one instance and make it durable, on the blocking pool.
async fn store_instance(state: &AppState, p: Pending, needed: Needed) -> PartResult {
    let state = state.clone();
    let Pending {
        json,
        class,
        instance,
        ..
    } = p;
    let (c, i) = (class.clone(), instance.clone());
    let facility = crate::auth::current_facility();
    let task = tokio::task::spawn_blocking(move || {
        let (dataset, ts) = encode(&json, &needed)?;
        let started = Instant::now();
        let meta = IngestMeta {
            sop_class_uid: c,
            sop_instance_uid: i,
            transfer_syntax: ts,
            source_ae: String::new(),
        };
        let durable = state.store.begin_ingest(meta).and_then(|mut ingest| {
            if let Some(f) = &facility {
                ingest.set_default_issuer(f);
            }
            ingest.append(&dataset)?;
            state.store.finish_ingest(ingest)
        });
        match durable {
            Ok((outcome, rec)) => {
                after_store(
                    &state,
                    outcome,
                    &rec,
                    dataset.len() as u64,
                    started.elapsed(),
                );
                Ok((outcome, rec))
            }
            Err(e) => Err(failure_of(&e)),
        }
    });
    match task.await {
        Ok(Ok((outcome, rec))) => stored(rec, outcome, None),
        Ok(Err(f)) => PartResult {
            class,
            instance,
            outcome: Err(f),
        },
        Err(e) => {
            tracing::warn!(error = %e, "STOW-RS: store task failed");
            PartResult {
                class,
                instance,
                outcome: Err(failure(reason::PROCESSING_FAILURE, "store task failed")),
            }
        }
    }
}

/// The default transfer syntax of a compressed bulk data media type (PS3.18 8.7.3.5.2).
fn default_syntax(media: &str) -> Option<&'static str> {
    Some(match media {
        "image/jpeg" => "1.2.840.10008.1.2.4.50",
        "image/jls" => "1.2.840.10008.1.2.4.80",
        "image/jp2" => "1.2.840.10008.1.2.4.90",
        "image/jpx" => "1.2.840.10008.1.2.4.92",
        "image/dicom-rle" | "image/x-dicom-rle" => "1.2.840.10008.1.2.5",
        "image/jphc" => "1.2.840.10008.1.2.4.201",
        _ => return None,
    })
}

/// The transfer syntax an instance is written in: Explicit VR LE, or the compressed syntax
/// of its Pixel Data part.
fn syntax_of(json: &Value, needed: &Needed) -> Result<String, Failure> {
    let pixel_uri = json
        .get(tag_key(tags::PIXEL_DATA))
        .and_then(|a| a.get("BulkDataURI"))
        .and_then(Value::as_str);
    let Some((media, ts, _)) = pixel_uri.and_then(|u| needed.get(u)) else {
        return Ok(EXPLICIT_LE.to_string());
    };
    let native = |ts: &str| ts == EXPLICIT_LE || ts == IMPLICIT_LE;
    if media == OCTET || media.is_empty() {
        return match ts.as_deref() {
            None | Some("*") => Ok(EXPLICIT_LE.to_string()),
            Some(t) if native(t) => Ok(EXPLICIT_LE.to_string()),
            Some(t) => Err(failure(
                reason::TRANSFER_SYNTAX_NOT_SUPPORTED,
                format!(
                    "Pixel Data of type {OCTET} in transfer syntax {t}: only little endian \
                     native data is taken"
                ),
            )),
        };
    }
    let ts = match ts.as_deref().filter(|t| *t != "*") {
        Some(t) => t.to_string(),
        None => default_syntax(media)
            .ok_or_else(|| {
                failure(
                    reason::TRANSFER_SYNTAX_NOT_SUPPORTED,
                    format!("Pixel Data of type {media} without a transfer-syntax"),
                )
            })?
            .to_string(),
    };
    if transcode::is_native(&ts) || TransferSyntaxRegistry.get(&ts).is_none() {
        return Err(failure(
            reason::TRANSFER_SYNTAX_NOT_SUPPORTED,
            format!("transfer syntax {ts} of the {media} Pixel Data part is not supported"),
        ));
    }
    let frames = json
        .get(tag_key(tags::NUMBER_OF_FRAMES))
        .and_then(|a| a.get("Value"))
        .and_then(|v| v.get(0))
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()))
        .unwrap_or(1);
    if frames > 1 {
        return Err(failure(
            reason::TRANSFER_SYNTAX_NOT_SUPPORTED,
            format!(
                "{frames} frames of compressed Pixel Data in one {media} part: only \
                 single-frame compressed bulk data is taken (or send it as application/dicom)"
            ),
        ));
    }
    Ok(ts)
}

/// The data set of one instance, encoded in its transfer syntax.
fn encode(json: &Value, needed: &Needed) -> Result<(Vec<u8>, String), Failure> {
    let ts_uid = syntax_of(json, needed)?;
    let encapsulated = !transcode::is_native(&ts_uid);
    let mut resolve = |tag: Tag, _vr: VR, uri: &str| -> Result<ElementValue, String> {
        let (media, _, data) = needed
            .get(uri)
            .ok_or_else(|| "no bulk data part has this Content-Location".to_string())?;
        let data = data.as_ref().map_err(Clone::clone)?;
        if tag == tags::PIXEL_DATA && encapsulated {
            let mut fragment = data.to_vec();
            if fragment.len() % 2 == 1 {
                fragment.push(0); // fragments are of even length (PS3.5 A.4)
            }
            return Ok(PixelFragmentSequence::new(Vec::<u32>::new(), vec![fragment]).into());
        }
        if media != OCTET && !media.is_empty() {
            return Err(format!(
                "a part of type {media} for an attribute other than Pixel Data"
            ));
        }
        Ok(PrimitiveValue::U8(data.to_vec().into()).into())
    };
    let obj: InMemDicomObject = object_from_json(json, &mut resolve)
        .map_err(|e| failure(reason::CANNOT_UNDERSTAND, e.to_string()))?;
    let ts = TransferSyntaxRegistry.get(&ts_uid).ok_or_else(|| {
        failure(
            reason::TRANSFER_SYNTAX_NOT_SUPPORTED,
            format!("transfer syntax {ts_uid} is not supported"),
        )
    })?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts).map_err(|e| {
        failure(
            reason::CANNOT_UNDERSTAND,
            format!("cannot encode the data set: {e}"),
        )
    })?;
    Ok((out, ts_uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn needed(media: &str, ts: Option<&str>) -> Needed {
        HashMap::from([(
            "u".to_string(),
            (
                media.to_string(),
                ts.map(str::to_string),
                Ok(Bytes::from_static(&[1, 2, 3])),
            ),
        )])
    }

    fn instance(frames: Option<u32>) -> Value {
        let mut v = json!({
            "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.7"]},
            "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
            "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
            "0020000E": {"vr": "UI", "Value": ["1.2.3.5"]},
            "7FE00010": {"vr": "OW", "BulkDataURI": "u"}
        });
        if let Some(n) = frames {
            v["00280008"] = json!({"vr": "IS", "Value": [n]});
        }
        v
    }

    #[test]
    fn pixel_parts_choose_the_syntax() {
        let one = instance(None);
        assert_eq!(syntax_of(&one, &needed(OCTET, None)).unwrap(), EXPLICIT_LE);
        assert_eq!(
            syntax_of(&one, &needed(OCTET, Some(IMPLICIT_LE))).unwrap(),
            EXPLICIT_LE
        );
        assert_eq!(
            syntax_of(&one, &needed("image/jls", None)).unwrap(),
            "1.2.840.10008.1.2.4.80"
        );
        assert_eq!(
            syntax_of(&one, &needed("image/jls", Some("1.2.840.10008.1.2.4.81"))).unwrap(),
            "1.2.840.10008.1.2.4.81"
        );
        for (media, ts) in [
            (OCTET, Some("1.2.840.10008.1.2.2")),
            ("image/gif", None),
            ("image/jls", Some("1.2.840.10008.1.2.1")),
            ("image/jls", Some("1.2.3.4.5")),
        ] {
            let f = syntax_of(&one, &needed(media, ts)).unwrap_err();
            assert_eq!(
                f.reason,
                reason::TRANSFER_SYNTAX_NOT_SUPPORTED,
                "{media} {ts:?}"
            );
        }
        assert!(syntax_of(&instance(Some(2)), &needed("image/jls", None)).is_err());
        assert!(syntax_of(&instance(Some(1)), &needed("image/jls", None)).is_ok());
    }

    #[test]
    fn encodes_native_and_encapsulated_pixel_data() {
        let (native, ts) = encode(&instance(None), &needed(OCTET, None)).unwrap();
        assert_eq!(ts, EXPLICIT_LE);
        // (7FE0,0010) OW, 4 bytes: the 3 bytes padded
        let tail = &native[native.len() - 16..];
        assert_eq!(&tail[..6], &[0xE0, 0x7F, 0x10, 0x00, b'O', b'W']);
        assert_eq!(&tail[8..12], &4u32.to_le_bytes());
        assert_eq!(&tail[12..15], &[1, 2, 3]);
        let (encapsulated, ts) = encode(&instance(None), &needed("image/jls", None)).unwrap();
        assert_eq!(ts, "1.2.840.10008.1.2.4.80");
        // OB whatever the metadata said, undefined length, an empty offset table, one
        // fragment of 4, the delimiter
        let tail = &encapsulated[encapsulated.len() - 40..];
        assert_eq!(&tail[..6], &[0xE0, 0x7F, 0x10, 0x00, b'O', b'B']);
        assert_eq!(&tail[8..12], &[0xFF; 4]);
        assert_eq!(&tail[12..20], &[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        assert_eq!(&tail[20..28], &[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0]);
        assert_eq!(&tail[28..31], &[1, 2, 3]);
        // a BulkDataURI no part answers
        let f = encode(&instance(None), &HashMap::new()).unwrap_err();
        assert_eq!(f.reason, reason::CANNOT_UNDERSTAND);
        assert!(f.comment.contains("Content-Location"), "{}", f.comment);
    }

    #[test]
    fn instances_need_their_uids() {
        assert!(check_uids(&instance(None), None).is_ok());
        assert!(check_uids(&instance(None), Some("1.2.3")).is_ok());
        assert_eq!(
            check_uids(&instance(None), Some("1.2.9"))
                .unwrap_err()
                .reason,
            reason::DATASET_MISMATCH
        );
        for key in ["00080016", "00080018", "0020000D", "0020000E"] {
            let mut v = instance(None);
            v.as_object_mut().unwrap().remove(key);
            let f = check_uids(&v, None).unwrap_err();
            assert_eq!(f.reason, reason::CANNOT_UNDERSTAND);
            assert!(f.comment.contains(key), "{}", f.comment);
        }
        assert!(check_uids(&json!([1]), None).is_err());
    }
}
