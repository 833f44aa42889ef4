//! Reading one DICOM file: the attributes voxhub indexes, the geometry, and the decoded
//! pixels as modality values (after Rescale Slope/Intercept), or a typed reason why not.

use std::cell::RefCell;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use dicom_core::header::{DataElementHeader, Length, SequenceItemHeader};
use dicom_core::{PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::Codec;
use dicom_encoding::decode::Decode;
use dicom_object::{FileDicomObject, FileMetaTable, FileMetaTableBuilder, InMemDicomObject};
use dicom_parser::stateful::decode::Error as ParserError;
use dicom_parser::{DynStatefulDecoder, StatefulDecode};
use dicom_pixeldata::{PixelDecoder, PlanarConfiguration};
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
    #[error("the data set could not be written as a DICOM file (transfer syntax {uid}): {reason}")]
    Encode { uid: String, reason: String },
}

/// The attributes voxhub indexes a file by: what a DICOMweb QIDO-RS study, series and
/// instance query returns and what the browse pages show. Text as written (trimmed of
/// padding; several values joined by a backslash); missing or empty attributes are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexedAttributes {
    pub patient_id: Option<String>,
    /// Person Name as written: `Family^Given^Middle^Prefix^Suffix`, groups joined by `=`.
    pub patient_name: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub sop_class_uid: Option<String>,
    pub modality: Option<String>,
    pub body_part_examined: Option<String>,
    /// Dates as written (`YYYYMMDD`), times as written (`HHMMSS.FFFFFF`, possibly shorter).
    pub study_date: Option<String>,
    pub series_date: Option<String>,
    pub acquisition_date: Option<String>,
    pub series_description: Option<String>,
    pub instance_number: Option<i32>,
    /// Patient's Sex: `M`, `F` or `O`.
    pub patient_sex: Option<String>,
    pub patient_birth_date: Option<String>,
    pub study_time: Option<String>,
    pub study_description: Option<String>,
    /// Study ID, the department's own identifier (not the Study Instance UID).
    pub study_id: Option<String>,
    pub accession_number: Option<String>,
    pub referring_physician_name: Option<String>,
    pub series_number: Option<i32>,
    pub series_time: Option<String>,
    pub protocol_name: Option<String>,
    pub content_date: Option<String>,
    pub content_time: Option<String>,
    /// Timezone Offset From UTC of the dates and times above, as written (`+0100`).
    pub timezone_offset_from_utc: Option<String>,
    pub manufacturer: Option<String>,
    pub manufacturer_model_name: Option<String>,
    pub institution_name: Option<String>,
    pub station_name: Option<String>,
    /// Rows, Columns, Bits Allocated and Number of Frames as written; `None` when the
    /// attribute is absent (Number of Frames is absent from most single-frame images).
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    pub bits_allocated: Option<u16>,
    pub number_of_frames: Option<u32>,
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

/// Parses DICOM from memory; `path` only names the source in errors.
///
/// dicom-rs allocates (and zeroes) the declared length of a value before reading it, so a
/// few hundred hostile bytes declaring gigabytes could take that much memory. Every length
/// is therefore checked against the bytes that remain before dicom-rs sees it: those of the
/// meta group by a walk of its elements (dicom-rs reads them with its own small reader),
/// those of the data set by [`BoundedDecoder`] at the moment dicom-rs decodes each header.
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<DicomImage, ImagingError> {
    let refused = |reason: String| ImagingError::NotDicom {
        path: path.to_owned(),
        reason,
    };
    if has_dicm_magic(bytes) {
        let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
            128
        } else {
            0
        };
        check_meta_lengths(bytes, start + 4).map_err(refused)?;
        let mut source = Cursor::new(&bytes[start..]);
        let mut meta = FileMetaTable::from_reader(&mut source).map_err(|e| not_dicom(path, e))?;
        let data_set = &bytes[start + source.position() as usize..];
        let uid = meta.transfer_syntax().to_owned();
        let dataset = read_data_set(data_set, &uid).map_err(refused)?;
        // As dicom-rs does: a meta group without the SOP UIDs takes the data set's.
        for (meta_uid, tag) in [
            (&mut meta.media_storage_sop_class_uid, tags::SOP_CLASS_UID),
            (
                &mut meta.media_storage_sop_instance_uid,
                tags::SOP_INSTANCE_UID,
            ),
        ] {
            if let Some(value) =
                text(&dataset, tag).filter(|_| meta_uid.trim_end_matches(['\0', ' ']).is_empty())
            {
                *meta_uid = value;
            }
        }
        return from_object(path, dataset.with_exact_meta(meta), true);
    }
    let uid = guess_transfer_syntax(bytes).ok_or_else(|| {
        refused("no DICM marker and the first bytes are not a DICOM data set".into())
    })?;
    let dataset = read_data_set(bytes, uid).map_err(refused)?;
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

/// Reads a data set (no meta group) encoded in transfer syntax `uid`, refusing any element
/// or item that declares more bytes than remain. A deflated data set is inflated first (up
/// to [`MAX_INFLATED_BYTES`]) and read as the explicit VR little endian it then is.
fn read_data_set(bytes: &[u8], uid: &str) -> Result<InMemDicomObject, String> {
    let ts = TransferSyntaxRegistry
        .get(uid)
        .ok_or_else(|| format!("transfer syntax {uid} is unknown"))?;
    if let Codec::Dataset(adapter) = ts.codec() {
        if adapter.is_none() {
            return Err(format!(
                "transfer syntax {} ({uid}) cannot be read",
                ts.name()
            ));
        }
        let inflated = inflate(bytes)?;
        return read_data_set(&inflated, EXPLICIT_VR_LITTLE_ENDIAN);
    }
    let refusal = Rc::new(RefCell::new(None));
    let decoder = DynStatefulDecoder::new_with_ts(Cursor::new(bytes), ts, 0)
        .map_err(|error| error.to_string())?;
    let bounded = BoundedDecoder::new(decoder, bytes.len() as u64, Rc::clone(&refusal));
    InMemDicomObject::read_dataset(bounded).map_err(|error| {
        refusal
            .borrow_mut()
            .take()
            .unwrap_or_else(|| error_chain(&error))
    })
}

