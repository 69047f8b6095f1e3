//! The general acknowledgment (HL7 v2.5 §2.9 original acknowledgment mode, §2.14.1 ACK):
//!
//! ```text
//! MSH|^~\&|RENKEI|<node>|<MSH-3>|<MSH-4>|<now>||ACK^<trigger>^ACK|<new ID>|P|2.5||||||<MSH-18>
//! MSA|<AA|AE|AR>|<MSH-10 acknowledged>|<text>
//! ERR||<segment>^<sequence>^<field>^^<component>|<code>^<text>^HL70357|<E|W|I>||||<text>
//! ```
//!
//! AA: accepted and recorded. AE (application error): the content was wrong (a missing PID,
//! an unlinked patient, a malformed value): nothing of the message was recorded, unless MSA-3
//! says how many resources were created before a store failure. AR (application reject): the
//! header was unusable or not allowed (broken MSH, unsupported type, version or processing
//! ID, unknown sending facility, a caller not of that facility). One ERR per finding; ERR-2
//! names the segment (with its occurrence) and field, ERR-3 the HL7 table 0357 code, ERR-8
//! the reason in words. MSA-3 repeats the first reason, for systems that show only it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::encoding::Charset;
use super::map::{error_code_text, Issue, Severity};
use super::parse::{Delimiters, Header};
use crate::model::{now_us, rfc3339};

/// MSA-1 (HL7 table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckCode {
    /// Application Accept.
    AA,
    /// Application Error.
    AE,
    /// Application Reject.
    AR,
}

impl AckCode {
    /// The code.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
        }
    }
}

/// The answer to one message.
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    /// MSA-1.
    pub code: AckCode,
    /// MSA-2: MSH-10 of the message answered (empty when it could not be read).
    pub control_id: String,
    /// MSH-9 of the message answered (`ORU^R01`).
    pub message_type: String,
    /// MSA-3: what happened, in one sentence.
    pub text: String,
    /// The ERR segments.
    pub issues: Vec<Issue>,
    /// The resources created (`Observation/…`).
    pub created: Vec<String>,
    /// DetectedIssue resources the duplicate checks raised (`DetectedIssue/…`).
    pub detected_issues: Vec<String>,
    /// Resources mapped but not stored (the Patient of an ADT^A08: see the module docs of
    /// [`super`]).
    pub not_stored: Vec<Value>,
    /// The sending facility, when MSH-4 named a known one.
    pub facility: Option<String>,
    /// The regional patient, when PID-3 resolved to one.
    pub patient: Option<String>,
    /// MSH-10 of this ACK.
    pub ack_control_id: String,
    /// When the message was a resend of one already recorded: when that one was received
    /// (RFC 3339). Nothing was recorded again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    #[serde(skip)]
    header: Header,
    #[serde(skip)]
    node: String,
}

/// A fresh MSH-10 for an ACK: `RK` and a number that grows (µs clock, made unique).
fn next_control_id() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_us();
    let id = match LAST.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
        Some(l.max(now - 1) + 1)
    }) {
        Ok(prev) => prev.max(now - 1) + 1,
        Err(prev) => prev + 1,
    };
    format!("RK{id}")
}

/// HL7 DTM of now, UTC.
fn now_dtm() -> String {
    // rfc3339: 2026-11-27T01:02:03Z
    let s = rfc3339(now_us());
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    format!("{digits}+0000")
}

impl Ack {
    /// An answer to a message with this header, from `node` (MSH-4 of the ACK).
    pub fn new(node: &str, header: Header) -> Ack {
        Ack {
            code: AckCode::AA,
            control_id: header.control_id.clone(),
            message_type: header.message_type(),
            text: String::new(),
            issues: Vec::new(),
            created: Vec::new(),
            detected_issues: Vec::new(),
            not_stored: Vec::new(),
            facility: None,
            patient: None,
            ack_control_id: next_control_id(),
            duplicate_of: None,
            header,
            node: node.to_string(),
        }
    }

    /// MSH-3 of the message answered.
    pub fn sending_application(&self) -> &str {
        &self.header.sending_application
    }

    /// Answer with `code` because of `issues` (MSA-3 is the first one's text).
    pub fn fail(mut self, code: AckCode, issues: Vec<Issue>) -> Ack {
        self.code = code;
        if self.text.is_empty() {
            // "PID-3: …", unless the reason already starts with where it is
            let say = |i: &Issue| {
                if i.text.starts_with(&i.location.to_string()) {
                    i.text.clone()
                } else {
                    i.to_string()
                }
            };
            self.text = match issues.as_slice() {
                [] => String::new(),
                [one] => say(one),
                [first, rest @ ..] => format!("{} (and {} more)", say(first), rest.len()),
            };
        }
        self.issues.extend(issues);
        self
    }

    /// Whether the message was accepted.
    pub fn accepted(&self) -> bool {
        self.code == AckCode::AA
    }

    /// The character set of the message answered (an ACK over MLLP answers in kind).
    pub fn charset(&self) -> Charset {
        self.header.charset.unwrap_or(Charset::Ascii)
    }

    /// The ACK as ER7 text in UTF-8 (`MSH-18 = UNICODE UTF-8`), segments ended by CR.
    pub fn er7(&self) -> String {
        self.render(Charset::Utf8)
    }

