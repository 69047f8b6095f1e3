//! DIMSE command sets (PS3.7 9.3, E.1): always Implicit VR Little Endian, with a Command
//! Group Length. dicom-rs encodes elements; the message fields and statuses are ours. Both
//! sides use this module: the node's SCP decodes requests and encodes responses, the
//! `renkei` CLI encodes requests and decodes responses.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

/// Command Field values (PS3.7 E.1).
pub mod field {
    /// C-STORE-RQ.
    pub const C_STORE_RQ: u16 = 0x0001;
    /// C-STORE-RSP.
    pub const C_STORE_RSP: u16 = 0x8001;
    /// C-FIND-RQ.
    pub const C_FIND_RQ: u16 = 0x0020;
    /// C-FIND-RSP.
    pub const C_FIND_RSP: u16 = 0x8020;
    /// C-GET-RQ.
    pub const C_GET_RQ: u16 = 0x0010;
    /// C-GET-RSP.
    pub const C_GET_RSP: u16 = 0x8010;
    /// C-MOVE-RQ.
    pub const C_MOVE_RQ: u16 = 0x0021;
    /// C-MOVE-RSP.
    pub const C_MOVE_RSP: u16 = 0x8021;
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
    /// Refused: Move Destination unknown (C-MOVE).
    pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
    /// Pending: a C-FIND match follows.
    pub const PENDING: u16 = 0xFF00;
    /// Cancel: the operation stopped on C-CANCEL.
    pub const CANCEL: u16 = 0xFE00;
    /// Warning: sub-operations complete, one or more failures (C-GET/C-MOVE).
    pub const SUBOPERATIONS_FAILED: u16 = 0xB000;
    /// Refused: out of resources, unable to perform sub-operations (C-GET/C-MOVE).
    pub const UNABLE_TO_PERFORM_SUBOPERATIONS: u16 = 0xA702;
    /// Refused: out of resources, unable to calculate the number of matches (C-GET/C-MOVE).
    pub const OUT_OF_RESOURCES_MATCHES: u16 = 0xA701;
}

/// Command Data Set Type value meaning "no data set follows".
pub const NO_DATASET: u16 = 0x0101;
/// Command Data Set Type value most implementations send when a data set follows.
pub const DATASET_PRESENT: u16 = 0x0000;

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
    /// Move Destination (C-MOVE), empty otherwise.
    pub move_destination: String,
}

/// A command set could not be read, or does not answer what was asked.
#[derive(Debug, thiserror::Error)]
#[error("malformed command set: {0}")]
pub struct CommandError(String);

/// The fields of a response the requester acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Command Field (e.g. [`field::C_STORE_RSP`]).
    pub field: u16,
    /// Message ID Being Responded To.
    pub message_id_responded_to: u16,
    /// Status (PS3.7 C).
    pub status: u16,
    /// Error Comment, when the peer sent a non-empty one.
    pub error_comment: Option<String>,
}

impl Response {
    /// Decode a response command set.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let obj = read(bytes)?;
        let us = |tag: Tag, name: &str| -> Result<u16, CommandError> {
            obj.get(tag)
                .ok_or_else(|| CommandError(format!("response has no {name} {tag}")))?
                .to_int::<u16>()
                .map_err(|_| CommandError(format!("response {name} {tag} is not a number")))
        };
        let error_comment = obj
            .get(tags::ERROR_COMMENT)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .filter(|s| !s.is_empty());
        Ok(Response {
            field: us(tags::COMMAND_FIELD, "Command Field")?,
            message_id_responded_to: us(
                tags::MESSAGE_ID_BEING_RESPONDED_TO,
                "Message ID Being Responded To",
            )?,
            status: us(tags::STATUS, "Status")?,
            error_comment,
        })
    }

    /// Check that this answers request `message_id` with `expected_field`.
    pub fn check(&self, expected_field: u16, message_id: u16) -> Result<(), CommandError> {
        if self.field != expected_field {
            return Err(CommandError(format!(
                "peer answered with command field 0x{:04X}, expected 0x{expected_field:04X}",
                self.field
            )));
        }
        if self.message_id_responded_to != message_id {
            return Err(CommandError(format!(
                "peer answered message {} while message {message_id} was outstanding",
                self.message_id_responded_to
            )));
        }
        Ok(())
    }
}

