//! The non-DICOM formats: NIfTI reading checked against our own export (round trips), against
//! nibabel on its bundled test files and against dcm2niix's output; PNG and JPEG decoding
//! (JPEG against Pillow where installed); sniffing real files; zip expansion with hostile
//! entries. Every hostile input must give a typed error or a skip reason, quickly.

mod common;

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use voxhub_imaging::archive::{self, ArchiveError, ArchiveLimits, ExpandError, SkipReason};
use voxhub_imaging::nifti_read::{self, AffineSource, NiftiReadError, NiftiVersion};
use voxhub_imaging::raster::{self, RasterError};
use voxhub_imaging::sniff::{self, FileKind};
use voxhub_imaging::volume::{StackGeometry, Volume};
use voxhub_imaging::{dicom, nifti_export, volume};

// ---------------------------------------------------------------------------------------
// NIfTI: round trips through our own export

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// A volume whose values depend on all three indices, so that any flip shows.
fn synthetic_volume(row_direction: [f64; 3], column_direction: [f64; 3], integral: bool) -> Volume {
    let (columns, rows, slices) = (7u32, 5u32, 4usize);
    let geometry = StackGeometry {
        order: (0..slices).collect(),
        rows,
        columns,
        row_direction,
        column_direction,
        normal: cross(row_direction, column_direction),
        spacing_mm: [0.7, 0.9, 2.5],
        origin_mm: [-41.5, 17.25, 63.0],
    };
    let voxels = (0..slices * rows as usize * columns as usize)
        .map(|i| {
            let value = (i * 37 % 1001) as f32 - 500.0;
            if integral {
                value
            } else {
                value * 0.37 + 0.125
            }
        })
        .collect();
    Volume { geometry, voxels }
}

fn oblique_directions() -> ([f64; 3], [f64; 3]) {
    let (c, s) = (20f64.to_radians().cos(), 20f64.to_radians().sin());
    let (c2, s2) = (15f64.to_radians().cos(), 15f64.to_radians().sin());
    ([c, s, 0.0], [-s * c2, c * c2, s2])
}

fn assert_same_geometry(ours: &StackGeometry, expected: &StackGeometry, tolerance: f64) {
    assert_eq!((ours.rows, ours.columns), (expected.rows, expected.columns));
    assert_eq!(ours.order.len(), expected.order.len());
    let close = |a: &[f64], b: &[f64], what: &str| {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= tolerance,
                "{what}: {a:?} vs {b:?} (tolerance {tolerance})"
            );
        }
    };
    close(
        &ours.row_direction,
        &expected.row_direction,
        "row direction",
    );
    close(
        &ours.column_direction,
        &expected.column_direction,
        "column direction",
    );
    close(&ours.normal, &expected.normal, "normal");
    close(&ours.spacing_mm, &expected.spacing_mm, "spacing");
    close(&ours.origin_mm, &expected.origin_mm, "origin");
}

fn round_trip(volume: &Volume) {
    let bytes = nifti_export::encode(volume).unwrap();
    let read = nifti_read::read_bytes("round.nii", &bytes).unwrap();
    assert_eq!(read.affine_source, AffineSource::Sform);
    assert_eq!(read.version, NiftiVersion::Nifti1);
    assert_eq!(read.description, "voxhub");
    assert_eq!(read.extra_volumes, 0);
    assert_same_geometry(&read.volume.geometry, &volume.geometry, 1e-4);
    assert_eq!(read.volume.geometry.order, volume.geometry.order);
    assert_eq!(read.volume.voxels, volume.voxels);

    // The same through gzip, as a file written by the exporter.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round.nii.gz");
    nifti_export::write(volume, &path).unwrap();
    let compressed = std::fs::read(&path).unwrap();
    let read = nifti_read::read_bytes("round.nii.gz", &compressed).unwrap();
    assert!(read.compressed);
    assert_same_geometry(&read.volume.geometry, &volume.geometry, 1e-4);
    assert_eq!(read.volume.voxels, volume.voxels);
}

#[test]
fn axial_export_reads_back_identically() {
    let volume = synthetic_volume([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], true);
    round_trip(&volume);
    let read = nifti_read::read_bytes("a.nii", &nifti_export::encode(&volume).unwrap()).unwrap();
    assert_eq!(read.datatype, "int16");
    assert!(read.integer_values);
}

#[test]
fn oblique_export_reads_back_identically() {
    let (row, column) = oblique_directions();
    round_trip(&synthetic_volume(row, column, true));
    let fractional = synthetic_volume(row, column, false);
    round_trip(&fractional);
    let read =
        nifti_read::read_bytes("f.nii", &nifti_export::encode(&fractional).unwrap()).unwrap();
    assert_eq!(read.datatype, "float32");
    assert!(!read.integer_values);
}

/// Offsets of NIfTI-1 header fields used to alter exported files.
const SFORM_CODE: usize = 254;
const SROW_X: usize = 280;
const PIXDIM: usize = 76;
const VOX_OFFSET: usize = 108;
const DATATYPE: usize = 70;
const DIM: usize = 40;

