//! Writing a volume as NIfTI-1 (`.nii`, `.nii.gz`) with the voxel order and the affine
//! (qform and sform) that dcm2niix writes for the same series.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::volume::Volume;

/// Why a volume could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NiftiExportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volume of {columns}x{rows}x{slices} voxels does not fit a NIfTI-1 header")]
    TooLarge {
        columns: usize,
        rows: usize,
        slices: usize,
    },
}

/// Voxel-to-world matrix, NIfTI RAS millimetres, rows of `[x y z translation]`.
pub type Affine = [[f64; 4]; 3];

/// The affine dcm2niix writes: DICOM's LPS turned into RAS (x and y negated), with the
/// rows of each slice flipped so that the first voxel is the last stored row.
pub fn affine(volume: &Volume) -> Affine {
    let g = &volume.geometry;
    let step_i = g.row_direction.map(|v| v * g.spacing_mm[0]);
    let step_j = g.column_direction.map(|v| v * g.spacing_mm[1]);
    let step_k = g.normal.map(|v| v * g.spacing_mm[2]);
    let last_row = f64::from(g.rows.saturating_sub(1));
    let origin: [f64; 3] = std::array::from_fn(|a| g.origin_mm[a] + last_row * step_j[a]);
    let mut affine = [[0.0; 4]; 3];
    for axis in 0..3 {
        let sign = if axis < 2 { -1.0 } else { 1.0 };
        affine[axis] = [
            sign * step_i[axis],
            -sign * step_j[axis],
            sign * step_k[axis],
            sign * origin[axis],
        ];
    }
    affine
}

/// Writes `volume` to `path`, gzip-compressed when the name ends in `.gz`.
pub fn write(volume: &Volume, path: &Path) -> Result<(), NiftiExportError> {
    let io = |source| NiftiExportError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = encode(volume)?;
    let mut file = std::fs::File::create(path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        encoder.write_all(&bytes).map_err(io)?;
        encoder.finish().map_err(io)?.flush().map_err(io)
    } else {
        file.write_all(&bytes).map_err(io)?;
        file.flush().map_err(io)
    }
}

/// The whole `.nii` file in memory: header, empty extension, voxels.
pub fn encode(volume: &Volume) -> Result<Vec<u8>, NiftiExportError> {
    let g = &volume.geometry;
    let (columns, rows, slices) = (g.columns as usize, g.rows as usize, volume.slices());
    if [columns, rows, slices]
        .iter()
        .any(|&n| n > i16::MAX as usize)
    {
        return Err(NiftiExportError::TooLarge {
            columns,
            rows,
            slices,
        });
    }
    // Integers that fit are stored as int16 like dcm2niix does for CT and MR; anything
    // else as float32 so that no value is rounded.
    let as_int16 = volume
        .voxels
        .iter()
        .all(|v| v.fract() == 0.0 && (i16::MIN as f32..=i16::MAX as f32).contains(v));
    let affine = affine(volume);
    let mut header = Vec::with_capacity(352);
    header.extend_from_slice(&348i32.to_le_bytes());
    header.extend_from_slice(&[0u8; 10 + 18]); // data_type, db_name: unused
    header.extend_from_slice(&0i32.to_le_bytes()); // extents
    header.extend_from_slice(&0i16.to_le_bytes()); // session_error
    header.push(b'r'); // regular
    header.push(0); // dim_info
    for dim in [3, columns, rows, slices, 1, 1, 1, 1] {
        header.extend_from_slice(&(dim as i16).to_le_bytes());
    }
    header.extend_from_slice(&[0u8; 12]); // intent_p1..p3
    header.extend_from_slice(&0i16.to_le_bytes()); // intent_code
    let (datatype, bitpix): (i16, i16) = if as_int16 { (4, 16) } else { (16, 32) };
    header.extend_from_slice(&datatype.to_le_bytes());
    header.extend_from_slice(&bitpix.to_le_bytes());
    header.extend_from_slice(&0i16.to_le_bytes()); // slice_start
    let (quaternion, offset, qfac) = quaternion(&affine, g.spacing_mm);
    for pixdim in [
        qfac,
        g.spacing_mm[0],
        g.spacing_mm[1],
        g.spacing_mm[2],
        0.0,
        0.0,
        0.0,
        0.0,
    ] {
        header.extend_from_slice(&(pixdim as f32).to_le_bytes());
    }
    header.extend_from_slice(&352f32.to_le_bytes()); // vox_offset
    header.extend_from_slice(&1f32.to_le_bytes()); // scl_slope
    header.extend_from_slice(&0f32.to_le_bytes()); // scl_inter
    header.extend_from_slice(&0i16.to_le_bytes()); // slice_end
    header.push(0); // slice_code
    header.push(2); // xyzt_units: millimetres
    header.extend_from_slice(&[0u8; 16]); // cal_max, cal_min, slice_duration, toffset
    header.extend_from_slice(&[0u8; 8]); // glmax, glmin
    let mut description = [0u8; 80];
    let text = b"voxhub";
    description[..text.len()].copy_from_slice(text);
    header.extend_from_slice(&description);
    header.extend_from_slice(&[0u8; 24]); // aux_file
    header.extend_from_slice(&1i16.to_le_bytes()); // qform_code: scanner anatomical
    header.extend_from_slice(&1i16.to_le_bytes()); // sform_code: scanner anatomical
    for value in quaternion.into_iter().chain(offset) {
        header.extend_from_slice(&(value as f32).to_le_bytes());
    }
    for row in affine {
        for value in row {
            header.extend_from_slice(&(value as f32).to_le_bytes());
        }
    }
    header.extend_from_slice(&[0u8; 16]); // intent_name
    header.extend_from_slice(b"n+1\0");
    debug_assert_eq!(header.len(), 348);
    header.extend_from_slice(&[0u8; 4]); // no extensions
    let mut bytes = header;
    bytes.reserve(volume.voxels.len() * if as_int16 { 2 } else { 4 });
    for slice in 0..slices {
        // NIfTI's first row is DICOM's last: see `affine`.
        for row in (0..rows).rev() {
            let start = (slice * rows + row) * columns;
            for &value in &volume.voxels[start..start + columns] {
                if as_int16 {
                    bytes.extend_from_slice(&(value as i16).to_le_bytes());
                } else {
                    bytes.extend_from_slice(&value.to_le_bytes());
                }
            }
        }
    }
    Ok(bytes)
}

