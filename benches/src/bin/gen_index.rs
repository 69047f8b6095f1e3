/*!
`renkei-gen-index`: a synthetic regional archive for the query benchmarks.

Patients, studies, series and instances with realistic keys: Japanese patients carry the
three name groups (`Yamada^Tarou=山田^太郎=やまだ^たろう`), the others a Latin name; study
dates spread over ten years; each series has a modality. The same arguments always give
the same archive (UIDs included), so the node and Orthanc can be loaded with the same data.

Two outputs:
- `--data-dir DIR`: an index only, written by `Store::bulk_index`, the index writes a
  C-STORE makes, in large batches and without blobs (a million C-STOREs with fsync would
  take an hour). `pacs-node serve --data-dir DIR` then answers C-FIND on it; retrieves and
  `check` fail for lack of blobs, which is fine for a query benchmark.
- `--files DIR`: the same instances as small DICOM files (8×8 pixels) in `DIR/dicom/`, to
  send to any PACS with `renkei store`, for comparisons at a size a peer can take.

At the end it writes `keys.json` (in the output directory): sample values for the
benchmark queries.
*/

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use indicatif::{ProgressBar, ProgressStyle};
use renkei_model::IndexRecord;
use renkei_store::Store;

/// Generate a synthetic archive (an index, or DICOM files) for the query benchmarks.
#[derive(Debug, Parser)]
#[command(name = "renkei-gen-index", version)]
struct Args {
    /// Write an index (no blobs) into this node data directory.
    #[arg(long, value_name = "DIR", required_unless_present = "files")]
    data_dir: Option<PathBuf>,

    /// Write DICOM files into this directory instead.
    #[arg(long, value_name = "DIR", conflicts_with = "data_dir")]
    files: Option<PathBuf>,

    /// Number of patients.
    #[arg(long, default_value_t = 10_000)]
    patients: u32,

    /// Studies per patient.
    #[arg(long, default_value_t = 4)]
    studies_per_patient: u32,

    /// Series per study.
    #[arg(long, default_value_t = 2)]
    series_per_study: u32,

    /// Instances per study (spread over its series).
    #[arg(long, default_value_t = 25)]
    instances_per_study: u32,

    /// Seed of the UIDs and attribute choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const JAPANESE_FAMILY: &[(&str, &str, &str)] = &[
    ("Yamada", "山田", "やまだ"),
    ("Sato", "佐藤", "さとう"),
    ("Suzuki", "鈴木", "すずき"),
    ("Takahashi", "高橋", "たかはし"),
    ("Tanaka", "田中", "たなか"),
    ("Watanabe", "渡辺", "わたなべ"),
    ("Ito", "伊藤", "いとう"),
    ("Nakamura", "中村", "なかむら"),
    ("Kobayashi", "小林", "こばやし"),
    ("Kato", "加藤", "かとう"),
    ("Yoshida", "吉田", "よしだ"),
    ("Yamaguchi", "山口", "やまぐち"),
    ("Matsumoto", "松本", "まつもと"),
    ("Inoue", "井上", "いのうえ"),
    ("Kimura", "木村", "きむら"),
    ("Hayashi", "林", "はやし"),
    ("Shimizu", "清水", "しみず"),
    ("Yamazaki", "山崎", "やまざき"),
    ("Mori", "森", "もり"),
    ("Ikeda", "池田", "いけだ"),
];
const JAPANESE_GIVEN: &[(&str, &str, &str)] = &[
    ("Tarou", "太郎", "たろう"),
    ("Hanako", "花子", "はなこ"),
    ("Hiroshi", "博", "ひろし"),
    ("Yuki", "由紀", "ゆき"),
    ("Kenji", "健二", "けんじ"),
    ("Akiko", "明子", "あきこ"),
    ("Takeshi", "武", "たけし"),
    ("Keiko", "恵子", "けいこ"),
    ("Makoto", "誠", "まこと"),
    ("Yumi", "由美", "ゆみ"),
    ("Shota", "翔太", "しょうた"),
    ("Sakura", "さくら", "さくら"),
    ("Daiki", "大輝", "だいき"),
    ("Naomi", "直美", "なおみ"),
    ("Ryo", "涼", "りょう"),
    ("Emi", "恵美", "えみ"),
];
const LATIN_FAMILY: &[&str] = &[
    "SMITH", "JONES", "TAYLOR", "BROWN", "WILSON", "EVANS", "THOMAS", "JOHNSON", "ROBERTS",
    "WALKER", "WRIGHT", "ROBINSON", "THOMPSON", "WHITE", "HUGHES", "EDWARDS", "GREEN", "HALL",
    "WOOD", "HARRIS", "MARTIN", "LEWIS", "CLARKE", "JACKSON", "TURNER", "HILL", "SCOTT", "MOORE",
    "COOPER", "WARD",
];
const LATIN_GIVEN: &[&str] = &[
    "JOHN", "MARY", "DAVID", "SARAH", "JAMES", "EMMA", "PETER", "ANNA", "PAUL", "LUCY", "MARK",
    "JANE", "TOM", "KATE", "SAM", "RUTH", "ALEX", "CLARA", "HENRY", "ALICE",
];
const MODALITIES: &[&str] = &["CT", "MR", "CR", "DX", "US", "MG", "NM", "PT", "XA", "OT"];
const SOP_CLASSES: &[(&str, &str)] = &[
    ("CT", uids::CT_IMAGE_STORAGE),
    ("MR", uids::MR_IMAGE_STORAGE),
    ("CR", uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE),
    ("DX", uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION),
    ("US", uids::ULTRASOUND_IMAGE_STORAGE),
    (
        "MG",
        uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    ),
    ("NM", uids::NUCLEAR_MEDICINE_IMAGE_STORAGE),
    ("PT", uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE),
    ("XA", uids::X_RAY_ANGIOGRAPHIC_IMAGE_STORAGE),
    ("OT", uids::SECONDARY_CAPTURE_IMAGE_STORAGE),
];
/// Days from 1970-01-01 to 2015-01-01: study dates spread over the ten years after it.
const FIRST_DAY: i64 = 16_436;
const DAYS: u64 = 3_650;

