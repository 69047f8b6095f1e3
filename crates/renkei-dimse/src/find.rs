//! C-FIND response identifiers (PS3.4 C.4.1.1.3.2): the requested return keys of one match,
//! encoded in the presentation context's transfer syntax, text in UTF-8 (ISO_IR 192).

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_encoding::TransferSyntax;
use dicom_object::InMemDicomObject;

use renkei_model::query::{Entity, Query};

/// Encode the identifier answering `q` for one match.
pub fn encode_identifier(q: &Query, e: &Entity, ts: &TransferSyntax) -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::SPECIFIC_CHARACTER_SET,
        VR::CS,
        PrimitiveValue::from("ISO_IR 192"),
    ));
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(q.level.as_str()),
    ));
    for &tag in &q.return_tags {
        obj.put(element(tag, e.value(tag).unwrap_or_default()));
    }
    let mut out = Vec::with_capacity(512);
    if let Err(err) = obj.write_dataset_with_ts(&mut out, ts) {
        tracing::warn!(error = %err, "cannot encode a C-FIND identifier");
        out.clear();
    }
    out
}

fn element(tag: Tag, value: String) -> DataElement<InMemDicomObject> {
    let vr = StandardDataDictionary
        .by_tag(tag)
        .map(|entry| entry.vr().relaxed())
        .unwrap_or(VR::UN);
    if vr == VR::SQ {
        // the index keeps no sequence attributes: an optional sequence key is matched
        // universally and returned as a sequence of no items (PS3.4 C.2.2.2.6, C.4.1.1.3.2)
        return DataElement::new(
            tag,
            VR::SQ,
            dicom_core::value::DataSetSequence::<InMemDicomObject>::empty(),
        );
    }
    let primitive = match vr {
        _ if value.is_empty() => PrimitiveValue::Empty,
        VR::US => value
            .parse::<u16>()
            .map(PrimitiveValue::from)
            .unwrap_or(PrimitiveValue::Empty),
        VR::UL => value
            .parse::<u32>()
            .map(PrimitiveValue::from)
            .unwrap_or(PrimitiveValue::Empty),
        // keys we do not keep are returned empty (PS3.4 C.4.1.1.3.2: zero length)
        VR::UN | VR::OB | VR::OW => PrimitiveValue::Empty,
        _ => PrimitiveValue::from(value),
    };
    DataElement::new(tag, vr, primitive)
}
