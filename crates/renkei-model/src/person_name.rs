//! Person Name (PN) values, PS3.5 6.2.1: up to three component groups separated by `=`
//! (alphabetic, ideographic, phonetic), each with up to five components separated by `^`.
//! Japanese names typically carry all three: `Yamada^Tarou=山田^太郎=やまだ^たろう`.

use serde::{Deserialize, Serialize};

/// A decoded person name, kept as its three component groups (UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    /// Alphabetic (single-byte) representation.
    pub alphabetic: String,
    /// Ideographic representation (e.g. kanji).
    pub ideographic: String,
    /// Phonetic representation (e.g. hiragana or katakana).
    pub phonetic: String,
}

impl PersonName {
    /// Split a decoded PN value into its groups. Trailing padding and empty trailing
    /// components are dropped (PS3.5 6.2.1.1 allows them to be omitted).
    pub fn parse(value: &str) -> Self {
        let value = value.trim_end_matches(['\0', ' ']);
        let mut groups = value.splitn(3, '=').map(tidy_group);
        PersonName {
            alphabetic: groups.next().unwrap_or_default(),
            ideographic: groups.next().unwrap_or_default(),
            phonetic: groups.next().unwrap_or_default(),
        }
    }

    /// Whether all three groups are empty.
    pub fn is_empty(&self) -> bool {
        self.alphabetic.is_empty() && self.ideographic.is_empty() && self.phonetic.is_empty()
    }

    /// The DICOM string form, `alphabetic=ideographic=phonetic` without empty trailing groups.
    pub fn to_dicom_string(&self) -> String {
        let mut s = self.alphabetic.clone();
        if !self.ideographic.is_empty() || !self.phonetic.is_empty() {
            s.push('=');
            s.push_str(&self.ideographic);
        }
        if !self.phonetic.is_empty() {
            s.push('=');
            s.push_str(&self.phonetic);
        }
        s
    }
}

fn tidy_group(group: &str) -> String {
    group.trim().trim_end_matches('^').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_japanese_groups() {
        let pn = PersonName::parse("Yamada^Tarou=山田^太郎=やまだ^たろう");
        assert_eq!(pn.alphabetic, "Yamada^Tarou");
        assert_eq!(pn.ideographic, "山田^太郎");
        assert_eq!(pn.phonetic, "やまだ^たろう");
        assert_eq!(pn.to_dicom_string(), "Yamada^Tarou=山田^太郎=やまだ^たろう");
    }

    #[test]
    fn alphabetic_only_and_padding() {
        let pn = PersonName::parse("DOE^JOHN^^^ ");
        assert_eq!(pn.alphabetic, "DOE^JOHN");
        assert!(pn.ideographic.is_empty());
        assert_eq!(pn.to_dicom_string(), "DOE^JOHN");
        assert!(PersonName::parse("").is_empty());
    }

    #[test]
    fn ideographic_without_alphabetic() {
        let pn = PersonName::parse("=山田^太郎");
        assert_eq!(pn.alphabetic, "");
        assert_eq!(pn.ideographic, "山田^太郎");
        assert_eq!(pn.to_dicom_string(), "=山田^太郎");
    }
}
