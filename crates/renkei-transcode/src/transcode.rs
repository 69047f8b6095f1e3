//! Transcoding a stored object for a receiver: the one function C-MOVE, C-GET and WADO-RS
//! call with the stored object and the transfer syntaxes the receiver accepts.
//!
//! The cheapest path wins (ARCHITECTURE "retrieve"): the stored bytes as they are; else,
//! between uncompressed syntaxes, the data set re-encoded with its pixel data unchanged;
//! else the frames decoded and encoded again. A lossy syntax is never chosen for data that
//! is not lossy already: a receiver that reads only baseline JPEG must not be handed a
//! silently degraded diagnostic image (PS3.4 C.4.2.3.1 leaves the choice to the SCP; the
//! sub-operation fails instead). The stored original is never altered.

use std::path::Path;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::decode::{self, DecodeError};
use crate::encode::{self, EncodeError, FrameLayout, Target};

/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Implicit VR Little Endian (the default every receiver accepts).
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Big Endian (retired, still met).
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
/// Deflated Explicit VR Little Endian.
pub const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";

/// Syntaxes whose pixel data is native, so a data set moves between them exactly.
pub const NATIVE: &[&str] = &[EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED_LE];

/// Lossless compressed syntaxes this crate encodes to.
pub const LOSSLESS_TARGETS: &[&str] = &[
    "1.2.840.10008.1.2.4.80", // JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 Lossless
    "1.2.840.10008.1.2.5",    // RLE Lossless
];

/// Syntaxes whose encoding loses information (PS3.5 8.2: lossy JPEG, JPEG-LS near-lossless,
/// JPEG 2000 irreversible, HTJ2K lossy).
const LOSSY: &[&str] = &[
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.203",
];

/// Largest object decoded in memory for a transcode (all frames at once): 1 GiB.
pub const MAX_TRANSCODE_BYTES: usize = 1 << 30;

/// How a stored object reaches a receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The stored bytes, streamed unchanged.
    AsIs,
    /// Uncompressed to another uncompressed syntax: the data set written again.
    Reencode,
    /// Pixel data decoded and encoded to the target syntax.
    Transcode,
}

/// Why an object could not be transcoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The file could not be read.
    #[error("cannot read the object: {0}")]
    Read(String),
    /// The pixel data could not be decoded.
    #[error("cannot decode: {0}")]
    Decode(#[from] DecodeError),
    /// The frames could not be encoded to the target.
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// No encoder for the target syntax, or a lossy target for lossless data.
    #[error("cannot transcode to {0}")]
    Target(String),
    /// The decoded object would not fit the memory bound of a job.
    #[error("{0} bytes decoded is more than a transcode job may hold ({MAX_TRANSCODE_BYTES})")]
    TooLarge(usize),
    /// The data set could not be written in the target syntax.
    #[error("cannot write the data set: {0}")]
    Write(String),
}

