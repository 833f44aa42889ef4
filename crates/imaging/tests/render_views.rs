//! What the viewer and DICOMweb are given, checked against pydicom and numpy: colour images
//! (palette, YBR, planar) decoded to the RGB pydicom gives, DICOM files written back by
//! `encode_file` unchanged, the DICOM JSON Model against pydicom's `to_json_dict`,
//! automatic windows against numpy's percentiles, and reformatted slices rendered with
//! square pixels and label overlays that line up with them.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use voxhub_imaging::dicom::{self, DicomImage};
use voxhub_imaging::dicom_json;
use voxhub_imaging::reformat::{self, Plane};
use voxhub_imaging::render::{self, WindowLevel};
use voxhub_imaging::volume::{StackGeometry, Volume};

const HELPER: &str = "render_views_reference.py";

/// pydicom's test files and the venv's Python, or a loud skip (a failure under CI).
fn reference(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (common::pydicom_test_files(), common::venv_python()) {
        (Some(folder), Some(python)) => Some((folder, python)),
        _ => {
            common::skip(
                test,
                "the imaging venv with pydicom's test files is not installed",
            );
            None
        }
    }
}

fn run_helper(python: &Path, args: &[OsString]) -> String {
    let mut command = Command::new(python);
    command.arg(common::helper(HELPER)).args(args);
    let output = command.output().expect("run the pydicom helper");
    assert!(
        output.status.success(),
        "pydicom helper failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One JSON report per line of the helper's output.
fn reports(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn decode_png(bytes: &[u8]) -> (u32, u32, png::ColorType, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    buffer.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buffer)
}

#[test]
fn palette_ybr_and_planar_colour_decode_to_the_rgb_pydicom_gives() {
    let Some((folder, python)) = reference("palette_ybr_and_planar_colour_decode") else {
        return;
    };
    let fixtures = tempfile::tempdir().unwrap();
    let names = run_helper(&python, &["fixtures".into(), fixtures.path().into()]);
    let mut files: Vec<PathBuf> = names.lines().map(|n| fixtures.path().join(n)).collect();
    files.push(folder.join("examples_palette.dcm"));
    files.push(folder.join("SC_ybr_full_422_uncompressed.dcm"));
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<OsString> = vec!["colour".into(), out.path().into()];
    args.extend(files.iter().map(|f| f.into()));
    let references = reports(&run_helper(&python, &args));
    assert_eq!(references.len(), files.len());
    for (index, (file, report)) in files.iter().zip(&references).enumerate() {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(report.get("error").is_none(), "pydicom: {report}");
        let image = dicom::read_file(file).unwrap();
        let frames = dicom::pixels(&image).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(frames.photometric_interpretation, "RGB", "{name}");
        assert_eq!(frames.samples_per_pixel, 3, "{name}");
        let ours = frames.frames.concat();
        let theirs = read_f32(&out.path().join(format!("{index}.f32")));
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} samples differ from pydicom"
        );
    }
}

/// Files read, written back by `encode_file` and read again: every kind of encoding, with
/// and without meta, compressed ones (whose fragments must survive), deflated, sequences.
const ROUND_TRIP: &[&str] = &[
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg_dcmd.dcm",
    "SC_rgb_rle_2frame.dcm",
    "examples_palette.dcm",
    "examples_ybr_color.dcm",
    "ExplVR_LitEndNoMeta.dcm",
    "ExplVR_BigEndNoMeta.dcm",
    "image_dfl.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "nested_priv_SQ.dcm",
    "rtdose.dcm",
    "waveform_ecg.dcm",
];

fn same_decoding(before: &DicomImage, after: &DicomImage) -> Result<(), String> {
    match (dicom::pixels(before), dicom::pixels(after)) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Ok(_), Ok(_)) => Err("pixels differ".into()),
        (Err(a), Err(b)) if std::mem::discriminant(&a) == std::mem::discriminant(&b) => Ok(()),
        (a, b) => Err(format!(
            "decoding differs: {:?} vs {:?}",
            a.err().map(|e| e.to_string()),
            b.err().map(|e| e.to_string())
        )),
    }
}

