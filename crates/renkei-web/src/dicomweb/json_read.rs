//! DICOM JSON (PS3.18 Annex F.2) read back into a data set: the inverse of [`super::json`],
//! for STOW-RS requests that send metadata and bulk data (PS3.18 10.5.1.2.2).
//!
//! - every VR: text values joined with `\` (`null` is an empty value), PN objects joined
//!   group by group (`Alphabetic=Ideographic=Phonetic`, trailing empty groups dropped), IS
//!   and DS from numbers or strings (DS written in at most 16 characters), US/SS/UL/SL/UV/SV
//!   and FL/FD as binary numbers, AT from `GGGGEEEE`, SQ items recursively;
//! - `InlineBinary` is base64 (RFC 4648, padding optional);
//! - `BulkDataURI` is handed to the caller's resolver, which returns the value (the bytes
//!   of a bulk data part, or encapsulated fragments for compressed Pixel Data);
//! - group 0002 (file meta) and group lengths are left out: the node writes its own.
//!
//! Text is Unicode in JSON: when any value is not ASCII, [`object_from_json`] sets Specific
//! Character Set to `ISO_IR 192` (UTF-8), so that the stored file says how it is encoded.

use dicom_core::value::{DataSetSequence, PrimitiveValue, Value as DicomValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemFragment;
use dicom_object::InMemDicomObject;
use serde_json::{Map, Value};

use super::json::{dictionary_vr, tag_key};

/// A value of the in-memory data set.
pub type ElementValue = DicomValue<InMemDicomObject, InMemFragment>;

/// Why a DICOM JSON data set cannot be read. The text is shown to the client (the Warning
/// of a STOW-RS answer).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonReadError {
    /// The data set (or a sequence item) is not a JSON object.
    #[error("a data set is not a JSON object")]
    NotAnObject,
    /// A key is not 8 hex digits.
    #[error("{0:?} is not a tag (8 hex digits)")]
    BadKey(String),
    /// An attribute is not an object, or has no or an unknown `vr`.
    #[error("attribute {tag}: {detail}")]
    BadAttribute {
        /// The tag, `GGGGEEEE`.
        tag: String,
        /// What is wrong.
        detail: String,
    },
    /// A value does not fit the VR.
    #[error("attribute {tag} ({vr}): {detail}")]
    BadValue {
        /// The tag, `GGGGEEEE`.
        tag: String,
        /// The VR.
        vr: String,
        /// What is wrong.
        detail: String,
    },
    /// The resolver could not give the value of a BulkDataURI.
    #[error("attribute {tag}: BulkDataURI {uri}: {detail}")]
    Bulk {
        /// The tag, `GGGGEEEE`.
        tag: String,
        /// The URI.
        uri: String,
        /// What the resolver said.
        detail: String,
    },
}

/// Read one data set. `bulk(tag, vr, uri)` gives the value of a `BulkDataURI` (at any depth),
/// or why it cannot.
pub fn object_from_json(
    json: &Value,
    bulk: &mut dyn FnMut(Tag, VR, &str) -> Result<ElementValue, String>,
) -> Result<InMemDicomObject, JsonReadError> {
    let mut obj = read_object(json, bulk)?;
    if has_non_ascii_text(json) {
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        ));
    }
    Ok(obj)
}

/// Every `BulkDataURI` of a data set, sequence items included, in document order.
pub fn bulk_uris(json: &Value) -> Vec<(Tag, String)> {
    let mut out = Vec::new();
    collect_uris(json, &mut out);
    out
}

fn collect_uris(json: &Value, out: &mut Vec<(Tag, String)>) {
    let Some(map) = json.as_object() else {
        return;
    };
    for (key, attr) in map {
        let Ok(tag) = parse_tag(key) else {
            continue;
        };
        if let Some(uri) = attr.get("BulkDataURI").and_then(Value::as_str) {
            out.push((tag, uri.to_string()));
        }
        if let Some(items) = attr.get("Value").and_then(Value::as_array) {
            for item in items.iter().filter(|i| i.is_object()) {
                collect_uris(item, out);
            }
        }
    }
}

