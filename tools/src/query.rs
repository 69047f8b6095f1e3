/*!
Query/Retrieve flags shared by `find`, `get` and `move` (DCMTK `findscu`
style: `-P`/`-S`, `-k KEY[=VALUE]`, `-L LEVEL`), the identifier built from
them, and printing of the identifiers the peer sends back.
*/

use std::fmt::Write as _;

use anyhow::{bail, Context};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_encoding::text::SpecificCharacterSet;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

/// Patient Root / Study Root information model UIDs (PS3.4 C.6).
pub(crate) const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
pub(crate) const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
pub(crate) const PATIENT_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.1.3";
pub(crate) const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub(crate) const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
pub(crate) const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

/// What a C-FIND/C-GET/C-MOVE status means (PS3.4 C.4), for messages.
pub(crate) fn qr_status_meaning(status: u16) -> String {
    match status {
        0xA700 | 0xA701 => "refused: out of resources".into(),
        0xA702 => "refused: out of resources, unable to perform sub-operations".into(),
        0xA801 => "refused: move destination unknown".into(),
        0xA900 => "error: identifier does not match SOP class".into(),
        0xB000 => "warning: one or more sub-operations failed".into(),
        0xFE00 => "canceled".into(),
        s if s & 0xF000 == 0xC000 => "failed: unable to process".into(),
        s => renkei_dimse::command::status_meaning(s).into(),
    }
}

/// Print one line on stdout; false when stdout is gone (e.g. `| head`).
pub(crate) fn print_line(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Which operation a model UID is wanted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Find,
    Get,
    Move,
}

/// The query keys and information model.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct QueryArgs {
    /// Use the Patient Root information model.
    #[arg(short = 'P', long = "patient", conflicts_with = "study")]
    patient: bool,

    /// Use the Study Root information model (the default).
    #[arg(short = 'S', long = "study")]
    study: bool,

    /// Query key: `Keyword=VALUE` matches (wildcards `*` and `?` allowed),
    /// `Keyword` alone asks for the attribute to be returned. A tag may be
    /// given as `gggg,eeee` instead of a keyword. Repeatable.
    #[arg(short = 'k', long = "key", value_name = "KEY[=VALUE]")]
    keys: Vec<String>,

    /// Query/Retrieve Level: PATIENT, STUDY, SERIES or IMAGE (default STUDY,
    /// unless a `-k QueryRetrieveLevel=...` key sets it).
    #[arg(short = 'L', long = "level", value_name = "LEVEL",
          value_parser = ["PATIENT", "STUDY", "SERIES", "IMAGE"], ignore_case = true)]
    level: Option<String>,
}

impl QueryArgs {
    /// The SOP class of the chosen information model for `op`.
    pub(crate) fn model(&self, op: Operation) -> &'static str {
        match (self.patient, op) {
            (true, Operation::Find) => PATIENT_ROOT_FIND,
            (true, Operation::Get) => PATIENT_ROOT_GET,
            (true, Operation::Move) => PATIENT_ROOT_MOVE,
            (false, Operation::Find) => STUDY_ROOT_FIND,
            (false, Operation::Get) => STUDY_ROOT_GET,
            (false, Operation::Move) => STUDY_ROOT_MOVE,
        }
    }

    /// The identifier: Specific Character Set UTF-8, the Query/Retrieve
    /// Level and every key.
    pub(crate) fn identifier(&self) -> anyhow::Result<InMemDicomObject> {
        let keys = self
            .keys
            .iter()
            .map(|k| parse_key(k))
            .collect::<anyhow::Result<Vec<_>>>()?;
        build_identifier(&keys, self.level.as_deref())
    }
}

/// One `-k` key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub(crate) tag: Tag,
    pub(crate) vr: VR,
    pub(crate) value: String,
}

/// `Keyword[=value]` or `gggg,eeee[=value]` (also `(gggg,eeee)`).
pub(crate) fn parse_key(text: &str) -> anyhow::Result<Key> {
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n.trim(), v.to_string()),
        None => (text.trim(), String::new()),
    };
    if name.is_empty() {
        bail!("query key {text:?} has no attribute name");
    }
    let (tag, vr) = if let Some(tag) = parse_tag(name) {
        let vr = StandardDataDictionary
            .by_tag(tag)
            .map(|e| e.vr().relaxed())
            .unwrap_or(VR::UN);
        (tag, vr)
    } else {
        let entry = StandardDataDictionary.by_name(name).with_context(|| {
            format!("unknown attribute {name:?} in query key {text:?} (use a DICOM keyword such as PatientName, or a tag as gggg,eeee)")
        })?;
        (entry.tag(), entry.vr().relaxed())
    };
    Ok(Key { tag, vr, value })
}

