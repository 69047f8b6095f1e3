//! Rendering a frame to an 8-bit image (PNG or JPEG), as a viewer would show it.
//!
//! Greyscale: stored value → Modality LUT (Rescale Slope/Intercept, PS3.3 C.11.1) → VOI LUT
//! (window or VOI LUT Sequence, PS3.3 C.11.2) → MONOCHROME1 inversion (PS3.3 C.7.6.3.1.2).
//! Colour: PALETTE COLOR through its LUTs (PS3.3 C.7.6.3.1.5, C.7.9), YBR_FULL to RGB
//! (PS3.3 C.7.6.3.1.2), RGB as is, samples above 8 bits scaled to 8. Enhanced multi-frame
//! objects take rescale and window from the Per-Frame, then Shared Functional Groups
//! (PS3.3 C.7.6.16.2.9, C.7.6.16.2.10).
//!
//! The window picked, in order: [`RenderOptions::window`], the first Window Center/Width of
//! the frame, the first item of the VOI LUT Sequence, the frame's min..max.

use std::io::Cursor;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, GrayImage, ImageEncoder, RgbImage};

use crate::attrs;
use crate::decode::{self, DecodeError, Frame, Photometric};

/// VOI LUT Function (PS3.3 C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiFunction {
    /// LINEAR (C.11.2.1.2.1), the default
    #[default]
    Linear,
    /// LINEAR_EXACT (C.11.2.1.3.2)
    LinearExact,
    /// SIGMOID (C.11.2.1.3.1)
    Sigmoid,
}

impl VoiFunction {
    /// Parses the defined term of (0028,1056).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "LINEAR" => Some(Self::Linear),
            "LINEAR_EXACT" => Some(Self::LinearExact),
            "SIGMOID" => Some(Self::Sigmoid),
            _ => None,
        }
    }
}

/// Output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// PNG, lossless
    #[default]
    Png,
    /// baseline JPEG at this quality (1–100)
    Jpeg(u8),
}

/// How to render a frame.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// (center, width) of the window; `None`: from the object (see the module docs)
    pub window: Option<(f64, f64)>,
    /// the VOI LUT function; `None`: the object's (0028,1056), else LINEAR
    pub voi_function: Option<VoiFunction>,
    /// fit the image inside (width, height), keeping its aspect ratio; `None`: full size
    pub size: Option<(u32, u32)>,
    /// PNG or JPEG
    pub format: OutputFormat,
}

/// Why a frame could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The pixel data could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A photometric interpretation the renderer cannot show.
    #[error("cannot render photometric interpretation {0}")]
    Photometric(String),
    /// The palette colour LUTs are missing or malformed.
    #[error("palette colour LUT: {0}")]
    Palette(String),
    /// A window or option that makes no image.
    #[error("invalid render option: {0}")]
    Option(String),
    /// PNG or JPEG encoding failed.
    #[error("image encoding failed: {0}")]
    Encode(#[from] image::ImageError),
}

/// Decodes frame `frame` of `obj` and renders it to PNG or JPEG bytes.
pub fn render_frame(
    obj: &FileDicomObject<InMemDicomObject>,
    frame: u32,
    options: &RenderOptions,
) -> Result<Vec<u8>, RenderError> {
    let decoded = decode::decode_frame(obj, frame)?;
    let img = render_decoded(obj, &decoded, frame, options)?;
    encode(img, options)
}

/// Renders an already decoded frame of `obj` to an 8-bit image, before resizing and
/// encoding: the pixels [`render_frame`] encodes when `size` is `None`.
pub fn render_decoded(
    obj: &FileDicomObject<InMemDicomObject>,
    frame: &Frame,
    index: u32,
    options: &RenderOptions,
) -> Result<DynamicImage, RenderError> {
    let (w, h) = (frame.cols, frame.rows);
    match &frame.photometric {
        p if p.is_monochrome() => {
            let grey = render_grey(obj, frame, index, options)?;
            Ok(DynamicImage::ImageLuma8(
                GrayImage::from_raw(w, h, grey).ok_or_else(|| size_mismatch(frame))?,
            ))
        }
        Photometric::PaletteColor => {
            let rgb = palette_to_rgb(obj, frame)?;
            Ok(DynamicImage::ImageRgb8(
                RgbImage::from_raw(w, h, rgb).ok_or_else(|| size_mismatch(frame))?,
            ))
        }
        Photometric::Rgb | Photometric::YbrFull if frame.samples_per_pixel == 3 => {
            let mut rgb = to_8bit(frame);
            if frame.photometric == Photometric::YbrFull {
                ybr_full_to_rgb(&mut rgb);
            }
            Ok(DynamicImage::ImageRgb8(
                RgbImage::from_raw(w, h, rgb).ok_or_else(|| size_mismatch(frame))?,
            ))
        }
        other => Err(RenderError::Photometric(other.to_string())),
    }
}

