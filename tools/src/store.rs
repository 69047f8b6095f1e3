/*!
`renkei store`: send DICOM files to a DICOM node (C-STORE SCU).

Files are sent exactly as stored: the bytes after the file meta group go on
the wire unchanged, in the file's own transfer syntax, read in chunks no
larger than one PDU. Nothing is decoded or re-encoded, so a compressed
image arrives compressed and a file with odd encoding arrives as it was.

Flow: collect paths (directories walked, sorted), read each file's meta
group ([`scan_file`]), group the distinct (SOP class, transfer syntax)
pairs into sets of at most 128 presentation contexts ([`plan_groups`]),
then `-j N` worker threads each open an association per group and take
files from that group's shared queue until it is empty.
*/

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read, Seek, SeekFrom};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dicom_core::dictionary::{UidDictionary, UidDictionaryEntry};
use dicom_dictionary_std::uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN;
use dicom_dictionary_std::StandardSopClassDictionary;
use dicom_object::FileMetaTable;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use dicom_ul::ClientAssociation;
use indicatif::{ProgressBar, ProgressStyle};

use crate::connection::{ConnectionArgs, EstablishError, MAX_PRESENTATION_CONTEXTS};
use renkei_dimse::command::{encode_store_rq, field, status_meaning, Response};

use crate::dimse::{self, TransportError};

/// Send DICOM files to a DICOM node (C-STORE).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Send DICOM files to a DICOM node such as a PACS (C-STORE).\n\n\
Give files and/or directories after HOST PORT; directories are searched recursively \
(hidden files are skipped). Each file is sent exactly as it is stored, in its own transfer \
syntax: compressed images stay compressed, nothing is converted.\n\n\
Files that are not DICOM, or that the node refuses, are listed as FAILED with the reason; \
the others are still sent. Status warnings from the node (0xB000, 0xB006, 0xB007) count as \
stored and are listed as WARNING. At the end a summary line gives the counts and the \
throughput.\n\n\
Exit code 0 only if every file was stored.",
    after_help = "Examples:\n  renkei store pacs.example.org 104 -aec PACS /media/cdrom\n  \
renkei store 127.0.0.1 11112 -j 4 ./export/*.dcm"
)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    /// DICOM files to send, or directories to search for them.
    #[arg(value_name = "FILE|DIR", required = true)]
    paths: Vec<PathBuf>,

    /// Number of associations used in parallel. More can be faster against
    /// a PACS that stores slowly; 2 to 4 is usually plenty.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

/// A DICOM file ready to be sent: what its meta group says, and where its
/// data set starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    pub(crate) path: PathBuf,
    pub(crate) sop_class_uid: String,
    pub(crate) sop_instance_uid: String,
    pub(crate) transfer_syntax_uid: String,
    /// Byte offset of the data set: preamble (128, if present) + `DICM` (4)
    /// + (0002,0000) element (12) + its value.
    pub(crate) data_offset: u64,
}

pub(crate) fn run(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (paths, missing) = collect_files(&args.paths);

    let total = paths.len() + missing.len();
    let progress = if io::stderr().is_terminal() {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} files, {per_sec}, ETA {eta}",
            )?
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = Reporter::new(progress);

    for (path, reason) in missing {
        report.failed(&path, &reason);
    }
    let mut instances = Vec::with_capacity(paths.len());
    for path in paths {
        match scan_file(&path) {
            Ok(instance) => instances.push(instance),
            Err(reason) => report.failed(&path, &reason),
        }
    }
    tracing::debug!(files = instances.len(), "scanned");

    let groups = plan_groups(&instances);
    let workers = usize::from(args.jobs).min(instances.len()).max(1);
    let shared = Shared {
        connection: &args.connection,
        instances: &instances,
        groups: groups
            .into_iter()
            .map(|g| GroupState {
                queue: Mutex::new(Queue {
                    pending: g.files.iter().copied().collect(),
                    active: 0,
                }),
                contexts: g.contexts,
                context_of: g.context_of,
            })
            .collect(),
        report: &report,
    };
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let shared = &shared;
            scope.spawn(move || run_worker(shared, worker));
        }
    });

    report.progress.finish_and_clear();
    let tally = report.tally();
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    println!(
        "stored {}, warnings {}, failed {} (of {total} files) in {secs:.1} s, {:.1} files/s, {:.1} MB/s",
        tally.stored,
        tally.warnings,
        tally.failed,
        tally.stored as f64 / secs,
        tally.bytes as f64 / 1e6 / secs,
    );
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------
// Finding and reading files

