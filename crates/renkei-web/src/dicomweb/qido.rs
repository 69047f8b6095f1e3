//! QIDO-RS, the Search transaction (PS3.18 10.6): the query parameters turned into C-FIND
//! identifiers and run by the same engine as C-FIND (`Query::from_identifier` +
//! `Store::find`), so matching is identical on both sides.
//!
//! Every resource runs as a chain from the study level down: `/series` and `/instances`
//! (searches across studies, PS3.18 10.6.1) as well as the hierarchical ones.
//! Each matching key goes to the query of its own level (a study attribute is matched by
//! the study query, a series attribute by the series query of each matching study), which
//! keeps every query hierarchical as PS3.4 C.4.1.2.1 wants, and lets the store compute the
//! derived attributes of each level (ModalitiesInStudy, NumberOfSeriesRelatedInstances…)
//! where it knows them.

use std::collections::BTreeSet;

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::InMemDicomObject;
use serde_json::{Map, Value};

use renkei_model::query::{Entity, InfoModel, Level, Matcher, Query};
use renkei_share::policy::ImageScope;
use renkei_share::{Actor, AuditEvent, Principal, Share};
use renkei_store::Store;

use super::json::{attribute_from_text, dictionary_vr, tag_key};
use super::{base_url, path_uid};
use crate::{ApiError, AppState};

pub use super::DICOM_JSON;

/// The Warning header sent when the node's result cap cut the answer: PS3.18 has the
/// origin server that returns fewer matches than exist say so with a 299 warning, and the
/// client page on with `offset`.
pub const TRUNCATED_WARNING: &str = "299 renkei: \"The number of results exceeded the maximum \
     supported by the server. Additional results can be requested.\"";

/// Patient and study attributes the index keeps (matched by the study query).
const STUDY_TAGS: &[Tag] = &[
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::STUDY_ID,
    tags::STUDY_DESCRIPTION,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::MODALITIES_IN_STUDY,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
];

/// Series attributes the index keeps.
const SERIES_TAGS: &[Tag] = &[
    tags::SERIES_INSTANCE_UID,
    tags::MODALITY,
    tags::SERIES_NUMBER,
    tags::SERIES_DESCRIPTION,
    tags::BODY_PART_EXAMINED,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
];

/// Instance attributes the index keeps.
const INSTANCE_TAGS: &[Tag] = &[
    tags::SOP_INSTANCE_UID,
    tags::SOP_CLASS_UID,
    tags::INSTANCE_NUMBER,
    tags::ROWS,
    tags::COLUMNS,
    tags::NUMBER_OF_FRAMES,
];

/// Default return attributes of a study search (PS3.18 Table 6.7.1-2, study level).
const STUDY_DEFAULTS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::INSTANCE_AVAILABILITY,
    tags::MODALITIES_IN_STUDY,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::RETRIEVE_URL,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
];

/// Default return attributes of a series search (PS3.18 Table 6.7.1-2, series level).
const SERIES_DEFAULTS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::MODALITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::SERIES_DESCRIPTION,
    tags::RETRIEVE_URL,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_NUMBER,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    tags::REQUEST_ATTRIBUTES_SEQUENCE,
];

/// Default return attributes of an instance search (PS3.18 Table 6.7.1-2, instance level).
const INSTANCE_DEFAULTS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::INSTANCE_AVAILABILITY,
    tags::TIMEZONE_OFFSET_FROM_UTC,
    tags::RETRIEVE_URL,
    tags::INSTANCE_NUMBER,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::NUMBER_OF_FRAMES,
];

/// Attributes this module fills itself rather than the index.
const WEB_TAGS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::RETRIEVE_URL,
    tags::INSTANCE_AVAILABILITY,
];

/// The level an indexed attribute belongs to; None for attributes the index does not keep.
fn level_of(tag: Tag) -> Option<Level> {
    if STUDY_TAGS.contains(&tag) {
        Some(Level::Study)
    } else if SERIES_TAGS.contains(&tag) {
        Some(Level::Series)
    } else if INSTANCE_TAGS.contains(&tag) {
        Some(Level::Image)
    } else {
        None
    }
}

