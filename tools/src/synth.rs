/*!
`renkei synth`: write synthetic CT instances to load-test a PACS.

Each instance is a plausible 16-bit CT slice (air, a body outline, two lungs,
a spine, noise) with its own UIDs; a new series starts every `--per-series`
instances and a new study (and patient) every `--series-per-study` series.
Everything, UIDs included, comes from one seeded RNG, so a seed always gives
the same files.
*/

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Write synthetic CT images for load tests.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Write synthetic CT images (DICOM files) for load and acceptance tests.\n\n\
Creates COUNT CT slices named DIR/000001.dcm, DIR/000002.dcm, ... Each has fresh unique \
identifiers; a new series starts every --per-series images and a new study, with a new \
test patient (SYN000001, SYNTH^PATIENT1, ...), every --series-per-study series. The images \
show a simple body outline with noise, so they compress like real data. The same --seed \
always produces the same files.\n\n\
The files are fake: never send them to a clinical PACS.",
    after_help = "Example:\n  renkei synth --out /tmp/load --count 1000 --seed 42\n  \
renkei store 127.0.0.1 11112 -j 4 /tmp/load"
)]
pub(crate) struct SynthArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Number of images to write.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=99_999_999))]
    count: u32,

    /// Images per series.
    #[arg(long, value_name = "S", default_value_t = 250,
          value_parser = clap::value_parser!(u32).range(1..))]
    per_series: u32,

    /// Series per study.
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    series_per_study: u32,

    /// Image height in pixels.
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u16).range(16..=4096))]
    rows: u16,

    /// Image width in pixels.
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u16).range(16..=4096))]
    cols: u16,

    /// Seed for the random generator; without it a random seed is used
    /// (and printed).
    #[arg(long, value_name = "SEED")]
    seed: Option<u64>,
}

/// The geometry and numbering of the whole run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) count: u32,
    pub(crate) per_series: u32,
    pub(crate) series_per_study: u32,
    pub(crate) rows: u16,
    pub(crate) cols: u16,
}

const SLICE_THICKNESS_MM: f64 = 1.25;
const PIXEL_SPACING_MM: f64 = 0.7;
/// Stored value = HU - RESCALE_INTERCEPT.
const RESCALE_INTERCEPT: i32 = -1024;
/// Days since 1970-01-01 of the first study date (2024-01-01).
const FIRST_STUDY_DAY: i64 = 19_723;

pub(crate) fn run(args: &SynthArgs) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    if args.seed.is_none() {
        eprintln!("seed: {seed}");
    }
    let layout = Layout {
        count: args.count,
        per_series: args.per_series,
        series_per_study: args.series_per_study,
        rows: args.rows,
        cols: args.cols,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;

    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = ProgressBar::new(u64::from(layout.count));
        bar.set_style(ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} files, {per_sec}, ETA {eta}",
        )?);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let bytes = generate(&args.out, layout, seed, |_| progress.inc(1))?;
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    println!(
        "wrote {} files ({:.1} MB) to {} in {secs:.1} s, {:.1} files/s",
        layout.count,
        bytes as f64 / 1e6,
        args.out.display(),
        f64::from(layout.count) / secs,
    );
    Ok(ExitCode::SUCCESS)
}

/// Write all instances; returns the bytes written. `on_file` is called
/// after each file.
pub(crate) fn generate(
    out: &Path,
    layout: Layout,
    seed: u64,
    mut on_file: impl FnMut(u32),
) -> anyhow::Result<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let width = layout.count.to_string().len().max(6);
    let mut pixels = Vec::new();
    let mut encoded = Vec::new();
    let mut series = SeriesIds::default();
    let mut study = StudyIds::default();
    let mut total = 0u64;

    for index in 0..layout.count {
        let series_index = index / layout.per_series;
        let study_index = series_index / layout.series_per_study;
        let position = index % layout.per_series; // 0-based in the series
        if position == 0 {
            if series_index % layout.series_per_study == 0 {
                study = StudyIds::new(&mut rng, study_index);
            }
            series = SeriesIds::new(&mut rng);
        }
        let instance = InstanceInfo {
            sop_instance_uid: new_uid(&mut rng),
            instance_number: position + 1,
            series_number: series_index % layout.series_per_study + 1,
            // where this slice is in the series, 0..1, for anatomy
            fraction: f64::from(position) / f64::from(layout.per_series),
        };
        render_slice(
            layout.rows,
            layout.cols,
            instance.fraction,
            &mut rng,
            &mut pixels,
        );
        let object = build_object(
            layout,
            &study,
            &series,
            &instance,
            std::mem::take(&mut pixels),
        )
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .context("cannot build the file meta group")?;
        encoded.clear();
        object
            .write_all(&mut encoded)
            .context("cannot encode the instance")?;
        let path = out.join(format!("{:0width$}.dcm", index + 1));
        std::fs::write(&path, &encoded)
            .with_context(|| format!("cannot write {}", path.display()))?;
        total += encoded.len() as u64;
        // reuse the pixel buffer for the next slice
        pixels = take_pixels(object.into_inner());
        on_file(index + 1);
    }
    Ok(total)
}