fn size_mismatch(frame: &Frame) -> RenderError {
    RenderError::Option(format!(
        "{} samples for {}x{}x{}",
        frame.samples.len(),
        frame.cols,
        frame.rows,
        frame.samples_per_pixel
    ))
}

/// Resizes (if asked) and encodes.
fn encode(img: DynamicImage, options: &RenderOptions) -> Result<Vec<u8>, RenderError> {
    let img = match options.size {
        Some((mw, mh)) => resize_to_fit(img, mw, mh)?,
        None => img,
    };
    let mut out = Vec::new();
    let (w, h) = (img.width(), img.height());
    let color = img.color().into();
    match options.format {
        OutputFormat::Png => {
            PngEncoder::new(Cursor::new(&mut out)).write_image(img.as_bytes(), w, h, color)?
        }
        OutputFormat::Jpeg(q) => {
            if !(1..=100).contains(&q) {
                return Err(RenderError::Option(format!(
                    "JPEG quality {q} not in 1..=100"
                )));
            }
            JpegEncoder::new_with_quality(Cursor::new(&mut out), q).write_image(
                img.as_bytes(),
                w,
                h,
                color,
            )?
        }
    }
    Ok(out)
}

/// The size `(cols, rows)` fits inside `(max_w, max_h)` keeping its aspect ratio.
pub fn fit_size(cols: u32, rows: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let scale = (max_w as f64 / cols as f64).min(max_h as f64 / rows as f64);
    let w = ((cols as f64 * scale).round() as u32).clamp(1, max_w);
    let h = ((rows as f64 * scale).round() as u32).clamp(1, max_h);
    (w, h)
}

/// Downscaling averages exactly the source area each target pixel covers (fractional
/// weights at the edges): no aliasing of fine detail such as CR grid lines, and cheap on
/// 3000² images. Done here because `image`'s `thumbnail` snaps each target pixel to whole
/// source pixels, which shifts content by up to a source pixel at non-integer ratios
/// (measured: max error 41 levels on an 80→64 colour image), and its `resize` filters are
/// not area averages. Upscaling (rarely asked of a thumbnail) is `image`'s bilinear.
fn resize_to_fit(img: DynamicImage, max_w: u32, max_h: u32) -> Result<DynamicImage, RenderError> {
    if max_w == 0 || max_h == 0 {
        return Err(RenderError::Option(format!("size {max_w}x{max_h}")));
    }
    let (w, h) = fit_size(img.width(), img.height(), max_w, max_h);
    if (w, h) == (img.width(), img.height()) {
        return Ok(img);
    }
    if w > img.width() || h > img.height() {
        return Ok(img.resize_exact(w, h, image::imageops::FilterType::Triangle));
    }
    Ok(match img {
        DynamicImage::ImageLuma8(g) => {
            let (sw, sh) = g.dimensions();
            let out = area_downscale(g.as_raw(), sw as usize, sh as usize, 1, w, h);
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, out).ok_or_else(bad_resize)?)
        }
        other => {
            let rgb = other.to_rgb8();
            let (sw, sh) = rgb.dimensions();
            let out = area_downscale(rgb.as_raw(), sw as usize, sh as usize, 3, w, h);
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, out).ok_or_else(bad_resize)?)
        }
    })
}

fn bad_resize() -> RenderError {
    RenderError::Option("resize produced a wrong buffer size".into())
}

