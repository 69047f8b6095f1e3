//! Every frame of every corpus file with pixel data, decoded by renkei-transcode and by
//! pydicom 3 (pylibjpeg, pylibjpeg-libjpeg/-openjpeg/-rle), compared sample by sample:
//! equal for lossless transfer syntaxes, within a tolerance for lossy ones. Broken files of
//! corpus/edge must fail with the specific error listed here.
//!
//! Like for like: pydicom decodes with `raw=True` (no colour conversion of its own) and
//! reports the photometric interpretation of its output. Where ours is RGB because our
//! codec converted YCbCr (JPEG baseline in YBR_FULL_422) and pydicom's samples are still
//! YBR, the comparison is with pydicom's own YBR->RGB output. Any other difference in
//! photometric interpretation is a failure.

#[path = "peers/common.rs"]
mod common;

use std::collections::BTreeMap;

use renkei_transcode::decode::{self, Frame, Samples};
use serde_json::Value;

/// Edge files that are broken, and the error each must produce (a substring). Some fail
/// in dicom-object's parser already, before any pixel is decoded: the open error is the
/// clear error then.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    // Pixel Data's length runs past the end of the file (8130 of 8192 bytes): the parser
    // refuses it; the decoder's own "pixel data shorter than" is in `truncated_native_data`
    (
        "edge/MR_truncated.dcm",
        "open: Could not read data set token",
    ),
    // NumberOfFrames "1A"
    ("edge/badVR.dcm", "invalid NumberOfFrames: \"1A\""),
    // no Transfer Syntax UID in the file meta: the parser refuses the meta group
    (
        "edge/meta_missing_tsyntax.dcm",
        "open: Could not parse meta group data set",
    ),
    // Pixel Data present, the Image Pixel module (Rows, BitsAllocated, ...) missing
    ("edge/nested_priv_SQ.dcm", "missing attribute Rows"),
    // a sequence delimiter inside the J2K fragment: the codestream is cut (pydicom fails too)
    (
        "edge/JPEG2000-embedded-sequence-delimiter.dcm",
        "JPEG 2000 (OpenJPEG) could not decode frame 0",
    ),
];

/// Edge files that lack only a trailing item (here the sequence delimiter): dicom-object
/// reads all their fragments, pydicom reads nothing, so they are compared with pydicom's
/// decode of the intact file.
const TWINS: &[(&str, &str)] = &[(
    "edge/emri_small_jpeg_2k_lossless_too_short.dcm",
    "valid/emri_small_jpeg_2k_lossless.dcm",
)];

/// Lossy transfer syntaxes: samples may differ by codec rounding (IDCT, upsampling,
/// colour conversion). Everything else must be equal.
fn tolerance(ts: &str) -> Option<(f64, i64)> {
    match ts {
        // JPEG baseline 8-bit: jpeg-decoder and libjpeg differ in IDCT and in chroma
        // upsampling (both "fancy" but not bit-identical); pydicom converts YBR with floats
        // (measured: mean 0.024, max 3 on examples_ybr_color.dcm)
        "1.2.840.10008.1.2.4.50" => Some((0.25, 4)),
        // JPEG extended 12-bit: our float IDCT against libjpeg's integer one
        // (measured: mean 0.014, max 1 on JPGExtended.dcm)
        "1.2.840.10008.1.2.4.51" => Some((0.1, 1)),
        // JPEG 2000 irreversible: both are OpenJPEG, small float drift allowed
        "1.2.840.10008.1.2.4.91" | "1.2.840.10008.1.2.4.203" => Some((0.1, 1)),
        _ => None,
    }
}

fn dtype_of(samples: &Samples) -> &'static str {
    match samples {
        Samples::U8(_) => "u1",
        Samples::I8(_) => "i1",
        Samples::U16(_) => "u2",
        Samples::I16(_) => "i2",
        Samples::U32(_) => "u4",
        Samples::I32(_) => "i4",
        _ => "?",
    }
}

fn as_u(v: &Value) -> usize {
    v.as_u64().unwrap_or(0) as usize
}