/// The parsed query parameters of a search (PS3.18 8.3.4).
#[derive(Debug, Default)]
struct Params {
    /// `{attributeID}={value}` matching keys, in request order.
    keys: Vec<(Tag, String)>,
    /// `includefield` attributes.
    include: Vec<Tag>,
    /// `includefield=all`.
    include_all: bool,
    /// `fuzzymatching=true`.
    fuzzy: bool,
    /// `limit`.
    limit: Option<usize>,
    /// `offset`.
    offset: usize,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// An attribute named by keyword or by tag (`PatientName`, `00100010`).
fn attribute(name: &str) -> Result<Tag, ApiError> {
    if name.contains('.') {
        return Err(bad(format!(
            "{name}: matching or including attributes inside sequences is not supported"
        )));
    }
    let tag = if name.len() == 8 && name.chars().all(|c| c.is_ascii_hexdigit()) {
        name.parse::<Tag>()
            .map_err(|_| bad(format!("{name}: not a tag")))?
    } else {
        StandardDataDictionary
            .by_name(name)
            .map(|e| e.tag())
            .ok_or_else(|| bad(format!("unknown attribute {name:?}")))?
    };
    // odd groups are private: the dictionary knows their creator elements by range, but
    // the node keeps no private attribute to match or return
    if tag.group() % 2 == 1 || StandardDataDictionary.by_tag(tag).is_none() {
        return Err(bad(format!("unknown attribute {name:?}")));
    }
    if tag.group() <= 0x0002 || tag == tags::QUERY_RETRIEVE_LEVEL {
        return Err(bad(format!("{name} is not a query attribute")));
    }
    Ok(tag)
}

impl Params {
    fn parse(pairs: Vec<(String, String)>) -> Result<Params, ApiError> {
        let mut p = Params::default();
        for (name, value) in pairs {
            match name.as_str() {
                // Weasis sends `?&includefield=…`: an empty name is no parameter
                "" => {}
                "includefield" => {
                    for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                        if field == "all" {
                            p.include_all = true;
                        } else {
                            p.include.push(attribute(field)?);
                        }
                    }
                }
                "fuzzymatching" => {
                    p.fuzzy = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("fuzzymatching must be true or false")),
                    }
                }
                "limit" => {
                    p.limit = Some(
                        value
                            .parse()
                            .map_err(|_| bad("limit must be a non-negative integer"))?,
                    )
                }
                "offset" => {
                    p.offset = value
                        .parse()
                        .map_err(|_| bad("offset must be a non-negative integer"))?
                }
                // media type as a query parameter (PS3.18 8.3.3.1): checked with Accept
                "accept" | "charset" => {}
                _ => {
                    let tag = attribute(&name)?;
                    if p.keys.iter().any(|(t, _)| *t == tag) {
                        return Err(bad(format!("{name} is given more than once")));
                    }
                    let value = check_value(tag, &name, &value)?;
                    p.keys.push((tag, value));
                }
            }
        }
        Ok(p)
    }
}

