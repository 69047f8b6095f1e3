//! Every key layout of the index, in one place.
//!
//! Column families (declared once, [`ALL_CFS`]):
//!
//! | CF | key | value |
//! |---|---|---|
//! | `instance` | SOP Instance UID | [`InstanceRecord`](renkei_model::InstanceRecord) |
//! | `series` | Series Instance UID | [`SeriesRecord`](renkei_model::SeriesRecord) |
//! | `study` | Study Instance UID | [`StudyRecord`](renkei_model::StudyRecord) |
//! | `patient` | [`patient_key`] | [`PatientRecord`](renkei_model::PatientRecord) |
//! | `children` | [`patient_study`], [`study_series`], [`series_instance`] | empty |
//! | `idx` | [`idx_key`]: `p` PatientID, `a` AccessionNumber, `d` StudyDate, `n` folded patient name group, `m` Modality → study | empty |
//! | `counters` | [`COUNTER_INSTANCES`], [`COUNTER_BYTES`], [`COUNTER_COMPRESSED_INSTANCES`], [`COUNTER_COMPRESSED_SAVED_BYTES`], [`study_instances`], [`series_instances`] | i64 LE, merged by addition |
//! | `meta` | [`META_SCHEMA`]; [`compress_skip`] | schema version; blob hash an instance could not be compressed from |
//! | `share`, `audit` | owned by `renkei-share` (its `keys` module) | |
//!
//! Composite keys join their components with a 0x00 byte. DICOM text and UIDs cannot carry
//! NUL (it is only UID padding, trimmed on extraction; the encoders strip any left), so
//! the separator keeps prefix scans exact: `a\0` never prefixes `ab\0…`, and components
//! sort byte-wise, which for UTF-8 is code-point order.

use renkei_model::PatientKey;

/// Instance records by SOP Instance UID.
pub const CF_INSTANCE: &str = "instance";
/// Series records by Series Instance UID.
pub const CF_SERIES: &str = "series";
/// Study records by Study Instance UID.
pub const CF_STUDY: &str = "study";
/// Patient records by [`patient_key`].
pub const CF_PATIENT: &str = "patient";
/// Parent → child links for hierarchical listing.
pub const CF_CHILDREN: &str = "children";
/// Additive counters (merge operator).
pub const CF_COUNTERS: &str = "counters";
/// Node metadata (schema version).
pub const CF_META: &str = "meta";
/// Secondary indexes of studies for the query planner.
pub const CF_IDX: &str = "idx";
/// The regional-sharing domain (facilities, users, patients, cards, consent); its key
/// layouts are `renkei-share`'s (`renkei_share::keys`).
pub const CF_SHARE: &str = "share";
/// The hash-chained audit trail (`renkei_share::audit`).
pub const CF_AUDIT: &str = "audit";

/// Every column family, in creation order.
pub const ALL_CFS: &[&str] = &[
    CF_INSTANCE,
    CF_SERIES,
    CF_STUDY,
    CF_PATIENT,
    CF_CHILDREN,
    CF_COUNTERS,
    CF_META,
    CF_IDX,
    CF_SHARE,
    CF_AUDIT,
];

/// Separator between the components of a composite key.
pub const SEP: u8 = 0x00;

/// Prefix of patient → study links in `children`.
pub const PREFIX_PATIENT_STUDY: u8 = b'P';
/// Prefix of study → series links in `children`.
pub const PREFIX_STUDY_SERIES: u8 = b'S';
/// Prefix of series → instance links in `children`.
pub const PREFIX_SERIES_INSTANCE: u8 = b'I';

/// Counter: number of stored instances.
pub const COUNTER_INSTANCES: &[u8] = b"G\0instances";
/// Counter: bytes of stored blobs.
pub const COUNTER_BYTES: &[u8] = b"G\0bytes";
/// Counter: instances storage compression replaced by a lossless copy (cumulative).
pub const COUNTER_COMPRESSED_INSTANCES: &[u8] = b"G\0compressed_instances";
/// Counter: bytes storage compression saved (original minus copy, cumulative).
pub const COUNTER_COMPRESSED_SAVED_BYTES: &[u8] = b"G\0compressed_saved_bytes";
/// Prefix of per-study instance counters.
pub const PREFIX_STUDY_COUNTER: u8 = b's';
/// Prefix of per-series instance counters.
pub const PREFIX_SERIES_COUNTER: u8 = b'e';

