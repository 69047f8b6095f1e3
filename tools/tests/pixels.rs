//! `renkei transcode` and `renkei render` against other people's decoders.
//!
//! Transcoding: files of the valid corpus in seven transfer syntaxes (native
//! little and big endian, deflated, RLE, JPEG-LS, JPEG 2000, JPEG lossless;
//! greyscale 8/12/16-bit signed and unsigned, RGB with odd sizes, YBR_FULL_422,
//! multi-frame) are written in each lossless syntax, then back to explicit VR
//! little endian. pydicom 3 with the pylibjpeg plugins decodes the original,
//! the intermediate and the final file; DCMTK (`dcmdrle`, `dcmdjpls`,
//! `dcmconv`) decodes or re-reads the intermediate too. Every sample must be
//! equal. A file with one sample changed must be caught, so the comparison can
//! fail.
//!
//! Rendering: a CT with a given window under each VOI function, compared pixel
//! by pixel with PS3.3 C.11.2 written in numpy on pydicom's samples; sizes and
//! JPEG output.
//!
//! Errors: unreadable and missing inputs, frames out of range, lossy targets
//! refused: exit status 1 and the file named on stderr.
//!
//! Needs the peers' venv (`/tmp/renkei-peers/venv`, or `$RENKEI_PEERS/venv`)
//! and DCMTK: `scripts/setup.sh` installs both; the tests fail saying so when
//! they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_dictionary_std::tags;
use dicom_object::{open_file, InMemDicomObject};

mod common;
use common::{renkei, Run};

// cargo runs tests in the package directory; a path baked in at build time would point
// into whichever checkout last built the shared target dir
const CORPUS: &str = "../testdata/corpus/valid";

const EXPLICIT: &str = "1.2.840.10008.1.2.1";

/// The lossless targets: (name on the command line, UID, DCMTK program that
/// decodes or re-reads it with its arguments before IN OUT).
const LOSSLESS: &[(&str, &str, &[&str])] = &[
    ("explicit", "1.2.840.10008.1.2.1", &["dcmconv", "+te"]),
    ("implicit", "1.2.840.10008.1.2", &["dcmconv", "+te"]),
    ("deflate", "1.2.840.10008.1.2.1.99", &["dcmconv", "+te"]),
    ("rle", "1.2.840.10008.1.2.5", &["dcmdrle"]),
    ("jpeg-ls", "1.2.840.10008.1.2.4.80", &["dcmdjpls"]),
    // DCMTK has no JPEG 2000 decoder: pydicom (OpenJPEG) only
    ("j2k", "1.2.840.10008.1.2.4.90", &[]),
];

/// Sources: one of each transfer syntax and kind of image.
const SOURCES: &[&str] = &[
    "CT_small.dcm",                     // explicit LE, 16-bit signed
    "SC_rgb_small_odd.dcm",             // RGB 3x3: odd rows, columns and length
    "ExplVR_BigEnd.dcm",                // big endian RGB, planar, with group lengths
    "MR_small_RLE.dcm",                 // RLE 16-bit
    "MR_small_bigendian.dcm",           // explicit big endian
    "MR_small_jpeg_ls_lossless.dcm",    // JPEG-LS
    "emri_small_jpeg_2k_lossless.dcm",  // JPEG 2000, 12-bit, 10 frames
    "SC_rgb_rle_2frame.dcm",            // RLE RGB, 2 frames
    "SC_ybr_full_422_uncompressed.dcm", // YBR_FULL_422, expanded on decode
    "image_dfl.dcm",                    // deflated, 8-bit
    "JPGLosslessP14SV1_1s_1f_8b.dcm",   // JPEG lossless, 8-bit
];

fn corpus(name: &str) -> String {
    format!("{CORPUS}/{name}")
}

fn peer_python() -> PathBuf {
    let root = std::env::var("RENKEI_PEERS").unwrap_or_else(|_| "/tmp/renkei-peers".into());
    let p = Path::new(&root).join("venv/bin/python");
    assert!(
        p.is_file(),
        "{} missing: run scripts/setup.sh (pydicom, numpy, pylibjpeg)",
        p.display()
    );
    p
}

