//! The shared clinical record (issue 7): FHIR R4 resources keyed to the regional patient —
//! Encounter, Condition, Observation, MedicationRequest, AllergyIntolerance,
//! DocumentReference, ServiceRequest and DetectedIssue stored as JSON documents with their
//! search keys ([`store`]); ImagingStudy generated from the PACS index ([`imaging`]);
//! Consent and Organization views of the regional domain ([`views`]).
//!
//! Rules every interaction follows:
//! - **Writes** (create, update) are for clinical users (doctor, nurse, technologist,
//!   pharmacist) of a facility, and for a facility's system interface (the HL7 v2 import,
//!   as `Actor::Ae` with the facility), about a patient the facility treats: an open
//!   treating relationship (check-in) or a local ID of the facility linked to it. The
//!   actor's facility is the resource's *recording facility*, its owner for the policy;
//!   only that facility updates it. Each write commits with its one audit record (and the
//!   DetectedIssues the duplicate checks raise) in one synced batch.
//! - **Reads** (read, vread, history, search, `$everything`, `$summary`, Binary) ask
//!   [`Share::decide`] with the resource's category and owner. A search leaves out what
//!   is withheld and writes one audit record for the whole request.
//! - Searches name the patient: there is no scan across patients.

pub mod config;
mod date;
mod duplicates;
mod extract;
mod imaging;
mod search;
mod store;
mod summary;
pub mod views;

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::{Result, ShareError};
use crate::model::{now_us, rfc3339, RegionalPatient};
use crate::policy::{Actor, Category, Decision, Subject};
use crate::{AuditEntry, AuditEvent, Purpose, Share, Tx};

pub use config::{ClinicalConfig, DrugClass, TestWindow};
pub use date::{DateFilter, Prefix};
pub use search::{SearchPage, SearchParams, TokenFilter};
pub use summary::PatientRef;
pub use views::{consent_resource, organization_resource};
pub use views::{local_identifier, patient_resource};

use extract::Keys;
use store::{Entry, Stored};

/// Identifier system of regional patient IDs.
pub const REGIONAL_ID_SYSTEM: &str = "http://renkei.invalid/fhir/sid/regional-patient-id";
/// Extension naming the facility that recorded a resource (valueReference Organization).
pub const RECORDING_FACILITY_EXT: &str =
    "http://renkei.invalid/fhir/StructureDefinition/recording-facility";
/// Extension of an attachment: SHA-256 (hex) of the stored file.
pub const ATTACHMENT_SHA256_EXT: &str =
    "http://renkei.invalid/fhir/StructureDefinition/attachment-sha256";
/// Extension of an ImagingStudy: its thumbnail (valueUrl).
pub const THUMBNAIL_EXT: &str = "http://renkei.invalid/fhir/StructureDefinition/thumbnail";
/// `meta.source` of a stored resource: this prefix and the recording facility's code.
pub const SOURCE_PREFIX: &str = "urn:renkei:facility:";

/// The resource types of the clinical record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// Visits.
    Encounter,
    /// Diagnoses (ICD-10).
    Condition,
    /// Lab results (LOINC, JLAC10).
    Observation,
    /// Prescriptions (YJ, HOT, RxNorm).
    MedicationRequest,
    /// Allergies.
    AllergyIntolerance,
    /// Letters and reports (attachment stored as a file).
    DocumentReference,
    /// Orders (lab, imaging).
    ServiceRequest,
    /// Duplicate warnings (generated on create).
    DetectedIssue,
    /// Studies of the PACS index (generated, read-only).
    ImagingStudy,
    /// The patient's consent (generated, read-only).
    Consent,
}

impl ResourceType {
    /// Every type.
    pub const ALL: [ResourceType; 10] = [
        ResourceType::Encounter,
        ResourceType::Condition,
        ResourceType::Observation,
        ResourceType::MedicationRequest,
        ResourceType::AllergyIntolerance,
        ResourceType::DocumentReference,
        ResourceType::ServiceRequest,
        ResourceType::DetectedIssue,
        ResourceType::ImagingStudy,
        ResourceType::Consent,
    ];

    /// The FHIR name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Encounter => "Encounter",
            ResourceType::Condition => "Condition",
            ResourceType::Observation => "Observation",
            ResourceType::MedicationRequest => "MedicationRequest",
            ResourceType::AllergyIntolerance => "AllergyIntolerance",
            ResourceType::DocumentReference => "DocumentReference",
            ResourceType::ServiceRequest => "ServiceRequest",
            ResourceType::DetectedIssue => "DetectedIssue",
            ResourceType::ImagingStudy => "ImagingStudy",
            ResourceType::Consent => "Consent",
        }
    }

    /// By FHIR name.
    pub fn parse(s: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Stored as documents (the others are generated).
    pub fn stored(self) -> bool {
        !matches!(self, ResourceType::ImagingStudy | ResourceType::Consent)
    }

    /// Clients create and update it.
    pub fn writable(self) -> bool {
        self.stored() && self != ResourceType::DetectedIssue
    }
}