#[derive(Default)]
struct StudyIds {
    study_uid: String,
    frame_of_reference_uid: String,
    patient_number: u32,
    study_date: String,
    study_time: String,
    accession: String,
}

impl StudyIds {
    fn new(rng: &mut StdRng, study_index: u32) -> Self {
        let day = FIRST_STUDY_DAY + i64::from(study_index % 3650);
        let (y, m, d) = civil_from_days(day);
        let seconds = rng.random_range(7 * 3600..19 * 3600);
        StudyIds {
            study_uid: new_uid(rng),
            frame_of_reference_uid: new_uid(rng),
            patient_number: study_index + 1,
            study_date: format!("{y:04}{m:02}{d:02}"),
            study_time: format!(
                "{:02}{:02}{:02}",
                seconds / 3600,
                seconds / 60 % 60,
                seconds % 60
            ),
            accession: format!("SYNA{:08}", study_index + 1),
        }
    }
}

#[derive(Default)]
struct SeriesIds {
    series_uid: String,
}

impl SeriesIds {
    fn new(rng: &mut StdRng) -> Self {
        SeriesIds {
            series_uid: new_uid(rng),
        }
    }
}

struct InstanceInfo {
    sop_instance_uid: String,
    instance_number: u32,
    series_number: u32,
    fraction: f64,
}

/// A UID under the `2.25.` root (ISO/IEC 9834-8: a UUID as an integer).
pub(crate) fn new_uid(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    format!("2.25.{}", u128::from_le_bytes(bytes))
}

fn element(tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value.into())
}

