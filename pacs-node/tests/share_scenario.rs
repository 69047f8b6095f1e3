//! Issue 6, "what it must show" 2–4, against a real node with DCMTK peers:
//! two facilities' modalities push studies with the same local ID; after linking, a
//! doctor at a third facility finds both under the regional ID over C-FIND and QIDO-RS
//! only with an open treating relationship; the unlinked study stays with its facility;
//! the audit chain verifies and a flipped byte is named; bad input is a clear 4xx that
//! changes nothing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{dcmtk, modified_copy, storescu_as, Node};
use serde_json::{json, Value};

/// The corpus CT as a modality would send it: `patient_id`, no issuer, study `n`.
fn study(dir: &Path, n: u32, patient_id: &str) -> PathBuf {
    modified_copy("valid/CT_small.dcm", &dir.join(format!("ct{n}.dcm")), |c| {
        c.args(["-nb", "-imt", "-ea", "(0010,0021)"])
            .args(["-m", &format!("(0010,0020)={patient_id}")])
            .args(["-m", &format!("(0020,000d)={}", study_uid(n))])
            .args(["-gse", "-gin"])
    })
}

fn study_uid(n: u32) -> String {
    format!("1.2.826.0.1.3680043.10.1459.88.{n}")
}

fn storescu(node: &Node, calling: &str, file: &Path) {
    storescu_as(node, calling, &[], &[file.to_path_buf()]);
}

/// STOW-RS of one file with dicomweb-client, signed in with `token`; it must be stored.
fn stow(node: &Node, token: &str, scratch: &Path, file: &Path) {
    let o = std::process::Command::new(common::peer_python())
        .env("RENKEI_TOKEN", token)
        .arg(
            std::env::current_dir()
                .unwrap()
                .join("tests/peers/stow_dicomweb_client.py"),
        )
        .arg(format!("http://127.0.0.1:{}/dicom-web", node.http_port))
        .arg(scratch)
        .arg(file)
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(answer["status"], 200, "{answer}");
}

/// Study-level findscu as `calling` by PatientID: (StudyInstanceUIDs, PatientIDs).
fn findscu(node: &Node, calling: &str, patient_id: &str) -> (Vec<String>, Vec<String>) {
    let o = dcmtk("findscu")
        .args(["-v", "-S", "-aet", calling, "-aec", &node.ae_title])
        .args(["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"])
        .args(["-k", &format!("PatientID={patient_id}")])
        .args(["127.0.0.1", &node.dicom_port.to_string()])
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "findscu: {log}");
    // the answers only: findscu -v prints the request identifier first
    let answers = log.find("Find Response").map_or("", |i| &log[i..]);
    let values = |tag: &str| -> Vec<String> {
        let mut v: Vec<String> = answers
            .lines()
            .filter(|l| l.contains(tag))
            .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.trim().to_string()))
            .collect();
        v.sort();
        v
    };
    (values("(0020,000d)"), values("(0010,0020)"))
}

