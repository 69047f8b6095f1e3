//! The input layout and the one frame representation every encoder starts from:
//! pixel-interleaved, full-resolution samples, whatever the planar configuration and
//! chroma subsampling of the native data were.

use std::borrow::Cow;

use super::{EncodeError, Result};

/// How the samples of a native frame are laid out: the Image Pixel module attributes
/// (PS3.3 C.7.6.3) that the encoders need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLayout {
    /// Rows (0028,0010)
    pub rows: u16,
    /// Columns (0028,0011)
    pub columns: u16,
    /// Samples per Pixel (0028,0002): 1 or 3
    pub samples_per_pixel: u16,
    /// Bits Allocated (0028,0100): 1, 8, 16 or 32
    pub bits_allocated: u16,
    /// Bits Stored (0028,0101); High Bit is taken to be Bits Stored - 1
    pub bits_stored: u16,
    /// Pixel Representation (0028,0103): 0 unsigned, 1 two's complement
    pub pixel_representation: u16,
    /// Photometric Interpretation (0028,0004), without padding
    pub photometric: String,
    /// Planar Configuration (0028,0006): 0 pixel-interleaved, 1 plane by plane; ignored
    /// for one sample per pixel
    pub planar_configuration: u16,
}

/// Photometric interpretations of native data that the encoders accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Photometric {
    Monochrome1,
    Monochrome2,
    PaletteColor,
    Rgb,
    YbrFull,
    YbrFull422,
}

impl Photometric {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.trim_end_matches(['\0', ' ']) {
            "MONOCHROME1" => Self::Monochrome1,
            "MONOCHROME2" => Self::Monochrome2,
            "PALETTE COLOR" => Self::PaletteColor,
            "RGB" => Self::Rgb,
            "YBR_FULL" => Self::YbrFull,
            "YBR_FULL_422" => Self::YbrFull422,
            _ => return None,
        })
    }

    /// The defined term (PS3.3 C.7.6.3.1.2).
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Monochrome1 => "MONOCHROME1",
            Self::Monochrome2 => "MONOCHROME2",
            Self::PaletteColor => "PALETTE COLOR",
            Self::Rgb => "RGB",
            Self::YbrFull => "YBR_FULL",
            Self::YbrFull422 => "YBR_FULL_422",
        }
    }

    fn samples(self) -> u16 {
        match self {
            Self::Monochrome1 | Self::Monochrome2 | Self::PaletteColor => 1,
            Self::Rgb | Self::YbrFull | Self::YbrFull422 => 3,
        }
    }
}

impl FrameLayout {
    pub(super) fn photometric(&self) -> Result<Photometric> {
        Photometric::parse(&self.photometric).ok_or_else(|| {
            EncodeError::InvalidLayout(format!(
                "Photometric Interpretation {:?} of native data",
                self.photometric
            ))
        })
    }

    /// Checks the attributes against each other (PS3.3 C.7.6.3.1).
    pub(super) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(EncodeError::InvalidLayout(what));
        if self.rows == 0 || self.columns == 0 {
            return bad(format!("{} x {} pixels", self.rows, self.columns));
        }
        if !matches!(self.bits_allocated, 1 | 8 | 16 | 32) {
            return bad(format!("Bits Allocated {}", self.bits_allocated));
        }
        if self.bits_stored == 0 || self.bits_stored > self.bits_allocated {
            return bad(format!(
                "Bits Stored {} with Bits Allocated {}",
                self.bits_stored, self.bits_allocated
            ));
        }
        if self.pixel_representation > 1 {
            return bad(format!(
                "Pixel Representation {}",
                self.pixel_representation
            ));
        }
        if self.samples_per_pixel > 1 && self.planar_configuration > 1 {
            return bad(format!(
                "Planar Configuration {}",
                self.planar_configuration
            ));
        }
        let pi = self.photometric()?;
        if pi.samples() != self.samples_per_pixel {
            return bad(format!(
                "{} with {} samples per pixel",
                pi.as_str(),
                self.samples_per_pixel
            ));
        }
        // PS3.3 C.7.6.3.1.2: YBR_FULL_422 stores Y1 Y2 Cb Cr per pair of pixels, so
        // pixel-interleaved, and needs an even number of columns.
        if pi == Photometric::YbrFull422
            && (self.columns % 2 == 1 || self.planar_configuration != 0)
        {
            return bad(format!(
                "YBR_FULL_422 with {} columns, Planar Configuration {}",
                self.columns, self.planar_configuration
            ));
        }
        Ok(())
    }

    pub(super) fn pixels(&self) -> usize {
        self.rows as usize * self.columns as usize
    }

    /// Bits of one frame (Bits Allocated 1 frames need not end on a byte, PS3.5 8.1.1).
    pub(super) fn bits_per_frame(&self) -> usize {
        self.pixels() * self.samples_per_pixel as usize * self.bits_allocated as usize
    }

    /// Bytes of one native frame.
    pub(super) fn frame_len(&self) -> usize {
        let bytes = (self.bits_allocated as usize).div_ceil(8);
        if self.photometric().ok() == Some(Photometric::YbrFull422) {
            // two luminance and two chrominance samples per two pixels
            self.pixels() * 2 * bytes
        } else {
            self.bits_per_frame().div_ceil(8)
        }
    }
}

