//! The regional patient index: enrolment issues a regional ID; cross-references map each
//! facility's local patient ID (with its issuer) to it, like IHE PIX. Links, unlinks and
//! merges keep their history ([`IdentityEvent`]); images are never touched: the image index
//! stays keyed by (issuer, local ID), and every read path maps through the
//! cross-references, so linking makes earlier images appear under the regional ID at once.

use serde::{Deserialize, Serialize};

use dicom_dictionary_std::tags;
use renkei_model::query::{Key, Matcher, Query};
use renkei_model::{PatientKey, PatientRecord};
use renkei_store::keys::{CF_PATIENT, CF_SHARE};

use crate::error::{Result, ShareError};
use crate::ids::{parse_regional_id, regional_id};
use crate::model::{now_us, Consent, IdentityEvent, RegionalPatient, Role};
use crate::policy::Actor;
use crate::{keys, AuditEvent, Purpose, Share, Tx};

/// A local patient ID with its issuer (a facility code, or an issuer a facility declared).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LocalId {
    /// Issuer of Patient ID.
    pub issuer: String,
    /// Patient ID at that issuer.
    pub patient_id: String,
}

/// A patient to enrol, as the API takes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewPatient {
    /// Family name (kanji).
    pub family: String,
    /// Given name (kanji).
    pub given: String,
    /// Family name (kana).
    #[serde(default)]
    pub family_kana: String,
    /// Given name (kana).
    #[serde(default)]
    pub given_kana: String,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// male | female | other | unknown.
    pub sex: String,
    /// Address.
    #[serde(default)]
    pub address: String,
    /// Phone.
    #[serde(default)]
    pub phone: String,
    /// Consent to share, recorded now. Enrolment without it is refused.
    pub consent: bool,
    /// Local IDs to link at once.
    #[serde(default)]
    pub local_ids: Vec<LocalId>,
}

/// Image data not linked to any regional patient.
#[derive(Debug, Clone, Serialize)]
pub struct Unlinked {
    /// The local ID.
    pub local: LocalId,
    /// The facility it belongs to, if known.
    pub facility: Option<String>,
    /// Patient name as the images carry it.
    pub name: String,
    /// Birth date as the images carry it.
    pub birth_date: String,
}

/// Longest chain of merges followed (a loop would be a bug; this bounds it).
const MAX_MERGE_HOPS: usize = 8;

fn check_local(l: &LocalId) -> Result<LocalId> {
    let issuer = l.issuer.trim().to_string();
    let patient_id = l.patient_id.trim().to_string();
    if issuer.is_empty()
        || patient_id.is_empty()
        || issuer.contains('\0')
        || patient_id.contains('\0')
    {
        return Err(ShareError::BadRequest(
            "a local ID needs an issuer and a patient ID".into(),
        ));
    }
    if patient_id.chars().count() > 64 {
        return Err(ShareError::BadRequest(format!(
            "local patient ID {patient_id:?} is longer than 64 characters (PS3.5 LO)"
        )));
    }
    Ok(LocalId { issuer, patient_id })
}

fn check_date(d: &str) -> Result<String> {
    let d = d.trim();
    let b = d.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&d[5..7].parse::<u32>().unwrap_or(0))
        && (1..=31).contains(&d[8..10].parse::<u32>().unwrap_or(0));
    if ok {
        Ok(d.to_string())
    } else {
        Err(ShareError::BadRequest(format!(
            "birth date {d:?} must be YYYY-MM-DD"
        )))
    }
}

fn check_sex(s: &str) -> Result<String> {
    match s.trim() {
        s @ ("male" | "female" | "other" | "unknown") => Ok(s.to_string()),
        s => Err(ShareError::BadRequest(format!(
            "sex {s:?} must be male, female, other or unknown"
        ))),
    }
}

impl Share {
    /// A regional patient by ID, following merges; 400 for a malformed ID, 404 for an
    /// unknown one.
    pub fn patient(&self, id: &str) -> Result<RegionalPatient> {
        let id = parse_regional_id(id).map_err(|e| ShareError::BadRequest(e.to_string()))?;
        let mut p = self.patient_record(id)?;
        for _ in 0..MAX_MERGE_HOPS {
            match p.merged_into.clone() {
                Some(next) => p = self.patient_record(&next)?,
                None => return Ok(p),
            }
        }
        Err(ShareError::Conflict(format!(
            "regional ID {id} is in a merge loop"
        )))
    }

