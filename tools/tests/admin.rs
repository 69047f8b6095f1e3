//! End-to-end tests of `renkei admin …` against a real node: `pacs-node serve` on free
//! loopback ports with a fresh data directory, whose `admin.token` (written by the node at
//! its first start) is the regional administrator's token.
//!
//! The node binary is the `pacs-node` beside `renkei` in the same target dir (built by
//! `cargo test --workspace`), or the one named by the `PACS_NODE` environment variable.
//! Tests that need the node are skipped, with a message, when neither exists; the tests
//! of what the CLI says without a node (no token, node down, help) always run.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, renkei_env, Run};

/// A running node, killed on drop (its log is printed when the test failed).
struct Node {
    child: Child,
    url: String,
    work: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.work.path().join("node.log")) {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- last lines of the node's log ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Node {
    fn data_dir(&self) -> PathBuf {
        self.work.path().join("data")
    }

    fn data_dir_str(&self) -> String {
        self.data_dir().to_str().expect("utf-8 path").to_string()
    }

    /// `renkei admin ARGS` as the regional administrator: the token from the data
    /// directory's admin.token, through --data-dir.
    fn as_admin(&self, args: &[&str]) -> Run {
        let dir = self.data_dir_str();
        let mut all = vec!["--data-dir", dir.as_str()];
        all.extend_from_slice(args);
        self.run(None, &all)
    }

    /// `renkei admin ARGS` with this token, given with --token.
    fn as_user(&self, token: &str, args: &[&str]) -> Run {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        self.run(None, &all)
    }

    /// `renkei admin ARGS` with RENKEI_URL set to the node, RENKEI_TOKEN set to
    /// `env_token` (or removed) and RENKEI_DATA_DIR removed.
    fn run(&self, env_token: Option<&str>, args: &[&str]) -> Run {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        renkei_env(
            &all,
            &[
                ("RENKEI_URL", Some(&self.url)),
                ("RENKEI_TOKEN", env_token),
                ("RENKEI_DATA_DIR", None),
            ],
        )
    }
}

/// `pacs-node` beside `renkei`, or $PACS_NODE.
fn node_binary() -> PathBuf {
    match std::env::var_os("PACS_NODE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_BIN_EXE_renkei")).with_file_name("pacs-node"),
    }
}

