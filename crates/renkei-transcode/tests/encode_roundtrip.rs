//! Round trips of the encoders over every native file of the corpus (testdata/corpus/valid:
//! implicit, explicit and deflated little endian; 1, 8, 16 and 32 bits; greyscale, palette,
//! RGB and YBR_FULL_422; single and multi-frame).
//!
//! For each file and each lossless target, the frames are encoded, written as a DICOM file
//! of the new transfer syntax, and decoded again by someone else's decoder: dicom-pixeldata
//! in process (RLE; J2K through OpenJPEG's C library; JPEG-LS through CharLS directly),
//! then DCMTK (dcmdrle, dcmdjpls), OpenJPEG's opj_decompress on the bare codestream, and
//! pydicom with pylibjpeg (libjpeg for JPEG-LS, OpenJPEG for J2K, pylibjpeg-rle). Every
//! decoded sample must equal the original's Bits Stored value exactly. A file the
//! encoder refuses must be one the target cannot carry (the rules are restated here).
//! Baseline JPEG is lossy: checked for decodability by DCMTK and pydicom and for a small
//! error against the 8-bit originals.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_object::{open_file, FileDicomObject, InMemDicomObject};
use dicom_pixeldata::PixelDecoder;
use renkei_transcode::encode::{
    encapsulated_pixel_data, encode_frames, EncodeError, Encoded, EncodedPixels, FrameLayout,
    Target,
};

type Obj = FileDicomObject<InMemDicomObject>;

const NATIVE_TS: [&str; 3] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
];

fn corpus() -> PathBuf {
    std::env::current_dir()
        .unwrap()
        .join("../../testdata/corpus/valid")
}

/// Path of a peer program; fails with the install hint when it is missing.
fn peer(program: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!("{program} not found: run scripts/setup.sh (installs DCMTK and OpenJPEG tools)");
}

