//! C-FIND (and later QIDO-RS) queries: the identifier turned into a level, matching keys
//! and return keys, and the matching rules of PS3.4 C.2.2.2.
//!
//! Matching kinds: universal (empty value), single value, wildcard (`*`, `?`), range
//! (dates, times, date-times; open ranges), list of UIDs (`\`). Person names match
//! case-insensitively against any of their groups (alphabetic, ideographic, phonetic), or
//! group by group when the key itself has `=`. Other text matches exactly, as PS3.4 asks.
//! Queries are hierarchical (PS3.4 C.4.1.2.1): below the top level, each higher level is
//! named by its unique key.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::extract::text;
use crate::person_name::PersonName;
use crate::record::{InstanceRecord, PatientRecord, SeriesRecord, StudyRecord};

/// Query/Retrieve information model (PS3.4 C.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoModel {
    /// Patient Root: PATIENT > STUDY > SERIES > IMAGE.
    PatientRoot,
    /// Study Root: STUDY > SERIES > IMAGE, patient attributes at study level.
    StudyRoot,
}

/// Query/Retrieve Level (0008,0052).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// PATIENT.
    Patient,
    /// STUDY.
    Study,
    /// SERIES.
    Series,
    /// IMAGE.
    Image,
}

impl Level {
    /// The DICOM defined term.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

/// How one key matches (PS3.4 C.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Empty value: matches everything, only asks for the value back.
    Universal,
    /// Exact value.
    Single(String),
    /// `*` any run, `?` one character.
    Wildcard(String),
    /// Inclusive range; either end may be open.
    Range(Option<String>, Option<String>),
    /// Any of these UIDs.
    UidList(Vec<String>),
}

/// One matching key of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The attribute.
    pub tag: Tag,
    /// How it matches.
    pub matcher: Matcher,
}

/// A parsed C-FIND identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The information model the request came in.
    pub model: InfoModel,
    /// Query/Retrieve Level.
    pub level: Level,
    /// Keys with a value other than universal (to match on).
    pub keys: Vec<Key>,
    /// Every attribute of the identifier (to return), in tag order.
    pub return_tags: Vec<Tag>,
    /// Fold person names before comparing: NFKC (half-width katakana and full-width
    /// Latin become their usual forms), katakana as hiragana, lower case. On by default;
    /// a site that wants literal matching turns it off.
    pub fold_names: bool,
}

/// The identifier is not a valid query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// (0008,0052) is absent or not a known level for the model.
    #[error("invalid Query/Retrieve Level {0:?}")]
    Level(String),
    /// A higher level's unique key is missing or not a single value.
    #[error("{level} level query needs a single {key}")]
    MissingUniqueKey {
        /// The level queried.
        level: &'static str,
        /// The keyword of the missing unique key.
        key: &'static str,
    },
    /// A range on an attribute that is not a date or time, or a malformed range.
    #[error("invalid range {value:?} for {tag}")]
    Range {
        /// The attribute.
        tag: Tag,
        /// The value.
        value: String,
    },
}

/// Attributes matched as date/time ranges.
const RANGE_TAGS: &[Tag] = &[
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::PATIENT_BIRTH_DATE,
    tags::SERIES_DATE,
    tags::SERIES_TIME,
    tags::CONTENT_DATE,
    tags::CONTENT_TIME,
    tags::ACQUISITION_DATE_TIME,
];

/// Attributes of VR UI (matched as UID lists).
const UID_TAGS: &[Tag] = &[
    tags::STUDY_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::SOP_INSTANCE_UID,
    tags::SOP_CLASS_UID,
];

/// Person-name attributes.
pub const PN_TAGS: &[Tag] = &[tags::PATIENT_NAME, tags::REFERRING_PHYSICIAN_NAME];