#[test]
fn corpus_decodes_like_pydicom() {
    let files = common::corpus_files();
    let out = tempfile::tempdir().expect("temp dir");
    let corpus = common::corpus();
    let mut args: Vec<std::ffi::OsString> = vec![out.path().into()];
    args.extend(files.iter().map(|f| corpus.join(f).into_os_string()));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    common::run_python("pydicom_frames.py", &refs);

    let expected: BTreeMap<&str, &str> = EXPECTED_FAILURES.iter().copied().collect();
    let mut problems = Vec::new();
    let mut report = Vec::new();
    let mut decoded_files = 0;
    let mut failed_as_expected = 0;
    for (file_index, file) in files.iter().enumerate() {
        // the pydicom result to compare with: this file's, or its intact twin's
        let i = TWINS
            .iter()
            .find(|(edge, _)| edge == file)
            .and_then(|(_, twin)| files.iter().position(|f| f == twin))
            .unwrap_or(file_index);
        let info: Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join(format!("{i}.json"))).expect("helper json"),
        )
        .expect("helper json parses");
        let status = info["status"].as_str().unwrap_or("?");
        let ours: Result<Vec<Frame>, String> = common::open(&corpus.join(file))
            .map_err(|e| format!("open: {e}"))
            .and_then(|obj| decode::decode_all(&obj).map_err(|e| e.to_string()));

        if status == "no_pixel_data" {
            match &ours {
                Err(e) if e.contains("no Pixel Data") || e.starts_with("open:") => {}
                other => {
                    problems.push(format!("{file}: no pixel data for pydicom, ours {other:?}"))
                }
            }
            continue;
        }
        if let Some(want) = expected.get(file.as_str()) {
            match &ours {
                Err(e) if e.contains(want) => {
                    failed_as_expected += 1;
                    report.push(format!("{file}: fails as expected: {e}"));
                }
                Err(e) => problems.push(format!("{file}: error {e:?}, expected one with {want:?}")),
                Ok(_) => problems.push(format!("{file}: decoded, expected failure {want:?}")),
            }
            continue;
        }
        if status != "ok" {
            problems.push(format!(
                "{file}: pydicom failed ({}) and the file is not in EXPECTED_FAILURES; ours: {:?}",
                info["error"],
                ours.as_ref().map(|f| f.len())
            ));
            continue;
        }
        let frames = match ours {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("{file}: {e}"));
                continue;
            }
        };
        let ts = info["transfer_syntax"].as_str().unwrap_or("");
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .map(|a| a.iter().map(as_u).collect())
            .unwrap_or_default();
        let (nf, rows, cols) = (shape[0], shape[1], shape[2]);
        let spp = shape.get(3).copied().unwrap_or(1);
        let first = &frames[0];
        let geometry = (
            frames.len(),
            first.rows as usize,
            first.cols as usize,
            first.samples_per_pixel as usize,
        );
        if geometry != (nf, rows, cols, spp) {
            problems.push(format!(
                "{file}: frames/rows/cols/spp {geometry:?}, pydicom {:?}",
                (nf, rows, cols, spp)
            ));
            continue;
        }
        let dtype = info["dtype"].as_str().unwrap_or("");
        if dtype_of(&first.samples) != dtype {
            problems.push(format!(
                "{file}: sample type {}, pydicom {dtype}",
                dtype_of(&first.samples)
            ));
            continue;
        }
        let their_pi = info["photometric_interpretation"].as_str().unwrap_or("");
        let our_pi = first.photometric.as_str();
        let raw = if our_pi == their_pi {
            format!("{i}.raw")
        } else if our_pi == "RGB" && their_pi.starts_with("YBR") && info["rgb"] == true {
            format!("{i}.rgb.raw")
        } else {
            problems.push(format!(
                "{file}: decoded photometric interpretation {our_pi}, pydicom {their_pi}"
            ));
            continue;
        };
        let theirs = common::read_raw(&out.path().join(raw), dtype);
        let ours: Vec<i64> = frames.iter().flat_map(|f| f.samples.to_i64()).collect();
        let (mean, max) = common::diff(&ours, &theirs);
        let verdict = match tolerance(ts) {
            None if max == 0 => "equal".to_owned(),
            None => {
                problems.push(format!(
                    "{file} ({ts}): lossless but differs: mean {mean:.3}, max {max}"
                ));
                continue;
            }
            Some((tm, tx)) if mean <= tm && max <= tx => {
                format!("within tolerance: mean {mean:.3}, max {max}")
            }
            Some((tm, tx)) => {
                problems.push(format!(
                    "{file} ({ts}): mean {mean:.3} (<= {tm}), max {max} (<= {tx})"
                ));
                continue;
            }
        };
        decoded_files += 1;
        report.push(format!(
            "{file} [{ts}, {our_pi}, {dtype}, {nf} frame(s)]: {verdict}"
        ));
    }
    println!("{}", report.join("\n"));
    println!("{decoded_files} files decoded like pydicom, {failed_as_expected} failed as expected");
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(decoded_files >= 60, "only {decoded_files} files compared");
}