/// Check a matching value against its VR and bring it to C-FIND form: UID lists may be
/// comma-separated in QIDO (PS3.18 8.3.4), `\`-separated in DICOM.
fn check_value(tag: Tag, name: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    let invalid = || bad(format!("invalid value {value:?} for {name}"));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match dictionary_vr(tag) {
        VR::UI => {
            let list = v.replace(',', "\\");
            if list != "*"
                && !list
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'\\')
            {
                return Err(invalid());
            }
            Ok(list)
        }
        VR::DA => {
            // single date or range (PS3.4 C.2.2.2.5); no wildcards on dates
            let ok = v.is_empty()
                || match v.split_once('-') {
                    None => digits(v, 8),
                    Some((lo, hi)) => {
                        (lo.is_empty() || digits(lo, 8))
                            && (hi.is_empty() || digits(hi, 8))
                            && !(lo.is_empty() && hi.is_empty())
                    }
                };
            if ok {
                Ok(v.to_string())
            } else {
                Err(invalid())
            }
        }
        VR::TM => {
            let part_ok = |s: &str| {
                s.is_empty()
                    || s.bytes()
                        .all(|b| b.is_ascii_digit() || b == b'.' || b == b':')
            };
            match v.split_once('-') {
                Some((lo, hi)) if part_ok(lo) && part_ok(hi) => Ok(v.to_string()),
                None if part_ok(v) => Ok(v.to_string()),
                _ => Err(invalid()),
            }
        }
        VR::IS | VR::US | VR::UL | VR::SS | VR::SL => {
            if v.is_empty() || v.split('\\').all(|n| n.trim().parse::<i64>().is_ok()) {
                Ok(v.to_string())
            } else {
                Err(invalid())
            }
        }
        VR::SQ if !v.is_empty() => Err(bad(format!(
            "{name}: matching on sequences is not supported"
        ))),
        _ => Ok(v.to_string()),
    }
}

/// The Search resources (PS3.18 10.6.1): what the path fixes and the level searched.
#[derive(Debug, Clone)]
struct Resource {
    target: Level,
    study: Option<String>,
    series: Option<String>,
}

/// The media type to answer with, from `Accept` (or the `accept` query parameter):
/// DICOM JSON, or plain JSON for a client that asks only for that; else 406.
fn negotiate(headers: &HeaderMap, uri: &Uri) -> Result<&'static str, ApiError> {
    let mut ranges: Vec<String> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(|r| r.to_string())
        .collect();
    if let Ok(UrlQuery(pairs)) = UrlQuery::<Vec<(String, String)>>::try_from_uri(uri) {
        ranges.extend(
            pairs
                .into_iter()
                .filter(|(k, _)| k == "accept")
                // an unescaped `+` in a query string decodes as a space
                .flat_map(|(_, v)| {
                    v.split(',')
                        .map(|r| r.replace(' ', "+"))
                        .collect::<Vec<_>>()
                }),
        );
    }
    let types: Vec<String> = ranges.iter().map(|r| super::essence(r)).collect();
    super::json_media(types.iter().map(String::as_str), "search results are")
}

/// One search, ready to run on the blocking pool.
#[derive(Debug)]
struct Search {
    resource: Resource,
    /// The study query; and the series and instance queries when the target is below,
    /// with a placeholder parent UID replaced for each parent.
    study: Query,
    series: Option<Query>,
    instance: Option<Query>,
    /// Attributes of each answer, in tag order.
    returns: Vec<Tag>,
    offset: usize,
    take: usize,
    cap: usize,
    limit: Option<usize>,
    base_url: String,
}

const PLACEHOLDER_UID: &str = "1";