/// The JSON with one trailing zero byte dropped from every binary value: files with values of
/// odd length (invalid, but pydicom's nested_priv_SQ.dcm has one) are written padded to
/// even length, as DICOM requires.
fn without_padding(json: serde_json::Value) -> serde_json::Value {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    match json {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = match (key.as_str(), value) {
                        ("InlineBinary", serde_json::Value::String(text)) => {
                            let mut bytes = engine.decode(text).unwrap();
                            if bytes.last() == Some(&0) {
                                bytes.pop();
                            }
                            serde_json::Value::String(engine.encode(bytes))
                        }
                        (_, value) => without_padding(value),
                    };
                    (key, value)
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(without_padding).collect())
        }
        other => other,
    }
}

#[test]
fn encoded_files_read_back_with_the_same_attributes_pixels_and_elements() {
    let Some((folder, python)) = reference("encoded_files_read_back") else {
        return;
    };
    let written = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for name in ROUND_TRIP {
        let path = folder.join(name);
        if !path.is_file() {
            continue;
        }
        let before = dicom::read_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = dicom::encode_file(before.object()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&bytes[128..132], b"DICM", "{name}");
        let after = dicom::read_bytes(Path::new(name), &bytes).unwrap();
        assert!(after.had_file_meta, "{name}");
        assert_eq!(after.attributes, before.attributes, "{name}");
        assert_eq!(after.geometry, before.geometry, "{name}");
        assert_eq!(after.pixel_format, before.pixel_format, "{name}");
        assert_eq!(after.windows, before.windows, "{name}");
        assert_eq!(
            (after.rescale_slope, after.rescale_intercept),
            (before.rescale_slope, before.rescale_intercept),
            "{name}"
        );
        // The transfer syntax is kept, deflated included; files without meta get one.
        assert_eq!(
            after.transfer_syntax_uid, before.transfer_syntax_uid,
            "{name}"
        );
        same_decoding(&before, &after).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = |image: &DicomImage| {
            without_padding(dicom_json::to_json(image.object(), |_| true, None))
        };
        assert_eq!(json(&after), json(&before), "{name}: elements differ");
        let copy = written.path().join(name);
        std::fs::write(&copy, &bytes).unwrap();
        pairs.push((path, copy));
    }
    assert!(pairs.len() >= 15, "only {} files were found", pairs.len());
    // pydicom reads the written files as the same data sets.
    let mut args: Vec<OsString> = vec!["same".into()];
    for (original, copy) in &pairs {
        args.push(original.into());
        args.push(copy.into());
    }
    let mut failures = BTreeMap::new();
    for report in reports(&run_helper(&python, &args)) {
        let differences = report["differences"].as_array().unwrap();
        if !differences.is_empty() {
            failures.insert(report["file"].to_string(), report["differences"].clone());
        }
    }
    assert!(
        failures.is_empty(),
        "pydicom sees differences: {failures:#?}"
    );
}

/// Files whose DICOM JSON must equal pydicom's: images, RT objects with deep sequences,
/// structured reports, private sequences, and character sets (Latin, Cyrillic, Greek,
/// Arabic, Hebrew, UTF-8, GB 18030). Not here: the ISO 2022 code extensions of Japanese and
/// Korean (chrH31.dcm, chrJapMulti.dcm, chrKoreanMulti.dcm, chrI2.dcm, chrSQEncoding*.dcm), which
/// dicom-rs 0.10 does not decode, so such names keep their escape sequences.
const JSON_FILES: &[&str] = &[
    "test_files/CT_small.dcm",
    "test_files/MR_small.dcm",
    "test_files/MR_small_implicit.dcm",
    "test_files/MR_small_RLE.dcm",
    "test_files/JPEG2000.dcm",
    "test_files/examples_palette.dcm",
    "test_files/rtplan.dcm",
    "test_files/rtstruct.dcm",
    "test_files/rtdose.dcm",
    "test_files/test-SR.dcm",
    "test_files/reportsi.dcm",
    "test_files/nested_priv_SQ.dcm",
    "test_files/image_dfl.dcm",
    "test_files/waveform_ecg.dcm",
    "charset_files/chrFren.dcm",
    "charset_files/chrGerm.dcm",
    "charset_files/chrRuss.dcm",
    "charset_files/chrGreek.dcm",
    "charset_files/chrArab.dcm",
    "charset_files/chrHbrw.dcm",
    "charset_files/chrX1.dcm",
    "charset_files/chrX2.dcm",
    "charset_files/chrFrenMulti.dcm",
];

