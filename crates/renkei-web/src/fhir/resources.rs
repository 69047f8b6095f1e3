//! Type and instance interactions: the clinical record (read, vread, create, update,
//! history, search, `$check`), ImagingStudy and Consent (read, search), AuditEvent
//! (search), Organization (read, search), Binary (read); Patient is handed to
//! [`super::patient`]. The work happens in `renkei_share::clinical`, under the policy.

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, ETAG, IF_MATCH, LINK, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use renkei_share::clinical::{binary_resource, ResourceType, SearchPage};
use renkei_share::{audit, Principal};

use super::bundle::{self, base_url, search_params, searchset, served, understood, Params};
use super::{blocking_fhir, fhir, patient, FhirError};
use crate::auth::actor;
use crate::AppState;

fn not_supported(text: impl Into<String>) -> FhirError {
    FhirError::new(StatusCode::METHOD_NOT_ALLOWED, "not-supported", text)
}

/// A type of the clinical record, or 404.
fn clinical_type(t: &str) -> Result<ResourceType, FhirError> {
    ResourceType::parse(t).ok_or_else(|| {
        FhirError::not_found(format!(
            "resource type {t:?} is not supported by this server (see /fhir/metadata)"
        ))
    })
}

fn with_header(r: &mut Response, name: axum::http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(name, v);
    }
}

fn version_of(r: &Value) -> String {
    r["meta"]["versionId"].as_str().unwrap_or("1").to_string()
}

fn parse_body(body: &[u8]) -> Result<Value, FhirError> {
    serde_json::from_slice(body)
        .map_err(|e| FhirError::bad_request(format!("the body is not JSON: {e}")))
}

/// `GET /fhir/{type}`: search.
pub(crate) async fn search_type(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(t): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let q = Params::parse(raw.as_deref());
    let base = base_url(&headers);
    match t.as_str() {
        "AuditEvent" => return search_audit(st, p, q).await,
        "Organization" => {
            let all = st.share.organizations();
            let page = SearchPage {
                total: all.len(),
                resources: all,
                ..SearchPage::default()
            };
            let n = page.total;
            return Ok(fhir(
                StatusCode::OK,
                searchset(&base, "/fhir/Organization", &q, |_| false, &page, 0, n),
            ));
        }
        "Patient" => return patient::search(st, p, q, headers).await,
        "Binary" => {
            return Err(not_supported(
                "Binary search is not supported: read Binary/{id} (the URL of an attachment)",
            ))
        }
        _ => {}
    }
    let rt = clinical_type(&t)?;
    let params = search_params(rt, &q)?;
    let (offset, count) = (params.offset, params.count);
    let share = st.share.clone();
    let b = base.clone();
    let page = blocking_fhir(move || Ok(share.search(&actor(&p), rt, &params, &b)?)).await?;
    Ok(fhir(
        StatusCode::OK,
        searchset(
            &base,
            &format!("/fhir/{t}"),
            &q,
            |k| understood(rt, k),
            &page,
            offset,
            count,
        ),
    ))
}

async fn search_audit(st: AppState, p: Principal, q: Params) -> Result<Response, FhirError> {
    let share = st.share.clone();
    let node = st.share.config().node_name.clone();
    let patient = q
        .first("patient")
        .map(|s| s.trim_start_matches("Patient/").to_string());
    let count = match q.first("_count") {
        Some(c) => c
            .parse()
            .map_err(|_| FhirError::bad_request(format!("_count={c:?} is not a number")))?,
        None => 1000,
    };
    let recs = blocking_fhir(move || {
        Ok(crate::routes::share::audit_records(
            &share,
            &actor(&p),
            patient.as_deref(),
            count,
        )?)
    })
    .await?;
    let entries: Vec<Value> = recs
        .iter()
        .map(|r| {
            let mut ev = audit::to_fhir(r, &node);
            prune(&mut ev);
            json!({"fullUrl": format!("AuditEvent/{}", r.seq), "resource": ev,
                   "search": {"mode": "match"}})
        })
        .collect();
    Ok(fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries}),
    ))
}