fn parse_tag(name: &str) -> Option<Tag> {
    let inner = name
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(name);
    let (g, e) = inner.split_once(',')?;
    let hex = |s: &str| {
        let s = s.trim();
        (s.len() == 4)
            .then(|| u16::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some(Tag(hex(g)?, hex(e)?))
}

pub(crate) fn build_identifier(
    keys: &[Key],
    level: Option<&str>,
) -> anyhow::Result<InMemDicomObject> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    let level_key = keys
        .iter()
        .rev()
        .find(|k| k.tag == tags::QUERY_RETRIEVE_LEVEL && !k.value.is_empty());
    let level = match (level_key, level) {
        (Some(k), Some(l)) if !k.value.trim().eq_ignore_ascii_case(l) => {
            bail!(
                "-L {l} contradicts -k QueryRetrieveLevel={}",
                k.value.trim()
            )
        }
        (Some(k), _) => k.value.trim().to_ascii_uppercase(),
        (None, Some(l)) => l.to_ascii_uppercase(),
        (None, None) => "STUDY".to_string(),
    };
    for key in keys {
        if key.tag == tags::SPECIFIC_CHARACTER_SET {
            continue;
        }
        obj.put(key_element(key)?);
    }
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    Ok(obj)
}

fn key_element(key: &Key) -> anyhow::Result<DataElement<InMemDicomObject>> {
    let Key { tag, vr, value } = key;
    let (tag, vr) = (*tag, *vr);
    if value.is_empty() {
        if vr == VR::SQ {
            return Ok(DataElement::new(
                tag,
                VR::SQ,
                Value::from(DataSetSequence::<InMemDicomObject>::empty()),
            ));
        }
        return Ok(DataElement::new(tag, vr, PrimitiveValue::Empty));
    }
    let parts = || value.split('\\').map(str::trim);
    let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("value {value:?} for {tag} ({vr}): {e}");
    let primitive = match vr {
        VR::US => PrimitiveValue::U16(
            parts()
                .map(|p| p.parse::<u16>())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?,
        ),
        VR::SS => PrimitiveValue::I16(
            parts()
                .map(|p| p.parse::<i16>())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?,
        ),
        VR::UL => PrimitiveValue::U32(
            parts()
                .map(|p| p.parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?,
        ),
        VR::SL => PrimitiveValue::I32(
            parts()
                .map(|p| p.parse::<i32>())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?,
        ),
        VR::FL => PrimitiveValue::F32(
            parts()
                .map(|p| p.parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?,
        ),
        VR::FD => PrimitiveValue::F64(
            parts()
                .map(|p| p.parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?,
        ),
        VR::SQ | VR::AT | VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN => {
            bail!("{tag} has VR {vr}: only an empty (return) key is supported, not {value:?}")
        }
        VR::UI => {
            let mut v = value.clone();
            if v.len() % 2 == 1 {
                v.push('\0');
            }
            PrimitiveValue::from(v)
        }
        _ => PrimitiveValue::from(value.as_str()),
    };
    Ok(DataElement::new(tag, vr, primitive))
}

/// Encode an identifier with the transfer syntax `ts_uid`, text as UTF-8.
pub(crate) fn encode_identifier(obj: &InMemDicomObject, ts_uid: &str) -> anyhow::Result<Vec<u8>> {
    let ts = transfer_syntax(ts_uid)?;
    let mut out = Vec::new();
    obj.write_dataset_with_ts_cs(&mut out, ts, SpecificCharacterSet::ISO_IR_192)
        .context("cannot encode the query identifier")?;
    Ok(out)
}

/// Decode an identifier received with the transfer syntax `ts_uid`.
pub(crate) fn decode_identifier(bytes: &[u8], ts_uid: &str) -> anyhow::Result<InMemDicomObject> {
    let ts = transfer_syntax(ts_uid)?;
    InMemDicomObject::read_dataset_with_ts(bytes, ts).context("cannot decode an identifier")
}

fn transfer_syntax(uid: &str) -> anyhow::Result<&'static dicom_encoding::TransferSyntax> {
    TransferSyntaxRegistry
        .get(uid.trim_end_matches(['\0', ' ']))
        .with_context(|| format!("unsupported transfer syntax {uid}"))
}

/// `(keyword, value)` for each element of a received identifier, in tag
/// order, leaving out Specific Character Set and group lengths.
pub(crate) fn identifier_fields(obj: &InMemDicomObject) -> Vec<(String, String)> {
    obj.iter()
        .filter(|e| e.tag() != tags::SPECIFIC_CHARACTER_SET && e.tag().element() != 0)
        .map(|e| {
            let name = StandardDataDictionary
                .by_tag(e.tag())
                .map(|d| d.alias().to_string())
                .unwrap_or_else(|| format!("{:04X},{:04X}", e.tag().group(), e.tag().element()));
            let value = match e.value() {
                Value::Sequence(seq) => format!("<{} item(s)>", seq.items().len()),
                Value::PixelSequence(_) => "<pixel data>".to_string(),
                Value::Primitive(p) => match p {
                    PrimitiveValue::Empty => String::new(),
                    _ => p
                        .to_multi_str()
                        .iter()
                        .map(|s| s.trim_end_matches(['\0', ' ']))
                        .collect::<Vec<_>>()
                        .join("\\"),
                },
            };
            (name, value)
        })
        .collect()
}

/// `Keyword=value` pairs separated by tabs; tabs, newlines and backslashes
/// inside values are escaped.
pub(crate) fn format_tsv(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\t', "\\t")
                .replace('\n', "\\n")
                .replace('\r', "\\r");
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("\t")
}

/// One JSON object, keys in the order given.
pub(crate) fn format_json(fields: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, k);
        out.push(':');
        json_string(&mut out, v);
    }
    out.push('}');
    out
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::uids;

    #[test]
    fn parses_key_forms() {
        let k = parse_key("PatientName=DOE*").unwrap();
        assert_eq!(
            (k.tag, k.vr, k.value.as_str()),
            (tags::PATIENT_NAME, VR::PN, "DOE*")
        );
        let k = parse_key("StudyInstanceUID").unwrap();
        assert_eq!(
            (k.tag, k.vr, k.value.as_str()),
            (tags::STUDY_INSTANCE_UID, VR::UI, "")
        );
        let k = parse_key("0010,0020=ID1").unwrap();
        assert_eq!(
            (k.tag, k.vr, k.value.as_str()),
            (tags::PATIENT_ID, VR::LO, "ID1")
        );
        let k = parse_key("(0008,0020)=20240101-").unwrap();
        assert_eq!((k.tag, k.vr), (tags::STUDY_DATE, VR::DA));
        assert_eq!(k.value, "20240101-");
        // a value may contain '='
        assert_eq!(parse_key("StudyDescription=a=b").unwrap().value, "a=b");
        let err = parse_key("PatientNam=X").unwrap_err().to_string();
        assert!(err.contains("unknown attribute \"PatientNam\""), "{err}");
        assert!(parse_key("=X").is_err());
        assert!(parse_key("0010,00GG").is_err());
    }

    #[test]
    fn identifier_has_charset_level_and_keys() {
        let keys = [
            parse_key("PatientName=Dürer^A*").unwrap(),
            parse_key("StudyInstanceUID").unwrap(),
            parse_key("NumberOfStudyRelatedInstances").unwrap(),
        ];
        let obj = build_identifier(&keys, None).unwrap();
        let bytes = encode_identifier(&obj, uids::EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
        // UTF-8 on the wire
        assert!(bytes.windows(6).any(|w| w == "Dürer".as_bytes()));
        let back = decode_identifier(&bytes, uids::EXPLICIT_VR_LITTLE_ENDIAN).unwrap();
        let fields = identifier_fields(&back);
        assert_eq!(
            fields,
            [
                ("QueryRetrieveLevel".to_string(), "STUDY".to_string()),
                ("PatientName".into(), "Dürer^A*".into()),
                ("StudyInstanceUID".into(), String::new()),
                ("NumberOfStudyRelatedInstances".into(), String::new()),
            ]
        );
        assert_eq!(
            back.get(tags::SPECIFIC_CHARACTER_SET)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "ISO_IR 192"
        );

        let keys = [parse_key("QueryRetrieveLevel=series").unwrap()];
        let obj = build_identifier(&keys, None).unwrap();
        let lvl = obj
            .get(tags::QUERY_RETRIEVE_LEVEL)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(lvl, "SERIES");
        assert!(build_identifier(&keys, Some("STUDY")).is_err());
        let obj = build_identifier(&[], Some("image")).unwrap();
        let lvl = obj
            .get(tags::QUERY_RETRIEVE_LEVEL)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(lvl, "IMAGE");
        // implicit VR too
        let bytes = encode_identifier(&obj, uids::IMPLICIT_VR_LITTLE_ENDIAN).unwrap();
        let back = decode_identifier(&bytes, uids::IMPLICIT_VR_LITTLE_ENDIAN).unwrap();
        assert_eq!(identifier_fields(&back)[0].1, "IMAGE");
        // numbers must parse
        assert!(build_identifier(&[parse_key("Rows=x").unwrap()], None).is_err());
    }

    #[test]
    fn formats_matches() {
        let fields = vec![
            ("PatientName".to_string(), "DOE^J\tX".to_string()),
            ("StudyDescription".to_string(), "say \"hi\"\\".to_string()),
        ];
        assert_eq!(
            format_tsv(&fields),
            "PatientName=DOE^J\\tX\tStudyDescription=say \"hi\"\\"
        );
        assert_eq!(
            format_json(&fields),
            r#"{"PatientName":"DOE^J\tX","StudyDescription":"say \"hi\"\\"}"#
        );
    }

    #[test]
    fn rewritten_query_flags_parse_with_clap() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            q: QueryArgs,
        }
        let cli = Cli::try_parse_from(["x", "-P", "-k", "PatientID=1", "-L", "patient"]).unwrap();
        assert_eq!(cli.q.model(Operation::Find), PATIENT_ROOT_FIND);
        assert_eq!(cli.q.model(Operation::Get), PATIENT_ROOT_GET);
        let cli = Cli::try_parse_from(["x", "-S"]).unwrap();
        assert_eq!(cli.q.model(Operation::Move), STUDY_ROOT_MOVE);
        assert!(Cli::try_parse_from(["x", "-P", "-S"]).is_err());
    }
}