/// Path of a DCMTK program; fails with the install hint when it is missing.
fn peer(program: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!("{program} not found: run scripts/setup.sh (installs DCMTK)");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

fn ok(run: &Run, what: &str) {
    assert!(
        run.status.success(),
        "{what} failed: {}{}",
        run.stdout,
        run.stderr
    );
}

fn failed_naming(run: &Run, file: &str) {
    assert_eq!(run.status.code(), Some(1), "exit status of a failure");
    assert!(
        run.stderr.contains(file),
        "stderr does not name {file}: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

fn transfer_syntax(path: &Path) -> String {
    let obj = open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    obj.meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// Group lengths (gggg,0000) of the source would be wrong after a new encoding.
fn assert_no_group_lengths(path: &Path) {
    let obj = open_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let stale: Vec<_> = obj.tags().filter(|t| t.element() == 0).collect();
    assert!(
        stale.is_empty(),
        "{}: group lengths {stale:?}",
        path.display()
    );
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default()
}

/// Decodes both files of each pair with pydicom (raw samples: no colour
/// conversion of its own) and says, per pair, whether every sample is equal.
const COMPARE_PY: &str = r#"
import json, sys
import numpy as np
import pydicom
from pydicom.pixels import pixel_array

def samples(path):
    ds = pydicom.dcmread(path)
    arr = pixel_array(ds, raw=True)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.SamplesPerPixel)
    return arr.reshape((n, int(ds.Rows), int(ds.Columns), spp)).astype(np.int64)

def compare(a, b):
    x, y = samples(a), samples(b)
    if x.shape != y.shape:
        return "FAIL shape %s vs %s" % (x.shape, y.shape)
    diff = np.argwhere(x != y)
    if len(diff):
        i = tuple(diff[0])
        return "FAIL %d samples differ, first at %s: %d vs %d" % (len(diff), i, x[i], y[i])
    return "OK %d samples equal" % x.size

for a, b in json.load(open(sys.argv[1])):
    try:
        line = compare(a, b)
    except Exception as e:
        line = "FAIL pydicom: %s: %s" % (type(e).__name__, e)
    print(line.replace("\n", " "))
"#;

/// (equal, detail) for each (a, b) pair, decoded by pydicom.
fn pydicom_compare(dir: &Path, pairs: &[(String, String)]) -> Vec<(bool, String)> {
    let list = dir.join("pairs.json");
    // paths as JSON strings: Rust's {:?} escapes like JSON for these paths
    let json: Vec<String> = pairs
        .iter()
        .map(|(a, b)| format!("[{a:?},{b:?}]"))
        .collect();
    std::fs::write(&list, format!("[{}]", json.join(","))).expect("write pair list");
    let out = Command::new(peer_python())
        .args(["-c", COMPARE_PY, s(&list)])
        .output()
        .expect("run pydicom");
    assert!(
        out.status.success(),
        "pydicom comparison failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    // one line per pair: "OK detail" or "FAIL detail"
    let results: Vec<(bool, String)> = text
        .lines()
        .map(|line| match line.split_once(' ') {
            Some(("OK", detail)) => (true, detail.to_string()),
            _ => (false, line.trim_start_matches("FAIL ").to_string()),
        })
        .collect();
    assert_eq!(results.len(), pairs.len(), "{text}");
    results
}

#[test]
fn lossless_round_trips_keep_every_sample() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pairs = Vec::new();
    for (i, source) in SOURCES.iter().enumerate() {
        let src = corpus(source);
        for (name, uid, dcmtk) in LOSSLESS {
            let mid = dir.path().join(format!("{i}-{name}.dcm"));
            let back = dir.path().join(format!("{i}-{name}-back.dcm"));
            let run = renkei(&["transcode", &src, s(&mid), "--ts", name]);
            ok(&run, &format!("{source} to {name}"));
            assert_eq!(transfer_syntax(&mid), *uid, "{source} to {name}");
            assert_no_group_lengths(&mid);
            let run = renkei(&["transcode", s(&mid), s(&back), "--ts", "explicit"]);
            ok(&run, &format!("{source} to {name} and back"));
            assert_eq!(transfer_syntax(&back), EXPLICIT);
            pairs.push((src.clone(), s(&mid).to_string()));
            pairs.push((src.clone(), s(&back).to_string()));
            if let Some((program, args)) = dcmtk.split_first() {
                let peer_out = dir.path().join(format!("{i}-{name}-{program}.dcm"));
                let status = Command::new(peer(program))
                    .args(args)
                    .args([s(&mid), s(&peer_out)])
                    .status()
                    .expect("run DCMTK");
                assert!(
                    status.success(),
                    "{program} could not read {source} as {name}"
                );
                pairs.push((src.clone(), s(&peer_out).to_string()));
            }
        }
    }
    let results = pydicom_compare(dir.path(), &pairs);
    let failures: Vec<String> = pairs
        .iter()
        .zip(&results)
        .filter(|(_, (equal, _))| !equal)
        .map(|((a, b), (_, detail))| format!("{a} vs {b}: {detail}"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} comparisons differ:\n{}",
        failures.len(),
        pairs.len(),
        failures.join("\n")
    );
}

/// The comparison above must be able to fail: one changed sample is caught.
#[test]
fn a_changed_sample_is_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = corpus("CT_small.dcm");
    let out = dir.path().join("ct.dcm");
    ok(
        &renkei(&["transcode", &src, s(&out), "--ts", "explicit"]),
        "transcode",
    );
    let mut obj = open_file(&out).expect("read output");
    let mut bytes = obj
        .element(tags::PIXEL_DATA)
        .expect("Pixel Data")
        .to_bytes()
        .expect("native bytes")
        .into_owned();
    bytes[2 * (64 * 128 + 64)] ^= 0x01; // one sample in the middle, low bit
    obj.put(dicom_core::DataElement::new(
        tags::PIXEL_DATA,
        dicom_core::VR::OW,
        dicom_core::PrimitiveValue::from(bytes),
    ));
    let changed = dir.path().join("changed.dcm");
    obj.write_to_file(&changed).expect("write changed copy");
    let results = pydicom_compare(
        dir.path(),
        &[
            (src.clone(), s(&out).to_string()),
            (src, s(&changed).to_string()),
        ],
    );
    assert!(results[0].0, "unchanged copy: {}", results[0].1);
    assert!(!results[1].0, "a changed sample went unnoticed");
    assert!(
        results[1].1.starts_with("1 samples differ"),
        "{}",
        results[1].1
    );
}

#[test]
fn lossy_jpeg_needs_consent_and_makes_a_new_instance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = corpus("vlut_04.dcm"); // 512x512 8-bit, explicit LE
    let out = dir.path().join("preview.dcm");
    let run = renkei(&["transcode", &src, s(&out), "--ts", "jpeg"]);
    failed_naming(&run, "vlut_04.dcm");
    assert!(run.stderr.contains("--allow-lossy"), "{}", run.stderr);
    assert!(!out.exists(), "nothing is written when refused");

    let run = renkei(&[
        "transcode",
        &src,
        s(&out),
        "--ts",
        "jpeg",
        "--quality",
        "80",
        "--allow-lossy",
    ]);
    ok(&run, "lossy transcode");
    let original = open_file(&src).expect("original");
    let copy = open_file(&out).expect("JPEG copy");
    assert_eq!(transfer_syntax(&out), "1.2.840.10008.1.2.4.50");
    let (old_uid, new_uid) = (
        text(&original, tags::SOP_INSTANCE_UID),
        text(&copy, tags::SOP_INSTANCE_UID),
    );
    assert_ne!(old_uid, new_uid);
    assert_eq!(copy.meta().media_storage_sop_instance_uid(), new_uid);
    assert_eq!(text(&copy, tags::LOSSY_IMAGE_COMPRESSION), "01");
    assert!(text(&copy, tags::IMAGE_TYPE).starts_with("DERIVED"));
    let source = copy
        .element(tags::SOURCE_IMAGE_SEQUENCE)
        .ok()
        .and_then(|e| e.items().map(<[InMemDicomObject]>::to_vec))
        .unwrap_or_default();
    assert!(
        source
            .iter()
            .any(|item| text(item, tags::REFERENCED_SOP_INSTANCE_UID) == old_uid),
        "Source Image Sequence should reference the original"
    );
    // DCMTK decodes it, and it is close to the original
    let decoded = dir.path().join("decoded.dcm");
    let status = Command::new(peer("dcmdjpeg"))
        .args([s(&out), s(&decoded)])
        .status()
        .expect("run dcmdjpeg");
    assert!(status.success(), "dcmdjpeg could not decode the JPEG copy");
    let pixels = |obj: &InMemDicomObject| {
        obj.element(tags::PIXEL_DATA)
            .expect("Pixel Data")
            .to_bytes()
            .expect("native pixels")
            .into_owned()
    };
    let a = pixels(&original);
    let b = pixels(&open_file(&decoded).expect("decoded copy"));
    assert_eq!(a.len(), b.len());
    let mean = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum::<f64>()
        / a.len() as f64;
    assert!(mean < 3.0, "mean error {mean}");

    // an already lossy image needs no consent: the decoded copy is still marked
    // lossy (Lossy Image Compression 01), so it may become JPEG again
    let explicit = dir.path().join("lossy-explicit.dcm");
    ok(
        &renkei(&["transcode", s(&out), s(&explicit), "--ts", "explicit"]),
        "JPEG to explicit",
    );
    let again = dir.path().join("again.dcm");
    let run = renkei(&[
        "transcode",
        s(&explicit),
        s(&again),
        "--ts",
        "jpeg",
        "--quality",
        "70",
    ]);
    ok(&run, "JPEG of a lossy image");
    let again = open_file(&again).expect("second JPEG copy");
    assert_eq!(
        text(&again, tags::LOSSY_IMAGE_COMPRESSION_METHOD),
        "ISO_10918_1\\ISO_10918_1",
        "one method per lossy step"
    );
    // 16-bit cannot be baseline JPEG: refused, pointing to render

    let run = renkei(&[
        "transcode",
        &corpus("CT_small.dcm"),
        s(&dir.path().join("ct.dcm")),
        "--ts",
        "jpeg",
        "--allow-lossy",
    ]);
    failed_naming(&run, "CT_small.dcm");
    assert!(run.stderr.contains("renkei render"), "{}", run.stderr);
}

#[test]
fn transcode_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("not-dicom.dcm");
    std::fs::write(&junk, b"this is not a DICOM file\n").expect("write junk");
    let out = dir.path().join("out.dcm");
    let run = renkei(&["transcode", s(&junk), s(&out), "--ts", "rle"]);
    failed_naming(&run, "not-dicom.dcm");
    assert!(!out.exists());

    let missing = dir.path().join("missing.dcm");
    let run = renkei(&["transcode", s(&missing), s(&out), "--ts", "rle"]);
    failed_naming(&run, "missing.dcm");

    // 1-bit data (a BINARY Segmentation) would become 8-bit: refused
    let run = renkei(&["transcode", &corpus("liver.dcm"), s(&out), "--ts", "rle"]);
    failed_naming(&run, "liver.dcm");
    assert!(run.stderr.contains("1-bit"), "{}", run.stderr);
    ok(
        &renkei(&[
            "transcode",
            &corpus("liver.dcm"),
            s(&out),
            "--ts",
            "implicit",
        ]),
        "1-bit to implicit",
    );

    // a report has no pixels to compress, but can be written uncompressed
    let sr = corpus("test-SR.dcm");
    let run = renkei(&["transcode", &sr, s(&out), "--ts", "rle"]);
    failed_naming(&run, "test-SR.dcm");
    let run = renkei(&["transcode", &sr, s(&out), "--ts", "implicit"]);
    ok(&run, "SR to implicit");
    let status = Command::new(peer("dcmconv"))
        .args([s(&out), s(&dir.path().join("sr.dcm"))])
        .status()
        .expect("run dcmconv");
    assert!(status.success(), "dcmconv could not read the implicit SR");

    let run = renkei(&["transcode", &sr, s(&out), "--ts", "jpeg2001"]);
    assert_eq!(run.status.code(), Some(2), "a usage error is clap's 2");
    assert!(run.stderr.contains("unknown transfer syntax"));
}

