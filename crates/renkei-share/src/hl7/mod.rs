//! HL7 v2.5 import (issue 7): messages as Japanese hospital systems send them and as the
//! SS-MIX2 standardized storage keeps them — ORU^R01 / OUL^R22 lab results, RDE^O11
//! prescriptions, ADT^A08 patient updates, PPR^ZD1 problems — into the shared clinical
//! record ([`Share::create_resource`]), with the sending facility as issuer.
//!
//! - [`parse`]: the ER7 encoding (segments, fields, repetitions, components, escapes,
//!   batches);
//! - [`encoding`]: the character sets of MSH-18 (ISO-2022-JP, Shift_JIS, UTF-8);
//! - [`map`]: JAHIS / SS-MIX2 segments → FHIR R4 JSON (JP Core code systems);
//! - [`ack`]: the ACK (MSA, ERR naming segment and field).
//!
//! One message at a time ([`Share::import_hl7`]), in this order:
//! 1. read the message (AR when MSH is unusable, AE for another broken segment);
//! 2. MSH-9 must be one of the five types (AR 200/201), MSH-11 `P` (AR 202: training and
//!    debugging messages are not recorded), MSH-12 a 2.x version (AR 203);
//! 3. MSH-4 (its namespace ID, else its universal ID) must be a facility code or an issuer
//!    a facility declared ([`Share::facility_of_issuer`]) (AR 204);
//! 4. the caller must act for that facility (AR): a user of the facility (recorded as
//!    themselves), a regional administrator (recorded as the facility's interface,
//!    `Actor::Ae { title: "HL7", facility }`), or an interface actor: `Actor::Ae` without a
//!    facility means "trusted interface, acting as MSH-4's facility" (the MLLP listener),
//!    with a facility it must be MSH-4's;
//! 5. PID-3 (the `PI` repetition) must be linked to a regional patient under the
//!    facility's code, the issuer MSH-4 names, PID-3.4, or any issuer the facility
//!    declared (AE 204); PID-7/PID-8, when given, must agree with the regional record
//!    (AE 204: a wrong link is worse than a missing one);
//! 6. every resource is mapped first, every problem reported (AE, nothing stored); then
//!    each is created in turn. A store failure stops there: MSA-3 says how many were
//!    created, and its receipt is marked incomplete: a resend of the same bytes creates the
//!    rest, not those again.
//!
//! ADT^A08: the regional patient index has no demographics update (identity.rs offers
//! enrolment, links and merges only), so the Patient is mapped and checked, returned in
//! the answer ([`Ack::not_stored`]), and acknowledged AA with a warning ERR saying it was
//! not applied and how it differs from the regional record.
//!
//! The record is create-only: cancellations and deletions (ORC-1 CA/DC/…, OBX-11 D/W,
//! PRB-1 DE) are refused with AE 207 rather than recorded as new resources.
//!
//! Resends: an interface engine that misses an ACK (a timeout, a dropped MLLP connection)
//! sends the message again with the same MSH-10, which identifies a message for its sender
//! (HL7 v2.5 §2.14.9.10), and a site re-running an SS-MIX2 export sends whole trees again.
//! A message that recorded something leaves a [`Receipt`] under (facility, MSH-3, MSH-10) with the
//! SHA-256 of its bytes; the same bytes again are answered as the first time (the same code
//! and resources, a warning ERR and [`Ack::duplicate_of`]) and nothing is recorded twice.
//! Different bytes under a used MSH-10 (a sender whose counter wrapped) are a new message.
//! A resend that arrives while the first is still being recorded (a sender whose ACK
//! timeout is shorter than the import) waits for it ([`InFlight`]), then finds its receipt.
//! The receipt is written after the resources, so a crash between the two lets one resend
//! through again.

pub mod ack;
pub mod encoding;
pub mod map;
pub mod parse;

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use renkei_model::PatientKey;

pub use ack::{Ack, AckCode};
use map::{Context, Issue, Kind};
use parse::{Location, Message, Piece};

use crate::error::ShareError;
use crate::keys;
use crate::model::{now_us, rfc3339, RegionalPatient, Role};
use crate::policy::Actor;
use crate::{AuditEvent, Purpose, Share};

/// What the node keeps of an HL7 message that recorded something, to answer a resend
/// (module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    /// SHA-256 of the message's bytes, hex.
    pub sha256: String,
    /// When it was received, µs since the epoch.
    pub received_us: u64,
    /// Everything it mapped was recorded (AA). A message cut short by a store failure
    /// (AE after some resources) is finished by its resend instead of answered.
    pub complete: bool,
    /// MSA-1 it was answered with.
    pub code: AckCode,
    /// MSA-3.
    pub text: String,
    /// The resources it created.
    pub created: Vec<String>,
    /// DetectedIssue resources raised.
    pub detected_issues: Vec<String>,
    /// The regional patient.
    pub patient: Option<String>,
}

/// The messages being imported, by (facility, MSH-10): the second of two at once waits for
/// the first to be recorded and its receipt written (module docs).
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    keys: Mutex<HashSet<(String, String, String)>>,
    done: Condvar,
}

