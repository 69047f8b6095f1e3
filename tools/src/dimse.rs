/*!
Moving command and data PDVs over a dicom-ul association while keeping at most
one PDU in memory. The command sets themselves (PS3.7 9.3) are encoded and
decoded by `renkei_dimse::command`, the codec the node uses too.
*/

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::Duration;

use dicom_ul::pdu::{AbortRQSource, PDataValue, PDataValueType, PDV_HEADER_SIZE};
use dicom_ul::{ClientAssociation, Pdu};

use crate::connection::describe_ul_error;

/// Never put more than this in one P-DATA-TF PDU, even if the peer allows
/// more (a max PDU of 0 means "unlimited"): the PDU is buffered in memory.
const SEND_PDU_CAP: u32 = 1 << 20;

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

/// Reads whole DIMSE messages (command, then data set) PDV by PDV, keeping
/// PDVs that arrived in the same PDU as the end of the previous part.
#[derive(Default)]
pub(crate) struct MessageReader {
    pending: std::collections::VecDeque<PDataValue>,
}

impl MessageReader {
    fn next_pdv(
        &mut self,
        association: &mut ClientAssociation<TcpStream>,
        timeout_secs: u64,
    ) -> Result<PDataValue, TransportError> {
        loop {
            if let Some(pdv) = self.pending.pop_front() {
                return Ok(pdv);
            }
            let pdu = association
                .receive()
                .map_err(|e| TransportError::Peer(describe_ul_error(&e, timeout_secs)))?;
            match pdu {
                Pdu::PData { data } => self.pending.extend(data),
                Pdu::AbortRQ { source } => {
                    return Err(TransportError::Peer(describe_abort(&source)))
                }
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

    /// The next complete command set and the presentation context it came on.
    pub(crate) fn command(
        &mut self,
        association: &mut ClientAssociation<TcpStream>,
        timeout_secs: u64,
    ) -> Result<(u8, Vec<u8>), TransportError> {
        let mut command = Vec::new();
        loop {
            let pdv = self.next_pdv(association, timeout_secs)?;
            match pdv.value_type {
                PDataValueType::Command => {
                    command.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        return Ok((pdv.presentation_context_id, command));
                    }
                }
                PDataValueType::Data => tracing::warn!(
                    len = pdv.data.len(),
                    "ignoring an unexpected data fragment from the peer"
                ),
            }
        }
    }

    /// Pass the fragments of the data set that follows a command to `sink`,
    /// up to the last one. A `sink` error is returned after the whole data
    /// set was read, so that the association stays usable.
    pub(crate) fn data_set(
        &mut self,
        association: &mut ClientAssociation<TcpStream>,
        timeout_secs: u64,
        mut sink: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<io::Result<()>, TransportError> {
        let mut result = Ok(());
        loop {
            let pdv = self.next_pdv(association, timeout_secs)?;
            match pdv.value_type {
                PDataValueType::Data => {
                    if result.is_ok() {
                        result = sink(&pdv.data);
                    }
                    if pdv.is_last {
                        return Ok(result);
                    }
                }
                PDataValueType::Command => {
                    return Err(TransportError::Peer(
                        "peer sent a command where a data set was expected".into(),
                    ))
                }
            }
        }
    }

    /// The data set that follows a command, in memory.
    pub(crate) fn data_set_bytes(
        &mut self,
        association: &mut ClientAssociation<TcpStream>,
        timeout_secs: u64,
    ) -> Result<Vec<u8>, TransportError> {
        let mut bytes = Vec::new();
        self.data_set(association, timeout_secs, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?
        .map_err(TransportError::Local)?;
        Ok(bytes)
    }
}

/// Send a data set held in memory.
pub(crate) fn send_data_set_bytes(
    association: &mut ClientAssociation<TcpStream>,
    presentation_context_id: u8,
    bytes: &[u8],
    timeout_secs: u64,
) -> Result<(), TransportError> {
    let mut reader = bytes;
    send_data_set(
        association,
        presentation_context_id,
        &mut reader,
        bytes.len() as u64,
        timeout_secs,
        |_| {},
    )
}
