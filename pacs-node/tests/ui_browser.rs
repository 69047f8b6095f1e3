//! Issue 8, "what it must show" 1–2: the web pages at `/ui/` in headless Chromium (Debian's
//! `chromium`, driven by `playwright-core` from `ui/node_modules`; `scripts/setup.sh`
//! installs both). A real node with three facilities (clinic A, laboratory B, hospital C)
//! and an EMS service; one patient with a card; A records a diagnosis, prescriptions, an
//! allergy, a visit and a letter, B posts lab results, C's modality pushes a two-image CT
//! and C prescribes a second statin (a stored DetectedIssue). Then `ui/tests/ui.spec.mjs`
//! signs in, checks in by card, reads the timeline of three facilities, opens the CT and
//! scrolls, runs the order check, goes through the EMS break-glass flow (and its denial
//! first), checks the Japanese strings, and saves the screenshots to `docs/screenshots/`.
//!
//! With `RENKEI_UI_PERF_YEARS=N` (benches/ui.sh) a second patient gets N years of
//! records through the FHIR API and the spec measures the patient page's first render.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::{modified_copy, storescu_as, Node};
use serde_json::{json, Value};

fn created(node: &Node, token: &str, path: &str, body: &Value) -> Value {
    let (s, v) = node.post_json(token, path, body);
    assert!(s == 200 || s == 201, "POST {path}: {s} {v}");
    v
}

use renkei_model::time::civil_from_days as civil;

fn today() -> i64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64
}

/// The date `offset` days from today, `YYYY-MM-DD`.
fn day(offset: i64) -> String {
    let (y, m, d) = civil(today() + offset);
    format!("{y:04}-{m:02}-{d:02}")
}

const LOINC: &str = "http://loinc.org";
const YJ: &str = "urn:oid:1.2.392.100495.20.1.73";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";

fn coded(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

fn subject(rid: &str) -> Value {
    json!({"reference": format!("Patient/{rid}")})
}

#[allow(clippy::too_many_arguments)]
fn observation(
    rid: &str,
    code: &str,
    name: &str,
    value: f64,
    unit: &str,
    low: f64,
    high: f64,
    date: &str,
) -> Value {
    let mut o = json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": coded(LOINC, code, name), "subject": subject(rid),
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        "referenceRange": [{"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}],
    });
    let flag = if value > high {
        Some("H")
    } else if value < low {
        Some("L")
    } else {
        None
    };
    if let Some(f) = flag {
        o["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": f}]}]);
    }
    o
}

