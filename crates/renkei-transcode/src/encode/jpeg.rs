//! JPEG Baseline (Process 1, 1.2.840.10008.1.2.4.50) for previews, through jpeg-encoder
//! (already built for dicom-pixeldata's `native` codecs). 8-bit unsigned samples only:
//! deeper data must be windowed to 8 bits first (the renderer's job).
//!
//! Colour is coded as YCbCr with the chroma halved horizontally (4:2:2), which is what
//! YBR_FULL_422 names for JPEG (PS3.3 C.7.6.3.1.2, PS3.5 8.2.1); RGB is converted by the
//! encoder, YBR_FULL goes in as it is. Greyscale keeps MONOCHROME1/2. Palette indices
//! are not images, so PALETTE COLOR is refused.

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use super::samples::{CodedFrame, FullFrame, Photometric};
use super::{EncodeError, Result};

const UID: &str = "1.2.840.10008.1.2.4.50";

pub(super) fn encode_frame(frame: &FullFrame, quality: u8, index: usize) -> Result<CodedFrame> {
    let unsupported = |what: String| EncodeError::Unsupported { target: UID, what };
    if frame.bytes != 1 || frame.signed {
        return Err(unsupported(format!(
            "{}-bit {} samples (8-bit unsigned only)",
            frame.bytes * 8,
            if frame.signed { "signed" } else { "unsigned" }
        )));
    }
    let (colour, photometric) = match frame.photometric {
        Photometric::Monochrome1 | Photometric::Monochrome2 => {
            (ColorType::Luma, frame.photometric.as_str())
        }
        Photometric::Rgb => (ColorType::Rgb, Photometric::YbrFull422.as_str()),
        Photometric::YbrFull | Photometric::YbrFull422 => {
            (ColorType::Ycbcr, Photometric::YbrFull422.as_str())
        }
        Photometric::PaletteColor => return Err(unsupported("PALETTE COLOR".into())),
    };
    let mut data = Vec::new();
    let mut encoder = Encoder::new(&mut data, quality.clamp(1, 100));
    encoder.set_sampling_factor(SamplingFactor::F_2_1);
    encoder
        .encode(&frame.data, frame.cols as u16, frame.rows as u16, colour)
        .map_err(|e| EncodeError::Codec {
            target: UID,
            frame: index,
            message: e.to_string(),
        })?;
    Ok(CodedFrame { data, photometric })
}
