//! Rendered PNGs compared with a reference rendering made from pydicom's decoded pixels
//! with numpy (tests/peers/render_reference.py: the same formulas, written separately).
//!
//! Tolerances, per case:
//! - greyscale and palette at full size: identical formulas on identical samples, so the
//!   only slack is float rounding at exact .5 boundaries: max diff 1, mean ≤ 0.01;
//! - colour from lossy JPEG: our codec (jpeg-decoder) converts YCbCr itself and differs
//!   from libjpeg + pydicom's conversion by codec rounding: mean ≤ 0.25, max ≤ 4 (the
//!   same bound the decode test uses for the samples; measured 0.024 and 3);
//! - thumbnails: exact area averages on both sides, in f32 here and f64 there, so a
//!   rounding at .5 may differ: mean ≤ 0.05, max 1.

#[path = "peers/common.rs"]
mod common;

use renkei_transcode::render::{self, OutputFormat, RenderOptions, VoiFunction};
use serde_json::Value;

struct Case {
    file: &'static str,
    frame: u32,
    window: Option<(f64, f64)>,
    voi: Option<VoiFunction>,
    fit: Option<(u32, u32)>,
    mean: f64,
    max: i64,
}

const fn case(file: &'static str) -> Case {
    Case {
        file,
        frame: 0,
        window: None,
        voi: None,
        fit: None,
        mean: 0.01,
        max: 1,
    }
}

fn voi_name(v: VoiFunction) -> &'static str {
    match v {
        VoiFunction::Linear => "LINEAR",
        VoiFunction::LinearExact => "LINEAR_EXACT",
        VoiFunction::Sigmoid => "SIGMOID",
    }
}

