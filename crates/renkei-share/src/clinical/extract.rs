//! What the node checks and indexes of each resource type: the patient reference, the
//! clinical date, codes, categories, status, body sites (imaging orders), the end of a
//! prescription, and the policy category. The node is not a profile validator: it checks
//! the elements it indexes and those R4 requires of each type.

use serde_json::Value;

use super::date;
use super::{CResult, ClinicalError, ResourceType, REGIONAL_ID_SYSTEM};
use crate::policy::Category;

/// SNOMED "Imaging" (ServiceRequest category).
pub(crate) const SCT_IMAGING: &str = "363679005";

/// The search keys of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// The regional ID the resource names (as written; resolved by the caller).
    pub(crate) patient: String,
    /// The clinical date's start (Unix seconds), if the resource has one.
    pub(crate) date: Option<i64>,
    /// `system|code` of the main code.
    pub(crate) codes: Vec<String>,
    /// `system|code` of the categories.
    pub(crate) categories: Vec<String>,
    /// Status (clinical status for Condition and AllergyIntolerance).
    pub(crate) status: String,
    /// Body sites, upper-cased codes and texts (imaging orders).
    pub(crate) sites: Vec<String>,
    /// End of a prescription (Unix seconds), when it says.
    pub(crate) until: Option<i64>,
    /// Policy category.
    pub(crate) category: Category,
}

/// FHIR R4 value set observation-status, which DetectedIssue.status shares.
const OBSERVATION_STATUS: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];
fn invalid(msg: impl Into<String>) -> ClinicalError {
    ClinicalError::Invalid(msg.into())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default().trim()
}

/// The codings of a CodeableConcept as `system|code`.
pub(crate) fn codings(cc: &Value) -> Vec<String> {
    cc["coding"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| !s(&c["code"]).is_empty())
                .map(|c| format!("{}|{}", s(&c["system"]), s(&c["code"])))
                .collect()
        })
        .unwrap_or_default()
}

fn codings_of_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|xs| xs.iter().flat_map(codings).collect())
        .unwrap_or_default()
}

/// The regional ID a Reference to a Patient names: `Patient/<id>` (relative, absolute or
/// versioned), or an identifier of the regional-ID system.
pub(crate) fn patient_of_reference(r: &Value) -> Option<String> {
    let reference = s(&r["reference"]);
    if !reference.is_empty() {
        let mut parts = reference.rsplit('/').collect::<Vec<_>>();
        parts.reverse();
        let i = parts.iter().rposition(|p| *p == "Patient")?;
        return parts.get(i + 1).map(|id| id.to_string());
    }
    if s(&r["identifier"]["system"]) == REGIONAL_ID_SYSTEM {
        let v = s(&r["identifier"]["value"]);
        return (!v.is_empty()).then(|| v.to_string());
    }
    None
}

/// The element that names the patient.
pub(crate) fn patient_field(t: ResourceType) -> &'static str {
    match t {
        ResourceType::AllergyIntolerance | ResourceType::DetectedIssue => "patient",
        _ => "subject",
    }
}

fn date_of(v: &Value, field: &str) -> CResult<Option<i64>> {
    match &v[field] {
        Value::Null => Ok(None),
        Value::String(t) => date::parse(t)
            .map(|sp| Some(sp.start))
            .ok_or_else(|| invalid(format!("{field} {t:?} is not a FHIR date/dateTime"))),
        other => Err(invalid(format!("{field} must be a string, not {other}"))),
    }
}

fn first_date(v: &Value, fields: &[&str]) -> CResult<Option<i64>> {
    let mut found = None;
    for f in fields {
        let d = match f.split_once('.') {
            Some((outer, inner)) => date_of(&v[outer], inner)?,
            None => date_of(v, f)?,
        };
        if found.is_none() {
            found = d;
        }
    }
    Ok(found)
}

