/*!
`renkei-gen-clinical`: a regional clinical record for the FHIR benchmarks (issue 7,
"what it must show" 5).

Three facilities (a clinic, a laboratory, a hospital), a doctor at each, `--patients`
patients enrolled with a local ID at every facility, and `--records` clinical records
spread over five years: visits, diagnoses (ICD-10), lab results (JLAC10/LOINC: HbA1c,
glucose, LDL, eGFR, …), prescriptions (YJ codes, the last few active) and allergies, each
recorded by one of the facilities. Every record goes through the node's real write path,
`Share::create_many`: the same checks, duplicate detection, index writes and audit record
per resource as `POST /fhir/{type}`, committed in batches of `--batch` (one fsync per
batch instead of one per record; the single-record path is measured over HTTP by
`benches/clinical.sh`). The first `--checked-in` patients get a card and a check-in at the
hospital, so that its doctor may read their whole record; their IDs, the card numbers and
the doctor's token go to `bench.json` in the data dir for the HTTP measurements.
*/

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use renkei_share::admin::{NewFacility, NewUser};
use renkei_share::identity::{LocalId, NewPatient};
use renkei_share::{Actor, Share, ShareConfig};
use renkei_store::Store;
use serde_json::{json, Value};

/// Generate a clinical record for the FHIR benchmarks.
#[derive(Debug, Parser)]
#[command(name = "renkei-gen-clinical", version)]
struct Args {
    /// Node data directory to create (must not hold a node yet).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Patients.
    #[arg(long, default_value_t = 20_000)]
    patients: u32,
    /// Clinical records in all (spread evenly over the patients).
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// Records per commit.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Patients given a card and a check-in at the hospital (the ones the benchmark reads).
    #[arg(long, default_value_t = 200)]
    checked_in: u32,
}

const FACILITIES: [(&str, &str, &str); 3] = [
    ("1310000001", "さくら内科クリニック", "clinic"),
    ("1310000002", "みどり臨床検査センター", "laboratory"),
    ("1310000003", "市立中央病院", "core-hospital"),
];

const LABS: [(&str, &str, &str, f64, f64, &str); 5] = [
    ("3D046000001920402", "4548-4", "HbA1c(NGSP)", 4.6, 6.2, "%"),
    (
        "3D010000001926101",
        "2345-7",
        "グルコース",
        73.0,
        109.0,
        "mg/dL",
    ),
    (
        "3F077000002327101",
        "13457-7",
        "LDLコレステロール",
        65.0,
        139.0,
        "mg/dL",
    ),
    (
        "8A065000002391901",
        "33914-3",
        "eGFR",
        60.0,
        120.0,
        "mL/min/1.73m2",
    ),
    (
        "3C015000002327101",
        "2160-0",
        "クレアチニン",
        0.65,
        1.07,
        "mg/dL",
    ),
];

const DRUGS: [(&str, &str); 6] = [
    ("3962002F1022", "メトホルミン塩酸塩錠250mg"),
    ("2189015F1022", "アトルバスタチン錠10mg"),
    ("2149044F1022", "アムロジピン錠5mg"),
    ("2329023F1020", "ランソプラゾールOD錠15mg"),
    ("1149019F1020", "ロキソプロフェンNa錠60mg"),
    ("6250002F1024", "バラシクロビル錠500mg"),
];

const CONDITIONS: [(&str, &str); 4] = [
    ("E11.9", "2型糖尿病"),
    ("I10", "本態性高血圧症"),
    ("E78.5", "脂質異常症"),
    ("K21.9", "胃食道逆流症"),
];

/// Days before "now" (2026-11-01) as a FHIR dateTime.
fn at(days_ago: u32) -> String {
    // 2026-11-01T00:00:00Z = 1 793 491 200 s
    let secs = 1_793_491_200u64 - u64::from(days_ago) * 86_400 + 9 * 3600;
    renkei_share::model::rfc3339(secs * 1_000_000)
}

