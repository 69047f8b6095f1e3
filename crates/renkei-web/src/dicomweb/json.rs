//! The DICOM JSON Model (PS3.18 Annex F.2): a data set as a JSON object keyed by tag
//! (`"00100010"`), each attribute `{"vr": .., "Value": [..]}`.
//!
//! Written here rather than taken from the `dicom-json` crate, which serialises a PN as
//! `{"Alphabetic": whole value}` without splitting the ideographic and phonetic groups
//! (`ser/value.rs` at 0.10): Japanese names would come back wrong.
//!
//! Encoding rules (PS3.18 F.2):
//! - an attribute without a value is `{"vr": "XX"}` (no `Value`);
//! - values are always an array, one entry per value (`\`-separated text is split, except
//!   for the single-valued LT, ST, UT and UR); an empty value inside a list is `null`;
//! - PN values are objects with `Alphabetic`, `Ideographic` and `Phonetic` members, each
//!   present only when its group is not empty;
//! - IS, DS, US, SS, UL, SL, FL and FD are JSON numbers; UV and SV are numbers within
//!   ±2^53 and strings beyond; AT is the tag as 8 hex digits;
//! - SQ items are nested objects; binary VRs are `InlineBinary` (base64); encapsulated pixel
//!   data has no inline form and is given as its VR only (BulkDataURI comes with WADO-RS).
//!
//! Two entry points share these rules: [`attribute_from_text`] for values the index keeps
//! as DICOM text (QIDO-RS answers from an [`Entity`](renkei_model::query::Entity)), and
//! [`object_to_json`] for a whole decoded data set (meant for WADO-RS metadata: text must
//! already be decoded to UTF-8, e.g. as `renkei_store::rawtext` does for ISO 2022).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::InMemDicomObject;
use serde_json::{json, Map, Value};

use renkei_model::PersonName;

/// The JSON key of a tag: 8 upper-case hex digits (PS3.18 F.2). Upper-case hex sorts in tag
/// order, so a `serde_json::Map` (a BTreeMap) keeps attributes in tag order.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// The VR the standard dictionary gives a tag (UN for unknown or private tags).
pub fn dictionary_vr(tag: Tag) -> VR {
    StandardDataDictionary
        .by_tag(tag)
        .map(|entry| entry.vr().relaxed())
        .unwrap_or(VR::UN)
}

/// One attribute from its DICOM text form (values separated by `\`, PN groups by `=`);
/// empty text gives an attribute with no value.
pub fn attribute_from_text(vr: VR, text: &str) -> Value {
    let text = text.trim_end_matches(['\0', ' ']);
    if text.is_empty() || vr == VR::SQ {
        return empty(vr);
    }
    let values: Vec<&str> = if matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR) {
        vec![text]
    } else {
        text.split('\\').collect()
    };
    with_values(vr, values.into_iter().map(|v| text_value(vr, v)).collect())
}

/// A whole data set as a DICOM JSON object. Group 0002 (file meta) is left out, as it is
/// not part of a data set.
pub fn object_to_json(obj: &InMemDicomObject) -> Map<String, Value> {
    let mut out = Map::new();
    for elem in obj.iter() {
        let tag = elem.header().tag;
        if tag.group() == 0x0002 {
            continue;
        }
        let vr = elem.vr();
        let attr = match elem.value() {
            DicomValue::Sequence(seq) => {
                let items: Vec<Value> = seq
                    .items()
                    .iter()
                    .map(|item| Value::Object(object_to_json(item)))
                    .collect();
                if items.is_empty() {
                    empty(VR::SQ)
                } else {
                    with_values(VR::SQ, items)
                }
            }
            // fragments have no JSON form; WADO-RS will refer to them by BulkDataURI
            DicomValue::PixelSequence(_) => empty(vr),
            DicomValue::Primitive(p) => primitive(vr, p),
        };
        out.insert(tag_key(tag), attr);
    }
    out
}

fn primitive(vr: VR, p: &PrimitiveValue) -> Value {
    if p.multiplicity() == 0 {
        return empty(vr);
    }
    match vr {
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN => {
            json!({ "vr": vr.to_string(), "InlineBinary": renkei_model::base64::encode(&p.to_bytes()) })
        }
        VR::AT => match p {
            PrimitiveValue::Tags(tags) => {
                with_values(vr, tags.iter().map(|t| Value::from(tag_key(*t))).collect())
            }
            _ => attribute_from_text(vr, &p.to_str()),
        },
        VR::US | VR::SS | VR::UL | VR::SL | VR::UV | VR::SV => match p.to_multi_int::<i128>() {
            Ok(ints) => with_values(vr, ints.into_iter().map(int_value).collect()),
            Err(_) => attribute_from_text(vr, &p.to_str()),
        },
        VR::FL | VR::FD => match p.to_multi_float64() {
            Ok(floats) => with_values(vr, floats.into_iter().map(float_value).collect()),
            Err(_) => attribute_from_text(vr, &p.to_str()),
        },
        // text VRs, IS and DS (kept as text by dicom-object): the text rules apply
        _ => attribute_from_text(vr, &p.to_str()),
    }
}

fn empty(vr: VR) -> Value {
    json!({ "vr": vr.to_string() })
}

