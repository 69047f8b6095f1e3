//! Issue 2, point 4: 8 concurrent storescu associations of 250 instances each all succeed.

mod common;

use common::*;

#[test]
fn eight_concurrent_storescu_associations() {
    let tmp = tempfile::tempdir().unwrap();
    let files = synth(&tmp.path().join("synth"), 2000, 250, 256);
    let node = Node::start(&tmp.path().join("data"));

    let handles: Vec<_> = files
        .chunks(250)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let port = node.dicom_port.to_string();
            let ae = node.ae_title.clone();
            std::thread::spawn(move || {
                dcmtk("storescu")
                    .args(["-aec", &ae, "127.0.0.1", &port])
                    .args(&chunk)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(
            out.status.success(),
            "storescu failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stats = node.statistics();
    assert_eq!(stats["instances"], 2000, "{stats}");
    assert_eq!(stats["series"], 8);
    assert_eq!(node.metric("renkei_cstore_failure_total"), 0.0);
}
