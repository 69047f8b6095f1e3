//! Duplicate checks on create (and `$check`): a lab order for a test ordered or resulted
//! within its window, an imaging order for a body site imaged or ordered within the
//! imaging window, a prescription of a drug (same code, same YJ ingredient, or same
//! class of the configured table) already active from any facility. Only earlier records
//! the writer may read count (the policy decides, so a DetectedIssue never reveals what
//! the writer could not see). Each rule that fires gives one DetectedIssue (`DUPTHPY`)
//! naming every earlier record, its facility and its date.

use serde_json::{json, Value};

use super::config::{pattern_matches, YJ};
use super::date::{self, DAY};
use super::extract::Keys;
use super::store::Hit;
use super::{parse_json, ResourceType, Scope};
use crate::error::Result;
use crate::model::RegionalPatient;
use crate::policy::{Actor, Category};
use crate::Share;

/// HL7 v3 ActCode.
pub(crate) const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// A duplicate found.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    /// The category of the new resource (the DetectedIssue's).
    pub(crate) category: Category,
    /// high | moderate | low.
    pub(crate) severity: &'static str,
    /// Text naming the earlier records, their facilities and dates.
    pub(crate) detail: String,
    /// References of the earlier records.
    pub(crate) implicated: Vec<String>,
}

const DEAD: &[&str] = &["entered-in-error", "revoked", "cancelled"];