/// An error and its sources, joined: dicom-rs puts the useful part (which element, at
/// which position) in the sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !message.contains(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

/// A dicom-rs data set decoder that refuses, as each header is decoded, a value or item
/// length beyond the end of the data, before dicom-rs allocates it. Sequences are exempt:
/// dicom-rs allocates nothing for their length, and reads their items one by one.
struct BoundedDecoder<D> {
    inner: D,
    /// Where the data ends, as a position of `inner`.
    end: u64,
    /// Where each open sequence or item ends (`u64::MAX` until its delimiter), innermost
    /// last: dicom-rs builds nested sequences by recursion, so their depth is bounded.
    open: Vec<u64>,
    /// Why the data was refused, for the error message (dicom-rs's own error type has no
    /// variant that could carry it).
    refusal: Rc<RefCell<Option<String>>>,
}

/// Sequences and items nested deeper than this are refused (real files nest a few levels;
/// each level costs dicom-rs stack).
const MAX_NESTING: usize = 128;

impl<D: StatefulDecode> BoundedDecoder<D> {
    fn new(inner: D, end: u64, refusal: Rc<RefCell<Option<String>>>) -> Self {
        BoundedDecoder {
            inner,
            end,
            open: Vec::new(),
            refusal,
        }
    }

    /// Closes what ended by its length before the next header.
    fn close_ended(&mut self) {
        let position = self.inner.position();
        while self.open.last().is_some_and(|&end| end <= position) {
            self.open.pop();
        }
    }

    /// Opens a sequence or item whose value starts here.
    fn enter(&mut self, length: Length) -> Result<(), ParserError> {
        let end = length
            .get()
            .map_or(u64::MAX, |len| self.inner.position() + u64::from(len));
        self.open.push(end);
        if self.open.len() > MAX_NESTING {
            *self.refusal.borrow_mut() = Some(format!(
                "sequences are nested deeper than {MAX_NESTING} levels"
            ));
            return Err(ParserError::AllocateValueData { len: 0 });
        }
        Ok(())
    }

    fn admit(&self, what: &str, length: Length) -> Result<(), ParserError> {
        let Some(length) = length.get() else {
            return Ok(());
        };
        let remaining = self.end.saturating_sub(self.inner.position());
        if u64::from(length) <= remaining {
            return Ok(());
        }
        *self.refusal.borrow_mut() = Some(format!(
            "{what} declares {length} bytes where only {remaining} remain"
        ));
        Err(ParserError::AllocateValueData { len: length })
    }
}

impl<D: StatefulDecode> StatefulDecode for BoundedDecoder<D> {
    type Reader = D::Reader;

    fn decode_header(&mut self) -> Result<DataElementHeader, ParserError> {
        self.close_ended();
        let header = self.inner.decode_header()?;
        match (header.tag, header.vr) {
            // Delimiters, read as headers inside sequences, close the innermost.
            (Tag(0xFFFE, 0xE00D | 0xE0DD), _) => {
                self.open.pop();
            }
            (Tag(0xFFFE, 0xE000), _) => self.enter(header.len)?,
            (_, VR::SQ) => self.enter(header.len)?,
            // Any other element of undefined length is a sequence to dicom-rs (encapsulated
            // pixel data too, closed by its sequence delimiter).
            _ if header.len.is_undefined() => self.enter(header.len)?,
            _ => self.admit(&format!("element {}", header.tag), header.len)?,
        }
        Ok(header)
    }

    fn decode_item_header(&mut self) -> Result<SequenceItemHeader, ParserError> {
        self.close_ended();
        let header = self.inner.decode_item_header()?;
        match header {
            SequenceItemHeader::Item { len } => {
                self.admit("an item", len)?;
                self.enter(len)?;
            }
            SequenceItemHeader::ItemDelimiter | SequenceItemHeader::SequenceDelimiter => {
                self.open.pop();
            }
        }
        Ok(header)
    }

    fn read_value(&mut self, header: &DataElementHeader) -> Result<PrimitiveValue, ParserError> {
        self.inner.read_value(header)
    }

    fn read_value_preserved(
        &mut self,
        header: &DataElementHeader,
    ) -> Result<PrimitiveValue, ParserError> {
        self.inner.read_value_preserved(header)
    }

    fn read_value_bytes(
        &mut self,
        header: &DataElementHeader,
    ) -> Result<PrimitiveValue, ParserError> {
        self.inner.read_value_bytes(header)
    }

    fn read_to_vec(&mut self, length: u32, vec: &mut Vec<u8>) -> Result<(), ParserError> {
        self.inner.read_to_vec(length, vec)
    }

    fn read_u32_to_vec(&mut self, length: u32, vec: &mut Vec<u32>) -> Result<(), ParserError> {
        self.inner.read_u32_to_vec(length, vec)
    }

    fn read_to<W: std::io::Write>(&mut self, length: u32, out: W) -> Result<(), ParserError> {
        self.inner.read_to(length, out)
    }

    fn skip_bytes(&mut self, length: u32) -> Result<(), ParserError> {
        self.inner.skip_bytes(length)
    }