fn trim(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

/// Whether pixel data in `ts` is native (not encapsulated).
pub fn is_native(ts: &str) -> bool {
    NATIVE.contains(&trim(ts))
}

/// Whether `ts` is a lossy syntax.
pub fn is_lossy(ts: &str) -> bool {
    LOSSY.contains(&trim(ts))
}

/// The syntaxes this crate can produce from data stored in `stored`, best first: the
/// stored one, the uncompressed ones, then the lossless compressed ones.
pub fn producible(stored: &str) -> Vec<&str> {
    let stored = trim(stored);
    let mut out = vec![stored];
    for ts in NATIVE.iter().chain(LOSSLESS_TARGETS) {
        if !out.contains(ts) {
            out.push(ts);
        }
    }
    out
}

/// Choose, among the syntaxes a receiver `accepted`, the one to send an object stored in
/// `stored`, and how: the index into `accepted` and the route. None when none is
/// reachable without loss the data does not already have.
///
/// A data set without Pixel Data (a report, a plan) is only ever re-encoded; its route
/// is [`Route::Reencode`] to any native syntax whatever it is stored in.
pub fn choose(stored: &str, accepted: &[&str], has_pixels: bool) -> Option<(usize, Route)> {
    let stored = trim(stored);
    let find = |pred: &dyn Fn(&str) -> bool| accepted.iter().position(|ts| pred(trim(ts)));
    if let Some(i) = find(&|ts| ts == stored) {
        return Some((i, Route::AsIs));
    }
    if is_native(stored) || !has_pixels {
        if let Some(i) = find(&|ts| is_native(ts)) {
            return Some((i, Route::Reencode));
        }
        if !has_pixels {
            return None;
        }
    }
    // decode + encode: uncompressed first (cheapest to encode, readable by everyone), then
    // the lossless codecs
    if let Some(i) = find(&|ts| is_native(ts)) {
        return Some((i, Route::Transcode));
    }
    find(&|ts| LOSSLESS_TARGETS.contains(&ts)).map(|i| (i, Route::Transcode))
}

/// `obj` with its pixel data in `target_ts` (the file meta says so too). Uncompressed to
/// uncompressed only relabels the meta (the data set is written in the target syntax
/// later); otherwise every frame is decoded and encoded. A lossy target is refused.
pub fn transcode_object(
    mut obj: FileDicomObject<InMemDicomObject>,
    target_ts: &str,
) -> Result<FileDicomObject<InMemDicomObject>, TranscodeError> {
    let target_ts = trim(target_ts).to_string();
    let stored = trim(obj.meta().transfer_syntax()).to_string();
    if stored == target_ts {
        return Ok(obj);
    }
    if TransferSyntaxRegistry.get(&target_ts).is_none() {
        return Err(TranscodeError::Target(format!(
            "unknown syntax {target_ts}"
        )));
    }
    // group lengths (gggg,0000) would be wrong once the values are encoded anew; they are
    // optional outside the file meta (PS3.5 7.2), so they go
    drop_group_lengths(&mut obj);
    let has_pixels = obj.element(tags::PIXEL_DATA).is_ok();
    if !has_pixels || (is_native(&stored) && is_native(&target_ts)) {
        obj.update_meta(|m| m.transfer_syntax = target_ts);
        return Ok(obj);
    }
    let encoder = if is_native(&target_ts) {
        Target::ExplicitVrLittleEndian
    } else if LOSSLESS_TARGETS.contains(&target_ts.as_str()) {
        Target::from_uid(&target_ts, 90).ok_or_else(|| TranscodeError::Target(target_ts.clone()))?
    } else {
        return Err(TranscodeError::Target(format!(
            "{target_ts} (lossy or without an encoder)"
        )));
    };
    reencode_pixels(&mut obj, encoder)?;
    // a decoded lossy image keeps its Lossy Image Compression history (PS3.3 C.7.6.1.1.5)
    if is_lossy(&stored) && obj.element(tags::LOSSY_IMAGE_COMPRESSION).is_err() {
        obj.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION,
            VR::CS,
            PrimitiveValue::from("01"),
        ));
    }
    obj.update_meta(|m| m.transfer_syntax = target_ts);
    Ok(obj)
}

/// Remove the (retired) group length elements of every group but the file meta's: a new
/// encoding makes them wrong ((7FE0,0000) would count native Pixel Data, not fragments),
/// and they are optional outside the file meta (PS3.5 7.2).
pub fn drop_group_lengths(obj: &mut InMemDicomObject) {
    let lengths: Vec<dicom_core::Tag> = obj
        .tags()
        .filter(|t| t.element() == 0x0000 && t.group() != 0x0002)
        .collect();
    for tag in lengths {
        obj.remove_element(tag);
    }
}

