//! Preparing one uploaded DICOM file for storage: parse it leniently, de-identify it, and
//! write it back as a standard Part 10 file (preamble, file meta, data set). What is stored
//! and indexed is always read back from the written bytes, so the index can never hold a
//! value that the stored file does not.

use std::path::Path;

use crate::deid::{self, DeidConfig, DeidError, DeidReport};
use crate::dicom::{self, DicomImage, ImagingError};

/// A DICOM file ready to store.
#[derive(Debug)]
pub struct PreparedDicom {
    /// The file to store: de-identified unless de-identification was turned off.
    pub bytes: Vec<u8>,
    /// The stored file as parsed back, for the index.
    pub image: DicomImage,
    /// What de-identification did; `None` when it was turned off.
    pub report: Option<DeidReport>,
}

/// Why a DICOM file could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    #[error(transparent)]
    Read(#[from] ImagingError),
    #[error("de-identification failed: {0}")]
    Deid(#[from] DeidError),
    #[error("the de-identified file could not be written: {0}")]
    Write(String),
    #[error("the file has no {0}, which every stored DICOM instance needs")]
    MissingUid(&'static str),
}

/// Parses `bytes` (named `name` in errors), de-identifies them with `deid` when given, and
/// returns the file to store with its parsed form.
pub fn prepare_dicom(
    name: &str,
    bytes: &[u8],
    deid: Option<&DeidConfig>,
) -> Result<PreparedDicom, PrepareError> {
    let path = Path::new(name);
    let image = dicom::read_bytes(path, bytes)?;
    let mut object = image.into_object();
    let report = match deid {
        Some(config) => Some(deid::deidentify_file(&mut object, config)?),
        None => None,
    };
    let out =
        dicom::encode_file(&object).map_err(|error| PrepareError::Write(error.to_string()))?;
    let image = dicom::read_bytes(path, &out)?;
    let attributes = &image.attributes;
    if attributes
        .sop_instance_uid
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        return Err(PrepareError::MissingUid("SOP Instance UID"));
    }
    if attributes
        .series_instance_uid
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        return Err(PrepareError::MissingUid("Series Instance UID"));
    }
    if attributes
        .study_instance_uid
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        return Err(PrepareError::MissingUid("Study Instance UID"));
    }
    Ok(PreparedDicom {
        bytes: out,
        image,
        report,
    })
}

/// Why a NIfTI or picture file could not be cleaned.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ScrubError(pub String);

/// Largest decompressed NIfTI accepted by [`scrub_nifti`].
const MAX_NIFTI_BYTES: u64 = dicom::MAX_PIXEL_BYTES + 1024 * 1024;

/// Removes the free-text fields of a NIfTI-1 or NIfTI-2 header that converters fill with
/// identifying text (`descrip`, `aux_file`, `db_name`) and blanks any header extension
/// (dcm2niix can embed the whole DICOM header there), keeping the voxels and geometry
/// byte for byte. A gzip-compressed file is returned compressed.
pub fn scrub_nifti(bytes: &[u8]) -> Result<Vec<u8>, ScrubError> {
    use std::io::{Read, Write};
    let gzipped = bytes.starts_with(&[0x1f, 0x8b]);
    let mut data = if gzipped {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(MAX_NIFTI_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| ScrubError(format!("the gzip compression is damaged: {e}")))?;
        if out.len() as u64 > MAX_NIFTI_BYTES {
            return Err(ScrubError("the file expands to more than 2 GiB".into()));
        }
        out
    } else {
        bytes.to_vec()
    };
    if data.len() < 348 {
        return Err(ScrubError(format!(
            "the file has {} bytes, fewer than a NIfTI header needs",
            data.len()
        )));
    }
    let le = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let be = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let size = le(&data[0..4]);
    let (version, little) = match (size, be(&data[0..4])) {
        (348, _) => (1, true),
        (540, _) => (2, true),
        (_, 348) => (1, false),
        (_, 540) => (2, false),
        _ => {
            return Err(ScrubError(
                "the header does not start like NIfTI-1 or NIfTI-2".into(),
            ));
        }
    };
    let (header_len, vox_offset, text_fields): (usize, f64, &[(usize, usize)]) = if version == 1 {
        let raw = [data[108], data[109], data[110], data[111]];
        let offset = if little {
            f32::from_le_bytes(raw)
        } else {
            f32::from_be_bytes(raw)
        };
        (
            348,
            offset as f64,
            &[(4, 10), (14, 18), (148, 80), (228, 24)],
        )
    } else {
        if data.len() < 540 {
            return Err(ScrubError("the file ends inside its NIfTI-2 header".into()));
        }
        let raw: [u8; 8] = data[168..176].try_into().expect("eight bytes");
        let offset = if little {
            i64::from_le_bytes(raw)
        } else {
            i64::from_be_bytes(raw)
        };
        (540, offset as f64, &[(240, 80), (320, 24)])
    };
    for &(start, len) in text_fields {
        data[start..start + len].fill(0);
    }
    // The four extension bytes follow the header; the extensions run up to the voxels.
    if data.len() >= header_len + 4 {
        data[header_len..header_len + 4].fill(0);
        let end = (vox_offset.max(0.0) as usize).min(data.len());
        if end > header_len + 4 {
            data[header_len + 4..end].fill(0);
        }
    }
    if !gzipped {
        return Ok(data);
    }
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len()), flate2::Compression::fast());
    encoder
        .write_all(&data)
        .and_then(|()| encoder.finish())
        .map_err(|e| ScrubError(format!("could not compress the cleaned file: {e}")))
}

