//! The web viewer's API against real files: a synthetic CT series written with pydicom
//! (signed, rescaled, slices uploaded out of order, thicker slices than pixels) is shown in
//! three planes with the exact HU under the cursor and the grey levels of the DICOM VOI LUT
//! function; MONOCHROME1 is inverted; pydicom's RGB, YBR, palette and multi-frame files are
//! shown as pydicom decodes them; 12-bit lossy JPEG is refused naming its transfer syntax;
//! masks are laid over their image only on the same grid; every refusal is checked from the
//! side of the person who must not get through, and every view is audited.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use voxhub_core::role::Role;

/// Writes the synthetic series and the expected values of pydicom's files.
const FIXTURES: &str = r#"
import json, os, sys
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

out = sys.argv[1]
columns, rows, slices = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ct_dir = os.path.join(out, "ct")
os.makedirs(ct_dir, exist_ok=True)

def dataset(path, sop_class, study, series, modality, description):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = modality
    ds.PatientName = "VIEWER^TEST"
    ds.PatientID = "VIEWER-0001"
    ds.StudyDate = "20240102"
    ds.SeriesDescription = description
    ds.SeriesNumber = 3
    return ds

# CT: HU of column c, row r, slice k (k grows towards the head) is -700 + 10 c + r + 3 k,
# stored signed as HU + 24 with Rescale Intercept -24 (so many stored values are negative).
study, series, frame = generate_uid(), generate_uid(), generate_uid()
c = np.arange(columns)[None, :]
r = np.arange(rows)[:, None]
for k in range(slices):
    path = os.path.join(ct_dir, "slice-%03d.dcm" % ((k * 7919) % slices))
    ds = dataset(path, "1.2.840.10008.5.1.4.1.1.2", study, series, "CT", "Synthetic CT")
    ds.FrameOfReferenceUID = frame
    ds.InstanceNumber = slices - k
    ds.Rows, ds.Columns = rows, columns
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 2.5
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-16.0, -20.0, -50.0 + 2.5 * k]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -24, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    hu = -700 + 10 * c + r + 3 * k
    ds.PixelData = (hu + 24).astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)

# The same 32x32 picture as MONOCHROME2 and MONOCHROME1 (value 8 r + c, 12 bits stored).
for photometric in ("MONOCHROME2", "MONOCHROME1"):
    path = os.path.join(out, photometric.lower() + ".dcm")
    ds = dataset(path, "1.2.840.10008.5.1.4.1.1.1", generate_uid(), generate_uid(), "CR", photometric)
    ds.Rows, ds.Columns = 32, 32
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 100, 300
    values = 8 * np.arange(32)[:, None] + np.arange(32)[None, :]
    ds.PixelData = values.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)

# A greyscale picture (PNG): value 16 x + y.
from PIL import Image
picture = (16 * np.arange(16)[None, :] + np.arange(8)[:, None]).astype(np.uint8)
Image.fromarray(picture, mode="L").save(os.path.join(out, "picture.png"))

# pydicom's own decoding of its colour files, at a few pixels (pixel_array turns YBR into RGB).
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut
expected = {}
def pixels(name, convert):
    ds = pydicom.dcmread(get_testdata_file(name))
    arr = ds.pixel_array
    if convert == "palette":
        arr = apply_color_lut(arr, ds)
        arr = np.round(arr.astype(np.float64) * 255.0 / 65535.0) if arr.max() > 255 else arr
    return ds, arr