/// For each target index, the source indices it covers and their weights (summing to 1).
fn area_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            let (a, b) = (i as f64 * scale, (i + 1) as f64 * scale);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(src);
            (first..last)
                .map(|j| {
                    let cover = b.min(j as f64 + 1.0) - a.max(j as f64);
                    (j, (cover / scale) as f32)
                })
                .collect()
        })
        .collect()
}

/// Separable exact area average of an 8-bit interleaved image.
fn area_downscale(src: &[u8], sw: usize, sh: usize, ch: usize, w: u32, h: u32) -> Vec<u8> {
    let (w, h) = (w as usize, h as usize);
    let wx = area_weights(sw, w);
    let wy = area_weights(sh, h);
    // horizontal pass: sh rows of w pixels
    let mut tmp = vec![0f32; sh * w * ch];
    for y in 0..sh {
        let row = &src[y * sw * ch..(y + 1) * sw * ch];
        for (x, weights) in wx.iter().enumerate() {
            for c in 0..ch {
                tmp[(y * w + x) * ch + c] = weights
                    .iter()
                    .map(|&(j, k)| row[j * ch + c] as f32 * k)
                    .sum();
            }
        }
    }
    let mut out = vec![0u8; w * h * ch];
    for (y, weights) in wy.iter().enumerate() {
        for x in 0..w * ch {
            let v: f32 = weights.iter().map(|&(j, k)| tmp[j * w * ch + x] * k).sum();
            out[y * w * ch + x] = (v + 0.5).floor().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Where per-frame attributes live: the Per-Frame Functional Groups item of this frame,
/// then the Shared Functional Groups, then the top level (PS3.3 C.7.6.16).
fn frame_attr<'a, T>(
    obj: &'a InMemDicomObject,
    index: u32,
    macro_seq: Tag,
    get: impl Fn(&'a InMemDicomObject) -> Option<T>,
) -> Option<T> {
    let per_frame = attrs::item(
        obj,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        index as usize,
    )
    .and_then(|fg| attrs::item(fg, macro_seq, 0))
    .and_then(&get);
    per_frame
        .or_else(|| {
            attrs::item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0)
                .and_then(|fg| attrs::item(fg, macro_seq, 0))
                .and_then(&get)
        })
        .or_else(|| get(obj))
}

/// Rescale (slope, intercept) of a frame (PS3.3 C.11.1.1.2; C.7.6.16.2.9).
pub fn rescale(obj: &InMemDicomObject, index: u32) -> (f64, f64) {
    frame_attr(obj, index, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, |o| {
        let s = attrs::floats(o, tags::RESCALE_SLOPE).first().copied();
        let i = attrs::floats(o, tags::RESCALE_INTERCEPT).first().copied();
        (s.is_some() || i.is_some()).then(|| (s.unwrap_or(1.0), i.unwrap_or(0.0)))
    })
    .filter(|(s, _)| *s != 0.0 && s.is_finite())
    .unwrap_or((1.0, 0.0))
}

/// The first window (center, width) of a frame and its VOI LUT Function, if any
/// (PS3.3 C.11.2.1.2; C.7.6.16.2.10).
pub fn window(obj: &InMemDicomObject, index: u32) -> Option<((f64, f64), Option<VoiFunction>)> {
    frame_attr(obj, index, tags::FRAME_VOILUT_SEQUENCE, |o| {
        let c = attrs::floats(o, tags::WINDOW_CENTER).first().copied()?;
        let w = attrs::floats(o, tags::WINDOW_WIDTH).first().copied()?;
        let f = attrs::string(o, tags::VOILUT_FUNCTION).and_then(|s| VoiFunction::parse(&s));
        Some(((c, w), f))
    })
}

/// A VOI LUT (PS3.3 C.11.2.1.1): first mapped value, entries, bits per entry.
struct Lut {
    first: i64,
    bits: u32,
    data: Vec<u16>,
}

impl Lut {
    /// Reads a LUT Descriptor / LUT Data pair (PS3.3 C.11.2.1.1, C.11.1.1.1).
    fn read(item: &InMemDicomObject, signed: bool) -> Option<Lut> {
        let desc = attrs::ints(item, tags::LUT_DESCRIPTOR);
        if desc.len() != 3 {
            return None;
        }
        let entries = if desc[0] == 0 {
            65536
        } else {
            desc[0] as usize
        };
        // the first value is US or SS as the pixel data is (C.11.2.1.1)
        let first = if signed {
            desc[1] as u16 as i16 as i64
        } else {
            desc[1] as u16 as i64
        };
        let bits = (desc[2] as u32).clamp(1, 16);
        let data = attrs::words(item, tags::LUT_DATA)?;
        (data.len() >= entries).then(|| Lut {
            first,
            bits,
            data: data[..entries].to_vec(),
        })
    }

    fn lookup(&self, x: f64) -> u16 {
        let i = (x.floor() as i64 - self.first).clamp(0, self.data.len() as i64 - 1);
        self.data[i as usize]
    }
}

/// PS3.3 C.11.2.1.2 with output range 0..255, rounded to nearest.
pub fn apply_window(x: f64, center: f64, width: f64, f: VoiFunction) -> u8 {
    let (ymin, ymax) = (0.0, 255.0);
    let y = match f {
        VoiFunction::Linear => {
            // C.11.2.1.2.1: width >= 1
            let (c, w) = (center, width.max(1.0));
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                ymin
            } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                // with w = 1 every x is caught by one of the two bounds: no division by 0
                ymax
            } else {
                ((x - (c - 0.5)) / (w - 1.0) + 0.5) * (ymax - ymin) + ymin
            }
        }
        VoiFunction::LinearExact => {
            if x <= center - width / 2.0 {
                ymin
            } else if x > center + width / 2.0 {
                ymax
            } else {
                ((x - center) / width + 0.5) * (ymax - ymin) + ymin
            }
        }
        VoiFunction::Sigmoid => (ymax - ymin) / (1.0 + (-4.0 * (x - center) / width).exp()) + ymin,
    };
    y.round().clamp(0.0, 255.0) as u8
}

