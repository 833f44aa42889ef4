//! Reading and decoding real DICOM files (pydicom's bundled test files), checked value by
//! value against pydicom's modality values, and refusals of what cannot be shown right.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use voxhub_imaging::dicom::{self, ImagingError};

/// Files both decoders must handle: every native encoding and RLE, monochrome and colour,
/// signed and unsigned, single and multi-frame. Not here, because refused with an error:
/// 1-bit segmentations (liver_*.dcm) and 32-bit RLE (rtdose_rle*.dcm, SC_rgb_rle_32bit*.dcm: dicom-rs's RLE
/// decoder fails on it).
const MUST_MATCH: &[&str] = &[
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_padded.dcm",
    "ExplVR_BigEnd.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_16bit.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_small_odd_big_endian.dcm",
    "examples_rgb_color.dcm",
    "examples_overlay.dcm",
    "rtdose.dcm",
    "rtdose_expb.dcm",
];

fn test_files(test: &str) -> Option<PathBuf> {
    let folder = common::pydicom_test_files();
    if folder.is_none() {
        common::skip(test, "pydicom's test files are not installed");
    }
    folder
}

struct Reference {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Runs the pydicom helper over `files`; `None` for files pydicom cannot decode.
fn pydicom_values(files: &[PathBuf]) -> Vec<Option<Reference>> {
    let python = common::venv_python().expect("venv has python");
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(python)
        .arg(common::helper("pydicom_reference.py"))
        .arg(out.path())
        .args(files)
        .output()
        .expect("run pydicom helper");
    assert!(
        output.status.success(),
        "pydicom helper failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), files.len(), "one report per file");
    lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            if line.contains("\"error\"") {
                return None;
            }
            let shape_text = line.split("\"shape\": [").nth(1)?.split(']').next()?;
            let shape = shape_text
                .split(',')
                .map(|n| n.trim().parse().unwrap())
                .collect();
            let bytes = std::fs::read(out.path().join(format!("{index}.f32"))).unwrap();
            let values = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Some(Reference { shape, values })
        })
        .collect()
}

#[test]
fn decoded_values_equal_pydicom_modality_values_for_every_file_both_decode() {
    let test = "decoded_values_equal_pydicom_modality_values_for_every_file_both_decode";
    let Some(folder) = test_files(test) else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    let references = pydicom_values(&files);
    let mut matched = Vec::new();
    let mut mismatches = BTreeMap::new();
    for (file, reference) in files.iter().zip(references) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let ours = dicom::read_file(file).and_then(|image| dicom::pixels(&image));
        let (Some(reference), Ok(ours)) = (reference, ours) else {
            continue;
        };
        // Only compare like with like: lossy JPEG decoders legitimately differ (pydicom
        // uses Pillow's libjpeg when installed), and pydicom's pixel_array keeps palette
        // indices where voxhub looks them up (compared with apply_color_lut in
        // render_views.rs).
        let header = dicom::read_file(file).ok();
        let lossy = header
            .as_ref()
            .is_some_and(|h| h.transfer_syntax_uid == "1.2.840.10008.1.2.4.50");
        let palette = header
            .as_ref()
            .and_then(|h| h.pixel_format.as_ref())
            .is_some_and(|f| f.photometric_interpretation == "PALETTE COLOR");
        if ours.photometric_interpretation.starts_with("YBR") || lossy || palette {
            continue;
        }
        let values: Vec<f32> = ours.frames.concat();
        let expected_len: usize = reference.shape.iter().product();
        if values.len() != expected_len {
            mismatches.insert(name, format!("{} values vs {expected_len}", values.len()));
            continue;
        }
        let differing = values
            .iter()
            .zip(&reference.values)
            .filter(|(a, b)| a.to_bits() != b.to_bits() && a != b)
            .count();
        if differing > 0 {
            let first = values
                .iter()
                .zip(&reference.values)
                .position(|(a, b)| a != b)
                .unwrap();
            mismatches.insert(
                name,
                format!(
                    "{differing} values differ, first at {first}: {} vs {}",
                    values[first], reference.values[first]
                ),
            );
        } else {
            matched.push(name);
        }
    }
    assert!(
        mismatches.is_empty(),
        "differences from pydicom: {mismatches:#?}"
    );
    for name in MUST_MATCH {
        assert!(
            matched.iter().any(|m| m == name),
            "{name} was not decoded by both; matched: {matched:?}"
        );
    }
    eprintln!("{} files equal to pydicom: {matched:?}", matched.len());
}

fn decode(folder: &Path, name: &str) -> Vec<f32> {
    let image = dicom::read_file(folder.join(name)).unwrap();
    dicom::pixels(&image).unwrap().frames.concat()
}

#[test]
fn lossless_jpeg_2000_decodes_to_the_same_values_as_the_uncompressed_original() {
    let Some(folder) = test_files("lossless_jpeg_2000_decodes_to_the_same_values") else {
        return;
    };
    // pydicom has no JPEG 2000 plugin in the venv, so the uncompressed original of the
    // same image is the reference.
    assert_eq!(
        decode(&folder, "MR_small_jp2klossless.dcm"),
        decode(&folder, "MR_small.dcm")
    );
}

