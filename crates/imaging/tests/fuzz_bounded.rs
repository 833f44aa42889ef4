//! Runs every cargo-fuzz target in `fuzz/` (or those named in `VOXHUB_FUZZ_TARGETS`, comma
//! separated) for a bounded time (`VOXHUB_FUZZ_SECONDS` each, 20 by default) from seeds
//! generated here, and fails on any crash, use of memory past 2 GiB, or input slower than
//! 30 s. Needs cargo-fuzz (and uses nightly where installed, else the stable toolchain with
//! `RUSTC_BOOTSTRAP=1`); without cargo-fuzz it says so loudly, and fails where `CI` is set,
//! so that CI cannot skip it silently.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use voxhub_imaging::nifti_export;
use voxhub_imaging::volume::{StackGeometry, Volume};

const TARGETS: [&str; 4] = ["dicom_read", "nifti_read", "archive_expand", "raster_read"];
/// Longest input the fuzzer makes: large enough for small images and archives.
const MAX_INPUT_BYTES: usize = 65536;

fn fuzz_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Which toolchain builds the targets: nightly where installed; otherwise the machine's
/// stable one, allowed the sanitizer flags by `RUSTC_BOOTSTRAP=1` (a fresh machine of this
/// project's kind has one toolchain and can fetch no other).
#[derive(Clone, Copy)]
enum Toolchain {
    Nightly,
    StableBootstrapped,
}

/// `cargo +<toolchain> fuzz ...` in the fuzz folder, with none of the variables the outer
/// cargo set for this test (they would point the inner build at this test's toolchain).
fn cargo_fuzz(toolchain: Toolchain, arguments: &[&str]) -> Command {
    let mut command = Command::new("cargo");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let keep = key == "CARGO_HOME" || key == "RUSTUP_HOME";
        if !keep && (key.starts_with("CARGO") || key.starts_with("RUST")) {
            command.env_remove(&key);
        }
    }
    match toolchain {
        Toolchain::Nightly => command.arg("+nightly"),
        Toolchain::StableBootstrapped => command.arg("+stable").env("RUSTC_BOOTSTRAP", "1"),
    };
    command
        .arg("fuzz")
        .args(arguments)
        .current_dir(fuzz_folder());
    command
}

fn works(mut command: Command) -> bool {
    command.output().is_ok_and(|output| output.status.success())
}