    fn seek(&mut self, position: u64) -> Result<(), ParserError>
    where
        Self::Reader: std::io::Seek,
    {
        self.inner.seek(position)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}

/// Explicit VR Little Endian, what a file is written in when its own transfer syntax
/// cannot be written.
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";

/// Writes a file object as DICOM Part 10 bytes: a 128-byte preamble of zeros, `DICM`, the
/// file meta group (its group length recomputed) and the data set in the object's transfer
/// syntax, encapsulated pixel data written unchanged. Only when dicom-rs cannot write the
/// data set in that transfer syntax and its pixel data is native (not encapsulated) is it
/// written as Explicit VR Little Endian instead, the meta group saying so.
pub fn encode_file(object: &FileDicomObject<InMemDicomObject>) -> Result<Vec<u8>, ImagingError> {
    let uid = object.meta().transfer_syntax().to_owned();
    let first = match write_part10(object, &uid) {
        Ok(bytes) => return Ok(bytes),
        Err(reason) => reason,
    };
    let native = TransferSyntaxRegistry
        .get(&uid)
        .is_some_and(|ts| !ts.is_encapsulated_pixel_data());
    if !native || uid == EXPLICIT_VR_LITTLE_ENDIAN {
        return Err(ImagingError::Encode { uid, reason: first });
    }
    write_part10(object, EXPLICIT_VR_LITTLE_ENDIAN).map_err(|second| ImagingError::Encode {
        uid,
        reason: format!("{first}; as Explicit VR Little Endian: {second}"),
    })
}

fn write_part10(object: &FileDicomObject<InMemDicomObject>, uid: &str) -> Result<Vec<u8>, String> {
    let ts = TransferSyntaxRegistry
        .get(uid)
        .ok_or_else(|| format!("transfer syntax {uid} is unknown"))?;
    let mut meta = object.meta().clone();
    meta.transfer_syntax = uid.to_owned();
    meta.update_information_group_length();
    let mut bytes = Vec::with_capacity(1024);
    bytes.extend_from_slice(&[0; 128]);
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes).map_err(|e| e.to_string())?;
    let dataset: &InMemDicomObject = object;
    dataset
        .write_dataset_with_ts(&mut bytes, ts)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// A deflated data set may inflate to at most this many bytes; past it the file is refused
/// (a few kilobytes of deflate can claim gigabytes).
const MAX_INFLATED_BYTES: u64 = 1024 * 1024 * 1024;

/// Checks the declared lengths of a file meta group whose mandatory first element
/// (0002,0000) starts at `at`, reading it as dicom-rs does, with dicom-rs's own header
/// decoder: element after element (whatever their group) until the group length is used
/// up, each value read whole. Where dicom-rs refuses the group anyway (no group length, an
/// undefined length, a header cut short) there is nothing to check.
fn check_meta_lengths(bytes: &[u8], at: usize) -> Result<(), String> {
    let decoder = dicom_encoding::decode::file_header_decoder();
    let mut source = Cursor::new(bytes.get(at..).unwrap_or_default());
    let Ok((first, _)) = decoder.decode_header(&mut source) else {
        return Ok(());
    };
    let mut group_length = [0; 4];
    if first.tag != Tag(0x0002, 0x0000)
        || first.len != Length(4)
        || source.read_exact(&mut group_length).is_err()
    {
        return Ok(());
    }
    let group_length = u32::from_le_bytes(group_length);
    let mut used: u32 = 0;
    while used < group_length {
        let Ok((header, header_bytes)) = decoder.decode_header(&mut source) else {
            return Ok(());
        };
        let Some(length) = header.len.get() else {
            return Ok(());
        };
        let remaining = (source.get_ref().len() as u64).saturating_sub(source.position());
        if u64::from(length) > remaining {
            return Err(format!(
                "meta element {} declares {length} bytes where only {remaining} remain",
                header.tag
            ));
        }
        source.set_position(source.position() + u64::from(length));
        used = used
            .saturating_add(header_bytes as u32)
            .saturating_add(length);
    }
    Ok(())
}

/// Inflates a deflated data set (raw deflate, PS3.5 A.5) up to [`MAX_INFLATED_BYTES`].
fn inflate(deflated: &[u8]) -> Result<Vec<u8>, String> {
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut inflated)
        .map_err(|error| format!("the deflated data set does not inflate: {error}"))?;
    if inflated.len() as u64 > MAX_INFLATED_BYTES {
        return Err(format!(
            "the deflated data set inflates to more than {MAX_INFLATED_BYTES} bytes"
        ));
    }
    Ok(inflated)
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

fn integer(object: &InMemDicomObject, tag: Tag) -> Option<i32> {
    object.get(tag)?.to_int::<i32>().ok()
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
        instance_number: integer(dataset, tags::INSTANCE_NUMBER),
        patient_sex: text(dataset, tags::PATIENT_SEX),
        patient_birth_date: text(dataset, tags::PATIENT_BIRTH_DATE),
        study_time: text(dataset, tags::STUDY_TIME),
        study_description: text(dataset, tags::STUDY_DESCRIPTION),
        study_id: text(dataset, tags::STUDY_ID),
        accession_number: text(dataset, tags::ACCESSION_NUMBER),
        referring_physician_name: text(dataset, tags::REFERRING_PHYSICIAN_NAME),
        series_number: integer(dataset, tags::SERIES_NUMBER),
        series_time: text(dataset, tags::SERIES_TIME),
        protocol_name: text(dataset, tags::PROTOCOL_NAME),
        content_date: text(dataset, tags::CONTENT_DATE),
        content_time: text(dataset, tags::CONTENT_TIME),
        timezone_offset_from_utc: text(dataset, tags::TIMEZONE_OFFSET_FROM_UTC),
        manufacturer: text(dataset, tags::MANUFACTURER),
        manufacturer_model_name: text(dataset, tags::MANUFACTURER_MODEL_NAME),
        institution_name: text(dataset, tags::INSTITUTION_NAME),
        station_name: text(dataset, tags::STATION_NAME),
        rows: unsigned(dataset, tags::ROWS),
        columns: unsigned(dataset, tags::COLUMNS),
        bits_allocated: unsigned(dataset, tags::BITS_ALLOCATED).and_then(|b| u16::try_from(b).ok()),
        number_of_frames: unsigned(dataset, tags::NUMBER_OF_FRAMES),
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

    /// Gives up the parsed form for the dicom-rs object itself (to change and write it).
    pub fn into_object(self) -> FileDicomObject<InMemDicomObject> {
        self.object
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
    let mut photometric = decoded.photometric_interpretation().as_str().to_owned();
    let samples_per_pixel = decoded.samples_per_pixel();
    let monochrome = photometric.starts_with("MONOCHROME");
    let (slope, intercept) = if monochrome {
        (image.rescale_slope, image.rescale_intercept)
    } else {
        (1.0, 0.0)
    };
    let samples_per_frame =
        geometry.rows as usize * geometry.columns as usize * samples_per_pixel as usize;
    // Decoders hand compressed colour over as interleaved RGB; only native data can still
    // be planar or subsampled YBR_FULL_422 here.
    let planar = decoded.planar_configuration() == PlanarConfiguration::PixelFirst;
    let subsampled = photometric == "YBR_FULL_422" && samples_per_pixel == 3;
    let bytes_per_sample = usize::from(decoded.bits_allocated().div_ceil(8));
    let mut frames = Vec::with_capacity(geometry.number_of_frames as usize);
    for frame in 0..geometry.number_of_frames {
        let expanded;
        let data = if subsampled {
            // PS3.3 C.7.6.3.1.2: two pixels share one Cb and one Cr, so a frame holds two
            // samples per pixel.
            let frame_bytes = samples_per_frame / 3 * 2 * bytes_per_sample;
            let start = frame as usize * frame_bytes;
            let data = decoded
                .data()
                .get(start..start + frame_bytes)
                .ok_or_else(|| {
                    decode_error(&format!(
                        "YBR_FULL_422 frame {frame} needs {frame_bytes} bytes, the pixel data ends before"
                    ))
                })?;
            expanded = expand_ybr_422(data, bytes_per_sample);
            expanded.as_slice()
        } else {
            decoded.frame_data(frame).map_err(|e| decode_error(&e))?
        };
        let values = stored_values(data, format, decoded.bits_allocated(), samples_per_frame)
            .ok_or_else(|| {
                decode_error(&format!(
                    "frame {frame} has {} bytes, expected {samples_per_frame} samples",
                    data.len()
                ))
            })?;
        let values = if planar {
            deinterleave_planes(values, usize::from(samples_per_pixel), samples_per_frame)
        } else {
            values
        };
        frames.push(
            values
                .into_iter()
                .map(|v| (v * slope + intercept) as f32)
                .collect(),
        );
    }
    if subsampled {
        photometric = "YBR_FULL".into();
    }
    let frames = Frames {
        rows: geometry.rows,
        columns: geometry.columns,
        samples_per_pixel,
        photometric_interpretation: photometric,
        frames,
    };
    to_rgb(image, frames, decoded.bits_allocated())
}

/// Turns YBR_FULL_422 samples (Y1 Y2 Cb Cr for each pair of pixels) into YBR_FULL
/// (Y1 Cb Cr Y2 Cb Cr), each sample `bytes_per_sample` bytes wide.
fn expand_ybr_422(data: &[u8], bytes_per_sample: usize) -> Vec<u8> {
    let group = 4 * bytes_per_sample;
    let mut out = Vec::with_capacity(data.len() / 2 * 3);
    for pair in data.chunks_exact(group) {
        let sample = |index: usize| &pair[index * bytes_per_sample..(index + 1) * bytes_per_sample];
        for y in [0, 1] {
            out.extend_from_slice(sample(y));
            out.extend_from_slice(sample(2));
            out.extend_from_slice(sample(3));
        }
    }
    out
}

/// Colour images as RGB: 8-bit YBR_FULL converted as pydicom's `convert_color_space`
/// does, and PALETTE COLOR indices looked up in the palette as pydicom's
/// `apply_color_lut` does (RGB only: an alpha palette is ignored). Other images are left
/// as they are.
fn to_rgb(
    image: &DicomImage,
    mut frames: Frames,
    bits_allocated: u16,
) -> Result<Frames, ImagingError> {
    match (
        frames.photometric_interpretation.as_str(),
        frames.samples_per_pixel,
    ) {
        ("YBR_FULL" | "YBR_FULL_422", 3) if bits_allocated == 8 => {
            for frame in &mut frames.frames {
                ybr_full_to_rgb(frame);
            }
            frames.photometric_interpretation = "RGB".into();
        }
        ("PALETTE COLOR", 1) => {
            let palette = Palette::read(image)?;
            for frame in &mut frames.frames {
                *frame = palette.apply(frame);
            }
            frames.samples_per_pixel = 3;
            frames.photometric_interpretation = "RGB".into();
        }
        _ => {}
    }
    Ok(frames)
}

/// YBR_FULL to RGB in place (PS3.3 C.7.6.3.1.2) with pydicom's single-precision matrix,
/// each channel accumulated Y, Cb, Cr by fused multiply-adds as numpy's matrix product
/// does, then rounded half up: identical to pydicom for all 2^24 inputs.
fn ybr_full_to_rgb(samples: &mut [f32]) {
    let matrix: [[f32; 3]; 3] = [
        [1.0, 0.0, 1.402],
        [
            1.0,
            (-0.114 * 1.772 / 0.587) as f32,
            (-0.299 * 1.402 / 0.587) as f32,
        ],
        [1.0, 1.772, 0.0],
    ];
    for pixel in samples.chunks_exact_mut(3) {
        let ybr = [pixel[0], pixel[1] - 128.0, pixel[2] - 128.0];
        for (out, row) in pixel.iter_mut().zip(&matrix) {
            let sum = ybr
                .iter()
                .zip(row)
                .fold(0.0f32, |sum, (value, weight)| value.mul_add(*weight, sum));
            *out = (sum + 0.5).floor().clamp(0.0, 255.0);
        }
    }
}

/// Palette Color Lookup Tables (PS3.3 C.7.6.3.1.5, C.7.6.3.1.6 and segmented C.7.9.2).
struct Palette {
    first_mapped: i64,
    entries: usize,
    /// Red, green and blue entries.
    tables: [Vec<u16>; 3],
}

/// A segmented palette may not expand beyond this many entries (the most a descriptor
/// can declare).
const MAX_PALETTE_ENTRIES: usize = 65_536;

const PALETTE_DESCRIPTORS: [Tag; 3] = [
    tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
    tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
    tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
];
const PALETTE_DATA: [Tag; 3] = [
    tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
];
const SEGMENTED_PALETTE_DATA: [Tag; 3] = [
    tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
];

impl Palette {
    fn read(image: &DicomImage) -> Result<Palette, ImagingError> {
        let dataset: &InMemDicomObject = &image.object;
        let invalid =
            |tag: Tag, name: &'static str, reason: String| ImagingError::InvalidAttribute {
                path: image.path.clone(),
                name,
                tag,
                reason,
            };
        let descriptor_tag = PALETTE_DESCRIPTORS[0];
        let descriptor: Vec<i64> = dataset
            .get(descriptor_tag)
            .ok_or_else(|| ImagingError::MissingAttribute {
                path: image.path.clone(),
                name: "Red Palette Color Lookup Table Descriptor",
                tag: descriptor_tag,
            })?
            .to_multi_int::<i64>()
            .map_err(|e| {
                invalid(
                    descriptor_tag,
                    "Red Palette Color Lookup Table Descriptor",
                    e.to_string(),
                )
            })?;
        let [entries, first_mapped, nominal_bits] = descriptor[..] else {
            return Err(invalid(
                descriptor_tag,
                "Red Palette Color Lookup Table Descriptor",
                format!("expected 3 numbers, found {}", descriptor.len()),
            ));
        };
        // A first value of 0 means 2^16 entries; SS descriptors can read it as negative.
        let entries = match entries {
            0 => 65_536,
            n if n < 0 => n + 65_536,
            n => n,
        } as usize;
        if !matches!(nominal_bits, 8 | 16) {
            return Err(invalid(
                descriptor_tag,
                "Red Palette Color Lookup Table Descriptor",
                format!("entries of {nominal_bits} bits; only 8 and 16 are defined"),
            ));
        }
        let big_endian = image.transfer_syntax_uid == BIG_ENDIAN;
        let mut tables: [Vec<u16>; 3] = Default::default();
        for (channel, table) in tables.iter_mut().enumerate() {
            let name = ["Red", "Green", "Blue"][channel];
            if let Some(element) = dataset.get(PALETTE_DATA[channel]) {
                let bytes = file_order_bytes(element.value(), big_endian).ok_or_else(|| {
                    invalid(
                        PALETTE_DATA[channel],
                        "Palette Color Lookup Table Data",
                        format!("{name} table is not binary"),
                    )
                })?;
                // The real width of an entry is what the data holds (8-bit entries are often
                // declared as 16); pydicom does the same.
                *table = if bytes.len() == entries {
                    bytes.iter().map(|&b| u16::from(b)).collect()
                } else if bytes.len() == 2 * entries {
                    words(&bytes, big_endian)
                } else {
                    return Err(invalid(
                        PALETTE_DATA[channel],
                        "Palette Color Lookup Table Data",
                        format!(
                            "{name} table has {} bytes for {entries} entries",
                            bytes.len()
                        ),
                    ));
                };
            } else if let Some(element) = dataset.get(SEGMENTED_PALETTE_DATA[channel]) {
                let invalid_segments = |reason: String| {
                    invalid(
                        SEGMENTED_PALETTE_DATA[channel],
                        "Segmented Palette Color Lookup Table Data",
                        format!("{name} table: {reason}"),
                    )
                };
                let bytes = file_order_bytes(element.value(), big_endian)
                    .ok_or_else(|| invalid_segments("not binary".into()))?;
                let segments: Vec<u16> = if nominal_bits == 8 {
                    bytes.iter().map(|&b| u16::from(b)).collect()
                } else {
                    words(&bytes, big_endian)
                };
                *table = expand_segments(&segments, nominal_bits == 8, big_endian)
                    .map_err(invalid_segments)?;
            } else {
                return Err(ImagingError::MissingAttribute {
                    path: image.path.clone(),
                    name: "Palette Color Lookup Table Data",
                    tag: PALETTE_DATA[channel],
                });
            }
            if table.len() < entries.min(MAX_PALETTE_ENTRIES) {
                return Err(invalid(
                    PALETTE_DATA[channel],
                    "Palette Color Lookup Table Data",
                    format!(
                        "{name} table has {} entries, the descriptor says {entries}",
                        table.len()
                    ),
                ));
            }
        }
        Ok(Palette {
            first_mapped,
            entries,
            tables,
        })
    }

    /// Looks each index up: below the first mapped value is the first entry, beyond the
    /// last entry is the last entry.
    fn apply(&self, indices: &[f32]) -> Vec<f32> {
        let last = self.entries - 1;
        let mut rgb = Vec::with_capacity(indices.len() * 3);
        for &index in indices {
            let entry = (index as i64 - self.first_mapped).clamp(0, last as i64) as usize;
            rgb.extend(self.tables.iter().map(|table| f32::from(table[entry])));
        }
        rgb
    }
}

/// The bytes of a binary value in the order the file holds them (dicom-rs keeps OW data
/// as native 16-bit words).
fn file_order_bytes(
    value: &dicom_core::value::Value<InMemDicomObject>,
    big_endian: bool,
) -> Option<Vec<u8>> {
    use dicom_core::value::{PrimitiveValue, Value};
    Some(match value {
        Value::Primitive(PrimitiveValue::U8(bytes)) => bytes.to_vec(),
        Value::Primitive(PrimitiveValue::U16(words)) => words
            .iter()
            .flat_map(|w| {
                if big_endian {
                    w.to_be_bytes()
                } else {
                    w.to_le_bytes()
                }
            })
            .collect(),
        Value::Primitive(PrimitiveValue::I16(words)) => words
            .iter()
            .flat_map(|w| {
                if big_endian {
                    w.to_be_bytes()
                } else {
                    w.to_le_bytes()
                }
            })
            .collect(),
        _ => return None,
    })
}

fn words(bytes: &[u8], big_endian: bool) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|pair| {
            let pair = [pair[0], pair[1]];
            if big_endian {
                u16::from_be_bytes(pair)
            } else {
                u16::from_le_bytes(pair)
            }
        })
        .collect()
}

