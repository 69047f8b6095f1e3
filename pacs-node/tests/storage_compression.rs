//! Storage compression (issue 4): with `storage_compression = "jpeg-ls"`, images received
//! uncompressed are re-encoded to JPEG-LS Lossless in the background; retrieved by getscu
//! (uncompressed only, so the node decodes them again) they have the original's pixels,
//! per pydicom; space is saved and reported; no original file stays behind; and a SIGKILL
//! in the middle of compressing loses nothing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use dicom_dictionary_std::tags;

const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";

/// A node with storage compression to JPEG-LS.
fn start(tmp: &Path) -> Node {
    let config = tmp.join("node.toml");
    std::fs::write(
        &config,
        "min_free_mb = 16\nstorage_compression = \"jpeg-ls\"\n",
    )
    .unwrap();
    Node::start_with(
        &tmp.join("data"),
        &["--config", config.to_str().expect("UTF-8 path")],
    )
}

fn compressed(node: &Node) -> u64 {
    node.statistics()["compressed_instances"]
        .as_u64()
        .expect("compressed_instances in /api/statistics")
}

/// Wait until the compressed count has not grown for `quiet` (bounded); the last count.
fn wait_compression_settles(node: &Node, quiet: Duration) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut last, mut since) = (compressed(node), Instant::now());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = compressed(node);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if last > 0 && since.elapsed() >= quiet {
            return last;
        }
    }
    panic!(
        "compression did not settle (at {last}): {}",
        node.log_text()
    );
}

/// The index after the node stopped: SOP Instance UID → (transfer syntax, blob path).
fn stored(node: &Node) -> BTreeMap<String, (String, PathBuf)> {
    let store = renkei_store::Store::open_read_only(&node.data_dir).unwrap();
    let mut out = BTreeMap::new();
    let mut after = String::new();
    loop {
        let uids = store.instance_uids_after(&after, 1000).unwrap();
        let Some(last) = uids.last().cloned() else {
            return out;
        };
        for uid in uids {
            let rec = store.instance(&uid).unwrap().unwrap();
            out.insert(uid, (rec.transfer_syntax, store.blob_path(&rec.blob_hash)));
        }
        after = last;
    }
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The blob files are exactly those the index references: no original left beside a
/// compressed copy, no copy left unreferenced.
fn assert_blobs_are_referenced(node: &Node, index: &BTreeMap<String, (String, PathBuf)>) {
    let mut blobs = walk(&node.data_dir.join("blobs"));
    blobs.sort();
    let mut referenced: Vec<PathBuf> = index.values().map(|(_, p)| p.clone()).collect();
    referenced.sort();
    assert_eq!(blobs, referenced);
    assert!(walk(&node.data_dir.join("tmp")).is_empty());
}

/// getscu of one instance into `out`; the file received.
fn get_instance(node: &Node, original: &Path, out: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out).unwrap();
    let keys = [
        "QueryRetrieveLevel=IMAGE".to_string(),
        format!(
            "StudyInstanceUID={}",
            file_attr(original, tags::STUDY_INSTANCE_UID)
        ),
        format!(
            "SeriesInstanceUID={}",
            file_attr(original, tags::SERIES_INSTANCE_UID)
        ),
        format!(
            "SOPInstanceUID={}",
            file_attr(original, tags::SOP_INSTANCE_UID)
        ),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let od = out.to_str().expect("UTF-8 path");
    let log = dcmtk_qr(node, "getscu", &["-S", "-od", od], &keys);
    match files_in(out).as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("{} files received\n{log}", other.len())),
    }
}

