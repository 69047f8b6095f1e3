//! Encoders from native (uncompressed) frames to the transfer syntaxes a receiver may ask
//! for, and the Pixel Data element and attribute updates that go with them.
//!
//! | target | [`Target`] | how |
//! |---|---|---|
//! | Explicit VR Little Endian `1.2.840.10008.1.2.1` | `ExplicitVrLittleEndian` | the samples, here |
//! | RLE Lossless `1.2.840.10008.1.2.5` | `RleLossless` | PS3.5 Annex G, here ([`rle`]) |
//! | JPEG-LS Lossless `1.2.840.10008.1.2.4.80` | `JpegLsLossless` | CharLS 2.4 (C++) |
//! | JPEG 2000 Lossless `1.2.840.10008.1.2.4.90` | `Jpeg2000Lossless` | openjp2, OpenJPEG's Rust port |
//! | JPEG Baseline `1.2.840.10008.1.2.4.50` | `JpegBaseline` | jpeg-encoder, 8-bit only |
//!
//! [`encode_frames`] takes frames laid out as a [`FrameLayout`] says (the Image Pixel
//! module) and returns an [`Encoded`]: the fragments (one per frame) with their Basic
//! Offset Table, or the native bytes, plus the attribute values the new transfer syntax
//! requires. [`Encoded::apply`] writes those into a file object; [`encapsulated_pixel_data`]
//! gives the bytes of the encapsulated element for writers that stream.
//!
//! The lossless encoders are exact for every sample bit inside Bits Stored; bits above it
//! are not pixel data (PS3.5 8.1.1) and are dropped by JPEG-LS and JPEG 2000, so a frame
//! that carries anything there other than zeros or the sign extension is refused
//! ([`EncodeError::BitsAboveStored`]) rather than altered. Bits Stored is taken to end at
//! High Bit (High Bit = Bits Stored - 1), as the codecs' sample precision assumes.
//! CPU-bound and single-threaded per call: run it off the async runtime.

mod j2k;
mod jpeg;
mod jpegls;
mod rle;
mod samples;

use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::{FileDicomObject, InMemDicomObject};

pub use samples::FrameLayout;

/// A transfer syntax this module encodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// Explicit VR Little Endian, the samples as they are.
    ExplicitVrLittleEndian,
    /// RLE Lossless (PS3.5 Annex G).
    RleLossless,
    /// JPEG-LS Lossless (ISO/IEC 14495-1, NEAR = 0).
    JpegLsLossless,
    /// JPEG 2000 Lossless Only (ISO/IEC 15444-1, reversible 5/3 wavelet).
    Jpeg2000Lossless,
    /// JPEG Baseline (Process 1), 8-bit; lossy, for previews.
    JpegBaseline {
        /// 1 (smallest) to 100 (best), as libjpeg's scale.
        quality: u8,
    },
}

