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

    /// Run the query this many times over the one association (like findscu --repeat);
    /// with --timing, a way to measure a node's query latency.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,

    /// Print latency figures (min, p50, p90, p99, max from the request to the final
    /// response) to standard error after the runs.
    #[arg(long)]
    timing: bool,

    /// Do not print the matches (only the summary, and the timing when asked).
    #[arg(long, short = 'q')]
    quiet: bool,
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
    let mut reader = MessageReader::default();
    let mut latencies = Vec::with_capacity(args.repeat as usize);
    let mut outcome = Err(FindError::Protocol(anyhow::anyhow!("no query run")));
    for run in 0..args.repeat {
        let message_id = (run % u16::MAX as u32) as u16 + 1;
        let started = std::time::Instant::now();
        outcome = query_once(
            args,
            &mut association,
            &mut reader,
            (pc_id, &ts),
            &data,
            message_id,
        );
        latencies.push(started.elapsed());
        if !matches!(&outcome, Ok((r, _)) if r.status == 0x0000) {
            break;
        }
    }
    let outcome = outcome.map(|(response, matches)| {
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
        if args.timing {
            eprintln!("{}", timing_summary(&mut latencies));
        }
        response
    });
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

/// One C-FIND over an established association: the final response and the number of
/// matches (printed unless --quiet).
fn query_once(
    args: &FindArgs,
    association: &mut dicom_ul::ClientAssociation<std::net::TcpStream>,
    reader: &mut MessageReader,
    (pc_id, ts): (u8, &str),
    data: &[u8],
    message_id: u16,
) -> Result<(Response, u64), FindError> {
    let timeout = args.connection.timeout;
    let model = args.query.model(Operation::Find);
    dimse::send_command(
        association,
        pc_id,
        &encode_find_rq(message_id, model),
        timeout,
    )?;
    dimse::send_data_set_bytes(association, pc_id, data, timeout)?;
    let mut matches = 0u64;
    loop {
        let (_, bytes) = reader.command(association, timeout)?;
        let response = Response::decode(&bytes)
            .and_then(|r| r.check(field::C_FIND_RSP, message_id).map(|()| r))
            .map_err(|e| FindError::Protocol(e.into()))?;
        let has_dataset = Command::decode(&bytes)
            .map(|c| c.has_dataset)
            .unwrap_or(false);
        let identifier = if has_dataset {
            Some(reader.data_set_bytes(association, timeout)?)
        } else {
            None
        };
        if !matches!(response.status, 0xFF00 | 0xFF01) {
            return Ok((response, matches));
        }
        matches += 1;
        let Some(bytes) = identifier else {
            tracing::warn!("pending C-FIND response without an identifier");
            continue;
        };
        // decoded even when quiet, so that --timing includes what any client must do
        let obj = query::decode_identifier(&bytes, ts).map_err(FindError::Protocol)?;
        if args.quiet {
            continue;
        }
        let fields = query::identifier_fields(&obj);
        let line = if args.json {
            query::format_json(&fields)
        } else {
            query::format_tsv(&fields)
        };
        if !query::print_line(&line) {
            return Err(FindError::StdoutClosed);
        }
    }
}

/// `timing: N queries, min …, p50 …, p90 …, p99 …, max … ms` (nearest-rank percentiles).
fn timing_summary(latencies: &mut [std::time::Duration]) -> String {
    latencies.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| {
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        ms(latencies[rank.clamp(1, latencies.len()) - 1])
    };
    if latencies.is_empty() {
        return "timing: no queries".into();
    }
    format!(
        "timing: {} queries, min {:.3} ms, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        ms(latencies[0]),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        ms(latencies[latencies.len() - 1])
    )
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
