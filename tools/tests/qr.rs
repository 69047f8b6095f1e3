//! End-to-end tests of `renkei find`, `renkei get` and `renkei move` against
//! DCMTK's `dcmqrscp` (Query/Retrieve SCP), with files from `renkei synth`
//! indexed by `dcmqridx`, and `storescp` as the C-MOVE destination. Skipped
//! (with a message) when DCMTK is not installed.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, renkei};

/// Child processes killed on drop.
struct Peers {
    children: Vec<Child>,
    qr_port: u16,
    work: tempfile::TempDir,
}

impl Drop for Peers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Peers {
    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }
}

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        common::missing(&format!(
            "{tool} (DCMTK) is not on PATH: sh scripts/setup.sh installs it"
        ));
    }
    ok
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start() -> Option<Peers> {
    if !(have("dcmqrscp") && have("dcmqridx") && have("storescp")) {
        return None;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let (input, db, moved) = (
        work.path().join("in"),
        work.path().join("db"),
        work.path().join("moved"),
    );
    for d in [&db, &moved] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let input_str = input.to_str().expect("utf-8 path");
    let run = renkei(&[
        "synth",
        "--out",
        input_str,
        "--count",
        "4",
        "--per-series",
        "2",
        "--rows",
        "16",
        "--cols",
        "16",
        "--seed",
        "7",
    ]);
    assert!(run.status.success());
    let mut files: Vec<PathBuf> = walk(&input);
    files.sort();
    assert_eq!(files.len(), 4);
    let status = Command::new("dcmqridx")
        .arg(&db)
        .args(&files)
        .status()
        .expect("run dcmqridx");
    assert!(status.success());

    let (qr_port, move_port) = (free_port(), free_port());
    let config = work.path().join("dcmqrscp.cfg");
    std::fs::write(
        &config,
        format!(
            "NetworkTCPPort = {qr_port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\
             HostTable BEGIN\nmovedest = (MOVEDEST, 127.0.0.1, {move_port})\nHostTable END\n\
             VendorTable BEGIN\nVendorTable END\n\
             AETable BEGIN\nQRSCP {} RW (200, 1024mb) ANY\nAETable END\n",
            db.display()
        ),
    )
    .expect("write config");
    let mut peers = Peers {
        children: Vec::new(),
        qr_port,
        work,
    };
    peers.children.push(
        Command::new("dcmqrscp")
            .env("TCP_NODELAY", "1")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dcmqrscp"),
    );
    peers.children.push(
        Command::new("storescp")
            .env("TCP_NODELAY", "1")
            .args(["-aet", "MOVEDEST", "-od"])
            .arg(&moved)
            .arg(move_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start storescp"),
    );
    wait_listening(qr_port, "dcmqrscp");
    wait_listening(move_port, "storescp");
    Some(peers)
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "dcm") {
            out.push(path);
        }
    }
    out
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split('\t')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn find_get_move_against_dcmqrscp() {
    let Some(peers) = start() else { return };
    let port = peers.qr_port.to_string();
    let conn = [
        "127.0.0.1",
        port.as_str(),
        "-aet",
        "RENKEI-TEST",
        "-aec",
        "QRSCP",
    ];
    let with = |cmd: &str, rest: &[&str]| {
        let mut args = vec![cmd];
        args.extend(conn);
        args.extend(rest);
        renkei(&args)
    };

    // C-FIND, study root, wildcard and return keys
    let run = with(
        "find",
        &[
            "-S",
            "-k",
            "PatientName=SYNTH*",
            "-k",
            "StudyInstanceUID",
            "-k",
            "0010,0020",
        ],
    );
    assert!(run.status.success());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert_eq!(lines[2], "2 matches, final status 0x0000 (success)");
    for line in &lines[..2] {
        assert_eq!(field(line, "QueryRetrieveLevel"), Some("STUDY"));
        assert!(field(line, "PatientName").unwrap().starts_with("SYNTH"));
        assert!(!field(line, "PatientID").unwrap().is_empty());
    }
    let study = field(lines[0], "StudyInstanceUID").unwrap().to_string();
    let patient_id = field(lines[0], "PatientID").unwrap().to_string();

    // JSON, series level, patient root
    let pid_key = format!("PatientID={patient_id}");
    let run = with(
        "find",
        &[
            "-P",
            "-L",
            "SERIES",
            "-k",
            &pid_key,
            "-k",
            &format!("StudyInstanceUID={study}"),
            "-k",
            "SeriesInstanceUID",
            "--json",
        ],
    );
    assert!(run.status.success());
    let first = run.stdout.lines().next().unwrap();
    assert!(first.starts_with('{') && first.ends_with('}'), "{first}");
    assert!(
        first.contains("\"QueryRetrieveLevel\":\"SERIES\""),
        "{first}"
    );
    assert!(run.stdout.contains("1 match, final status 0x0000"));

    // a failure status is exit code 1 (patient root needs a patient ID at study level)
    let run = with("find", &["-P", "-k", "StudyInstanceUID"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("final status 0x"), "{}", run.stderr);

    // unknown keyword
    let run = with("find", &["-k", "NoSuchKeyword=1"]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("unknown attribute \"NoSuchKeyword\""));

    // C-GET of one study: 2 instances, files readable, named by SOP Instance UID
    let out = peers.path("got");
    let study_key = format!("StudyInstanceUID={study}");
    let run = with("get", &["-k", &study_key, "--od", out.to_str().unwrap()]);
    assert!(run.status.success());
    assert!(run
        .stdout
        .contains("2 completed, 0 failed, 0 warning; final status 0x0000"));
    let got = walk(&out);
    assert_eq!(got.len(), 2);
    for path in &got {
        let obj = dicom_object::open_file(path).expect("received file parses");
        let uid = obj
            .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("{uid}.dcm")
        );
        assert_eq!(obj.meta().media_storage_sop_instance_uid(), uid);
        let study_of = obj
            .element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        assert_eq!(study_of, study);
    }

    // C-MOVE to a known destination, then to an unknown one
    let run = with("move", &["-aem", "MOVEDEST", "-k", &study_key]);
    assert!(run.status.success());
    assert!(run.stdout.contains("2 completed, 0 failed"));
    assert_eq!(walk_all(&peers.path("moved")).len(), 2);
    let run = with("move", &["-aem", "NOWHERE", "-k", &study_key]);
    assert!(!run.status.success());
    assert!(run.stderr.contains("0xA801"), "{}", run.stderr);
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect()
}

/// The node binary beside `renkei` in the same target dir (built by
/// `cargo test --workspace`, as the README's test command does).
fn node_binary() -> std::path::PathBuf {
    Path::new(env!("CARGO_BIN_EXE_renkei")).with_file_name("pacs-node")
}

/// Store synthetic files into the node with `renkei store`, then query and
/// retrieve them with `renkei find/get/move`. Skipped only when the node binary
/// was not built (e.g. `cargo test -p renkei-tools` alone).
#[test]
fn find_get_move_against_the_node() {
    let node_bin = node_binary();
    if !node_bin.exists() {
        common::missing(&format!(
            "{} is not built (run cargo test --workspace)",
            node_bin.display()
        ));
        return;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let (dicom_port, http_port, move_port) = (free_port(), free_port(), free_port());
    let mut node = Peers {
        children: Vec::new(),
        qr_port: dicom_port,
        work,
    };
    node.children.push(
        Command::new(node_bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(node.path("data"))
            .args(["--dicom-port", &dicom_port.to_string()])
            .args(["--http-port", &http_port.to_string()])
            .arg("--remote")
            .arg(format!("MOVEDEST@127.0.0.1:{move_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the node"),
    );
    wait_listening(dicom_port, "pacs-node");
    let port = dicom_port.to_string();
    let input = node.path("in");
    let run = renkei(&[
        "synth",
        "--out",
        input.to_str().unwrap(),
        "--count",
        "3",
        "--per-series",
        "3",
        "--rows",
        "16",
        "--cols",
        "16",
        "--seed",
        "11",
    ]);
    assert!(run.status.success());
    let run = renkei(&["store", "127.0.0.1", &port, input.to_str().unwrap()]);
    assert!(run.status.success());

    let run = renkei(&[
        "find",
        "127.0.0.1",
        &port,
        "-k",
        "PatientName",
        "-k",
        "StudyInstanceUID",
    ]);
    assert!(run.status.success());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[1].starts_with("1 match, final status 0x0000"));
    let study = field(lines[0], "StudyInstanceUID").unwrap().to_string();

    let out = node.path("got");
    let study_key = format!("StudyInstanceUID={study}");
    let run = renkei(&[
        "get",
        "127.0.0.1",
        &port,
        "-k",
        &study_key,
        "--od",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success());
    assert_eq!(walk(&out).len(), 3);

    if !have("storescp") {
        return;
    }
    let moved = node.path("moved");
    std::fs::create_dir_all(&moved).expect("mkdir");
    node.children.push(
        Command::new("storescp")
            .env("TCP_NODELAY", "1")
            .args(["-aet", "MOVEDEST", "-od"])
            .arg(&moved)
            .arg(move_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start storescp"),
    );
    wait_listening(move_port, "storescp");
    let run = renkei(&[
        "move",
        "127.0.0.1",
        &port,
        "-aem",
        "MOVEDEST",
        "-k",
        &study_key,
    ]);
    assert!(run.status.success());
    assert!(
        run.stdout.contains("3 completed, 0 failed"),
        "{}",
        run.stdout
    );
    assert_eq!(walk_all(&moved).len(), 3);
    let run = renkei(&[
        "move",
        "127.0.0.1",
        &port,
        "-aem",
        "NOWHERE",
        "-k",
        &study_key,
    ]);
    assert!(!run.status.success());
}