/// A string attribute of the top level (a UID, say), trimmed; None when absent or empty.
pub fn top_level_text(json: &Value, tag: Tag) -> Option<String> {
    let v = json.get(tag_key(tag))?.get("Value")?.get(0)?.as_str()?;
    let v = v.trim_matches(['\0', ' ']);
    (!v.is_empty()).then(|| v.to_string())
}

fn parse_tag(key: &str) -> Result<Tag, JsonReadError> {
    let bad = || JsonReadError::BadKey(key.to_string());
    if key.len() != 8 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let group = u16::from_str_radix(&key[..4], 16).map_err(|_| bad())?;
    let element = u16::from_str_radix(&key[4..], 16).map_err(|_| bad())?;
    Ok(Tag(group, element))
}

fn read_object(
    json: &Value,
    bulk: &mut dyn FnMut(Tag, VR, &str) -> Result<ElementValue, String>,
) -> Result<InMemDicomObject, JsonReadError> {
    let map = json.as_object().ok_or(JsonReadError::NotAnObject)?;
    let mut obj = InMemDicomObject::new_empty();
    for (key, attr) in map {
        let tag = parse_tag(key)?;
        // file meta and group lengths: not part of the data set the node writes
        if tag.group() == 0x0002 || tag.element() == 0x0000 {
            continue;
        }
        obj.put(read_element(tag, attr, bulk)?);
    }
    Ok(obj)
}

