/*!
`renkei import hl7 FILE|DIR...`: send HL7 v2 messages (lab results, prescriptions, patient
updates, problems; an SS-MIX2 storage tree, say) to a Renkei node's `POST /api/hl7` and
report each message's acknowledgment.

Files are sent as they are, in whatever character set their MSH-18 declares (the node
decodes ISO-2022-JP, Shift_JIS and UTF-8); a file may hold several messages (a batch), each
acknowledged on its own. Directories are walked recursively in name order (hidden entries
skipped), and only files that start with `MSH`, `FHS` or `BHS` are sent: an SS-MIX2 tree's
files have no extension, and a README beside test messages is not a message. A file named
on the command line is always sent.

The node, the token and the error conventions are those of `renkei admin` (its HTTP client
is reused): `--url` / `RENKEI_URL`, `--token` / `RENKEI_TOKEN` / `DATA_DIR/admin.token`.
The token's user must belong to the facility in MSH-4, or be the regional administrator.

Output: one line per message, `AA|AE|AR  FILE#N  TYPE CONTROL-ID: text`, then its ERR
findings indented; a summary on standard error. Exit code 0 when every message was accepted
(AA), 2 when any was refused (AE/AR) or a file could not be read or was refused by the node,
1 when the node could not be reached or failed.
*/

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::admin::client::{resolve_token, ApiError, Client};

const LONG_ABOUT: &str = "Import HL7 v2 messages into a Renkei node's shared clinical record \
(POST /api/hl7): ORU^R01 and OUL^R22 lab results, RDE^O11 prescriptions, ADT^A08 patient \
updates, PPR^ZD1 problems, as Japanese hospital systems and the SS-MIX2 standardized storage \
write them (ISO-2022-JP, Shift_JIS or UTF-8, per MSH-18).\n\n\
FILE|DIR: a file (one message or a batch) or a directory, walked recursively; in directories \
only files starting with MSH, FHS or BHS are sent.\n\n\
Each message is answered AA (recorded), AE (content error: nothing of it recorded) or AR \
(rejected: broken MSH, unsupported type, unknown sending facility, not your facility), with \
the segment and field at fault.\n\n\
The token's user must belong to the facility MSH-4 names (or be the regional administrator). \
Token and node as for `renkei admin`: --token, RENKEI_TOKEN, or DATA_DIR/admin.token.\n\n\
Exit code: 0 when every message was accepted, 2 when any was refused (AE/AR) or a file was \
unreadable or refused, 1 when the node could not be reached.";

/// Import data into a Renkei node (HL7 v2 messages).
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    #[command(subcommand)]
    command: ImportCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImportCommand {
    /// Send HL7 v2 messages (files or directories) to the node and report each ACK.
    #[command(
        long_about = LONG_ABOUT,
        after_help = "Examples:\n  renkei import hl7 testdata/hl7\n  \
RENKEI_TOKEN=rk_… renkei import hl7 --url http://pacs.local:8042 /mnt/ssmix2/ss-mix2_standard_storage"
    )]
    Hl7(Hl7Args),
}

#[derive(Debug, clap::Args)]
struct Hl7Args {
    /// Files (one message or a batch each) or directories.
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,

    /// The node's HTTP address.
    #[arg(
        long,
        env = "RENKEI_URL",
        default_value = "http://127.0.0.1:8042",
        value_name = "URL"
    )]
    url: String,

    /// Bearer token (else RENKEI_TOKEN, else DATA_DIR/admin.token).
    #[arg(
        long,
        env = "RENKEI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,

    /// The node's data directory, for its admin.token (when no token is given).
    #[arg(
        long,
        env = "RENKEI_DATA_DIR",
        default_value = "renkei-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,

    /// Print each ACK as a JSON line (the node's answer, with "file" and "index") instead.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ImportCommand::Hl7(a) => hl7(a),
    }
}

