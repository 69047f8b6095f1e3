//! The access policy: one function, [`Share::decide`], asked by every read path (C-FIND,
//! C-MOVE, C-GET, QIDO-RS, WADO-RS, FHIR). The table it implements is `docs/ACCESS.md`.
//!
//! In order, the first rule that applies decides:
//! 1. no facility configured: single-site PACS, everything is allowed;
//! 2. administrators (regional, facility) read no clinical content;
//! 3. a facility always sees its own data (and its own patients' demographics);
//! 4. another facility's data that is not linked to a regional patient: denied;
//! 5. the patient's consent must be given, and not exclude the reader's facility or the
//!    category — withdrawal stops all sharing, break-glass included;
//! 6. an EMS crew reads the emergency summary (and the patient's demographics, to confirm
//!    who it is) only, and only under an active break-glass grant for that patient;
//! 7. the reader's facility must have an open, unexpired treating relationship with the
//!    patient (opened by presenting the card).

use std::collections::HashMap;

use serde::Serialize;

use renkei_model::PatientKey;

use crate::error::Result;
use crate::model::{now_us, BreakGlass, RegionalPatient, Relationship, Role};
use crate::{keys, AuditEntry, AuditEvent, Purpose, Share};

/// A signed-in user (from a bearer token, or a DICOM User Identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// User id.
    pub user_id: String,
    /// Name.
    pub name: String,
    /// Facility code (none for regional administrators).
    pub facility: Option<String>,
    /// Role.
    pub role: Role,
    /// The token's id (for "sign out").
    pub token_id: String,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A user.
    User(Principal),
    /// A DICOM peer that sent no user identity: answered as its facility's workstation.
    Ae {
        /// Calling AE title.
        title: String,
        /// Its facility, if it belongs to one.
        facility: Option<String>,
    },
}

impl Actor {
    /// The actor's facility.
    pub fn facility(&self) -> Option<&str> {
        match self {
            Actor::User(p) => p.facility.as_deref(),
            Actor::Ae { facility, .. } => facility.as_deref(),
        }
    }

    /// The user's role (none for an AE).
    pub fn role(&self) -> Option<Role> {
        match self {
            Actor::User(p) => Some(p.role),
            Actor::Ae { .. } => None,
        }
    }

    /// An audit entry of this actor, to be completed by the caller.
    pub fn audit(&self, action: &str, event: AuditEvent, patient: &str) -> AuditEntry {
        let (actor, name, role) = match self {
            Actor::User(p) => (
                p.user_id.clone(),
                p.name.clone(),
                p.role.as_str().to_string(),
            ),
            Actor::Ae { title, .. } => (format!("AE:{title}"), title.clone(), String::new()),
        };
        AuditEntry {
            actor,
            actor_name: name,
            facility: self.facility().unwrap_or_default().to_string(),
            role,
            patient: patient.to_string(),
            action: action.to_string(),
            event,
            purpose: Purpose::Treatment,
            allowed: true,
            break_glass: false,
            detail: String::new(),
        }
    }
}

/// What kind of information is read (consent may exclude a category).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Images and their index (DICOM).
    Imaging,
    /// Name, birth date, sex, address, identifiers.
    Demographics,
    /// Diagnoses.
    Diagnosis,
    /// Prescriptions.
    Medication,
    /// Laboratory results.
    Lab,
    /// Allergies.
    Allergy,
    /// Visits.
    Encounter,
    /// Letters and reports.
    Document,
    /// The emergency summary.
    Summary,
}

impl Category {
    /// Every category, as consent records and the API spell it.
    pub const NAMES: &[&str] = &[
        "imaging",
        "demographics",
        "diagnosis",
        "medication",
        "lab",
        "allergy",
        "encounter",
        "document",
        "summary",
    ];

