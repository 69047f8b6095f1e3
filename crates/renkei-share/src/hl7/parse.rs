//! The ER7 ("pipehat") encoding of HL7 v2.5 (chapter 2, §2.5–2.7): segments end with CR;
//! MSH-1 is the field separator and MSH-2 the component, repetition, escape and
//! subcomponent characters; fields split into repetitions, components and
//! subcomponents; escape sequences (§2.7) stand for the delimiters (`\F\ \S\ \T\ \R\ \E\`),
//! hex data (`\Xhh…\`, decoded in the message's character set) and formatting
//! (`\.br\` a line break; `\H\ \N\`, `\.sp…\`, `\C…\ \M…\` and `\Z…\` are dropped).
//!
//! Batches (§2.10.3): a file or body holding several messages — with `FHS`/`BHS`/`BTS`/
//! `FTS` or simply consecutive messages — is cut at each segment that starts with `MSH`
//! ([`split_batch`]); each message is then parsed and acknowledged on its own.
//!
//! Tolerated beyond the letter of the standard, because files on disk have them: LF or
//! CRLF as segment terminators, blank lines, a UTF-8 byte order mark.

use super::encoding::{Charset, CharsetError};

/// The delimiters of one message (MSH-1, MSH-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// Field separator (MSH-1), usually `|`.
    pub field: char,
    /// Component separator, usually `^`.
    pub component: char,
    /// Repetition separator, usually `~`.
    pub repetition: char,
    /// Escape character, usually `\` (none when MSH-2 omits it).
    pub escape: Option<char>,
    /// Subcomponent separator, usually `&`.
    pub subcomponent: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
        }
    }
}

impl Delimiters {
    /// MSH-2 as written.
    pub fn msh2(&self) -> String {
        let mut s = String::new();
        s.push(self.component);
        s.push(self.repetition);
        if let Some(e) = self.escape {
            s.push(e);
        }
        s.push(self.subcomponent);
        s
    }

    /// Escape text for a field (§2.7.1).
    pub fn escape_text(&self, text: &str) -> String {
        let Some(esc) = self.escape else {
            return text.to_string();
        };
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            let code = if c == self.field {
                Some('F')
            } else if c == self.component {
                Some('S')
            } else if c == self.subcomponent {
                Some('T')
            } else if c == self.repetition {
                Some('R')
            } else if c == esc {
                Some('E')
            } else {
                None
            };
            match code {
                Some(code) => {
                    out.push(esc);
                    out.push(code);
                    out.push(esc);
                }
                // a segment cannot hold a CR: line breaks as \.br\ (§2.7.6)
                None if c == '\r' || c == '\n' => {
                    out.push(esc);
                    out.push_str(".br");
                    out.push(esc);
                }
                None => out.push(c),
            }
        }
        out
    }
}

/// Where in a message something is (HL7 v2.5 ERR-2, data type ERL).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// Segment ID (`PID`).
    pub segment: String,
    /// Which occurrence of that segment (1 = first), 0 when unknown.
    pub sequence: usize,
    /// Field position, 0 for the whole segment.
    pub field: usize,
    /// Component, 0 for the whole field.
    pub component: usize,
}

impl Location {
    /// The whole segment.
    pub fn segment(id: &str, sequence: usize) -> Location {
        Location {
            segment: id.to_string(),
            sequence,
            field: 0,
            component: 0,
        }
    }

    /// One field of a segment.
    pub fn field(id: &str, sequence: usize, field: usize) -> Location {
        Location {
            segment: id.to_string(),
            sequence,
            field,
            component: 0,
        }
    }

    /// One component.
    pub fn component(id: &str, sequence: usize, field: usize, component: usize) -> Location {
        Location {
            segment: id.to_string(),
            sequence,
            field,
            component,
        }
    }
}

