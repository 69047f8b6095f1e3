/*!
The few DIMSE pieces the CLI needs: encoding C-ECHO-RQ/C-STORE-RQ command
sets, decoding their responses, and moving command and data PDVs over a
dicom-ul association while keeping at most one PDU in memory.

dicom-ul only moves PDUs; command sets (PS3.7 9.3, always Implicit VR Little
Endian) are ours to build.
*/

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{AbortRQSource, PDataValue, PDataValueType, PDV_HEADER_SIZE};
use dicom_ul::{ClientAssociation, Pdu};

use crate::connection::describe_ul_error;

/// Command Field values (PS3.7 E.1).
pub(crate) const C_STORE_RQ: u16 = 0x0001;
pub(crate) const C_STORE_RSP: u16 = 0x8001;
pub(crate) const C_ECHO_RQ: u16 = 0x0030;
pub(crate) const C_ECHO_RSP: u16 = 0x8030;

/// Command Data Set Type: 0x0101 means "no data set"; anything else means
/// one follows. 0x0000 is what most implementations send.
const DATA_SET_PRESENT: u16 = 0x0000;
const NO_DATA_SET: u16 = 0x0101;

/// Never put more than this in one P-DATA-TF PDU, even if the peer allows
/// more (a max PDU of 0 means "unlimited"): the PDU is buffered in memory.
const SEND_PDU_CAP: u32 = 1 << 20;

/// The fields of a DIMSE response the CLI looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) command_field: u16,
    pub(crate) message_id_responded_to: u16,
    pub(crate) status: u16,
    pub(crate) error_comment: Option<String>,
}

/// A failure that leaves the association unusable.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// The peer aborted, closed the connection, timed out or broke the
    /// protocol. The text says which.
    Peer(String),
    /// Reading the local file failed after part of the data set was sent.
    /// The association must be aborted: a message cannot be taken back.
    Local(io::Error),
}