/// Drop empty strings, and the objects and arrays they leave empty: FHIR forbids empty
/// values (an administrator's audit record has no facility, a read no outcome text).
fn prune(v: &mut Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Null => true,
        Value::Array(xs) => {
            xs.retain_mut(|x| !prune(x));
            xs.is_empty()
        }
        Value::Object(m) => {
            m.retain(|_, x| !prune(x));
            m.is_empty()
        }
        _ => false,
    }
}

/// `POST /fhir/{type}`: create. 201 with the resource, `Location` and `ETag`; each
/// DetectedIssue the duplicate checks raised is named in a `Link` header (rel
/// "related"), and with `Prefer: return=OperationOutcome` the body is an
/// OperationOutcome with one warning per DetectedIssue.
pub(crate) async fn create_type(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, FhirError> {
    if t == "Patient" {
        return patient::create(st, p, body).await;
    }
    let rt = clinical_type(&t)?;
    if !rt.writable() {
        return Err(not_supported(format!(
            "{t} is read-only here (generated by the node)"
        )));
    }
    let v = parse_body(&body)?;
    if v["resourceType"].as_str() != Some(rt.as_str()) {
        return Err(FhirError::bad_request(format!(
            "POST /fhir/{t} takes a {t} (resourceType)"
        )));
    }
    let base = base_url(&headers);
    let share = st.share.clone();
    let created = blocking_fhir(move || Ok(share.create(&actor(&p), v)?)).await?;
    let id = created.resource["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let prefer = headers
        .get("prefer")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let body = if prefer.contains("return=OperationOutcome") {
        let mut issues = vec![json!({"severity": "information", "code": "informational",
            "diagnostics": format!("created {t}/{id}")})];
        for di in &created.detected_issues {
            issues.push(json!({
                "severity": "warning", "code": "business-rule",
                "details": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "DUPTHPY"}],
                    "text": format!("DetectedIssue/{}", di["id"].as_str().unwrap_or_default())},
                "diagnostics": di["detail"],
            }));
        }
        json!({"resourceType": "OperationOutcome", "issue": issues})
    } else {
        served(&base, created.resource.clone())
    };
    let mut r = if prefer.contains("return=minimal") {
        StatusCode::CREATED.into_response()
    } else {
        fhir(StatusCode::CREATED, body)
    };
    with_header(&mut r, LOCATION, &format!("/fhir/{t}/{id}/_history/1"));
    with_header(&mut r, ETAG, "W/\"1\"");
    for di in &created.detected_issues {
        with_header(
            &mut r,
            LINK,
            &format!(
                "<{base}/fhir/DetectedIssue/{}>; rel=\"related\"",
                di["id"].as_str().unwrap_or_default()
            ),
        );
    }
    Ok(r)
}