/// Expands segmented palette data (PS3.3 C.7.9.2): discrete segments (opcode 0) copy
/// values, linear segments (1) interpolate from the last value, rounded half to even as
/// pydicom does, and indirect segments (2) replay earlier segments found at an offset.
/// With 8-bit entries an indirect offset spans four entries, in the file's byte order.
fn expand_segments(data: &[u16], eight_bit: bool, big_endian: bool) -> Result<Vec<u16>, String> {
    let mut table = Vec::new();
    expand_segments_into(data, 0, None, eight_bit, big_endian, 0, &mut table)?;
    Ok(table)
}

fn expand_segments_into(
    data: &[u16],
    start: usize,
    segments: Option<usize>,
    eight_bit: bool,
    big_endian: bool,
    depth: usize,
    table: &mut Vec<u16>,
) -> Result<(), String> {
    if depth > 8 {
        return Err("indirect segments nest too deeply".into());
    }
    let mut offset = start;
    let mut done = 0;
    // A trailing padding entry is not a segment: every segment is at least 2 entries long.
    while offset + 1 < data.len() && segments.is_none_or(|n| done < n) {
        let (opcode, length) = (data[offset], usize::from(data[offset + 1]));
        offset += 2;
        match opcode {
            0 => {
                let values = data
                    .get(offset..offset + length)
                    .ok_or("a discrete segment runs past the data")?;
                table.extend_from_slice(values);
                offset += length;
            }
            1 => {
                let y0 = f64::from(*table.last().ok_or("the first segment is a linear one")?);
                let y1 = f64::from(
                    *data
                        .get(offset)
                        .ok_or("a linear segment has no end value")?,
                );
                offset += 1;
                if length == 1 || y0 == y1 {
                    table.extend(std::iter::repeat_n(y1 as u16, length));
                } else {
                    // Evenly spaced from one step after y0 to y1, as numpy's linspace.
                    let first = y0 + (y1 - y0) / length as f64;
                    let step = (y1 - first) / (length - 1) as f64;
                    table.extend((0..length).map(|i| {
                        let value = if i == length - 1 {
                            y1
                        } else {
                            i as f64 * step + first
                        };
                        value.round_ties_even() as u16
                    }));
                }
            }
            2 => {
                if table.is_empty() {
                    return Err("the first segment is an indirect one".into());
                }
                let target = if eight_bit {
                    let bytes: Vec<usize> = data
                        .get(offset..offset + 4)
                        .ok_or("an indirect segment has no offset")?
                        .iter()
                        .map(|&b| usize::from(b))
                        .collect();
                    offset += 4;
                    // The 32-bit offset is two 16-bit words, low word first, each written
                    // in the file's byte order.
                    let word = |first: usize, second: usize| {
                        if big_endian {
                            first << 8 | second
                        } else {
                            second << 8 | first
                        }
                    };
                    word(bytes[2], bytes[3]) << 16 | word(bytes[0], bytes[1])
                } else {
                    let low = usize::from(
                        *data
                            .get(offset)
                            .ok_or("an indirect segment has no offset")?,
                    );
                    let high = usize::from(
                        *data
                            .get(offset + 1)
                            .ok_or("an indirect segment has no offset")?,
                    );
                    offset += 2;
                    high << 16 | low
                };
                if target >= data.len() {
                    return Err(format!(
                        "an indirect segment points to entry {target}, past the data"
                    ));
                }
                expand_segments_into(
                    data,
                    target,
                    Some(length),
                    eight_bit,
                    big_endian,
                    depth + 1,
                    table,
                )?;
            }
            other => return Err(format!("unknown segment opcode {other}")),
        }
        if table.len() > MAX_PALETTE_ENTRIES {
            return Err(format!(
                "the table expands beyond {MAX_PALETTE_ENTRIES} entries"
            ));
        }
        done += 1;
    }
    Ok(())
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
            let values = if format.planar_configuration == 1 {
                deinterleave_planes(
                    values,
                    usize::from(format.samples_per_pixel),
                    samples_per_frame,
                )
            } else {
                values
            };
            values
                .into_iter()
                .map(|v| (v * slope + intercept) as f32)
                .collect()
        })
        .collect();
    let frames = Frames {
        rows: geometry.rows,
        columns: geometry.columns,
        samples_per_pixel: format.samples_per_pixel,
        photometric_interpretation: format.photometric_interpretation.clone(),
        frames,
    };
    to_rgb(image, frames, format.bits_allocated)
}