/// pydicom's decoded pixels of each (original, received) pair are equal (shape, dtype,
/// values); a message per pair that differs.
fn pydicom_differences(pairs: &[(PathBuf, PathBuf)]) -> Vec<String> {
    let script = r#"
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, pydicom
args = sys.argv[1:]
for a_path, b_path in zip(args[::2], args[1::2]):
    try:
        a = pydicom.dcmread(a_path).pixel_array
        b = pydicom.dcmread(b_path).pixel_array
    except Exception as e:
        print(f"{a_path}: {e}"); continue
    if a.shape != b.shape or a.dtype != b.dtype:
        print(f"{a_path}: shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"); continue
    d = np.count_nonzero(a != b)
    if d:
        print(f"{a_path}: {d} samples differ")
"#;
    let mut cmd = Command::new(peer_python());
    cmd.args(["-c", script]);
    for (a, b) in pairs {
        cmd.arg(a).arg(b);
    }
    let out = cmd.output().expect("run pydicom");
    assert!(
        out.status.success(),
        "pydicom: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn uncompressed_images_are_stored_as_verified_jpeg_ls() {
    let tmp = tempfile::tempdir().unwrap();
    let files = uncompressed_corpus();
    assert!(files.len() >= 20, "corpus too small: {files:?}");
    let mut node = start(tmp.path());
    // -R: propose the files' own SOP classes (storescu's default list lacks some)
    let sent = dcmtk("storescu")
        .args(["-R", "-aec", &node.ae_title, "127.0.0.1"])
        .arg(node.dicom_port.to_string())
        .args(&files)
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    // compression may have begun already: what was received is stored + saved
    let received = |s: &serde_json::Value| {
        s["bytes"].as_u64().unwrap() + s["compressed_saved_bytes"].as_u64().unwrap()
    };
    let bytes_before = received(&node.statistics());
    let n = wait_compression_settles(&node, Duration::from_secs(3));

    let stats = node.statistics();
    let saved = stats["compressed_saved_bytes"].as_u64().unwrap();
    assert!(saved > 0, "{stats}");
    assert_eq!(stats["instances"].as_u64(), Some(files.len() as u64));
    assert_eq!(
        stats["bytes"].as_u64(),
        Some(bytes_before - saved),
        "{stats}"
    );
    assert_eq!(
        node.metric("renkei_storage_compression_saved_bytes"),
        saved as f64
    );
    assert_eq!(
        node.metric("renkei_storage_compressed_instances_total"),
        n as f64
    );
    eprintln!(
        "compressed {n} of {} instances: {bytes_before} -> {} bytes, {saved} saved",
        files.len(),
        bytes_before - saved
    );

    // every instance comes back to getscu, which accepts uncompressed syntaxes only
    let mut pairs = Vec::new();
    let mut failures = Vec::new();
    for (i, f) in files.iter().enumerate() {
        match get_instance(&node, f, &tmp.path().join(format!("get-{i}"))) {
            Ok(got) => {
                let ts = file_transfer_syntax(&got);
                assert!(UNCOMPRESSED_SYNTAXES.contains(&ts.as_str()), "{ts}");
                if file_attr_opt(f, tags::ROWS).is_some() {
                    pairs.push((f.clone(), got));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let differ = pydicom_differences(&pairs);
    assert!(differ.is_empty(), "{}", differ.join("\n"));

    node.stop();
    node.assert_check_clean();
    let index = stored(&node);
    let jls: Vec<&String> = index
        .iter()
        .filter(|(_, (ts, _))| ts == JPEG_LS)
        .map(|(uid, _)| uid)
        .collect();
    assert_eq!(jls.len() as u64, n);
    // the plain 16-bit greyscale images of the corpus are among them
    for name in ["CT_small.dcm", "MR_small.dcm"] {
        let sop = file_attr(&corpus("valid").join(name), tags::SOP_INSTANCE_UID);
        assert_eq!(index[&sop].0, JPEG_LS, "{name}");
    }
    assert_blobs_are_referenced(&node, &index);
    let text = node.admin(&["stats"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("compression saved bytes {saved}")),
        "{text}"
    );

    // every image was either compressed or kept (logged once, marked in the index), and a
    // restart neither compresses again nor retries what was kept
    let kept = node.log_text().matches("kept uncompressed").count() as u64;
    assert_eq!(kept + n, pairs.len() as u64, "{}", node.log_text());
    node.start_again();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(compressed(&node), n);
    let log = node.log_text();
    assert_eq!(
        log.matches("kept uncompressed").count() as u64,
        kept,
        "{log}"
    );
    assert!(!log.contains("compression failed"), "{log}");
}

#[test]
fn sigkill_while_compressing_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let files = synth(&tmp.path().join("synth"), 300, 100, 256);
    let mut node = start(tmp.path());
    let sent = storescu(&node, &files);
    assert!(sent.status.success(), "{sent:?}");
    // kill as soon as compression is under way
    let deadline = Instant::now() + Duration::from_secs(60);
    while compressed(&node) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_kill = compressed(&node);
    node.kill9();
    assert!(at_kill > 0, "{}", node.log_text());
    eprintln!("killed with {at_kill} of {} compressed", files.len());

    node.start_again();
    let n = wait_compression_settles(&node, Duration::from_secs(3));
    assert_eq!(n, files.len() as u64, "{}", node.log_text());
    let stats = node.statistics();
    eprintln!(
        "{n} compressed, {} bytes stored, {} saved",
        stats["bytes"], stats["compressed_saved_bytes"]
    );
    assert_eq!(
        node.statistics()["instances"].as_u64(),
        Some(files.len() as u64)
    );
    // every instance, pixel for pixel (getscu gets them decompressed)
    let out = tmp.path().join("get");
    let study_uids: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| file_attr(f, tags::STUDY_INSTANCE_UID))
        .collect();
    for study in &study_uids {
        std::fs::create_dir_all(&out).unwrap();
        let od = out.to_str().unwrap();
        let log = dcmtk_qr(
            &node,
            "getscu",
            &["-S", "-od", od],
            &[
                "QueryRetrieveLevel=STUDY",
                &format!("StudyInstanceUID={study}"),
            ],
        );
        assert!(log.contains("Received C-GET Response (Success)"), "{log}");
    }
    let got = files_in(&out);
    assert_eq!(got.len(), files.len());
    for f in &files {
        let back = counterpart(&got, f);
        assert_eq!(pixel_data(back), pixel_data(f), "{}", f.display());
    }
    node.stop();
    node.assert_check_clean();
    let index = stored(&node);
    assert!(index.values().all(|(ts, _)| ts == JPEG_LS));
    assert_blobs_are_referenced(&node, &index);
}
