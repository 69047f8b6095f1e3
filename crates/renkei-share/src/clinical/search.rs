//! Search and `$everything`: one key range of the patient's timeline, filtered on the
//! index rows (date, code, category, status), decided by the policy per (owner,
//! category), sorted and paged; only the page's documents are decoded. One audit record
//! per request.

use std::collections::HashSet;

use serde_json::Value;

use super::imaging::{imaging_study_resource, Study, DCM};
use super::store::{Entry, Hit};
use super::views::consent_resource;
use super::{category_from, date, parse_json, patient_resource, CResult, ResourceType, Scope};
use crate::error::{Result, ShareError};
use crate::model::RegionalPatient;
use crate::policy::{Actor, Category};
use crate::{AuditEvent, Share};

/// One token of a `code`/`category`/`status` parameter: `code`, `system|code`, `|code`
/// (no system) or `system|` (any code of the system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFilter {
    /// None: any system.
    pub system: Option<String>,
    /// Empty: any code.
    pub code: String,
}

impl TokenFilter {
    /// Parse one token.
    pub fn parse(v: &str) -> TokenFilter {
        match v.split_once('|') {
            Some((s, c)) => TokenFilter {
                system: Some(s.to_string()),
                code: c.to_string(),
            },
            None => TokenFilter {
                system: None,
                code: v.to_string(),
            },
        }
    }

    /// Whether a stored `system|code` matches.
    pub fn matches(&self, stored: &str) -> bool {
        let (sys, code) = stored.split_once('|').unwrap_or(("", stored));
        match &self.system {
            None => code == self.code,
            Some(s) => s == sys && (self.code.is_empty() || code == self.code),
        }
    }
}

/// The parameters of a search (and of `$everything`).
#[derive(Debug, Clone)]
pub struct SearchParams {
    /// The patient (regional ID, or `Patient/<id>`).
    pub patient: String,
    /// `date` conditions (all must hold).
    pub dates: Vec<date::DateFilter>,
    /// `code` (ImagingStudy: `modality`): each inner list is one parameter (any of its
    /// tokens), every parameter must match.
    pub codes: Vec<Vec<TokenFilter>>,
    /// `category` (Encounter: `class`).
    pub categories: Vec<Vec<TokenFilter>>,
    /// `status` (Condition and AllergyIntolerance: `clinical-status`).
    pub statuses: Vec<Vec<String>>,
    /// Newest first (`_sort=-date`).
    pub newest_first: bool,
    /// Skip this many matches.
    pub offset: usize,
    /// Page size.
    pub count: usize,
    /// `_include` values (`DetectedIssue:implicated`, `<type>:patient`, `<type>:subject`,
    /// `<type>:encounter`).
    pub include: Vec<String>,
    /// `$everything`: only these types (`_type`); empty: all.
    pub types: Vec<ResourceType>,
}

impl SearchParams {
    /// Parameters for one patient with the defaults.
    pub fn for_patient(patient: &str) -> SearchParams {
        SearchParams {
            patient: patient.to_string(),
            dates: Vec::new(),
            codes: Vec::new(),
            categories: Vec::new(),
            statuses: Vec::new(),
            newest_first: true,
            offset: 0,
            count: 50,
            include: Vec::new(),
            types: Vec::new(),
        }
    }

    fn date_ok(&self, key: &str) -> bool {
        if self.dates.is_empty() {
            return true;
        }
        match date::from_key(key) {
            Some(t) => self.dates.iter().all(|f| f.matches(t)),
            None => false,
        }
    }

    fn entry_ok(&self, e: &Entry) -> bool {
        self.codes
            .iter()
            .all(|any| any.iter().any(|t| e.codes.iter().any(|c| t.matches(c))))
            && self.categories.iter().all(|any| {
                any.iter()
                    .any(|t| e.categories.iter().any(|c| t.matches(c)))
            })
            && self.statuses.iter().all(|any| any.contains(&e.status))
    }
}

/// A page of results.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// Matches the reader may see, over all pages.
    pub total: usize,
    /// This page's resources.
    pub resources: Vec<Value>,
    /// Resources added by `_include`.
    pub included: Vec<Value>,
    /// Why something was withheld, when something was.
    pub withheld: Option<String>,
}

/// A row of a merged timeline.
enum Item {
    Stored(Box<Hit>),
    Study(Box<Study>),
}

impl Item {
    fn order(&self) -> (String, &'static str, usize, String) {
        match self {
            Item::Stored(h) => (h.date.clone(), h.rtype.as_str(), h.id.len(), h.id.clone()),
            Item::Study(s) => (s.date_key(), "ImagingStudy", 0, s.record.study_uid.clone()),
        }
    }
}