impl Search {
    fn new(
        resource: Resource,
        p: Params,
        opts: &super::DicomWebOptions,
        base_url: String,
    ) -> Result<Search, ApiError> {
        let target = resource.target;
        // keys below the searched level cannot match anything there: say so rather
        // than answer with nothing
        for (tag, value) in &p.keys {
            if let Some(level) = level_of(*tag) {
                if level > target && !value.is_empty() {
                    return Err(bad(format!(
                        "{} is not an attribute of the {} level or above",
                        keyword(*tag),
                        target.as_str()
                    )));
                }
            }
        }
        let mut returns: BTreeSet<Tag> = BTreeSet::new();
        // the defaults of the level, and of the levels above that the path leaves open
        // (PS3.18 Table 6.7.1-2 and its notes on searches across studies or series)
        returns.extend(match target {
            Level::Study | Level::Patient => STUDY_DEFAULTS,
            Level::Series => SERIES_DEFAULTS,
            Level::Image => INSTANCE_DEFAULTS,
        });
        if target > Level::Study && resource.study.is_none() {
            returns.extend(STUDY_DEFAULTS);
        }
        if target > Level::Series && resource.series.is_none() {
            returns.extend(SERIES_DEFAULTS);
        }
        if p.include_all {
            returns.extend(STUDY_TAGS);
            if target >= Level::Series {
                returns.extend(SERIES_TAGS);
            }
            if target >= Level::Image {
                returns.extend(INSTANCE_TAGS);
            }
        }
        returns.extend(&p.include);
        returns.extend(p.keys.iter().map(|(t, _)| *t));
        if resource.study.is_some() {
            returns.insert(tags::STUDY_INSTANCE_UID);
        }
        if resource.series.is_some() {
            returns.insert(tags::SERIES_INSTANCE_UID);
        }

        // which query evaluates (matches or computes) each attribute: its own level, or
        // the searched level for attributes the index does not keep (they then fail any
        // non-universal key, as in C-FIND)
        let query_level = |tag: Tag| level_of(tag).unwrap_or(target).min(target);
        let fold = opts.fold_names || p.fuzzy;
        let build = |level: Level, uids: &[(Tag, &str)]| -> Result<Query, ApiError> {
            let mut obj = InMemDicomObject::new_empty();
            put(&mut obj, tags::QUERY_RETRIEVE_LEVEL, level.as_str());
            for &tag in &returns {
                if query_level(tag) == level && !WEB_TAGS.contains(&tag) {
                    put(&mut obj, tag, "");
                }
            }
            for (tag, value) in &p.keys {
                if query_level(*tag) == level {
                    put(&mut obj, *tag, value);
                }
            }
            for (tag, uid) in uids {
                put(&mut obj, *tag, uid);
            }
            let mut q = Query::from_identifier(&obj, InfoModel::StudyRoot)
                .map_err(|e| bad(e.to_string()))?;
            q.fold_names = fold;
            Ok(q)
        };
        let study_uid = resource.study.as_deref();
        let study_key: Vec<(Tag, &str)> =
            study_uid.map_or(Vec::new(), |u| vec![(tags::STUDY_INSTANCE_UID, u)]);
        let study = build(Level::Study, &study_key)?;
        let series = (target >= Level::Series)
            .then(|| {
                let mut uids = vec![(tags::STUDY_INSTANCE_UID, PLACEHOLDER_UID)];
                if let Some(s) = &resource.series {
                    uids.push((tags::SERIES_INSTANCE_UID, s.as_str()));
                }
                build(Level::Series, &uids)
            })
            .transpose()?;
        let instance = (target >= Level::Image)
            .then(|| {
                build(
                    Level::Image,
                    &[
                        (tags::STUDY_INSTANCE_UID, PLACEHOLDER_UID),
                        (tags::SERIES_INSTANCE_UID, PLACEHOLDER_UID),
                    ],
                )
            })
            .transpose()?;
        let cap = opts.max_results.max(1);
        Ok(Search {
            resource,
            study,
            series,
            instance,
            returns: returns.into_iter().collect(),
            offset: p.offset,
            take: p.limit.unwrap_or(usize::MAX).min(cap),
            cap,
            limit: p.limit,
            base_url,
        })
    }

    /// Run the chain of queries as `actor`, through the access policy; the answers and
    /// whether the cap cut them. A PatientID that is a regional ID searches every linked
    /// local ID and answers under the regional ID; one audit record per search.
    fn run(
        &self,
        store: &Store,
        share: &Share,
        actor: Actor,
    ) -> Result<(Vec<Value>, bool), ApiError> {
        let mut scope = share.image_scope(actor);
        let (regional, study_queries) = match share.expand_regional_query(&self.study)? {
            Some((id, qs)) => (Some(id), qs),
            None => (None, vec![self.study.clone()]),
        };
        let result = self.run_queries(store, &mut scope, regional.as_deref(), &study_queries);
        scope.finish(
            "QIDO-RS",
            AuditEvent::Query,
            regional.as_deref().unwrap_or_default(),
        )?;
        result
    }

