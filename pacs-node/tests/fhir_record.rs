//! Issue 7, "what it must show" 1–3, against a real node: the shared clinical record over
//! FHIR R4. Three facilities (clinic A, lab B, hospital C with a CT modality) record a
//! diagnosis, a prescription, HbA1c results and a CT pushed with DCMTK `storescu`; a
//! doctor at C with the card checked in sees everything in `$everything` ordered by date,
//! and C's second HbA1c order and duplicate prescription raise DetectedIssues naming A
//! and B; an EMS crew gets `$summary` by card only after break-glass, audited; every
//! resource the API returns validates with Python `fhir.resources`, and the
//! CapabilityStatement lists exactly what answers.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{modified_copy, storescu_as, validate_fhir, HttpAnswer as Answer, Node};
use serde_json::{json, Value};

const A: &str = "1310000001";
const B: &str = "1310000002";
const C: &str = "1310000003";
const D: &str = "1310000004";
const LOINC: &str = "http://loinc.org";
const JLAC10: &str = "urn:oid:1.2.392.200119.4.504";
const YJ: &str = "urn:oid:1.2.392.100495.20.1.73";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
const REGIONAL_SYSTEM: &str = "http://renkei.invalid/fhir/sid/regional-patient-id";

/// One HTTP/1.1 request of a FHIR body with a bearer token and extra headers.
fn request(
    node: &Node,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Answer {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut all = vec![("Content-Type", "application/fhir+json")];
    all.extend_from_slice(headers);
    node.request(token, method, path, &all, body.as_bytes())
}

fn get(node: &Node, token: &str, path: &str) -> Answer {
    request(node, Some(token), "GET", path, None, &[])
}

fn post(node: &Node, token: &str, path: &str, body: &Value) -> Answer {
    request(node, Some(token), "POST", path, Some(body), &[])
}

/// Days since the epoch → `YYYY-MM-DD`.
fn civil(days: i64) -> String {
    let (y, m, d) = renkei_model::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn today() -> i64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64
}

/// `YYYY-MM-DD` of `n` days ago.
fn day(n: i64) -> String {
    civil(today() - n)
}

/// A dateTime of `n` days ago (01:00 UTC).
fn at(n: i64) -> String {
    format!("{}T01:00:00Z", day(n))
}

/// The clinical date of a resource, comparable as text (dates and UTC dateTimes).
fn clinical_date(r: &Value) -> String {
    let f = |p: &str| r.pointer(p).and_then(Value::as_str).map(str::to_string);
    f("/period/start")
        .or_else(|| f("/onsetDateTime"))
        .or_else(|| f("/effectiveDateTime"))
        .or_else(|| f("/authoredOn"))
        .or_else(|| f("/recordedDate"))
        .or_else(|| f("/identifiedDateTime"))
        .or_else(|| f("/started"))
        .or_else(|| f("/date"))
        .unwrap_or_default()
}

fn resources_of(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["search"]["mode"] != "outcome")
        .map(|e| e["resource"].clone())
        .collect()
}

fn ids_of(bundle: &Value, t: &str) -> Vec<String> {
    resources_of(bundle)
        .iter()
        .filter(|r| r["resourceType"] == t)
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Everything a test needs: the node, tokens, the patient, the records created.
struct Record {
    node: Node,
    admin: String,
    doctor_a: String,
    tech_b: String,
    doctor_c: String,
    doctor_d: String,
    ems: String,
    patient: String,
    card: String,
    study_uid: String,
    /// type → ids created, in order.
    ids: BTreeMap<&'static str, Vec<String>>,
    /// Every JSON answer worth validating: (label, resource).
    seen: Vec<(String, Value)>,
}

impl Record {
    fn keep(&mut self, label: &str, v: &Value) {
        self.seen.push((label.to_string(), v.clone()));
    }

    fn id(&self, t: &str, i: usize) -> String {
        self.ids[t][i].clone()
    }

    /// Create as `token`; asserts 201 and keeps the answer.
    fn create(&mut self, token: &str, r: Value) -> Answer {
        let t = r["resourceType"].as_str().unwrap().to_string();
        let a = post(&self.node, token, &format!("/fhir/{t}"), &r);
        assert_eq!(a.status, 201, "create {t}: {}", a.json());
        let v = a.json();
        let id = v["id"].as_str().unwrap().to_string();
        assert_eq!(
            a.header_all("location"),
            vec![format!("/fhir/{t}/{id}/_history/1").as_str()]
        );
        assert_eq!(a.header_all("etag"), vec!["W/\"1\""]);
        assert_eq!(v["meta"]["versionId"], "1");
        let t: &'static str = Box::leak(t.into_boxed_str());
        self.ids.entry(t).or_default().push(id);
        self.keep(&format!("create {t}"), &v);
        a
    }
}

fn subject(p: &str) -> Value {
    json!({"reference": format!("Patient/{p}")})
}

fn hba1c_observation(p: &str, days_ago: i64, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [
            {"system": JLAC10, "code": "3D046000001920402", "display": "HbA1c(NGSP)"},
            {"system": LOINC, "code": "4548-4", "display": "Hemoglobin A1c/Hemoglobin.total in Blood"}],
            "text": "HbA1c"},
        "subject": subject(p),
        "effectiveDateTime": at(days_ago),
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "referenceRange": [{"low": {"value": 4.6, "unit": "%"}, "high": {"value": 6.2, "unit": "%"}}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}]
    })
}

fn statin(p: &str, code: &str, name: &str, days_ago: i64) -> Value {
    json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": YJ, "code": code, "display": name}], "text": name},
        "subject": subject(p),
        "authoredOn": at(days_ago),
        "dosageInstruction": [{"text": "1日1回 朝食後 1錠",
            "route": {"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationRouteHL70162_CS", "code": "PO", "display": "口"}]},
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "錠"}}]}],
        "dispenseRequest": {"expectedSupplyDuration": {"value": 90, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"}}
    })
}