/// Start a node on free ports with a fresh data directory and wait for its HTTP port
/// and its admin.token. None (skipped, only with RENKEI_ALLOW_SKIP=1) when the node binary
/// is not built.
fn start_node() -> Option<Node> {
    let bin = node_binary();
    if !bin.exists() {
        common::missing(&format!(
            "{} is not built (run cargo test --workspace, or set PACS_NODE)",
            bin.display()
        ));
        return None;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let (http_port, dicom_port) = (free_port(), free_port());
    let log = std::fs::File::create(work.path().join("node.log")).expect("node log");
    let child = Command::new(&bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .args(["--http-port", &http_port.to_string()])
        .args(["--dicom-port", &dicom_port.to_string()])
        .stdout(Stdio::from(log.try_clone().expect("log handle")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start pacs-node");
    let mut node = Node {
        child,
        url: format!("http://127.0.0.1:{http_port}"),
        work,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!("pacs-node exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "pacs-node did not listen on HTTP {http_port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let token_file = node.data_dir().join("admin.token");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !token_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the node did not write {} at its first start (does it serve the admin API yet?)",
            token_file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(node)
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or("").trim().to_string()
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}): {}", run.stdout))
}

fn assert_ok(run: &Run) {
    assert!(run.status.success(), "failed: {}", run.stderr);
}

/// The node refused with a 4xx: exit code 2 and `error: <detail> (HTTP <code>)`.
fn assert_refused(run: &Run, code: u16, reason: &str) {
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error: ` line: {}", run.stderr));
    assert!(line.ends_with(&format!("(HTTP {code})")), "{line}");
    assert!(
        line.to_lowercase().contains(&reason.to_lowercase()),
        "the node's reason should mention {reason:?}: {line}"
    );
}

const HOSPITAL: &str = "1310000001";
const EMS: &str = "1390000009";

/// The regional workflow: facilities, users and their tokens, enrolment with kana, a card,
/// check-in, break-glass, the audit trail, and a revoked token refused.
#[test]
fn regional_workflow_against_the_node() {
    let Some(node) = start_node() else { return };

    // facilities, as the regional administrator (token from DATA/admin.token)
    let run = node.as_admin(&[
        "facility",
        "add",
        "--code",
        HOSPITAL,
        "--name",
        "連携中央病院",
        "--kind",
        "core-hospital",
        "--ae",
        "CT01",
        "--ae",
        "MR01",
        "--phone",
        "03-0000-0001",
    ]);
    assert_ok(&run);
    assert!(run.stdout.contains(HOSPITAL), "{}", run.stdout);
    let run = node.as_admin(&[
        "facility",
        "add",
        "--code",
        EMS,
        "--name",
        "Fire Dept EMS",
        "--kind",
        "ems",
    ]);
    assert_ok(&run);

    let run = node.as_admin(&["facility", "list"]);
    assert_ok(&run);
    for needle in [HOSPITAL, EMS, "連携中央病院", "core-hospital", "CT01, MR01"] {
        assert!(run.stdout.contains(needle), "{needle}: {}", run.stdout);
    }
    let list = json(&node.as_admin(&["--json", "facility", "list"]));
    let hospital = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|f| f["code"] == HOSPITAL)
        .expect("the hospital listed");
    assert_eq!(hospital["ae_titles"], serde_json::json!(["CT01", "MR01"]));
    assert_eq!(hospital["kind"], "core-hospital");

    // a facility administrator: the token alone on the last line of stdout
    let run = node.as_admin(&[
        "user",
        "add",
        "--facility",
        HOSPITAL,
        "--role",
        "facility-admin",
        "--name",
        "受付 花子",
        "--ttl-days",
        "7",
    ]);
    assert_ok(&run);
    let desk = last_line(&run.stdout);
    assert!(!desk.is_empty() && !desk.contains(' '), "{:?}", run.stdout);
    assert!(
        !run.stderr.contains(&desk),
        "the secret goes to stdout only: {}",
        run.stderr
    );
    assert!(run.stderr.contains("expires"), "{}", run.stderr);

    let run = node.as_user(&desk, &["whoami"]);
    assert_ok(&run);
    for needle in ["受付 花子", "facility-admin", HOSPITAL] {
        assert!(run.stdout.contains(needle), "{needle}: {}", run.stdout);
    }
    let me = json(&node.as_user(&desk, &["--json", "whoami"]));
    let desk_user = me["user_id"].as_str().expect("user_id").to_string();
    let desk_token_id = me["token_id"].as_str().expect("token_id").to_string();
    // RENKEI_TOKEN works as --token does
    let run = node.run(Some(&desk), &["whoami"]);
    assert_ok(&run);
    assert!(run.stdout.contains(&desk_user), "{}", run.stdout);

    let run = node.as_admin(&["user", "list", "--facility", HOSPITAL]);
    assert_ok(&run);
    assert!(run.stdout.contains(&desk_user), "{}", run.stdout);

    // enrolment with kana names and a local ID: the regional ID alone on the last line
    let run = node.as_user(
        &desk,
        &[
            "patient",
            "enroll",
            "--family",
            "山田",
            "--given",
            "太郎",
            "--family-kana",
            "ヤマダ",
            "--given-kana",
            "タロウ",
            "--birth-date",
            "1970-01-02",
            "--sex",
            "male",
            "--address",
            "東京都千代田区1-1",
            "--phone",
            "090-0000-0000",
            "--consent",
            "--local",
            "1310000001:000123",
        ],
    );
    assert_ok(&run);
    let rid = last_line(&run.stdout);
    assert!(!rid.is_empty() && !rid.contains(' '), "{:?}", run.stdout);

    // the identity record is the regional administrator's to read (a facility
    // administrator reads no clinical content)
    let run = node.as_admin(&["patient", "show", &rid]);
    assert_ok(&run);
    for needle in [
        rid.as_str(),
        "山田 太郎",
        "ヤマダ タロウ",
        "1970-01-02",
        "1310000001:000123",
    ] {
        assert!(run.stdout.contains(needle), "{needle}: {}", run.stdout);
    }

    // a card, and check-in with it
    let run = node.as_user(&desk, &["card", "issue", &rid]);
    assert_ok(&run);
    let card = last_line(&run.stdout);
    assert!(!card.is_empty(), "{:?}", run.stdout);
    let run = node.as_user(&desk, &["checkin", &card]);
    assert_ok(&run);
    assert!(run.stdout.contains(&rid), "{}", run.stdout);
    assert!(run.stdout.contains(HOSPITAL), "{}", run.stdout);

    // break-glass by an ambulance crew, by card
    let run = node.as_admin(&[
        "user",
        "add",
        "--facility",
        EMS,
        "--role",
        "ems-crew",
        "--name",
        "Crew 1",
    ]);
    assert_ok(&run);
    let crew = last_line(&run.stdout);
    let run = node.as_user(
        &crew,
        &[
            "break-glass",
            "--card",
            &card,
            "--reason",
            "unconscious at the scene, no relative present",
        ],
    );
    assert_ok(&run);
    assert!(run.stdout.contains(&rid), "{}", run.stdout);

    // the audit trail, one line per record
    let run = node.as_admin(&["audit", "--patient", &rid]);
    assert_ok(&run);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.len() >= 3, "{}", run.stdout);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("check-in") && l.contains(&format!("facility-admin@{HOSPITAL}"))),
        "{}",
        run.stdout
    );
    assert!(
        lines.iter().any(|l| l.contains("BREAK-GLASS")),
        "{}",
        run.stdout
    );
    assert!(lines
        .iter()
        .all(|l| l.contains("allowed") || l.contains("DENIED")));
    let records = json(&node.as_admin(&["--json", "audit", "--patient", &rid, "--limit", "2"]));
    assert_eq!(records.as_array().map(Vec::len), Some(2), "{records}");
    let run = node.as_admin(&["audit", "--patient", &rid, "--fhir"]);
    assert_ok(&run);
    assert!(run.stdout.lines().count() >= 3, "{}", run.stdout);
    let bundle = json(&node.as_admin(&["--json", "audit", "--patient", &rid, "--fhir"]));
    assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");

    // a second token for the same user; revoking the first refuses it (401) at once
    let run = node.as_admin(&["token", "issue", "--user", &desk_user, "--ttl-days", "1"]);
    assert_ok(&run);
    let second = last_line(&run.stdout);
    assert_ne!(second, desk);
    let run = node.as_admin(&["token", "revoke", &desk_token_id]);
    assert_ok(&run);
    let run = node.as_user(&desk, &["whoami"]);
    assert_refused(&run, 401, "");
    assert!(run.stderr.contains("--token"), "{}", run.stderr);
    let run = node.as_user(&second, &["whoami"]);
    assert_ok(&run);
    assert!(run.stdout.contains(&desk_user), "{}", run.stdout);

    // identity upkeep: link and unlink a local ID (with characters that need encoding),
    // merge a duplicate, change consent, revoke the card
    let desk = second;
    let local = "1310000001:A/7 8";
    let run = node.as_user(&desk, &["patient", "link", &rid, "--local", local]);
    assert_ok(&run);
    let record = json(&node.as_admin(&["--json", "patient", "show", &rid]));
    assert!(
        record["links"]
            .as_array()
            .expect("links")
            .iter()
            .any(|l| l["patient_id"] == "A/7 8"),
        "{record}"
    );
    let run = node.as_user(&desk, &["patient", "unlink", &rid, "--local", local]);
    assert_ok(&run);
    let record = json(&node.as_admin(&["--json", "patient", "show", &rid]));
    assert_eq!(
        record["links"],
        serde_json::json!([{"issuer": HOSPITAL, "patient_id": "000123"}]),
        "{record}"
    );

    let run = node.as_user(
        &desk,
        &[
            "patient",
            "enroll",
            "--family",
            "山田",
            "--given",
            "太郎",
            "--birth-date",
            "1970-01-02",
            "--sex",
            "male",
            "--consent",
            "--local",
            "1310000001:000999",
        ],
    );
    assert_ok(&run);
    let duplicate = last_line(&run.stdout);
    assert_ne!(duplicate, rid);
    // merges are the regional administrator's
    let run = node.as_user(&desk, &["patient", "merge", &rid, "--from", &duplicate]);
    assert_refused(&run, 403, "regional");
    let run = node.as_admin(&["patient", "merge", &rid, "--from", &duplicate]);
    assert_ok(&run);
    let run = node.as_admin(&["patient", "show", &rid]);
    assert!(run.stdout.contains("1310000001:000999"), "{}", run.stdout);

    let run = node.as_user(
        &desk,
        &[
            "patient",
            "consent",
            &rid,
            "--give",
            "--exclude-facility",
            EMS,
        ],
    );
    assert_ok(&run);
    let record = json(&node.as_admin(&["--json", "patient", "show", &rid]));
    assert_eq!(
        record["patient"]["consent"]["excluded_facilities"],
        serde_json::json!([EMS]),
        "{record}"
    );

    let run = node.as_user(&desk, &["card", "revoke", &card]);
    assert_ok(&run);
    let run = node.as_user(&desk, &["checkin", &card]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("revoked") && run.stderr.contains("(HTTP 4"),
        "{}",
        run.stderr
    );

    let run = node.as_admin(&["unlinked"]);
    assert_ok(&run);
}

/// Bad input is the node's to judge: its reason is printed, exit code 2.
#[test]
fn bad_input_gets_the_nodes_reason() {
    let Some(node) = start_node() else { return };
    let run = node.as_admin(&[
        "facility", "add", "--code", HOSPITAL, "--name", "H", "--kind", "hospital",
    ]);
    assert_ok(&run);

    let run = node.as_admin(&[
        "user",
        "add",
        "--facility",
        HOSPITAL,
        "--role",
        "surgeon",
        "--name",
        "Dr X",
    ]);
    assert_refused(&run, 400, "surgeon");
    assert!(run.stdout.is_empty(), "no token printed: {}", run.stdout);

    let run = node.as_admin(&[
        "facility",
        "add",
        "--code",
        "1310000002",
        "--name",
        "X",
        "--kind",
        "spa",
    ]);
    assert_refused(&run, 400, "spa");

    // enrolment without --consent: the node refuses, the CLI does not pre-check
    let run = node.as_admin(&[
        "user",
        "add",
        "--facility",
        HOSPITAL,
        "--role",
        "facility-admin",
        "--name",
        "Desk",
    ]);
    assert_ok(&run);
    let desk = last_line(&run.stdout);
    let run = node.as_user(
        &desk,
        &[
            "patient",
            "enroll",
            "--family",
            "鈴木",
            "--given",
            "一郎",
            "--birth-date",
            "1980-05-06",
            "--sex",
            "male",
        ],
    );
    assert_refused(&run, 400, "consent");

    // a token the node never issued
    let run = node.as_user("not-a-token", &["whoami"]);
    assert_refused(&run, 401, "");
}

/// No --token, no RENKEI_TOKEN, no admin.token: the three ways are explained, and no
/// request is made.
#[test]
fn a_missing_token_is_explained() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path().to_str().expect("utf-8 path");
    let run = renkei_env(
        &["admin", "--data-dir", dir, "whoami"],
        &[
            ("RENKEI_TOKEN", None),
            ("RENKEI_DATA_DIR", None),
            // nothing listens here: the error must come before any connection
            ("RENKEI_URL", Some("http://127.0.0.1:9")),
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    for needle in [
        "--token",
        "RENKEI_TOKEN",
        "--data-dir",
        "RENKEI_DATA_DIR",
        "admin.token",
        dir,
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    assert!(!run.stderr.contains("connect"), "{}", run.stderr);

    // RENKEI_DATA_DIR points at the token file as --data-dir does
    std::fs::write(empty.path().join("admin.token"), "t\n").expect("write token");
    let run = renkei_env(
        &["admin", "whoami"],
        &[
            ("RENKEI_TOKEN", None),
            ("RENKEI_DATA_DIR", Some(dir)),
            ("RENKEI_URL", Some("http://127.0.0.1:9")),
        ],
    );
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
}

/// A node that is not running: the URL is named, with how to start one.
#[test]
fn a_node_that_is_down_is_named() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let run = renkei_env(
        &["admin", "--url", &url, "--token", "t", "facility", "list"],
        &[("RENKEI_TOKEN", None), ("RENKEI_URL", None)],
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    for needle in [
        url.as_str(),
        "connection refused",
        "node running",
        "pacs-node serve",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    let run = renkei_env(
        &[
            "admin",
            "--url",
            "https://127.0.0.1:1",
            "--token",
            "t",
            "whoami",
        ],
        &[],
    );
    assert!(!run.status.success());
    assert!(run.stderr.contains("http://"), "{}", run.stderr);
}

/// Help names the token's three sources and each command's values.
#[test]
fn help_explains_commands_and_the_token() {
    let run = renkei_env(&["admin", "--help"], &[]);
    assert_ok(&run);
    for needle in [
        "--token",
        "RENKEI_TOKEN",
        "admin.token",
        "RENKEI_DATA_DIR",
        "RENKEI_URL",
        "http://127.0.0.1:8042",
        "facility",
        "patient",
        "break-glass",
        "audit",
        "(HTTP <code>)",
    ] {
        assert!(run.stdout.contains(needle), "{needle}: {}", run.stdout);
    }
    let run = renkei_env(&["admin", "user", "add", "--help"], &[]);
    assert_ok(&run);
    for role in [
        "doctor",
        "nurse",
        "technologist",
        "pharmacist",
        "ems-crew",
        "facility-admin",
        "regional-admin",
        "tail -1",
    ] {
        assert!(run.stdout.contains(role), "{role}: {}", run.stdout);
    }
    let run = renkei_env(&["admin", "facility", "add", "--help"], &[]);
    for kind in ["core-hospital", "imaging-centre", "laboratory", "ems"] {
        assert!(run.stdout.contains(kind), "{kind}: {}", run.stdout);
    }
    let run = renkei_env(&["admin", "patient", "enroll", "--help"], &[]);
    assert!(run.stdout.contains("--consent"), "{}", run.stdout);
    assert!(run.stdout.contains("requires"), "{}", run.stdout);
    // the global flags are accepted after the subcommand too
    let run = renkei_env(
        &[
            "admin",
            "whoami",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "t",
        ],
        &[],
    );
    assert!(run.stderr.contains("http://127.0.0.1:9"), "{}", run.stderr);
}