// ---------------------------------------------------------------------------
// render

/// PS3.3 C.11.2.1.2 / C.11.2.1.3 on pydicom's samples after the rescale,
/// written out here independently of the renderer. Writes the 8-bit image.
const WINDOW_PY: &str = r#"
import sys
import numpy as np
import pydicom

path, out, c, w, fn = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ds = pydicom.dcmread(path)
x = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
if fn == "linear":
    lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    y = np.where(x <= lo, 0.0, np.where(x > hi, 255.0, ((x - (c - 0.5)) / (w - 1) + 0.5) * 255))
elif fn == "linear-exact":
    y = np.clip((x - c) / w + 0.5, 0, 1) * 255
else:
    y = 255 / (1 + np.exp(-4 * (x - c) / w))
np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8).tofile(out)
print(ds.Rows, ds.Columns)
"#;

#[test]
fn render_applies_the_window_like_the_standard_says() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ct = corpus("CT_small.dcm");
    for (window, voi) in [
        ("40,400", "linear"),
        ("-600,1500", "linear-exact"),
        ("100,300", "sigmoid"),
    ] {
        let png = dir.path().join(format!("ct-{voi}.png"));
        let run = renkei(&[
            "render",
            &ct,
            s(&png),
            &format!("--window={window}"),
            "--voi",
            voi,
        ]);
        ok(&run, &format!("render {voi}"));
        let img = image::open(&png).expect("read PNG").to_luma8();
        assert_eq!(img.dimensions(), (128, 128));

        let expected_file = dir.path().join(format!("ct-{voi}.raw"));
        let (c, w) = window.split_once(',').expect("C,W");
        let out = Command::new(peer_python())
            .args(["-c", WINDOW_PY, &ct, s(&expected_file), c, w, voi])
            .output()
            .expect("run numpy");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "128 128");
        let expected = std::fs::read(&expected_file).expect("expected pixels");
        let got = img.as_raw();
        assert_eq!(got.len(), expected.len());

        // the window must cut both ends and leave grey in between, or the test
        // would prove little
        assert!(expected.iter().any(|&v| v > 5 && v < 250), "{voi}: no grey");
        // two pixels inside the window, exactly; every pixel within rounding
        let inside: Vec<usize> = (0..expected.len())
            .filter(|&i| expected[i] > 20 && expected[i] < 235)
            .collect();
        assert!(inside.len() >= 2, "{voi}: too few pixels inside the window");
        for &i in [inside[0], inside[inside.len() / 2]].iter() {
            assert_eq!(
                got[i],
                expected[i],
                "{voi}: pixel ({}, {})",
                i % 128,
                i / 128
            );
        }
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(&a, &b)| (a as i32 - b as i32).abs())
            .max()
            .unwrap_or(0);
        assert!(worst <= 1, "{voi}: a pixel is off by {worst}");
    }
}

