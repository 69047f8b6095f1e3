//! The records of the sharing domain, as stored (postcard through
//! `renkei_model::record::encode`) and as the REST API shows them (serde JSON). Fields are
//! only ever appended, so that a newer node reads an older index.

use serde::{Deserialize, Serialize};

use crate::error::{Result, ShareError};

/// What kind of place a facility is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FacilityKind {
    /// Core (regional) hospital.
    CoreHospital,
    /// Hospital.
    Hospital,
    /// Clinic (family doctor).
    Clinic,
    /// Imaging centre.
    ImagingCentre,
    /// Clinical laboratory.
    Laboratory,
    /// Emergency medical services.
    Ems,
}

impl FacilityKind {
    /// Every kind, as the API spells it.
    pub const NAMES: &[&str] = &[
        "core-hospital",
        "hospital",
        "clinic",
        "imaging-centre",
        "laboratory",
        "ems",
    ];

    /// Parse the API spelling.
    pub fn parse(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.trim().to_string())).map_err(|_| {
            ShareError::BadRequest(format!(
                "unknown facility kind {s:?}: expected one of {}",
                Self::NAMES.join(", ")
            ))
        })
    }
}

/// A participating facility.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facility {
    /// Code: in Japan the 10-digit medical institution code (都道府県番号 + 点数表番号 +
    /// 医療機関コード); any 1–16 letters, digits or hyphens elsewhere.
    pub code: String,
    /// Name as people know it.
    pub name: String,
    /// Kind.
    pub kind: FacilityKind,
    /// AE titles of its modalities and workstations: what they store is the facility's,
    /// what they query is answered as for the facility.
    pub ae_titles: Vec<String>,
    /// Further Issuer of Patient ID values its systems write (the code itself is always
    /// one).
    pub issuers: Vec<String>,
    /// Phone number (the emergency summary lists it).
    pub phone: String,
    /// When it was registered (µs since the epoch).
    pub created_us: u64,
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Physician.
    Doctor,
    /// Nurse.
    Nurse,
    /// Radiographer / lab technologist.
    Technologist,
    /// Pharmacist.
    Pharmacist,
    /// Ambulance crew: the emergency summary after break-glass, nothing else.
    EmsCrew,
    /// Administers its own facility (users, AE titles, links of its patients).
    FacilityAdmin,
    /// Administers the region; reads no clinical content.
    RegionalAdmin,
}

impl Role {
    /// Every role, as the API spells it.
    pub const NAMES: &[&str] = &[
        "doctor",
        "nurse",
        "technologist",
        "pharmacist",
        "ems-crew",
        "facility-admin",
        "regional-admin",
    ];

    /// Parse the API spelling.
    pub fn parse(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.trim().to_string())).map_err(|_| {
            ShareError::BadRequest(format!(
                "unknown role {s:?}: expected one of {}",
                Self::NAMES.join(", ")
            ))
        })
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Doctor => "doctor",
            Role::Nurse => "nurse",
            Role::Technologist => "technologist",
            Role::Pharmacist => "pharmacist",
            Role::EmsCrew => "ems-crew",
            Role::FacilityAdmin => "facility-admin",
            Role::RegionalAdmin => "regional-admin",
        }
    }

    /// Roles that read clinical content (under the policy).
    pub fn is_clinical(self) -> bool {
        matches!(
            self,
            Role::Doctor | Role::Nurse | Role::Technologist | Role::Pharmacist
        )
    }
}

/// A person who signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id (`u` and a number).
    pub id: String,
    /// Name.
    pub name: String,
    /// Facility code; none only for regional administrators.
    pub facility: Option<String>,
    /// Role.
    pub role: Role,
    /// When created (µs).
    pub created_us: u64,
}

/// A bearer token, stored under the SHA-256 of its secret (the secret itself is shown
/// once, when it is issued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Id (for revocation; not secret).
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// Issued (µs).
    pub created_us: u64,
    /// Expires (µs).
    pub expires_us: u64,
    /// Revoked (µs), if.
    pub revoked_us: Option<u64>,
}

/// Consent to share, recorded at enrolment (PS: 同意) and changed by the patient later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Sharing allowed. Withdrawal sets this false: nothing crosses facilities any more.
    pub given: bool,
    /// When recorded (µs).
    pub recorded_us: u64,
    /// By whom (user id).
    pub recorded_by: String,
    /// Facilities that may not see the patient's data from others.
    pub excluded_facilities: Vec<String>,
    /// Categories not shared ([`crate::policy::Category`] names, e.g. "imaging").
    pub excluded_categories: Vec<String>,
}

/// A patient of the region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionalPatient {
    /// Regional ID ([`crate::ids`]).
    pub id: String,
    /// Family name in kanji (or the usual script).
    pub family: String,
    /// Given name in kanji.
    pub given: String,
    /// Family name in kana (phonetic).
    pub family_kana: String,
    /// Given name in kana.
    pub given_kana: String,
    /// Birth date, YYYY-MM-DD.
    pub birth_date: String,
    /// male | female | other | unknown (FHIR administrative gender).
    pub sex: String,
    /// Address, one line.
    pub address: String,
    /// Phone.
    pub phone: String,
    /// Consent.
    pub consent: Consent,
    /// When merged into another regional ID: that one (this one then only resolves to it).
    pub merged_into: Option<String>,
    /// Enrolled (µs).
    pub created_us: u64,
    /// Version, raised by every change (FHIR meta.versionId).
    pub version: u64,
    /// Last change (µs).
    pub updated_us: u64,
}

/// What happened to a patient's identity (kept: links are never silently lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityEvent {
    /// When (µs).
    pub time_us: u64,
    /// Who (user id).
    pub by: String,
    /// enrol | link | unlink | merge-from | merge-into | consent | card-issue | card-revoke
    pub kind: String,
    /// What it touched (issuer|local ID, other regional ID, card number, …).
    pub detail: String,
}

/// A patient card's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CardStatus {
    /// In use.
    Active,
    /// A newer card replaced it.
    Replaced,
    /// Revoked (lost, stolen).
    Revoked,
}

/// A patient card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// Number ([`crate::ids`]).
    pub number: String,
    /// Regional ID.
    pub patient: String,
    /// Issued (µs).
    pub issued_us: u64,
    /// State.
    pub status: CardStatus,
}

/// A treating relationship, opened by presenting the card at a facility.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// Facility code.
    pub facility: String,
    /// Regional ID.
    pub patient: String,
    /// Opened (µs).
    pub opened_us: u64,
    /// Ends (µs).
    pub until_us: u64,
    /// Who checked the patient in (user id).
    pub opened_by: String,
}

/// An emergency access grant (break-glass) of one user to one patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// User id.
    pub user_id: String,
    /// Regional ID.
    pub patient: String,
    /// The reason stated.
    pub reason: String,
    /// Started (µs).
    pub started_us: u64,
    /// Ends (µs).
    pub until_us: u64,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// RFC 3339 UTC text of a µs timestamp (for JSON and FHIR instants).
pub use renkei_model::time::rfc3339_us as rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways() {
        for n in Role::NAMES {
            assert_eq!(Role::parse(n).unwrap().as_str(), *n);
        }
        assert!(matches!(
            Role::parse("surgeon"),
            Err(ShareError::BadRequest(_))
        ));
        for n in FacilityKind::NAMES {
            FacilityKind::parse(n).unwrap();
        }
    }

    #[test]
    fn timestamps_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2026-11-27T01:02:03Z
        assert_eq!(rfc3339(1_795_741_323_000_000), "2026-11-27T01:02:03Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00Z");
    }
}
