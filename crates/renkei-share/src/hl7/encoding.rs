//! Character sets of HL7 v2 messages as Japanese systems send them (HL7 v2.5 §2.15.9.18
//! MSH-18, table 0211; §2.15.9.20 MSH-20; JAHIS 臨床検査データ交換規約 / SS-MIX2 標準化
//! ストレージ仕様: `MSH-18 = "~ISO IR87"`, `MSH-20 = "ISO 2022-1994"`).
//!
//! | MSH-18 (any repetition, case-insensitive)                      | decoded as |
//! |-----------------------------------------------------------------|------------|
//! | empty, `ASCII`, `ISO IR6`                                       | ASCII (see below) |
//! | `ISO IR87` (JIS X 0208), `ISO IR13` (JIS X 0201 kana), `ISO-2022-JP` | ISO-2022-JP |
//! | `SJIS`, `Shift_JIS`, `SHIFT-JIS`, `ShiftJIS`, `CP932`, `MS932`, `Windows-31J` | Shift_JIS (Windows-31J) |
//! | `UNICODE UTF-8`, `UTF-8`, `UTF8`                                | UTF-8 |
//! | `8859/1`, `ISO IR100`                                           | ISO 8859-1 (windows-1252) |
//!
//! `ISO IR159` (JIS X 0212 supplementary kanji), `UNICODE` (UCS-2) and any other value are
//! refused. When MSH-18 is empty the message should be ASCII (HL7); in practice an empty
//! MSH-18 with ISO 2022 escape sequences is ISO-2022-JP (the JAHIS convention with MSH-20
//! `ISO 2022-1994`), and 8-bit bytes that form valid UTF-8 are UTF-8. Anything else (an
//! undeclared Shift_JIS message, say) is refused rather than guessed.
//!
//! ISO-2022-JP and Shift_JIS are decoded *before* the message is split into fields: bytes
//! of two-byte characters can equal the delimiters (`|` 0x7C, `^` 0x5E, `~` 0x7E, `\`
//! 0x5C, as in Shift_JIS "表" 0x95 0x5C). Segments end with CR (or LF, CRLF: files), bytes
//! no two-byte character of the three encodings contains, so a message is cut into segments
//! first and each segment decoded on its own: ISO 2022 requires each to start in ASCII
//! (JAHIS: 各セグメントの先頭は ASCII), and a decoding error names its segment.

use encoding_rs::Encoding;

/// The character set a message is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// 7-bit ASCII (ISO IR6): HL7's default.
    Ascii,
    /// ISO-2022-JP: ASCII, JIS X 0208 (ISO IR87) and JIS X 0201 (ISO IR13) by escapes.
    Iso2022Jp,
    /// Shift_JIS as Windows writes it (CP932 / Windows-31J).
    ShiftJis,
    /// UTF-8 (`UNICODE UTF-8`).
    Utf8,
    /// ISO 8859-1 (decoded as its superset windows-1252, as browsers do).
    Latin1,
}

/// Why a character set is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CharsetError {
    /// MSH-18 names a set this node does not decode.
    #[error("MSH-18 character set {0:?} is not supported (accepted: ~ISO IR87 (ISO-2022-JP), SJIS, UNICODE UTF-8, ASCII)")]
    Unsupported(String),
    /// MSH-18 names two incompatible sets.
    #[error("MSH-18 names incompatible character sets {0:?} and {1:?}")]
    Conflicting(String, String),
    /// No MSH-18, and the bytes are neither ASCII, ISO-2022-JP nor UTF-8.
    #[error("MSH-18 declares no character set but the message has 8-bit bytes that are not UTF-8: declare it (SJIS, ~ISO IR87 or UNICODE UTF-8)")]
    Undeclared,
    /// A segment's bytes are not valid in the declared set.
    #[error("{what}: bytes not valid in {charset}{hint}")]
    Malformed {
        /// Which segment (`"segment 3 (OBX)"`).
        what: String,
        /// The set.
        charset: &'static str,
        /// What the bytes look like instead, if anything.
        hint: &'static str,
    },
}