fn hba1c_order(p: &str) -> Value {
    json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": LOINC, "code": "4548-4"}], "text": "HbA1c"},
        "subject": subject(p),
        "authoredOn": at(0)
    })
}

/// The corpus CT as hospital C's modality sends it: local ID C-7788, no issuer,
/// study date 5 days ago, chest.
fn ct_file(dir: &Path, uid: &str) -> PathBuf {
    let date = day(5).replace('-', "");
    modified_copy("valid/CT_small.dcm", &dir.join("ct.dcm"), |c| {
        c.args(["-nb", "-imt", "-ea", "(0010,0021)"])
            .args(["-i", "(0010,0020)=C-7788"])
            .args(["-i", &format!("(0020,000d)={uid}")])
            .args(["-i", &format!("(0008,0020)={date}")])
            .args(["-i", "(0018,0015)=CHEST"])
            .args(["-gse", "-gin"])
    })
}

/// The region and the record of the scenario (issue 7 point 2), up to the CT being
/// linked; C has not checked the patient in yet.
fn build(dir: &Path) -> Record {
    let node = Node::start(&dir.join("data"));
    let admin = node.admin_token();
    for (code, name, kind, ae, phone) in [
        (A, "Sakura Clinic", "clinic", None, "03-1111-1111"),
        (B, "Midori Lab", "laboratory", None, "03-2222-2222"),
        (C, "Chuo Hospital", "hospital", Some("CT_C"), "03-3333-3333"),
        (D, "Kita Hospital", "hospital", None, "03-4444-4444"),
        ("EMS1", "City EMS", "ems", None, "119"),
    ] {
        node.add_facility(&admin, code, name, kind, ae, Some(phone));
    }
    let user = |facility: &str, role: &str| {
        node.add_user(&admin, &format!("{role}@{facility}"), facility, role)
    };
    let doctor_a = user(A, "doctor");
    let tech_b = user(B, "technologist");
    let doctor_c = user(C, "doctor");
    let doctor_d = user(D, "doctor");
    let ems = user("EMS1", "ems-crew");
    let patient = node.enroll(
        &admin,
        &json!({"family": "佐藤", "given": "花子", "family_kana": "サトウ", "given_kana": "ハナコ",
                "birth_date": "1958-10-10", "sex": "female", "consent": true, "phone": "090-0000-0000",
                "local_ids": [{"issuer": A, "patient_id": "A-100"}, {"issuer": B, "patient_id": "B-200"}]}),
    );
    let card = node.issue_card(&admin, &patient);
    let study_uid = format!("1.2.826.0.1.3680043.10.1459.77.{}", std::process::id());
    let mut r = Record {
        node,
        admin,
        doctor_a,
        tech_b,
        doctor_c,
        doctor_d,
        ems,
        patient: patient.clone(),
        card,
        study_uid,
        ids: BTreeMap::new(),
        seen: Vec::new(),
    };
    let p = patient.as_str();
    let (da, tb) = (r.doctor_a.clone(), r.tech_b.clone());

    // clinic A: a visit, a diagnosis (ICD-10), a prescription, an allergy, a letter
    r.create(
        &da,
        json!({"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
               "type": [{"text": "外来 (outpatient visit)"}],
               "subject": subject(p), "period": {"start": at(61), "end": at(61)}}),
    );
    let enc = r.id("Encounter", 0);
    r.create(
        &da,
        json!({"resourceType": "Condition",
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
               "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
               "code": {"coding": [{"system": ICD10, "code": "E11.9", "display": "2型糖尿病"}], "text": "2型糖尿病"},
               "subject": subject(p), "encounter": {"reference": format!("Encounter/{enc}")},
               "onsetDateTime": at(60), "recordedDate": at(60)}),
    );
    r.create(&da, statin(p, "2189015F1022", "リピトール錠10mg", 59));
    r.create(
        &da,
        json!({"resourceType": "AllergyIntolerance",
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
               "category": ["medication"], "criticality": "high",
               "code": {"text": "ペニシリン系抗菌薬"},
               "patient": subject(p), "recordedDate": at(58)}),
    );
    let letter = "紹介状: 2型糖尿病 加療中。ご高診のほどよろしくお願いいたします。";
    r.create(
        &da,
        json!({"resourceType": "DocumentReference", "status": "current",
               "type": {"coding": [{"system": LOINC, "code": "57133-1", "display": "Referral note"}]},
               "subject": subject(p), "date": format!("{}T02:00:00Z", day(57)),
               "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "title": "紹介状",
                   "data": base64(letter.as_bytes())}}]}),
    );
    // lab B: two HbA1c results, 45 and 10 days ago
    r.create(&tb, hba1c_observation(p, 45, 7.4));
    r.create(&tb, hba1c_observation(p, 10, 7.1));

    // hospital C's modality pushes a CT under its own local ID; it is linked afterwards
    storescu_as(&r.node, "CT_C", &[], &[ct_file(dir, &r.study_uid)]);
    r.node.link(&r.admin, p, C, "C-7788");
    r
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                char::from(T[(n >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

fn checkin(r: &Record, token: &str) {
    r.node.checkin(token, &r.card);
}

/// The DetectedIssues a create answered with (Link headers), read back.
fn detected_issues(r: &mut Record, token: &str, created: &Answer) -> Vec<Value> {
    let mut out = Vec::new();
    for link in created.header_all("link") {
        let url = link
            .trim_start_matches('<')
            .split_once('>')
            .unwrap()
            .0
            .to_string();
        let path = &url[url.find("/fhir/").unwrap()..];
        let a = get(&r.node, token, path);
        assert_eq!(a.status, 200, "{}", a.json());
        let v = a.json();
        r.keep("read DetectedIssue", &v);
        r.ids
            .entry("DetectedIssue")
            .or_default()
            .push(v["id"].as_str().unwrap().to_string());
        out.push(v);
    }
    out
}

#[test]
fn scenario_three_facilities_timeline_and_duplicate_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = build(dir.path());
    let p = r.patient.clone();
    let dc = r.doctor_c.clone();

    // before check-in: C sees its own CT (its local ID is linked) but none of A's or B's
    let a = get(&r.node, &dc, &format!("/fhir/Patient/{p}/$everything"));
    assert_eq!(a.status, 200, "{}", a.json());
    let before = a.json();
    assert_eq!(ids_of(&before, "ImagingStudy"), vec![r.study_uid.clone()]);
    assert!(ids_of(&before, "Condition").is_empty(), "{before}");
    let outcome = before["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("a warning that records were withheld");
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("treating relationship"),
        "{outcome}"
    );
    // a doctor of a facility without any tie to the patient: 403
    let a = get(
        &r.node,
        &r.doctor_d,
        &format!("/fhir/Patient/{p}/$everything"),
    );
    assert_eq!(a.status, 403, "{}", a.json());
    assert_eq!(a.json()["resourceType"], "OperationOutcome");

    // with the card checked in at C, everything, ordered by date
    checkin(&r, &dc);
    let a = get(&r.node, &dc, &format!("/fhir/Patient/{p}/$everything"));
    assert_eq!(a.status, 200, "{}", a.json());
    let all = a.json();
    let rs = resources_of(&all);
    let types: Vec<&str> = rs
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "Patient",
            "Consent",
            "Encounter",
            "Condition",
            "MedicationRequest",
            "AllergyIntolerance",
            "DocumentReference",
            "Observation",
            "Observation",
            "ImagingStudy"
        ],
        "{all}"
    );
    assert_eq!(all["total"], 10);
    let dates: Vec<String> = rs[2..].iter().map(clinical_date).collect();
    let mut sorted = dates.clone();
    sorted.sort();
    assert_eq!(dates, sorted, "$everything is ordered by date");
    let facility_of = |r: &Value| {
        r["extension"]
            .as_array()
            .and_then(|x| {
                x.iter()
                    .find(|e| e["url"].as_str().unwrap().ends_with("recording-facility"))
            })
            .map(|e| e["valueReference"]["display"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(facility_of(&rs[3]), "Sakura Clinic");
    assert_eq!(facility_of(&rs[7]), "Midori Lab");
    assert_eq!(facility_of(&rs[9]), "Chuo Hospital");
    let ct = &rs[9];
    assert_eq!(ct["modality"][0]["code"], "CT");
    assert_eq!(ct["numberOfInstances"], 1);
    assert_eq!(ct["series"][0]["bodySite"]["code"], "CHEST");
    assert!(ct["contained"][0]["address"]
        .as_str()
        .unwrap()
        .ends_with("/dicom-web"));
    r.keep("$everything", &all);

    // paging: one at a time, following next links
    let mut seen = 0;
    let mut path = format!("/fhir/Patient/{p}/$everything?_count=4");
    loop {
        let a = get(&r.node, &dc, &path);
        assert_eq!(a.status, 200, "{}", a.json());
        let b = a.json();
        seen += resources_of(&b).len();
        let next = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
        match next {
            Some(u) => path = u[u.find("/fhir/").unwrap()..].to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 10);

    // C orders HbA1c again: lab B's result of 10 days ago is within the 30-day window,
    // the one of 45 days ago is not
    let created = r.create(&dc, hba1c_order(&p));
    let issues = detected_issues(&mut r, &dc, &created);
    assert_eq!(issues.len(), 1, "one DetectedIssue");
    let di = &issues[0];
    assert_eq!(di["code"]["coding"][0]["code"], "DUPTHPY");
    assert_eq!(
        di["code"]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    );
    let detail = di["detail"].as_str().unwrap();
    assert!(detail.contains("Midori Lab"), "{detail}");
    assert!(detail.contains(&day(10)), "{detail}");
    assert!(!detail.contains(&day(45)), "{detail}");
    let implicated: Vec<&str> = di["implicated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    let sr = r.id("ServiceRequest", 0);
    let obs_recent = format!("Observation/{}", r.id("Observation", 1));
    assert_eq!(
        implicated,
        vec![format!("ServiceRequest/{sr}").as_str(), obs_recent.as_str()]
    );

    // the same prescription as A's, and another statin: both flagged, naming A
    let created = r.create(&dc, statin(&p, "2189015F1022", "リピトール錠10mg", 0));
    let issues = detected_issues(&mut r, &dc, &created);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["severity"], "high");
    let detail = issues[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("Sakura Clinic") && detail.contains(&day(59)),
        "{detail}"
    );
    let created = r.create(&dc, statin(&p, "2189017F1028", "クレストール錠2.5mg", 0));
    let issues = detected_issues(&mut r, &dc, &created);
    // A's atorvastatin is the same class; C's own atorvastatin of a moment ago too
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0]["severity"], "moderate");
    let detail = issues[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("statins") && detail.contains("Sakura Clinic"),
        "{detail}"
    );
    // OperationOutcome instead of the resource when asked
    let a = request(
        &r.node,
        Some(&dc),
        "POST",
        "/fhir/ServiceRequest",
        Some(&hba1c_order(&p)),
        &[("Prefer", "return=OperationOutcome")],
    );
    assert_eq!(a.status, 201);
    let oo = a.json();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"][1]["details"]["coding"][0]["code"], "DUPTHPY");
    r.keep("create with Prefer: return=OperationOutcome", &oo);

    // $check: the same answer, nothing stored
    let count = |r: &Record| {
        get(&r.node, &dc, &format!("/fhir/DetectedIssue?patient={p}")).json()["total"]
            .as_u64()
            .unwrap()
    };
    let before = count(&r);
    let a = post(
        &r.node,
        &dc,
        "/fhir/MedicationRequest/$check",
        &statin(&p, "2189016F1020", "リバロ錠1mg", 0),
    );
    assert_eq!(a.status, 200, "{}", a.json());
    let check = a.json();
    assert_eq!(check["type"], "collection");
    let di = &check["entry"][0]["resource"];
    assert_eq!(di["resourceType"], "DetectedIssue");
    assert!(di["detail"].as_str().unwrap().contains("Sakura Clinic"));
    assert_eq!(count(&r), before, "$check stores nothing");
    r.keep("$check", &check);
    let a = post(
        &r.node,
        &dc,
        "/fhir/ServiceRequest/$check",
        &json!({
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"coding": [{"system": LOINC, "code": "2345-7"}]}, "subject": subject(&p)}),
    );
    assert_eq!(a.status, 200, "{}", a.json());
    assert!(
        a.json()["entry"].is_null(),
        "no duplicate: an empty collection"
    );

    // searches: code, date, sort, paging, include
    let q = format!("/fhir/Observation?patient={p}&code={LOINC}%7C4548-4&_sort=date&_count=1");
    let a = get(&r.node, &dc, &q);
    assert_eq!(a.status, 200, "{}", a.json());
    let b = a.json();
    assert_eq!(b["total"], 2);
    assert_eq!(ids_of(&b, "Observation"), vec![r.id("Observation", 0)]);
    let next = b["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("next link")["url"]
        .as_str()
        .unwrap()
        .to_string();
    let a = get(&r.node, &dc, &next[next.find("/fhir/").unwrap()..]);
    assert_eq!(
        ids_of(&a.json(), "Observation"),
        vec![r.id("Observation", 1)]
    );
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/Observation?patient=Patient/{p}&date=ge{}", day(20)),
    );
    assert_eq!(
        ids_of(&a.json(), "Observation"),
        vec![r.id("Observation", 1)]
    );
    let a = get(
        &r.node,
        &dc,
        &format!(
            "/fhir/Observation?subject={p}&date=lt{}&date=ge{}",
            day(20),
            day(50)
        ),
    );
    assert_eq!(
        ids_of(&a.json(), "Observation"),
        vec![r.id("Observation", 0)]
    );
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/Condition?patient={p}&code=E11.9&clinical-status=active&_include=Condition:encounter"),
    );
    let b = a.json();
    assert_eq!(b["total"], 1, "{b}");
    assert_eq!(ids_of(&b, "Encounter"), vec![r.id("Encounter", 0)]);
    r.keep("search Condition with _include", &b);
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/DetectedIssue?patient={p}&_include=DetectedIssue:implicated"),
    );
    let b = a.json();
    assert!(
        ids_of(&b, "Observation").contains(&r.id("Observation", 1)),
        "{b}"
    );
    r.keep("search DetectedIssue with _include", &b);
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/MedicationRequest?patient={p}&status=active&code={YJ}%7C2189015F1022"),
    );
    assert_eq!(a.json()["total"], 2);
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/ImagingStudy?patient={p}&modality=CT"),
    );
    assert_eq!(ids_of(&a.json(), "ImagingStudy"), vec![r.study_uid.clone()]);
    // the thumbnail link of the study answers
    let a = get(
        &r.node,
        &dc,
        &format!("/dicom-web/studies/{}/thumbnail", r.study_uid),
    );
    assert_eq!(a.status, 200, "thumbnail");

    // update: versioned, If-Match, the recording facility only
    let cond = r.id("Condition", 0);
    let a = get(&r.node, &r.doctor_a, &format!("/fhir/Condition/{cond}"));
    let mut v = a.json();
    v["clinicalStatus"]["coding"][0]["code"] = json!("remission");
    let put = |token: &str, v: &Value, m: &str| {
        request(
            &r.node,
            Some(token),
            "PUT",
            &format!("/fhir/Condition/{cond}"),
            Some(v),
            &[("If-Match", m)],
        )
    };
    let a = put(&r.doctor_c, &v, "W/\"1\"");
    assert_eq!(a.status, 403, "only A updates A's record: {}", a.json());
    let a = put(&r.doctor_a, &v, "W/\"1\"");
    assert_eq!(a.status, 200, "{}", a.json());
    assert_eq!(a.json()["meta"]["versionId"], "2");
    assert_eq!(a.header_all("etag"), vec!["W/\"2\""]);
    let a = put(&r.doctor_a, &v, "W/\"1\"");
    assert_eq!(a.status, 412, "{}", a.json());
    assert_eq!(a.json()["resourceType"], "OperationOutcome");
    let a = get(&r.node, &dc, &format!("/fhir/Condition/{cond}/_history/1"));
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["clinicalStatus"]["coding"][0]["code"], "active");
    let a = get(&r.node, &dc, &format!("/fhir/Condition/{cond}/_history"));
    let h = a.json();
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 2);
    assert_eq!(h["entry"][0]["resource"]["meta"]["versionId"], "2");
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/Condition?patient={p}&clinical-status=active"),
    );
    assert_eq!(a.json()["total"], 0, "the search sees the new version only");

    // the DocumentReference's attachment is a file behind Binary, under the policy
    let doc = get(
        &r.node,
        &dc,
        &format!("/fhir/DocumentReference/{}", r.id("DocumentReference", 0)),
    )
    .json();
    let url = doc["content"][0]["attachment"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(doc["content"][0]["attachment"]["data"].is_null());
    // served absolute, at the address the client used
    let base = format!("http://127.0.0.1:{}", r.node.http_port);
    let path = url
        .strip_prefix(&base)
        .unwrap_or_else(|| panic!("{url} is not under {base}"));
    assert!(path.starts_with("/fhir/Binary/"), "{url}");
    let a = get(&r.node, &dc, path);
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).starts_with("紹介状"));
    let a = get(&r.node, &r.doctor_d, path);
    assert_eq!(a.status, 403);
    // another document's file cannot be attached by its hash (nor probed for)
    let mut borrowed = doc["content"][0]["attachment"].clone();
    borrowed.as_object_mut().unwrap().remove("url");
    let a = post(
        &r.node,
        &r.doctor_a,
        "/fhir/DocumentReference",
        &json!({"resourceType": "DocumentReference", "status": "current",
                "subject": subject(&p), "content": [{"attachment": borrowed}]}),
    );
    assert_eq!(a.status, 422, "{}", a.json());
    let docs = std::fs::read_dir(r.node.data_dir.join("documents"))
        .unwrap()
        .count();
    assert_eq!(docs, 1, "one attachment file");

    // errors are OperationOutcomes with the right status
    let p2 = p.clone();
    let cases: Vec<(u16, Answer)> = vec![
        (
            422,
            post(
                &r.node,
                &dc,
                "/fhir/Condition",
                &json!({"resourceType": "Condition", "code": {"text": "x"}}),
            ),
        ),
        (
            422,
            post(
                &r.node,
                &dc,
                "/fhir/Observation",
                &json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": subject(&p2), "effectiveDateTime": "2024-13-01"}),
            ),
        ),
        (
            400,
            post(
                &r.node,
                &dc,
                "/fhir/Condition",
                &json!({"resourceType": "Observation"}),
            ),
        ),
        (400, get(&r.node, &dc, "/fhir/Observation?code=4548-4")),
        (
            400,
            get(
                &r.node,
                &dc,
                &format!("/fhir/Observation?patient={p2}&date=yesterday"),
            ),
        ),
        (
            400,
            get(
                &r.node,
                &dc,
                &format!("/fhir/Observation?patient={p2}&_sort=code"),
            ),
        ),
        (400, get(&r.node, &dc, "/fhir/Observation?patient=12345")),
        (404, get(&r.node, &dc, "/fhir/Condition/999999")),
        (
            404,
            get(&r.node, &dc, &format!("/fhir/Condition/{cond}/_history/9")),
        ),
        (404, get(&r.node, &dc, "/fhir/Practitioner/1")),
        (
            405,
            post(
                &r.node,
                &dc,
                "/fhir/ImagingStudy",
                &json!({"resourceType": "ImagingStudy"}),
            ),
        ),
        (
            403,
            post(
                &r.node,
                &r.doctor_d,
                "/fhir/Condition",
                &json!({"resourceType": "Condition", "subject": subject(&p2)}),
            ),
        ),
        (
            403,
            post(
                &r.node,
                &r.ems,
                "/fhir/Condition",
                &json!({"resourceType": "Condition", "subject": subject(&p2)}),
            ),
        ),
        (
            403,
            post(
                &r.node,
                &r.admin,
                "/fhir/Condition",
                &json!({"resourceType": "Condition", "subject": subject(&p2)}),
            ),
        ),
    ];
    for (want, a) in cases {
        let v = a.json();
        assert_eq!(a.status, want, "{v}");
        assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
        r.keep(&format!("error {want}"), &v);
    }
    let a = request(
        &r.node,
        None,
        "GET",
        &format!("/fhir/Condition?patient={p}"),
        None,
        &[],
    );
    assert_eq!(a.status, 401);

    // consent excluding medication: A's prescriptions leave C's view, and a duplicate
    // check no longer names them (C's own prescriptions stay C's)
    r.node.set_consent(
        &r.admin,
        &p,
        &json!({"given": true, "excluded_categories": ["medication"]}),
    );
    let created = r.create(&dc, statin(&p, "2189015F1022", "リピトール錠10mg", 0));
    let issues = detected_issues(&mut r, &dc, &created);
    let detail = issues[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("Chuo Hospital") && !detail.contains("Sakura"),
        "{detail}"
    );
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/MedicationRequest?patient={p}"),
    );
    let meds = resources_of(&a.json());
    assert_eq!(meds.len(), 3, "C's three prescriptions only");
    assert!(meds.iter().all(|m| facility_of(m) == "Chuo Hospital"));
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/MedicationRequest/{}", r.id("MedicationRequest", 0)),
    );
    assert_eq!(a.status, 403, "{}", a.json());

    // the audit trail: one record per interaction, creates included
    let a = get(&r.node, &r.admin, &format!("/api/audit?patient={p}"));
    let recs = a.json();
    let actions: Vec<&str> = recs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "FHIR create ServiceRequest")
            .count(),
        2
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "FHIR $everything").count(),
        6
    );
    assert!(actions.contains(&"FHIR $check MedicationRequest"));
    validate(dir.path(), &r.seen);
}