impl Query {
    /// Parse an identifier received in `model`. Text values must already be decoded.
    pub fn from_identifier(obj: &InMemDicomObject, model: InfoModel) -> Result<Query, QueryError> {
        let level_text = text(obj, tags::QUERY_RETRIEVE_LEVEL).to_ascii_uppercase();
        let level = match (level_text.as_str(), model) {
            ("PATIENT", InfoModel::PatientRoot) => Level::Patient,
            ("STUDY", _) => Level::Study,
            ("SERIES", _) => Level::Series,
            ("IMAGE", _) => Level::Image,
            _ => return Err(QueryError::Level(level_text)),
        };
        let mut keys = Vec::new();
        let mut return_tags = Vec::new();
        for elem in obj.iter() {
            let tag = elem.header().tag;
            if tag == tags::QUERY_RETRIEVE_LEVEL
                || tag == tags::SPECIFIC_CHARACTER_SET
                || tag.group() == 0x0002
            {
                continue;
            }
            return_tags.push(tag);
            let value = text(obj, tag);
            if let Some(matcher) = matcher_for(tag, &value)? {
                keys.push(Key { tag, matcher });
            }
        }
        let q = Query {
            model,
            level,
            keys,
            return_tags,
            fold_names: true,
        };
        q.check_hierarchy()?;
        Ok(q)
    }

    fn single(&self, tag: Tag) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.tag == tag)
            .and_then(|k| match &k.matcher {
                Matcher::Single(v) => Some(v.as_str()),
                Matcher::UidList(v) if v.len() == 1 => Some(v[0].as_str()),
                _ => None,
            })
    }

    /// The value of a single-valued (or one-UID) key.
    pub fn single_value(&self, tag: Tag) -> Option<&str> {
        self.single(tag)
    }

    /// The key for `tag`, if it matches on something.
    pub fn key(&self, tag: Tag) -> Option<&Matcher> {
        self.keys.iter().find(|k| k.tag == tag).map(|k| &k.matcher)
    }

    fn check_hierarchy(&self) -> Result<(), QueryError> {
        let need = |tag: Tag, key: &'static str| -> Result<(), QueryError> {
            if self.single(tag).is_some() {
                Ok(())
            } else {
                Err(QueryError::MissingUniqueKey {
                    level: self.level.as_str(),
                    key,
                })
            }
        };
        if self.model == InfoModel::PatientRoot && self.level > Level::Patient {
            need(tags::PATIENT_ID, "PatientID")?;
        }
        if self.level > Level::Study {
            need(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
        }
        if self.level > Level::Series {
            need(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
        }
        Ok(())
    }

    /// A C-GET/C-MOVE identifier must name what to retrieve by the unique key of its level
    /// (PS3.4 C.4.2.2.1): a universal retrieve of the whole archive is refused.
    pub fn check_retrieve_keys(&self) -> Result<(), QueryError> {
        let (tag, key) = match self.level {
            Level::Patient => (tags::PATIENT_ID, "PatientID"),
            Level::Study => (tags::STUDY_INSTANCE_UID, "StudyInstanceUID"),
            Level::Series => (tags::SERIES_INSTANCE_UID, "SeriesInstanceUID"),
            Level::Image => (tags::SOP_INSTANCE_UID, "SOPInstanceUID"),
        };
        if self.key(tag).is_some() {
            Ok(())
        } else {
            Err(QueryError::MissingUniqueKey {
                level: self.level.as_str(),
                key,
            })
        }
    }

    /// Whether an entity matches every key. `value` gives the entity's value of an
    /// attribute (None when the node does not know it, which fails a non-universal key).
    pub fn matches(&self, value: impl Fn(Tag) -> Option<String>) -> bool {
        self.keys.iter().all(|k| match value(k.tag) {
            Some(v) if PN_TAGS.contains(&k.tag) => matches_pn(&k.matcher, &v, self.fold_names),
            Some(v) => matches(k.tag, &k.matcher, &v),
            None => false,
        })
    }
}

/// One match of a query: the records of its level and above, and derived counts (filled
/// by the store only when the query asks for them).
#[derive(Debug, Clone, Default)]
pub struct Entity {
    /// Patient level (always present).
    pub patient: PatientRecord,
    /// Study level, from STUDY down.
    pub study: Option<StudyRecord>,
    /// Series level, from SERIES down.
    pub series: Option<SeriesRecord>,
    /// Instance level, at IMAGE.
    pub instance: Option<InstanceRecord>,
    /// Distinct modalities of the study's series.
    pub modalities_in_study: Option<Vec<String>>,
    /// Studies of the patient.
    pub patient_studies: Option<u64>,
    /// Series of the study.
    pub study_series: Option<u64>,
    /// Instances of the study.
    pub study_instances: Option<u64>,
    /// Instances of the series.
    pub series_instances: Option<u64>,
}