/// QIDO-RS studies by PatientID: (StudyInstanceUIDs, PatientIDs).
fn qido(node: &Node, token: &str, patient_id: &str) -> (Vec<String>, Vec<String>) {
    let (s, v) = node.get_json(token, &format!("/dicom-web/studies?PatientID={patient_id}"));
    if s == 204 {
        return (vec![], vec![]);
    }
    assert_eq!(s, 200, "QIDO: {v}");
    let arr = v.as_array().cloned().unwrap_or_default();
    let mut uids: Vec<String> = arr
        .iter()
        .map(|s| {
            s["0020000D"]["Value"][0]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    uids.sort();
    let pids = arr
        .iter()
        .map(|s| {
            s["00100020"]["Value"][0]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    (uids, pids)
}

struct Region {
    node: Node,
    admin: String,
    doctor_a: String,
    doctor_c: String,
    nurse_c: String,
    ems: String,
}

fn region(data: &Path) -> Region {
    let node = Node::start(data);
    let admin = node.admin_token();
    assert!(
        admin.starts_with("rk_"),
        "the first start writes the administrator's token"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "admin.token is the owner's only");
    }
    assert!(
        node.log_text().contains("admin.token"),
        "the log says where the token is"
    );
    for (code, kind, ae) in [
        ("1310000001", "hospital", Some("MOD_A")),
        ("1310000002", "imaging-centre", Some("MOD_B")),
        ("1310000003", "clinic", Some("WS_C")),
        ("EMS1", "ems", None),
    ] {
        node.add_facility(&admin, code, code, kind, ae, None);
    }
    let user = |facility: &str, role: &str| node.add_user(&admin, role, facility, role);
    let doctor_a = user("1310000001", "doctor");
    let doctor_c = user("1310000003", "doctor");
    let nurse_c = user("1310000003", "nurse");
    let ems = user("EMS1", "ems-crew");
    Region {
        node,
        admin,
        doctor_a,
        doctor_c,
        nurse_c,
        ems,
    }
}

fn enroll(r: &Region) -> String {
    r.node.enroll(
        &r.admin,
        &json!({"family": "佐藤", "given": "花子", "family_kana": "サトウ", "given_kana": "ハナコ",
                "birth_date": "1975-10-10", "sex": "female", "consent": true}),
    )
}

#[test]
fn two_facilities_same_local_id_found_under_regional_id_only_with_relationship() {
    let dir = tempfile::tempdir().unwrap();
    let r = region(&dir.path().join("data"));
    let node = &r.node;
    // two modalities, one local ID "12345", no IssuerOfPatientID in either file
    storescu(node, "MOD_A", &study(dir.path(), 1, "12345"));
    storescu(node, "MOD_B", &study(dir.path(), 2, "12345"));
    storescu(node, "MOD_A", &study(dir.path(), 3, "999"));
    // the node keeps them as two patients (issuer = sending facility)
    let (a, _) = findscu(node, "MOD_A", "12345");
    let (b, _) = findscu(node, "MOD_B", "12345");
    assert_eq!(a, vec![study_uid(1)], "MOD_A sees its own 12345 only");
    assert_eq!(b, vec![study_uid(2)], "MOD_B sees its own 12345 only");

    let rid = enroll(&r);
    for issuer in ["1310000001", "1310000002"] {
        node.link(&r.admin, &rid, issuer, "12345");
    }
    // no relationship yet: facility C finds nothing, over DIMSE or DICOMweb
    assert_eq!(findscu(node, "WS_C", &rid).0, Vec::<String>::new());
    assert_eq!(qido(node, &r.doctor_c, &rid).0, Vec::<String>::new());

    // the card is presented at C: both studies appear under the regional ID
    let card = node.issue_card(&r.admin, &rid);
    let v = node.checkin(&r.nurse_c, &card);
    assert_eq!(v["patient"]["id"], rid.as_str());
    let both = vec![study_uid(1), study_uid(2)];
    let (uids, pids) = findscu(node, "WS_C", &rid);
    assert_eq!(uids, both, "C-FIND by regional ID at C");
    assert_eq!(
        pids,
        vec![rid.clone(), rid.clone()],
        "answered under the regional ID"
    );
    let (uids, pids) = qido(node, &r.doctor_c, &rid);
    assert_eq!(uids, both, "QIDO-RS by regional ID at C");
    assert_eq!(pids, vec![rid.clone(), rid.clone()]);
    // the same query by A's local ID at C: A's study is linked and C may see it now
    // but the unlinked study (999) stays with A
    assert_eq!(findscu(node, "WS_C", "999").0, Vec::<String>::new());
    assert_eq!(qido(node, &r.doctor_c, "999").0, Vec::<String>::new());
    assert_eq!(findscu(node, "MOD_A", "999").0, vec![study_uid(3)]);
    assert_eq!(qido(node, &r.doctor_a, "999").0, vec![study_uid(3)]);
    // a STOW-RS by A's doctor is A's too (issuer = the user's facility)
    let sent = dir.path().join("sent");
    std::fs::create_dir_all(&sent).unwrap();
    stow(node, &r.doctor_a, &sent, &study(dir.path(), 4, "555"));
    assert_eq!(qido(node, &r.doctor_a, "555").0, vec![study_uid(4)]);
    assert_eq!(qido(node, &r.doctor_c, "555").0, Vec::<String>::new());
    assert_eq!(findscu(node, "MOD_A", "555").0, vec![study_uid(4)]);

    // ... and is listed for the administrator
    let (s, v) = node.get_json(&r.admin, "/api/unlinked");
    assert_eq!(s, 200, "{v}");
    let unlinked: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            format!(
                "{}|{}",
                u["local"]["issuer"].as_str().unwrap(),
                u["local"]["patient_id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        unlinked,
        vec!["1310000001|555".to_string(), "1310000001|999".to_string()]
    );
    // EMS sees no images, break-glass or not
    assert_eq!(qido(node, &r.ems, &rid).0, Vec::<String>::new());

    // consent may exclude one facility, or one category of data
    let consent = |body: Value| node.set_consent(&r.admin, &rid, &body);
    consent(json!({"given": true, "excluded_facilities": ["1310000003"]}));
    assert_eq!(
        findscu(node, "WS_C", &rid).0,
        Vec::<String>::new(),
        "facility excluded"
    );
    consent(json!({"given": true, "excluded_categories": ["imaging"]}));
    assert_eq!(
        qido(node, &r.doctor_c, &rid).0,
        Vec::<String>::new(),
        "imaging excluded"
    );
    consent(json!({"given": true}));
    assert_eq!(qido(node, &r.doctor_c, &rid).0, both);

    // consent withdrawn: sharing stops at once; A still sees its own
    consent(json!({"given": false}));
    assert_eq!(findscu(node, "WS_C", &rid).0, Vec::<String>::new());
    assert_eq!(qido(node, &r.doctor_c, &rid).0, Vec::<String>::new());
    assert_eq!(qido(node, &r.doctor_a, &rid).0, vec![study_uid(1)]);

    // the trail of the patient names who looked
    let (s, v) = node.get_json(&r.doctor_a, &format!("/api/audit?patient={rid}"));
    assert_eq!(s, 200, "{v}");
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "enrol",
        "link",
        "card issue",
        "check-in",
        "C-FIND",
        "consent",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let (s, v) = node.get_json(&r.doctor_a, &format!("/fhir/AuditEvent?patient={rid}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["resourceType"], "Bundle");
    assert!(v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["resource"]["resourceType"] == "AuditEvent"));
    // facility C is not the patient's facility: its users do not read the trail
    assert_eq!(
        node.get_json(&r.doctor_c, &format!("/api/audit?patient={rid}"))
            .0,
        403
    );

    // what was stored for the patient is in the trail too: one record per study and
    // association (C-STORE) or request (STOW-RS), with counts (PS3.15 A.5.3.2, Create)
    let ct5 = study(dir.path(), 5, "12345");
    storescu(node, "MOD_A", &ct5);
    storescu(node, "MOD_A", &ct5);
    stow(node, &r.doctor_a, &sent, &study(dir.path(), 6, "12345"));
    let (s, v) = node.get_json(&r.doctor_a, &format!("/api/audit?patient={rid}"));
    assert_eq!(s, 200, "{v}");
    let stores: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            let a = e["action"].as_str().unwrap_or_default();
            a.starts_with("C-STORE") || a.starts_with("STOW-RS")
        })
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("action"), text("actor_name"), text("detail"))
        })
        .collect();
    assert_eq!(
        stores,
        vec![
            (
                "C-STORE".to_string(),
                "MOD_A".to_string(),
                format!("study {}: 1 instance(s) stored", study_uid(5))
            ),
            (
                "C-STORE (already held)".to_string(),
                "MOD_A".to_string(),
                format!(
                    "study {}: 0 instance(s) stored, 1 already stored (unchanged)",
                    study_uid(5)
                )
            ),
            (
                "STOW-RS".to_string(),
                "doctor".to_string(), // the user's name
                format!("study {}: 1 instance(s) stored", study_uid(6))
            ),
        ],
        "{v}"
    );
    let (s, v) = node.get_json(&r.doctor_a, &format!("/fhir/AuditEvent?patient={rid}"));
    assert_eq!(s, 200, "{v}");
    // PS3.15 A.5.3.2: Create for new instances, Read for a receiver that held them already
    let actions: Vec<&str> = v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["type"]["code"] == "110104")
        .filter_map(|e| e["resource"]["action"].as_str())
        .collect();
    assert_eq!(
        (
            actions.iter().filter(|a| **a == "C").count(),
            actions.iter().filter(|a| **a == "R").count()
        ),
        (2, 1),
        "{v}"
    );
}

