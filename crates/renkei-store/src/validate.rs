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
use dicom_parser::dataset::LazyDataToken;
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
    while let Some(token) = reader.advance() {
        let token = token.map_err(|e| e.to_string())?;
        // Large values (pixel data, fragments) are jumped over with a seek instead of being
        // read: the check then costs a few syscalls, not a second copy of the object.
        let (len, decoder) = match token {
            LazyDataToken::LazyValue { header, decoder } if header.len.0 >= SEEK_OVER => {
                (header.len.0, decoder)
            }
            LazyDataToken::LazyItemValue { len, decoder } if len >= SEEK_OVER => (len, decoder),
            other => {
                other.skip().map_err(|e| e.to_string())?;
                continue;
            }
        };
        let end = decoder.position() + u64::from(len);
        if end > total {
            return Err(truncated(end - total));
        }
        decoder.seek(end).map_err(|e| e.to_string())?;
    }
    // skipping does not notice a short read: compare what the data set declared with
    // what the file holds
    let declared_end = reader.into_decoder().position();
    if declared_end > total {
        return Err(truncated(declared_end - total));
    }
    Ok(())
}

/// Values at least this long are seeked over rather than read.
const SEEK_OVER: u32 = 16 * 1024;

fn truncated(missing: u64) -> String {
    format!("data set truncated: it declares {missing} more bytes than were received")
}
