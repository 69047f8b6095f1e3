//! RLE Lossless (1.2.840.10008.1.2.5), PS3.5 Annex G, written here: dicom-rs decodes RLE
//! but has no encoder, and the scheme is small (byte planes plus PackBits), so a
//! dependency would buy little; the decoders of dicom-rs, DCMTK and pydicom check it in
//! `tests/encode_roundtrip.rs`.
//!
//! A frame is one fragment: a 64-byte header (number of segments, then 15 offsets, as
//! little-endian 32-bit values, G.5) followed by the segments. Each segment holds one byte
//! of one sample for every pixel: for each sample in order, the most significant byte
//! first (G.2). Every segment is PackBits-coded row by row, a run never crossing a row
//! (G.3.1), and padded to even length.

use super::samples::{CodedFrame, FullFrame};
use super::{EncodeError, Result};

const UID: &str = "1.2.840.10008.1.2.5";
/// G.5: the header has room for 15 segment offsets.
const MAX_SEGMENTS: usize = 15;
const HEADER_LEN: usize = 64;

pub(super) fn encode_frame(frame: &FullFrame) -> Result<CodedFrame> {
    let segments = frame.spp * frame.bytes;
    if segments > MAX_SEGMENTS {
        return Err(EncodeError::Unsupported {
            target: UID,
            what: format!("{segments} segments (at most {MAX_SEGMENTS})"),
        });
    }
    let pixels = frame.rows * frame.cols;
    let stride = frame.spp * frame.bytes;
    let mut out = vec![0u8; HEADER_LEN];
    out[0..4].copy_from_slice(&(segments as u32).to_le_bytes());
    let mut plane = vec![0u8; pixels];
    let mut n = 0;
    for sample in 0..frame.spp {
        // little-endian containers: the most significant byte is the last one
        for byte in (0..frame.bytes).rev() {
            let first = sample * frame.bytes + byte;
            for (dst, px) in plane.iter_mut().zip(frame.data[first..].chunks(stride)) {
                *dst = px[0];
            }
            let offset = u32::try_from(out.len()).map_err(|_| EncodeError::Unsupported {
                target: UID,
                what: "a frame over 4 GiB".into(),
            })?;
            n += 1;
            out[4 * n..4 * n + 4].copy_from_slice(&offset.to_le_bytes());
            for row in plane.chunks(frame.cols) {
                pack_bits(row, &mut out);
            }
            if out.len() % 2 == 1 {
                out.push(0);
            }
        }
    }
    Ok(CodedFrame {
        data: out,
        photometric: frame.photometric.as_str(),
    })
}

/// PackBits (G.3.1): a header byte n of 0..=127 copies the next n + 1 bytes; -1..=-127
/// repeats the next byte -n + 1 times; -128 is never written. A two-byte repeat inside a
/// literal run stays literal, as G.3.1 advises.
fn pack_bits(row: &[u8], out: &mut Vec<u8>) {
    let mut literal_start = 0;
    let mut i = 0;
    while i < row.len() {
        let b = row[i];
        let mut j = i + 1;
        while j < row.len() && row[j] == b && j - i < 128 {
            j += 1;
        }
        let run = j - i;
        if run >= 3 || (run == 2 && i == literal_start) {
            flush_literal(&row[literal_start..i], out);
            // -(run - 1) as a two's complement byte
            out.push((257 - run) as u8);
            out.push(b);
            literal_start = j;
        }
        i = j;
    }
    flush_literal(&row[literal_start..], out);
}

fn flush_literal(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(128) {
        out.push((chunk.len() - 1) as u8);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PackBits decoder of G.3.2, to check the encoder against.
    fn unpack(mut src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let [n, rest @ ..] = src {
            let n = *n as i8;
            if n >= 0 {
                let len = n as usize + 1;
                out.extend_from_slice(&rest[..len]);
                src = &rest[len..];
            } else if n != -128 {
                out.extend(std::iter::repeat_n(rest[0], (1 - n as isize) as usize));
                src = &rest[1..];
            } else {
                src = rest;
            }
        }
        out
    }

    #[test]
    fn pack_bits_round_trips() {
        let mut rows: Vec<Vec<u8>> = vec![
            vec![],
            vec![7],
            vec![1, 1],
            vec![1, 2, 2, 3],
            vec![5; 300],
            (0..=255).cycle().take(1000).collect(),
        ];
        let mut mixed = vec![0u8; 129];
        mixed.extend((0..200).map(|i| (i * 7 % 13) as u8));
        mixed.extend([9, 9, 9, 1, 1, 2]);
        rows.push(mixed);
        for row in rows {
            let mut out = Vec::new();
            pack_bits(&row, &mut out);
            assert_eq!(unpack(&out), row);
        }
    }

    #[test]
    fn runs_use_replicate_headers() {
        let mut out = Vec::new();
        pack_bits(&[4; 128], &mut out);
        assert_eq!(out, vec![0x81, 4]);
        out.clear();
        pack_bits(&[1, 2, 2, 3], &mut out);
        assert_eq!(out, vec![3, 1, 2, 2, 3]);
    }
}