fn prescription(rid: &str, code: &str, name: &str, dose: &str, date: &str, status: &str) -> Value {
    json!({
        "resourceType": "MedicationRequest", "status": status, "intent": "order",
        "subject": subject(rid), "authoredOn": date,
        "medicationCodeableConcept": coded(YJ, code, name),
        "dosageInstruction": [{"text": dose}],
        "dispenseRequest": {"expectedSupplyDuration": {"value": 90, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"}},
    })
}

fn encounter(rid: &str, class: &str, text: &str, date: &str) -> Value {
    json!({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
        "type": [{"text": text}], "subject": subject(rid),
        "period": {"start": date, "end": date},
    })
}

/// The corpus CT as C's modality sends it: local ID, one series, instance `n` of it.
fn ct(dir: &Path, n: u32, local_id: &str) -> PathBuf {
    modified_copy("valid/CT_small.dcm", &dir.join(format!("ct{n}.dcm")), |c| {
        c.args(["-nb", "-imt", "-ea", "(0010,0021)"])
            .args(["-m", &format!("(0010,0020)={local_id}")])
            .args(["-m", "(0020,000d)=1.2.826.0.1.3680043.10.1459.77.1"])
            .args(["-m", "(0020,000e)=1.2.826.0.1.3680043.10.1459.77.1.1"])
            .args(["-m", &format!("(0020,0013)={n}")])
            .args(["-i", &format!("(0008,0020)={}", day(-3).replace('-', ""))])
            .args(["-i", "(0008,1030)=CT chest"])
            .args(["-i", "(0018,0015)=CHEST"])
            .arg("-gin")
    })
}

const STUDY: &str = "1.2.826.0.1.3680043.10.1459.77.1";
const CINE: &str = "1.2.826.0.1.3680043.10.1459.77.2";

/// The corpus' two-frame ultrasound (RLE) as C's modality sends it: for playback.
fn cine(dir: &Path, local_id: &str) -> PathBuf {
    modified_copy("valid/OBXXXX1A_rle_2frame.dcm", &dir.join("us.dcm"), |c| {
        c.args(["-nb", "-imt", "-ea", "(0010,0021)"])
            .args(["-m", &format!("(0010,0020)={local_id}")])
            .args(["-m", &format!("(0020,000d)={CINE}")])
            .args(["-m", &format!("(0020,000e)={CINE}.1")])
            .args(["-i", &format!("(0008,0020)={}", day(-30).replace('-', ""))])
            .args(["-i", "(0008,1030)=US cine"])
            .arg("-gin")
    })
}

fn repo() -> PathBuf {
    std::env::current_dir().unwrap().join("..")
}

fn chromium() -> PathBuf {
    let p = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        p.is_file(),
        "{} missing: run scripts/setup.sh (installs Debian's chromium)",
        p.display()
    );
    p
}

struct Region {
    node: Node,
    admin: String,
    doctor_a: String,
    tech_b: String,
    doctor_c: String,
    doctor_d: String,
    ems: String,
}

fn region(data: &Path) -> Region {
    let node = Node::start(data);
    // the OHIF-style viewer link's template (docs/UI.md)
    std::fs::write(
        data.join("ui-config.json"),
        r#"{"viewer_url": "{base}/ohif/viewer?StudyInstanceUIDs={study}"}"#,
    )
    .unwrap();
    let admin = node.admin_token();
    for (code, name, kind, ae, phone) in [
        (
            "1310000001",
            "あおぞら内科クリニック",
            "clinic",
            None,
            "03-3111-0001",
        ),
        (
            "1310000002",
            "みなと臨床検査センター",
            "laboratory",
            None,
            "03-3111-0002",
        ),
        (
            "1310000003",
            "市立中央病院",
            "hospital",
            Some("MOD_C"),
            "03-3111-0003",
        ),
        ("1310000004", "北町病院", "hospital", None, "03-3111-0004"),
        ("EMS1", "中央消防署 救急隊", "ems", None, "119"),
    ] {
        node.add_facility(&admin, code, name, kind, ae, Some(phone));
    }
    let user = |facility: &str, role: &str, name: &str| node.add_user(&admin, name, facility, role);
    let doctor_a = user("1310000001", "doctor", "佐藤 一郎");
    let tech_b = user("1310000002", "technologist", "高橋 健");
    let doctor_c = user("1310000003", "doctor", "田中 花子");
    let doctor_d = user("1310000004", "doctor", "伊藤 誠");
    let ems = user("EMS1", "ems-crew", "鈴木 翔太");
    Region {
        node,
        admin,
        doctor_a,
        tech_b,
        doctor_c,
        doctor_d,
        ems,
    }
}

/// Enrol a patient (C's local ID linked) and issue a card: (regional ID, card).
fn patient(
    r: &Region,
    family: &str,
    given: &str,
    kana: (&str, &str),
    local: &str,
) -> (String, String) {
    let rid = r.node.enroll(
        &r.admin,
        &json!({"family": family, "given": given, "family_kana": kana.0, "given_kana": kana.1,
                "birth_date": "1958-04-01", "sex": "male", "consent": true,
                "local_ids": [{"issuer": "1310000003", "patient_id": local}]}),
    );
    let card = r.node.issue_card(&r.admin, &rid);
    (rid, card)
}

fn checkin(r: &Region, token: &str, card: &str) {
    r.node.checkin(token, card);
}

/// Three facilities' records of the test patient.
fn record(r: &Region, rid: &str) {
    let n = &r.node;
    let a = &r.doctor_a;
    // clinic A: a diagnosis, two prescriptions, an allergy, visits, a referral letter
    created(
        n,
        a,
        "/fhir/Encounter",
        &encounter(rid, "AMB", "内科外来 / internal medicine", &day(-400)),
    );
    created(
        n,
        a,
        "/fhir/Encounter",
        &encounter(rid, "AMB", "内科外来 / internal medicine", &day(-25)),
    );
    created(
        n,
        a,
        "/fhir/Condition",
        &json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": coded(ICD10, "E11.9", "2型糖尿病 / type 2 diabetes"), "subject": subject(rid),
            "onsetDateTime": day(-400)}),
    );
    created(
        n,
        a,
        "/fhir/Condition",
        &json!({"resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": coded(ICD10, "E78.5", "脂質異常症 / dyslipidaemia"), "subject": subject(rid),
            "onsetDateTime": day(-200)}),
    );
    created(
        n,
        a,
        "/fhir/MedicationRequest",
        &prescription(
            rid,
            "3962002F1024",
            "メトホルミン塩酸塩錠250mg / metformin",
            "1回1錠 1日2回 朝夕食後",
            &day(-25),
            "active",
        ),
    );
    created(
        n,
        a,
        "/fhir/MedicationRequest",
        &prescription(
            rid,
            "2189015F1022",
            "アトルバスタチン錠10mg / atorvastatin",
            "1回1錠 1日1回 夕食後",
            &day(-25),
            "active",
        ),
    );
    created(
        n,
        a,
        "/fhir/AllergyIntolerance",
        &json!({"resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "category": ["medication"], "criticality": "high",
            "code": {"text": "ペニシリン / penicillin"}, "patient": subject(rid),
            "reaction": [{"manifestation": [{"text": "アナフィラキシー / anaphylaxis"}]}],
            "recordedDate": day(-400)}),
    );
    created(
        n,
        a,
        "/fhir/DocumentReference",
        &json!({"resourceType": "DocumentReference", "status": "current",
            "type": {"text": "紹介状 / referral letter"}, "subject": subject(rid),
            "description": "紹介状（市立中央病院 宛） / referral to the city hospital", "date": format!("{}T10:00:00+09:00", day(-20)),
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "title": "referral.txt",
                "data": "5biC56uL5Lit5aSu55eF6Zmi44CA5b6h5Lit"}}]}),
    );
    // laboratory B: HbA1c and LDL results over a year
    for (d, hba1c, ldl) in [
        (-380, 6.6, 150.0),
        (-290, 6.9, 142.0),
        (-200, 7.2, 138.0),
        (-110, 7.4, 121.0),
        (-18, 7.8, 96.0),
    ] {
        created(
            n,
            &r.tech_b,
            "/fhir/Observation",
            &observation(rid, "4548-4", "HbA1c", hba1c, "%", 4.6, 6.2, &day(d)),
        );
        created(
            n,
            &r.tech_b,
            "/fhir/Observation",
            &observation(
                rid,
                "13457-7",
                "LDL コレステロール",
                ldl,
                "mg/dL",
                70.0,
                139.0,
                &day(d),
            ),
        );
    }
    created(
        n,
        &r.tech_b,
        "/fhir/Encounter",
        &encounter(rid, "AMB", "検体採取 / specimen collection", &day(-18)),
    );
    // hospital C: a second statin while A's is active → a DetectedIssue naming A
    let (s, v) = n.post_json(
        &r.doctor_c,
        "/fhir/MedicationRequest",
        &prescription(
            rid,
            "2189017F1028",
            "ロスバスタチン錠2.5mg / rosuvastatin",
            "1回1錠 1日1回",
            &day(-3),
            "active",
        ),
    );
    assert_eq!(s, 201, "{v}");
}

