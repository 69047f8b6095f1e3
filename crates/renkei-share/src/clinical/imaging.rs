//! ImagingStudy generated on the fly from the PACS index: every study of every local ID
//! linked to the regional patient, at any facility (the issuer's facility owns it), with
//! its series, modalities, instance counts and the node's DICOMweb endpoint.

use serde_json::{json, Value};

use renkei_model::{PatientKey, SeriesRecord, StudyRecord};

use super::{date, CResult, THUMBNAIL_EXT};
use crate::error::{Result, ShareError};
use crate::model::RegionalPatient;
use crate::policy::{Actor, Category, Subject};
use crate::{AuditEvent, Share};

/// DICOM code system (modalities).
pub(crate) const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// A study of the index with what the resource shows.
#[derive(Debug, Clone)]
pub(crate) struct Study {
    pub(crate) record: StudyRecord,
    /// The facility of the study's issuer.
    pub(crate) owner: Option<String>,
    /// Its name.
    pub(crate) owner_name: Option<String>,
    pub(crate) series: Vec<(SeriesRecord, u64)>,
    pub(crate) instances: u64,
    /// Start instant (Unix seconds) of the study date, if it has one.
    pub(crate) date: Option<i64>,
}

impl Study {
    /// Timeline date key.
    pub(crate) fn date_key(&self) -> String {
        date::key(self.date.unwrap_or(0))
    }

    /// Modalities of the study's series.
    pub(crate) fn modalities(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .series
            .iter()
            .map(|(s, _)| s.modality.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        m.sort();
        m.dedup();
        m
    }
}

fn study_date(d: &str) -> Option<i64> {
    let d = d.trim();
    if d.len() != 8 || !d.is_ascii() {
        return None;
    }
    date::parse(&format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8])).map(|s| s.start)
}

impl Share {
    fn study_info(&self, record: StudyRecord) -> Result<Study> {
        let store = self.store();
        let mut series = Vec::new();
        for uid in store.study_series(&record.study_uid)? {
            if let Some(s) = store.series(&uid)? {
                let n = store.series_instance_count(&uid)?;
                series.push((s, n));
            }
        }
        series.sort_by_key(|(s, _)| (s.series_number, s.series_uid.clone()));
        let instances = store.study_instance_count(&record.study_uid)?;
        let owner = self.facility_of_issuer(&record.patient.issuer);
        Ok(Study {
            owner_name: owner
                .as_deref()
                .and_then(|o| self.facility(o))
                .map(|f| f.name),
            owner,
            date: study_date(&record.study_date),
            record,
            series,
            instances,
        })
    }

    /// Every study of the patient's linked local IDs (and of the IDs merged into it).
    pub(crate) fn patient_studies(&self, patients: &[String]) -> Result<Vec<Study>> {
        let mut out = Vec::new();
        for p in patients {
            for l in self.links(p)? {
                let key = PatientKey {
                    issuer: l.issuer,
                    patient_id: l.patient_id,
                };
                for uid in self.store().patient_studies(&key)? {
                    if let Some(rec) = self.store().study(&uid)? {
                        out.push(self.study_info(rec)?);
                    }
                }
            }
        }
        out.sort_by_key(Study::date_key);
        out.dedup_by(|a, b| a.record.study_uid == b.record.study_uid);
        Ok(out)
    }

    /// Read one ImagingStudy (id = Study Instance UID) through the policy; one audit
    /// record.
    pub(crate) fn read_imaging_study(
        &self,
        actor: &Actor,
        uid: &str,
        base: &str,
    ) -> CResult<Value> {
        let rec = self
            .store()
            .study(uid)?
            .ok_or_else(|| ShareError::NotFound(format!("no ImagingStudy/{uid}")))?;
        let patient = self.regional_for(&rec.patient)?;
        let study = self.study_info(rec)?;
        let d = self.decide(
            actor,
            Subject {
                patient: patient.as_ref(),
                owner: study.owner.as_deref(),
                category: Category::Imaging,
            },
        )?;
        let who = match &patient {
            Some(p) => p.id.clone(),
            None => format!(
                "{}|{}",
                study.record.patient.issuer, study.record.patient.patient_id
            ),
        };
        let mut e = actor.audit(
            "FHIR read ImagingStudy",
            AuditEvent::InstancesAccessed,
            &who,
        );
        e.allowed = d.allowed;
        e.break_glass = d.break_glass;
        e.detail = format!("ImagingStudy/{uid}: {}", d.reason);
        self.audit_read(e)?;
        if !d.allowed {
            return Err(ShareError::Forbidden(format!("not permitted: {}", d.reason)).into());
        }
        Ok(imaging_study_resource(&study, patient.as_ref(), base))
    }
}