/// `GET /fhir/{type}/{id}`: read.
pub(crate) async fn read_instance(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((t, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let base = base_url(&headers);
    match t.as_str() {
        "Patient" => return patient::read(st, p, id, Params::parse(raw.as_deref()), headers).await,
        "Organization" => return Ok(fhir(StatusCode::OK, st.share.organization(&id)?)),
        "Binary" => return read_binary(st, p, id, &headers).await,
        "AuditEvent" => {
            return Err(not_supported(
                "AuditEvent is searched by patient: /fhir/AuditEvent?patient=<regional ID>",
            ))
        }
        _ => {}
    }
    let rt = clinical_type(&t)?;
    let share = st.share.clone();
    let b = base.clone();
    let r = blocking_fhir(move || Ok(share.read(&actor(&p), rt, &id, None, &b)?)).await?;
    let v = version_of(&r);
    let mut resp = fhir(StatusCode::OK, served(&base, r));
    if rt.stored() {
        with_header(&mut resp, ETAG, &format!("W/\"{v}\""));
    }
    Ok(resp)
}

async fn read_binary(
    st: AppState,
    p: Principal,
    id: String,
    headers: &HeaderMap,
) -> Result<Response, FhirError> {
    let share = st.share.clone();
    let bid = id.clone();
    let (ct, bytes, context) = blocking_fhir(move || Ok(share.binary(&actor(&p), &bid)?)).await?;
    let accept = headers
        .get(ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if accept.contains("fhir+json") || accept.contains("application/json") {
        return Ok(fhir(
            StatusCode::OK,
            binary_resource(&id, &ct, &bytes, &context),
        ));
    }
    let mut r = (StatusCode::OK, bytes).into_response();
    with_header(&mut r, CONTENT_TYPE, &ct);
    Ok(r)
}

/// The version an `If-Match` header names (`W/"3"`, `"3"` or `3`).
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, FhirError> {
    let Some(h) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let s = h.to_str().unwrap_or_default().trim();
    let v = s.trim_start_matches("W/").trim_matches('"');
    v.parse()
        .map(Some)
        .map_err(|_| FhirError::bad_request(format!("If-Match {s:?}: expected W/\"<version>\"")))
}

/// `PUT /fhir/{type}/{id}`: update (a new version).
pub(crate) async fn update_instance(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((t, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, FhirError> {
    if t == "Patient" {
        return Err(not_supported(
            "Patient is changed through /api/patients (links, consent, cards)",
        ));
    }
    let rt = clinical_type(&t)?;
    if !rt.writable() {
        return Err(not_supported(format!(
            "{t} is read-only here (generated by the node)"
        )));
    }
    let expected = if_match(&headers)?;
    let v = parse_body(&body)?;
    let share = st.share.clone();
    let rid = id.clone();
    let r = blocking_fhir(move || Ok(share.update(&actor(&p), rt, &rid, v, expected)?)).await?;
    let ver = version_of(&r);
    let mut resp = fhir(StatusCode::OK, served(&base_url(&headers), r));
    with_header(&mut resp, ETAG, &format!("W/\"{ver}\""));
    with_header(
        &mut resp,
        LOCATION,
        &format!("/fhir/{t}/{id}/_history/{ver}"),
    );
    Ok(resp)
}

/// `POST /fhir/{type}/$check`: the duplicate checks of a create, nothing stored; a
/// collection Bundle of the DetectedIssues (empty when none).
pub(crate) async fn type_operation(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((t, op)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, FhirError> {
    if op != "$check" || !matches!(t.as_str(), "ServiceRequest" | "MedicationRequest") {
        return Err(not_supported(format!(
            "POST /fhir/{t}/{op} is not supported (POST /fhir/ServiceRequest/$check, /fhir/MedicationRequest/$check are)"
        )));
    }
    let v = parse_body(&body)?;
    if v["resourceType"].as_str() != Some(t.as_str()) {
        return Err(FhirError::bad_request(format!(
            "{t}/$check takes a {t} (resourceType)"
        )));
    }
    let base = base_url(&headers);
    let share = st.share.clone();
    let issues = blocking_fhir(move || Ok(share.check(&actor(&p), v)?)).await?;
    Ok(fhir(StatusCode::OK, bundle::collection(&base, &issues)))
}

/// `GET /fhir/{type}/{id}/{op}`: `_history`, and the Patient operations.
pub(crate) async fn instance_get(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((t, id, op)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    if t == "Patient" {
        return patient::operation(st, p, id, op, Params::parse(raw.as_deref()), headers).await;
    }
    let rt = clinical_type(&t)?;
    if op != "_history" {
        return Err(FhirError::not_found(format!("{t} has no operation {op:?}")));
    }
    let base = base_url(&headers);
    let share = st.share.clone();
    let rid = id.clone();
    let versions = blocking_fhir(move || Ok(share.resource_history(&actor(&p), rt, &rid)?)).await?;
    Ok(fhir(
        StatusCode::OK,
        bundle::history(&base, &format!("/fhir/{t}/{id}/_history"), &versions),
    ))
}

/// `GET /fhir/{type}/{id}/_history/{vid}`: vread.
pub(crate) async fn vread(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((t, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    if t == "Patient" {
        return Err(not_supported("Patient keeps its current version only"));
    }
    let rt = clinical_type(&t)?;
    if !rt.stored() {
        return Err(not_supported(format!(
            "{t} is generated: it has no versions"
        )));
    }
    let version: u64 = vid
        .parse()
        .map_err(|_| FhirError::not_found(format!("no version {vid:?} of {t}/{id}")))?;
    let base = base_url(&headers);
    let share = st.share.clone();
    let b = base.clone();
    let r = blocking_fhir(move || Ok(share.read(&actor(&p), rt, &id, Some(version), &b)?)).await?;
    let mut resp = fhir(StatusCode::OK, served(&base, r));
    with_header(&mut resp, ETAG, &format!("W/\"{version}\""));
    Ok(resp)
}
