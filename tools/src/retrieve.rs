/*!
`renkei get` (C-GET, like DCMTK's `getscu`) and `renkei move` (C-MOVE, like
`movescu`): retrieve what an identifier matches, either over the same
association (C-GET: the peer sends C-STORE sub-operations back to us) or to a
third AE (C-MOVE).
*/

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use dicom_dictionary_std::uids;
use dicom_object::FileMetaTableBuilder;
use dicom_ul::ClientAssociation;
use renkei_dimse::command::{
    encode_get_rq, encode_move_rq, encode_response, field, status, Command, Response, SubOperations,
};

use crate::connection::{ConnectionArgs, MAX_PRESENTATION_CONTEXTS};
use crate::dimse::{self, MessageReader};
use crate::find::FindError;
use crate::query::{self, Operation, QueryArgs};

/// Storage SOP classes we accept from C-GET sub-operations: the common ones
/// (every storage class would need more than 128 presentation contexts).
pub(crate) const GET_STORAGE_CLASSES: &[&str] = &[
    uids::CT_IMAGE_STORAGE,
    uids::ENHANCED_CT_IMAGE_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::ENHANCED_MR_IMAGE_STORAGE,
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
    uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    uids::BREAST_TOMOSYNTHESIS_IMAGE_STORAGE,
    uids::ULTRASOUND_IMAGE_STORAGE,
    uids::ULTRASOUND_MULTI_FRAME_IMAGE_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_BYTE_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::MULTI_FRAME_TRUE_COLOR_SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::NUCLEAR_MEDICINE_IMAGE_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
    uids::ENHANCED_PET_IMAGE_STORAGE,
    uids::X_RAY_ANGIOGRAPHIC_IMAGE_STORAGE,
    uids::ENHANCED_XA_IMAGE_STORAGE,
    uids::X_RAY_RADIOFLUOROSCOPIC_IMAGE_STORAGE,
    uids::RT_IMAGE_STORAGE,
    uids::RT_DOSE_STORAGE,
    uids::RT_STRUCTURE_SET_STORAGE,
    uids::RT_PLAN_STORAGE,
    uids::RT_ION_PLAN_STORAGE,
    uids::RT_BEAMS_TREATMENT_RECORD_STORAGE,
    uids::BASIC_TEXT_SR_STORAGE,
    uids::ENHANCED_SR_STORAGE,
    uids::COMPREHENSIVE_SR_STORAGE,
    uids::X_RAY_RADIATION_DOSE_SR_STORAGE,
    uids::KEY_OBJECT_SELECTION_DOCUMENT_STORAGE,
    uids::SEGMENTATION_STORAGE,
    uids::SPATIAL_REGISTRATION_STORAGE,
    uids::GRAYSCALE_SOFTCOPY_PRESENTATION_STATE_STORAGE,
    uids::ENCAPSULATED_PDF_STORAGE,
    uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE,
];

/// Retrieve matching instances over the same association (C-GET).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Retrieve instances from a DICOM node over the same association (C-GET), like \
DCMTK's getscu.\n\n\
The identifier is built from -k keys as for `renkei find` (e.g. -k StudyInstanceUID=1.2.3, \
-L STUDY). The node sends each instance back as a C-STORE sub-operation; each is written \
to DIR/<SOPInstanceUID>.dcm as received (Explicit or Implicit VR Little Endian). Only \
common storage classes are offered (CT, MR, CR, DX, MG, US, SC, NM, PT, XA, RF, RT, SR, \
SEG, PDF, ...).\n\n\
Exit code 0 when everything was retrieved, 1 when the node reported a failure or any \
sub-operation failed.",
    after_help = "Example:\n  renkei get pacs 104 -aec PACS -k StudyInstanceUID=1.2.3.4 --od ./study"
)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(flatten)]
    query: QueryArgs,

    /// Directory to write the received instances to (created if missing).
    #[arg(long = "od", visible_alias = "output-directory", value_name = "DIR")]
    output_dir: PathBuf,
}

