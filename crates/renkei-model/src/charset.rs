//! Text decoding by Specific Character Set (0008,0005), every value of it, including ISO 2022
//! code extensions (PS3.5 6.1.2.5, Annex H Japanese, Annex I Korean, Annex J Chinese).
//!
//! dicom-rs decodes with the first value only (its issue #443), so `ISO 2022 IR 87` names
//! (Japanese kanji) come out as garbage. This module decodes the raw bytes itself; the
//! byte-level decoders come from `encoding_rs`, the escape-sequence state machine is ours
//! (no crate implements DICOM's flavour of ISO 2022).
//!
//! Rules followed:
//! - value 1 (possibly empty = ISO-IR 6, ASCII) is the initial set; with `ISO 2022 …` terms,
//!   escape sequences switch G0 (ESC `(`/`$` `B`…) and G1 (ESC `)` `-` `$)`…) sets;
//! - the initial state is restored at the end of each value (`\`), at `^` and `=` in person
//!   names, and at control characters (CR, LF, FF, TAB), PS3.5 6.1.2.5.3;
//! - without code extensions, the single term picks a plain decoder (ISO_IR 100 → Latin-1,
//!   ISO_IR 192 → UTF-8, GB18030, GBK…).

use encoding_rs::Encoding;

/// A parsed Specific Character Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharacterSets {
    /// The defined terms, trimmed; empty string for an empty value (default repertoire).
    terms: Vec<String>,
}

/// What a graphic set in G0 or G1 decodes as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    /// ISO-IR 6 (and the JIS X 0201 Romaji of ISO-IR 14, treated as ASCII).
    Ascii,
    /// JIS X 0201 Katakana (ISO-IR 13), one byte 0xA1–0xDF.
    Katakana,
    /// JIS X 0208 (ISO-IR 87), two bytes.
    Jis0208,
    /// JIS X 0212 (ISO-IR 159), two bytes.
    Jis0212,
    /// KS X 1001 (ISO-IR 149), two bytes in G1.
    Ksx1001,
    /// GB 2312 (ISO-IR 58), two bytes in G1.
    Gb2312,
    /// A 96-character single-byte set decoded by this encoding (Latin-1, Greek…).
    Single(&'static Encoding),
}

impl CharacterSets {
    /// Parse the (decoded as ASCII) value of Specific Character Set, `\`-separated.
    pub fn parse(value: &str) -> Self {
        let terms = value
            .split('\\')
            .map(|t| t.trim_matches(['\0', ' ']).to_string())
            .collect::<Vec<_>>();
        CharacterSets { terms }
    }

    /// Whether decoding needs this module (dicom-rs would get it wrong): several values, or
    /// an ISO 2022 term, or a term dicom-rs does not know.
    pub fn needs_own_decoding(&self) -> bool {
        self.terms.len() > 1
            || self
                .terms
                .iter()
                .any(|t| t.starts_with("ISO 2022") || t == "ISO_IR 159")
    }

    fn code_extensions(&self) -> bool {
        self.terms.iter().any(|t| t.starts_with("ISO 2022"))
    }

    /// The initial (G0, G1) of value 1.
    fn initial(&self) -> (Set, Option<Set>) {
        match self.terms.first().map(String::as_str).unwrap_or("") {
            "ISO 2022 IR 13" | "ISO_IR 13" => (Set::Ascii, Some(Set::Katakana)),
            "ISO 2022 IR 100" | "ISO_IR 100" => {
                (Set::Ascii, Some(latin(encoding_rs::WINDOWS_1252)))
            }
            "ISO 2022 IR 101" | "ISO_IR 101" => (Set::Ascii, Some(latin(encoding_rs::ISO_8859_2))),
            "ISO 2022 IR 109" | "ISO_IR 109" => (Set::Ascii, Some(latin(encoding_rs::ISO_8859_3))),
            "ISO 2022 IR 110" | "ISO_IR 110" => (Set::Ascii, Some(latin(encoding_rs::ISO_8859_4))),
            "ISO 2022 IR 144" | "ISO_IR 144" => (Set::Ascii, Some(latin(encoding_rs::ISO_8859_5))),
            "ISO 2022 IR 127" | "ISO_IR 127" => (Set::Ascii, Some(latin(encoding_rs::ISO_8859_6))),
            "ISO 2022 IR 126" | "ISO_IR 126" => (Set::Ascii, Some(latin(encoding_rs::ISO_8859_7))),
            "ISO 2022 IR 138" | "ISO_IR 138" => (Set::Ascii, Some(latin(encoding_rs::ISO_8859_8))),
            "ISO 2022 IR 148" | "ISO_IR 148" => {
                (Set::Ascii, Some(latin(encoding_rs::WINDOWS_1254)))
            }
            "ISO 2022 IR 166" | "ISO_IR 166" => (Set::Ascii, Some(latin(encoding_rs::WINDOWS_874))),
            "ISO 2022 IR 87" => (Set::Jis0208, None),
            "ISO 2022 IR 159" => (Set::Jis0212, None),
            "ISO 2022 IR 149" => (Set::Ascii, Some(Set::Ksx1001)),
            "ISO 2022 IR 58" => (Set::Ascii, Some(Set::Gb2312)),
            _ => (Set::Ascii, None),
        }
    }

