//! Reading the Image Pixel attributes (PS3.3 C.7.6.3) from a data set, tolerating the
//! explicit VR UN that some converters write for standard tags (gdcmconv output in the
//! edge corpus): dicom-rs keeps such values as raw bytes, so they are decoded here by the
//! VR the dictionary gives them.

use dicom_core::header::HasLength;
use dicom_core::{Tag, VR};
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

use crate::decode::DecodeError;

fn invalid(name: &'static str, value: impl Into<String>) -> DecodeError {
    DecodeError::InvalidAttribute {
        name,
        value: value.into(),
    }
}

/// Raw bytes of an element read as explicit VR UN, if it is one.
fn un_bytes(e: &InMemElement) -> Option<Vec<u8>> {
    if e.vr() == VR::UN {
        e.value().to_bytes().ok().map(|b| b.into_owned())
    } else {
        None
    }
}

/// An unsigned integer attribute (US, UL, IS); `None` when absent or empty.
pub(crate) fn uint(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<Option<u32>, DecodeError> {
    let Some(e) = obj.get(tag) else {
        return Ok(None);
    };
    if let Some(b) = un_bytes(e) {
        return match b.len() {
            0 => Ok(None),
            2 => Ok(Some(u16::from_le_bytes([b[0], b[1]]) as u32)),
            4 if !b.iter().all(|c| c.is_ascii_digit() || *c == b' ') => {
                Ok(Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            _ => {
                let s = String::from_utf8_lossy(&b);
                let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
                s.parse().map(Some).map_err(|_| invalid(name, s))
            }
        };
    }
    if e.value().primitive().is_none_or(|p| p.is_empty()) {
        return Ok(None);
    }
    match e.value().to_int::<u32>() {
        Ok(v) => Ok(Some(v)),
        Err(_) => Err(invalid(
            name,
            e.value()
                .to_str()
                .map(|s| s.into_owned())
                .unwrap_or_else(|_| "?".into()),
        )),
    }
}

/// A required unsigned integer attribute.
pub(crate) fn req_uint(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<u32, DecodeError> {
    uint(obj, tag, name)?.ok_or(DecodeError::MissingAttribute { name })
}

/// A code string attribute (CS), trimmed; `None` when absent or empty.
pub(crate) fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = match un_bytes(e) {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => e.value().to_str().ok()?.into_owned(),
    };
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0').to_owned();
    (!s.is_empty()).then_some(s)
}

/// A multi-valued decimal attribute (DS, FD); empty when absent.
pub(crate) fn floats(obj: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    let Some(e) = obj.get(tag) else {
        return Vec::new();
    };
    if let Some(b) = un_bytes(e) {
        return String::from_utf8_lossy(&b)
            .split('\\')
            .filter_map(|s| s.trim_matches(|c: char| c == ' ' || c == '\0').parse().ok())
            .collect();
    }
    e.value().to_multi_float64().unwrap_or_default()
}

/// A multi-valued integer attribute (US/SS, e.g. LUT descriptors); empty when absent.
pub(crate) fn ints(obj: &InMemDicomObject, tag: Tag) -> Vec<i64> {
    let Some(e) = obj.get(tag) else {
        return Vec::new();
    };
    if let Some(b) = un_bytes(e) {
        return b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i64)
            .collect();
    }
    e.value().to_multi_int::<i64>().unwrap_or_default()
}

/// Raw little-endian words of a binary attribute (LUT Data, OW/US), as u16.
pub(crate) fn words(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<u16>> {
    use dicom_core::PrimitiveValue as P;
    let e = obj.get(tag)?;
    match e.value().primitive()? {
        P::U16(v) => Some(v.to_vec()),
        P::I16(v) => Some(v.iter().map(|&x| x as u16).collect()),
        P::U8(v) => Some(
            v.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        P::U32(v) => Some(v.iter().map(|&x| x as u16).collect()),
        _ => None,
    }
}

/// The first item of a sequence attribute.
pub(crate) fn item(obj: &InMemDicomObject, tag: Tag, index: usize) -> Option<&InMemDicomObject> {
    obj.get(tag)?.value().items()?.get(index)
}