/// Whether a file looks like HL7 v2 ER7 (after a UTF-8 BOM and blank space).
fn looks_like_hl7(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 64];
    let n = match std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) {
        Ok(n) => n,
        Err(_) => return true, // let the read below report it
    };
    let head = &head[..n];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let head = &head[start..];
    [b"MSH", b"FHS", b"BHS"]
        .iter()
        .any(|p| head.starts_with(*p))
}

#[derive(Debug, Default)]
struct Tally {
    files: u64,
    skipped: u64,
    messages: u64,
    aa: u64,
    ae: u64,
    ar: u64,
    created: u64,
    /// Messages the node had recorded before (resends): answered, nothing created.
    resends: u64,
    failed_files: u64,
}

fn hl7(args: &Hl7Args) -> anyhow::Result<ExitCode> {
    let (token, source) = resolve_token(args.token.as_deref(), &args.data_dir)?;
    let client = Client::new(&args.url, token, source)?;
    let mut tally = Tally::default();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut any_dir = false;
    for path in &args.paths {
        let (found, errors) = crate::store::collect_files(std::slice::from_ref(path));
        for (p, reason) in errors {
            eprintln!("FAILED {}: {reason}", p.display());
            tally.failed_files += 1;
        }
        if path.is_dir() {
            any_dir = true;
            for f in found {
                if looks_like_hl7(&f) {
                    files.push(f);
                } else {
                    tracing::debug!(path = %f.display(), "not an HL7 v2 file: skipped");
                    tally.skipped += 1;
                }
            }
        } else {
            files.extend(found);
        }
    }
    if files.is_empty() && tally.failed_files == 0 {
        bail!("no HL7 v2 file found (files starting with MSH, FHS or BHS)");
    }
    let progress = if any_dir && files.len() > 1 && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} files, ETA {eta}",
            )?
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    for file in &files {
        let result = send_file(&client, file, args.json, &progress, &mut tally);
        progress.inc(1);
        if let Err(e) = result {
            progress.finish_and_clear();
            return match e.downcast_ref::<ApiError>() {
                Some(api) => {
                    eprintln!("error: {api}");
                    if api.status == 401 {
                        eprintln!(
                            "(the token used came from {}; it may be wrong, expired or revoked)",
                            client.token_source()
                        );
                    }
                    Ok(ExitCode::from(if api.status < 500 { 2 } else { 1 }))
                }
                None => Err(e),
            };
        }
    }
    progress.finish_and_clear();
    eprintln!(
        "{} message(s) in {} file(s): {} accepted (AA), {} with errors (AE), {} rejected (AR); {} resource(s) created{}{}{}",
        tally.messages,
        tally.files,
        tally.aa,
        tally.ae,
        tally.ar,
        tally.created,
        if tally.resends > 0 {
            format!(
                "; {} resend(s) of messages recorded before, not recorded again",
                tally.resends
            )
        } else {
            String::new()
        },
        if tally.failed_files > 0 {
            format!("; {} file(s) failed", tally.failed_files)
        } else {
            String::new()
        },
        if tally.skipped > 0 {
            format!("; {} non-HL7 file(s) skipped", tally.skipped)
        } else {
            String::new()
        },
    );
    Ok(if tally.ae + tally.ar + tally.failed_files == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Send one file and print its ACKs. An error return stops the run (the node refused the
/// token or failed); a file the node refuses as a request (400, 413, 415) is counted.
fn send_file(
    client: &Client,
    file: &Path,
    json: bool,
    progress: &ProgressBar,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            progress.suspend(|| eprintln!("FAILED {}: {e}", file.display()));
            tally.failed_files += 1;
            return Ok(());
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        progress.suspend(|| eprintln!("FAILED {}: empty file", file.display()));
        tally.failed_files += 1;
        return Ok(());
    }
    tally.files += 1;
    let answer = match client.post_bytes("/api/hl7", "x-application/hl7-v2+er7", &bytes) {
        Ok(a) => a,
        Err(e) => {
            if let Some(api) = e.downcast_ref::<ApiError>() {
                if matches!(api.status, 400 | 413 | 415 | 422) {
                    progress.suspend(|| eprintln!("FAILED {}: {api}", file.display()));
                    tally.failed_files += 1;
                    return Ok(());
                }
            }
            return Err(e);
        }
    };
    let acks = answer.json.as_array().cloned().unwrap_or_default();
    if acks.is_empty() {
        progress.suspend(|| {
            eprintln!(
                "FAILED {}: the node's answer holds no ACK (is it older than HL7 import?)",
                file.display()
            )
        });
        tally.failed_files += 1;
        return Ok(());
    }
    for (i, ack) in acks.iter().enumerate() {
        let code = ack["code"].as_str().unwrap_or("??");
        tally.messages += 1;
        match code {
            "AA" => tally.aa += 1,
            "AE" => tally.ae += 1,
            _ => tally.ar += 1,
        }
        if ack["duplicate_of"].is_string() {
            tally.resends += 1;
        } else {
            tally.created += ack["created"].as_array().map_or(0, |a| a.len() as u64);
        }
        let lines = if json {
            let mut v = ack.clone();
            v["file"] = Value::String(file.display().to_string());
            v["index"] = Value::from(i + 1);
            vec![v.to_string()]
        } else {
            describe(file, i + 1, ack)
        };
        progress.suspend(|| {
            for l in &lines {
                println!("{l}");
            }
        });
    }
    Ok(())
}

/// The lines of one ACK: `CODE  FILE#N  TYPE ID: text`, then each finding indented.
fn describe(file: &Path, n: usize, ack: &Value) -> Vec<String> {
    let s = |k: &str| ack[k].as_str().unwrap_or_default();
    let id = match s("control_id") {
        "" => "(no control ID)",
        c => c,
    };
    let kind = match s("message_type") {
        "" => "?",
        t => t,
    };
    let mut out = vec![format!(
        "{}  {}#{n}  {kind} {id}: {}",
        s("code"),
        file.display(),
        s("text")
    )];
    let issues = ack["issues"].as_array().cloned().unwrap_or_default();
    // the first issue is MSA-3 already: list the others, and an accepted message's warnings
    if issues.len() > 1 || s("code") == "AA" {
        for i in issues.iter().filter(|i| i["text"] != ack["text"]) {
            let l = &i["location"];
            let mut at = l["segment"].as_str().unwrap_or_default().to_string();
            if l["sequence"].as_u64().unwrap_or(0) > 1 {
                at.push_str(&format!("[{}]", l["sequence"]));
            }
            if let Some(f) = l["field"].as_u64().filter(|f| *f > 0) {
                at.push_str(&format!("-{f}"));
            }
            out.push(format!(
                "    {} {at}: {} (HL7 0357 code {})",
                i["severity"].as_str().unwrap_or("E"),
                i["text"].as_str().unwrap_or_default(),
                i["code"]
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sniffs_hl7_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        assert!(looks_like_hl7(&write("a", b"MSH|^~\\&|X")));
        assert!(looks_like_hl7(&write("b", b"\xEF\xBB\xBF\r\nFHS|^~\\&")));
        assert!(!looks_like_hl7(&write("README.md", b"# HL7 test files")));
        assert!(!looks_like_hl7(&write("c", b"")));
    }

    #[test]
    fn describes_acks() {
        let ack = json!({"code": "AE", "control_id": "M3", "message_type": "ORU^R01",
            "text": "PID: PID segment missing",
            "issues": [{"location": {"segment": "PID", "sequence": 0, "field": 0}, "code": 100,
                        "severity": "E", "text": "PID segment missing"},
                       {"location": {"segment": "OBX", "sequence": 2, "field": 5}, "code": 102,
                        "severity": "E", "text": "not a number"}]});
        let lines = describe(Path::new("x.hl7"), 2, &ack);
        assert_eq!(
            lines[0],
            "AE  x.hl7#2  ORU^R01 M3: PID: PID segment missing"
        );
        assert_eq!(lines[2], "    E OBX[2]-5: not a number (HL7 0357 code 102)");
    }
}