fn peer_python() -> PathBuf {
    let root = std::env::var("RENKEI_PEERS").unwrap_or_else(|_| "/tmp/renkei-peers".into());
    let p = Path::new(&root).join("venv/bin/python");
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

fn int(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    obj.element_opt(tag).ok().flatten()?.to_int::<u32>().ok()
}

fn string(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default()
}

fn layout_of(obj: &InMemDicomObject) -> FrameLayout {
    let u = |tag| int(obj, tag).unwrap_or(0) as u16;
    FrameLayout {
        rows: u(tags::ROWS),
        columns: u(tags::COLUMNS),
        samples_per_pixel: u(tags::SAMPLES_PER_PIXEL),
        bits_allocated: u(tags::BITS_ALLOCATED),
        bits_stored: u(tags::BITS_STORED),
        pixel_representation: u(tags::PIXEL_REPRESENTATION),
        photometric: string(obj, tags::PHOTOMETRIC_INTERPRETATION),
        planar_configuration: u(tags::PLANAR_CONFIGURATION),
    }
}

/// Native Pixel Data as little-endian bytes, whatever the in-memory value type.
fn native_bytes(obj: &InMemDicomObject) -> Vec<u8> {
    let e = obj.element(tags::PIXEL_DATA).expect("Pixel Data");
    match e.value() {
        Value::Primitive(PrimitiveValue::U16(v)) => {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        Value::Primitive(PrimitiveValue::I16(v)) => {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        Value::Primitive(PrimitiveValue::U32(v)) => {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        Value::Primitive(PrimitiveValue::I32(v)) => {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
        Value::Primitive(p) => p.to_bytes().into_owned(),
        other => panic!("native Pixel Data expected, got {other:?}"),
    }
}

fn number_of_frames(obj: &InMemDicomObject) -> usize {
    int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize
}

/// The sample values of native bytes: Bits Stored, sign-extended when signed, pixel-
/// interleaved, YBR_FULL_422 expanded. Written apart from the library on purpose.
fn values(
    bytes: &[u8],
    ba: u16,
    bs: u16,
    signed: bool,
    spp: usize,
    planar: bool,
    ybr422: bool,
) -> Vec<i64> {
    let width = (ba / 8) as usize;
    let raw: Vec<u64> = bytes
        .chunks_exact(width)
        .map(|c| c.iter().rev().fold(0u64, |a, &b| a << 8 | b as u64))
        .collect();
    let norm = |v: u64| {
        let v = v & ((1u64 << bs) - 1);
        if signed && v >> (bs - 1) & 1 == 1 {
            v as i64 - (1i64 << bs)
        } else {
            v as i64
        }
    };
    if ybr422 {
        return raw
            .chunks_exact(4)
            .flat_map(|q| [q[0], q[2], q[3], q[1], q[2], q[3]])
            .map(norm)
            .collect();
    }
    if planar && spp > 1 {
        let plane = raw.len() / spp;
        return (0..plane)
            .flat_map(|p| (0..spp).map(move |s| s * plane + p))
            .map(|i| norm(raw[i]))
            .collect();
    }
    raw.into_iter().map(norm).collect()
}

/// The values of a whole native data set (all frames).
fn dataset_values(obj: &InMemDicomObject) -> Vec<i64> {
    let l = layout_of(obj);
    let bytes = native_bytes(obj);
    let frame = l.rows as usize
        * l.columns as usize
        * l.samples_per_pixel as usize
        * (l.bits_allocated / 8) as usize;
    let frame = if l.photometric == "YBR_FULL_422" {
        frame * 2 / 3
    } else {
        frame
    };
    let n = number_of_frames(obj);
    (0..n)
        .flat_map(|i| {
            values(
                &bytes[i * frame..(i + 1) * frame],
                l.bits_allocated,
                l.bits_stored,
                l.pixel_representation == 1,
                l.samples_per_pixel as usize,
                l.planar_configuration == 1,
                l.photometric == "YBR_FULL_422",
            )
        })
        .collect()
}

struct Case {
    name: String,
    obj: Obj,
    layout: FrameLayout,
    frames: Vec<Vec<u8>>,
    /// every sample value, all frames
    expected: Vec<i64>,
    /// some sample has bits above Bits Stored that are not its sign extension
    high_bits: bool,
}

fn cases() -> Vec<Case> {
    let mut names: Vec<_> = std::fs::read_dir(corpus())
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    names.sort();
    let mut cases = Vec::new();
    for path in names {
        let Ok(obj) = open_file(&path) else { continue };
        if !NATIVE_TS.contains(&obj.meta().transfer_syntax().trim_end_matches('\0'))
            || obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none()
        {
            continue;
        }
        let layout = layout_of(&obj);
        let bytes = native_bytes(&obj);
        let n = number_of_frames(&obj);
        let pixels = layout.rows as usize * layout.columns as usize;
        let frame_bits = if layout.photometric == "YBR_FULL_422" {
            pixels * 2 * layout.bits_allocated as usize
        } else {
            pixels * layout.samples_per_pixel as usize * layout.bits_allocated as usize
        };
        assert_eq!(
            frame_bits % 8,
            0,
            "{}: frames not byte-aligned",
            path.display()
        );
        let len = frame_bits / 8;
        assert!(
            bytes.len() >= n * len,
            "{}: short Pixel Data",
            path.display()
        );
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| bytes[i * len..(i + 1) * len].to_vec())
            .collect();
        let (expected, high_bits) = if layout.bits_allocated >= 8 {
            let exp = dataset_values(&obj);
            // the same samples with nothing above Bits Stored but sign extension
            let width = layout.bits_allocated as u32;
            let high = frames.concat().chunks_exact((width / 8) as usize).any(|c| {
                let v = c.iter().rev().fold(0u64, |a, &b| a << 8 | b as u64);
                let bs = layout.bits_stored as u32;
                let above = v >> bs;
                let all_ones = (1u64 << (width - bs)) - 1;
                let sign = v >> (bs - 1) & 1 == 1;
                !(above == 0 || (layout.pixel_representation == 1 && sign && above == all_ones))
            });
            (exp, high)
        } else {
            (Vec::new(), false)
        };
        cases.push(Case {
            name: path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            obj,
            layout,
            frames,
            expected,
            high_bits,
        });
    }
    // the corpus has 20 native images; a broken listing must not pass vacuously
    assert!(
        cases.len() >= 18,
        "only {} native images found",
        cases.len()
    );
    let base = cases
        .iter()
        .find(|c| c.name == "CT_small")
        .map(|c| c.obj.clone())
        .expect("CT_small in the corpus");
    cases.extend(synthetic_cases(&base));
    cases
}

/// Layouts the corpus lacks: signed 12-bit with negative values, 16-bit RGB and 8-bit RGB
/// plane by plane, odd sizes.
fn synthetic_cases(base: &Obj) -> Vec<Case> {
    let mut out = Vec::new();
    // signed 12 bits, sign-extended in 16-bit containers, 2 frames of 37 x 23
    let signed: Vec<Vec<u8>> = (0..2)
        .map(|f| {
            (0..37 * 23)
                .flat_map(|p: i32| {
                    let v = (p * 131 + (p / 37) * 71 + f * 977) % 4096 - 2048;
                    (v as i16).to_le_bytes()
                })
                .collect()
        })
        .collect();
    let shape = (23, 37, 1, 16, 12, 1, "MONOCHROME2", 0);
    out.push(synthetic(base, "synthetic_signed12", shape, signed));
    // RGB, 16 bits, plane by plane, 19 x 11
    let rgb16: Vec<u8> = (0..3 * 19 * 11u32)
        .flat_map(|i| ((i.wrapping_mul(2654435761) >> 16) as u16).to_le_bytes())
        .collect();
    let shape = (11, 19, 3, 16, 16, 0, "RGB", 1);
    out.push(synthetic(
        base,
        "synthetic_rgb16_planar",
        shape,
        vec![rgb16],
    ));
    // RGB, 8 bits, plane by plane, 5 x 3: odd frame length; smooth planes, so that the
    // baseline JPEG check can hold it to a small error
    let rgb8: Vec<u8> = (0..3u32)
        .flat_map(|s| (0..15u32).map(move |p| (40 + s * 60 + (p % 5) * 9 + (p / 5) * 5) as u8))
        .collect();
    let shape = (3, 5, 3, 8, 8, 0, "RGB", 1);
    out.push(synthetic(base, "synthetic_rgb8_planar", shape, vec![rgb8]));
    out
}

/// Rows, Columns, Samples per Pixel, Bits Allocated, Bits Stored, Pixel Representation,
/// Photometric Interpretation, Planar Configuration.
type Shape = (u16, u16, u16, u16, u16, u16, &'static str, u16);

fn synthetic(base: &Obj, name: &str, shape: Shape, frames: Vec<Vec<u8>>) -> Case {
    use dicom_core::{DataElement, VR};
    let (rows, columns, spp, ba, bs, pr, pi, pc) = shape;
    let mut obj = base.clone();
    for (tag, v) in [
        (tags::ROWS, rows),
        (tags::COLUMNS, columns),
        (tags::SAMPLES_PER_PIXEL, spp),
        (tags::BITS_ALLOCATED, ba),
        (tags::BITS_STORED, bs),
        (tags::HIGH_BIT, bs - 1),
        (tags::PIXEL_REPRESENTATION, pr),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    }
    if spp > 1 {
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(pc),
        ));
    }
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(pi),
    ));
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(frames.len().to_string()),
    ));
    let mut data = frames.concat();
    if data.len() % 2 == 1 {
        data.push(0);
    }
    let vr = if ba > 8 { VR::OW } else { VR::OB };
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        vr,
        PrimitiveValue::from(data),
    ));
    let expected = dataset_values(&obj);
    Case {
        name: name.to_string(),
        layout: layout_of(&obj),
        obj,
        frames,
        expected,
        high_bits: false,
    }
}

