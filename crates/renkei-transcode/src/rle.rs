//! RLE Lossless (PS3.5 Annex G), decoded by hand.
//!
//! dicom-transfer-syntax-registry has an RLE decoder, but it rejects BitsAllocated 32
//! (valid/SC_rgb_rle_32bit.dcm, RT Dose) and unwraps an I/O result on the input; the
//! format is small enough that owning it costs less than working around both.

/// Why an RLE frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RleError {
    /// The 64-byte header (PS3.5 G.5) is missing.
    #[error("RLE frame of {0} bytes is shorter than its 64-byte header")]
    ShortHeader(usize),
    /// The header announces a segment count that does not fit the image.
    #[error("RLE header has {found} segments, the image needs {expected} (samples per pixel x bytes per sample)")]
    SegmentCount {
        /// segments in the header
        found: u32,
        /// samples per pixel x bytes per sample
        expected: u32,
    },
    /// A segment offset points outside the frame or before the previous one.
    #[error("RLE segment {index} has invalid offsets {start}..{end} in a {len}-byte frame")]
    SegmentOffset {
        /// segment number
        index: usize,
        /// start offset
        start: usize,
        /// end offset
        end: usize,
        /// frame length
        len: usize,
    },
    /// A segment decodes to fewer bytes than rows x columns.
    #[error("RLE segment {index} decodes to {got} bytes, rows x columns needs {expected}")]
    ShortSegment {
        /// segment number
        index: usize,
        /// decoded bytes
        got: usize,
        /// rows x columns
        expected: usize,
    },
}

/// Decodes one RLE frame to pixel-interleaved little-endian samples of
/// `bytes_per_sample` bytes each.
pub(crate) fn decode_frame(
    data: &[u8],
    rows: usize,
    cols: usize,
    samples_per_pixel: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u8>, RleError> {
    if data.len() < 64 {
        return Err(RleError::ShortHeader(data.len()));
    }
    let header: Vec<u32> = data[..64]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let expected = (samples_per_pixel * bytes_per_sample) as u32;
    // PS3.5 G.2: one segment per byte of each sample, at most 15.
    if header[0] != expected || expected > 15 {
        return Err(RleError::SegmentCount {
            found: header[0],
            expected,
        });
    }
    let pixels = rows * cols;
    let nseg = expected as usize;
    let stride = samples_per_pixel * bytes_per_sample;
    let mut out = vec![0u8; pixels * stride];
    let mut segment = Vec::with_capacity(pixels);
    for index in 0..nseg {
        let start = header[1 + index] as usize;
        let end = if index + 1 < nseg {
            header[2 + index] as usize
        } else {
            data.len()
        };
        if start < 64 || end < start || end > data.len() {
            return Err(RleError::SegmentOffset {
                index,
                start,
                end,
                len: data.len(),
            });
        }
        unpack_bits(&data[start..end], pixels, &mut segment);
        if segment.len() < pixels {
            return Err(RleError::ShortSegment {
                index,
                got: segment.len(),
                expected: pixels,
            });
        }
        // PS3.5 G.2: segments run sample by sample, most significant byte first.
        let sample = index / bytes_per_sample;
        let byte_in_le = bytes_per_sample - 1 - index % bytes_per_sample;
        let offset = sample * bytes_per_sample + byte_in_le;
        for (dst, &b) in out[offset..].iter_mut().step_by(stride).zip(&segment) {
            *dst = b;
        }
    }
    Ok(out)
}

/// PackBits (PS3.5 G.3.1) into `out`, stopping at `limit` bytes: encoders pad segments to
/// an even length, and a trailing byte must not spill into the next row.
fn unpack_bits(src: &[u8], limit: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < src.len() && out.len() < limit {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let count = n as usize + 1;
            let end = (i + count).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if n != -128 {
            let count = (-(n as isize)) as usize + 1;
            if let Some(&b) = src.get(i) {
                out.extend(std::iter::repeat_n(b, count));
            }
            i += 1;
        }
    }
    out.truncate(limit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut header = [0u32; 16];
        header[0] = segments.len() as u32;
        let mut offset = 64;
        for (i, s) in segments.iter().enumerate() {
            header[i + 1] = offset as u32;
            offset += s.len();
        }
        let mut out: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
        for s in segments {
            out.extend_from_slice(s);
        }
        out
    }

    #[test]
    fn sixteen_bit_msb_segment_first() {
        // 2x2 pixels: MSB segment = run of four 0x01, LSB segment = literal 1,2,3,4
        let data = frame(&[&[0xFD, 0x01], &[0x03, 1, 2, 3, 4]]);
        let out = decode_frame(&data, 2, 2, 1, 2).unwrap();
        assert_eq!(out, vec![1, 1, 2, 1, 3, 1, 4, 1]);
    }

    #[test]
    fn short_segment_is_an_error() {
        let data = frame(&[&[0x01, 9, 9]]);
        let err = decode_frame(&data, 2, 2, 1, 1).unwrap_err();
        assert!(
            matches!(err, RleError::ShortSegment { got: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn wrong_segment_count_is_an_error() {
        let data = frame(&[&[0x03, 1, 2, 3, 4]]);
        assert!(decode_frame(&data, 2, 2, 3, 1).is_err());
    }
}