impl Target {
    /// The transfer syntax UID (PS3.6 Table A-1).
    pub fn uid(self) -> &'static str {
        match self {
            Target::ExplicitVrLittleEndian => "1.2.840.10008.1.2.1",
            Target::RleLossless => "1.2.840.10008.1.2.5",
            Target::JpegLsLossless => "1.2.840.10008.1.2.4.80",
            Target::Jpeg2000Lossless => "1.2.840.10008.1.2.4.90",
            Target::JpegBaseline { .. } => "1.2.840.10008.1.2.4.50",
        }
    }

    /// The target for a transfer syntax UID (trailing NUL/space padding allowed); JPEG
    /// Baseline gets `default_jpeg_quality`.
    pub fn from_uid(uid: &str, default_jpeg_quality: u8) -> Option<Self> {
        let uid = uid.trim_end_matches(['\0', ' ']);
        [
            Target::ExplicitVrLittleEndian,
            Target::RleLossless,
            Target::JpegLsLossless,
            Target::Jpeg2000Lossless,
            Target::JpegBaseline {
                quality: default_jpeg_quality,
            },
        ]
        .into_iter()
        .find(|t| t.uid() == uid)
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The Image Pixel attributes are inconsistent or out of range.
    #[error("invalid image pixel attributes: {0}")]
    InvalidLayout(String),
    /// A frame has the wrong number of bytes for its layout.
    #[error("frame {frame} has {actual} bytes, the layout needs {expected}")]
    FrameLength {
        /// index of the frame
        frame: usize,
        /// bytes the layout needs
        expected: usize,
        /// bytes given
        actual: usize,
    },
    /// No frames were given.
    #[error("no frames to encode")]
    NoFrames,
    /// The target cannot carry this kind of image (bit depth, samples, photometric).
    #[error("{target} cannot encode {what}")]
    Unsupported {
        /// transfer syntax UID
        target: &'static str,
        /// what it cannot carry
        what: String,
    },
    /// A sample has bits set above Bits Stored that are not its sign extension (overlay
    /// bits or garbage); a codec that only keeps Bits Stored would drop them.
    #[error(
        "frame {frame} has sample bits above Bits Stored ({bits_stored}); {target} would drop them"
    )]
    BitsAboveStored {
        /// transfer syntax UID
        target: &'static str,
        /// index of the frame
        frame: usize,
        /// Bits Stored
        bits_stored: u16,
    },
    /// The codec failed.
    #[error("{target} encoder failed on frame {frame}: {message}")]
    Codec {
        /// transfer syntax UID
        target: &'static str,
        /// index of the frame
        frame: usize,
        /// the codec's message
        message: String,
    },
    /// Writing the temporary file the JPEG 2000 encoder writes to failed.
    #[error("JPEG 2000 temporary file: {0}")]
    Io(#[from] std::io::Error),
}

/// Result of this module.
pub type Result<T, E = EncodeError> = std::result::Result<T, E>;

/// What lossy compression did, for the Lossy Image Compression attributes (PS3.3
/// C.7.6.1.1.5).
#[derive(Debug, Clone, PartialEq)]
pub struct LossyInfo {
    /// uncompressed size / compressed size, over all frames
    pub ratio: f64,
    /// Lossy Image Compression Method defined term, e.g. `ISO_10918_1`
    pub method: &'static str,
}

/// The encoded pixel data.
#[derive(Debug, Clone, PartialEq)]
pub enum EncodedPixels {
    /// Native: all frames back to back, padded to even length (PS3.5 8.1.1, 7.1.1).
    Native {
        /// the value of Pixel Data
        data: Vec<u8>,
        /// OW for Bits Allocated above 8, else OB (PS3.5 8.1.2 / A.2)
        vr: VR,
    },
    /// Encapsulated (PS3.5 A.4): one even-length fragment per frame.
    Encapsulated {
        /// one fragment per frame, each of even length
        fragments: Vec<Vec<u8>>,
        /// offset of each frame's first fragment item from the first fragment item
        /// (PS3.5 A.4); empty when the offsets do not fit in 32 bits
        basic_offset_table: Vec<u32>,
    },
}

/// Frames encoded to a target, with the attribute values that must change with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// the target
    pub target: Target,
    /// the pixel data
    pub pixels: EncodedPixels,
    /// Photometric Interpretation (0028,0004) of the encoded data
    pub photometric: String,
    /// Planar Configuration (0028,0006); `None` for one sample per pixel
    pub planar_configuration: Option<u16>,
    /// set when the encoding was lossy
    pub lossy: Option<LossyInfo>,
}