    /// The ACK in the character set of the message it answers, segments ended by CR.
    pub fn encoded(&self) -> Vec<u8> {
        let set = self.charset();
        // ISO 2022: every segment starts in ASCII, so encode segment by segment
        let text = self.render(set);
        let mut out = Vec::with_capacity(text.len() + 16);
        for seg in text.split_terminator('\r') {
            out.extend_from_slice(&set.encode(seg));
            out.push(b'\r');
        }
        out
    }

    fn render(&self, set: Charset) -> String {
        let d = Delimiters::default();
        let e = |s: &str| d.escape_text(s);
        let h = &self.header;
        let facility: Vec<String> = h.sending_facility.iter().map(|c| e(c)).collect();
        let facility = facility.join("^").trim_end_matches('^').to_string();
        let trigger = if h.trigger.is_empty() {
            String::new()
        } else {
            format!("^{}^ACK", e(&h.trigger))
        };
        let (msh18, msh20) = set.msh18();
        let mut msh = format!(
            "MSH|^~\\&|RENKEI|{}|{}|{}|{}||ACK{trigger}|{}|P|2.5",
            e(&self.node),
            e(&h.sending_application),
            facility,
            now_dtm(),
            self.ack_control_id,
        );
        if !msh18.is_empty() {
            msh.push_str(&format!("||||||{msh18}"));
            if !msh20.is_empty() {
                msh.push_str(&format!("||{msh20}"));
            }
        }
        let mut out = msh;
        out.push('\r');
        out.push_str(&format!(
            "MSA|{}|{}|{}\r",
            self.code.as_str(),
            e(&self.control_id),
            e(&self.text)
        ));
        for i in &self.issues {
            let l = &i.location;
            let mut erl = e(&l.segment);
            if l.sequence > 0 || l.field > 0 {
                erl.push_str(&format!("^{}", l.sequence.max(1)));
            }
            if l.field > 0 {
                erl.push_str(&format!("^{}", l.field));
                if l.component > 0 {
                    erl.push_str(&format!("^^{}", l.component));
                }
            }
            let sev = match i.severity {
                Severity::Error => "E",
                Severity::Warning => "W",
                Severity::Information => "I",
            };
            out.push_str(&format!(
                "ERR||{erl}|{}^{}^HL70357|{sev}||||{}\r",
                i.code,
                error_code_text(i.code),
                e(&i.text)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::parse::{Location, Message};

    fn header() -> Header {
        Message::parse(
            b"MSH|^~\\&|LIS|1310000002^1.2.392.200119.6.102.11310000002^ISO|RENKEI||20240301||ORU^R01^ORU_R01|MSG0001|P|2.5||||||~ISO IR87||ISO 2022-1994",
        )
        .unwrap()
        .header
    }

    #[test]
    fn ack_names_segment_and_field() {
        let ack = Ack::new("RENKEI", header()).fail(
            AckCode::AE,
            vec![Issue::error(
                Location::field("PID", 1, 3),
                204,
                "patient 12345 of 1310000002 is not linked | check",
            )],
        );
        let text = ack.er7();
        let segs: Vec<&str> = text.split_terminator('\r').collect();
        assert_eq!(segs.len(), 3, "{text}");
        assert!(
            segs[0].starts_with(
                "MSH|^~\\&|RENKEI|RENKEI|LIS|1310000002^1.2.392.200119.6.102.11310000002^ISO|"
            ),
            "{}",
            segs[0]
        );
        assert!(segs[0].contains("||ACK^R01^ACK|RK"), "{}", segs[0]);
        assert!(
            segs[0].ends_with("|P|2.5||||||UNICODE UTF-8"),
            "{}",
            segs[0]
        );
        assert_eq!(
            segs[1],
            "MSA|AE|MSG0001|PID-3: patient 12345 of 1310000002 is not linked \\F\\ check"
        );
        assert_eq!(
            segs[2],
            "ERR||PID^1^3|204^Unknown key identifier^HL70357|E||||patient 12345 of 1310000002 is not linked \\F\\ check"
        );
        // the ACK reads back with the parser
        let back = Message::parse(text.as_bytes()).unwrap();
        assert_eq!(back.header.message_type(), "ACK^R01");
        assert_eq!(back.first("MSA").unwrap().value(2), "MSG0001");
        assert_eq!(back.first("ERR").unwrap().component(2, 1), "PID");
        assert_eq!(back.first("ERR").unwrap().component(2, 3), "3");
    }

    #[test]
    fn ack_answers_in_the_senders_character_set() {
        let mut ack = Ack::new("RENKEI", header());
        ack.text = "3 件登録".into();
        let bytes = ack.encoded();
        assert!(bytes.is_ascii(), "ISO-2022-JP is 7-bit");
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back.header.charset, Some(Charset::Iso2022Jp));
        assert_eq!(back.first("MSA").unwrap().value(3), "3 件登録");
        // control IDs are unique
        let a = Ack::new("RENKEI", header());
        let b = Ack::new("RENKEI", header());
        assert_ne!(a.ack_control_id, b.ack_control_id);
        // a message that could not be read still gets an ACK
        let ack = Ack::new("RENKEI", Header::default()).fail(
            AckCode::AR,
            vec![Issue::error(Location::segment("MSH", 1), 100, "no MSH")],
        );
        assert!(
            ack.er7().contains("\rMSA|AR||MSH: no MSH\rERR||MSH^1|100^"),
            "{}",
            ack.er7()
        );
    }
}
