//! Reading NIfTI-1 and NIfTI-2 images (`.nii`, `.nii.gz`) from memory into a [`Volume`] in
//! DICOM patient coordinates (LPS, mm), exactly inverse to [`crate::nifti_export`]. Hostile
//! headers are refused before anything is allocated: sizes are checked against
//! [`MAX_PIXEL_BYTES`] and gzip is decompressed only as far as the header says it needs.
//!
//! The NIfTI-1 header is parsed by the `nifti` crate; NIfTI-2 (which that crate does not
//! read) by hand. Voxels are decoded here in both cases, because the crate's readers
//! allocate whatever a header claims and read a gzip stream to its end.

use std::io::Read;

use crate::dicom::MAX_PIXEL_BYTES;
use crate::nifti_export::Affine;
use crate::volume::{StackGeometry, Volume};

const NIFTI1_HEADER_BYTES: usize = 348;
const NIFTI2_HEADER_BYTES: usize = 540;
/// The NIfTI-2 signature: the bytes after `n+2\0` detect a file damaged by a text-mode copy.
const NIFTI2_SIGNATURE_TAIL: [u8; 4] = *b"\r\n\x1a\n";
/// Voxel data starting later than this is refused: header extensions that large (CIFTI's XML
/// is a few megabytes) are not skipped over, so a compressed file cannot make voxhub inflate
/// gigabytes just to find its voxels.
pub const MAX_VOXEL_OFFSET: u64 = 256 * 1024 * 1024;
/// More slices than this are refused; a volume that thin is not an image.
pub const MAX_SLICES: u64 = 1 << 20;
/// After the voxels it needs, a gzip stream is read this much further so that a file that
/// ends there has its checksum verified.
const GZIP_TRAILING_BYTES: u64 = 64 * 1024;
/// Direction cosines whose dot product exceeds this are not perpendicular: a sheared affine,
/// which a [`StackGeometry`] cannot hold.
const ORTHOGONALITY_TOLERANCE: f64 = 1e-3;
/// Voxel sizes below this (mm) are zero.
const SMALLEST_VOXEL_MM: f64 = 1e-6;

/// Why a NIfTI file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NiftiReadError {
    #[error("{name}: the file ends after {length} bytes but its {part} needs {needed}")]
    Truncated {
        name: String,
        /// "header", "voxel data", or either "after decompression".
        part: &'static str,
        length: u64,
        needed: u64,
    },
    #[error("{name} is not a NIfTI file: {reason}")]
    NotNifti { name: String, reason: String },
    #[error(
        "{name} is a NIfTI header whose voxels are in a separate .img file; upload one .nii or .nii.gz file instead"
    )]
    SeparateImageFile { name: String },
    #[error("{name}: invalid dimensions {dims:?}: {reason}")]
    InvalidDimensions {
        name: String,
        dims: Vec<i64>,
        reason: &'static str,
    },
    #[error(
        "{name}: {columns}x{rows}x{slices} voxels of {datatype} would take {bytes} bytes, more than the {limit} bytes voxhub reads from one file"
    )]
    TooLarge {
        name: String,
        columns: u64,
        rows: u64,
        slices: u64,
        datatype: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error(
        "{name}: voxels of type {datatype} (NIfTI datatype {code}) are not read as a scalar volume"
    )]
    UnsupportedDatatype {
        name: String,
        code: i16,
        datatype: &'static str,
    },
    #[error("{name}: the voxel data offset {offset} is invalid: {reason}")]
    InvalidVoxelOffset {
        name: String,
        offset: f64,
        reason: &'static str,
    },
    #[error("{name}: the gzip compression is damaged: {reason}")]
    Gzip { name: String, reason: String },
    #[error("{name}: the orientation in the {transform} cannot be used: {reason}")]
    InvalidOrientation {
        name: String,
        transform: AffineSource,
        reason: String,
    },
    #[error("{name}: the intensity scaling is invalid: {reason}")]
    InvalidScaling { name: String, reason: String },
}

/// Which NIfTI format the header was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiVersion {
    /// 348-byte header.
    Nifti1,
    /// 540-byte header.
    Nifti2,
}

/// Where the voxel-to-world transform came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AffineSource {
    /// The sform matrix (`srow_x/y/z`), preferred when `sform_code > 0`.
    Sform,
    /// The qform quaternion, pixdim and offset, when `qform_code > 0`.
    Qform,
    /// Neither code set: only the voxel size (pixdim), axes along the scanner's.
    VoxelSize,
}