    /// Decode raw bytes of a text value (all its values). `person_name` enables the resets
    /// at `^` and `=`.
    pub fn decode(&self, bytes: &[u8], person_name: bool) -> String {
        if !self.code_extensions() {
            return self.decode_plain(bytes);
        }
        let (g0_init, g1_init) = self.initial();
        let (mut g0, mut g1) = (g0_init, g1_init);
        let mut out = String::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == 0x1B {
                if let Some((set, to_g1, len)) = escape(&bytes[i + 1..]) {
                    if to_g1 {
                        g1 = Some(set);
                    } else {
                        g0 = set;
                    }
                    i += 1 + len;
                    continue;
                }
                i += 1; // unknown escape: drop the ESC, keep going
                continue;
            }
            // in a two-byte G0 set, '^' and '\\' are halves of characters, not delimiters
            let single_byte_g0 = matches!(g0, Set::Ascii | Set::Katakana);
            let delimiter = matches!(b, b'\r' | b'\n' | 0x0C | b'\t')
                || (single_byte_g0 && b == b'\\')
                || (single_byte_g0 && person_name && matches!(b, b'^' | b'='));
            if delimiter {
                out.push(b as char);
                g0 = g0_init;
                g1 = g1_init;
                i += 1;
                continue;
            }
            if b < 0x80 {
                i += decode_in(g0, &bytes[i..], false, &mut out);
            } else {
                match g1 {
                    Some(set) => i += decode_in(set, &bytes[i..], true, &mut out),
                    None => {
                        out.push('\u{FFFD}');
                        i += 1;
                    }
                }
            }
        }
        out
    }

    fn decode_plain(&self, bytes: &[u8]) -> String {
        let enc: &'static Encoding = match self.terms.first().map(String::as_str).unwrap_or("") {
            "ISO_IR 192" => encoding_rs::UTF_8,
            "GB18030" => encoding_rs::GB18030,
            "GBK" => encoding_rs::GBK,
            "ISO_IR 13" => encoding_rs::SHIFT_JIS,
            "ISO_IR 100" => encoding_rs::WINDOWS_1252,
            "ISO_IR 101" => encoding_rs::ISO_8859_2,
            "ISO_IR 109" => encoding_rs::ISO_8859_3,
            "ISO_IR 110" => encoding_rs::ISO_8859_4,
            "ISO_IR 144" => encoding_rs::ISO_8859_5,
            "ISO_IR 127" => encoding_rs::ISO_8859_6,
            "ISO_IR 126" => encoding_rs::ISO_8859_7,
            "ISO_IR 138" => encoding_rs::ISO_8859_8,
            "ISO_IR 148" => encoding_rs::WINDOWS_1254,
            "ISO_IR 166" => encoding_rs::WINDOWS_874,
            // ISO-IR 6 and anything unknown: ASCII is a subset of Latin-1, which never fails
            _ => encoding_rs::WINDOWS_1252,
        };
        enc.decode_without_bom_handling(bytes).0.into_owned()
    }
}

fn latin(enc: &'static Encoding) -> Set {
    Set::Single(enc)
}

/// Recognise an escape sequence (bytes after ESC): (set, designates G1?, bytes consumed).
fn escape(rest: &[u8]) -> Option<(Set, bool, usize)> {
    let seq = |s: &[u8]| rest.starts_with(s);
    Some(if seq(b"(B") || seq(b"(J") {
        (Set::Ascii, false, 2)
    } else if seq(b")I") {
        (Set::Katakana, true, 2)
    } else if seq(b"$B") || seq(b"$@") {
        (Set::Jis0208, false, 2)
    } else if seq(b"$(D") {
        (Set::Jis0212, false, 3)
    } else if seq(b"$)C") {
        (Set::Ksx1001, true, 3)
    } else if seq(b"$)A") {
        (Set::Gb2312, true, 3)
    } else if let Some(&[b'-', f]) = rest.get(..2) {
        let enc = match f {
            b'A' => encoding_rs::WINDOWS_1252,
            b'B' => encoding_rs::ISO_8859_2,
            b'C' => encoding_rs::ISO_8859_3,
            b'D' => encoding_rs::ISO_8859_4,
            b'L' => encoding_rs::ISO_8859_5,
            b'G' => encoding_rs::ISO_8859_6,
            b'F' => encoding_rs::ISO_8859_7,
            b'H' => encoding_rs::ISO_8859_8,
            b'M' => encoding_rs::WINDOWS_1254,
            b'T' => encoding_rs::WINDOWS_874,
            _ => return None,
        };
        (Set::Single(enc), true, 2)
    } else {
        return None;
    })
}

