/*!
`renkei admin patient …`: enrolment (a FHIR R4 Patient), the regional record, local ID
links, merges and consent.
*/

use clap::{ArgGroup, Subcommand};
use serde_json::{json, Map, Value};

use super::client::{segment, Client};
use super::output::{fields, show, text, time, time_of, PatientView};
use super::Out;

/// The FHIR extension that records the patient's consent to sharing.
pub(crate) const CONSENT_EXTENSION: &str =
    "http://renkei.invalid/fhir/StructureDefinition/sharing-consent";
/// ISO 21090 name representation: `SYL` marks the phonetic (kana) name.
pub(crate) const REPRESENTATION_EXTENSION: &str =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
/// Identifier system of a local patient ID: this prefix and the issuer.
pub(crate) const ISSUER_SYSTEM: &str = "urn:renkei:issuer:";

/// A local patient ID, `ISSUER:PATIENT_ID` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalId {
    pub(crate) issuer: String,
    pub(crate) patient_id: String,
}

impl std::fmt::Display for LocalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.issuer, self.patient_id)
    }
}

/// Parse `ISSUER:PATIENT_ID` (split at the first colon: the issuer has none, the patient
/// ID may).
pub(crate) fn parse_local(s: &str) -> Result<LocalId, String> {
    match s.split_once(':') {
        Some((issuer, id)) if !issuer.trim().is_empty() && !id.trim().is_empty() => Ok(LocalId {
            issuer: issuer.trim().to_string(),
            patient_id: id.trim().to_string(),
        }),
        _ => Err(format!(
            "expected ISSUER:PATIENT_ID (the issuer of patient ID, a colon, the local ID), got {s:?}"
        )),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum PatientCommand {
    /// Enrol a patient in the region (FHIR Patient create): prints the new regional ID.
    #[command(
        long_about = "Enrol a patient in the region: POST /fhir/Patient with a FHIR R4 Patient \
resource built from the options. The node assigns the regional ID, records the consent and \
links the local IDs given with --local.\n\n\
Enrolment requires the patient's recorded consent to sharing: pass --consent once the patient \
has agreed (without it the node refuses the enrolment).\n\n\
The regional ID is printed alone on the last line of standard output; a summary goes to \
standard error.",
        after_help = "Example:\n  RID=$(renkei admin patient enroll --family 山田 --given 太郎 \
--family-kana ヤマダ --given-kana タロウ \\\n      --birth-date 1970-01-02 --sex male --consent \
--local 1310000001:000123 | tail -1)"
    )]
    Enroll(EnrollArgs),

    /// Show a patient's regional record: identity, local IDs, cards, history.
    Show {
        /// Regional ID.
        rid: String,
    },

    /// Link a local patient ID (ISSUER:PATIENT_ID) to a regional ID.
    Link {
        /// Regional ID.
        rid: String,
        /// The local ID: issuer of patient ID (usually the facility code), a colon, the ID.
        #[arg(long, value_name = "ISSUER:PATIENT_ID", value_parser = parse_local)]
        local: LocalId,
    },

    /// Remove the link of a local patient ID from a regional ID (kept in the history).
    Unlink {
        /// Regional ID.
        rid: String,
        /// The local ID to unlink.
        #[arg(long, value_name = "ISSUER:PATIENT_ID", value_parser = parse_local)]
        local: LocalId,
    },

    /// Merge another regional ID (a duplicate) into this one.
    #[command(
        long_about = "Merge another regional ID into RID: the duplicate's local IDs, cards and \
history move to RID, and the duplicate then only resolves to RID."
    )]
    Merge {
        /// The regional ID that stays.
        rid: String,
        /// The duplicate regional ID merged into RID.
        #[arg(long, value_name = "OTHER_RID")]
        from: String,
    },

    /// Record the patient's consent to sharing, or its withdrawal, with exclusions.
    #[command(group(ArgGroup::new("decision").required(true).args(["give", "withdraw"])))]
    Consent {
        /// Regional ID.
        rid: String,
        /// The patient consents to sharing.
        #[arg(long)]
        give: bool,
        /// The patient withdraws consent: nothing is shared across facilities any more.
        #[arg(long)]
        withdraw: bool,
        /// A facility (code) that may not see this patient's data from others (repeatable).
        #[arg(long = "exclude-facility", value_name = "CODE")]
        exclude_facilities: Vec<String>,
        /// A category of data not shared, e.g. imaging (repeatable).
        #[arg(long = "exclude-category", value_name = "CAT")]
        exclude_categories: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct EnrollArgs {
    /// Family name (kanji, or the usual script).
    #[arg(long)]
    family: String,
    /// Given name (kanji, or the usual script).
    #[arg(long)]
    given: String,
    /// Family name in kana (phonetic).
    #[arg(long, value_name = "KANA")]
    family_kana: Option<String>,
    /// Given name in kana (phonetic).
    #[arg(long, value_name = "KANA")]
    given_kana: Option<String>,
    /// Birth date.
    #[arg(long, value_name = "YYYY-MM-DD")]
    birth_date: String,
    /// Administrative sex.
    #[arg(long, value_parser = ["male", "female", "other", "unknown"])]
    sex: String,
    /// Address, one line.
    #[arg(long)]
    address: Option<String>,
    /// Phone number.
    #[arg(long)]
    phone: Option<String>,
    /// REQUIRED: the patient has consented to sharing (the node refuses enrolment without it).
    #[arg(long)]
    consent: bool,
    /// A local patient ID to link at once, ISSUER:PATIENT_ID (repeatable).
    #[arg(long, value_name = "ISSUER:PATIENT_ID", value_parser = parse_local)]
    local: Vec<LocalId>,
}

/// The FHIR R4 Patient resource of an enrolment.
pub(crate) fn fhir_patient(a: &EnrollArgs) -> Value {
    let mut names = vec![json!({"use": "official", "family": a.family, "given": [a.given]})];
    if a.family_kana.is_some() || a.given_kana.is_some() {
        let mut kana = Map::new();
        kana.insert("use".into(), json!("usual"));
        if let Some(f) = &a.family_kana {
            kana.insert("family".into(), json!(f));
        }
        if let Some(g) = &a.given_kana {
            kana.insert("given".into(), json!([g]));
        }
        kana.insert(
            "extension".into(),
            json!([{"url": REPRESENTATION_EXTENSION, "valueCode": "SYL"}]),
        );
        names.push(Value::Object(kana));
    }
    let mut p = Map::new();
    p.insert("resourceType".into(), json!("Patient"));
    p.insert("name".into(), Value::Array(names));
    p.insert("birthDate".into(), json!(a.birth_date));
    p.insert("gender".into(), json!(a.sex));
    if let Some(addr) = &a.address {
        p.insert("address".into(), json!([{ "text": addr }]));
    }
    if let Some(phone) = &a.phone {
        p.insert(
            "telecom".into(),
            json!([{"system": "phone", "value": phone}]),
        );
    }
    if !a.local.is_empty() {
        let ids: Vec<Value> = a
            .local
            .iter()
            .map(|l| json!({"system": format!("{ISSUER_SYSTEM}{}", l.issuer), "value": l.patient_id}))
            .collect();
        p.insert("identifier".into(), Value::Array(ids));
    }
    if a.consent {
        p.insert(
            "extension".into(),
            json!([{"url": CONSENT_EXTENSION, "valueBoolean": true}]),
        );
    }
    Value::Object(p)
}

pub(crate) fn run(client: &Client, out: &Out, cmd: &PatientCommand) -> anyhow::Result<()> {
    match cmd {
        PatientCommand::Enroll(a) => {
            let answer =
                client.post_as("/fhir/Patient", "application/fhir+json", &fhir_patient(a))?;
            if out.raw(&answer) {
                return Ok(());
            }
            let view = PatientView::of(&answer.json);
            if view.id.is_empty() {
                anyhow::bail!(
                    "the node's answer has no regional ID (\"id\"): {}",
                    answer.text
                );
            }
            eprintln!(
                "enrolled {}, born {}, {}: regional ID {}",
                view.display_name(),
                a.birth_date,
                a.sex,
                view.id
            );
            for l in &a.local {
                eprintln!("  linked {l}");
            }
            println!("{}", view.id);
        }
        PatientCommand::Show { rid } => {
            let answer = client.get(&format!("/api/patients/{}", segment(rid)))?;
            if out.raw(&answer) {
                return Ok(());
            }
            print!("{}", show_record(&answer.json));
        }
        PatientCommand::Link { rid, local } => {
            let answer = client.post(
                &format!("/api/patients/{}/links", segment(rid)),
                &json!({"issuer": local.issuer, "patient_id": local.patient_id}),
            )?;
            if !out.raw(&answer) {
                println!("linked {local} to {rid}");
            }
        }
        PatientCommand::Unlink { rid, local } => {
            let answer = client.delete(&format!(
                "/api/patients/{}/links/{}/{}",
                segment(rid),
                segment(&local.issuer),
                segment(&local.patient_id)
            ))?;
            if !out.raw(&answer) {
                println!("unlinked {local} from {rid}");
            }
        }
        PatientCommand::Merge { rid, from } => {
            let answer = client.post(
                &format!("/api/patients/{}/merge", segment(rid)),
                &json!({ "from": from }),
            )?;
            if !out.raw(&answer) {
                println!("merged {from} into {rid} ({from} now resolves to {rid})");
            }
        }
        PatientCommand::Consent {
            rid,
            give,
            withdraw: _,
            exclude_facilities,
            exclude_categories,
        } => {
            let answer = client.post(
                &format!("/api/patients/{}/consent", segment(rid)),
                &json!({
                    "given": give,
                    "excluded_facilities": exclude_facilities,
                    "excluded_categories": exclude_categories,
                }),
            )?;
            if out.raw(&answer) {
                return Ok(());
            }
            let mut line = format!(
                "consent of {rid}: {}",
                if *give { "given" } else { "withdrawn" }
            );
            if !exclude_facilities.is_empty() {
                line.push_str(&format!(
                    "; excluded facilities {}",
                    exclude_facilities.join(", ")
                ));
            }
            if !exclude_categories.is_empty() {
                line.push_str(&format!(
                    "; excluded categories {}",
                    exclude_categories.join(", ")
                ));
            }
            println!("{line}");
        }
    }
    Ok(())
}

/// `patient show`: {patient, links, cards, history} as key/value lines.
fn show_record(v: &Value) -> String {
    let patient = v.get("patient").unwrap_or(v);
    let p = PatientView::of(patient);
    let mut pairs = vec![
        ("regional ID", p.id.clone()),
        ("name", p.display_name()),
        ("birth date", p.birth_date.clone()),
        ("sex", p.sex.clone()),
        ("address", p.address.clone()),
        ("phone", p.phone.clone()),
    ];
    let consent = patient.get("consent").filter(|c| c.is_object());
    let mut consent_text = match p.consent {
        Some(true) => "given".to_string(),
        Some(false) => "withdrawn".to_string(),
        None => "-".to_string(),
    };
    if let Some(c) = consent {
        for (key, label) in [
            ("excluded_facilities", "excluded facilities"),
            ("excluded_categories", "excluded categories"),
        ] {
            if c.get(key)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                consent_text.push_str(&format!("; {label} {}", show(c, key)));
            }
        }
        if c.get("recorded_us").is_some() {
            consent_text.push_str(&format!(
                " (recorded {} by {})",
                time(c, "recorded_us"),
                show(c, "recorded_by")
            ));
        }
    }
    pairs.push(("consent", consent_text));
    if !p.merged_into.is_empty() {
        pairs.push(("merged into", p.merged_into.clone()));
    }
    let list = |key: &str| -> Vec<&Value> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let links: Vec<String> = list("links")
        .into_iter()
        .map(|l| match (text(l, "issuer"), text(l, "patient_id")) {
            ("", "") => l.to_string(),
            (i, id) => format!("{i}:{id}"),
        })
        .collect();
    pairs.push(("local IDs", links.join("\n")));
    let cards: Vec<String> = list("cards")
        .into_iter()
        .map(|c| {
            format!(
                "{}  {}  issued {}",
                show(c, "number"),
                show(c, "status"),
                time_of(c, &["issued_us", "issued"])
            )
        })
        .collect();
    pairs.push(("cards", cards.join("\n")));
    let history: Vec<String> = list("history")
        .into_iter()
        .map(|h| {
            format!(
                "{}  {}  by {}  {}",
                time_of(h, &["time_us", "time"]),
                show(h, "kind"),
                show(h, "by"),
                text(h, "detail")
            )
            .trim_end()
            .to_string()
        })
        .collect();
    pairs.push(("history", history.join("\n")));
    fields(&pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kana: bool, consent: bool) -> EnrollArgs {
        EnrollArgs {
            family: "山田".into(),
            given: "太郎".into(),
            family_kana: kana.then(|| "ヤマダ".into()),
            given_kana: kana.then(|| "タロウ".into()),
            birth_date: "1970-01-02".into(),
            sex: "male".into(),
            address: Some("東京都千代田区1-1".into()),
            phone: Some("03-0000-0000".into()),
            consent,
            local: vec![parse_local("1310000001:000123").unwrap()],
        }
    }

    #[test]
    fn the_fhir_patient_of_an_enrolment() {
        let p = fhir_patient(&args(true, true));
        assert_eq!(
            p,
            json!({
                "resourceType": "Patient",
                "name": [
                    {"use": "official", "family": "山田", "given": ["太郎"]},
                    {"use": "usual", "family": "ヤマダ", "given": ["タロウ"], "extension": [
                        {"url": REPRESENTATION_EXTENSION, "valueCode": "SYL"}]}
                ],
                "birthDate": "1970-01-02",
                "gender": "male",
                "address": [{"text": "東京都千代田区1-1"}],
                "telecom": [{"system": "phone", "value": "03-0000-0000"}],
                "identifier": [{"system": "urn:renkei:issuer:1310000001", "value": "000123"}],
                "extension": [{"url": CONSENT_EXTENSION, "valueBoolean": true}]
            })
        );
        let p = fhir_patient(&args(false, false));
        assert_eq!(p["name"].as_array().unwrap().len(), 1);
        assert!(p.get("extension").is_none());
    }

    #[test]
    fn local_ids() {
        assert_eq!(
            parse_local("1310000001:A:1").unwrap(),
            LocalId {
                issuer: "1310000001".into(),
                patient_id: "A:1".into()
            }
        );
        assert!(parse_local("1310000001").is_err());
        assert!(parse_local(":1").is_err());
        assert!(parse_local("X:").is_err());
    }

    #[test]
    fn a_record_shown() {
        let v = json!({
            "patient": {"id": "R1", "family": "山田", "given": "太郎", "birth_date": "1970-01-02",
                        "sex": "male", "consent": {"given": true, "excluded_facilities": ["F2"],
                        "excluded_categories": [], "recorded_us": 0, "recorded_by": "u1"}},
            "links": [{"issuer": "F1", "patient_id": "P1"}, {"issuer": "F2", "patient_id": "P9"}],
            "cards": [{"number": "C1", "patient": "R1", "issued_us": 0, "status": "active"}],
            "history": [{"time_us": 0, "by": "u1", "kind": "enrol", "detail": ""}]
        });
        let s = show_record(&v);
        assert!(s.contains("regional ID  R1\n"), "{s}");
        assert!(
            s.contains("local IDs    F1:P1\n             F2:P9\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "consent      given; excluded facilities F2 (recorded 1970-01-01T00:00:00Z by u1)"
            ),
            "{s}"
        );
        assert!(
            s.contains("cards        C1  active  issued 1970-01-01T00:00:00Z"),
            "{s}"
        );
        assert!(
            s.contains("history      1970-01-01T00:00:00Z  enrol  by u1\n"),
            "{s}"
        );
    }
}