#[test]
fn audit_chain_verifies_and_a_flipped_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut r = region(&data);
    let rid = enroll(&r);
    let (s, _) = r
        .node
        .get_json(&r.doctor_c, &format!("/fhir/Patient/{rid}"));
    assert_eq!(s, 403);
    let o = r.node.admin(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{out}");
    assert!(out.starts_with("audit chain intact"), "{out}");
    r.node.stop();

    // flip one byte in the middle of record 3's stored value
    {
        use renkei_store::keys::CF_AUDIT;
        let index = renkei_store::index::Index::open(&data.join("index")).unwrap();
        let mut key = vec![b's'];
        key.extend_from_slice(&3u64.to_be_bytes());
        let mut v = index.get_raw(CF_AUDIT, &key).unwrap().expect("record 3");
        let mid = v.len() / 2;
        v[mid] ^= 0x01;
        let mut b = index.batch();
        b.put_bytes(CF_AUDIT, &key, &v).unwrap();
        b.commit().unwrap();
    }
    let o = r.node.admin(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        !o.status.success(),
        "a flipped byte must fail verification: {out}"
    );
    assert!(
        out.contains("record 3"),
        "the altered record is named: {out}"
    );
}

#[test]
fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = region(&dir.path().join("data"));
    let node = &r.node;
    let rid = enroll(&r);
    let records = |node: &Node| {
        let o = node.admin(&["audit", "verify"]);
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let patient =
        |node: &Node| node.get_json(&r.admin, &format!("/api/patients/{rid}")).1["patient"].clone();
    let before = patient(node);

    // unknown card (well-formed, Luhn-valid, never issued)
    let (s, v) = node.post_json(
        &r.nurse_c,
        "/api/encounters/checkin",
        &json!({"card": "9000000000000001"}),
    );
    assert_eq!(s, 404, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("unknown card"),
        "{v}"
    );
    // mistyped card: the check digit catches it
    let (s, v) = node.post_json(
        &r.nurse_c,
        "/api/encounters/checkin",
        &json!({"card": "9000000000000002"}),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("check digit"), "{v}");

    // malformed regional ID: one digit changed
    let mut typo = rid.clone().into_bytes();
    typo[3] = if typo[3] == b'0' { b'1' } else { b'0' };
    let typo = String::from_utf8(typo).unwrap();
    let (s, v) = node.get_json(&r.doctor_c, &format!("/fhir/Patient/{typo}"));
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome");
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("check digit"),
        "{v}"
    );
    let (s, v) = node.post_json(
        &r.admin,
        &format!("/api/patients/{typo}/links"),
        &json!({"issuer": "1310000001", "patient_id": "1"}),
    );
    assert_eq!(s, 400, "{v}");

    // expired token
    let (s, b) = node.post_json(
        &r.admin,
        "/api/users",
        &json!({"name": "short", "facility": "1310000003", "role": "doctor", "token_ttl_secs": 1}),
    );
    assert_eq!(s, 201, "{b}");
    let short = b["token"]["token"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let (s, v) = node.get_json(&short, "/dicom-web/studies");
    assert_eq!(s, 401, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("expired"), "{v}");
    // no token, unknown token, revoked token
    let (s, v) = node.http_as(None, "GET", "/api/whoami", None).unwrap();
    assert_eq!(s, 401, "{v}");
    assert_eq!(node.get_json("rk_0000", "/api/whoami").0, 401);
    let (_, who) = node.get_json(&r.doctor_c, "/api/whoami");
    let (s, v) = node
        .http_as(
            Some(&r.doctor_c),
            "DELETE",
            &format!("/api/tokens/{}", who["token_id"].as_str().unwrap()),
            None,
        )
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let (s, v) = node.get_json(&r.doctor_c, "/api/whoami");
    assert_eq!(s, 401);
    assert!(v["detail"].as_str().unwrap().contains("revoked"), "{v}");
    // FHIR clients get their 401 as an OperationOutcome
    let (s, v) = node
        .http_as(None, "GET", &format!("/fhir/Patient/{rid}"), None)
        .unwrap();
    assert_eq!(s, 401, "{v}");
    assert!(v.contains("OperationOutcome") && v.contains("login"), "{v}");
    // /healthz needs none
    assert_eq!(node.http_as(None, "GET", "/healthz", None).unwrap().0, 200);

    // wrong role
    let (s, v) = node.post_json(
        &r.ems,
        "/api/encounters/checkin",
        &json!({"card": "9000000000000001"}),
    );
    assert_eq!(s, 403, "{v}");
    let (s, v) = node.post_json(
        &r.nurse_c,
        "/api/facilities",
        &json!({"code": "X1", "name": "x", "kind": "clinic"}),
    );
    assert_eq!(s, 403, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("facility-admin")
            || v["detail"].as_str().unwrap().contains("administer"),
        "{v}"
    );
    let (s, v) = node.post_json(
        &r.doctor_a,
        "/api/users",
        &json!({"name": "x", "facility": "1310000001", "role": "regional-admin"}),
    );
    assert_eq!(s, 403, "{v}");
    // bad JSON and unknown names
    let (s, v) = node
        .http_as(Some(&r.admin), "POST", "/api/facilities", Some("{not json"))
        .unwrap();
    assert!(s == 400 || s == 422, "{s} {v}");
    let (s, v) = node.post_json(
        &r.admin,
        "/api/users",
        &json!({"name": "x", "facility": "1310000003", "role": "surgeon"}),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("surgeon"), "{v}");
    let (s, v) = node.post_json(
        &r.admin,
        "/api/facilities",
        &json!({"code": "1310000001", "name": "dup", "kind": "clinic"}),
    );
    assert_eq!(s, 409, "{v}");

    // nothing changed: the patient record is as enrolled, the facilities are four
    assert_eq!(patient(node), before);
    let (_, f) = node.get_json(&r.admin, "/api/facilities");
    assert_eq!(f.as_array().unwrap().len(), 4);
    assert!(records(node).starts_with("audit chain intact"));
}