/// SplitMix64: a fixed, seedable mix so that every attribute is a function of the
/// entity's numbers (the archive is reproducible and can be generated in any order).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A UID under `2.25.` (an integer of 128 bits): seed in the high half, the entity kind
/// and numbers in the low half, so they are unique and reproducible.
fn uid(seed: u64, kind: u64, numbers: [u64; 3]) -> String {
    let low = (kind << 60) | (numbers[0] << 36) | (numbers[1] << 18) | numbers[2];
    format!("2.25.{}", (u128::from(mix(seed)) << 64) | u128::from(low))
}

/// YYYYMMDD of a day count since 1970-01-01 (proleptic Gregorian, H. Hinnant's
/// civil-from-days).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

fn patient_name(seed: u64, p: u64) -> String {
    let h = mix(seed ^ (p << 8));
    let (f, g) = ((h >> 8) as usize, (h >> 24) as usize);
    if h % 3 == 0 {
        let (fa, fi, fp) = JAPANESE_FAMILY[f % JAPANESE_FAMILY.len()];
        let (ga, gi, gp) = JAPANESE_GIVEN[g % JAPANESE_GIVEN.len()];
        format!("{fa}^{ga}={fi}^{gi}={fp}^{gp}")
    } else {
        let family = LATIN_FAMILY[f % LATIN_FAMILY.len()];
        let given = LATIN_GIVEN[g % LATIN_GIVEN.len()];
        format!("{family}^{given}")
    }
}

fn element(tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, value.into())
}

/// One instance of the archive: patient `p`, its study `s`, series `se`, instance `i`.
fn instance(args: &Args, p: u64, s: u64, se: u64, i: u64) -> InMemDicomObject {
    let seed = args.seed;
    let study_no = p * u64::from(args.studies_per_patient) + s;
    let hs = mix(seed ^ (study_no << 20) ^ 0x5717);
    let day = FIRST_DAY + (hs % DAYS) as i64;
    let modality = MODALITIES[(mix(hs ^ se) % MODALITIES.len() as u64) as usize];
    let sop_class = SOP_CLASSES
        .iter()
        .find(|(m, _)| *m == modality)
        .map_or(uids::SECONDARY_CAPTURE_IMAGE_STORAGE, |(_, c)| c);
    let birth = FIRST_DAY - 3_650 - (mix(seed ^ p) % 30_000) as i64;
    InMemDicomObject::from_element_iter([
        element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        element(tags::SOP_CLASS_UID, VR::UI, sop_class),
        element(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            uid(seed, 3, [p, s * 64 + se, i]),
        ),
        element(tags::STUDY_DATE, VR::DA, date(day)),
        element(
            tags::STUDY_TIME,
            VR::TM,
            format!("{:06}", (hs >> 32) % 240_000),
        ),
        element(tags::ACCESSION_NUMBER, VR::SH, format!("A{study_no:09}")),
        element(tags::MODALITY, VR::CS, modality),
        element(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "REFERRER^A"),
        element(
            tags::STUDY_DESCRIPTION,
            VR::LO,
            format!("SYNTHETIC {modality}"),
        ),
        element(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            format!("SERIES {}", se + 1),
        ),
        element(tags::PATIENT_NAME, VR::PN, patient_name(seed, p)),
        element(tags::PATIENT_ID, VR::LO, format!("P{p:07}")),
        element(tags::PATIENT_BIRTH_DATE, VR::DA, date(birth)),
        element(
            tags::PATIENT_SEX,
            VR::CS,
            if p % 2 == 0 { "F" } else { "M" },
        ),
        element(tags::STUDY_INSTANCE_UID, VR::UI, uid(seed, 1, [p, s, 0])),
        element(tags::SERIES_INSTANCE_UID, VR::UI, uid(seed, 2, [p, s, se])),
        element(tags::STUDY_ID, VR::SH, format!("{}", s + 1)),
        element(tags::SERIES_NUMBER, VR::IS, (se + 1).to_string()),
        element(tags::INSTANCE_NUMBER, VR::IS, (i + 1).to_string()),
        element(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16)),
        element(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        element(tags::ROWS, VR::US, PrimitiveValue::from(8_u16)),
        element(tags::COLUMNS, VR::US, PrimitiveValue::from(8_u16)),
        element(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16)),
        element(tags::BITS_STORED, VR::US, PrimitiveValue::from(12_u16)),
        element(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11_u16)),
        element(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0_u16),
        ),
        element(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16((0..64u16).map(|v| v * 64).collect()),
        ),
    ])
}