fn status_in(v: &Value, field: &str, allowed: &[&str], required: bool) -> CResult<String> {
    let st = s(&v[field]);
    if st.is_empty() {
        if required {
            return Err(invalid(format!("{field} is required")));
        }
        return Ok(String::new());
    }
    if !allowed.contains(&st) {
        return Err(invalid(format!(
            "{field} {st:?} is not one of {}",
            allowed.join(", ")
        )));
    }
    Ok(st.to_string())
}

fn clinical_status(v: &Value, allowed: &[&str]) -> CResult<String> {
    let cs = codings(&v["clinicalStatus"]);
    let Some(first) = cs.first() else {
        return Ok(String::new());
    };
    let code = first.split_once('|').map_or(first.as_str(), |(_, c)| c);
    if !allowed.contains(&code) {
        return Err(invalid(format!(
            "clinicalStatus {code:?} is not one of {}",
            allowed.join(", ")
        )));
    }
    Ok(code.to_string())
}

fn require(v: &Value, field: &str) -> CResult<()> {
    if v[field].is_null() {
        Err(invalid(format!("{field} is required")))
    } else {
        Ok(())
    }
}

/// Days of a FHIR Duration (`value` with `unit`/`code` d, wk, mo, a, h).
fn duration_secs(d: &Value) -> Option<i64> {
    let n = d["value"].as_f64()?;
    let unit = match s(&d["code"]) {
        "" => s(&d["unit"]),
        c => c,
    };
    let per = match unit {
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" | "日" => 86_400.0,
        "wk" | "week" | "weeks" | "週" => 7.0 * 86_400.0,
        "mo" | "month" | "months" | "月" => 30.0 * 86_400.0,
        "a" | "year" | "years" | "年" => 365.0 * 86_400.0,
        _ => return None,
    };
    // a duration past a thousand years is a typing error, not a prescription
    let secs = n * per;
    (secs.is_finite() && (0.0..=1000.0 * 365.0 * 86_400.0).contains(&secs)).then_some(secs as i64)
}

/// The end of a prescription: validity period end, else the start plus the expected
/// supply duration, else plus the dosage's bounds duration.
fn prescription_end(v: &Value, start: Option<i64>) -> CResult<Option<i64>> {
    let dr = &v["dispenseRequest"];
    if let Some(end) = date_of(&dr["validityPeriod"], "end")? {
        return Ok(Some(end));
    }
    let Some(start) = start else {
        return Ok(None);
    };
    if let Some(d) = duration_secs(&dr["expectedSupplyDuration"]) {
        return Ok(start.checked_add(d));
    }
    let bounds = v["dosageInstruction"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|di| duration_secs(&di["timing"]["repeat"]["boundsDuration"]))
        .max();
    Ok(bounds.and_then(|d| start.checked_add(d)))
}

/// Whether a ServiceRequest is an imaging order (category SNOMED 363679005 or "imaging").
pub(crate) fn is_imaging_order(v: &Value) -> bool {
    codings_of_list(&v["category"]).iter().any(|c| {
        let code = c.split_once('|').map_or(c.as_str(), |(_, c)| c);
        code == SCT_IMAGING || code.eq_ignore_ascii_case("imaging")
    })
}