/// Encodes native frames to `target`.
///
/// Every frame has the layout `layout` and holds its samples as little-endian bytes
/// (the Pixel Data of one frame of an Implicit/Explicit VR Little Endian data set).
/// A frame may carry one trailing pad byte when its size is odd.
pub fn encode_frames<F: AsRef<[u8]>>(
    layout: &FrameLayout,
    frames: &[F],
    target: Target,
) -> Result<Encoded> {
    layout.validate()?;
    if frames.is_empty() {
        return Err(EncodeError::NoFrames);
    }
    let expected = layout.frame_len();
    let frames = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_ref();
            // one pad byte is allowed: a single odd-length frame is the whole even-length
            // Pixel Data value (PS3.5 8.1.1)
            if f.len() == expected || (expected % 2 == 1 && f.len() == expected + 1) {
                Ok(&f[..expected])
            } else {
                Err(EncodeError::FrameLength {
                    frame: i,
                    expected,
                    actual: f.len(),
                })
            }
        })
        .collect::<Result<Vec<&[u8]>>>()?;

    let uid = target.uid();
    let codec = match target {
        Target::ExplicitVrLittleEndian => return Ok(native(layout, &frames)),
        Target::RleLossless => Codec::Rle,
        Target::JpegLsLossless => Codec::JpegLs,
        Target::Jpeg2000Lossless => Codec::J2k,
        Target::JpegBaseline { quality } => Codec::Jpeg(quality),
    };
    // Every encapsulated codec here works on whole bytes per sample.
    if !matches!(layout.bits_allocated, 8 | 16 | 32) {
        return Err(EncodeError::Unsupported {
            target: uid,
            what: format!("Bits Allocated {}", layout.bits_allocated),
        });
    }

    let mut fragments = Vec::with_capacity(frames.len());
    let mut photometric = layout.photometric.as_str();
    for (i, frame) in frames.iter().enumerate() {
        let full = samples::FullFrame::new(layout, frame)?;
        let out = match codec {
            Codec::Rle => rle::encode_frame(&full)?,
            Codec::JpegLs => {
                full.check_bits_above_stored(uid, i)?;
                jpegls::encode_frame(&full, i)?
            }
            Codec::J2k => {
                full.check_bits_above_stored(uid, i)?;
                j2k::encode_frame(&full, i)?
            }
            Codec::Jpeg(quality) => jpeg::encode_frame(&full, quality, i)?,
        };
        photometric = out.photometric;
        fragments.push(pad_even(out.data));
    }
    let photometric = photometric.to_string();

    let lossy = match target {
        Target::JpegBaseline { .. } => {
            let compressed: usize = fragments.iter().map(Vec::len).sum();
            let uncompressed = expected * frames.len();
            Some(LossyInfo {
                ratio: uncompressed as f64 / compressed.max(1) as f64,
                method: "ISO_10918_1",
            })
        }
        _ => None,
    };
    let basic_offset_table = basic_offset_table(&fragments);
    Ok(Encoded {
        target,
        pixels: EncodedPixels::Encapsulated {
            fragments,
            basic_offset_table,
        },
        photometric,
        // PS3.5 8.2.1, 8.2.3 and 8.2.4: the JPEG family orders components itself, and
        // Planar Configuration shall be 0. RLE (Annex G) always orders segments by
        // sample whatever the attribute says; 0 is what decoders (dicom-rs, pydicom)
        // produce and what DCMTK rebuilds from it, so it is used for RLE too.
        planar_configuration: (layout.samples_per_pixel > 1).then_some(0),
        lossy,
    })
}

/// The encapsulated codecs.
#[derive(Clone, Copy)]
enum Codec {
    Rle,
    JpegLs,
    J2k,
    Jpeg(u8),
}

fn native(layout: &FrameLayout, frames: &[&[u8]]) -> Encoded {
    let data = if layout.bits_allocated == 1 {
        samples::concat_bits(frames, layout.bits_per_frame())
    } else {
        frames.concat()
    };
    Encoded {
        target: Target::ExplicitVrLittleEndian,
        pixels: EncodedPixels::Native {
            data: pad_even(data),
            vr: if layout.bits_allocated > 8 {
                VR::OW
            } else {
                VR::OB
            },
        },
        photometric: layout.photometric.clone(),
        planar_configuration: (layout.samples_per_pixel > 1).then_some(layout.planar_configuration),
        lossy: None,
    }
}

/// Pads to even length with a NUL: items and values have even lengths (PS3.5 7.1.1,
/// A.4); decoders of the JPEG family and RLE ignore the trailing byte.
fn pad_even(mut data: Vec<u8>) -> Vec<u8> {
    if data.len() % 2 == 1 {
        data.push(0);
    }
    data
}