fn put_f32(bytes: &mut [u8], offset: usize, value: f32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_i16(bytes: &mut [u8], offset: usize, value: i16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn the_qform_alone_gives_the_same_geometry() {
    let (row, column) = oblique_directions();
    let volume = synthetic_volume(row, column, true);
    let mut bytes = nifti_export::encode(&volume).unwrap();
    put_i16(&mut bytes, SFORM_CODE, 0);
    let read = nifti_read::read_bytes("q.nii", &bytes).unwrap();
    assert_eq!(read.affine_source, AffineSource::Qform);
    assert_same_geometry(&read.volume.geometry, &volume.geometry, 1e-4);
    assert_eq!(read.volume.voxels, volume.voxels);
}

#[test]
fn a_third_axis_against_the_normal_reverses_the_slices() {
    let (row, column) = oblique_directions();
    let volume = synthetic_volume(row, column, false);
    let mut bytes = nifti_export::encode(&volume).unwrap();
    // Same voxels in space, written with the slices in the opposite order: the third
    // column of the sform negated and the translation moved to the last slice.
    let slices = volume.slices();
    let slice_bytes = volume.geometry.rows as usize * volume.geometry.columns as usize * 4;
    let read_f32 =
        |bytes: &[u8], at: usize| f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    for axis in 0..3 {
        let row_start = SROW_X + 16 * axis;
        let step = read_f32(&bytes, row_start + 8);
        let translation = read_f32(&bytes, row_start + 12);
        put_f32(&mut bytes, row_start + 8, -step);
        put_f32(
            &mut bytes,
            row_start + 12,
            translation + (slices - 1) as f32 * step,
        );
    }
    put_i16(&mut bytes, 252, 0); // the qform would disagree
    let data: Vec<u8> = bytes[352..].to_vec();
    for (k, slice) in data.chunks_exact(slice_bytes).rev().enumerate() {
        bytes[352 + k * slice_bytes..352 + (k + 1) * slice_bytes].copy_from_slice(slice);
    }
    let read = nifti_read::read_bytes("reversed.nii", &bytes).unwrap();
    assert_same_geometry(&read.volume.geometry, &volume.geometry, 1e-4);
    assert_eq!(
        read.volume.geometry.order,
        (0..slices).rev().collect::<Vec<_>>()
    );
    assert_eq!(read.volume.voxels, volume.voxels);
}

// ---------------------------------------------------------------------------------------
// NIfTI: nibabel's test files

fn nibabel_test_data() -> Option<PathBuf> {
    let lib = Path::new(common::VENV).join("lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|entry| {
        let folder = entry.path().join("site-packages/nibabel/tests/data");
        folder.is_dir().then_some(folder)
    })
}

/// nibabel's view of a file: its JSON report and the first volume in NIfTI order.
fn nibabel_reference(python: &Path, file: &Path) -> (serde_json::Value, Vec<f64>) {
    let voxels = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(python)
        .arg(common::helper("nifti_reference.py"))
        .arg(file)
        .arg(voxels.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let values = std::fs::read(voxels.path())
        .unwrap()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (report, values)
}

/// The value of NIfTI voxel (i, j, k) in a volume read by [`nifti_read`].
fn at(read: &nifti_read::NiftiVolume, i: usize, j: usize, k: usize) -> f32 {
    let g = &read.volume.geometry;
    let (columns, rows) = (g.columns as usize, g.rows as usize);
    let slice = g.order.iter().position(|&o| o == k).unwrap();
    read.volume.voxels[(slice * rows + (rows - 1 - j)) * columns + i]
}

#[test]
fn nibabel_test_files_read_as_nibabel_reads_them() {
    let test = "nibabel_test_files_read_as_nibabel_reads_them";
    let (Some(python), Some(data)) = (common::venv_python(), nibabel_test_data()) else {
        common::skip(test, "the nibabel venv is missing");
        return;
    };
    let names = [
        "anatomical.nii",
        "functional.nii",
        "example4d.nii.gz",
        "example_nifti2.nii.gz",
        "reoriented_anat_moved.nii",
        "resampled_anat_moved.nii",
        "standard.nii.gz",
        "row_major.dconn.nii",
    ];
    for name in names {
        let path = data.join(name);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(sniff::kind(name, &bytes), FileKind::Nifti, "{name}");
        let read =
            nifti_read::read_bytes(name, &bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let (report, values) = nibabel_reference(&python, &path);
        let version = if read.version == NiftiVersion::Nifti2 {
            2
        } else {
            1
        };
        assert_eq!(report["version"], version, "{name}");
        let shape: Vec<i64> = report["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        // nibabel drops trailing dimensions of 1 from the shape.
        assert!(
            read.dims.starts_with(&shape),
            "{name}: {:?} vs {shape:?}",
            read.dims
        );
        let volumes: i64 = shape.iter().skip(3).product();
        assert_eq!(read.extra_volumes as i64, volumes.max(1) - 1, "{name}");

        let g = &read.volume.geometry;
        let (columns, rows, slices) = (g.columns as usize, g.rows as usize, g.order.len());
        assert_eq!(values.len(), columns * rows * slices, "{name}");
        for k in 0..slices {
            for j in 0..rows {
                for i in 0..columns {
                    let expected = values[i + columns * (j + rows * k)];
                    let ours = f64::from(at(&read, i, j, k));
                    assert!(
                        (ours - expected).abs() <= 1e-6 * expected.abs().max(1.0)
                            || (ours.is_nan() && expected.is_nan()),
                        "{name} voxel ({i},{j},{k}): {ours} vs nibabel {expected}"
                    );
                }
            }
        }

        let oriented =
            report["sform_code"].as_i64() > Some(0) || report["qform_code"].as_i64() > Some(0);
        if oriented {
            let affine = report["affine"].as_array().unwrap();
            for (row, expected_row) in affine.iter().enumerate() {
                for (column, expected) in expected_row.as_array().unwrap().iter().enumerate() {
                    let expected = expected.as_f64().unwrap();
                    assert!(
                        (read.affine[row][column] - expected).abs() < 1e-4,
                        "{name}: affine {:?} vs nibabel {affine:?}",
                        read.affine
                    );
                }
            }
            // The geometry must be the affine seen from DICOM: voxel (i, j, k) lands where
            // the affine puts it, in LPS.
            let corner = [columns - 1, rows - 1, slices - 1];
            let ras: Vec<f64> = (0..3)
                .map(|a| {
                    read.affine[a][3]
                        + (0..3)
                            .map(|b| read.affine[a][b] * corner[b] as f64)
                            .sum::<f64>()
                })
                .collect();
            let slice = g.order.iter().position(|&o| o == corner[2]).unwrap() as f64;
            let row = (rows - 1 - corner[1]) as f64;
            let lps: Vec<f64> = (0..3)
                .map(|a| {
                    g.origin_mm[a]
                        + corner[0] as f64 * g.spacing_mm[0] * g.row_direction[a]
                        + row * g.spacing_mm[1] * g.column_direction[a]
                        + slice * g.spacing_mm[2] * g.normal[a]
                })
                .collect();
            assert!(
                (lps[0] + ras[0]).abs() < 1e-3
                    && (lps[1] + ras[1]).abs() < 1e-3
                    && (lps[2] - ras[2]).abs() < 1e-3,
                "{name}: corner at LPS {lps:?}, affine says RAS {ras:?}"
            );
        } else {
            assert_eq!(read.affine_source, AffineSource::VoxelSize, "{name}");
        }
    }
}

#[test]
fn separate_header_files_and_analyze_are_refused_with_a_reason() {
    let test = "separate_header_files_and_analyze_are_refused_with_a_reason";
    let Some(data) = nibabel_test_data() else {
        common::skip(test, "the nibabel venv is missing");
        return;
    };
    for name in ["nifti1.hdr", "nifti2.hdr"] {
        let bytes = std::fs::read(data.join(name)).unwrap();
        let error = nifti_read::read_bytes(name, &bytes).unwrap_err();
        assert!(
            matches!(error, NiftiReadError::SeparateImageFile { .. }),
            "{name}: {error}"
        );
        assert!(error.to_string().contains("upload one .nii"), "{error}");
    }
    let bytes = std::fs::read(data.join("analyze.hdr")).unwrap();
    let error = nifti_read::read_bytes("analyze.hdr", &bytes).unwrap_err();
    assert!(matches!(error, NiftiReadError::NotNifti { .. }), "{error}");
    assert!(error.to_string().contains("Analyze"), "{error}");
}

// ---------------------------------------------------------------------------------------
// NIfTI: dcm2niix's output reads back to the DICOM series' volume

fn write_ct_series(dir: &Path, orientation: [f64; 6], spacing_mm: f64) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let (rows, columns, slices) = (24u16, 20u16, 9usize);
    let row = [orientation[0], orientation[1], orientation[2]];
    let column = [orientation[3], orientation[4], orientation[5]];
    let normal = cross(row, column);
    for slice in 0..slices {
        let position: Vec<String> = (0..3)
            .map(|a| {
                format!(
                    "{:.6}",
                    -30.0 + 7.5 * a as f64 + slice as f64 * spacing_mm * normal[a]
                )
            })
            .collect();
        let orientation_text: Vec<String> = orientation.iter().map(|v| format!("{v:.6}")).collect();
        let pixels: Vec<u16> = (0..rows as usize * columns as usize)
            .map(|i| {
                ((i / columns as usize) * 31 + (i % columns as usize) * 7 + slice * 101) as u16
            })
            .collect();
        let object = InMemDicomObject::from_element_iter([
            text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
            text(tags::SOP_INSTANCE_UID, VR::UI, &format!("2.25.77.{slice}")),
            text(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.76"),
            text(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.75"),
            text(tags::MODALITY, VR::CS, "CT"),
            text(tags::PATIENT_NAME, VR::PN, "Phantom"),
            text(tags::PATIENT_ID, VR::LO, "phantom"),
            text(tags::SERIES_NUMBER, VR::IS, "1"),
            text(tags::INSTANCE_NUMBER, VR::IS, &(slice + 1).to_string()),
            text(tags::IMAGE_POSITION_PATIENT, VR::DS, &position.join("\\")),
            text(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                &orientation_text.join("\\"),
            ),
            text(tags::PIXEL_SPACING, VR::DS, "0.8\\0.6"),
            text(tags::SLICE_THICKNESS, VR::DS, "2"),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
            text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(columns)),
            DataElement::new(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16)),
            DataElement::new(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16)),
            DataElement::new(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16)),
            DataElement::new(
                tags::PIXEL_REPRESENTATION,
                VR::US,
                PrimitiveValue::from(0u16),
            ),
            text(tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
            text(tags::RESCALE_SLOPE, VR::DS, "1"),
            DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
        ]);
        object
            .with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1"))
            .unwrap()
            .write_to_file(dir.join(format!("{slice:03}.dcm")))
            .unwrap();
    }
}

fn check_dcm2niix_output(test: &str, orientation: [f64; 6], compress: bool) {
    let Some(dcm2niix) = common::which("dcm2niix") else {
        common::skip(test, "dcm2niix is missing");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (input, output) = (work.path().join("in"), work.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    write_ct_series(&input, orientation, 2.0);
    let mut images: Vec<dicom::DicomImage> = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| dicom::read_file(e.unwrap().path()).unwrap())
        .collect();
    images.sort_by(|a, b| a.path.cmp(&b.path));
    let expected = volume::assemble(&images).unwrap();

    let run = Command::new(dcm2niix)
        .args([
            "-z",
            if compress { "y" } else { "n" },
            "-f",
            "reference",
            "-o",
        ])
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let name = if compress {
        "reference.nii.gz"
    } else {
        "reference.nii"
    };
    let bytes = std::fs::read(output.join(name)).unwrap();
    let read = nifti_read::read_bytes(name, &bytes).unwrap();
    assert_eq!(read.compressed, compress);
    assert_same_geometry(&read.volume.geometry, &expected.geometry, 1e-3);
    assert_eq!(read.volume.voxels, expected.voxels);
}

#[test]
fn dcm2niix_output_reads_back_to_the_dicom_volume() {
    let (c, s) = (25f64.to_radians().cos(), 25f64.to_radians().sin());
    check_dcm2niix_output(
        "dcm2niix_output_reads_back_to_the_dicom_volume",
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        false,
    );
    check_dcm2niix_output(
        "dcm2niix_output_reads_back_to_the_dicom_volume",
        [c, s, 0.0, 0.0, 0.0, -1.0],
        true,
    );
}

// ---------------------------------------------------------------------------------------
// NIfTI: hostile headers

fn small_export() -> Vec<u8> {
    nifti_export::encode(&synthetic_volume([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], true)).unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Reads and requires an error within a time that allocating or inflating what the header
/// claims could not meet.
fn refused_quickly(name: &str, bytes: &[u8]) -> NiftiReadError {
    let start = Instant::now();
    let error = nifti_read::read_bytes(name, bytes).expect_err(name);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{name} took {:?}",
        start.elapsed()
    );
    error
}

fn nifti2_header(dims: [i64; 8], datatype: i16) -> Vec<u8> {
    let mut header = vec![0u8; 544];
    header[..4].copy_from_slice(&540i32.to_le_bytes());
    header[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
    header[12..14].copy_from_slice(&datatype.to_le_bytes());
    for (i, d) in dims.iter().enumerate() {
        header[16 + 8 * i..24 + 8 * i].copy_from_slice(&d.to_le_bytes());
    }
    for axis in 1..4 {
        header[104 + 8 * axis..112 + 8 * axis].copy_from_slice(&1f64.to_le_bytes());
    }
    header[168..176].copy_from_slice(&544i64.to_le_bytes());
    header
}

#[test]
fn absurd_dimensions_are_refused_before_allocating() {
    let huge = nifti2_header([3, 65535, 65535, 10000, 1, 1, 1, 1], 4);
    let error = refused_quickly("huge.nii", &huge);
    assert!(matches!(error, NiftiReadError::TooLarge { .. }), "{error}");
    assert!(error.to_string().contains("65535x65535x10000"), "{error}");
    refused_quickly("huge.nii.gz", &gzip(&huge));

    // Dimensions whose product overflows 64 bits.
    let overflow = nifti2_header([5, 1 << 40, 1 << 40, 1, 1 << 40, 1, 1, 1], 2);
    refused_quickly("overflow.nii", &overflow);
    let many_volumes = nifti2_header([5, 2, 2, 2, i64::MAX, i64::MAX, 1, 1], 2);
    refused_quickly("volumes.nii", &many_volumes);

    let mut nifti1 = small_export();
    for axis in 1..4 {
        put_i16(&mut nifti1, DIM + 2 * axis, 32767);
    }
    let error = refused_quickly("big.nii", &nifti1);
    assert!(matches!(error, NiftiReadError::TooLarge { .. }), "{error}");

    // Within the limit but absent: a small compressed file claiming 1 GB of int16.
    let mut claims = small_export();
    put_i16(&mut claims, DIM + 2, 20000);
    put_i16(&mut claims, DIM + 4, 5000);
    put_i16(&mut claims, DIM + 6, 5);
    let error = refused_quickly("claims.nii.gz", &gzip(&claims));
    assert!(matches!(error, NiftiReadError::Truncated { .. }), "{error}");
}

#[test]
fn truncated_files_say_how_many_bytes_they_need() {
    let whole = small_export();
    let error = refused_quickly("short.nii", &whole[..200]);
    assert_eq!(
        error.to_string(),
        "short.nii: the file ends after 200 bytes but its header needs 348"
    );
    let error = refused_quickly("short.nii", &whole[..whole.len() - 10]);
    assert!(
        error.to_string().contains(&format!(
            "ends after {} bytes but its voxel data needs {}",
            whole.len() - 10,
            whole.len()
        )),
        "{error}"
    );
    let compressed = gzip(&whole);
    let error = refused_quickly("short.nii.gz", &compressed[..compressed.len() / 2]);
    assert!(
        matches!(
            error,
            NiftiReadError::Gzip { .. } | NiftiReadError::Truncated { .. }
        ),
        "{error}"
    );
    refused_quickly("empty.nii", &[]);
    refused_quickly("tiny.nii.gz", &[0x1f, 0x8b]);
}

#[test]
fn bad_magic_and_impossible_dimensions_are_refused() {
    let mut bad_magic = small_export();
    bad_magic[344..348].copy_from_slice(b"xyz\0");
    let error = refused_quickly("magic.nii", &bad_magic);
    assert!(matches!(error, NiftiReadError::NotNifti { .. }), "{error}");
    let error = refused_quickly("text.nii", b"this is not an image at all, just words");
    assert!(
        error.to_string().contains("not 348 (NIfTI-1) or 540"),
        "{error}"
    );

    for dim0 in [0i16, 8, -3] {
        let mut bytes = small_export();
        put_i16(&mut bytes, DIM, dim0);
        let error = refused_quickly("dims.nii", &bytes);
        assert!(
            matches!(error, NiftiReadError::InvalidDimensions { .. }),
            "dim[0] {dim0}: {error}"
        );
    }
    let mut zero = small_export();
    put_i16(&mut zero, DIM + 4, 0);
    let error = refused_quickly("zero.nii", &zero);
    assert!(error.to_string().contains("at least 1"), "{error}");

    let mut damaged = nifti2_header([3, 1, 1, 1, 1, 1, 1, 1], 2);
    damaged.push(0);
    damaged[8..12].copy_from_slice(b"\n\n\x1a\n");
    let error = refused_quickly("text-mode.nii", &damaged);
    assert!(error.to_string().contains("copied as text"), "{error}");
}

#[test]
fn unsupported_types_and_offsets_are_named() {
    let mut complex = small_export();
    put_i16(&mut complex, DATATYPE, 32);
    let error = refused_quickly("complex.nii", &complex);
    assert_eq!(
        error.to_string(),
        "complex.nii: voxels of type complex64 (NIfTI datatype 32) are not read as a scalar volume"
    );
    let mut colour = small_export();
    put_i16(&mut colour, DATATYPE, 128);
    assert!(
        refused_quickly("rgb.nii", &colour)
            .to_string()
            .contains("rgb24")
    );

    let mut far = small_export();
    put_f32(&mut far, VOX_OFFSET, 1.0e6);
    let error = refused_quickly("far.nii", &far);
    assert!(
        matches!(error, NiftiReadError::InvalidVoxelOffset { .. }),
        "{error}"
    );
    put_f32(&mut far, VOX_OFFSET, f32::NAN);
    refused_quickly("nan-offset.nii", &far);
    put_f32(&mut far, VOX_OFFSET, 1.0e12);
    refused_quickly("huge-offset.nii.gz", &gzip(&far));

    // An offset inside the header is read as "right after it", as nibabel does.
    let mut inside = small_export();
    put_f32(&mut inside, VOX_OFFSET, 0.0);
    let read = nifti_read::read_bytes("inside.nii", &inside).unwrap();
    assert!(
        read.notes.iter().any(|n| n.contains("vox_offset")),
        "{:?}",
        read.notes
    );
}

#[test]
fn non_finite_or_degenerate_orientations_are_refused_or_replaced() {
    // NaN in the sform with no qform to fall back on.
    let mut nan = small_export();
    put_f32(&mut nan, SROW_X + 4, f32::NAN);
    put_i16(&mut nan, 252, 0);
    let error = refused_quickly("nan.nii", &nan);
    assert!(
        matches!(
            error,
            NiftiReadError::InvalidOrientation {
                transform: AffineSource::Sform,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("not a finite number"), "{error}");

    // NaN in the sform, a good qform: the qform is used and the reader says so.
    let volume = synthetic_volume([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], true);
    let mut fallback = nifti_export::encode(&volume).unwrap();
    put_f32(&mut fallback, SROW_X, f32::INFINITY);
    let read = nifti_read::read_bytes("fallback.nii", &fallback).unwrap();
    assert_eq!(read.affine_source, AffineSource::Qform);
    assert!(read.notes.iter().any(|n| n.contains("sform is not used")));
    assert_same_geometry(&read.volume.geometry, &volume.geometry, 1e-4);

    // A sheared sform falls back the same way.
    let mut sheared = nifti_export::encode(&volume).unwrap();
    put_f32(&mut sheared, SROW_X + 4, 0.5);
    let read = nifti_read::read_bytes("sheared.nii", &sheared).unwrap();
    assert_eq!(read.affine_source, AffineSource::Qform);

    // Zero voxel size where the qform needs it.
    let mut zero = small_export();
    put_i16(&mut zero, SFORM_CODE, 0);
    put_f32(&mut zero, PIXDIM + 8, 0.0);
    let error = refused_quickly("zero-pixdim.nii", &zero);
    assert!(error.to_string().contains("is zero"), "{error}");

    // An all-zero sform.
    let mut flat = small_export();
    put_i16(&mut flat, 252, 0);
    for i in 0..12 {
        put_f32(&mut flat, SROW_X + 4 * i, 0.0);
    }
    let error = refused_quickly("flat.nii", &flat);
    assert!(error.to_string().contains("zero length"), "{error}");
}

#[test]
fn a_gzip_stream_is_inflated_only_as_far_as_the_header_needs() {
    // A small volume followed by 1 GiB of zeros: read in well under a second.
    let header_and_voxels = small_export();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&header_and_voxels).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    let start = Instant::now();
    let read = nifti_read::read_bytes("tail.nii.gz", &bomb).unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(read.volume.voxels.len(), 7 * 5 * 4);

    // A damaged stream is an error, not a panic or a partial volume.
    let mut damaged = gzip(&header_and_voxels);
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xFF;
    damaged[middle + 1] ^= 0x55;
    let error = nifti_read::read_bytes("damaged.nii.gz", &damaged).unwrap_err();
    assert!(
        matches!(
            error,
            NiftiReadError::Gzip { .. } | NiftiReadError::Truncated { .. }
        ),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------
// PNG and JPEG

fn png(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
) -> Vec<u8> {
    png_with(width, height, color, depth, data, |_| {})
}

fn png_with(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
    configure: impl FnOnce(&mut png::Encoder<'_, &mut Vec<u8>>),
) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(color);
        encoder.set_depth(depth);
        configure(&mut encoder);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(data).unwrap();
    }
    bytes
}

#[test]
fn png_greyscale_colour_palette_and_16_bit_decode_exactly() {
    let (w, h) = (5u32, 3u32);
    let grey: Vec<u8> = (0..w * h).map(|i| (i * 17) as u8).collect();
    let read = raster::read_bytes(
        "grey.png",
        &png(w, h, png::ColorType::Grayscale, png::BitDepth::Eight, &grey),
    )
    .unwrap();
    assert_eq!(
        (read.columns, read.rows, read.samples_per_pixel, read.bits),
        (5, 3, 1, 8)
    );
    assert_eq!(
        read.values,
        grey.iter().map(|&v| f32::from(v)).collect::<Vec<_>>()
    );

    let deep: Vec<u16> = (0..w * h).map(|i| (i * 4099) as u16).collect();
    let deep_bytes: Vec<u8> = deep.iter().flat_map(|v| v.to_be_bytes()).collect();
    let read = raster::read_bytes(
        "deep.png",
        &png(
            w,
            h,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            &deep_bytes,
        ),
    )
    .unwrap();
    assert_eq!(read.bits, 16);
    assert_eq!(
        read.values,
        deep.iter().map(|&v| f32::from(v)).collect::<Vec<_>>()
    );

    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 5) as u8).collect();
    let read = raster::read_bytes(
        "rgb.png",
        &png(w, h, png::ColorType::Rgb, png::BitDepth::Eight, &rgb),
    )
    .unwrap();
    assert_eq!(read.samples_per_pixel, 3);
    assert_eq!(
        read.values,
        rgb.iter().map(|&v| f32::from(v)).collect::<Vec<_>>()
    );

    // Alpha is dropped.
    let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 3) as u8).collect();
    let read = raster::read_bytes(
        "rgba.png",
        &png(w, h, png::ColorType::Rgba, png::BitDepth::Eight, &rgba),
    )
    .unwrap();
    let without_alpha: Vec<f32> = rgba
        .chunks_exact(4)
        .flat_map(|p| p[..3].iter().map(|&v| f32::from(v)))
        .collect();
    assert_eq!(read.values, without_alpha);

    // A palette becomes RGB, even with transparency.
    let palette = [10u8, 20, 30, 200, 100, 50, 0, 255, 128];
    let indices: Vec<u8> = (0..w * h).map(|i| (i % 3) as u8).collect();
    let bytes = png_with(
        w,
        h,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        &indices,
        |e| {
            e.set_palette(palette.to_vec());
            e.set_trns(vec![255u8, 0, 128]);
        },
    );
    let read = raster::read_bytes("palette.png", &bytes).unwrap();
    assert_eq!((read.samples_per_pixel, read.bits), (3, 8));
    let expected: Vec<f32> = indices
        .iter()
        .flat_map(|&i| {
            palette[3 * i as usize..3 * i as usize + 3]
                .iter()
                .map(|&v| f32::from(v))
        })
        .collect();
    assert_eq!(read.values, expected);

    // 4-bit greyscale is scaled to 8 bits (15 becomes 255), as other readers do.
    let packed: Vec<u8> = vec![0x0F, 0x80, 0x70, 0xF0];
    let read = raster::read_bytes(
        "nibbles.png",
        &png(
            3,
            2,
            png::ColorType::Grayscale,
            png::BitDepth::Four,
            &packed,
        ),
    )
    .unwrap();
    assert_eq!(read.values, vec![0.0, 255.0, 136.0, 119.0, 0.0, 255.0]);
}

fn gradient_rgb(w: usize, h: usize) -> Vec<u8> {
    (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) * 127 / (w + h)) as u8,
            ]
        })
        .collect()
}