fn display_of(cc: &Value) -> String {
    if let Some(t) = cc["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return t.trim().to_string();
    }
    cc["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["display"].as_str().or_else(|| c["code"].as_str()))
        .unwrap_or_default()
        .to_string()
}

fn yj_ingredient(code: &str) -> Option<&str> {
    let (sys, c) = code.split_once('|')?;
    // YJ codes are ASCII; a typed full-width code has no ingredient prefix (and must not
    // split a character)
    (sys == YJ).then(|| c.get(..7)).flatten()
}

impl Share {
    fn describe(&self, h: &Hit, what: Option<&str>) -> String {
        let name = self
            .facility(&h.entry.facility)
            .map(|f| f.name)
            .unwrap_or_else(|| h.entry.facility.clone());
        let day = date::from_key(&h.date)
            .map(date::day_text)
            .unwrap_or_default();
        let what = what.map(|w| format!(" ({w})")).unwrap_or_default();
        format!(
            "{}/{}{what} recorded by {name} (facility {}) on {day}",
            h.rtype.as_str(),
            h.id,
            h.entry.facility
        )
    }

    /// The duplicates a new resource would be.
    pub(crate) fn find_duplicates(
        &self,
        actor: &Actor,
        patient: &RegionalPatient,
        t: ResourceType,
        v: &Value,
        keys: &Keys,
    ) -> Result<Vec<Finding>> {
        let checked = match t {
            ResourceType::ServiceRequest => true,
            ResourceType::Observation => keys.status == "registered",
            ResourceType::MedicationRequest => {
                matches!(keys.status.as_str(), "active" | "draft" | "on-hold")
            }
            _ => false,
        };
        if !checked {
            // the common write (a result, a diagnosis) reads nothing more
            return Ok(Vec::new());
        }
        let patients = self.patient_ids(patient)?;
        let mut scope = Scope::new(self, actor, patient);
        let when = keys.date.unwrap_or_else(date::now);
        let mut out = Vec::new();
        match t {
            ResourceType::ServiceRequest if keys.category == Category::Imaging => {
                if let Some(f) = self.imaging_duplicates(&mut scope, &patients, keys, when)? {
                    out.push(f);
                }
            }
            ResourceType::ServiceRequest => {
                if let Some(f) = self.lab_duplicates(&mut scope, &patients, keys, when, v)? {
                    out.push(f);
                }
            }
            ResourceType::Observation if keys.status == "registered" => {
                if let Some(f) = self.lab_duplicates(&mut scope, &patients, keys, when, v)? {
                    out.push(f);
                }
            }
            ResourceType::MedicationRequest
                if matches!(keys.status.as_str(), "active" | "draft" | "on-hold") =>
            {
                out.extend(self.medication_duplicates(&mut scope, &patients, keys, v)?);
            }
            _ => {}
        }
        Ok(out)
    }

    fn lab_duplicates(
        &self,
        scope: &mut Scope<'_>,
        patients: &[String],
        keys: &Keys,
        when: i64,
        v: &Value,
    ) -> Result<Option<Finding>> {
        let cfg = &self.config().clinical;
        let table = keys.codes.iter().find_map(|c| cfg.test_of(c));
        let (name, window) = match table {
            Some(t) => (t.name.clone(), t.window_days),
            None => {
                let d = display_of(&v["code"]);
                let d = if d.is_empty() {
                    keys.codes.first().cloned().unwrap_or_default()
                } else {
                    d
                };
                (d, cfg.default_lab_window_days)
            }
        };
        if window == 0 || keys.codes.is_empty() {
            return Ok(None);
        }
        let same = |code: &str| match table {
            Some(t) => t.codes.iter().any(|p| pattern_matches(p, code)),
            None => keys.codes.iter().any(|c| c == code),
        };
        let span = i64::from(window) * DAY;
        let from = date::key(when - span);
        let to = date::key(when + span);
        let mut hits: Vec<Hit> = Vec::new();
        for rt in [ResourceType::ServiceRequest, ResourceType::Observation] {
            for h in self.timeline_from(patients, rt, &from)? {
                let e = &h.entry;
                if h.date > to
                    || DEAD.contains(&e.status.as_str())
                    || e.category != Category::Lab.as_str()
                    || !e.codes.iter().any(|c| same(c))
                {
                    continue;
                }
                if scope.decision(Some(&e.facility), Category::Lab)?.allowed {
                    hits.push(h);
                }
            }
        }
        if hits.is_empty() {
            return Ok(None);
        }
        hits.sort_by(|a, b| b.date.cmp(&a.date));
        let named: Vec<String> = hits.iter().map(|h| self.describe(h, None)).collect();
        Ok(Some(Finding {
            category: Category::Lab,
            severity: "moderate",
            detail: format!(
                "{name} was already ordered or resulted within {window} days: {}",
                named.join("; ")
            ),
            implicated: hits
                .iter()
                .map(|h| format!("{}/{}", h.rtype.as_str(), h.id))
                .collect(),
        }))
    }

    fn imaging_duplicates(
        &self,
        scope: &mut Scope<'_>,
        patients: &[String],
        keys: &Keys,
        when: i64,
    ) -> Result<Option<Finding>> {
        let cfg = &self.config().clinical;
        let window = keys
            .codes
            .iter()
            .find_map(|c| cfg.test_of(c))
            .map_or(cfg.imaging_window_days, |t| t.window_days);
        if window == 0 || keys.sites.is_empty() {
            return Ok(None);
        }
        let span = i64::from(window) * DAY;
        let from = date::key(when - span);
        let to = date::key(when + span);
        let mut named = Vec::new();
        let mut implicated = Vec::new();
        let mut orders: Vec<Hit> = self
            .timeline_from(patients, ResourceType::ServiceRequest, &from)?
            .into_iter()
            .filter(|h| {
                h.date <= to
                    && h.entry.category == Category::Imaging.as_str()
                    && !DEAD.contains(&h.entry.status.as_str())
                    && h.entry.sites.iter().any(|s| keys.sites.contains(s))
            })
            .collect();
        orders.sort_by(|a, b| b.date.cmp(&a.date));
        for h in orders {
            if scope
                .decision(Some(&h.entry.facility), Category::Imaging)?
                .allowed
            {
                named.push(self.describe(&h, None));
                implicated.push(format!("ServiceRequest/{}", h.id));
            }
        }
        for s in self.patient_studies(patients)?.into_iter().rev() {
            let Some(d) = s.date else { continue };
            if d < when - span || d > when + span {
                continue;
            }
            let part = s.series.iter().find(|(se, _)| {
                let bp = se.body_part.trim().to_uppercase();
                !bp.is_empty() && keys.sites.contains(&bp)
            });
            let Some((se, _)) = part else { continue };
            if !scope
                .decision(s.owner.as_deref(), Category::Imaging)?
                .allowed
            {
                continue;
            }
            let owner = s.owner.clone().unwrap_or_default();
            let name = self
                .facility(&owner)
                .map(|f| f.name)
                .unwrap_or(owner.clone());
            named.push(format!(
                "ImagingStudy/{} ({} {}) stored by {name} (facility {owner}) on {}",
                s.record.study_uid,
                s.modalities().join("/"),
                se.body_part.trim(),
                date::day_text(d)
            ));
            implicated.push(format!("ImagingStudy/{}", s.record.study_uid));
        }
        if implicated.is_empty() {
            return Ok(None);
        }
        Ok(Some(Finding {
            category: Category::Imaging,
            severity: "moderate",
            detail: format!(
                "the same body site ({}) was imaged or ordered within {window} days: {}",
                keys.sites.join(", "),
                named.join("; ")
            ),
            implicated,
        }))
    }

    fn medication_duplicates(
        &self,
        scope: &mut Scope<'_>,
        patients: &[String],
        keys: &Keys,
        v: &Value,
    ) -> Result<Vec<Finding>> {
        let cfg = &self.config().clinical;
        let now = date::now();
        let mut active: Vec<Hit> = Vec::new();
        self.timeline(patients, Some(ResourceType::MedicationRequest), |h| {
            if h.entry.status == "active" && h.entry.until.is_none_or(|u| u >= now) {
                active.push(h);
            }
            true
        })?;
        active.sort_by(|a, b| b.date.cmp(&a.date));
        let drug = display_of(&v["medicationCodeableConcept"]);
        let mut same: Vec<(Hit, String)> = Vec::new();
        let mut classes: Vec<(String, Vec<(Hit, String)>)> = Vec::new();
        for h in active {
            let codes = &h.entry.codes;
            let is_same = keys.codes.iter().any(|c| {
                codes.iter().any(|o| {
                    o == c
                        || (cfg.yj_ingredient_match
                            && yj_ingredient(c).is_some()
                            && yj_ingredient(c) == yj_ingredient(o))
                })
            });
            let shared: Vec<String> = keys
                .codes
                .iter()
                .flat_map(|c| cfg.classes_of(c))
                .filter(|cl| {
                    codes
                        .iter()
                        .any(|o| cfg.classes_of(o).any(|x| x.name == cl.name))
                })
                .map(|cl| cl.name.clone())
                .collect();
            if !is_same && shared.is_empty() {
                continue;
            }
            if !scope
                .decision(Some(&h.entry.facility), Category::Medication)?
                .allowed
            {
                continue;
            }
            let shown = match self.load(ResourceType::MedicationRequest, &h.id)? {
                Some(s) => display_of(&parse_json(&s)?["medicationCodeableConcept"]),
                None => String::new(),
            };
            if is_same {
                same.push((h, shown));
            } else if let Some(name) = shared.first() {
                match classes.iter_mut().find(|(n, _)| n == name) {
                    Some((_, v)) => v.push((h, shown)),
                    None => classes.push((name.clone(), vec![(h, shown)])),
                }
            }
        }
        let mut out = Vec::new();
        let refs = |v: &[(Hit, String)]| -> Vec<String> {
            v.iter()
                .map(|(h, _)| format!("MedicationRequest/{}", h.id))
                .collect()
        };
        if !same.is_empty() {
            let named: Vec<String> = same
                .iter()
                .map(|(h, s)| self.describe(h, Some(s)))
                .collect();
            out.push(Finding {
                category: Category::Medication,
                severity: "high",
                detail: format!(
                    "{drug}: the same drug (or active ingredient) is already prescribed and active: {}",
                    named.join("; ")
                ),
                implicated: refs(&same),
            });
        }
        for (name, hs) in classes {
            let named: Vec<String> = hs.iter().map(|(h, s)| self.describe(h, Some(s))).collect();
            out.push(Finding {
                category: Category::Medication,
                severity: "moderate",
                detail: format!(
                    "{drug}: another drug of the class {name} is already prescribed and active: {}",
                    named.join("; ")
                ),
                implicated: refs(&hs),
            });
        }
        Ok(out)
    }

    /// A finding as a DetectedIssue (without id and meta: the caller stores it, or not).
    pub(crate) fn detected_issue(
        &self,
        f: &Finding,
        patient: &str,
        new_ref: Option<String>,
    ) -> Value {
        let mut implicated: Vec<Value> = f
            .implicated
            .iter()
            .map(|r| json!({"reference": r}))
            .collect();
        let stored = new_ref.is_some();
        if let Some(r) = new_ref {
            implicated.insert(0, json!({"reference": r}));
        }
        json!({
            "resourceType": "DetectedIssue",
            "status": if stored { "final" } else { "preliminary" },
            "code": {"coding": [{"system": ACT_CODE, "code": "DUPTHPY",
                "display": "Duplicate Therapy Alert"}]},
            "severity": f.severity,
            "patient": {"reference": format!("Patient/{patient}")},
            "identifiedDateTime": date::instant_text(date::now()),
            "author": {"display": format!("Renkei duplicate check ({})", self.config().node_name)},
            "implicated": implicated,
            "detail": f.detail,
        })
    }
}

#[cfg(test)]
mod yj_tests {
    #[test]
    fn a_typed_full_width_code_has_no_ingredient_and_does_not_panic() {
        let yj = |c: &str| super::yj_ingredient(c).map(str::to_string);
        assert_eq!(
            yj(&format!("{}|2189015F1022", super::YJ)).as_deref(),
            Some("2189015")
        );
        assert_eq!(yj(&format!("{}|２１８９０１５", super::YJ)), None);
        assert_eq!(yj(&format!("{}|218", super::YJ)), None);
    }
}
