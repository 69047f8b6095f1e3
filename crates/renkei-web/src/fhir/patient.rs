//! Patient: create (enrolment), read, and the patient-level operations `$everything` and
//! `$summary` (also by card: `Patient/$summary?card=NUMBER`). Names follow JP Core: the
//! kanji name carries the ISO 21090 representation "IDE", the kana name "SYL"; a local
//! patient ID of a facility with a 10-digit medical institution code uses JP Core's system
//! `urn:oid:1.2.392.100495.20.3.51.1` + code.

use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use renkei_share::clinical::views::{EN_REPRESENTATION, ISSUER_SYSTEM, JP_LOCAL_ID_OID};
use renkei_share::clinical::PatientRef;
use renkei_share::identity::{LocalId, NewPatient};
use renkei_share::model::RegionalPatient;
use renkei_share::policy::{Category, Subject};
use renkei_share::{AuditEvent, Principal, Share, ShareError};

use super::bundle::{base_url, everything_params, searchset, Params};
use super::{blocking_fhir, fhir, FhirError, REGIONAL_ID_SYSTEM};
use crate::auth::{actor, blocking};
use crate::{ApiError, AppState};
use renkei_share::clinical::SearchPage;

pub use renkei_share::clinical::{local_identifier, patient_resource};

/// Extension recording consent to sharing at enrolment (valueBoolean).
pub const CONSENT_EXTENSION: &str =
    "http://renkei.invalid/fhir/StructureDefinition/sharing-consent";

fn issuer_of_system(system: &str) -> Option<String> {
    system
        .strip_prefix(ISSUER_SYSTEM)
        .or_else(|| system.strip_prefix(JP_LOCAL_ID_OID))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().trim().to_string()
}

/// A FHIR Patient (as posted) as an enrolment.
fn patient_input(r: &Value) -> Result<NewPatient, ApiError> {
    if r["resourceType"] != "Patient" {
        return Err(ApiError::BadRequest(
            "expected a FHIR Patient resource (resourceType \"Patient\")".into(),
        ));
    }
    let names = r["name"].as_array().cloned().unwrap_or_default();
    let repr = |n: &Value| {
        n["extension"]
            .as_array()
            .and_then(|xs| xs.iter().find(|x| x["url"] == EN_REPRESENTATION))
            .map(|x| text(&x["valueCode"]))
    };
    let kana = names.iter().find(|n| repr(n).as_deref() == Some("SYL"));
    let main = names
        .iter()
        .find(|n| repr(n).as_deref() != Some("SYL"))
        .ok_or_else(|| ApiError::BadRequest("the Patient needs a name".into()))?;
    let first_given = |n: &Value| n["given"].get(0).map(text).unwrap_or_default();
    let consent = r["extension"]
        .as_array()
        .and_then(|xs| xs.iter().find(|x| x["url"] == CONSENT_EXTENSION))
        .and_then(|x| x["valueBoolean"].as_bool())
        .unwrap_or(false);
    let mut local_ids = Vec::new();
    for id in r["identifier"].as_array().cloned().unwrap_or_default() {
        let system = text(&id["system"]);
        if system == REGIONAL_ID_SYSTEM {
            return Err(ApiError::BadRequest(
                "the node assigns the regional ID: leave it out of the Patient".into(),
            ));
        }
        match issuer_of_system(&system) {
            Some(issuer) => local_ids.push(LocalId {
                issuer,
                patient_id: text(&id["value"]),
            }),
            None => {
                return Err(ApiError::BadRequest(format!(
                    "identifier system {system:?} is not a local patient ID system ({ISSUER_SYSTEM}<issuer> or {JP_LOCAL_ID_OID}<institution code>)"
                )))
            }
        }
    }
    Ok(NewPatient {
        family: text(&main["family"]),
        given: first_given(main),
        family_kana: kana.map(|n| text(&n["family"])).unwrap_or_default(),
        given_kana: kana.map(first_given).unwrap_or_default(),
        birth_date: text(&r["birthDate"]),
        sex: text(&r["gender"]),
        address: r["address"]
            .get(0)
            .map(|a| {
                let t = text(&a["text"]);
                if t.is_empty() {
                    a["line"]
                        .as_array()
                        .map(|l| l.iter().map(text).collect::<Vec<_>>().join(" "))
                        .unwrap_or_default()
                } else {
                    t
                }
            })
            .unwrap_or_default(),
        phone: r["telecom"]
            .as_array()
            .and_then(|t| t.iter().find(|c| c["system"] == "phone"))
            .map(|c| text(&c["value"]))
            .unwrap_or_default(),
        consent,
        local_ids,
    })
}