impl Charset {
    /// The set MSH-18's repetitions declare (`~ISO IR87` is two: empty, then ISO IR87);
    /// `raw` is the whole message, looked at only when nothing is declared.
    pub fn from_msh18(
        repetitions: &[&str],
        msh20: &str,
        raw: &[u8],
    ) -> Result<Charset, CharsetError> {
        let mut found: Option<(Charset, String)> = None;
        for r in repetitions {
            let name = r.trim();
            let set = match name.to_ascii_uppercase().replace('_', "-").as_str() {
                "" | "ASCII" | "ISO IR6" | "ISO-IR6" | "US-ASCII" => continue,
                "ISO IR87" | "ISO-IR87" | "ISO IR13" | "ISO-IR13" | "ISO-2022-JP" | "ISO2022JP"
                | "JIS" => Charset::Iso2022Jp,
                "SJIS" | "SHIFT-JIS" | "SHIFTJIS" | "CP932" | "MS932" | "WINDOWS-31J" => {
                    Charset::ShiftJis
                }
                "UNICODE UTF-8" | "UTF-8" | "UTF8" => Charset::Utf8,
                "8859/1" | "ISO IR100" | "ISO-8859-1" => Charset::Latin1,
                _ => return Err(CharsetError::Unsupported(name.to_string())),
            };
            match &found {
                Some((prev, prev_name)) if *prev != set => {
                    return Err(CharsetError::Conflicting(
                        prev_name.clone(),
                        name.to_string(),
                    ))
                }
                Some(_) => {}
                None => found = Some((set, name.to_string())),
            }
        }
        if let Some((set, _)) = found {
            return Ok(set);
        }
        // nothing declared: what the bytes are
        if raw.contains(&0x1B) || msh20.trim().eq_ignore_ascii_case("ISO 2022-1994") {
            return Ok(Charset::Iso2022Jp);
        }
        if raw.is_ascii() {
            Ok(Charset::Ascii)
        } else if std::str::from_utf8(raw).is_ok() {
            Ok(Charset::Utf8)
        } else {
            Err(CharsetError::Undeclared)
        }
    }

    /// The encoding_rs codec.
    pub fn encoding(self) -> &'static Encoding {
        match self {
            Charset::Ascii | Charset::Utf8 => encoding_rs::UTF_8,
            Charset::Iso2022Jp => encoding_rs::ISO_2022_JP,
            Charset::ShiftJis => encoding_rs::SHIFT_JIS,
            Charset::Latin1 => encoding_rs::WINDOWS_1252,
        }
    }

    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Iso2022Jp => "ISO-2022-JP (ISO IR87)",
            Charset::ShiftJis => "Shift_JIS",
            Charset::Utf8 => "UTF-8",
            Charset::Latin1 => "ISO 8859-1",
        }
    }

    /// (MSH-18, MSH-20) of a message written in this set (an ACK answering in kind).
    pub fn msh18(self) -> (&'static str, &'static str) {
        match self {
            Charset::Ascii => ("", ""),
            Charset::Iso2022Jp => ("~ISO IR87", "ISO 2022-1994"),
            Charset::ShiftJis => ("SJIS", ""),
            Charset::Utf8 => ("UNICODE UTF-8", ""),
            Charset::Latin1 => ("8859/1", ""),
        }
    }

    /// Decode one segment's bytes (no CR/LF in them); `what` names it in the error.
    pub fn decode(self, bytes: &[u8], what: impl Fn() -> String) -> Result<String, CharsetError> {
        let malformed = |hint| CharsetError::Malformed {
            what: what(),
            charset: self.name(),
            hint,
        };
        match self {
            Charset::Ascii => {
                if bytes.is_ascii() && !bytes.contains(&0x1B) {
                    // ASCII is UTF-8
                    Ok(String::from_utf8_lossy(bytes).into_owned())
                } else {
                    Err(malformed(guess(bytes)))
                }
            }
            Charset::Iso2022Jp if !bytes.is_ascii() => Err(malformed(guess(bytes))),
            _ => self
                .encoding()
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|s| s.into_owned())
                .ok_or_else(|| {
                    malformed(if self == Charset::Iso2022Jp {
                        ""
                    } else {
                        guess(bytes)
                    })
                }),
        }
    }

    /// Encode text in this set (characters it lacks become `&#NNNN;`, encoding_rs's
    /// HTML-style replacement: readable, and only ever in ACK texts).
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Ascii => text
                .chars()
                .flat_map(|c| {
                    if c.is_ascii() {
                        vec![c as u8]
                    } else {
                        format!("&#{};", c as u32).into_bytes()
                    }
                })
                .collect(),
            _ => self.encoding().encode(text).0.into_owned(),
        }
    }
}