/// What each target can carry, restated from PS3.5 and the codecs' limits.
fn should_encode(target: Target, c: &Case) -> bool {
    let l = &c.layout;
    let ba = l.bits_allocated;
    match target {
        Target::RleLossless => matches!(ba, 8 | 16 | 32),
        Target::JpegLsLossless => matches!(ba, 8 | 16) && l.bits_stored >= 2 && !c.high_bits,
        Target::Jpeg2000Lossless => {
            matches!(ba, 8 | 16 | 32) && l.bits_stored <= 16 && !c.high_bits
        }
        Target::JpegBaseline { .. } => {
            ba == 8 && l.pixel_representation == 0 && l.photometric != "PALETTE COLOR"
        }
        _ => true,
    }
}

fn out_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("renkei-encode-")
        .tempdir()
        .expect("temp dir")
}

/// Encodes every case to `target`, writes the files, returns (case index, path, encoded).
fn encode_all(
    cases: &[Case],
    target: Target,
    dir: &Path,
    tag: &str,
) -> Vec<(usize, PathBuf, Encoded)> {
    let mut out = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let started = Instant::now();
        let result = encode_frames(&c.layout, &c.frames, target);
        let took = started.elapsed();
        let enc = match (result, should_encode(target, c)) {
            (Ok(enc), true) => enc,
            (
                Err(e @ (EncodeError::Unsupported { .. } | EncodeError::BitsAboveStored { .. })),
                false,
            ) => {
                eprintln!("{tag} {}: refused as expected: {e}", c.name);
                continue;
            }
            (Ok(_), false) => panic!("{}: {tag} encoded what it should refuse", c.name),
            (Err(e), _) => panic!("{}: {tag}: {e}", c.name),
        };
        let EncodedPixels::Encapsulated {
            fragments,
            basic_offset_table,
        } = &enc.pixels
        else {
            panic!("{}: {tag} not encapsulated", c.name)
        };
        assert_eq!(
            fragments.len(),
            c.frames.len(),
            "{}: one fragment per frame",
            c.name
        );
        assert!(
            fragments.iter().all(|f| f.len() % 2 == 0),
            "{}: odd fragment",
            c.name
        );
        // what each fragment must start with: SOI then SOF0 (baseline, PS3.5 8.2.1), SOI
        // then SOF55 (JPEG-LS), a bare J2K codestream SOC SIZ without JP2 boxes (PS3.5
        // A.4.4), an RLE header with 1 to 15 segments (G.5)
        for f in fragments {
            let ok = match target {
                Target::JpegBaseline { .. } => {
                    f.starts_with(&[0xFF, 0xD8])
                        && f.windows(2).any(|w| w == [0xFF, 0xC0])
                        && !f.windows(2).any(|w| w == [0xFF, 0xC1] || w == [0xFF, 0xC2])
                }
                Target::JpegLsLossless => {
                    f.starts_with(&[0xFF, 0xD8]) && f.windows(2).any(|w| w == [0xFF, 0xF7])
                }
                Target::Jpeg2000Lossless => f.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]),
                Target::RleLossless => (1..=15).contains(&f[0]) && f[1..4] == [0, 0, 0],
                _ => true,
            };
            assert!(ok, "{}: {tag} fragment does not start as it must", c.name);
        }
        let raw: usize = c.frames.iter().map(Vec::len).sum();
        let coded: usize = fragments.iter().map(Vec::len).sum();
        if raw >= 250_000 {
            eprintln!(
                "{tag} {}: {} frame(s) {}x{} in {:.1} ms ({:.1} frames/s), ratio {:.2}",
                c.name,
                c.frames.len(),
                c.layout.columns,
                c.layout.rows,
                took.as_secs_f64() * 1e3,
                c.frames.len() as f64 / took.as_secs_f64(),
                raw as f64 / coded as f64
            );
        }
        // PS3.5 A.4: the offsets point at each frame's item tag
        let mut at = 0u32;
        for (f, off) in fragments.iter().zip(basic_offset_table) {
            assert_eq!(*off, at);
            at += 8 + f.len() as u32;
        }
        let mut obj = c.obj.clone();
        enc.apply(&mut obj);
        let path = dir.join(format!("{}.{tag}.dcm", c.name));
        obj.write_to_file(&path).expect("write");
        // the element dicom-object wrote is the one encapsulated_pixel_data builds
        let written = std::fs::read(&path).expect("read back");
        let ours = encapsulated_pixel_data(basic_offset_table, fragments).expect("element");
        assert!(
            written.ends_with(&ours) || written.windows(ours.len()).any(|w| w == ours),
            "{}: encapsulated element differs from the written one",
            c.name
        );
        out.push((i, path, enc));
    }
    out
}