    fn patient_record(&self, id: &str) -> Result<RegionalPatient> {
        self.get(&keys::text_key(keys::PATIENT, &[id]))?
            .ok_or_else(|| ShareError::NotFound(format!("no regional patient {id}")))
    }

    /// The regional patient a local ID is linked to (following merges).
    pub fn regional_for(&self, key: &PatientKey) -> Result<Option<RegionalPatient>> {
        if key.issuer.is_empty() {
            return Ok(None);
        }
        let id: Option<String> =
            self.get(&keys::text_key(keys::XREF, &[&key.issuer, &key.patient_id]))?;
        match id {
            None => Ok(None),
            Some(id) => match self.patient(&id) {
                Ok(p) => Ok(Some(p)),
                Err(ShareError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// The local IDs linked to a regional patient (merged ones included: they were moved).
    pub fn links(&self, id: &str) -> Result<Vec<LocalId>> {
        let prefix = keys::text_prefix(keys::XREF_REV, &[id]);
        let mut out = Vec::new();
        self.index().for_each_prefix(CF_SHARE, &prefix, |k, _| {
            if let [_, issuer, pid] = keys::split(k).as_slice() {
                out.push(LocalId {
                    issuer: String::from_utf8_lossy(issuer).into_owned(),
                    patient_id: String::from_utf8_lossy(pid).into_owned(),
                });
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Whether a facility has a local ID linked to the patient (the patient is "theirs").
    pub fn is_facility_patient(&self, facility: &str, id: &str) -> Result<bool> {
        Ok(self
            .links(id)?
            .iter()
            .any(|l| self.facility_of_issuer(&l.issuer).as_deref() == Some(facility)))
    }

    /// The identity history of a regional patient, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<IdentityEvent>> {
        let prefix = keys::text_prefix(keys::HISTORY, &[id]);
        let mut out = Vec::new();
        self.index().for_each_prefix(CF_SHARE, &prefix, |_, v| {
            if let Ok(e) = renkei_model::record::decode::<IdentityEvent>(v) {
                out.push(e);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Whether `actor` may change identity data involving `issuer` (None: only regional
    /// administrators).
    fn may_edit_identity(&self, actor: &Actor, issuer: Option<&str>) -> Result<()> {
        let Actor::User(p) = actor else {
            return Err(ShareError::Forbidden(
                "DICOM peers do not edit identities".into(),
            ));
        };
        if p.role == Role::RegionalAdmin {
            return Ok(());
        }
        let editor = matches!(p.role, Role::FacilityAdmin | Role::Doctor | Role::Nurse);
        let own = match issuer {
            None => true,
            Some(i) => {
                self.facility_of_issuer(i).is_some() && self.facility_of_issuer(i) == p.facility
            }
        };
        if editor && own {
            Ok(())
        } else if !editor {
            Err(ShareError::Forbidden(format!(
                "role {} does not edit patient identities",
                p.role.as_str()
            )))
        } else {
            Err(ShareError::Forbidden(format!(
                "issuer {} is not your facility's: ask its administrator or the regional administrator",
                issuer.unwrap_or_default()
            )))
        }
    }

    /// Enrol a patient: issue the regional ID, record consent, link the local IDs given.
    pub fn enroll(&self, actor: &Actor, new: NewPatient) -> Result<RegionalPatient> {
        self.may_edit_identity(actor, None)?;
        if !new.consent {
            return Err(ShareError::BadRequest(
                "enrolment requires the patient's recorded consent to sharing".into(),
            ));
        }
        let family = new.family.trim().to_string();
        if family.is_empty() {
            return Err(ShareError::BadRequest(
                "a patient needs a family name".into(),
            ));
        }
        let birth_date = check_date(&new.birth_date)?;
        let sex = check_sex(&new.sex)?;
        let locals = new
            .local_ids
            .iter()
            .map(check_local)
            .collect::<Result<Vec<_>>>()?;
        for l in &locals {
            self.may_edit_identity(actor, Some(&l.issuer))?;
        }
        let by = actor_id(actor);
        self.transact(|tx| {
            let id = regional_id(tx.next_seq("regional")?);
            let now = now_us();
            let p = RegionalPatient {
                id: id.clone(),
                family,
                given: new.given.trim().to_string(),
                family_kana: new.family_kana.trim().to_string(),
                given_kana: new.given_kana.trim().to_string(),
                birth_date,
                sex,
                address: new.address.trim().to_string(),
                phone: new.phone.trim().to_string(),
                consent: Consent {
                    given: true,
                    recorded_us: now,
                    recorded_by: by.clone(),
                    excluded_facilities: Vec::new(),
                    excluded_categories: Vec::new(),
                },
                merged_into: None,
                created_us: now,
                version: 1,
                updated_us: now,
            };
            tx.put(&keys::text_key(keys::PATIENT, &[&id]), &p)?;
            tx.history(&id, &by, "enrol", "consent given")?;
            for l in &locals {
                tx.link(&id, l, &by)?;
            }
            let mut e = actor.audit("enrol", AuditEvent::PatientRecord, &id);
            e.purpose = Purpose::Administration;
            e.detail = format!("{} local ID(s) linked", locals.len());
            Ok((p, e))
        })
    }

    /// Link a local ID to a regional patient.
    pub fn link(&self, actor: &Actor, id: &str, local: &LocalId) -> Result<RegionalPatient> {
        let local = check_local(local)?;
        self.may_edit_identity(actor, Some(&local.issuer))?;
        let p = self.patient(id)?;
        let by = actor_id(actor);
        self.transact(|tx| {
            tx.link(&p.id, &local, &by)?;
            let mut e = actor.audit("link", AuditEvent::PatientRecord, &p.id);
            e.purpose = Purpose::Administration;
            e.detail = format!("{}|{}", local.issuer, local.patient_id);
            Ok((p.clone(), e))
        })
    }

    /// Unlink a local ID from a regional patient (its images become "unlinked" again).
    pub fn unlink(&self, actor: &Actor, id: &str, local: &LocalId) -> Result<()> {
        let local = check_local(local)?;
        self.may_edit_identity(actor, Some(&local.issuer))?;
        let p = self.patient(id)?;
        let by = actor_id(actor);
        self.transact(|tx| {
            let x = keys::text_key(keys::XREF, &[&local.issuer, &local.patient_id]);
            match tx.get::<String>(&x)? {
                Some(linked) if linked == p.id => {}
                _ => {
                    return Err(ShareError::NotFound(format!(
                        "{}|{} is not linked to {}",
                        local.issuer, local.patient_id, p.id
                    )))
                }
            }
            tx.delete(&x)?;
            tx.delete(&keys::text_key(
                keys::XREF_REV,
                &[&p.id, &local.issuer, &local.patient_id],
            ))?;
            let detail = format!("{}|{}", local.issuer, local.patient_id);
            tx.history(&p.id, &by, "unlink", &detail)?;
            let mut e = actor.audit("unlink", AuditEvent::PatientRecord, &p.id);
            e.purpose = Purpose::Administration;
            e.detail = detail;
            Ok(((), e))
        })
    }

    /// Merge regional patient `from` into `into` (one person enrolled twice): every link
    /// moves, `from` resolves to `into` from now on; both keep the history. Regional
    /// administrators only.
    pub fn merge(&self, actor: &Actor, into: &str, from: &str) -> Result<RegionalPatient> {
        self.may_edit_identity(actor, None)?;
        if !matches!(actor, Actor::User(p) if p.role == Role::RegionalAdmin) {
            return Err(ShareError::Forbidden(
                "only a regional administrator merges patients".into(),
            ));
        }
        let survivor = self.patient(into)?;
        let mut gone = self.patient(from)?;
        if survivor.id == gone.id {
            return Err(ShareError::Conflict(format!(
                "{from} is already {into} (merged before?)"
            )));
        }
        let links = self.links(&gone.id)?;
        let by = actor_id(actor);
        self.transact(|tx| {
            for l in &links {
                tx.delete(&keys::text_key(
                    keys::XREF_REV,
                    &[&gone.id, &l.issuer, &l.patient_id],
                ))?;
                tx.put(
                    &keys::text_key(keys::XREF, &[&l.issuer, &l.patient_id]),
                    &survivor.id,
                )?;
                tx.put_raw(
                    &keys::text_key(keys::XREF_REV, &[&survivor.id, &l.issuer, &l.patient_id]),
                    &[],
                )?;
            }
            gone.merged_into = Some(survivor.id.clone());
            gone.version += 1;
            gone.updated_us = now_us();
            tx.put(&keys::text_key(keys::PATIENT, &[&gone.id]), &gone)?;
            tx.history(&gone.id, &by, "merge-into", &survivor.id)?;
            tx.history(&survivor.id, &by, "merge-from", &gone.id)?;
            let mut e = actor.audit("merge", AuditEvent::PatientRecord, &survivor.id);
            e.purpose = Purpose::Administration;
            e.detail = format!("{} merged in, {} link(s) moved", gone.id, links.len());
            Ok((survivor.clone(), e))
        })
    }

    /// Image patients linked to no regional ID: all for a regional administrator, the
    /// facility's own for its users.
    pub fn unlinked(&self, actor: &Actor, limit: usize) -> Result<Vec<Unlinked>> {
        let only =
            match actor {
                Actor::User(p) if p.role == Role::RegionalAdmin => None,
                Actor::User(p) => Some(p.facility.clone().ok_or_else(|| {
                    ShareError::Forbidden("the user belongs to no facility".into())
                })?),
                Actor::Ae { .. } => {
                    return Err(ShareError::Forbidden(
                        "DICOM peers list nothing here".into(),
                    ))
                }
            };
        let mut out = Vec::new();
        let mut err = None;
        self.index()
            .for_each::<PatientRecord>(CF_PATIENT, |_, rec| {
                let rec = rec?;
                let facility = self.facility_of_issuer(&rec.key.issuer);
                if only.is_some() && facility != only {
                    return Ok(true);
                }
                match self.regional_for(&rec.key) {
                    Ok(Some(_)) => {}
                    Ok(None) => out.push(Unlinked {
                        local: LocalId {
                            issuer: rec.key.issuer.clone(),
                            patient_id: rec.key.patient_id.clone(),
                        },
                        facility,
                        name: rec.name.to_dicom_string(),
                        birth_date: rec.birth_date.clone(),
                    }),
                    Err(e) => {
                        err = Some(e);
                        return Ok(false);
                    }
                }
                Ok(out.len() < limit)
            })?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The id an actor is recorded under.
pub(crate) fn actor_id(actor: &Actor) -> String {
    match actor {
        Actor::User(p) => p.user_id.clone(),
        Actor::Ae { title, .. } => format!("AE:{title}"),
    }
}

impl Tx<'_, '_> {
    pub(crate) fn history(&mut self, id: &str, by: &str, kind: &str, detail: &str) -> Result<()> {
        let seq = self.next_seq("history")?;
        let mut k = keys::text_prefix(keys::HISTORY, &[id]);
        k.extend_from_slice(&seq.to_be_bytes());
        self.put(
            &k,
            &IdentityEvent {
                time_us: now_us(),
                by: by.to_string(),
                kind: kind.to_string(),
                detail: detail.to_string(),
            },
        )
    }

    fn link(&mut self, id: &str, l: &LocalId, by: &str) -> Result<()> {
        let x = keys::text_key(keys::XREF, &[&l.issuer, &l.patient_id]);
        if let Some(other) = self.get::<String>(&x)? {
            return Err(if other == id {
                ShareError::Conflict(format!(
                    "{}|{} is already linked to {id}",
                    l.issuer, l.patient_id
                ))
            } else {
                ShareError::Conflict(format!(
                    "{}|{} is linked to {other}: unlink it first, or merge the two",
                    l.issuer, l.patient_id
                ))
            });
        }
        self.put(&x, &id.to_string())?;
        self.put_raw(
            &keys::text_key(keys::XREF_REV, &[id, &l.issuer, &l.patient_id]),
            &[],
        )?;
        self.history(id, by, "link", &format!("{}|{}", l.issuer, l.patient_id))
    }
}

impl Share {
    /// A query whose PatientID is a regional ID, turned into one query per linked local ID
    /// (PatientID = the local ID, IssuerOfPatientID = its issuer): the image index keeps
    /// local IDs, so this is how earlier images appear under the regional ID. None when
    /// the PatientID key is not a single known regional ID.
    pub fn expand_regional_query(&self, q: &Query) -> Result<Option<(String, Vec<Query>)>> {
        let Some(Matcher::Single(v)) = q.key(tags::PATIENT_ID) else {
            return Ok(None);
        };
        if !crate::ids::is_regional_id(v) {
            return Ok(None);
        }
        let p = match self.patient(v) {
            Ok(p) => p,
            Err(ShareError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let queries = self
            .links(&p.id)?
            .into_iter()
            .map(|l| {
                let mut q = q.clone();
                q.keys.retain(|k| k.tag != tags::ISSUER_OF_PATIENT_ID);
                for k in &mut q.keys {
                    if k.tag == tags::PATIENT_ID {
                        k.matcher = Matcher::Single(l.patient_id.clone());
                    }
                }
                q.keys.push(Key {
                    tag: tags::ISSUER_OF_PATIENT_ID,
                    matcher: Matcher::Single(l.issuer),
                });
                q
            })
            .collect();
        Ok(Some((p.id, queries)))
    }
}