/// Who sent a message: (facility, MSH-3 sending application, MSH-10 control ID).
type Sender<'a> = (&'a str, &'a str, &'a str);

impl InFlight {
    fn claim(&self, (facility, app, control_id): Sender<'_>) -> Claim<'_> {
        let key = (
            facility.to_string(),
            app.to_string(),
            control_id.to_string(),
        );
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        while keys.contains(&key) {
            keys = self.done.wait(keys).unwrap_or_else(|p| p.into_inner());
        }
        keys.insert(key.clone());
        Claim {
            in_flight: self,
            key,
        }
    }
}

/// A message's place in [`InFlight`], given up when dropped.
pub(crate) struct Claim<'a> {
    in_flight: &'a InFlight,
    key: (String, String, String),
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut keys = self
            .in_flight
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        keys.remove(&self.key);
        self.in_flight.done.notify_all();
    }
}

/// Messages one body or MLLP frame may carry (SS-MIX2 daily batches hold hundreds).
pub const MAX_MESSAGES: usize = 10_000;

impl Share {
    /// Import one HL7 v2 message as `actor` (module docs), and answer it.
    pub fn import_hl7(&self, actor: &Actor, message: &[u8]) -> Ack {
        let sha256 = hex::encode(Sha256::digest(message));
        // held until the receipt is written with the audit record
        let mut claim = None;
        let ack = self.import_one(actor, message, &sha256, &mut claim);
        self.audit_import(actor, &ack, &sha256);
        drop(claim);
        ack
    }

    /// Import every message of a file or body (consecutive messages, with or without
    /// FHS/BHS batch headers), each acknowledged on its own: a bad one does not stop the
    /// others.
    pub fn import_hl7_batch(&self, actor: &Actor, bytes: &[u8]) -> Vec<Ack> {
        let node = &self.config().node_name;
        let pieces = parse::split_batch(bytes);
        if pieces.len() > MAX_MESSAGES {
            // one answer, one audit record: a body of millions of `MSH` lines must not
            // become millions of ACKs and audit records
            let ack = Ack::new(node, Default::default()).fail(
                AckCode::AR,
                vec![Issue::error(
                    Location::segment("MSH", 0),
                    100,
                    format!(
                        "{} messages in one body, more than {MAX_MESSAGES}: split the batch",
                        pieces.len()
                    ),
                )],
            );
            self.audit_import(actor, &ack, "");
            return vec![ack];
        }
        if pieces.is_empty() {
            return vec![Ack::new(node, Default::default()).fail(
                AckCode::AR,
                vec![Issue::error(
                    Location::segment("MSH", 0),
                    100,
                    "no HL7 message: the body holds no MSH segment",
                )],
            )];
        }
        pieces
            .into_iter()
            .map(|p| match p {
                Piece::Message(m) => self.import_hl7(actor, &m),
                Piece::Stray { first, count } => {
                    let id = String::from_utf8_lossy(&first[..first.len().min(3)]).into_owned();
                    Ack::new(node, Default::default()).fail(
                        AckCode::AR,
                        vec![Issue::error(
                            Location::segment(&id, 1),
                            100,
                            format!("{count} segment(s) from {id} on are outside any message (no MSH before them): skipped"),
                        )],
                    )
                }
            })
            .collect()
    }

    /// The facility MSH-4 names: its namespace ID, else its universal ID, as a facility
    /// code or a declared issuer.
    pub fn facility_of_sender(&self, msh4: &[String]) -> Option<String> {
        msh4.iter()
            .take(2)
            .filter(|c| !c.is_empty())
            .find_map(|c| self.facility_of_issuer(c))
    }

