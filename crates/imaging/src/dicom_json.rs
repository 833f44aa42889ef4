//! The DICOM JSON Model (PS3.18 F.2) of a data set, as DICOMweb (QIDO-RS, WADO-RS
//! metadata) returns it: an object keyed by the tag as eight upper-case hex digits, each
//! attribute `{"vr": ..., "Value": [...]}` with numbers as numbers, person names as
//! `{"Alphabetic": ...}`, attribute tags as hex strings, sequences as nested objects, and
//! binary values as a `BulkDataURI` or base64 `InlineBinary`.
//!
//! Choices where the model leaves room: an attribute with no value has only its `vr`;
//! an empty value among several is `null`; group lengths (gggg,0000) are left out, as they
//! describe an encoding and not the data; binary values are little-endian, whatever the
//! file's transfer syntax; encapsulated pixel data is its items (basic offset table, then
//! fragments) as PS3.5 A.4 encodes them, without the sequence delimiter. Values that do not
//! parse as their VR says (a DS that is not a number) are kept as strings rather than lost.

use base64::Engine;
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::{Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use serde_json::{Map, Value as Json, json};

/// The JSON model of `object`: the top-level attributes for which `include` is true (every
/// attribute of a sequence item is kept). Top-level binary values become a `BulkDataURI`
/// made by `bulk_data_uri` when it is given, and `InlineBinary` otherwise; binary values
/// inside sequences are always inline, as a tag alone does not say where they are.
pub fn to_json(
    object: &InMemDicomObject,
    include: impl Fn(Tag) -> bool,
    bulk_data_uri: Option<&dyn Fn(Tag) -> String>,
) -> Json {
    let mut attributes = Map::new();
    for element in object.iter() {
        let tag = element.tag();
        if tag.element() == 0 || !include(tag) {
            continue;
        }
        attributes.insert(tag_key(tag), element_json(element, bulk_data_uri));
    }
    Json::Object(attributes)
}

/// A tag as the model writes it: eight upper-case hex digits.
pub fn tag_key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

/// The bytes of a top-level binary attribute, named by its key (eight hex digits, as in
/// the model), as the model's `InlineBinary` (or its bulk data) holds them: little-endian,
/// encapsulated pixel data as its items; `None` when `object` has no such attribute or it
/// is not binary.
pub fn binary_value(object: &InMemDicomObject, key: &str) -> Option<Vec<u8>> {
    if key.len() != 8 {
        return None;
    }
    let tag = u32::from_str_radix(key, 16).ok()?;
    binary_bytes(object.get(Tag((tag >> 16) as u16, tag as u16))?)
}

fn binary_bytes(element: &InMemElement) -> Option<Vec<u8>> {
    match element.value() {
        Value::PixelSequence(sequence) => Some(encapsulated_items(
            sequence.offset_table(),
            sequence.fragments(),
        )),
        Value::Primitive(PrimitiveValue::Empty) => None,
        Value::Primitive(value) if is_binary(element.vr()) => Some(little_endian_bytes(value)),
        _ => None,
    }
}

fn element_json(element: &InMemElement, bulk_data_uri: Option<&dyn Fn(Tag) -> String>) -> Json {
    let vr = element.vr();
    let mut attribute = Map::new();
    attribute.insert("vr".into(), Json::String(vr.to_string().to_owned()));
    match element.value() {
        Value::Sequence(sequence) => {
            let items: Vec<Json> = sequence
                .items()
                .iter()
                .map(|item| to_json(item, |_| true, None))
                .collect();
            if !items.is_empty() {
                attribute.insert("Value".into(), Json::Array(items));
            }
        }
        Value::PixelSequence(_) => {
            let bytes = binary_bytes(element).unwrap_or_default();
            insert_binary(&mut attribute, element.tag(), &bytes, bulk_data_uri);
        }
        Value::Primitive(PrimitiveValue::Empty) => {}
        Value::Primitive(_) if is_binary(vr) => {
            let bytes = binary_bytes(element).unwrap_or_default();
            insert_binary(&mut attribute, element.tag(), &bytes, bulk_data_uri);
        }
        Value::Primitive(value) => {
            let values = primitive_values(vr, value);
            if values.iter().any(|v| !v.is_null()) {
                attribute.insert("Value".into(), Json::Array(values));
            }
        }
    }
    Json::Object(attribute)
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

fn insert_binary(
    attribute: &mut Map<String, Json>,
    tag: Tag,
    bytes: &[u8],
    bulk_data_uri: Option<&dyn Fn(Tag) -> String>,
) {
    if bytes.is_empty() {
        return;
    }
    let (key, value) = match bulk_data_uri {
        Some(uri) => ("BulkDataURI", uri(tag)),
        None => (
            "InlineBinary",
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ),
    };
    attribute.insert(key.into(), Json::String(value));
}

/// The items of encapsulated pixel data: (FFFE,E000) with the basic offset table, then
/// one (FFFE,E000) per fragment, little endian.
fn encapsulated_items(offset_table: &[u32], fragments: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(
        8 + offset_table.len() * 4 + fragments.iter().map(|f| f.len() + 8).sum::<usize>(),
    );
    let item = |bytes: &mut Vec<u8>, length: usize| {
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        bytes.extend_from_slice(&(length as u32).to_le_bytes());
    };
    item(&mut bytes, offset_table.len() * 4);
    for offset in offset_table {
        bytes.extend_from_slice(&offset.to_le_bytes());
    }
    for fragment in fragments {
        item(&mut bytes, fragment.len());
        bytes.extend_from_slice(fragment);
    }
    bytes
}

fn little_endian_bytes(value: &PrimitiveValue) -> Vec<u8> {
    fn flat<T: Copy, const N: usize>(values: &[T], to_le: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|&v| to_le(v)).collect()
    }
    match value {
        PrimitiveValue::U8(v) => v.to_vec(),
        PrimitiveValue::U16(v) => flat(v, u16::to_le_bytes),
        PrimitiveValue::I16(v) => flat(v, i16::to_le_bytes),
        PrimitiveValue::U32(v) => flat(v, u32::to_le_bytes),
        PrimitiveValue::I32(v) => flat(v, i32::to_le_bytes),
        PrimitiveValue::U64(v) => flat(v, u64::to_le_bytes),
        PrimitiveValue::I64(v) => flat(v, i64::to_le_bytes),
        PrimitiveValue::F32(v) => flat(v, f32::to_le_bytes),
        PrimitiveValue::F64(v) => flat(v, f64::to_le_bytes),
        other => other.to_bytes().into_owned(),
    }
}

/// Text VRs whose leading spaces are significant (PS3.5 6.2): only trailing padding is
/// removed from them, and they are never split at backslashes.
fn is_free_text(vr: VR) -> bool {
    matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR)
}