/// Sub-operation counts of a C-GET/C-MOVE response (PS3.7 9.3.3.2, 9.3.4.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubOperations {
    /// Not yet attempted.
    pub remaining: u16,
    /// Stored successfully.
    pub completed: u16,
    /// Failed.
    pub failed: u16,
    /// Stored with a warning.
    pub warning: u16,
}

/// A C-GET/C-MOVE response with its sub-operation counts; `remaining` is left out of the
/// final response (PS3.7 C.4.3.1.3), and a data set follows when `failed_uids` is given
/// (the Failed SOP Instance UID List identifier, sent by the caller).
pub fn encode_retrieve_response(
    rq: &Command,
    field: u16,
    status: u16,
    ops: SubOperations,
    final_response: bool,
    comment: Option<&str>,
    dataset_follows: bool,
) -> Vec<u8> {
    let mut obj = read(&encode_response_with(
        rq,
        field,
        status,
        comment,
        dataset_follows,
    ))
    .expect("our own command set decodes");
    if !final_response {
        obj.put(us_element(
            tags::NUMBER_OF_REMAINING_SUBOPERATIONS,
            ops.remaining,
        ));
    }
    obj.put(us_element(
        tags::NUMBER_OF_COMPLETED_SUBOPERATIONS,
        ops.completed,
    ));
    obj.put(us_element(tags::NUMBER_OF_FAILED_SUBOPERATIONS, ops.failed));
    obj.put(us_element(
        tags::NUMBER_OF_WARNING_SUBOPERATIONS,
        ops.warning,
    ));
    obj.remove_element(tags::COMMAND_GROUP_LENGTH);
    encode(obj.into_iter().collect())
}

/// C-ECHO-RQ (PS3.7 9.3.5.1).
pub fn encode_echo_rq(message_id: u16) -> Vec<u8> {
    encode(vec![
        uid_element(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION),
        us_element(tags::COMMAND_FIELD, field::C_ECHO_RQ),
        us_element(tags::MESSAGE_ID, message_id),
        us_element(tags::COMMAND_DATA_SET_TYPE, NO_DATASET),
    ])
}

/// C-STORE-RQ (PS3.7 9.3.1.1), priority medium, a data set follows.
pub fn encode_store_rq(message_id: u16, sop_class_uid: &str, sop_instance_uid: &str) -> Vec<u8> {
    encode(vec![
        uid_element(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us_element(tags::COMMAND_FIELD, field::C_STORE_RQ),
        us_element(tags::MESSAGE_ID, message_id),
        us_element(tags::PRIORITY, 0x0000),
        us_element(tags::COMMAND_DATA_SET_TYPE, DATASET_PRESENT),
        uid_element(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ])
}

/// C-STORE-RQ of a C-MOVE sub-operation, naming the move originator (PS3.7 9.3.1.1).
pub fn encode_store_rq_for_move(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    originator_ae: &str,
    originator_message_id: u16,
) -> Vec<u8> {
    let mut obj = read(&encode_store_rq(
        message_id,
        sop_class_uid,
        sop_instance_uid,
    ))
    .expect("our own command set decodes");
    obj.put(DataElement::new(
        tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
        VR::AE,
        PrimitiveValue::from(originator_ae),
    ));
    obj.put(us_element(
        tags::MOVE_ORIGINATOR_MESSAGE_ID,
        originator_message_id,
    ));
    obj.remove_element(tags::COMMAND_GROUP_LENGTH);
    encode(obj.into_iter().collect())
}

/// What a DIMSE status means (PS3.7 C), for messages when the peer gave no Error Comment.
pub fn status_meaning(status: u16) -> &'static str {
    match status {
        0x0000 => "success",
        0x0001 | 0x0107 | 0x0116 => "warning: attribute list or value problem",
        0xB000 => "warning: coercion of data elements",
        0xB006 => "warning: elements discarded",
        0xB007 => "warning: data set does not match SOP class",
        0x0110 => "processing failure",
        0x0111 => "duplicate SOP instance",
        0x0117 => "invalid object instance",
        0x0122 => "SOP class not supported",
        0x0124 => "not authorized",
        0x0210 => "duplicate invocation",
        0x0211 => "unrecognized operation",
        0x0212 => "mistyped argument",
        0x0213 => "resource limitation",
        s if s & 0xFF00 == 0xA700 => "refused: out of resources",
        s if s & 0xFF00 == 0xA900 => "error: data set does not match SOP class",
        s if s & 0xF000 == 0xC000 => "error: cannot understand",
        _ => "unknown status",
    }
}

fn read(bytes: &[u8]) -> Result<InMemDicomObject, CommandError> {
    InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| CommandError(e.to_string()))
}

