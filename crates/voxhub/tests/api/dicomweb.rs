//! DICOMweb at `/dicom-web`: QIDO-RS searches by the standard keys, WADO-RS retrieval of
//! files, metadata, frames and rendered pictures checked against pydicom's reading of the
//! originals, STOW-RS through the same ingest and de-identification as uploads, and
//! dicomweb-client's store → search → retrieve round trip. From the side of the student who
//! must not get through: no search lists another class's or a private dataset's studies,
//! and no retrieval reaches them.

use crate::support::*;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use std::path::Path;
use voxhub_core::role::Role;

const CT: &str = "CT_small.dcm";
const MR: &str = "MR_small.dcm";
const DOSE: &str = "rtdose.dcm";
const MR_JPEG2000: &str = "MR_small_jp2klossless.dcm";
const DICOM_JSON: &str = "application/dicom+json";

fn file(name: &str) -> (String, Vec<u8>) {
    (
        name.to_string(),
        std::fs::read(pydicom_file(name)).expect("pydicom test file"),
    )
}

/// An answer as bytes, for the multipart and binary answers of DICOMweb.
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    fn warnings(&self) -> String {
        self.headers
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// The parts of a `multipart/related` answer: (content type, bytes).
    fn parts(&self) -> Vec<(String, Vec<u8>)> {
        let content_type = self.content_type();
        assert!(
            content_type.starts_with("multipart/related"),
            "{content_type}"
        );
        let boundary = content_type
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("boundary="))
            .next()
            .expect("a boundary")
            .trim_matches('"');
        let delimiter = format!("--{boundary}");
        let body = &self.body;
        let mut starts = Vec::new();
        let mut at = 0;
        while let Some(found) = find(&body[at..], delimiter.as_bytes()) {
            starts.push(at + found);
            at += found + delimiter.len();
        }
        let mut parts = Vec::new();
        for pair in starts.windows(2) {
            let part = &body[pair[0] + delimiter.len() + 2..pair[1] - 2];
            let split = find(part, b"\r\n\r\n").expect("part headers");
            let headers = String::from_utf8_lossy(&part[..split]).to_string();
            let content_type = headers
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .unwrap_or_default()
                .to_string();
            parts.push((content_type, part[split + 4..].to_vec()));
        }
        assert!(
            body.ends_with(format!("--{boundary}--\r\n").as_bytes()),
            "the answer ends with the closing boundary"
        );
        parts
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `GET` of a path (or a whole URL) with an `Accept` header.
async fn get(app: &TestApp, token: &str, path: &str, accept: Option<&str>) -> Raw {
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{path}", app.url)
    };
    let mut request = app.http.get(url);
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    let response = request.send().await.expect("request");
    let raw = Raw {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body").to_vec(),
    };
    assert!(
        !raw.status.is_server_error(),
        "GET {path} answered {}: {}",
        raw.status,
        String::from_utf8_lossy(&raw.body)
    );
    raw
}

/// A QIDO-RS search that must succeed; returns its results.
async fn search(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let raw = get(app, token, path, Some(DICOM_JSON)).await;
    assert_eq!(
        raw.status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&raw.body)
    );
    assert_eq!(raw.content_type(), DICOM_JSON);
    raw.json().as_array().expect("a list of results").clone()
}

/// The first value of an attribute of a result.
fn value<'a>(result: &'a Value, tag: &str) -> &'a Value {
    &result[tag]["Value"][0]
}

fn text(result: &Value, tag: &str) -> String {
    value(result, tag).as_str().unwrap_or_default().to_string()
}

fn uids(results: &[Value], tag: &str) -> Vec<String> {
    let mut all: Vec<String> = results.iter().map(|r| text(r, tag)).collect();
    all.sort();
    all
}

async fn upload_all(app: &TestApp, token: &str, dataset: i64, names: &[&str]) {
    let (status, report) = app
        .upload(token, dataset, names.iter().map(|n| file(n)).collect())
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["imported"], names.len(), "{report}");
}

/// POST of a STOW-RS body.
async fn stow(app: &TestApp, token: &str, path: &str, content_type: &str, body: Vec<u8>) -> Raw {
    let response = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(token)
        .header(CONTENT_TYPE, content_type)
        .header(ACCEPT, DICOM_JSON)
        .body(body)
        .send()
        .await
        .expect("request");
    let raw = Raw {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("body").to_vec(),
    };
    assert!(
        !raw.status.is_server_error(),
        "POST {path}: {}",
        String::from_utf8_lossy(&raw.body)
    );
    raw
}

const BOUNDARY: &str = "stow-test-boundary";
const STOW_TYPE: &str =
    "multipart/related; type=\"application/dicom\"; boundary=stow-test-boundary";