impl std::fmt::Display for AffineSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AffineSource::Sform => "sform",
            AffineSource::Qform => "qform",
            AffineSource::VoxelSize => "voxel size (pixdim)",
        })
    }
}

/// A NIfTI file read as a scalar volume, with the header facts voxhub shows.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiVolume {
    /// The first 3D volume: scaled values, slice by slice, each slice row by row, the rows in
    /// DICOM order (NIfTI's last `j` first), as [`crate::nifti_export`] writes them.
    pub volume: Volume,
    pub version: NiftiVersion,
    /// Whether the file was gzip-compressed.
    pub compressed: bool,
    pub big_endian: bool,
    /// The stored type: "uint8", "int16", "float32", ...
    pub datatype: &'static str,
    pub datatype_code: i16,
    /// `dim[1..=dim[0]]` as written.
    pub dims: Vec<i64>,
    pub intent_code: i32,
    /// The `descrip` field, up to its first NUL.
    pub description: String,
    /// Whether every value is a whole number: an integer type scaled by whole numbers.
    pub integer_values: bool,
    /// The slope and intercept applied (1 and 0 when the header has none).
    pub scale_slope: f64,
    pub scale_intercept: f64,
    /// Volumes after the first (4D and higher), not read.
    pub extra_volumes: usize,
    /// The voxel-to-world transform used, NIfTI RAS millimetres, as nibabel's `affine`
    /// when the sform or qform is used.
    pub affine: Affine,
    pub affine_source: AffineSource,
    /// What was repaired or assumed while reading, in sentences.
    pub notes: Vec<String>,
}

/// The header fields voxhub uses, from either version.
#[derive(Debug, Clone)]
struct RawHeader {
    version: NiftiVersion,
    little_endian: bool,
    /// Header and voxels in one file (`n+1`, `n+2`) rather than a `.hdr`/`.img` pair.
    single_file: bool,
    dim: [i64; 8],
    datatype: i16,
    pixdim: [f64; 8],
    vox_offset: f64,
    scl_slope: f64,
    scl_inter: f64,
    intent_code: i32,
    description: String,
    qform_code: i32,
    sform_code: i32,
    quatern: [f64; 3],
    qoffset: [f64; 3],
    srow: [[f64; 4]; 3],
}

