//! The audit trail of instances received over C-STORE and STOW-RS.
//!
//! A record per stored instance would put every store behind the audit chain's lock (one
//! more synced write each), so the receiver counts what an association or a STOW-RS request
//! stored, by study, and [`Share::audit_received`] writes one record per study when it ends:
//! the DICOM Instances Transferred event (PS3.15 A.5.3.2, 110104) with action Create, as
//! the receiving side of a transfer records it, the patient as indexed (the regional ID when
//! linked), and one more record for the instances refused. Counts only: no UIDs of other
//! studies, no clinical content.

use std::collections::BTreeMap;

use crate::audit::{AuditEntry, AuditEvent};
use crate::error::Result;
use crate::policy::Actor;
use crate::Share;

/// What one association or request received, by study.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Received {
    /// Study Instance UID → (instances stored or replaced, instances already stored).
    studies: BTreeMap<String, (u64, u64)>,
    /// Instances refused, and the last reason.
    refused: u64,
    last_refusal: String,
}

impl Received {
    /// An instance of `study` was stored (`duplicate`: it was already, byte for byte).
    pub fn stored(&mut self, study: &str, duplicate: bool) {
        let counts = self.studies.entry(study.to_string()).or_default();
        if duplicate {
            counts.1 += 1;
        } else {
            counts.0 += 1;
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
        for (study, (new, duplicate)) in &received.studies {
            // the patient the study was indexed under: its regional ID once linked, else
            // issuer|local ID, as the read paths record it
            let patient = match self.store().study(study)? {
                Some(s) => match self.regional_for(&s.patient)? {
                    Some(p) => p.id,
                    None => format!("{}|{}", s.patient.issuer, s.patient.patient_id),
                },
                None => String::new(),
            };
            let mut e = actor.audit(action, AuditEvent::InstancesTransferred, &patient);
            e.detail = format!("study {study}: {new} instance(s) stored");
            if *duplicate > 0 {
                e.detail
                    .push_str(&format!(", {duplicate} already stored (unchanged)"));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_study() {
        let mut r = Received::default();
        assert!(r.is_empty());
        r.stored("1.2.3", false);
        r.stored("1.2.3", false);
        r.stored("1.2.3", true);
        r.stored("1.2.4", false);
        r.refused("cannot parse");
        assert_eq!(r.studies["1.2.3"], (2, 1));
        assert_eq!(r.studies["1.2.4"], (1, 0));
        assert_eq!((r.refused, r.last_refusal.as_str()), (1, "cannot parse"));
        assert!(!r.is_empty());
    }
}
