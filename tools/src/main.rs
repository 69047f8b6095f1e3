/*!
`renkei`: command-line tools for testing and feeding a DICOM node.

- `renkei echo HOST PORT`: is the node reachable, does it accept us (C-ECHO)
- `renkei store HOST PORT FILE|DIR...`: send files as they are (C-STORE)
- `renkei find HOST PORT -k KEY[=VALUE]...`: query (C-FIND)
- `renkei get HOST PORT -k KEY=VALUE... --od DIR`: retrieve here (C-GET)
- `renkei move HOST PORT -aem DEST -k KEY=VALUE...`: retrieve to an AE (C-MOVE)
- `renkei synth --out DIR --count N`: write synthetic CT images for load tests
- `renkei transcode IN OUT --ts SYNTAX`: rewrite a file in another transfer syntax
- `renkei render IN OUT.png`: one frame as a PNG or JPEG, windowed
- `renkei admin …`: administer a Renkei node over its REST API (facilities, users,
  tokens, patients, cards, check-in, break-glass, audit)
- `renkei import hl7 FILE|DIR`: send HL7 v2 messages (lab results, prescriptions, patient
  updates, problems) to a Renkei node and report each ACK

Each subcommand lives in its own module; connection flags are shared
(`connection`), and so are the DIMSE helpers (`dimse`); `admin` is a folder of its own
(HTTP client, output, patient commands).
*/

mod admin;
mod connection;
mod dimse;
mod echo;
mod find;
mod import;
mod query;
mod render;
mod retrieve;
mod store;
mod synth;
mod transcode;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "renkei",
    version,
    about = "Test and feed DICOM nodes: echo, store, find, get, move, synthetic images; transcode and render files; administer a Renkei node",
    long_about = "Command-line tools for Renkei and any other DICOM node (PACS, modality, \
workstation).\n\n\
Network commands take the node's HOST and PORT first, then DCMTK-style options: \
-aet (our AE title), -aec (the node's AE title) and, for move, -aem (the destination).\n\n\
`renkei admin …` talks to a Renkei node's REST API instead (HTTP, bearer token).",
    after_help = "Run `renkei help <command>` for details on each command."
)]
struct Cli {
    /// Print debug details (association negotiation, each file).
    #[arg(short, long, global = true)]
    verbose: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Echo(echo::EchoArgs),
    Store(store::StoreArgs),
    Find(find::FindArgs),
    Get(retrieve::GetArgs),
    Move(retrieve::MoveArgs),
    Synth(synth::SynthArgs),
    Transcode(transcode::TranscodeArgs),
    Render(render::RenderArgs),
    Admin(admin::AdminArgs),
    Import(import::ImportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(connection::rewrite_dcmtk_args(std::env::args_os()));
    init_logging(cli.verbose);
    let result = match &cli.command {
        Command::Echo(args) => echo::run(args),
        Command::Store(args) => store::run(args),
        Command::Find(args) => find::run(args),
        Command::Get(args) => retrieve::run_get(args),
        Command::Move(args) => retrieve::run_move(args),
        Command::Synth(args) => synth::run(args),
        Command::Transcode(args) => transcode::run(args),
        Command::Render(args) => render::run(args),
        Command::Admin(args) => admin::run(args),
        Command::Import(args) => import::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("renkei: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "debug" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