impl RawHeader {
    fn header_bytes(&self) -> usize {
        match self.version {
            NiftiVersion::Nifti1 => NIFTI1_HEADER_BYTES,
            NiftiVersion::Nifti2 => NIFTI2_HEADER_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum SampleType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

#[derive(Debug, Clone, Copy)]
struct Datatype {
    name: &'static str,
    /// `None` for the types not read as scalar volumes.
    sample: Option<SampleType>,
}

impl Datatype {
    fn of(code: i16) -> Datatype {
        let (name, sample) = match code {
            2 => ("uint8", Some(SampleType::U8)),
            4 => ("int16", Some(SampleType::I16)),
            8 => ("int32", Some(SampleType::I32)),
            16 => ("float32", Some(SampleType::F32)),
            64 => ("float64", Some(SampleType::F64)),
            256 => ("int8", Some(SampleType::I8)),
            512 => ("uint16", Some(SampleType::U16)),
            768 => ("uint32", Some(SampleType::U32)),
            1024 => ("int64", Some(SampleType::I64)),
            1280 => ("uint64", Some(SampleType::U64)),
            1 => ("binary", None),
            32 => ("complex64", None),
            128 => ("rgb24", None),
            1536 => ("float128", None),
            1792 => ("complex128", None),
            2048 => ("complex256", None),
            2304 => ("rgba32", None),
            _ => ("unknown", None),
        };
        Datatype { name, sample }
    }
}

impl SampleType {
    fn bytes(self) -> u64 {
        match self {
            SampleType::U8 | SampleType::I8 => 1,
            SampleType::I16 | SampleType::U16 => 2,
            SampleType::I32 | SampleType::U32 | SampleType::F32 => 4,
            SampleType::I64 | SampleType::U64 | SampleType::F64 => 8,
        }
    }

    fn integer(self) -> bool {
        !matches!(self, SampleType::F32 | SampleType::F64)
    }
}

/// Reads a `.nii` or `.nii.gz` file (NIfTI-1 or NIfTI-2) from memory; gzip is recognised by
/// its magic number, not by `name`, which only names the file in errors.
pub fn read_bytes(name: &str, bytes: &[u8]) -> Result<NiftiVolume, NiftiReadError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_gzip(name, bytes)
    } else {
        read_plain(name, bytes)
    }
}

/// What the header says must be read, checked before any voxel is touched.
struct Plan {
    header: RawHeader,
    sample: SampleType,
    datatype: Datatype,
    columns: u64,
    rows: u64,
    slices: u64,
    extra_volumes: usize,
    data_offset: u64,
    data_bytes: u64,
    notes: Vec<String>,
}

fn read_plain(name: &str, bytes: &[u8]) -> Result<NiftiVolume, NiftiReadError> {
    let header = parse_header(name, bytes, false)?;
    let plan = plan(name, header)?;
    let length = bytes.len() as u64;
    if plan.data_offset > length {
        return Err(NiftiReadError::InvalidVoxelOffset {
            name: name.to_owned(),
            offset: plan.header.vox_offset,
            reason: "it lies beyond the end of the file",
        });
    }
    let needed = plan.data_offset + plan.data_bytes;
    if length < needed {
        return Err(NiftiReadError::Truncated {
            name: name.to_owned(),
            part: "voxel data",
            length,
            needed,
        });
    }
    let data = &bytes[plan.data_offset as usize..needed as usize];
    finish(name, plan, data, false)
}

fn read_gzip(name: &str, bytes: &[u8]) -> Result<NiftiVolume, NiftiReadError> {
    let gzip_error = |error: std::io::Error| NiftiReadError::Gzip {
        name: name.to_owned(),
        reason: error.to_string(),
    };
    // Several gzip members one after another (bgzip) are one file, as for nibabel.
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes);
    let mut head = Vec::with_capacity(NIFTI2_HEADER_BYTES);
    (&mut decoder)
        .take(NIFTI2_HEADER_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(gzip_error)?;
    let header = parse_header(name, &head, true)?;
    let plan = plan(name, header)?;
    let mut data = Vec::new();
    let head_length = head.len() as u64;
    if plan.data_offset <= head_length {
        data.extend_from_slice(&head[plan.data_offset as usize..]);
    } else {
        let gap = plan.data_offset - head_length;
        let skipped = std::io::copy(&mut (&mut decoder).take(gap), &mut std::io::sink())
            .map_err(gzip_error)?;
        if skipped < gap {
            return Err(NiftiReadError::InvalidVoxelOffset {
                name: name.to_owned(),
                offset: plan.header.vox_offset,
                reason: "it lies beyond the end of the decompressed file",
            });
        }
    }
    // The vector grows with what the stream really yields, so a small file claiming a large
    // volume fails on its length before anything of the claimed size is allocated.
    let wanted = plan.data_bytes.saturating_sub(data.len() as u64);
    (&mut decoder)
        .take(wanted)
        .read_to_end(&mut data)
        .map_err(gzip_error)?;
    if (data.len() as u64) < plan.data_bytes {
        return Err(NiftiReadError::Truncated {
            name: name.to_owned(),
            part: "voxel data after decompression",
            length: plan.data_offset + data.len() as u64,
            needed: plan.data_offset + plan.data_bytes,
        });
    }
    data.truncate(plan.data_bytes as usize);
    // A stream that ends soon after is read to its end so that its checksum is verified;
    // later volumes of a 4D file are not decompressed.
    std::io::copy(
        &mut (&mut decoder).take(GZIP_TRAILING_BYTES),
        &mut std::io::sink(),
    )
    .map_err(gzip_error)?;
    finish(name, plan, &data, true)
}

fn not_nifti(name: &str, reason: impl Into<String>) -> NiftiReadError {
    NiftiReadError::NotNifti {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Finds the version and byte order from `sizeof_hdr`, checks the magic, and reads the header.
fn parse_header(name: &str, head: &[u8], compressed: bool) -> Result<RawHeader, NiftiReadError> {
    let truncated = |needed: usize| NiftiReadError::Truncated {
        name: name.to_owned(),
        part: if compressed {
            "header after decompression"
        } else {
            "header"
        },
        length: head.len() as u64,
        needed: needed as u64,
    };
    let Some(first) = head.get(..4) else {
        return Err(truncated(NIFTI1_HEADER_BYTES));
    };
    let first: [u8; 4] = [first[0], first[1], first[2], first[3]];
    let (little, big) = (i32::from_le_bytes(first), i32::from_be_bytes(first));
    let (version, little_endian) = match (little, big) {
        (348, _) => (NiftiVersion::Nifti1, true),
        (_, 348) => (NiftiVersion::Nifti1, false),
        (540, _) => (NiftiVersion::Nifti2, true),
        (_, 540) => (NiftiVersion::Nifti2, false),
        _ => {
            return Err(not_nifti(
                name,
                format!(
                    "its first four bytes give a header size of {little}, not 348 (NIfTI-1) or 540 (NIfTI-2)"
                ),
            ));
        }
    };
    match version {
        NiftiVersion::Nifti1 => {
            let head = head
                .get(..NIFTI1_HEADER_BYTES)
                .ok_or_else(|| truncated(NIFTI1_HEADER_BYTES))?;
            parse_nifti1(name, head, little_endian)
        }
        NiftiVersion::Nifti2 => {
            let head = head
                .get(..NIFTI2_HEADER_BYTES)
                .ok_or_else(|| truncated(NIFTI2_HEADER_BYTES))?;
            parse_nifti2(name, head, little_endian)
        }
    }
}

fn text_field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_owned()
}

fn parse_nifti1(name: &str, head: &[u8], little_endian: bool) -> Result<RawHeader, NiftiReadError> {
    let single_file = match &head[344..348] {
        b"n+1\0" => true,
        b"ni1\0" => false,
        _ => {
            return Err(not_nifti(
                name,
                "the header size is NIfTI-1's but the magic \"n+1\" is missing (an Analyze 7.5 header?)",
            ));
        }
    };
    let h = nifti::NiftiHeader::from_reader(head).map_err(|e| not_nifti(name, e.to_string()))?;
    // The crate guesses the byte order from dim[0]; when that disagrees with sizeof_hdr,
    // dim[0] is out of range and the fields it read are not meaningful.
    let crate_little = h.endianness == nifti::Endianness::Little;
    if crate_little != little_endian {
        let dim0 = if little_endian {
            i16::from_le_bytes([head[40], head[41]])
        } else {
            i16::from_be_bytes([head[40], head[41]])
        };
        return Err(NiftiReadError::InvalidDimensions {
            name: name.to_owned(),
            dims: vec![i64::from(dim0)],
            reason: "dim[0], the number of dimensions, must be between 1 and 7",
        });
    }
    let f = f64::from;
    Ok(RawHeader {
        version: NiftiVersion::Nifti1,
        little_endian,
        single_file,
        // Dimensions are signed 16-bit in the standard; the crate reads them unsigned.
        dim: h.dim.map(|d| i64::from(d as i16)),
        datatype: h.datatype,
        pixdim: h.pixdim.map(f),
        vox_offset: f(h.vox_offset),
        scl_slope: f(h.scl_slope),
        scl_inter: f(h.scl_inter),
        intent_code: i32::from(h.intent_code),
        description: text_field(&h.descrip),
        qform_code: i32::from(h.qform_code),
        sform_code: i32::from(h.sform_code),
        quatern: [f(h.quatern_b), f(h.quatern_c), f(h.quatern_d)],
        qoffset: [f(h.quatern_x), f(h.quatern_y), f(h.quatern_z)],
        srow: [h.srow_x.map(f), h.srow_y.map(f), h.srow_z.map(f)],
    })
}

/// Fixed-offset fields of a header in a known byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    little_endian: bool,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut array = [0; N];
        array.copy_from_slice(&self.bytes[offset..offset + N]);
        if !self.little_endian {
            array.reverse();
        }
        array
    }