/// Why a clinical interaction did not happen: the sharing errors, and the two FHIR
/// outcomes they do not cover.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClinicalError {
    /// Denied, unknown, malformed request, store failure.
    #[error(transparent)]
    Share(#[from] ShareError),
    /// The resource breaks a rule of its type or of the node (FHIR 422).
    #[error("{0}")]
    Invalid(String),
    /// `If-Match` names another version (FHIR 412).
    #[error("{0}")]
    PreconditionFailed(String),
}

impl From<renkei_store::StoreError> for ClinicalError {
    fn from(e: renkei_store::StoreError) -> Self {
        ClinicalError::Share(e.into())
    }
}

impl From<ClinicalError> for ShareError {
    fn from(e: ClinicalError) -> Self {
        match e {
            ClinicalError::Share(e) => e,
            ClinicalError::Invalid(m) => ShareError::BadRequest(m),
            ClinicalError::PreconditionFailed(m) => ShareError::Conflict(m),
        }
    }
}

/// Result of clinical operations.
pub type CResult<T> = std::result::Result<T, ClinicalError>;

/// What a create did.
#[derive(Debug, Clone)]
pub struct Created {
    /// The stored resource (with `id` and `meta.versionId`).
    pub resource: Value,
    /// DetectedIssue resources the duplicate checks raised (stored too).
    pub detected_issues: Vec<Value>,
}

/// A policy category by its name.
pub(crate) fn category_from(s: &str) -> Category {
    [
        Category::Imaging,
        Category::Demographics,
        Category::Diagnosis,
        Category::Medication,
        Category::Lab,
        Category::Allergy,
        Category::Encounter,
        Category::Document,
        Category::Summary,
    ]
    .into_iter()
    .find(|c| c.as_str() == s)
    .unwrap_or(Category::Summary)
}

/// The decisions of one read request about one patient, cached per (owner, category),
/// counted for its one audit record.
pub(crate) struct Scope<'a> {
    share: &'a Share,
    actor: &'a Actor,
    pub(crate) patient: &'a RegionalPatient,
    cache: HashMap<(String, Category), Decision>,
    own_patient: Option<bool>,
    pub(crate) admitted: u64,
    pub(crate) withheld: u64,
    pub(crate) last_reason: &'static str,
    pub(crate) break_glass: bool,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(share: &'a Share, actor: &'a Actor, patient: &'a RegionalPatient) -> Self {
        Scope {
            share,
            actor,
            patient,
            cache: HashMap::new(),
            own_patient: None,
            admitted: 0,
            withheld: 0,
            last_reason: "",
            break_glass: false,
        }
    }

    /// The decision for data of `owner` (None: no facility) in `category`, uncounted.
    pub(crate) fn decision(&mut self, owner: Option<&str>, category: Category) -> Result<Decision> {
        let key = (owner.unwrap_or_default().to_string(), category);
        if let Some(d) = self.cache.get(&key) {
            return Ok(d.clone());
        }
        let d = self.share.decide(
            self.actor,
            Subject {
                patient: Some(self.patient),
                owner,
                category,
            },
        )?;
        self.cache.insert(key, d.clone());
        Ok(d)
    }

    /// Whether data of `owner` in `category` may be read; counted.
    pub(crate) fn admit(&mut self, owner: Option<&str>, category: Category) -> Result<bool> {
        let d = self.decision(owner, category)?;
        self.count(&d);
        Ok(d.allowed)
    }

    fn count(&mut self, d: &Decision) {
        if d.allowed {
            self.admitted += 1;
            self.break_glass |= d.break_glass;
        } else {
            self.withheld += 1;
            self.last_reason = d.reason;
        }
    }

    /// The patient's demographics (a facility with a linked local ID reads its own
    /// patient's); counted.
    pub(crate) fn admit_demographics(&mut self) -> Result<bool> {
        let own = match (self.own_patient, self.actor.facility()) {
            (Some(o), _) => o,
            (None, Some(f)) => {
                let o = self.share.is_facility_patient(f, &self.patient.id)?;
                self.own_patient = Some(o);
                o
            }
            (None, None) => false,
        };
        let owner = if own { self.actor.facility() } else { None };
        let owner = owner.map(str::to_string);
        self.admit(owner.as_deref(), Category::Demographics)
    }

    /// The one audit record of the request.
    pub(crate) fn finish(&self, action: &str, event: AuditEvent, what: &str) -> Result<()> {
        let mut e = self.actor.audit(action, event, &self.patient.id);
        e.allowed = self.admitted > 0 || self.withheld == 0;
        e.break_glass = self.break_glass;
        if self.break_glass {
            e.purpose = Purpose::Emergency;
        }
        let sep = if what.is_empty() { "" } else { ": " };
        e.detail = if self.withheld == 0 {
            format!("{what}{sep}{} admitted", self.admitted)
        } else {
            format!(
                "{what}{sep}{} admitted, {} withheld ({})",
                self.admitted, self.withheld, self.last_reason
            )
        };
        self.share.audit_read(e)
    }
}