/// Expand the command line paths: files as given, directories walked
/// recursively in name order, skipping hidden entries and not following
/// symlinked directories. Returns the files and the paths that could not
/// be read, with the reason.
pub(crate) fn collect_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk_dir(path, &mut files, &mut errors),
            Ok(_) => files.push(path.clone()),
            Err(e) => errors.push((path.clone(), e.to_string())),
        }
    }
    (files, errors)
}

fn walk_dir(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<(PathBuf, String)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push((dir.to_path_buf(), format!("cannot read directory: {e}")));
            return;
        }
    };
    let mut entries: Vec<_> = entries
        .filter_map(|entry| match entry {
            Ok(entry) => Some(entry),
            Err(e) => {
                errors.push((dir.to_path_buf(), format!("cannot read directory: {e}")));
                None
            }
        })
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            errors.push((path, "cannot read file type".into()));
            continue;
        };
        if file_type.is_dir() {
            walk_dir(&path, files, errors);
        } else if file_type.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => files.push(path),
                Ok(_) => tracing::debug!(path = %path.display(), "not following symlink"),
                Err(e) => errors.push((path, format!("broken symlink: {e}"))),
            }
        } else if file_type.is_file() {
            files.push(path);
        }
    }
}

/// Read the file meta group of `path` and locate its data set.
pub(crate) fn scan_file(path: &Path) -> Result<Instance, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let (meta, data_offset) = read_meta(BufReader::new(file))?;
    let non_empty = |value: &str, what: &str| {
        if value.is_empty() {
            Err(format!("file meta group has no {what}"))
        } else {
            Ok(value.to_string())
        }
    };
    Ok(Instance {
        path: path.to_path_buf(),
        sop_class_uid: non_empty(
            meta.media_storage_sop_class_uid(),
            "Media Storage SOP Class UID (0002,0002)",
        )?,
        sop_instance_uid: non_empty(
            meta.media_storage_sop_instance_uid(),
            "Media Storage SOP Instance UID (0002,0003)",
        )?,
        transfer_syntax_uid: non_empty(meta.transfer_syntax(), "Transfer Syntax UID (0002,0010)")?,
        data_offset,
    })
}

/// Parse the preamble (optional), `DICM` and the file meta group, and
/// return the meta and the offset of the first data set byte. The offset is
/// both computed from (0002,0000) and checked against what the parser
/// consumed; after it, the next element must not be in group 0002.
pub(crate) fn read_meta<R: Read + Seek>(mut reader: R) -> Result<(FileMetaTable, u64), String> {
    // preamble (128) + DICM (4) + (0002,0000) element (12)
    let mut head = [0u8; 144];
    let n = read_up_to(&mut reader, &mut head).map_err(|e| format!("cannot read: {e}"))?;
    let start: usize = if n >= 132 && &head[128..132] == b"DICM" {
        128
    } else if n >= 4 && &head[..4] == b"DICM" {
        0
    } else {
        return Err("not a DICOM file (no \"DICM\" marker after the 128-byte preamble)".into());
    };
    // Read (0002,0000) ourselves: FileMetaTable recomputes
    // `information_group_length` from the elements it keeps, so it is not
    // the value in the file.
    let element = head
        .get(start + 4..start + 16)
        .filter(|_| n >= start + 16)
        .ok_or("file meta group is truncated")?;
    if element[..8] != [0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00] {
        return Err("file meta group does not start with its group length (0002,0000)".into());
    }
    let group_length = u32::from_le_bytes([element[8], element[9], element[10], element[11]]);

    reader
        .seek(SeekFrom::Start(start as u64))
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut counting = CountingReader {
        inner: &mut reader,
        count: 0,
    };
    let meta = FileMetaTable::from_reader(&mut counting)
        .map_err(|e| format!("invalid file meta group: {e}"))?;
    let expected = 16 + u64::from(group_length);
    if counting.count != expected {
        return Err(format!(
            "file meta group length (0002,0000) says {group_length} bytes \
             but the meta elements take {}",
            counting.count.saturating_sub(16)
        ));
    }
    let data_offset = start as u64 + expected;
    let mut group = [0u8; 2];
    if read_up_to(&mut reader, &mut group).map_err(|e| format!("cannot read: {e}"))? == 2
        && u16::from_le_bytes(group) == 0x0002
    {
        return Err("file meta group is longer than its group length (0002,0000) says".to_string());
    }
    Ok((meta, data_offset))
}

