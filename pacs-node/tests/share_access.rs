//! Issue 6, "what it must show" 1: the access matrix. Every cell of the table in
//! `docs/ACCESS.md` (reader × consent × treating relationship × break-glass × path) is
//! run against a real node — C-FIND through pynetdicom (as a user with a User Identity
//! token, or as a facility's AE without one), WADO-RS and FHIR read over HTTP — and must
//! be allowed or denied as the table says, with exactly one audit record each. The table
//! is parsed from the document, so the specification and the test cannot drift apart.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{modified_copy, peer_python, storescu_as, Node};
use serde_json::json;

/// Seconds a check-in keeps the relationship open in this test.
const RELATIONSHIP_SECS: u64 = 15;
const STUDY_UID: &str = "1.2.826.0.1.3680043.10.1459.77.1";

#[derive(Debug, Clone)]
struct Cell {
    reader: String,
    consent: String,
    relationship: String,
    break_glass: String,
    find: String,
    wado: String,
    fhir: String,
}

/// The rows of the matrix in docs/ACCESS.md.
fn matrix() -> Vec<Cell> {
    let doc = std::fs::read_to_string(std::env::current_dir().unwrap().join("../docs/ACCESS.md"))
        .expect("docs/ACCESS.md");
    let start = doc.find("## The access matrix").expect("matrix section");
    doc[start..]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| reader"))
        .map(|l| {
            let c: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|s| s.trim().to_string())
                .collect();
            assert_eq!(c.len(), 7, "matrix row {l:?}");
            Cell {
                reader: c[0].clone(),
                consent: c[1].clone(),
                relationship: c[2].clone(),
                break_glass: c[3].clone(),
                find: c[4].clone(),
                wado: c[5].clone(),
                fhir: c[6].clone(),
            }
        })
        .collect()
}

/// Total audit records, read beside the running node.
fn audit_records(node: &Node) -> u64 {
    let o = node.admin(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "audit verify: {out}");
    out.split_whitespace()
        .rev()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("audit verify said {out:?}"))
}

/// A copy of the corpus CT as facility A's modality would send it: local ID 12345, no
/// issuer, a fixed study UID.
fn study_file(dir: &Path) -> PathBuf {
    modified_copy("valid/CT_small.dcm", &dir.join("ct.dcm"), |c| {
        c.args([
            "-nb",
            "-imt",
            "-m",
            "(0010,0020)=12345",
            "-ea",
            "(0010,0021)",
        ])
        .args(["-m", &format!("(0020,000d)={STUDY_UID}")])
        .args(["-gse", "-gin"])
    })
}