/// C-ECHO-RQ command set (PS3.7 9.3.5.1).
pub(crate) fn c_echo_rq(message_id: u16) -> anyhow::Result<Vec<u8>> {
    encode_command(vec![
        uid_element(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION),
        us_element(tags::COMMAND_FIELD, C_ECHO_RQ),
        us_element(tags::MESSAGE_ID, message_id),
        us_element(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
    ])
}

/// C-STORE-RQ command set (PS3.7 9.3.1.1), priority medium, data set
/// present.
pub(crate) fn c_store_rq(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
) -> anyhow::Result<Vec<u8>> {
    encode_command(vec![
        uid_element(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us_element(tags::COMMAND_FIELD, C_STORE_RQ),
        us_element(tags::MESSAGE_ID, message_id),
        us_element(tags::PRIORITY, 0x0000),
        us_element(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        uid_element(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ])
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

/// Encode a command set as Implicit VR Little Endian, with its Command
/// Group Length (0000,0000) first.
fn encode_command(elements: Vec<DataElement<InMemDicomObject>>) -> anyhow::Result<Vec<u8>> {
    let command = InMemDicomObject::command_from_element_iter(elements);
    let mut bytes = Vec::with_capacity(256);
    command
        .write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .context("could not encode the command set")?;
    Ok(bytes)
}

/// Decode the fields of a response command set.
pub(crate) fn decode_response(bytes: &[u8]) -> anyhow::Result<Response> {
    let command =
        InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .context("could not parse the response command set")?;
    let us = |tag: Tag, name: &str| -> anyhow::Result<u16> {
        let element = command
            .get(tag)
            .with_context(|| format!("response has no {name} {tag}"))?;
        element
            .to_int::<u16>()
            .with_context(|| format!("response {name} {tag} is not a number"))
    };
    let error_comment = command
        .get(tags::ERROR_COMMENT)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .filter(|s| !s.is_empty());
    Ok(Response {
        command_field: us(tags::COMMAND_FIELD, "Command Field")?,
        message_id_responded_to: us(
            tags::MESSAGE_ID_BEING_RESPONDED_TO,
            "Message ID Being Responded To",
        )?,
        status: us(tags::STATUS, "Status")?,
        error_comment,
    })
}

/// Check that `response` answers request `message_id` of kind
/// `expected_field`.
pub(crate) fn check_response(
    response: &Response,
    expected_field: u16,
    message_id: u16,
) -> anyhow::Result<()> {
    if response.command_field != expected_field {
        bail!(
            "peer answered with command field 0x{:04X}, expected 0x{expected_field:04X}",
            response.command_field
        );
    }
    if response.message_id_responded_to != message_id {
        bail!(
            "peer answered message {} while message {message_id} was outstanding",
            response.message_id_responded_to
        );
    }
    Ok(())
}

/// What a DIMSE status means (PS3.7 C), for messages when the peer gave no
/// Error Comment.
pub(crate) fn status_meaning(status: u16) -> &'static str {
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

/// The largest PDV data fragment we may put in one PDU to this peer. The
/// peer's max PDU length counts the PDV item header (4 bytes length,
/// 1 byte context ID, 1 byte message control header) but not the 6-byte PDU
/// header.
pub(crate) fn max_fragment_len(association: &ClientAssociation<TcpStream>) -> usize {
    let pdu = association.acceptor_max_pdu_length().min(SEND_PDU_CAP);
    // fragments of even length (an odd max PDU is legal but unusual)
    (pdu.saturating_sub(PDV_HEADER_SIZE) & !1).max(2) as usize
}

/// Send a whole command set, fragmented if the peer's PDUs are tiny.
pub(crate) fn send_command(
    association: &mut ClientAssociation<TcpStream>,
    presentation_context_id: u8,
    command: &[u8],
    timeout_secs: u64,
) -> Result<(), TransportError> {
    let fragment_len = max_fragment_len(association);
    let mut chunks = command.chunks(fragment_len).peekable();
    while let Some(chunk) = chunks.next() {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id,
                value_type: PDataValueType::Command,
                is_last: chunks.peek().is_none(),
                data: chunk.to_vec(),
            }],
        };
        send_pdu(association, &pdu, timeout_secs)?;
    }
    Ok(())
}

/// Stream `len` bytes from `reader` as the data set of the current message,
/// in PDUs no larger than the peer accepts; the last fragment is flagged.
/// Memory use is one fragment. `on_progress` gets the byte count of each
/// fragment sent.
pub(crate) fn send_data_set<R: Read>(
    association: &mut ClientAssociation<TcpStream>,
    presentation_context_id: u8,
    reader: &mut R,
    len: u64,
    timeout_secs: u64,
    mut on_progress: impl FnMut(u64),
) -> Result<(), TransportError> {
    let fragment_len = max_fragment_len(association);
    let mut remaining = len;
    let mut buffer = Vec::with_capacity(fragment_len.min(len as usize).max(1));
    loop {
        let n = remaining.min(fragment_len as u64) as usize;
        buffer.resize(n, 0);
        reader
            .read_exact(&mut buffer)
            .map_err(TransportError::Local)?;
        remaining -= n as u64;
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id,
                value_type: PDataValueType::Data,
                is_last: remaining == 0,
                data: buffer,
            }],
        };
        send_pdu(association, &pdu, timeout_secs)?;
        on_progress(n as u64);
        // take the buffer back out of the PDU to reuse its allocation
        buffer = match pdu {
            Pdu::PData { mut data } => data.pop().map(|pdv| pdv.data).unwrap_or_default(),
            _ => Vec::new(),
        };
        if remaining == 0 {
            return Ok(());
        }
    }
}

fn send_pdu(
    association: &mut ClientAssociation<TcpStream>,
    pdu: &Pdu,
    timeout_secs: u64,
) -> Result<(), TransportError> {
    association.send(pdu).map_err(|e| {
        // A peer that aborts while we are writing usually shows up as a
        // broken pipe; its A-ABORT may be waiting on the socket, and says more.
        let original = describe_ul_error(&e, timeout_secs);
        TransportError::Peer(pending_abort(association).unwrap_or(original))
    })
}

/// After a failed write, look briefly for an A-ABORT from the peer.
fn pending_abort(association: &mut ClientAssociation<TcpStream>) -> Option<String> {
    association
        .inner_stream()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    match association.receive() {
        Ok(Pdu::AbortRQ { source }) => Some(describe_abort(&source)),
        _ => None,
    }
}