/// Like `read_exact`, but a short read at end of file is not an error.
fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

pub(crate) fn sop_class_name(uid: &str) -> String {
    StandardSopClassDictionary
        .by_uid(uid)
        .map(|entry| entry.name().to_string())
        .unwrap_or_else(|| uid.to_string())
}

pub(crate) fn transfer_syntax_name(uid: &str) -> String {
    TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| uid.to_string())
}

// ---------------------------------------------------------------------------
// Planning associations

/// The files sent over associations that offer the same contexts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Group {
    /// (SOP class, transfer syntax), at most 128; context i gets ID 2i+1.
    pub(crate) contexts: Vec<(String, String)>,
    /// Indices into the instance list.
    pub(crate) files: Vec<usize>,
    /// Instance index → index in `contexts`.
    pub(crate) context_of: HashMap<usize, usize>,
}

/// One presentation context per distinct (SOP class, transfer syntax),
/// sorted, cut into groups of at most 128.
pub(crate) fn plan_groups(instances: &[Instance]) -> Vec<Group> {
    let distinct: BTreeSet<(&str, &str)> = instances
        .iter()
        .map(|i| (i.sop_class_uid.as_str(), i.transfer_syntax_uid.as_str()))
        .collect();
    let mut groups: Vec<Group> = Vec::new();
    let mut place: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
    for (n, key) in distinct.into_iter().enumerate() {
        let (g, c) = (n / MAX_PRESENTATION_CONTEXTS, n % MAX_PRESENTATION_CONTEXTS);
        if g == groups.len() {
            groups.push(Group {
                contexts: Vec::new(),
                files: Vec::new(),
                context_of: HashMap::new(),
            });
        }
        groups[g]
            .contexts
            .push((key.0.to_string(), key.1.to_string()));
        place.insert(key, (g, c));
    }
    for (index, instance) in instances.iter().enumerate() {
        let key = (
            instance.sop_class_uid.as_str(),
            instance.transfer_syntax_uid.as_str(),
        );
        if let Some(&(g, c)) = place.get(&key) {
            groups[g].files.push(index);
            groups[g].context_of.insert(index, c);
        }
    }
    groups
}

// ---------------------------------------------------------------------------
// Sending

struct Shared<'a> {
    connection: &'a ConnectionArgs,
    instances: &'a [Instance],
    groups: Vec<GroupState>,
    report: &'a Reporter,
}

struct GroupState {
    contexts: Vec<(String, String)>,
    context_of: HashMap<usize, usize>,
    queue: Mutex<Queue>,
}

struct Queue {
    pending: VecDeque<usize>,
    /// Workers holding, or trying to open, an association for this group.
    /// When the last of them loses its association, nobody is left to send
    /// what is pending, so those files are failed with that reason.
    active: usize,
}

/// An open association and which of our contexts it accepted.
struct Live {
    association: ClientAssociation<TcpStream>,
    /// Context index → accepted presentation context ID.
    accepted: Vec<Option<u8>>,
    next_message_id: u16,
}

enum Outcome {
    /// The peer answered with this response; the data set had this size.
    Answered(Response, u64),
    /// Not sent; the association is still fine.
    NotSent(String),
    /// Our file could not be read half-way; the association must be aborted.
    LocalAbort(String),
    /// The association is gone (abort, connection loss, timeout, protocol).
    PeerLost(String),
}