impl std::fmt::Display for Location {
    /// `PID-3`, `OBX[2]-5`, `PID-5.2`, `MSH`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.segment)?;
        if self.sequence > 1 {
            write!(f, "[{}]", self.sequence)?;
        }
        if self.field > 0 {
            write!(f, "-{}", self.field)?;
            if self.component > 0 {
                write!(f, ".{}", self.component)?;
            }
        }
        Ok(())
    }
}

/// Why a message could not be read at all. The ACK is AR for a header fault, AE otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ParseError {
    /// Where.
    pub location: Location,
    /// What is wrong, for the sender.
    pub message: String,
    /// HL7 table 0357 code (100 segment sequence, 101 required field missing, 102 data
    /// type error, 203 unsupported version…).
    pub code: u16,
    /// The header as far as it could be read (for the ACK's MSA-2 and routing).
    pub header: Box<Header>,
}

/// The fields of MSH an importer and its ACK need (HL7 v2.5 §2.15.9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// MSH-3 Sending Application (its namespace ID).
    pub sending_application: String,
    /// MSH-4 Sending Facility: its components (HD: namespace ID, universal ID, type).
    pub sending_facility: Vec<String>,
    /// MSH-5 Receiving Application (namespace ID).
    pub receiving_application: String,
    /// MSH-6 Receiving Facility (namespace ID).
    pub receiving_facility: String,
    /// MSH-9.1 message code (`ORU`).
    pub message_code: String,
    /// MSH-9.2 trigger event (`R01`).
    pub trigger: String,
    /// MSH-10 Message Control ID.
    pub control_id: String,
    /// MSH-11 Processing ID (`P`).
    pub processing_id: String,
    /// MSH-12 Version ID (`2.5`).
    pub version: String,
    /// MSH-18 and MSH-20 as decoded.
    pub charset: Option<Charset>,
}

impl Header {
    /// `ORU^R01`.
    pub fn message_type(&self) -> String {
        if self.trigger.is_empty() {
            self.message_code.clone()
        } else {
            format!("{}^{}", self.message_code, self.trigger)
        }
    }
}

/// One segment, fields kept escaped until read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Segment ID.
    pub id: String,
    /// Occurrence of this ID in the message (1 = first).
    pub sequence: usize,
    /// Fields by HL7 position: `fields[0]` is the ID; for MSH, `fields[1]` is MSH-1.
    fields: Vec<String>,
    syntax: Syntax,
}

/// Delimiters and character set: what reading a value needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    /// The delimiters.
    pub delimiters: Delimiters,
    /// The character set (for `\X…\`).
    pub charset: Charset,
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy)]
pub struct Rep<'a> {
    raw: &'a str,
    syntax: Syntax,
}

impl<'a> Rep<'a> {
    /// Whether it holds nothing (HL7's explicit null `""` counts as nothing).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty() || self.raw == "\"\""
    }

    /// Component `c` (1-based), its first subcomponent, unescaped.
    pub fn component(&self, c: usize) -> String {
        self.sub(c, 1)
    }

    /// Subcomponent `s` of component `c` (both 1-based), unescaped.
    pub fn sub(&self, c: usize, s: usize) -> String {
        let d = self.syntax.delimiters;
        let comp = self
            .raw
            .split(d.component)
            .nth(c.saturating_sub(1))
            .unwrap_or("");
        let sub = comp
            .split(d.subcomponent)
            .nth(s.saturating_sub(1))
            .unwrap_or("");
        if sub == "\"\"" {
            return String::new();
        }
        unescape(sub, self.syntax).trim().to_string()
    }

    /// The subcomponents of component `c` (a CWE in a component, such as TQ1-3.1).
    pub fn subs(&self, c: usize) -> Vec<String> {
        let d = self.syntax.delimiters;
        let comp = self
            .raw
            .split(d.component)
            .nth(c.saturating_sub(1))
            .unwrap_or("");
        comp.split(d.subcomponent)
            .map(|s| unescape(s, self.syntax).trim().to_string())
            .collect()
    }

    /// The value as a text (all of it, unescaped; for TX/FT values the components are
    /// the text's own carets).
    pub fn text(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        unescape(self.raw, self.syntax)
    }
}