    fn run_queries(
        &self,
        store: &Store,
        scope: &mut ImageScope<'_>,
        regional: Option<&str>,
        study_queries: &[Query],
    ) -> Result<(Vec<Value>, bool), ApiError> {
        let mut page = Page {
            skip: self.offset,
            take: self.take,
            items: Vec::new(),
            more: false,
        };
        let mut failure: Option<ApiError> = None;
        // under a regional search every answer carries the regional ID
        let present = |e: &mut Entity| {
            if let Some(id) = regional {
                e.patient.key.patient_id = id.to_string();
                e.patient.key.issuer.clear();
            }
        };
        for study_q in study_queries {
            let mut go_on = true;
            store.find(study_q, |mut study| {
                match scope.admit(&study.patient.key) {
                    Ok((true, _)) => {}
                    Ok((false, _)) => return true,
                    Err(e) => {
                        failure = Some(e.into());
                        go_on = false;
                        return false;
                    }
                }
                present(&mut study);
                let Some(series_q) = &self.series else {
                    go_on = page.push(|| self.answer(&study));
                    return go_on;
                };
                let Some(study_uid) = study.study.as_ref().map(|s| s.study_uid.clone()) else {
                    return true;
                };
                let series_q = with_uid(series_q, tags::STUDY_INSTANCE_UID, &study_uid);
                let r = store.find(&series_q, |mut series| {
                    inherit(&mut series, &study);
                    present(&mut series);
                    let Some(instance_q) = &self.instance else {
                        go_on = page.push(|| self.answer(&series));
                        return go_on;
                    };
                    let Some(series_uid) = series.series.as_ref().map(|s| s.series_uid.clone())
                    else {
                        return true;
                    };
                    let q = with_uid(instance_q, tags::STUDY_INSTANCE_UID, &study_uid);
                    let q = with_uid(&q, tags::SERIES_INSTANCE_UID, &series_uid);
                    let r = store.find(&q, |mut instance| {
                        inherit(&mut instance, &series);
                        present(&mut instance);
                        go_on = page.push(|| self.answer(&instance));
                        go_on
                    });
                    if let Err(e) = r {
                        failure = Some(e.into());
                        go_on = false;
                    }
                    go_on
                });
                if let Err(e) = r {
                    failure = Some(e.into());
                    go_on = false;
                }
                go_on
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            if !go_on {
                break;
            }
        }
        let capped = page.more && self.limit.is_none_or(|l| l > self.cap);
        Ok((page.items, capped))
    }

    /// One answer as a DICOM JSON object (PS3.18 Annex F.2).
    fn answer(&self, e: &Entity) -> Value {
        let mut out = Map::new();
        for &tag in &self.returns {
            let vr = dictionary_vr(tag);
            let text = match tag {
                // the index keeps text as UTF-8 whatever it arrived in; so is JSON
                tags::SPECIFIC_CHARACTER_SET => "ISO_IR 192".to_string(),
                // everything the node holds is on its own disk: Instance Availability ONLINE
                tags::INSTANCE_AVAILABILITY => "ONLINE".to_string(),
                tags::RETRIEVE_URL => self.retrieve_url(e),
                _ => e.value(tag).unwrap_or_default(),
            };
            out.insert(tag_key(tag), attribute_from_text(vr, &text));
        }
        Value::Object(out)
    }

    /// The WADO-RS URL of the answer's resource, Retrieve URL (0008,1190).
    fn retrieve_url(&self, e: &Entity) -> String {
        let mut url = self.base_url.clone();
        let level = self.resource.target;
        if let Some(st) = &e.study {
            url.push_str("/studies/");
            url.push_str(&st.study_uid);
        }
        if level >= Level::Series {
            if let Some(se) = &e.series {
                url.push_str("/series/");
                url.push_str(&se.series_uid);
            }
        }
        if level >= Level::Image {
            if let Some(i) = &e.instance {
                url.push_str("/instances/");
                url.push_str(&i.sop_uid);
            }
        }
        url
    }
}

/// Results between `offset` and `offset + take`, and whether there were more.
struct Page {
    skip: usize,
    take: usize,
    items: Vec<Value>,
    more: bool,
}

impl Page {
    /// Offer one match; false once the page is full (stop the query).
    fn push(&mut self, answer: impl FnOnce() -> Value) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return true;
        }
        if self.items.len() >= self.take {
            self.more = true;
            return false;
        }
        self.items.push(answer());
        true
    }
}