/// The Basic Offset Table for one fragment per frame: the offset of each frame's item
/// tag, counted from the first byte of the first fragment's item tag (PS3.5 A.4, Table
/// A.4-1). Empty (which A.4 allows) when the data exceeds what 32-bit offsets reach;
/// the Extended Offset Table (7FE0,0001) is not written yet.
fn basic_offset_table(fragments: &[Vec<u8>]) -> Vec<u32> {
    let mut offsets = Vec::with_capacity(fragments.len());
    let mut at: u64 = 0;
    for f in fragments {
        match u32::try_from(at) {
            Ok(o) => offsets.push(o),
            Err(_) => return Vec::new(),
        }
        at += 8 + f.len() as u64;
    }
    offsets
}

const ITEM: Tag = Tag(0xFFFE, 0xE000);
const SEQUENCE_DELIMITATION: Tag = Tag(0xFFFE, 0xE0DD);

fn push_tag_len(out: &mut Vec<u8>, tag: Tag, len: u32) {
    out.extend_from_slice(&tag.0.to_le_bytes());
    out.extend_from_slice(&tag.1.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
}

/// The whole encapsulated Pixel Data element in Explicit VR Little Endian (every
/// encapsulated transfer syntax is, PS3.5 A.4): tag (7FE0,0010), VR OB, undefined length,
/// the Basic Offset Table item, one item per fragment, the Sequence Delimitation Item.
///
/// Fragments must be of even length (as [`encode_frames`] makes them); a fragment
/// larger than 4 GiB - 2 cannot be an item and is an error.
pub fn encapsulated_pixel_data(
    basic_offset_table: &[u32],
    fragments: &[Vec<u8>],
) -> Result<Vec<u8>> {
    let len32 = |n: usize| {
        u32::try_from(n)
            .ok()
            .filter(|&n| n != u32::MAX)
            .ok_or_else(|| EncodeError::InvalidLayout(format!("fragment of {n} bytes")))
    };
    let total: usize = fragments.iter().map(|f| f.len() + 8).sum();
    let mut out = Vec::with_capacity(12 + 8 + 4 * basic_offset_table.len() + total + 8);
    out.extend_from_slice(&tags::PIXEL_DATA.0.to_le_bytes());
    out.extend_from_slice(&tags::PIXEL_DATA.1.to_le_bytes());
    out.extend_from_slice(b"OB\0\0");
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    push_tag_len(&mut out, ITEM, len32(basic_offset_table.len() * 4)?);
    for o in basic_offset_table {
        out.extend_from_slice(&o.to_le_bytes());
    }
    for f in fragments {
        push_tag_len(&mut out, ITEM, len32(f.len())?);
        out.extend_from_slice(f);
    }
    push_tag_len(&mut out, SEQUENCE_DELIMITATION, 0);
    Ok(out)
}

impl Encoded {
    /// The Pixel Data element as dicom-object holds it (its writer adds the item and
    /// delimiter tags of PS3.5 A.4).
    pub fn pixel_data_element(&self) -> InMemElement {
        match &self.pixels {
            EncodedPixels::Native { data, vr } => {
                DataElement::new(tags::PIXEL_DATA, *vr, PrimitiveValue::from(data.clone()))
            }
            EncodedPixels::Encapsulated {
                fragments,
                basic_offset_table,
            } => DataElement::new(
                tags::PIXEL_DATA,
                VR::OB,
                Value::PixelSequence(PixelFragmentSequence::new(
                    basic_offset_table.clone(),
                    fragments.clone(),
                )),
            ),
        }
    }

    /// Writes the encoded pixels into `obj` and the attributes the new transfer syntax
    /// requires:
    /// - Transfer Syntax UID (0002,0010) of the file meta;
    /// - Photometric Interpretation (0028,0004) and, with more than one sample, Planar
    ///   Configuration (0028,0006) (PS3.5 8.2, PS3.3 C.7.6.3.1.2-3);
    /// - when lossy: Lossy Image Compression (0028,2110) "01", and the ratio and method
    ///   appended to Lossy Image Compression Ratio (0028,2112) and Method (0028,2114),
    ///   which keep one value per lossy step in order (PS3.3 C.7.6.1.1.5). A lossless
    ///   encoding leaves them alone: it neither causes nor undoes loss.
    /// - removes the Extended Offset Table (7FE0,0001/0002), which would describe the
    ///   previous encoding.
    ///
    /// The SOP Instance UID is the caller's: lossless transfer syntax changes keep it;
    /// whether a lossy preview is a new instance (PS3.3 C.7.6.1.1.5) depends on whether
    /// it is stored.
    pub fn apply(&self, obj: &mut FileDicomObject<InMemDicomObject>) {
        obj.put(self.pixel_data_element());
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(self.photometric.as_str()),
        ));
        if let Some(pc) = self.planar_configuration {
            obj.put(DataElement::new(
                tags::PLANAR_CONFIGURATION,
                VR::US,
                PrimitiveValue::from(pc),
            ));
        }
        if let Some(lossy) = &self.lossy {
            obj.put(DataElement::new(
                tags::LOSSY_IMAGE_COMPRESSION,
                VR::CS,
                PrimitiveValue::from("01"),
            ));
            let mut ratios = strings(obj, tags::LOSSY_IMAGE_COMPRESSION_RATIO);
            ratios.push(format_ds(lossy.ratio));
            obj.put(DataElement::new(
                tags::LOSSY_IMAGE_COMPRESSION_RATIO,
                VR::DS,
                PrimitiveValue::Strs(ratios.into()),
            ));
            let mut methods = strings(obj, tags::LOSSY_IMAGE_COMPRESSION_METHOD);
            methods.push(lossy.method.to_string());
            obj.put(DataElement::new(
                tags::LOSSY_IMAGE_COMPRESSION_METHOD,
                VR::CS,
                PrimitiveValue::Strs(methods.into()),
            ));
        }
        obj.remove_element(tags::EXTENDED_OFFSET_TABLE);
        obj.remove_element(tags::EXTENDED_OFFSET_TABLE_LENGTHS);
        let uid = self.target.uid().to_string();
        obj.update_meta(|meta| meta.transfer_syntax = uid);
    }
}

