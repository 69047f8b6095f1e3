//! Cards, consent, check-in and break-glass: the moments of care that open (or close)
//! access.
//!
//! - A card number resolves to the regional ID while the card is active; reissuing makes
//!   the old card "replaced", revoking makes it "revoked": both are refused with a reason.
//! - Presenting the card at a facility (check-in) opens a treating relationship between
//!   the facility and the patient for [`ShareConfig::relationship_secs`](crate::ShareConfig).
//! - Consent withdrawal stops all sharing at once (the policy reads consent on every
//!   access); the data stays with the facility that produced it.
//! - Break-glass: an EMS crew member states a reason and gets access to
//!   the patient's emergency summary for [`ShareConfig::break_glass_secs`](crate::ShareConfig),
//!   recorded as an Emergency Override in the audit trail.

use serde::{Deserialize, Serialize};

use renkei_store::keys::CF_SHARE;

use crate::error::{Result, ShareError};
use crate::identity::actor_id;
use crate::ids::{new_card_number, parse_card_number};
use crate::model::{
    now_us, rfc3339, BreakGlass, Card, CardStatus, RegionalPatient, Relationship, Role,
};
use crate::policy::{Actor, Category};
use crate::{keys, AuditEvent, Purpose, Share};

/// A consent change, as the API takes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConsentChange {
    /// Sharing allowed.
    pub given: bool,
    /// Facilities excluded.
    #[serde(default)]
    pub excluded_facilities: Vec<String>,
    /// Categories excluded ([`Category::NAMES`]).
    #[serde(default)]
    pub excluded_categories: Vec<String>,
}

/// What a check-in answers.
#[derive(Debug, Clone, Serialize)]
pub struct CheckIn {
    /// The patient.
    pub patient: RegionalPatient,
    /// The relationship opened (or extended).
    pub relationship: Relationship,
}

fn clinical_or_front_desk(actor: &Actor, what: &str) -> Result<String> {
    match actor {
        Actor::User(p) if p.role.is_clinical() || p.role == Role::FacilityAdmin => p
            .facility
            .clone()
            .ok_or_else(|| ShareError::Forbidden("the user belongs to no facility".into())),
        Actor::User(p) => Err(ShareError::Forbidden(format!(
            "role {} does not {what}",
            p.role.as_str()
        ))),
        Actor::Ae { .. } => Err(ShareError::Forbidden(format!("DICOM peers do not {what}"))),
    }
}

impl Share {
    /// The regional patient of an active card; 400 malformed, 404 unknown, 409 replaced or
    /// revoked.
    pub fn resolve_card(&self, number: &str) -> Result<RegionalPatient> {
        let number =
            parse_card_number(number).map_err(|e| ShareError::BadRequest(e.to_string()))?;
        let card: Card = self
            .get(&keys::text_key(keys::CARD, &[&number]))?
            .ok_or_else(|| ShareError::NotFound(format!("unknown card {number}")))?;
        match card.status {
            CardStatus::Active => self.patient(&card.patient),
            CardStatus::Replaced => Err(ShareError::Conflict(format!(
                "card {number} was replaced by a newer card"
            ))),
            CardStatus::Revoked => Err(ShareError::Conflict(format!("card {number} was revoked"))),
        }
    }

    /// The patient a typed reference names: a card number (16 digits) or a regional ID.
    pub fn resolve_patient_ref(&self, reference: &str) -> Result<RegionalPatient> {
        let digits = reference.chars().filter(char::is_ascii_digit).count();
        if digits == crate::ids::CARD_NUMBER_LEN {
            self.resolve_card(reference)
        } else {
            self.patient(reference)
        }
    }

