//! JPEG 2000 Lossless Only (1.2.840.10008.1.2.4.90) through openjp2, the Rust port of
//! OpenJPEG (the JPEG 2000 reference implementation). Why this one: dicom-rs has no J2K
//! encoder; the `jpeg2k` wrapper only encodes an image it decoded, to a file; calling
//! OpenJPEG's C library (openjpeg-sys) needs `unsafe`, which the workspace forbids (a
//! crate-level `allow` cannot lift a `forbid`). openjp2's safe `Codec` API can only write
//! to a file, hence the temporary file per frame (its in-memory stream needs unsafe C
//! callbacks); that costs far less than the wavelet coding.
//!
//! The codestream is a bare J2K codestream, no JP2 boxes (PS3.5 A.4.4): one tile,
//! reversible 5/3 wavelet, one quality layer without rate limit (lossless), components of
//! Bits Stored precision, signed when Pixel Representation is 1. RGB uses the reversible
//! colour transform and becomes YBR_RCT (PS3.5 8.2.4); other data keeps its
//! photometric interpretation, without a component transform.

use std::io::Read;

use openjp2::{
    opj_cparameters_t, opj_image, opj_image_comptparm, Codec, Stream, OPJ_CLRSPC_GRAY,
    OPJ_CLRSPC_SRGB, OPJ_CLRSPC_UNSPECIFIED, OPJ_CODEC_J2K,
};

use super::samples::{CodedFrame, FullFrame, Photometric};
use super::{EncodeError, Result};

const UID: &str = "1.2.840.10008.1.2.4.90";
/// OpenJPEG's default number of resolution levels (5 decompositions).
const RESOLUTIONS: u32 = 6;

pub(super) fn encode_frame(frame: &FullFrame, index: usize) -> Result<CodedFrame> {
    let unsupported = |what: String| EncodeError::Unsupported { target: UID, what };
    if frame.bits_stored > 16 {
        return Err(unsupported(format!("Bits Stored {}", frame.bits_stored)));
    }
    let codec_err = |message: &str| EncodeError::Codec {
        target: UID,
        frame: index,
        message: message.to_string(),
    };
    let (w, h) = (frame.cols as u32, frame.rows as u32);
    let comp = opj_image_comptparm {
        dx: 1,
        dy: 1,
        w,
        h,
        x0: 0,
        y0: 0,
        prec: frame.bits_stored as u32,
        bpp: frame.bits_stored as u32,
        sgnd: frame.signed as u32,
    };
    let (colour_space, mct, photometric) = match frame.photometric {
        Photometric::Rgb => (OPJ_CLRSPC_SRGB, 1, "YBR_RCT"),
        Photometric::YbrFull | Photometric::YbrFull422 => {
            (OPJ_CLRSPC_UNSPECIFIED, 0, Photometric::YbrFull.as_str())
        }
        pi => (OPJ_CLRSPC_GRAY, 0, pi.as_str()),
    };
    let mut image = opj_image::create(&vec![comp; frame.spp], colour_space)
        .ok_or_else(|| codec_err("cannot allocate the image"))?;
    image.x0 = 0;
    image.y0 = 0;
    image.x1 = w;
    image.y1 = h;
    let comps = image
        .comps_mut()
        .ok_or_else(|| codec_err("image without components"))?;
    for (s, comp) in comps.iter_mut().enumerate() {
        let data = comp
            .data_mut()
            .ok_or_else(|| codec_err("component without data"))?;
        for (dst, c) in data
            .iter_mut()
            .zip(frame.containers().skip(s).step_by(frame.spp))
        {
            *dst = frame.value(c);
        }
    }

    let mut params = opj_cparameters_t::default();
    // tcp_numlayers 0: OpenJPEG then codes one layer at rate 0, i.e. lossless; the
    // default `irreversible` 0 is the 5/3 wavelet. Fewer levels than 2^(n-1) pixels on
    // the short side is an error in OpenJPEG, so small images get fewer.
    let short_side = w.min(h);
    params.numresolution = (short_side.ilog2() + 1).min(RESOLUTIONS) as i32;
    params.tcp_mct = mct;

    let mut codec = Codec::new_encoder(OPJ_CODEC_J2K).ok_or_else(|| codec_err("no encoder"))?;
    if codec.setup_encoder(&mut params, &mut image) == 0 {
        return Err(codec_err("parameters refused"));
    }
    let mut file = tempfile::NamedTempFile::new()?;
    {
        let mut stream = Stream::new_file(file.path(), 1 << 20, false)?;
        if codec.start_compress(&mut image, &mut stream) == 0
            || codec.encode(&mut stream) == 0
            || codec.end_compress(&mut stream) == 0
        {
            return Err(codec_err("compression failed"));
        }
        stream.flush()?;
    }
    let mut data = Vec::new();
    file.as_file_mut().read_to_end(&mut data)?;
    Ok(CodedFrame { data, photometric })
}