fn run_worker(shared: &Shared<'_>, worker: usize) {
    let n = shared.groups.len();
    for k in 0..n {
        run_group(shared, &shared.groups[(worker + k) % n]);
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // a panicking worker must not stop the others from reporting
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run_group(shared: &Shared<'_>, group: &GroupState) {
    let conn = shared.connection;
    let mut live: Option<Live> = None;
    loop {
        let file = {
            let mut queue = lock(&group.queue);
            match queue.pending.pop_front() {
                Some(file) => {
                    if live.is_none() {
                        queue.active += 1;
                    }
                    file
                }
                None => {
                    if live.is_some() {
                        queue.active -= 1;
                    }
                    break;
                }
            }
        };

        let current = match live.as_mut() {
            Some(current) => current,
            None => {
                match open(shared, group) {
                    Ok(opened) => live.insert(opened),
                    Err(EstablishError::NoContextAccepted) => {
                        // deterministic: every file of this group would get the same
                        let mut queue = lock(&group.queue);
                        queue.active -= 1;
                        let mut files: Vec<usize> = queue.pending.drain(..).collect();
                        drop(queue);
                        files.insert(0, file);
                        for f in files {
                            let reason = context_rejected(&group.contexts[group.context_of[&f]]);
                            shared.report.failed(&shared.instances[f].path, &reason);
                        }
                        return;
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        let mut queue = lock(&group.queue);
                        queue.active -= 1;
                        if queue.active > 0 {
                            // others are sending this group: leave the file to them
                            tracing::warn!("could not open another association ({reason}); continuing with fewer");
                            queue.pending.push_front(file);
                            return;
                        }
                        let rest: Vec<usize> = queue.pending.drain(..).collect();
                        drop(queue);
                        shared.report.failed(&shared.instances[file].path, &reason);
                        for f in rest {
                            shared.report.failed(&shared.instances[f].path, &reason);
                        }
                        return;
                    }
                }
            }
        };

        let instance = &shared.instances[file];
        let context = group.context_of[&file];
        match send_one(conn, current, instance, context, &group.contexts[context]) {
            Outcome::Answered(response, bytes) => {
                shared.report.answered(instance, &response, bytes)
            }
            Outcome::NotSent(reason) => shared.report.failed(&instance.path, &reason),
            Outcome::LocalAbort(reason) => {
                shared.report.failed(&instance.path, &reason);
                if let Some(current) = live.take() {
                    let _ = current.association.abort();
                }
                lock(&group.queue).active -= 1;
            }
            Outcome::PeerLost(reason) => {
                shared.report.failed(&instance.path, &reason);
                if let Some(current) = live.take() {
                    let _ = current.association.abort();
                }
                let mut queue = lock(&group.queue);
                queue.active -= 1;
                if queue.active == 0 {
                    let rest: Vec<usize> = queue.pending.drain(..).collect();
                    drop(queue);
                    let reason = format!("not sent: association lost ({reason})");
                    for f in rest {
                        shared.report.failed(&shared.instances[f].path, &reason);
                    }
                }
                return;
            }
        }
    }
    if let Some(current) = live {
        if let Err(e) = current.association.release() {
            tracing::warn!("releasing the association failed: {e}");
        }
    }
}

fn open(shared: &Shared<'_>, group: &GroupState) -> Result<Live, EstablishError> {
    let proposed: Vec<(String, Vec<String>)> = group
        .contexts
        .iter()
        .map(|(sop, ts)| (sop.clone(), vec![ts.clone()]))
        .collect();
    let association = shared.connection.establish(&proposed)?;
    let accepted = group
        .contexts
        .iter()
        .enumerate()
        .map(|(i, (_, ts))| {
            let id = (2 * i + 1) as u8;
            association
                .presentation_contexts()
                .iter()
                .find(|pc| pc.id == id)
                .filter(|pc| pc.transfer_syntax.trim_end_matches(['\0', ' ']) == ts)
                .map(|pc| pc.id)
        })
        .collect();
    Ok(Live {
        association,
        accepted,
        next_message_id: 1,
    })
}

fn context_rejected((sop_class, ts): &(String, String)) -> String {
    format!(
        "presentation context rejected: {} in {}",
        sop_class_name(sop_class),
        transfer_syntax_name(ts)
    )
}

fn send_one(
    connection: &ConnectionArgs,
    live: &mut Live,
    instance: &Instance,
    context: usize,
    key: &(String, String),
) -> Outcome {
    let timeout = connection.timeout;
    let Some(pc_id) = live.accepted[context] else {
        return Outcome::NotSent(context_rejected(key));
    };
    // open and position before anything goes on the wire
    let mut file = match File::open(&instance.path) {
        Ok(file) => file,
        Err(e) => return Outcome::NotSent(format!("cannot open: {e}")),
    };
    let len = match file.metadata() {
        Ok(meta) => meta.len(),
        Err(e) => return Outcome::NotSent(format!("cannot read: {e}")),
    };
    let Some(data_len) = len.checked_sub(instance.data_offset) else {
        return Outcome::NotSent("file is shorter than its meta group".into());
    };
    if let Err(e) = file.seek(SeekFrom::Start(instance.data_offset)) {
        return Outcome::NotSent(format!("cannot read: {e}"));
    }

    let message_id = live.next_message_id;
    live.next_message_id = live.next_message_id.checked_add(1).unwrap_or(1);
    let command = encode_store_rq(
        message_id,
        &instance.sop_class_uid,
        &instance.sop_instance_uid,
    );
    let association = &mut live.association;
    if let Err(e) = dimse::send_command(association, pc_id, &command, timeout) {
        return transport_outcome(e);
    }
    // PDV fragments must have even lengths; DCMTK aborts otherwise.
    let pad = if data_len % 2 == 1 {
        if instance.transfer_syntax_uid != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN {
            return Outcome::NotSent(format!(
                "data set has an odd length ({data_len} bytes): the file is damaged"
            ));
        }
        // PS3.5 A.5: an odd deflated stream gets a trailing NUL byte
        1
    } else {
        0
    };
    let mut reader = file.take(data_len).chain(io::repeat(0).take(pad));
    if let Err(e) = dimse::send_data_set(
        association,
        pc_id,
        &mut reader,
        data_len + pad,
        timeout,
        |_| {},
    ) {
        return transport_outcome(e);
    }
    let bytes = match dimse::receive_command(association, timeout) {
        Ok((_, bytes)) => bytes,
        Err(e) => return transport_outcome(e),
    };
    let response = match Response::decode(&bytes)
        .and_then(|r| r.check(field::C_STORE_RSP, message_id).map(|()| r))
    {
        Ok(response) => response,
        Err(e) => return Outcome::PeerLost(format!("invalid C-STORE response: {e:#}")),
    };
    Outcome::Answered(response, data_len)
}

fn transport_outcome(error: TransportError) -> Outcome {
    match error {
        TransportError::Peer(reason) => Outcome::PeerLost(reason),
        TransportError::Local(e) => {
            Outcome::LocalAbort(format!("cannot read the file while sending: {e}"))
        }
    }
}

// ---------------------------------------------------------------------------
// Reporting

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Stored, including those with a warning status.
    stored: u64,
    warnings: u64,
    failed: u64,
    /// Data set bytes of the stored files.
    bytes: u64,
}

struct Reporter {
    progress: ProgressBar,
    tally: Mutex<Tally>,
}

impl Reporter {
    fn new(progress: ProgressBar) -> Self {
        Reporter {
            progress,
            tally: Mutex::new(Tally::default()),
        }
    }

    fn tally(&self) -> Tally {
        *self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.tally.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn failed(&self, path: &Path, reason: &str) {
        self.update(|t| t.failed += 1);
        self.progress
            .suspend(|| eprintln!("FAILED {}: {reason}", path.display()));
        self.progress.inc(1);
    }

    /// `bytes`: data set size, counted for the throughput if stored.
    fn answered(&self, instance: &Instance, response: &Response, bytes: u64) {
        let status = response.status;
        let detail = || {
            format!(
                "status 0x{status:04X} ({})",
                response
                    .error_comment
                    .as_deref()
                    .unwrap_or_else(|| status_meaning(status))
            )
        };
        match status {
            0x0000 => {
                self.update(|t| {
                    t.stored += 1;
                    t.bytes += bytes;
                });
                tracing::debug!(path = %instance.path.display(), "stored");
            }
            0xB000 | 0xB006 | 0xB007 => {
                self.update(|t| {
                    t.stored += 1;
                    t.warnings += 1;
                    t.bytes += bytes;
                });
                self.progress
                    .suspend(|| eprintln!("WARNING {}: {}", instance.path.display(), detail()));
            }
            _ => {
                self.update(|t| t.failed += 1);
                self.progress
                    .suspend(|| eprintln!("FAILED {}: {}", instance.path.display(), detail()));
            }
        }
        self.progress.inc(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    // cargo runs tests in the package directory
    const CT_SMALL: &str = "../testdata/corpus/valid/CT_small.dcm";

    #[test]
    fn data_offset_of_a_real_file() {
        let bytes = std::fs::read(CT_SMALL).unwrap_or_else(|e| panic!("{CT_SMALL}: {e}"));
        let (meta, offset) = read_meta(Cursor::new(&bytes)).unwrap();
        // independent computation: the value of (0002,0000) at 132 + 8
        assert_eq!(&bytes[128..132], b"DICM");
        assert_eq!(&bytes[132..136], &[2, 0, 0, 0]);
        let group_length = u32::from_le_bytes(bytes[140..144].try_into().unwrap());
        assert_eq!(offset, 132 + 12 + u64::from(group_length));
        // the data set starts right after the last group 0002 element
        assert_ne!(&bytes[offset as usize..offset as usize + 2], &[2, 0]);
        assert_eq!(meta.transfer_syntax(), "1.2.840.10008.1.2.1");

        let instance = scan_file(Path::new(CT_SMALL)).unwrap();
        assert_eq!(instance.data_offset, offset);
        assert_eq!(instance.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(sop_class_name(&instance.sop_class_uid), "CT Image Storage");
        assert_eq!(
            transfer_syntax_name(&instance.transfer_syntax_uid),
            "Explicit VR Little Endian"
        );

        // the same file without its preamble
        let (_, offset_without) = read_meta(Cursor::new(&bytes[128..])).unwrap();
        assert_eq!(offset_without, offset - 128);
    }

    #[test]
    fn rejects_non_dicom_and_inconsistent_meta() {
        let err = read_meta(Cursor::new(b"hello world".to_vec())).unwrap_err();
        assert!(err.contains("not a DICOM file"), "{err}");

        let mut bytes = match std::fs::read(CT_SMALL) {
            Ok(bytes) => bytes,
            Err(_) => return,
        };
        // shrink the group length by 2: the parser overshoots it
        let group_length = u32::from_le_bytes(bytes[140..144].try_into().unwrap());
        bytes[140..144].copy_from_slice(&(group_length - 2).to_le_bytes());
        let err = read_meta(Cursor::new(&bytes)).unwrap_err();
        assert!(err.contains("group length"), "{err}");

        // truncated inside the meta group
        let err = read_meta(Cursor::new(&bytes[..150])).unwrap_err();
        assert!(err.contains("invalid file meta group"), "{err}");
    }

    fn instance(n: usize, sop: &str, ts: &str) -> Instance {
        Instance {
            path: PathBuf::from(format!("{n}.dcm")),
            sop_class_uid: sop.into(),
            sop_instance_uid: format!("1.2.{n}"),
            transfer_syntax_uid: ts.into(),
            data_offset: 0,
        }
    }

    #[test]
    fn one_context_per_distinct_pair() {
        let instances = vec![
            instance(0, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"),
            instance(1, "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2.4.70"),
            instance(2, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"),
        ];
        let groups = plan_groups(&instances);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].contexts.len(), 2);
        assert_eq!(groups[0].files, vec![0, 1, 2]);
        assert_eq!(groups[0].context_of[&0], groups[0].context_of[&2]);
        assert_ne!(groups[0].context_of[&0], groups[0].context_of[&1]);
    }

    #[test]
    fn more_than_128_contexts_split_into_groups() {
        let instances: Vec<_> = (0..300)
            .map(|n| instance(n, &format!("1.2.3.{}", n % 200), "1.2.840.10008.1.2.1"))
            .collect();
        let groups = plan_groups(&instances);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].contexts.len(), 128);
        assert_eq!(groups[1].contexts.len(), 72);
        assert_eq!(groups[0].files.len() + groups[1].files.len(), 300);
        for g in &groups {
            for f in &g.files {
                let (sop, ts) = &g.contexts[g.context_of[f]];
                assert_eq!(sop, &instances[*f].sop_class_uid);
                assert_eq!(ts, &instances[*f].transfer_syntax_uid);
            }
        }
    }

    #[test]
    fn walks_directories_sorted_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/sub")).unwrap();
        std::fs::create_dir_all(root.join(".hidden")).unwrap();
        for p in ["b/sub/2", "b/1", "a", ".dot", ".hidden/x"] {
            std::fs::write(root.join(p), b"x").unwrap();
        }
        let (files, errors) = collect_files(&[root.to_path_buf(), root.join("missing")]);
        let rel: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(rel, ["a", "b/1", "b/sub/2"]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, root.join("missing"));
    }
}