    fn i16(&self, offset: usize) -> i16 {
        i16::from_le_bytes(self.array(offset))
    }

    fn i32(&self, offset: usize) -> i32 {
        i32::from_le_bytes(self.array(offset))
    }

    fn i64(&self, offset: usize) -> i64 {
        i64::from_le_bytes(self.array(offset))
    }

    fn f64(&self, offset: usize) -> f64 {
        f64::from_le_bytes(self.array(offset))
    }

    fn f64s<const N: usize>(&self, offset: usize) -> [f64; N] {
        std::array::from_fn(|i| self.f64(offset + 8 * i))
    }
}

/// The NIfTI-2 header (nifti2.h): the NIfTI-1 fields widened to 64 bits and reordered.
fn parse_nifti2(name: &str, head: &[u8], little_endian: bool) -> Result<RawHeader, NiftiReadError> {
    let single_file = match &head[4..8] {
        b"n+2\0" => true,
        b"ni2\0" => false,
        _ => {
            return Err(not_nifti(
                name,
                "the header size is NIfTI-2's but the magic \"n+2\" is missing",
            ));
        }
    };
    if head[8..12] != NIFTI2_SIGNATURE_TAIL {
        return Err(not_nifti(
            name,
            "the NIfTI-2 signature is damaged (was the file copied as text?)",
        ));
    }
    let fields = Fields {
        bytes: head,
        little_endian,
    };
    let vox_offset = fields.i64(168);
    Ok(RawHeader {
        version: NiftiVersion::Nifti2,
        little_endian,
        single_file,
        dim: std::array::from_fn(|i| fields.i64(16 + 8 * i)),
        datatype: fields.i16(12),
        pixdim: fields.f64s(104),
        // Offsets beyond f64's exact integers are far beyond MAX_VOXEL_OFFSET anyway.
        vox_offset: vox_offset as f64,
        scl_slope: fields.f64(176),
        scl_inter: fields.f64(184),
        intent_code: fields.i32(504),
        description: text_field(&head[240..320]),
        qform_code: fields.i32(344),
        sform_code: fields.i32(348),
        quatern: fields.f64s(352),
        qoffset: fields.f64s(376),
        srow: [fields.f64s(400), fields.f64s(432), fields.f64s(464)],
    })
}