#[test]
fn dicom_json_equals_pydicoms_to_json_dict() {
    let Some((folder, python)) = reference("dicom_json_equals_pydicoms_to_json_dict") else {
        return;
    };
    let data = folder.parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for (index, name) in JSON_FILES.iter().enumerate() {
        let path = data.join(name);
        let image = dicom::read_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = dicom_json::to_json(image.object(), |_| true, None);
        let ours = out.path().join(format!("{index}.json"));
        std::fs::write(&ours, serde_json::to_vec(&json).unwrap()).unwrap();
        pairs.push((path, ours));
    }
    let mut args: Vec<OsString> = vec!["json".into()];
    for (path, ours) in &pairs {
        args.push(path.into());
        args.push(ours.into());
    }
    let mut failures = BTreeMap::new();
    let reports = reports(&run_helper(&python, &args));
    assert_eq!(reports.len(), JSON_FILES.len());
    let count = |key: &str| {
        reports
            .iter()
            .map(|r| r[key].as_u64().unwrap())
            .sum::<u64>()
    };
    let (compared, unknown) = (count("compared"), count("unknown_vr"));
    eprintln!("{compared} attributes compared with pydicom, {unknown} of them UN in the file");
    assert!(
        compared > 1000 && unknown * 20 < compared,
        "{compared} compared, {unknown} UN"
    );
    for report in reports {
        let differences = report["differences"].as_array().unwrap();
        if !differences.is_empty() {
            failures.insert(report["file"].to_string(), report["differences"].clone());
        }
    }
    assert!(
        failures.is_empty(),
        "differences from pydicom: {failures:#?}"
    );
}

#[test]
fn qido_attributes_of_a_file_are_indexed() {
    let Some((folder, _)) = reference("qido_attributes_of_a_file_are_indexed") else {
        return;
    };
    let image = dicom::read_file(folder.join("CT_small.dcm")).unwrap();
    let a = &image.attributes;
    assert_eq!(a.patient_sex.as_deref(), Some("O"));
    assert_eq!(a.patient_birth_date, None);
    assert_eq!(a.study_time.as_deref(), Some("072730"));
    assert_eq!(a.study_id.as_deref(), Some("1CT1"));
    assert_eq!(a.accession_number, None);
    assert_eq!(a.referring_physician_name, None);
    assert_eq!(a.series_number, Some(1));
    assert_eq!(a.series_time.as_deref(), Some("112749"));
    assert_eq!(a.study_description.as_deref(), Some("e+1"));
    assert_eq!(a.manufacturer.as_deref(), Some("GE MEDICAL SYSTEMS"));
    assert_eq!(a.manufacturer_model_name.as_deref(), Some("RHAPSODE"));
    assert_eq!(a.institution_name.as_deref(), Some("JFK IMAGING CENTER"));
    assert_eq!(a.station_name.as_deref(), Some("CT01_OC0"));
    assert_eq!(a.protocol_name, None);
    assert_eq!(
        (a.content_date.as_deref(), a.content_time.as_deref()),
        (Some("19970430"), Some("113008"))
    );
    assert_eq!(
        (a.rows, a.columns, a.bits_allocated),
        (Some(128), Some(128), Some(16))
    );
    assert_eq!(a.number_of_frames, None);
    let multi = dicom::read_file(folder.join("rtdose.dcm")).unwrap();
    assert_eq!(multi.attributes.number_of_frames, Some(15));
    let jpeg = dicom::read_file(folder.join("JPEG2000.dcm")).unwrap();
    assert_eq!(
        jpeg.attributes.study_description.as_deref(),
        Some("Whole Body Bone")
    );
    let rt = dicom::read_file(folder.join("rtplan.dcm")).unwrap();
    assert_eq!(rt.attributes.rows, None);
}