fn with_values(vr: VR, values: Vec<Value>) -> Value {
    json!({ "vr": vr.to_string(), "Value": values })
}

/// One value of a text-encoded attribute.
fn text_value(vr: VR, v: &str) -> Value {
    let v = v.trim_matches(['\0', ' ']);
    if v.is_empty() {
        return Value::Null;
    }
    match vr {
        VR::PN => person_name(v),
        VR::IS | VR::US | VR::SS | VR::UL | VR::SL | VR::UV | VR::SV => match v.parse::<i128>() {
            Ok(n) => int_value(n),
            // a malformed number is kept as text rather than lost; F.2 has no other form
            Err(_) => Value::from(v),
        },
        VR::DS | VR::FL | VR::FD => match v.parse::<f64>() {
            Ok(f) => float_value(f),
            Err(_) => Value::from(v),
        },
        _ => Value::from(v),
    }
}

/// A PN value as its component groups (PS3.18 F.2); empty groups are left out.
fn person_name(v: &str) -> Value {
    let pn = PersonName::parse(v);
    let mut m = Map::new();
    for (key, group) in [
        ("Alphabetic", pn.alphabetic),
        ("Ideographic", pn.ideographic),
        ("Phonetic", pn.phonetic),
    ] {
        if !group.is_empty() {
            m.insert(key.into(), Value::from(group));
        }
    }
    if m.is_empty() {
        Value::Null
    } else {
        Value::Object(m)
    }
}

/// Integers beyond ±2^53 are not exact in JavaScript: PS3.18 F.2 sends them as strings.
fn int_value(n: i128) -> Value {
    const SAFE: i128 = (1 << 53) - 1;
    if (-SAFE..=SAFE).contains(&n) {
        Value::from(n as i64)
    } else {
        Value::from(n.to_string())
    }
}

fn float_value(f: f64) -> Value {
    // integral DS values ("512") come out as JSON integers, as pydicom writes them
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        // NaN and infinities have no JSON number form
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_dictionary_std::tags;

    #[test]
    fn person_name_groups() {
        let v = attribute_from_text(VR::PN, "Yamada^Tarou=山田^太郎=やまだ^たろう");
        assert_eq!(
            v,
            json!({"vr": "PN", "Value": [{
                "Alphabetic": "Yamada^Tarou",
                "Ideographic": "山田^太郎",
                "Phonetic": "やまだ^たろう"
            }]})
        );
        let v = attribute_from_text(VR::PN, "=山田^太郎");
        assert_eq!(
            v,
            json!({"vr": "PN", "Value": [{"Ideographic": "山田^太郎"}]})
        );
        assert_eq!(attribute_from_text(VR::PN, ""), json!({"vr": "PN"}));
    }

    #[test]
    fn numbers_lists_and_empty_values() {
        assert_eq!(
            attribute_from_text(VR::IS, "12"),
            json!({"vr": "IS", "Value": [12]})
        );
        assert_eq!(
            attribute_from_text(VR::DS, "0.5\\2"),
            json!({"vr": "DS", "Value": [0.5, 2]})
        );
        assert_eq!(
            attribute_from_text(VR::US, "512"),
            json!({"vr": "US", "Value": [512]})
        );
        assert_eq!(
            attribute_from_text(VR::CS, "CT\\\\MR"),
            json!({"vr": "CS", "Value": ["CT", null, "MR"]})
        );
        assert_eq!(
            attribute_from_text(VR::LT, "a\\b"),
            json!({"vr": "LT", "Value": ["a\\b"]})
        );
        assert_eq!(
            attribute_from_text(VR::UV, "18446744073709551615"),
            json!({"vr": "UV", "Value": ["18446744073709551615"]})
        );
        assert_eq!(attribute_from_text(VR::DA, ""), json!({"vr": "DA"}));
        assert_eq!(attribute_from_text(VR::SQ, "x"), json!({"vr": "SQ"}));
    }

    #[test]
    fn whole_object() {
        let mut item = InMemDicomObject::new_empty();
        item.put(DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            PrimitiveValue::from("T-D1100"),
        ));
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(256_u16),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_SPACING,
            VR::DS,
            PrimitiveValue::from("0.25\\0.25"),
        ));
        obj.put(DataElement::new(
            tags::FRAME_INCREMENT_POINTER,
            VR::AT,
            PrimitiveValue::from(tags::FRAME_TIME),
        ));
        obj.put(DataElement::new(
            tags::ANATOMIC_REGION_SEQUENCE,
            VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![item]),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(vec![1, 2, 3, 4].into()),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::Empty,
        ));
        let j = Value::Object(object_to_json(&obj));
        assert_eq!(j["00280010"], json!({"vr": "US", "Value": [256]}));
        assert_eq!(j["00280030"], json!({"vr": "DS", "Value": [0.25, 0.25]}));
        assert_eq!(j["00280009"], json!({"vr": "AT", "Value": ["00181063"]}));
        assert_eq!(
            j["00082218"],
            json!({"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["T-D1100"]}}]})
        );
        assert_eq!(
            j["7FE00010"],
            json!({"vr": "OB", "InlineBinary": "AQIDBA=="})
        );
        assert_eq!(j["00100010"], json!({"vr": "PN"}));
        let keys: Vec<&String> = j
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "attributes in tag order");
    }
}