/// Checks dimensions, type, sizes and the voxel offset, all before reading any voxel.
fn plan(name: &str, header: RawHeader) -> Result<Plan, NiftiReadError> {
    if !header.single_file {
        return Err(NiftiReadError::SeparateImageFile {
            name: name.to_owned(),
        });
    }
    let dimensions = header.dim[0];
    let invalid = |reason| NiftiReadError::InvalidDimensions {
        name: name.to_owned(),
        dims: header.dim[..=(dimensions.clamp(0, 7) as usize)].to_vec(),
        reason,
    };
    if !(1..=7).contains(&dimensions) {
        return Err(invalid(
            "dim[0], the number of dimensions, must be between 1 and 7",
        ));
    }
    let used = &header.dim[1..=dimensions as usize];
    if used.iter().any(|&d| d < 1) {
        return Err(invalid("every dimension must be at least 1"));
    }
    let extent = |axis: usize| used.get(axis).map_or(1, |&d| d as u64);
    let (columns, rows, slices) = (extent(0), extent(1), extent(2));
    let datatype = Datatype::of(header.datatype);
    let Some(sample) = datatype.sample else {
        return Err(NiftiReadError::UnsupportedDatatype {
            name: name.to_owned(),
            code: header.datatype,
            datatype: datatype.name,
        });
    };
    let too_large = |bytes: u64| NiftiReadError::TooLarge {
        name: name.to_owned(),
        columns,
        rows,
        slices,
        datatype: datatype.name,
        bytes,
        limit: MAX_PIXEL_BYTES,
    };
    let voxels = columns
        .checked_mul(rows)
        .and_then(|n| n.checked_mul(slices))
        .ok_or_else(|| too_large(u64::MAX))?;
    // The decoded volume is f32 whatever the stored type: bound the larger of the two.
    let bytes = voxels
        .checked_mul(sample.bytes().max(4))
        .ok_or_else(|| too_large(u64::MAX))?;
    if bytes > MAX_PIXEL_BYTES {
        return Err(too_large(bytes));
    }
    if slices > MAX_SLICES {
        return Err(invalid("more than 1048576 slices"));
    }
    let volumes = used
        .iter()
        .skip(3)
        .try_fold(1u64, |product, &d| product.checked_mul(d as u64))
        .filter(|&volumes| voxels.checked_mul(volumes).is_some())
        .ok_or_else(|| invalid("the dimensions multiply to more voxels than can be counted"))?;
    let mut notes = Vec::new();
    let offset = header.vox_offset;
    let bad_offset = |reason| NiftiReadError::InvalidVoxelOffset {
        name: name.to_owned(),
        offset,
        reason,
    };
    if !offset.is_finite() || offset < 0.0 {
        return Err(bad_offset("not a non-negative number"));
    }
    if offset > MAX_VOXEL_OFFSET as f64 {
        return Err(bad_offset(
            "header extensions larger than 256 MiB are not read",
        ));
    }
    // As nibabel does: an offset inside the header of a single file means "right after it".
    let smallest = header.header_bytes() as u64 + 4;
    let mut data_offset = offset as u64;
    if data_offset < smallest {
        notes.push(format!(
            "vox_offset {offset} lies inside the header; the voxels were read from byte {smallest}"
        ));
        data_offset = smallest;
    }
    Ok(Plan {
        sample,
        datatype,
        columns,
        rows,
        slices,
        extra_volumes: usize::try_from(volumes - 1).unwrap_or(usize::MAX),
        data_offset,
        data_bytes: voxels * sample.bytes(),
        notes,
        header,
    })
}

