//! Every key layout of the sharing domain, in one place. Two column families of the node's
//! index (declared with the others in `renkei_store::keys`):
//!
//! | CF | key | value |
//! |---|---|---|
//! | `share` | `F` facility code | [`Facility`](crate::model::Facility) |
//! | `share` | `U` user id | [`User`](crate::model::User) |
//! | `share` | `T` SHA-256 of a token | [`TokenRecord`](crate::model::TokenRecord) |
//! | `share` | `t` token id | SHA-256 of the token (revocation by id) |
//! | `share` | `R` regional ID | [`RegionalPatient`](crate::model::RegionalPatient) |
//! | `share` | `X` issuer, local ID | regional ID (the cross-reference, IHE PIX style) |
//! | `share` | `x` regional ID, issuer, local ID | empty (the reverse) |
//! | `share` | `H` regional ID, seq | [`IdentityEvent`](crate::model::IdentityEvent) (link history) |
//! | `share` | `C` card number | [`Card`](crate::model::Card) |
//! | `share` | `c` regional ID, card number | empty |
//! | `share` | `E` facility code, regional ID | [`Relationship`](crate::model::Relationship) |
//! | `share` | `B` user id, regional ID | [`BreakGlass`](crate::model::BreakGlass) |
//! | `share` | `N` name | u64 BE: sequence counters (regional IDs, users, history) |
//! | `share` | `D` resource type, id | current version of a clinical resource (`clinical::store`) |
//! | `share` | `V` resource type, id, version (10 digits) | an earlier version |
//! | `share` | `P` regional ID, resource type, date (14 digits, UTC), id | timeline row with the search keys |
//! | `share` | `M` facility code, MSH-3, MSH-10 | [`Receipt`](crate::hl7::Receipt) of an HL7 message that was recorded |
//! | `audit` | `s` seq (u64 BE) | [`AuditRecord`](crate::audit::AuditRecord) |
//! | `audit` | `h` | the chain head: seq (u64 BE) and SHA-256 of the last record |
//! | `audit` | `p` patient, seq (u64 BE) | empty (audit by patient) |
//!
//! Components are joined with 0x00 (none of them can contain it: codes, IDs and UIDs are
//! checked text), sequence numbers are big-endian so that keys sort in numeric order.

/// Separator between key components.
pub const SEP: u8 = 0;

/// Facilities by code.
pub const FACILITY: u8 = b'F';
/// Users by id.
pub const USER: u8 = b'U';
/// Tokens by hash.
pub const TOKEN: u8 = b'T';
/// Token hash by token id.
pub const TOKEN_ID: u8 = b't';
/// Regional patients by regional ID.
pub const PATIENT: u8 = b'R';
/// (issuer, local ID) → regional ID.
pub const XREF: u8 = b'X';
/// (regional ID, issuer, local ID), the reverse cross-reference.
pub const XREF_REV: u8 = b'x';
/// Identity history of a regional patient.
pub const HISTORY: u8 = b'H';
/// Cards by number.
pub const CARD: u8 = b'C';
/// Cards of a patient.
pub const CARD_REV: u8 = b'c';
/// Treating relationships (facility, patient).
pub const RELATIONSHIP: u8 = b'E';
/// Break-glass grants (user, patient).
pub const BREAK_GLASS: u8 = b'B';
/// Sequence counters.
pub const SEQUENCE: u8 = b'N';
/// Clinical resources, current version (type, id).
pub const CLINICAL_DOC: u8 = b'D';
/// Clinical resources, earlier versions (type, id, version).
pub const CLINICAL_VERSION: u8 = b'V';
/// Clinical timeline (patient, type, date, id).
pub const CLINICAL_TIMELINE: u8 = b'P';

/// HL7 messages recorded, by sending facility, application and MSH-10 (resends are
/// answered, not recorded again).
pub const HL7_RECEIPT: u8 = b'M';
/// Audit records by sequence number.
pub const AUDIT_RECORD: u8 = b's';
/// The audit chain head.
pub const AUDIT_HEAD: &[u8] = b"h";
/// Audit records by patient.
pub const AUDIT_BY_PATIENT: u8 = b'p';

/// A key of `prefix` followed by `parts` joined with [`SEP`].
pub fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push(prefix);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
    k
}

/// A key of `prefix` and text parts.
pub fn text_key(prefix: u8, parts: &[&str]) -> Vec<u8> {
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    key(prefix, &parts)
}

/// The prefix of every key of `prefix` whose first parts are `parts` (ends with [`SEP`]).
pub fn text_prefix(prefix: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = text_key(prefix, parts);
    k.push(SEP);
    k
}

/// Split the parts of a key made by [`key`] (the prefix byte removed).
pub fn split(key: &[u8]) -> Vec<&[u8]> {
    key.get(1..)
        .unwrap_or_default()
        .split(|b| *b == SEP)
        .collect()
}

/// An audit record key.
pub fn audit_record(seq: u64) -> Vec<u8> {
    let mut k = vec![AUDIT_RECORD];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of an audit record key.
pub fn audit_seq(key: &[u8]) -> Option<u64> {
    match key {
        [AUDIT_RECORD, rest @ ..] => rest.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// An audit-by-patient key.
pub fn audit_by_patient(patient: &str, seq: u64) -> Vec<u8> {
    let mut k = text_prefix(AUDIT_BY_PATIENT, &[patient]);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_prefixes_are_exact() {
        let k = text_key(XREF, &["1234567890", "12345"]);
        assert_eq!(split(&k), vec![&b"1234567890"[..], b"12345"]);
        // "a\0" never prefixes "ab\0…"
        let p = text_prefix(XREF_REV, &["00000001"]);
        assert!(!text_key(XREF_REV, &["000000012", "x", "y"]).starts_with(&p));
        assert!(text_key(XREF_REV, &["00000001", "x", "y"]).starts_with(&p));
    }

    #[test]
    fn audit_keys_sort_by_sequence() {
        let keys: Vec<Vec<u8>> = [1u64, 255, 256, 70_000]
            .iter()
            .map(|s| audit_record(*s))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(audit_seq(&audit_record(256)), Some(256));
        assert_eq!(audit_seq(b"p1"), None);
    }
}