/// Decodes a written file with dicom-pixeldata and compares every sample.
fn check_dicom_pixeldata(c: &Case, path: &Path) {
    let obj = open_file(path).expect("reopen");
    let decoded = obj
        .decode_pixel_data()
        .unwrap_or_else(|e| panic!("{}: dicom-pixeldata: {e}", c.name));
    let got = values(
        decoded.data(),
        decoded.bits_allocated(),
        c.layout.bits_stored,
        c.layout.pixel_representation == 1,
        c.layout.samples_per_pixel as usize,
        false,
        false,
    );
    assert_same(c, &got, "dicom-pixeldata");
}

fn assert_same(c: &Case, got: &[i64], who: &str) {
    assert_eq!(
        got.len(),
        c.expected.len(),
        "{}: {who}: sample count",
        c.name
    );
    if let Some(i) = got.iter().zip(&c.expected).position(|(a, b)| a != b) {
        panic!(
            "{}: {who}: sample {i} is {}, expected {}",
            c.name, got[i], c.expected[i]
        );
    }
}

/// Decompresses with a DCMTK tool and compares the native result.
fn check_dcmtk(c: &Case, path: &Path, tool: &str) {
    let out = path.with_extension("dcmtk.dcm");
    let status = Command::new(peer(tool))
        .arg(path)
        .arg(&out)
        .status()
        .expect("run DCMTK");
    assert!(
        status.success(),
        "{}: {tool} failed on {}",
        c.name,
        path.display()
    );
    let obj = open_file(&out).expect("DCMTK output");
    assert_same(c, &dataset_values(&obj), tool);
}