fn finish(
    name: &str,
    plan: Plan,
    data: &[u8],
    compressed: bool,
) -> Result<NiftiVolume, NiftiReadError> {
    let Plan {
        header,
        sample,
        datatype,
        columns,
        rows,
        slices,
        extra_volumes,
        mut notes,
        ..
    } = plan;
    // nibabel's rule: a zero or non-finite slope means the values are not scaled.
    let (slope, intercept) = if header.scl_slope == 0.0 || !header.scl_slope.is_finite() {
        (1.0, 0.0)
    } else if !header.scl_inter.is_finite() {
        return Err(NiftiReadError::InvalidScaling {
            name: name.to_owned(),
            reason: format!(
                "scl_slope is {} but scl_inter is {}",
                header.scl_slope, header.scl_inter
            ),
        });
    } else {
        (header.scl_slope, header.scl_inter)
    };
    let (affine, affine_source, geometry, reversed) =
        orientation(name, &header, columns, rows, slices, &mut notes)?;
    let mut voxels = decode(data, sample, header.little_endian, slope, intercept);
    let (columns, rows, slices) = (columns as usize, rows as usize, slices as usize);
    flip_rows(&mut voxels, columns, rows);
    if reversed {
        reverse_slices(&mut voxels, columns * rows, slices);
    }
    if extra_volumes > 0 {
        notes.push(format!(
            "only the first volume is read; {extra_volumes} more follow in the file"
        ));
    }
    Ok(NiftiVolume {
        volume: Volume { geometry, voxels },
        version: header.version,
        compressed,
        big_endian: !header.little_endian,
        datatype: datatype.name,
        datatype_code: header.datatype,
        dims: header.dim[1..=header.dim[0] as usize].to_vec(),
        intent_code: header.intent_code,
        description: header.description,
        integer_values: sample.integer() && slope.fract() == 0.0 && intercept.fract() == 0.0,
        scale_slope: slope,
        scale_intercept: intercept,
        extra_volumes,
        affine,
        affine_source,
        notes,
    })
}

/// Stored samples to scaled f32, in file order. `data` holds exactly the samples needed.
fn decode(
    data: &[u8],
    sample: SampleType,
    little_endian: bool,
    slope: f64,
    intercept: f64,
) -> Vec<f32> {
    macro_rules! convert {
        ($type:ty) => {{
            const SIZE: usize = std::mem::size_of::<$type>();
            data.chunks_exact(SIZE)
                .map(|chunk| {
                    let mut raw = [0u8; SIZE];
                    raw.copy_from_slice(chunk);
                    let value = if little_endian {
                        <$type>::from_le_bytes(raw)
                    } else {
                        <$type>::from_be_bytes(raw)
                    };
                    (value as f64 * slope + intercept) as f32
                })
                .collect()
        }};
    }
    match sample {
        SampleType::U8 => convert!(u8),
        SampleType::I8 => convert!(i8),
        SampleType::I16 => convert!(i16),
        SampleType::U16 => convert!(u16),
        SampleType::I32 => convert!(i32),
        SampleType::U32 => convert!(u32),
        SampleType::I64 => convert!(i64),
        SampleType::U64 => convert!(u64),
        SampleType::F32 => convert!(f32),
        SampleType::F64 => convert!(f64),
    }
}

/// NIfTI's first row `j = 0` is the volume's last row: see [`crate::nifti_export::affine`].
fn flip_rows(voxels: &mut [f32], columns: usize, rows: usize) {
    let slice_length = columns * rows;
    if slice_length == 0 {
        return;
    }
    for slice in voxels.chunks_exact_mut(slice_length) {
        for row in 0..rows / 2 {
            let (top, bottom) = slice.split_at_mut((rows - 1 - row) * columns);
            top[row * columns..(row + 1) * columns].swap_with_slice(&mut bottom[..columns]);
        }
    }
}

fn reverse_slices(voxels: &mut [f32], slice_length: usize, slices: usize) {
    for slice in 0..slices / 2 {
        let (front, back) = voxels.split_at_mut((slices - 1 - slice) * slice_length);
        front[slice * slice_length..(slice + 1) * slice_length]
            .swap_with_slice(&mut back[..slice_length]);
    }
}

