//! C-MOVE with DCMTK movescu to a DCMTK storescp destination: instances arrive over a new
//! association, byte-identical; an unknown destination is refused with 0xA801.

mod common;

use std::process::{Child, Stdio};

use common::*;

struct Storescp(Child);

impl Drop for Storescp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn movescu(node: &Node, dest: &str, keys: &[&str]) -> String {
    dcmtk_qr(node, "movescu", &["-S", "-aem", dest], keys)
}

fn start_storescp(out: &std::path::Path, port: u16, extra: &[&str]) -> Storescp {
    std::fs::create_dir_all(out).unwrap();
    Storescp(
        dcmtk("storescp")
            .args(["-aet", "STORESCP", "-od"])
            .arg(out)
            .args(extra)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn c_move_reencodes_for_an_implicit_only_receiver() {
    // the instances are stored in Explicit VR LE; this storescp accepts Implicit VR LE only
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("implicit");
    let port = free_port();
    let _scp = start_storescp(&out, port, &["+xi"]);
    let remote = format!("IMPLICIT@127.0.0.1:{port}");
    let node = Node::start_with(&tmp.path().join("data"), &["--remote", &remote]);
    let files = synth(&tmp.path().join("synth"), 4, 4, 32);
    assert!(storescu(&node, &files).status.success());
    let study = file_attr(&files[0], dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let log = movescu(
        &node,
        "IMPLICIT",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={study}"),
        ],
    );
    assert!(
        log.contains("Received Final Move Response (Success)"),
        "{log}"
    );
    let got = files_in(&out);
    assert_eq!(got.len(), 4);
    for f in &files {
        let back = counterpart(&got, f);
        let a = dicom_object::open_file(f).unwrap();
        let b = dicom_object::open_file(back).unwrap();
        assert_eq!(b.meta().transfer_syntax(), "1.2.840.10008.1.2");
        let pixels = |o: &dicom_object::DefaultDicomObject| {
            o.element(dicom_dictionary_std::tags::PIXEL_DATA)
                .unwrap()
                .to_bytes()
                .unwrap()
                .into_owned()
        };
        assert_eq!(
            pixels(&b),
            pixels(&a),
            "{}: pixel data differs",
            f.display()
        );
    }
}

#[test]
fn c_move_to_storescp() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("received");
    let scp_port = free_port();
    let _storescp = start_storescp(&out, scp_port, &[]);
    let remote = format!("STORESCP@127.0.0.1:{scp_port}");
    let node = Node::start_with(&tmp.path().join("data"), &["--remote", &remote]);
    let files = synth(&tmp.path().join("synth"), 12, 6, 64);
    let sent = storescu(&node, &files);
    assert!(sent.status.success(), "{sent:?}");

    // series level: the six instances of the first series
    let study = file_attr(&files[0], dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let series = file_attr(&files[0], dicom_dictionary_std::tags::SERIES_INSTANCE_UID);
    let log = movescu(
        &node,
        "STORESCP",
        &[
            "QueryRetrieveLevel=SERIES",
            &format!("StudyInstanceUID={study}"),
            &format!("SeriesInstanceUID={series}"),
        ],
    );
    assert!(
        log.contains("Received Final Move Response (Success)"),
        "{log}"
    );
    let got = files_in(&out);
    assert_eq!(got.len(), 6, "{got:?}");
    for f in &files[..6] {
        let back = counterpart(&got, f);
        assert_eq!(dataset_bytes(back), dataset_bytes(f));
    }

    // destinations can change while the node runs: remove STORESCP, then add it back
    let (st, _) = node.http("DELETE", "/api/remotes/STORESCP", None).unwrap();
    assert_eq!(st, 204);
    let log = movescu(
        &node,
        "STORESCP",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={study}"),
        ],
    );
    assert!(log.contains("MoveDestinationUnknown"), "{log}");
    let body = format!(r#"{{"host":"127.0.0.1","port":{scp_port}}}"#);
    let (st, text) = node
        .http("PUT", "/api/remotes/STORESCP", Some(&body))
        .unwrap();
    assert_eq!(st, 201, "{text}");
    let (st, text) = node
        .http(
            "PUT",
            "/api/remotes/BAD",
            Some("{\"host\":\"\",\"port\":0}"),
        )
        .unwrap();
    assert_eq!(st, 400, "{text}");
    let log = movescu(
        &node,
        "STORESCP",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={study}"),
        ],
    );
    assert!(
        log.contains("Received Final Move Response (Success)"),
        "{log}"
    );

    // an AE the node does not know
    let log = movescu(
        &node,
        "NOWHERE",
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={study}"),
        ],
    );
    assert!(log.contains("MoveDestinationUnknown"), "{log}");
    assert!(node.echo());
}
