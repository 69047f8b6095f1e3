/*!
`renkei find`: query a DICOM node (C-FIND), like DCMTK's `findscu`.
*/

use std::process::ExitCode;

use dicom_dictionary_std::uids;
use renkei_dimse::command::{encode_find_rq, field, Command, Response};

use crate::connection::ConnectionArgs;
use crate::dimse::{self, MessageReader, TransportError};
use crate::query::{self, Operation, QueryArgs};

/// Query a DICOM node (C-FIND).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Query a DICOM node (C-FIND), like DCMTK's findscu.\n\n\
Keys are given with -k: `-k PatientName=DOE*` matches, `-k StudyInstanceUID` asks for the \
attribute to be returned. Keywords are DICOM keywords; a tag may be written gggg,eeee. The \
level comes from -L or `-k QueryRetrieveLevel=...` (default STUDY). Text is sent as UTF-8 \
(Specific Character Set ISO_IR 192).\n\n\
Each match is printed on one line as tab-separated Keyword=value pairs (or one JSON object \
with --json), then a summary. Exit code 0 when the query succeeded, 1 otherwise.",
    after_help = "Example:\n  renkei find pacs 104 -aec PACS -S -k PatientName='DOE*' -k StudyInstanceUID -k StudyDate"
)]
pub(crate) struct FindArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(flatten)]
    query: QueryArgs,

    /// Print each match as one JSON object per line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &FindArgs) -> anyhow::Result<ExitCode> {
    let conn = &args.connection;
    let peer = conn.peer_label();
    let identifier = args.query.identifier()?;
    let model = args.query.model(Operation::Find);
    let contexts = [(
        model.to_string(),
        vec![
            uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
            uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
        ],
    )];
    let Some(mut association) = conn.establish_for("C-FIND", model, &contexts, &[]) else {
        return Ok(ExitCode::FAILURE);
    };
    let Some((pc_id, ts)) = association
        .presentation_contexts()
        .first()
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
    else {
        eprintln!("C-FIND to {peer}: the peer does not support {model} (C-FIND)");
        return Ok(ExitCode::FAILURE);
    };
    let data = query::encode_identifier(&identifier, &ts)?;
    let message_id = 1;
    let mut reader = MessageReader::default();
    let timeout = conn.timeout;
    let outcome = (|| -> Result<Response, FindError> {
        dimse::send_command(
            &mut association,
            pc_id,
            &encode_find_rq(message_id, model),
            timeout,
        )?;
        dimse::send_data_set_bytes(&mut association, pc_id, &data, timeout)?;
        let mut matches = 0u64;
        loop {
            let (_, bytes) = reader.command(&mut association, timeout)?;
            let response = Response::decode(&bytes)
                .and_then(|r| r.check(field::C_FIND_RSP, message_id).map(|()| r))
                .map_err(|e| FindError::Protocol(e.into()))?;
            let has_dataset = Command::decode(&bytes)
                .map(|c| c.has_dataset)
                .unwrap_or(false);
            let identifier = if has_dataset {
                Some(reader.data_set_bytes(&mut association, timeout)?)
            } else {
                None
            };
            if matches!(response.status, 0xFF00 | 0xFF01) {
                matches += 1;
                let Some(bytes) = identifier else {
                    tracing::warn!("pending C-FIND response without an identifier");
                    continue;
                };
                let obj = query::decode_identifier(&bytes, &ts).map_err(FindError::Protocol)?;
                let fields = query::identifier_fields(&obj);
                let line = if args.json {
                    query::format_json(&fields)
                } else {
                    query::format_tsv(&fields)
                };
                if !query::print_line(&line) {
                    return Err(FindError::StdoutClosed);
                }
                continue;
            }
            let meaning = response
                .error_comment
                .clone()
                .unwrap_or_else(|| query::qr_status_meaning(response.status));
            let summary = format!(
                "{matches} match{}, final status 0x{:04X} ({})",
                if matches == 1 { "" } else { "es" },
                response.status,
                meaning
            );
            if response.status == 0x0000 {
                query::print_line(&summary);
            } else {
                eprintln!("C-FIND to {peer}: {summary}");
            }
            return Ok(response);
        }
    })();
    match outcome {
        Ok(response) => {
            if let Err(e) = association.release() {
                tracing::warn!("releasing the association failed: {e}");
            }
            Ok(if response.status == 0x0000 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(FindError::StdoutClosed) => {
            let _ = association.abort();
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("C-FIND to {peer}: {e}");
            let _ = association.abort();
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(crate) enum FindError {
    Transport(TransportError),
    Protocol(anyhow::Error),
    /// Our standard output was closed: stop quietly.
    StdoutClosed,
}

impl From<TransportError> for FindError {
    fn from(e: TransportError) -> Self {
        FindError::Transport(e)
    }
}

impl std::fmt::Display for FindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FindError::Transport(TransportError::Peer(reason)) => f.write_str(reason),
            FindError::Transport(TransportError::Local(e)) => write!(f, "{e}"),
            FindError::Protocol(e) => write!(f, "invalid response: {e:#}"),
            FindError::StdoutClosed => f.write_str("standard output closed"),
        }
    }
}