impl Segment {
    /// The raw (escaped) field `n`; "" when absent.
    pub fn raw(&self, n: usize) -> &str {
        self.fields.get(n).map(String::as_str).unwrap_or("")
    }

    /// Number of fields present (the last position).
    pub fn len(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    /// Whether the segment has no fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The repetitions of field `n`.
    pub fn reps(&self, n: usize) -> Vec<Rep<'_>> {
        let raw = self.raw(n);
        if self.id == "MSH" && n <= 2 {
            // MSH-1 and MSH-2 are the delimiters themselves, never split
            return vec![Rep {
                raw,
                syntax: self.syntax,
            }];
        }
        raw.split(self.syntax.delimiters.repetition)
            .map(|r| Rep {
                raw: r,
                syntax: self.syntax,
            })
            .collect()
    }

    /// The first repetition of field `n`.
    pub fn rep(&self, n: usize) -> Rep<'_> {
        let raw = self.raw(n);
        let raw = if self.id == "MSH" && n <= 2 {
            raw
        } else {
            raw.split(self.syntax.delimiters.repetition)
                .next()
                .unwrap_or("")
        };
        Rep {
            raw,
            syntax: self.syntax,
        }
    }

    /// Field `n`, first repetition, first component, unescaped and trimmed.
    pub fn value(&self, n: usize) -> String {
        self.rep(n).component(1)
    }

    /// Component `c` of field `n` (first repetition).
    pub fn component(&self, n: usize, c: usize) -> String {
        self.rep(n).component(c)
    }

    /// Where field `n` of this segment is.
    pub fn at(&self, n: usize) -> Location {
        Location::field(&self.id, self.sequence, n)
    }
}

/// A parsed message.
#[derive(Debug, Clone)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// Delimiters and character set.
    pub syntax: Syntax,
    /// Every segment, in order; the first is MSH.
    pub segments: Vec<Segment>,
}