/// Secondary index: studies by PatientID (any issuer).
pub const IDX_PATIENT_ID: u8 = b'p';
/// Secondary index: studies by AccessionNumber.
pub const IDX_ACCESSION: u8 = b'a';
/// Secondary index: studies by StudyDate (YYYYMMDD sorts as text).
pub const IDX_STUDY_DATE: u8 = b'd';
/// Secondary index: studies by each group of the patient's name, folded
/// ([`renkei_model::query::fold_name`]), for prefix scans.
pub const IDX_PATIENT_NAME: u8 = b'n';
/// Secondary index: studies by the Modality of their series.
pub const IDX_MODALITY: u8 = b'm';
/// Marker in `meta`: the `idx` column family covers every study with every kind above.
/// Bumped when a kind is added, so an older index is completed once at startup.
pub const META_IDX_BUILT: &[u8] = b"idx_built_v2";

/// Key of the schema version in `meta`.
pub const META_SCHEMA: &[u8] = b"schema";
/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Prefix in `meta` of the instances storage compression gave up on.
pub const PREFIX_COMPRESS_SKIP: &[u8] = b"compress_skip\0";

/// Key in `meta` marking that `sop_uid` cannot be compressed (value: the blob hash tried,
/// so a replaced instance is tried again).
pub fn compress_skip(sop_uid: &str) -> Vec<u8> {
    let mut k = PREFIX_COMPRESS_SKIP.to_vec();
    k.extend(sop_uid.bytes().filter(|&b| b != SEP));
    k
}

/// A key could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key does not start with the expected prefix.
    #[error("key has prefix {found:#04x}, expected {expected:#04x}")]
    WrongPrefix {
        /// Expected prefix byte.
        expected: u8,
        /// Found prefix byte (0 when empty).
        found: u8,
    },
    /// The key has the wrong number of components or is not UTF-8.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
}

fn join(prefix: Option<u8>, parts: &[&str]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1;
    let mut k = Vec::with_capacity(len);
    if let Some(p) = prefix {
        k.push(p);
    }
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend(part.bytes().filter(|&b| b != SEP));
    }
    k
}

fn split(prefix: u8, key: &[u8], n: usize) -> Result<Vec<&str>, KeyError> {
    match key.first() {
        Some(&p) if p == prefix => {}
        found => {
            return Err(KeyError::WrongPrefix {
                expected: prefix,
                found: found.copied().unwrap_or(0),
            })
        }
    }
    let parts: Vec<&str> = key[1..]
        .split(|&b| b == SEP)
        .map(std::str::from_utf8)
        .collect::<Result<_, _>>()
        .map_err(|_| KeyError::Malformed("not UTF-8"))?;
    if parts.len() != n {
        return Err(KeyError::Malformed("wrong number of components"));
    }
    Ok(parts)
}

/// Key of a patient record: `issuer 0x00 patient_id`.
pub fn patient_key(p: &PatientKey) -> Vec<u8> {
    join(None, &[&p.issuer, &p.patient_id])
}

/// Decode a [`patient_key`].
pub fn decode_patient_key(key: &[u8]) -> Result<PatientKey, KeyError> {
    let mut it = key.splitn(2, |&b| b == SEP);
    let issuer = it.next().ok_or(KeyError::Malformed("empty"))?;
    let id = it.next().ok_or(KeyError::Malformed("no separator"))?;
    let s = |b| std::str::from_utf8(b).map_err(|_| KeyError::Malformed("not UTF-8"));
    Ok(PatientKey {
        issuer: s(issuer)?.to_string(),
        patient_id: s(id)?.to_string(),
    })
}

/// Link patient → study: `P issuer 0 patient_id 0 study_uid`.
pub fn patient_study(p: &PatientKey, study_uid: &str) -> Vec<u8> {
    join(
        Some(PREFIX_PATIENT_STUDY),
        &[&p.issuer, &p.patient_id, study_uid],
    )
}

/// Prefix of all studies of a patient (ends with the separator).
pub fn patient_study_prefix(p: &PatientKey) -> Vec<u8> {
    let mut k = join(Some(PREFIX_PATIENT_STUDY), &[&p.issuer, &p.patient_id]);
    k.push(SEP);
    k
}

/// Link study → series: `S study_uid 0 series_uid`.
pub fn study_series(study_uid: &str, series_uid: &str) -> Vec<u8> {
    join(Some(PREFIX_STUDY_SERIES), &[study_uid, series_uid])
}

/// Prefix of all series of a study.
pub fn study_series_prefix(study_uid: &str) -> Vec<u8> {
    let mut k = join(Some(PREFIX_STUDY_SERIES), &[study_uid]);
    k.push(SEP);
    k
}

/// Link series → instance: `I series_uid 0 sop_uid`.
pub fn series_instance(series_uid: &str, sop_uid: &str) -> Vec<u8> {
    join(Some(PREFIX_SERIES_INSTANCE), &[series_uid, sop_uid])
}

/// Prefix of all instances of a series.
pub fn series_instance_prefix(series_uid: &str) -> Vec<u8> {
    let mut k = join(Some(PREFIX_SERIES_INSTANCE), &[series_uid]);
    k.push(SEP);
    k
}

