//! The audit trail: one record per access (who, facility, role, patient, what, when,
//! purpose, allowed or denied, break-glass), appended in the same RocksDB write batch as
//! the change it records, and hash-chained: each record holds the SHA-256 of the one
//! before, and the chain head (last sequence number and hash) is rewritten with every
//! append, so altering, removing or reordering any record — the last one included — is
//! detected by [`verify`].
//!
//! Records of changes are committed with a synced WAL, like the change. Records of reads
//! (a C-FIND, a WADO-RS retrieval, a FHIR read) are written without waiting for the fsync
//! (`Batch::commit_unsynced`): they survive a crash of the process, and the next synced
//! write of anything makes them durable; an fsync per query would cost more than the
//! query. The export format is FHIR R4 AuditEvent with DICOM audit codes (PS3.15 A.5,
//! DCM code system): 110112 Query, 110103 Instances Accessed, 110104 Instances
//! Transferred, 110110 Patient Record, 110113 Security Alert with subtype 110127
//! Emergency Override Started for break-glass, 110101 Audit Log Used.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use renkei_model::record::{decode, encode};
use renkei_store::index::{Batch, Index};
use renkei_store::keys::CF_AUDIT;

use crate::error::Result;
use crate::keys;
use crate::model::rfc3339;

/// The DICOM audit event (PS3.15 A.5.3; codes of the DCM code system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditEvent {
    /// 110112 Query (C-FIND, QIDO-RS, FHIR search).
    Query,
    /// 110103 DICOM Instances Accessed (WADO-RS, rendered).
    InstancesAccessed,
    /// 110104 DICOM Instances Transferred (C-MOVE, C-GET).
    InstancesTransferred,
    /// 110110 Patient Record (read or change of the patient's record, identity, consent,
    /// cards, check-in).
    PatientRecord,
    /// 110113 Security Alert, subtype 110127 Emergency Override Started (break-glass).
    EmergencyOverride,
    /// 110113 Security Alert (users, tokens, facilities changed).
    SecurityAlert,
    /// 110101 Audit Log Used.
    AuditLogUsed,
}

impl AuditEvent {
    /// (code, display) of the event type, and of the subtype if any.
    pub fn codes(
        self,
    ) -> (
        (&'static str, &'static str),
        Option<(&'static str, &'static str)>,
    ) {
        match self {
            AuditEvent::Query => (("110112", "Query"), None),
            AuditEvent::InstancesAccessed => (("110103", "DICOM Instances Accessed"), None),
            AuditEvent::InstancesTransferred => (("110104", "DICOM Instances Transferred"), None),
            AuditEvent::PatientRecord => (("110110", "Patient Record"), None),
            AuditEvent::EmergencyOverride => (
                ("110113", "Security Alert"),
                Some(("110127", "Emergency Override Started")),
            ),
            AuditEvent::SecurityAlert => (("110113", "Security Alert"), None),
            AuditEvent::AuditLogUsed => (("110101", "Audit Log Used"), None),
        }
    }
}

/// Why the access happened (HL7 v3 ActReason, the FHIR purposeOfEvent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// TREAT: treatment.
    Treatment,
    /// ETREAT: emergency treatment (break-glass).
    Emergency,
    /// HOPERAT: healthcare operations (administration).
    Administration,
}

impl Purpose {
    /// The ActReason code.
    pub fn code(self) -> &'static str {
        match self {
            Purpose::Treatment => "TREAT",
            Purpose::Emergency => "ETREAT",
            Purpose::Administration => "HOPERAT",
        }
    }
}

/// What the caller records (the chain adds sequence, time and hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// User id, or `AE:<title>` for a DICOM peer without a user.
    pub actor: String,
    /// User name or AE title.
    pub actor_name: String,
    /// The actor's facility code (empty when none).
    pub facility: String,
    /// The actor's role (empty for a DICOM peer without a user).
    pub role: String,
    /// The patient: regional ID, or `issuer|local ID` for unlinked data, empty when the
    /// access touched no one patient (a date-range search).
    pub patient: String,
    /// The operation, e.g. `C-FIND`, `WADO-RS study`, `FHIR read Patient`, `link`.
    pub action: String,
    /// The DICOM audit event.
    pub event: AuditEvent,
    /// Purpose.
    pub purpose: Purpose,
    /// Allowed (true) or denied.
    pub allowed: bool,
    /// Under break-glass.
    pub break_glass: bool,
    /// What was reached or why it was denied (no clinical content).
    pub detail: String,
}