impl Message {
    /// The first segment with this ID.
    pub fn first(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// MSH.
    pub fn msh(&self) -> &Segment {
        &self.segments[0]
    }

    /// Parse one message (bytes from its MSH to its last segment).
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let lines = lines(bytes);
        let Some(first) = lines.first() else {
            return Err(err(
                Location::segment("MSH", 1),
                100,
                "empty message: no MSH segment",
                Header::default(),
            ));
        };
        if !first.starts_with(b"MSH") {
            let id = String::from_utf8_lossy(&first[..first.len().min(3)]).into_owned();
            return Err(err(
                Location::segment("MSH", 1),
                100,
                &format!("the message does not start with MSH (it starts with {id:?})"),
                Header::default(),
            ));
        }
        let delimiters = read_delimiters(first)?;
        // a first, byte-level look at MSH for MSH-18 (and MSH-10 for the ACK): the
        // header fields before MSH-18 are ASCII in every Japanese convention
        let naive = naive_msh(first, delimiters);
        let mut header = Header {
            control_id: naive
                .get(10)
                .map(|f| first_component(f, delimiters))
                .unwrap_or_default(),
            ..Header::default()
        };
        let msh18: Vec<&str> = naive
            .get(18)
            .map(|f| f.split(delimiters.repetition).collect())
            .unwrap_or_default();
        let msh20 = naive.get(20).map(String::as_str).unwrap_or("");
        let charset = Charset::from_msh18(&msh18, msh20, bytes).map_err(|e| {
            err(
                Location::field("MSH", 1, 18),
                203,
                &e.to_string(),
                header.clone(),
            )
        })?;
        header.charset = Some(charset);
        let syntax = Syntax {
            delimiters,
            charset,
        };
        let mut segments: Vec<Segment> = Vec::with_capacity(lines.len());
        let mut counts: Vec<(String, usize)> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let id_bytes = &line[..line.len().min(3)];
            let id = String::from_utf8_lossy(id_bytes).into_owned();
            let text = charset
                .decode(line, || format!("segment {} ({id})", i + 1))
                .map_err(|e| {
                    let code = match e {
                        CharsetError::Malformed { .. } => 102,
                        _ => 203,
                    };
                    err(
                        Location::segment(&id, 0),
                        code,
                        &e.to_string(),
                        header.clone(),
                    )
                })?;
            let mut fields: Vec<String> =
                text.split(delimiters.field).map(str::to_string).collect();
            let id = fields[0].clone();
            let valid_id = id.len() == 3
                && id
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !valid_id {
                return Err(err(
                    Location::segment(&id, 0),
                    100,
                    &format!(
                        "segment {} has no valid segment ID (three capital letters or digits): {:?}",
                        i + 1,
                        text.chars().take(20).collect::<String>()
                    ),
                    header.clone(),
                ));
            }
            if id == "MSH" {
                if i > 0 {
                    return Err(err(
                        Location::segment("MSH", 2),
                        100,
                        "a second MSH inside one message",
                        header.clone(),
                    ));
                }
                // MSH-1 is the separator itself: shift so that fields[n] is MSH-n
                fields.insert(1, delimiters.field.to_string());
            }
            let sequence = match counts.iter_mut().find(|(s, _)| *s == id) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((id.clone(), 1));
                    1
                }
            };
            segments.push(Segment {
                id,
                sequence,
                fields,
                syntax,
            });
        }
        let msh = &segments[0];
        header.sending_application = msh.component(3, 1);
        header.sending_facility = (1..=3).map(|c| msh.component(4, c)).collect();
        header.receiving_application = msh.component(5, 1);
        header.receiving_facility = msh.component(6, 1);
        header.message_code = msh.component(9, 1);
        header.trigger = msh.component(9, 2);
        header.control_id = msh.value(10);
        header.processing_id = msh.value(11);
        header.version = msh.value(12);
        if header.message_code.is_empty() {
            return Err(err(msh.at(9), 101, "MSH-9 message type is empty", header));
        }
        if header.control_id.is_empty() {
            return Err(err(
                msh.at(10),
                101,
                "MSH-10 message control ID is empty",
                header,
            ));
        }
        if header.processing_id.is_empty() {
            return Err(err(
                msh.at(11),
                101,
                "MSH-11 processing ID is empty",
                header,
            ));
        }
        if header.version.is_empty() {
            return Err(err(msh.at(12), 101, "MSH-12 version ID is empty", header));
        }
        Ok(Message {
            header,
            syntax,
            segments,
        })
    }
}

fn err(location: Location, code: u16, message: &str, header: Header) -> ParseError {
    ParseError {
        location,
        message: message.to_string(),
        code,
        header: Box::new(header),
    }
}

