//! DIMSE command sets (PS3.7 9.3, E.1): always Implicit VR Little Endian, with a Command
//! Group Length. dicom-rs encodes elements; the message fields and statuses are ours.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Command Field values (PS3.7 E.1).
pub mod field {
    /// C-STORE-RQ.
    pub const C_STORE_RQ: u16 = 0x0001;
    /// C-STORE-RSP.
    pub const C_STORE_RSP: u16 = 0x8001;
    /// C-ECHO-RQ.
    pub const C_ECHO_RQ: u16 = 0x0030;
    /// C-ECHO-RSP.
    pub const C_ECHO_RSP: u16 = 0x8030;
    /// C-CANCEL-RQ.
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
}

/// Status codes used by the node (PS3.7 C, PS3.4 B.2.3).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: out of resources (e.g. disk full); the sender may retry.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (e.g. missing UIDs).
    pub const DATASET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Refused: SOP class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Unrecognized operation.
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
}

/// Command Data Set Type value meaning "no data set follows".
pub const NO_DATASET: u16 = 0x0101;

/// The fields of a received command that the node acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    /// Command Field.
    pub field: u16,
    /// Message ID.
    pub message_id: u16,
    /// Affected SOP Class UID (empty when absent).
    pub sop_class_uid: String,
    /// Affected SOP Instance UID (empty when absent).
    pub sop_instance_uid: String,
    /// Whether a data set follows.
    pub has_dataset: bool,
}

/// A command set could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed command set: {0}")]
pub struct CommandError(String);

impl Command {
    /// Decode a command set.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let obj =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .map_err(|e| CommandError(e.to_string()))?;
        let u16_of =
            |tag: Tag| -> Option<u16> { obj.get(tag).and_then(|e| e.to_int::<u16>().ok()) };
        let str_of = |tag: Tag| -> String {
            obj.get(tag)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                .unwrap_or_default()
        };
        let field = u16_of(tags::COMMAND_FIELD)
            .ok_or_else(|| CommandError("no Command Field (0000,0100)".into()))?;
        Ok(Command {
            field,
            message_id: u16_of(tags::MESSAGE_ID).unwrap_or(0),
            sop_class_uid: str_of(tags::AFFECTED_SOP_CLASS_UID),
            sop_instance_uid: str_of(tags::AFFECTED_SOP_INSTANCE_UID),
            has_dataset: u16_of(tags::COMMAND_DATA_SET_TYPE).is_some_and(|t| t != NO_DATASET),
        })
    }
}

/// Longest Error Comment (0000,0902) allowed: LO, 64 characters.
const ERROR_COMMENT_MAX: usize = 64;

/// Encode a response to `rq` with `field` (the RSP command), `status` and an optional
/// error comment (only sent on failure, PS3.7 9.1.1.1.6).
pub fn encode_response(rq: &Command, field: u16, status: u16, comment: Option<&str>) -> Vec<u8> {
    let mut elems = vec![
        DataElement::new(tags::COMMAND_FIELD, VR::US, PrimitiveValue::from(field)),
        DataElement::new(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(rq.message_id),
        ),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(NO_DATASET),
        ),
        DataElement::new(tags::STATUS, VR::US, PrimitiveValue::from(status)),
    ];
    if !rq.sop_class_uid.is_empty() {
        elems.push(DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(rq.sop_class_uid.as_str()),
        ));
    }
    if !rq.sop_instance_uid.is_empty() {
        elems.push(DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(rq.sop_instance_uid.as_str()),
        ));
    }
    if let Some(c) = comment {
        let c: String = c
            .chars()
            .filter(|ch| ch.is_ascii() && !ch.is_ascii_control() && *ch != '\\')
            .take(ERROR_COMMENT_MAX)
            .collect();
        elems.push(DataElement::new(
            tags::ERROR_COMMENT,
            VR::LO,
            PrimitiveValue::from(c),
        ));
    }
    let obj = InMemDicomObject::command_from_element_iter(elems);
    let mut out = Vec::with_capacity(256);
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        // writing a handful of primitive elements into a Vec cannot fail
        .expect("command set encodes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_round_trip() {
        let rq = Command {
            field: field::C_STORE_RQ,
            message_id: 7,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: "1.2.3".into(),
            has_dataset: true,
        };
        let long = "x".repeat(100);
        let bytes = encode_response(
            &rq,
            field::C_STORE_RSP,
            status::DATASET_MISMATCH,
            Some(&long),
        );
        let obj =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        assert_eq!(
            obj.get(tags::STATUS).unwrap().to_int::<u16>().unwrap(),
            0xA900
        );
        assert_eq!(
            obj.get(tags::MESSAGE_ID_BEING_RESPONDED_TO)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            7
        );
        let comment = obj.get(tags::ERROR_COMMENT).unwrap().to_str().unwrap();
        assert_eq!(comment.trim_end().len(), 64);
        // group length is present and right
        let gl = obj
            .get(tags::COMMAND_GROUP_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(gl as usize, bytes.len() - 12);
        let back = Command::decode(&bytes).unwrap();
        assert_eq!(back.field, field::C_STORE_RSP);
        assert!(!back.has_dataset);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Command::decode(&[1, 2, 3]).is_err());
    }
}
