//! FHIR views of the regional domain: Patient (regional ID and local IDs as identifiers,
//! kanji and kana names as JP Core writes them), Organization (a facility), Consent (the
//! patient's consent to sharing, read-only).

use serde_json::{json, Value};

use super::{CResult, Scope, REGIONAL_ID_SYSTEM};
use crate::error::ShareError;
use crate::identity::LocalId;
use crate::model::{rfc3339, Facility, RegionalPatient};
use crate::policy::{Actor, Category};
use crate::{AuditEvent, Share};

/// ISO 21090 name representation extension (JP Core: IDE kanji, SYL kana).
pub const EN_REPRESENTATION: &str =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
/// JP Core: patient IDs of a medical institution, followed by its 10-digit code.
pub const JP_LOCAL_ID_OID: &str = "urn:oid:1.2.392.100495.20.3.51.1";
/// Local IDs of any other issuer.
pub const ISSUER_SYSTEM: &str = "urn:renkei:issuer:";
/// JP Core: 10-digit medical institution codes (保険医療機関番号).
pub const JP_INSTITUTION_SYSTEM: &str =
    "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
/// Facility codes that are not medical institution codes.
pub const FACILITY_SYSTEM: &str = "urn:renkei:facility";
/// Policy categories as Consent provision codes.
pub const CATEGORY_SYSTEM: &str = "http://renkei.invalid/fhir/CodeSystem/share-category";

fn jp_code(code: &str) -> bool {
    code.len() == 10 && code.bytes().all(|b| b.is_ascii_digit())
}

/// The local-ID identifier of an issuer.
pub fn local_identifier(l: &LocalId) -> Value {
    let system = if jp_code(&l.issuer) {
        format!("{JP_LOCAL_ID_OID}{}", l.issuer)
    } else {
        format!("{ISSUER_SYSTEM}{}", l.issuer)
    };
    json!({"use": "secondary", "system": system, "value": l.patient_id})
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

/// A facility as a FHIR Organization (id = facility code).
pub fn organization_resource(f: &Facility) -> Value {
    let system = if jp_code(&f.code) {
        JP_INSTITUTION_SYSTEM
    } else {
        FACILITY_SYSTEM
    };
    let mut o = json!({
        "resourceType": "Organization",
        "id": f.code,
        "identifier": [{"system": system, "value": f.code}],
        "active": true,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
            "code": "prov", "display": "Healthcare Provider"}],
            "text": serde_json::to_value(f.kind).unwrap_or(Value::Null)}],
        "name": f.name,
    });
    if !f.phone.is_empty() {
        o["telecom"] = json!([{"system": "phone", "value": f.phone, "use": "work"}]);
    }
    o
}

/// The patient's consent as a FHIR Consent (id = regional ID).
pub fn consent_resource(p: &RegionalPatient) -> Value {
    let c = &p.consent;
    let mut provisions = Vec::new();
    for f in &c.excluded_facilities {
        provisions.push(json!({"type": "deny", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP", "display": "information recipient"}]},
            "reference": {"reference": format!("Organization/{f}")}}]}));
    }
    if !c.excluded_categories.is_empty() {
        provisions.push(
            json!({"type": "deny", "code": c.excluded_categories.iter().map(|k|
            json!({"coding": [{"system": CATEGORY_SYSTEM, "code": k}]})).collect::<Vec<_>>()}),
        );
    }
    let mut provision = json!({"type": if c.given { "permit" } else { "deny" }});
    if !provisions.is_empty() && c.given {
        provision["provision"] = Value::Array(provisions);
    }
    json!({
        "resourceType": "Consent",
        "id": p.id,
        "meta": {"versionId": p.version.to_string(), "lastUpdated": rfc3339(p.updated_us)},
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
            "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{}", p.id)},
        "dateTime": rfc3339(c.recorded_us),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": if c.given { "OPTIN" } else { "OPTOUT" }}],
            "text": "Regional sharing of the patient's records among participating facilities"},
        "provision": provision,
    })
}

impl Share {
    /// Read the Consent of a patient (id = regional ID): who may see the demographics may
    /// see it; one audit record.
    pub(crate) fn read_consent(&self, actor: &Actor, id: &str) -> CResult<Value> {
        let p = self.patient(id)?;
        let mut scope = Scope::new(self, actor, &p);
        let ok = scope.admit_demographics()?;
        scope.finish(
            "FHIR read Consent",
            AuditEvent::PatientRecord,
            &format!("Consent/{}", p.id),
        )?;
        if !ok {
            return Err(
                ShareError::Forbidden(format!("not permitted: {}", scope.last_reason)).into(),
            );
        }
        Ok(consent_resource(&p))
    }

    /// A facility as an Organization (directory data: not a patient record, not audited).
    pub fn organization(&self, code: &str) -> Result<Value, ShareError> {
        self.facility(code)
            .map(|f| organization_resource(&f))
            .ok_or_else(|| ShareError::NotFound(format!("no Organization/{code}")))
    }

    /// Every facility as an Organization.
    pub fn organizations(&self) -> Vec<Value> {
        self.facilities()
            .iter()
            .map(organization_resource)
            .collect()
    }
}

/// Whether the category is one consent may exclude (every one but the summary).
pub(crate) fn excluded(p: &RegionalPatient, c: Category) -> bool {
    p.consent
        .excluded_categories
        .iter()
        .any(|x| x == c.as_str())
}