fn us_element(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// UIDs are padded to an even length with a NUL byte (PS3.5 9.1).
fn uid_element(tag: Tag, uid: &str) -> DataElement<InMemDicomObject> {
    let mut value = uid.trim_end_matches(['\0', ' ']).to_string();
    if value.len() % 2 == 1 {
        value.push('\0');
    }
    DataElement::new(tag, VR::UI, PrimitiveValue::from(value))
}

/// Encode a command set with its Command Group Length (0000,0000) first.
fn encode(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let obj = InMemDicomObject::command_from_element_iter(elements);
    let mut out = Vec::with_capacity(256);
    obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        // writing a handful of primitive elements into a Vec cannot fail
        .expect("command set encodes");
    out
}

impl Command {
    /// Decode a command set.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let obj = read(bytes)?;
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
            move_destination: str_of(tags::MOVE_DESTINATION),
        })
    }
}

/// Longest Error Comment (0000,0902) allowed: LO, 64 characters.
const ERROR_COMMENT_MAX: usize = 64;

/// Encode a response to `rq` with `field` (the RSP command), `status` and an optional
/// error comment (only sent on failure, PS3.7 9.1.1.1.6).
pub fn encode_response(rq: &Command, field: u16, status: u16, comment: Option<&str>) -> Vec<u8> {
    encode_response_with(rq, field, status, comment, false)
}

