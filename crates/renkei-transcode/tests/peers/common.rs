//! Shared by tests/decode_corpus.rs and tests/render_corpus.rs: the corpus, opening files
//! the way pydicom does, and running the pydicom helpers of this folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};

pub(crate) fn corpus() -> PathBuf {
    std::env::current_dir()
        .unwrap()
        .join("../../testdata/corpus")
}

pub(crate) fn peers_dir() -> PathBuf {
    std::env::current_dir().unwrap().join("tests/peers")
}

/// The peers' Python (pydicom 3 + pylibjpeg codecs + numpy). Missing is a failure, not a
/// skip: a test that silently passes without its reference proves nothing.
pub(crate) fn python() -> PathBuf {
    let peers = std::env::var_os("RENKEI_PEERS").unwrap_or_else(|| "/tmp/renkei-peers".into());
    let py = PathBuf::from(peers).join("venv/bin/python");
    assert!(
        py.exists(),
        "{} not found: run scripts/setup.sh (it installs the pydicom venv these tests compare with)",
        py.display()
    );
    py
}

/// Runs `script` (in tests/peers) with `args`; panics with its stderr when it fails.
pub(crate) fn run_python(script: &str, args: &[&std::ffi::OsStr]) {
    let out = Command::new(python())
        .arg(peers_dir().join(script))
        .args(args)
        .output()
        .expect("run the peers' python");
    assert!(
        out.status.success(),
        "{script} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens a file as Renkei would; files without a file meta group (written by old tools)
/// are read as implicit VR little endian data sets, the default transfer syntax (PS3.5
/// 10.1), which is also what pydicom does with `force=True`.
pub(crate) fn open(path: &Path) -> Result<FileDicomObject<InMemDicomObject>, String> {
    match OpenFileOptions::new().open_file(path) {
        Ok(obj) => Ok(obj),
        Err(e) => {
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            if bytes.get(128..132) == Some(b"DICM") || bytes.starts_with(b"DICM") {
                return Err(e.to_string());
            }
            let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
            let obj = InMemDicomObject::read_dataset_with_ts(&bytes[..], &ts)
                .map_err(|e2| format!("{e}; as a bare data set: {e2}"))?;
            let sop_class = obj
                .get(dicom_dictionary_std::tags::SOP_CLASS_UID)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches('\0').to_owned())
                .unwrap_or_else(|| "1.2.840.10008.5.1.4.1.1.7".into());
            let sop_instance = obj
                .get(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches('\0').to_owned())
                .unwrap_or_else(|| "2.25.1".into());
            obj.with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2")
                    .media_storage_sop_class_uid(sop_class)
                    .media_storage_sop_instance_uid(sop_instance),
            )
            .map_err(|e| e.to_string())
        }
    }
}

/// Every file of corpus/{valid,edge,charset}, sorted, as paths relative to the corpus.
pub(crate) fn corpus_files() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["valid", "edge", "charset"] {
        for entry in std::fs::read_dir(corpus().join(dir)).expect("corpus folder") {
            let entry = entry.expect("corpus entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_file() && !name.ends_with(".txt") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    files.sort();
    files
}

/// Reads OUT/i.raw as little-endian samples of `dtype`, widened to i64.
pub(crate) fn read_raw(path: &Path, dtype: &str) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match dtype {
        "u1" => bytes.iter().map(|&b| b as i64).collect(),
        "i1" => bytes.iter().map(|&b| b as i8 as i64).collect(),
        "u2" => bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        "i2" => bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        "u4" => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        "i4" => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        other => panic!("dtype {other} from pydicom is not expected"),
    }
}

/// (mean, max) absolute difference; panics on length mismatch.
pub(crate) fn diff(a: &[i64], b: &[i64]) -> (f64, i64) {
    assert_eq!(a.len(), b.len(), "sample counts differ");
    let mut sum = 0f64;
    let mut max = 0i64;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        sum += d as f64;
        max = max.max(d);
    }
    (sum / a.len().max(1) as f64, max)
}