/// Normalised body sites: codes and texts, upper-cased.
pub(crate) fn body_sites(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for site in v["bodySite"].as_array().into_iter().flatten() {
        for c in site["coding"].as_array().into_iter().flatten() {
            for f in ["code", "display"] {
                let t = s(&c[f]);
                if !t.is_empty() {
                    out.push(t.to_uppercase());
                }
            }
        }
        let t = s(&site["text"]);
        if !t.is_empty() {
            out.push(t.to_uppercase());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Check a resource of `t` and take its keys. `category` is the DetectedIssue's (the
/// category of what it is about); ignored for the other types.
pub(crate) fn extract(t: ResourceType, v: &Value, category: Option<Category>) -> CResult<Keys> {
    if !v.is_object() {
        return Err(invalid("the resource must be a JSON object"));
    }
    let field = patient_field(t);
    let patient = match &v[field] {
        Value::Null => return Err(invalid(format!("{field} (the patient) is required"))),
        r => patient_of_reference(r).ok_or_else(|| {
            invalid(format!(
                "{field} must reference the regional patient: {{\"reference\": \"Patient/<regional ID>\"}}"
            ))
        })?,
    };
    let mut k = Keys {
        patient,
        date: None,
        codes: Vec::new(),
        categories: Vec::new(),
        status: String::new(),
        sites: Vec::new(),
        until: None,
        category: Category::Lab,
    };
    match t {
        ResourceType::Encounter => {
            k.status = status_in(
                v,
                "status",
                &[
                    "planned",
                    "arrived",
                    "triaged",
                    "in-progress",
                    "onleave",
                    "finished",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ],
                true,
            )?;
            if s(&v["class"]["code"]).is_empty() {
                return Err(invalid(
                    "class is required (a Coding, e.g. v3-ActCode AMB or IMP)",
                ));
            }
            k.categories = vec![format!(
                "{}|{}",
                s(&v["class"]["system"]),
                s(&v["class"]["code"])
            )];
            k.codes = codings_of_list(&v["type"]);
            k.date = first_date(v, &["period.start", "period.end"])?;
            k.category = Category::Encounter;
        }
        ResourceType::Condition => {
            k.status = clinical_status(
                v,
                &[
                    "active",
                    "recurrence",
                    "relapse",
                    "inactive",
                    "remission",
                    "resolved",
                ],
            )?;
            k.codes = codings(&v["code"]);
            k.categories = codings_of_list(&v["category"]);
            k.date = first_date(v, &["onsetDateTime", "onsetPeriod.start", "recordedDate"])?;
            k.category = Category::Diagnosis;
        }
        ResourceType::Observation => {
            k.status = status_in(v, "status", OBSERVATION_STATUS, true)?;
            require(v, "code")?;
            k.codes = codings(&v["code"]);
            k.categories = codings_of_list(&v["category"]);
            k.date = first_date(
                v,
                &[
                    "effectiveDateTime",
                    "effectivePeriod.start",
                    "effectiveInstant",
                    "issued",
                ],
            )?;
            k.category = Category::Lab;
        }
        ResourceType::MedicationRequest => {
            k.status = status_in(
                v,
                "status",
                &[
                    "active",
                    "on-hold",
                    "cancelled",
                    "completed",
                    "entered-in-error",
                    "stopped",
                    "draft",
                    "unknown",
                ],
                true,
            )?;
            require(v, "intent")?;
            if v["medicationCodeableConcept"].is_null() && v["medicationReference"].is_null() {
                return Err(invalid(
                    "medicationCodeableConcept (YJ, HOT or RxNorm code) is required",
                ));
            }
            k.codes = codings(&v["medicationCodeableConcept"]);
            k.categories = codings_of_list(&v["category"]);
            k.date = first_date(v, &["authoredOn"])?;
            k.until = prescription_end(v, k.date)?;
            k.category = Category::Medication;
        }
        ResourceType::AllergyIntolerance => {
            k.status = clinical_status(v, &["active", "inactive", "resolved"])?;
            k.codes = codings(&v["code"]);
            k.categories = v["category"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("http://hl7.org/fhir/allergy-intolerance-category|{}", s(c)))
                .collect();
            k.date = first_date(v, &["recordedDate", "onsetDateTime"])?;
            k.category = Category::Allergy;
        }
        ResourceType::DocumentReference => {
            k.status = status_in(
                v,
                "status",
                &["current", "superseded", "entered-in-error"],
                true,
            )?;
            let content = v["content"]
                .as_array()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| invalid("content (at least one attachment) is required"))?;
            if content.iter().any(|c| !c["attachment"].is_object()) {
                return Err(invalid("every content needs an attachment"));
            }
            k.codes = codings(&v["type"]);
            k.categories = codings_of_list(&v["category"]);
            k.date = first_date(v, &["date"])?;
            if k.date.is_none() {
                k.date = date_of(&v["context"]["period"], "start")?;
            }
            k.category = Category::Document;
        }
        ResourceType::ServiceRequest => {
            k.status = status_in(
                v,
                "status",
                &[
                    "draft",
                    "active",
                    "on-hold",
                    "revoked",
                    "completed",
                    "entered-in-error",
                    "unknown",
                ],
                true,
            )?;
            require(v, "intent")?;
            k.codes = codings(&v["code"]);
            k.categories = codings_of_list(&v["category"]);
            k.date = first_date(v, &["occurrenceDateTime", "authoredOn"])?;
            if is_imaging_order(v) {
                k.category = Category::Imaging;
                k.sites = body_sites(v);
            } else {
                k.category = Category::Lab;
            }
        }
        ResourceType::DetectedIssue => {
            k.status = status_in(v, "status", OBSERVATION_STATUS, true)?;
            k.codes = codings(&v["code"]);
            k.date = first_date(v, &["identifiedDateTime"])?;
            k.category = category.unwrap_or(Category::Medication);
        }
        ResourceType::ImagingStudy | ResourceType::Consent => {
            return Err(invalid(format!(
                "{} is generated by the node and cannot be written",
                t.as_str()
            )))
        }
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SNOMED: &str = "http://snomed.info/sct";

    #[test]
    fn absurd_durations_end_nothing() {
        let start = Some(1_700_000_000_000_000);
        let rx = |d: Value| {
            prescription_end(
                &json!({"dispenseRequest": {"expectedSupplyDuration": d}}),
                start,
            )
            .unwrap()
        };
        assert!(rx(json!({"value": 14, "code": "d"})).is_some());
        assert_eq!(rx(json!({"value": 1e20, "code": "a"})), None);
        assert_eq!(rx(json!({"value": -3, "code": "d"})), None);
    }

    #[test]
    fn references_name_the_patient() {
        let p = |r: Value| patient_of_reference(&r);
        assert_eq!(
            p(json!({"reference": "Patient/0000000013"})).as_deref(),
            Some("0000000013")
        );
        assert_eq!(
            p(json!({"reference": "http://h/fhir/Patient/0000000013/_history/2"})).as_deref(),
            Some("0000000013")
        );
        assert_eq!(
            p(json!({"identifier": {"system": REGIONAL_ID_SYSTEM, "value": "0000000013"}}))
                .as_deref(),
            Some("0000000013")
        );
        assert_eq!(p(json!({"reference": "Group/1"})), None);
    }

    #[test]
    fn keys_of_a_prescription() {
        let v = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/0000000013"},
            "medicationCodeableConcept": {"coding": [{"system": "urn:oid:1.2.392.100495.20.1.73", "code": "2189015F1022"}]},
            "authoredOn": "2026-01-10",
            "dispenseRequest": {"expectedSupplyDuration": {"value": 28, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"}}});
        let k = extract(ResourceType::MedicationRequest, &v, None).unwrap();
        assert_eq!(k.codes, vec!["urn:oid:1.2.392.100495.20.1.73|2189015F1022"]);
        assert_eq!(k.until.unwrap() - k.date.unwrap(), 28 * 86_400);
        assert_eq!(k.category, Category::Medication);
        let bad = json!({"resourceType": "MedicationRequest", "status": "taken", "intent": "order",
            "subject": {"reference": "Patient/0000000013"}, "medicationCodeableConcept": {}});
        assert!(matches!(
            extract(ResourceType::MedicationRequest, &bad, None),
            Err(ClinicalError::Invalid(_))
        ));
    }

    #[test]
    fn imaging_orders_have_sites() {
        let v = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/0000000013"},
            "category": [{"coding": [{"system": SNOMED, "code": SCT_IMAGING}]}],
            "bodySite": [{"coding": [{"system": SNOMED, "code": "51185008", "display": "Chest"}], "text": "chest"}]});
        let k = extract(ResourceType::ServiceRequest, &v, None).unwrap();
        assert_eq!(k.category, Category::Imaging);
        assert_eq!(k.sites, vec!["51185008", "CHEST"]);
    }
}