/// Like [`encode_response`], announcing a data set after the command (C-FIND pending).
pub fn encode_response_with(
    rq: &Command,
    field: u16,
    status: u16,
    comment: Option<&str>,
    dataset_follows: bool,
) -> Vec<u8> {
    let dataset_type = if dataset_follows {
        DATASET_PRESENT
    } else {
        NO_DATASET
    };
    let mut elems = vec![
        us_element(tags::COMMAND_FIELD, field),
        us_element(tags::MESSAGE_ID_BEING_RESPONDED_TO, rq.message_id),
        us_element(tags::COMMAND_DATA_SET_TYPE, dataset_type),
        us_element(tags::STATUS, status),
    ];
    if !rq.sop_class_uid.is_empty() {
        elems.push(uid_element(tags::AFFECTED_SOP_CLASS_UID, &rq.sop_class_uid));
    }
    if !rq.sop_instance_uid.is_empty() {
        elems.push(uid_element(
            tags::AFFECTED_SOP_INSTANCE_UID,
            &rq.sop_instance_uid,
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
    encode(elems)
}

/// C-FIND-RQ (PS3.7 9.3.2.1), priority medium; the identifier follows as a data set.
pub fn encode_find_rq(message_id: u16, sop_class_uid: &str) -> Vec<u8> {
    encode_query_rq(field::C_FIND_RQ, message_id, sop_class_uid, None)
}

/// C-GET-RQ (PS3.7 9.3.3.1), priority medium; the identifier follows as a data set.
pub fn encode_get_rq(message_id: u16, sop_class_uid: &str) -> Vec<u8> {
    encode_query_rq(field::C_GET_RQ, message_id, sop_class_uid, None)
}

/// C-MOVE-RQ (PS3.7 9.3.4.1) to `move_destination`, priority medium; the identifier
/// follows as a data set.
pub fn encode_move_rq(message_id: u16, sop_class_uid: &str, move_destination: &str) -> Vec<u8> {
    encode_query_rq(
        field::C_MOVE_RQ,
        message_id,
        sop_class_uid,
        Some(move_destination),
    )
}

fn encode_query_rq(
    command_field: u16,
    message_id: u16,
    sop_class_uid: &str,
    move_destination: Option<&str>,
) -> Vec<u8> {
    let mut elems = vec![
        uid_element(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us_element(tags::COMMAND_FIELD, command_field),
        us_element(tags::MESSAGE_ID, message_id),
    ];
    if let Some(destination) = move_destination {
        elems.push(DataElement::new(
            tags::MOVE_DESTINATION,
            VR::AE,
            PrimitiveValue::from(destination.trim()),
        ));
    }
    elems.push(us_element(tags::PRIORITY, 0x0000));
    elems.push(us_element(tags::COMMAND_DATA_SET_TYPE, DATASET_PRESENT));
    encode(elems)
}

impl SubOperations {
    /// The sub-operation counts of a C-GET/C-MOVE response command set; `None` when it
    /// carries none of them. A missing count (e.g. Remaining in a final response) is 0.
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>, CommandError> {
        let obj = read(bytes)?;
        let count = |tag: Tag| -> Option<u16> { obj.get(tag).and_then(|e| e.to_int::<u16>().ok()) };
        let remaining = count(tags::NUMBER_OF_REMAINING_SUBOPERATIONS);
        let completed = count(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS);
        let failed = count(tags::NUMBER_OF_FAILED_SUBOPERATIONS);
        let warning = count(tags::NUMBER_OF_WARNING_SUBOPERATIONS);
        if remaining.is_none() && completed.is_none() && failed.is_none() && warning.is_none() {
            return Ok(None);
        }
        Ok(Some(SubOperations {
            remaining: remaining.unwrap_or(0),
            completed: completed.unwrap_or(0),
            failed: failed.unwrap_or(0),
            warning: warning.unwrap_or(0),
        }))
    }
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
            ..Default::default()
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
    fn requests_and_responses_round_trip() {
        let rq =
            Command::decode(&encode_store_rq(9, "1.2.840.10008.5.1.4.1.1.2", "1.2.3")).unwrap();
        assert_eq!(rq.field, field::C_STORE_RQ);
        assert_eq!(rq.message_id, 9);
        // odd-length UIDs are padded with NUL, which decoding removes
        assert_eq!(rq.sop_instance_uid, "1.2.3");
        assert!(rq.has_dataset);
        let echo = Command::decode(&encode_echo_rq(2)).unwrap();
        assert_eq!(echo.field, field::C_ECHO_RQ);
        assert!(!echo.has_dataset);

        let rsp = encode_response(
            &rq,
            field::C_STORE_RSP,
            status::OUT_OF_RESOURCES,
            Some("full"),
        );
        let r = Response::decode(&rsp).unwrap();
        assert_eq!(r.status, 0xA700);
        assert_eq!(r.error_comment.as_deref(), Some("full"));
        assert!(r.check(field::C_STORE_RSP, 9).is_ok());
        assert!(r.check(field::C_STORE_RSP, 10).is_err());
        assert!(r.check(field::C_ECHO_RSP, 9).is_err());
        assert_eq!(status_meaning(0xA700), "refused: out of resources");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Command::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn query_requests_round_trip() {
        let find = encode_find_rq(3, "1.2.840.10008.5.1.4.1.2.2.1");
        let rq = Command::decode(&find).unwrap();
        assert_eq!(rq.field, field::C_FIND_RQ);
        assert_eq!(rq.message_id, 3);
        assert_eq!(rq.sop_class_uid, "1.2.840.10008.5.1.4.1.2.2.1");
        assert!(rq.has_dataset);
        assert!(rq.move_destination.is_empty());
        let obj = read(&find).unwrap();
        let gl = obj
            .get(tags::COMMAND_GROUP_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(gl as usize, find.len() - 12);

        let get = Command::decode(&encode_get_rq(4, "1.2.840.10008.5.1.4.1.2.1.3")).unwrap();
        assert_eq!(get.field, field::C_GET_RQ);
        assert_eq!(get.message_id, 4);
        assert!(get.has_dataset);

        let mv =
            Command::decode(&encode_move_rq(5, "1.2.840.10008.5.1.4.1.2.2.2", "DEST")).unwrap();
        assert_eq!(mv.field, field::C_MOVE_RQ);
        assert_eq!(mv.move_destination, "DEST");
        assert!(mv.has_dataset);
    }

    #[test]
    fn sub_operations_round_trip() {
        let rq = Command::decode(&encode_get_rq(4, "1.2.840.10008.5.1.4.1.2.1.3")).unwrap();
        let ops = SubOperations {
            remaining: 3,
            completed: 2,
            failed: 1,
            warning: 0,
        };
        let pending =
            encode_retrieve_response(&rq, field::C_GET_RSP, 0xFF00, ops, false, None, false);
        assert_eq!(SubOperations::decode(&pending).unwrap(), Some(ops));
        let last = encode_retrieve_response(&rq, field::C_GET_RSP, 0xB000, ops, true, None, false);
        assert_eq!(
            SubOperations::decode(&last).unwrap(),
            Some(SubOperations {
                remaining: 0,
                ..ops
            })
        );
        let plain = encode_response(&rq, field::C_GET_RSP, 0xA900, None);
        assert_eq!(SubOperations::decode(&plain).unwrap(), None);
    }
}