type Oriented = (Affine, AffineSource, StackGeometry, bool);

/// The sform when it is set and usable, else the qform, else the voxel size alone.
fn orientation(
    name: &str,
    header: &RawHeader,
    columns: u64,
    rows: u64,
    slices: u64,
    notes: &mut Vec<String>,
) -> Result<Oriented, NiftiReadError> {
    let stack =
        |affine: Affine| stack_geometry(&affine, columns, rows, slices).map(|g| (affine, g));
    let mut failure: Option<(AffineSource, String)> = None;
    if header.sform_code > 0 {
        match sform_affine(header).and_then(stack) {
            Ok((affine, (geometry, reversed))) => {
                return Ok((affine, AffineSource::Sform, geometry, reversed));
            }
            Err(reason) => failure = Some((AffineSource::Sform, reason)),
        }
    }
    if header.qform_code > 0 {
        match qform_affine(header).and_then(stack) {
            Ok((affine, (geometry, reversed))) => {
                if let Some((_, reason)) = &failure {
                    notes.push(format!(
                        "the sform is not used ({reason}); the orientation comes from the qform"
                    ));
                }
                return Ok((affine, AffineSource::Qform, geometry, reversed));
            }
            Err(reason) => {
                failure.get_or_insert((AffineSource::Qform, reason));
            }
        }
    }
    if let Some((transform, reason)) = failure {
        return Err(NiftiReadError::InvalidOrientation {
            name: name.to_owned(),
            transform,
            reason,
        });
    }
    let (affine, (geometry, reversed)) =
        voxel_size_affine(header)
            .and_then(stack)
            .map_err(|reason| NiftiReadError::InvalidOrientation {
                name: name.to_owned(),
                transform: AffineSource::VoxelSize,
                reason,
            })?;
    notes.push(
        "the header has no orientation (qform and sform codes are 0): the axes are taken as the scanner's"
            .into(),
    );
    Ok((affine, AffineSource::VoxelSize, geometry, reversed))
}

fn finite(values: &[f64], what: &str) -> Result<(), String> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(format!(
            "the {what} holds a value that is not a finite number"
        ))
    }
}

fn sform_affine(header: &RawHeader) -> Result<Affine, String> {
    finite(header.srow.as_flattened(), "sform")?;
    Ok(header.srow)
}

/// The voxel size along one axis from pixdim: negative sizes are taken as positive.
fn voxel_size(header: &RawHeader, axis: usize) -> Result<f64, String> {
    let size = header.pixdim[axis];
    if !size.is_finite() {
        return Err(format!("pixdim[{axis}] is not a finite number"));
    }
    if size.abs() < SMALLEST_VOXEL_MM {
        return Err(format!("pixdim[{axis}], the voxel size, is zero"));
    }
    Ok(size.abs())
}