/// MSH-1 and MSH-2 (§2.5.4): `MSH` then five distinct, non-alphanumeric characters (a
/// sixth, the truncation character of v2.7, is accepted and ignored).
fn read_delimiters(msh: &[u8]) -> Result<Delimiters, ParseError> {
    let bad = |what: &str, field: usize| {
        err(
            Location::field("MSH", 1, field),
            102,
            what,
            Header::default(),
        )
    };
    let field = *msh
        .get(3)
        .ok_or_else(|| bad("MSH-1 field separator missing", 1))?;
    let usable = |b: u8| b.is_ascii_graphic() && !b.is_ascii_alphanumeric();
    if !usable(field) {
        return Err(bad(
            &format!(
                "MSH-1 field separator {:?} is not a printable, non-alphanumeric ASCII character",
                field as char
            ),
            1,
        ));
    }
    let rest = &msh[4..];
    let end = rest.iter().position(|&b| b == field).unwrap_or(rest.len());
    let enc = &rest[..end];
    if !(4..=5).contains(&enc.len()) || !enc.iter().all(|&b| usable(b)) {
        return Err(bad(
            &format!(
                "MSH-2 encoding characters {:?} must be 4 (or 5) printable symbols, normally ^~\\&",
                String::from_utf8_lossy(enc)
            ),
            2,
        ));
    }
    let mut seen = vec![field];
    for &b in enc {
        if seen.contains(&b) {
            return Err(bad(
                &format!(
                    "MSH-2 encoding characters {:?} repeat a delimiter",
                    String::from_utf8_lossy(enc)
                ),
                2,
            ));
        }
        seen.push(b);
    }
    // component, repetition, escape, subcomponent[, truncation (v2.7)]
    Ok(Delimiters {
        field: field as char,
        component: enc[0] as char,
        repetition: enc[1] as char,
        escape: Some(enc[2] as char),
        subcomponent: enc[3] as char,
    })
}

/// MSH fields by position from the raw bytes (before decoding), ASCII-lossy.
fn naive_msh(line: &[u8], d: Delimiters) -> Vec<String> {
    let mut out: Vec<String> = line
        .split(|&b| b == d.field as u8)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    out.insert(1, d.field.to_string());
    out
}

fn first_component(f: &str, d: Delimiters) -> String {
    f.split(d.repetition)
        .next()
        .and_then(|r| r.split(d.component).next())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// The segments of a byte buffer: split at CR, LF or CRLF, blank lines dropped.
pub fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .collect()
}

/// One piece of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A message: its segments, joined with CR.
    Message(Vec<u8>),
    /// Segments found outside any message (before the first MSH, other than batch
    /// headers): the first one's ID and how many.
    Stray {
        /// The first stray segment's text (for the report).
        first: &'a [u8],
        /// How many segments.
        count: usize,
    },
}

/// Cut a file or body into messages (HL7 v2.5 §2.10.3): at every segment starting with
/// `MSH`; `FHS`, `BHS`, `BTS` and `FTS` are dropped.
pub fn split_batch(bytes: &[u8]) -> Vec<Piece<'_>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    let mut stray: Option<(&[u8], usize)> = None;
    for line in lines(bytes) {
        if ["FHS", "BHS", "BTS", "FTS"]
            .iter()
            .any(|h| line.starts_with(h.as_bytes()))
        {
            continue;
        }
        if line.starts_with(b"MSH") {
            if let Some((first, count)) = stray.take() {
                out.push(Piece::Stray { first, count });
            }
            if let Some(m) = current.take() {
                out.push(Piece::Message(m));
            }
            current = Some(line.to_vec());
        } else if let Some(m) = current.as_mut() {
            m.push(b'\r');
            m.extend_from_slice(line);
        } else {
            match stray.as_mut() {
                Some((_, n)) => *n += 1,
                None => stray = Some((line, 1)),
            }
        }
    }
    if let Some((first, count)) = stray.take() {
        out.push(Piece::Stray { first, count });
    }
    if let Some(m) = current.take() {
        out.push(Piece::Message(m));
    }
    out
}