fn render_grey(
    obj: &FileDicomObject<InMemDicomObject>,
    frame: &Frame,
    index: u32,
    options: &RenderOptions,
) -> Result<Vec<u8>, RenderError> {
    let ds: &InMemDicomObject = obj;
    let (slope, intercept) = rescale(ds, index);
    // one u8 per sample is all this allocates: values are mapped as they are read
    let values = || {
        frame
            .samples
            .iter_i64()
            .map(move |v| v as f64 * slope + intercept)
    };
    let file_window = window(ds, index);
    let function = options
        .voi_function
        .or(file_window.and_then(|(_, f)| f))
        .unwrap_or_default();
    let chosen = options.window.or(file_window.map(|(w, _)| w));
    let mut out: Vec<u8> = if let Some((c, w)) = chosen {
        if !(w > 0.0 && w.is_finite() && c.is_finite()) {
            return Err(RenderError::Option(format!("window width {w}, center {c}")));
        }
        values().map(|x| apply_window(x, c, w, function)).collect()
    } else if let Some(lut) =
        attrs::item(ds, tags::VOILUT_SEQUENCE, 0).and_then(|item| Lut::read(item, frame.signed))
    {
        // C.11.2.1.1: the LUT output has `bits` bits; scale to 8
        let max = ((1u32 << lut.bits) - 1) as f64;
        values()
            .map(|x| ((lut.lookup(x) as f64).min(max) * 255.0 / max).round() as u8)
            .collect()
    } else {
        // no VOI in the object: the frame's full range, linearly
        let (lo, hi) = values().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if hi > lo {
            let c = (lo + hi) / 2.0;
            values()
                .map(|x| apply_window(x, c, hi - lo, VoiFunction::LinearExact))
                .collect()
        } else {
            vec![0; frame.samples.len()]
        }
    };
    if frame.photometric == Photometric::Monochrome1 {
        for v in &mut out {
            *v = 255 - *v;
        }
    }
    Ok(out)
}

