//! Transcoding on retrieve: compressed instances (JPEG-LS, JPEG 2000, RLE, JPEG Lossless)
//! retrieved by DCMTK movescu (to a storescp) and getscu, both of which accept only
//! uncompressed syntaxes, arrive decompressed with pixels equal to pydicom's decoding of
//! the original (pylibjpeg plugins: an implementation independent of ours).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use dicom_dictionary_std::tags;

struct Storescp(Child);

impl Drop for Storescp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lossless compressed files of the valid corpus, one per SOP Instance UID (several
/// corpus files are one image in several syntaxes: each is stored and retrieved in turn).
fn lossless_compressed() -> Vec<PathBuf> {
    const SYNTAXES: &[&str] = &[
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.5",
    ];
    let files: Vec<PathBuf> = corpus_files("valid")
        .into_iter()
        .filter(|f| SYNTAXES.contains(&file_transfer_syntax(f).as_str()))
        .collect();
    // every codec family is there
    for ts in ["4.70", "4.80", "4.90", "1.2.5"] {
        assert!(
            files.iter().any(|f| file_transfer_syntax(f).ends_with(ts)),
            "no {ts} file in the corpus"
        );
    }
    files
}

/// pydicom's decoded pixels of `original` and of `received` are equal (shape, dtype,
/// values); the message says what differs.
fn same_pixels_in_pydicom(original: &Path, received: &Path) -> Result<(), String> {
    let script = r#"
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, pydicom
a = pydicom.dcmread(sys.argv[1]).pixel_array
b = pydicom.dcmread(sys.argv[2]).pixel_array
if a.shape != b.shape or a.dtype != b.dtype:
    print(f"shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"); sys.exit(1)
d = np.count_nonzero(a != b)
if d:
    print(f"{d} samples differ"); sys.exit(1)
"#;
    let out = Command::new(peer_python())
        .args(["-c", script])
        .arg(original)
        .arg(received)
        .output()
        .expect("run pydicom");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn compressed_instances_arrive_decompressed_and_pixel_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let scp_port = free_port();
    let received = tmp.path().join("storescp");
    std::fs::create_dir_all(&received).unwrap();
    // storescp's default: uncompressed syntaxes only
    let _scp = Storescp(
        dcmtk("storescp")
            .args(["-aet", "STORESCP", "-od"])
            .arg(&received)
            .arg(scp_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start storescp"),
    );
    let remote = format!("STORESCP@127.0.0.1:{scp_port}");
    let node = Node::start_with(&tmp.path().join("data"), &["--remote", &remote]);
    let mut failures = Vec::new();
    for (n, file) in lossless_compressed().iter().enumerate() {
        let stored = pynetdicom_store(&node, std::slice::from_ref(file));
        assert_eq!(
            stored[0].status,
            Some(0),
            "{}: {:?}",
            file.display(),
            stored[0]
        );
        let keys = [
            "QueryRetrieveLevel=IMAGE".to_string(),
            format!(
                "StudyInstanceUID={}",
                file_attr(file, tags::STUDY_INSTANCE_UID)
            ),
            format!(
                "SeriesInstanceUID={}",
                file_attr(file, tags::SERIES_INSTANCE_UID)
            ),
            format!("SOPInstanceUID={}", file_attr(file, tags::SOP_INSTANCE_UID)),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        for (tool, out) in [
            ("movescu", received.clone()),
            ("getscu", tmp.path().join(format!("get-{n}"))),
        ] {
            std::fs::create_dir_all(&out).unwrap();
            for old in files_in(&out) {
                std::fs::remove_file(old).unwrap();
            }
            let od = out.to_string_lossy().to_string();
            let options: Vec<&str> = if tool == "movescu" {
                vec!["-S", "-aem", "STORESCP"]
            } else {
                vec!["-S", "-od", &od]
            };
            let log = dcmtk_qr(&node, tool, &options, &keys);
            let got = files_in(&out);
            if got.len() != 1 || log.contains("Failed Suboperations    : 1") {
                failures.push(format!(
                    "{tool} {}: {} files\n{log}",
                    file.display(),
                    got.len()
                ));
                continue;
            }
            let ts = file_transfer_syntax(&got[0]);
            assert!(
                ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"].contains(&ts.as_str()),
                "{tool} {}: received in {ts}",
                file.display()
            );
            if let Err(e) = same_pixels_in_pydicom(file, &got[0]) {
                failures.push(format!("{tool} {}: {e}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(node.echo());
}