/// `POST /fhir/Patient`: enrolment.
pub(crate) async fn create(
    st: AppState,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, FhirError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let new = patient_input(&v)?;
    if !new.consent {
        return Err(ApiError::BadRequest(format!(
            "enrolment requires recorded consent: extension {CONSENT_EXTENSION} with valueBoolean true"
        ))
        .into());
    }
    let share = st.share.clone();
    let (pat, links) = blocking(move || {
        let pat = share.enroll(&actor(&p), new)?;
        let links = share.links(&pat.id)?;
        Ok((pat, links))
    })
    .await?;
    let mut r = fhir(StatusCode::CREATED, patient_resource(&pat, &links));
    if let Ok(loc) = HeaderValue::from_str(&format!(
        "/fhir/Patient/{}/_history/{}",
        pat.id, pat.version
    )) {
        r.headers_mut().insert(LOCATION, loc);
    }
    Ok(r)
}

/// Read a patient through the policy (category demographics); one audit record.
pub(crate) fn read_patient_checked(
    share: &Share,
    p: &Principal,
    id: &str,
) -> Result<RegionalPatient, ShareError> {
    let pat = share.patient(id)?;
    check_patient(share, p, pat, "FHIR read Patient")
}

/// The policy's answer for reading `pat` (category demographics), audited as `action`.
fn check_patient(
    share: &Share,
    p: &Principal,
    pat: RegionalPatient,
    action: &str,
) -> Result<RegionalPatient, ShareError> {
    let a = actor(p);
    let own = match a.facility() {
        Some(f) => share.is_facility_patient(f, &pat.id)?,
        None => false,
    };
    let d = share.decide(
        &a,
        Subject {
            patient: Some(&pat),
            owner: if own { a.facility() } else { None },
            category: Category::Demographics,
        },
    )?;
    let mut e = a.audit(action, AuditEvent::PatientRecord, &pat.id);
    e.allowed = d.allowed;
    e.break_glass = d.break_glass;
    e.detail = d.reason.to_string();
    share.audit_read(e)?;
    if d.allowed {
        Ok(pat)
    } else {
        Err(ShareError::Forbidden(format!(
            "not permitted: {}",
            d.reason
        )))
    }
}

/// `GET /fhir/Patient/{id}`, and `GET /fhir/Patient/$summary?card=NUMBER`.
pub(crate) async fn read(
    st: AppState,
    p: Principal,
    id: String,
    q: Params,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    if id == "$summary" {
        let card = q.first("card").map(str::to_string).ok_or_else(|| {
            FhirError::bad_request("name the patient: Patient/$summary?card=<card number>")
        })?;
        return summary(st, p, SummaryOf::Card(card), headers).await;
    }
    let share = st.share.clone();
    let (pat, links) = blocking(move || {
        let pat = read_patient_checked(&share, &p, &id)?;
        let links = share.links(&pat.id)?;
        Ok((pat, links))
    })
    .await?;
    Ok(fhir(StatusCode::OK, patient_resource(&pat, &links)))
}

/// `GET /fhir/Patient?identifier=[system|]value` (or `_id=`): the one patient an
/// identifier names, for systems that know a patient by the regional ID on the card or by
/// their own local ID. `system` is the regional ID system, or a local ID's (`urn:renkei:
/// issuer:…`, JP Core's `urn:oid:1.2.392.100495.20.3.51.1…`) of the reader's own facility
/// (another facility's local IDs match nothing); without one, a value is a regional ID
/// when it is one, else a local ID of the reader's facility (its code or an issuer it
/// declared). No name or birth-date search: the regional index is not a
/// directory to browse. The match goes through the policy like a read (one audit record);
/// a patient the reader may not see is withheld with the reason.
pub(crate) async fn search(
    st: AppState,
    p: Principal,
    q: Params,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    if let Some((k, _)) =
        q.0.iter()
            .find(|(k, _)| !matches!(k.as_str(), "identifier" | "_id" | "_count"))
    {
        return Err(FhirError::bad_request(format!(
            "Patient search takes identifier=[system|]value or _id=<regional ID>, not {k}"
        )));
    }
    let token = match (q.all("identifier").as_slice(), q.all("_id").as_slice()) {
        ([one], []) => Token::Identifier(one.to_string()),
        ([], [one]) => Token::Id(one.to_string()),
        _ => {
            return Err(FhirError::bad_request(
                "name one patient: identifier=[system|]value, or _id=<regional ID>",
            ))
        }
    };
    let base = base_url(&headers);
    let share = st.share.clone();
    let page = blocking(move || {
        let mut page = SearchPage::default();
        let found = match &token {
            Token::Id(id) => Some(share.patient(id)).transpose_not_found()?,
            Token::Identifier(t) => patient_by_identifier(&share, &p, t)?,
        };
        let Some(pat) = found else {
            // the identifier asked for, so that probing shows in the trail
            let mut e = actor(&p).audit("FHIR search Patient", AuditEvent::PatientRecord, "");
            e.detail = match &token {
                Token::Id(id) => format!("no match for _id {id}"),
                Token::Identifier(t) => format!("no match for identifier {t}"),
            };
            share.audit_read(e)?;
            return Ok(page);
        };
        match check_patient(&share, &p, pat, "FHIR search Patient") {
            Ok(pat) => {
                let links = share.links(&pat.id)?;
                page.total = 1;
                page.resources.push(patient_resource(&pat, &links));
            }
            Err(ShareError::Forbidden(why)) => page.withheld = Some(why),
            Err(e) => return Err(e),
        }
        Ok(page)
    })
    .await?;
    Ok(fhir(
        StatusCode::OK,
        searchset(
            &base,
            "/fhir/Patient",
            &q,
            |k| matches!(k, "identifier" | "_id"),
            &page,
            0,
            1,
        ),
    ))
}