    fn import_one<'s>(
        &'s self,
        actor: &Actor,
        bytes: &[u8],
        sha256: &str,
        claim: &mut Option<Claim<'s>>,
    ) -> Ack {
        let node = self.config().node_name.clone();
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                let code = if e.location.segment == "MSH" {
                    AckCode::AR
                } else {
                    AckCode::AE
                };
                return Ack::new(&node, *e.header)
                    .fail(code, vec![Issue::error(e.location, e.code, e.message)]);
            }
        };
        let h = &msg.header;
        let ack = Ack::new(&node, h.clone());
        let reject = |ack: Ack, i: Issue| ack.fail(AckCode::AR, vec![i]);
        let kind = match Kind::of(&h.message_code, &h.trigger) {
            Ok(k) => k,
            Err(i) => return reject(ack, i),
        };
        if !h.processing_id.starts_with('P') {
            return reject(
                ack,
                Issue::error(
                    Location::field("MSH", 1, 11),
                    202,
                    format!(
                        "MSH-11 processing ID {} is not recorded: only P (production) messages enter the shared record",
                        h.processing_id
                    ),
                ),
            );
        }
        if !h.version.starts_with("2.") {
            return reject(
                ack,
                Issue::error(
                    Location::field("MSH", 1, 12),
                    203,
                    format!("MSH-12 version {} is not HL7 v2 (2.5 expected)", h.version),
                ),
            );
        }
        let Some(facility) = self.facility_of_sender(&h.sending_facility) else {
            return reject(
                ack,
                Issue::error(
                    Location::field("MSH", 1, 4),
                    204,
                    format!(
                        "MSH-4 sending facility {:?} is not a facility of the region: register it, or declare the value as one of its issuers",
                        h.sending_facility.iter().filter(|c| !c.is_empty()).cloned().collect::<Vec<_>>().join("^")
                    ),
                ),
            );
        };
        let mut ack = ack;
        ack.facility = Some(facility.clone());
        let acting = match acting_for(actor, &facility) {
            Ok(a) => a,
            Err(text) => return reject(ack, Issue::error(Location::field("MSH", 1, 4), 207, text)),
        };
        // only after the caller is known to act for the facility: a resend is answered
        // with what the first one recorded (waiting for it when it is still being recorded)
        // key parts are joined with 0x00 (keys.rs): an MSH-3 or MSH-10 holding a control
        // character (an escaped \X00\) gets no receipt rather than a colliding one
        let keyable = keyable(&h.sending_application, &h.control_id);
        let control_id = if keyable { h.control_id.as_str() } else { "" };
        let sender = (
            facility.as_str(),
            h.sending_application.as_str(),
            control_id,
        );
        if keyable {
            *claim = Some(self.hl7_in_flight.claim(sender));
        }
        // a receipt of a message cut short by a store failure: the resend finishes it
        let mut resume: Option<Receipt> = None;
        if let Some(r) = self.receipt(sender).filter(|r| r.sha256 == sha256) {
            // the caller must be one who could have recorded it (a facility administrator
            // acts for the facility but does not write clinical data)
            if let Err(e) = crate::clinical::writer_facility(&acting) {
                return reject(
                    ack,
                    Issue::error(Location::field("MSH", 1, 4), 207, e.to_string()),
                );
            }
            if r.complete {
                return answer_resend(ack, r);
            }
            resume = Some(r);
        }
        let error = |ack: Ack, i: Issue| ack.fail(AckCode::AE, vec![i]);
        let Some(pid) = msg.first("PID") else {
            return error(
                ack,
                Issue::error(
                    Location::segment("PID", 0),
                    100,
                    format!(
                        "PID segment missing: {} needs the patient",
                        h.message_type()
                    ),
                ),
            );
        };
        let (local, authority) = match map::local_id(pid) {
            Ok(l) => l,
            Err(i) => return error(ack, i),
        };
        let patient = match self.regional_for_hl7(&facility, &h.sending_facility, &authority, &local) {
            Ok(Some(p)) => p,
            Ok(None) => {
                return error(
                    ack,
                    Issue::error(
                        pid.at(3),
                        204,
                        format!(
                            "patient {local} of facility {facility} is not linked to a regional patient: enrol or link it first (renkei admin patient link)"
                        ),
                    ),
                )
            }
            Err(e) => return error(ack, store_issue(pid.at(3), &e)),
        };
        ack.patient = Some(patient.id.clone());
        let d = match map::demographics(pid) {
            Ok(d) => d,
            Err(i) => return error(ack, i),
        };
        let differences = differences(&d, &patient);
        let fac_name = self.facility(&facility).map(|f| f.name).unwrap_or_default();
        let ctx = Context {
            facility: &facility,
            facility_name: &fac_name,
            patient: &patient.id,
            control_id: &h.control_id,
        };
        if kind == Kind::PatientUpdate {
            return match map::patient_update(&msg, &ctx) {
                Err(issues) => ack.fail(AckCode::AE, issues),
                Ok(p) => {
                    ack.not_stored.push(p);
                    let diff = if differences.is_empty() {
                        "it agrees with the regional record".to_string()
                    } else {
                        format!(
                            "it differs from the regional record: {}",
                            differences.join("; ")
                        )
                    };
                    ack.text = format!(
                        "A08 patient update for {} accepted but not applied: the regional patient index has no demographics update yet; {diff}",
                        patient.id
                    );
                    ack.issues.push(Issue::warning(
                        Location::segment("PID", 1),
                        0,
                        ack.text.clone(),
                    ));
                    ack
                }
            };
        }
        if !differences.is_empty() {
            return error(
                ack,
                Issue::error(
                    Location::segment("PID", 1),
                    204,
                    format!(
                        "PID does not match regional patient {} linked to {local}: {}; check the link before importing",
                        patient.id,
                        differences.join("; ")
                    ),
                ),
            );
        }
        let mapped = match map::map(kind, &msg, &ctx) {
            Ok(m) => m,
            Err(issues) => return ack.fail(AckCode::AE, issues),
        };
        let total = mapped.len();
        // mapping is deterministic: the first resources of a resumed message are the ones
        // its first copy created
        let done_before = match resume {
            Some(r) => {
                let n = r.created.len();
                ack.created = r.created;
                ack.detected_issues = r.detected_issues;
                n
            }
            None => 0,
        };
        for m in mapped.into_iter().skip(done_before) {
            match self.create_resource(&acting, m.resource) {
                Ok(created) => {
                    ack.created.push(reference(&created.resource));
                    for di in &created.detected_issues {
                        let r = reference(di);
                        let detail = di
                            .get("detail")
                            .and_then(Value::as_str)
                            .unwrap_or("possible duplicate");
                        ack.issues.push(Issue::warning(
                            m.source.clone(),
                            0,
                            format!("{r}: {detail}"),
                        ));
                        ack.detected_issues.push(r);
                    }
                }
                Err(e) => {
                    let code = match e {
                        ShareError::Forbidden(_) | ShareError::Unauthorized(_) => AckCode::AR,
                        _ => AckCode::AE,
                    };
                    let done = ack.created.len();
                    let mut issue = store_issue(m.source.clone(), &e);
                    if done > 0 {
                        issue.text = format!(
                            "{} ({done} of {total} resources were created before it)",
                            issue.text
                        );
                    }
                    return ack.fail(code, vec![issue]);
                }
            }
        }
        ack.text = format!(
            "{} resource(s) created: {}",
            ack.created.len(),
            ack.created.join(", ")
        );
        if !ack.detected_issues.is_empty() {
            ack.text.push_str(&format!(
                "; {} duplicate warning(s)",
                ack.detected_issues.len()
            ));
        }
        ack
    }

    /// The regional patient of a local ID the facility sent (module docs, step 5).
    fn regional_for_hl7(
        &self,
        facility: &str,
        msh4: &[String],
        authority: &str,
        local: &str,
    ) -> crate::Result<Option<RegionalPatient>> {
        let mut issuers: Vec<String> = Vec::new();
        let ours = |i: &str| self.facility_of_issuer(i).as_deref() == Some(facility);
        for i in std::iter::once(authority).chain(msh4.iter().take(2).map(String::as_str)) {
            if !i.is_empty() && ours(i) {
                issuers.push(i.to_string());
            }
        }
        issuers.push(facility.to_string());
        if let Some(f) = self.facility(facility) {
            issuers.extend(f.issuers);
        }
        let mut seen = Vec::new();
        for issuer in issuers {
            if seen.contains(&issuer) {
                continue;
            }
            let key = PatientKey {
                issuer: issuer.clone(),
                patient_id: local.to_string(),
            };
            if let Some(p) = self.regional_for(&key)? {
                return Ok(Some(p));
            }
            seen.push(issuer);
        }
        Ok(None)
    }

    /// The receipt of a message recorded before, if any: by (facility, MSH-3, MSH-10), since
    /// MSH-10 is unique per sending application (HL7 v2.5 §2.14.9.10).
    fn receipt(&self, (facility, app, control_id): Sender<'_>) -> Option<Receipt> {
        if control_id.is_empty() {
            return None;
        }
        let key = keys::text_key(keys::HL7_RECEIPT, &[facility, app, control_id]);
        self.get(&key).unwrap_or_else(|e| {
            // a receipt that cannot be read must not stop the message: worst case a resend
            // is recorded twice, which the duplicate checks then flag
            tracing::warn!(error = %e, facility, control_id, "cannot read an HL7 receipt");
            None
        })
    }

    /// The audit record of the import, with the message's receipt when it recorded
    /// something (one synced commit: the receipt must not be lost when the resources
    /// are not).
    fn audit_import(&self, actor: &Actor, ack: &Ack, sha256: &str) {
        let mut e = actor.audit(
            &format!("HL7 import {}", ack.message_type),
            AuditEvent::PatientRecord,
            ack.patient.as_deref().unwrap_or_default(),
        );
        e.purpose = Purpose::Treatment;
        e.allowed = ack.code != AckCode::AR;
        e.detail = match &ack.duplicate_of {
            Some(first) => format!(
                "MSH-10 {} from {}: resend of the message received {first}, answered {}, nothing recorded again",
                ack.control_id,
                ack.facility.as_deref().unwrap_or("unknown facility"),
                ack.code.as_str(),
            ),
            None => format!(
                "MSH-10 {} from {}: {}, {} created",
                ack.control_id,
                ack.facility.as_deref().unwrap_or("unknown facility"),
                ack.code.as_str(),
                ack.created.len()
            ),
        };
        let result = match (&ack.facility, &ack.duplicate_of) {
            (Some(facility), None)
                if !ack.created.is_empty()
                    && keyable(ack.sending_application(), &ack.control_id) =>
            {
                let key = keys::text_key(
                    keys::HL7_RECEIPT,
                    &[facility, ack.sending_application(), &ack.control_id],
                );
                let receipt = Receipt {
                    sha256: sha256.to_string(),
                    received_us: now_us(),
                    complete: ack.code == AckCode::AA,
                    code: ack.code,
                    text: ack.text.clone(),
                    created: ack.created.clone(),
                    detected_issues: ack.detected_issues.clone(),
                    patient: ack.patient.clone(),
                };
                self.transact(|tx| {
                    tx.put(&key, &receipt)?;
                    Ok(((), e))
                })
            }
            _ => self.audit_read(e),
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "could not record the HL7 import in the audit trail");
        }
    }
}

