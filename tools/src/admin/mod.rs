/*!
`renkei admin …`: administer a Renkei node through its REST API (facilities, users and
tokens, regional patients and their cards, check-in, break-glass, the audit trail).

Every request carries `Authorization: Bearer <token>`; the token is the first found of
`--token`, `RENKEI_TOKEN`, and the node's `<data-dir>/admin.token` (written by the node at
its first start, for the regional administrator). A 4xx/5xx answer is printed as
`error: <detail> (HTTP <code>)` and exits 2 (4xx) or 1 (5xx).

Modules: `client` (HTTP, token, problems), `output` (human summaries), `patient` (FHIR
enrolment and the patient commands).
*/

pub(crate) mod client;
mod output;
mod patient;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Subcommand};
use serde_json::{json, Value};

use client::{query, segment, Answer, ApiError, Client};
use output::{audit_line, fhir_audit_line, fields, items, role_at, show, table, text, time};

const LONG_ABOUT: &str = "Administer a Renkei node through its REST API: facilities, users and \
their tokens, regional patients (enrolment, local ID links, merges, consent), patient cards, \
check-in, break-glass and the audit trail.\n\n\
The node is reached at --url (env RENKEI_URL, default http://127.0.0.1:8042), over plain HTTP.\n\n\
Every request is authenticated with a bearer token, the first found of:\n  \
1. --token TOKEN\n  \
2. the RENKEI_TOKEN environment variable\n  \
3. the file admin.token in the node's data directory, --data-dir DIR (env RENKEI_DATA_DIR, \
default renkei-data, the node's default). The node writes it at its first start: it is the \
regional administrator's token, readable on the node's machine only.\n\n\
Output is a short human summary; --json prints the node's JSON answer as received instead. \
Commands that create a secret or an identifier (user add, token issue, patient enroll, card \
issue) print it alone on the last line of standard output, so that $(… | tail -1) captures \
it; the rest of their summary goes to standard error.\n\n\
Errors from the node are printed as `error: <reason> (HTTP <code>)`. Exit code: 0 on success, \
2 when the node refused the request (4xx: bad input, no or revoked token, not allowed), 1 for \
anything else (node unreachable, server error).";

const AFTER_HELP: &str = "Examples:\n  \
renkei admin facility add --code 1310000001 --name 'Regional Hospital' --kind core-hospital --ae CT01\n  \
TOKEN=$(renkei admin user add --facility 1310000001 --role doctor --name 'Sato Hanako' | tail -1)\n  \
renkei admin --token \"$TOKEN\" whoami\n  \
renkei admin --url http://pacs.local:8042 --data-dir /var/lib/renkei audit --patient R-… --limit 50";

