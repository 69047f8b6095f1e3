//! The per-level index records kept for every stored instance, and their value encoding.
//!
//! Values are encoded as one format-version byte followed by a postcard body. A reader
//! refuses versions it does not know rather than misreading them; a new field means a new
//! version and a decoder for the old one.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::person_name::PersonName;

/// The encoding version written in front of every record value.
pub const RECORD_FORMAT_VERSION: u8 = 1;

/// A record value could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The value is empty.
    #[error("empty record value")]
    Empty,
    /// The value was written by a newer (or unknown) format.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// The body does not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Encode a record value (version byte + postcard).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_FORMAT_VERSION];
    // postcard only fails on writer errors or unsupported types; ours are plain structs
    // written to a Vec, so this cannot fail.
    out.extend(postcard::to_stdvec(value).expect("postcard encodes plain structs"));
    out
}

/// Decode a record value written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&RECORD_FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|e| DecodeError::Corrupt(e.to_string()))
        }
        Some((&v, _)) => Err(DecodeError::UnknownVersion(v)),
    }
}

/// Identifies a patient within the node: (IssuerOfPatientID, PatientID). An empty issuer
/// means "unknown issuer"; the regional-identity issue maps it from the sending facility.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatientKey {
    /// Issuer of Patient ID (0010,0021), or empty.
    pub issuer: String,
    /// Patient ID (0010,0020), possibly empty (Type 2).
    pub patient_id: String,
}

/// Patient-level attributes (PS3.4 C.6.1.1.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientRecord {
    /// The patient's key.
    pub key: PatientKey,
    /// Patient's Name (0010,0010).
    pub name: PersonName,
    /// Patient's Birth Date (0010,0030), `YYYYMMDD` or empty.
    pub birth_date: String,
    /// Patient's Sex (0010,0040).
    pub sex: String,
}

/// Study-level attributes (PS3.4 C.6.1.1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyRecord {
    /// Study Instance UID (0020,000D).
    pub study_uid: String,
    /// The patient this study belongs to.
    pub patient: PatientKey,
    /// Study Date (0008,0020).
    pub study_date: String,
    /// Study Time (0008,0030).
    pub study_time: String,
    /// Accession Number (0008,0050).
    pub accession_number: String,
    /// Study ID (0020,0010).
    pub study_id: String,
    /// Study Description (0008,1030).
    pub description: String,
    /// Referring Physician's Name (0008,0090).
    pub referring_physician: PersonName,
}

/// Series-level attributes (PS3.4 C.6.1.1.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesRecord {
    /// Series Instance UID (0020,000E).
    pub series_uid: String,
    /// The parent study.
    pub study_uid: String,
    /// Modality (0008,0060).
    pub modality: String,
    /// Series Number (0020,0011).
    pub series_number: Option<i32>,
    /// Series Description (0008,103E).
    pub description: String,
    /// Body Part Examined (0018,0015).
    pub body_part: String,
}

/// Instance-level attributes plus where the object is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// SOP Instance UID (0008,0018).
    pub sop_uid: String,
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: String,
    /// The parent series.
    pub series_uid: String,
    /// The parent study.
    pub study_uid: String,
    /// Instance Number (0020,0013).
    pub instance_number: Option<i32>,
    /// Transfer syntax the object is stored in.
    pub transfer_syntax: String,
    /// Rows (0028,0010), 0 when absent.
    pub rows: u16,
    /// Columns (0028,0011), 0 when absent.
    pub columns: u16,
    /// Number of Frames (0028,0008); 1 for single-frame images, 0 without pixel data.
    pub frames: u32,
    /// Size of the stored blob in bytes.
    pub size: u64,
    /// SHA-256 of the stored blob, which is also its name.
    pub blob_hash: [u8; 32],
    /// When it was stored, microseconds since the Unix epoch.
    pub stored_at_us: u64,
    /// Calling AE title of the sender (empty for HTTP uploads).
    pub source_ae: String,
}

/// All four records for one instance, as extracted from its header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRecord {
    /// Patient level.
    pub patient: PatientRecord,
    /// Study level.
    pub study: StudyRecord,
    /// Series level.
    pub series: SeriesRecord,
    /// Instance level.
    pub instance: InstanceRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_version() {
        let rec = InstanceRecord {
            sop_uid: "1.2.3".into(),
            instance_number: Some(-4),
            frames: 30,
            blob_hash: [7; 32],
            ..Default::default()
        };
        let bytes = encode(&rec);
        assert_eq!(bytes[0], RECORD_FORMAT_VERSION);
        let back: InstanceRecord = decode(&bytes).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn rejects_unknown_version_and_garbage() {
        let mut bytes = encode(&SeriesRecord::default());
        bytes[0] = 99;
        assert!(matches!(
            decode::<SeriesRecord>(&bytes),
            Err(DecodeError::UnknownVersion(99))
        ));
        assert!(matches!(
            decode::<SeriesRecord>(&[]),
            Err(DecodeError::Empty)
        ));
        assert!(matches!(
            decode::<StudyRecord>(&[RECORD_FORMAT_VERSION, 0xff, 0xff, 0xff]),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
