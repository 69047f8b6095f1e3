//! Decoding pixel data of every common transfer syntax to native samples.
//!
//! [`decode_frame`] returns one [`Frame`] of pixel-interleaved samples (PS3.3 C.7.6.3.1.3
//! planar configuration 0 whatever the source used), typed by Bits Allocated and Pixel
//! Representation, with the bits above Bits Stored masked (unsigned) or sign-extended
//! (signed) as PS3.5 8.1.1 says they must be ignored.
//!
//! | transfer syntax | decoder |
//! |---|---|
//! | implicit/explicit VR LE, explicit VR BE, deflated | native, here |
//! | RLE Lossless | [`crate::rle`], here (8, 16 and 32 bits) |
//! | JPEG baseline, extended 8-bit, lossless (process 14, SV1) | jpeg-decoder |
//! | JPEG extended 12-bit | [`crate::jpeg`], here |
//! | JPEG-LS lossless / near-lossless | pure_jpegls (one component), CharLS (colour) |
//! | JPEG 2000, HTJ2K | OpenJPEG (openjp2 Rust port) through jpeg2k |
//!
//! The photometric interpretation of a [`Frame`] is the one of its samples, which is not
//! always the data set's: JPEG DCT streams in YCbCr come out RGB (the codec converts,
//! PS3.5 8.2.1), JPEG 2000 with a multiple-component transform comes out RGB (YBR_ICT,
//! YBR_RCT; PS3.5 8.2.4), native YBR_FULL_422 is expanded to YBR_FULL (PS3.3 C.7.6.3.1.2).
//! RLE and native YBR_FULL stay YBR_FULL: the lossy conversion to RGB is the renderer's.

use std::borrow::Cow;
use std::fmt;

use dicom_core::value::DicomValueType;
use dicom_core::value::Value;
use dicom_core::PrimitiveValue;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileDicomObject, InMemDicomObject};

use crate::attrs;

/// Transfer syntax UIDs this module dispatches on (PS3.6 Table A-1).
mod ts {
    pub(super) const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
    pub(super) const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
    pub(super) const ENCAPSULATED_UNCOMPRESSED: &str = "1.2.840.10008.1.2.1.98";
    pub(super) const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";
    pub(super) const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
    pub(super) const RLE: &str = "1.2.840.10008.1.2.5";
    pub(super) const JPEG: [&str; 4] = [
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    ];
    pub(super) const JPEG_LS: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];
    pub(super) const J2K: [&str; 7] = [
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.92",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    ];
}

/// Largest decoded frame accepted (1 GiB): a bound on what a corrupt Rows/Columns can make
/// a worker allocate.
pub const MAX_FRAME_BYTES: usize = 1 << 30;

/// Photometric Interpretation (PS3.3 C.7.6.3.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Photometric {
    /// greyscale, minimum is white
    Monochrome1,
    /// greyscale, minimum is black
    Monochrome2,
    /// indices into the palette colour LUTs
    PaletteColor,
    /// red, green, blue
    Rgb,
    /// full-range YCbCr
    YbrFull,
    /// full-range YCbCr, chroma halved horizontally
    YbrFull422,
    /// JPEG 2000 irreversible colour transform
    YbrIct,
    /// JPEG 2000 reversible colour transform
    YbrRct,
    /// anything else, as written
    Other(String),
}

impl Photometric {
    /// Parses the defined term (trailing padding already trimmed).
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "MONOCHROME1" => Self::Monochrome1,
            "MONOCHROME2" => Self::Monochrome2,
            "PALETTE COLOR" => Self::PaletteColor,
            "RGB" => Self::Rgb,
            "YBR_FULL" => Self::YbrFull,
            "YBR_FULL_422" => Self::YbrFull422,
            "YBR_ICT" => Self::YbrIct,
            "YBR_RCT" => Self::YbrRct,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The defined term.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Monochrome1 => "MONOCHROME1",
            Self::Monochrome2 => "MONOCHROME2",
            Self::PaletteColor => "PALETTE COLOR",
            Self::Rgb => "RGB",
            Self::YbrFull => "YBR_FULL",
            Self::YbrFull422 => "YBR_FULL_422",
            Self::YbrIct => "YBR_ICT",
            Self::YbrRct => "YBR_RCT",
            Self::Other(s) => s,
        }
    }

    /// MONOCHROME1 or MONOCHROME2.
    pub fn is_monochrome(&self) -> bool {
        matches!(self, Self::Monochrome1 | Self::Monochrome2)
    }
}