/// pydicom (pylibjpeg plugins) decodes each file; values come back as little-endian i64.
fn check_pydicom(cases: &[Case], written: &[(usize, PathBuf, Encoded)], who: &str) {
    const SCRIPT: &str = r#"
import sys
import numpy as np
from pydicom.pixels import pixel_array
for path in sys.argv[1:]:
    arr = pixel_array(path, raw=True)
    open(path + ".values", "wb").write(np.ascontiguousarray(arr).astype("<i8").tobytes())
"#;
    let status = Command::new(peer_python())
        .arg("-c")
        .arg(SCRIPT)
        .args(written.iter().map(|(_, p, _)| p))
        .status()
        .expect("run pydicom");
    assert!(status.success(), "pydicom failed ({who})");
    for (i, path, _) in written {
        let bytes = std::fs::read(format!("{}.values", path.display())).expect("values");
        let got: Vec<i64> = bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        assert_same(&cases[*i], &got, who);
    }
}

#[test]
fn rle_lossless_round_trips() {
    let cases = cases();
    let dir = out_dir();
    let written = encode_all(&cases, Target::RleLossless, dir.path(), "rle");
    assert!(
        written.len() >= 16,
        "RLE encoded only {} files",
        written.len()
    );
    for (i, path, enc) in &written {
        let c = &cases[*i];
        assert_eq!(
            enc.photometric,
            if c.layout.photometric == "YBR_FULL_422" {
                "YBR_FULL"
            } else {
                c.layout.photometric.as_str()
            }
        );
        // dicom-rs decodes RLE of 8 and 16 bits only
        if c.layout.bits_allocated != 32 {
            check_dicom_pixeldata(c, path);
        }
        check_dcmtk(c, path, "dcmdrle");
    }
    check_pydicom(&cases, &written, "pydicom RLE");
}

#[test]
fn jpeg_ls_lossless_round_trips() {
    let cases = cases();
    let dir = out_dir();
    let written = encode_all(&cases, Target::JpegLsLossless, dir.path(), "jls");
    assert!(
        written.len() >= 12,
        "JPEG-LS encoded only {} files",
        written.len()
    );
    for (i, path, enc) in &written {
        let c = &cases[*i];
        // CharLS decodes its own stream back, frame by frame
        let EncodedPixels::Encapsulated { fragments, .. } = &enc.pixels else {
            unreachable!()
        };
        let mut got = Vec::new();
        for f in fragments {
            // a CharLS decoder reads a header once: one for the info, one to decode
            let info = charls::CharLS::default()
                .get_frame_info(f)
                .expect("frame info");
            let bytes = charls::CharLS::default().decode(f).expect("CharLS decode");
            let ba = if info.bits_per_sample <= 8 { 8 } else { 16 };
            got.extend(values(
                &bytes,
                ba,
                c.layout.bits_stored,
                c.layout.pixel_representation == 1,
                c.layout.samples_per_pixel as usize,
                false,
                false,
            ));
        }
        assert_same(c, &got, "CharLS");
        check_dcmtk(c, path, "dcmdjpls");
    }
    check_pydicom(&cases, &written, "pydicom JPEG-LS (libjpeg)");
}

