//! Frames of a stored DICOM file for WADO-RS: the bytes of one frame as stored (native
//! pixel data, or the compressed bitstream of an encapsulated one), or decoded to native
//! little-endian samples when the client cannot take the compressed form.
//!
//! The pixel data's bytes are those the DICOM JSON model gives (`dicom_json::binary_value`:
//! little-endian whatever the file's byte order, encapsulated pixel data as its items), so
//! this module reads no DICOM encoding of its own.

use voxhub_imaging::dicom::{self, DicomImage};
use voxhub_imaging::dicom_json;

/// Transfer syntaxes whose pixel data is native (not encapsulated).
const NATIVE: &[&str] = &[
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
];

/// Explicit VR Little Endian: the transfer syntax of uncompressed frames on the wire.
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

pub fn is_native(transfer_syntax: &str) -> bool {
    NATIVE.contains(&transfer_syntax)
}

/// The media type of a compressed frame in this transfer syntax (PS3.18 Table 8.7.3-2).
pub fn compressed_media_type(transfer_syntax: &str) -> Option<&'static str> {
    Some(match transfer_syntax {
        "1.2.840.10008.1.2.4.50"
        | "1.2.840.10008.1.2.4.51"
        | "1.2.840.10008.1.2.4.57"
        | "1.2.840.10008.1.2.4.70" => "image/jpeg",
        "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => "image/jls",
        "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => "image/jp2",
        "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => "image/jpx",
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
            "image/jphc"
        }
        "1.2.840.10008.1.2.5" => "image/dicom-rle",
        _ => return None,
    })
}

/// The binary value of one top-level attribute (`tag` as eight hex digits), little-endian,
/// or `None` when the file has no such binary attribute.
pub fn binary_value(image: &DicomImage, tag: &str) -> Option<Vec<u8>> {
    dicom_json::binary_value(image.object(), tag)
}

/// Splits encapsulated pixel data (its items: basic offset table, then fragments) into
/// the compressed bitstream of each of `frames` frames.
pub fn encapsulated_frames(items: &[u8], frames: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut offsets = Vec::new();
    let mut fragments: Vec<(usize, &[u8])> = Vec::new();
    let mut at = 0;
    let mut first = true;
    while at + 8 <= items.len() {
        if items[at..at + 4] != [0xFE, 0xFF, 0x00, 0xE0] {
            return Err("the encapsulated pixel data has an item without its tag".into());
        }
        let length =
            u32::from_le_bytes(items[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let start = at + 8;
        let value = items
            .get(start..start + length)
            .ok_or("an item of the encapsulated pixel data is cut short")?;
        if first {
            offsets = value
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as usize)
                .collect();
            first = false;
        } else {
            fragments.push((at, value));
        }
        at = start + length;
    }
    let Some(&(first_item, _)) = fragments.first() else {
        return Err("the encapsulated pixel data has no fragments".into());
    };
    if frames == 1 {
        return Ok(vec![
            fragments
                .iter()
                .flat_map(|(_, f)| f.iter().copied())
                .collect(),
        ]);
    }
    if !offsets.is_empty() {
        if offsets.len() != frames {
            return Err(format!(
                "the offset table lists {} frames, the header {frames}",
                offsets.len()
            ));
        }
        let mut out = vec![Vec::new(); frames];
        for (position, fragment) in &fragments {
            let relative = position - first_item;
            let frame = offsets.iter().rposition(|&o| o <= relative).unwrap_or(0);
            out[frame].extend_from_slice(fragment);
        }
        return Ok(out);
    }
    if fragments.len() == frames {
        return Ok(fragments.iter().map(|(_, f)| f.to_vec()).collect());
    }
    Err(format!(
        "{} fragments hold {frames} frames without an offset table saying which is which",
        fragments.len()
    ))
}

/// How a frame is wanted: the compressed form as stored is acceptable, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameForm {
    AsStored,
    Uncompressed,
}

/// One frame: its bytes and the transfer syntax they are in.
pub struct Frame {
    pub bytes: Vec<u8>,
    pub transfer_syntax: String,
}

