//! Raw bytes of chosen top-level text attributes, for the character sets dicom-rs decodes
//! wrongly (several values of Specific Character Set, ISO 2022 code extensions: see
//! `renkei_model::charset`). Reads tokens up to Pixel Data without interpreting text.
//! Used for stored objects at ingest and for C-FIND identifiers.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_encoding::TransferSyntax;
use dicom_parser::dataset::read::{DataSetReaderOptions, ValueReadStrategy};
use dicom_parser::dataset::{DataSetReader, DataToken};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// (tag, raw value bytes) pairs.
type RawValues = Vec<(Tag, Vec<u8>)>;

/// The raw value bytes of those of `wanted` present at the top level of the data set that
/// starts at `offset`. Deflated data sets are skipped (None).
pub(crate) fn raw_values(
    path: &Path,
    offset: u64,
    ts_uid: &str,
    wanted: &[(Tag, bool)],
) -> Result<Option<RawValues>, String> {
    let Some(ts) = TransferSyntaxRegistry.get(ts_uid) else {
        return Err(format!("unknown transfer syntax {ts_uid}"));
    };
    if matches!(ts.codec(), Codec::Dataset(_)) {
        return Ok(None);
    }
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    let found = collect(BufReader::new(file), ts, |tag, _| {
        wanted.iter().any(|(t, _)| *t == tag)
    })?;
    Ok(Some(found.into_iter().map(|(t, _, v)| (t, v)).collect()))
}

/// Raw bytes of every top-level element of a text VR whose decoding depends on Specific
/// Character Set (SH, LO, ST, LT, UT, UC, PN), e.g. of a C-FIND identifier.
pub fn raw_text_elements<R: Read>(
    reader: R,
    ts: &TransferSyntax,
) -> Result<Vec<(Tag, VR, Vec<u8>)>, String> {
    collect(reader, ts, |_, vr| {
        matches!(
            vr,
            VR::SH | VR::LO | VR::ST | VR::LT | VR::UT | VR::UC | VR::PN
        )
    })
}

/// Top-level (tag, VR, raw bytes) of the elements `keep` selects, up to Pixel Data.
fn collect<R: Read>(
    reader: R,
    ts: &TransferSyntax,
    keep: impl Fn(Tag, VR) -> bool,
) -> Result<Vec<(Tag, VR, Vec<u8>)>, String> {
    let options = DataSetReaderOptions::default().value_read(ValueReadStrategy::Raw);
    let reader =
        DataSetReader::new_with_ts_options(reader, ts, options).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut pending: Option<(Tag, VR)> = None;
    for token in reader {
        match token.map_err(|e| e.to_string())? {
            DataToken::SequenceStart { .. } => depth += 1,
            DataToken::SequenceEnd => depth = depth.saturating_sub(1),
            DataToken::PixelSequenceStart => break,
            DataToken::ElementHeader(h) if depth == 0 => {
                if h.tag >= tags::PIXEL_DATA {
                    break;
                }
                pending = keep(h.tag, h.vr).then_some((h.tag, h.vr));
            }
            DataToken::PrimitiveValue(v) => {
                if let Some((tag, vr)) = pending.take() {
                    out.push((tag, vr, v.to_bytes().into_owned()));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
