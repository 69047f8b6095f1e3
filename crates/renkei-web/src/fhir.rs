//! FHIR R4 (`application/fhir+json`) under `/fhir`: so far Patient (create = enrolment,
//! read) and AuditEvent (search by patient, read-only), and the CapabilityStatement
//! listing exactly that. Every error is an OperationOutcome. Names follow JP Core: the
//! kanji name carries the ISO 21090 representation "IDE", the kana name "SYL"; a local
//! patient ID of a facility with a 10-digit medical institution code uses JP Core's system
//! `urn:oid:1.2.392.100495.20.3.51.1` + code.

use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use renkei_share::identity::{LocalId, NewPatient};
use renkei_share::model::{rfc3339, RegionalPatient};
use renkei_share::policy::{Category, Subject};
use renkei_share::{audit, AuditEvent, Principal, Share, ShareError};

use crate::auth::{actor, blocking};
use crate::{ApiError, AppState};

/// The FHIR media type.
pub const FHIR_JSON: &str = "application/fhir+json";
/// Identifier system of regional patient IDs.
pub const REGIONAL_ID_SYSTEM: &str = "http://renkei.invalid/fhir/sid/regional-patient-id";
/// Extension recording consent to sharing at enrolment (valueBoolean).
pub const CONSENT_EXTENSION: &str =
    "http://renkei.invalid/fhir/StructureDefinition/sharing-consent";
/// ISO 21090 name representation extension (JP Core: IDE kanji, SYL kana).
const EN_REPRESENTATION: &str =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
/// JP Core: patient IDs of a medical institution, followed by its 10-digit code.
const JP_LOCAL_ID_OID: &str = "urn:oid:1.2.392.100495.20.3.51.1";
/// Local IDs of any other issuer.
const ISSUER_SYSTEM: &str = "urn:renkei:issuer:";

/// Routes of the FHIR API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/Patient", post(create_patient))
        .route("/fhir/Patient/{id}", get(read_patient))
        .route("/fhir/AuditEvent", get(search_audit))
}

/// An error as an OperationOutcome.
#[derive(Debug)]
pub struct FhirError(pub ApiError);

impl<E: Into<ApiError>> From<E> for FhirError {
    fn from(e: E) -> Self {
        FhirError(e.into())
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let (status, code, text) = match self.0 {
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "invalid", d),
            ApiError::Unauthorized(d) => (StatusCode::UNAUTHORIZED, "login", d),
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", d),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, "not-found", d),
            ApiError::Conflict(d) => (StatusCode::CONFLICT, "conflict", d),
            other => return other.into_response(),
        };
        fhir(
            status,
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": code, "diagnostics": text
            }]}),
        )
    }
}

fn fhir(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// The local-ID identifier of an issuer.
pub fn local_identifier(l: &LocalId) -> Value {
    let jp = l.issuer.len() == 10 && l.issuer.bytes().all(|b| b.is_ascii_digit());
    let system = if jp {
        format!("{JP_LOCAL_ID_OID}{}", l.issuer)
    } else {
        format!("{ISSUER_SYSTEM}{}", l.issuer)
    };
    json!({"use": "secondary", "system": system, "value": l.patient_id})
}

fn issuer_of_system(system: &str) -> Option<String> {
    system
        .strip_prefix(ISSUER_SYSTEM)
        .or_else(|| system.strip_prefix(JP_LOCAL_ID_OID))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A regional patient as a FHIR Patient.
pub fn patient_resource(p: &RegionalPatient, links: &[LocalId]) -> Value {
    let mut identifier =
        vec![json!({"use": "official", "system": REGIONAL_ID_SYSTEM, "value": p.id})];
    identifier.extend(links.iter().map(local_identifier));
    let mut names = vec![json!({
        "extension": [{"url": EN_REPRESENTATION, "valueCode": "IDE"}],
        "use": "official",
        "text": format!("{} {}", p.family, p.given).trim().to_string(),
        "family": p.family,
        "given": [p.given],
    })];
    if !p.family_kana.is_empty() || !p.given_kana.is_empty() {
        names.push(json!({
            "extension": [{"url": EN_REPRESENTATION, "valueCode": "SYL"}],
            "use": "official",
            "text": format!("{} {}", p.family_kana, p.given_kana).trim().to_string(),
            "family": p.family_kana,
            "given": [p.given_kana],
        }));
    }
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.id,
        "meta": {"versionId": p.version.to_string(), "lastUpdated": rfc3339(p.updated_us)},
        "identifier": identifier,
        "active": p.merged_into.is_none(),
        "name": names,
        "gender": p.sex,
        "birthDate": p.birth_date,
    });
    if !p.address.is_empty() {
        r["address"] = json!([{"text": p.address}]);
    }
    if !p.phone.is_empty() {
        r["telecom"] = json!([{"system": "phone", "value": p.phone}]);
    }
    if let Some(other) = &p.merged_into {
        r["link"] =
            json!([{"other": {"reference": format!("Patient/{other}")}, "type": "replaced-by"}]);
    }
    r
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

async fn create_patient(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
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
    let a = actor(p);
    let pat = share.patient(id)?;
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
    let mut e = a.audit("FHIR read Patient", AuditEvent::PatientRecord, &pat.id);
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

async fn read_patient(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let share = st.share.clone();
    let (pat, links) = blocking(move || {
        let pat = read_patient_checked(&share, &p, &id)?;
        let links = share.links(&pat.id)?;
        Ok((pat, links))
    })
    .await?;
    Ok(fhir(StatusCode::OK, patient_resource(&pat, &links)))
}

#[derive(Deserialize)]
struct AuditSearch {
    patient: Option<String>,
    #[serde(rename = "_count")]
    count: Option<usize>,
}

async fn search_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AuditSearch>,
) -> Result<Response, FhirError> {
    let share = st.share.clone();
    let node = st.share.config().node_name.clone();
    let recs = blocking(move || {
        // `patient` may be a reference: Patient/<id>
        let patient = q
            .patient
            .as_deref()
            .map(|s| s.trim_start_matches("Patient/"));
        crate::routes::share::audit_records(&share, &actor(&p), patient, q.count.unwrap_or(1000))
    })
    .await?;
    let entries: Vec<Value> = recs
        .iter()
        .map(|r| {
            json!({"fullUrl": format!("AuditEvent/{}", r.seq), "resource": audit::to_fhir(r, &node),
                   "search": {"mode": "match"}})
        })
        .collect();
    Ok(fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    ))
}

async fn metadata() -> Response {
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-27",
            "kind": "instance",
            "software": {"name": "Renkei", "version": env!("CARGO_PKG_VERSION")},
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "security": {"description": "Bearer tokens (Authorization: Bearer rk_…); every interaction is checked against the regional access policy and audited."},
                "resource": [
                    {"type": "Patient", "interaction": [{"code": "read"}, {"code": "create"}],
                     "documentation": "create enrols a patient: the node assigns the regional ID; consent extension required"},
                    {"type": "AuditEvent", "interaction": [{"code": "search-type"}],
                     "searchParam": [{"name": "patient", "type": "reference"}, {"name": "_count", "type": "number"}]}
                ]
            }]
        }),
    )
}