enum Token {
    Identifier(String),
    Id(String),
}

/// `Ok(None)` for an unknown patient, other errors as they are.
trait NotFoundIsNone<T> {
    fn transpose_not_found(self) -> Result<Option<T>, ShareError>;
}

impl<T> NotFoundIsNone<T> for Option<Result<T, ShareError>> {
    fn transpose_not_found(self) -> Result<Option<T>, ShareError> {
        match self {
            None | Some(Err(ShareError::NotFound(_))) => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(e)) => Err(e),
        }
    }
}

/// Whether `p` may look patients up by this issuer's local IDs: its own facility's (its
/// code or a declared issuer), or any for the regional administrator.
fn own_issuer(share: &Share, p: &Principal, issuer: &str) -> bool {
    p.role == renkei_share::Role::RegionalAdmin
        || (p.facility.is_some() && share.facility_of_issuer(issuer) == p.facility)
}

/// The patient an identifier token names (see [`search`]).
fn patient_by_identifier(
    share: &Share,
    p: &Principal,
    token: &str,
) -> Result<Option<RegionalPatient>, ShareError> {
    let (system, value) = match token.split_once('|') {
        Some((s, v)) => (Some(s), v),
        None => (None, token),
    };
    if value.is_empty() {
        return Err(ShareError::BadRequest(
            "identifier: the value is empty".into(),
        ));
    }
    let by_local = |issuers: Vec<String>| -> Result<Option<RegionalPatient>, ShareError> {
        for issuer in issuers {
            let key = renkei_model::PatientKey {
                issuer,
                patient_id: value.to_string(),
            };
            if let Some(pat) = share.regional_for(&key)? {
                return Ok(Some(pat));
            }
        }
        Ok(None)
    };
    match system {
        Some(REGIONAL_ID_SYSTEM) => Some(share.patient(value)).transpose_not_found(),
        Some(s) => match issuer_of_system(s) {
            // another facility's local IDs are not looked up: walking its numbers would map
            // out whom it enrolled and their consent, without any card
            Some(issuer) if own_issuer(share, p, &issuer) => by_local(vec![issuer]),
            Some(_) => Ok(None),
            None => Err(ShareError::BadRequest(format!(
                "identifier system {s:?} is not one of this node's: {REGIONAL_ID_SYSTEM}, \
                 {ISSUER_SYSTEM}<issuer>, {JP_LOCAL_ID_OID}<institution code>"
            ))),
        },
        None if renkei_share::ids::is_regional_id(value) => {
            Some(share.patient(value)).transpose_not_found()
        }
        None => match p.facility.as_deref().and_then(|f| share.facility(f)) {
            Some(f) => {
                let mut issuers = vec![f.code.clone()];
                issuers.extend(f.issuers);
                by_local(issuers)
            }
            None => Ok(None),
        },
    }
}

enum SummaryOf {
    Id(String),
    Card(String),
}

async fn summary(
    st: AppState,
    p: Principal,
    of: SummaryOf,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let base = base_url(&headers);
    let share = st.share.clone();
    let doc = blocking_fhir(move || {
        let who = match &of {
            SummaryOf::Id(id) => PatientRef::Id(id),
            SummaryOf::Card(c) => PatientRef::Card(c),
        };
        Ok(share.summary(&actor(&p), who, &base)?)
    })
    .await?;
    Ok(fhir(StatusCode::OK, doc))
}

/// `GET /fhir/Patient/{id}/$everything` and `/$summary`.
pub(crate) async fn operation(
    st: AppState,
    p: Principal,
    id: String,
    op: String,
    q: Params,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    match op.as_str() {
        "$summary" => summary(st, p, SummaryOf::Id(id), headers).await,
        "$everything" => {
            let params = everything_params(&id, &q)?;
            let base = base_url(&headers);
            let share = st.share.clone();
            let b = base.clone();
            let (offset, count) = (params.offset, params.count);
            let page = blocking_fhir(move || Ok(share.everything(&actor(&p), &params, &b)?)).await?;
            let path = format!("/fhir/Patient/{id}/$everything");
            let keep = |k: &str| matches!(k, "start" | "end" | "_type");
            Ok(fhir(
                StatusCode::OK,
                searchset(&base, &path, &q, keep, &page, offset, count),
            ))
        }
        "_history" => Err(FhirError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "Patient keeps its current version only (the identity history is GET /api/patients/{id})",
        )),
        other => Err(FhirError::not_found(format!(
            "Patient has no operation {other:?} ($everything, $summary)"
        ))),
    }
}