/// One record of the chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number (1, 2, …).
    pub seq: u64,
    /// When (µs since the epoch).
    pub time_us: u64,
    /// What.
    pub entry: AuditEntry,
    /// SHA-256 of the previous record's stored bytes (zeros for the first).
    pub prev_hash: [u8; 32],
}

/// The chain's end, kept in memory by the writer and on disk under [`keys::AUDIT_HEAD`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChainHead {
    /// Last sequence number (0: empty chain).
    pub(crate) seq: u64,
    /// Hash of the last record's bytes.
    pub(crate) hash: [u8; 32],
}

impl ChainHead {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.seq.to_be_bytes().to_vec();
        v.extend_from_slice(&self.hash);
        v
    }

    fn decode(v: &[u8]) -> Option<ChainHead> {
        if v.len() != 40 {
            return None;
        }
        Some(ChainHead {
            seq: u64::from_be_bytes(v[..8].try_into().ok()?),
            hash: v[8..].try_into().ok()?,
        })
    }

    /// Read the head from the index.
    pub(crate) fn load(index: &Index) -> Result<ChainHead> {
        Ok(index
            .get_raw(CF_AUDIT, keys::AUDIT_HEAD)?
            .and_then(|v| ChainHead::decode(&v))
            .unwrap_or_default())
    }

    /// Put the record after this head into `batch`; returns the new head.
    pub(crate) fn append(
        &self,
        batch: &mut Batch<'_>,
        entry: AuditEntry,
        time_us: u64,
    ) -> Result<ChainHead> {
        let seq = self.seq + 1;
        let patient = entry.patient.clone();
        let rec = AuditRecord {
            seq,
            time_us,
            entry,
            prev_hash: self.hash,
        };
        let bytes = encode(&rec);
        let head = ChainHead {
            seq,
            hash: Sha256::digest(&bytes).into(),
        };
        batch.put_bytes(CF_AUDIT, &keys::audit_record(seq), &bytes)?;
        batch.put_bytes(CF_AUDIT, keys::AUDIT_HEAD, &head.encode())?;
        if !patient.is_empty() {
            batch.put_bytes(CF_AUDIT, &keys::audit_by_patient(&patient, seq), &[])?;
        }
        Ok(head)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// The first problem, naming the record; none when the chain is intact.
    pub problem: Option<String>,
}

/// Walk the whole chain and check every link and the head.
pub fn verify(index: &Index) -> Result<VerifyReport> {
    let mut prev = ChainHead::default();
    let mut problem = None;
    let mut records = 0;
    index.for_each_prefix(CF_AUDIT, &[keys::AUDIT_RECORD], |k, v| {
        records += 1;
        let Some(seq) = keys::audit_seq(k) else {
            problem = Some(format!("audit key {} is malformed", hex::encode(k)));
            return Ok(false);
        };
        let rec: AuditRecord = match decode(v) {
            Ok(r) => r,
            Err(e) => {
                problem = Some(format!("audit record {seq} is unreadable ({e}): altered"));
                return Ok(false);
            }
        };
        if rec.seq != seq || seq != prev.seq + 1 {
            problem = Some(format!(
                "audit record {seq} is out of sequence (after {}): records removed or moved",
                prev.seq
            ));
            return Ok(false);
        }
        if rec.prev_hash != prev.hash {
            problem = Some(format!(
                "audit record {} ({}) was altered: record {seq} does not chain to it",
                prev.seq,
                rfc3339_or_start(prev.seq, index),
            ));
            return Ok(false);
        }
        prev = ChainHead {
            seq,
            hash: Sha256::digest(v).into(),
        };
        Ok(true)
    })?;
    if problem.is_none() {
        let head = index.get_raw(CF_AUDIT, keys::AUDIT_HEAD)?;
        match head.as_deref().map(ChainHead::decode) {
            None if prev.seq == 0 => {}
            Some(Some(h)) if h == prev => {}
            Some(Some(h)) if h.seq != prev.seq => {
                problem = Some(format!(
                "the audit chain ends at record {} but its head names record {}: records removed",
                prev.seq, h.seq
            ))
            }
            _ => {
                problem = Some(format!(
                    "audit record {} ({}) was altered: it does not match the chain head",
                    prev.seq,
                    rfc3339_or_start(prev.seq, index)
                ))
            }
        }
    }
    Ok(VerifyReport { records, problem })
}

