//! The identifiers people type: regional patient IDs and card numbers. Both carry a check
//! digit so that a mistyped number is refused as malformed instead of finding nobody (or,
//! worse, somebody else).
//!
//! - **Regional ID**: 10 decimal digits, a 9-digit serial issued in order at enrolment and
//!   an ISO/IEC 7064 MOD 11-10 check digit. MOD 11-10 catches every single-digit error and
//!   every transposition of adjacent digits, and its check character is always a digit
//!   (unlike MOD 11-2's "X"), so the ID fits DICOM PatientID (LO) and a numeric keypad.
//! - **Card number**: 16 decimal digits, `9` (the industry digit "other"), 14 random digits
//!   and a Luhn check digit (ISO/IEC 7812), so card readers and keyboard wedges that
//!   already validate Luhn accept it. Random rather than serial: a card number must not be
//!   guessable from another card.

use rand::Rng;

/// Length of a regional ID.
pub const REGIONAL_ID_LEN: usize = 10;
/// Length of a card number.
pub const CARD_NUMBER_LEN: usize = 16;

/// ISO/IEC 7064 MOD 11-10 check digit of `digits` (ASCII digits only).
fn mod11_10(digits: &[u8]) -> u8 {
    let mut p = 10u32;
    for d in digits {
        let mut s = (p + u32::from(d - b'0')) % 10;
        if s == 0 {
            s = 10;
        }
        p = (2 * s) % 11;
    }
    ((11 - p) % 10) as u8
}

/// The regional ID for serial number `serial` (1 ..= 999,999,999).
pub fn regional_id(serial: u64) -> String {
    let body = format!("{serial:09}");
    let check = mod11_10(body.as_bytes());
    format!("{body}{check}")
}

/// Why a typed identifier is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Wrong length or not all digits.
    #[error("{what} {value:?} must be {len} digits")]
    Shape {
        /// "regional ID" or "card number".
        what: &'static str,
        /// As typed.
        value: String,
        /// Expected length.
        len: usize,
    },
    /// The check digit does not match: a typing error.
    #[error("{what} {value:?} has a wrong check digit (mistyped?)")]
    CheckDigit {
        /// "regional ID" or "card number".
        what: &'static str,
        /// As typed.
        value: String,
    },
}

fn shape(what: &'static str, value: &str, len: usize) -> Result<(), IdError> {
    if value.len() == len && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(IdError::Shape {
            what,
            value: value.to_string(),
            len,
        })
    }
}

/// Check a typed regional ID (spaces around it ignored); returns it trimmed.
pub fn parse_regional_id(value: &str) -> Result<&str, IdError> {
    let v = value.trim();
    shape("regional ID", v, REGIONAL_ID_LEN)?;
    let (body, check) = v.as_bytes().split_at(REGIONAL_ID_LEN - 1);
    if mod11_10(body) != check[0] - b'0' {
        return Err(IdError::CheckDigit {
            what: "regional ID",
            value: v.to_string(),
        });
    }
    Ok(v)
}

/// Whether `value` is a well-formed regional ID (for telling one apart from a local ID).
pub fn is_regional_id(value: &str) -> bool {
    parse_regional_id(value).is_ok()
}

/// Luhn check digit of `digits` (ASCII digits, check digit not included).
fn luhn(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// A new random card number.
pub fn new_card_number() -> String {
    let mut rng = rand::rng();
    let mut body = String::with_capacity(CARD_NUMBER_LEN);
    body.push('9');
    for _ in 0..CARD_NUMBER_LEN - 2 {
        body.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    let check = luhn(body.as_bytes());
    body.push(char::from(b'0' + check));
    body
}

/// Check a typed or scanned card number; spaces and hyphens (as printed) are ignored.
pub fn parse_card_number(value: &str) -> Result<String, IdError> {
    let v: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    shape("card number", &v, CARD_NUMBER_LEN)?;
    let (body, check) = v.as_bytes().split_at(CARD_NUMBER_LEN - 1);
    if luhn(body) != check[0] - b'0' {
        return Err(IdError::CheckDigit {
            what: "card number",
            value: v.clone(),
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_ids_validate_and_catch_typing_errors() {
        for serial in [1, 2, 42, 123_456_789, 999_999_999] {
            let id = regional_id(serial);
            assert_eq!(id.len(), 10);
            assert_eq!(parse_regional_id(&id), Ok(id.as_str()));
            // every single-digit substitution is caught
            for pos in 0..10 {
                for d in b'0'..=b'9' {
                    let mut b = id.clone().into_bytes();
                    if b[pos] == d {
                        continue;
                    }
                    b[pos] = d;
                    let typo = String::from_utf8(b).unwrap();
                    assert!(parse_regional_id(&typo).is_err(), "{typo} passed");
                }
            }
            // every adjacent transposition of different digits is caught
            for pos in 0..9 {
                let mut b = id.clone().into_bytes();
                if b[pos] == b[pos + 1] {
                    continue;
                }
                b.swap(pos, pos + 1);
                let typo = String::from_utf8(b).unwrap();
                assert!(parse_regional_id(&typo).is_err(), "{typo} passed");
            }
        }
        assert!(matches!(
            parse_regional_id("12345"),
            Err(IdError::Shape { .. })
        ));
        assert!(matches!(
            parse_regional_id("00000000a1"),
            Err(IdError::Shape { .. })
        ));
    }

    #[test]
    fn mod11_10_matches_the_standard_example() {
        // ISO/IEC 7064 MOD 11-10 worked example: 0794 → check digit 5
        assert_eq!(mod11_10(b"0794"), 5);
    }

    #[test]
    fn card_numbers_are_luhn_valid() {
        // a well-known Luhn test number
        assert_eq!(luhn(b"7992739871"), 3);
        for _ in 0..100 {
            let n = new_card_number();
            assert_eq!(parse_card_number(&n).as_deref(), Ok(n.as_str()));
        }
        let n = new_card_number();
        let printed = format!("{}-{}-{}-{}", &n[0..4], &n[4..8], &n[8..12], &n[12..16]);
        assert_eq!(parse_card_number(&printed), Ok(n.clone()));
        let mut typo = n.into_bytes();
        typo[5] = if typo[5] == b'0' { b'1' } else { b'0' };
        assert!(matches!(
            parse_card_number(std::str::from_utf8(&typo).unwrap()),
            Err(IdError::CheckDigit { .. })
        ));
    }
}