fn read_element(
    tag: Tag,
    attr: &Value,
    bulk: &mut dyn FnMut(Tag, VR, &str) -> Result<ElementValue, String>,
) -> Result<DataElement<InMemDicomObject>, JsonReadError> {
    let key = tag_key(tag);
    let bad_attr = |detail: &str| JsonReadError::BadAttribute {
        tag: key.clone(),
        detail: detail.to_string(),
    };
    let attr: &Map<String, Value> = attr.as_object().ok_or_else(|| bad_attr("not an object"))?;
    let vr = match attr.get("vr") {
        Some(Value::String(s)) => s
            .parse::<VR>()
            .map_err(|_| bad_attr(&format!("unknown vr {s:?}")))?,
        Some(_) => return Err(bad_attr("vr is not a string")),
        // F.2 requires it; the dictionary's answer is taken when it has one
        None => match dictionary_vr(tag) {
            VR::UN => return Err(bad_attr("no vr")),
            vr => vr,
        },
    };
    let bad_value = |detail: String| JsonReadError::BadValue {
        tag: key.clone(),
        vr: String::from(vr.to_string()),
        detail,
    };
    let forms = ["Value", "InlineBinary", "BulkDataURI"]
        .iter()
        .filter(|f| attr.contains_key(**f))
        .count();
    if forms > 1 {
        return Err(bad_attr(
            "more than one of Value, InlineBinary and BulkDataURI",
        ));
    }
    if let Some(uri) = attr.get("BulkDataURI") {
        let uri = uri
            .as_str()
            .ok_or_else(|| bad_attr("BulkDataURI is not a string"))?;
        if vr == VR::SQ {
            return Err(bad_value("a sequence cannot be bulk data".into()));
        }
        let value = bulk(tag, vr, uri).map_err(|detail| JsonReadError::Bulk {
            tag: key.clone(),
            uri: uri.to_string(),
            detail,
        })?;
        // encapsulated fragments are OB whatever the metadata said (PS3.5 A.4)
        let vr = match value {
            DicomValue::PixelSequence(_) => VR::OB,
            _ => vr,
        };
        return Ok(DataElement::new(tag, vr, value));
    }
    if let Some(b64) = attr.get("InlineBinary") {
        let text = b64
            .as_str()
            .ok_or_else(|| bad_attr("InlineBinary is not a string"))?;
        let bytes = renkei_model::base64::decode(text)
            .ok_or_else(|| bad_value("InlineBinary is not base64".into()))?;
        if vr == VR::SQ {
            return Err(bad_value("a sequence cannot be binary".into()));
        }
        return Ok(DataElement::new(tag, vr, PrimitiveValue::U8(bytes.into())));
    }
    let values: &[Value] = match attr.get("Value") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad_value("Value is not an array".into())),
    };
    if vr == VR::SQ {
        let items = values
            .iter()
            .map(|item| match item {
                Value::Null => Ok(InMemDicomObject::new_empty()),
                item => read_object(item, bulk),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(DataElement::new(tag, vr, DataSetSequence::from(items)));
    }
    if values.is_empty() {
        return Ok(DataElement::new(tag, vr, PrimitiveValue::Empty));
    }
    let value = primitive(vr, values).map_err(bad_value)?;
    Ok(DataElement::new(tag, vr, value))
}

/// The values of a non-sequence attribute.
fn primitive(vr: VR, values: &[Value]) -> Result<PrimitiveValue, String> {
    fn all<T>(
        values: &[Value],
        f: impl Fn(&Value) -> Option<T>,
        what: &str,
    ) -> Result<Vec<T>, String> {
        values
            .iter()
            .map(|v| f(v).ok_or_else(|| format!("{v} is not {what}")))
            .collect()
    }
    Ok(match vr {
        VR::PN => PrimitiveValue::Strs(all(values, person_name, "a person name")?.into()),
        VR::IS => PrimitiveValue::Strs(all(values, is_text, "an integer string")?.into()),
        VR::DS => PrimitiveValue::Strs(all(values, ds_text, "a decimal string")?.into()),
        VR::US => {
            PrimitiveValue::U16(all(values, int::<u16>, "an unsigned 16-bit integer")?.into())
        }
        VR::SS => PrimitiveValue::I16(all(values, int::<i16>, "a signed 16-bit integer")?.into()),
        VR::UL => {
            PrimitiveValue::U32(all(values, int::<u32>, "an unsigned 32-bit integer")?.into())
        }
        VR::SL => PrimitiveValue::I32(all(values, int::<i32>, "a signed 32-bit integer")?.into()),
        VR::UV => {
            PrimitiveValue::U64(all(values, int::<u64>, "an unsigned 64-bit integer")?.into())
        }
        VR::SV => PrimitiveValue::I64(all(values, int::<i64>, "a signed 64-bit integer")?.into()),
        VR::FL => {
            PrimitiveValue::F32(all(values, |v| float(v).map(|f| f as f32), "a number")?.into())
        }
        VR::FD => PrimitiveValue::F64(all(values, float, "a number")?.into()),
        VR::AT => PrimitiveValue::Tags(
            all(
                values,
                |v| v.as_str().and_then(|s| parse_tag(s).ok()),
                "a tag (GGGGEEEE)",
            )?
            .into(),
        ),
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN => {
            return Err("binary values are InlineBinary or BulkDataURI, not Value".into())
        }
        // every other VR is text
        _ => PrimitiveValue::Strs(all(values, text, "a string")?.into()),
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        // lenient: a number where text was expected keeps its JSON form
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A PN value: `{"Alphabetic": .., "Ideographic": .., "Phonetic": ..}` as `A=I=P`.
fn person_name(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => {
            let mut groups = Vec::with_capacity(3);
            for key in ["Alphabetic", "Ideographic", "Phonetic"] {
                groups.push(match m.get(key) {
                    None | Some(Value::Null) => "",
                    Some(Value::String(s)) => s.as_str(),
                    Some(_) => return None,
                });
            }
            while groups.last() == Some(&"") {
                groups.pop();
            }
            Some(groups.join("="))
        }
        _ => None,
    }
}

fn is_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Some(i.to_string()),
            (_, Some(u), _) => Some(u.to_string()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e16 => Some(format!("{}", f as i64)),
            _ => None,
        },
        _ => None,
    }
}

fn ds_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(i.to_string()),
            (None, Some(f)) => decimal_string(f),
            _ => None,
        },
        _ => None,
    }
}

