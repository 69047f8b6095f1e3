//! C-FIND execution on the index: candidates by the hierarchy and the unique keys, the
//! remaining keys matched in memory, derived counts computed only when asked for.
//!
//! Candidate choice (the planner):
//! - PATIENT: the (issuer, PatientID) point when both are single values, else a scan;
//! - STUDY: the listed Study Instance UIDs; else the `idx` entries of PatientID,
//!   AccessionNumber or StudyDate (single or range), in that order; else a scan of studies;
//! - SERIES / IMAGE: the children of the (required) parent UID.

use dicom_dictionary_std::tags;

use renkei_model::query::{Entity, Level, Matcher, Query};
use renkei_model::{PatientKey, PatientRecord, SeriesRecord, StudyRecord};

use crate::error::Result;
use crate::{keys, Store};

impl Store {
    /// Run `q`, calling `emit` for each match in index order until it returns false.
    pub fn find(&self, q: &Query, mut emit: impl FnMut(Entity) -> bool) -> Result<()> {
        match q.level {
            Level::Patient => self.find_patients(q, &mut emit),
            Level::Study => self.find_studies(q, &mut emit),
            Level::Series => self.find_series(q, &mut emit),
            Level::Image => self.find_instances(q, &mut emit),
        }
    }

    fn find_patients(&self, q: &Query, emit: &mut dyn FnMut(Entity) -> bool) -> Result<()> {
        let offer = |p: PatientRecord, emit: &mut dyn FnMut(Entity) -> bool| -> Result<bool> {
            let mut e = Entity {
                patient: p,
                ..Default::default()
            };
            if wants(q, tags::NUMBER_OF_PATIENT_RELATED_STUDIES) {
                e.patient_studies = Some(self.patient_studies(&e.patient.key)?.len() as u64);
            }
            Ok(!q.matches(|t| e.value(t)) || emit(e))
        };
        if let (Some(pid), Some(issuer)) = (
            q.single_value(tags::PATIENT_ID),
            q.single_value(tags::ISSUER_OF_PATIENT_ID),
        ) {
            let key = PatientKey {
                issuer: issuer.to_string(),
                patient_id: pid.to_string(),
            };
            if let Some(p) = self.patient(&key)? {
                offer(p, emit)?;
            }
            return Ok(());
        }
        self.index
            .for_each::<PatientRecord>(keys::CF_PATIENT, |_, p| offer(p?, emit))
    }

    fn find_studies(&self, q: &Query, emit: &mut dyn FnMut(Entity) -> bool) -> Result<()> {
        let mut offer = |study: StudyRecord| -> Result<bool> {
            let patient = self
                .patient(&study.patient)?
                .unwrap_or_else(|| PatientRecord {
                    key: study.patient.clone(),
                    ..Default::default()
                });
            let mut e = Entity {
                patient,
                study: Some(study),
                ..Default::default()
            };
            self.fill_study_counts(q, &mut e)?;
            Ok(!q.matches(|t| e.value(t)) || emit(e))
        };
        if let Some(Matcher::UidList(uids)) = q.key(tags::STUDY_INSTANCE_UID) {
            for uid in uids {
                if let Some(study) = self.study(uid)? {
                    if !offer(study)? {
                        break;
                    }
                }
            }
            return Ok(());
        }
        if let Some(uids) = self.planned_studies(q)? {
            for uid in uids {
                if let Some(study) = self.study(&uid)? {
                    if !offer(study)? {
                        break;
                    }
                }
            }
            return Ok(());
        }
        self.index
            .for_each::<StudyRecord>(keys::CF_STUDY, |_, s| offer(s?))
    }

    /// Study UIDs from the most selective secondary index the query allows (PatientID,
    /// AccessionNumber, StudyDate), or None when only a scan will do. Candidates are still
    /// matched against every key, so a stale index entry costs a lookup, never a wrong match.
    fn planned_studies(&self, q: &Query) -> Result<Option<Vec<String>>> {
        let exact = |kind: u8, value: &str| -> Result<Vec<String>> {
            let prefix = keys::idx_prefix(kind, value);
            let mut out = Vec::new();
            self.index.scan_keys(keys::CF_IDX, &prefix, |k| {
                if !k.starts_with(&prefix) {
                    return false;
                }
                out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
                true
            })?;
            Ok(out)
        };
        if let Some(pid) = q.single_value(tags::PATIENT_ID) {
            return exact(keys::IDX_PATIENT_ID, pid).map(Some);
        }
        if let Some(acc) = q.single_value(tags::ACCESSION_NUMBER) {
            return exact(keys::IDX_ACCESSION, acc).map(Some);
        }
        match q.key(tags::STUDY_DATE) {
            Some(Matcher::Single(d)) => exact(keys::IDX_STUDY_DATE, d).map(Some),
            Some(Matcher::Range(lo, hi)) => {
                let start = keys::idx_key(keys::IDX_STUDY_DATE, lo.as_deref().unwrap_or(""), "");
                let mut out = Vec::new();
                self.index.scan_keys(keys::CF_IDX, &start, |k| {
                    if k.first() != Some(&keys::IDX_STUDY_DATE) {
                        return false;
                    }
                    let rest = &k[1..];
                    let Some(sep) = rest.iter().position(|&b| b == keys::SEP) else {
                        return true;
                    };
                    let date = String::from_utf8_lossy(&rest[..sep]);
                    if hi.as_deref().is_some_and(|hi| *date > *hi) {
                        return false;
                    }
                    out.push(String::from_utf8_lossy(&rest[sep + 1..]).into_owned());
                    true
                })?;
                Ok(Some(out))
            }
            _ => Ok(None),
        }
    }