/// The error for a frame past the end names both numbers.
#[test]
fn frame_out_of_range_is_specific() {
    let obj = common::open(&common::corpus().join("valid/emri_small.dcm")).expect("open");
    let err = decode::decode_frame(&obj, 10).expect_err("frame 10 of 10");
    assert_eq!(err.to_string(), "frame 10 requested, the object has 10");
    assert_eq!(decode::decode_frame(&obj, 9).expect("frame 9").rows, 64);
}

/// Native pixel data cut short is refused with sizes, not read past its end.
#[test]
fn truncated_native_data() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let mut obj = common::open(&common::corpus().join("valid/MR_small.dcm")).expect("open");
    let pixels = obj
        .get(dicom_dictionary_std::tags::PIXEL_DATA)
        .and_then(|e| e.value().to_bytes().ok())
        .expect("pixel data")
        .into_owned();
    obj.put(DataElement::new(
        dicom_dictionary_std::tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(pixels[..8130].into()),
    ));
    let err = decode::decode_frame(&obj, 0).expect_err("8130 of 8192 bytes");
    assert_eq!(
        err.to_string(),
        "pixel data shorter than rows*cols*samples*bits*frames needs: 8130 bytes, 8192 needed \
         for 1 frame(s) of 64x64x1 at 16 bits"
    );
}

/// Memory per decoded frame, as docs/PIXELS.md states it.
#[test]
fn decoded_frame_size() {
    let obj = common::open(&common::corpus().join("valid/RG3_UNCR.dcm")).expect("open");
    let info = decode::pixel_info(&obj).expect("info");
    assert_eq!(info.decoded_frame_bytes(), 1760 * 1760 * 2);
    let frame = decode::decode_frame(&obj, 0).expect("decode");
    assert_eq!(frame.size_bytes(), info.decoded_frame_bytes());
}

/// Compressed frames cut in half or with flipped bytes give an error or some pixels,
/// never a panic: a worker must survive whatever a modality sends.
#[test]
fn damaged_fragments_do_not_panic() {
    use dicom_core::value::{PixelFragmentSequence, Value};
    use dicom_core::{DataElement, VR};
    let mut tried = 0;
    for file in common::corpus_files() {
        let Ok(obj) = common::open(&common::corpus().join(&file)) else {
            continue;
        };
        let Some(seq) = obj
            .get(dicom_dictionary_std::tags::PIXEL_DATA)
            .and_then(|e| e.value().fragments().map(|f| f.to_vec()))
        else {
            continue;
        };
        for damage in 0..3 {
            let fragments: Vec<Vec<u8>> = seq
                .iter()
                .map(|f| {
                    let mut f = f.clone();
                    match damage {
                        0 => f.truncate(f.len() / 2),
                        1 => {
                            let n = f.len();
                            for i in (n / 3..n).step_by(7) {
                                f[i] ^= 0x5A;
                            }
                        }
                        _ => f.truncate(70),
                    }
                    f
                })
                .collect();
            let mut damaged = obj.clone();
            damaged.put(DataElement::new(
                dicom_dictionary_std::tags::PIXEL_DATA,
                VR::OB,
                Value::PixelSequence(PixelFragmentSequence::new(vec![], fragments)),
            ));
            let _ = decode::decode_all(&damaged);
            tried += 1;
        }
    }
    assert!(tried > 40, "only {tried} damaged objects tried");
}