/// Decode one character of `set` at the start of `bytes`; returns bytes consumed (≥ 1).
fn decode_in(set: Set, bytes: &[u8], high: bool, out: &mut String) -> usize {
    let b = bytes[0];
    let two = |out: &mut String, enc: &'static Encoding, prefix: &[u8], hi: u8| -> usize {
        match bytes.get(1) {
            Some(&b2) if b2 != 0x1B && (b2 & 0x7F) >= 0x21 => {
                let mut buf = prefix.to_vec();
                buf.extend([b | hi, b2 | hi]);
                out.push_str(&enc.decode_without_bom_handling(&buf).0);
                2
            }
            _ => {
                out.push('\u{FFFD}');
                1
            }
        }
    };
    match set {
        Set::Ascii => {
            out.push(if high { '\u{FFFD}' } else { b as char });
            1
        }
        Set::Katakana => {
            match b {
                0xA1..=0xDF => {
                    out.push(char::from_u32(0xFF61 + u32::from(b - 0xA1)).unwrap_or('\u{FFFD}'))
                }
                _ if !high => out.push(b as char),
                _ => out.push('\u{FFFD}'),
            }
            1
        }
        // JIS in GL: set the high bits and read as EUC-JP (0x8F introduces JIS X 0212)
        Set::Jis0208 if !high => two(out, encoding_rs::EUC_JP, &[], 0x80),
        Set::Jis0212 if !high => two(out, encoding_rs::EUC_JP, &[0x8F], 0x80),
        Set::Ksx1001 if high => two(out, encoding_rs::EUC_KR, &[], 0),
        Set::Gb2312 if high => two(out, encoding_rs::GBK, &[], 0),
        Set::Single(enc) if high => {
            out.push_str(&enc.decode_without_bom_handling(&[b]).0);
            1
        }
        _ => {
            out.push(if high { '\u{FFFD}' } else { b as char });
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_kanji_and_kana_with_resets() {
        // PS3.5 H.3.1, the value of chrH31.dcm
        let cs = CharacterSets::parse("\\ISO 2022 IR 87");
        assert!(cs.needs_own_decoding());
        let raw =
            b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";
        assert_eq!(cs.decode(raw, true), "Yamada^Tarou=山田^太郎=やまだ^たろう");
    }

    #[test]
    fn half_width_katakana_with_ir13() {
        // PS3.5 H.3.2: ISO 2022 IR 13 with IR 87
        let cs = CharacterSets::parse("ISO 2022 IR 13\\ISO 2022 IR 87");
        let raw = b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J";
        assert_eq!(cs.decode(raw, true), "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう");
    }

    #[test]
    fn korean_g1() {
        let cs = CharacterSets::parse("\\ISO 2022 IR 149");
        assert_eq!(
            cs.decode(b"\x1b$)C\xb1\xe8\xc8\xf1\xc1\xdf\x1b(B", true),
            "김희중"
        );
    }

    #[test]
    fn plain_sets() {
        assert_eq!(
            CharacterSets::parse("ISO_IR 100").decode(b"Buc^J\xe9r\xf4me", true),
            "Buc^Jérôme"
        );
        assert_eq!(
            CharacterSets::parse("ISO_IR 192").decode("王^小東".as_bytes(), true),
            "王^小東"
        );
        assert_eq!(
            CharacterSets::parse("").decode(b"DOE^JOHN", true),
            "DOE^JOHN"
        );
        assert!(!CharacterSets::parse("ISO_IR 100").needs_own_decoding());
    }

    #[test]
    fn truncated_and_unknown_input_never_panics() {
        let cs = CharacterSets::parse("\\ISO 2022 IR 87");
        for raw in [
            &b"\x1b$B;"[..],
            b"\x1b",
            b"\x1b$",
            b"\xff\xfe",
            b"\x1b$B;3\\ED",
        ] {
            let _ = cs.decode(raw, true);
            let _ = cs.decode(raw, false);
        }
    }
}
