//! End-to-end tests of the `renkei` binary against a real peer: DCMTK's
//! `storescp`, started on a free loopback port for each test. Skipped (with
//! a message) when `storescp` is not installed.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, renkei};

// cargo runs tests in the package directory; a path baked in at build time would point
// into whichever checkout last built the shared target dir
const CORPUS: &str = "../testdata/corpus/valid";

/// A running `storescp`, killed on drop.
struct StoreScp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for StoreScp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_storescp() -> bool {
    match Command::new("storescp")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(_) => {
            common::missing("storescp (DCMTK) is not on PATH: sh scripts/setup.sh installs it");
            false
        }
    }
}

/// Start `storescp -aet STORESCP -od TMPDIR [extra] PORT` and wait until it
/// listens. None if storescp is not installed.
fn storescp(extra: &[&str]) -> Option<StoreScp> {
    if !have_storescp() {
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new("storescp")
        .env("TCP_NODELAY", "1")
        .args(["-aet", "STORESCP", "-od"])
        .arg(dir.path())
        .args(extra)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start storescp");
    let scp = StoreScp { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "storescp did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(scp)
}

fn corpus(name: &str) -> String {
    format!("{CORPUS}/{name}")
}

/// (SOP Instance UID, transfer syntax, data set bytes after the meta group)
fn split_file(path: &Path) -> (String, String, Vec<u8>) {
    let bytes = std::fs::read(path).expect("read DICOM file");
    assert_eq!(&bytes[128..132], b"DICM", "{}", path.display());
    let group_length = u32::from_le_bytes(bytes[140..144].try_into().expect("4 bytes"));
    let offset = 144 + group_length as usize;
    let object = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .open_file(path)
        .expect("parse DICOM file");
    let meta = object.meta();
    (
        meta.media_storage_sop_instance_uid().to_string(),
        meta.transfer_syntax().to_string(),
        bytes[offset..].to_vec(),
    )
}

fn received(scp: &StoreScp) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scp.dir.path())
        .expect("list storescp output")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn echo_succeeds_and_rejection_is_reported() {
    let Some(scp) = storescp(&[]) else { return };
    let port = scp.port.to_string();
    let run = renkei(&[
        "echo",
        "127.0.0.1",
        &port,
        "-aet",
        "TESTER",
        "-aec",
        "STORESCP",
    ]);
    assert!(run.status.success());
    assert!(
        run.stdout
            .starts_with(&format!("C-ECHO to STORESCP@127.0.0.1:{port}: success (")),
        "{}",
        run.stdout
    );

    let run = renkei(&["echo", "127.0.0.1", &port, "--repeat", "3"]);
    assert!(run.status.success());
    assert_eq!(run.stdout.matches(": success (").count(), 3);

    let Some(refusing) = storescp(&["--refuse"]) else {
        return;
    };
    let run = renkei(&["echo", "127.0.0.1", &refusing.port.to_string()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.contains("association rejected"),
        "{}",
        run.stderr
    );
}

#[test]
fn store_sends_data_sets_unchanged() {
    // +xa: accept compressed syntaxes too; +B: write exactly what arrived
    let Some(scp) = storescp(&["+xa", "+B"]) else {
        return;
    };
    let files = [
        corpus("CT_small.dcm"),          // Explicit VR Little Endian
        corpus("MR_small_implicit.dcm"), // Implicit VR Little Endian
        corpus("JPGExtended.dcm"),       // JPEG baseline/extended, sent compressed
        corpus("rtplan.dcm"),            // no pixel data
    ];
    let port = scp.port.to_string();
    let mut args = vec!["store", "127.0.0.1", &port, "-aec", "STORESCP"];
    args.extend(files.iter().map(String::as_str));
    let run = renkei(&args);
    assert!(run.status.success());
    assert!(
        run.stdout
            .contains("stored 4, warnings 0, failed 0 (of 4 files)"),
        "{}",
        run.stdout
    );

    let arrived: Vec<_> = received(&scp).iter().map(|p| split_file(p)).collect();
    assert_eq!(arrived.len(), files.len());
    for file in &files {
        let (uid, ts, data) = split_file(Path::new(file));
        let (_, got_ts, got_data) = arrived
            .iter()
            .find(|(u, _, _)| *u == uid)
            .unwrap_or_else(|| panic!("{file} did not arrive"));
        assert_eq!(&ts, got_ts, "{file}: transfer syntax changed");
        assert!(&data == got_data, "{file}: data set bytes differ");
    }
}

#[test]
fn synth_then_parallel_store() {
    let Some(scp) = storescp(&["--fork"]) else {
        return;
    };
    let out = tempfile::tempdir().expect("temp dir");
    let out_dir = out.path().to_str().expect("utf-8 path");
    let run = renkei(&[
        "synth",
        "--out",
        out_dir,
        "--count",
        "5",
        "--per-series",
        "2",
        "--rows",
        "128",
        "--cols",
        "96",
        "--seed",
        "11",
    ]);
    assert!(run.status.success());
    let written: Vec<_> = (1..=5)
        .map(|n| out.path().join(format!("{n:06}.dcm")))
        .collect();
    assert!(written.iter().all(|p| p.is_file()));

    let run = renkei(&[
        "store",
        "127.0.0.1",
        &scp.port.to_string(),
        "-j",
        "2",
        out_dir,
    ]);
    assert!(run.status.success());
    assert!(
        run.stdout
            .contains("stored 5, warnings 0, failed 0 (of 5 files)"),
        "{}",
        run.stdout
    );
    // the forked children may still be closing their files
    let deadline = Instant::now() + Duration::from_secs(10);
    while received(&scp).len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut sent: Vec<_> = written.iter().map(|p| split_file(p).0).collect();
    let mut got: Vec<_> = received(&scp).iter().map(|p| split_file(p).0).collect();
    sent.sort();
    got.sort();
    assert_eq!(sent, got);
}

#[test]
fn non_dicom_file_fails_with_its_path() {
    let Some(scp) = storescp(&[]) else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, b"this is not a DICOM file\n").expect("write junk");
    let junk = junk.to_str().expect("utf-8 path");
    let ct = corpus("CT_small.dcm");
    let run = renkei(&["store", "127.0.0.1", &scp.port.to_string(), junk, &ct]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr
            .contains(&format!("FAILED {junk}: not a DICOM file")),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("stored 1, warnings 0, failed 1 (of 2 files)"),
        "{}",
        run.stdout
    );
}

#[test]
fn rejected_context_and_peer_abort_are_failures() {
    // without +xa storescp accepts only uncompressed syntaxes
    let Some(scp) = storescp(&[]) else { return };
    let jpeg = corpus("JPGExtended.dcm");
    let ct = corpus("CT_small.dcm");
    let run = renkei(&["store", "127.0.0.1", &scp.port.to_string(), &jpeg, &ct]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.contains(&format!(
            "FAILED {jpeg}: presentation context rejected: Secondary Capture Image Storage in JPEG Extended"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("stored 1,"), "{}", run.stdout);

    let Some(aborting) = storescp(&["--abort-during"]) else {
        return;
    };
    let mr = corpus("MR_small.dcm");
    let run = renkei(&[
        "store",
        "127.0.0.1",
        &aborting.port.to_string(),
        "--timeout",
        "10",
        &ct,
        &mr,
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.contains(&format!("FAILED {ct}: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("FAILED {mr}: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("failed 2 (of 2 files)"),
        "{}",
        run.stdout
    );
}