/// Whether a message can have a receipt: a control ID, and no control character in the
/// key parts.
fn keyable(app: &str, control_id: &str) -> bool {
    !control_id.is_empty() && !app.chars().chain(control_id.chars()).any(char::is_control)
}

/// The answer to a resend: what the first message was answered, and a warning that
/// nothing was recorded again.
fn answer_resend(mut ack: Ack, r: Receipt) -> Ack {
    let first = rfc3339(r.received_us);
    ack.code = r.code;
    ack.created = r.created;
    ack.detected_issues = r.detected_issues;
    ack.patient = r.patient;
    ack.text = format!(
        "resend of MSH-10 {} received {first}: already recorded ({} resource(s)), nothing recorded again",
        ack.control_id,
        ack.created.len()
    );
    ack.issues.push(Issue::warning(
        Location::field("MSH", 1, 10),
        0,
        format!("{}; first answer: {}", ack.text, r.text),
    ));
    ack.duplicate_of = Some(first);
    ack
}

/// Who records a facility's message, when `caller` sends it (module docs, step 4).
fn acting_for(caller: &Actor, facility: &str) -> Result<Actor, String> {
    match caller {
        Actor::User(p) if p.role == Role::RegionalAdmin => Ok(Actor::Ae {
            title: "HL7".into(),
            facility: Some(facility.to_string()),
        }),
        Actor::User(p) if p.role == Role::EmsCrew => {
            Err("EMS crews do not import clinical records".to_string())
        }
        Actor::User(p) if p.facility.as_deref() == Some(facility) => Ok(caller.clone()),
        Actor::User(p) => Err(format!(
            "MSH-4 names facility {facility}; user {} belongs to {}: a facility imports its own messages (or a regional administrator does)",
            p.user_id,
            p.facility.as_deref().unwrap_or("no facility")
        )),
        Actor::Ae {
            title,
            facility: None,
        } => Ok(Actor::Ae {
            title: title.clone(),
            facility: Some(facility.to_string()),
        }),
        Actor::Ae {
            facility: Some(f), ..
        } if f == facility => Ok(caller.clone()),
        Actor::Ae {
            title,
            facility: Some(f),
        } => Err(format!(
            "MSH-4 names facility {facility}; {title} belongs to {f}"
        )),
    }
}