/// Return keys that the store computes rather than reads (PS3.4 C.6.1.1).
pub const DERIVED_TAGS: &[Tag] = &[
    tags::MODALITIES_IN_STUDY,
    tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
];

impl Entity {
    /// The entity's value of `tag` as DICOM text (PN in its `=` form, lists joined by
    /// `\`), or None when the node does not keep that attribute.
    pub fn value(&self, tag: Tag) -> Option<String> {
        let p = &self.patient;
        let st = self.study.as_ref();
        let se = self.series.as_ref();
        let i = self.instance.as_ref();
        let num = |n: Option<u64>| n.map(|n| n.to_string());
        Some(match tag {
            tags::PATIENT_NAME => p.name.to_dicom_string(),
            tags::PATIENT_ID => p.key.patient_id.clone(),
            tags::ISSUER_OF_PATIENT_ID => p.key.issuer.clone(),
            tags::PATIENT_BIRTH_DATE => p.birth_date.clone(),
            tags::PATIENT_SEX => p.sex.clone(),
            tags::NUMBER_OF_PATIENT_RELATED_STUDIES => return num(self.patient_studies),
            tags::STUDY_INSTANCE_UID => st?.study_uid.clone(),
            tags::STUDY_DATE => st?.study_date.clone(),
            tags::STUDY_TIME => st?.study_time.clone(),
            tags::ACCESSION_NUMBER => st?.accession_number.clone(),
            tags::STUDY_ID => st?.study_id.clone(),
            tags::STUDY_DESCRIPTION => st?.description.clone(),
            tags::REFERRING_PHYSICIAN_NAME => st?.referring_physician.to_dicom_string(),
            tags::MODALITIES_IN_STUDY => {
                return self.modalities_in_study.as_ref().map(|m| m.join("\\"))
            }
            tags::NUMBER_OF_STUDY_RELATED_SERIES => return num(self.study_series),
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES => return num(self.study_instances),
            tags::SERIES_INSTANCE_UID => se?.series_uid.clone(),
            tags::MODALITY => se?.modality.clone(),
            tags::SERIES_NUMBER => se?.series_number.map(|n| n.to_string()).unwrap_or_default(),
            tags::SERIES_DESCRIPTION => se?.description.clone(),
            tags::BODY_PART_EXAMINED => se?.body_part.clone(),
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES => return num(self.series_instances),
            tags::SOP_INSTANCE_UID => i?.sop_uid.clone(),
            tags::SOP_CLASS_UID => i?.sop_class_uid.clone(),
            tags::INSTANCE_NUMBER => i?
                .instance_number
                .map(|n| n.to_string())
                .unwrap_or_default(),
            tags::ROWS => i?.rows.to_string(),
            tags::COLUMNS => i?.columns.to_string(),
            tags::NUMBER_OF_FRAMES => i?.frames.to_string(),
            _ => return None,
        })
    }
}

fn matcher_for(tag: Tag, value: &str) -> Result<Option<Matcher>, QueryError> {
    let v = value.trim();
    if v.is_empty() || v == "*" {
        return Ok(None);
    }
    if UID_TAGS.contains(&tag) {
        let uids: Vec<String> = v
            .split('\\')
            .map(|u| u.trim_matches(['\0', ' ']).to_string())
            .filter(|u| !u.is_empty())
            .collect();
        return Ok(Some(Matcher::UidList(uids)));
    }
    if RANGE_TAGS.contains(&tag) && v.contains('-') {
        let (lo, hi) = v.split_once('-').unwrap_or((v, v));
        if v.matches('-').count() != 1 {
            return Err(QueryError::Range {
                tag,
                value: v.to_string(),
            });
        }
        let end = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        return Ok(Some(Matcher::Range(end(lo), end(hi))));
    }
    if v.contains(['*', '?']) {
        return Ok(Some(Matcher::Wildcard(v.to_string())));
    }
    Ok(Some(Matcher::Single(v.to_string())))
}