/// Turns planar colour (R plane, G plane, B plane) into interleaved samples.
fn deinterleave_planes(values: Vec<f64>, samples: usize, count: usize) -> Vec<f64> {
    if samples == 1 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn implicit_element(group: u16, element: u16, value: &[u8], declared: Option<u32>) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&group.to_le_bytes());
        bytes.extend_from_slice(&element.to_le_bytes());
        let length = declared.unwrap_or(value.len() as u32);
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    #[test]
    fn an_element_claiming_more_bytes_than_the_file_holds_is_refused_before_parsing() {
        // Implicit VR without meta, as the fuzzer found it: Image Orientation (Patient)
        // declaring almost 4 GiB in a file of a few hundred bytes.
        let mut bytes = implicit_element(0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.2\0", None);
        bytes.extend(implicit_element(0x0008, 0x0060, b"CT", None));
        bytes.extend(implicit_element(
            0x0020,
            0x0037,
            &[0xFF; 64],
            Some(0xFFFF_FF0C),
        ));
        let error = read_bytes(Path::new("hostile.dcm"), &bytes).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("(0020,0037) declares 4294967052 bytes"),
            "{message}"
        );
        // The same element with an honest length reads.
        let mut honest = implicit_element(0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.2\0", None);
        honest.extend(implicit_element(0x0008, 0x0060, b"CT", None));
        honest.extend(implicit_element(0x0020, 0x0037, b"1\\0\\0\\0\\1\\0 ", None));
        assert!(read_bytes(Path::new("honest.dcm"), &honest).is_ok());
    }

    /// A Part 10 file: preamble, `DICM`, (0002,0000) with the length of `meta`, `meta`,
    /// then `data_set`.
    fn part10(meta: &[u8], data_set: &[u8]) -> Vec<u8> {
        let mut file = vec![0; 128];
        file.extend_from_slice(b"DICM");
        file.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        file.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        file.extend_from_slice(meta);
        file.extend_from_slice(data_set);
        file
    }

    fn meta_uid(group: u16, uid: &[u8]) -> Vec<u8> {
        let mut meta = group.to_le_bytes().to_vec();
        meta.extend_from_slice(&[0x10, 0x00, b'U', b'I']);
        meta.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        meta.extend_from_slice(uid);
        meta
    }

    /// Explicit VR little endian: a sequence of undefined length whose item holds an OB
    /// element that claims far more than the file holds.
    fn hostile_data_set() -> Vec<u8> {
        let mut data_set = Vec::new();
        data_set.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
        data_set.extend_from_slice(&u32::MAX.to_le_bytes());
        data_set.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        data_set.extend_from_slice(&u32::MAX.to_le_bytes());
        data_set.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        data_set.extend_from_slice(&0xE7E7_E7E7u32.to_le_bytes());
        data_set.extend_from_slice(&[0; 16]);
        data_set
    }

    /// Why `bytes` is refused; panics if they read.
    fn refusal(bytes: &[u8]) -> String {
        read_bytes(Path::new("hostile.dcm"), bytes)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn lengths_inside_sequences_items_and_the_meta_group_are_checked() {
        let file = part10(
            &meta_uid(0x0002, b"1.2.840.10008.1.2.1\0"),
            &hostile_data_set(),
        );
        let message = refusal(&file);
        assert!(
            message.contains("(0009,1010) declares 3890735079 bytes"),
            "{message}"
        );
        // A meta element that claims too much is refused too.
        let mut meta = vec![0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0];
        meta.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        let message = refusal(&part10(&meta, &[]));
        assert!(
            message.contains("meta element (0002,0001) declares 2147483647 bytes"),
            "{message}"
        );
    }

    #[test]
    fn the_meta_group_ends_where_its_length_says_whatever_groups_it_holds() {
        // dicom-rs reads meta elements until the group length is used up, even one of
        // another group: the transfer syntax after it still counts, and one of those
        // elements claiming too much is refused.
        let mut meta = meta_uid(0xFF02, b"2.25.1");
        meta.extend(meta_uid(0x0002, b"1.2.840.10008.1.2.1\0"));
        let message = refusal(&part10(&meta, &hostile_data_set()));
        assert!(message.contains("(0009,1010)"), "{message}");
        let mut meta = vec![0x02, 0xFF, 0x01, 0x00, b'O', b'B', 0, 0];
        meta.extend_from_slice(&0xFFFF_FF00u32.to_le_bytes());
        let message = refusal(&part10(&meta, &[]));
        assert!(message.contains("meta element (FF02,0001)"), "{message}");
    }

    #[test]
    fn meta_headers_are_read_as_dicom_rs_reads_them_items_without_a_vr() {
        // In the meta group dicom-rs reads a (FFFE,xxxx) header as tag and 32-bit length,
        // no VR; a walk that read a VR there would land elsewhere than dicom-rs, which then
        // reads a transfer syntax claiming 4 GB.
        let mut meta = vec![0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0];
        meta.extend_from_slice(&[0x08, 0x00, 0x00, 0x00, 0xF0, 0xFF, 0xFF, 0x00]);
        meta.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'O', b'B', 0, 0]);
        meta.extend_from_slice(&0xF000_0000u32.to_le_bytes());
        let mut file = part10(&meta, &[]);
        // The group length covers everything after it.
        let length = (file.len() - 144) as u32 + 0x100;
        file[140..144].copy_from_slice(&length.to_le_bytes());
        let message = refusal(&file);
        assert!(
            message.contains("meta element (0002,0010) declares 4026531840 bytes"),
            "{message}"
        );
    }

    /// Explicit VR little endian: Modality, then `depth` sequences of undefined length,
    /// each in an item of the one before, closed properly.
    fn nested_sequences(depth: usize) -> Vec<u8> {
        let mut bytes = vec![0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'C', b'T'];
        for _ in 0..depth {
            bytes.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            bytes.extend_from_slice(&u32::MAX.to_le_bytes());
            bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        for _ in 0..depth {
            bytes.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            bytes.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        bytes
    }

    #[test]
    fn sequences_nested_past_any_real_file_are_refused_before_the_stack_runs_out() {
        // dicom-rs builds nested sequences by recursion; on a worker thread's 2 MiB stack
        // a few thousand levels would abort the whole server.
        let deep = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| refusal(&nested_sequences(20_000)))
            .unwrap()
            .join()
            .unwrap();
        assert!(deep.contains("nested deeper than"), "{deep}");
        // Real nesting (a handful of levels; here 40) reads.
        let image = read_bytes(Path::new("nested.dcm"), &nested_sequences(40)).unwrap();
        assert_eq!(image.attributes.modality.as_deref(), Some("CT"));
    }

    #[test]
    fn deflated_data_sets_are_checked_once_inflated() {
        use std::io::Write;
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflater.write_all(&hostile_data_set()).unwrap();
        let deflated = deflater.finish().unwrap();
        let file = part10(&meta_uid(0x0002, b"1.2.840.10008.1.2.1.99"), &deflated);
        let message = refusal(&file);
        assert!(message.contains("(0009,1010)"), "{message}");
        let garbage = part10(&meta_uid(0x0002, b"1.2.840.10008.1.2.1.99"), &[0xFF; 40]);
        assert!(refusal(&garbage).contains("does not inflate"));
    }

    #[test]
    fn lengths_are_checked_where_dicom_rs_reads_headers_after_numbers_of_odd_length() {
        // Rows (US) declaring 3 bytes: dicom-rs reads one 16-bit number and the next
        // header from the third byte, where this one claims 2 GiB.
        let mut bytes = implicit_element(0x0008, 0x0060, b"CT", None);
        bytes.extend(implicit_element(0x0028, 0x0010, &[1, 0, 0x09], Some(3)));
        bytes.extend_from_slice(&[0x00, 0x10, 0x00, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0]);
        let message = refusal(&bytes);
        assert!(message.contains("declares 2147483647 bytes"), "{message}");
    }

    #[test]
    fn explicit_big_endian_lengths_are_checked_too() {
        // The fuzzer's input: explicit VR big endian, an OD value then a header whose
        // length, read big-endian, is far past the end.
        let mut bytes = vec![0x00, 0x08, 0x00, 0x60, b'C', b'S', 0x00, 0x02, b'C', b'T'];
        bytes.extend_from_slice(&[0x00, 0x09, 0x00, 0x10, b'O', b'D', 0, 0]);
        bytes.extend_from_slice(&0x7FFF_FFF0u32.to_be_bytes());
        bytes.extend_from_slice(&[0; 24]);
        let message = refusal(&bytes);
        assert!(
            message.contains("(0009,0010) declares 2147483632 bytes"),
            "{message}"
        );
    }

    #[test]
    fn an_input_the_fuzzer_found_is_refused_before_anything_is_allocated() {
        // Explicit VR big endian without meta, whose headers drift out of step with any
        // walk that does not read exactly as dicom-rs does.
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                "AHIAAE9EAAAAAAAnAAwACgD/////T/////////7//9H//////////////////v//0f/////////\
                 /////////////////ug==",
            )
            .unwrap();
        let message = refusal(&bytes);
        assert!(message.contains("declares"), "{message}");
    }

    #[test]
    fn fragments_of_encapsulated_pixel_data_are_bounded_not_parsed() {
        // Fragment bytes that look like a huge element header must not be read as one.
        let mut bytes = vec![0x08, 0x00, 0x60, 0x00, b'C', b'S', 2, 0, b'C', b'T'];
        bytes.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 12, 0, 0, 0]);
        bytes.extend_from_slice(&[
            0x08, 0x00, 0x00, 0x01, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0x7F,
        ]);
        bytes.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let meta = meta_uid(0x0002, b"1.2.840.10008.1.2.4.50\0");
        let image = read_bytes(Path::new("fragments.dcm"), &part10(&meta, &bytes)).unwrap();
        assert_eq!(image.attributes.modality.as_deref(), Some("CT"));
        // A fragment longer than the data is refused before anything is allocated.
        let last = bytes.len() - 8 - 12 - 4;
        bytes[last..last + 4].copy_from_slice(&0xFFFF_0000u32.to_le_bytes());
        let message = refusal(&part10(&meta, &bytes));
        assert!(
            message.contains("an item declares 4294901760 bytes"),
            "{message}"
        );
    }

    #[test]
    fn segmented_palettes_expand_discrete_linear_and_indirect_segments() {
        // Discrete 0, 10; linear to 20 over 4 entries; indirect: replay 1 segment found at
        // entry 0 (the discrete one).
        let data = [0, 2, 0, 10, 1, 4, 20, 2, 1, 0, 0];
        let table = expand_segments(&data, false, false).unwrap();
        assert_eq!(table, vec![0, 10, 12, 15, 18, 20, 0, 10]);
        // Linear steps round half to even, as numpy's around: 0 to 5 over 2 is 2.5 then 5.
        assert_eq!(
            expand_segments(&[0, 1, 0, 1, 2, 5], false, false).unwrap(),
            vec![0, 2, 5]
        );
        assert!(expand_segments(&[1, 2, 5], false, false).is_err());
        assert!(expand_segments(&[0, 1, 0, 7, 1, 0], false, false).is_err());
        // An indirect segment pointing at itself cannot loop for ever.
        assert!(expand_segments(&[0, 1, 5, 2, 1, 3, 0], false, false).is_err());
    }

    #[test]
    fn ybr_422_pairs_share_their_chroma() {
        assert_eq!(
            expand_ybr_422(&[10, 20, 128, 129], 1),
            vec![10, 128, 129, 20, 128, 129]
        );
        let mut grey = [128.0, 128.0, 128.0, 0.0, 128.0, 128.0, 255.0, 128.0, 128.0];
        ybr_full_to_rgb(&mut grey);
        assert_eq!(
            grey,
            [128.0, 128.0, 128.0, 0.0, 0.0, 0.0, 255.0, 255.0, 255.0]
        );
        let mut red = [76.0, 85.0, 255.0];
        ybr_full_to_rgb(&mut red);
        assert_eq!(red, [254.0, 0.0, 0.0]);
    }
}