/// The qform as NIfTI's reference `nifti_quatern_to_mat44` computes it.
fn qform_affine(header: &RawHeader) -> Result<Affine, String> {
    finite(&header.quatern, "qform quaternion")?;
    finite(&header.qoffset, "qform offset")?;
    let [mut b, mut c, mut d] = header.quatern;
    let mut a = 1.0 - (b * b + c * c + d * d);
    if a < 1e-7 {
        // Not a unit quaternion: normalise (b, c, d), a 180° rotation.
        let length = (b * b + c * c + d * d).sqrt();
        if length == 0.0 {
            return Err("the qform quaternion is zero".into());
        }
        (b, c, d) = (b / length, c / length, d / length);
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let sizes = [
        voxel_size(header, 1)?,
        voxel_size(header, 2)?,
        voxel_size(header, 3)?,
    ];
    let qfac = if header.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let rotation = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let scale = [sizes[0], sizes[1], sizes[2] * qfac];
    Ok(std::array::from_fn(|row| {
        [
            rotation[row][0] * scale[0],
            rotation[row][1] * scale[1],
            rotation[row][2] * scale[2],
            header.qoffset[row],
        ]
    }))
}

/// NIfTI's "method 1", for headers with neither transform: voxel sizes along the axes.
fn voxel_size_affine(header: &RawHeader) -> Result<Affine, String> {
    let sizes = [
        voxel_size(header, 1)?,
        voxel_size(header, 2)?,
        voxel_size(header, 3)?,
    ];
    Ok(std::array::from_fn(|row| {
        let mut line = [0.0; 4];
        line[row] = sizes[row];
        line
    }))
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// The inverse of [`crate::nifti_export::affine`]: RAS to LPS (x and y negated), the
/// volume's rows running against NIfTI's `j`, and its slices along `row × column`
/// (reversed, the `bool`, when the affine's third axis points the other way).
fn stack_geometry(
    affine: &Affine,
    columns: u64,
    rows: u64,
    slices: u64,
) -> Result<(StackGeometry, bool), String> {
    let lps = |axis: usize, row: usize| {
        let sign = if row < 2 { -1.0 } else { 1.0 };
        sign * affine[row][axis]
    };
    let column_of = |axis: usize| [lps(axis, 0), lps(axis, 1), lps(axis, 2)];
    let steps = [column_of(0), column_of(1), column_of(2)];
    let translation = column_of(3);
    let mut spacing_mm = [0.0; 3];
    let mut units = [[0.0; 3]; 3];
    for axis in 0..3 {
        let length = dot(steps[axis], steps[axis]).sqrt();
        if !length.is_finite() || length < SMALLEST_VOXEL_MM {
            return Err(format!("voxel axis {} has zero length", axis + 1));
        }
        spacing_mm[axis] = length;
        units[axis] = steps[axis].map(|v| v / length);
    }
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        if dot(units[a], units[b]).abs() > ORTHOGONALITY_TOLERANCE {
            return Err(format!(
                "voxel axes {} and {} are not perpendicular (a sheared affine)",
                a + 1,
                b + 1
            ));
        }
    }
    let row_direction = units[0];
    let column_direction = units[1].map(|v| -v);
    let normal = cross(row_direction, column_direction);
    let length = dot(normal, normal).sqrt();
    let normal = normal.map(|v| v / length);
    let reversed = dot(units[2], normal) < 0.0;
    let last_row = (rows - 1) as f64;
    let last_slice = (slices - 1) as f64;
    let origin_mm: [f64; 3] = std::array::from_fn(|a| {
        let first_row = translation[a] + last_row * steps[1][a];
        if reversed {
            first_row + last_slice * steps[2][a]
        } else {
            first_row
        }
    });
    let order: Vec<usize> = if reversed {
        (0..slices as usize).rev().collect()
    } else {
        (0..slices as usize).collect()
    };
    Ok((
        StackGeometry {
            order,
            rows: rows as u32,
            columns: columns as u32,
            row_direction,
            column_direction,
            normal,
            spacing_mm,
            origin_mm,
        },
        reversed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_with(dims: &[i16]) -> Vec<u8> {
        let mut header = vec![0u8; 352];
        header[..4].copy_from_slice(&348i32.to_le_bytes());
        for (i, d) in dims.iter().enumerate() {
            header[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        header[70..72].copy_from_slice(&4i16.to_le_bytes());
        for axis in 1..4 {
            header[76 + 4 * axis..80 + 4 * axis].copy_from_slice(&1f32.to_le_bytes());
        }
        header[108..112].copy_from_slice(&352f32.to_le_bytes());
        header[344..348].copy_from_slice(b"n+1\0");
        header
    }

    #[test]
    fn a_header_without_orientation_uses_the_voxel_size() {
        let mut file = header_with(&[3, 2, 2, 1]);
        file.extend([1i16, 2, 3, 4].iter().flat_map(|v| v.to_le_bytes()));
        let read = read_bytes("plain.nii", &file).unwrap();
        assert_eq!(read.affine_source, AffineSource::VoxelSize);
        // Rows flipped: NIfTI row j = 1 is the volume's first row.
        assert_eq!(read.volume.voxels, vec![3.0, 4.0, 1.0, 2.0]);
        assert!(read.integer_values);
    }

    #[test]
    fn negative_dimensions_are_refused_naming_them() {
        let file = header_with(&[3, 2, -2, 1]);
        let error = read_bytes("negative.nii", &file).unwrap_err();
        assert!(
            matches!(error, NiftiReadError::InvalidDimensions { ref dims, .. } if dims == &[3, 2, -2, 1]),
            "{error}"
        );
    }

    #[test]
    fn rows_and_slices_flip_in_place() {
        let mut voxels: Vec<f32> = (0..12).map(|v| v as f32).collect();
        flip_rows(&mut voxels, 2, 3);
        assert_eq!(voxels[..6], [4.0, 5.0, 2.0, 3.0, 0.0, 1.0]);
        reverse_slices(&mut voxels, 6, 2);
        assert_eq!(voxels[..6], [10.0, 11.0, 8.0, 9.0, 6.0, 7.0]);
    }
}