/// `years` of monthly records of a chronic patient (benches/ui.sh): visits, 12 lab tests,
/// prescriptions renewed, letters. Returns the number of resources created.
fn history(r: &Region, rid: &str, years: i64) -> usize {
    let n = &r.node;
    let tests: [(&str, &str, f64, &str, f64, f64); 12] = [
        ("4548-4", "HbA1c", 7.0, "%", 4.6, 6.2),
        ("2345-7", "血糖 / glucose", 130.0, "mg/dL", 70.0, 109.0),
        ("13457-7", "LDL コレステロール", 120.0, "mg/dL", 70.0, 139.0),
        ("2085-9", "HDL コレステロール", 50.0, "mg/dL", 40.0, 90.0),
        (
            "2571-8",
            "中性脂肪 / triglycerides",
            160.0,
            "mg/dL",
            30.0,
            149.0,
        ),
        (
            "2160-0",
            "クレアチニン / creatinine",
            1.0,
            "mg/dL",
            0.65,
            1.07,
        ),
        ("33914-3", "eGFR", 62.0, "mL/min/1.73m2", 60.0, 120.0),
        ("1742-6", "ALT", 28.0, "U/L", 10.0, 42.0),
        ("1920-8", "AST", 25.0, "U/L", 13.0, 30.0),
        ("2823-3", "カリウム / potassium", 4.2, "mmol/L", 3.6, 4.8),
        (
            "718-7",
            "ヘモグロビン / haemoglobin",
            14.0,
            "g/dL",
            13.7,
            16.8,
        ),
        ("3016-3", "TSH", 2.0, "mIU/L", 0.5, 5.0),
    ];
    let mut count = 0;
    let months = years * 12;
    let t0 = Instant::now();
    for m in 0..months {
        let d = -(months - m) * 30 - 5;
        created(
            n,
            &r.doctor_a,
            "/fhir/Encounter",
            &encounter(rid, "AMB", "定期受診 / follow-up", &day(d)),
        );
        created(
            n,
            &r.tech_b,
            "/fhir/Encounter",
            &encounter(rid, "AMB", "検体採取 / specimen collection", &day(d)),
        );
        count += 2;
        for (i, (code, name, base, unit, lo, hi)) in tests.iter().enumerate() {
            let wave =
                ((m as f64) / 5.0 + i as f64).sin() * 0.12 + (m as f64 / months as f64) * 0.1;
            let v = (base * (1.0 + wave) * 100.0).round() / 100.0;
            created(
                n,
                &r.tech_b,
                "/fhir/Observation",
                &observation(rid, code, name, v, unit, *lo, *hi, &day(d)),
            );
            count += 1;
        }
        let status = if m + 3 >= months {
            "active"
        } else {
            "completed"
        };
        created(
            n,
            &r.doctor_a,
            "/fhir/MedicationRequest",
            &prescription(
                rid,
                "3962002F1024",
                "メトホルミン / metformin",
                "1回1錠 1日2回",
                &day(d),
                status,
            ),
        );
        count += 1;
        if m % 3 == 0 {
            created(
                n,
                &r.doctor_a,
                "/fhir/DocumentReference",
                &json!({"resourceType": "DocumentReference", "status": "current",
                    "type": {"text": "経過報告 / progress note"}, "subject": subject(rid), "date": format!("{}T09:00:00+09:00", day(d)),
                    "content": [{"attachment": {"contentType": "text/plain", "data": "cHJvZ3Jlc3Mgbm90ZQ=="}}]}),
            );
            count += 1;
        }
    }
    eprintln!(
        "ui perf: {count} records of {years} years created in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    count
}

/// A raw GET without a token: (status, header block in lower case, body bytes).
fn raw_get(node: &Node, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.http_port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, buf[end + 4..].to_vec())
}