#[test]
fn jpeg_2000_lossless_round_trips() {
    let cases = cases();
    let dir = out_dir();
    let written = encode_all(&cases, Target::Jpeg2000Lossless, dir.path(), "j2k");
    assert!(
        written.len() >= 14,
        "J2K encoded only {} files",
        written.len()
    );
    for (i, path, enc) in &written {
        let c = &cases[*i];
        if c.layout.photometric == "RGB" {
            assert_eq!(enc.photometric, "YBR_RCT");
        }
        check_dicom_pixeldata(c, path);
        check_opj_decompress(c, enc, path);
    }
    check_pydicom(&cases, &written, "pydicom J2K (OpenJPEG)");
}

/// OpenJPEG's command-line decoder on the bare codestream of each frame; RAWL output is
/// component by component, little endian, 1 or 2 bytes by precision.
fn check_opj_decompress(c: &Case, enc: &Encoded, path: &Path) {
    let EncodedPixels::Encapsulated { fragments, .. } = &enc.pixels else {
        unreachable!()
    };
    let mut got = Vec::new();
    for (n, f) in fragments.iter().enumerate() {
        let j2k = path.with_extension(format!("{n}.j2k"));
        let raw = path.with_extension(format!("{n}.rawl"));
        std::fs::write(&j2k, f).expect("write j2k");
        let output = Command::new(peer("opj_decompress"))
            .arg("-i")
            .arg(&j2k)
            .arg("-o")
            .arg(&raw)
            .output()
            .expect("run opj_decompress");
        assert!(output.status.success(), "{}: opj_decompress failed", c.name);
        let bytes = std::fs::read(&raw).expect("raw output");
        let ba = if c.layout.bits_stored <= 8 { 8 } else { 16 };
        got.extend(values(
            &bytes,
            ba,
            c.layout.bits_stored,
            c.layout.pixel_representation == 1,
            c.layout.samples_per_pixel as usize,
            true,
            false,
        ));
    }
    assert_same(c, &got, "opj_decompress");
}

#[test]
fn jpeg_baseline_previews_decode() {
    let cases = cases();
    let dir = out_dir();
    let written = encode_all(
        &cases,
        Target::JpegBaseline { quality: 90 },
        dir.path(),
        "jpg",
    );
    assert!(
        written.len() >= 4,
        "JPEG encoded only {} files",
        written.len()
    );
    for (i, path, enc) in &written {
        let c = &cases[*i];
        let lossy = enc.lossy.as_ref().expect("lossy info");
        assert_eq!(lossy.method, "ISO_10918_1");
        let obj = open_file(path).expect("reopen");
        assert_eq!(string(&obj, tags::LOSSY_IMAGE_COMPRESSION), "01");
        // one method and ratio per lossy step, appended (PS3.3 C.7.6.1.1.5)
        let before = string(&c.obj, tags::LOSSY_IMAGE_COMPRESSION_METHOD);
        let expected = if before.is_empty() {
            "ISO_10918_1".to_string()
        } else {
            format!("{before}\\ISO_10918_1")
        };
        assert_eq!(string(&obj, tags::LOSSY_IMAGE_COMPRESSION_METHOD), expected);
        let ratios = |o: &InMemDicomObject| {
            o.element_opt(tags::LOSSY_IMAGE_COMPRESSION_RATIO)
                .ok()
                .flatten()
                .map_or(0, |e| e.to_multi_float64().map_or(0, |v| v.len()))
        };
        assert_eq!(ratios(&obj), ratios(&c.obj) + 1, "{}: ratios", c.name);
        if c.layout.samples_per_pixel == 3 {
            assert_eq!(enc.photometric, "YBR_FULL_422");
        }
        let status = Command::new(peer("dcmdjpeg"))
            .arg(path)
            .arg(path.with_extension("dcmtk.dcm"))
            .status()
            .expect("dcmdjpeg");
        assert!(status.success(), "{}: dcmdjpeg failed", c.name);
        // greyscale and RGB come back close to the original (RGB after the codec's
        // colour conversion); YBR sources are only checked for decoding
        if c.layout.photometric == "YBR_FULL_422" || c.layout.photometric == "YBR_FULL" {
            continue;
        }
        let decoded = obj.decode_pixel_data().expect("decode JPEG");
        let got = decoded.data();
        assert_eq!(got.len(), c.expected.len(), "{}: JPEG sample count", c.name);
        let mean_err = got
            .iter()
            .zip(&c.expected)
            .map(|(a, b)| (*a as i64 - b).abs())
            .sum::<i64>() as f64
            / got.len() as f64;
        assert!(mean_err < 3.0, "{}: mean error {mean_err}", c.name);
    }
    check_pydicom_decodes(&written);
}