for name, convert in [("examples_rgb_color.dcm", None), ("examples_palette.dcm", "palette"),
                      ("SC_ybr_full_422_uncompressed.dcm", None), ("SC_rgb_rle_2frame.dcm", None)]:
    ds, arr = pixels(name, convert)
    frames = arr if int(ds.get("NumberOfFrames", 1)) > 1 else arr[None]
    points = []
    for f in range(frames.shape[0]):
        h, w = frames.shape[1], frames.shape[2]
        for (y, x) in [(0, 0), (h // 2, w // 3), (h - 1, w - 1), (h // 3, w // 2)]:
            points.append({"frame": f, "x": x, "y": y, "rgb": [int(v) for v in frames[f, y, x]]})
    expected[name] = {"columns": int(ds.Columns), "rows": int(ds.Rows), "frames": frames.shape[0], "points": points}
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
"#;

/// Makes a mask from the CT's own NIfTI: label 1 where -100 <= HU < 0, 2 where HU >= 0;
/// and a mask on another grid (half the columns and rows).
const MASKS: &str = r#"
import sys
import numpy as np
import nibabel as nib
image = nib.load(sys.argv[1])
data = np.asarray(image.dataobj, dtype=np.float64)
label = np.zeros(data.shape, dtype=np.uint8)
label[(data >= -100) & (data < 0)] = 1
label[data >= 0] = 2
nib.save(nib.Nifti1Image(label, image.affine), sys.argv[2])
small = label[::2, ::2, :]
affine = image.affine.copy()
affine[:3, :2] *= 2
nib.save(nib.Nifti1Image(small, affine), sys.argv[3])
"#;

const COLUMNS: usize = 64;
const ROWS: usize = 64;
const SLICES: usize = 40;

fn hu(column: usize, row: usize, slice: usize) -> f64 {
    -700.0 + 10.0 * column as f64 + row as f64 + 3.0 * slice as f64
}

/// The DICOM VOI LUT function (PS3.3 C.11.2.1.2.1) onto 0..=255, rounded as a PNG holds it.
fn voi(value: f64, center: f64, width: f64) -> u8 {
    let y = if value <= center - 0.5 - (width - 1.0) / 2.0 {
        0.0
    } else if value > center - 0.5 + (width - 1.0) / 2.0 {
        255.0
    } else {
        ((value - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    };
    y.round().clamp(0.0, 255.0) as u8
}

fn run_python(python: &Path, script: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.py");
    std::fs::write(&path, script).unwrap();
    let output = std::process::Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .expect("run the imaging venv's python");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A decoded PNG: size, samples per pixel (alpha dropped), whether it had alpha, values.
struct Png {
    columns: usize,
    rows: usize,
    samples: usize,
    alpha: bool,
    values: Vec<f32>,
}

impl Png {
    fn at(&self, x: usize, y: usize) -> &[f32] {
        let start = (y * self.columns + x) * self.samples;
        &self.values[start..start + self.samples]
    }
}

fn decode_png(bytes: &[u8]) -> Png {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR colour type: 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA.
    let colour_type = bytes[25];
    let raster = voxhub_imaging::raster::read_png("slice.png", bytes).expect("decode PNG");
    assert_eq!(raster.bits, 8, "windowed PNGs are 8-bit");
    Png {
        columns: raster.columns as usize,
        rows: raster.rows as usize,
        samples: raster.samples_per_pixel as usize,
        alpha: colour_type == 4 || colour_type == 6,
        values: raster.values,
    }
}

struct Viewer {
    app: TestApp,
    teacher: TestUser,
    dataset: i64,
    dir: tempfile::TempDir,
    python: PathBuf,
}

impl Viewer {
    async fn start(test: &str) -> Option<Viewer> {
        let python = imaging_python(test)?;
        let dir = tempfile::tempdir().unwrap();
        run_python(
            &python,
            FIXTURES,
            &[
                dir.path().to_str().unwrap(),
                &COLUMNS.to_string(),
                &ROWS.to_string(),
                &SLICES.to_string(),
            ],
        );
        let app = TestApp::spawn().await;
        let teacher = app.user(Role::Teacher).await;
        let dataset = app.dataset(&teacher.token, "Viewer cases", None).await;
        Some(Viewer {
            app,
            teacher,
            dataset,
            dir,
            python,
        })
    }

    /// Uploads files as one upload and returns the derived series they made.
    async fn upload(&self, files: Vec<(String, Vec<u8>)>, label_of: Option<i64>) -> Vec<Value> {
        self.upload_into(self.dataset, files, label_of).await
    }

    /// Uploads into a given dataset (pydicom's files share series UIDs, so each colour file
    /// goes into a dataset of its own).
    async fn upload_into(
        &self,
        dataset: i64,
        files: Vec<(String, Vec<u8>)>,
        label_of: Option<i64>,
    ) -> Vec<Value> {
        let mut form = reqwest::multipart::Form::new();
        if let Some(image) = label_of {
            form = form.text("label_of", image.to_string());
        }
        for (name, bytes) in files {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
        }
        let response = self
            .app
            .http
            .post(format!("{}/api/v1/datasets/{dataset}/files", self.app.url))
            .bearer_auth(&self.teacher.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), StatusCode::OK);
        let report: Value = response.json().await.unwrap();
        assert!(report["skipped"].as_array().unwrap().is_empty(), "{report}");
        let mut series = Vec::new();
        for id in report["series"].as_array().unwrap() {
            series.push(
                self.app
                    .derived_series(&self.teacher.token, id.as_i64().unwrap())
                    .await,
            );
        }
        series
    }

    async fn upload_one(&self, path: &Path) -> i64 {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let series = self
            .upload(vec![(name, std::fs::read(path).unwrap())], None)
            .await;
        assert_eq!(series.len(), 1);
        series[0]["id"].as_i64().unwrap()
    }

    async fn ct(&self) -> i64 {
        let series = self
            .upload(folder_files(&self.dir.path().join("ct")), None)
            .await;
        assert_eq!(series.len(), 1, "one CT series");
        assert_eq!(series[0]["summary"]["volume"]["ok"], true, "{}", series[0]);
        series[0]["id"].as_i64().unwrap()
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.app.get(token, path).await
    }

    async fn json(&self, path: &str) -> Value {
        self.app.get_ok(&self.teacher.token, path).await
    }

    async fn bytes(&self, token: &str, path: &str) -> (StatusCode, Vec<u8>, String) {
        let response = self
            .app
            .builder(Method::GET, token, path)
            .send()
            .await
            .expect("request");
        let status = response.status();
        assert!(!status.is_server_error(), "GET {path} answered {status}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (
            status,
            response.bytes().await.unwrap().to_vec(),
            content_type,
        )
    }

    async fn png(&self, path: &str) -> Png {
        let (status, bytes, content_type) = self.bytes(&self.teacher.token, path).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "GET {path}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(content_type, "image/png");
        decode_png(&bytes)
    }
}

#[tokio::test]
async fn a_ct_volume_is_shown_in_three_planes_with_exact_values_and_windowed_grey_levels() {
    let Some(v) = Viewer::start("viewer: CT volume").await else {
        return;
    };
    let ct = v.ct().await;
    let info = v.json(&format!("/api/v1/series/{ct}/view")).await;
    assert_eq!(info["volume"], true, "{info}");
    assert_eq!(info["units"], "HU");
    assert_eq!(info["photometric"], "MONOCHROME2");
    assert_eq!(info["window"], json!({"center": 40.0, "width": 400.0}));
    assert_eq!(info["file_window"], json!({"center": 40.0, "width": 400.0}));
    assert_eq!(info["nifti"], format!("/api/v1/series/{ct}/nifti"));
    assert!(info["decode_error"].is_null());
    let names: Vec<&str> = info["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "lung",
            "mediastinum",
            "bone",
            "brain",
            "soft tissue",
            "file"
        ]
    );
    let planes = info["planes"].as_array().unwrap();
    let plane = |name: &str| planes.iter().find(|p| p["name"] == name).unwrap().clone();
    // Axial: 64x64 of 0.5 mm; coronal and sagittal: 40 slices of 2.5 mm stretched to 200 rows.
    let axial = plane("axial");
    assert_eq!(
        (
            axial["slices"].as_u64(),
            axial["columns"].as_u64(),
            axial["rows"].as_u64()
        ),
        (Some(40), Some(64), Some(64))
    );
    assert_eq!(
        axial["edges"],
        json!({"left": "R", "right": "L", "top": "A", "bottom": "P"})
    );
    let coronal = plane("coronal");
    assert_eq!(
        (
            coronal["slices"].as_u64(),
            coronal["columns"].as_u64(),
            coronal["rows"].as_u64()
        ),
        (Some(64), Some(64), Some(40))
    );
    assert_eq!(
        (
            coronal["display_columns"].as_u64(),
            coronal["display_rows"].as_u64()
        ),
        (Some(64), Some(200))
    );
    assert_eq!(
        coronal["edges"],
        json!({"left": "R", "right": "L", "top": "S", "bottom": "I"})
    );
    let sagittal = plane("sagittal");
    assert_eq!(
        (
            sagittal["slices"].as_u64(),
            sagittal["columns"].as_u64(),
            sagittal["rows"].as_u64()
        ),
        (Some(64), Some(64), Some(40))
    );
    assert_eq!(
        sagittal["edges"],
        json!({"left": "A", "right": "P", "top": "S", "bottom": "I"})
    );
    let version = info["version"].as_str().unwrap();

    // The PNGs decode with the sizes the view announced.
    let series = format!("/api/v1/series/{ct}");
    for (name, display) in [
        ("axial", (64, 64)),
        ("coronal", (64, 200)),
        ("sagittal", (64, 200)),
    ] {
        let png = v
            .png(&format!("{series}/slices/{name}/5.png?v={version}"))
            .await;
        assert_eq!(
            (png.columns, png.rows, png.samples, png.alpha),
            (display.0, display.1, 1, false),
            "{name}"
        );
    }

    // The value under the cursor is the exact HU written, in every plane, with its position.
    let (c, r, k) = (17, 42, 11);
    for (name, index, x, y) in [
        ("axial", k, c, r),
        ("coronal", r, c, SLICES - 1 - k),
        ("sagittal", c, r, SLICES - 1 - k),
    ] {
        let value = v
            .json(&format!(
                "{series}/value?plane={name}&index={index}&x={x}&y={y}"
            ))
            .await;
        assert_eq!(
            value["value"].as_f64(),
            Some(hu(c, r, k)),
            "{name}: {value}"
        );
        assert_eq!(value["units"], "HU");
        let position: Vec<f64> = value["position_mm"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        let expected = [
            -16.0 + 0.5 * c as f64,
            -20.0 + 0.5 * r as f64,
            -50.0 + 2.5 * k as f64,
        ];
        for axis in 0..3 {
            assert!(
                (position[axis] - expected[axis]).abs() < 1e-6,
                "{name}: {position:?} vs {expected:?}"
            );
        }
    }

    // Grey levels follow the VOI LUT function, for an explicit window and for presets.
    let (center, width) = (-330.0, 700.0);
    let png = v
        .png(&format!(
            "{series}/slices/axial/{k}.png?center={center}&width={width}"
        ))
        .await;
    for (x, y) in [(0, 0), (c, r), (33, 7), (63, 63), (50, 20)] {
        assert_eq!(
            png.at(x, y)[0],
            f32::from(voi(hu(x, y, k), center, width)),
            "pixel ({x}, {y})"
        );
    }
    for (preset, (center, width)) in [
        ("lung", (-600.0, 1500.0)),
        ("soft%20tissue", (40.0, 400.0)),
        ("file", (40.0, 400.0)),
    ] {
        let png = v
            .png(&format!("{series}/slices/axial/{k}.png?preset={preset}"))
            .await;
        for (x, y) in [(c, r), (60, 3), (70 - 60, 60)] {
            assert_eq!(
                png.at(x, y)[0],
                f32::from(voi(hu(x, y, k), center, width)),
                "{preset} ({x}, {y})"
            );
        }
    }
    // The opening window is the file's: without parameters the same picture as preset=file.
    let (_, opening, _) = v
        .bytes(&v.teacher.token, &format!("{series}/slices/axial/3.png"))
        .await;
    let (_, file, _) = v
        .bytes(
            &v.teacher.token,
            &format!("{series}/slices/axial/3.png?preset=file"),
        )
        .await;
    assert_eq!(opening, file);
    // Coronal rows of the stretched picture that fall on a slice keep its exact grey level.
    let png = v
        .png(&format!(
            "{series}/slices/coronal/{r}.png?center={center}&width={width}"
        ))
        .await;
    assert_eq!(
        png.at(c, 0)[0],
        f32::from(voi(hu(c, r, SLICES - 1), center, width))
    );
    assert_eq!(
        png.at(c, 199)[0],
        f32::from(voi(hu(c, r, 0), center, width))
    );

    // The panel lists the de-identified attributes of the file shown.
    let metadata = v
        .json(&format!("{series}/metadata?plane=axial&index={k}"))
        .await;
    let attributes = metadata["attributes"].as_array().unwrap();
    let attribute = |keyword: &str| {
        attributes
            .iter()
            .find(|a| a["keyword"] == keyword)
            .unwrap_or_else(|| panic!("{keyword} in {metadata}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(attribute("Modality"), "CT");
    let position: Vec<f64> = attribute("ImagePositionPatient")
        .split('\\')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(position, [-16.0, -20.0, -50.0 + 2.5 * k as f64]);
    assert_ne!(
        attribute("PatientName"),
        "VIEWER^TEST",
        "the name is de-identified"
    );
    assert!(
        !attributes.iter().any(|a| a["tag"] == "(7FE0,0010)"),
        "pixel data is not listed"
    );
    assert!(metadata["instance"].as_i64().is_some());

    // Every view is audited, once per person and series in the audit window.
    let entries = v.app.audit("action=dataset.view").await;
    let mine: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["target"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("series:{ct} "))
        })
        .collect();
    assert_eq!(mine.len(), 1, "{entries:?}");
    assert_eq!(mine[0]["actor_name"], v.teacher.username.as_str());
}

#[tokio::test]
async fn axial_slices_come_from_one_file_until_the_volume_is_decoded_and_look_the_same() {
    let Some(v) = Viewer::start("viewer: one file, then the volume").await else {
        return;
    };
    let ct = v.ct().await;
    let series = format!("/api/v1/series/{ct}");
    // Opening the viewer and showing axial slices decodes one file per slice, not the series.
    let info = v.json(&format!("{series}/view")).await;
    let version = info["version"].as_str().unwrap().to_string();
    assert_eq!(info["planes"][0]["slices"], SLICES, "{info}");
    let every_pixel = |png: &Png, k: usize, center: f64, width: f64| {
        assert_eq!((png.columns, png.rows), (COLUMNS, ROWS));
        for y in 0..ROWS {
            for x in 0..COLUMNS {
                assert_eq!(
                    png.at(x, y)[0],
                    f32::from(voi(hu(x, y, k), center, width)),
                    "slice {k} pixel ({x}, {y})"
                );
            }
        }
    };
    for k in [0, 11, SLICES - 1] {
        let png = v
            .png(&format!(
                "{series}/slices/axial/{k}.png?center=-300&width=1300"
            ))
            .await;
        every_pixel(&png, k, -300.0, 1300.0);
    }
    // So does the value under the cursor, with its position.
    for (k, x, y) in [(0, 0, 0), (11, 17, 42), (SLICES - 1, COLUMNS - 1, ROWS - 1)] {
        let value = v
            .json(&format!("{series}/value?plane=axial&index={k}&x={x}&y={y}"))
            .await;
        assert_eq!(value["value"].as_f64(), Some(hu(x, y, k)), "{value}");
        assert_eq!(value["units"], "HU");
        let expected = [
            -16.0 + 0.5 * x as f64,
            -20.0 + 0.5 * y as f64,
            -50.0 + 2.5 * k as f64,
        ];
        for (axis, want) in expected.iter().enumerate() {
            let got = value["position_mm"][axis].as_f64().unwrap();
            assert!((got - want).abs() < 1e-6, "{value} vs {expected:?}");
        }
    }
    let (status, body) = v
        .get(
            &v.teacher.token,
            &format!("{series}/value?plane=axial&index=3&x={COLUMNS}&y=0"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // And the metadata panel: the attributes of the file a slice of any plane shows.
    for (plane, index, file) in [("axial", 11, 11), ("coronal", 5, SLICES / 2)] {
        let metadata = v
            .json(&format!("{series}/metadata?plane={plane}&index={index}"))
            .await;
        let position = metadata["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["keyword"] == "ImagePositionPatient")
            .unwrap_or_else(|| panic!("{metadata}"))["value"]
            .as_str()
            .unwrap()
            .split('\\')
            .map(|p| p.parse::<f64>().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(
            position,
            [-16.0, -20.0, -50.0 + 2.5 * file as f64],
            "{plane} {index}"
        );
    }
    assert!(
        !voxhub_web::datasets::view::volume_decoded(&version),
        "axial slices, values or metadata decoded the whole series"
    );
    // Beyond the last slice is refused without decoding anything either.
    let (status, body) = v
        .get(
            &v.teacher.token,
            &format!("{series}/slices/axial/{SLICES}.png"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Another plane needs the volume; from then on axial slices come from it, the same.
    v.png(&format!("{series}/slices/coronal/3.png")).await;
    assert!(voxhub_web::datasets::view::volume_decoded(&version));
    for k in [0, 11, SLICES - 1] {
        let png = v
            .png(&format!(
                "{series}/slices/axial/{k}.png?center=-299&width=1301"
            ))
            .await;
        every_pixel(&png, k, -299.0, 1301.0);
    }
}

#[tokio::test]
async fn bad_planes_slices_windows_and_positions_are_refused_with_what_to_do() {
    let Some(v) = Viewer::start("viewer: bad input").await else {
        return;
    };
    let ct = v.ct().await;
    let mono = v.upload_one(&v.dir.path().join("monochrome2.dcm")).await;
    let token = v.teacher.token.clone();
    let series = format!("/api/v1/series/{ct}");
    for (path, code, words) in [
        (
            format!("{series}/slices/oblique/3.png"),
            "invalid_plane",
            "axial, coronal or sagittal",
        ),
        (
            format!("{series}/slices/stack/3.png"),
            "invalid_plane",
            "axial, coronal or sagittal",
        ),
        (
            format!("/api/v1/series/{mono}/slices/axial/0.png"),
            "invalid_plane",
            "stack",
        ),
        (
            format!("{series}/slices/axial/40.png"),
            "invalid_slice",
            "numbered 0 to 39",
        ),
        (
            format!("{series}/slices/coronal/64.png"),
            "invalid_slice",
            "numbered 0 to 63",
        ),
        (
            format!("{series}/slices/axial/abc.png"),
            "invalid_slice",
            "slices are numbered from 0",
        ),
        (
            format!("{series}/slices/axial/-1.png"),
            "invalid_slice",
            "slices are numbered from 0",
        ),
        (
            format!("{series}/slices/axial/3.png?center=40&width=0"),
            "invalid_window",
            "at least 1",
        ),
        (
            format!("{series}/slices/axial/3.png?center=40"),
            "invalid_window",
            "both center and width",
        ),
        (
            format!("{series}/slices/axial/3.png?preset=liver"),
            "invalid_window",
            "lung, mediastinum",
        ),
        (
            format!("{series}/slices/axial/3.png?preset=lung&center=1&width=2"),
            "invalid_window",
            "not both",
        ),
        (
            format!("{series}/slices/axial/3.png?zoom=2"),
            "invalid_query",
            "zoom",
        ),
        (
            format!("{series}/value?plane=axial&index=3&x=64&y=0"),
            "invalid_position",
            "x 0 to 63",
        ),
        (
            format!("{series}/value?plane=axial&index=3"),
            "invalid_query",
            "say which pixel",
        ),
        (
            format!("{series}/value?plane=axial&index=40&x=0&y=0"),
            "invalid_slice",
            "40 slices",
        ),
        (
            format!("{series}/value?plane=sideways&index=0&x=0&y=0"),
            "invalid_plane",
            "axial",
        ),
        (
            format!("{series}/metadata?plane=axial&index=99"),
            "invalid_slice",
            "40 slices",
        ),
        (
            format!("{series}/overlay/{mono}/axial/3.png"),
            "not_found",
            "not a mask",
        ),
    ] {
        let (status, body) = v.get(&token, &path).await;
        let expected = if code == "not_found" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, expected, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{path}: {message}");
    }
    let (status, _) = v.get(&token, "/api/v1/series/999999/view").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn monochrome1_is_inverted_and_colour_files_render_as_pydicom_decodes_them() {
    let Some(v) = Viewer::start("viewer: photometric").await else {
        return;
    };
    let mono2 = v.upload_one(&v.dir.path().join("monochrome2.dcm")).await;
    let mono1 = v.upload_one(&v.dir.path().join("monochrome1.dcm")).await;
    let info = v.json(&format!("/api/v1/series/{mono1}/view")).await;
    assert_eq!(info["volume"], false);
    assert_eq!(info["photometric"], "MONOCHROME1");
    assert_eq!(info["units"], "stored value");
    assert_eq!(info["planes"][0]["name"], "stack");
    assert!(info["nifti"].is_null());
    assert!(
        info["not_volume_reason"]
            .as_str()
            .unwrap()
            .contains("single image"),
        "{info}"
    );
    let inverted = v
        .png(&format!("/api/v1/series/{mono1}/slices/stack/0.png"))
        .await;
    let normal = v
        .png(&format!("/api/v1/series/{mono2}/slices/stack/0.png"))
        .await;
    assert_eq!((normal.columns, normal.rows), (32, 32));
    for y in 0..32 {
        for x in 0..32 {
            let expected = voi(f64::from((8 * y + x) as u16), 100.0, 300.0);
            assert_eq!(
                normal.at(x, y)[0],
                f32::from(expected),
                "MONOCHROME2 ({x}, {y})"
            );
            assert_eq!(
                inverted.at(x, y)[0],
                f32::from(255 - expected),
                "MONOCHROME1 ({x}, {y})"
            );
        }
    }
    let value = v
        .json(&format!(
            "/api/v1/series/{mono1}/value?plane=stack&index=0&x=5&y=3"
        ))
        .await;
    assert_eq!(value["value"].as_f64(), Some(29.0));

    // A picture is shown exactly as stored.
    let dataset = v.app.dataset(&v.teacher.token, "Pictures", None).await;
    let picture = std::fs::read(v.dir.path().join("picture.png")).unwrap();
    let id = v
        .upload_into(dataset, vec![("picture.png".into(), picture)], None)
        .await[0]["id"]
        .as_i64()
        .unwrap();
    let info = v.json(&format!("/api/v1/series/{id}/view")).await;
    assert_eq!(
        (info["kind"].as_str(), info["volume"].as_bool()),
        (Some("image"), Some(false)),
        "{info}"
    );
    let png = v
        .png(&format!("/api/v1/series/{id}/slices/stack/0.png"))
        .await;
    assert_eq!((png.columns, png.rows, png.samples), (16, 8, 1));
    for y in 0..8 {
        for x in 0..16 {
            assert_eq!(png.at(x, y)[0], (16 * x + y) as f32, "picture ({x}, {y})");
        }
    }

    let expected: Value =
        serde_json::from_slice(&std::fs::read(v.dir.path().join("expected.json")).unwrap())
            .unwrap();
    for (name, fixture) in expected.as_object().unwrap() {
        let dataset = v.app.dataset(&v.teacher.token, name, None).await;
        let file = std::fs::read(pydicom_file(name)).unwrap();
        let id = v
            .upload_into(dataset, vec![(name.clone(), file)], None)
            .await[0]["id"]
            .as_i64()
            .unwrap();
        let info = v.json(&format!("/api/v1/series/{id}/view")).await;
        assert_eq!(info["colour"], true, "{name}: {info}");
        assert_eq!(
            info["planes"][0]["slices"], fixture["frames"],
            "{name}: {info}"
        );
        let mut frames = Vec::new();
        for frame in 0..fixture["frames"].as_u64().unwrap() {
            let png = v
                .png(&format!("/api/v1/series/{id}/slices/stack/{frame}.png"))
                .await;
            assert_eq!(
                (png.columns as u64, png.rows as u64, png.samples),
                (
                    fixture["columns"].as_u64().unwrap(),
                    fixture["rows"].as_u64().unwrap(),
                    3
                ),
                "{name}"
            );
            frames.push(png);
        }
        for point in fixture["points"].as_array().unwrap() {
            let frame = point["frame"].as_u64().unwrap();
            let png = &frames[frame as usize];
            let (x, y) = (
                point["x"].as_u64().unwrap() as usize,
                point["y"].as_u64().unwrap() as usize,
            );
            let rgb: Vec<f32> = point["rgb"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(
                png.at(x, y),
                rgb.as_slice(),
                "{name} frame {frame} ({x}, {y})"
            );
        }
    }
}

#[tokio::test]
async fn twelve_bit_lossy_jpeg_is_refused_naming_its_transfer_syntax() {
    let Some(v) = Viewer::start("viewer: 12-bit JPEG").await else {
        return;
    };
    let id = v.upload_one(&pydicom_file("JPEG-lossy.dcm")).await;
    let info = v.json(&format!("/api/v1/series/{id}/view")).await;
    let reason = info["decode_error"].as_str().expect("a decode error");
    assert!(reason.contains("1.2.840.10008.1.2.4.51"), "{reason}");
    assert!(info["planes"].as_array().unwrap().is_empty());
    for path in [
        format!("/api/v1/series/{id}/slices/stack/0.png"),
        format!("/api/v1/series/{id}/value?plane=stack&index=0&x=0&y=0"),
    ] {
        let (status, body) = v.get(&v.teacher.token, &path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["error"]["code"], "undecodable");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1.2.840.10008.1.2.4.51"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn masks_are_laid_over_their_image_only_on_the_same_grid() {
    let Some(v) = Viewer::start("viewer: masks").await else {
        return;
    };
    let ct = v.ct().await;
    let (status, nifti, _) = v
        .bytes(&v.teacher.token, &format!("/api/v1/series/{ct}/nifti"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ct_path = v.dir.path().join("ct.nii.gz");
    std::fs::write(&ct_path, nifti).unwrap();
    let (good, bad) = (
        v.dir.path().join("ct_seg.nii.gz"),
        v.dir.path().join("small_seg.nii.gz"),
    );
    run_python(
        &v.python,
        MASKS,
        &[
            ct_path.to_str().unwrap(),
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    let good_id = v
        .upload(
            vec![("ct_seg.nii.gz".into(), std::fs::read(&good).unwrap())],
            Some(ct),
        )
        .await[0]["id"]
        .as_i64()
        .unwrap();
    let bad_id = v
        .upload(
            vec![("small_seg.nii.gz".into(), std::fs::read(&bad).unwrap())],
            Some(ct),
        )
        .await[0]["id"]
        .as_i64()
        .unwrap();
    v.app.derived_series(&v.teacher.token, ct).await;

    let info = v.json(&format!("/api/v1/series/{ct}/view")).await;
    assert_eq!(info["labels"], json!([good_id]), "{info}");
    let listed = info["label_series"].as_array().unwrap();
    let bad_entry = listed
        .iter()
        .find(|l| l["series"] == bad_id)
        .expect("the bad mask is listed");
    assert_eq!(bad_entry["compatible"], false);
    assert!(
        bad_entry["reason"].as_str().unwrap().contains("32×32×40"),
        "{bad_entry}"
    );

    // The mask is a volume of its own, with its labels as values.
    let mask = v.json(&format!("/api/v1/series/{good_id}/view")).await;
    assert_eq!(
        (mask["kind"].as_str(), mask["volume"].as_bool()),
        (Some("nifti"), Some(true)),
        "{mask}"
    );
    assert_eq!(mask["planes"][0]["slices"], 40);
    let value = v
        .json(&format!(
            "/api/v1/series/{good_id}/value?plane=axial&index=39&x=63&y=63"
        ))
        .await;
    assert_eq!(value["value"].as_f64(), Some(2.0), "HU {}", hu(63, 63, 39));

    let k = 30;
    let overlay = v
        .png(&format!(
            "/api/v1/series/{ct}/overlay/{good_id}/axial/{k}.png"
        ))
        .await;
    assert_eq!(
        (
            overlay.columns,
            overlay.rows,
            overlay.samples,
            overlay.alpha
        ),
        (64, 64, 3, true)
    );
    for x in 0..COLUMNS {
        for y in (0..ROWS).step_by(7) {
            let value = hu(x, y, k);
            let expected: [f32; 3] = if value >= 0.0 {
                [40.0, 190.0, 70.0]
            } else if value >= -100.0 {
                [230.0, 40.0, 40.0]
            } else {
                [0.0, 0.0, 0.0]
            };
            assert_eq!(overlay.at(x, y), expected, "({x}, {y}) HU {value}");
        }
    }
    let coronal = v
        .png(&format!(
            "/api/v1/series/{ct}/overlay/{good_id}/coronal/10.png"
        ))
        .await;
    assert_eq!(
        (coronal.columns, coronal.rows),
        (64, 200),
        "the same size as the image slice"
    );

    let (status, body) = v
        .get(
            &v.teacher.token,
            &format!("/api/v1/series/{ct}/overlay/{bad_id}/axial/{k}.png"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "overlay_not_possible");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another image"),
        "{body}"
    );
}

#[tokio::test]
async fn only_those_who_may_see_the_dataset_view_it_and_the_browser_uses_its_session() {
    let Some(v) = Viewer::start("viewer: permissions").await else {
        return;
    };
    let ct = v.ct().await;
    let outsider = v.app.user(Role::Student).await;
    let series = format!("/api/v1/series/{ct}");
    let paths = [
        format!("{series}/view"),
        format!("{series}/slices/axial/3.png"),
        format!("{series}/value?plane=axial&index=3&x=1&y=1"),
        format!("{series}/overlay/{ct}/axial/3.png"),
        format!("{series}/metadata"),
    ];
    for path in &paths {
        let (status, body) = v.get(&outsider.token, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        let (status, _) = v.get("", path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let denied = v.app.audit("action=dataset.read&outcome=denied").await;
    assert!(
        denied
            .iter()
            .any(|e| e["actor_name"] == outsider.username.as_str()),
        "refusals are audited"
    );
    assert!(
        !v.app
            .audit("action=dataset.view")
            .await
            .iter()
            .any(|e| e["actor_name"] == outsider.username.as_str()),
        "a refused view is not a view"
    );

    // The page and its images work with the browser's session cookie alone.
    let cookie = format!("voxhub_session={}", v.teacher.token);
    let with_cookie = |path: &str| {
        v.app
            .http
            .get(format!("{}{path}", v.app.url))
            .header("cookie", cookie.clone())
    };
    let page = with_cookie(&format!("/series/{ct}")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    for id in [
        "viewer-image",
        "slice-slider",
        "slice-label",
        "preset-lung",
        "preset-soft-tissue",
        "wl-readout",
        "value-readout",
        "download-nifti",
        "plane-coronal",
        "overlay-opacity",
        "metadata-panel",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "#{id} on the page");
    }
    let script = html
        .split("src=\"/static/viewer/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let asset = with_cookie(&format!("/static/viewer/{script}"))
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    assert!(
        asset.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let slice = with_cookie(&format!("{series}/slices/axial/3.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(slice.status(), StatusCode::OK);
    // Another site cannot use the cookie, not even by sending the browser to the image.
    let cross_site = with_cookie(&format!("{series}/slices/axial/4.png"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::UNAUTHORIZED);
    let same_origin = with_cookie(&format!("{series}/slices/axial/4.png"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), StatusCode::OK);
    // An API token is not a browser session: it must come as a bearer token.
    let token = v
        .app
        .token_for(
            v.teacher.id,
            voxhub_store::tokens::TokenKind::Api,
            voxhub_store::now_s() + 3600,
        )
        .await;
    let refused = v
        .app
        .http
        .get(format!("{}{series}/slices/axial/3.png", v.app.url))
        .header("cookie", format!("voxhub_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // Someone else's page is refused with a page, not the viewer.
    let other = v
        .app
        .http
        .get(format!("{}/series/{ct}", v.app.url))
        .header("cookie", format!("voxhub_session={}", outsider.token))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
}

/// Not a check: how long a warm 512x512 slice takes (run with
/// `cargo test --release --test api viewer::render_latency -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement, run by hand in release"]
async fn render_latency() {
    let Some(python) = imaging_python("viewer: latency") else {
        return;
    };
    let slices: usize = std::env::var("VIEWER_SLICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    run_python(
        &python,
        FIXTURES,
        &[
            dir.path().to_str().unwrap(),
            "512",
            "512",
            &slices.to_string(),
        ],
    );
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let dataset = app.dataset(&teacher.token, "Latency", None).await;
    let files = folder_files(&dir.path().join("ct"));
    let mut series = None;
    for chunk in files.chunks(50) {
        let (status, report) = app.upload(&teacher.token, dataset, chunk.to_vec()).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        series = report["series"][0].as_i64();
    }
    let ct = series.unwrap();
    let summary = app.derived_series(&teacher.token, ct).await;
    assert_eq!(summary["summary"]["volume"]["ok"], true);
    let get = |path: String| {
        let request = app.builder(Method::GET, &teacher.token, &path);
        async move {
            let started = Instant::now();
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            response.bytes().await.unwrap();
            started.elapsed()
        }
    };
    let cold = get(format!("/api/v1/series/{ct}/view")).await;
    let mut first = Vec::new();
    for index in 0..slices.min(100) {
        first.push(
            get(format!(
                "/api/v1/series/{ct}/slices/axial/{index}.png?center=40&width=400"
            ))
            .await,
        );
    }
    let mut again = Vec::new();
    for index in 0..slices.min(100) {
        again.push(
            get(format!(
                "/api/v1/series/{ct}/slices/axial/{index}.png?center=40&width=400"
            ))
            .await,
        );
    }
    let mut coronal = Vec::new();
    for index in 200..220 {
        coronal.push(
            get(format!(
                "/api/v1/series/{ct}/slices/coronal/{index}.png?center=40&width=400"
            ))
            .await,
        );
    }
    let mut index_read = Vec::new();
    for _ in 0..50 {
        index_read.push(get(format!("/api/v1/series/{ct}")).await);
    }
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    eprintln!(
        "viewer latency, 512x512x{slices} CT: first view (decode) {cold:?}; warm axial slice rendered {:?} (median of {}), from the PNG cache {:?}; coronal 512x{} rendered {:?}; for comparison GET /api/v1/series/{{id}} {:?}",
        median(first.clone()),
        first.len(),
        median(again),
        (slices as f64 * 2.5 / 0.5).round(),
        median(coronal),
        median(index_read)
    );
}