/// How PID differs from the regional record (birth date, sex; names only as information
/// for ADT^A08, since spelling and width vary between systems).
fn differences(d: &map::Demographics, p: &RegionalPatient) -> Vec<String> {
    let mut out = Vec::new();
    if !d.birth_date.is_empty() && !p.birth_date.is_empty() && d.birth_date != p.birth_date {
        out.push(format!(
            "birth date {} (PID-7) vs {}",
            d.birth_date, p.birth_date
        ));
    }
    let known = |s: &str| matches!(s, "male" | "female");
    if known(&d.sex) && known(&p.sex) && d.sex != p.sex {
        out.push(format!("sex {} (PID-8) vs {}", d.sex, p.sex));
    }
    out
}

/// `Observation/abc` of a stored resource.
fn reference(r: &Value) -> String {
    format!(
        "{}/{}",
        r.get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("Resource"),
        r.get("id").and_then(Value::as_str).unwrap_or("?")
    )
}

/// A store or policy failure as an issue (internal details are logged, not sent).
fn store_issue(location: Location, e: &ShareError) -> Issue {
    match e {
        ShareError::Store(inner) => {
            tracing::error!(error = %inner, "HL7 import: store failure");
            Issue::error(
                location,
                207,
                "internal error of the node (logged); resend later",
            )
        }
        ShareError::NotFound(t) => Issue::error(location, 204, t.clone()),
        other => Issue::error(location, 207, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::admin::NewFacility;
    use crate::hl7::encoding::Charset;
    use crate::identity::{LocalId, NewPatient};
    use crate::policy::Principal;
    use crate::ShareConfig;
    use renkei_store::{Store, StoreOptions};

    fn principal(role: Role, facility: Option<&str>) -> Actor {
        Actor::User(Principal {
            user_id: "u9".into(),
            name: "test".into(),
            facility: facility.map(str::to_string),
            role,
            token_id: "t9".into(),
        })
    }

    /// A sharing domain with facility 1310000001 (also issuer "HIS-A") and a patient
    /// enrolled with local ID 12345 linked.
    fn region() -> (tempfile::TempDir, Share, String) {
        let tmp = tempfile::tempdir().unwrap();
        let store =
            Store::open_with(&tmp.path().join("data"), StoreOptions { min_free_bytes: 0 }).unwrap();
        let share = Share::open(Arc::new(store), ShareConfig::default()).unwrap();
        let admin = principal(Role::RegionalAdmin, None);
        share
            .add_facility(
                &admin,
                NewFacility {
                    code: "1310000001".into(),
                    name: "Hospital A".into(),
                    kind: "hospital".into(),
                    issuers: vec!["HIS-A".into()],
                    ..Default::default()
                },
            )
            .unwrap();
        let p = share
            .enroll(
                &admin,
                NewPatient {
                    family: "佐藤".into(),
                    given: "花子".into(),
                    birth_date: "1975-10-10".into(),
                    sex: "female".into(),
                    consent: true,
                    local_ids: vec![
                        LocalId {
                            issuer: "1310000001".into(),
                            patient_id: "12345".into(),
                        },
                        // the patient of testdata/hl7
                        LocalId {
                            issuer: "1310000001".into(),
                            patient_id: "0000123456".into(),
                        },
                    ],
                    ..Default::default()
                },
            )
            .unwrap();
        (tmp, share, p.id)
    }

    fn msg(msh4: &str, body: &str) -> Vec<u8> {
        format!("MSH|^~\\&|HIS|{msh4}|RENKEI|REGION|20240301||{body}")
            .replace('\n', "\r")
            .into_bytes()
    }

    const ORU: &str = "ORU^R01|M1|P|2.5||||||UNICODE UTF-8
PID|1||12345^^^^PI||佐藤^花子||19751010|F
OBR|1|O1|F1|1^生化学^99XYZ|||20240301
OBX|1|NM|3D046000001920402^HbA1c^JC10||6.8|%^%^UCUM|4.6-6.2|H|||F";

    #[test]
    fn header_and_identity_failures_are_ar_or_ae_naming_the_place() {
        let (_tmp, share, _) = region();
        let user_a = principal(Role::Doctor, Some("1310000001"));
        let ack = share.import_hl7(&user_a, &msg("9999999999", ORU));
        assert_eq!(ack.code, AckCode::AR);
        assert_eq!(ack.issues[0].location.to_string(), "MSH-4");
        let ack = share.import_hl7(
            &user_a,
            &msg("1310000001", &ORU.replace("|P|2.5", "|T|2.5")),
        );
        assert_eq!((ack.code, ack.issues[0].code), (AckCode::AR, 202));
        let ack = share.import_hl7(
            &user_a,
            &msg("1310000001", &ORU.replace("ORU^R01", "QRY^A19")),
        );
        assert_eq!((ack.code, ack.issues[0].code), (AckCode::AR, 200));
        // another facility's user
        let other = principal(Role::Doctor, Some("1310000009"));
        let ack = share.import_hl7(&other, &msg("1310000001", ORU));
        assert_eq!(ack.code, AckCode::AR);
        assert!(ack.text.contains("its own messages"), "{}", ack.text);
        // missing PID
        let no_pid = ORU.replace("PID|1||12345^^^^PI||佐藤^花子||19751010|F\n", "");
        let ack = share.import_hl7(&user_a, &msg("1310000001", &no_pid));
        assert_eq!(ack.code, AckCode::AE);
        assert_eq!(ack.issues[0].location.segment, "PID");
        assert!(
            ack.er7()
                .contains("\rERR||PID|100^Segment sequence error^HL70357|E||||PID segment missing"),
            "{}",
            ack.er7()
        );
        // unlinked patient
        let ack = share.import_hl7(
            &user_a,
            &msg("1310000001", &ORU.replace("12345^^^^PI", "777^^^^PI")),
        );
        assert_eq!(ack.code, AckCode::AE);
        assert_eq!(ack.issues[0].location.to_string(), "PID-3");
        assert!(ack.text.contains("not linked"), "{}", ack.text);
        // a wrong link is refused
        let ack = share.import_hl7(
            &user_a,
            &msg("1310000001", &ORU.replace("19751010", "19751011")),
        );
        assert_eq!(ack.code, AckCode::AE);
        assert!(ack.text.contains("birth date 1975-10-11"), "{}", ack.text);
        // a malformed value: nothing is created
        let ack = share.import_hl7(
            &user_a,
            &msg("1310000001", &ORU.replace("||6.8|", "||high|")),
        );
        assert_eq!(ack.code, AckCode::AE);
        assert_eq!(ack.issues[0].location.to_string(), "OBX-5");
        assert!(ack.created.is_empty());
    }

    #[test]
    fn a_valid_message_reaches_the_clinical_record() {
        let (_tmp, share, rid) = region();
        // MSH-4 by a declared issuer; a regional administrator imports as the facility
        let admin = principal(Role::RegionalAdmin, None);
        let ack = share.import_hl7(&admin, &msg("HIS-A", ORU));
        assert_eq!(ack.facility.as_deref(), Some("1310000001"));
        assert_eq!(ack.patient.as_deref(), Some(rid.as_str()));
        assert_eq!(ack.code, AckCode::AA, "{ack:?}");
        assert_eq!(ack.created.len(), 1, "{ack:?}");
        assert!(ack.duplicate_of.is_none());
    }

    /// Observations stored, every version's current record counted once.
    fn observations(share: &Share) -> usize {
        let mut n = 0;
        let prefix = keys::text_prefix(keys::CLINICAL_DOC, &["Observation"]);
        share
            .index()
            .for_each_prefix(renkei_store::keys::CF_SHARE, &prefix, |_, _| {
                n += 1;
                Ok(true)
            })
            .unwrap();
        n
    }

    #[test]
    fn a_resend_is_answered_as_the_first_time_and_not_recorded_again() {
        let (_tmp, share, rid) = region();
        let user_a = principal(Role::Doctor, Some("1310000001"));
        let first = share.import_hl7(&user_a, &msg("1310000001", ORU));
        assert_eq!(first.code, AckCode::AA, "{first:?}");
        assert_eq!(observations(&share), 1);

        // the interface engine missed the ACK and sends the same bytes again
        let again = share.import_hl7(&user_a, &msg("1310000001", ORU));
        assert_eq!(again.code, AckCode::AA, "{again:?}");
        assert_eq!(again.created, first.created);
        assert_eq!(again.patient.as_deref(), Some(rid.as_str()));
        assert!(again.duplicate_of.is_some());
        assert!(
            again.text.starts_with("resend of MSH-10 M1"),
            "{}",
            again.text
        );
        assert!(again.er7().contains("|W|"), "{}", again.er7());
        assert_eq!(observations(&share), 1);

        // another user of the facility resending it: still one record
        let colleague = principal(Role::Nurse, Some("1310000001"));
        let third = share.import_hl7(&colleague, &msg("1310000001", ORU));
        assert!(third.duplicate_of.is_some(), "{third:?}");
        assert_eq!(observations(&share), 1);

        // someone of another facility learns nothing from the receipt
        let other = principal(Role::Doctor, Some("1310000009"));
        let refused = share.import_hl7(&other, &msg("1310000001", ORU));
        assert_eq!(refused.code, AckCode::AR);
        assert!(refused.created.is_empty() && refused.duplicate_of.is_none());

        // a new message under a used MSH-10 (a counter that wrapped) is recorded
        let other_value = share.import_hl7(
            &user_a,
            &msg("1310000001", &ORU.replace("||6.8|", "||7.1|")),
        );
        assert_eq!(other_value.code, AckCode::AA, "{other_value:?}");
        assert!(other_value.duplicate_of.is_none());
        assert_ne!(other_value.created, first.created);
        assert_eq!(observations(&share), 2);

        // four copies at once (an impatient sender): one is recorded, three wait for it
        let burst = ORU.replace("M1|", "M3|").replace("||6.8|", "||6.9|");
        let acks: Vec<Ack> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| share.import_hl7(&user_a, &msg("1310000001", &burst))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(acks.iter().all(|a| a.code == AckCode::AA), "{acks:?}");
        assert_eq!(acks.iter().filter(|a| a.duplicate_of.is_none()).count(), 1);
        assert!(acks.iter().all(|a| a.created == acks[0].created));
        assert_eq!(observations(&share), 3);

        // a facility administrator acts for the facility but does not record clinical
        // data: a resend gets no answer it could not have had
        let fa = principal(Role::FacilityAdmin, Some("1310000001"));
        let refused = share.import_hl7(&fa, &msg("1310000001", ORU));
        assert_eq!(refused.code, AckCode::AR, "{refused:?}");
        assert!(refused.created.is_empty() && refused.duplicate_of.is_none());

        // a message cut short by a store failure after its first resource: the receipt
        // says so, and the resend records the rest instead of answering the old AE
        let two = format!(
            "{}\nOBX|2|NM|3D010000001926101^Glucose^JC10||131|mg/dL^mg/dL^UCUM|73-109|H|||F",
            ORU.replace("M1|", "M4|")
        );
        let bytes = msg("1310000001", &two);
        let cut = Receipt {
            sha256: hex::encode(Sha256::digest(&bytes)),
            received_us: now_us(),
            complete: false,
            code: AckCode::AE,
            text: "store failed (1 of 2 resources were created before it)".into(),
            created: vec!["Observation/first".into()],
            detected_issues: vec![],
            patient: Some(rid.clone()),
        };
        let key = keys::text_key(keys::HL7_RECEIPT, &["1310000001", "HIS", "M4"]);
        share
            .transact(|tx| {
                tx.put(&key, &cut)?;
                Ok((
                    (),
                    principal(Role::RegionalAdmin, None).audit(
                        "test",
                        AuditEvent::PatientRecord,
                        "",
                    ),
                ))
            })
            .unwrap();
        let before = observations(&share);
        let finished = share.import_hl7(&user_a, &bytes);
        assert_eq!(finished.code, AckCode::AA, "{finished:?}");
        assert!(finished.duplicate_of.is_none());
        assert_eq!(finished.created.len(), 2, "{finished:?}");
        assert_eq!(finished.created[0], "Observation/first");
        assert_eq!(
            observations(&share),
            before + 1,
            "only the second OBX was recorded"
        );
        let again = share.import_hl7(&user_a, &bytes);
        assert!(again.duplicate_of.is_some(), "now complete: {again:?}");
        assert_eq!(again.created, finished.created);

        // a message that recorded nothing leaves no receipt: fixed and resent, it counts
        let unlinked = ORU
            .replace("M1|", "M2|")
            .replace("12345^^^^PI", "777^^^^PI");
        assert_eq!(
            share
                .import_hl7(&user_a, &msg("1310000001", &unlinked))
                .code,
            AckCode::AE
        );
        assert!(share.receipt(("1310000001", "HIS", "M2")).is_none());
    }

    #[test]
    fn adt_a08_is_answered_but_not_applied() {
        let (_tmp, share, rid) = region();
        let user_a = principal(Role::Nurse, Some("1310000001"));
        let body = "ADT^A08^ADT_A01|A1|P|2.5||||||UNICODE UTF-8
EVN||20240301
PID|1||12345^^^^PI||佐藤^花子^^^^^L^I~サトウ^ハナコ^^^^^L^P||19751011|F";
        let ack = share.import_hl7(&user_a, &msg("1310000001", body));
        assert_eq!(ack.code, AckCode::AA, "{ack:?}");
        assert_eq!(ack.not_stored[0]["birthDate"], "1975-10-11");
        assert_eq!(ack.not_stored[0]["id"], rid.as_str());
        assert_eq!(ack.issues[0].severity, map::Severity::Warning);
        assert!(
            ack.text.contains("not applied") && ack.text.contains("birth date 1975-10-11"),
            "{}",
            ack.text
        );
        assert!(
            ack.er7().contains("|W||||A08 patient update for"),
            "{}",
            ack.er7()
        );
    }

    /// The files of testdata/hl7 (README there): every encoding decodes to the same
    /// patient; the two malformed messages of the batch are AE (PID) and AR (MSH-9).
    #[test]
    fn the_test_files_decode_and_resolve() {
        let dir = std::env::current_dir().unwrap().join("../../testdata/hl7");
        let (_tmp, share, rid) = region();
        let admin = principal(Role::RegionalAdmin, None);
        let mut names = Vec::new();
        let mut acks = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "hl7"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 6);
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            for piece in parse::split_batch(&bytes) {
                let Piece::Message(m) = piece else {
                    panic!("stray segments in {f:?}")
                };
                if let Ok(msg) = Message::parse(&m) {
                    if let Some(pid) = msg.first("PID") {
                        let d = map::demographics(pid).unwrap();
                        names.push((d.family, d.given_kana, msg.header.charset));
                    }
                }
            }
            acks.extend(share.import_hl7_batch(&admin, &bytes));
        }
        assert_eq!(names.len(), 7, "messages with a readable PID");
        for (family, kana, charset) in &names {
            assert_eq!(
                (family.as_str(), kana.as_str()),
                ("佐藤", "ハナコ"),
                "{charset:?}"
            );
        }
        for set in [Charset::Iso2022Jp, Charset::ShiftJis, Charset::Utf8] {
            assert!(names.iter().any(|n| n.2 == Some(set)), "{set:?}");
        }
        assert_eq!(acks.len(), 9);
        let code = |id: &str| acks.iter().find(|a| a.control_id == id).map(|a| a.code);
        assert_eq!(code("LAB20240320-0002"), Some(AckCode::AE));
        assert_eq!(code("LAB20240320-0003"), Some(AckCode::AR));
        assert_eq!(code("ADT20240306-0001"), Some(AckCode::AA));
        for a in &acks {
            if !["LAB20240320-0002", "LAB20240320-0003"].contains(&a.control_id.as_str()) {
                assert_eq!(a.patient.as_deref(), Some(rid.as_str()), "{a:?}");
            }
        }
    }

    #[test]
    fn batches_answer_each_message() {
        let (_tmp, share, _) = region();
        let user_a = principal(Role::Doctor, Some("1310000001"));
        let mut body = b"FHS|^~\\&\rBHS|^~\\&\r".to_vec();
        body.extend(msg("1310000001", &ORU.replace("19751010", "19751011")));
        body.extend(b"\r\n");
        body.extend(
            b"MSH|^~\\&|HIS|1310000001|||2024||ORU^R01|M2|P|2.5\rOBX|1|NM|X^Y^99L||1|||||F\r",
        );
        body.extend(b"MSH|^~|broken\r");
        body.extend(b"BTS|3\rFTS|1\r");
        let acks = share.import_hl7_batch(&user_a, &body);
        assert_eq!(acks.len(), 3);
        assert_eq!(
            (acks[0].code, acks[0].control_id.as_str()),
            (AckCode::AE, "M1")
        );
        assert_eq!(
            (acks[1].code, acks[1].control_id.as_str()),
            (AckCode::AE, "M2")
        );
        assert_eq!(acks[1].issues[0].location.segment, "PID");
        assert_eq!(acks[2].code, AckCode::AR);
        assert_eq!(acks[2].issues[0].location.to_string(), "MSH-2");
        assert_eq!(share.import_hl7_batch(&user_a, b"hello").len(), 1);
    }
}
