//! `pacs-node`: the Renkei server binary. Parses arguments, loads config, wires the crates.

mod compress;
mod config;
mod mllp;
mod serve;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use config::Remote;

/// Renkei PACS node: receives images from modalities over DICOM (C-STORE), stores them
/// durably in a data directory (blob files + embedded RocksDB index), and answers
/// workstations' queries and retrieves (C-FIND, C-GET, C-MOVE).
#[derive(Debug, Parser)]
#[command(name = "pacs-node", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node: DICOM listener (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE) and HTTP
    /// (/healthz, /metrics, /api/statistics, /api/remotes).
    Serve(ServeArgs),
    /// Verify that every indexed instance has its file with the right content, and list
    /// files no instance references (orphans). Exit code 1 if anything is wrong.
    Check {
        /// Data directory.
        #[arg(long, default_value = "./renkei-data")]
        data_dir: PathBuf,
        /// Remove orphan files and fix counters (needs the node stopped).
        #[arg(long)]
        repair: bool,
    },
    /// The audit trail: `audit verify` checks its hash chain (exit code 1 when a record
    /// was altered, removed or reordered, naming it).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print how many patients, studies, series and instances are stored.
    Stats {
        /// Data directory.
        #[arg(long, default_value = "./renkei-data")]
        data_dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every record of the hash-chained audit trail and its head; works beside a
    /// running node.
    Verify {
        /// Data directory.
        #[arg(long, default_value = "./renkei-data")]
        data_dir: PathBuf,
    },
}

/// Flags of `serve`. Each one overrides the same setting of `--config`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Data directory (blobs and index) [default: ./renkei-data].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// The node's AE title [default: RENKEI].
    #[arg(long)]
    pub(crate) ae_title: Option<String>,
    /// DICOM port [default: 11112].
    #[arg(long)]
    pub(crate) dicom_port: Option<u16>,
    /// HTTP port [default: 8042].
    #[arg(long)]
    pub(crate) http_port: Option<u16>,
    /// Address to listen on [default: 127.0.0.1]. Off loopback, only configured remote AEs
    /// may associate unless --accept-any-ae.
    #[arg(long)]
    pub(crate) bind: Option<IpAddr>,
    /// A remote AE, as AE@HOST:PORT (repeatable).
    #[arg(long = "remote", value_name = "AE@HOST:PORT")]
    pub(crate) remotes: Vec<Remote>,
    /// TOML configuration file (same settings; flags win).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Accept associations from any calling AE title, even when not bound to loopback.
    #[arg(long)]
    pub(crate) accept_any_ae: bool,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pacs-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = serve::Settings::resolve(args)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let result = rt.block_on(serve::serve(settings));
            // Stores still on the blocking pool were not acknowledged; do not wait long for
            // them (their spools are cleaned up at the next start).
            rt.shutdown_timeout(std::time::Duration::from_secs(10));
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { data_dir, repair } => check(&data_dir, repair),
        Command::Audit {
            command: AuditCommand::Verify { data_dir },
        } => {
            let store = open_existing(&data_dir, false)?;
            let report = renkei_share::audit::verify(store.index())
                .context("cannot read the audit trail")?;
            match report.problem {
                None => {
                    println!("audit chain intact: {} records", report.records);
                    Ok(ExitCode::SUCCESS)
                }
                Some(p) => {
                    println!("audit chain BROKEN: {p}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Stats { data_dir, json } => {
            let store = open_existing(&data_dir, false)?;
            let s = store.stats()?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "patients {}\nstudies {}\nseries {}\ninstances {}\nbytes {}\n\
                     compressed instances {}\ncompression saved bytes {}",
                    s.patients,
                    s.studies,
                    s.series,
                    s.instances,
                    s.bytes,
                    s.compressed_instances,
                    s.compressed_saved_bytes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Open a data dir that must already exist; read-only unless `write` (so `stats` and
/// `check` work beside a running node).
fn open_existing(data_dir: &std::path::Path, write: bool) -> Result<renkei_store::Store> {
    if !data_dir.join("index").is_dir() {
        anyhow::bail!(
            "{} is not a Renkei data directory (no index/)",
            data_dir.display()
        );
    }
    let store = if write {
        renkei_store::Store::open(data_dir)
    } else {
        renkei_store::Store::open_read_only(data_dir)
    };
    store.with_context(|| {
        format!(
            "cannot open {}{}",
            data_dir.display(),
            if write {
                " (is the node still running? --repair needs it stopped)"
            } else {
                ""
            }
        )
    })
}

fn check(data_dir: &std::path::Path, repair: bool) -> Result<ExitCode> {
    let store = open_existing(data_dir, repair)?;
    let r = store.check(repair)?;
    for (uid, path) in &r.missing {
        println!("MISSING {uid}: {}", path.display());
    }
    for (uid, path) in &r.corrupt {
        println!("CORRUPT {uid}: {} does not match its hash", path.display());
    }
    for key in &r.unreadable {
        println!("UNREADABLE record {key}");
    }
    for path in &r.orphans {
        let what = if repair { "REMOVED orphan" } else { "ORPHAN" };
        println!("{what} {}", path.display());
    }
    if let Some(c) = r.counter_mismatch {
        println!("COUNTER instances says {c}, records say {}", r.instances);
    }
    println!(
        "checked {} instances: {} missing, {} corrupt, {} unreadable, {} orphans{}",
        r.instances,
        r.missing.len(),
        r.corrupt.len(),
        r.unreadable.len(),
        r.orphans.len(),
        if repair {
            format!(" ({} removed)", r.removed)
        } else {
            String::new()
        }
    );
    Ok(if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
