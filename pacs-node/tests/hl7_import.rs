//! Issue 7, "what it must show" 4, against a real node: `renkei import hl7 testdata/hl7`
//! (ISO-2022-JP, Shift_JIS and UTF-8 messages, testdata/hl7/README.md) creates the expected
//! Observations, MedicationRequests and Conditions of the regional patient; the malformed
//! messages of the batch file are answered AE/AR naming the segment and skipped while the
//! valid ones around them land; ADT^A08 is answered but not applied; and one MLLP round
//! trip over TCP (framing, ACK in the sender's character set).
//!
//! The resources are created through `Share::create_resource` (the clinical record): the
//! assertions that need it come last in each test, after everything the import itself
//! decides.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{free_port, renkei_cli, validate_fhir, Node};
use serde_json::{json, Value};

const FACILITY: &str = "1310000001";
const LOCAL_ID: &str = "0000123456";

fn testdata() -> PathBuf {
    std::env::current_dir().unwrap().join("../testdata/hl7")
}

/// A node with an MLLP port, facility A, a doctor of A and the patient of the test files
/// enrolled with A's local ID linked: (node, MLLP port, doctor's token, regional ID).
fn region(dir: &Path) -> (Node, u16, String, String) {
    let mllp = free_port();
    let node = Node::start_with_config(dir, &format!("mllp_port = {mllp}\n"));
    let admin = node.admin_token();
    node.add_facility(
        &admin,
        FACILITY,
        "Hospital A",
        "hospital",
        None,
        Some("03-0000-0001"),
    );
    let doctor = node.add_user(&admin, "Dr. Ichiro", FACILITY, "doctor");
    let rid = node.enroll(
        &admin,
        &json!({"family": "佐藤", "given": "花子", "family_kana": "サトウ", "given_kana": "ハナコ",
                "birth_date": "1975-10-10", "sex": "female", "consent": true,
                "local_ids": [{"issuer": FACILITY, "patient_id": LOCAL_ID}]}),
    );
    (node, mllp, doctor, rid)
}

