//! JPEG-LS Lossless (1.2.840.10008.1.2.4.80) through CharLS 2.4 (the `charls` crate,
//! C++ built with cmake). Why CharLS: it is the JPEG-LS implementation GDCM, fo-dicom and
//! pydicom's pyjpegls use; the pure-Rust crates on crates.io code one component only
//! (pure_jpegls 2.0, whose 1.x streams were not T.87-conformant) or come inside a whole
//! other DICOM toolkit. dicom-rs's JPEG-LS adapter hands CharLS pixel-interleaved colour
//! with CharLS's default "no interleave" (plane by plane) mode, so it is not used here.
//!
//! NEAR = 0; colour is coded line-interleaved (ILV 1) from pixel-interleaved samples.
//! JPEG-LS has no colour transform in DICOM's profile, so the photometric interpretation
//! is kept (PS3.5 8.2.3). Samples are coded at Bits Stored precision (2 to 16 bits);
//! signed samples go in as their Bits Stored two's complement pattern, which decoders
//! sign-extend by Pixel Representation (what DCMTK and pydicom do).

use charls::{CharLS, FrameInfo, InterleaveMode};

use super::samples::{CodedFrame, FullFrame};
use super::{EncodeError, Result};

const UID: &str = "1.2.840.10008.1.2.4.80";

pub(super) fn encode_frame(frame: &FullFrame, index: usize) -> Result<CodedFrame> {
    if !(2..=16).contains(&frame.bits_stored) {
        return Err(EncodeError::Unsupported {
            target: UID,
            what: format!("Bits Stored {} (CharLS: 2 to 16)", frame.bits_stored),
        });
    }
    let codec_err = |e: charls::Error| EncodeError::Codec {
        target: UID,
        frame: index,
        message: e.to_string(),
    };
    let mask = frame.stored_mask();
    // CharLS reads one byte per sample up to 8 bits, else native-endian 16-bit words
    let src: Vec<u8> = if frame.bits_stored <= 8 {
        frame.containers().map(|c| (c & mask) as u8).collect()
    } else {
        frame
            .containers()
            .flat_map(|c| ((c & mask) as u16).to_ne_bytes())
            .collect()
    };
    let mut codec = CharLS::default();
    if frame.spp > 1 {
        codec
            .set_interleave_mode(InterleaveMode::Line)
            .map_err(codec_err)?;
    }
    let info = FrameInfo {
        width: frame.cols as u32,
        height: frame.rows as u32,
        bits_per_sample: frame.bits_stored as i32,
        component_count: frame.spp as i32,
    };
    let data = codec.encode(info, 0, &src).map_err(codec_err)?;
    Ok(CodedFrame {
        data,
        photometric: frame.photometric.as_str(),
    })
}