/// Scales samples to 0..255 by Bits Stored (colour data above 8 bits).
fn to_8bit(frame: &Frame) -> Vec<u8> {
    if frame.bits_stored == 8 {
        if let decode::Samples::U8(v) = &frame.samples {
            return v.clone();
        }
    }
    let max = ((1u64 << frame.bits_stored) - 1) as f64;
    frame
        .samples
        .iter_i64()
        .map(|v| ((v.max(0) as f64) * 255.0 / max).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// YBR_FULL to RGB, PS3.3 C.7.6.3.1.2 (ITU-R BT.601 full range), rounded.
pub fn ybr_full_to_rgb(pixels: &mut [u8]) {
    for p in pixels.chunks_exact_mut(3) {
        let (y, cb, cr) = (p[0] as f64, p[1] as f64 - 128.0, p[2] as f64 - 128.0);
        let r = y + 1.402 * cr;
        let g = y - (0.114 * 1.772 / 0.587) * cb - (0.299 * 1.402 / 0.587) * cr;
        let b = y + 1.772 * cb;
        for (o, v) in p.iter_mut().zip([r, g, b]) {
            *o = (v + 0.5).floor().clamp(0.0, 255.0) as u8;
        }
    }
}

/// The three palette colour LUTs (PS3.3 C.7.6.3.1.5/6, C.7.9), as 8-bit tables.
fn palette_luts(ds: &InMemDicomObject, signed: bool) -> Result<(i64, [Vec<u8>; 3]), RenderError> {
    let descs = [
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
    ];
    let datas = [
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    ];
    let segmented = [
        tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    ];
    let desc = attrs::ints(ds, descs[0]);
    if desc.len() != 3 {
        return Err(RenderError::Palette(
            "Red Palette Color LUT Descriptor missing".into(),
        ));
    }
    let entries = if desc[0] == 0 {
        65536
    } else {
        desc[0] as usize
    };
    let first = if signed {
        desc[1] as u16 as i16 as i64
    } else {
        desc[1] as u16 as i64
    };
    let bits = desc[2];
    let mut luts: [Vec<u8>; 3] = Default::default();
    for c in 0..3 {
        let table: Vec<u16> = if let Some(words) = attrs::words(ds, datas[c]) {
            if words.len() * 2 == entries {
                // 8-bit entries packed two per word (C.7.6.3.1.6 allows 8-bit LUT data)
                words
                    .iter()
                    .flat_map(|w| w.to_le_bytes())
                    .map(u16::from)
                    .collect()
            } else {
                words
            }
        } else if let Some(words) = attrs::words(ds, segmented[c]) {
            expand_segmented(&words, 0)
                .map_err(|e| RenderError::Palette(format!("segmented LUT: {e}")))?
        } else {
            return Err(RenderError::Palette("no Palette Color LUT Data".into()));
        };
        if table.is_empty() {
            return Err(RenderError::Palette("empty LUT".into()));
        }
        luts[c] = table
            .iter()
            .take(entries)
            .map(|&v| {
                if bits == 16 {
                    ((v as u32 * 255 + 32767) / 65535) as u8
                } else {
                    v.min(255) as u8
                }
            })
            .collect();
    }
    Ok((first, luts))
}

/// Expands segmented palette LUT data (PS3.3 C.7.9.2): discrete, linear and indirect
/// segments; the linear ones rounded half-to-even like pydicom, so both render alike.
fn expand_segmented(data: &[u16], depth: usize) -> Result<Vec<u16>, String> {
    if depth > 4 {
        return Err("indirect segments nest too deep".into());
    }
    let mut lut: Vec<u16> = Vec::new();
    let mut i = 0;
    while i + 1 < data.len() {
        let (op, len) = (data[i], data[i + 1] as usize);
        i += 2;
        match op {
            0 => {
                let seg = data
                    .get(i..i + len)
                    .ok_or("discrete segment past the end")?;
                lut.extend_from_slice(seg);
                i += len;
            }
            1 => {
                let y0 = *lut.last().ok_or("linear segment first")? as f64;
                let y1 = *data.get(i).ok_or("linear segment past the end")? as f64;
                i += 1;
                let step = (y1 - y0) / len as f64;
                lut.extend((1..=len).map(|k| (y0 + step * k as f64).round_ties_even() as u16));
            }
            2 => {
                if lut.is_empty() {
                    return Err("indirect segment first".into());
                }
                let lo = *data.get(i).ok_or("indirect segment past the end")? as usize;
                let hi = *data.get(i + 1).ok_or("indirect segment past the end")? as usize;
                i += 2;
                let offset = (hi << 16 | lo) / 2;
                let sub = data.get(offset..).ok_or("indirect offset past the end")?;
                let mut copied = expand_segmented_n(sub, len, depth + 1)?;
                lut.append(&mut copied);
            }
            other => return Err(format!("unknown segment type {other}")),
        }
    }
    Ok(lut)
}

/// The first `n` segments of `data`, expanded (for indirect segments).
fn expand_segmented_n(data: &[u16], n: usize, depth: usize) -> Result<Vec<u16>, String> {
    let mut end = 0;
    for _ in 0..n {
        let op = *data.get(end).ok_or("indirect segments past the end")?;
        let len = *data.get(end + 1).ok_or("indirect segments past the end")? as usize;
        end += 2 + match op {
            0 => len,
            1 => 1,
            _ => 2,
        };
    }
    expand_segmented(
        data.get(..end).ok_or("indirect segments past the end")?,
        depth,
    )
}

fn palette_to_rgb(
    obj: &FileDicomObject<InMemDicomObject>,
    frame: &Frame,
) -> Result<Vec<u8>, RenderError> {
    if frame.samples_per_pixel != 1 {
        return Err(RenderError::Photometric(format!(
            "PALETTE COLOR with {} samples per pixel",
            frame.samples_per_pixel
        )));
    }
    let (first, luts) = palette_luts(obj, frame.signed)?;
    let n = luts[0].len().min(luts[1].len()).min(luts[2].len()) as i64;
    let mut out = Vec::with_capacity(frame.samples.len() * 3);
    for v in frame.samples.iter_i64() {
        // C.7.6.3.1.5: below the first mapped value -> entry 0, above the last -> last
        let i = (v - first).clamp(0, n - 1) as usize;
        out.extend([luts[0][i], luts[1][i], luts[2][i]]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_matches_the_standard() {
        // C.11.2.1.2.1 with c=2048, w=4096: x=0 at the bottom, 4095 at the top
        assert_eq!(apply_window(0.0, 2048.0, 4096.0, VoiFunction::Linear), 0);
        assert_eq!(
            apply_window(4095.0, 2048.0, 4096.0, VoiFunction::Linear),
            255
        );
        assert_eq!(
            apply_window(2047.5, 2048.0, 4096.0, VoiFunction::Linear),
            128
        );
        // width 1: a threshold at c - 0.5
        assert_eq!(apply_window(99.0, 100.0, 1.0, VoiFunction::Linear), 0);
        assert_eq!(apply_window(100.0, 100.0, 1.0, VoiFunction::Linear), 255);
    }

    #[test]
    fn exact_and_sigmoid() {
        assert_eq!(
            apply_window(50.0, 50.0, 100.0, VoiFunction::LinearExact),
            128
        );
        assert_eq!(apply_window(0.0, 50.0, 100.0, VoiFunction::LinearExact), 0);
        assert_eq!(apply_window(50.0, 50.0, 100.0, VoiFunction::Sigmoid), 128);
        assert!(apply_window(-1000.0, 50.0, 100.0, VoiFunction::Sigmoid) == 0);
    }

    #[test]
    fn fit_keeps_aspect() {
        assert_eq!(fit_size(1024, 256, 256, 256), (256, 64));
        assert_eq!(fit_size(100, 100, 64, 32), (32, 32));
    }

    #[test]
    fn area_average_is_exact() {
        // 3 -> 2: the middle source pixel is split half and half
        let out = area_downscale(&[0, 90, 180], 3, 1, 1, 2, 1);
        assert_eq!(out, vec![30, 150]);
        let uniform = area_downscale(&[7; 80 * 60 * 3], 80, 60, 3, 64, 48);
        assert!(uniform.iter().all(|&v| v == 7));
    }

    #[test]
    fn segmented_linear_and_indirect() {
        // discrete [0, 10], linear to 20 over 2, indirect copy of the first segment
        let lut = expand_segmented(&[0, 2, 0, 10, 1, 2, 20, 2, 1, 0, 0], 0).unwrap();
        assert_eq!(lut, vec![0, 10, 15, 20, 0, 10]);
    }
}