/// The values of a primitive as they are written, one string each, padding removed.
fn strings(vr: VR, value: &PrimitiveValue) -> Vec<String> {
    let trim = |text: &str| -> String {
        let text = text.trim_end_matches([' ', '\0']);
        if is_free_text(vr) {
            text.to_owned()
        } else {
            text.trim_start_matches(' ').to_owned()
        }
    };
    match value {
        PrimitiveValue::Str(text) if is_free_text(vr) => vec![trim(text)],
        PrimitiveValue::Str(text) => text.split('\\').map(trim).collect(),
        PrimitiveValue::Strs(texts) if is_free_text(vr) => vec![trim(&texts.join("\\"))],
        PrimitiveValue::Strs(texts) => texts
            .iter()
            .flat_map(|text| text.split('\\'))
            .map(trim)
            .collect(),
        PrimitiveValue::Date(dates) => dates.iter().map(|d| d.to_encoded()).collect(),
        PrimitiveValue::Time(times) => times.iter().map(|t| t.to_encoded()).collect(),
        PrimitiveValue::DateTime(values) => values.iter().map(|v| v.to_encoded()).collect(),
        PrimitiveValue::Tags(tags) => tags.iter().map(|&t| tag_key(t)).collect(),
        other => other.to_multi_str().iter().map(|s| trim(s)).collect(),
    }
}

