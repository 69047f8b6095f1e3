//! The region's setup over the node's REST API (facilities, users, patients, cards,
//! check-ins) and the FHIR validator peer: each call asserts the answer a successful
//! request gets, so a test states its scenario and not the plumbing.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use super::{peer_python, Node};

impl Node {
    /// `POST /api/facilities` as `token` (one AE title at most, a phone when given); asserts 201.
    pub fn add_facility(
        &self,
        token: &str,
        code: &str,
        name: &str,
        kind: &str,
        ae_title: Option<&str>,
        phone: Option<&str>,
    ) -> Value {
        let mut body = json!({"code": code, "name": name, "kind": kind,
                              "ae_titles": ae_title.into_iter().collect::<Vec<_>>()});
        if let Some(phone) = phone {
            body["phone"] = json!(phone);
        }
        let (s, b) = self.post_json(token, "/api/facilities", &body);
        assert_eq!(s, 201, "facility {code}: {b}");
        b
    }

    /// `POST /api/users` as `token`; asserts 201 and returns the new user's bearer token.
    pub fn add_user(&self, token: &str, name: &str, facility: &str, role: &str) -> String {
        let (s, b) = self.post_json(
            token,
            "/api/users",
            &json!({"name": name, "facility": facility, "role": role}),
        );
        assert_eq!(s, 201, "user {name}: {b}");
        b["token"]["token"].as_str().unwrap().to_string()
    }

    /// `POST /api/patients` of `patient` as `token`; asserts 201 and returns the regional ID.
    pub fn enroll(&self, token: &str, patient: &Value) -> String {
        let (s, b) = self.post_json(token, "/api/patients", patient);
        assert_eq!(s, 201, "enrol: {b}");
        b["id"].as_str().unwrap().to_string()
    }

    /// `POST /api/patients/{rid}/cards` as `token`; asserts 201 and returns the card number.
    pub fn issue_card(&self, token: &str, rid: &str) -> String {
        let (s, b) = self.post_json(token, &format!("/api/patients/{rid}/cards"), &json!({}));
        assert_eq!(s, 201, "card: {b}");
        b["number"].as_str().unwrap().to_string()
    }

    /// `POST /api/patients/{rid}/links` of a facility's local ID as `token`; asserts 200.
    pub fn link(&self, token: &str, rid: &str, issuer: &str, patient_id: &str) {
        let (s, b) = self.post_json(
            token,
            &format!("/api/patients/{rid}/links"),
            &json!({"issuer": issuer, "patient_id": patient_id}),
        );
        assert_eq!(s, 200, "link {issuer}|{patient_id}: {b}");
    }

    /// `POST /api/patients/{rid}/consent` of `consent` as `token`; asserts 200.
    pub fn set_consent(&self, token: &str, rid: &str, consent: &Value) {
        let (s, b) = self.post_json(token, &format!("/api/patients/{rid}/consent"), consent);
        assert_eq!(s, 200, "consent {consent}: {b}");
    }

    /// `POST /api/encounters/checkin` of `card` as `token`; asserts 200 and returns the answer.
    pub fn checkin(&self, token: &str, card: &str) -> Value {
        let (s, b) = self.post_json(token, "/api/encounters/checkin", &json!({"card": card}));
        assert_eq!(s, 200, "check-in: {b}");
        b
    }
}

/// Validate (label, resource) pairs with Python `fhir.resources` (tests/peers/fhir_validate.py,
/// its list file written in `dir`); fails naming the ones that do not, else returns its
/// answer line of each.
pub fn validate_fhir(dir: &Path, items: &[(String, Value)]) -> Vec<Value> {
    let file = dir.join("fhir-validate.json");
    let list: Vec<Value> = items.iter().map(|(l, v)| json!([l, v])).collect();
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let script = std::env::current_dir()
        .unwrap()
        .join("tests/peers/fhir_validate.py");
    let out = Command::new(peer_python())
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "fhir_validate.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), items.len());
    let bad: Vec<&Value> = lines.iter().filter(|l| l["ok"] != true).collect();
    assert!(
        bad.is_empty(),
        "{} of {} resources do not validate: {:#?}",
        bad.len(),
        items.len(),
        bad
    );
    lines
}