/// The toolchain to fuzz with, or why there is none.
fn toolchain() -> Result<Toolchain, &'static str> {
    let mut nightly = Command::new("cargo");
    nightly.args(["+nightly", "--version"]);
    let has_nightly = works(nightly);
    let toolchain = if has_nightly {
        Toolchain::Nightly
    } else {
        Toolchain::StableBootstrapped
    };
    if works(cargo_fuzz(toolchain, &["--version"])) {
        Ok(toolchain)
    } else {
        Err("cargo-fuzz is missing (cargo install cargo-fuzz --locked)")
    }
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let start = text.len().saturating_sub(6000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

#[test]
fn fuzz_targets_run_without_crashing() {
    let test = "fuzz_targets_run_without_crashing";
    let toolchain = match toolchain() {
        Ok(toolchain) => toolchain,
        Err(reason) => {
            common::skip(test, reason);
            return;
        }
    };
    let seconds: u64 = std::env::var("VOXHUB_FUZZ_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let build = cargo_fuzz(toolchain, &["build"]).output().unwrap();
    assert!(
        build.status.success(),
        "cargo fuzz build failed:\n{}",
        tail(&build.stderr)
    );
    // VOXHUB_FUZZ_TARGETS=nifti_read,archive_expand runs only those; by default, all.
    let chosen = std::env::var("VOXHUB_FUZZ_TARGETS").unwrap_or_default();
    let chosen: Vec<&str> = chosen.split(',').filter(|t| !t.is_empty()).collect();
    if let Some(unknown) = chosen.iter().find(|t| !TARGETS.contains(t)) {
        panic!("VOXHUB_FUZZ_TARGETS names {unknown}; the targets are {TARGETS:?}");
    }
    for target in TARGETS {
        if !chosen.is_empty() && !chosen.contains(&target) {
            eprintln!("{target}: not in VOXHUB_FUZZ_TARGETS, not run");
            continue;
        }
        let corpus = fuzz_folder().join("corpus").join(target);
        write_seeds(target, &corpus);
        let corpus_argument = corpus.to_string_lossy().into_owned();
        let options = [
            format!("-max_total_time={seconds}"),
            // A fixed seed: from the same seeds the same inputs are tried in the same order,
            // so a run is repeatable (VOXHUB_FUZZ_SEED picks another for longer hunts).
            format!(
                "-seed={}",
                std::env::var("VOXHUB_FUZZ_SEED").unwrap_or_else(|_| "1".into())
            ),
            format!("-max_len={MAX_INPUT_BYTES}"),
            "-rss_limit_mb=2048".to_owned(),
            "-timeout=30".to_owned(),
        ];
        let mut arguments = vec!["run", target, corpus_argument.as_str(), "--"];
        arguments.extend(options.iter().map(String::as_str));
        let run = cargo_fuzz(toolchain, &arguments).output().unwrap();
        let artifacts = fuzz_folder().join("artifacts").join(target);
        assert!(
            run.status.success(),
            "fuzz target {target} found a failure; reproduce with `cargo +nightly fuzz run {target} <artifact>` \
             (artifacts in {}):\n{}",
            artifacts.display(),
            tail(&run.stderr)
        );
        eprintln!(
            "{target}: {seconds} s without a failure; {}",
            tail(&run.stderr)
                .lines()
                .rev()
                .find(|line| line.contains("stat::number_of_executed_units")
                    || line.starts_with("Done"))
                .unwrap_or("")
        );
    }
}

/// Writes the seeds into `fuzz/corpus/<target>` (ignored by git) so that manual fuzzing
/// starts from them too: `cargo test -p voxhub-imaging --test fuzz_bounded -- --ignored`.
#[test]
#[ignore]
fn write_all_seeds() {
    for target in TARGETS {
        write_seeds(target, &fuzz_folder().join("corpus").join(target));
    }
}

fn write_seeds(target: &str, folder: &Path) {
    std::fs::create_dir_all(folder).unwrap();
    let seeds = match target {
        "dicom_read" => dicom_seeds(),
        "nifti_read" => nifti_seeds(),
        "archive_expand" => archive_seeds(),
        "raster_read" => raster_seeds(),
        other => panic!("no seeds for {other}"),
    };
    for (index, seed) in seeds.iter().enumerate() {
        assert!(
            seed.len() <= MAX_INPUT_BYTES,
            "{target} seed {index} is too long"
        );
        std::fs::write(folder.join(format!("seed-{index}")), seed).unwrap();
    }
}

fn small_volume() -> Volume {
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    Volume {
        geometry: StackGeometry {
            order: vec![0, 1, 2],
            rows: 4,
            columns: 3,
            row_direction: [c, s, 0.0],
            column_direction: [-s, c, 0.0],
            normal: [0.0, 0.0, 1.0],
            spacing_mm: [0.5, 0.75, 2.0],
            origin_mm: [-10.0, 20.0, 30.0],
        },
        voxels: (0..36).map(|v| v as f32 * 3.0 - 40.0).collect(),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn nifti_seeds() -> Vec<Vec<u8>> {
    let volume = small_volume();
    let integral = nifti_export::encode(&volume).unwrap();
    let mut fractional = volume.clone();
    fractional.voxels.iter_mut().for_each(|v| *v += 0.25);
    let fractional = nifti_export::encode(&fractional).unwrap();
    // NIfTI-2, big-endian, 2x2x2x2 uint8 with the qform only.
    let mut two = vec![0u8; 544];
    two[..4].copy_from_slice(&540i32.to_be_bytes());
    two[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
    two[12..14].copy_from_slice(&2i16.to_be_bytes());
    for (i, d) in [4i64, 2, 2, 2, 2, 1, 1, 1].iter().enumerate() {
        two[16 + 8 * i..24 + 8 * i].copy_from_slice(&d.to_be_bytes());
    }
    for (i, p) in [-1f64, 1.0, 1.5, 2.0].iter().enumerate() {
        two[104 + 8 * i..112 + 8 * i].copy_from_slice(&p.to_be_bytes());
    }
    two[168..176].copy_from_slice(&544i64.to_be_bytes());
    two[176..184].copy_from_slice(&2f64.to_be_bytes());
    two[344..348].copy_from_slice(&1i32.to_be_bytes());
    two[352..360].copy_from_slice(&0.5f64.to_be_bytes());
    two.extend(0u8..16);
    vec![gzip(&integral), integral, fractional, gzip(&two), two]
}

fn dicom_object(rows: u16, columns: u16, rgb: bool) -> InMemDicomObject {
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let samples: u16 = if rgb { 3 } else { 1 };
    let count = usize::from(rows) * usize::from(columns);
    let pixels = if rgb {
        PrimitiveValue::U8((0..count * 3).map(|i| i as u8).collect())
    } else {
        PrimitiveValue::U16((0..count).map(|i| i as u16 * 37).collect())
    };
    InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2"),
        text(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1"),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::PATIENT_ID, VR::LO, "fuzz"),
        text(tags::IMAGE_POSITION_PATIENT, VR::DS, "-10\\20\\30"),
        text(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0"),
        text(tags::PIXEL_SPACING, VR::DS, "0.5\\0.5"),
        DataElement::new(
            tags::SAMPLES_PER_PIXEL,
            VR::US,
            PrimitiveValue::from(samples),
        ),
        text(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            if rgb { "RGB" } else { "MONOCHROME2" },
        ),
        DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows)),
        DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(columns)),
        DataElement::new(
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(if rgb { 8u16 } else { 16 }),
        ),
        DataElement::new(
            tags::BITS_STORED,
            VR::US,
            PrimitiveValue::from(if rgb { 8u16 } else { 12 }),
        ),
        DataElement::new(
            tags::HIGH_BIT,
            VR::US,
            PrimitiveValue::from(if rgb { 7u16 } else { 11 }),
        ),
        DataElement::new(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        text(tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
        text(tags::RESCALE_SLOPE, VR::DS, "1"),
        DataElement::new(tags::PIXEL_DATA, if rgb { VR::OB } else { VR::OW }, pixels),
    ])
}

fn dicom_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (rgb, syntax) in [
        (false, "1.2.840.10008.1.2.1"),
        (true, "1.2.840.10008.1.2.1"),
        (false, "1.2.840.10008.1.2"),
        (false, "1.2.840.10008.1.2.2"),
    ] {
        let file = dicom_object(6, 5, rgb)
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(syntax))
            .unwrap();
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).unwrap();
        seeds.push(bytes);
    }
    // Neither preamble nor meta group: the data set alone, implicit VR little endian.
    let registry = dicom_transfer_syntax_registry::TransferSyntaxRegistry;
    use dicom_transfer_syntax_registry::TransferSyntaxIndex;
    let implicit = registry.get("1.2.840.10008.1.2").unwrap();
    let mut bare = Vec::new();
    dicom_object(4, 4, false)
        .write_dataset_with_ts(&mut bare, implicit)
        .unwrap();
    seeds.push(bare);
    seeds
}

fn archive_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let nifti = nifti_export::encode(&small_volume()).unwrap();
    for method in [
        zip::CompressionMethod::Stored,
        zip::CompressionMethod::Deflated,
    ] {
        let mut bytes = Vec::new();
        {
            let mut writer = zip::ZipWriter::new(std::io::Cursor::new(&mut bytes));
            let options = zip::write::SimpleFileOptions::default().compression_method(method);
            writer.add_directory("study/", options).unwrap();
            writer.start_file("study/volume.nii", options).unwrap();
            writer.write_all(&nifti).unwrap();
            writer.start_file("study/notes.txt", options).unwrap();
            writer.write_all(b"hello hello hello hello").unwrap();
            writer
                .start_file("__MACOSX/study/._notes.txt", options)
                .unwrap();
            writer.write_all(b"apple").unwrap();
            writer.finish().unwrap();
        }
        seeds.push(bytes);
    }
    let inner = seeds[0].clone();
    let mut nested = Vec::new();
    {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(&mut nested));
        let options = zip::write::SimpleFileOptions::default();
        writer.start_file("inner.zip", options).unwrap();
        writer.write_all(&inner).unwrap();
        writer.start_file("../evil", options).unwrap();
        writer.write_all(b"x").unwrap();
        writer.finish().unwrap();
    }
    seeds.push(nested);
    seeds
}

