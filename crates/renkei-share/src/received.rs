//! The audit trail of instances received over C-STORE and STOW-RS.
//!
//! A record per stored instance would put every store behind the audit chain's lock (one
//! more synced write each), so the receiver counts what an association or a STOW-RS request
//! stored, by study, and [`Share::audit_received`] writes one record per study when it ends:
//! the DICOM Instances Transferred event (PS3.15 A.5.3.2, 110104) as the receiving side
//! records it — action Create when it stored new instances, Update when it only replaced
//! some, Read when it already held every one unchanged (the action text says which:
//! `C-STORE`, `C-STORE (replaced)`, `C-STORE (already held)`) — the patient as indexed (the
//! regional ID when linked), and one more record for the instances refused. Counts only: no
//! UIDs of other studies, no clinical content.

use std::collections::BTreeMap;

use renkei_store::IngestOutcome;

use crate::audit::{AuditEntry, AuditEvent};
use crate::error::Result;
use crate::policy::Actor;
use crate::Share;

/// What one association or request received, by study.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Received {
    /// Study Instance UID → instances stored new, already held unchanged, replaced.
    studies: BTreeMap<String, Counts>,
    /// Instances refused, and the last reason.
    refused: u64,
    last_refusal: String,
}

/// What happened to the instances of one study.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    new: u64,
    unchanged: u64,
    replaced: u64,
}

impl Received {
    /// An instance of `study` was stored with this outcome.
    pub fn stored(&mut self, study: &str, outcome: IngestOutcome) {
        let c = self.studies.entry(study.to_string()).or_default();
        match outcome {
            IngestOutcome::Stored => c.new += 1,
            IngestOutcome::Duplicate => c.unchanged += 1,
            IngestOutcome::Replaced => c.replaced += 1,
        }
    }

    /// An instance was refused, for `why`.
    pub fn refused(&mut self, why: &str) {
        self.refused += 1;
        self.last_refusal = why.to_string();
    }

    /// Nothing was received.
    pub fn is_empty(&self) -> bool {
        self.studies.is_empty() && self.refused == 0
    }
}

impl Share {
    /// Record what `actor` sent in one association or request (module docs): one record per
    /// study, one for the refusals, chained in one synced commit.
    pub fn audit_received(&self, actor: &Actor, action: &str, received: &Received) -> Result<()> {
        if received.is_empty() {
            return Ok(());
        }
        let mut entries: Vec<AuditEntry> = Vec::with_capacity(received.studies.len() + 1);
        for (study, c) in &received.studies {
            // the patient the study was indexed under: its regional ID once linked, else
            // issuer|local ID, as the read paths record it; a lookup that fails costs the
            // record its patient, not the record
            let patient = self.patient_of_study(study).unwrap_or_else(|e| {
                tracing::warn!(error = %e, study, "audit of received instances: patient unknown");
                String::new()
            });
            let action = if c.new > 0 {
                action.to_string()
            } else if c.replaced > 0 {
                format!("{action} (replaced)")
            } else {
                format!("{action} (already held)")
            };
            let mut e = actor.audit(&action, AuditEvent::InstancesTransferred, &patient);
            e.detail = format!("study {study}: {} instance(s) stored", c.new);
            if c.unchanged > 0 {
                e.detail
                    .push_str(&format!(", {} already stored (unchanged)", c.unchanged));
            }
            if c.replaced > 0 {
                e.detail
                    .push_str(&format!(", {} replaced (changed content)", c.replaced));
            }
            entries.push(e);
        }
        if received.refused > 0 {
            let mut e = actor.audit(action, AuditEvent::InstancesTransferred, "");
            e.allowed = false;
            e.detail = format!(
                "{} instance(s) not stored; last reason: {}",
                received.refused, received.last_refusal
            );
            entries.push(e);
        }
        self.transact_many(|_| Ok(((), entries)))
    }

    /// The regional ID of a study's patient, else `issuer|local ID`; empty when the study
    /// is not indexed.
    fn patient_of_study(&self, study: &str) -> Result<String> {
        Ok(match self.store().study(study)? {
            Some(s) => match self.regional_for(&s.patient)? {
                Some(p) => p.id,
                None => format!("{}|{}", s.patient.issuer, s.patient.patient_id),
            },
            None => String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_study() {
        let mut r = Received::default();
        assert!(r.is_empty());
        r.stored("1.2.3", IngestOutcome::Stored);
        r.stored("1.2.3", IngestOutcome::Stored);
        r.stored("1.2.3", IngestOutcome::Duplicate);
        r.stored("1.2.4", IngestOutcome::Replaced);
        r.refused("cannot parse");
        let c = |new, unchanged, replaced| Counts {
            new,
            unchanged,
            replaced,
        };
        assert_eq!(r.studies["1.2.3"], c(2, 1, 0));
        assert_eq!(r.studies["1.2.4"], c(0, 0, 1));
        assert_eq!((r.refused, r.last_refusal.as_str()), (1, "cannot parse"));
        assert!(!r.is_empty());
    }
}