#[test]
fn jpeg_round_trips_within_compression_error() {
    let (w, h) = (64usize, 48usize);
    let rgb = gradient_rgb(w, h);
    for progressive in [false, true] {
        let mut bytes = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 95);
        encoder.set_progressive(progressive);
        encoder
            .encode(&rgb, w as u16, h as u16, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        let read = raster::read_bytes("photo.jpg", &bytes).unwrap();
        assert_eq!(
            (read.columns, read.rows, read.samples_per_pixel, read.bits),
            (64, 48, 3, 8)
        );
        let error: f32 = read
            .values
            .iter()
            .zip(&rgb)
            .map(|(&a, &b)| (a - f32::from(b)).abs())
            .sum::<f32>()
            / rgb.len() as f32;
        assert!(error < 3.0, "mean error {error}");
    }
    let grey: Vec<u8> = (0..w * h).map(|i| ((i % w) * 4) as u8).collect();
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 95)
        .encode(&grey, w as u16, h as u16, jpeg_encoder::ColorType::Luma)
        .unwrap();
    let read = raster::read_bytes("xray.jpg", &bytes).unwrap();
    assert_eq!(read.samples_per_pixel, 1);
    let error: f32 = read
        .values
        .iter()
        .zip(&grey)
        .map(|(&a, &b)| (a - f32::from(b)).abs())
        .sum::<f32>()
        / grey.len() as f32;
    assert!(error < 2.0, "mean error {error}");
}