#[test]
fn auto_window_spans_numpys_half_and_99_and_a_half_percentiles() {
    let Some((folder, python)) = reference("auto_window_spans_numpys_percentiles") else {
        return;
    };
    for name in ["MR_small.dcm", "CT_small.dcm"] {
        let file = folder.join(name);
        let expected = &reports(&run_helper(
            &python,
            &["percentiles".into(), file.clone().into()],
        ))[0];
        let image = dicom::read_file(&file).unwrap();
        let values = dicom::pixels(&image).unwrap().frames.concat();
        let window = render::auto_window(&values);
        let low = window.center - 0.5 - (window.width - 1.0) / 2.0;
        let high = window.center - 0.5 + (window.width - 1.0) / 2.0;
        assert!(
            (low - expected["low"].as_f64().unwrap()).abs() < 1e-6,
            "{name}: {low}"
        );
        assert!(
            (high - expected["high"].as_f64().unwrap()).abs() < 1e-6,
            "{name}: {high}"
        );
        // The percentiles are black and white.
        assert_eq!(render::window_value(low, window), 0.0);
        assert_eq!(render::window_value(high, window), 255.0);
    }
}

/// An axial CT-like volume: `columns` x `rows` x `slices` with 0.7 mm pixels and 2.5 mm
/// slices, each voxel `slice * 10 + (row < rows / 2) as f32` so that slices and halves can
/// be told apart.
fn ct_volume(columns: usize, rows: usize, slices: usize) -> Volume {
    let mut voxels = Vec::with_capacity(columns * rows * slices);
    for k in 0..slices {
        for j in 0..rows {
            let value = k as f32 * 10.0 + if j < rows / 2 { 1.0 } else { 0.0 };
            voxels.extend(std::iter::repeat_n(value, columns));
        }
    }
    Volume {
        geometry: StackGeometry {
            order: (0..slices).collect(),
            rows: rows as u32,
            columns: columns as u32,
            row_direction: [1.0, 0.0, 0.0],
            column_direction: [0.0, 1.0, 0.0],
            normal: [0.0, 0.0, 1.0],
            spacing_mm: [0.7, 0.7, 2.5],
            origin_mm: [-180.0, -180.0, -400.0],
        },
        voxels,
    }
}

#[test]
fn coronal_slice_of_thick_ct_slices_renders_with_square_pixels() {
    let volume = ct_volume(64, 64, 30);
    let slice = reformat::slice(&volume, Plane::Coronal, 10).unwrap();
    assert_eq!((slice.columns, slice.rows), (64, 30));
    assert_eq!(slice.pixel_spacing_mm, [0.7, 2.5]);
    // 30 slices of 2.5 mm are 75 mm: 107 rows of 0.7 mm.
    assert_eq!(
        render::display_size(64, 30, slice.pixel_spacing_mm),
        (64, 107)
    );
    let window = WindowLevel {
        center: 150.0,
        width: 300.0,
    };
    let (width, height, colour, pixels) =
        decode_png(&render::render_slice_png(&slice, window, false));
    assert_eq!(
        (width, height, colour),
        (64, 107, png::ColorType::Grayscale)
    );
    // Top is superior: the top row shows the last slice (290 + 1) and the bottom row the first.
    let expected = |value: f64| render::window_value(value, window).round() as u8;
    assert_eq!(pixels[0], expected(291.0));
    assert_eq!(pixels[106 * 64], expected(1.0));
    // Rows between two slices blend them linearly, in modality values before windowing.
    let middle = pixels[53 * 64];
    assert!(
        middle > expected(141.0) && middle < expected(161.0),
        "{middle}"
    );
    // Every row is uniform and rows never get brighter downwards.
    for row in pixels.chunks_exact(64) {
        assert!(row.iter().all(|&p| p == row[0]));
    }
    assert!(
        pixels
            .chunks_exact(64)
            .zip(pixels.chunks_exact(64).skip(1))
            .all(|(a, b)| a[0] >= b[0])
    );
    // MONOCHROME1 inverts.
    let (_, _, _, inverted) = decode_png(&render::render_slice_png(&slice, window, true));
    assert_eq!(inverted[0], 255 - pixels[0]);
}

