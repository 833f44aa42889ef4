//! Reading one DICOM file: the attributes voxhub indexes, the geometry, and the decoded
//! pixels as modality values (after Rescale Slope/Intercept), or a typed reason why not.

use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{FileDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

/// Largest decoded pixel buffer accepted for one file. A header can claim any size; this
/// bound is checked before anything is allocated so that a hostile file cannot exhaust memory.
pub const MAX_PIXEL_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Transfer syntaxes the decoders accept but decode wrongly (engines.md: 12-bit lossy JPEG
/// comes out with wrong values), so they must be refused rather than shown.
const REFUSED_TRANSFER_SYNTAXES: &[&str] = &["1.2.840.10008.1.2.4.51"];

/// Everything that can go wrong reading or decoding a DICOM file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImagingError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a readable DICOM file: {reason}")]
    NotDicom { path: PathBuf, reason: String },
    #[error("{path}: attribute {name} {tag} is missing")]
    MissingAttribute {
        path: PathBuf,
        name: &'static str,
        tag: Tag,
    },
    #[error("{path}: attribute {name} {tag} has an invalid value: {reason}")]
    InvalidAttribute {
        path: PathBuf,
        name: &'static str,
        tag: Tag,
        reason: String,
    },
    #[error("{path}: transfer syntax {uid} ({name}) cannot be decoded exactly")]
    UnsupportedTransferSyntax {
        path: PathBuf,
        uid: String,
        name: String,
    },
    #[error(
        "{path}: image of {rows}x{columns} pixels, {frames} frames, {samples_per_pixel} samples of {bits_allocated} bits is refused: {reason}"
    )]
    AbsurdDimensions {
        path: PathBuf,
        rows: u32,
        columns: u32,
        frames: u32,
        samples_per_pixel: u16,
        bits_allocated: u16,
        reason: &'static str,
    },
    #[error("{path}: pixel data could not be decoded (transfer syntax {uid}): {reason}")]
    Decode {
        path: PathBuf,
        uid: String,
        reason: String,
    },
}

/// The attributes voxhub indexes a file by. Missing optional attributes are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexedAttributes {
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub modality: Option<String>,
    pub body_part_examined: Option<String>,
    pub study_date: Option<String>,
    pub series_date: Option<String>,
    pub acquisition_date: Option<String>,
    pub series_description: Option<String>,
    pub instance_number: Option<i32>,
}

/// Where the image lies in the patient (LPS, millimetres) and its grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub rows: u32,
    pub columns: u32,
    pub number_of_frames: u32,
    /// Pixel Spacing as written: distance between rows, then between columns, in mm.
    pub pixel_spacing_mm: Option<[f64; 2]>,
    /// Image Position (Patient): centre of the first transmitted pixel, LPS, mm.
    pub image_position_mm: Option<[f64; 3]>,
    /// Image Orientation (Patient): direction cosines of a row, then of a column.
    pub image_orientation: Option<[f64; 6]>,
    pub slice_thickness_mm: Option<f64>,
}

/// How samples are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelFormat {
    pub photometric_interpretation: String,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub signed: bool,
    pub planar_configuration: u16,
}

/// One Window Center / Window Width pair from the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

/// A parsed DICOM file: its indexed attributes, geometry and pixel description, and the
/// object itself for decoding.
#[derive(Debug, Clone)]
pub struct DicomImage {
    pub path: PathBuf,
    pub attributes: IndexedAttributes,
    /// `None` when the file carries no image (a structured report, an RT plan).
    pub geometry: Option<Geometry>,
    pub pixel_format: Option<PixelFormat>,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub windows: Vec<Window>,
    pub transfer_syntax_uid: String,
    /// Whether the file had a file meta group; files without one are read with a
    /// transfer syntax guessed from their first bytes.
    pub had_file_meta: bool,
    object: FileDicomObject<InMemDicomObject>,
}