/// Ask a DICOM node to send matching instances to an AE (C-MOVE).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Ask a DICOM node to send matching instances to another AE (C-MOVE), like \
DCMTK's movescu.\n\n\
The identifier is built from -k keys as for `renkei find`. The node must know the \
destination AE title given with -aem (its host and port are configured on the node).\n\n\
Exit code 0 when every sub-operation succeeded, 1 otherwise.",
    after_help = "Example:\n  renkei move pacs 104 -aec PACS -aem WORKSTATION -k StudyInstanceUID=1.2.3.4"
)]
pub(crate) struct MoveArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(flatten)]
    query: QueryArgs,

    /// Move destination: the AE title the node sends the instances to.
    /// Also accepted as `-aem`.
    #[arg(long = "aem", value_name = "AE")]
    destination: String,
}

pub(crate) fn run_get(args: &GetArgs) -> anyhow::Result<ExitCode> {
    fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("cannot create {}", args.output_dir.display()))?;
    let model = args.query.model(Operation::Get);
    let ts = vec![
        uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
        uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
    ];
    let mut contexts = vec![(model.to_string(), ts.clone())];
    contexts.extend(
        GET_STORAGE_CLASSES
            .iter()
            .map(|uid| (uid.to_string(), ts.clone())),
    );
    debug_assert!(contexts.len() <= MAX_PRESENTATION_CONTEXTS);
    let roles: Vec<String> = GET_STORAGE_CLASSES.iter().map(|s| s.to_string()).collect();
    retrieve(
        &args.connection,
        &args.query,
        Retrieve::Get {
            dir: &args.output_dir,
        },
        &contexts,
        &roles,
    )
}

pub(crate) fn run_move(args: &MoveArgs) -> anyhow::Result<ExitCode> {
    let model = args.query.model(Operation::Move);
    let contexts = [(
        model.to_string(),
        vec![
            uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
            uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
        ],
    )];
    retrieve(
        &args.connection,
        &args.query,
        Retrieve::Move {
            destination: &args.destination,
        },
        &contexts,
        &[],
    )
}