fn related(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (content_type, bytes) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The imaging venv's Python with these modules (dicomweb-client, Pillow, which pydicom also
/// uses to decode JPEG 2000), or `None` after a loud note; under CI a missing one fails.
fn python_with(test: &str, modules: &[&str]) -> Option<std::path::PathBuf> {
    let python = imaging_python(test)?;
    for module in modules {
        let present = std::process::Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: Python module {module} is not in the imaging venv and CI is set: .ci/run must install it (pip install dicomweb-client pillow)"
                );
            }
            eprintln!(
                "\n*** SKIPPED {test}: Python module {module} is missing; pip install dicomweb-client pillow into /opt/voxhub/imaging-venv ***\n"
            );
            return None;
        }
    }
    Some(python)
}

/// Runs the reference-tool checks of `dicomweb_check.py`; panics with its complaint.
fn python_check(python: &Path, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/dicomweb_check.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run dicomweb_check.py");
    assert!(
        output.status.success(),
        "dicomweb_check.py {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one line of JSON")
}

fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

fn strip_origin<'a>(app: &TestApp, url: &'a str) -> &'a str {
    url.strip_prefix(app.url.as_str())
        .unwrap_or_else(|| panic!("{url} is on this server"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn searches_find_uploaded_studies_by_every_standard_key() {
    let Some(_python) = imaging_python("searches_find_uploaded_studies_by_every_standard_key")
    else {
        return;
    };
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Teacher).await;
    let dataset = app.dataset(&owner.token, "Small files", None).await;
    upload_all(&app, &owner.token, dataset, &[CT, MR, DOSE]).await;

    let studies = search(&app, &owner.token, "/dicom-web/studies").await;
    assert_eq!(studies.len(), 3, "{studies:?}");
    let ct = studies
        .iter()
        .find(|s| s["00080061"]["Value"] == json!(["CT"]))
        .expect("the CT study")
        .clone();
    let mr = studies
        .iter()
        .find(|s| s["00080061"]["Value"] == json!(["MR"]))
        .expect("the MR study")
        .clone();
    for study in &studies {
        for tag in [
            "0020000D", "00080020", "00100020", "00100010", "00201206", "00201208", "00081190",
            "00080056",
        ] {
            assert!(study.get(tag).is_some(), "{tag} missing from {study}");
        }
        assert_eq!(value(study, "00201206"), 1);
        assert_eq!(value(study, "00201208"), 1);
        assert!(
            !study.to_string().contains("CompressedSamples"),
            "the original patient name is not in the index: {study}"
        );
    }
    let ct_uid = text(&ct, "0020000D");
    let mr_uid = text(&mr, "0020000D");
    assert!(ct_uid.starts_with("2.25."), "UIDs are replaced: {ct_uid}");
    assert_eq!(
        text(&ct, "00081190"),
        format!("{}/dicom-web/studies/{ct_uid}", app.url)
    );
    let count = async |query: &str| {
        search(&app, &owner.token, &format!("/dicom-web/studies?{query}"))
            .await
            .len()
    };

    let patient_id = text(&ct, "00100020");
    assert_eq!(count(&format!("PatientID={patient_id}")).await, 1);
    assert_eq!(
        count(&format!("00100020={patient_id}")).await,
        1,
        "a key may be given as its tag"
    );
    let name = value(&ct, "00100010")["Alphabetic"]
        .as_str()
        .expect("a name")
        .to_string();
    let prefix: String = name.chars().take(3).collect::<String>().to_lowercase();
    let by_name = search(
        &app,
        &owner.token,
        &format!("/dicom-web/studies?PatientName={prefix}*"),
    )
    .await;
    assert!(uids(&by_name, "0020000D").contains(&ct_uid), "{by_name:?}");
    assert_eq!(
        count(&format!("PatientName={}", name.to_uppercase())).await,
        1
    );
    assert_eq!(
        count(&format!("StudyInstanceUID={ct_uid},{mr_uid}")).await,
        2
    );
    assert_eq!(
        count(&format!("StudyInstanceUID={ct_uid}%5C{mr_uid}")).await,
        2
    );
    let date = text(&ct, "00080020");
    assert_eq!(date.len(), 8, "dates are shifted, not removed: {ct}");
    assert!(count(&format!("StudyDate={date}")).await >= 1);
    assert!(count(&format!("StudyDate={date}-")).await >= 1);
    assert_eq!(count("StudyDate=-19000101").await, 0);
    assert_eq!(count("ModalitiesInStudy=CT").await, 1);
    assert_eq!(count("ModalitiesInStudy=ct,MR").await, 2);
    assert_eq!(count("AccessionNumber=NOPE").await, 0);
    assert_eq!(count("StudyDescription=*").await, 3);
    assert_eq!(
        count("StudyInstanceUID=1.2.3.4").await,
        0,
        "no match is an empty list"
    );
    assert_eq!(count("fuzzymatching=false&AccessionNumber=").await, 3);

    // Paging: a limit, then the rest by offset, with a warning that there is more.
    let first = get(
        &app,
        &owner.token,
        "/dicom-web/studies?limit=2",
        Some(DICOM_JSON),
    )
    .await;
    assert_eq!(first.json().as_array().unwrap().len(), 2);
    assert!(
        first.warnings().contains("offset=2"),
        "{}",
        first.warnings()
    );
    let rest = search(&app, &owner.token, "/dicom-web/studies?limit=2&offset=2").await;
    assert_eq!(rest.len(), 1);
    let mut paged = uids(first.json().as_array().unwrap(), "0020000D");
    paged.extend(uids(&rest, "0020000D"));
    paged.sort();
    assert_eq!(paged, uids(&studies, "0020000D"));

    // Unsupported keys are ignored and named; includefield adds attributes.
    let ignored = get(
        &app,
        &owner.token,
        "/dicom-web/studies?PatientWeight=70&fuzzymatching=true",
        Some(DICOM_JSON),
    )
    .await;
    assert_eq!(ignored.status, StatusCode::OK);
    assert_eq!(ignored.json().as_array().unwrap().len(), 3);
    assert!(
        ignored.warnings().contains("PatientWeight"),
        "{}",
        ignored.warnings()
    );
    assert!(
        ignored.warnings().contains("fuzzymatching"),
        "{}",
        ignored.warnings()
    );
    let plain = search(
        &app,
        &owner.token,
        &format!("/dicom-web/studies?StudyInstanceUID={ct_uid}"),
    )
    .await;
    assert!(
        plain[0].get("00100040").is_some(),
        "Patient's Sex is a default attribute"
    );
    let all = search(
        &app,
        &owner.token,
        &format!("/dicom-web/studies?StudyInstanceUID={ct_uid}&includefield=all"),
    )
    .await;
    assert!(all[0].get("00080030").is_some(), "{}", all[0]);

    // Series of a study, and all series by series keys.
    let series = search(
        &app,
        &owner.token,
        &format!("/dicom-web/studies/{ct_uid}/series"),
    )
    .await;
    assert_eq!(series.len(), 1);
    let ct_series = text(&series[0], "0020000E");
    assert_eq!(text(&series[0], "00080060"), "CT");
    assert_eq!(value(&series[0], "00200011"), 1);
    assert_eq!(value(&series[0], "00201209"), 1);
    assert_eq!(
        text(&series[0], "00081190"),
        format!("{}/dicom-web/studies/{ct_uid}/series/{ct_series}", app.url)
    );
    let series_count = async |query: &str| {
        search(&app, &owner.token, &format!("/dicom-web/series?{query}"))
            .await
            .len()
    };
    assert_eq!(series_count("").await, 3);
    assert_eq!(series_count("Modality=MR").await, 1);
    assert_eq!(
        series_count(&format!("SeriesInstanceUID={ct_series}")).await,
        1
    );
    assert_eq!(series_count("SeriesNumber=1").await, 3);
    assert_eq!(series_count("SeriesNumber=2").await, 0);
    assert_eq!(
        series_count(&format!("PatientID={patient_id}")).await,
        1,
        "study keys work on series"
    );
    let all_series = search(&app, &owner.token, "/dicom-web/series?Modality=CT").await;
    assert_eq!(
        text(&all_series[0], "0020000D"),
        ct_uid,
        "series carry their study"
    );

    // Instances in a series, in a study, and everywhere.
    let instances = search(
        &app,
        &owner.token,
        &format!("/dicom-web/studies/{ct_uid}/series/{ct_series}/instances"),
    )
    .await;
    assert_eq!(instances.len(), 1);
    let ct_sop = text(&instances[0], "00080018");
    assert_eq!(value(&instances[0], "00280010"), 128);
    assert_eq!(value(&instances[0], "00280011"), 128);
    assert_eq!(value(&instances[0], "00280008"), 1);
    assert_eq!(value(&instances[0], "00200013"), 1);
    assert_eq!(text(&instances[0], "00080016"), "1.2.840.10008.5.1.4.1.1.2");
    assert_eq!(
        text(&instances[0], "00081190"),
        format!(
            "{}/dicom-web/studies/{ct_uid}/series/{ct_series}/instances/{ct_sop}",
            app.url
        )
    );
    assert_eq!(
        search(
            &app,
            &owner.token,
            &format!("/dicom-web/studies/{ct_uid}/instances")
        )
        .await
        .len(),
        1
    );
    let instance_count = async |query: &str| {
        search(&app, &owner.token, &format!("/dicom-web/instances?{query}"))
            .await
            .len()
    };
    assert_eq!(instance_count(&format!("SOPInstanceUID={ct_sop}")).await, 1);
    assert_eq!(instance_count("InstanceNumber=1").await, 2);
    assert_eq!(
        instance_count("SOPClassUID=1.2.840.10008.5.1.4.1.1.2").await,
        1
    );
    let dose = search(&app, &owner.token, "/dicom-web/instances?Modality=RTDOSE").await;
    assert_eq!(
        value(&dose[0], "00280008"),
        15,
        "frames of the multi-frame dose"
    );

    // The same answers from the dataset's own root.
    let scoped = search(
        &app,
        &owner.token,
        &format!("/dicom-web/datasets/{dataset}/studies?ModalitiesInStudy=CT"),
    )
    .await;
    assert_eq!(
        text(&scoped[0], "00081190"),
        format!("{}/dicom-web/datasets/{dataset}/studies/{ct_uid}", app.url)
    );

    let searches = app.audit("action=dataset.dicomweb_search").await;
    assert!(!searches.is_empty(), "searches are audited");
    assert_eq!(searches[0]["actor_name"], owner.username);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retrieved_files_metadata_frames_and_pictures_match_pydicom() {
    let Some(python) = python_with(
        "retrieved_files_metadata_frames_and_pictures_match_pydicom",
        &["PIL"],
    ) else {
        return;
    };
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Student).await;
    let plain = app.dataset(&owner.token, "Plain", None).await;
    let compressed = app.dataset(&owner.token, "Compressed", None).await;
    upload_all(&app, &owner.token, plain, &[CT, DOSE]).await;
    upload_all(&app, &owner.token, compressed, &[MR_JPEG2000]).await;
    let out = tempfile::tempdir().unwrap();
    let save = |name: &str, bytes: &[u8]| {
        let path = out.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_string_lossy().into_owned()
    };
    let instance_url = async |dataset: i64, modality: &str| {
        let found = search(
            &app,
            &owner.token,
            &format!("/dicom-web/datasets/{dataset}/instances?Modality={modality}"),
        )
        .await;
        assert_eq!(found.len(), 1, "{found:?}");
        strip_origin(&app, &text(&found[0], "00081190")).to_string()
    };

    // The CT: its file, metadata, frame and picture, each checked with pydicom and Pillow.
    let ct = instance_url(plain, "CT").await;
    let file = get(
        &app,
        &owner.token,
        &ct,
        Some("multipart/related; type=\"application/dicom\""),
    )
    .await;
    assert_eq!(file.status, StatusCode::OK);
    let parts = file.parts();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].0,
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    );
    assert!(
        find(&parts[0].1, b"CompressedSamples").is_none(),
        "the original patient name is gone"
    );
    let retrieved = save("ct.dcm", &parts[0].1);
    let metadata = get(
        &app,
        &owner.token,
        &format!("{ct}/metadata"),
        Some(DICOM_JSON),
    )
    .await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert_eq!(metadata.content_type(), DICOM_JSON);
    let metadata_path = save("ct.json", &metadata.body);
    let frame = get(&app, &owner.token, &format!("{ct}/frames/1"), None).await;
    assert_eq!(frame.status, StatusCode::OK);
    let frames = frame.parts();
    assert_eq!(
        frames[0].0,
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    );
    assert_eq!(frames[0].1.len(), 128 * 128 * 2, "rows x columns x 2 bytes");
    let frame_path = save("ct-frame", &frames[0].1);
    let picture = get(
        &app,
        &owner.token,
        &format!("{ct}/rendered"),
        Some("image/png"),
    )
    .await;
    assert_eq!(picture.status, StatusCode::OK);
    assert_eq!(picture.content_type(), "image/png");
    let picture_path = save("ct.png", &picture.body);
    let checked = python_check(
        &python,
        &[
            "check",
            "--original",
            &pydicom_file(CT).to_string_lossy(),
            "--retrieved",
            &retrieved,
            "--metadata",
            &metadata_path,
            "--frame",
            "1",
            &frame_path,
            "--png",
            &picture_path,
            "128",
            "128",
        ],
    );
    // The pixel data's bulk data URI leads to the same bytes as the frame.
    let uri = checked["bulk_data_uris"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|u| u.ends_with("/bulkdata/7FE00010"))
        .expect("a bulk data URI for Pixel Data")
        .to_string();
    let bulk = get(&app, &owner.token, &uri, None).await;
    assert_eq!(bulk.status, StatusCode::OK);
    assert_eq!(bulk.parts()[0].1, frames[0].1);

    // Windowing and viewport change the picture; unknown functions are refused.
    let windowed = get(
        &app,
        &owner.token,
        &format!("{ct}/rendered?window=40,400,linear"),
        None,
    )
    .await;
    assert_eq!(windowed.status, StatusCode::OK);
    assert_ne!(
        windowed.body, picture.body,
        "another window gives another picture"
    );
    let small = get(
        &app,
        &owner.token,
        &format!("{ct}/rendered?viewport=64,32"),
        None,
    )
    .await;
    assert_eq!(
        png_size(&small.body),
        (32, 32),
        "fits 64x32 keeping the square aspect"
    );
    let sigmoid = get(
        &app,
        &owner.token,
        &format!("{ct}/rendered?window=40,400,sigmoid"),
        None,
    )
    .await;
    assert_eq!(sigmoid.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&sigmoid.body).contains("linear"));
    let jpeg = get(
        &app,
        &owner.token,
        &format!("{ct}/rendered"),
        Some("image/jpeg"),
    )
    .await;
    assert_eq!(jpeg.status, StatusCode::NOT_ACCEPTABLE);
    let demanded = get(
        &app,
        &owner.token,
        &ct,
        Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.90",
        ),
    )
    .await;
    assert_eq!(
        demanded.status,
        StatusCode::NOT_ACCEPTABLE,
        "voxhub does not transcode"
    );
    assert!(String::from_utf8_lossy(&demanded.body).contains("1.2.840.10008.1.2.1"));

    // The multi-frame dose: frames by number, one or several at once.
    let dose = instance_url(plain, "RTDOSE").await;
    let third = get(&app, &owner.token, &format!("{dose}/frames/3"), None).await;
    let third = third.parts();
    assert_eq!(third[0].1.len(), 10 * 10 * 4);
    python_check(
        &python,
        &[
            "check",
            "--original",
            &pydicom_file(DOSE).to_string_lossy(),
            "--frame",
            "3",
            &save("dose-3", &third[0].1),
        ],
    );
    let two = get(&app, &owner.token, &format!("{dose}/frames/1,15"), None).await;
    assert_eq!(two.parts().len(), 2);
    let beyond = get(&app, &owner.token, &format!("{dose}/frames/16"), None).await;
    assert_eq!(beyond.status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&beyond.body).contains("15 frames"));
    let dose_picture = get(
        &app,
        &owner.token,
        &format!("{dose}/frames/15/rendered"),
        None,
    )
    .await;
    assert_eq!(png_size(&dose_picture.body), (10, 10));

    // JPEG 2000: frames decoded for clients that want samples, or sent as stored.
    let jp2 = instance_url(compressed, "MR").await;
    let decoded = get(
        &app,
        &owner.token,
        &format!("{jp2}/frames/1"),
        Some("multipart/related; type=\"application/octet-stream\""),
    )
    .await;
    let decoded = decoded.parts();
    assert_eq!(
        decoded[0].0,
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    );
    python_check(
        &python,
        &[
            "check",
            "--original",
            &pydicom_file(MR_JPEG2000).to_string_lossy(),
            "--frame",
            "1",
            &save("jp2-1", &decoded[0].1),
        ],
    );
    let stored = get(
        &app,
        &owner.token,
        &format!("{jp2}/frames/1"),
        Some("multipart/related; type=\"image/jp2\""),
    )
    .await;
    let stored = stored.parts();
    assert_eq!(
        stored[0].0,
        "image/jp2; transfer-syntax=1.2.840.10008.1.2.4.90"
    );
    assert!(
        stored[0].1.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]),
        "a JPEG 2000 codestream"
    );
    let refused = get(
        &app,
        &owner.token,
        &format!("{jp2}/frames/1"),
        Some("multipart/related; type=\"image/jpeg\""),
    )
    .await;
    assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
    assert!(String::from_utf8_lossy(&refused.body).contains("image/jp2"));
    let jp2_file = get(&app, &owner.token, &jp2, None).await;
    assert_eq!(
        jp2_file.parts()[0].0,
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90"
    );

    // Whole studies and series, and their metadata.
    let ct_study = ct.split("/series/").next().unwrap().to_string();
    let study = get(&app, &owner.token, &ct_study, None).await;
    assert_eq!(study.parts().len(), 1);
    let ct_series = ct.split("/instances/").next().unwrap().to_string();
    let series_metadata = get(&app, &owner.token, &format!("{ct_series}/metadata"), None).await;
    assert_eq!(series_metadata.json().as_array().unwrap().len(), 1);

    // Every retrieval is an audited read of the series.
    let reads = app.audit("action=dataset.dicomweb").await;
    let reads = with_action(&reads, "dataset.dicomweb");
    assert!(
        reads.iter().any(|e| e["target"]
            .as_str()
            .unwrap_or_default()
            .starts_with("series:")
            && e["actor_name"] == owner.username.as_str()),
        "{reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stow_stores_through_ingest_and_names_every_refused_part() {
    let Some(python) = python_with(
        "stow_stores_through_ingest_and_names_every_refused_part",
        &["PIL"],
    ) else {
        return;
    };
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Teacher).await;
    let dataset = app.dataset(&owner.token, "Stored", None).await;
    let (_, ct) = file(CT);
    let path = format!("/dicom-web/datasets/{dataset}/studies");
    let body = related(&[
        ("application/dicom", &ct),
        ("application/dicom", b"this is not DICOM"),
        ("text/plain", b"neither is this"),
    ]);
    let answer = stow(&app, &owner.token, &path, STOW_TYPE, body).await;
    assert_eq!(
        answer.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.content_type(), DICOM_JSON);
    let answer = answer.json();
    let stored = answer["00081199"]["Value"]
        .as_array()
        .expect("ReferencedSOPSequence");
    assert_eq!(stored.len(), 1);
    let sop = text(&stored[0], "00081155");
    assert!(
        sop.starts_with("2.25."),
        "the stored UID is the de-identified one: {sop}"
    );
    assert_eq!(
        value(&stored[0], "00081196"),
        0xB000,
        "de-identification is coercion"
    );
    let failed = answer["00081198"]["Value"]
        .as_array()
        .expect("FailedSOPSequence");
    assert_eq!(failed.len(), 2);
    for item in failed {
        assert_eq!(value(item, "00081197"), 0xC000);
        assert!(text(item, "00000902").contains("part"), "{item}");
    }
    let study_url = text(&answer, "00081190");
    assert!(study_url.starts_with(&format!(
        "{}/dicom-web/datasets/{dataset}/studies/2.25.",
        app.url
    )));

    // What was stored is what the index and the files hold, de-identified.
    let url = strip_origin(&app, &text(&stored[0], "00081190")).to_string();
    let retrieved = get(&app, &owner.token, &url, None).await;
    assert_eq!(retrieved.status, StatusCode::OK);
    assert!(find(&retrieved.parts()[0].1, b"CompressedSamples").is_none());
    let uploads = app
        .get_ok(&owner.token, &format!("/api/v1/datasets/{dataset}/uploads"))
        .await;
    assert_eq!(
        uploads.as_array().unwrap().len(),
        1,
        "the store is an upload with its report"
    );
    assert_eq!(uploads[0]["imported"], 1);

    // Storing the same file again stores nothing new and names the same instance.
    let again = stow(
        &app,
        &owner.token,
        &path,
        STOW_TYPE,
        related(&[("application/dicom", &ct)]),
    )
    .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(text(&again.json()["00081199"]["Value"][0], "00081155"), sop);
    assert_eq!(
        search(&app, &owner.token, "/dicom-web/instances")
            .await
            .len(),
        1
    );

    // Nothing storable: 409, with the reasons.
    let nothing = stow(
        &app,
        &owner.token,
        &path,
        STOW_TYPE,
        related(&[("application/dicom", b"junk")]),
    )
    .await;
    assert_eq!(nothing.status, StatusCode::CONFLICT);
    assert_eq!(
        nothing.json()["00081198"]["Value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Malformed requests are refused before anything is stored.
    let cut = stow(
        &app,
        &owner.token,
        &path,
        STOW_TYPE,
        format!("--{BOUNDARY}\r\n\r\nunfinished").into_bytes(),
    )
    .await;
    assert_eq!(cut.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&cut.body).contains("closing boundary"));
    let no_boundary = stow(
        &app,
        &owner.token,
        &path,
        "multipart/related; type=\"application/dicom\"",
        ct.clone(),
    )
    .await;
    assert_eq!(no_boundary.status, StatusCode::BAD_REQUEST);
    let single = stow(&app, &owner.token, &path, "application/dicom", ct.clone()).await;
    assert_eq!(single.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let json_parts = stow(
        &app,
        &owner.token,
        &path,
        "multipart/related; type=\"application/dicom+json\"; boundary=x",
        b"--x--".to_vec(),
    )
    .await;
    assert_eq!(json_parts.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // The root has no target dataset.
    let rootless = stow(
        &app,
        &owner.token,
        "/dicom-web/studies",
        STOW_TYPE,
        related(&[("application/dicom", &ct)]),
    )
    .await;
    assert_eq!(rootless.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&rootless.body).contains("/dicom-web/datasets/"));
    assert_eq!(
        search(&app, &owner.token, "/dicom-web/instances")
            .await
            .len(),
        1,
        "nothing else was stored"
    );

    // A colour file larger than the JSON API's 64 KiB body limit, stored and rendered.
    let colour_name = "examples_rgb_color.dcm";
    let (_, colour) = file(colour_name);
    assert!(colour.len() > 64 * 1024);
    let big = stow(
        &app,
        &owner.token,
        &path,
        STOW_TYPE,
        related(&[("application/dicom", &colour)]),
    )
    .await;
    assert_eq!(
        big.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&big.body)
    );
    let url =
        strip_origin(&app, &text(&big.json()["00081199"]["Value"][0], "00081190")).to_string();
    let picture = get(
        &app,
        &owner.token,
        &format!("{url}/rendered"),
        Some("image/png"),
    )
    .await;
    assert_eq!(picture.status, StatusCode::OK);
    let png = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(png.path(), &picture.body).unwrap();
    let checked = python_check(
        &python,
        &[
            "check",
            "--original",
            &pydicom_file(colour_name).to_string_lossy(),
            "--png",
            &png.path().to_string_lossy(),
            "320",
            "240",
        ],
    );
    assert_eq!(checked["png_mode"], "RGB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_student_never_reaches_another_class_or_a_private_dataset_through_dicomweb() {
    let Some(_python) = imaging_python(
        "a_student_never_reaches_another_class_or_a_private_dataset_through_dicomweb",
    ) else {
        return;
    };
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let other_teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let classmate = app.user(Role::Student).await;
    let own_class = app.create_class(&app.admin.token, "Anatomy").await;
    let other_class = app.create_class(&app.admin.token, "Radiology").await;
    app.add_member(&app.admin.token, own_class, &teacher.username, "teacher")
        .await;
    app.add_member(&app.admin.token, own_class, &student.username, "student")
        .await;
    app.add_member(&app.admin.token, own_class, &classmate.username, "student")
        .await;
    app.add_member(
        &app.admin.token,
        other_class,
        &other_teacher.username,
        "teacher",
    )
    .await;
    let shared = app
        .dataset(&teacher.token, "Anatomy cases", Some(own_class))
        .await;
    let foreign = app
        .dataset(&other_teacher.token, "Radiology cases", Some(other_class))
        .await;
    let private = app.dataset(&classmate.token, "My own", None).await;
    upload_all(&app, &teacher.token, shared, &[CT]).await;
    upload_all(&app, &other_teacher.token, foreign, &[MR]).await;
    upload_all(&app, &classmate.token, private, &[DOSE]).await;

    let visible = search(&app, &student.token, "/dicom-web/studies").await;
    assert_eq!(visible.len(), 1, "only the class's study: {visible:?}");
    assert_eq!(visible[0]["00080061"]["Value"], json!(["CT"]));
    let all = search(&app, &app.admin.token, "/dicom-web/studies").await;
    assert_eq!(all.len(), 3, "admins reach every dataset");
    let hidden: Vec<&Value> = all
        .iter()
        .filter(|s| s["00080061"]["Value"] != json!(["CT"]))
        .collect();
    for study in hidden {
        let uid = text(study, "0020000D");
        let instance = search(
            &app,
            &app.admin.token,
            &format!("/dicom-web/studies/{uid}/instances"),
        )
        .await;
        let instance_url = strip_origin(&app, &text(&instance[0], "00081190")).to_string();
        // Searching by its UIDs finds nothing; retrieving it finds nothing.
        assert!(
            search(
                &app,
                &student.token,
                &format!("/dicom-web/studies?StudyInstanceUID={uid}")
            )
            .await
            .is_empty()
        );
        assert!(
            search(
                &app,
                &student.token,
                &format!("/dicom-web/studies/{uid}/series")
            )
            .await
            .is_empty()
        );
        assert!(
            search(
                &app,
                &student.token,
                &format!("/dicom-web/instances?StudyInstanceUID={uid}")
            )
            .await
            .is_empty()
        );
        for suffix in ["", "/metadata", "/frames/1", "/rendered"] {
            let reply = get(
                &app,
                &student.token,
                &format!("{instance_url}{suffix}"),
                None,
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{instance_url}{suffix}"
            );
        }
        let study_reply = get(
            &app,
            &student.token,
            &format!("/dicom-web/studies/{uid}"),
            None,
        )
        .await;
        assert_eq!(study_reply.status, StatusCode::NOT_FOUND);
        let text = String::from_utf8_lossy(&study_reply.body).to_string();
        assert!(
            !text.contains("Radiology") && !text.contains("My own"),
            "{text}"
        );
    }
    // The datasets' own roots refuse outright.
    for dataset in [foreign, private] {
        for path in ["studies", "series", "instances"] {
            let reply = app
                .get(
                    &student.token,
                    &format!("/dicom-web/datasets/{dataset}/{path}"),
                )
                .await;
            assert_forbidden(&reply);
        }
        let store = stow(
            &app,
            &student.token,
            &format!("/dicom-web/datasets/{dataset}/studies"),
            STOW_TYPE,
            related(&[("application/dicom", &file(CT).1)]),
        )
        .await;
        assert_eq!(store.status, StatusCode::FORBIDDEN);
    }
    // A class dataset is read-only for its students.
    let store = stow(
        &app,
        &student.token,
        &format!("/dicom-web/datasets/{shared}/studies"),
        STOW_TYPE,
        related(&[("application/dicom", &file(MR).1)]),
    )
    .await;
    assert_eq!(store.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&store.body).contains("read-only"));
    assert_eq!(
        search(&app, &student.token, "/dicom-web/instances")
            .await
            .len(),
        1,
        "nothing was stored"
    );
    let refusals = app.audit("action=dataset.&outcome=denied").await;
    assert!(
        refusals
            .iter()
            .any(|e| e["actor_name"] == student.username.as_str()),
        "refusals are audited: {refusals:?}"
    );

    // The browser's session cookie reads, but never stores (a page elsewhere could post).
    let by_cookie = app
        .http
        .get(format!("{}/dicom-web/studies", app.url))
        .header("cookie", format!("voxhub_session={}", student.token))
        .header(ACCEPT, DICOM_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);
    let by_cookie: Value = by_cookie.json().await.unwrap();
    assert_eq!(by_cookie.as_array().unwrap().len(), 1);
    let cookie_store = app
        .http
        .post(format!("{}/dicom-web/datasets/{shared}/studies", app.url))
        .header("cookie", format!("voxhub_session={}", teacher.token))
        .header(CONTENT_TYPE, STOW_TYPE)
        .body(related(&[("application/dicom", &file(MR).1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(cookie_store.status(), StatusCode::UNAUTHORIZED);

    // Without a token, or with a wrong one: 401.
    let anonymous = app.get("", "/dicom-web/studies").await;
    assert_error(&anonymous, 401, "unauthenticated");
    let wrong = app
        .get(
            "vxh_not_a_real_token_0000000000000000",
            "/dicom-web/studies",
        )
        .await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    let anonymous_store = app
        .http
        .post(format!("{}/dicom-web/datasets/{shared}/studies", app.url))
        .header(CONTENT_TYPE, STOW_TYPE)
        .body(related(&[("application/dicom", &file(MR).1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous_store.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dicomweb_requests_are_refused_with_what_to_send() {
    let Some(_python) = imaging_python("bad_dicomweb_requests_are_refused_with_what_to_send")
    else {
        return;
    };
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Student).await;
    let dataset = app.dataset(&owner.token, "Mine", None).await;
    upload_all(&app, &owner.token, dataset, &[CT]).await;
    let instance = search(&app, &owner.token, "/dicom-web/instances").await;
    let url = strip_origin(&app, &text(&instance[0], "00081190")).to_string();
    for (path, status, code, says) in [
        (
            "/dicom-web/studies?StudyDate=2020-01-01",
            400,
            "invalid_query",
            "YYYYMMDD",
        ),
        (
            "/dicom-web/series?SeriesNumber=three",
            400,
            "invalid_query",
            "whole number",
        ),
        (
            "/dicom-web/studies?limit=-1",
            400,
            "invalid_query",
            "whole number",
        ),
        (
            "/dicom-web/studies?StudyInstanceUID=1.2.*",
            400,
            "invalid_query",
            "not a UID",
        ),
        (
            "/dicom-web/studies?ModalitiesInStudy=C%3BT",
            400,
            "invalid_query",
            "code string",
        ),
        (
            "/dicom-web/studies/not-a-uid/series",
            400,
            "invalid_uid",
            "digits and dots",
        ),
        (
            "/dicom-web/studies/1.2.3.4",
            404,
            "not_found",
            "no study 1.2.3.4",
        ),
        (
            "/dicom-web/studies/1.2.3.4/metadata",
            404,
            "not_found",
            "no study",
        ),
        (
            "/dicom-web/datasets/abc/studies",
            400,
            "invalid_path",
            "whole numbers",
        ),
        (
            "/dicom-web/datasets/999/studies",
            404,
            "not_found",
            "no dataset",
        ),
    ] {
        let reply = app.get(&owner.token, path).await;
        let message = assert_error(&reply, status, code);
        assert!(message.contains(says), "{path}: {message}");
    }
    for (suffix, status, code) in [
        ("/frames/0", 400, "invalid_frames"),
        ("/frames/x", 400, "invalid_frames"),
        ("/frames/2", 404, "not_found"),
        ("/frames/1,2/rendered", 404, "not_found"),
        ("/rendered?viewport=0,0", 400, "invalid_viewport"),
        ("/rendered?window=40", 400, "invalid_window"),
        ("/bulkdata/pixels", 400, "invalid_tag"),
        ("/bulkdata/00100010", 404, "not_found"),
    ] {
        let reply = app.get(&owner.token, &format!("{url}{suffix}")).await;
        assert_error(&reply, status, code);
    }
    let xml = get(
        &app,
        &owner.token,
        "/dicom-web/studies",
        Some("application/dicom+xml"),
    )
    .await;
    assert_eq!(xml.status, StatusCode::NOT_ACCEPTABLE);
    assert!(String::from_utf8_lossy(&xml.body).contains("application/dicom+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dicomweb_client_stores_searches_and_retrieves() {
    let Some(python) = python_with(
        "dicomweb_client_stores_searches_and_retrieves",
        &["dicomweb_client", "PIL"],
    ) else {
        return;
    };
    let app = TestApp::spawn().await;
    let owner = app.user(Role::Teacher).await;
    // An API token, as another tool would be given.
    let (status, token) = app
        .post(
            &owner.token,
            "/api/v1/tokens",
            json!({"name": "dicomweb-client"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token = token["secret"]
        .as_str()
        .expect("the token secret")
        .to_string();
    let dataset = app.dataset(&owner.token, "From another tool", None).await;
    let url = app.url.clone();
    let file = pydicom_file(CT).to_string_lossy().into_owned();
    let python_path = python.clone();
    let dataset_id = dataset.to_string();
    let result = tokio::task::spawn_blocking(move || {
        python_check(
            &python_path,
            &[
                "roundtrip",
                "--url",
                &url,
                "--token",
                &token,
                "--dataset",
                &dataset_id,
                "--file",
                &file,
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        result["sop_instance_uid"]
            .as_str()
            .unwrap()
            .starts_with("2.25."),
        "{result}"
    );
    let instances = search(
        &app,
        &owner.token,
        &format!("/dicom-web/datasets/{dataset}/instances"),
    )
    .await;
    assert_eq!(
        text(&instances[0], "00080018"),
        result["sop_instance_uid"].as_str().unwrap()
    );
    let reads = app.audit("action=dataset.dicomweb").await;
    assert!(!with_action(&reads, "dataset.dicomweb").is_empty());
}
