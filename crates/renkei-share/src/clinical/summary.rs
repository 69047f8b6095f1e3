//! The emergency summary (`Patient/{id}/$summary`, or by card): an IPS-like FHIR document
//! — a Bundle of type `document` whose Composition lists active problems, active
//! medications, allergies, the latest lab results per test, the last imaging studies with
//! thumbnail links, and the facilities involved (Organization, with phone numbers).
//!
//! Access is one decision of category `summary`: an EMS crew needs an active break-glass
//! grant, a clinician an open treating relationship (or the facility's own patient). In
//! the summary, a clinician sees each item the policy lets them read; an EMS crew sees the
//! items of every category the patient's consent does not exclude. One audit record.

use std::collections::{BTreeSet, HashMap};

use rand::RngCore;
use serde_json::{json, Value};

use super::imaging::{imaging_study_resource, Study};
use super::store::Hit;
use super::views::{excluded, organization_resource};
use super::{category_from, date, parse_json, patient_resource, CResult, ResourceType, Scope};
use super::{config::LOINC, THUMBNAIL_EXT};
use crate::error::{Result, ShareError};
use crate::model::{RegionalPatient, Role};
use crate::policy::{Actor, Category, Subject};
use crate::{AuditEvent, Purpose, Share};

/// How the summary's patient is named.
#[derive(Debug, Clone, Copy)]
pub enum PatientRef<'a> {
    /// Regional ID.
    Id(&'a str),
    /// Card number (typed or scanned).
    Card(&'a str),
}

fn uuid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn concept_text(cc: &Value) -> String {
    if let Some(t) = cc["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return t.trim().to_string();
    }
    cc["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["display"].as_str().or_else(|| c["code"].as_str()))
        .unwrap_or("(uncoded)")
        .to_string()
}

fn quantity_text(q: &Value) -> String {
    match q["value"].as_f64() {
        Some(v) => format!("{v} {}", q["unit"].as_str().unwrap_or(""))
            .trim()
            .to_string(),
        None => String::new(),
    }
}

/// One section of the Composition.
struct Section {
    title: &'static str,
    code: &'static str,
    display: &'static str,
    lines: Vec<String>,
    refs: Vec<String>,
}

impl Section {
    fn new(title: &'static str, code: &'static str, display: &'static str) -> Section {
        Section {
            title,
            code,
            display,
            lines: Vec::new(),
            refs: Vec::new(),
        }
    }

    fn json(&self) -> Value {
        let items: String = if self.lines.is_empty() {
            "<p>None recorded or none shared.</p>".into()
        } else {
            format!(
                "<ul>{}</ul>",
                self.lines
                    .iter()
                    .map(|l| format!("<li>{l}</li>"))
                    .collect::<String>()
            )
        };
        let mut s = json!({
            "title": self.title,
            "code": {"coding": [{"system": LOINC, "code": self.code, "display": self.display}]},
            "text": {"status": "generated",
                "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{items}</div>")},
        });
        if self.refs.is_empty() {
            s["emptyReason"] = json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "unavailable", "display": "Unavailable"}]});
        } else {
            s["entry"] = self.refs.iter().map(|r| json!({"reference": r})).collect();
        }
        s
    }
}

impl Share {
    /// The emergency summary document of a patient (module docs).
    pub fn summary(&self, actor: &Actor, who: PatientRef<'_>, base: &str) -> CResult<Value> {
        let action = "FHIR read $summary";
        let patient = match who {
            PatientRef::Id(id) => self.patient(id.trim_start_matches("Patient/"))?,
            PatientRef::Card(n) => match self.resolve_card(n) {
                Ok(p) => p,
                Err(e) => {
                    let mut a = actor.audit(action, AuditEvent::PatientRecord, "");
                    a.allowed = false;
                    a.detail = format!("by card: {e}");
                    self.audit_read(a)?;
                    return Err(e.into());
                }
            },
        };
        let own = match actor.facility() {
            Some(f) => self.is_facility_patient(f, &patient.id)?,
            None => false,
        };
        let gate = self.decide(
            actor,
            Subject {
                patient: Some(&patient),
                owner: if own { actor.facility() } else { None },
                category: Category::Summary,
            },
        )?;
        let mut e = actor.audit(action, AuditEvent::PatientRecord, &patient.id);
        e.break_glass = gate.break_glass;
        if gate.break_glass {
            e.purpose = Purpose::Emergency;
        }
        let by = if matches!(who, PatientRef::Card(_)) {
            " (by card)"
        } else {
            ""
        };
        if !gate.allowed {
            e.allowed = false;
            e.detail = format!("$summary{by}: {}", gate.reason);
            self.audit_read(e)?;
            return Err(ShareError::Forbidden(format!("not permitted: {}", gate.reason)).into());
        }
        let ems = actor.role() == Some(Role::EmsCrew);
        let doc = self.summary_document(actor, &patient, ems, base)?;
        e.detail = format!(
            "$summary{by}: {} entries; {}",
            doc["entry"].as_array().map_or(0, Vec::len),
            gate.reason
        );
        self.audit_read(e)?;
        Ok(doc)
    }