/// Record `k` of `n` of one patient, recorded by facility `k % 3`.
fn record(patient: &str, k: u64, n: u64) -> Value {
    let span = 5 * 365u64;
    let days_ago = (span - span * k / n.max(1)) as u32;
    let subject = json!({"reference": format!("Patient/{patient}")});
    let lab = LABS[(k as usize / 3) % LABS.len()];
    match k % 10 {
        0 | 5 => json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
            "subject": subject, "period": {"start": at(days_ago), "end": at(days_ago)}}),
        1 | 3 | 6 | 8 => {
            let v = lab.3 + (lab.4 - lab.3) * (((k * 37) % 140) as f64 / 100.0);
            json!({"resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "urn:oid:1.2.392.200119.4.504", "code": lab.0, "display": lab.2},
                                    {"system": "http://loinc.org", "code": lab.1}], "text": lab.2},
                "subject": subject, "effectiveDateTime": at(days_ago),
                "valueQuantity": {"value": (v * 10.0).round() / 10.0, "unit": lab.5},
                "referenceRange": [{"low": {"value": lab.3, "unit": lab.5}, "high": {"value": lab.4, "unit": lab.5}}]})
        }
        2 | 7 => {
            let (code, name) = DRUGS[(k as usize / 10) % DRUGS.len()];
            // the last prescriptions of a patient are active, one per drug; the rest ended
            let active = n - k <= 30 && (k as usize / 10) % DRUGS.len() < 3 && k % 10 == 2;
            json!({"resourceType": "MedicationRequest",
                "status": if active { "active" } else { "completed" }, "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": "urn:oid:1.2.392.100495.20.2.74", "code": code, "display": name}], "text": name},
                "subject": subject, "authoredOn": at(days_ago),
                "dosageInstruction": [{"text": "1日1回 朝食後"}]})
        }
        4 => {
            let (code, name) = CONDITIONS[(k as usize / 10) % CONDITIONS.len()];
            json!({"resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": if n - k <= 40 { "active" } else { "resolved" }}]},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code, "display": name}], "text": name},
                "subject": subject, "onsetDateTime": at(days_ago), "recordedDate": at(days_ago)})
        }
        _ => json!({"resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "code": {"text": "ペニシリン系抗菌薬"}, "patient": subject, "recordedDate": at(days_ago)}),
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("renkei-gen-clinical: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    if a.data_dir.join("index").exists() {
        bail!(
            "{} already holds a node: remove it first",
            a.data_dir.display()
        );
    }
    let store = Arc::new(Store::open(&a.data_dir).context("open the store")?);
    let share = Share::open(store, ShareConfig::default())?;
    let admin_token = share
        .bootstrap_admin()?
        .context("a fresh node has no admin")?;
    std::fs::write(
        a.data_dir.join("admin.token"),
        format!("{}\n", admin_token.token),
    )?;
    let admin = Actor::User(share.authenticate(&admin_token.token)?);
    let mut doctors = Vec::new();
    let mut tokens = Vec::new();
    for (code, name, kind) in FACILITIES {
        share.add_facility(
            &admin,
            NewFacility {
                code: code.into(),
                name: name.into(),
                kind: kind.into(),
                phone: "03-0000-0000".into(),
                ..NewFacility::default()
            },
        )?;
        let (_, t) = share.add_user(
            &admin,
            NewUser {
                name: format!("医師 {code}"),
                facility: Some(code.into()),
                role: "doctor".into(),
                token_ttl_secs: None,
            },
        )?;
        doctors.push(Actor::User(share.authenticate(&t.token)?));
        tokens.push(t.token);
    }

    let bar = |len: u64, what: &str| {
        let b = ProgressBar::new(len);
        b.set_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let t0 = Instant::now();
    let pb = bar(u64::from(a.patients), "patients");
    let mut patients = Vec::with_capacity(a.patients as usize);
    for i in 0..a.patients {
        let p = share.enroll(
            &admin,
            NewPatient {
                family: "患者".into(),
                given: format!("{i:05}"),
                family_kana: "カンジャ".into(),
                given_kana: format!("{i:05}"),
                birth_date: format!("19{:02}-0{}-1{}", 30 + i % 60, 1 + i % 9, i % 10),
                sex: if i % 2 == 0 { "female" } else { "male" }.into(),
                consent: true,
                local_ids: FACILITIES
                    .iter()
                    .map(|(code, _, _)| LocalId {
                        issuer: code.to_string(),
                        patient_id: format!("L{i:07}"),
                    })
                    .collect(),
                ..NewPatient::default()
            },
        )?;
        patients.push(p.id);
        pb.inc(1);
    }
    pb.finish();
    let enrol_secs = t0.elapsed().as_secs_f64();

    let mut sample = Vec::new();
    for id in patients.iter().take(a.checked_in as usize) {
        let card = share.issue_card(&admin, id)?;
        share.checkin(&doctors[2], &card.number)?;
        sample.push(json!({"patient": id, "card": card.number}));
    }

    let per_patient = a.records / u64::from(a.patients.max(1));
    let total = per_patient * u64::from(a.patients);
    let pb = bar(total, "records");
    let t1 = Instant::now();
    let (mut written, mut issues, mut failed) = (0u64, 0u64, 0u64);
    let mut first_error = None;
    // one facility's records at a time, so that each batch has one recording actor
    for (f, doctor) in doctors.iter().enumerate() {
        let mut batch = Vec::with_capacity(a.batch);
        let mut flush = |batch: &mut Vec<Value>| {
            for r in share.create_many(doctor, std::mem::take(batch)) {
                match r {
                    Ok(c) => {
                        written += 1;
                        issues += c.detected_issues.len() as u64;
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                pb.inc(1);
            }
        };
        for p in &patients {
            for k in (f as u64..per_patient).step_by(FACILITIES.len()) {
                batch.push(record(p, k, per_patient));
                if batch.len() >= a.batch {
                    flush(&mut batch);
                }
            }
        }
        flush(&mut batch);
    }
    pb.finish();
    let write_secs = t1.elapsed().as_secs_f64();
    share.store().index().flush()?;
    let index_bytes = dir_size(&a.data_dir.join("index"));
    let report = json!({
        "patients": a.patients, "records": written, "failed": failed, "first_error": first_error,
        "detected_issues": issues, "enrol_secs": enrol_secs, "write_secs": write_secs,
        "records_per_sec": written as f64 / write_secs, "batch": a.batch,
        "index_bytes": index_bytes, "index_bytes_per_record": index_bytes as f64 / written.max(1) as f64,
        "doctor_token": tokens[2], "sample": sample,
    });
    std::fs::write(
        a.data_dir.join("bench.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string(&report)?);
    if failed > 0 {
        bail!(
            "{failed} records were refused; the first: {}",
            report["first_error"]
        );
    }
    Ok(())
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let m = e.metadata().map(|m| m.len()).unwrap_or(0);
                    if e.path().is_dir() {
                        dir_size(&e.path())
                    } else {
                        m
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
