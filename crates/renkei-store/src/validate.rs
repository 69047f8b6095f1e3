//! A structural check of a received data set: every element, item and fragment it declares
//! is really there. Parsing stops at Pixel Data for indexing, so without this a data set cut
//! short inside its pixels (a truncated file re-sent by a peer that does not check) would be
//! acknowledged and fail only when someone opens it. Values are skipped, not loaded: memory
//! stays bounded whatever the object's size.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
use dicom_parser::StatefulDecode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// Check that the data set starting at `offset` of `path` is complete. Returns a short
/// reason when it is not.
pub(crate) fn check_complete(path: &Path, offset: u64, ts_uid: &str) -> Result<(), String> {
    let Some(ts) = TransferSyntaxRegistry.get(ts_uid) else {
        return Err(format!("unknown transfer syntax {ts_uid}"));
    };
    if matches!(ts.codec(), Codec::Dataset(_)) {
        // deflated: the inflater already fails on a cut stream when the header is parsed
        return Ok(());
    }
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let total = file.metadata().map_err(|e| e.to_string())?.len();
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    let mut reader = LazyDataSetReader::new_with_ts(BufReader::with_capacity(64 * 1024, file), ts)
        .map_err(|e| e.to_string())?;
    // Every token but a delimiter consumes bytes; a reader that keeps yielding tokens
    // beyond this bound is stuck on malformed input, and must not hang the association.
    let mut budget = total / 4 + 4096;
    while let Some(token) = reader.advance() {
        budget = budget
            .checked_sub(1)
            .ok_or_else(|| "malformed data set: the parser does not advance".to_string())?;
        let token = token.map_err(|e| e.to_string())?;
        // Values are read and dropped, not seeked over: dicom-parser's seek does not move
        // the position the reader uses to find the end of items, and it then loops.
        // Reading from the page cache costs little next to the fsync that follows.
        token.skip().map_err(|e| e.to_string())?;
    }
    // skipping does not notice a short read: compare what the data set declared with
    // what the file holds
    let declared_end = reader.into_decoder().position();
    if declared_end > total {
        return Err(format!(
            "data set truncated: it declares {} more bytes than were received",
            declared_end - total
        ));
    }
    Ok(())
}
