//! Issue 2, point 1: real peers (DCMTK echoscu/storescu/dcmsend, pynetdicom) store every
//! file of the valid corpus; a restart finds them all; a re-send is "already stored".

mod common;

use std::collections::{HashMap, HashSet};

use common::*;

#[test]
fn every_valid_file_is_stored_and_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(&tmp.path().join("data"));
    assert!(node.echo(), "echoscu failed: {}", node.log_text());

    let files = corpus_files("valid");
    assert!(files.len() >= 40, "corpus copy incomplete");

    // pynetdicom sends every file in its own transfer syntax: each must succeed
    let results = pynetdicom_store(&node, &files);
    assert_eq!(results.len(), files.len());
    let failed: Vec<_> = results.iter().filter(|r| r.status != Some(0)).collect();
    assert!(
        failed.is_empty(),
        "not stored: {failed:#?}\n{}",
        node.log_text()
    );

    // several corpus files share a SOP Instance UID on purpose (one image in several
    // transfer syntaxes): the last version sent replaces the others
    let by_sop: HashMap<&str, &str> = results
        .iter()
        .map(|r| (r.sop.as_deref().unwrap(), r.file.as_str()))
        .collect();
    let unique = by_sop.len() as u64;
    let stats = node.statistics();
    assert_eq!(stats["instances"], unique, "{stats}");

    // re-send (same peer, same bytes) the files whose SOP Instance UID is unique in the
    // corpus: each is reported as already stored and nothing new is written
    let counts = results.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.sop.clone().unwrap()).or_insert(0) += 1;
        m
    });
    let singles: Vec<_> = results
        .iter()
        .filter(|r| counts[r.sop.as_ref().unwrap()] == 1)
        .map(|r| std::path::PathBuf::from(&r.file))
        .collect();
    let dup_before = node.metric("renkei_cstore_duplicate_total");
    let again = pynetdicom_store(&node, &singles);
    assert!(again.iter().all(|r| r.status == Some(0)), "{again:#?}");
    let dup_after = node.metric("renkei_cstore_duplicate_total");
    assert_eq!(dup_after - dup_before, singles.len() as f64);
    assert_eq!(node.statistics(), stats);
    assert!(node.log_text().contains("already stored"));

    // DCMTK's dcmsend proposes each file's own syntax; storescu converts to uncompressed.
    // DCMTK re-encodes data sets (lengths, padding), so these may replace what pynetdicom
    // sent: the count of instances must not change.
    let dcmsend = dcmtk("dcmsend")
        .args([
            "-aec",
            &node.ae_title,
            "127.0.0.1",
            &node.dicom_port.to_string(),
        ])
        .args(["-v", "--scan-directories", "--no-halt"])
        .arg(corpus("valid"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dcmsend.stdout).to_string()
        + &String::from_utf8_lossy(&dcmsend.stderr);
    // dcmsend refuses a few odd files itself (e.g. an invalid SOP Instance UID); every
    // request it did send must have been answered with success
    let sent = text.matches("Sending C-STORE Request").count();
    let ok = text.matches("Received C-STORE Response (Success)").count();
    assert!(sent >= files.len() - 3, "dcmsend sent only {sent}:\n{text}");
    assert_eq!(ok, sent, "dcmsend saw failures:\n{text}");
    let uncompressed: Vec<_> = files
        .iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_str().unwrap();
            [
                "CT_small.dcm",
                "MR_small.dcm",
                "MR_small_implicit.dcm",
                "rtplan.dcm",
                "reportsi.dcm",
            ]
            .contains(&name)
        })
        .collect();
    let storescu = dcmtk("storescu")
        .args([
            "-aec",
            &node.ae_title,
            "127.0.0.1",
            &node.dicom_port.to_string(),
        ])
        .args(&uncompressed)
        .output()
        .unwrap();
    assert!(
        storescu.status.success(),
        "storescu failed: {}{}",
        String::from_utf8_lossy(&storescu.stdout),
        String::from_utf8_lossy(&storescu.stderr)
    );

    assert_eq!(node.statistics()["instances"], unique);

    // our own CLI sends the same corpus over two associations, each file in its syntax
    let cli = std::process::Command::new(renkei_cli())
        .args([
            "store",
            "127.0.0.1",
            &node.dicom_port.to_string(),
            "-j",
            "2",
            "--timeout",
            "20",
        ])
        .arg(corpus("valid"))
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "renkei store: {}{}",
        String::from_utf8_lossy(&cli.stdout),
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(node.statistics()["instances"], unique);

    // restart: everything is still there, as the node and `pacs-node stats` see it
    let before = node.statistics();
    node.restart();
    assert_eq!(node.statistics(), before);
    let out = node.admin(&["stats", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, before);
    assert_eq!(before["instances"], unique);

    // and the whole store is consistent
    node.stop();
    node.assert_check_clean();
    let distinct: HashSet<_> = by_sop.keys().collect();
    assert_eq!(distinct.len() as u64, unique);
}

#[test]
fn echo_and_unknown_ae_policy() {
    let tmp = tempfile::tempdir().unwrap();
    // bound to loopback: any calling AE is accepted
    let node = Node::start(&tmp.path().join("a"));
    let out = node.echo_as("ANYBODY");
    assert!(out.status.success());
    drop(node);

    // off loopback (0.0.0.0 is not loopback) only listed AEs: an unknown one is rejected
    // with "calling AE title not recognized"
    let node = Node::start_with(
        &tmp.path().join("b"),
        &["--bind", "0.0.0.0", "--remote", "CT01@127.0.0.1:104"],
    );
    let known = node.echo_as("CT01");
    assert!(
        known.status.success(),
        "{}",
        String::from_utf8_lossy(&known.stderr)
    );
    let unknown = node.echo_as("INTRUDER");
    assert!(!unknown.status.success());
    let text = String::from_utf8_lossy(&unknown.stderr).to_string()
        + &String::from_utf8_lossy(&unknown.stdout);
    assert!(
        text.contains("Calling AE Title Not Recognized")
            || text.contains("calling AE title not recognized"),
        "{text}"
    );
}

#[test]
fn association_limit_rejects_transient_then_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("node.toml");
    std::fs::write(&config, "max_associations = 1\nidle_timeout_secs = 30\n").unwrap();
    let node = Node::start_with(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    // pynetdicom holds the only slot for a few seconds
    let mut holder = std::process::Command::new(peer_python())
        .arg("-c")
        .arg(format!(
            "from pynetdicom import AE\nimport time\nae=AE()\nae.add_requested_context('1.2.840.10008.1.1')\n\
             a=ae.associate('127.0.0.1',{},ae_title='RENKEI')\nprint(a.is_established, flush=True)\n\
             time.sleep(4)\na.release()\n",
            node.dicom_port
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "True");
    let busy = node.echo_as("SECOND");
    assert!(!busy.status.success());
    let text =
        String::from_utf8_lossy(&busy.stderr).to_string() + &String::from_utf8_lossy(&busy.stdout);
    assert!(
        text.contains("Rejected Transient") && text.contains("Local Limit Exceeded"),
        "{text}"
    );
    // once the slot is free again, associations are accepted
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !node.echo() {
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(node.metric("renkei_associations_rejected_total") >= 1.0);
    assert!(holder.wait().unwrap().success());
}
