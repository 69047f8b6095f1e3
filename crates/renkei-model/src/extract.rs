//! Build the index records of an instance from its parsed header (everything before Pixel
//! Data). Text arrives already decoded to UTF-8 by dicom-rs according to Specific Character
//! Set (only its first value, dicom-rs #443; full ISO 2022 comes with the query work).

use dicom_core::value::Value;
use dicom_core::{PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::person_name::PersonName;
use crate::record::{
    IndexRecord, InstanceRecord, PatientKey, PatientRecord, SeriesRecord, StudyRecord,
};
use crate::uid::{is_valid_uid, trim_uid};

/// Why a header cannot be indexed. Each maps to a DIMSE failure status with a comment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtractError {
    /// A UID the node needs to place the instance is absent or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A UID is present but not a valid UID.
    #[error("invalid {name}: {value:?}")]
    InvalidUid {
        /// Attribute keyword.
        name: &'static str,
        /// The offending value.
        value: String,
    },
}

/// Extract patient, study, series and instance records. `transfer_syntax` is the syntax
/// the object is stored in; size, hash, time and source are filled in by the store.
pub fn extract_record(
    obj: &InMemDicomObject,
    transfer_syntax: &str,
) -> Result<IndexRecord, ExtractError> {
    let sop_uid = required_uid(obj, tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
    let sop_class_uid = required_uid(obj, tags::SOP_CLASS_UID, "SOPClassUID")?;
    let study_uid = required_uid(obj, tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let series_uid = required_uid(obj, tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;

    let key = PatientKey {
        issuer: text(obj, tags::ISSUER_OF_PATIENT_ID),
        patient_id: text(obj, tags::PATIENT_ID),
    };
    let patient = PatientRecord {
        key: key.clone(),
        name: PersonName::parse(&text(obj, tags::PATIENT_NAME)),
        birth_date: text(obj, tags::PATIENT_BIRTH_DATE),
        sex: text(obj, tags::PATIENT_SEX),
    };
    let study = StudyRecord {
        study_uid: study_uid.clone(),
        patient: key,
        study_date: text(obj, tags::STUDY_DATE),
        study_time: text(obj, tags::STUDY_TIME),
        accession_number: text(obj, tags::ACCESSION_NUMBER),
        study_id: text(obj, tags::STUDY_ID),
        description: text(obj, tags::STUDY_DESCRIPTION),
        referring_physician: PersonName::parse(&text(obj, tags::REFERRING_PHYSICIAN_NAME)),
    };
    let series = SeriesRecord {
        series_uid: series_uid.clone(),
        study_uid: study_uid.clone(),
        modality: text(obj, tags::MODALITY),
        series_number: integer(obj, tags::SERIES_NUMBER),
        description: text(obj, tags::SERIES_DESCRIPTION),
        body_part: text(obj, tags::BODY_PART_EXAMINED),
    };
    let rows = unsigned16(obj, tags::ROWS);
    let columns = unsigned16(obj, tags::COLUMNS);
    let frames = if rows > 0 && columns > 0 {
        integer(obj, tags::NUMBER_OF_FRAMES)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(1)
    } else {
        0
    };
    let instance = InstanceRecord {
        sop_uid,
        sop_class_uid,
        series_uid,
        study_uid,
        instance_number: integer(obj, tags::INSTANCE_NUMBER),
        transfer_syntax: trim_uid(transfer_syntax).to_string(),
        rows,
        columns,
        frames,
        ..Default::default()
    };
    Ok(IndexRecord {
        patient,
        study,
        series,
        instance,
    })
}

/// The indexed attributes whose text depends on Specific Character Set (VRs SH, LO, PN),
/// with whether each is a person name. When the character set needs our own decoder
/// ([`crate::charset::CharacterSets::needs_own_decoding`]), the store reads these raw and
/// hands them to [`IndexRecord::set_text`].
pub const CHARSET_TEXT_TAGS: &[(Tag, bool)] = &[
    (tags::PATIENT_NAME, true),
    (tags::PATIENT_ID, false),
    (tags::ISSUER_OF_PATIENT_ID, false),
    (tags::ACCESSION_NUMBER, false),
    (tags::STUDY_ID, false),
    (tags::STUDY_DESCRIPTION, false),
    (tags::REFERRING_PHYSICIAN_NAME, true),
    (tags::SERIES_DESCRIPTION, false),
];

impl IndexRecord {
    /// Replace an attribute of [`CHARSET_TEXT_TAGS`] with its properly decoded text.
    pub fn set_text(&mut self, tag: Tag, value: &str) {
        let v = value.trim_matches(['\0', ' ']).to_string();
        match tag {
            tags::PATIENT_NAME => self.patient.name = PersonName::parse(&v),
            tags::PATIENT_ID => {
                self.patient.key.patient_id = v.clone();
                self.study.patient.patient_id = v;
            }
            tags::ISSUER_OF_PATIENT_ID => {
                self.patient.key.issuer = v.clone();
                self.study.patient.issuer = v;
            }
            tags::ACCESSION_NUMBER => self.study.accession_number = v,
            tags::STUDY_ID => self.study.study_id = v,
            tags::STUDY_DESCRIPTION => self.study.description = v,
            tags::REFERRING_PHYSICIAN_NAME => {
                self.study.referring_physician = PersonName::parse(&v)
            }
            tags::SERIES_DESCRIPTION => self.series.description = v,
            _ => {}
        }
    }
}

/// A text value, decoded, with multiple values joined by `\` and padding trimmed; empty
/// when absent or not convertible.
///
/// A standard attribute that arrives with VR UN (some converters write every element so)
/// is read as text anyway: PS3.5 6.2.2 says to interpret UN by the dictionary VR, and all
/// the attributes we index as text are string VRs.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    let Some(e) = obj.get(tag) else {
        return String::new();
    };
    let s = match (e.vr(), e.value()) {
        (VR::UN, Value::Primitive(PrimitiveValue::U8(bytes))) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        _ => match e.to_str() {
            Ok(s) => s.into_owned(),
            Err(_) => return String::new(),
        },
    };
    s.trim_matches(['\0', ' ']).to_string()
}

fn required_uid(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<String, ExtractError> {
    let value = text(obj, tag);
    let value = trim_uid(&value);
    if value.is_empty() {
        return Err(ExtractError::Missing(name));
    }
    if !is_valid_uid(value) {
        return Err(ExtractError::InvalidUid {
            name,
            value: value.to_string(),
        });
    }
    Ok(value.to_string())
}

fn integer(obj: &InMemDicomObject, tag: Tag) -> Option<i32> {
    let s = text(obj, tag);
    let first = s.split('\\').next()?.trim();
    first
        .parse::<i32>()
        .ok()
        // some writers put "1.0" in IS; accept whole numbers written that way
        .or_else(|| {
            first
                .parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i32)
        })
}

fn unsigned16(obj: &InMemDicomObject, tag: Tag) -> u16 {
    let Some(e) = obj.get(tag) else {
        return 0;
    };
    match (e.vr(), e.value()) {
        // a US attribute that arrived as UN: two little-endian bytes (see `text`)
        (VR::UN, Value::Primitive(PrimitiveValue::U8(b))) if b.len() == 2 => {
            u16::from_le_bytes([b[0], b[1]])
        }
        _ => e.to_int::<u16>().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::DataElement;

    fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, v: &str) {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    }

    fn minimal() -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, "1.2.3.4\0");
        put(
            &mut o,
            tags::SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.2",
        );
        put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, "1.2.3");
        put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, "1.2.3.1");
        o
    }

    #[test]
    fn extracts_levels() {
        let mut o = minimal();
        put(&mut o, tags::PATIENT_ID, VR::LO, "12345 ");
        put(
            &mut o,
            tags::PATIENT_NAME,
            VR::PN,
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
        );
        put(&mut o, tags::MODALITY, VR::CS, "CT");
        put(&mut o, tags::SERIES_NUMBER, VR::IS, " 3");
        put(&mut o, tags::NUMBER_OF_FRAMES, VR::IS, "30");
        o.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(512_u16),
        ));
        o.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(256_u16),
        ));
        let r = extract_record(&o, "1.2.840.10008.1.2.1\0").unwrap();
        assert_eq!(r.instance.sop_uid, "1.2.3.4");
        assert_eq!(r.instance.transfer_syntax, "1.2.840.10008.1.2.1");
        assert_eq!(r.instance.frames, 30);
        assert_eq!((r.instance.rows, r.instance.columns), (512, 256));
        assert_eq!(r.patient.key.patient_id, "12345");
        assert_eq!(r.patient.name.ideographic, "山田^太郎");
        assert_eq!(r.study.patient, r.patient.key);
        assert_eq!(r.series.series_number, Some(3));
        assert_eq!(r.series.modality, "CT");
    }

    #[test]
    fn reads_standard_attributes_sent_as_un() {
        let mut o = minimal();
        o.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UN,
            PrimitiveValue::U8(b"1.2.840.99\0".as_slice().into()),
        ));
        o.put(DataElement::new(
            tags::ROWS,
            VR::UN,
            PrimitiveValue::U8([0x00, 0x02].as_slice().into()),
        ));
        let r = extract_record(&o, "1.2.840.10008.1.2").unwrap();
        assert_eq!(r.study.study_uid, "1.2.840.99");
        assert_eq!(r.instance.rows, 512);
    }

    #[test]
    fn no_pixels_means_no_frames() {
        let r = extract_record(&minimal(), "1.2.840.10008.1.2").unwrap();
        assert_eq!(r.instance.frames, 0);
        assert_eq!(r.instance.instance_number, None);
    }

    #[test]
    fn missing_and_invalid_uids() {
        let mut o = minimal();
        o.remove_element(tags::STUDY_INSTANCE_UID);
        assert_eq!(
            extract_record(&o, "1.2.840.10008.1.2"),
            Err(ExtractError::Missing("StudyInstanceUID"))
        );
        let mut o = minimal();
        put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, "1.2.x");
        assert!(matches!(
            extract_record(&o, "1.2.840.10008.1.2"),
            Err(ExtractError::InvalidUid {
                name: "SeriesInstanceUID",
                ..
            })
        ));
    }
}