#[test]
fn patient_search_by_identifier_goes_through_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = build(dir.path());
    let p = r.patient.clone();
    let da = r.doctor_a.clone();
    let found = |r: &mut Record, token: &str, query: &str| -> Vec<String> {
        let a = get(&r.node, token, &format!("/fhir/Patient?{query}"));
        assert_eq!(a.status, 200, "{query}: {}", a.json());
        let b = a.json();
        assert_eq!(b["type"], "searchset", "{b}");
        r.keep(&format!("Patient search {query}"), &b);
        ids_of(&b, "Patient")
    };
    // the regional ID on the card, with or without its system, or as _id
    assert_eq!(
        found(&mut r, &da, &format!("identifier={REGIONAL_SYSTEM}|{p}")),
        [p.as_str()]
    );
    assert_eq!(found(&mut r, &da, &format!("identifier={p}")), [p.as_str()]);
    assert_eq!(found(&mut r, &da, &format!("_id={p}")), [p.as_str()]);
    // clinic A's own local ID, bare (the reader's facility) or with A's system as the
    // Patient resource names it
    assert_eq!(found(&mut r, &da, "identifier=A-100"), [p.as_str()]);
    let pat = get(&r.node, &da, &format!("/fhir/Patient/{p}")).json();
    let system = pat["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["value"] == "A-100")
        .and_then(|i| i["system"].as_str())
        .unwrap()
        .to_string();
    assert_eq!(
        found(&mut r, &da, &format!("identifier={system}|A-100")),
        [p.as_str()]
    );
    // B's local ID is not A's: bare it names nobody at A, and with B's system A may not
    // walk B's numbers (only its own)
    assert!(found(&mut r, &da, "identifier=B-200").is_empty());
    let b_system = system.replace(A, B);
    assert!(found(&mut r, &da, &format!("identifier={b_system}|B-200")).is_empty());
    let tb = r.tech_b.clone();
    assert_eq!(
        found(&mut r, &tb, &format!("identifier={b_system}|B-200")),
        [p.as_str()]
    );
    assert!(found(&mut r, &da, "identifier=A-999").is_empty());
    // hospital D has no relationship: the match is withheld, with the reason
    let a = get(
        &r.node,
        &r.doctor_d,
        &format!("/fhir/Patient?identifier={p}"),
    );
    assert_eq!(a.status, 200);
    let b = a.json();
    assert_eq!(b["total"], 0, "{b}");
    assert!(ids_of(&b, "Patient").is_empty());
    assert!(b.to_string().contains("not shown"), "{b}");
    r.keep("Patient search withheld", &b);
    // no browsing the regional index by name; a bad system or an empty value is a 400
    for bad in [
        "name=佐藤".to_string(),
        "birthdate=1958-10-10".to_string(),
        "identifier=urn:other|A-100".to_string(),
        "identifier=".to_string(),
        format!("identifier={p}&identifier=A-100"),
    ] {
        let a = get(&r.node, &da, &format!("/fhir/Patient?{bad}"));
        assert_eq!(a.status, 400, "{bad}: {}", a.json());
        assert_eq!(a.json()["resourceType"], "OperationOutcome");
    }
    // `_include` follows only the searched patient's references: a Condition of this
    // patient pointing at another patient's Encounter does not bring it along
    let other = r.node.enroll(
        &r.admin,
        &json!({"family": "田中", "given": "一郎", "family_kana": "タナカ", "given_kana": "イチロウ",
                "birth_date": "1970-01-01", "sex": "male", "consent": true,
                "local_ids": [{"issuer": A, "patient_id": "A-300"}]}),
    );
    let enc = r.create(
        &da,
        json!({"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": subject(&other), "period": {"start": at(3), "end": at(3)}}),
    );
    let enc = enc.json()["id"].as_str().unwrap().to_string();
    r.create(
        &da,
        json!({"resourceType": "Condition", "code": {"text": "かぜ"},
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
               "subject": subject(&p), "encounter": {"reference": format!("Encounter/{enc}")},
               "recordedDate": at(3)}),
    );
    let b = get(
        &r.node,
        &da,
        &format!("/fhir/Condition?patient={p}&_include=Condition:encounter"),
    )
    .json();
    assert!(!ids_of(&b, "Encounter").contains(&enc), "{b}");
    assert!(!b.to_string().contains(&format!("Patient/{other}")), "{b}");

    // one audit record per search, the denied one too
    let trail = get(&r.node, &r.admin, &format!("/api/audit?patient={p}")).json();
    let searches: Vec<bool> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "FHIR search Patient")
        .map(|e| e["allowed"].as_bool().unwrap())
        .collect();
    assert_eq!(
        searches,
        [true, true, true, true, true, true, false],
        "{trail}"
    );
    validate(dir.path(), &r.seen);
}