/// The qform quaternion (b, c, d), offset and qfac of an affine, as NIfTI's reference
/// `nifti_mat44_to_quatern` computes them.
fn quaternion(affine: &Affine, spacing_mm: [f64; 3]) -> ([f64; 3], [f64; 3], f64) {
    let mut r = [[0.0; 3]; 3];
    for (row, affine_row) in affine.iter().enumerate() {
        for column in 0..3 {
            r[row][column] = affine_row[column] / spacing_mm[column];
        }
    }
    let determinant = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if determinant < 0.0 { -1.0 } else { 1.0 };
    if qfac < 0.0 {
        for row in &mut r {
            row[2] = -row[2];
        }
    }
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    // NIfTI stores only b, c and d; a follows from them.
    let (b, c, d);
    if trace > 0.5 {
        let a2 = 0.5 * trace.sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a2;
        c = 0.25 * (r[0][2] - r[2][0]) / a2;
        d = 0.25 * (r[1][0] - r[0][1]) / a2;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        let (qa, mut qb, mut qc, mut qd);
        if xd > 1.0 {
            qb = 0.5 * xd.sqrt();
            qc = 0.25 * (r[0][1] + r[1][0]) / qb;
            qd = 0.25 * (r[0][2] + r[2][0]) / qb;
            qa = 0.25 * (r[2][1] - r[1][2]) / qb;
        } else if yd > 1.0 {
            qc = 0.5 * yd.sqrt();
            qb = 0.25 * (r[0][1] + r[1][0]) / qc;
            qd = 0.25 * (r[1][2] + r[2][1]) / qc;
            qa = 0.25 * (r[0][2] - r[2][0]) / qc;
        } else {
            qd = 0.5 * zd.sqrt();
            qb = 0.25 * (r[0][2] + r[2][0]) / qd;
            qc = 0.25 * (r[1][2] + r[2][1]) / qd;
            qa = 0.25 * (r[1][0] - r[0][1]) / qd;
        }
        // The quaternion's sign is free; NIfTI stores the one with a non-negative a.
        if qa < 0.0 {
            qb = -qb;
            qc = -qc;
            qd = -qd;
        }
        b = qb;
        c = qc;
        d = qd;
    }

    ([b, c, d], [affine[0][3], affine[1][3], affine[2][3]], qfac)
}