fn check_pydicom_decodes(written: &[(usize, PathBuf, Encoded)]) {
    let status = Command::new(peer_python())
        .arg("-c")
        .arg("import sys\nfrom pydicom.pixels import pixel_array\nfor p in sys.argv[1:]: pixel_array(p)")
        .args(written.iter().map(|(_, p, _)| p))
        .status()
        .expect("run pydicom");
    assert!(status.success(), "pydicom failed on the JPEG files");
}

/// The comparisons can fail: one flipped byte in an RLE segment changes what DCMTK and
/// dicom-pixeldata decode.
#[test]
fn a_corrupted_fragment_is_noticed() {
    let cases = cases();
    let c = cases
        .iter()
        .find(|c| c.name == "CT_small")
        .expect("CT_small in the corpus");
    let mut enc = encode_frames(&c.layout, &c.frames, Target::RleLossless).expect("encode");
    if let EncodedPixels::Encapsulated { fragments, .. } = &mut enc.pixels {
        // first segment's data starts at 64; its first byte is a PackBits header, the
        // literal byte after it is a sample's high byte
        let f = &mut fragments[0];
        let at = (64..f.len())
            .find(|&i| (f[i] as i8) >= 0 && f[i + 1] != 0xFF)
            .unwrap_or(64);
        f[at + 1] ^= 0x40;
    }
    let dir = out_dir();
    let mut obj = c.obj.clone();
    enc.apply(&mut obj);
    let path = dir.path().join("corrupt.dcm");
    obj.write_to_file(&path).expect("write");
    let result = std::panic::catch_unwind(|| check_dicom_pixeldata(c, &path));
    assert!(
        result.is_err(),
        "a corrupted fragment decoded to the original"
    );
}

/// Native output: the same bytes back (even length), OB/OW by Bits Allocated.
#[test]
fn explicit_vr_little_endian_keeps_the_samples() {
    for c in cases() {
        let enc = encode_frames(&c.layout, &c.frames, Target::ExplicitVrLittleEndian)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let EncodedPixels::Native { data, vr } = &enc.pixels else {
            panic!("{}: not native", c.name)
        };
        let mut all = c.frames.concat();
        if all.len() % 2 == 1 {
            all.push(0);
        }
        assert_eq!(data, &all, "{}", c.name);
        assert_eq!(
            *vr,
            if c.layout.bits_allocated > 8 {
                dicom_core::VR::OW
            } else {
                dicom_core::VR::OB
            }
        );
    }
}

/// Bits above Bits Stored that are not a sign extension (an overlay in the high bits):
/// JPEG-LS and JPEG 2000 would drop them, so they refuse; RLE keeps every byte.
#[test]
fn bits_above_bits_stored_are_not_dropped() {
    let layout = FrameLayout {
        rows: 2,
        columns: 2,
        samples_per_pixel: 1,
        bits_allocated: 16,
        bits_stored: 12,
        pixel_representation: 0,
        photometric: "MONOCHROME2".into(),
        planar_configuration: 0,
    };
    let frame: Vec<u8> = [0x0123u16, 0x8FFF, 0x0000, 0x0ABC]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    for target in [Target::JpegLsLossless, Target::Jpeg2000Lossless] {
        let result = encode_frames(&layout, &[&frame], target);
        assert!(
            matches!(result, Err(EncodeError::BitsAboveStored { frame: 0, .. })),
            "{target:?}: {result:?}"
        );
    }
    let enc = encode_frames(&layout, &[&frame], Target::RleLossless).expect("RLE");
    let EncodedPixels::Encapsulated { fragments, .. } = &enc.pixels else {
        panic!("not encapsulated")
    };
    // two segments: high bytes 01 8F 00 0A, low bytes 23 FF 00 BC, rows of 2 bytes
    let f = &fragments[0];
    assert_eq!(&f[0..12], &[2, 0, 0, 0, 64, 0, 0, 0, 70, 0, 0, 0]);
    assert_eq!(
        &f[64..76],
        &[1, 0x01, 0x8F, 1, 0x00, 0x0A, 1, 0x23, 0xFF, 1, 0x00, 0xBC]
    );
}