fn progress(total: u64) -> anyhow::Result<ProgressBar> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {pos}/{len} instances, {per_sec}, ETA {eta}",
    )?);
    bar.enable_steady_tick(Duration::from_millis(200));
    Ok(bar)
}

/// Sample keys for the benchmark script: a patient, its first study, a date range and a
/// name prefix that exist in the archive.
fn write_keys(dir: &Path, args: &Args) -> anyhow::Result<()> {
    let p = u64::from(args.patients / 2);
    let study = instance(args, p, 0, 0, 0);
    let text = |t| {
        study
            .element(t)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    let name = text(tags::PATIENT_NAME);
    let family_given = name.split('=').next().unwrap_or_default().to_string();
    let json = format!(
        "{{\n  \"patient_id\": \"{}\",\n  \"study_uid\": \"{}\",\n  \"accession\": \"{}\",\n  \
\"study_date\": \"{}\",\n  \"name\": \"{}\",\n  \"name_prefix\": \"{}*\"\n}}\n",
        text(tags::PATIENT_ID),
        text(tags::STUDY_INSTANCE_UID),
        text(tags::ACCESSION_NUMBER),
        text(tags::STUDY_DATE),
        name,
        family_given,
    );
    let path = dir.join("keys.json");
    std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))
}

fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.patients < (1 << 24) && args.studies_per_patient < 64 && args.series_per_study < 64,
        "too many patients, studies or series for the UID layout"
    );
    let per_study = u64::from(args.instances_per_study);
    let total = u64::from(args.patients) * u64::from(args.studies_per_patient) * per_study;
    let bar = progress(total)?;
    let started = Instant::now();
    let store = match &args.data_dir {
        Some(dir) => Some(
            Store::open(dir).with_context(|| format!("cannot open the store {}", dir.display()))?,
        ),
        None => None,
    };
    let dicom_dir = args.files.as_ref().map(|d| d.join("dicom"));
    if let Some(dir) = &dicom_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut batch: Vec<IndexRecord> = Vec::with_capacity(10_000);
    let mut encoded = Vec::new();
    let mut n = 0u64;
    for p in 0..u64::from(args.patients) {
        for s in 0..u64::from(args.studies_per_patient) {
            for i in 0..per_study {
                let se = i % u64::from(args.series_per_study.max(1));
                let obj = instance(args, p, s, se, i);
                n += 1;
                if let Some(dir) = &dicom_dir {
                    let file = obj
                        .with_meta(
                            FileMetaTableBuilder::new()
                                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN),
                        )
                        .context("cannot build the file meta group")?;
                    encoded.clear();
                    file.write_all(&mut encoded)
                        .context("cannot encode an instance")?;
                    let path = dir.join(format!("{n:08}.dcm"));
                    std::fs::write(&path, &encoded)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                } else {
                    let mut rec =
                        renkei_model::extract_record(&obj, uids::EXPLICIT_VR_LITTLE_ENDIAN)
                            .context("cannot index a generated instance")?;
                    rec.instance.size = 1_024;
                    batch.push(rec);
                }
                if batch.len() == batch.capacity() {
                    if let Some(store) = &store {
                        store.bulk_index(&batch)?;
                    }
                    batch.clear();
                }
                bar.inc(1);
            }
        }
    }
    if let Some(store) = &store {
        store.bulk_index(&batch)?;
        store.flush_index()?;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let out = args
        .data_dir
        .as_ref()
        .or(args.files.as_ref())
        .context("no output")?;
    write_keys(out, args)?;
    println!(
        "{n} instances ({} patients, {} studies) in {secs:.1} s ({:.0}/s) into {}",
        args.patients,
        u64::from(args.patients) * u64::from(args.studies_per_patient),
        n as f64 / secs.max(1e-6),
        out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("renkei-gen-index: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(date(0), "19700101");
        assert_eq!(date(FIRST_DAY), "20150101");
        assert_eq!(date(FIRST_DAY + 59), "20150301");
        assert_eq!(date(19_723), "20240101");
    }

    #[test]
    fn uids_are_unique_and_valid() {
        let a = uid(1, 3, [1, 2, 3]);
        assert_ne!(a, uid(1, 3, [1, 2, 4]));
        assert_ne!(a, uid(1, 2, [1, 2, 3]));
        assert!(renkei_model::uid::is_valid_uid(&a), "{a}");
        assert!(a.len() <= 64);
    }
}