/// Removes the metadata of a PNG or JPEG file that can carry names, dates and places (PNG
/// text and time chunks; JPEG comments and application segments other than JFIF and Adobe
/// colour information, EXIF included), keeping the picture.
pub fn scrub_picture(bytes: &[u8]) -> Result<Vec<u8>, ScrubError> {
    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(PNG_SIGNATURE) {
        let mut out = PNG_SIGNATURE.to_vec();
        let mut at = PNG_SIGNATURE.len();
        while at + 12 <= bytes.len() {
            let len =
                u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes")) as usize;
            let end = at
                .checked_add(12 + len)
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| ScrubError("the PNG file is truncated".into()))?;
            let kind = &bytes[at + 4..at + 8];
            let identifying = matches!(kind, b"tEXt" | b"zTXt" | b"iTXt" | b"tIME" | b"eXIf");
            if !identifying {
                out.extend_from_slice(&bytes[at..end]);
            }
            at = end;
            if kind == b"IEND" {
                return Ok(out);
            }
        }
        return Err(ScrubError("the PNG file ends before its last chunk".into()));
    }
    if bytes.starts_with(&[0xff, 0xd8]) {
        let mut out = vec![0xff, 0xd8];
        let mut at = 2;
        loop {
            if at + 4 > bytes.len() || bytes[at] != 0xff {
                return Err(ScrubError("the JPEG file is damaged or truncated".into()));
            }
            let marker = bytes[at + 1];
            let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
            let end = at + 2 + len;
            if len < 2 || end > bytes.len() {
                return Err(ScrubError("the JPEG file is damaged or truncated".into()));
            }
            let segment = &bytes[at..end];
            let keep = match marker {
                0xfe => false,
                0xe0 => segment[4..].starts_with(b"JFIF\0"),
                0xee => segment[4..].starts_with(b"Adobe"),
                0xe2 => segment[4..].starts_with(b"ICC_PROFILE\0"),
                0xe1 | 0xe3..=0xed | 0xef => false,
                _ => true,
            };
            if keep {
                out.extend_from_slice(segment);
            }
            at = end;
            if marker == 0xda {
                // Start of scan: the entropy-coded data and everything after it stay as they are.
                out.extend_from_slice(&bytes[at..]);
                return Ok(out);
            }
        }
    }
    Err(ScrubError("the file is neither PNG nor JPEG".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_text_chunks_are_removed_and_the_picture_kept() {
        let mut png = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png, 2, 1);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            encoder
                .add_text_chunk("Author".into(), "Jane Patient".into())
                .unwrap();
            let mut writer = encoder.write_header().unwrap();
            writer.write_image_data(&[7, 9]).unwrap();
        }
        assert!(png.windows(12).any(|w| w == b"Jane Patient"));
        let clean = scrub_picture(&png).unwrap();
        assert!(!clean.windows(12).any(|w| w == b"Jane Patient"));
        let decoder = png::Decoder::new(std::io::Cursor::new(clean));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..2], &[7, 9]);
    }

    #[test]
    fn jpeg_comments_and_exif_are_removed() {
        let mut jpeg = vec![0xff, 0xd8];
        jpeg.extend_from_slice(&[0xff, 0xe0, 0, 16]);
        jpeg.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        jpeg.extend_from_slice(&[0xff, 0xfe, 0, 14]);
        jpeg.extend_from_slice(b"Jane Patient");
        jpeg.extend_from_slice(&[0xff, 0xe1, 0, 12]);
        jpeg.extend_from_slice(b"Exif\0\0GPS!");
        jpeg.extend_from_slice(&[0xff, 0xda, 0, 2, 1, 2, 3, 0xff, 0xd9]);
        let clean = scrub_picture(&jpeg).unwrap();
        assert!(!clean.windows(12).any(|w| w == b"Jane Patient"));
        assert!(!clean.windows(4).any(|w| w == b"GPS!"));
        assert!(clean.windows(4).any(|w| w == b"JFIF"));
        assert!(clean.ends_with(&[1, 2, 3, 0xff, 0xd9]));
        assert!(scrub_picture(&jpeg[..10]).is_err());
    }

    #[test]
    fn nifti_text_and_extensions_are_blanked_and_voxels_kept() {
        let mut file = vec![0u8; 352 + 32 + 8];
        file[0..4].copy_from_slice(&348i32.to_le_bytes());
        file[108..112].copy_from_slice(&384f32.to_le_bytes());
        file[148..160].copy_from_slice(b"Jane Patient");
        file[348] = 1;
        file[352..364].copy_from_slice(b"PatientName!");
        file[344..348].copy_from_slice(b"n+1\0");
        file[384..392].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let clean = scrub_nifti(&file).unwrap();
        assert!(
            !clean
                .windows(12)
                .any(|w| w == b"Jane Patient" || w == b"PatientName!")
        );
        assert_eq!(&clean[384..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(clean[348], 0);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &file).unwrap();
        let clean_gz = scrub_nifti(&gz.finish().unwrap()).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&clean_gz[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, clean);
        assert!(scrub_nifti(b"short").is_err());
    }
}