#[test]
fn twelve_bit_lossy_jpeg_is_refused_naming_the_transfer_syntax() {
    let Some(folder) = test_files("twelve_bit_lossy_jpeg_is_refused") else {
        return;
    };
    let image = dicom::read_file(folder.join("JPGExtended.dcm")).unwrap();
    assert_eq!(image.transfer_syntax_uid, "1.2.840.10008.1.2.4.51");
    let error = dicom::pixels(&image).unwrap_err();
    assert!(matches!(
        error,
        ImagingError::UnsupportedTransferSyntax { .. }
    ));
    let message = error.to_string();
    assert!(message.contains("1.2.840.10008.1.2.4.51"), "{message}");
    assert!(message.contains("JPEG Extended"), "{message}");
    assert!(message.contains("JPGExtended.dcm"), "{message}");
}

#[test]
fn indexed_attributes_and_geometry_of_ct_small_are_read() {
    let Some(folder) = test_files("indexed_attributes_and_geometry_of_ct_small_are_read") else {
        return;
    };
    let image = dicom::read_file(folder.join("CT_small.dcm")).unwrap();
    let attributes = &image.attributes;
    assert_eq!(attributes.modality.as_deref(), Some("CT"));
    assert_eq!(
        attributes.study_instance_uid.as_deref(),
        Some("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")
    );
    assert!(attributes.series_instance_uid.is_some());
    assert!(attributes.sop_instance_uid.is_some());
    assert_eq!(attributes.study_date.as_deref(), Some("20040119"));
    assert_eq!(attributes.instance_number, Some(1));
    let geometry = image.geometry.as_ref().unwrap();
    assert_eq!((geometry.rows, geometry.columns), (128, 128));
    assert_eq!(geometry.number_of_frames, 1);
    assert_eq!(geometry.pixel_spacing_mm, Some([0.661468, 0.661468]));
    assert_eq!(
        geometry.image_position_mm,
        Some([-158.135803, -179.035797, -75.699997])
    );
    assert_eq!(
        geometry.image_orientation,
        Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    );
    assert_eq!(geometry.slice_thickness_mm, Some(5.0));
    let format = image.pixel_format.as_ref().unwrap();
    assert_eq!(format.photometric_interpretation, "MONOCHROME2");
    assert_eq!((format.bits_allocated, format.bits_stored), (16, 16));
    assert!(format.signed);
    assert_eq!(
        (image.rescale_slope, image.rescale_intercept),
        (1.0, -1024.0)
    );
    assert_eq!(image.transfer_syntax_uid, "1.2.840.10008.1.2.1");
}

#[test]
fn files_without_preamble_or_meta_are_read() {
    let Some(folder) = test_files("files_without_preamble_or_meta_are_read") else {
        return;
    };
    // pydicom's no_meta.dcm starts one byte into an element (pydicom reads it as one
    // unknown element), so it is not used; an implicit VR file without meta is made here.
    for (name, uid) in [
        ("ExplVR_LitEndNoMeta.dcm", "1.2.840.10008.1.2.1"),
        ("ExplVR_BigEndNoMeta.dcm", "1.2.840.10008.1.2.2"),
    ] {
        let image = dicom::read_file(folder.join(name)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!image.had_file_meta, "{name}");
        assert_eq!(image.transfer_syntax_uid, uid, "{name}");
    }
    let implicit = std::fs::read(folder.join("MR_small_implicit.dcm")).unwrap();
    let meta_length = u32::from_le_bytes(implicit[140..144].try_into().unwrap()) as usize;
    let dataset_only = &implicit[144 + meta_length..];
    let image = dicom::read_bytes(Path::new("MR_small-no-meta"), dataset_only).unwrap();
    assert!(!image.had_file_meta);
    assert_eq!(image.transfer_syntax_uid, "1.2.840.10008.1.2");
    assert_eq!(
        decode(&folder, "MR_small.dcm"),
        dicom::pixels(&image).unwrap().frames.concat()
    );
    // The same data set without its preamble: drop the first 128 bytes of a normal file.
    let bytes = std::fs::read(folder.join("CT_small.dcm")).unwrap();
    let image = dicom::read_bytes(Path::new("CT_small-no-preamble"), &bytes[128..]).unwrap();
    assert_eq!(
        decode(&folder, "CT_small.dcm"),
        dicom::pixels(&image).unwrap().frames.concat()
    );
}

#[test]
fn non_dicom_and_truncated_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not an image at all, only some words").unwrap();
    let error = dicom::read_file(&text).unwrap_err();
    assert!(error.to_string().contains("notes.txt"), "{error}");
    let Some(folder) = test_files("non_dicom_and_truncated_files_are_errors_not_panics") else {
        return;
    };
    // A truncated file is either refused on reading or on decoding, never decoded short.
    if let Ok(image) = dicom::read_file(folder.join("MR_truncated.dcm")) {
        assert!(dicom::pixels(&image).is_err());
    }
}
