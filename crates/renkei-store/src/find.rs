//! C-FIND execution on the index: candidates by the hierarchy and the unique keys, the
//! remaining keys matched in memory, derived counts computed only when asked for.
//!
//! Candidate choice (a first planner; secondary indexes for PatientID, AccessionNumber,
//! dates and names come with the query work's planner):
//! - PATIENT: the (issuer, PatientID) point when both are single values, else a scan;
//! - STUDY: the listed Study Instance UIDs; else the studies of the patients with the
//!   requested PatientID; else a scan of studies;
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
        if let Some(pid) = q.single_value(tags::PATIENT_ID) {
            let mut patients = Vec::new();
            self.index
                .for_each::<PatientRecord>(keys::CF_PATIENT, |_, p| {
                    let p = p?;
                    if p.key.patient_id == pid {
                        patients.push(p.key);
                    }
                    Ok(true)
                })?;
            for key in patients {
                for uid in self.patient_studies(&key)? {
                    if let Some(study) = self.study(&uid)? {
                        if !offer(study)? {
                            return Ok(());
                        }
                    }
                }
            }
            return Ok(());
        }
        self.index
            .for_each::<StudyRecord>(keys::CF_STUDY, |_, s| offer(s?))
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