/// One encoded frame and the photometric interpretation of what it encodes.
pub(super) struct CodedFrame {
    pub(super) data: Vec<u8>,
    pub(super) photometric: &'static str,
}

/// A frame in the form all encoders start from: pixel-interleaved, every pixel with all
/// its samples, little-endian containers of Bits Allocated.
pub(super) struct FullFrame<'a> {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) spp: usize,
    /// bytes per sample container: 1, 2 or 4
    pub(super) bytes: usize,
    pub(super) bits_stored: u16,
    pub(super) signed: bool,
    /// YBR_FULL_422 became YBR_FULL
    pub(super) photometric: Photometric,
    pub(super) data: Cow<'a, [u8]>,
}

impl<'a> FullFrame<'a> {
    /// `frame` has exactly `layout.frame_len()` bytes and Bits Allocated is 8, 16 or 32.
    pub(super) fn new(layout: &FrameLayout, frame: &'a [u8]) -> Result<Self> {
        let bytes = layout.bits_allocated as usize / 8;
        let spp = layout.samples_per_pixel as usize;
        let pixels = layout.pixels();
        let mut photometric = layout.photometric()?;
        let data: Cow<'a, [u8]> = if photometric == Photometric::YbrFull422 {
            // PS3.3 C.7.6.3.1.2: Y1 Y2 Cb Cr per pixel pair; both pixels take the pair's
            // chroma, which is exact: subsampling already happened at the source.
            photometric = Photometric::YbrFull;
            let mut out = Vec::with_capacity(pixels * 3 * bytes);
            for quad in frame.chunks_exact(4 * bytes) {
                let (y1, rest) = quad.split_at(bytes);
                let (y2, chroma) = rest.split_at(bytes);
                out.extend_from_slice(y1);
                out.extend_from_slice(chroma);
                out.extend_from_slice(y2);
                out.extend_from_slice(chroma);
            }
            Cow::Owned(out)
        } else if spp > 1 && layout.planar_configuration == 1 {
            // plane by plane (PS3.3 C.7.6.3.1.3) to pixel-interleaved
            let plane = pixels * bytes;
            let mut out = vec![0u8; frame.len()];
            for s in 0..spp {
                let src = &frame[s * plane..(s + 1) * plane];
                for (p, sample) in src.chunks_exact(bytes).enumerate() {
                    let at = (p * spp + s) * bytes;
                    out[at..at + bytes].copy_from_slice(sample);
                }
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(frame)
        };
        Ok(FullFrame {
            rows: layout.rows as usize,
            cols: layout.columns as usize,
            spp,
            bytes,
            bits_stored: layout.bits_stored,
            signed: layout.pixel_representation == 1,
            photometric,
            data,
        })
    }

    /// The container value of every sample, in pixel-interleaved order.
    pub(super) fn containers(&self) -> impl Iterator<Item = u32> + '_ {
        self.data.chunks_exact(self.bytes).map(|b| match *b {
            [a] => a as u32,
            [a, b] => u16::from_le_bytes([a, b]) as u32,
            [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
            _ => 0,
        })
    }

    /// Mask of the Bits Stored.
    pub(super) fn stored_mask(&self) -> u32 {
        if self.bits_stored >= 32 {
            u32::MAX
        } else {
            (1u32 << self.bits_stored) - 1
        }
    }

    /// The sample value: the Bits Stored, sign-extended when signed (PS3.5 8.1.1).
    pub(super) fn value(&self, container: u32) -> i32 {
        let v = container & self.stored_mask();
        if self.signed && self.bits_stored < 32 && v >> (self.bits_stored - 1) & 1 == 1 {
            (v | !self.stored_mask()) as i32
        } else {
            v as i32
        }
    }