#[test]
fn render_sizes_formats_and_frames() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ct = corpus("CT_small.dcm");
    let thumb = dir.path().join("thumb.png");
    ok(
        &renkei(&["render", &ct, s(&thumb), "--size", "64x32"]),
        "thumbnail",
    );
    assert_eq!(
        image::open(&thumb)
            .expect("thumbnail")
            .to_luma8()
            .dimensions(),
        (32, 32),
        "a square image fits 64x32 as 32x32"
    );

    // a multi-frame image, frame 3 (counted from 1), as JPEG
    let jpg = dir.path().join("frame3.JPG");
    let run = renkei(&[
        "render",
        &corpus("emri_small.dcm"),
        s(&jpg),
        "--frame",
        "3",
        "--quality",
        "75",
    ]);
    ok(&run, "JPEG of frame 3");
    assert!(run.stdout.contains("frame 3/10"), "{}", run.stdout);
    let bytes = std::fs::read(&jpg).expect("JPEG");
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "a JPEG stream");
    let img =
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).expect("decode JPEG");
    assert_eq!((img.width(), img.height()), (64, 64));

    // colour stays colour: an RGB J2K through YBR_RCT, via transcode
    let j2k = dir.path().join("rgb-j2k.dcm");
    ok(
        &renkei(&[
            "transcode",
            &corpus("SC_rgb_rle_2frame.dcm"),
            s(&j2k),
            "--ts",
            "j2k",
        ]),
        "RGB to J2K",
    );
    let a = dir.path().join("rle.png");
    let b = dir.path().join("j2k.png");
    ok(
        &renkei(&[
            "render",
            &corpus("SC_rgb_rle_2frame.dcm"),
            s(&a),
            "--frame",
            "2",
        ]),
        "render RLE",
    );
    ok(
        &renkei(&["render", s(&j2k), s(&b), "--frame", "2"]),
        "render J2K",
    );
    let (a, b) = (
        image::open(&a).expect("PNG").to_rgb8(),
        image::open(&b).expect("PNG").to_rgb8(),
    );
    assert_eq!(a.dimensions(), (100, 100));
    assert!(a == b, "the J2K copy renders differently from the original");
    assert!(
        a.pixels().any(|p| p[0] != p[1] || p[1] != p[2]),
        "colour image rendered grey"
    );
}

#[test]
fn render_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("broken.dcm");
    std::fs::write(&junk, [0u8; 300]).expect("write junk");
    let png = dir.path().join("out.png");
    let run = renkei(&["render", s(&junk), s(&png)]);
    failed_naming(&run, "broken.dcm");
    assert!(!png.exists());

    let ct = corpus("CT_small.dcm");
    let run = renkei(&["render", &ct, s(&png), "--frame", "2"]);
    failed_naming(&run, "CT_small.dcm");
    assert!(run.stderr.contains("1 frame"), "{}", run.stderr);

    let run = renkei(&["render", &corpus("rtplan.dcm"), s(&png)]);
    failed_naming(&run, "rtplan.dcm");

    let run = renkei(&["render", &ct, s(&dir.path().join("out.gif"))]);
    failed_naming(&run, "out.gif");
    let run = renkei(&["render", &ct, s(&png), "--quality", "50"]);
    failed_naming(&run, "out.png");

    let run = renkei(&["render", &ct, s(&dir.path().join("no/such/dir/out.png"))]);
    failed_naming(&run, "out.png");
}