/// Decode every frame of `obj` and encode it to `target` (lossy ones included: whether
/// loss is acceptable is the caller's decision), then set the Image Pixel attributes to
/// what the pixel data now is. The file meta's transfer syntax is the target's. Returns
/// the loss the encoding made, if any.
pub fn reencode_pixels(
    obj: &mut FileDicomObject<InMemDicomObject>,
    target: Target,
) -> Result<Option<encode::LossyInfo>, TranscodeError> {
    let info = decode::pixel_info(obj)?;
    if info.bits_allocated == 1 {
        // decoding unpacks bits to bytes: re-encoded, a BINARY segmentation would come out
        // 8-bit, which its IOD forbids (PS3.3 C.8.20.2)
        return Err(TranscodeError::Target(format!(
            "{}: 1-bit data is only sent uncompressed or as stored",
            target.uid()
        )));
    }
    let total = info
        .decoded_frame_bytes()
        .saturating_mul(info.frames as usize);
    if total > MAX_TRANSCODE_BYTES {
        return Err(TranscodeError::TooLarge(total));
    }
    let frames = decode::decode_all(obj)?;
    let Some(first) = frames.first() else {
        return Err(TranscodeError::Decode(DecodeError::NoPixelData));
    };
    let layout = FrameLayout {
        rows: u16::try_from(first.rows).map_err(|_| TranscodeError::TooLarge(total))?,
        columns: u16::try_from(first.cols).map_err(|_| TranscodeError::TooLarge(total))?,
        samples_per_pixel: first.samples_per_pixel,
        bits_allocated: first.bits_allocated,
        bits_stored: first.bits_stored,
        pixel_representation: u16::from(first.signed),
        photometric: first.photometric.as_str().to_string(),
        planar_configuration: 0,
    };
    let bytes: Vec<Vec<u8>> = frames.iter().map(|f| f.samples.to_le_bytes()).collect();
    drop(frames);
    let encoded = encode::encode_frames(&layout, &bytes, target)?;
    drop(bytes);
    encoded.apply(obj);
    // the decoded samples may differ in layout from what was stored (YBR_FULL_422
    // expanded to three samples a pixel, planes interleaved): say what the pixel data is
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    obj.put(us(tags::SAMPLES_PER_PIXEL, layout.samples_per_pixel));
    obj.put(us(tags::BITS_ALLOCATED, layout.bits_allocated));
    obj.put(us(tags::BITS_STORED, layout.bits_stored));
    obj.put(us(tags::HIGH_BIT, layout.bits_stored.saturating_sub(1)));
    obj.put(us(tags::PIXEL_REPRESENTATION, layout.pixel_representation));
    if layout.samples_per_pixel == 1 {
        obj.remove_element(tags::PLANAR_CONFIGURATION);
    }
    Ok(encoded.lossy)
}

/// The data set of the stored file at `path` (without file meta), written in
/// `target_ts`, transcoded as [`transcode_object`] does. Reads the whole object.
pub fn transcode_file(path: &Path, target_ts: &str) -> Result<Vec<u8>, TranscodeError> {
    let obj = dicom_object::OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| TranscodeError::Read(format!("{}: {e}", path.display())))?;
    let obj = transcode_object(obj, target_ts)?;
    let ts = TransferSyntaxRegistry
        .get(trim(target_ts))
        .ok_or_else(|| TranscodeError::Target(target_ts.to_string()))?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| TranscodeError::Write(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JLS: &str = "1.2.840.10008.1.2.4.80";
    const J2K: &str = "1.2.840.10008.1.2.4.90";
    const JPEG: &str = "1.2.840.10008.1.2.4.50";

    #[test]
    fn the_cheapest_route_wins() {
        assert_eq!(
            choose(JLS, &[IMPLICIT_LE, JLS], true),
            Some((1, Route::AsIs))
        );
        assert_eq!(
            choose(EXPLICIT_LE, &[JLS, IMPLICIT_LE], true),
            Some((1, Route::Reencode))
        );
        assert_eq!(
            choose(JLS, &[J2K, EXPLICIT_LE], true),
            Some((1, Route::Transcode))
        );
        assert_eq!(choose(JLS, &[J2K], true), Some((0, Route::Transcode)));
        assert_eq!(
            choose("1.2.840.10008.1.2.4.80\0", &[JLS], true),
            Some((0, Route::AsIs))
        );
    }

    #[test]
    fn never_lossy_for_lossless_data() {
        assert_eq!(choose(EXPLICIT_LE, &[JPEG], true), None);
        assert_eq!(choose(JLS, &[JPEG, "1.2.840.10008.1.2.4.91"], true), None);
        // lossy data is decoded for a receiver that wants it uncompressed
        assert_eq!(
            choose(JPEG, &[EXPLICIT_LE], true),
            Some((0, Route::Transcode))
        );
    }

    #[test]
    fn no_pixels_is_only_reencoded() {
        assert_eq!(
            choose(DEFLATED_LE, &[EXPLICIT_LE], false),
            Some((0, Route::Reencode))
        );
        assert_eq!(choose(EXPLICIT_LE, &[J2K], false), None);
    }
}
