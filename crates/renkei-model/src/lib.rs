//! Renkei's domain types, free of I/O.
//!
//! - [`query`]: C-FIND queries and the matching rules of PS3.4 C.2.2.2.
//! - [`record`]: the per-level index records (patient, study, series, instance) that the
//!   store keeps for every ingested object, and their compact versioned encoding.
//! - [`person_name`]: DICOM PN values with their alphabetic, ideographic and phonetic groups.
//! - [`charset`]: decoding text by every value of Specific Character Set (ISO 2022 too).
//! - [`extract`]: building those records from a parsed DICOM header.
//! - [`storage_classes`]: every Storage SOP class the node accepts (generated).
//! - [`uid`]: UID helpers (validation, trimming, the node's implementation UID).
#![deny(missing_docs)]

pub mod base64;
pub mod charset;
pub mod extract;
pub mod person_name;
pub mod query;
pub mod record;
pub mod storage_classes;
pub mod time;
pub mod uid;

pub use extract::{extract_record, ExtractError, CHARSET_TEXT_TAGS};
pub use person_name::PersonName;
pub use record::{
    DecodeError, IndexRecord, InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord,
};