/// The values of a multi-valued string attribute, trimmed; empty when absent.
fn strings(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.value().to_multi_str().ok().map(|v| v.to_vec()))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A decimal string of at most 16 characters (PS3.5 6.2, DS).
fn format_ds(v: f64) -> String {
    let s = format!("{v:.4}");
    if s.len() <= 16 {
        s
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_item_headers() {
        let frags = vec![vec![0u8; 10], vec![0u8; 4], vec![0u8; 2]];
        assert_eq!(basic_offset_table(&frags), vec![0, 18, 30]);
    }

    #[test]
    fn encapsulated_layout() {
        let bytes = encapsulated_pixel_data(&[0, 10], &[vec![1, 2], vec![3, 4]]).unwrap();
        let expected: Vec<u8> = [
            &[
                0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ][..],
            &[0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0],
            &[0xFE, 0xFF, 0x00, 0xE0, 2, 0, 0, 0, 1, 2],
            &[0xFE, 0xFF, 0x00, 0xE0, 2, 0, 0, 0, 3, 4],
            &[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn ds_fits() {
        assert_eq!(format_ds(12.345678), "12.3457");
        assert!(format_ds(1e30).len() <= 16);
    }

    #[test]
    fn uid_round_trip() {
        for t in [
            Target::ExplicitVrLittleEndian,
            Target::RleLossless,
            Target::JpegLsLossless,
            Target::Jpeg2000Lossless,
            Target::JpegBaseline { quality: 80 },
        ] {
            assert_eq!(Target::from_uid(t.uid(), 80), Some(t));
        }
        assert_eq!(
            Target::from_uid("1.2.840.10008.1.2.5\0", 80),
            Some(Target::RleLossless)
        );
        assert_eq!(Target::from_uid("1.2.840.10008.1.2", 80), None);
    }
}