/// The facility a writer writes for: a clinical user's, or the facility a system
/// interface acts for (the HL7 v2 import writes as `Actor::Ae` of the sending facility).
/// A create whose checks passed, ready to be written.
struct PreparedCreate {
    t: ResourceType,
    resource: Value,
    facility: String,
    keys: Keys,
    patient: RegionalPatient,
    action: String,
    findings: Vec<duplicates::Finding>,
    blobs: Vec<(usize, String, usize)>,
}

pub(crate) fn writer_facility(actor: &Actor) -> Result<String> {
    match actor {
        Actor::User(p) if p.role.is_clinical() => p
            .facility
            .clone()
            .ok_or_else(|| ShareError::Forbidden("the user belongs to no facility".into())),
        Actor::User(p) => Err(ShareError::Forbidden(format!(
            "role {} does not record clinical data (doctor, nurse, technologist, pharmacist do)",
            p.role.as_str()
        ))),
        Actor::Ae {
            facility: Some(f), ..
        } => Ok(f.clone()),
        Actor::Ae { title, .. } => Err(ShareError::Forbidden(format!(
            "{title} belongs to no facility: it does not write clinical resources"
        ))),
    }
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn parse_json(s: &Stored) -> Result<Value> {
    serde_json::from_str(&s.json).map_err(|e| {
        ShareError::Store(renkei_store::StoreError::Corrupt {
            key: format!("{}/{}", s.rtype, s.id),
            reason: e.to_string(),
        })
    })
}

impl Share {
    /// Create a clinical resource as `actor` (its facility records it). The resource's
    /// `subject`/`patient` reference names the regional patient (`Patient/<regional ID>`).
    /// Errors of the resource's content come back as `BadRequest` (see [`Share::create`]
    /// for the finer-grained error).
    pub fn create_resource(&self, actor: &Actor, resource: Value) -> Result<Created> {
        Ok(self.create(actor, resource)?)
    }

    /// The regional IDs whose records are the patient's: the ID and those merged into it.
    pub(crate) fn patient_ids(&self, p: &RegionalPatient) -> Result<Vec<String>> {
        let mut out = vec![p.id.clone()];
        let mut i = 0;
        while i < out.len() && out.len() < 16 {
            for e in self.history(&out[i])? {
                if e.kind == "merge-from" && !out.contains(&e.detail) {
                    out.push(e.detail);
                }
            }
            i += 1;
        }
        Ok(out)
    }

    /// The patient a resource names; an unknown one is a 422.
    fn patient_for_write(&self, id: &str) -> CResult<RegionalPatient> {
        match self.patient(id) {
            Ok(p) => Ok(p),
            Err(ShareError::NotFound(m)) | Err(ShareError::BadRequest(m)) => Err(
                ClinicalError::Invalid(format!("the referenced patient is not known: {m}")),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// A write needs a treating relationship of the writer's facility or a local ID of
    /// the facility linked to the patient; a refusal is audited.
    fn may_record(
        &self,
        actor: &Actor,
        facility: &str,
        patient: &RegionalPatient,
        action: &str,
    ) -> CResult<()> {
        if self.open_relationship(facility, &patient.id)?.is_some()
            || self.is_facility_patient(facility, &patient.id)?
        {
            return Ok(());
        }
        let mut e = actor.audit(action, AuditEvent::PatientRecord, &patient.id);
        e.allowed = false;
        e.detail = "no treating relationship and not the facility's patient".into();
        self.audit_read(e)?;
        Err(ShareError::Forbidden(
            "your facility neither treats this patient (check the patient in with the card) nor has the patient's local ID linked".into(),
        )
        .into())
    }

    /// Create a resource: checks, duplicate checks, then the resource, its DetectedIssues
    /// and one audit record in one batch.
    pub fn create(&self, actor: &Actor, resource: Value) -> CResult<Created> {
        let prepared = self.prepare_create(actor, resource)?;
        let now = now_us();
        self.transact(|tx| self.write_created(tx, actor, prepared, now))
            .map_err(ClinicalError::from)
    }

    /// Create several resources in one synced commit (an import, a generated load): each
    /// is checked, duplicate-checked and audited exactly as [`Share::create`] does, and
    /// the answers come back in order — an item that fails its checks is its error, the
    /// others are written. The duplicate checks of an item see what was committed before
    /// the batch, not its earlier items.
    pub fn create_many(&self, actor: &Actor, resources: Vec<Value>) -> Vec<CResult<Created>> {
        let mut answers: Vec<Option<CResult<Created>>> = Vec::with_capacity(resources.len());
        let mut ready = Vec::new();
        for (i, r) in resources.into_iter().enumerate() {
            match self.prepare_create(actor, r) {
                Ok(p) => {
                    ready.push((i, p));
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let now = now_us();
        let written = self.transact_many(|tx| {
            let mut created = Vec::with_capacity(ready.len());
            let mut entries = Vec::with_capacity(ready.len());
            for (i, p) in ready {
                let (c, e) = self.write_created(tx, actor, p, now)?;
                created.push((i, c));
                entries.push(e);
            }
            Ok((created, entries))
        });
        match written {
            Ok(created) => {
                for (i, c) in created {
                    answers[i] = Some(Ok(c));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for a in answers.iter_mut().filter(|a| a.is_none()) {
                    *a = Some(Err(ShareError::Conflict(format!(
                        "batch not written: {text}"
                    ))
                    .into()));
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(ShareError::Conflict("not written".into()).into())))
            .collect()
    }

    /// Everything of a create that reads: the checks, the duplicate findings, attachments.
    fn prepare_create(&self, actor: &Actor, mut resource: Value) -> CResult<PreparedCreate> {
        let t = resource_type_of(&resource)?;
        if !t.writable() {
            return Err(ClinicalError::Invalid(format!(
                "{} is generated by the node; it cannot be created",
                t.as_str()
            )));
        }
        let facility = writer_facility(actor)?;
        let keys = extract::extract(t, &resource, None)?;
        let patient = self.patient_for_write(&keys.patient)?;
        let action = format!("FHIR create {}", t.as_str());
        self.may_record(actor, &facility, &patient, &action)?;
        let findings = self.find_duplicates(actor, &patient, t, &resource, &keys)?;
        let blobs = self.store_attachments(t, &mut resource, &[])?;
        Ok(PreparedCreate {
            t,
            resource,
            facility,
            keys,
            patient,
            action,
            findings,
            blobs,
        })
    }

    /// The writes of a prepared create, into the change being built.
    fn write_created(
        &self,
        tx: &mut Tx<'_, '_>,
        actor: &Actor,
        p: PreparedCreate,
        now: u64,
    ) -> Result<(Created, AuditEntry)> {
        let PreparedCreate {
            t,
            resource,
            facility,
            keys,
            patient,
            action,
            findings,
            blobs,
        } = p;
        let id = tx.next_seq("clinical")?.to_string();
        let body = finalize(
            self,
            resource,
            t,
            &id,
            1,
            now,
            &patient.id,
            &facility,
            &blobs,
        );
        let stored = stored_of(t, &id, 1, now, &patient.id, &facility, &keys, &body);
        tx.put_resource(&stored, &entry_of(&facility, &keys), None)?;
        let mut issues = Vec::new();
        for f in &findings {
            let di_id = tx.next_seq("clinical")?.to_string();
            let di = self.detected_issue(f, &patient.id, Some(format!("{}/{id}", t.as_str())));
            let di_keys = extract::extract(ResourceType::DetectedIssue, &di, Some(f.category))?;
            let di = finalize(
                self,
                di,
                ResourceType::DetectedIssue,
                &di_id,
                1,
                now,
                &patient.id,
                &facility,
                &[],
            );
            let s = stored_of(
                ResourceType::DetectedIssue,
                &di_id,
                1,
                now,
                &patient.id,
                &facility,
                &di_keys,
                &di,
            );
            tx.put_resource(&s, &entry_of(&facility, &di_keys), None)?;
            issues.push(di);
        }
        let mut e = actor.audit(&action, AuditEvent::PatientRecord, &patient.id);
        e.detail = format!("{}/{id} v1", t.as_str());
        for i in &issues {
            e.detail.push_str(&format!(
                "; DetectedIssue/{} (DUPTHPY)",
                i["id"].as_str().unwrap_or("")
            ));
        }
        Ok((
            Created {
                resource: body,
                detected_issues: issues,
            },
            e,
        ))
    }

    /// Update a resource (its recording facility only): a new version; the old one stays
    /// readable with vread and `_history`. `if_match` is the version the client read.
    pub fn update(
        &self,
        actor: &Actor,
        t: ResourceType,
        id: &str,
        mut resource: Value,
        if_match: Option<u64>,
    ) -> CResult<Value> {
        if !t.writable() {
            return Err(ShareError::Forbidden(format!("{} is read-only", t.as_str())).into());
        }
        if resource_type_of(&resource)? != t {
            return Err(ShareError::BadRequest(format!(
                "the body is not a {} (resourceType)",
                t.as_str()
            ))
            .into());
        }
        match resource["id"].as_str() {
            Some(body_id) if body_id != id => {
                return Err(ShareError::BadRequest(format!(
                    "the body's id {body_id:?} is not the id of the URL ({id})"
                ))
                .into())
            }
            _ => {}
        }
        let current = self
            .load(t, id)?
            .ok_or_else(|| ShareError::NotFound(format!("no {}/{id}", t.as_str())))?;
        let action = format!("FHIR update {}", t.as_str());
        let facility = writer_facility(actor)?;
        if facility != current.facility {
            let mut e = actor.audit(&action, AuditEvent::PatientRecord, &current.patient);
            e.allowed = false;
            e.detail = format!("{}/{id}: recorded by {}", t.as_str(), current.facility);
            self.audit_read(e)?;
            return Err(ShareError::Forbidden(format!(
                "{}/{id} was recorded by facility {}: only it updates the record",
                t.as_str(),
                current.facility
            ))
            .into());
        }
        if let Some(v) = if_match {
            if v != current.version {
                return Err(ClinicalError::PreconditionFailed(format!(
                    "If-Match names version {v}, the current version is {}",
                    current.version
                )));
            }
        }
        let keys = extract::extract(t, &resource, None)?;
        let patient = self.patient_for_write(&keys.patient)?;
        let was = self.patient(&current.patient)?;
        if patient.id != was.id {
            return Err(ClinicalError::Invalid(format!(
                "the patient of {}/{id} cannot change (create a new resource instead)",
                t.as_str()
            )));
        }
        self.may_record(actor, &facility, &patient, &action)?;
        let kept = attachment_hashes(&parse_json(&current)?);
        let blobs = self.store_attachments(t, &mut resource, &kept)?;
        let now = now_us();
        let version = current.version + 1;
        self.transact(|tx| {
            let body = finalize(
                self,
                resource,
                t,
                id,
                version,
                now,
                &patient.id,
                &facility,
                &blobs,
            );
            let stored = stored_of(t, id, version, now, &patient.id, &facility, &keys, &body);
            tx.put_resource(&stored, &entry_of(&facility, &keys), Some(&current))?;
            let mut e = actor.audit(&action, AuditEvent::PatientRecord, &patient.id);
            e.detail = format!("{}/{id} v{version}", t.as_str());
            Ok((body, e))
        })
        .map_err(ClinicalError::from)
    }

    /// Read a resource (a version, or the current one) through the policy; one audit
    /// record. `base` is the server's absolute URL (for generated resources' links).
    pub fn read(
        &self,
        actor: &Actor,
        t: ResourceType,
        id: &str,
        version: Option<u64>,
        base: &str,
    ) -> CResult<Value> {
        match t {
            ResourceType::ImagingStudy => return self.read_imaging_study(actor, id, base),
            ResourceType::Consent => return self.read_consent(actor, id),
            _ => {}
        }
        let stored = match version {
            None => self.load(t, id)?,
            Some(v) => self.load_version(t, id, v)?,
        };
        let stored = stored.ok_or_else(|| match version {
            Some(v) => ShareError::NotFound(format!("no version {v} of {}/{id}", t.as_str())),
            None => ShareError::NotFound(format!("no {}/{id}", t.as_str())),
        })?;
        let what = match version {
            Some(v) => format!("{}/{id}/_history/{v}", t.as_str()),
            None => format!("{}/{id}", t.as_str()),
        };
        self.check_stored(actor, &stored, &format!("FHIR read {}", t.as_str()), &what)?;
        Ok(parse_json(&stored)?)
    }

    /// Every version of a resource, newest first, through the policy; one audit record.
    pub fn resource_history(
        &self,
        actor: &Actor,
        t: ResourceType,
        id: &str,
    ) -> CResult<Vec<Value>> {
        if !t.stored() {
            return Err(ShareError::NotFound(format!(
                "{} is generated: it has no history",
                t.as_str()
            ))
            .into());
        }
        let versions = self.versions(t, id)?;
        let cur = versions
            .first()
            .ok_or_else(|| ShareError::NotFound(format!("no {}/{id}", t.as_str())))?;
        self.check_stored(
            actor,
            cur,
            &format!("FHIR read history {}", t.as_str()),
            &format!("{}/{id}/_history ({} versions)", t.as_str(), versions.len()),
        )?;
        Ok(versions
            .iter()
            .map(parse_json)
            .collect::<Result<Vec<_>>>()?)
    }

    /// The one decision and audit record of a read of one stored resource.
    fn check_stored(&self, actor: &Actor, s: &Stored, action: &str, what: &str) -> Result<()> {
        let patient = self.patient(&s.patient)?;
        let d = self.decide(
            actor,
            Subject {
                patient: Some(&patient),
                owner: Some(&s.facility),
                category: category_from(&s.category),
            },
        )?;
        let mut e = actor.audit(action, AuditEvent::PatientRecord, &patient.id);
        e.allowed = d.allowed;
        e.break_glass = d.break_glass;
        if d.break_glass {
            e.purpose = Purpose::Emergency;
        }
        e.detail = format!("{what}: {}", d.reason);
        self.audit_read(e)?;
        if d.allowed {
            Ok(())
        } else {
            Err(ShareError::Forbidden(format!(
                "not permitted: {}",
                d.reason
            )))
        }
    }

    /// Duplicate checks without storing anything (`$check`): the DetectedIssues a create
    /// of `resource` would raise. Same permissions as a create; one audit record.
    pub fn check(&self, actor: &Actor, resource: Value) -> CResult<Vec<Value>> {
        let t = resource_type_of(&resource)?;
        if !matches!(
            t,
            ResourceType::ServiceRequest | ResourceType::MedicationRequest
        ) {
            return Err(ShareError::BadRequest(format!(
                "$check takes a ServiceRequest or a MedicationRequest, not a {}",
                t.as_str()
            ))
            .into());
        }
        let facility = writer_facility(actor)?;
        let keys = extract::extract(t, &resource, None)?;
        let patient = self.patient_for_write(&keys.patient)?;
        let action = format!("FHIR $check {}", t.as_str());
        self.may_record(actor, &facility, &patient, &action)?;
        let findings = self.find_duplicates(actor, &patient, t, &resource, &keys)?;
        let issues: Vec<Value> = findings
            .iter()
            .map(|f| self.detected_issue(f, &patient.id, None))
            .collect();
        let mut e = actor.audit(&action, AuditEvent::Query, &patient.id);
        e.detail = format!("{} DetectedIssue(s), nothing stored", issues.len());
        self.audit_read(e)?;
        Ok(issues)
    }

    /// An attachment of a DocumentReference version (`Binary/<id>-<version>-<n>`),
    /// through the policy (category document); one audit record. Returns the content type,
    /// the bytes and the DocumentReference's reference.
    pub fn binary(&self, actor: &Actor, binary_id: &str) -> CResult<(String, Vec<u8>, String)> {
        let not_found = || ShareError::NotFound(format!("no Binary/{binary_id}"));
        let mut parts = binary_id.split('-');
        let (Some(id), Some(ver), Some(n), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(not_found().into());
        };
        let (Ok(ver), Ok(n)) = (ver.parse::<u64>(), n.parse::<usize>()) else {
            return Err(not_found().into());
        };
        let stored = self
            .load_version(ResourceType::DocumentReference, id, ver)?
            .ok_or_else(not_found)?;
        self.check_stored(
            actor,
            &stored,
            "FHIR read Binary",
            &format!("Binary/{binary_id}"),
        )?;
        let doc = parse_json(&stored)?;
        let att = &doc["content"][n]["attachment"];
        let sha = att["extension"]
            .as_array()
            .and_then(|xs| xs.iter().find(|x| x["url"] == ATTACHMENT_SHA256_EXT))
            .and_then(|x| x["valueString"].as_str())
            .ok_or_else(not_found)?;
        let bytes = self.read_blob(sha)?.ok_or_else(|| {
            ShareError::Store(renkei_store::StoreError::Corrupt {
                key: format!("documents/{sha}"),
                reason: "attachment file missing".into(),
            })
        })?;
        let ct = att["contentType"]
            .as_str()
            .unwrap_or("application/octet-stream")
            .to_string();
        Ok((ct, bytes, format!("DocumentReference/{id}")))
    }

    /// DocumentReference: every attachment with inline `data` is written to its file;
    /// returns (content index, sha256, size) to put into the stored resource. An
    /// attachment without data may name by hash only a file of the version it updates
    /// (`kept`): another document's file is not a client's to attach, nor to probe for.
    fn store_attachments(
        &self,
        t: ResourceType,
        resource: &mut Value,
        kept: &[String],
    ) -> CResult<Vec<(usize, String, usize)>> {
        if t != ResourceType::DocumentReference {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let Some(content) = resource["content"].as_array_mut() else {
            return Ok(out);
        };
        for (i, c) in content.iter_mut().enumerate() {
            let att = &mut c["attachment"];
            if let Some(data) = att["data"].as_str() {
                let bytes = renkei_model::base64::decode(data).ok_or_else(|| {
                    ClinicalError::Invalid(format!("content[{i}].attachment.data is not base64"))
                })?;
                let sha = self.write_blob(&bytes)?;
                out.push((i, sha, bytes.len()));
            } else if has_sha(att) {
                // an attachment kept from the version updated: its file must exist
                let sha = sha_of(att).unwrap_or_default();
                if kept.contains(&sha) && self.read_blob_exists(&sha) {
                    continue;
                }
                return Err(ClinicalError::Invalid(format!(
                    "content[{i}].attachment names a file that is not one of this record's: send its data"
                )));
            } else if att["url"].as_str().is_none() {
                return Err(ClinicalError::Invalid(format!(
                    "content[{i}].attachment needs data (base64) or a url"
                )));
            }
        }
        Ok(out)
    }

    fn read_blob_exists(&self, sha: &str) -> bool {
        sha.len() == 64
            && sha.bytes().all(|b| b.is_ascii_hexdigit())
            && self.documents_dir().join(sha).is_file()
    }
}

/// A Binary resource (`application/fhir+json` form of an attachment).
pub fn binary_resource(id: &str, content_type: &str, bytes: &[u8], context: &str) -> Value {
    json!({
        "resourceType": "Binary",
        "id": id,
        "contentType": content_type,
        "securityContext": {"reference": context},
        "data": renkei_model::base64::encode(bytes),
    })
}

/// The file hashes of a DocumentReference's attachments.
fn attachment_hashes(doc: &Value) -> Vec<String> {
    doc["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| sha_of(&c["attachment"]))
        .collect()
}

fn has_sha(att: &Value) -> bool {
    sha_of(att).is_some()
}

fn sha_of(att: &Value) -> Option<String> {
    att["extension"]
        .as_array()?
        .iter()
        .find(|x| x["url"] == ATTACHMENT_SHA256_EXT)?["valueString"]
        .as_str()
        .map(str::to_string)
}

/// The resource type named by a body.
fn resource_type_of(v: &Value) -> CResult<ResourceType> {
    let name = v["resourceType"].as_str().ok_or_else(|| {
        ShareError::BadRequest("the body is not a FHIR resource (no resourceType)".into())
    })?;
    ResourceType::parse(name).ok_or_else(|| {
        ShareError::BadRequest(format!(
            "resource type {name:?} is not part of the clinical record"
        ))
        .into()
    })
}

/// The stored form of a resource: id, meta, the patient reference normalised to the
/// regional ID, the recording facility, attachments moved to files.
#[allow(clippy::too_many_arguments)]
fn finalize(
    share: &Share,
    mut v: Value,
    t: ResourceType,
    id: &str,
    version: u64,
    now: u64,
    patient: &str,
    facility: &str,
    blobs: &[(usize, String, usize)],
) -> Value {
    v["id"] = json!(id);
    let mut meta = match v["meta"].take() {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    meta.insert("versionId".into(), json!(version.to_string()));
    meta.insert("lastUpdated".into(), json!(rfc3339(now)));
    meta.insert("source".into(), json!(format!("{SOURCE_PREFIX}{facility}")));
    v["meta"] = Value::Object(meta);
    let field = extract::patient_field(t);
    let display = v[field]["display"].clone();
    v[field] = json!({"reference": format!("Patient/{patient}")});
    if display.is_string() {
        v[field]["display"] = display;
    }
    let name = share
        .facility(facility)
        .map(|f| f.name)
        .unwrap_or_else(|| facility.to_string());
    let mut ext: Vec<Value> = v["extension"]
        .as_array()
        .map(|xs| {
            xs.iter()
                .filter(|x| x["url"] != RECORDING_FACILITY_EXT)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    ext.push(json!({"url": RECORDING_FACILITY_EXT,
        "valueReference": {"reference": format!("Organization/{facility}"), "display": name}}));
    v["extension"] = Value::Array(ext);
    for (i, sha, size) in blobs {
        let att = &mut v["content"][*i]["attachment"];
        if let Some(o) = att.as_object_mut() {
            o.remove("data");
            o.insert("url".into(), json!(format!("Binary/{id}-{version}-{i}")));
            o.insert("size".into(), json!(size));
            let mut ext: Vec<Value> = o
                .get("extension")
                .and_then(Value::as_array)
                .map(|xs| {
                    xs.iter()
                        .filter(|x| x["url"] != ATTACHMENT_SHA256_EXT)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            ext.push(json!({"url": ATTACHMENT_SHA256_EXT, "valueString": sha}));
            o.insert("extension".into(), Value::Array(ext));
        }
    }
    // attachments kept from an earlier version point at this version's Binary
    if t == ResourceType::DocumentReference {
        if let Some(content) = v["content"].as_array_mut() {
            for (i, c) in content.iter_mut().enumerate() {
                if has_sha(&c["attachment"]) {
                    c["attachment"]["url"] = json!(format!("Binary/{id}-{version}-{i}"));
                }
            }
        }
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn stored_of(
    t: ResourceType,
    id: &str,
    version: u64,
    now: u64,
    patient: &str,
    facility: &str,
    keys: &Keys,
    body: &Value,
) -> Stored {
    let date = keys.date.unwrap_or((now / 1_000_000) as i64);
    Stored {
        rtype: t.as_str().to_string(),
        id: id.to_string(),
        version,
        updated_us: now,
        patient: patient.to_string(),
        facility: facility.to_string(),
        category: keys.category.as_str().to_string(),
        date: date::key(date),
        json: json_text(body),
    }
}

fn entry_of(facility: &str, keys: &Keys) -> Entry {
    Entry {
        facility: facility.to_string(),
        category: keys.category.as_str().to_string(),
        status: keys.status.clone(),
        codes: keys.codes.clone(),
        categories: keys.categories.clone(),
        sites: keys.sites.clone(),
        until: keys.until,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::admin::NewFacility;
    use crate::identity::{LocalId, NewPatient};
    use crate::model::Role;
    use crate::policy::Principal;
    use crate::ShareConfig;
    use renkei_store::{Store, StoreOptions};

    fn user(role: Role, facility: Option<&str>) -> Actor {
        Actor::User(Principal {
            user_id: format!("u-{}", role.as_str()),
            name: "test".into(),
            facility: facility.map(str::to_string),
            role,
            token_id: "t".into(),
        })
    }

    fn enroll(share: &Share, admin: &Actor, local: &str) -> String {
        share
            .enroll(
                admin,
                NewPatient {
                    family: "佐藤".into(),
                    given: "花子".into(),
                    birth_date: "1975-10-10".into(),
                    sex: "female".into(),
                    consent: true,
                    local_ids: vec![LocalId {
                        issuer: "1310000001".into(),
                        patient_id: local.into(),
                    }],
                    ..Default::default()
                },
            )
            .unwrap()
            .id
    }

    fn condition(p: &str, onset: &str) -> Value {
        json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{p}")},
               "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]},
               "clinicalStatus": {"coding": [{"code": "active"}]}, "onsetDateTime": onset})
    }

    #[test]
    fn records_follow_merges_versions_and_the_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let store =
            Store::open_with(&tmp.path().join("d"), StoreOptions { min_free_bytes: 0 }).unwrap();
        let share = Share::open(Arc::new(store), ShareConfig::default()).unwrap();
        let admin = user(Role::RegionalAdmin, None);
        share
            .add_facility(
                &admin,
                NewFacility {
                    code: "1310000001".into(),
                    name: "Clinic A".into(),
                    kind: "clinic".into(),
                    ..Default::default()
                },
            )
            .unwrap();
        let (p1, p2) = (enroll(&share, &admin, "1"), enroll(&share, &admin, "2"));
        let doctor = user(Role::Doctor, Some("1310000001"));
        let c1 = share.create(&doctor, condition(&p1, "2024-01-01")).unwrap();
        share.create(&doctor, condition(&p2, "2023-01-01")).unwrap();
        // the HL7 import writes as the facility's interface
        let hl7 = Actor::Ae {
            title: "HL7".into(),
            facility: Some("1310000001".into()),
        };
        share.create(&hl7, condition(&p2, "2022-01-01")).unwrap();
        let nurse_nowhere = Actor::Ae {
            title: "X".into(),
            facility: None,
        };
        assert!(matches!(
            share.create(&nurse_nowhere, condition(&p1, "2024-01-01")),
            Err(ClinicalError::Share(ShareError::Forbidden(_)))
        ));
        assert!(matches!(
            share.create(&doctor, condition("0000000999", "2024-01-01")),
            Err(ClinicalError::Invalid(_))
        ));

        // p2 merged into p1: p1's searches find p2's records, oldest last
        share.merge(&admin, &p1, &p2).unwrap();
        let mut q = SearchParams::for_patient(&p1);
        q.count = 10;
        let page = share
            .search(&doctor, ResourceType::Condition, &q, "http://x")
            .unwrap();
        assert_eq!(page.total, 3);
        let onsets: Vec<&str> = page
            .resources
            .iter()
            .map(|r| r["onsetDateTime"].as_str().unwrap())
            .collect();
        assert_eq!(onsets, vec!["2024-01-01", "2023-01-01", "2022-01-01"]);

        // versions: the old one stays readable, the search sees the new one only
        let id = c1.resource["id"].as_str().unwrap().to_string();
        let mut v = c1.resource.clone();
        v["onsetDateTime"] = json!("2021-06-01");
        let v2 = share
            .update(&doctor, ResourceType::Condition, &id, v.clone(), Some(1))
            .unwrap();
        assert_eq!(v2["meta"]["versionId"], "2");
        assert!(matches!(
            share.update(&doctor, ResourceType::Condition, &id, v, Some(1)),
            Err(ClinicalError::PreconditionFailed(_))
        ));
        let old = share
            .read(&doctor, ResourceType::Condition, &id, Some(1), "http://x")
            .unwrap();
        assert_eq!(old["onsetDateTime"], "2024-01-01");
        assert_eq!(
            share
                .resource_history(&doctor, ResourceType::Condition, &id)
                .unwrap()
                .len(),
            2
        );
        q.dates = vec![DateFilter::parse("ge2024-01-01").unwrap()];
        let page = share
            .search(&doctor, ResourceType::Condition, &q, "http://x")
            .unwrap();
        assert_eq!(page.total, 0);
    }
}