fn png_bytes(width: u32, height: u32, color: png::ColorType, depth: png::BitDepth) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if color == png::ColorType::Indexed {
            encoder.set_palette(vec![0u8, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]);
        }
        let mut writer = encoder.write_header().unwrap();
        let samples = match color {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::GrayscaleAlpha => 2,
            _ => 1,
        };
        let row_bytes = (width as usize * samples * depth as usize).div_ceil(8);
        let data: Vec<u8> = (0..row_bytes * height as usize)
            .map(|i| {
                if color == png::ColorType::Indexed {
                    (i % 4) as u8
                } else {
                    (i * 7) as u8
                }
            })
            .collect();
        writer.write_image_data(&data).unwrap();
    }
    bytes
}

fn raster_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        png_bytes(6, 5, png::ColorType::Grayscale, png::BitDepth::Eight),
        png_bytes(6, 5, png::ColorType::Rgb, png::BitDepth::Sixteen),
        png_bytes(6, 5, png::ColorType::Indexed, png::BitDepth::Two),
        png_bytes(6, 5, png::ColorType::Rgba, png::BitDepth::Eight),
    ];
    let rgb: Vec<u8> = (0..16 * 12 * 3).map(|i| (i * 5) as u8).collect();
    for (progressive, color) in [
        (false, jpeg_encoder::ColorType::Rgb),
        (true, jpeg_encoder::ColorType::Rgb),
        (false, jpeg_encoder::ColorType::Luma),
    ] {
        let mut bytes = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 80);
        encoder.set_progressive(progressive);
        encoder.encode(&rgb, 16, 12, color).unwrap();
        seeds.push(bytes);
    }
    seeds
}