/// The child component of a link key (the last component).
pub fn link_child(prefix: u8, key: &[u8]) -> Result<&str, KeyError> {
    let n = if prefix == PREFIX_PATIENT_STUDY { 3 } else { 2 };
    let parts = split(prefix, key, n)?;
    // split returns borrowed &str of key; the last one is the child
    Ok(parts[n - 1])
}

/// Secondary index entry: `kind value 0x00 study_uid`.
pub fn idx_key(kind: u8, value: &str, study_uid: &str) -> Vec<u8> {
    join(Some(kind), &[value, study_uid])
}

/// Prefix of every entry of `kind` whose value starts with `value`.
pub fn idx_value_prefix(kind: u8, value: &str) -> Vec<u8> {
    join(Some(kind), &[value])
}

/// The study UID of an `idx` entry (its last component).
pub fn idx_study(key: &[u8]) -> Option<&str> {
    let sep = key.iter().rposition(|&b| b == SEP)?;
    std::str::from_utf8(&key[sep + 1..]).ok()
}

/// Prefix of every entry of `kind` for exactly `value`.
pub fn idx_prefix(kind: u8, value: &str) -> Vec<u8> {
    let mut k = join(Some(kind), &[value]);
    k.push(SEP);
    k
}

/// Counter of instances in a study.
pub fn study_instances(study_uid: &str) -> Vec<u8> {
    join(Some(PREFIX_STUDY_COUNTER), &[study_uid])
}

/// Counter of instances in a series.
pub fn series_instances(series_uid: &str) -> Vec<u8> {
    join(Some(PREFIX_SERIES_COUNTER), &[series_uid])
}

/// Encode a counter delta / value.
pub fn counter_value(v: i64) -> [u8; 8] {
    v.to_le_bytes()
}

/// Decode a counter value; a malformed one reads as 0 rather than failing a query.
pub fn decode_counter(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_le_bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(issuer: &str, id: &str) -> PatientKey {
        PatientKey {
            issuer: issuer.into(),
            patient_id: id.into(),
        }
    }

    #[test]
    fn patient_key_round_trip() {
        for p in [
            pk("", ""),
            pk("HOSP-A", "12345"),
            pk("", "山田"),
            pk("X", ""),
        ] {
            assert_eq!(decode_patient_key(&patient_key(&p)).unwrap(), p);
        }
    }

    #[test]
    fn link_round_trip() {
        let k = study_series("1.2.3", "1.2.3.4");
        assert_eq!(link_child(PREFIX_STUDY_SERIES, &k).unwrap(), "1.2.3.4");
        assert!(k.starts_with(&study_series_prefix("1.2.3")));
        let k = patient_study(&pk("A", "12345"), "9.8");
        assert_eq!(link_child(PREFIX_PATIENT_STUDY, &k).unwrap(), "9.8");
        assert!(k.starts_with(&patient_study_prefix(&pk("A", "12345"))));
        let k = series_instance("1.2", "1.2.9");
        assert_eq!(link_child(PREFIX_SERIES_INSTANCE, &k).unwrap(), "1.2.9");
        assert_eq!(
            link_child(PREFIX_STUDY_SERIES, &k),
            Err(KeyError::WrongPrefix {
                expected: PREFIX_STUDY_SERIES,
                found: PREFIX_SERIES_INSTANCE
            })
        );
    }

    #[test]
    fn prefixes_are_exact() {
        // study 1.2.3 must not list the series of study 1.2.34
        let other = study_series("1.2.34", "5.6");
        assert!(!other.starts_with(&study_series_prefix("1.2.3")));
        let other = patient_study(&pk("A", "123456"), "1.2");
        assert!(!other.starts_with(&patient_study_prefix(&pk("A", "12345"))));
    }

    #[test]
    fn sort_order_follows_components() {
        let mut keys = [
            series_instance("1.2", "1.2.10"),
            series_instance("1.1", "9"),
            series_instance("1.2", "1.2.9"),
            series_instance("1.2.1", "0"),
        ];
        keys.sort();
        let children: Vec<_> = keys
            .iter()
            .map(|k| link_child(PREFIX_SERIES_INSTANCE, k).unwrap())
            .collect();
        // parent 1.1 < 1.2 < 1.2.1 (the separator sorts below '.'), then children byte-wise
        assert_eq!(children, ["9", "1.2.10", "1.2.9", "0"]);
    }

    #[test]
    fn nul_is_stripped_from_components() {
        assert_eq!(study_series("1.2\0", "3"), study_series("1.2", "3"));
    }

    #[test]
    fn counters() {
        assert_eq!(decode_counter(&counter_value(-42)), -42);
        assert_eq!(decode_counter(b"bad"), 0);
        assert_ne!(study_instances("1.2"), series_instances("1.2"));
    }
}