fn patient_id_of(reference: &str) -> &str {
    let r = reference.trim();
    r.rsplit_once("Patient/").map_or(r, |(_, id)| id)
}

impl Share {
    /// The timeline rows of `patients` (one type or all) that `keep` selects and the
    /// reader's scope admits, in key order; the scope counts what it withholds.
    fn admitted_rows(
        &self,
        patients: &[String],
        t: Option<ResourceType>,
        scope: &mut Scope<'_>,
        keep: impl Fn(&Hit) -> bool,
    ) -> Result<Vec<Hit>> {
        let mut rows = Vec::new();
        let mut err = None;
        self.timeline(patients, t, |h| {
            if !keep(&h) {
                return true;
            }
            match scope.admit(Some(&h.entry.facility), category_from(&h.entry.category)) {
                Ok(true) => rows.push(h),
                Ok(false) => {}
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            }
            true
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// The patient of a search; a malformed ID is a 400, an unknown one a 404.
    fn search_patient(&self, reference: &str) -> Result<RegionalPatient> {
        if reference.trim().is_empty() {
            return Err(ShareError::BadRequest(
                "name the patient: ?patient=<regional ID> (searches never span patients)".into(),
            ));
        }
        self.patient(patient_id_of(reference))
    }

    fn load_page(&self, t: ResourceType, ids: &[String]) -> Result<Vec<Value>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(s) = self.load(t, id)? {
                out.push(parse_json(&s)?);
            }
        }
        Ok(out)
    }

    /// Search resources of type `t` of one patient; withheld ones are left out; one audit
    /// record. `base` is the server's absolute URL.
    pub fn search(
        &self,
        actor: &Actor,
        t: ResourceType,
        params: &SearchParams,
        base: &str,
    ) -> CResult<SearchPage> {
        let patient = self.search_patient(&params.patient)?;
        let patients = self.patient_ids(&patient)?;
        let mut scope = Scope::new(self, actor, &patient);
        let mut page = SearchPage::default();
        match t {
            ResourceType::Consent => {
                if params.offset == 0 && scope.admit_demographics()? {
                    page.resources.push(consent_resource(&patient));
                }
                page.total = page.resources.len();
            }
            ResourceType::ImagingStudy => {
                let mut studies: Vec<Study> = Vec::new();
                for s in self.patient_studies(&patients)? {
                    let modalities: Vec<String> = s
                        .modalities()
                        .iter()
                        .map(|m| format!("{DCM}|{m}"))
                        .collect();
                    let e = Entry {
                        codes: modalities,
                        status: "available".into(),
                        ..Entry::default()
                    };
                    if params.date_ok(&s.date_key())
                        && params.entry_ok(&e)
                        && scope.admit(s.owner.as_deref(), Category::Imaging)?
                    {
                        studies.push(s);
                    }
                }
                if params.newest_first {
                    studies.reverse();
                }
                page.total = studies.len();
                page.resources = studies
                    .iter()
                    .skip(params.offset)
                    .take(params.count)
                    .map(|s| imaging_study_resource(s, Some(&patient), base))
                    .collect();
            }
            _ => {
                let mut hits = self.admitted_rows(&patients, Some(t), &mut scope, |h| {
                    params.date_ok(&h.date) && params.entry_ok(&h.entry)
                })?;
                // ids are serial numbers: shorter is older
                hits.sort_by(|a, b| {
                    (&a.date, a.id.len(), &a.id).cmp(&(&b.date, b.id.len(), &b.id))
                });
                if params.newest_first {
                    hits.reverse();
                }
                page.total = hits.len();
                let ids: Vec<String> = hits
                    .iter()
                    .skip(params.offset)
                    .take(params.count)
                    .map(|h| h.id.clone())
                    .collect();
                page.resources = self.load_page(t, &ids)?;
                page.included =
                    self.includes(&mut scope, &patients, t, &params.include, &page.resources)?;
            }
        }
        if scope.withheld > 0 {
            page.withheld = Some(scope.last_reason.to_string());
        }
        scope.finish(
            &format!("FHIR search {}", t.as_str()),
            AuditEvent::Query,
            &format!("{} matches", page.total),
        )?;
        Ok(page)
    }

    /// `_include`: referenced resources the scope admits (not counted as matches).
    fn includes(
        &self,
        scope: &mut Scope<'_>,
        patients: &[String],
        t: ResourceType,
        include: &[String],
        page: &[Value],
    ) -> Result<Vec<Value>> {
        let mut refs: Vec<String> = Vec::new();
        for inc in include {
            let Some((src, param)) = inc.split_once(':') else {
                continue;
            };
            if src != t.as_str() && src != "*" {
                continue;
            }
            for r in page {
                match param {
                    "implicated" => {
                        for i in r["implicated"].as_array().into_iter().flatten() {
                            if let Some(s) = i["reference"].as_str() {
                                refs.push(s.to_string());
                            }
                        }
                    }
                    "patient" | "subject" => refs.push(format!("Patient/{}", scope.patient.id)),
                    "encounter" => {
                        let e = if t == ResourceType::DocumentReference {
                            &r["context"]["encounter"][0]["reference"]
                        } else {
                            &r["encounter"]["reference"]
                        };
                        if let Some(s) = e.as_str() {
                            refs.push(s.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in refs {
            if !seen.insert(r.clone()) {
                continue;
            }
            let Some((rt, id)) = r.rsplit_once('/') else {
                continue;
            };
            let rt = rt.rsplit('/').next().unwrap_or(rt);
            if rt == "Patient" {
                if id == scope.patient.id && scope.admit_demographics()? {
                    let links = self.links(&scope.patient.id)?;
                    out.push(patient_resource(scope.patient, &links));
                }
                continue;
            }
            let Some(rt) = ResourceType::parse(rt).filter(|t| t.stored()) else {
                continue;
            };
            if let Some(s) = self.load(rt, id)? {
                // a reference a writer typed may name another patient's record: only the
                // searched patient's are included
                if !patients.contains(&s.patient) {
                    continue;
                }
                if scope.admit(Some(&s.facility), category_from(&s.category))? {
                    out.push(parse_json(&s)?);
                }
            }
        }
        Ok(out)
    }

    /// `Patient/{id}/$everything`: the patient, the consent, every stored resource and
    /// every imaging study the reader may see, ordered by date (oldest first), paged; one
    /// audit record. 403 when the reader may see nothing of the patient.
    pub fn everything(
        &self,
        actor: &Actor,
        params: &SearchParams,
        base: &str,
    ) -> CResult<SearchPage> {
        let patient = self.search_patient(&params.patient)?;
        let patients = self.patient_ids(&patient)?;
        let mut scope = Scope::new(self, actor, &patient);
        let wants = |t: ResourceType| params.types.is_empty() || params.types.contains(&t);
        let demographics = scope.admit_demographics()?;
        let mut items: Vec<Item> = self
            .admitted_rows(&patients, None, &mut scope, |h| {
                wants(h.rtype) && params.date_ok(&h.date)
            })?
            .into_iter()
            .map(|h| Item::Stored(Box::new(h)))
            .collect();
        if wants(ResourceType::ImagingStudy) {
            for s in self.patient_studies(&patients)? {
                if params.date_ok(&s.date_key())
                    && scope.admit(s.owner.as_deref(), Category::Imaging)?
                {
                    items.push(Item::Study(Box::new(s)));
                }
            }
        }
        if !demographics && scope.admitted == 0 {
            scope.finish("FHIR $everything", AuditEvent::Query, "")?;
            return Err(
                ShareError::Forbidden(format!("not permitted: {}", scope.last_reason)).into(),
            );
        }
        items.sort_by(|a, b| a.order().cmp(&b.order()));
        let mut all: Vec<Item> = Vec::new();
        let mut head: Vec<Value> = Vec::new();
        if demographics {
            let links = self.links(&patient.id)?;
            head.push(patient_resource(&patient, &links));
            if wants(ResourceType::Consent) {
                head.push(consent_resource(&patient));
            }
        }
        all.extend(items);
        let mut page = SearchPage {
            total: head.len() + all.len(),
            ..SearchPage::default()
        };
        let mut skip = params.offset;
        let mut take = params.count;
        for h in head {
            if skip > 0 {
                skip -= 1;
            } else if take > 0 {
                page.resources.push(h);
                take -= 1;
            }
        }
        for it in all.iter().skip(skip).take(take) {
            match it {
                Item::Stored(h) => {
                    if let Some(s) = self.load(h.rtype, &h.id)? {
                        page.resources.push(parse_json(&s)?);
                    }
                }
                Item::Study(s) => {
                    page.resources
                        .push(imaging_study_resource(s, Some(&patient), base))
                }
            }
        }
        if scope.withheld > 0 {
            page.withheld = Some(scope.last_reason.to_string());
        }
        scope.finish(
            "FHIR $everything",
            AuditEvent::Query,
            &format!("{} entries", page.total),
        )?;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_like_fhir() {
        let s = "http://loinc.org|4548-4";
        assert!(TokenFilter::parse("4548-4").matches(s));
        assert!(TokenFilter::parse("http://loinc.org|4548-4").matches(s));
        assert!(TokenFilter::parse("http://loinc.org|").matches(s));
        assert!(!TokenFilter::parse("|4548-4").matches(s));
        assert!(TokenFilter::parse("|x").matches("|x"));
        assert!(!TokenFilter::parse("urn:x|4548-4").matches(s));
    }
}
