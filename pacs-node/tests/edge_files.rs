//! Issue 2, point 2: every malformed or odd file of the edge corpus, sent by real peers,
//! gets success or a failure status with a message; the node stays up; what was stored
//! before is intact and `pacs-node check` is clean.

mod common;

use common::*;

/// storescu's verdict on one file, from its verbose output.
#[derive(Debug, PartialEq)]
enum Verdict {
    Success,
    /// The node answered with a failure status (and, we require, an error comment).
    Failure(String),
    /// storescu itself could not read or propose the file: nothing reached the node.
    LocalError(String),
}

/// storescu's option proposing a compressed file's own transfer syntax (it proposes only
/// uncompressed ones by default).
fn propose_flag(file: &std::path::Path) -> Option<&'static str> {
    let name = format!("edge/{}", file.file_name()?.to_str()?);
    let manifest = std::fs::read_to_string(corpus("MANIFEST.tsv")).ok()?;
    let ts = manifest
        .lines()
        .find(|l| l.starts_with(&format!("{name}\t")))?
        .split('\t')
        .nth(4)?
        .split(' ')
        .next()?
        .to_string();
    Some(match ts.as_str() {
        "1.2.840.10008.1.2.4.50" => "-xy",
        "1.2.840.10008.1.2.4.51" => "-xx",
        "1.2.840.10008.1.2.4.57" | "1.2.840.10008.1.2.4.70" => "-xs",
        "1.2.840.10008.1.2.4.80" => "-xt",
        "1.2.840.10008.1.2.4.81" => "-xu",
        "1.2.840.10008.1.2.4.90" => "-xv",
        "1.2.840.10008.1.2.4.91" => "-xw",
        "1.2.840.10008.1.2.5" => "-xr",
        "1.2.840.10008.1.2.1.99" => "-xd",
        _ => return None,
    })
}

fn storescu_one(node: &Node, file: &std::path::Path) -> Verdict {
    let mut cmd = dcmtk("storescu");
    cmd.args(["-v", "-d"]);
    if let Some(flag) = propose_flag(file) {
        cmd.args(["-R", flag]);
    }
    let out = cmd
        .args([
            "-aec",
            &node.ae_title,
            "127.0.0.1",
            &node.dicom_port.to_string(),
        ])
        .arg(file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // in debug mode storescu dumps the response ("DIMSE Status : 0x0000: Success") and,
    // on failure, its status detail with the Error Comment (0000,0902) the node sent
    if let Some(status) = text.lines().find(|l| l.contains("DIMSE Status")) {
        if status.contains("0x0000") {
            return Verdict::Success;
        }
        let comment = text
            .lines()
            .find(|l| l.contains("(0000,0902)"))
            .unwrap_or("")
            .to_string();
        return Verdict::Failure(format!("{} {comment}", status.trim()));
    }
    Verdict::LocalError(
        text.lines()
            .filter(|l| l.starts_with("E:"))
            .collect::<Vec<_>>()
            .join(" | "),
    )
}

#[test]
fn edge_files_get_an_answer_and_hurt_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(&tmp.path().join("data"));

    // something valid stored first, to prove it stays intact
    let keep = [corpus("valid/CT_small.dcm"), corpus("valid/MR_small.dcm")];
    let first = pynetdicom_store(&node, &keep);
    assert!(first.iter().all(|r| r.status == Some(0)), "{first:#?}");

    let mut report = Vec::new();
    for file in corpus_files("edge") {
        let v = storescu_one(&node, &file);
        if let Verdict::Failure(msg) = &v {
            assert!(
                msg.contains("(0000,0902) LO ["),
                "{}: failure without an error comment: {msg}",
                file.display()
            );
        }
        assert!(
            node.is_running(),
            "node died on {}:\n{}",
            file.display(),
            node.log_text()
        );
        assert!(
            node.echo(),
            "node stopped answering after {}",
            file.display()
        );
        report.push((file, v));
    }
    // pynetdicom reads files DCMTK refuses (no meta, odd preamble) and sends them anyway
    let edge = corpus_files("edge");
    let py = pynetdicom_store(&node, &edge);
    for r in &py {
        if r.error.is_none() {
            let st = r.status.unwrap();
            assert!(
                st == 0 || r.comment.as_deref().is_some_and(|c| !c.is_empty()),
                "{}: status {st:#06x} without comment",
                r.file
            );
        }
    }
    assert!(node.is_running());
    eprintln!("edge corpus verdicts (storescu):");
    for (f, v) in &report {
        eprintln!("  {}: {v:?}", f.file_name().unwrap().to_string_lossy());
    }
    eprintln!("edge corpus verdicts (pynetdicom):");
    for r in &py {
        eprintln!(
            "  {}: status {:?} {:?} {:?}",
            r.file, r.status, r.comment, r.error
        );
    }
    // the node must have refused at least the files without the UIDs it needs
    assert!(
        py.iter().any(|r| r.status.is_some_and(|s| s != 0)),
        "no edge file was refused: the checks are not running"
    );

    node.stop();
    node.assert_check_clean();
    // the valid files sent first are still there with their bytes (the SOP UID of
    // CT_small is shared with an edge file with other bytes, so only MR_small is checked
    // byte for byte if no edge file replaced it)
    let stats = node.admin(&["stats", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(s["instances"].as_u64().unwrap() >= 2);
}