fn import(node: &Node, token: &str, args: &[&str]) -> Output {
    Command::new(renkei_cli())
        .args(["import", "hl7"])
        .args(["--url", &format!("http://127.0.0.1:{}", node.http_port)])
        .args(["--token", token])
        .args(args)
        .env_remove("RENKEI_TOKEN")
        .env_remove("RENKEI_URL")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The resources of a search as the doctor (every page is one: `_count` large).
fn search(node: &Node, token: &str, kind: &str, rid: &str) -> Vec<Value> {
    let (s, b) = node.get_json(token, &format!("/fhir/{kind}?patient={rid}&_count=100"));
    assert_eq!(s, 200, "GET /fhir/{kind}: {b}");
    assert_eq!(b["resourceType"], "Bundle", "{b}");
    b["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

/// Every resource validates with Python `fhir.resources` (tests/peers/fhir_validate.py).
fn assert_valid_fhir(dir: &Path, resources: &[Value]) {
    let labelled: Vec<(String, Value)> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("{}#{i}", r["resourceType"]), r.clone()))
        .collect();
    validate_fhir(dir, &labelled);
}

#[test]
fn import_of_the_test_directory_reports_each_message_and_creates_the_resources() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _, doctor, rid) = region(dir.path());
    let out = import(&node, &doctor, &["--json", testdata().to_str().unwrap()]);
    let log = text(&out);
    // 9 messages: 7 AA, 1 AE, 1 AR → exit code 2
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(
        log.contains("9 message(s) in 6 file(s)") && log.contains("non-HL7 file(s) skipped"),
        "{log}"
    );
    let acks: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(acks.len(), 9, "{log}");
    let by_id: HashMap<String, &Value> = acks
        .iter()
        .map(|a| (a["control_id"].as_str().unwrap_or_default().to_string(), a))
        .collect();

    // the malformed messages of the batch: reported, naming the segment, and skipped
    let no_pid = by_id["LAB20240320-0002"];
    assert_eq!(no_pid["code"], "AE", "{no_pid}");
    assert_eq!(
        no_pid["issues"][0]["location"]["segment"], "PID",
        "{no_pid}"
    );
    assert_eq!(no_pid["issues"][0]["code"], 100);
    assert!(
        no_pid["ack"]
            .as_str()
            .unwrap()
            .contains("\rERR||PID|100^Segment sequence error^HL70357|E"),
        "{no_pid}"
    );
    assert_eq!(no_pid["created"], json!([]));
    let broken = by_id["LAB20240320-0003"];
    assert_eq!(broken["code"], "AR", "{broken}");
    assert_eq!(broken["issues"][0]["location"]["segment"], "MSH");
    assert_eq!(broken["issues"][0]["location"]["field"], 9);
    assert!(broken["ack"]
        .as_str()
        .unwrap()
        .contains("\rMSA|AR|LAB20240320-0003|"));
    assert!(broken["ack"]
        .as_str()
        .unwrap()
        .contains("\rERR||MSH^1^9|101^"));

    // ADT^A08: answered, not applied (no demographics update in the regional index)
    let adt = by_id["ADT20240306-0001"];
    assert_eq!(adt["code"], "AA", "{adt}");
    assert_eq!(adt["issues"][0]["severity"], "W");
    assert!(
        adt["text"].as_str().unwrap().contains("not applied"),
        "{adt}"
    );
    assert_eq!(adt["not_stored"][0]["resourceType"], "Patient");
    assert_eq!(adt["not_stored"][0]["address"][0]["postalCode"], "1600023");
    assert_eq!(
        adt["not_stored"][0]["name"][1]["family"], "サトウ",
        "ISO-2022-JP kana"
    );

    // every message was resolved to the facility and the regional patient
    for id in [
        "LAB20240301-0001",
        "LAB20240308-0002",
        "RX20240305-0001",
        "DX20240305-0001",
        "LAB20240320-0001",
        "LAB20240320-0004",
    ] {
        let a = by_id[id];
        assert_eq!(a["facility"], FACILITY, "{a}");
        assert_eq!(a["patient"], rid.as_str(), "{a}");
    }

    // the human form names the segment too (only the malformed messages: nothing created)
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("two.hl7"),
        "MSH|^~\\&|LIS|1310000001|||20240320||ORU^R01|B1|P|2.5\rOBX|1|NM|X^Y^99L||1|||||F\r\
         MSH|^~|broken\r",
    )
    .unwrap();
    let out = import(&node, &doctor, &[bad.to_str().unwrap()]);
    let human = text(&out);
    assert_eq!(out.status.code(), Some(2), "{human}");
    assert!(
        human.contains("AE  ") && human.contains("two.hl7#1  ORU^R01 B1: PID segment missing"),
        "{human}"
    );
    assert!(human.contains("AR  ") && human.contains("MSH-2"), "{human}");

    // --- what the clinical record stored (needs Share::create_resource) ---
    for (id, created) in [
        ("LAB20240301-0001", 2),
        ("LAB20240308-0002", 2),
        ("RX20240305-0001", 2),
        ("DX20240305-0001", 2),
        ("LAB20240320-0001", 1),
        ("LAB20240320-0004", 1),
    ] {
        let a = by_id[id];
        assert_eq!(a["code"], "AA", "{id} was not accepted: {}", a["text"]);
        assert_eq!(a["created"].as_array().map(Vec::len), Some(created), "{a}");
    }
    let obs = search(&node, &doctor, "Observation", &rid);
    assert_eq!(obs.len(), 6, "{obs:#?}");
    let a1c: Vec<&Value> = obs
        .iter()
        .filter(|o| o["code"]["coding"][0]["code"] == "3D046000001920402")
        .collect();
    assert_eq!(a1c.len(), 2, "two HbA1c results");
    let first = a1c
        .iter()
        .find(|o| o["effectiveDateTime"] == "2024-03-01T09:30:00+09:00")
        .expect("HbA1c of 2024-03-01 (ISO-2022-JP file)");
    assert_eq!(first["valueQuantity"]["value"], 7.2);
    assert_eq!(
        first["code"]["coding"][0]["system"],
        "urn:oid:1.2.392.200119.4.504"
    );
    assert_eq!(first["referenceRange"][0]["high"]["value"], 6.2);
    assert_eq!(first["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(first["subject"]["reference"], format!("Patient/{rid}"));
    let sjis = obs
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "3D010000001926101")
        .expect("fasting glucose (Shift_JIS file)");
    assert_eq!(sjis["code"]["coding"][0]["display"], "空腹時血糖");
    assert_eq!(sjis["note"][0]["text"], "検体表示ソート確認済み");
    let rx = search(&node, &doctor, "MedicationRequest", &rid);
    assert_eq!(rx.len(), 2, "{rx:#?}");
    assert!(rx.iter().any(
        |m| m["medicationCodeableConcept"]["coding"][0]["code"] == "620008868"
            && m["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["end"] == "2024-03-18"
    ));
    let dx = search(&node, &doctor, "Condition", &rid);
    assert_eq!(dx.len(), 2, "{dx:#?}");

    // the site runs its export again: every recorded message is answered as the first
    // time, flagged as a resend, and nothing is recorded twice
    let out = import(&node, &doctor, &["--json", testdata().to_str().unwrap()]);
    let again: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(again.len(), 9, "{}", text(&out));
    assert!(
        text(&out).contains(
            "0 resource(s) created; 6 resend(s) of messages recorded before, not recorded again"
        ),
        "{}",
        text(&out)
    );
    for a in &again {
        let id = a["control_id"].as_str().unwrap_or_default();
        let first = by_id[id];
        assert_eq!(a["code"], first["code"], "{a}");
        assert_eq!(a["created"], first["created"], "{a}");
        let recorded = !first["created"].as_array().unwrap().is_empty();
        assert_eq!(a["duplicate_of"].is_string(), recorded, "{a}");
        if recorded {
            assert!(
                a["text"].as_str().unwrap().starts_with("resend of MSH-10"),
                "{a}"
            );
            assert!(
                a["ack"].as_str().unwrap().contains("\rERR||MSH^1^10|"),
                "{a}"
            );
        }
    }
    assert_eq!(search(&node, &doctor, "Observation", &rid).len(), 6);
    assert_eq!(search(&node, &doctor, "MedicationRequest", &rid).len(), 2);
    assert_eq!(search(&node, &doctor, "Condition", &rid).len(), 2);
    // what the import produced is valid FHIR R4 (the A08 Patient included)
    let mut all: Vec<Value> = obs.iter().chain(&rx).chain(&dx).cloned().collect();
    all.push(adt["not_stored"][0].clone());
    assert_valid_fhir(dir.path(), &all);
    assert!(dx.iter().any(|c| c["code"]["coding"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|x| x["code"] == "E119"))
        && c["code"]["text"] == "２型糖尿病"));
}