/// Decoded pixels: modality values (after the Modality LUT) as `f32`, frame by frame,
/// samples interleaved (R, G, B, R, ...) for colour images.
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    pub rows: u32,
    pub columns: u32,
    pub samples_per_pixel: u16,
    /// The photometric interpretation of the decoded values, which may differ from the
    /// file's (decoders turn JPEG YBR into RGB).
    pub photometric_interpretation: String,
    pub frames: Vec<Vec<f32>>,
}

/// Reads a DICOM file with or without its 128-byte preamble and file meta group.
pub fn read_file(path: impl AsRef<Path>) -> Result<DicomImage, ImagingError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ImagingError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_bytes(path, &bytes)
}

/// Reads a DICOM file up to (not including) its pixel data: enough to index it, cheap for
/// large files. [`pixels`] refuses an image read this way.
pub fn read_header(path: impl AsRef<Path>) -> Result<DicomImage, ImagingError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| ImagingError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut prefix = Vec::new();
    // The first kilobytes are enough to tell whether a meta group is present.
    BufReader::new(file)
        .take(4096)
        .read_to_end(&mut prefix)
        .map_err(|source| ImagingError::Io {
            path: path.to_owned(),
            source,
        })?;
    if has_dicm_magic(&prefix) {
        let object = OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|error| not_dicom(path, error))?;
        return from_object(path, object, true);
    }
    read_file(path)
}

/// Parses DICOM from memory; `path` only names the source in errors.
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<DicomImage, ImagingError> {
    if has_dicm_magic(bytes) {
        let object = OpenFileOptions::new()
            .read_preamble(if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
                ReadPreamble::Always
            } else {
                ReadPreamble::Never
            })
            .from_reader(Cursor::new(bytes))
            .map_err(|error| not_dicom(path, error))?;
        return from_object(path, object, true);
    }
    let uid = guess_transfer_syntax(bytes).ok_or_else(|| ImagingError::NotDicom {
        path: path.to_owned(),
        reason: "no DICM marker and the first bytes are not a DICOM data set".into(),
    })?;
    let ts = TransferSyntaxRegistry
        .get(uid)
        .expect("the guessed transfer syntaxes are native ones");
    let dataset = InMemDicomObject::read_dataset_with_ts(Cursor::new(bytes), ts)
        .map_err(|error| not_dicom(path, error))?;
    let mut meta = FileMetaTableBuilder::new().transfer_syntax(uid);
    // The meta group requires these; files without one rarely lack SOP UIDs, but a
    // placeholder keeps such files readable instead of refusing them.
    if dataset.get(tags::SOP_CLASS_UID).is_none() {
        meta = meta.media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7");
    }
    if dataset.get(tags::SOP_INSTANCE_UID).is_none() {
        meta = meta.media_storage_sop_instance_uid("2.25.0");
    }
    let object = dataset
        .with_meta(meta)
        .map_err(|error| not_dicom(path, error))?;
    from_object(path, object, false)
}

fn has_dicm_magic(bytes: &[u8]) -> bool {
    (bytes.len() >= 132 && &bytes[128..132] == b"DICM") || bytes.starts_with(b"DICM")
}

/// Guesses the encoding of a data set with no meta group from its first element, as
/// pydicom does: explicit VR shows two upper-case letters after the tag; the group
/// number read little-endian is small for little-endian data.
fn guess_transfer_syntax(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 8 {
        return None;
    }
    let group_le = u16::from_le_bytes([bytes[0], bytes[1]]);
    let group_be = u16::from_be_bytes([bytes[0], bytes[1]]);
    let explicit = bytes[4].is_ascii_uppercase() && bytes[5].is_ascii_uppercase();
    let little_endian = group_le <= 0x0100 || group_le <= group_be;
    if group_le.min(group_be) > 0x7FE0 {
        return None;
    }
    Some(match (explicit, little_endian) {
        (true, true) => "1.2.840.10008.1.2.1",
        (true, false) => "1.2.840.10008.1.2.2",
        (false, true) => "1.2.840.10008.1.2",
        (false, false) => return None,
    })
}