/// Receive one complete command set (all Command PDVs up to the one flagged
/// last). Returns the presentation context ID it came on and its bytes.
pub(crate) fn receive_command(
    association: &mut ClientAssociation<TcpStream>,
    timeout_secs: u64,
) -> Result<(u8, Vec<u8>), TransportError> {
    let mut command = Vec::new();
    loop {
        let pdu = association
            .receive()
            .map_err(|e| TransportError::Peer(describe_ul_error(&e, timeout_secs)))?;
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    match pdv.value_type {
                        PDataValueType::Command => {
                            command.extend_from_slice(&pdv.data);
                            if pdv.is_last {
                                return Ok((pdv.presentation_context_id, command));
                            }
                        }
                        PDataValueType::Data => {
                            tracing::warn!(
                                len = pdv.data.len(),
                                "ignoring an unexpected data fragment from the peer"
                            );
                        }
                    }
                }
            }
            Pdu::AbortRQ { source } => return Err(TransportError::Peer(describe_abort(&source))),
            Pdu::ReleaseRQ => {
                return Err(TransportError::Peer(
                    "peer asked to release the association before answering".into(),
                ))
            }
            other => {
                return Err(TransportError::Peer(format!(
                    "unexpected PDU from the peer: {}",
                    other.short_description()
                )))
            }
        }
    }
}

pub(crate) fn describe_abort(source: &AbortRQSource) -> String {
    match source {
        AbortRQSource::ServiceUser => "association aborted by the peer".into(),
        AbortRQSource::ServiceProvider(reason) => {
            format!("association aborted by the peer's DICOM service ({reason})")
        }
        AbortRQSource::Reserved => "association aborted by the peer (reserved source)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_store_rq_round_trips() {
        let sop_class = uids::CT_IMAGE_STORAGE; // odd length: gets a NUL pad
        let instance = "1.2.3.44";
        let bytes = c_store_rq(7, sop_class, instance).unwrap();
        assert_eq!(bytes.len() % 2, 0);

        // Implicit VR LE: tag (4) + length (4); group length comes first
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        let group_length = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        assert_eq!(group_length as usize, bytes.len() - 12);

        let object =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        let get = |tag| object.get(tag).unwrap();
        assert_eq!(
            get(tags::COMMAND_FIELD).to_int::<u16>().unwrap(),
            C_STORE_RQ
        );
        assert_eq!(get(tags::MESSAGE_ID).to_int::<u16>().unwrap(), 7);
        assert_eq!(get(tags::PRIORITY).to_int::<u16>().unwrap(), 0);
        assert_eq!(get(tags::COMMAND_DATA_SET_TYPE).to_int::<u16>().unwrap(), 0);
        assert_eq!(
            get(tags::AFFECTED_SOP_CLASS_UID)
                .to_str()
                .unwrap()
                .trim_end_matches('\0'),
            sop_class
        );
        assert_eq!(
            get(tags::AFFECTED_SOP_INSTANCE_UID).to_str().unwrap(),
            instance
        );
    }

    #[test]
    fn c_echo_rq_has_no_data_set() {
        let bytes = c_echo_rq(1).unwrap();
        let object =
            InMemDicomObject::read_dataset_with_ts(&bytes[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        let get = |tag| object.get(tag).unwrap().to_int::<u16>().unwrap();
        assert_eq!(get(tags::COMMAND_FIELD), C_ECHO_RQ);
        assert_eq!(get(tags::COMMAND_DATA_SET_TYPE), NO_DATA_SET);
    }

    #[test]
    fn decodes_a_response_with_error_comment() {
        let bytes = encode_command(vec![
            uid_element(tags::AFFECTED_SOP_CLASS_UID, uids::CT_IMAGE_STORAGE),
            us_element(tags::COMMAND_FIELD, C_STORE_RSP),
            us_element(tags::MESSAGE_ID_BEING_RESPONDED_TO, 3),
            us_element(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
            us_element(tags::STATUS, 0xA900),
            DataElement::new(
                tags::ERROR_COMMENT,
                VR::LO,
                PrimitiveValue::from("bad dataset "),
            ),
        ])
        .unwrap();
        let response = decode_response(&bytes).unwrap();
        assert_eq!(
            response,
            Response {
                command_field: C_STORE_RSP,
                message_id_responded_to: 3,
                status: 0xA900,
                error_comment: Some("bad dataset".into()),
            }
        );
        assert!(check_response(&response, C_STORE_RSP, 3).is_ok());
        assert!(check_response(&response, C_STORE_RSP, 4).is_err());
        assert!(check_response(&response, C_ECHO_RSP, 3).is_err());
        assert_eq!(
            status_meaning(0xA900),
            "error: data set does not match SOP class"
        );
    }

    #[test]
    fn truncated_response_is_an_error() {
        let bytes = c_echo_rq(1).unwrap();
        assert!(decode_response(&bytes[..bytes.len() - 3]).is_err());
        // a request is not a response: no Status
        assert!(decode_response(&bytes).is_err());
    }
}