/// Administer a Renkei node over its REST API (facilities, users, patients, audit).
#[derive(Debug, clap::Args)]
#[command(long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub(crate) struct AdminArgs {
    /// The node's HTTP address.
    #[arg(
        long,
        global = true,
        help_heading = "Node and token (any position)",
        env = "RENKEI_URL",
        default_value = "http://127.0.0.1:8042",
        value_name = "URL"
    )]
    url: String,

    /// Bearer token (else RENKEI_TOKEN, else DATA_DIR/admin.token).
    #[arg(
        long,
        global = true,
        help_heading = "Node and token (any position)",
        env = "RENKEI_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,

    /// The node's data directory, where the node writes admin.token at its first start
    /// (used when neither --token nor RENKEI_TOKEN is given).
    #[arg(
        long,
        global = true,
        help_heading = "Node and token (any position)",
        env = "RENKEI_DATA_DIR",
        default_value = "renkei-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,

    /// Print the node's JSON answer as received instead of a summary.
    #[arg(long, global = true, help_heading = "Node and token (any position)")]
    json: bool,

    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Register and list facilities (hospitals, clinics, imaging centres, EMS).
    Facility {
        #[command(subcommand)]
        command: FacilityCommand,
    },
    /// Create and list users (each gets a first token).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Issue and revoke bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Show whose token this is (user, role, facility, token id).
    Whoami,
    /// Regional patients: enrol, show, link and unlink local IDs, merge, consent.
    Patient {
        #[command(subcommand)]
        command: patient::PatientCommand,
    },
    /// Issue and revoke patient cards.
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    /// Check a patient in at your facility with their card (opens the treating relationship).
    #[command(
        long_about = "Check a patient in at the token's facility with their card: opens (or \
extends) the treating relationship that lets the facility's clinicians see the patient's \
shared record. Needs a clinical or facility-admin user's token."
    )]
    Checkin {
        /// The card number.
        card: String,
    },
    /// Emergency access to a patient without a relationship (EMS crews; audited).
    #[command(
        long_about = "Break the glass: emergency access to one patient, by card number or \
regional ID, for a limited time, with a stated reason. For ambulance crews (role ems-crew); \
every use is flagged in the audit trail.",
        group(ArgGroup::new("who").required(true).args(["card", "patient"]))
    )]
    BreakGlass {
        /// The patient's card number.
        #[arg(long)]
        card: Option<String>,
        /// The patient's regional ID.
        #[arg(long, value_name = "RID")]
        patient: Option<String>,
        /// Why (recorded in the audit trail).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Image data whose local patient is linked to no regional patient.
    Unlinked,
    /// The audit trail of one patient: every access, allowed or denied.
    #[command(
        long_about = "The audit trail of one patient: who accessed what, when, from which \
facility and role, allowed or denied, under break-glass or not. One line per record: time, \
sequence number, actor (role@facility), action, allowed/DENIED, BREAK-GLASS, detail.\n\n\
--fhir reads the same records as FHIR AuditEvent resources (GET /fhir/AuditEvent); with \
--json that prints the FHIR Bundle."
    )]
    Audit {
        /// Regional ID.
        #[arg(long, value_name = "RID")]
        patient: String,
        /// At most this many records (the most recent).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Read FHIR AuditEvent resources instead of the node's records.
        #[arg(long)]
        fhir: bool,
    },
}