    fn fill_study_counts(&self, q: &Query, e: &mut Entity) -> Result<()> {
        let Some(study) = e.study.as_ref() else {
            return Ok(());
        };
        let uid = study.study_uid.clone();
        if wants(q, tags::MODALITIES_IN_STUDY) || wants(q, tags::NUMBER_OF_STUDY_RELATED_SERIES) {
            let series = self.study_series(&uid)?;
            e.study_series = Some(series.len() as u64);
            if wants(q, tags::MODALITIES_IN_STUDY) {
                let mut mods = Vec::new();
                for s in &series {
                    if let Some(rec) = self.series(s)? {
                        if !rec.modality.is_empty() && !mods.contains(&rec.modality) {
                            mods.push(rec.modality);
                        }
                    }
                }
                mods.sort();
                e.modalities_in_study = Some(mods);
            }
        }
        if wants(q, tags::NUMBER_OF_STUDY_RELATED_INSTANCES) {
            e.study_instances = Some(self.study_instance_count(&uid)?);
        }
        Ok(())
    }

    fn parent_study(&self, q: &Query) -> Result<Option<(PatientRecord, StudyRecord)>> {
        let Some(uid) = q.single_value(tags::STUDY_INSTANCE_UID) else {
            return Ok(None);
        };
        let Some(study) = self.study(uid)? else {
            return Ok(None);
        };
        let patient = self
            .patient(&study.patient)?
            .unwrap_or_else(|| PatientRecord {
                key: study.patient.clone(),
                ..Default::default()
            });
        Ok(Some((patient, study)))
    }

    fn find_series(&self, q: &Query, emit: &mut dyn FnMut(Entity) -> bool) -> Result<()> {
        let Some((patient, study)) = self.parent_study(q)? else {
            return Ok(());
        };
        for uid in self.study_series(&study.study_uid)? {
            let Some(series) = self.series(&uid)? else {
                continue;
            };
            let mut e = Entity {
                patient: patient.clone(),
                study: Some(study.clone()),
                series: Some(series),
                ..Default::default()
            };
            if wants(q, tags::NUMBER_OF_SERIES_RELATED_INSTANCES) {
                e.series_instances = Some(self.series_instance_count(&uid)?);
            }
            if q.matches(|t| e.value(t)) && !emit(e) {
                break;
            }
        }
        Ok(())
    }

    fn find_instances(&self, q: &Query, emit: &mut dyn FnMut(Entity) -> bool) -> Result<()> {
        let Some((patient, study)) = self.parent_study(q)? else {
            return Ok(());
        };
        let Some(series_uid) = q.single_value(tags::SERIES_INSTANCE_UID) else {
            return Ok(());
        };
        let Some(series) = self.series(series_uid)? else {
            return Ok(());
        };
        if series.study_uid != study.study_uid {
            return Ok(());
        }
        let series: SeriesRecord = series;
        for uid in self.series_instances(series_uid)? {
            let Some(instance) = self.instance(&uid)? else {
                continue;
            };
            let e = Entity {
                patient: patient.clone(),
                study: Some(study.clone()),
                series: Some(series.clone()),
                instance: Some(instance),
                ..Default::default()
            };
            if q.matches(|t| e.value(t)) && !emit(e) {
                break;
            }
        }
        Ok(())
    }
}

fn wants(q: &Query, tag: dicom_core::Tag) -> bool {
    q.return_tags.contains(&tag)
}

impl Store {
    /// The instances a C-GET/C-MOVE identifier names: the matches of `q` at its level and
    /// everything below them, in index order.
    pub fn instances_for(&self, q: &Query) -> Result<Vec<renkei_model::InstanceRecord>> {
        let mut entities = Vec::new();
        self.find(q, |e| {
            entities.push(e);
            true
        })?;
        let mut out = Vec::new();
        for e in entities {
            if let Some(i) = e.instance {
                out.push(i);
                continue;
            }
            let series_uids = match (&e.series, &e.study) {
                (Some(s), _) => vec![s.series_uid.clone()],
                (None, Some(st)) => self.study_series(&st.study_uid)?,
                (None, None) => {
                    let mut all = Vec::new();
                    for st in self.patient_studies(&e.patient.key)? {
                        all.extend(self.study_series(&st)?);
                    }
                    all
                }
            };
            for s in series_uids {
                for uid in self.series_instances(&s)? {
                    if let Some(i) = self.instance(&uid)? {
                        out.push(i);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The secondary index entries of a study: (kind, value) for its non-empty PatientID,
/// AccessionNumber and StudyDate.
pub(crate) fn study_index_values(study: &StudyRecord) -> Vec<(u8, &str)> {
    [
        (keys::IDX_PATIENT_ID, study.patient.patient_id.as_str()),
        (keys::IDX_ACCESSION, study.accession_number.as_str()),
        (keys::IDX_STUDY_DATE, study.study_date.as_str()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect()
}
