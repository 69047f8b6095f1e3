//! Raw bytes of chosen top-level text attributes, for the character sets dicom-rs decodes
//! wrongly (several values of Specific Character Set, ISO 2022 code extensions: see
//! `renkei_model::charset`). Reads tokens up to Pixel Data without interpreting text.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
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
    let options = DataSetReaderOptions::default().value_read(ValueReadStrategy::Raw);
    let reader = DataSetReader::new_with_ts_options(BufReader::new(file), ts, options)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut pending: Option<Tag> = None;
    for token in reader {
        match token.map_err(|e| e.to_string())? {
            DataToken::SequenceStart { .. } => depth += 1,
            DataToken::SequenceEnd => depth = depth.saturating_sub(1),
            DataToken::PixelSequenceStart => break,
            DataToken::ElementHeader(h) if depth == 0 => {
                if h.tag >= tags::PIXEL_DATA {
                    break;
                }
                pending = wanted.iter().any(|(t, _)| *t == h.tag).then_some(h.tag);
            }
            DataToken::PrimitiveValue(v) => {
                if let Some(tag) = pending.take() {
                    out.push((tag, v.to_bytes().into_owned()));
                }
            }
            _ => {}
        }
    }
    Ok(Some(out))
}