/// `/ui/` needs no token and serves its files with types, ETags, gzip and the CSP; the
/// API behind it still does need one.
fn serving(node: &Node) {
    let (s, h, _) = raw_get(node, "/ui", "");
    assert!(s == 308 && h.contains("location: /ui/"), "{s} {h}");
    let (s, h, body) = raw_get(node, "/ui/", "");
    assert_eq!(s, 200, "{h}");
    assert!(h.contains("content-type: text/html; charset=utf-8"), "{h}");
    assert!(
        h.contains("content-security-policy: default-src 'self'"),
        "{h}"
    );
    assert!(String::from_utf8_lossy(&body).contains("app.js"));
    let (s, h, body) = raw_get(node, "/ui/app.js", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(s, 200, "{h}");
    assert!(
        h.contains("content-encoding: gzip") && h.contains("text/javascript"),
        "{h}"
    );
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip body");
    let etag = h
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an etag")
        .to_string();
    let (s, h, _) = raw_get(node, "/ui/app.js", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(s, 304, "{h}");
    let (s, h, body) = raw_get(node, "/ui/app.css", "");
    assert!(
        s == 200 && h.contains("text/css") && !h.contains("content-encoding"),
        "{h}"
    );
    assert!(!body.is_empty());
    let (s, _, body) = raw_get(node, "/ui/config.json", "");
    let cfg: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, 200);
    assert!(
        cfg["viewer_url"].as_str().unwrap().contains("{study}"),
        "{cfg}"
    );
    assert_eq!(raw_get(node, "/ui/../admin.token", "").0, 404);
    assert_eq!(raw_get(node, "/ui/nothing.js", "").0, 404);
    assert_eq!(
        raw_get(node, "/api/whoami", "").0,
        401,
        "the API keeps its gate"
    );
}

#[test]
fn web_pages_in_headless_chromium() {
    let chromium = chromium();
    let ui = repo().join("ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "ui/node_modules/playwright-core missing: run scripts/setup.sh (npm ci in ui/)"
    );
    let dir = tempfile::tempdir().unwrap();
    let r = region(&dir.path().join("data"));
    serving(&r.node);
    let (rid, card) = patient(&r, "山田", "太郎", ("ヤマダ", "タロウ"), "LOCAL-77");
    // A and B treat the patient (their front desks checked the card in); C's modality
    // pushes a CT of two images; C's doctor checks in through the page later, and once
    // now to prescribe
    checkin(&r, &r.doctor_a, &card);
    checkin(&r, &r.tech_b, &card);
    // -xr: RLE Lossless (the ultrasound as stored) and the uncompressed syntaxes
    storescu_as(
        &r.node,
        "MOD_C",
        &["-xr"],
        &[
            ct(dir.path(), 1, "LOCAL-77"),
            ct(dir.path(), 2, "LOCAL-77"),
            cine(dir.path(), "LOCAL-77"),
        ],
    );
    checkin(&r, &r.doctor_c, &card);
    record(&r, &rid);

    let perf_years: i64 = std::env::var("RENKEI_UI_PERF_YEARS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut perf = None;
    if perf_years > 0 {
        let (prid, pcard) = patient(&r, "長谷川", "五年", ("ハセガワ", "ゴネン"), "LOCAL-88");
        checkin(&r, &r.doctor_a, &pcard);
        checkin(&r, &r.tech_b, &pcard);
        checkin(&r, &r.doctor_c, &pcard);
        let n = history(&r, &prid, perf_years);
        perf = Some((prid, n));
    }

    let shots = std::env::var("RENKEI_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("docs/screenshots"));
    if let Ok(secs) = std::env::var("RENKEI_UI_PAUSE").map(|s| s.parse::<u64>().unwrap_or(600)) {
        // development: look at the pages by hand
        eprintln!(
            "node: http://127.0.0.1:{}/ui/\ndoctor C: {}\nEMS: {}\ncard: {card}\npatient: {rid}",
            r.node.http_port, r.doctor_c, r.ems
        );
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    let mut cmd = Command::new("node");
    cmd.current_dir(&ui)
        .arg("tests/ui.spec.mjs")
        .env("NODE_URL", format!("http://127.0.0.1:{}", r.node.http_port))
        .env("CHROMIUM", &chromium)
        .env("DOCTOR_TOKEN", &r.doctor_c)
        .env("OTHER_TOKEN", &r.doctor_d)
        .env("EMS_TOKEN", &r.ems)
        .env("CARD", &card)
        .env("PATIENT", &rid)
        .env("STUDY", STUDY)
        .env("CINE", CINE)
        .env("LAB_DATE", day(-18))
        .env(
            "FACILITIES",
            "あおぞら内科クリニック,みなと臨床検査センター,市立中央病院",
        )
        .env("SCREENSHOTS", &shots);
    if let Some((prid, n)) = &perf {
        cmd.env("PERF_PATIENT", prid)
            .env("PERF_RECORDS", n.to_string())
            .env("PERF_YEARS", perf_years.to_string());
    }
    let t0 = Instant::now();
    let out = cmd
        .output()
        .expect("run node (scripts/setup.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "ui.spec.mjs failed after {:.1} s (node log: {})\n{stdout}\n{stderr}",
        t0.elapsed().as_secs_f64(),
        r.node.log.display()
    );
    // every page view was audited: the EMS break-glass, its denial before, the check-in
    let (s, audit) = r
        .node
        .http_as(
            Some(&r.admin),
            "GET",
            &format!("/api/audit?patient={rid}"),
            None,
        )
        .unwrap();
    assert_eq!(s, 200, "{audit}");
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let recs = audit.as_array().cloned().unwrap_or_default();
    let by = |actor_part: &str, allowed: bool| {
        recs.iter()
            .any(|e| e.to_string().contains(actor_part) && e["allowed"].as_bool() == Some(allowed))
    };
    assert!(
        by("break-glass", true),
        "the break-glass is audited: {audit}"
    );
    assert!(
        by("$summary", false),
        "the denied summary is audited: {audit}"
    );
    assert!(by("$summary", true), "the summary is audited: {audit}");
    let _ = &r.doctor_a;
}