#[derive(Debug, Subcommand)]
enum FacilityCommand {
    /// Register a facility.
    #[command(
        long_about = "Register a facility (POST /api/facilities). Its AE titles are the \
modalities and workstations whose stores and queries count as the facility's; its issuers \
are the Issuer of Patient ID values its systems write (the code itself always is one).\n\n\
KIND is one of: core-hospital, hospital, clinic, imaging-centre, laboratory, ems."
    )]
    Add {
        /// Facility code (in Japan the 10-digit medical institution code).
        #[arg(long)]
        code: String,
        /// Name, as people know it.
        #[arg(long)]
        name: String,
        /// core-hospital, hospital, clinic, imaging-centre, laboratory or ems.
        #[arg(long)]
        kind: String,
        /// AE title of one of its DICOM devices (repeatable).
        #[arg(long = "ae", value_name = "AE_TITLE")]
        ae_titles: Vec<String>,
        /// A further Issuer of Patient ID its systems write (repeatable).
        #[arg(long = "issuer", value_name = "ISSUER")]
        issuers: Vec<String>,
        /// Phone number (shown in emergency summaries).
        #[arg(long)]
        phone: Option<String>,
    },
    /// List the facilities.
    List,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user and their first token (printed alone on the last line).
    #[command(
        long_about = "Create a user (POST /api/users) and their first token. The token's \
secret is shown this once: it is printed alone on the last line of standard output (user id, \
token id and expiry go to standard error), so that TOKEN=$(renkei admin user add … | tail -1) \
keeps it.\n\n\
ROLE is one of: doctor, nurse, technologist, pharmacist, ems-crew, facility-admin, \
regional-admin. Every role but regional-admin needs --facility.",
        after_help = "Example:\n  TOKEN=$(renkei admin user add --facility 1310000001 --role doctor \
--name 'Sato Hanako' --ttl-days 30 | tail -1)"
    )]
    Add {
        /// The user's facility code (not for regional-admin).
        #[arg(long, value_name = "CODE")]
        facility: Option<String>,
        /// doctor, nurse, technologist, pharmacist, ems-crew, facility-admin or regional-admin.
        #[arg(long)]
        role: String,
        /// The user's name.
        #[arg(long)]
        name: String,
        /// Lifetime of the first token in days (default: the node's setting).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=36_500))]
        ttl_days: Option<u64>,
    },
    /// List users, all or one facility's.
    List {
        /// Only this facility's users.
        #[arg(long, value_name = "CODE")]
        facility: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Issue another token for a user (printed alone on the last line).
    Issue {
        /// The user's id.
        #[arg(long, value_name = "ID")]
        user: String,
        /// Lifetime in days (default: the node's setting).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=36_500))]
        ttl_days: Option<u64>,
    },
    /// Revoke a token by its id (not its secret): it stops working at once.
    Revoke {
        /// The token's id, as user add / token issue printed it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum CardCommand {
    /// Issue a card to a patient (replaces their active card); prints its number.
    Issue {
        /// Regional ID.
        rid: String,
    },
    /// Revoke a card (lost, stolen).
    Revoke {
        /// The card number.
        number: String,
    },
}

/// How answers are printed.
pub(crate) struct Out {
    json: bool,
}

impl Out {
    /// With --json: print the answer as received and return true (nothing else to print).
    fn raw(&self, answer: &Answer) -> bool {
        if self.json {
            let text = answer.text.trim_end();
            if text.is_empty() {
                println!("null");
            } else {
                println!("{text}");
            }
        }
        self.json
    }
}

pub(crate) fn run(args: &AdminArgs) -> anyhow::Result<ExitCode> {
    let (token, source) = client::resolve_token(args.token.as_deref(), &args.data_dir)?;
    let client = Client::new(&args.url, token, source)?;
    let out = Out { json: args.json };
    match execute(&client, &out, &args.command) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<ApiError>() {
            Some(api) => {
                eprintln!("error: {api}");
                if api.status == 401 {
                    eprintln!(
                        "(the token used came from {}; it may be wrong, expired or revoked)",
                        client.token_source()
                    );
                }
                Ok(ExitCode::from(if (400..500).contains(&api.status) {
                    2
                } else {
                    1
                }))
            }
            None => Err(e),
        },
    }
}

