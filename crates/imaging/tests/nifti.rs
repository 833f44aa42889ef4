//! NIfTI export checked against dcm2niix on synthetic CT series (axial, coronal, sagittal,
//! oblique, slices given in shuffled order): same affine within 1e-3 mm, same voxels.

mod common;

use std::path::Path;
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use voxhub_imaging::{dicom, nifti_export, volume};

const ROWS: u16 = 64;
const COLUMNS: u16 = 48;
const SLICES: usize = 20;

fn text(tag: dicom_core::Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// Writes a CT series with Rescale Intercept -1024 whose voxel values depend on all three
/// indices, so that any flip or shuffle shows up.
fn write_series(dir: &Path, orientation: [f64; 6], spacing_mm: f64) {
    let row = [orientation[0], orientation[1], orientation[2]];
    let column = [orientation[3], orientation[4], orientation[5]];
    let normal = [
        row[1] * column[2] - row[2] * column[1],
        row[2] * column[0] - row[0] * column[2],
        row[0] * column[1] - row[1] * column[0],
    ];
    let series = "2.25.1234567";
    // Shuffled so that file order and instance numbers say nothing about position.
    for (file_index, slice) in (0..SLICES).map(|s| (s * 7) % SLICES).enumerate() {
        let position: Vec<String> = (0..3)
            .map(|a| {
                format!(
                    "{:.6}",
                    -40.0 + 12.5 * a as f64 + slice as f64 * spacing_mm * normal[a]
                )
            })
            .collect();
        let orientation_text: Vec<String> = orientation.iter().map(|v| format!("{v:.6}")).collect();
        let pixels: Vec<u16> = (0..ROWS as usize * COLUMNS as usize)
            .map(|i| {
                let (r, c) = (i / COLUMNS as usize, i % COLUMNS as usize);
                (r * 31 + c * 7 + slice * 101) as u16
            })
            .collect();
        let sop = format!("{series}.{file_index}");
        let object = InMemDicomObject::from_element_iter([
            text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
            text(tags::SOP_INSTANCE_UID, VR::UI, &sop),
            text(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.42"),
            text(tags::SERIES_INSTANCE_UID, VR::UI, series),
            text(tags::MODALITY, VR::CS, "CT"),
            text(tags::PATIENT_NAME, VR::PN, "Phantom"),
            text(tags::PATIENT_ID, VR::LO, "phantom"),
            text(tags::SERIES_NUMBER, VR::IS, "1"),
            text(tags::INSTANCE_NUMBER, VR::IS, &(file_index + 1).to_string()),
            text(tags::IMAGE_POSITION_PATIENT, VR::DS, &position.join("\\")),
            text(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                &orientation_text.join("\\"),
            ),
            text(tags::PIXEL_SPACING, VR::DS, "0.8\\0.6"),
            text(tags::SLICE_THICKNESS, VR::DS, "9"),
            DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16)),
            text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(ROWS)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(COLUMNS)),
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
        let file = object
            .with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1"))
            .unwrap();
        file.write_to_file(dir.join(format!("{file_index:03}.dcm")))
            .unwrap();
    }
}

fn check_against_dcm2niix(test: &str, orientation: [f64; 6], spacing_mm: f64) {
    let (Some(dcm2niix), Some(python)) = (common::which("dcm2niix"), common::venv_python()) else {
        common::skip(test, "dcm2niix or the nibabel venv is missing");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    let output = work.path().join("out");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    write_series(&input, orientation, spacing_mm);

    let mut images: Vec<dicom::DicomImage> = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| dicom::read_file(e.unwrap().path()).unwrap())
        .collect();
    images.sort_by(|a, b| a.path.cmp(&b.path));
    let volume = volume::assemble(&images).unwrap();
    let ours = work.path().join("ours.nii.gz");
    nifti_export::write(&volume, &ours).unwrap();

    let run = Command::new(dcm2niix)
        .args(["-z", "n", "-f", "reference", "-o"])
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let reference = output.join("reference.nii");
    assert!(
        reference.exists(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );

    let compare = Command::new(python)
        .arg(common::helper("nifti_compare.py"))
        .arg(&ours)
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        compare.status.success(),
        "{}",
        String::from_utf8_lossy(&compare.stderr)
    );
    let report = String::from_utf8(compare.stdout).unwrap();
    let number = |key: &str| -> f64 {
        let rest = report
            .split(&format!("\"{key}\": "))
            .nth(1)
            .unwrap_or_else(|| panic!("{key} in {report}"));
        rest.split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(number("sform_difference") < 1e-3, "{report}");
    assert!(number("qform_difference") < 1e-3, "{report}");
    assert_eq!(number("voxel_difference"), 0.0, "{report}");
}

#[test]
fn axial_series_matches_dcm2niix() {
    check_against_dcm2niix(
        "axial_series_matches_dcm2niix",
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        2.5,
    );
}

#[test]
fn coronal_series_matches_dcm2niix() {
    check_against_dcm2niix(
        "coronal_series_matches_dcm2niix",
        [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
        3.0,
    );
}

#[test]
fn sagittal_series_matches_dcm2niix() {
    check_against_dcm2niix(
        "sagittal_series_matches_dcm2niix",
        [0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
        1.5,
    );
}

#[test]
fn oblique_series_matches_dcm2niix() {
    // Rotated 20° about z, then tilted 15° about the row direction.
    let (c, s) = (20f64.to_radians().cos(), 20f64.to_radians().sin());
    let (c2, s2) = (15f64.to_radians().cos(), 15f64.to_radians().sin());
    check_against_dcm2niix(
        "oblique_series_matches_dcm2niix",
        [c, s, 0.0, -s * c2, c * c2, s2],
        2.0,
    );
}