enum Retrieve<'a> {
    Get { dir: &'a Path },
    Move { destination: &'a str },
}

/// What came back locally from C-GET sub-operations.
#[derive(Default)]
struct Received {
    stored: u64,
    failed: u64,
}

fn retrieve(
    conn: &ConnectionArgs,
    query_args: &QueryArgs,
    kind: Retrieve<'_>,
    contexts: &[(String, Vec<String>)],
    roles: &[String],
) -> anyhow::Result<ExitCode> {
    let (name, op, rsp_field) = match kind {
        Retrieve::Get { .. } => ("C-GET", Operation::Get, field::C_GET_RSP),
        Retrieve::Move { .. } => ("C-MOVE", Operation::Move, field::C_MOVE_RSP),
    };
    let peer = conn.peer_label();
    let identifier = query_args.identifier()?;
    let model = query_args.model(op);
    let Some(mut association) = conn.establish_for(name, model, contexts, roles) else {
        return Ok(ExitCode::FAILURE);
    };
    let Some((pc_id, ts)) = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.abstract_syntax == model)
        .map(|pc| (pc.id, pc.transfer_syntax.clone()))
    else {
        eprintln!("{name} to {peer}: the peer does not support {model} ({name})");
        let _ = association.abort();
        return Ok(ExitCode::FAILURE);
    };
    let data = query::encode_identifier(&identifier, &ts)?;
    let message_id = 1;
    let timeout = conn.timeout;
    let mut reader = MessageReader::default();
    let mut received = Received::default();
    let source_ae = conn.called_ae.clone();
    let outcome = (|| -> Result<(Response, SubOperations), FindError> {
        let command = match kind {
            Retrieve::Get { .. } => encode_get_rq(message_id, model),
            Retrieve::Move { destination } => encode_move_rq(message_id, model, destination),
        };
        dimse::send_command(&mut association, pc_id, &command, timeout)?;
        dimse::send_data_set_bytes(&mut association, pc_id, &data, timeout)?;
        let mut last_ops = SubOperations::default();
        loop {
            let (rx_pc, bytes) = reader.command(&mut association, timeout)?;
            let cmd = Command::decode(&bytes).map_err(|e| FindError::Protocol(e.into()))?;
            if cmd.field == field::C_STORE_RQ {
                let Retrieve::Get { dir } = kind else {
                    return Err(FindError::Protocol(anyhow::anyhow!(
                        "peer sent a C-STORE request on a C-MOVE association"
                    )));
                };
                receive_store(
                    &mut association,
                    &mut reader,
                    &cmd,
                    rx_pc,
                    dir,
                    &source_ae,
                    timeout,
                    &mut received,
                )?;
                continue;
            }
            let response = Response::decode(&bytes)
                .and_then(|r| r.check(rsp_field, message_id).map(|()| r))
                .map_err(|e| FindError::Protocol(e.into()))?;
            if cmd.has_dataset {
                // Failed SOP Instance UID List, or an identifier: not needed
                let _ = reader.data_set_bytes(&mut association, timeout)?;
            }
            let ops = SubOperations::decode(&bytes)
                .map_err(|e| FindError::Protocol(e.into()))?
                .unwrap_or(last_ops);
            if matches!(response.status, 0xFF00 | 0xFF01) {
                if !query::print_line(&format!(
                    "pending: {} remaining, {} completed, {} failed, {} warning",
                    ops.remaining, ops.completed, ops.failed, ops.warning
                )) {
                    return Err(FindError::StdoutClosed);
                }
                last_ops = ops;
                continue;
            }
            return Ok((response, ops));
        }
    })();
    match outcome {
        Ok((response, ops)) => {
            if let Err(e) = association.release() {
                tracing::warn!("releasing the association failed: {e}");
            }
            let meaning = query::qr_status_meaning(response.status);
            let mut summary = format!(
                "{} completed, {} failed, {} warning; final status 0x{:04X} ({meaning})",
                ops.completed, ops.failed, ops.warning, response.status
            );
            if let Retrieve::Get { dir } = kind {
                summary.push_str(&format!(
                    "; {} file(s) written to {}",
                    received.stored,
                    dir.display()
                ));
            }
            let ok = matches!(
                response.status,
                status::SUCCESS | status::SUBOPERATIONS_FAILED
            ) && ops.failed == 0
                && received.failed == 0;
            if ok {
                query::print_line(&summary);
            } else {
                eprintln!("{name} to {peer}: {summary}");
                if let Some(comment) = &response.error_comment {
                    eprintln!("{name} to {peer}: error comment: {comment}");
                }
            }
            Ok(if ok {
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
            eprintln!("{name} to {peer}: {e}");
            let _ = association.abort();
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Receive one C-STORE sub-operation into `dir` and answer it.
#[allow(clippy::too_many_arguments)]
fn receive_store(
    association: &mut ClientAssociation<TcpStream>,
    reader: &mut MessageReader,
    cmd: &Command,
    pc_id: u8,
    dir: &Path,
    source_ae: &str,
    timeout: u64,
    received: &mut Received,
) -> Result<(), FindError> {
    let ts = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.id == pc_id)
        .map(|pc| pc.transfer_syntax.clone());
    let path = dir.join(file_name(&cmd.sop_instance_uid));
    let partial = path.with_extension("dcm.part");
    let mut result: Result<(), String> = Ok(());
    if cmd.has_dataset {
        let mut file = match &ts {
            None => Err(format!("unknown presentation context {pc_id}")),
            Some(ts) => create_file(&partial, cmd, ts, source_ae).map_err(|e| format!("{e:#}")),
        };
        let written = reader.data_set(association, timeout, |chunk| match &mut file {
            Ok(f) => f.write_all(chunk),
            Err(_) => Ok(()),
        })?;
        result = match (file, written) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(format!("cannot write {}: {e}", partial.display())),
            (Ok(f), Ok(())) => f
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .and_then(|()| fs::rename(&partial, &path))
                .map_err(|e| format!("cannot write {}: {e}", path.display())),
        };
    } else {
        result = result.and(Err("C-STORE request without a data set".into()));
    }
    let (status, comment) = match &result {
        Ok(()) => {
            received.stored += 1;
            tracing::debug!(file = %path.display(), "received");
            (status::SUCCESS, None)
        }
        Err(e) => {
            received.failed += 1;
            let _ = fs::remove_file(&partial);
            eprintln!("C-STORE of {} failed: {e}", cmd.sop_instance_uid);
            (status::OUT_OF_RESOURCES, Some(e.as_str()))
        }
    };
    let rsp = encode_response(cmd, field::C_STORE_RSP, status, comment);
    dimse::send_command(association, pc_id, &rsp, timeout)?;
    Ok(())
}

fn create_file(
    path: &Path,
    cmd: &Command,
    ts: &str,
    source_ae: &str,
) -> anyhow::Result<BufWriter<File>> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(cmd.sop_class_uid.as_str())
        .media_storage_sop_instance_uid(cmd.sop_instance_uid.as_str())
        .transfer_syntax(ts.trim_end_matches(['\0', ' ']))
        .implementation_class_uid(dicom_object::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(dicom_object::IMPLEMENTATION_VERSION_NAME)
        .source_application_entity_title(source_ae)
        .build()
        .context("cannot build the file meta group")?;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    out.write_all(&[0u8; 128])?;
    out.write_all(b"DICM")?;
    meta.write(&mut out)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(out)
}

/// `<SOPInstanceUID>.dcm`, with anything but digits and dots replaced.
fn file_name(uid: &str) -> String {
    let clean: String = uid
        .chars()
        .map(|c| {
            if c.is_ascii_digit() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_matches('.');
    if clean.is_empty() {
        "unnamed.dcm".to_string()
    } else {
        format!("{clean}.dcm")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_contexts_fit() {
        assert!(GET_STORAGE_CLASSES.len() < MAX_PRESENTATION_CONTEXTS);
        let mut sorted = GET_STORAGE_CLASSES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), GET_STORAGE_CLASSES.len());
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name("1.2.3"), "1.2.3.dcm");
        assert_eq!(file_name("../x/1.2"), "___1.2.dcm");
        assert_eq!(file_name(""), "unnamed.dcm");
    }

    #[test]
    fn written_file_reads_back() {
        use dicom_core::{DataElement, PrimitiveValue, VR};
        use dicom_dictionary_std::tags;
        use dicom_object::InMemDicomObject;
        let dir = tempfile::tempdir().unwrap();
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.3.4"),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("DOE^J"),
        ));
        let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
        let mut body = Vec::new();
        obj.write_dataset_with_ts(&mut body, &ts).unwrap();
        let cmd = Command {
            field: field::C_STORE_RQ,
            sop_class_uid: uids::CT_IMAGE_STORAGE.into(),
            sop_instance_uid: "1.2.3.4".into(),
            has_dataset: true,
            ..Default::default()
        };
        let path = dir.path().join(file_name(&cmd.sop_instance_uid));
        let mut out = create_file(&path, &cmd, uids::IMPLICIT_VR_LITTLE_ENDIAN, "PACS").unwrap();
        out.write_all(&body).unwrap();
        out.flush().unwrap();
        drop(out);
        let file = dicom_object::open_file(&path).unwrap();
        assert_eq!(
            file.meta().transfer_syntax(),
            uids::IMPLICIT_VR_LITTLE_ENDIAN
        );
        assert_eq!(file.meta().media_storage_sop_instance_uid(), "1.2.3.4");
        assert_eq!(
            file.element(tags::PATIENT_NAME).unwrap().to_str().unwrap(),
            "DOE^J"
        );
    }
}