/// PS3.4 C.2.2.2 matching of one stored value.
pub fn matches(tag: Tag, m: &Matcher, stored: &str) -> bool {
    if PN_TAGS.contains(&tag) {
        return matches_pn(m, stored, true);
    }
    // a multi-valued attribute (ModalitiesInStudy "CT\\MR") matches when any value does;
    // a key listing values ("CT\\MR") matches any of them (PS3.4 C.2.2.2.8)
    let values = || stored.split('\\');
    match m {
        Matcher::Universal => true,
        Matcher::Single(v) => v.split('\\').any(|k| values().any(|s| s == k)),
        Matcher::Wildcard(p) => values().any(|s| glob(p.as_bytes(), s.as_bytes())),
        Matcher::UidList(uids) => uids.iter().any(|u| u == stored),
        Matcher::Range(lo, hi) => {
            // DA/TM/DT compare lexically when written in their canonical forms; a time
            // key shorter than the value compares on its prefix
            let s = stored.trim();
            !s.is_empty()
                && lo.as_deref().is_none_or(|lo| s >= lo)
                && hi.as_deref().is_none_or(|hi| s <= hi || s.starts_with(hi))
        }
    }
}

/// The form person names are compared in when folding: NFKC (half-width katakana and
/// full-width Latin to their usual forms, composed voiced marks), katakana as hiragana,
/// lower case. `ﾔﾏﾀﾞ`, `ヤマダ`, `やまだ` and `ＹＡＭＡＤＡ`/`yamada` then compare equal per script.
pub fn fold_name(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfkc()
        .map(|c| match c {
            // katakana ァ..ヶ → hiragana ぁ..ゖ (same order, 0x60 apart)
            '\u{30A1}'..='\u{30F6}' => char::from_u32(c as u32 - 0x60).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

fn matches_pn(m: &Matcher, stored: &str, fold: bool) -> bool {
    let name = PersonName::parse(stored);
    let groups = [&name.alphabetic, &name.ideographic, &name.phonetic];
    let norm = |s: &str| {
        if fold {
            fold_name(s)
        } else {
            s.to_string()
        }
    };
    let one = |pattern: &str, value: &str, wildcard: bool| {
        let (p, v) = (norm(pattern), norm(value));
        if wildcard {
            glob(p.as_bytes(), v.as_bytes())
        } else {
            // a key without trailing components matches a name that has more
            // (DOE matches DOE^JOHN is not standard; keep exact on the group)
            p == v
        }
    };
    let (pattern, wildcard) = match m {
        Matcher::Universal => return true,
        Matcher::Single(v) => (v.as_str(), false),
        Matcher::Wildcard(v) => (v.as_str(), true),
        _ => return false,
    };
    if pattern.contains('=') {
        let key = PersonName::parse(pattern);
        let keys = [&key.alphabetic, &key.ideographic, &key.phonetic];
        keys.iter()
            .zip(groups)
            .all(|(k, g)| k.is_empty() || one(k, g, wildcard))
    } else {
        groups
            .iter()
            .any(|g| !g.is_empty() && one(pattern, g, wildcard))
    }
}

/// Glob over UTF-8 text: `*` any run, `?` one character (not byte).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (p, s) = (
        String::from_utf8_lossy(p).chars().collect::<Vec<_>>(),
        String::from_utf8_lossy(s).chars().collect::<Vec<_>>(),
    );
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn ident(pairs: &[(Tag, VR, &str)]) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        for (t, vr, v) in pairs {
            o.put(DataElement::new(*t, *vr, PrimitiveValue::from(*v)));
        }
        o
    }

    #[test]
    fn parses_levels_and_matching_kinds() {
        let o = ident(&[
            (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
            (tags::PATIENT_NAME, VR::PN, "Yamada*"),
            (tags::STUDY_DATE, VR::DA, "20200101-"),
            (tags::STUDY_INSTANCE_UID, VR::UI, "1.2\\1.3"),
            (tags::ACCESSION_NUMBER, VR::SH, ""),
            (tags::MODALITIES_IN_STUDY, VR::CS, "CT"),
        ]);
        let q = Query::from_identifier(&o, InfoModel::StudyRoot).unwrap();
        assert_eq!(q.level, Level::Study);
        assert_eq!(q.return_tags.len(), 5);
        assert_eq!(
            q.key(tags::PATIENT_NAME),
            Some(&Matcher::Wildcard("Yamada*".into()))
        );
        assert_eq!(
            q.key(tags::STUDY_DATE),
            Some(&Matcher::Range(Some("20200101".into()), None))
        );
        assert_eq!(
            q.key(tags::STUDY_INSTANCE_UID),
            Some(&Matcher::UidList(vec!["1.2".into(), "1.3".into()]))
        );
        assert!(q.key(tags::ACCESSION_NUMBER).is_none());
    }

    #[test]
    fn hierarchy_is_enforced() {
        let o = ident(&[(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES")]);
        assert!(matches!(
            Query::from_identifier(&o, InfoModel::StudyRoot),
            Err(QueryError::MissingUniqueKey {
                key: "StudyInstanceUID",
                ..
            })
        ));
        let o = ident(&[(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT")]);
        assert!(Query::from_identifier(&o, InfoModel::StudyRoot).is_err());
        assert!(Query::from_identifier(&o, InfoModel::PatientRoot).is_ok());
        let o = ident(&[(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "NONSENSE")]);
        assert!(matches!(
            Query::from_identifier(&o, InfoModel::StudyRoot),
            Err(QueryError::Level(_))
        ));
    }

    #[test]
    fn names_fold_width_and_kana() {
        let pn = tags::PATIENT_NAME;
        let stored = "Yamada^Tarou=山田^太郎=やまだ^たろう";
        for key in ["ヤマダ*", "ﾔﾏﾀﾞ*", "ＹＡＭＡＤＡ*", "YAMADA^TAROU"] {
            let m = matcher_for(pn, key).unwrap().unwrap();
            assert!(matches_pn(&m, stored, true), "{key}");
        }
        let m = matcher_for(pn, "ヤマダ*").unwrap().unwrap();
        assert!(!matches_pn(&m, stored, false), "folding off is literal");
        assert_eq!(fold_name("ﾀﾛｳ"), "たろう");
    }

    #[test]
    fn matching_rules() {
        let pn = tags::PATIENT_NAME;
        let stored = "Yamada^Tarou=山田^太郎=やまだ^たろう";
        for key in [
            "Yamada*",
            "yamada*",
            "山田*",
            "やまだ*",
            "*^Tarou",
            "Yamada^Tarou",
        ] {
            let m = matcher_for(pn, key).unwrap().unwrap();
            assert!(matches(pn, &m, stored), "{key}");
        }
        for key in ["Suzuki*", "山本*", "Yamada"] {
            let m = matcher_for(pn, key).unwrap().unwrap();
            assert!(!matches(pn, &m, stored), "{key}");
        }
        let d = tags::STUDY_DATE;
        let r = matcher_for(d, "20200101-20201231").unwrap().unwrap();
        assert!(matches(d, &r, "20200615"));
        assert!(!matches(d, &r, "20210101"));
        assert!(!matches(d, &r, ""));
        let r = matcher_for(d, "-20200101").unwrap().unwrap();
        assert!(matches(d, &r, "19991231"));
        assert!(matcher_for(d, "2020-01-01").is_err());
        let t = tags::STUDY_TIME;
        let r = matcher_for(t, "0800-1200").unwrap().unwrap();
        assert!(matches(t, &r, "093015.123"));
        assert!(matches(t, &r, "1200"));
        let a = tags::ACCESSION_NUMBER;
        let w = matcher_for(a, "A?C*").unwrap().unwrap();
        assert!(matches(a, &w, "ABC123"));
        assert!(!matches(a, &w, "abc123"));
        assert!(matches(a, &Matcher::Single("X1".into()), "X1"));
        let mods = tags::MODALITIES_IN_STUDY;
        assert!(matches(mods, &Matcher::Single("CT".into()), "CT\\MR"));
        assert!(matches(mods, &Matcher::Single("US\\MR".into()), "CT\\MR"));
        assert!(!matches(mods, &Matcher::Single("US".into()), "CT\\MR"));
    }
}