fn primitive_values(vr: VR, value: &PrimitiveValue) -> Vec<Json> {
    match vr {
        VR::AT => match value {
            PrimitiveValue::Tags(tags) => tags.iter().map(|&t| Json::String(tag_key(t))).collect(),
            // AT read as 16-bit words pairs them: group, then element.
            PrimitiveValue::U16(words) => words
                .chunks_exact(2)
                .map(|pair| Json::String(tag_key(Tag(pair[0], pair[1]))))
                .collect(),
            other => text_values(vr, other),
        },
        VR::PN => strings(vr, value)
            .into_iter()
            .map(|name| {
                if name.is_empty() {
                    return Json::Null;
                }
                let mut groups = Map::new();
                for (key, group) in ["Alphabetic", "Ideographic", "Phonetic"]
                    .iter()
                    .zip(name.split('='))
                {
                    if !group.is_empty() {
                        groups.insert((*key).into(), Json::String(group.to_owned()));
                    }
                }
                Json::Object(groups)
            })
            .collect(),
        VR::IS | VR::SS | VR::US | VR::SL | VR::UL | VR::SV | VR::UV => integer_values(vr, value),
        VR::DS | VR::FL | VR::FD => float_values(vr, value),
        _ => text_values(vr, value),
    }
}

fn text_values(vr: VR, value: &PrimitiveValue) -> Vec<Json> {
    strings(vr, value)
        .into_iter()
        .map(|text| {
            if text.is_empty() {
                Json::Null
            } else {
                Json::String(text)
            }
        })
        .collect()
}

fn integer_values(vr: VR, value: &PrimitiveValue) -> Vec<Json> {
    fn numbers<T: Copy + Into<Json>>(values: &[T]) -> Vec<Json> {
        values.iter().map(|&v| v.into()).collect()
    }
    match value {
        PrimitiveValue::U16(v) => numbers(v),
        PrimitiveValue::I16(v) => numbers(v),
        PrimitiveValue::U32(v) => numbers(v),
        PrimitiveValue::I32(v) => numbers(v),
        PrimitiveValue::U64(v) => numbers(v),
        PrimitiveValue::I64(v) => numbers(v),
        PrimitiveValue::U8(v) => numbers(v),
        other => strings(vr, other)
            .into_iter()
            .map(|text| {
                if text.is_empty() {
                    Json::Null
                } else if let Ok(number) = text.parse::<i64>() {
                    json!(number)
                } else if let Ok(number) = text.parse::<u64>() {
                    json!(number)
                } else {
                    Json::String(text)
                }
            })
            .collect(),
    }
}