/// The frames `numbers` (1-based, checked by the caller) of a parsed file.
pub fn frames(
    image: &DicomImage,
    numbers: &[usize],
    form: FrameForm,
) -> Result<Vec<Frame>, String> {
    let geometry = image.geometry.as_ref().ok_or("the instance has no image")?;
    let format = image
        .pixel_format
        .as_ref()
        .ok_or("the instance has no pixel description")?;
    let count = geometry.number_of_frames.max(1) as usize;
    let native = is_native(&image.transfer_syntax_uid);
    if native || form == FrameForm::AsStored {
        let bytes = binary_value(image, "7FE00010").ok_or("the instance has no pixel data")?;
        if native {
            let samples = geometry.rows as usize
                * geometry.columns as usize
                * usize::from(format.samples_per_pixel.max(1));
            let frame_bytes = if format.bits_allocated == 1 {
                samples.div_ceil(8)
            } else {
                samples * usize::from(format.bits_allocated / 8)
            };
            return numbers
                .iter()
                .map(|&n| {
                    let start = (n - 1) * frame_bytes;
                    bytes
                        .get(start..start + frame_bytes)
                        .map(|b| Frame {
                            bytes: b.to_vec(),
                            transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN.into(),
                        })
                        .ok_or_else(|| format!("the pixel data ends before frame {n}"))
                })
                .collect();
        }
        let mut all = encapsulated_frames(&bytes, count)?;
        return Ok(numbers
            .iter()
            .map(|&n| Frame {
                bytes: std::mem::take(&mut all[n - 1]),
                transfer_syntax: image.transfer_syntax_uid.clone(),
            })
            .collect());
    }
    let decoded = dicom::pixels(image).map_err(|e| {
        e.to_string()
            .trim_start_matches(&image.path.display().to_string())
            .trim_start_matches([':', ' '])
            .to_string()
    })?;
    let monochrome = decoded.photometric_interpretation.starts_with("MONOCHROME");
    let (slope, intercept) = if monochrome {
        (image.rescale_slope, image.rescale_intercept)
    } else {
        (1.0, 0.0)
    };
    let bits = format.bits_allocated;
    numbers
        .iter()
        .map(|&n| {
            let values = decoded
                .frames
                .get(n - 1)
                .ok_or_else(|| format!("the instance has no frame {n}"))?;
            let mut bytes = Vec::with_capacity(values.len() * usize::from(bits.div_ceil(8)));
            for &value in values {
                // Back from modality values to the stored ones the decoder produced.
                let stored = ((f64::from(value) - intercept) / slope).round() as i64;
                match bits {
                    8 => bytes.push(stored as u8),
                    16 => bytes.extend_from_slice(&(stored as u16).to_le_bytes()),
                    32 => bytes.extend_from_slice(&(stored as u32).to_le_bytes()),
                    other => return Err(format!("{other} bits allocated cannot be decoded")),
                }
            }
            Ok(Frame {
                bytes,
                transfer_syntax: EXPLICIT_VR_LITTLE_ENDIAN.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(bytes: &mut Vec<u8>, value: &[u8]) {
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        bytes.extend_from_slice(value);
    }

    #[test]
    fn fragments_are_grouped_into_frames_by_the_offset_table() {
        let mut items = Vec::new();
        // Frame 1 is two fragments (8 + 2 and 8 + 1 bytes), frame 2 one.
        let offsets: Vec<u8> = [0u32, 19].iter().flat_map(|o| o.to_le_bytes()).collect();
        item(&mut items, &offsets);
        item(&mut items, &[1, 2]);
        item(&mut items, &[3]);
        item(&mut items, &[4, 5, 6]);
        assert_eq!(
            encapsulated_frames(&items, 2).unwrap(),
            vec![vec![1, 2, 3], vec![4, 5, 6]]
        );
        assert_eq!(
            encapsulated_frames(&items, 1).unwrap(),
            vec![vec![1, 2, 3, 4, 5, 6]]
        );
        assert!(encapsulated_frames(&items, 3).is_err());
    }

    #[test]
    fn without_an_offset_table_each_fragment_is_a_frame_or_the_split_is_refused() {
        let mut items = Vec::new();
        item(&mut items, &[]);
        item(&mut items, &[1]);
        item(&mut items, &[2]);
        assert_eq!(
            encapsulated_frames(&items, 2).unwrap(),
            vec![vec![1], vec![2]]
        );
        assert!(encapsulated_frames(&items, 3).is_err());
        assert!(encapsulated_frames(&items[..items.len() - 1], 2).is_err());
    }
}