    /// The cards of a patient.
    pub fn cards(&self, id: &str) -> Result<Vec<Card>> {
        let prefix = keys::text_prefix(keys::CARD_REV, &[id]);
        let mut numbers = Vec::new();
        self.index().for_each_prefix(CF_SHARE, &prefix, |k, _| {
            numbers.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
            Ok(true)
        })?;
        let mut out = Vec::new();
        for n in numbers {
            if let Some(c) = self.get::<Card>(&keys::text_key(keys::CARD, &[&n]))? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Issue a card (a reissue: every active card of the patient becomes "replaced").
    pub fn issue_card(&self, actor: &Actor, id: &str) -> Result<Card> {
        self.may_manage_patient(actor)?;
        let p = self.patient(id)?;
        let old: Vec<Card> = self
            .cards(&p.id)?
            .into_iter()
            .filter(|c| c.status == CardStatus::Active)
            .collect();
        let by = actor_id(actor);
        self.transact(|tx| {
            let card = Card {
                number: new_card_number(),
                patient: p.id.clone(),
                issued_us: now_us(),
                status: CardStatus::Active,
            };
            if tx
                .get::<Card>(&keys::text_key(keys::CARD, &[&card.number]))?
                .is_some()
            {
                // 10^14 numbers: a collision is astronomically rare, but never reuse one
                return Err(ShareError::Conflict(
                    "card number collision: try again".into(),
                ));
            }
            for mut c in old.clone() {
                c.status = CardStatus::Replaced;
                tx.put(&keys::text_key(keys::CARD, &[&c.number]), &c)?;
            }
            tx.put(&keys::text_key(keys::CARD, &[&card.number]), &card)?;
            tx.put_raw(&keys::text_key(keys::CARD_REV, &[&p.id, &card.number]), &[])?;
            tx.history(&p.id, &by, "card-issue", &card.number)?;
            let mut e = actor.audit("card issue", AuditEvent::PatientRecord, &p.id);
            e.purpose = Purpose::Administration;
            e.detail = format!("card {} issued, {} replaced", card.number, old.len());
            Ok((card, e))
        })
    }

    /// Revoke a card.
    pub fn revoke_card(&self, actor: &Actor, number: &str) -> Result<Card> {
        self.may_manage_patient(actor)?;
        let number =
            parse_card_number(number).map_err(|e| ShareError::BadRequest(e.to_string()))?;
        let mut card: Card = self
            .get(&keys::text_key(keys::CARD, &[&number]))?
            .ok_or_else(|| ShareError::NotFound(format!("unknown card {number}")))?;
        let by = actor_id(actor);
        card.status = CardStatus::Revoked;
        self.transact(|tx| {
            tx.put(&keys::text_key(keys::CARD, &[&number]), &card)?;
            tx.history(&card.patient, &by, "card-revoke", &number)?;
            let mut e = actor.audit("card revoke", AuditEvent::PatientRecord, &card.patient);
            e.purpose = Purpose::Administration;
            e.detail = format!("card {number} revoked");
            Ok((card.clone(), e))
        })
    }

    /// Change a patient's consent.
    pub fn set_consent(
        &self,
        actor: &Actor,
        id: &str,
        change: ConsentChange,
    ) -> Result<RegionalPatient> {
        self.may_manage_patient(actor)?;
        for c in &change.excluded_categories {
            if !Category::NAMES.contains(&c.as_str()) {
                return Err(ShareError::BadRequest(format!(
                    "unknown category {c:?}: expected one of {}",
                    Category::NAMES.join(", ")
                )));
            }
        }
        for f in &change.excluded_facilities {
            if self.facility(f).is_none() {
                return Err(ShareError::NotFound(format!("no facility {f}")));
            }
        }
        let mut p = self.patient(id)?;
        let by = actor_id(actor);
        self.transact(|tx| {
            let now = now_us();
            p.consent.given = change.given;
            p.consent.recorded_us = now;
            p.consent.recorded_by = by.clone();
            p.consent.excluded_facilities = change.excluded_facilities.clone();
            p.consent.excluded_categories = change.excluded_categories.clone();
            p.version += 1;
            p.updated_us = now;
            tx.put(&keys::text_key(keys::PATIENT, &[&p.id]), &p)?;
            let detail = format!(
                "{}; excluded facilities {:?}, categories {:?}",
                if change.given { "given" } else { "withdrawn" },
                change.excluded_facilities,
                change.excluded_categories
            );
            tx.history(&p.id, &by, "consent", &detail)?;
            let mut e = actor.audit("consent", AuditEvent::PatientRecord, &p.id);
            e.purpose = Purpose::Administration;
            e.detail = detail;
            Ok((p.clone(), e))
        })
    }

    /// Present a card at the actor's facility: open (or extend) the treating relationship.
    pub fn checkin(&self, actor: &Actor, card: &str) -> Result<CheckIn> {
        let facility = clinical_or_front_desk(actor, "check patients in")?;
        let patient = match self.resolve_card(card) {
            Ok(p) => p,
            Err(e) => {
                let mut a = actor.audit("check-in", AuditEvent::PatientRecord, "");
                a.allowed = false;
                a.detail = e.to_string();
                self.audit_read(a)?;
                return Err(e);
            }
        };
        let by = actor_id(actor);
        let now = now_us();
        let rel = Relationship {
            facility: facility.clone(),
            patient: patient.id.clone(),
            opened_us: now,
            until_us: now.saturating_add(self.config.relationship_secs.saturating_mul(1_000_000)),
            opened_by: by,
        };
        self.transact(|tx| {
            tx.put(
                &keys::text_key(keys::RELATIONSHIP, &[&facility, &patient.id]),
                &rel,
            )?;
            let mut e = actor.audit("check-in", AuditEvent::PatientRecord, &patient.id);
            e.detail = format!(
                "treating relationship of {facility} until {}",
                rfc3339(rel.until_us)
            );
            Ok((
                CheckIn {
                    patient: patient.clone(),
                    relationship: rel.clone(),
                },
                e,
            ))
        })
    }

    /// Break the glass: grant the actor emergency access to the patient (card number or
    /// regional ID) for the configured time, with the stated reason.
    pub fn break_glass(&self, actor: &Actor, reference: &str, reason: &str) -> Result<BreakGlass> {
        let Actor::User(p) = actor else {
            return Err(ShareError::Forbidden(
                "DICOM peers do not break the glass".into(),
            ));
        };
        if p.role != Role::EmsCrew {
            // clinicians reach patients through check-in; the override is for the crew
            // that has no relationship to open. A refused override is a security event.
            let mut e = actor.audit("break-glass", AuditEvent::EmergencyOverride, "");
            e.purpose = Purpose::Emergency;
            e.allowed = false;
            e.detail = format!("refused: role {}", p.role.as_str());
            self.audit_read(e)?;
            return Err(ShareError::Forbidden(format!(
                "role {} does not break the glass: check the patient in with the card",
                p.role.as_str()
            )));
        }
        let reason = reason.trim();
        if reason.chars().count() < 4 {
            return Err(ShareError::BadRequest(
                "break-glass needs a stated reason (at least a few words)".into(),
            ));
        }
        let patient = self.resolve_patient_ref(reference)?;
        let now = now_us();
        let grant = BreakGlass {
            user_id: p.user_id.clone(),
            patient: patient.id.clone(),
            reason: reason.to_string(),
            started_us: now,
            until_us: now.saturating_add(self.config.break_glass_secs.saturating_mul(1_000_000)),
        };
        self.transact(|tx| {
            tx.put(
                &keys::text_key(keys::BREAK_GLASS, &[&p.user_id, &patient.id]),
                &grant,
            )?;
            let mut e = actor.audit("break-glass", AuditEvent::EmergencyOverride, &patient.id);
            e.purpose = Purpose::Emergency;
            e.break_glass = true;
            e.detail = format!("until {}: {reason}", rfc3339(grant.until_us));
            Ok((grant.clone(), e))
        })
    }

    fn may_manage_patient(&self, actor: &Actor) -> Result<()> {
        match actor {
            Actor::User(p)
                if matches!(
                    p.role,
                    Role::RegionalAdmin | Role::FacilityAdmin | Role::Doctor | Role::Nurse
                ) =>
            {
                Ok(())
            }
            Actor::User(p) => Err(ShareError::Forbidden(format!(
                "role {} does not manage patients' cards or consent",
                p.role.as_str()
            ))),
            Actor::Ae { .. } => Err(ShareError::Forbidden(
                "DICOM peers do not manage patients".into(),
            )),
        }
    }
}