/// The derived attributes a parent query computed, copied to its child.
fn inherit(child: &mut Entity, parent: &Entity) {
    child.patient_studies = child.patient_studies.or(parent.patient_studies);
    child.modalities_in_study = child
        .modalities_in_study
        .take()
        .or_else(|| parent.modalities_in_study.clone());
    child.study_series = child.study_series.or(parent.study_series);
    child.study_instances = child.study_instances.or(parent.study_instances);
    child.series_instances = child.series_instances.or(parent.series_instances);
}

/// `q` with the parent's unique key set to `uid`.
fn with_uid(q: &Query, tag: Tag, uid: &str) -> Query {
    let mut q = q.clone();
    for k in q.keys.iter_mut().filter(|k| k.tag == tag) {
        k.matcher = Matcher::UidList(vec![uid.to_string()]);
    }
    q
}

fn put(obj: &mut InMemDicomObject, tag: Tag, value: &str) {
    let vr = dictionary_vr(tag);
    let value = if value.is_empty() || vr == VR::SQ {
        PrimitiveValue::Empty
    } else {
        PrimitiveValue::from(value)
    };
    obj.put(DataElement::new(tag, vr, value));
}

fn keyword(tag: Tag) -> String {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.alias().to_string())
        .unwrap_or_else(|| tag_key(tag))
}

async fn search(
    state: AppState,
    principal: Principal,
    resource: Resource,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let media = negotiate(&headers, &uri)?;
    let UrlQuery(pairs) =
        UrlQuery::<Vec<(String, String)>>::try_from_uri(&uri).map_err(|e| bad(e.body_text()))?;
    let params = Params::parse(pairs)?;
    let search = Search::new(resource, params, &state.dicomweb, base_url(&headers))?;
    let store = state.store.clone();
    let share = state.share.clone();
    let actor = crate::auth::actor(&principal);
    let (items, capped) =
        tokio::task::spawn_blocking(move || search.run(&store, &share, actor)).await??;
    let body = serde_json::to_vec(&items).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = ([(CONTENT_TYPE, HeaderValue::from_static(media))], body).into_response();
    if capped {
        response.headers_mut().insert(
            axum::http::header::WARNING,
            HeaderValue::from_static(TRUNCATED_WARNING),
        );
    }
    Ok(response)
}

/// The segments of a QIDO-RS path; those a route lacks are None.
#[derive(Debug, serde::Deserialize)]
pub(super) struct SearchPath {
    study: Option<String>,
    series: Option<String>,
}

impl SearchPath {
    /// The resource searched at `target`, the path's UIDs checked.
    fn resource(self, target: Level) -> Result<Resource, ApiError> {
        Ok(Resource {
            target,
            study: self.study.as_deref().map(path_uid).transpose()?,
            series: self.series.as_deref().map(path_uid).transpose()?,
        })
    }
}

