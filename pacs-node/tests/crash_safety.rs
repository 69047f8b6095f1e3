//! Issue 2, point 3: SIGKILL in the middle of a storescu run. Every instance storescu saw
//! acknowledged must be present and byte-identical after a restart; check is clean.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn acknowledged_instances_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let files = synth(&tmp.path().join("synth"), 300, 50, 512);
    let mut node = Node::start(&tmp.path().join("data"));

    let out_path = tmp.path().join("storescu.out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut scu = dcmtk("storescu")
        .args([
            "-v",
            "-aec",
            &node.ae_title,
            "127.0.0.1",
            &node.dicom_port.to_string(),
        ])
        .args(&files)
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();

    // let a good part of the run be acknowledged, then pull the plug
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.matches("Received Store Response (Success)").count() >= 100 {
            break;
        }
        assert!(Instant::now() < deadline, "storescu too slow:\n{text}");
        assert!(
            scu.try_wait().unwrap().is_none(),
            "storescu ended early:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    node.kill9();
    let _ = scu.wait();

    // storescu sends one file at a time, in argument order, and prints each response:
    // the k-th success is the k-th file
    let mut text = String::new();
    std::fs::File::open(&out_path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let acked = text.matches("Received Store Response (Success)").count();
    assert!(
        acked >= 100 && acked < files.len(),
        "acked {acked} of {}",
        files.len()
    );
    let failures = text.matches("Received Store Response").count() - acked;
    assert_eq!(failures, 0, "{text}");

    node.start_again();
    let stats = node.statistics();
    let stored = stats["instances"].as_u64().unwrap() as usize;
    // at most the one in flight may have been committed without storescu seeing it
    assert!(
        stored == acked || stored == acked + 1,
        "stored {stored}, acked {acked}"
    );
    node.stop();

    let store = renkei_store::Store::open_read_only(&node.data_dir).unwrap();
    for f in &files[..acked] {
        let uid = file_attr(f, dicom_dictionary_std::tags::SOP_INSTANCE_UID);
        let rec = store
            .instance(&uid)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {} ({uid}) lost", f.display()));
        let blob = store.blob_path(&rec.blob_hash);
        assert_eq!(
            dataset_bytes(&blob),
            dataset_bytes(f),
            "{} differs from what was sent",
            f.display()
        );
    }
    drop(store);
    node.assert_check_clean();
}