#[test]
fn jpeg_decodes_as_pillow_decodes() {
    let test = "jpeg_decodes_as_pillow_decodes";
    let Some(python) = common::venv_python() else {
        common::skip(test, "the imaging venv is missing");
        return;
    };
    let has_pillow = Command::new(&python)
        .args(["-c", "import PIL"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pillow {
        common::skip(test, "Pillow is missing from the imaging venv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(&python)
        .arg(common::helper("jpeg_reference.py"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for image in report.as_array().unwrap() {
        let name = image["name"].as_str().unwrap();
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        let expected = std::fs::read(dir.path().join(format!("{name}.raw"))).unwrap();
        let read = raster::read_bytes(name, &bytes).unwrap();
        assert_eq!(
            read.columns as u64,
            image["width"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            read.rows as u64,
            image["height"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            u64::from(read.samples_per_pixel),
            image["samples"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(read.values.len(), expected.len(), "{name}");
        let differences: Vec<f32> = read
            .values
            .iter()
            .zip(&expected)
            .map(|(&a, &b)| (a - f32::from(b)).abs())
            .collect();
        let largest = differences.iter().copied().fold(0.0, f32::max);
        let mean = differences.iter().sum::<f32>() / differences.len() as f32;
        // Decoders may round the inverse DCT and chroma upsampling differently.
        assert!(
            largest <= 3.0 && mean < 0.5,
            "{name}: largest {largest}, mean {mean}"
        );
    }
}

/// A PNG whose header claims `width`x`height`, with a valid checksum and no image data.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&width.to_be_bytes());
    chunk.extend_from_slice(&height.to_be_bytes());
    chunk.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&chunk);
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(&chunk);
    bytes.extend_from_slice(&crc.sum().to_be_bytes());
    bytes
}

#[test]
fn images_too_large_or_damaged_are_refused_before_decoding() {
    let start = Instant::now();
    let error = raster::read_bytes("huge.png", &png_header_only(100_000, 100_000)).unwrap_err();
    assert!(matches!(error, RasterError::TooLarge { .. }), "{error}");
    let error = raster::read_bytes("wide.png", &png_header_only(32_769, 1)).unwrap_err();
    assert!(error.to_string().contains("32768"), "{error}");
    let error = raster::read_bytes("empty.png", &png_header_only(30_000, 30_000)).unwrap_err();
    assert!(
        matches!(
            error,
            RasterError::TooLarge { .. } | RasterError::Decode { .. }
        ),
        "{error}"
    );

    // A JPEG whose frame header claims 65000x65000.
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 90)
        .encode(&[128u8; 64], 8, 8, jpeg_encoder::ColorType::Luma)
        .unwrap();
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&65000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&65000u16.to_be_bytes());
    let error = raster::read_bytes("huge.jpg", &jpeg).unwrap_err();
    assert!(
        matches!(
            error,
            RasterError::TooLarge { .. } | RasterError::Decode { .. }
        ),
        "{error}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    let whole = png(
        4,
        4,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[7u8; 16],
    );
    let error = raster::read_bytes("cut.png", &whole[..whole.len() - 20]).unwrap_err();
    assert!(matches!(error, RasterError::Decode { .. }), "{error}");
    let error = raster::read_bytes("cut.jpg", &jpeg[..20]).unwrap_err();
    assert!(
        matches!(
            error,
            RasterError::Decode { .. } | RasterError::TooLarge { .. }
        ),
        "{error}"
    );
    let error = raster::read_bytes("notes.txt", b"hello").unwrap_err();
    assert!(matches!(error, RasterError::NotRaster { .. }), "{error}");
}

// ---------------------------------------------------------------------------------------
// Sniffing real files

#[test]
fn real_files_are_sniffed_by_content() {
    let test = "real_files_are_sniffed_by_content";
    let Some(folder) = common::pydicom_test_files() else {
        common::skip(test, "pydicom's test files are missing");
        return;
    };
    let mut recognised = 0;
    let mut without_preamble = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "dcm") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let prefix = &bytes[..bytes.len().min(sniff::SNIFF_BYTES)];
        // The name says nothing: content alone must tell.
        if sniff::kind("upload", prefix) == FileKind::Dicom {
            recognised += 1;
            if prefix.get(128..132) != Some(b"DICM") && !prefix.starts_with(b"DICM") {
                without_preamble += 1;
            }
        } else {
            // Only files that are not DICOM to the reader either (pydicom's broken ones).
            assert!(
                dicom::read_file(&path).is_err(),
                "{} is readable DICOM but sniffed as something else",
                path.display()
            );
        }
    }
    assert!(
        recognised > 50 && without_preamble >= 3,
        "{recognised} recognised, {without_preamble} without preamble"
    );

    let png_bytes = png(
        2,
        2,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[1, 2, 3, 4],
    );
    assert_eq!(sniff::kind("scan.dcm", &png_bytes), FileKind::Png);
    let zip_bytes = zip_of(&[Entry::stored("a.txt", b"hello")]);
    assert_eq!(sniff::kind("upload", &zip_bytes), FileKind::Zip);
    let nii_gz = gzip(&small_export());
    assert_eq!(
        sniff::kind("upload", &nii_gz[..sniff::SNIFF_BYTES.min(nii_gz.len())]),
        FileKind::Nifti
    );
    assert_eq!(sniff::kind("upload", &small_export()), FileKind::Nifti);
}

// ---------------------------------------------------------------------------------------
// Zip archives

/// One entry of a hand-built archive: every field an attacker controls is settable.
struct Entry {
    name: Vec<u8>,
    /// What is stored (compressed or not).
    stored: Vec<u8>,
    method: u16,
    crc: u32,
    declared_size: u32,
    flags: u16,
    /// Unix mode, written in the external attributes with "made by Unix".
    unix_mode: Option<u32>,
}

impl Entry {
    fn stored(name: &str, data: &[u8]) -> Entry {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        Entry {
            name: name.as_bytes().to_vec(),
            stored: data.to_vec(),
            method: 0,
            crc: crc.sum(),
            declared_size: data.len() as u32,
            flags: 0,
            unix_mode: None,
        }
    }

    fn deflated(name: &str, data: &[u8]) -> Entry {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        Entry {
            stored: encoder.finish().unwrap(),
            method: 8,
            ..Entry::stored(name, data)
        }
    }

    fn with_mode(mut self, mode: u32) -> Entry {
        self.unix_mode = Some(mode);
        self
    }
}

/// Writes local headers, data, the central directory and its end record.
fn zip_of(entries: &[Entry]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut central = Vec::new();
    for entry in entries {
        let offset = bytes.len() as u32;
        let common = |out: &mut Vec<u8>| {
            out.extend_from_slice(&20u16.to_le_bytes()); // version needed
            out.extend_from_slice(&entry.flags.to_le_bytes());
            out.extend_from_slice(&entry.method.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
            out.extend_from_slice(&entry.crc.to_le_bytes());
            out.extend_from_slice(&(entry.stored.len() as u32).to_le_bytes());
            out.extend_from_slice(&entry.declared_size.to_le_bytes());
            out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // extra length
        };
        bytes.extend_from_slice(b"PK\x03\x04");
        common(&mut bytes);
        bytes.extend_from_slice(&entry.name);
        bytes.extend_from_slice(&entry.stored);

        central.extend_from_slice(b"PK\x01\x02");
        let made_by: u16 = if entry.unix_mode.is_some() {
            (3 << 8) | 20
        } else {
            20
        };
        central.extend_from_slice(&made_by.to_le_bytes());
        common(&mut central);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(entry.unix_mode.unwrap_or(0) << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(&entry.name);
    }
    let directory_offset = bytes.len() as u32;
    bytes.extend_from_slice(&central);
    bytes.extend_from_slice(b"PK\x05\x06");
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&(central.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&directory_offset.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes
}

type Expanded = (Vec<(String, Vec<u8>)>, archive::Expansion);

fn expand_all(bytes: &[u8], limits: &ArchiveLimits) -> Result<Expanded, ExpandError<String>> {
    let mut files = Vec::new();
    let expansion = archive::expand(Cursor::new(bytes), limits, |path, data| {
        files.push((path.to_owned(), data.to_vec()));
        Ok::<(), String>(())
    })?;
    Ok((files, expansion))
}

fn reason_for<'a>(expansion: &'a archive::Expansion, name: &str) -> &'a SkipReason {
    &expansion
        .skipped
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} not skipped: {:?}", expansion.skipped))
        .reason
}

#[test]
fn good_entries_expand_and_every_bad_one_is_reported() {
    let nii_gz = gzip(&small_export());
    let mut bad_crc = Entry::deflated("study/damaged.dcm", &[9u8; 5000]);
    bad_crc.crc ^= 1;
    let mut encrypted = Entry::stored("secret.dcm", &[1, 2, 3]);
    encrypted.flags = 1;
    let mut bzip2 = Entry::stored("old.dcm", &[1, 2, 3]);
    bzip2.method = 12;
    let inner = zip_of(&[Entry::stored("x", b"y")]);
    let entries = vec![
        Entry::deflated("study/series/IM1.dcm", &[1u8; 3000]),
        Entry::stored("study/", b""),
        Entry::stored("brain.nii.gz", &nii_gz),
        Entry::stored("windows\\path\\IM2.dcm", b"windows"),
        Entry::stored("../evil", b"x"),
        Entry::stored("a/../../evil2", b"x"),
        Entry::stored("/abs", b"x"),
        Entry::stored("C:\\Windows\\evil", b"x"),
        Entry::stored("..\\..\\evil3", b"x"),
        Entry {
            name: b"nul\0.dcm".to_vec(),
            ..Entry::stored("", b"x")
        },
        Entry::stored("link", b"/etc/passwd").with_mode(0o120777),
        Entry::stored("fifo", b"").with_mode(0o010644),
        Entry::stored("plain.dcm", b"unix file").with_mode(0o100644),
        encrypted,
        bzip2,
        Entry::stored("nested.zip", &inner),
        Entry::stored("renamed.bin", &inner),
        Entry::stored("__MACOSX/study/._IM1.dcm", b"apple"),
        Entry::stored("study/.DS_Store", b"apple"),
        Entry::stored("./study/series/IM1.dcm", b"duplicate after sanitising"),
        bad_crc,
    ];
    let bytes = zip_of(&entries);
    let (files, expansion) = expand_all(&bytes, &ArchiveLimits::default()).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "study/series/IM1.dcm",
            "brain.nii.gz",
            "windows/path/IM2.dcm",
            "plain.dcm"
        ]
    );
    assert_eq!(files[0].1, vec![1u8; 3000]);
    assert_eq!(files[1].1, nii_gz);
    assert_eq!(expansion.files, 4);

    for name in ["../evil", "a/../../evil2", "..\\..\\evil3"] {
        assert!(
            matches!(reason_for(&expansion, name), SkipReason::UnsafePath { reason } if reason.contains("..")),
            "{name}"
        );
    }
    assert!(
        matches!(reason_for(&expansion, "/abs"), SkipReason::UnsafePath { reason } if reason.contains("absolute"))
    );
    assert!(
        matches!(reason_for(&expansion, "C:\\Windows\\evil"), SkipReason::UnsafePath { reason } if reason.contains("drive"))
    );
    assert!(
        matches!(reason_for(&expansion, "nul\u{0}.dcm"), SkipReason::UnsafePath { reason } if reason.contains("NUL"))
    );
    assert_eq!(reason_for(&expansion, "link"), &SkipReason::SymbolicLink);
    assert_eq!(reason_for(&expansion, "fifo"), &SkipReason::SpecialFile);
    assert_eq!(reason_for(&expansion, "secret.dcm"), &SkipReason::Encrypted);
    let old = reason_for(&expansion, "old.dcm");
    assert_eq!(
        old.to_string(),
        "compressed with Bzip2 (zip method 12), which voxhub does not read; re-create the zip with standard (deflate) compression"
    );
    assert_eq!(
        reason_for(&expansion, "nested.zip"),
        &SkipReason::NestedArchive
    );
    assert_eq!(
        reason_for(&expansion, "renamed.bin"),
        &SkipReason::NestedArchive
    );
    assert_eq!(
        reason_for(&expansion, "nested.zip").to_string(),
        "nested archives are not expanded; upload it separately"
    );
    assert!(reason_for(&expansion, "__MACOSX/study/._IM1.dcm").is_metadata());
    assert!(reason_for(&expansion, "study/.DS_Store").is_metadata());
    assert_eq!(
        reason_for(&expansion, "./study/series/IM1.dcm"),
        &SkipReason::DuplicateName
    );
    assert!(matches!(
        reason_for(&expansion, "study/damaged.dcm"),
        SkipReason::Damaged { .. }
    ));
    // Every entry is accounted for: expanded, skipped, or a directory.
    assert_eq!(expansion.files + expansion.skipped.len() + 1, entries.len());
}

/// A raw deflate stream of `gib` GiB of zeros, built from one repeated fully-flushed block
/// so that the test does not spend seconds compressing.
fn deflated_zeros(gib: usize) -> Vec<u8> {
    let chunk = |compressor: &mut flate2::Compress| {
        let mut out = Vec::with_capacity(1 << 16);
        compressor
            .compress_vec(&vec![0u8; 1 << 20], &mut out, flate2::FlushCompress::Full)
            .unwrap();
        out
    };
    let mut compressor = flate2::Compress::new(flate2::Compression::best(), false);
    let first = chunk(&mut compressor);
    let second = chunk(&mut compressor);
    assert_eq!(first, second, "a full flush resets the compressor");
    let mut stream = Vec::with_capacity(first.len() * 1024 * gib + 2);
    for _ in 0..1024 * gib {
        stream.extend_from_slice(&first);
    }
    stream.extend_from_slice(&[0x03, 0x00]); // final, empty, fixed-Huffman block
    stream
}

#[test]
fn a_zip_bomb_declared_small_is_stopped_early() {
    let bomb = Entry {
        stored: deflated_zeros(2),
        method: 8,
        declared_size: 1000,
        ..Entry::stored("bomb.dcm", b"")
    };
    let bytes = zip_of(&[
        Entry::stored("first.dcm", b"fine"),
        bomb,
        Entry::stored("last.dcm", b"also fine"),
    ]);
    let start = Instant::now();
    let (files, expansion) = expand_all(&bytes, &ArchiveLimits::default()).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(
        files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["first.dcm", "last.dcm"]
    );
    // The zip reader stops an entry at its declared size; the reason says what happened.
    assert_eq!(
        reason_for(&expansion, "bomb.dcm"),
        &SkipReason::LargerThanDeclared {
            declared_bytes: 1000
        }
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    // Declared honestly, the ratio alone refuses it before anything is inflated.
    let honest = Entry {
        stored: deflated_zeros(2),
        method: 8,
        declared_size: 2 << 30,
        ..Entry::stored("honest-bomb.dcm", b"")
    };
    let start = Instant::now();
    let (files, expansion) = expand_all(&zip_of(&[honest]), &ArchiveLimits::default()).unwrap();
    assert!(files.is_empty());
    assert_eq!(
        reason_for(&expansion, "honest-bomb.dcm"),
        &SkipReason::CompressionRatio { limit: 100 }
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn per_entry_and_total_limits_count_real_bytes() {
    // Incompressible bytes declared as 10: stopped where the declared size ends.
    let noise: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let liar = Entry {
        declared_size: 10,
        ..Entry::deflated("liar.dcm", &noise)
    };
    let honest = Entry::deflated("large.dcm", &noise);
    let limits = ArchiveLimits {
        max_entry_bytes: 1 << 20,
        ..ArchiveLimits::default()
    };
    let entries = [liar, honest, Entry::stored("ok.dcm", b"ok")];
    let (files, expansion) = expand_all(&zip_of(&entries), &limits).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        reason_for(&expansion, "liar.dcm"),
        &SkipReason::LargerThanDeclared { declared_bytes: 10 }
    );
    assert_eq!(
        reason_for(&expansion, "large.dcm"),
        &SkipReason::EntryTooLarge {
            limit_bytes: 1 << 20
        }
    );

    let block = vec![5u8; 600 * 1024];
    let limits = ArchiveLimits {
        max_total_bytes: 1 << 20,
        ..ArchiveLimits::default()
    };
    let entries = [
        Entry::stored("one.dcm", &block),
        Entry::stored("two.dcm", &block),
        Entry::stored("three.dcm", &block),
    ];
    let (files, expansion) = expand_all(&zip_of(&entries), &limits).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(
        reason_for(&expansion, "two.dcm"),
        &SkipReason::TotalTooLarge {
            limit_bytes: 1 << 20
        }
    );
    assert_eq!(
        reason_for(&expansion, "three.dcm"),
        &SkipReason::TotalTooLarge {
            limit_bytes: 1 << 20
        }
    );
}

#[test]
fn whole_archive_failures_are_errors() {
    let limits = ArchiveLimits {
        max_entries: 3,
        ..ArchiveLimits::default()
    };
    let entries: Vec<Entry> = (0..5)
        .map(|i| Entry::stored(&format!("{i}.dcm"), b"x"))
        .collect();
    let error = expand_all(&zip_of(&entries), &limits).unwrap_err();
    assert!(
        matches!(
            error,
            ExpandError::Archive(ArchiveError::TooManyEntries {
                entries: 5,
                limit: 3
            })
        ),
        "{error}"
    );
    let error = expand_all(b"this is not a zip", &ArchiveLimits::default()).unwrap_err();
    assert!(
        matches!(error, ExpandError::Archive(ArchiveError::NotZip { .. })),
        "{error}"
    );

    // An archive whose end record claims more entries than the default limit.
    let mut claims = zip_of(&[Entry::stored("a", b"x")]);
    let end = claims.len() - 22;
    claims[end + 8..end + 10].copy_from_slice(&0xFFFEu16.to_le_bytes());
    claims[end + 10..end + 12].copy_from_slice(&0xFFFEu16.to_le_bytes());
    let small = ArchiveLimits {
        max_entries: 1000,
        ..ArchiveLimits::default()
    };
    let error = expand_all(&claims, &small).unwrap_err();
    assert!(
        matches!(
            error,
            ExpandError::Archive(ArchiveError::TooManyEntries { .. })
        ),
        "{error}"
    );

    // The caller stops the expansion.
    let entries = [Entry::stored("a.dcm", b"1"), Entry::stored("b.dcm", b"2")];
    let mut seen = 0;
    let result = archive::expand(
        Cursor::new(zip_of(&entries)),
        &ArchiveLimits::default(),
        |_, _| {
            seen += 1;
            Err("disk full")
        },
    );
    assert!(matches!(result, Err(ExpandError::Stopped("disk full"))));
    assert_eq!(seen, 1);
}

#[test]
fn archives_written_by_the_zip_crate_expand() {
    let mut bytes = Vec::new();
    {
        let mut writer = zip::ZipWriter::new(Cursor::new(&mut bytes));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer.add_directory("study/", options).unwrap();
        writer.start_file("study/IM1.dcm", options).unwrap();
        writer.write_all(&[42u8; 10_000]).unwrap();
        writer
            .start_file(
                "study/IM2.dcm",
                options.compression_method(zip::CompressionMethod::Stored),
            )
            .unwrap();
        writer.write_all(b"stored").unwrap();
        writer.finish().unwrap();
    }
    let (files, expansion) = expand_all(&bytes, &ArchiveLimits::default()).unwrap();
    assert!(expansion.skipped.is_empty(), "{:?}", expansion.skipped);
    assert_eq!(files[0], ("study/IM1.dcm".to_owned(), vec![42u8; 10_000]));
    assert_eq!(files[1], ("study/IM2.dcm".to_owned(), b"stored".to_vec()));
}