/// `GET /dicom-web/studies`, `/series`, `/instances`, and below a study or series
/// (`/studies/{study}/series`, `…/instances`): the level searched is the path's last
/// segment, as the routes name it.
pub(super) async fn search_route(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<SearchPath>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let target = match uri.path().trim_end_matches('/').rsplit('/').next() {
        Some("studies") => Level::Study,
        Some("series") => Level::Series,
        _ => Level::Image,
    };
    let resource = path.resource(target)?;
    search(state, principal, resource, headers, uri).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Result<Params, ApiError> {
        let uri: Uri = format!("/x?{q}").parse().unwrap();
        let UrlQuery(pairs) = UrlQuery::<Vec<(String, String)>>::try_from_uri(&uri).unwrap();
        Params::parse(pairs)
    }

    #[test]
    fn parses_keys_by_keyword_and_tag() {
        let p = params(
            "PatientName=Yamada*&00100020=X&StudyDate=20200101-20201231\
             &includefield=00081030,Modality&includefield=all&fuzzymatching=true&limit=5&offset=2",
        )
        .unwrap();
        assert_eq!(
            p.keys,
            vec![
                (tags::PATIENT_NAME, "Yamada*".to_string()),
                (tags::PATIENT_ID, "X".to_string()),
                (tags::STUDY_DATE, "20200101-20201231".to_string()),
            ]
        );
        assert_eq!(p.include, vec![tags::STUDY_DESCRIPTION, tags::MODALITY]);
        assert!(p.include_all && p.fuzzy);
        assert_eq!((p.limit, p.offset), (Some(5), 2));
        let p = params("StudyInstanceUID=1.2.3,1.2.4").unwrap();
        assert_eq!(p.keys[0].1, "1.2.3\\1.2.4");
    }

    #[test]
    fn rejects_bad_parameters() {
        for q in [
            "NoSuchKeyword=1",
            "99999999=1",
            "StudyDate=2020",
            "StudyDate=20200101-2021",
            "StudyInstanceUID=abc",
            "limit=-1",
            "offset=x",
            "fuzzymatching=yes",
            "includefield=Nope",
            "PatientName=A&PatientName=B",
            "ReferencedStudySequence.StudyInstanceUID=1",
            "QueryRetrieveLevel=STUDY",
        ] {
            assert!(
                matches!(params(q), Err(ApiError::BadRequest(_))),
                "{q} accepted"
            );
        }
    }

    #[test]
    fn negotiates_media_types() {
        let uri: Uri = "/dicom-web/studies".parse().unwrap();
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
            negotiate(&h, &uri)
        };
        assert_eq!(negotiate(&HeaderMap::new(), &uri).ok(), Some(DICOM_JSON));
        assert_eq!(with("application/dicom+json").ok(), Some(DICOM_JSON));
        assert_eq!(with("text/html, */*;q=0.8").ok(), Some(DICOM_JSON));
        assert_eq!(with("application/json").ok(), Some("application/json"));
        let uri: Uri = "/dicom-web/studies?accept=application/dicom+json"
            .parse()
            .unwrap();
        assert_eq!(negotiate(&HeaderMap::new(), &uri).ok(), Some(DICOM_JSON));
        let uri: Uri = "/dicom-web/studies?accept=application/dicom%2Bxml"
            .parse()
            .unwrap();
        assert!(negotiate(&HeaderMap::new(), &uri).is_err());
        assert!(matches!(
            with("application/dicom+xml"),
            Err(ApiError::NotAcceptable(_))
        ));
        assert!(matches!(
            with("multipart/related; type=\"application/dicom\""),
            Err(ApiError::NotAcceptable(_))
        ));
    }

    #[test]
    fn keys_go_to_their_level() {
        let p = params("PatientName=Y*&Modality=CT&SOPClassUID=1.2").unwrap();
        let resource = Resource {
            target: Level::Image,
            study: None,
            series: None,
        };
        let s = Search::new(
            resource,
            p,
            &crate::dicomweb::DicomWebOptions::default(),
            "/dicom-web".into(),
        )
        .unwrap();
        assert!(s.study.key(tags::PATIENT_NAME).is_some());
        assert!(s.study.key(tags::MODALITY).is_none());
        let series = s.series.as_ref().unwrap();
        assert!(series.key(tags::MODALITY).is_some());
        assert!(series.key(tags::PATIENT_NAME).is_none());
        let instance = s.instance.as_ref().unwrap();
        assert!(instance.key(tags::SOP_CLASS_UID).is_some());
        // relational instance search: study and series defaults come back too
        assert!(s.returns.contains(&tags::STUDY_DATE));
        assert!(s.returns.contains(&tags::SERIES_NUMBER));
        // a series key on a study search is refused
        let p = params("Modality=CT").unwrap();
        let resource = Resource {
            target: Level::Study,
            study: None,
            series: None,
        };
        assert!(Search::new(
            resource,
            p,
            &crate::dicomweb::DicomWebOptions::default(),
            String::new()
        )
        .is_err());
    }
}