    /// The spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Imaging => "imaging",
            Category::Demographics => "demographics",
            Category::Diagnosis => "diagnosis",
            Category::Medication => "medication",
            Category::Lab => "lab",
            Category::Allergy => "allergy",
            Category::Encounter => "encounter",
            Category::Document => "document",
            Category::Summary => "summary",
        }
    }
}

/// The answer of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Which rule decided (for the audit record and a 403's message).
    pub reason: &'static str,
    /// Allowed under a break-glass grant.
    pub break_glass: bool,
}

impl Decision {
    fn allow(reason: &'static str) -> Decision {
        Decision {
            allowed: true,
            reason,
            break_glass: false,
        }
    }

    fn deny(reason: &'static str) -> Decision {
        Decision {
            allowed: false,
            reason,
            break_glass: false,
        }
    }
}

/// What is read: whose, from which facility, of which kind.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The regional patient, when the data is linked to one.
    pub patient: Option<&'a RegionalPatient>,
    /// The facility the data comes from (for images: the issuer's facility).
    pub owner: Option<&'a str>,
    /// The kind.
    pub category: Category,
}

impl Share {
    /// The policy (module docs).
    pub fn decide(&self, actor: &Actor, subject: Subject<'_>) -> Result<Decision> {
        if self.single_site() {
            return Ok(Decision::allow(
                "single-site node: every reader sees everything",
            ));
        }
        let role = actor.role();
        if matches!(role, Some(Role::RegionalAdmin | Role::FacilityAdmin)) {
            return Ok(Decision::deny(
                "administrators do not read clinical content",
            ));
        }
        let facility = actor.facility();
        if role != Some(Role::EmsCrew) && facility.is_some() && subject.owner == facility {
            return Ok(Decision::allow("own facility's data"));
        }
        let Some(patient) = subject.patient else {
            return Ok(Decision::deny("unlinked data of another facility"));
        };
        let consent = &patient.consent;
        if !consent.given {
            return Ok(Decision::deny("the patient has not consented to sharing"));
        }
        if facility.is_some_and(|f| consent.excluded_facilities.iter().any(|x| x == f)) {
            return Ok(Decision::deny(
                "the patient's consent excludes this facility",
            ));
        }
        if consent
            .excluded_categories
            .iter()
            .any(|c| c == subject.category.as_str())
        {
            return Ok(Decision::deny(
                "the patient's consent excludes this category",
            ));
        }
        if role == Some(Role::EmsCrew) {
            // the summary, and who the patient is (to confirm the identity on the scene)
            if !matches!(subject.category, Category::Summary | Category::Demographics) {
                return Ok(Decision::deny("EMS crews read the emergency summary only"));
            }
            let Actor::User(p) = actor else {
                return Ok(Decision::deny("break-glass required"));
            };
            return Ok(match self.active_break_glass(&p.user_id, &patient.id)? {
                Some(_) => Decision {
                    allowed: true,
                    reason: "emergency access (break-glass)",
                    break_glass: true,
                },
                None => Decision::deny("break-glass required: state a reason first"),
            });
        }
        let Some(facility) = facility else {
            return Ok(Decision::deny("the reader belongs to no facility"));
        };
        Ok(match self.open_relationship(facility, &patient.id)? {
            Some(_) => Decision::allow("consent and an open treating relationship"),
            None => {
                Decision::deny("no open treating relationship: check the patient in with the card")
            }
        })
    }

    /// The facility's relationship with the patient, when open now.
    pub fn open_relationship(&self, facility: &str, patient: &str) -> Result<Option<Relationship>> {
        let r: Option<Relationship> =
            self.get(&keys::text_key(keys::RELATIONSHIP, &[facility, patient]))?;
        Ok(r.filter(|r| r.until_us > now_us()))
    }

    /// The user's break-glass grant for the patient, when active now.
    pub fn active_break_glass(&self, user_id: &str, patient: &str) -> Result<Option<BreakGlass>> {
        let g: Option<BreakGlass> =
            self.get(&keys::text_key(keys::BREAK_GLASS, &[user_id, patient]))?;
        Ok(g.filter(|g| g.until_us > now_us()))
    }