#[test]
fn label_overlays_line_up_with_the_rendered_slice() {
    let mut volume = ct_volume(16, 16, 8);
    // A label volume on the same grid: label 2 in the anterior half, 0 elsewhere, label 13
    // in one voxel.
    for value in volume.voxels.iter_mut() {
        *value = if *value % 10.0 == 1.0 { 2.0 } else { 0.0 };
    }
    volume.voxels[7 * 256 + 3] = 13.0;
    let labels = reformat::slice(&volume, Plane::Sagittal, 3).unwrap();
    let size = render::display_size(labels.columns, labels.rows, labels.pixel_spacing_mm);
    let overlay = render::render_label_png(
        &labels.values,
        labels.columns,
        labels.rows,
        labels.pixel_spacing_mm,
    );
    let (width, height, colour, rgba) = decode_png(&overlay);
    assert_eq!((width, height), size);
    assert_eq!(colour, png::ColorType::Rgba);
    let image = render::render_slice_png(
        &labels,
        WindowLevel {
            center: 1.0,
            width: 2.0,
        },
        false,
    );
    assert_eq!(decode_png(&image).0..decode_png(&image).1, width..height);
    let pixel =
        |x: u32, y: u32| &rgba[((y * width + x) * 4) as usize..((y * width + x) * 4 + 4) as usize];
    let [r, g, b] = render::LABEL_COLOURS[1];
    // Anterior (image left) is label 2, posterior transparent; no blended colours anywhere.
    assert_eq!(pixel(0, height / 2), [r, g, b, 255]);
    assert_eq!(pixel(width - 1, height / 2), [0, 0, 0, 0]);
    for colour in rgba.chunks_exact(4) {
        assert!(colour == [0, 0, 0, 0] || colour[3] == 255);
        assert!(colour[3] == 0 || render::LABEL_COLOURS.iter().any(|c| c[..] == colour[..3]));
    }
    // Label 13 wraps around to the first colour; it sits at the top (the last slice).
    let [r, g, b] = render::LABEL_COLOURS[0];
    assert_eq!(pixel(0, 0), [r, g, b, 255]);
}

#[test]
fn rgb_images_render_unwindowed_and_16_bit_samples_are_scaled() {
    let Some((folder, _)) = reference("rgb_images_render_unwindowed") else {
        return;
    };
    for name in ["examples_rgb_color.dcm", "examples_palette.dcm"] {
        let image = dicom::read_file(folder.join(name)).unwrap();
        let frames = dicom::pixels(&image).unwrap();
        let values = &frames.frames[0];
        let png = render::render_rgb_png(values, frames.columns, frames.rows, None).unwrap();
        let (width, height, colour, pixels) = decode_png(&png);
        assert_eq!(
            (width, height, colour),
            (frames.columns, frames.rows, png::ColorType::Rgb)
        );
        let scale = if values.iter().any(|&v| v > 255.0) {
            255.0 / 65535.0
        } else {
            1.0
        };
        for (pixel, value) in pixels.iter().zip(values) {
            assert_eq!(*pixel, (value * scale).round() as u8, "{name}");
        }
    }
}

#[test]
fn reformatting_a_ct_sized_volume_takes_milliseconds() {
    let volume = ct_volume(512, 512, 300);
    let mut timings = Vec::new();
    for plane in Plane::ALL {
        let index = reformat::plane_len(&volume, plane) / 2;
        let start = Instant::now();
        let slice = reformat::slice(&volume, plane, index).unwrap();
        let elapsed = start.elapsed();
        timings.push(format!(
            "{plane} {}x{}: {elapsed:?}",
            slice.columns, slice.rows
        ));
        // Unoptimised test builds are several times slower than release; the bound is for
        // a coarse regression (an allocation per voxel would take far longer).
        assert!(elapsed.as_millis() < 250, "{plane}: {elapsed:?}");
    }
    eprintln!("reformat timings: {}", timings.join(", "));
}