fn execute(client: &Client, out: &Out, command: &AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Facility { command } => facility(client, out, command),
        AdminCommand::User { command } => user(client, out, command),
        AdminCommand::Token { command } => token(client, out, command),
        AdminCommand::Whoami => {
            let answer = client.get("/api/whoami")?;
            if !out.raw(&answer) {
                let v = &answer.json;
                print!(
                    "{}",
                    fields(&[
                        (
                            "user",
                            format!("{}  {}", show(v, "user_id"), text(v, "name"))
                        ),
                        ("role", show(v, "role")),
                        ("facility", show(v, "facility")),
                        ("token", show(v, "token_id")),
                    ])
                );
            }
            Ok(())
        }
        AdminCommand::Patient { command } => patient::run(client, out, command),
        AdminCommand::Card { command } => card(client, out, command),
        AdminCommand::Checkin { card } => {
            let answer = client.post("/api/encounters/checkin", &json!({ "card": card }))?;
            if !out.raw(&answer) {
                let v = &answer.json;
                let p = output::PatientView::of(v.get("patient").unwrap_or(&Value::Null));
                let rel = v.get("relationship").unwrap_or(&Value::Null);
                println!(
                    "checked in {} {} at {}: treating relationship until {}",
                    if p.id.is_empty() { "-" } else { &p.id },
                    p.display_name(),
                    show(rel, "facility"),
                    output::time_of(rel, &["until_us", "until"]),
                );
            }
            Ok(())
        }
        AdminCommand::BreakGlass {
            card,
            patient,
            reason,
        } => {
            let mut body = json!({ "reason": reason });
            if let Some(c) = card {
                body["card"] = json!(c);
            }
            if let Some(p) = patient {
                body["patient"] = json!(p);
            }
            let answer = client.post("/api/breakglass", &body)?;
            if !out.raw(&answer) {
                let v = &answer.json;
                let who = match text(v, "patient") {
                    "" => patient.clone().or(card.clone()).unwrap_or_default(),
                    p => p.to_string(),
                };
                println!(
                    "BREAK-GLASS: emergency access to {who} until {} (recorded in the audit trail)",
                    output::time_of(v, &["until_us", "until"])
                );
            }
            Ok(())
        }
        AdminCommand::Unlinked => {
            let answer = client.get("/api/unlinked")?;
            if out.raw(&answer) {
                return Ok(());
            }
            let list = items(&answer.json);
            if list.is_empty() {
                eprintln!("no unlinked patients");
                return Ok(());
            }
            let mut rows = vec![vec![
                "LOCAL ID".to_string(),
                "FACILITY".into(),
                "BIRTH DATE".into(),
                "NAME".into(),
            ]];
            for u in list {
                let local = u.get("local").unwrap_or(u);
                rows.push(vec![
                    format!("{}:{}", text(local, "issuer"), text(local, "patient_id")),
                    show(u, "facility"),
                    show(u, "birth_date"),
                    show(u, "name"),
                ]);
            }
            print!("{}", table(&rows));
            Ok(())
        }
        AdminCommand::Audit {
            patient,
            limit,
            fhir,
        } => {
            let limit = limit.map(|n| n.to_string());
            let path = if *fhir {
                format!(
                    "/fhir/AuditEvent{}",
                    query(&[("patient", Some(patient.clone())), ("_count", limit)])
                )
            } else {
                format!(
                    "/api/audit{}",
                    query(&[("patient", Some(patient.clone())), ("limit", limit)])
                )
            };
            let answer = client.get(&path)?;
            if out.raw(&answer) {
                return Ok(());
            }
            let list = items(&answer.json);
            if list.is_empty() {
                eprintln!("no audit records for {patient}");
            }
            for rec in list {
                if *fhir {
                    println!("{}", fhir_audit_line(rec));
                } else {
                    println!("{}", audit_line(rec));
                }
            }
            Ok(())
        }
    }
}

