//! UID helpers (PS3.5 9.1): at most 64 characters, digits and dots, no leading zeros in a
//! component (we do not enforce the last rule: real modalities break it and we must still
//! store their images).

/// The node's implementation class UID, written to the file meta of every stored blob and
/// sent in association negotiation. Under the `2.25` (UUID-derived) root.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.167286413457391052310735718466734851203";

/// The implementation version name written to file meta. Changing it changes the bytes of
/// newly stored blobs, so a re-send after an upgrade would count as a new version of an
/// instance: change it only with that in mind.
pub const IMPLEMENTATION_VERSION_NAME: &str = "RENKEI_1";

/// Trim the padding DICOM allows on UIDs (trailing NUL or space).
pub fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' ']).trim_start_matches(' ')
}

/// Whether `uid` is a syntactically valid UID: 1–64 characters of digits and dots, not
/// starting or ending with a dot, without empty components.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_padding() {
        assert_eq!(trim_uid("1.2.3\0"), "1.2.3");
        assert_eq!(trim_uid("1.2.3 "), "1.2.3");
    }

    #[test]
    fn validates() {
        assert!(is_valid_uid("1.2.840.10008.1.2"));
        assert!(is_valid_uid(IMPLEMENTATION_CLASS_UID));
        assert!(!is_valid_uid(""));
        assert!(!is_valid_uid("1..2"));
        assert!(!is_valid_uid("1.2."));
        assert!(!is_valid_uid("1.2.a"));
        assert!(!is_valid_uid(&"1.".repeat(40)));
    }
}
