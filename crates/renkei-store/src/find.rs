//! C-FIND execution on the index: candidates by the hierarchy and the unique keys, the
//! remaining keys matched in memory, derived counts computed only when asked for.
//!
//! Candidate choice (the planner):
//! - PATIENT: the (issuer, PatientID) point when both are single values; else the
//!   patients of the studies found by PatientID or name prefix in `idx`; else a scan;
//! - STUDY: the listed Study Instance UIDs; else the most selective `idx` plan among
//!   PatientID, AccessionNumber, PatientName prefix (folded), StudyDate (single or range)
//!   and ModalitiesInStudy, found by probing each; else a scan of studies;
//! - SERIES / IMAGE: the children of the (required) parent UID.

use dicom_dictionary_std::tags;

use renkei_model::query::{fold_name, Entity, Level, Matcher, Query};
use renkei_model::{PatientKey, PatientRecord, PersonName, SeriesRecord, StudyRecord};

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
        // PatientID without issuer, or a name: the patients of the indexed studies
        if let Some(studies) = self.planned_studies(q, PATIENT_KINDS)? {
            let mut seen = std::collections::HashSet::new();
            for uid in studies {
                let Some(study) = self.study(&uid)? else {
                    continue;
                };
                if !seen.insert(study.patient.clone()) {
                    continue;
                }
                if let Some(p) = self.patient(&study.patient)? {
                    if !offer(p, emit)? {
                        break;
                    }
                }
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
        if let Some(uids) = self.planned_studies(q, STUDY_KINDS)? {
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

    /// How `find` will choose its candidates for `q`, for logs and tests: `point`,
    /// `children`, `idx <kind> (<n> candidates)` or `scan`.
    pub fn explain(&self, q: &Query) -> Result<String> {
        let kinds = match q.level {
            Level::Series | Level::Image => return Ok("children".into()),
            Level::Patient
                if q.single_value(tags::PATIENT_ID).is_some()
                    && q.single_value(tags::ISSUER_OF_PATIENT_ID).is_some() =>
            {
                return Ok("point".into())
            }
            Level::Patient => PATIENT_KINDS,
            Level::Study
                if matches!(q.key(tags::STUDY_INSTANCE_UID), Some(Matcher::UidList(_))) =>
            {
                return Ok("point".into())
            }
            Level::Study => STUDY_KINDS,
        };
        Ok(match self.best_plan(q, kinds)? {
            Some((kind, uids)) => format!("idx {} ({} candidates)", kind as char, uids.len()),
            None => "scan".into(),
        })
    }

    /// Study UIDs from the most selective secondary index the query allows, or None when
    /// only a scan will do. Every applicable index is probed, each stopping as soon as it
    /// yields more candidates than the best so far, so the cost is bounded by the smallest
    /// candidate set times the number of keys. Candidates are still matched against every
    /// key, so a stale entry (after a replacement) costs a lookup, never a wrong match.
    fn planned_studies(&self, q: &Query, kinds: &[u8]) -> Result<Option<Vec<String>>> {
        Ok(self.best_plan(q, kinds)?.map(|(_, uids)| uids))
    }

    /// The kind and candidates of the most selective plan.
    fn best_plan(&self, q: &Query, kinds: &[u8]) -> Result<Option<(u8, Vec<String>)>> {
        let mut best: Option<(u8, Vec<String>)> = None;
        for plan in plans(q).into_iter().filter(|p| kinds.contains(&p.kind())) {
            let limit = best
                .as_ref()
                .map_or(usize::MAX, |(_, b)| b.len().saturating_sub(1));
            if limit == 0 {
                break;
            }
            if let Some(found) = self.scan_plan(&plan, limit)? {
                best = Some((plan.kind(), found));
            }
        }
        Ok(best)
    }

    /// The distinct study UIDs of one plan in index order, or None when there are more
    /// than `limit`.
    fn scan_plan(&self, plan: &Plan, limit: usize) -> Result<Option<Vec<String>>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut over = false;
        let mut take = |k: &[u8]| -> bool {
            if let Some(uid) = keys::idx_study(k) {
                if seen.insert(uid.to_string()) {
                    if out.len() == limit {
                        over = true;
                        return false;
                    }
                    out.push(uid.to_string());
                }
            }
            true
        };
        match plan {
            Plan::Exact(kind, values) => {
                for v in values {
                    let prefix = keys::idx_prefix(*kind, v);
                    self.index
                        .scan_keys(keys::CF_IDX, &prefix, |k| k.starts_with(&prefix) && take(k))?;
                }
            }
            Plan::Prefix(kind, value) => {
                let prefix = keys::idx_value_prefix(*kind, value);
                self.index
                    .scan_keys(keys::CF_IDX, &prefix, |k| k.starts_with(&prefix) && take(k))?;
            }
            Plan::Range(kind, lo, hi) => {
                let start = keys::idx_value_prefix(*kind, lo.as_deref().unwrap_or(""));
                self.index.scan_keys(keys::CF_IDX, &start, |k| {
                    if k.first() != Some(kind) {
                        return false;
                    }
                    let rest = &k[1..];
                    let value_end = rest.iter().rposition(|&b| b == keys::SEP).unwrap_or(0);
                    let value = String::from_utf8_lossy(&rest[..value_end]);
                    if hi.as_deref().is_some_and(|hi| *value > *hi) {
                        return false;
                    }
                    take(k)
                })?;
            }
        }
        Ok((!over).then_some(out))
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

/// Index kinds that find studies.
const STUDY_KINDS: &[u8] = &[
    keys::IDX_PATIENT_ID,
    keys::IDX_ACCESSION,
    keys::IDX_PATIENT_NAME,
    keys::IDX_STUDY_DATE,
    keys::IDX_MODALITY,
];
/// Index kinds on patient attributes, usable for PATIENT level queries.
const PATIENT_KINDS: &[u8] = &[keys::IDX_PATIENT_ID, keys::IDX_PATIENT_NAME];

/// One way to find candidate studies in `idx`.
#[derive(Debug)]
enum Plan {
    /// Entries of `kind` equal to any of the values.
    Exact(u8, Vec<String>),
    /// Entries of `kind` starting with the value.
    Prefix(u8, String),
    /// Entries of `kind` within the (inclusive, maybe open) range.
    Range(u8, Option<String>, Option<String>),
}

impl Plan {
    fn kind(&self) -> u8 {
        match self {
            Plan::Exact(k, _) | Plan::Prefix(k, _) | Plan::Range(k, _, _) => *k,
        }
    }
}

/// Every index plan the query's keys allow, most selective kind first (a guess the
/// probing in `planned_studies` corrects).
fn plans(q: &Query) -> Vec<Plan> {
    let mut out = Vec::new();
    if let Some(pid) = q.single_value(tags::PATIENT_ID) {
        out.push(Plan::Exact(keys::IDX_PATIENT_ID, vec![pid.to_string()]));
    }
    if let Some(acc) = q.single_value(tags::ACCESSION_NUMBER) {
        out.push(Plan::Exact(keys::IDX_ACCESSION, vec![acc.to_string()]));
    }
    if let Some(prefix) = q
        .key(tags::PATIENT_NAME)
        .and_then(|m| name_prefix(m, q.fold_names))
    {
        out.push(Plan::Prefix(keys::IDX_PATIENT_NAME, prefix));
    }
    match q.key(tags::STUDY_DATE) {
        Some(Matcher::Single(d)) => out.push(Plan::Exact(keys::IDX_STUDY_DATE, vec![d.clone()])),
        Some(Matcher::Range(lo, hi)) => {
            out.push(Plan::Range(keys::IDX_STUDY_DATE, lo.clone(), hi.clone()))
        }
        _ => {}
    }
    if let Some(Matcher::Single(m)) = q.key(tags::MODALITIES_IN_STUDY) {
        let values = m.split('\\').map(|v| v.trim().to_string()).collect();
        out.push(Plan::Exact(keys::IDX_MODALITY, values));
    }
    out
}

/// The prefix of the folded name-index values that every match of a PatientName key
/// starts with, or None when the key starts with a wildcard.
///
/// With folding on, the matcher globs the folded key over the folded groups, so the
/// literal start of the folded key is exact. With folding off it compares literally; a
/// literal prefix folded may differ from the fold of the full name in its last character
/// only (NFKC composes a voiced mark with the character before it: ﾀ then ﾞ is ダ), so
/// that character is dropped to keep the candidates a superset.
fn name_prefix(m: &Matcher, fold_names: bool) -> Option<String> {
    let pattern = match m {
        Matcher::Single(v) | Matcher::Wildcard(v) => v,
        _ => return None,
    };
    // with groups (`A=B=C`) every non-empty one must match its group: take the first
    let group = if pattern.contains('=') {
        let n = PersonName::parse(pattern);
        [n.alphabetic, n.ideographic, n.phonetic]
            .into_iter()
            .find(|g| !g.is_empty())?
    } else {
        pattern.clone()
    };
    let literal =
        |s: &str| -> String { s.chars().take_while(|c| !matches!(c, '*' | '?')).collect() };
    let prefix = if fold_names {
        literal(&fold_name(&group))
    } else {
        let mut folded = fold_name(&literal(&group));
        folded.pop();
        folded
    };
    (!prefix.is_empty()).then_some(prefix)
}

/// The `idx` keys of a study: its PatientID, AccessionNumber and StudyDate, each group of
/// the patient's name (folded) and the modality of the series being stored.
pub(crate) fn study_index_keys(
    study: &StudyRecord,
    name: &PersonName,
    modality: &str,
) -> Vec<Vec<u8>> {
    let uid = &study.study_uid;
    let mut out: Vec<Vec<u8>> = [
        (keys::IDX_PATIENT_ID, study.patient.patient_id.as_str()),
        (keys::IDX_ACCESSION, study.accession_number.as_str()),
        (keys::IDX_STUDY_DATE, study.study_date.as_str()),
        (keys::IDX_MODALITY, modality),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(kind, v)| keys::idx_key(kind, v, uid))
    .collect();
    out.extend(name_index_keys(name, uid));
    out
}

/// The `idx` keys of the patient's name for one study: each non-empty group, folded.
pub(crate) fn name_index_keys(name: &PersonName, study_uid: &str) -> Vec<Vec<u8>> {
    let mut groups: Vec<String> = [&name.alphabetic, &name.ideographic, &name.phonetic]
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(|g| fold_name(g))
        .collect();
    groups.dedup();
    groups
        .iter()
        .map(|g| keys::idx_key(keys::IDX_PATIENT_NAME, g, study_uid))
        .collect()
}