/// The time of record `seq` for messages, when it can still be read.
fn rfc3339_or_start(seq: u64, index: &Index) -> String {
    if seq == 0 {
        return "start of the chain".into();
    }
    index
        .get_raw(CF_AUDIT, &keys::audit_record(seq))
        .ok()
        .flatten()
        .and_then(|v| decode::<AuditRecord>(&v).ok())
        .map(|r| rfc3339(r.time_us))
        .unwrap_or_else(|| "unreadable".into())
}

/// Records about `patient`, oldest first, at most `limit`.
pub fn for_patient(index: &Index, patient: &str, limit: usize) -> Result<Vec<AuditRecord>> {
    let prefix = keys::text_prefix(keys::AUDIT_BY_PATIENT, &[patient]);
    let mut seqs = Vec::new();
    index.for_each_prefix(CF_AUDIT, &prefix, |k, _| {
        if let Ok(b) = <[u8; 8]>::try_from(&k[prefix.len()..]) {
            seqs.push(u64::from_be_bytes(b));
        }
        Ok(true)
    })?;
    let skip = seqs.len().saturating_sub(limit);
    let mut out = Vec::with_capacity(seqs.len() - skip);
    for seq in &seqs[skip..] {
        if let Some(v) = index.get_raw(CF_AUDIT, &keys::audit_record(*seq))? {
            if let Ok(r) = decode::<AuditRecord>(&v) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// The record as a FHIR R4 AuditEvent.
pub fn to_fhir(rec: &AuditRecord, node: &str) -> Value {
    const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
    let e = &rec.entry;
    let ((code, display), sub) = e.event.codes();
    let action = match e.event {
        AuditEvent::PatientRecord if !e.action.starts_with("FHIR read") => "U",
        // the receiving side of a transfer (PS3.15 A.5.3.2): Create, Update when it only
        // replaced instances, Read when it held them all already (`received` module)
        AuditEvent::InstancesTransferred
            if e.action.starts_with("C-STORE") || e.action.starts_with("STOW-RS") =>
        {
            if e.action.ends_with("(replaced)") {
                "U"
            } else if e.action.ends_with("(already held)") {
                "R"
            } else {
                "C"
            }
        }
        AuditEvent::Query => "E",
        _ => "R",
    };
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": rec.seq.to_string(),
        "type": {"system": DCM, "code": code, "display": display},
        "action": action,
        "recorded": rfc3339(rec.time_us),
        // 0 success, 4 minor failure: a denial is the system working, not failing
        "outcome": if e.allowed { "0" } else { "4" },
        "purposeOfEvent": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": e.purpose.code()
        }]}],
        "agent": [{
            "who": {"identifier": {"value": e.actor}, "display": e.actor_name},
            "requestor": true,
            "role": [{"text": if e.role.is_empty() { "DICOM application" } else { e.role.as_str() }}]
        }],
        "source": {"observer": {"display": node}},
        "extension": [{
            "url": "http://renkei.invalid/fhir/StructureDefinition/audit-action",
            "valueString": e.action
        }]
    });
    // FHIR forbids empty strings: optional elements only when there is something to say
    if !e.detail.is_empty() {
        ev["outcomeDesc"] = json!(e.detail);
    }
    if !e.facility.is_empty() {
        ev["agent"][0]["location"] = json!({"identifier": {"value": e.facility}});
    }
    if e.actor_name.is_empty() {
        ev["agent"][0]["who"] = json!({"identifier": {"value": e.actor}});
    }
    if let Some((c, d)) = sub {
        ev["subtype"] = json!([{"system": DCM, "code": c, "display": d}]);
    }
    if e.break_glass {
        ev["purposeOfEvent"][0]["coding"][0]["code"] = json!("ETREAT");
    }
    if !e.patient.is_empty() {
        ev["entity"] = json!([{
            "what": {"identifier": {"value": e.patient}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }]);
    }
    ev
}