    fn summary_document(
        &self,
        actor: &Actor,
        patient: &RegionalPatient,
        ems: bool,
        base: &str,
    ) -> Result<Value> {
        let cfg = &self.config().clinical;
        let patients = self.patient_ids(patient)?;
        let mut scope = Scope::new(self, actor, patient);
        let mut visible = |owner: Option<&str>, cat: Category| -> Result<bool> {
            if ems {
                // the gate was an active break-glass grant under the patient's consent
                Ok(!excluded(patient, cat))
            } else {
                Ok(scope.decision(owner, cat)?.allowed)
            }
        };
        let now = date::now();
        let mut rows: Vec<Hit> = Vec::new();
        self.timeline(&patients, None, |h| {
            rows.push(h);
            true
        })?;
        rows.sort_by(|a, b| b.date.cmp(&a.date));
        let mut chosen: Vec<Hit> = Vec::new();
        let mut labs_per_test: HashMap<String, usize> = HashMap::new();
        for h in rows {
            let e = &h.entry;
            let keep = match h.rtype {
                ResourceType::Condition => {
                    matches!(e.status.as_str(), "active" | "recurrence" | "relapse" | "")
                }
                ResourceType::MedicationRequest => {
                    e.status == "active" && e.until.is_none_or(|u| u >= now)
                }
                ResourceType::AllergyIntolerance => {
                    !matches!(e.status.as_str(), "inactive" | "resolved")
                }
                ResourceType::Observation => {
                    matches!(
                        e.status.as_str(),
                        "final" | "amended" | "corrected" | "preliminary"
                    ) && {
                        let test = e.codes.first().cloned().unwrap_or_else(|| h.id.clone());
                        let n = labs_per_test.entry(test).or_default();
                        *n += 1;
                        *n <= cfg.summary_labs
                    }
                }
                _ => false,
            };
            if keep && visible(Some(&e.facility), category_from(&e.category))? {
                chosen.push(h);
            }
        }
        let mut studies: Vec<Study> = Vec::new();
        for s in self.patient_studies(&patients)?.into_iter().rev() {
            if studies.len() >= cfg.summary_studies {
                break;
            }
            if visible(s.owner.as_deref(), Category::Imaging)? {
                studies.push(s);
            }
        }

        let url = |t: &str, id: &str| format!("{base}/fhir/{t}/{id}");
        let mut entries: Vec<Value> = Vec::new();
        let mut facilities: BTreeSet<String> = BTreeSet::new();
        let mut problems = Section::new("Active problems", "11450-4", "Problem list - Reported");
        let mut meds = Section::new(
            "Active medications",
            "10160-0",
            "History of Medication use Narrative",
        );
        let mut allergies = Section::new(
            "Allergies and intolerances",
            "48765-2",
            "Allergies and adverse reactions Document",
        );
        let mut labs = Section::new(
            "Recent laboratory results",
            "30954-2",
            "Relevant diagnostic tests/laboratory data Narrative",
        );
        let mut imaging = Section::new("Recent imaging", "18748-4", "Diagnostic imaging study");
        let mut orgs = Section::new(
            "Facilities involved",
            "85847-2",
            "Patient Care team information",
        );
        for h in &chosen {
            let Some(s) = self.load(h.rtype, &h.id)? else {
                continue;
            };
            let r = parse_json(&s)?;
            let day = date::from_key(&h.date)
                .map(date::day_text)
                .unwrap_or_default();
            let fname = self
                .facility(&s.facility)
                .map(|f| f.name)
                .unwrap_or_else(|| s.facility.clone());
            let line = match h.rtype {
                ResourceType::Condition => {
                    format!("{} (since {day}, {})", concept_text(&r["code"]), fname)
                }
                ResourceType::MedicationRequest => {
                    let dose = r["dosageInstruction"][0]["text"].as_str().unwrap_or("");
                    format!(
                        "{} {dose} (prescribed {day} by {fname})",
                        concept_text(&r["medicationCodeableConcept"])
                    )
                }
                ResourceType::AllergyIntolerance => format!(
                    "{} — criticality {} ({fname})",
                    concept_text(&r["code"]),
                    r["criticality"].as_str().unwrap_or("unknown")
                ),
                _ => format!(
                    "{}: {} {} ({day}, {fname})",
                    concept_text(&r["code"]),
                    quantity_text(&r["valueQuantity"]),
                    r["interpretation"][0]["coding"][0]["code"]
                        .as_str()
                        .unwrap_or("")
                ),
            };
            let full = url(h.rtype.as_str(), &h.id);
            let section = match h.rtype {
                ResourceType::Condition => &mut problems,
                ResourceType::MedicationRequest => &mut meds,
                ResourceType::AllergyIntolerance => &mut allergies,
                _ => &mut labs,
            };
            section.lines.push(esc(&line));
            section.refs.push(full.clone());
            facilities.insert(s.facility.clone());
            entries.push(json!({"fullUrl": full, "resource": r}));
        }
        for s in &studies {
            let mut r = imaging_study_resource(s, Some(patient), base);
            if ems {
                // a crew reads the summary only (docs/ACCESS.md): no link it could not
                // follow; the study's modality, description, date and place stay
                if let Some(o) = r.as_object_mut() {
                    // nor the DICOMweb endpoint (the contained Endpoint is its only content)
                    o.remove("endpoint");
                    o.remove("contained");
                    if let Some(Value::Array(x)) = o.get_mut("extension") {
                        x.retain(|e| e["url"] != THUMBNAIL_EXT);
                        if x.is_empty() {
                            // FHIR JSON has no empty arrays
                            o.remove("extension");
                        }
                    }
                }
            }
            let thumb = r["extension"]
                .as_array()
                .and_then(|x| x.iter().find(|e| e["url"] == THUMBNAIL_EXT))
                .and_then(|e| e["valueUrl"].as_str())
                .unwrap_or_default()
                .to_string();
            let owner = s.owner.clone().unwrap_or_default();
            let fname = self
                .facility(&owner)
                .map(|f| f.name)
                .unwrap_or(owner.clone());
            let day = s.date.map(date::day_text).unwrap_or_default();
            let link = if thumb.is_empty() {
                String::new()
            } else {
                format!(" <a href=\"{}\">thumbnail</a>", esc(&thumb))
            };
            imaging.lines.push(format!(
                "{} {} ({day}, {}){link}",
                esc(&s.modalities().join("/")),
                esc(s.record.description.trim()),
                esc(&fname),
            ));
            let full = url("ImagingStudy", &s.record.study_uid);
            imaging.refs.push(full.clone());
            if !owner.is_empty() {
                facilities.insert(owner);
            }
            entries.push(json!({"fullUrl": full, "resource": r}));
        }
        for code in &facilities {
            let Some(f) = self.facility(code) else {
                continue;
            };
            let full = url("Organization", code);
            orgs.lines.push(esc(&format!(
                "{} — {}",
                f.name,
                if f.phone.is_empty() {
                    "no phone on file"
                } else {
                    &f.phone
                }
            )));
            orgs.refs.push(full.clone());
            entries.push(json!({"fullUrl": full, "resource": organization_resource(&f)}));
        }
        let links = self.links(&patient.id)?;
        let composition_id = uuid();
        let composition = json!({
            "resourceType": "Composition",
            "id": composition_id,
            "status": "final",
            "type": {"coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}]},
            "subject": {"reference": url("Patient", &patient.id)},
            "date": date::instant_text(now),
            "author": [{"display": format!("Renkei node {} (generated)", self.config().node_name)}],
            "title": "Emergency summary (救急サマリー)",
            "section": [problems.json(), meds.json(), allergies.json(), labs.json(), imaging.json(), orgs.json()],
        });
        let mut all = vec![
            json!({"fullUrl": format!("urn:uuid:{composition_id}"), "resource": composition}),
            json!({"fullUrl": url("Patient", &patient.id), "resource": patient_resource(patient, &links)}),
        ];
        all.extend(entries);
        Ok(json!({
            "resourceType": "Bundle",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", uuid())},
            "type": "document",
            "timestamp": date::instant_text(now),
            "entry": all,
        }))
    }
}