/// Renders with our code, decodes the PNG, renders the reference, compares.
fn check(c: &Case) -> Result<String, String> {
    let path = common::corpus().join(c.file);
    let obj = common::open(&path)?;
    let options = RenderOptions {
        window: c.window,
        voi_function: c.voi,
        size: c.fit,
        format: OutputFormat::Png,
    };
    let png = render::render_frame(&obj, c.frame, &options).map_err(|e| e.to_string())?;
    if !png.starts_with(b"\x89PNG") {
        return Err("output is not a PNG".into());
    }
    let ours = image::load_from_memory(&png).map_err(|e| e.to_string())?;

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let prefix = dir.path().join("ref");
    let mut args: Vec<String> = vec![
        prefix.display().to_string(),
        path.display().to_string(),
        c.frame.to_string(),
    ];
    if let Some((wc, ww)) = c.window {
        args.extend(["--window".into(), wc.to_string(), ww.to_string()]);
    }
    if let Some(v) = c.voi {
        args.extend(["--voi".into(), voi_name(v).into()]);
    }
    if let Some((w, h)) = c.fit {
        args.extend(["--fit".into(), w.to_string(), h.to_string()]);
    }
    let os: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    common::run_python("render_reference.py", &os);
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(prefix.with_extension("json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let shape: Vec<u32> = meta["shape"]
        .as_array()
        .ok_or("no shape")?
        .iter()
        .map(|v| v.as_u64().unwrap_or(0) as u32)
        .collect();
    let (h, w) = (shape[0], shape[1]);
    let channels = shape.get(2).copied().unwrap_or(1);
    if (ours.width(), ours.height()) != (w, h) {
        return Err(format!(
            "size {}x{}, reference {w}x{h}",
            ours.width(),
            ours.height()
        ));
    }
    let ours: Vec<i64> = match channels {
        1 => ours.to_luma8().into_raw(),
        _ => ours.to_rgb8().into_raw(),
    }
    .into_iter()
    .map(i64::from)
    .collect();
    let theirs: Vec<i64> = std::fs::read(prefix.with_extension("raw"))
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(i64::from)
        .collect();
    if ours.len() != theirs.len() {
        return Err(format!(
            "{} samples, reference {}",
            ours.len(),
            theirs.len()
        ));
    }
    let (mean, max) = common::diff(&ours, &theirs);
    if mean > c.mean || max > c.max {
        return Err(format!(
            "mean diff {mean:.3} (<= {}), max {max} (<= {})",
            c.mean, c.max
        ));
    }
    Ok(format!("{}x{}x{channels}: mean {mean:.3}, max {max}", w, h))
}

fn run(cases: &[Case]) {
    let mut problems = Vec::new();
    for c in cases {
        match check(c) {
            Ok(s) => println!("{} frame {}: {s}", c.file, c.frame),
            Err(e) => problems.push(format!("{} frame {} {:?}: {e}", c.file, c.frame, c.window)),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// CT with a soft-tissue window given by the caller, with each VOI LUT function.
#[test]
fn ct_windowed() {
    let ct = |voi| Case {
        window: Some((40.0, 400.0)),
        voi,
        ..case("valid/CT_small.dcm")
    };
    run(&[
        ct(None),
        ct(Some(VoiFunction::LinearExact)),
        ct(Some(VoiFunction::Sigmoid)),
    ]);
}

/// Window from the file; enhanced CT with the window in the Shared Functional Groups.
#[test]
fn window_from_file_and_functional_groups() {
    run(&[
        case("valid/MR2_UNCR.dcm"),
        Case {
            frame: 1,
            ..case("valid/eCT_Supplemental.dcm")
        },
        // no window at all: the frame's range
        case("valid/MR_small.dcm"),
        // VOI LUT Sequence
        case("valid/vlut_04.dcm"),
    ]);
}

/// MONOCHROME1 CR: inverted after its window, full size and as a thumbnail.
#[test]
fn cr_monochrome1() {
    run(&[
        case("valid/RG3_UNCR.dcm"),
        Case {
            fit: Some((256, 256)),
            mean: 0.05,
            ..case("valid/RG3_UNCR.dcm")
        },
    ]);
}

/// Ultrasound palettes: 8-bit indices with 16-bit LUTs, and 16-bit indices with a
/// segmented LUT.
#[test]
fn palette_us() {
    run(&[
        case("valid/examples_palette.dcm"),
        case("valid/gdcm-US-ALOKA-16.dcm"),
        Case {
            frame: 1,
            ..case("valid/OBXXXX1A_rle_2frame.dcm")
        },
    ]);
}

/// Colour JPEG baseline in YBR_FULL and YBR_FULL_422, and native RGB.
#[test]
fn rgb_jpeg() {
    let lossy = |file, frame| Case {
        frame,
        mean: 0.25,
        max: 4,
        ..case(file)
    };
    run(&[
        lossy("valid/SC_rgb_jpeg_dcmtk.dcm", 0),
        lossy("valid/examples_ybr_color.dcm", 12),
        case("valid/ExplVR_BigEnd.dcm"),
        // native YBR_FULL_422: converted by the renderer, same formula as pydicom
        case("valid/SC_ybr_full_422_uncompressed.dcm"),
        // a thumbnail of a colour image
        Case {
            fit: Some((64, 64)),
            mean: 0.05,
            ..case("valid/ExplVR_BigEnd.dcm")
        },
    ]);
}

/// JPEG output decodes and has the fitted size.
#[test]
fn jpeg_output_and_size() {
    let obj = common::open(&common::corpus().join("valid/MR2_UNCR.dcm")).expect("open");
    let options = RenderOptions {
        size: Some((128, 64)),
        format: OutputFormat::Jpeg(85),
        ..Default::default()
    };
    let jpeg = render::render_frame(&obj, 0, &options).expect("render");
    assert!(jpeg.starts_with(&[0xFF, 0xD8]));
    let img = image::load_from_memory(&jpeg).expect("decode JPEG");
    assert_eq!((img.width(), img.height()), (64, 64));
    let bad = RenderOptions {
        window: Some((0.0, 0.0)),
        ..Default::default()
    };
    let err = render::render_frame(&obj, 0, &bad).expect_err("width 0");
    assert!(err.to_string().contains("window width 0"), "{err}");
}