#[test]
fn ems_summary_by_card_needs_break_glass_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let r = build(dir.path());
    let p = r.patient.clone();
    let by_card = format!("/fhir/Patient/$summary?card={}", r.card);

    // without break-glass: 403
    let a = get(&r.node, &r.ems, &by_card);
    assert_eq!(a.status, 403, "{}", a.json());
    assert_eq!(a.json()["resourceType"], "OperationOutcome");
    // break the glass, then one call by card number
    let a = post(
        &r.node,
        &r.ems,
        "/api/breakglass",
        &json!({"card": r.card, "reason": "unconscious at the roadside, card in the wallet"}),
    );
    assert_eq!(a.status, 201, "{}", a.json());
    let a = get(&r.node, &r.ems, &by_card);
    assert_eq!(a.status, 200, "{}", a.json());
    let doc = a.json();
    assert_eq!(doc["type"], "document");
    let entries = doc["entry"].as_array().unwrap();
    let comp = &entries[0]["resource"];
    assert_eq!(comp["resourceType"], "Composition");
    assert_eq!(comp["type"]["coding"][0]["code"], "60591-5");
    let section = |code: &str| -> Vec<String> {
        comp["section"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["code"]["coding"][0]["code"] == code)
            .unwrap_or_else(|| panic!("section {code}"))["entry"]
            .as_array()
            .map(|x| {
                x.iter()
                    .map(|e| e["reference"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let ends = |refs: &[String], t: &str, id: &str| {
        refs.iter().any(|x| x.ends_with(&format!("/fhir/{t}/{id}")))
    };
    assert!(ends(
        &section("11450-4"),
        "Condition",
        &r.id("Condition", 0)
    ));
    assert!(ends(
        &section("10160-0"),
        "MedicationRequest",
        &r.id("MedicationRequest", 0)
    ));
    assert!(ends(
        &section("48765-2"),
        "AllergyIntolerance",
        &r.id("AllergyIntolerance", 0)
    ));
    assert_eq!(
        section("30954-2").len(),
        2,
        "both HbA1c results (latest 3 per test)"
    );
    assert!(ends(&section("18748-4"), "ImagingStudy", &r.study_uid));
    assert_eq!(section("85847-2").len(), 3, "A, B and C");
    // the crew reads the summary only: the study is listed, with no thumbnail link it
    // could not follow (a clinician's ImagingStudy carries one, above)
    let imaging = comp["section"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"]["coding"][0]["code"] == "18748-4")
        .unwrap();
    let div = imaging["text"]["div"].as_str().unwrap();
    assert!(div.contains("CT") && !div.contains("/thumbnail"), "{div}");
    let study = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "ImagingStudy")
        .unwrap();
    assert!(!study.to_string().contains("/dicom-web"), "{study}");
    assert!(study
        .get("extension")
        .is_none_or(|x| x.as_array().is_some_and(|a| !a.is_empty())));
    let thumb = format!("/dicom-web/studies/{}/thumbnail", r.study_uid);
    assert_eq!(get(&r.node, &r.ems, &thumb).status, 403);
    let orgs: Vec<(String, String)> = entries
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Organization")
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_string(),
                o["telecom"][0]["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        orgs,
        vec![
            ("Sakura Clinic".to_string(), "03-1111-1111".to_string()),
            ("Midori Lab".to_string(), "03-2222-2222".to_string()),
            ("Chuo Hospital".to_string(), "03-3333-3333".to_string()),
        ]
    );
    // the crew reads the summary only, not the record
    let a = get(&r.node, &r.ems, &format!("/fhir/Condition?patient={p}"));
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["total"], 0);

    // clinicians: with an open relationship yes, without no
    let a = get(&r.node, &r.doctor_d, &format!("/fhir/Patient/{p}/$summary"));
    assert_eq!(a.status, 403, "{}", a.json());
    checkin(&r, &r.doctor_d);
    let a = get(&r.node, &r.doctor_d, &format!("/fhir/Patient/{p}/$summary"));
    assert_eq!(a.status, 200, "{}", a.json());
    // a replaced card: 409
    let a = post(
        &r.node,
        &r.admin,
        &format!("/api/patients/{p}/cards"),
        &json!({}),
    );
    assert_eq!(a.status, 201);
    let a = get(&r.node, &r.ems, &by_card);
    assert_eq!(a.status, 409, "{}", a.json());
    assert_eq!(a.json()["resourceType"], "OperationOutcome");

    // audited: each call one record; the crew's refused and allowed ones, break-glass set
    let a = get(&r.node, &r.admin, &format!("/api/audit?patient={p}"));
    let recs = a.json();
    let summaries: Vec<&Value> = recs
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "FHIR read $summary")
        .collect();
    let crew: Vec<&&Value> = summaries
        .iter()
        .filter(|e| e["role"] == "ems-crew")
        .collect();
    assert_eq!(crew.len(), 2, "{summaries:?}");
    assert_eq!(crew[0]["allowed"], false);
    assert_eq!(crew[0]["break_glass"], false);
    assert_eq!(crew[1]["allowed"], true);
    assert_eq!(crew[1]["break_glass"], true);
    assert_eq!(crew[1]["purpose"], "emergency");
    assert!(crew[1]["detail"].as_str().unwrap().contains("by card"));
    assert_eq!(
        summaries.len(),
        4,
        "crew 2 + doctor D 2; the replaced card is refused before it names anyone"
    );
    let a = get(&r.node, &r.admin, &format!("/fhir/AuditEvent?patient={p}"));
    assert_eq!(a.status, 200);
    let mut seen = r.seen.clone();
    seen.push(("summary".into(), doc));
    seen.push(("AuditEvent search".into(), a.json()));
    validate(dir.path(), &seen);
}

#[test]
fn every_returned_resource_validates_and_the_capability_statement_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = build(dir.path());
    let p = r.patient.clone();
    let dc = r.doctor_c.clone();
    checkin(&r, &dc);
    let created = r.create(&dc, hba1c_order(&p));
    detected_issues(&mut r, &dc, &created);
    r.create(
        &dc,
        json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
               "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "Chest CT"}]},
               "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "51185008", "display": "Thoracic structure"}], "text": "CHEST"}],
               "subject": subject(&p), "authoredOn": at(0)}),
    );
    // the imaging order repeats the CT of 5 days ago
    let a = get(
        &r.node,
        &dc,
        &format!("/fhir/DetectedIssue?patient={p}&_sort=date"),
    );
    let last = resources_of(&a.json()).last().cloned().unwrap();
    assert!(
        last["implicated"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["reference"] == format!("ImagingStudy/{}", r.study_uid)),
        "{last}"
    );

    // the CapabilityStatement is read before signing in; nothing else of /fhir is
    let anonymous = request(&r.node, None, "GET", "/fhir/metadata", None, &[]);
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.json()["resourceType"], "CapabilityStatement");
    let gated = request(
        &r.node,
        None,
        "GET",
        &format!("/fhir/Patient/{p}"),
        None,
        &[],
    );
    assert_eq!(gated.status, 401);
    assert_eq!(gated.json()["resourceType"], "OperationOutcome");
    let md = get(&r.node, &dc, "/fhir/metadata");
    assert_eq!(md.status, 200);
    let cs = md.json();
    r.keep("CapabilityStatement", &cs);
    let binary = get(
        &r.node,
        &dc,
        &format!("/fhir/DocumentReference/{}", r.id("DocumentReference", 0)),
    )
    .json()["content"][0]["attachment"]["url"]
        .as_str()
        .unwrap()
        .rsplit_once("/fhir/Binary/")
        .expect("an absolute Binary URL")
        .1
        .to_string();
    let (study_uid, ids) = (r.study_uid.clone(), r.ids.clone());
    let instance = |t: &str| -> String {
        match t {
            "Patient" | "Consent" => p.clone(),
            "ImagingStudy" => study_uid.clone(),
            "Organization" => A.to_string(),
            "AuditEvent" => "1".to_string(),
            "Binary" => binary.clone(),
            t => ids[t][0].clone(),
        }
    };
    let mut listed = Vec::new();
    for res in cs["rest"][0]["resource"].as_array().unwrap() {
        let t = res["type"].as_str().unwrap().to_string();
        listed.push(t.clone());
        let codes: Vec<&str> = res["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        for code in [
            "read",
            "vread",
            "update",
            "history-instance",
            "search-type",
            "create",
        ] {
            let id = if code == "search-type" || code == "create" {
                String::new()
            } else {
                instance(&t)
            };
            let (status, v) = match code {
                "read" => {
                    let a = request(
                        &r.node,
                        Some(&dc),
                        "GET",
                        &format!("/fhir/{t}/{id}"),
                        None,
                        &[("Accept", "application/fhir+json")],
                    );
                    (a.status, a.json())
                }
                "vread" => {
                    let a = get(&r.node, &dc, &format!("/fhir/{t}/{id}/_history/1"));
                    (a.status, a.json())
                }
                "history-instance" => {
                    let a = get(&r.node, &dc, &format!("/fhir/{t}/{id}/_history"));
                    (a.status, a.json())
                }
                "search-type" => {
                    let token = if t == "AuditEvent" {
                        r.admin.clone()
                    } else {
                        dc.clone()
                    };
                    let query = if t == "Patient" {
                        format!("identifier={REGIONAL_SYSTEM}|{p}")
                    } else {
                        format!("patient={p}")
                    };
                    let a = get(&r.node, &token, &format!("/fhir/{t}?{query}"));
                    (a.status, a.json())
                }
                "update" => {
                    // the recording facility updates its own record
                    let (token, id) = if t == "ServiceRequest" {
                        (dc.clone(), r.ids[&*t][0].clone())
                    } else if t == "Observation" {
                        (r.tech_b.clone(), id)
                    } else {
                        (r.doctor_a.clone(), id)
                    };
                    let cur = get(&r.node, &token, &format!("/fhir/{t}/{id}")).json();
                    let a = request(
                        &r.node,
                        Some(&token),
                        "PUT",
                        &format!("/fhir/{t}/{id}"),
                        Some(&cur),
                        &[],
                    );
                    (a.status, a.json())
                }
                _ => {
                    // creates were made by build(); a POST of an unlisted create must be refused
                    let a = post(
                        &r.node,
                        &dc,
                        &format!("/fhir/{t}"),
                        &json!({"resourceType": t}),
                    );
                    (a.status, a.json())
                }
            };
            if codes.contains(&code) {
                if code == "create" {
                    assert!(
                        t == "Patient" || r.ids.contains_key(t.as_str()),
                        "{t} create was exercised"
                    );
                    continue;
                }
                assert_eq!(status, 200, "{t} {code}: {v}");
                match code {
                    "read" | "vread" => assert_eq!(v["resourceType"], t.as_str(), "{v}"),
                    "history-instance" => assert_eq!(v["type"], "history"),
                    "search-type" => assert_eq!(v["type"], "searchset"),
                    _ => {}
                }
                r.keep(&format!("{t} {code}"), &v);
            } else {
                assert!(
                    [404, 405].contains(&status),
                    "{t} {code} is not listed but answered {status}: {v}"
                );
                assert_eq!(v["resourceType"], "OperationOutcome", "{t} {code}: {v}");
            }
        }
        for op in res["operation"].as_array().into_iter().flatten() {
            let name = op["name"].as_str().unwrap();
            let a = match (t.as_str(), name) {
                ("Patient", "everything") => {
                    get(&r.node, &dc, &format!("/fhir/Patient/{p}/$everything"))
                }
                ("Patient", "summary") => get(
                    &r.node,
                    &dc,
                    &format!("/fhir/Patient/$summary?card={}", r.card),
                ),
                ("ServiceRequest", "check") => post(
                    &r.node,
                    &dc,
                    "/fhir/ServiceRequest/$check",
                    &hba1c_order(&p),
                ),
                ("MedicationRequest", "check") => post(
                    &r.node,
                    &dc,
                    "/fhir/MedicationRequest/$check",
                    &statin(&p, "2189015F1022", "リピトール錠10mg", 0),
                ),
                other => panic!("operation {other:?} listed but not tested"),
            };
            assert_eq!(a.status, 200, "{t} ${name}: {}", a.json());
            r.keep(&format!("{t} ${name}"), &a.json());
        }
    }
    let mut want = vec![
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "AllergyIntolerance",
        "DocumentReference",
        "ServiceRequest",
        "DetectedIssue",
        "ImagingStudy",
        "Consent",
        "AuditEvent",
        "Organization",
        "Binary",
    ];
    want.sort();
    listed.sort();
    assert_eq!(listed, want);
    // types the statement does not list are not served
    for t in [
        "Practitioner",
        "Medication",
        "DiagnosticReport",
        "Composition",
    ] {
        let a = get(&r.node, &dc, &format!("/fhir/{t}?patient={p}"));
        assert_eq!(a.status, 404, "{t}");
        assert_eq!(a.json()["resourceType"], "OperationOutcome");
    }
    let a = get(&r.node, &dc, "/fhir/Organization");
    r.keep("Organization search", &a.json());
    validate(dir.path(), &r.seen);
}

/// Validate every kept answer with fhir.resources (in `dir`); fail naming the ones that
/// do not, and unless they are of five resource types at least.
fn validate(dir: &Path, items: &[(String, Value)]) {
    let lines = validate_fhir(dir, items);
    let types: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l["resourceType"].as_str())
        .collect();
    assert!(types.len() >= 5, "{types:?}");
}