fn float_values(vr: VR, value: &PrimitiveValue) -> Vec<Json> {
    let number = |v: f64| serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number);
    match value {
        PrimitiveValue::F32(v) => v.iter().map(|&v| number(f64::from(v))).collect(),
        PrimitiveValue::F64(v) => v.iter().map(|&v| number(v)).collect(),
        other => strings(vr, other)
            .into_iter()
            .map(|text| {
                if text.is_empty() {
                    Json::Null
                } else {
                    match text.parse::<f64>() {
                        Ok(v) if v.is_finite() => number(v),
                        _ => Json::String(text),
                    }
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue, dicom_value};
    use dicom_dictionary_std::tags;

    fn object(elements: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
        InMemDicomObject::from_element_iter(elements)
    }

    #[test]
    fn every_kind_of_value_is_encoded_as_the_model_says() {
        let item = object(vec![DataElement::new(
            tags::CODE_VALUE,
            VR::SH,
            PrimitiveValue::from("T-D0050"),
        )]);
        let data = object(vec![
            DataElement::new(
                tags::PATIENT_NAME,
                VR::PN,
                PrimitiveValue::from("Doe^Jane=ドウ^ジェーン "),
            ),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from(" 12345 ")),
            DataElement::new(
                tags::IMAGE_TYPE,
                VR::CS,
                dicom_value!(Strs, ["ORIGINAL", "", "AXIAL"]),
            ),
            DataElement::new(tags::SERIES_NUMBER, VR::IS, PrimitiveValue::from("3 ")),
            DataElement::new(
                tags::PIXEL_SPACING,
                VR::DS,
                PrimitiveValue::from("0.5\\.75"),
            ),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(512_u16)),
            DataElement::new(
                tags::SMALLEST_IMAGE_PIXEL_VALUE,
                VR::SS,
                PrimitiveValue::from(-2000_i16),
            ),
            DataElement::new(
                tags::FRAME_INCREMENT_POINTER,
                VR::AT,
                dicom_value!(Tags, [Tag(0x0018, 0x1063)]),
            ),
            DataElement::new(tags::SLICE_THICKNESS, VR::DS, PrimitiveValue::Empty),
            DataElement::new(
                tags::ANATOMIC_REGION_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(vec![item]),
            ),
            DataElement::new(
                tags::REFERENCED_IMAGE_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(Vec::<InMemDicomObject>::new()),
            ),
            DataElement::new(
                tags::IMAGE_COMMENTS,
                VR::LT,
                PrimitiveValue::from("  indented\\kept  "),
            ),
            DataElement::new(Tag(0x0008, 0x0000), VR::UL, PrimitiveValue::from(100_u32)),
            DataElement::new(tags::PIXEL_DATA, VR::OW, dicom_value!(U16, [1, 0x0302])),
            DataElement::new(
                tags::REAL_WORLD_VALUE_FIRST_VALUE_MAPPED,
                VR::US,
                dicom_value!(U16, [1, 2]),
            ),
        ]);
        let json = to_json(&data, |_| true, None);
        let expected = json!({
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane", "Ideographic": "ドウ^ジェーン"}]},
            "00100020": {"vr": "LO", "Value": ["12345"]},
            "00080008": {"vr": "CS", "Value": ["ORIGINAL", null, "AXIAL"]},
            "00200011": {"vr": "IS", "Value": [3]},
            "00280030": {"vr": "DS", "Value": [0.5, 0.75]},
            "00280010": {"vr": "US", "Value": [512]},
            "00280106": {"vr": "SS", "Value": [-2000]},
            "00280009": {"vr": "AT", "Value": ["00181063"]},
            "00180050": {"vr": "DS"},
            "00082218": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["T-D0050"]}}]},
            "00081140": {"vr": "SQ"},
            "00204000": {"vr": "LT", "Value": ["  indented\\kept"]},
            "7FE00010": {"vr": "OW", "InlineBinary": "AQACAw=="},
            "00409216": {"vr": "US", "Value": [1, 2]},
        });
        assert_eq!(json, expected);
    }

    #[test]
    fn include_filters_top_level_attributes_and_bulk_data_gets_uris() {
        let data = object(vec![
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("1")),
            DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("CT")),
            DataElement::new(tags::PIXEL_DATA, VR::OB, dicom_value!(U8, [1, 2, 3, 4])),
        ]);
        let uri = |tag: Tag| format!("/bulk/{}", tag_key(tag));
        let json = to_json(&data, |tag| tag != tags::PATIENT_ID, Some(&uri));
        assert_eq!(
            json,
            json!({
                "00080060": {"vr": "CS", "Value": ["CT"]},
                "7FE00010": {"vr": "OB", "BulkDataURI": "/bulk/7FE00010"},
            })
        );
    }

    #[test]
    fn numbers_that_do_not_parse_are_kept_as_text() {
        let data = object(vec![
            DataElement::new(
                tags::SLICE_THICKNESS,
                VR::DS,
                PrimitiveValue::from("about 5"),
            ),
            DataElement::new(tags::SERIES_NUMBER, VR::IS, PrimitiveValue::from("x1")),
        ]);
        assert_eq!(
            to_json(&data, |_| true, None),
            json!({
                "00180050": {"vr": "DS", "Value": ["about 5"]},
                "00200011": {"vr": "IS", "Value": ["x1"]},
            })
        );
    }

    #[test]
    fn encapsulated_pixel_data_is_its_items_without_the_delimiter() {
        let bytes = encapsulated_items(&[0], &[vec![9, 8]]);
        assert_eq!(
            bytes,
            vec![
                0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0, 0, 0, 0, //
                0xFE, 0xFF, 0x00, 0xE0, 2, 0, 0, 0, 9, 8
            ]
        );
    }

    #[test]
    fn binary_values_are_the_little_endian_bytes_the_model_would_inline() {
        let data = object(vec![
            DataElement::new(tags::PIXEL_DATA, VR::OW, dicom_value!(U16, [1, 0x0302])),
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("12345")),
        ]);
        assert_eq!(binary_value(&data, "7FE00010"), Some(vec![1, 0, 2, 3]));
        assert_eq!(binary_value(&data, "7fe00010"), Some(vec![1, 0, 2, 3]));
        let inline = to_json(&data, |_| true, None)["7FE00010"]["InlineBinary"].clone();
        assert_eq!(inline, json!("AQACAw=="));
        // Not binary, absent, or not a key: nothing.
        assert_eq!(binary_value(&data, "00100020"), None);
        assert_eq!(binary_value(&data, "00281052"), None);
        assert_eq!(binary_value(&data, "7FE0001"), None);
        assert_eq!(binary_value(&data, "7FE0001G"), None);
    }
}