    /// A filter of image-index entries for one request of `actor` (C-FIND, QIDO-RS,
    /// C-MOVE/C-GET, WADO-RS): decides once per patient key and counts what it withheld.
    pub fn image_scope(&self, actor: Actor) -> ImageScope<'_> {
        ImageScope {
            share: self,
            single_site: self.single_site(),
            actor,
            seen: HashMap::new(),
            patients: Vec::new(),
            admitted: 0,
            withheld: 0,
            last_reason: "",
            break_glass: false,
        }
    }
}

/// The policy applied to the image index for one request ([`Share::image_scope`]).
#[derive(Debug)]
pub struct ImageScope<'a> {
    share: &'a Share,
    single_site: bool,
    actor: Actor,
    seen: HashMap<PatientKey, (bool, Option<String>)>,
    /// Distinct patients touched (regional ID, or issuer|local ID), up to two.
    patients: Vec<String>,
    /// Entries let through.
    pub admitted: u64,
    /// Entries withheld.
    pub withheld: u64,
    /// The reason of the last denial.
    pub last_reason: &'static str,
    /// Some entry was let through under break-glass.
    pub break_glass: bool,
}

impl ImageScope<'_> {
    /// The actor.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Whether data of this patient key may be read; also yields its regional ID when
    /// linked.
    pub fn admit(&mut self, key: &PatientKey) -> Result<(bool, Option<String>)> {
        if self.single_site {
            // a single-site node asks nothing of the regional index and keeps no
            // per-patient state: a C-FIND of 100,000 patients stays as fast and as small
            // as without sharing
            if self.patients.len() < 2 {
                let who = format!("{}|{}", key.issuer, key.patient_id);
                if !self.patients.contains(&who) {
                    self.patients.push(who);
                }
            }
            self.count(true);
            return Ok((true, None));
        }
        if let Some(v) = self.seen.get(key) {
            let v = v.clone();
            self.count(v.0);
            return Ok(v);
        }
        let patient = self.share.regional_for(key)?;
        if self.patients.len() < 2 {
            let who = match &patient {
                Some(p) => p.id.clone(),
                None => format!("{}|{}", key.issuer, key.patient_id),
            };
            if !self.patients.contains(&who) {
                self.patients.push(who);
            }
        }
        let owner = self.share.facility_of_issuer(&key.issuer);
        let d = self.share.decide(
            &self.actor,
            Subject {
                patient: patient.as_ref(),
                owner: owner.as_deref(),
                category: Category::Imaging,
            },
        )?;
        if !d.allowed {
            self.last_reason = d.reason;
        }
        self.break_glass |= d.break_glass;
        let v = (d.allowed, patient.map(|p| p.id));
        self.seen.insert(key.clone(), v.clone());
        self.count(v.0);
        Ok(v)
    }

    fn count(&mut self, allowed: bool) {
        if allowed {
            self.admitted += 1;
        } else {
            self.withheld += 1;
        }
    }

    /// Record the request in the audit trail: one record, allowed when anything was
    /// admitted or nothing was withheld, with counts in its detail. `patient` names the
    /// patient asked for; when empty, the one patient the answer touched, if only one.
    pub fn finish(&self, action: &str, event: AuditEvent, patient: &str) -> Result<()> {
        let patient = match (patient, self.patients.as_slice()) {
            ("", [only]) => only.as_str(),
            (p, _) => p,
        };
        let mut e = self.actor.audit(action, event, patient);
        e.allowed = self.admitted > 0 || self.withheld == 0;
        e.break_glass = self.break_glass;
        e.detail = if self.withheld == 0 {
            format!("{} matches", self.admitted)
        } else {
            format!(
                "{} matches, {} withheld: {}",
                self.admitted, self.withheld, self.last_reason
            )
        };
        self.share.audit_read(e)
    }
}