    /// Refuses frames whose bits above Bits Stored hold anything but zeros or the sign
    /// extension: codecs that keep only Bits Stored would silently drop them.
    pub(super) fn check_bits_above_stored(&self, target: &'static str, frame: usize) -> Result<()> {
        let container_bits = self.bytes as u32 * 8;
        if self.bits_stored as u32 >= container_bits {
            return Ok(());
        }
        let container_mask = if container_bits == 32 {
            u32::MAX
        } else {
            (1u32 << container_bits) - 1
        };
        let ok = self.containers().all(|c| {
            let sign_extended = self.value(c) as u32 & container_mask;
            c == c & self.stored_mask() || (self.signed && c == sign_extended)
        });
        if ok {
            Ok(())
        } else {
            Err(EncodeError::BitsAboveStored {
                target,
                frame,
                bits_stored: self.bits_stored,
            })
        }
    }
}

/// Native Bits Allocated 1 frames back to back: frame n + 1 starts at the bit after
/// frame n, not at a byte boundary (PS3.5 8.1.1); bits fill each byte from the least
/// significant.
pub(super) fn concat_bits(frames: &[&[u8]], bits_per_frame: usize) -> Vec<u8> {
    if bits_per_frame % 8 == 0 {
        return frames.concat();
    }
    let total = bits_per_frame * frames.len();
    let mut out = vec![0u8; total.div_ceil(8)];
    let mut at = 0usize;
    for frame in frames {
        for bit in 0..bits_per_frame {
            if frame[bit / 8] >> (bit % 8) & 1 == 1 {
                out[at / 8] |= 1 << (at % 8);
            }
            at += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(pi: &str, spp: u16, ba: u16, bs: u16, pr: u16, pc: u16) -> FrameLayout {
        FrameLayout {
            rows: 1,
            columns: 2,
            samples_per_pixel: spp,
            bits_allocated: ba,
            bits_stored: bs,
            pixel_representation: pr,
            photometric: pi.into(),
            planar_configuration: pc,
        }
    }

    #[test]
    fn ybr_422_expands() {
        let l = layout("YBR_FULL_422", 3, 8, 8, 0, 0);
        assert_eq!(l.frame_len(), 4);
        let f = FullFrame::new(&l, &[10, 20, 1, 2]).unwrap();
        assert_eq!(&*f.data, &[10, 1, 2, 20, 1, 2]);
        assert_eq!(f.photometric, Photometric::YbrFull);
    }

    #[test]
    fn planar_interleaves() {
        let l = layout("RGB", 3, 8, 8, 0, 1);
        let f = FullFrame::new(&l, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(&*f.data, &[1, 3, 5, 2, 4, 6]);
    }

    #[test]
    fn signed_values_and_high_bits() {
        let l = layout("MONOCHROME2", 1, 16, 12, 1, 0);
        // -1 sign-extended, and -1 with only 12 bits: both fine
        let f = FullFrame::new(&l, &[0xFF, 0xFF, 0xFF, 0x0F]).unwrap();
        assert_eq!(
            f.containers().map(|c| f.value(c)).collect::<Vec<_>>(),
            [-1, -1]
        );
        assert!(f.check_bits_above_stored("x", 0).is_ok());
        // an overlay bit at 15 on a positive value is not a sign extension
        let f = FullFrame::new(&l, &[0x01, 0x80, 0, 0]).unwrap();
        assert!(f.check_bits_above_stored("x", 0).is_err());
        let l = layout("MONOCHROME2", 1, 16, 12, 0, 0);
        let f = FullFrame::new(&l, &[0x00, 0x10, 0, 0]).unwrap();
        assert!(f.check_bits_above_stored("x", 0).is_err());
    }

    #[test]
    fn one_bit_frames_pack_across_bytes() {
        // 3 x 3 = 9 bits per frame: frame 1 starts at bit 9
        let l = FrameLayout {
            rows: 3,
            columns: 3,
            ..layout("MONOCHROME2", 1, 1, 1, 0, 0)
        };
        assert_eq!(l.frame_len(), 2);
        let out = concat_bits(&[&[0xFF, 0x01], &[0x01, 0x01]], 9);
        assert_eq!(out, vec![0xFF, 0x03, 0x02]);
    }

    #[test]
    fn rejects_mismatched_samples() {
        assert!(layout("RGB", 1, 8, 8, 0, 0).validate().is_err());
        assert!(layout("YBR_ICT", 3, 8, 8, 0, 0).validate().is_err());
        assert!(layout("MONOCHROME2", 1, 16, 17, 0, 0).validate().is_err());
        assert!(layout("MONOCHROME2", 1, 16, 12, 0, 0).validate().is_ok());
    }
}