fn build_object(
    layout: Layout,
    study: &StudyIds,
    series: &SeriesIds,
    instance: &InstanceInfo,
    pixels: Vec<u8>,
) -> InMemDicomObject {
    let patient = study.patient_number;
    // 0.0 - x, not -x: the first slice is at 0, not -0
    let z = 0.0 - SLICE_THICKNESS_MM * f64::from(instance.instance_number - 1);
    let x0 = -PIXEL_SPACING_MM * f64::from(layout.cols) / 2.0;
    let y0 = -PIXEL_SPACING_MM * f64::from(layout.rows) / 2.0;
    let ds = |v: f64| format!("{v:.3}");
    InMemDicomObject::from_element_iter([
        element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100"),
        element(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
        element(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        element(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            instance.sop_instance_uid.as_str(),
        ),
        element(tags::STUDY_DATE, VR::DA, study.study_date.as_str()),
        element(tags::SERIES_DATE, VR::DA, study.study_date.as_str()),
        element(tags::CONTENT_DATE, VR::DA, study.study_date.as_str()),
        element(tags::STUDY_TIME, VR::TM, study.study_time.as_str()),
        element(tags::SERIES_TIME, VR::TM, study.study_time.as_str()),
        element(tags::CONTENT_TIME, VR::TM, study.study_time.as_str()),
        element(tags::ACCESSION_NUMBER, VR::SH, study.accession.as_str()),
        element(tags::MODALITY, VR::CS, "CT"),
        element(tags::MANUFACTURER, VR::LO, "Renkei synthetic"),
        element(tags::INSTITUTION_NAME, VR::LO, "Renkei Test Hospital"),
        element(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
        element(tags::STUDY_DESCRIPTION, VR::LO, "SYNTHETIC CT CHEST"),
        element(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            format!("SYNTHETIC AXIAL {}", instance.series_number),
        ),
        element(
            tags::PATIENT_NAME,
            VR::PN,
            format!("SYNTH^PATIENT{patient}"),
        ),
        element(tags::PATIENT_ID, VR::LO, format!("SYN{patient:06}")),
        element(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
        element(
            tags::PATIENT_SEX,
            VR::CS,
            if patient % 2 == 0 { "F" } else { "M" },
        ),
        element(tags::BODY_PART_EXAMINED, VR::CS, "CHEST"),
        element(tags::SLICE_THICKNESS, VR::DS, ds(SLICE_THICKNESS_MM)),
        element(tags::KVP, VR::DS, "120"),
        element(tags::PATIENT_POSITION, VR::CS, "HFS"),
        element(tags::STUDY_INSTANCE_UID, VR::UI, study.study_uid.as_str()),
        element(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            series.series_uid.as_str(),
        ),
        element(tags::STUDY_ID, VR::SH, format!("{patient}")),
        element(
            tags::SERIES_NUMBER,
            VR::IS,
            instance.series_number.to_string(),
        ),
        element(
            tags::INSTANCE_NUMBER,
            VR::IS,
            instance.instance_number.to_string(),
        ),
        element(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            format!("{}\\{}\\{}", ds(x0), ds(y0), ds(z)),
        ),
        element(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
        element(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            study.frame_of_reference_uid.as_str(),
        ),
        element(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        element(tags::SLICE_LOCATION, VR::DS, ds(z)),
        element(tags::SAMPLES_PER_PIXEL, VR::US, 1_u16),
        element(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        element(tags::ROWS, VR::US, layout.rows),
        element(tags::COLUMNS, VR::US, layout.cols),
        element(
            tags::PIXEL_SPACING,
            VR::DS,
            format!("{}\\{}", ds(PIXEL_SPACING_MM), ds(PIXEL_SPACING_MM)),
        ),
        element(tags::BITS_ALLOCATED, VR::US, 16_u16),
        element(tags::BITS_STORED, VR::US, 16_u16),
        element(tags::HIGH_BIT, VR::US, 15_u16),
        element(tags::PIXEL_REPRESENTATION, VR::US, 1_u16),
        element(tags::WINDOW_CENTER, VR::DS, "40"),
        element(tags::WINDOW_WIDTH, VR::DS, "400"),
        element(
            tags::RESCALE_INTERCEPT,
            VR::DS,
            RESCALE_INTERCEPT.to_string(),
        ),
        element(tags::RESCALE_SLOPE, VR::DS, "1"),
        element(tags::RESCALE_TYPE, VR::LO, "HU"),
        // little-endian i16 bytes, written as they are
        element(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U8(pixels.into())),
    ])
}

/// Get the pixel buffer back from a written object, to reuse its allocation.
fn take_pixels(mut object: InMemDicomObject) -> Vec<u8> {
    match object.take_element(tags::PIXEL_DATA) {
        Ok(element) => match element.into_value() {
            dicom_core::DicomValue::Primitive(PrimitiveValue::U8(bytes)) => bytes.into_vec(),
            _ => Vec::new(),
        },
        Err(_) => Vec::new(),
    }
}

/// Render one axial slice into `out` as little-endian i16 stored values:
/// air outside an elliptic body, soft tissue with two lungs (larger in
/// the middle of the series) and a vertebra, plus noise.
pub(crate) fn render_slice(
    rows: u16,
    cols: u16,
    fraction: f64,
    rng: &mut impl RngCore,
    out: &mut Vec<u8>,
) {
    let (rows, cols) = (usize::from(rows), usize::from(cols));
    out.clear();
    out.reserve(rows * cols * 2);
    let lung = 0.15 + 0.85 * (PI * fraction).sin(); // lung size along the series
    let hu = |v: i32| v - RESCALE_INTERCEPT;
    let (air, tissue, lung_hu, bone) = (hu(-1000), hu(40), hu(-850), hu(700));
    // half-width of an ellipse (centre v0, semi-axes a, b) on the row at v
    let half_width = |v: f64, v0: f64, a: f64, b: f64| {
        let t = (v - v0) / b;
        if t.abs() < 1.0 {
            a * (1.0 - t * t).sqrt()
        } else {
            -1.0
        }
    };
    let us: Vec<f64> = (0..cols)
        .map(|c| (c as f64 + 0.5) / cols as f64 * 2.0 - 1.0)
        .collect();
    let mut noise_bits = 0u64;
    let mut noise_left = 0;
    for r in 0..rows {
        let v = (r as f64 + 0.5) / rows as f64 * 2.0 - 1.0;
        let body = half_width(v, 0.0, 0.85, 0.62);
        let spine = half_width(v, 0.38, 0.09, 0.09);
        let lungs = half_width(v, -0.05, 0.24 * lung, 0.38 * lung);
        for &u in &us {
            let a = u.abs();
            let base = if a > body {
                air
            } else if a <= spine {
                bone
            } else if (a - 0.36).abs() <= lungs {
                lung_hu
            } else {
                tissue
            };
            if noise_left == 0 {
                noise_bits = rng.next_u64();
                noise_left = 4;
            }
            // sum of two bytes: triangular noise of about ±30 HU
            let noise = ((noise_bits & 0xFF) + ((noise_bits >> 8) & 0xFF)) as i32 - 255;
            noise_bits >>= 16;
            noise_left -= 1;
            let value = (base + noise / 8).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

use renkei_model::time::civil_from_days;

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::open_file;

    fn layout(count: u32) -> Layout {
        Layout {
            count,
            per_series: 2,
            series_per_study: 2,
            rows: 64,
            cols: 48,
        }
    }

    fn text(obj: &dicom_object::DefaultDicomObject, tag: Tag) -> String {
        obj.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string()
    }

    #[test]
    fn output_is_readable_with_the_right_dimensions() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = 0;
        generate(dir.path(), layout(5), 7, |n| seen = n).unwrap();
        assert_eq!(seen, 5);

        let mut studies = std::collections::HashSet::new();
        let mut series = std::collections::HashSet::new();
        let mut instances = std::collections::HashSet::new();
        for n in 1..=5 {
            let path = dir.path().join(format!("{n:06}.dcm"));
            let obj = open_file(&path).unwrap();
            assert_eq!(
                obj.meta().transfer_syntax(),
                uids::EXPLICIT_VR_LITTLE_ENDIAN
            );
            assert_eq!(
                obj.meta().media_storage_sop_class_uid(),
                uids::CT_IMAGE_STORAGE
            );
            assert_eq!(
                obj.element(tags::ROWS).unwrap().to_int::<u16>().unwrap(),
                64
            );
            assert_eq!(
                obj.element(tags::COLUMNS).unwrap().to_int::<u16>().unwrap(),
                48
            );
            let pixel_bytes = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
            assert_eq!(pixel_bytes.len(), 64 * 48 * 2);
            assert!(pixel_bytes.iter().any(|&b| b != 0));
            assert_eq!(text(&obj, tags::MODALITY), "CT");
            let uid = text(&obj, tags::SOP_INSTANCE_UID);
            assert!(uid.starts_with("2.25.") && uid.len() <= 64, "{uid}");
            assert_eq!(uid, obj.meta().media_storage_sop_instance_uid());
            instances.insert(uid);
            studies.insert(text(&obj, tags::STUDY_INSTANCE_UID));
            series.insert(text(&obj, tags::SERIES_INSTANCE_UID));
            let expected_patient = (n - 1) / 4 + 1; // 2 per series, 2 series per study
            assert_eq!(
                text(&obj, tags::PATIENT_ID),
                format!("SYN{expected_patient:06}")
            );
            assert_eq!(
                text(&obj, tags::PATIENT_NAME),
                format!("SYNTH^PATIENT{expected_patient}")
            );
            assert_eq!(
                text(&obj, tags::INSTANCE_NUMBER),
                ((n - 1) % 2 + 1).to_string()
            );
        }
        assert_eq!(instances.len(), 5);
        assert_eq!(series.len(), 3);
        assert_eq!(studies.len(), 2);
    }

    #[test]
    fn same_seed_same_files() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        generate(a.path(), layout(3), 42, |_| {}).unwrap();
        generate(b.path(), layout(3), 42, |_| {}).unwrap();
        for n in 1..=3 {
            let name = format!("{n:06}.dcm");
            assert_eq!(
                std::fs::read(a.path().join(&name)).unwrap(),
                std::fs::read(b.path().join(&name)).unwrap()
            );
        }
        let c = tempfile::tempdir().unwrap();
        generate(c.path(), layout(1), 43, |_| {}).unwrap();
        assert_ne!(
            std::fs::read(a.path().join("000001.dcm")).unwrap(),
            std::fs::read(c.path().join("000001.dcm")).unwrap()
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(FIRST_STUDY_DAY), (2024, 1, 1));
        assert_eq!(civil_from_days(FIRST_STUDY_DAY + 59), (2024, 2, 29));
    }
}