/// A study as a FHIR ImagingStudy. `base` is the server's absolute URL.
pub(crate) fn imaging_study_resource(
    s: &Study,
    patient: Option<&RegionalPatient>,
    base: &str,
) -> Value {
    let r = &s.record;
    let subject = match patient {
        Some(p) => json!({"reference": format!("Patient/{}", p.id)}),
        None => json!({"identifier": super::local_identifier(&crate::identity::LocalId {
            issuer: r.patient.issuer.clone(), patient_id: r.patient.patient_id.clone()})}),
    };
    let series: Vec<Value> = s
        .series
        .iter()
        .map(|(se, n)| {
            let mut v = json!({
                "uid": se.series_uid,
                "modality": {"system": DCM, "code": if se.modality.trim().is_empty() { "OT" } else { se.modality.trim() }},
                "numberOfInstances": n,
            });
            if let Some(num) = se.series_number.filter(|n| *n >= 0) {
                v["number"] = json!(num);
            }
            if !se.description.trim().is_empty() {
                v["description"] = json!(se.description.trim());
            }
            if !se.body_part.trim().is_empty() {
                v["bodySite"] = json!({"system": DCM, "code": se.body_part.trim(), "display": se.body_part.trim()});
            }
            v
        })
        .collect();
    let mut v = json!({
        "resourceType": "ImagingStudy",
        "id": r.study_uid,
        "extension": [{"url": THUMBNAIL_EXT,
            "valueUrl": format!("{base}/dicom-web/studies/{}/thumbnail", r.study_uid)}],
        "identifier": [{"system": "urn:dicom:uid", "value": format!("urn:oid:{}", r.study_uid)}],
        "status": "available",
        "subject": subject,
        "endpoint": [{"reference": "#dicomweb"}],
        "contained": [{
            "resourceType": "Endpoint",
            "id": "dicomweb",
            "status": "active",
            "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "dicom-wado-rs"},
            "payloadType": [{"text": "DICOM"}],
            "payloadMimeType": ["application/dicom"],
            "address": format!("{base}/dicom-web"),
        }],
        "numberOfSeries": s.series.len(),
        "numberOfInstances": s.instances,
        "series": series,
    });
    let modalities: Vec<Value> = s
        .modalities()
        .iter()
        .map(|m| json!({"system": DCM, "code": m}))
        .collect();
    if !modalities.is_empty() {
        v["modality"] = Value::Array(modalities);
    }
    if let Some(d) = s.date {
        v["started"] = json!(date::day_text(d));
    }
    if !r.accession_number.trim().is_empty() {
        if let Some(ids) = v["identifier"].as_array_mut() {
            ids.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "value": r.accession_number.trim()}));
        }
    }
    if !r.description.trim().is_empty() {
        v["description"] = json!(r.description.trim());
    }
    if let Some(o) = &s.owner {
        if let Some(x) = v["extension"].as_array_mut() {
            let mut r = json!({"reference": format!("Organization/{o}")});
            if let Some(n) = &s.owner_name {
                r["display"] = json!(n);
            }
            x.push(json!({"url": super::RECORDING_FACILITY_EXT, "valueReference": r}));
        }
    }
    v
}

#[cfg(test)]
mod study_date_tests {
    #[test]
    fn only_eight_ascii_digits_are_a_date() {
        assert!(super::study_date("20240301").is_some());
        assert_eq!(super::study_date("2024\u{FFFD}0"), None);
        assert_eq!(super::study_date("2024030"), None);
    }
}