fn facility(client: &Client, out: &Out, command: &FacilityCommand) -> anyhow::Result<()> {
    match command {
        FacilityCommand::Add {
            code,
            name,
            kind,
            ae_titles,
            issuers,
            phone,
        } => {
            let answer = client.post(
                "/api/facilities",
                &json!({
                    "code": code,
                    "name": name,
                    "kind": kind,
                    "ae_titles": ae_titles,
                    "issuers": issuers,
                    "phone": phone.clone().unwrap_or_default(),
                }),
            )?;
            if !out.raw(&answer) {
                let f = &answer.json;
                println!(
                    "registered facility {} {} ({}); AE titles: {}; issuers: {}; phone: {}",
                    show(f, "code"),
                    show(f, "name"),
                    show(f, "kind"),
                    show(f, "ae_titles"),
                    show(f, "issuers"),
                    show(f, "phone"),
                );
            }
        }
        FacilityCommand::List => {
            let answer = client.get("/api/facilities")?;
            if out.raw(&answer) {
                return Ok(());
            }
            let list = items(&answer.json);
            if list.is_empty() {
                eprintln!("no facilities registered");
                return Ok(());
            }
            let mut rows = vec![vec![
                "CODE".to_string(),
                "KIND".into(),
                "AE TITLES".into(),
                "ISSUERS".into(),
                "PHONE".into(),
                "NAME".into(),
            ]];
            for f in list {
                rows.push(vec![
                    show(f, "code"),
                    show(f, "kind"),
                    show(f, "ae_titles"),
                    show(f, "issuers"),
                    show(f, "phone"),
                    show(f, "name"),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(())
}

/// Print an issued token: id, user and expiry on stderr, the secret alone on stdout.
fn print_token(t: &Value) -> anyhow::Result<()> {
    let secret = text(t, "token");
    if secret.is_empty() {
        anyhow::bail!("the node's answer holds no token secret (\"token\")");
    }
    eprintln!(
        "token {} for user {}, expires {}",
        show(t, "id"),
        show(t, "user_id"),
        time_of_expiry(t)
    );
    println!("{secret}");
    Ok(())
}

fn time_of_expiry(t: &Value) -> String {
    output::time_of(t, &["expires", "expires_us"])
}

fn user(client: &Client, out: &Out, command: &UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            facility,
            role,
            name,
            ttl_days,
        } => {
            let mut body = json!({ "name": name, "role": role });
            if let Some(f) = facility {
                body["facility"] = json!(f);
            }
            if let Some(days) = ttl_days {
                body["token_ttl_secs"] = json!(days * 86_400);
            }
            let answer = client.post("/api/users", &body)?;
            if out.raw(&answer) {
                return Ok(());
            }
            let u = answer.json.get("user").unwrap_or(&Value::Null);
            eprintln!(
                "created user {} {} ({})",
                show(u, "id"),
                show(u, "name"),
                role_at(text(u, "role"), text(u, "facility")),
            );
            print_token(answer.json.get("token").unwrap_or(&Value::Null))
        }
        UserCommand::List { facility } => {
            let answer = client.get(&format!(
                "/api/users{}",
                query(&[("facility", facility.clone())])
            ))?;
            if out.raw(&answer) {
                return Ok(());
            }
            let list = items(&answer.json);
            if list.is_empty() {
                eprintln!("no users");
                return Ok(());
            }
            let mut rows = vec![vec![
                "ID".to_string(),
                "ROLE".into(),
                "FACILITY".into(),
                "CREATED".into(),
                "NAME".into(),
            ]];
            for u in list {
                rows.push(vec![
                    show(u, "id"),
                    show(u, "role"),
                    show(u, "facility"),
                    time(u, "created_us"),
                    show(u, "name"),
                ]);
            }
            print!("{}", table(&rows));
            Ok(())
        }
    }
}

fn token(client: &Client, out: &Out, command: &TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Issue { user, ttl_days } => {
            let mut body = json!({});
            if let Some(days) = ttl_days {
                body["ttl_secs"] = json!(days * 86_400);
            }
            let answer = client.post(&format!("/api/users/{}/tokens", segment(user)), &body)?;
            if out.raw(&answer) {
                return Ok(());
            }
            print_token(&answer.json)
        }
        TokenCommand::Revoke { id } => {
            let answer = client.delete(&format!("/api/tokens/{}", segment(id)))?;
            if !out.raw(&answer) {
                println!("revoked token {id}");
            }
            Ok(())
        }
    }
}

fn card(client: &Client, out: &Out, command: &CardCommand) -> anyhow::Result<()> {
    match command {
        CardCommand::Issue { rid } => {
            let answer =
                client.post(&format!("/api/patients/{}/cards", segment(rid)), &json!({}))?;
            if out.raw(&answer) {
                return Ok(());
            }
            let c = &answer.json;
            let number = text(c, "number");
            if number.is_empty() {
                anyhow::bail!("the node's answer holds no card number: {}", answer.text);
            }
            eprintln!(
                "issued card {number} to {} ({}, {})",
                match text(c, "patient") {
                    "" => rid.as_str(),
                    p => p,
                },
                show(c, "status"),
                output::time_of(c, &["issued_us", "issued"]),
            );
            println!("{number}");
            Ok(())
        }
        CardCommand::Revoke { number } => {
            let answer = client.delete(&format!("/api/cards/{}", segment(number)))?;
            if !out.raw(&answer) {
                println!("revoked card {number}");
            }
            Ok(())
        }
    }
}