/// A DS value in at most 16 characters (PS3.5 6.2): the shortest form that reads back as
/// the same number when it fits, else fewer significant digits in exponent form.
pub fn decimal_string(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let plain = f.to_string();
    if plain.len() <= 16 {
        return Some(plain);
    }
    (0..=15)
        .rev()
        .map(|digits| format!("{f:.digits$e}"))
        .find(|s| s.len() <= 16)
}

fn int<T: TryFrom<i128>>(v: &Value) -> Option<T> {
    let wide: i128 = match v {
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i128::from(i),
            (_, Some(u), _) => i128::from(u),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1.8e19 => f as i128,
            _ => return None,
        },
        // beyond 2^53 F.2 sends integers as strings
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    T::try_from(wide).ok()
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.trim() {
            "NaN" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

/// Whether any text value (PN groups included) of the data set is not ASCII.
fn has_non_ascii_text(json: &Value) -> bool {
    fn any_string(v: &Value) -> bool {
        match v {
            Value::String(s) => !s.is_ascii(),
            Value::Array(a) => a.iter().any(any_string),
            Value::Object(m) => m.values().any(any_string),
            _ => false,
        }
    }
    json.as_object().is_some_and(|m| {
        m.values().any(|attr| {
            attr.get("Value").is_some_and(|values| match values {
                Value::Array(items) => items.iter().any(|item| match item {
                    // an item of a sequence: its own attributes
                    Value::Object(o) if !is_pn_object(o) => has_non_ascii_text(item),
                    other => any_string(other),
                }),
                _ => false,
            })
        })
    })
}

fn is_pn_object(m: &Map<String, Value>) -> bool {
    m.keys()
        .all(|k| matches!(k.as_str(), "Alphabetic" | "Ideographic" | "Phonetic"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicomweb::json::object_to_json;
    use serde_json::json;

    fn no_bulk(_: Tag, _: VR, uri: &str) -> Result<ElementValue, String> {
        Err(format!("no {uri}"))
    }

    fn read(v: Value) -> Result<InMemDicomObject, JsonReadError> {
        object_from_json(&v, &mut no_bulk)
    }

    #[test]
    fn round_trips_through_the_writer() {
        let original = json!({
            "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
            "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
            "00080060": {"vr": "CS", "Value": ["CT"]},
            "00080061": {"vr": "CS", "Value": ["CT", null, "MR"]},
            "00100010": {"vr": "PN", "Value": [{
                "Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"
            }]},
            "00100020": {"vr": "LO", "Value": ["X-1"]},
            "00101010": {"vr": "AS"},
            "00200013": {"vr": "IS", "Value": [12]},
            "00280030": {"vr": "DS", "Value": [0.25, 2]},
            "00280010": {"vr": "US", "Value": [512]},
            "00281052": {"vr": "DS", "Value": [-1024]},
            "00189219": {"vr": "SS", "Value": [-5, 7]},
            "00209158": {"vr": "LT", "Value": ["a\\b"]},
            "00280009": {"vr": "AT", "Value": ["00181063"]},
            "00186028": {"vr": "FD", "Value": [0.5]},
            "00082218": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["T-D1100"]}}]},
            "00400275": {"vr": "SQ"},
            "00091010": {"vr": "OB", "InlineBinary": "AQIDBA=="},
            "0019100A": {"vr": "UV", "Value": ["18446744073709551615"]}
        });
        let obj = read(original.clone()).unwrap();
        assert_eq!(Value::Object(object_to_json(&obj)), original);
    }

    #[test]
    fn person_names_join_their_groups() {
        let obj = read(json!({
            "00100010": {"vr": "PN", "Value": [{"Ideographic": "山田^太郎"}, null, {"Alphabetic": "A^B"}]}
        }))
        .unwrap();
        assert_eq!(
            obj.element(tags::PATIENT_NAME).unwrap().to_str().unwrap(),
            "=山田^太郎\\\\A^B"
        );
        // Unicode text: the object says it is UTF-8
        assert_eq!(
            obj.element(tags::SPECIFIC_CHARACTER_SET)
                .unwrap()
                .to_str()
                .unwrap(),
            "ISO_IR 192"
        );
        let ascii =
            read(json!({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A^B"}]}})).unwrap();
        assert!(ascii.element(tags::SPECIFIC_CHARACTER_SET).is_err());
    }

    #[test]
    fn bulk_data_is_resolved_at_any_depth() {
        let v = json!({
            "7FE00010": {"vr": "OW", "BulkDataURI": "http://h/b/1"},
            "00082218": {"vr": "SQ", "Value": [{"00091001": {"vr": "OB", "BulkDataURI": "b2"}}]}
        });
        assert_eq!(
            bulk_uris(&v),
            vec![
                (Tag(0x0009, 0x1001), "b2".to_string()),
                (tags::PIXEL_DATA, "http://h/b/1".to_string())
            ]
        );
        let mut seen = Vec::new();
        let obj = object_from_json(&v, &mut |tag, vr, uri| {
            seen.push((tag, vr, uri.to_string()));
            Ok(PrimitiveValue::U8(vec![1, 2, 3, 4].into()).into())
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        let pixels = obj.element(tags::PIXEL_DATA).unwrap();
        assert_eq!(pixels.vr(), VR::OW);
        assert_eq!(pixels.to_bytes().unwrap().as_ref(), &[1, 2, 3, 4]);
        let err = read(v).unwrap_err();
        assert!(matches!(err, JsonReadError::Bulk { .. }), "{err}");
    }

    #[test]
    fn malformed_attributes_are_errors() {
        for bad in [
            json!([]),
            json!({"0010001": {"vr": "PN"}}),
            json!({"00100010": "x"}),
            json!({"00100010": {"vr": "XX"}}),
            json!({"00280010": {"vr": "US", "Value": [70000]}}),
            json!({"00280010": {"vr": "US", "Value": ["a"]}}),
            json!({"00280010": {"vr": "US", "Value": 5}}),
            json!({"00091010": {"vr": "OB", "InlineBinary": "%%%"}}),
            json!({"00091010": {"vr": "OB", "Value": [1]}}),
            json!({"00091010": {"vr": "OB", "InlineBinary": "AA==", "BulkDataURI": "x"}}),
            json!({"00280009": {"vr": "AT", "Value": ["xyz"]}}),
            json!({"00082218": {"vr": "SQ", "Value": [5]}}),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
        // no vr: the dictionary's, else an error
        assert!(read(json!({"00100020": {"Value": ["X"]}})).is_ok());
        assert!(read(json!({"00091010": {"Value": ["X"]}})).is_err());
        // file meta and group lengths are dropped
        let obj = read(json!({
            "00020010": {"vr": "UI", "Value": ["1.2.840.10008.1.2"]},
            "00080000": {"vr": "UL", "Value": [4]}
        }))
        .unwrap();
        assert_eq!(obj.iter().count(), 0);
    }

    #[test]
    fn decimal_strings_fit_16_characters() {
        assert_eq!(decimal_string(0.25).as_deref(), Some("0.25"));
        assert_eq!(decimal_string(-1024.0).as_deref(), Some("-1024"));
        let s = decimal_string(0.1 + 0.2).unwrap();
        assert!(
            s.len() <= 16 && (s.parse::<f64>().unwrap() - 0.3).abs() < 1e-12,
            "{s}"
        );
        let s = decimal_string(1.234_567_890_123e-20).unwrap();
        assert!(s.len() <= 16, "{s}");
        assert_eq!(decimal_string(f64::NAN), None);
    }
}
