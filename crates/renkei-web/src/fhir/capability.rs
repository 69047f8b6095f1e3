//! `/fhir/metadata`: the CapabilityStatement, listing exactly the interactions, search
//! parameters, includes and operations the routes implement.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::fhir;

fn param(name: &str, kind: &str, doc: &str) -> Value {
    json!({"name": name, "type": kind, "documentation": doc})
}

/// The search parameters of a clinical type (see `bundle::search_params`).
fn clinical_params(t: &str) -> Vec<Value> {
    let mut v = vec![
        param(
            "patient",
            "reference",
            "required: Patient/<regional ID> (searches never span patients)",
        ),
        param("subject", "reference", "same as patient"),
        param(
            "date",
            "date",
            "the clinical date; eq, ne, gt, lt, ge, le; repeatable",
        ),
        param(
            "code",
            "token",
            "system|code, code, |code or system|; comma = any",
        ),
        param("category", "token", "system|code"),
        param(
            "status",
            "token",
            "status (clinical status for Condition and AllergyIntolerance)",
        ),
        param("_count", "number", "page size, default 50, at most 500"),
        param(
            "_offset",
            "number",
            "matches skipped (the next link sets it)",
        ),
        param("_sort", "special", "date or -date (default -date)"),
    ];
    let extra: &[(&str, &str)] = match t {
        "Condition" | "AllergyIntolerance" => &[
            ("clinical-status", "token"),
            ("onset-date", "date"),
            ("recorded-date", "date"),
        ],
        "Encounter" => &[("class", "token"), ("type", "token")],
        "DocumentReference" => &[("type", "token")],
        "MedicationRequest" => &[("authoredon", "date")],
        "DetectedIssue" => &[("identified", "date")],
        _ => &[],
    };
    for (n, k) in extra {
        v.push(param(
            n,
            k,
            "alias of the generic parameter of the same kind",
        ));
    }
    v
}

fn interactions(codes: &[&str]) -> Vec<Value> {
    codes.iter().map(|c| json!({"code": c})).collect()
}

fn resource(t: &str, codes: &[&str], params: Vec<Value>, doc: &str) -> Value {
    let mut r = json!({
        "type": t,
        "interaction": interactions(codes),
        "documentation": doc,
    });
    if codes.contains(&"update") {
        r["versioning"] = json!("versioned");
        r["readHistory"] = json!(true);
        r["updateCreate"] = json!(false);
        r["conditionalCreate"] = json!(false);
        r["conditionalUpdate"] = json!(false);
    }
    if !params.is_empty() {
        r["searchParam"] = Value::Array(params);
    }
    r
}

/// The CapabilityStatement.
pub fn capability_statement() -> Value {
    let clinical_codes = [
        "read",
        "vread",
        "create",
        "update",
        "history-instance",
        "search-type",
    ];
    let mut resources = vec![{
        let mut p = resource(
            "Patient",
            &["read", "search-type", "create"],
            vec![
                param(
                    "identifier",
                    "token",
                    "exactly one: [system|]value; the regional ID system or a local ID's; without a system a regional ID, else a local ID of the reader's facility",
                ),
                param("_id", "token", "a regional ID"),
            ],
            "create enrols a patient (the node assigns the regional ID; consent extension required); $everything and $summary (also Patient/$summary?card=NUMBER)",
        );
        p["operation"] = json!([
            {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
            {"name": "summary", "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"}
        ]);
        p
    }];
    for t in [
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "AllergyIntolerance",
        "DocumentReference",
        "ServiceRequest",
    ] {
        let mut r = resource(
            t,
            &clinical_codes,
            clinical_params(t),
            "recorded by the writer's facility; read through the regional access policy; every interaction audited",
        );
        let mut inc = vec![format!("{t}:patient"), format!("{t}:subject")];
        if t != "AllergyIntolerance" {
            inc.push(format!("{t}:encounter"));
        }
        r["searchInclude"] = json!(inc);
        if t == "ServiceRequest" || t == "MedicationRequest" {
            r["operation"] = json!([{"name": "check",
                "definition": "http://renkei.invalid/fhir/OperationDefinition/check",
                "documentation": "the duplicate checks of a create, nothing stored: a collection Bundle of DetectedIssues"}]);
        }
        if t == "DocumentReference" {
            r["documentation"] = json!("attachment data is stored as a file and replaced by a Binary URL; read through the regional access policy");
        }
        resources.push(r);
    }
    let mut di = resource(
        "DetectedIssue",
        &["read", "vread", "history-instance", "search-type"],
        clinical_params("DetectedIssue"),
        "raised by the duplicate checks on create (DUPTHPY)",
    );
    di["searchInclude"] = json!(["DetectedIssue:implicated", "DetectedIssue:patient"]);
    resources.push(di);
    resources.push(resource(
        "ImagingStudy",
        &["read", "search-type"],
        vec![
            param("patient", "reference", "required"),
            param("started", "date", "study date"),
            param("date", "date", "same as started"),
            param("modality", "token", "DICOM modality (DCM)"),
            param("_count", "number", "page size"),
            param("_offset", "number", "matches skipped"),
            param("_sort", "special", "date or -date"),
        ],
        "generated from the PACS index: every study of the patient's linked local IDs at any facility; DICOMweb endpoint",
    ));
    resources.push(resource(
        "Consent",
        &["read", "search-type"],
        vec![param("patient", "reference", "required")],
        "the patient's consent to regional sharing (read-only; id = regional ID)",
    ));
    resources.push(resource(
        "AuditEvent",
        &["search-type"],
        vec![
            param("patient", "reference", "required"),
            param("_count", "number", "most recent records"),
        ],
        "the audit trail of a patient (regional administrators and the patient's own facilities)",
    ));
    resources.push(resource(
        "Organization",
        &["read", "search-type"],
        Vec::new(),
        "participating facilities (id = facility code)",
    ));
    resources.push(resource(
        "Binary",
        &["read"],
        Vec::new(),
        "DocumentReference attachments (raw bytes, or a Binary resource with Accept: application/fhir+json)",
    ));
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-27",
        "kind": "instance",
        "software": {"name": "Renkei", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Renkei regional PACS node: shared clinical record"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {"description": "Bearer tokens (Authorization: Bearer rk_…); every interaction is checked against the regional access policy and audited."},
            "resource": resources,
        }]
    })
}

/// `GET /fhir/metadata`.
pub(crate) async fn metadata() -> Response {
    fhir(StatusCode::OK, capability_statement())
}