/// One MLLP frame out, the ACK frames of it back (until `n` have come).
fn mllp(port: u16, message: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut frame = vec![0x0B];
    frame.extend_from_slice(message);
    frame.extend_from_slice(&[0x1C, 0x0D]);
    s.write_all(&frame).unwrap();
    let mut buf = Vec::new();
    let mut acks = Vec::new();
    let mut chunk = [0u8; 4096];
    while acks.len() < n {
        let k = s.read(&mut chunk).unwrap();
        assert!(k > 0, "connection closed after {} ACK(s)", acks.len());
        buf.extend_from_slice(&chunk[..k]);
        while let Some(end) = buf.windows(2).position(|w| w == [0x1C, 0x0D]) {
            assert_eq!(buf[0], 0x0B, "an ACK frame starts with VT");
            acks.push(buf[1..end].to_vec());
            buf.drain(..end + 2);
        }
    }
    acks
}

#[test]
fn mllp_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (node, port, doctor, rid) = region(dir.path());
    // ADT^A08 in ISO-2022-JP: the ACK comes back framed, in ISO-2022-JP (7-bit)
    let adt = std::fs::read(testdata().join("04_adt_a08_update_iso2022jp.hl7")).unwrap();
    let ack = &mllp(port, &adt, 1)[0];
    let ack_text = String::from_utf8_lossy(ack);
    assert!(ack.is_ascii(), "{ack_text}");
    assert!(ack_text.starts_with("MSH|^~\\&|RENKEI|"), "{ack_text}");
    assert!(ack_text.contains("|ACK^A08^ACK|"), "{ack_text}");
    assert!(
        ack_text.contains("||||||~ISO IR87||ISO 2022-1994\r"),
        "{ack_text}"
    );
    assert!(
        ack_text.contains(&format!(
            "\rMSA|AA|ADT20240306-0001|A08 patient update for {rid} accepted but not applied"
        )),
        "{ack_text}"
    );
    // a facility that is not registered: AR naming MSH-4; two messages in one frame: two ACKs
    let two = b"MSH|^~\\&|LIS|9999999999|||20240320||ORU^R01|X1|P|2.5\rPID|1||1\rOBX|1|NM|A^B^99L||1|||||F\r\
MSH|^~\\&|LIS|1310000001|||20240320||ORU^R01|X2|P|2.5\rOBX|1|NM|A^B^99L||1|||||F\r";
    let acks = mllp(port, two, 2);
    let first = String::from_utf8_lossy(&acks[0]);
    assert!(
        first.contains("\rMSA|AR|X1|MSH-4 sending facility"),
        "{first}"
    );
    assert!(first.contains("\rERR||MSH^1^4|204^"), "{first}");
    let second = String::from_utf8_lossy(&acks[1]);
    assert!(second.contains("\rMSA|AE|X2|"), "{second}");

    // a lab result over MLLP is recorded by facility A's interface (needs the clinical record)
    let oul = std::fs::read(testdata().join("01_oul_r22_hba1c_iso2022jp.hl7")).unwrap();
    let ack = String::from_utf8_lossy(&mllp(port, &oul, 1)[0]).into_owned();
    assert!(
        ack.contains("\rMSA|AA|LAB20240301-0001|2 resource(s) created"),
        "{ack}"
    );
    assert_eq!(search(&node, &doctor, "Observation", &rid).len(), 2);
}