impl fmt::Display for Photometric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decoded samples, pixel-interleaved, typed by Bits Allocated and Pixel Representation.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Samples {
    /// BitsAllocated 8 (and 1, unpacked to 0/1), unsigned
    U8(Vec<u8>),
    /// BitsAllocated 8, signed
    I8(Vec<i8>),
    /// BitsAllocated 16, unsigned
    U16(Vec<u16>),
    /// BitsAllocated 16, signed
    I16(Vec<i16>),
    /// BitsAllocated 32, unsigned
    U32(Vec<u32>),
    /// BitsAllocated 32, signed
    I32(Vec<i32>),
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i` widened to i64.
    pub fn get(&self, i: usize) -> Option<i64> {
        match self {
            Self::U8(v) => v.get(i).map(|&x| x as i64),
            Self::I8(v) => v.get(i).map(|&x| x as i64),
            Self::U16(v) => v.get(i).map(|&x| x as i64),
            Self::I16(v) => v.get(i).map(|&x| x as i64),
            Self::U32(v) => v.get(i).map(|&x| x as i64),
            Self::I32(v) => v.get(i).map(|&x| x as i64),
        }
    }

    /// The samples widened to i64, without copying them.
    pub fn iter_i64(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            Self::U8(v) => Box::new(v.iter().map(|&x| x as i64)),
            Self::I8(v) => Box::new(v.iter().map(|&x| x as i64)),
            Self::U16(v) => Box::new(v.iter().map(|&x| x as i64)),
            Self::I16(v) => Box::new(v.iter().map(|&x| x as i64)),
            Self::U32(v) => Box::new(v.iter().map(|&x| x as i64)),
            Self::I32(v) => Box::new(v.iter().map(|&x| x as i64)),
        }
    }

    /// All samples widened to i64 (8 bytes a sample: for tests and small frames).
    pub fn to_i64(&self) -> Vec<i64> {
        self.iter_i64().collect()
    }

    /// The samples as little-endian bytes, as native DICOM pixel data stores them.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Self::U8(v) => v.clone(),
            Self::I8(v) => v.iter().map(|&x| x as u8).collect(),
            Self::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Rows
    pub rows: u32,
    /// Columns
    pub cols: u32,
    /// samples per pixel of the decoded data (3 for YBR_FULL_422 expanded)
    pub samples_per_pixel: u16,
    /// width of each decoded sample: 8, 16 or 32 (1-bit data is unpacked to 8)
    pub bits_allocated: u16,
    /// significant bits of each sample
    pub bits_stored: u16,
    /// Pixel Representation 1: samples are two's complement
    pub signed: bool,
    /// photometric interpretation of the decoded samples (see the module docs)
    pub photometric: Photometric,
    /// the samples, pixel-interleaved
    pub samples: Samples,
}

impl Frame {
    /// Decoded size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.samples.len() * (self.bits_allocated as usize / 8).max(1)
    }
}

/// The Image Pixel module of a data set (PS3.3 C.7.6.3) and its transfer syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelInfo {
    /// Transfer Syntax UID of the file meta
    pub transfer_syntax: String,
    /// Rows
    pub rows: u32,
    /// Columns
    pub cols: u32,
    /// Samples per Pixel
    pub samples_per_pixel: u16,
    /// Bits Allocated
    pub bits_allocated: u16,
    /// Bits Stored
    pub bits_stored: u16,
    /// Pixel Representation is 1
    pub signed: bool,
    /// Planar Configuration is 1 (colour-by-plane)
    pub planar: bool,
    /// Photometric Interpretation as written
    pub photometric: Photometric,
    /// Number of Frames (1 when absent)
    pub frames: u32,
}

impl PixelInfo {
    /// Bytes one decoded frame takes in memory (what a decode job allocates per frame,
    /// besides the encoded input).
    pub fn decoded_frame_bytes(&self) -> usize {
        let spp = if self.photometric == Photometric::YbrFull422 {
            3
        } else {
            self.samples_per_pixel as usize
        };
        self.rows as usize * self.cols as usize * spp * (self.bits_allocated as usize).div_ceil(8)
    }
}

/// Why pixel data could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The object has no (7FE0,0010) Pixel Data.
    #[error("no Pixel Data (7FE0,0010) in the object")]
    NoPixelData,
    /// Float or Double Float Pixel Data, which is not decoded.
    #[error("Float Pixel Data / Double Float Pixel Data is not supported")]
    FloatPixelData,
    /// A required Image Pixel attribute is missing.
    #[error("missing attribute {name}")]
    MissingAttribute {
        /// attribute keyword
        name: &'static str,
    },
    /// An attribute has a value that cannot be used.
    #[error("invalid {name}: {value:?}")]
    InvalidAttribute {
        /// attribute keyword
        name: &'static str,
        /// the value as found
        value: String,
    },
    /// The transfer syntax has no decoder here.
    #[error("transfer syntax {uid} is not supported for decoding: {reason}")]
    UnsupportedTransferSyntax {
        /// Transfer Syntax UID
        uid: String,
        /// why
        reason: &'static str,
    },
    /// A feature of the encoded stream that no decoder here implements.
    #[error("{0}")]
    Unsupported(String),
    /// The requested frame does not exist.
    #[error("frame {frame} requested, the object has {frames}")]
    FrameOutOfRange {
        /// requested (0-based)
        frame: u32,
        /// Number of Frames
        frames: u32,
    },
    /// Native pixel data is shorter than the attributes say.
    #[error(
        "pixel data shorter than rows*cols*samples*bits*frames needs: {have} bytes, \
         {need} needed for {frames} frame(s) of {rows}x{cols}x{samples} at {bits} bits"
    )]
    PixelDataTooShort {
        /// bytes present
        have: usize,
        /// bytes needed
        need: usize,
        /// Rows
        rows: u32,
        /// Columns
        cols: u32,
        /// Samples per Pixel
        samples: u16,
        /// Bits Allocated
        bits: u16,
        /// Number of Frames
        frames: u32,
    },
    /// The fragments of encapsulated pixel data cannot be assigned to frames.
    #[error("encapsulated pixel data: {0}")]
    Fragments(String),
    /// A codec failed on the frame's data.
    #[error("{codec} could not decode frame {frame}: {message}")]
    Codec {
        /// the decoder
        codec: &'static str,
        /// frame number
        frame: u32,
        /// the decoder's message
        message: String,
    },
    /// The codec produced another geometry than the attributes say.
    #[error("{codec} decoded frame {frame} as {got}, the attributes say {expected}")]
    Geometry {
        /// the decoder
        codec: &'static str,
        /// frame number
        frame: u32,
        /// what the codec produced
        got: String,
        /// what Rows/Columns/Samples per Pixel say
        expected: String,
    },
    /// The decoded frame would exceed [`MAX_FRAME_BYTES`].
    #[error("a decoded frame would take {0} bytes, above the limit of {MAX_FRAME_BYTES}")]
    TooLarge(usize),
}

/// Reads the Image Pixel attributes of `obj`.
pub fn pixel_info(obj: &FileDicomObject<InMemDicomObject>) -> Result<PixelInfo, DecodeError> {
    let ds: &InMemDicomObject = obj;
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_owned();
    let rows = attrs::req_uint(ds, tags::ROWS, "Rows")?;
    let cols = attrs::req_uint(ds, tags::COLUMNS, "Columns")?;
    let samples_per_pixel =
        attrs::uint(ds, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    let bits_allocated = attrs::req_uint(ds, tags::BITS_ALLOCATED, "BitsAllocated")?;
    let bits_stored = attrs::uint(ds, tags::BITS_STORED, "BitsStored")?.unwrap_or(bits_allocated);
    let pixel_rep =
        attrs::uint(ds, tags::PIXEL_REPRESENTATION, "PixelRepresentation")?.unwrap_or(0);
    let planar = attrs::uint(ds, tags::PLANAR_CONFIGURATION, "PlanarConfiguration")?.unwrap_or(0);
    let photometric = attrs::string(ds, tags::PHOTOMETRIC_INTERPRETATION)
        .map(|s| Photometric::parse(&s))
        .ok_or(DecodeError::MissingAttribute {
            name: "PhotometricInterpretation",
        })?;
    let frames = attrs::uint(ds, tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1);
    if rows == 0 || cols == 0 || rows > 65535 || cols > 65535 {
        return Err(DecodeError::InvalidAttribute {
            name: "Rows/Columns",
            value: format!("{rows}x{cols}"),
        });
    }
    if !(1..=4).contains(&samples_per_pixel) {
        return Err(DecodeError::InvalidAttribute {
            name: "SamplesPerPixel",
            value: samples_per_pixel.to_string(),
        });
    }
    // PS3.5 8.1.1: 1 or a multiple of 8; 8/16/32 are what images use
    if !matches!(bits_allocated, 1 | 8 | 16 | 32) {
        return Err(DecodeError::Unsupported(format!(
            "BitsAllocated {bits_allocated} is not supported (1, 8, 16 or 32)"
        )));
    }
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(DecodeError::InvalidAttribute {
            name: "BitsStored",
            value: format!("{bits_stored} with BitsAllocated {bits_allocated}"),
        });
    }
    if pixel_rep > 1 {
        return Err(DecodeError::InvalidAttribute {
            name: "PixelRepresentation",
            value: pixel_rep.to_string(),
        });
    }
    if frames == 0 {
        return Err(DecodeError::InvalidAttribute {
            name: "NumberOfFrames",
            value: "0".into(),
        });
    }
    let info = PixelInfo {
        transfer_syntax,
        rows,
        cols,
        samples_per_pixel: samples_per_pixel as u16,
        bits_allocated: bits_allocated as u16,
        bits_stored: bits_stored as u16,
        signed: pixel_rep == 1,
        planar: planar == 1,
        photometric,
        frames,
    };
    let size = info.decoded_frame_bytes();
    if size > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge(size));
    }
    Ok(info)
}

/// Decodes frame `frame` (0-based) of `obj`.
pub fn decode_frame(
    obj: &FileDicomObject<InMemDicomObject>,
    frame: u32,
) -> Result<Frame, DecodeError> {
    let info = pixel_info_with_pixels(obj)?;
    if frame >= info.frames {
        return Err(DecodeError::FrameOutOfRange {
            frame,
            frames: info.frames,
        });
    }
    decode_with_info(obj, &info, frame)
}

/// Decodes every frame of `obj`. Memory: Number of Frames x
/// [`PixelInfo::decoded_frame_bytes`]; prefer [`decode_frame`] in bounded workers.
pub fn decode_all(obj: &FileDicomObject<InMemDicomObject>) -> Result<Vec<Frame>, DecodeError> {
    let info = pixel_info_with_pixels(obj)?;
    (0..info.frames)
        .map(|f| decode_with_info(obj, &info, f))
        .collect()
}

fn pixel_info_with_pixels(
    obj: &FileDicomObject<InMemDicomObject>,
) -> Result<PixelInfo, DecodeError> {
    if obj.get(tags::PIXEL_DATA).is_none() {
        if obj.get(tags::FLOAT_PIXEL_DATA).is_some()
            || obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
        {
            return Err(DecodeError::FloatPixelData);
        }
        return Err(DecodeError::NoPixelData);
    }
    pixel_info(obj)
}

fn decode_with_info(
    obj: &FileDicomObject<InMemDicomObject>,
    info: &PixelInfo,
    frame: u32,
) -> Result<Frame, DecodeError> {
    let pixel = obj.get(tags::PIXEL_DATA).ok_or(DecodeError::NoPixelData)?;
    let uid = info.transfer_syntax.as_str();
    match pixel.value() {
        Value::Primitive(p) => {
            if !matches!(
                uid,
                ts::IMPLICIT_LE | ts::EXPLICIT_LE | ts::EXPLICIT_BE | ts::DEFLATED_LE
            ) && dicom_transfer_syntax_registry::TransferSyntaxRegistry
                .get(uid)
                .is_some_and(|t| t.is_encapsulated_pixel_data())
            {
                return Err(DecodeError::Fragments(format!(
                    "transfer syntax {uid} is encapsulated but Pixel Data is not"
                )));
            }
            let bytes = native_bytes(p)?;
            decode_native(&bytes, info, frame)
        }
        Value::PixelSequence(seq) => {
            let data = frame_fragments(seq.offset_table(), seq.fragments(), obj, info, frame)?;
            decode_encapsulated(&data, info, frame)
        }
        Value::Sequence(_) => Err(DecodeError::InvalidAttribute {
            name: "PixelData",
            value: "a sequence of items".into(),
        }),
    }
}

/// Native pixel data as little-endian bytes. dicom-rs parses OW of a big-endian file into
/// u16 values, so writing them little-endian is the byte swap PS3.5 7.3 implies; for 8-bit
/// samples in big-endian OW this swaps byte pairs, as pydicom does.
fn native_bytes(p: &PrimitiveValue) -> Result<Cow<'_, [u8]>, DecodeError> {
    Ok(match p {
        PrimitiveValue::U8(v) => Cow::Borrowed(&v[..]),
        PrimitiveValue::U16(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::I16(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::U32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::I32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        PrimitiveValue::Empty => Cow::Borrowed(&[][..]),
        other => {
            return Err(DecodeError::InvalidAttribute {
                name: "PixelData",
                value: format!("value of type {:?}", other.value_type()),
            })
        }
    })
}

fn decode_native(bytes: &[u8], info: &PixelInfo, frame: u32) -> Result<Frame, DecodeError> {
    let pixels = info.rows as usize * info.cols as usize;
    let spp = info.samples_per_pixel as usize;
    let ybr422 = info.photometric == Photometric::YbrFull422;
    // PS3.3 C.7.6.3.1.2: YBR_FULL_422 native data stores Y Y Cb Cr per two pixels
    let frame_samples = if ybr422 {
        if spp != 3 || info.cols % 2 != 0 {
            return Err(DecodeError::InvalidAttribute {
                name: "PhotometricInterpretation",
                value: format!("YBR_FULL_422 with {spp} samples and {} columns", info.cols),
            });
        }
        pixels * 2
    } else {
        pixels * spp
    };
    let frame_bits = frame_samples * info.bits_allocated as usize;
    let need = (frame_bits * info.frames as usize).div_ceil(8);
    if bytes.len() < need {
        return Err(DecodeError::PixelDataTooShort {
            have: bytes.len(),
            need,
            rows: info.rows,
            cols: info.cols,
            samples: info.samples_per_pixel,
            bits: info.bits_allocated,
            frames: info.frames,
        });
    }
    if info.bits_allocated == 1 {
        // PS3.5 8.1.1 / D: bits packed little-endian within bytes, frames not byte-aligned
        let start = frame_bits * frame as usize;
        let v = (start..start + frame_bits)
            .map(|b| (bytes[b / 8] >> (b % 8)) & 1)
            .collect();
        return Ok(Frame {
            rows: info.rows,
            cols: info.cols,
            samples_per_pixel: info.samples_per_pixel,
            bits_allocated: 8,
            bits_stored: 1,
            signed: false,
            photometric: info.photometric.clone(),
            samples: Samples::U8(v),
        });
    }
    let bps = info.bits_allocated as usize / 8;
    let start = frame_bits / 8 * frame as usize;
    let data = &bytes[start..start + frame_samples * bps];
    let mut raw = data.to_vec();
    let mut photometric = info.photometric.clone();
    if ybr422 {
        raw = expand_ybr422(&raw, pixels, bps);
        photometric = Photometric::YbrFull;
    } else if info.planar && spp > 1 {
        raw = interleave_planes(&raw, pixels, spp, bps);
    }
    finish(info, raw, photometric)
}

/// Y1 Y2 Cb Cr -> Y1 Cb Cr Y2 Cb Cr (PS3.3 C.7.6.3.1.2).
fn expand_ybr422(raw: &[u8], pixels: usize, bps: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(pixels * 3 * bps);
    for quad in raw.chunks_exact(4 * bps) {
        let (y1, y2) = (&quad[..bps], &quad[bps..2 * bps]);
        let (cb, cr) = (&quad[2 * bps..3 * bps], &quad[3 * bps..]);
        for y in [y1, y2] {
            out.extend_from_slice(y);
            out.extend_from_slice(cb);
            out.extend_from_slice(cr);
        }
    }
    out
}

/// Colour-by-plane to colour-by-pixel (PS3.3 C.7.6.3.1.3).
fn interleave_planes(raw: &[u8], pixels: usize, spp: usize, bps: usize) -> Vec<u8> {
    let mut out = vec![0u8; pixels * spp * bps];
    for s in 0..spp {
        let plane = &raw[s * pixels * bps..(s + 1) * pixels * bps];
        for (p, v) in plane.chunks_exact(bps).enumerate() {
            let o = (p * spp + s) * bps;
            out[o..o + bps].copy_from_slice(v);
        }
    }
    out
}

/// Types little-endian sample bytes and ignores the bits above Bits Stored (PS3.5 8.1.1):
/// masked when unsigned, sign-extended when signed.
fn finish(info: &PixelInfo, raw: Vec<u8>, photometric: Photometric) -> Result<Frame, DecodeError> {
    let bits = info.bits_stored as u32;
    let spp = if info.photometric == Photometric::YbrFull422 {
        3
    } else {
        info.samples_per_pixel
    };
    let samples = match (info.bits_allocated, info.signed) {
        (8, false) => Samples::U8(raw.iter().map(|&b| mask(b as u64, bits) as u8).collect()),
        (8, true) => Samples::I8(raw.iter().map(|&b| extend(b as u64, bits) as i8).collect()),
        (16, s) => {
            let it = raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u64);
            if s {
                Samples::I16(it.map(|v| extend(v, bits) as i16).collect())
            } else {
                Samples::U16(it.map(|v| mask(v, bits) as u16).collect())
            }
        }
        (32, s) => {
            let it = raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64);
            if s {
                Samples::I32(it.map(|v| extend(v, bits) as i32).collect())
            } else {
                Samples::U32(it.map(|v| mask(v, bits) as u32).collect())
            }
        }
        (other, _) => {
            return Err(DecodeError::Unsupported(format!(
                "BitsAllocated {other} is not supported"
            )))
        }
    };
    let expected = info.rows as usize * info.cols as usize * spp as usize;
    if samples.len() != expected {
        return Err(DecodeError::Geometry {
            codec: "native",
            frame: 0,
            got: format!("{} samples", samples.len()),
            expected: format!("{expected} samples"),
        });
    }
    Ok(Frame {
        rows: info.rows,
        cols: info.cols,
        samples_per_pixel: spp,
        bits_allocated: info.bits_allocated,
        bits_stored: info.bits_stored,
        signed: info.signed,
        photometric,
        samples,
    })
}

fn mask(v: u64, bits: u32) -> u64 {
    if bits >= 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

fn extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// The bytes of one frame of encapsulated pixel data (PS3.5 A.4): by the Basic Offset
/// Table, else the Extended Offset Table, else one fragment per frame, else by the JPEG
/// family's end-of-image marker that closes each frame's last fragment.
fn frame_fragments<'a, P: AsRef<[u8]>>(
    bot: &[u32],
    fragments: &'a [P],
    obj: &FileDicomObject<InMemDicomObject>,
    info: &PixelInfo,
    frame: u32,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    let n = info.frames as usize;
    let f = frame as usize;
    if fragments.is_empty() {
        return Err(DecodeError::Fragments("no fragments".into()));
    }
    let concat = |range: std::ops::Range<usize>| -> Cow<'a, [u8]> {
        if range.len() == 1 {
            Cow::Borrowed(fragments[range.start].as_ref())
        } else {
            Cow::Owned(
                fragments[range]
                    .iter()
                    .flat_map(|x| x.as_ref().iter().copied())
                    .collect(),
            )
        }
    };
    if n == 1 {
        return Ok(concat(0..fragments.len()));
    }
    // fragment start offsets in the item stream, as the offset tables count them
    let mut starts = Vec::with_capacity(fragments.len());
    let mut pos = 0u64;
    for frag in fragments {
        starts.push(pos);
        pos += 8 + frag.as_ref().len() as u64;
    }
    let by_offsets = |offs: &[u64]| -> Result<Cow<'a, [u8]>, DecodeError> {
        let begin = offs[f];
        let end = offs.get(f + 1).copied().unwrap_or(u64::MAX);
        let first = starts.iter().position(|&s| s == begin).ok_or_else(|| {
            DecodeError::Fragments(format!(
                "offset {begin} of frame {frame} is not a fragment start"
            ))
        })?;
        let last = starts.iter().rposition(|&s| s < end).unwrap_or(first);
        if last < first {
            return Err(DecodeError::Fragments(format!(
                "frame {frame} has no fragments"
            )));
        }
        Ok(concat(first..last + 1))
    };
    if bot.len() == n {
        let offs: Vec<u64> = bot.iter().map(|&o| o as u64).collect();
        return by_offsets(&offs);
    }
    if let Some(words) = obj.get(tags::EXTENDED_OFFSET_TABLE) {
        if let Ok(b) = words.value().to_bytes() {
            let offs: Vec<u64> = b
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            if offs.len() == n {
                return by_offsets(&offs);
            }
        }
    }
    if fragments.len() == n {
        return Ok(concat(f..f + 1));
    }
    if fragments.len() < n {
        return Err(DecodeError::Fragments(format!(
            "{} fragments for {n} frames and no offset table",
            fragments.len()
        )));
    }
    // JPEG, JPEG-LS and J2K codestreams end with FFD9; padding may follow (PS3.5 A.4)
    let mut frame_no = 0;
    let mut first = 0;
    for (i, frag) in fragments.iter().enumerate() {
        let d = frag.as_ref();
        let tail = &d[d.len().saturating_sub(4)..];
        if tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
            if frame_no == f {
                return Ok(concat(first..i + 1));
            }
            frame_no += 1;
            first = i + 1;
        }
    }
    Err(DecodeError::Fragments(format!(
        "cannot find frame {frame} among {} fragments without an offset table",
        fragments.len()
    )))
}

fn decode_encapsulated(data: &[u8], info: &PixelInfo, frame: u32) -> Result<Frame, DecodeError> {
    let uid = info.transfer_syntax.as_str();
    if uid == ts::RLE {
        let bps = info.bits_allocated as usize / 8;
        if info.bits_allocated == 1 {
            return Err(DecodeError::Unsupported(
                "RLE Lossless with BitsAllocated 1 is not supported".into(),
            ));
        }
        let raw = crate::rle::decode_frame(
            data,
            info.rows as usize,
            info.cols as usize,
            info.samples_per_pixel as usize,
            bps,
        )
        .map_err(|e| codec_err("RLE Lossless", frame, e))?;
        // PS3.5 G.2: RLE of YBR_FULL keeps YBR_FULL; no conversion here
        return finish(info, raw, info.photometric.clone());
    }
    if uid == ts::ENCAPSULATED_UNCOMPRESSED {
        let mut one = info.clone();
        one.frames = 1;
        return decode_native(data, &one, 0);
    }
    if ts::JPEG.contains(&uid) {
        return decode_jpeg(data, info, frame);
    }
    if ts::JPEG_LS.contains(&uid) {
        return decode_jpeg_ls(data, info, frame);
    }
    if ts::J2K.contains(&uid) {
        return decode_j2k(data, info, frame);
    }
    Err(DecodeError::UnsupportedTransferSyntax {
        uid: uid.to_owned(),
        reason: match uid {
            u if u.starts_with("1.2.840.10008.1.2.4.10") => "MPEG video is not decoded",
            "1.2.840.10008.1.2.4.107" | "1.2.840.10008.1.2.4.108" => "HEVC video is not decoded",
            u if u.starts_with("1.2.840.10008.1.2.4.11") => "JPEG XL is not enabled",
            _ => "no decoder for it",
        },
    })
}

fn codec_err(codec: &'static str, frame: u32, e: impl fmt::Display) -> DecodeError {
    DecodeError::Codec {
        codec,
        frame,
        message: e.to_string(),
    }
}

fn check_geometry(
    codec: &'static str,
    frame: u32,
    info: &PixelInfo,
    (w, h, n): (usize, usize, usize),
) -> Result<(), DecodeError> {
    if w != info.cols as usize || h != info.rows as usize || n != info.samples_per_pixel as usize {
        return Err(DecodeError::Geometry {
            codec,
            frame,
            got: format!("{w}x{h} with {n} components"),
            expected: format!(
                "{}x{} with {} samples per pixel",
                info.cols, info.rows, info.samples_per_pixel
            ),
        });
    }
    Ok(())
}

/// Little-endian bytes of the Bits Allocated width from wider codec values.
fn to_raw(values: impl Iterator<Item = i64>, bits_allocated: u16) -> Vec<u8> {
    match bits_allocated {
        8 => values.map(|v| v as u8).collect(),
        16 => values.flat_map(|v| (v as u16).to_le_bytes()).collect(),
        _ => values.flat_map(|v| (v as u32).to_le_bytes()).collect(),
    }
}

fn decode_jpeg(data: &[u8], info: &PixelInfo, frame: u32) -> Result<Frame, DecodeError> {
    const CODEC: &str = "JPEG (jpeg-decoder)";
    if !matches!(info.bits_allocated, 8 | 16) {
        return Err(DecodeError::Unsupported(format!(
            "JPEG with BitsAllocated {} is not supported",
            info.bits_allocated
        )));
    }
    let header = crate::jpeg::scan_header(data).map_err(|e| codec_err(CODEC, frame, e))?;
    if header.sof >= 9 {
        return Err(DecodeError::Unsupported(format!(
            "JPEG arithmetic coding (SOF{}) is not supported by jpeg-decoder",
            header.sof
        )));
    }
    let spp = info.samples_per_pixel;
    if header.precision > 8 && header.sof != 3 {
        // 12-bit lossy: jpeg-decoder 0.3 refuses it (see crate::jpeg)
        let d = crate::jpeg::decode_sequential(data)
            .map_err(|e| codec_err("JPEG 12-bit (renkei)", frame, e))?;
        check_geometry(CODEC, frame, info, (d.width, d.height, d.components))?;
        if info.bits_allocated != 16 {
            return Err(DecodeError::Unsupported(
                "12-bit JPEG needs BitsAllocated 16".into(),
            ));
        }
        let raw = to_raw(d.samples.iter().map(|&v| v as i64), 16);
        // 12-bit colour keeps the data set's interpretation: no YCbCr conversion at 12 bits
        return finish(info, raw, info.photometric.clone());
    }
    let mut dec = jpeg_decoder::Decoder::new(data);
    // PS3.5 8.2.1: a lossy stream in YBR_FULL(_422) carries YCbCr and is converted to RGB
    // by the codec; RGB ones carry RGB. Lossless streams are never colour-transformed.
    let ycbcr = spp == 3 && header.sof != 3 && header.is_ycbcr();
    if spp == 3 {
        dec.set_color_transform(if ycbcr {
            jpeg_decoder::ColorTransform::YCbCr
        } else {
            jpeg_decoder::ColorTransform::None
        });
    }
    let out = dec.decode().map_err(|e| match e {
        jpeg_decoder::Error::Unsupported(u) => {
            DecodeError::Unsupported(format!("JPEG feature not supported by jpeg-decoder: {u:?}"))
        }
        e => codec_err(CODEC, frame, e),
    })?;
    let meta = dec
        .info()
        .ok_or_else(|| codec_err(CODEC, frame, "no image information"))?;
    let comps = meta.pixel_format.pixel_bytes() / if header.precision > 8 { 2 } else { 1 };
    check_geometry(
        CODEC,
        frame,
        info,
        (meta.width as usize, meta.height as usize, comps),
    )?;
    let raw = if header.precision > 8 {
        // lossless > 8 bits comes out native-endian u16
        let it = out
            .chunks_exact(2)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]) as i64);
        to_raw(it, info.bits_allocated)
    } else {
        to_raw(out.iter().map(|&v| v as i64), info.bits_allocated)
    };
    let photometric = if ycbcr {
        Photometric::Rgb
    } else {
        info.photometric.clone()
    };
    finish(info, raw, photometric)
}

fn decode_jpeg_ls(data: &[u8], info: &PixelInfo, frame: u32) -> Result<Frame, DecodeError> {
    const CODEC: &str = "JPEG-LS (pure_jpegls)";
    if !matches!(info.bits_allocated, 8 | 16) {
        return Err(DecodeError::Unsupported(format!(
            "JPEG-LS with BitsAllocated {} is not supported",
            info.bits_allocated
        )));
    }
    if info.samples_per_pixel != 1 {
        return decode_jpeg_ls_charls(data, info, frame);
    }
    let (v, w, h) =
        jpegls::decode(data, info.cols, info.rows).map_err(|e| codec_err(CODEC, frame, e))?;
    check_geometry(CODEC, frame, info, (w as usize, h as usize, 1))?;
    let raw = to_raw(v.iter().map(|&x| x as i64), info.bits_allocated);
    finish(info, raw, info.photometric.clone())
}

/// Colour JPEG-LS through CharLS (linked for the encoder anyway): pure_jpegls reads one
/// component only. CharLS returns samples by pixel for line- and sample-interleaved scans
/// and by plane for non-interleaved ones (one scan a component), which the SOS segment's
/// component count tells (ITU-T T.87 C.2.3).
fn decode_jpeg_ls_charls(data: &[u8], info: &PixelInfo, frame: u32) -> Result<Frame, DecodeError> {
    const CODEC: &str = "JPEG-LS (CharLS)";
    // a CharLS decoder reads the header once: one for the frame info, one to decode
    let fi = charls::CharLS::default()
        .get_frame_info(data)
        .map_err(|e| codec_err(CODEC, frame, e))?;
    check_geometry(
        CODEC,
        frame,
        info,
        (
            fi.width as usize,
            fi.height as usize,
            fi.component_count as usize,
        ),
    )?;
    let out = charls::CharLS::default()
        .decode(data)
        .map_err(|e| codec_err(CODEC, frame, e))?;
    let wide = fi.bits_per_sample > 8;
    let values: Vec<i64> = if wide {
        out.chunks_exact(2)
            .map(|c| i64::from(u16::from_ne_bytes([c[0], c[1]])))
            .collect()
    } else {
        out.iter().map(|&v| i64::from(v)).collect()
    };
    let comps = fi.component_count.max(1) as usize;
    let pixels = fi.width as usize * fi.height as usize;
    if values.len() < pixels * comps {
        return Err(codec_err(
            CODEC,
            frame,
            "decoded fewer samples than the frame needs",
        ));
    }
    let values = if jpeg_ls_scan_components(data) == Some(1) && comps > 1 {
        // by plane: interleave
        (0..pixels * comps)
            .map(|i| values[(i % comps) * pixels + i / comps])
            .collect()
    } else {
        values
    };
    let raw = to_raw(values.into_iter(), info.bits_allocated);
    finish(info, raw, info.photometric.clone())
}

/// The number of components in the first scan (Ns of the first SOS marker segment).
fn jpeg_ls_scan_components(data: &[u8]) -> Option<u8> {
    let sos = data.windows(2).position(|w| w == [0xFF, 0xDA])?;
    data.get(sos + 4).copied()
}

/// The multiple component transform flag of the first COD segment (ITU-T T.800 A.6.1).
fn j2k_mct(data: &[u8]) -> bool {
    let Some(soc) = data.windows(2).position(|w| w == [0xFF, 0x4F]) else {
        return false;
    };
    let mut pos = soc + 2;
    while let Some(&[0xFF, m, l1, l2]) = data.get(pos..pos + 4) {
        if m == 0x52 {
            return data.get(pos + 8).is_some_and(|&b| b != 0);
        }
        if m == 0x90 || m == 0x93 {
            break; // SOT/SOD: past the main header
        }
        pos += 2 + u16::from_be_bytes([l1, l2]) as usize;
    }
    false
}

fn decode_j2k(data: &[u8], info: &PixelInfo, frame: u32) -> Result<Frame, DecodeError> {
    const CODEC: &str = "JPEG 2000 (OpenJPEG)";
    if !matches!(info.bits_allocated, 8 | 16 | 32) || info.bits_allocated == 1 {
        return Err(DecodeError::Unsupported(format!(
            "JPEG 2000 with BitsAllocated {} is not supported",
            info.bits_allocated
        )));
    }
    let image = jpeg2k::Image::from_bytes(data).map_err(|e| codec_err(CODEC, frame, e))?;
    let comps = image.components();
    let first = comps
        .first()
        .ok_or_else(|| codec_err(CODEC, frame, "no components"))?;
    check_geometry(
        CODEC,
        frame,
        info,
        (first.width() as usize, first.height() as usize, comps.len()),
    )?;
    if comps
        .iter()
        .any(|c| c.width() != first.width() || c.height() != first.height())
    {
        return Err(DecodeError::Unsupported(
            "JPEG 2000 with subsampled components is not supported".into(),
        ));
    }
    let pixels = info.rows as usize * info.cols as usize;
    let n = comps.len();
    if comps.iter().any(|c| c.data().len() < pixels) {
        return Err(codec_err(
            CODEC,
            frame,
            "a component has fewer samples than the image",
        ));
    }
    let values = (0..pixels * n).map(|i| comps[i % n].data()[i / n] as i64);
    let raw = to_raw(values, info.bits_allocated);
    // OpenJPEG applies the inverse MCT itself (T.800 G.2/G.3): the samples are RGB then,
    // whatever the data set says (YBR_ICT, YBR_RCT, or a mislabelled RGB/YBR_FULL).
    let photometric = if n == 3
        && (j2k_mct(data) || matches!(info.photometric, Photometric::YbrIct | Photometric::YbrRct))
    {
        Photometric::Rgb
    } else {
        info.photometric.clone()
    };
    finish(info, raw, photometric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_extension_uses_bits_stored() {
        assert_eq!(extend(0x0FFF, 12), -1);
        assert_eq!(extend(0xF7FF, 12), 2047);
        assert_eq!(mask(0xF7FF, 12), 0x7FF);
    }

    #[test]
    fn ybr422_expansion() {
        let out = expand_ybr422(&[10, 20, 1, 2], 2, 1);
        assert_eq!(out, vec![10, 1, 2, 20, 1, 2]);
    }

    #[test]
    fn planes_to_pixels() {
        let out = interleave_planes(&[1, 2, 3, 4, 5, 6], 2, 3, 1);
        assert_eq!(out, vec![1, 3, 5, 2, 4, 6]);
    }
}
