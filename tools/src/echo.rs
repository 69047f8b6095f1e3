/*!
`renkei echo`: the DICOM "ping" (C-ECHO, Verification SOP class).

It answers the first question when two DICOM nodes cannot talk: is the peer
reachable, does it accept our AE titles, and does it answer DIMSE requests.
*/

use std::process::ExitCode;
use std::time::Instant;

use dicom_dictionary_std::uids;

use crate::connection::{ConnectionArgs, EstablishError};
use renkei_dimse::command::{encode_echo_rq, field, status_meaning, Response};

use crate::dimse::{self, TransportError};

/// Check that a DICOM node is reachable and accepts us (C-ECHO).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Check that a DICOM node is reachable and accepts us (C-ECHO, the DICOM \
\"ping\").\n\n\
Opens an association to HOST PORT with our AE title (-aet) and the node's AE title (-aec), \
sends a Verification request and waits for the answer. Use it first when a modality or \
PACS \"cannot connect\": a rejection names the reason (for example \"calling AE title not \
recognized\" means the node does not know our AE title).\n\n\
Exit code 0 when every echo succeeded, 1 otherwise.",
    after_help = "Example:\n  renkei echo pacs.example.org 104 -aet WORKSTATION1 -aec PACS"
)]
pub(crate) struct EchoArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    /// Send this many C-ECHO requests on the same association.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

pub(crate) fn run(args: &EchoArgs) -> anyhow::Result<ExitCode> {
    let conn = &args.connection;
    let peer = conn.peer_label();
    let contexts = [(
        uids::VERIFICATION.to_string(),
        vec![
            uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
        ],
    )];
    let mut association = match conn.establish(&contexts) {
        Ok(a) => a,
        Err(EstablishError::NoContextAccepted) => {
            eprintln!("C-ECHO to {peer}: the peer does not support Verification (C-ECHO)");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            eprintln!("C-ECHO to {peer}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let Some(pc_id) = association.presentation_contexts().first().map(|pc| pc.id) else {
        eprintln!("C-ECHO to {peer}: the peer does not support Verification (C-ECHO)");
        return Ok(ExitCode::FAILURE);
    };

    let mut all_ok = true;
    for i in 0..args.repeat {
        let message_id = (i % u32::from(u16::MAX)) as u16 + 1;
        let started = Instant::now();
        match echo_once(&mut association, pc_id, message_id, conn.timeout) {
            Ok(response) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                if response.status == 0x0000 {
                    println!("C-ECHO to {peer}: success ({ms:.1} ms)");
                } else {
                    all_ok = false;
                    eprintln!(
                        "C-ECHO to {peer}: status 0x{:04X} ({}) ({ms:.1} ms)",
                        response.status,
                        response
                            .error_comment
                            .as_deref()
                            .unwrap_or_else(|| status_meaning(response.status))
                    );
                }
            }
            Err(EchoError::Transport(TransportError::Peer(reason))) => {
                eprintln!("C-ECHO to {peer}: {reason}");
                let _ = association.abort();
                return Ok(ExitCode::FAILURE);
            }
            Err(EchoError::Transport(TransportError::Local(e))) => {
                eprintln!("C-ECHO to {peer}: {e}");
                let _ = association.abort();
                return Ok(ExitCode::FAILURE);
            }
            Err(EchoError::Protocol(e)) => {
                eprintln!("C-ECHO to {peer}: invalid response: {e:#}");
                let _ = association.abort();
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if let Err(e) = association.release() {
        tracing::warn!("releasing the association failed: {e}");
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

enum EchoError {
    Transport(TransportError),
    Protocol(anyhow::Error),
}

fn echo_once(
    association: &mut dicom_ul::ClientAssociation<std::net::TcpStream>,
    pc_id: u8,
    message_id: u16,
    timeout_secs: u64,
) -> Result<Response, EchoError> {
    let command = encode_echo_rq(message_id);
    dimse::send_command(association, pc_id, &command, timeout_secs)
        .map_err(EchoError::Transport)?;
    let (_, bytes) =
        dimse::receive_command(association, timeout_secs).map_err(EchoError::Transport)?;
    let response = Response::decode(&bytes)
        .and_then(|r| r.check(field::C_ECHO_RSP, message_id).map(|()| r))
        .map_err(|e| EchoError::Protocol(e.into()))?;
    Ok(response)
}