/// Run C-FINDs by PatientID as (calling AE, token or "-"): matches per query.
fn finds(node: &Node, queries: &[(String, String)], patient: &str) -> Vec<String> {
    let mut child = Command::new(peer_python())
        .arg(
            std::env::current_dir()
                .unwrap()
                .join("tests/peers/find_as_user.py"),
        )
        .args(["127.0.0.1", &node.dicom_port.to_string(), &node.ae_title])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let stdin = child.stdin.as_mut().unwrap();
        for (ae, token) in queries {
            writeln!(stdin, "{ae} {token} {patient}").unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "find_as_user.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn access_matrix_matches_docs_and_audits_every_cell() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with_config(
        dir.path(),
        &format!("relationship_secs = {RELATIONSHIP_SECS}\n"),
    );
    let admin = node.admin_token();
    assert!(admin.starts_with("rk_"), "admin token file: {admin:?}");

    for (code, kind, ae) in [
        ("A", "hospital", Some("MOD_A")),
        ("C", "hospital", Some("WS_C")),
        ("E", "ems", None),
    ] {
        let name = format!("Facility {code}");
        node.add_facility(&admin, code, &name, kind, ae, Some("0120-000-000"));
    }
    let mut tokens: HashMap<String, String> = HashMap::new();
    tokens.insert("regional-admin".into(), admin.clone());
    for (reader, facility, role) in [
        ("doctor@C", "C", "doctor"),
        ("nurse@C", "C", "nurse"),
        ("technologist@C", "C", "technologist"),
        ("pharmacist@C", "C", "pharmacist"),
        ("doctor@A", "A", "doctor"),
        ("ems-crew@E/off", "E", "ems-crew"),
        ("ems-crew@E/on", "E", "ems-crew"),
        ("facility-admin@C", "C", "facility-admin"),
    ] {
        tokens.insert(reader.into(), node.add_user(&admin, reader, facility, role));
    }

    // facility A's modality stores the study; the node indexes it under issuer A
    storescu_as(&node, "MOD_A", &[], &[study_file(dir.path())]);

    // doctor@A enrols the patient with A's local ID and issues a card
    let doctor_a = tokens["doctor@A"].clone();
    let (s, pat) = node.post_json(
        &doctor_a,
        "/fhir/Patient",
        &json!({
            "resourceType": "Patient",
            "extension": [{"url": "http://renkei.invalid/fhir/StructureDefinition/sharing-consent", "valueBoolean": true}],
            "identifier": [{"system": "urn:renkei:issuer:A", "value": "12345"}],
            "name": [{"family": "山田", "given": ["太郎"]},
                     {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation", "valueCode": "SYL"}],
                      "family": "ヤマダ", "given": ["タロウ"]}],
            "gender": "male", "birthDate": "1960-04-01"
        }),
    );
    assert_eq!(s, 201, "{pat}");
    let rid = pat["id"].as_str().unwrap().to_string();
    let card = node.issue_card(&doctor_a, &rid);
    let (s, b) = node.post_json(
        &tokens["ems-crew@E/on"],
        "/api/breakglass",
        &json!({"card": card, "reason": "unconscious at the roadside, card in the wallet"}),
    );
    assert_eq!(s, 201, "{b}");

    let cells = matrix();
    assert_eq!(cells.len(), 102, "matrix rows");
    let token_of = |c: &Cell| -> Option<String> {
        match c.reader.as_str() {
            "AE WS_C" => None,
            "ems-crew@E" => Some(tokens[&format!("ems-crew@E/{}", c.break_glass)].clone()),
            r => Some(tokens[r].clone()),
        }
    };

    let mut checked = 0;
    let mut failures = Vec::new();
    let mut phase = |consent: &str, relationship: &str, failures: &mut Vec<String>| {
        node.set_consent(&doctor_a, &rid, &json!({"given": consent == "given"}));
        let phase_cells: Vec<&Cell> = cells
            .iter()
            .filter(|c| c.consent == consent && c.relationship == relationship)
            .collect();
        // C-FIND: one pynetdicom process, one association per cell
        let queries: Vec<(String, String)> = phase_cells
            .iter()
            .map(|c| match token_of(c) {
                None => ("WS_C".to_string(), "-".to_string()),
                Some(t) => ("USERWS".to_string(), t),
            })
            .collect();
        let before = audit_records(&node);
        let found = finds(&node, &queries, &rid);
        let after = audit_records(&node);
        assert_eq!(found.len(), phase_cells.len(), "C-FIND answers: {found:?}");
        assert_eq!(
            after - before,
            phase_cells.len() as u64,
            "one audit record per C-FIND"
        );
        for (c, n) in phase_cells.iter().zip(&found) {
            let got = match n.as_str() {
                "1" => "allow",
                "0" => "deny",
                other => panic!("C-FIND for {c:?}: {other}"),
            };
            if got != c.find {
                failures.push(format!("C-FIND {c:?}: got {got}"));
            }
            checked += 1;
        }
        for c in &phase_cells {
            let Some(token) = token_of(c) else { continue };
            if c.break_glass == "on" && !c.reader.starts_with("ems-crew") {
                // only EMS crews may break the glass: refused, audited, nothing changes
                let before = audit_records(&node);
                let (s, b) = node.post_json(
                    &token,
                    "/api/breakglass",
                    &json!({"card": card, "reason": "I want to see it"}),
                );
                assert_eq!(s, 403, "{b}");
                assert_eq!(audit_records(&node) - before, 1);
            }
            for (path, want, url) in [
                (
                    "WADO-RS",
                    &c.wado,
                    format!("/dicom-web/studies/{STUDY_UID}/metadata"),
                ),
                ("FHIR read", &c.fhir, format!("/fhir/Patient/{rid}")),
            ] {
                let before = audit_records(&node);
                let (s, body) = node.http_as(Some(&token), "GET", &url, None).unwrap();
                let got = match s {
                    200 => "allow",
                    403 => "deny",
                    _ => panic!("{path} for {c:?}: HTTP {s} {body}"),
                };
                assert_eq!(
                    audit_records(&node) - before,
                    1,
                    "one audit record for {path} {c:?}"
                );
                if got != want {
                    failures.push(format!("{path} {c:?}: got {got} ({body})"));
                }
                checked += 1;
            }
        }
    };

    let checkin = || {
        node.checkin(&tokens["nurse@C"], &card);
        Instant::now()
    };
    phase("given", "none", &mut failures);
    phase("withdrawn", "none", &mut failures);
    // each open phase right after a check-in, and within the relationship's lifetime
    let mut opened = Instant::now();
    for consent in ["given", "withdrawn"] {
        opened = checkin();
        phase(consent, "open", &mut failures);
        assert!(
            opened.elapsed() < Duration::from_secs(RELATIONSHIP_SECS),
            "an open phase took longer than the relationship lasts: raise RELATIONSHIP_SECS"
        );
    }
    std::thread::sleep(
        Duration::from_secs(RELATIONSHIP_SECS).saturating_sub(opened.elapsed())
            + Duration::from_millis(300),
    );
    phase("given", "expired", &mut failures);
    phase("withdrawn", "expired", &mut failures);

    assert!(
        failures.is_empty(),
        "{} of {checked} cells differ from docs/ACCESS.md:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 102 + 2 * 96, "every applicable cell ran");
    // the chain is intact after all of it
    let o = node.admin(&["audit", "verify"]);
    assert!(o.status.success());
}