/// Undo the escape sequences of one value (§2.7).
pub fn unescape(raw: &str, syntax: Syntax) -> String {
    let d = syntax.delimiters;
    let Some(esc) = d.escape else {
        return raw.to_string();
    };
    if !raw.contains(esc) {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            // a lone escape character: keep it as it is
            out.push_str(&rest[start..]);
            return out;
        };
        let seq = &after[..end];
        match seq {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(esc),
            ".br" => out.push('\n'),
            "H" | "N" => {}
            s if s.starts_with('X') || s.starts_with('x') => {
                match hex::decode(&s[1..]) {
                    Ok(bytes) => {
                        let (text, _, _) = syntax.charset.encoding().decode(&bytes);
                        out.push_str(&text);
                    }
                    Err(_) => {
                        // not hex: keep the sequence visible
                        out.push(esc);
                        out.push_str(s);
                        out.push(esc);
                    }
                }
            }
            // \.sp\ \.in\ \.ti\ \.sk\ \.fi\ \.nf\ \.ce\: formatting, \C..\ \M..\: ISO 2022
            // escapes (already applied by decoding), \Z..\: local
            s if s.starts_with('.')
                || s.starts_with('C')
                || s.starts_with('M')
                || s.starts_with('Z') => {}
            s => {
                out.push(esc);
                out.push_str(s);
                out.push(esc);
            }
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|1310000002|RENKEI|REGION|20240301093000||ORU^R01^ORU_R01|MSG0001|P|2.5||||||UNICODE UTF-8\r\
PID|1||12345^^^^PI||山田^太郎^^^^^L^I~ヤマダ^タロウ^^^^^L^P||19700101|M\r\
OBR|1|ORD1|FIL1|1^生化学^99XYZ|||20240301080000\r\
OBX|1|NM|3D046000001920402^HbA1c^JC10||6.8|%^%^99UNT|4.6-6.2|H|||F\r\
OBX|2|ST|9999^Comment^99LAB||a \\F\\ b \\S\\ c \\T\\ d \\R\\ e \\E\\ f\\.br\\g \\X41E5B1B1\\||||||F\r";

    #[test]
    fn parses_segments_fields_components_and_repetitions() {
        let m = Message::parse(ORU.as_bytes()).unwrap();
        assert_eq!(m.segments.len(), 5);
        assert_eq!(m.header.message_type(), "ORU^R01");
        assert_eq!(m.header.control_id, "MSG0001");
        assert_eq!(m.header.sending_facility[0], "1310000002");
        assert_eq!(m.header.version, "2.5");
        assert_eq!(m.header.charset, Some(Charset::Utf8));
        let msh = m.msh();
        assert_eq!(msh.raw(1), "|");
        assert_eq!(msh.raw(2), "^~\\&");
        assert_eq!(msh.value(3), "LAB");
        let pid = m.first("PID").unwrap();
        assert_eq!(pid.value(3), "12345");
        assert_eq!(pid.component(3, 5), "PI");
        let names = pid.reps(5);
        assert_eq!(names.len(), 2);
        assert_eq!(names[0].component(1), "山田");
        assert_eq!(names[1].component(2), "タロウ");
        assert_eq!(names[1].component(8), "P");
        let obx: Vec<&Segment> = m.segments.iter().filter(|s| s.id == "OBX").collect();
        assert_eq!(obx[1].sequence, 2);
        assert_eq!(obx[0].value(5), "6.8");
        assert_eq!(obx[0].at(5).to_string(), "OBX-5");
        assert_eq!(obx[1].at(5).to_string(), "OBX[2]-5");
        // escapes; \X..\ is decoded in the message's character set (UTF-8 here)
        assert_eq!(obx[1].rep(5).text(), "a | b ^ c & d ~ e \\ f\ng A山");
        assert_eq!(obx[0].value(99), "");
    }

    #[test]
    fn other_delimiters_and_null() {
        let m = Message::parse(
            b"MSH#!@%$#A#B#C#D#20240101##ADT!A08#X1#P#2.5\rPID#1##42!!!!PI##\"\"!Taro",
        )
        .unwrap();
        let pid = m.first("PID").unwrap();
        assert_eq!(m.syntax.delimiters.field, '#');
        assert_eq!(m.syntax.delimiters.subcomponent, '$');
        assert_eq!(pid.component(3, 5), "PI");
        assert_eq!(pid.value(5), "");
        assert_eq!(pid.component(5, 2), "Taro");
        assert_eq!(m.header.message_type(), "ADT^A08");
    }

    #[test]
    fn broken_headers_are_named() {
        let e = Message::parse(b"PID|1||123").unwrap_err();
        assert_eq!(e.location.segment, "MSH");
        let e = Message::parse(b"MSH|^~|A").unwrap_err();
        assert_eq!((e.location.to_string(), e.code), ("MSH-2".into(), 102));
        let e = Message::parse(b"MSH|^^\\&|A").unwrap_err();
        assert!(e.message.contains("repeat"), "{e}");
        let e = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ORU^R01||P|2.5").unwrap_err();
        assert_eq!(e.location.to_string(), "MSH-10");
        let e = Message::parse(b"MSH|^~\\&|A|B|C|D|2024|||X1|P|2.5").unwrap_err();
        assert_eq!((e.location.to_string(), e.code), ("MSH-9".into(), 101));
        // the control ID is known for the ACK even when a later segment is bad
        let e = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ORU^R01|X1|P|2.5\rp1|x").unwrap_err();
        assert_eq!(e.header.control_id, "X1");
        assert!(e.message.contains("segment ID"), "{e}");
    }

    #[test]
    fn escaping_round_trips() {
        let d = Delimiters::default();
        let s = Syntax {
            delimiters: d,
            charset: Charset::Utf8,
        };
        let text = "a|b^c&d~e\\f\ng";
        assert_eq!(unescape(&d.escape_text(text), s), text);
        assert_eq!(unescape("\\Zlocal\\x\\H\\y\\N\\", s), "xy");
        assert_eq!(unescape("open \\F", s), "open \\F");
    }

    #[test]
    fn batches_split_at_msh() {
        let body =
            b"FHS|^~\\&\r\nBHS|^~\\&\nMSH|^~\\&|A\rPID|1\r\rMSH|^~\\&|B\nOBX|1\r\nBTS|2\nFTS|1\n";
        let pieces = split_batch(body);
        assert_eq!(
            pieces,
            vec![
                Piece::Message(b"MSH|^~\\&|A\rPID|1".to_vec()),
                Piece::Message(b"MSH|^~\\&|B\rOBX|1".to_vec()),
            ]
        );
        let pieces = split_batch(b"PID|1\rOBX|1\rMSH|^~\\&|A");
        assert!(matches!(pieces[0], Piece::Stray { count: 2, .. }));
        assert!(matches!(pieces[1], Piece::Message(_)));
    }

    #[test]
    fn japanese_encodings_with_delimiter_bytes() {
        // 表 in Shift_JIS ends in 0x5C (the escape character); ソ in 0x5C; ポ in 0x7C (|)
        let text = "MSH|^~\\&|HIS|1310000001|||20240301||ADT^A08^ADT_A01|A1|P|2.5||||||SJIS\rPID|1||77^^^^PI||表^ソポ";
        let bytes = Charset::ShiftJis.encode(text);
        let m = Message::parse(&bytes).unwrap();
        let pid = m.first("PID").unwrap();
        assert_eq!(pid.component(5, 1), "表");
        assert_eq!(pid.component(5, 2), "ソポ");
        // ISO-2022-JP, one segment at a time (each starts and ends in ASCII)
        let text = "MSH|^~\\&|HIS|1310000001|||20240301||ADT^A08^ADT_A01|A1|P|2.5||||||~ISO IR87||ISO 2022-1994\rPID|1||77^^^^PI||表^ソポ";
        let bytes: Vec<u8> = text
            .split('\r')
            .map(|s| Charset::Iso2022Jp.encode(s))
            .collect::<Vec<_>>()
            .join(&b'\r');
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.header.charset, Some(Charset::Iso2022Jp));
        assert_eq!(m.first("PID").unwrap().component(5, 2), "ソポ");
        // Shift_JIS bytes declared as ISO IR87: refused, naming the segment
        let e = Message::parse(&Charset::ShiftJis.encode(text)).unwrap_err();
        assert!(
            e.message.contains("segment 2 (PID)") && e.message.contains("SJIS"),
            "{e}"
        );
    }
}