fn not_dicom(path: &Path, error: impl std::fmt::Display) -> ImagingError {
    ImagingError::NotDicom {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = object.get(tag)?.to_str().ok()?;
    let value = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!value.is_empty()).then(|| value.to_owned())
}

fn floats(object: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let element = object.get(tag)?;
    if element.vr() == dicom_core::VR::UN {
        // Some writers (pydicom's rtdose_rle.dcm) store decimal strings with VR UN; the
        // bytes are still the DS text, so parse them as such rather than lose the geometry.
        let bytes = element.to_bytes().ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let values: Option<Vec<f64>> = text
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .split('\\')
            .map(|part| part.trim().parse().ok())
            .collect();
        return values.filter(|v| !v.is_empty());
    }
    element.to_multi_float64().ok().filter(|v| !v.is_empty())
}

fn fixed<const N: usize>(
    path: &Path,
    object: &InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<Option<[f64; N]>, ImagingError> {
    let Some(values) = floats(object, tag) else {
        return Ok(None);
    };
    let array: [f64; N] =
        values
            .as_slice()
            .try_into()
            .map_err(|_| ImagingError::InvalidAttribute {
                path: path.to_owned(),
                name,
                tag,
                reason: format!("expected {N} numbers, found {}", values.len()),
            })?;
    if array.iter().any(|v| !v.is_finite()) {
        return Err(ImagingError::InvalidAttribute {
            path: path.to_owned(),
            name,
            tag,
            reason: "not a finite number".into(),
        });
    }
    Ok(Some(array))
}

fn unsigned(object: &InMemDicomObject, tag: Tag) -> Option<u32> {
    object.get(tag)?.to_int::<u32>().ok()
}

fn from_object(
    path: &Path,
    object: FileDicomObject<InMemDicomObject>,
    had_file_meta: bool,
) -> Result<DicomImage, ImagingError> {
    let transfer_syntax_uid = object
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_owned();
    let dataset: &InMemDicomObject = &object;
    let attributes = IndexedAttributes {
        patient_id: text(dataset, tags::PATIENT_ID),
        patient_name: text(dataset, tags::PATIENT_NAME),
        study_instance_uid: text(dataset, tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(dataset, tags::SERIES_INSTANCE_UID),
        sop_instance_uid: text(dataset, tags::SOP_INSTANCE_UID),
        sop_class_uid: text(dataset, tags::SOP_CLASS_UID),
        modality: text(dataset, tags::MODALITY),
        body_part_examined: text(dataset, tags::BODY_PART_EXAMINED),
        study_date: text(dataset, tags::STUDY_DATE),
        series_date: text(dataset, tags::SERIES_DATE),
        acquisition_date: text(dataset, tags::ACQUISITION_DATE),
        series_description: text(dataset, tags::SERIES_DESCRIPTION),
        instance_number: dataset
            .get(tags::INSTANCE_NUMBER)
            .and_then(|e| e.to_int::<i32>().ok()),
    };
    let rows = unsigned(dataset, tags::ROWS);
    let columns = unsigned(dataset, tags::COLUMNS);
    let geometry = match (rows, columns) {
        (Some(rows), Some(columns)) => Some(Geometry {
            rows,
            columns,
            number_of_frames: unsigned(dataset, tags::NUMBER_OF_FRAMES).unwrap_or(1),
            pixel_spacing_mm: fixed(path, dataset, tags::PIXEL_SPACING, "Pixel Spacing")?,
            image_position_mm: fixed(
                path,
                dataset,
                tags::IMAGE_POSITION_PATIENT,
                "Image Position (Patient)",
            )?,
            image_orientation: fixed(
                path,
                dataset,
                tags::IMAGE_ORIENTATION_PATIENT,
                "Image Orientation (Patient)",
            )?,
            slice_thickness_mm: floats(dataset, tags::SLICE_THICKNESS).map(|v| v[0]),
        }),
        _ => None,
    };
    let pixel_format = match unsigned(dataset, tags::BITS_ALLOCATED) {
        Some(bits_allocated) if geometry.is_some() => {
            let bits_stored = unsigned(dataset, tags::BITS_STORED).unwrap_or(bits_allocated);
            Some(PixelFormat {
                photometric_interpretation: text(dataset, tags::PHOTOMETRIC_INTERPRETATION)
                    .unwrap_or_else(|| "MONOCHROME2".into()),
                samples_per_pixel: unsigned(dataset, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16,
                bits_allocated: bits_allocated as u16,
                bits_stored: bits_stored as u16,
                high_bit: unsigned(dataset, tags::HIGH_BIT).unwrap_or(bits_stored.max(1) - 1)
                    as u16,
                signed: unsigned(dataset, tags::PIXEL_REPRESENTATION) == Some(1),
                planar_configuration: unsigned(dataset, tags::PLANAR_CONFIGURATION).unwrap_or(0)
                    as u16,
            })
        }
        _ => None,
    };
    let centers = floats(dataset, tags::WINDOW_CENTER).unwrap_or_default();
    let widths = floats(dataset, tags::WINDOW_WIDTH).unwrap_or_default();
    let windows = centers
        .iter()
        .zip(&widths)
        .map(|(&center, &width)| Window { center, width })
        .collect();
    Ok(DicomImage {
        path: path.to_owned(),
        attributes,
        geometry,
        pixel_format,
        rescale_slope: floats(dataset, tags::RESCALE_SLOPE).map_or(1.0, |v| v[0]),
        rescale_intercept: floats(dataset, tags::RESCALE_INTERCEPT).map_or(0.0, |v| v[0]),
        windows,
        transfer_syntax_uid,
        had_file_meta,
        object,
    })
}

impl DicomImage {
    /// The underlying dicom-rs object, for callers that need an attribute not indexed here.
    pub fn object(&self) -> &FileDicomObject<InMemDicomObject> {
        &self.object
    }

    /// The transfer syntax's name from the registry, or the UID when it is unknown.
    pub fn transfer_syntax_name(&self) -> String {
        TransferSyntaxRegistry
            .get(&self.transfer_syntax_uid)
            .map_or_else(
                || self.transfer_syntax_uid.clone(),
                |ts| ts.name().to_owned(),
            )
    }

    /// Refuses a file whose pixels cannot be decoded exactly, or whose dimensions are
    /// absurd, without decoding or allocating anything.
    pub fn check_decodable(&self) -> Result<(&Geometry, &PixelFormat), ImagingError> {
        let path = &self.path;
        let geometry = self
            .geometry
            .as_ref()
            .ok_or_else(|| ImagingError::MissingAttribute {
                path: path.clone(),
                name: "Rows",
                tag: tags::ROWS,
            })?;
        let format = self
            .pixel_format
            .as_ref()
            .ok_or_else(|| ImagingError::MissingAttribute {
                path: path.clone(),
                name: "Bits Allocated",
                tag: tags::BITS_ALLOCATED,
            })?;
        let absurd = |reason| ImagingError::AbsurdDimensions {
            path: path.clone(),
            rows: geometry.rows,
            columns: geometry.columns,
            frames: geometry.number_of_frames,
            samples_per_pixel: format.samples_per_pixel,
            bits_allocated: format.bits_allocated,
            reason,
        };
        if geometry.rows == 0 || geometry.columns == 0 || geometry.number_of_frames == 0 {
            return Err(absurd("rows, columns and frames must be at least 1"));
        }
        if !matches!(format.bits_allocated, 8 | 16 | 32) {
            return Err(absurd("only 8, 16 and 32 bits allocated are decoded"));
        }
        if !matches!(format.samples_per_pixel, 1 | 3) {
            return Err(absurd("only 1 or 3 samples per pixel are decoded"));
        }
        if format.bits_stored == 0 || format.bits_stored > format.bits_allocated {
            return Err(absurd("bits stored must be between 1 and bits allocated"));
        }
        let bytes = u64::from(geometry.rows)
            * u64::from(geometry.columns)
            * u64::from(geometry.number_of_frames)
            * u64::from(format.samples_per_pixel)
            * u64::from(format.bits_allocated / 8);
        if bytes > MAX_PIXEL_BYTES {
            return Err(absurd("decoded pixels would exceed 2 GiB"));
        }
        let unsupported = || ImagingError::UnsupportedTransferSyntax {
            path: path.clone(),
            uid: self.transfer_syntax_uid.clone(),
            name: self.transfer_syntax_name(),
        };
        if REFUSED_TRANSFER_SYNTAXES.contains(&self.transfer_syntax_uid.as_str()) {
            return Err(unsupported());
        }
        match TransferSyntaxRegistry.get(&self.transfer_syntax_uid) {
            Some(ts) if ts.can_decode_all() => {}
            _ => return Err(unsupported()),
        }
        if self.object.get(tags::PIXEL_DATA).is_none() {
            return Err(ImagingError::MissingAttribute {
                path: path.clone(),
                name: "Pixel Data",
                tag: tags::PIXEL_DATA,
            });
        }
        Ok((geometry, format))
    }
}

/// Decodes every frame to modality values: stored values, sign-extended from Bits Stored
/// when signed, times Rescale Slope plus Rescale Intercept (monochrome only, as pydicom's
/// `apply_modality_lut`).
pub fn pixels(image: &DicomImage) -> Result<Frames, ImagingError> {
    let (geometry, format) = image.check_decodable()?;
    let decode_error = |error: &dyn std::fmt::Display| ImagingError::Decode {
        path: image.path.clone(),
        uid: image.transfer_syntax_uid.clone(),
        reason: error.to_string(),
    };
    if image.transfer_syntax_uid == BIG_ENDIAN {
        return big_endian_pixels(image, geometry, format);
    }
    let decoded = image
        .object
        .decode_pixel_data()
        .map_err(|e| decode_error(&e))?;
    let photometric = decoded.photometric_interpretation().as_str().to_owned();
    let samples_per_pixel = decoded.samples_per_pixel();
    let monochrome = photometric.starts_with("MONOCHROME");
    let (slope, intercept) = if monochrome {
        (image.rescale_slope, image.rescale_intercept)
    } else {
        (1.0, 0.0)
    };
    let samples_per_frame =
        geometry.rows as usize * geometry.columns as usize * samples_per_pixel as usize;
    let mut frames = Vec::with_capacity(geometry.number_of_frames as usize);
    for frame in 0..geometry.number_of_frames {
        let data = decoded.frame_data(frame).map_err(|e| decode_error(&e))?;
        let values = stored_values(data, format, decoded.bits_allocated(), samples_per_frame)
            .ok_or_else(|| {
                decode_error(&format!(
                    "frame {frame} has {} bytes, expected {samples_per_frame} samples",
                    data.len()
                ))
            })?;
        frames.push(
            values
                .into_iter()
                .map(|v| (v * slope + intercept) as f32)
                .collect(),
        );
    }
    Ok(Frames {
        rows: geometry.rows,
        columns: geometry.columns,
        samples_per_pixel,
        photometric_interpretation: photometric,
        frames,
    })
}

const BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// Explicit VR Big Endian, decoded here: dicom-rs keeps OW pixel data as 16-bit words,
/// which is right for 16-bit samples but swaps the bytes of 8-bit samples in pairs and the
/// halves of 32-bit samples. Rebuilding the big-endian byte stream and reading each sample
/// at its own width gives the stored values.
fn big_endian_pixels(
    image: &DicomImage,
    geometry: &Geometry,
    format: &PixelFormat,
) -> Result<Frames, ImagingError> {
    use dicom_core::value::{PrimitiveValue, Value};
    let decode_error = |reason: String| ImagingError::Decode {
        path: image.path.clone(),
        uid: image.transfer_syntax_uid.clone(),
        reason,
    };
    let element = image
        .object
        .get(tags::PIXEL_DATA)
        .expect("checked by check_decodable");
    let stream: Vec<u8> = match element.value() {
        Value::Primitive(PrimitiveValue::U8(bytes)) => bytes.to_vec(),
        // PS3.5 Annex D: 8-bit samples packed in OW words put the first sample in the low
        // byte of each word, whatever the byte order of the word.
        Value::Primitive(PrimitiveValue::U16(words)) if format.bits_allocated == 8 => {
            words.iter().flat_map(|w| w.to_le_bytes()).collect()
        }
        Value::Primitive(PrimitiveValue::U16(words)) => {
            words.iter().flat_map(|w| w.to_be_bytes()).collect()
        }
        Value::Primitive(PrimitiveValue::U32(words)) => {
            words.iter().flat_map(|w| w.to_be_bytes()).collect()
        }
        _ => {
            return Err(decode_error(
                "pixel data is not a byte or word array".into(),
            ));
        }
    };
    let bytes_per_sample = usize::from(format.bits_allocated / 8);
    let samples_per_frame =
        geometry.rows as usize * geometry.columns as usize * usize::from(format.samples_per_pixel);
    let frame_bytes = samples_per_frame * bytes_per_sample;
    let needed = frame_bytes * geometry.number_of_frames as usize;
    if stream.len() < needed {
        return Err(decode_error(format!(
            "pixel data has {} bytes, expected {needed}",
            stream.len()
        )));
    }
    let monochrome = format.photometric_interpretation.starts_with("MONOCHROME");
    let (slope, intercept) = if monochrome {
        (image.rescale_slope, image.rescale_intercept)
    } else {
        (1.0, 0.0)
    };
    let frames = stream[..needed]
        .chunks_exact(frame_bytes)
        .map(|frame| {
            // Native-endian copy so that one reader serves both encodings.
            let native: Vec<u8> = frame
                .chunks_exact(bytes_per_sample)
                .flat_map(|sample| {
                    let mut sample = sample.to_vec();
                    if cfg!(target_endian = "little") {
                        sample.reverse();
                    }
                    sample
                })
                .collect();
            let values = stored_values(&native, format, format.bits_allocated, samples_per_frame)
                .expect("length checked above");
            deinterleave_planes(values, format, samples_per_frame)
                .into_iter()
                .map(|v| (v * slope + intercept) as f32)
                .collect()
        })
        .collect();
    Ok(Frames {
        rows: geometry.rows,
        columns: geometry.columns,
        samples_per_pixel: format.samples_per_pixel,
        photometric_interpretation: format.photometric_interpretation.clone(),
        frames,
    })
}

/// Turns planar colour (R plane, G plane, B plane) into interleaved samples.
fn deinterleave_planes(values: Vec<f64>, format: &PixelFormat, count: usize) -> Vec<f64> {
    let samples = usize::from(format.samples_per_pixel);
    if samples == 1 || format.planar_configuration == 0 {
        return values;
    }
    let pixels = count / samples;
    let mut interleaved = vec![0.0; count];
    for (plane, chunk) in values.chunks_exact(pixels).enumerate() {
        for (pixel, value) in chunk.iter().enumerate() {
            interleaved[pixel * samples + plane] = *value;
        }
    }
    interleaved
}

/// Interprets decoded native-endian bytes as stored values.
fn stored_values(
    data: &[u8],
    format: &PixelFormat,
    bits_allocated: u16,
    count: usize,
) -> Option<Vec<f64>> {
    let bytes_per_sample = usize::from(bits_allocated / 8);
    let data = data.get(..count * bytes_per_sample)?;
    let bits_stored = u32::from(format.bits_stored.min(bits_allocated));
    let sign_extend = |value: u32| -> f64 {
        if format.signed && bits_stored < 32 {
            let shift = 32 - bits_stored;
            f64::from(((value << shift) as i32) >> shift)
        } else if format.signed {
            f64::from(value as i32)
        } else {
            f64::from(value)
        }
    };
    Some(match bytes_per_sample {
        1 => data.iter().map(|&b| sign_extend(u32::from(b))).collect(),
        2 => data
            .chunks_exact(2)
            .map(|c| sign_extend(u32::from(u16::from_ne_bytes([c[0], c[1]]))))
            .collect(),
        4 => data
            .chunks_exact(4)
            .map(|c| sign_extend(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => return None,
    })
}
