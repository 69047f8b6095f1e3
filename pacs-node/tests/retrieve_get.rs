//! C-GET against DCMTK getscu: instances come back over the requester's association,
//! byte-identical; what cannot be sent in an accepted syntax is reported as failed.

mod common;

use common::*;

fn getscu(node: &Node, out: &std::path::Path, keys: &[&str]) -> String {
    std::fs::create_dir_all(out).unwrap();
    let od = out.to_str().unwrap();
    dcmtk_qr(node, "getscu", &["-S", "-od", od], keys)
}

#[test]
fn c_get_returns_identical_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let files = synth(&tmp.path().join("synth"), 20, 10, 64);
    let node = Node::start(&tmp.path().join("data"));
    let out = {
        let mut all = files.clone();
        all.push(corpus("valid/JPEG-LL.dcm"));
        dcmtk("storescu")
            .args([
                "-xs",
                "-aec",
                &node.ae_title,
                "127.0.0.1",
                &node.dicom_port.to_string(),
            ])
            .args(&all)
            .output()
            .unwrap()
    };
    assert!(out.status.success(), "{out:?}");

    // the study of the first synthetic file: one series of ten
    let study = file_attr(&files[0], dicom_dictionary_std::tags::STUDY_INSTANCE_UID);
    let dir = tmp.path().join("get-study");
    let log = getscu(
        &node,
        &dir,
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={study}"),
        ],
    );
    assert!(log.contains("Received C-GET Response (Success)"), "{log}");
    assert!(
        log.contains("Number of Completed Suboperations : 10"),
        "{log}"
    );
    let got = files_in(&dir);
    assert_eq!(got.len(), 10);
    let in_study = files
        .iter()
        .filter(|f| file_attr(f, dicom_dictionary_std::tags::STUDY_INSTANCE_UID) == study);
    for f in in_study {
        let back = counterpart(&got, f);
        assert_eq!(dataset_bytes(back), dataset_bytes(f), "{}", f.display());
    }

    // a JPEG Lossless instance, while getscu accepts only uncompressed syntaxes: it is
    // decompressed for it (pixels checked in retrieve_transcode.rs)
    let jpeg_study = file_attr(
        &corpus("valid/JPEG-LL.dcm"),
        dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
    );
    let log = getscu(
        &node,
        &tmp.path().join("get-jpeg"),
        &[
            "QueryRetrieveLevel=STUDY",
            &format!("StudyInstanceUID={jpeg_study}"),
        ],
    );
    assert!(!log.contains("Failed Suboperations    : 1"), "{log}");
    let got = files_in(&tmp.path().join("get-jpeg"));
    assert!(!got.is_empty(), "{log}");
    for f in &got {
        let ts = file_transfer_syntax(f);
        assert!(
            ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"].contains(&ts.as_str()),
            "{}: {ts}",
            f.display()
        );
    }

    // a retrieve that does not name what it wants is refused
    let log = getscu(
        &node,
        &tmp.path().join("get-all"),
        &["QueryRetrieveLevel=STUDY"],
    );
    assert!(
        log.contains("0xa900")
            || log.contains("DataSetDoesNotMatchSOPClass")
            || log.contains("Identifier"),
        "{log}"
    );
    assert!(files_in(&tmp.path().join("get-all")).is_empty());
    assert!(node.echo());
}