/// What 8-bit bytes look like, for the error message.
fn guess(bytes: &[u8]) -> &'static str {
    if bytes.contains(&0x1B) {
        " (it has ISO 2022 escape sequences: declare MSH-18 ~ISO IR87)"
    } else if std::str::from_utf8(bytes).is_ok() {
        " (it looks like UTF-8: declare MSH-18 UNICODE UTF-8)"
    } else if encoding_rs::SHIFT_JIS
        .decode_without_bom_handling_and_without_replacement(bytes)
        .is_some()
    {
        " (it looks like Shift_JIS: declare MSH-18 SJIS)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what() -> String {
        "segment 2 (PID)".into()
    }

    #[test]
    fn msh18_values() {
        let c = |reps: &[&str]| Charset::from_msh18(reps, "", b"MSH|");
        assert_eq!(c(&["", "ISO IR87"]), Ok(Charset::Iso2022Jp));
        assert_eq!(
            c(&["ISO IR6", "ISO IR87", "ISO IR13"]),
            Ok(Charset::Iso2022Jp)
        );
        assert_eq!(c(&["sjis"]), Ok(Charset::ShiftJis));
        assert_eq!(c(&["Shift_JIS"]), Ok(Charset::ShiftJis));
        assert_eq!(c(&["Windows-31J"]), Ok(Charset::ShiftJis));
        assert_eq!(c(&["UNICODE UTF-8"]), Ok(Charset::Utf8));
        assert_eq!(c(&[""]), Ok(Charset::Ascii));
        assert!(matches!(
            c(&["ISO IR159"]),
            Err(CharsetError::Unsupported(_))
        ));
        assert!(matches!(c(&["UNICODE"]), Err(CharsetError::Unsupported(_))));
        assert!(matches!(
            c(&["SJIS", "UNICODE UTF-8"]),
            Err(CharsetError::Conflicting(..))
        ));
        // undeclared
        assert_eq!(
            Charset::from_msh18(&[""], "", b"PID|\x1b$B8!\x1b(B"),
            Ok(Charset::Iso2022Jp)
        );
        assert_eq!(
            Charset::from_msh18(&[], "", "PID|山田".as_bytes()),
            Ok(Charset::Utf8)
        );
        assert_eq!(
            Charset::from_msh18(&[], "", b"PID|\x8eR\x93c"),
            Err(CharsetError::Undeclared)
        );
    }

    #[test]
    fn decodes_the_three_japanese_encodings() {
        let text = "PID|||123||山田^太郎^^^^^L^I~ヤマダ^タロウ^^^^^L^P";
        for set in [Charset::Iso2022Jp, Charset::ShiftJis, Charset::Utf8] {
            let bytes = set.encode(text);
            assert_eq!(set.decode(&bytes, what).unwrap(), text, "{set:?}");
        }
        // Shift_JIS bytes that equal delimiters: 表 = 95 5C, ソ = 83 5C, ポ = 83 7C
        let bytes = Charset::ShiftJis.encode("表ソポ");
        assert_eq!(bytes, b"\x95\x5c\x83\x5c\x83\x7c");
        assert_eq!(Charset::ShiftJis.decode(&bytes, what).unwrap(), "表ソポ");
        // ISO-2022-JP: JIS X 0208 bytes in the delimiter range
        let bytes = Charset::Iso2022Jp.encode("表");
        assert_eq!(bytes, b"\x1b$BI=\x1b(B");
        // half-width katakana by ESC ( I (ISO IR13)
        assert_eq!(
            Charset::Iso2022Jp.decode(b"\x1b(I1\x1b(B", what).unwrap(),
            "\u{FF71}"
        );
    }

    #[test]
    fn wrong_bytes_name_the_segment_and_the_likely_set() {
        let sjis = Charset::ShiftJis.encode("山田");
        let e = Charset::Iso2022Jp
            .decode(&sjis, what)
            .unwrap_err()
            .to_string();
        assert!(e.contains("segment 2 (PID)") && e.contains("SJIS"), "{e}");
        let e = Charset::Ascii
            .decode("山田".as_bytes(), what)
            .unwrap_err()
            .to_string();
        assert!(e.contains("UTF-8"), "{e}");
        assert!(Charset::Utf8.decode(&sjis, what).is_err());
        assert_eq!(Charset::Ascii.encode("a山"), b"a&#23665;");
    }
}
