//! Imaging datasets through the API: creating and sharing, uploads of real and synthetic
//! DICOM (pydicom's test files), NIfTI and pictures with de-identification, the ingest
//! report for hostile and broken files, browsing and search, volumes and NIfTI downloads
//! checked with nibabel, and every refusal from the side of the student who must not get in.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use voxhub_core::role::Role;

/// A class with a teacher and a student, and a student of another class.
struct Classroom {
    class: i64,
    teacher: TestUser,
    student: TestUser,
    outsider: TestUser,
}

async fn classroom(app: &TestApp) -> Classroom {
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let outsider = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Radiology 101").await;
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    let other_teacher = app.user(Role::Teacher).await;
    let other = app.create_class(&other_teacher.token, "Anatomy").await;
    app.add_member(&other_teacher.token, other, &outsider.username, "student")
        .await;
    Classroom {
        class,
        teacher,
        student,
        outsider,
    }
}

fn file(path: &Path) -> (String, Vec<u8>) {
    (
        path.file_name().unwrap().to_string_lossy().into_owned(),
        std::fs::read(path).unwrap(),
    )
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    out.into_inner()
}

/// The data set of a Part 10 file without its preamble, `DICM` and file meta group.
fn data_set_only(part10: &[u8]) -> Vec<u8> {
    assert_eq!(&part10[128..132], b"DICM");
    // (0002,0000) UL, explicit VR: tag 4, VR 2, length 2, value 4.
    let group_length = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    part10[144 + group_length..].to_vec()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every stored object of the server's data directory.
fn stored_objects(app: &TestApp) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![app.data_dir().join("objects")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(std::fs::read(path).unwrap());
            }
        }
    }
    out
}

#[tokio::test]
async fn sharing_with_a_class_lets_its_students_read_only_and_nobody_else() {
    let app = TestApp::spawn().await;
    let room = classroom(&app).await;
    let shared = app
        .dataset(&room.teacher.token, "Chest CT", Some(room.class))
        .await;
    let private = app.dataset(&room.teacher.token, "Draft cases", None).await;

    // The class's student sees the shared one only, read-only.
    let listed = app.get_ok(&room.student.token, "/api/v1/datasets").await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Chest CT"]);
    assert_eq!(listed[0]["can_change"], false);
    assert_eq!(listed[0]["class_name"], "Radiology 101");
    let reply = app
        .get(&room.student.token, &format!("/api/v1/datasets/{private}"))
        .await;
    assert!(assert_forbidden(&reply).contains("not shared with you"));

    // Students of the class may not upload, rename or delete it.
    let ct = pydicom_file_or_skip("sharing").map(|p| file(&p));
    if let Some(ct) = ct {
        let reply = app.upload(&room.student.token, shared, vec![ct]).await;
        assert!(assert_forbidden(&reply).contains("read-only"));
    }
    assert_forbidden(
        &app.patch(
            &room.student.token,
            &format!("/api/v1/datasets/{shared}"),
            json!({"name": "mine"}),
        )
        .await,
    );
    assert_forbidden(
        &app.delete(&room.student.token, &format!("/api/v1/datasets/{shared}"))
            .await,
    );

    // A student of another class sees nothing of it, by list or by id.
    let listed = app.get_ok(&room.outsider.token, "/api/v1/datasets").await;
    assert_eq!(listed, json!([]));
    for path in [
        format!("/api/v1/datasets/{shared}"),
        format!("/api/v1/datasets/{shared}/series"),
        format!("/api/v1/datasets/{shared}/patients"),
        format!("/api/v1/datasets/{shared}/studies"),
    ] {
        assert_forbidden(&app.get(&room.outsider.token, &path).await);
    }

    // Only a class's teachers may publish to it; a student cannot share with their class.
    let mine = app.dataset(&room.student.token, "My project", None).await;
    let reply = app
        .patch(
            &room.student.token,
            &format!("/api/v1/datasets/{mine}"),
            json!({"class": room.class}),
        )
        .await;
    assert!(assert_forbidden(&reply).contains("only the teachers"));
    let reply = app
        .post(
            &room.student.token,
            "/api/v1/datasets",
            json!({"name": "x", "class": room.class}),
        )
        .await;
    assert_forbidden(&reply);

    // Keeping identifiable originals is an admin decision.
    let reply = app
        .patch(
            &room.teacher.token,
            &format!("/api/v1/datasets/{shared}"),
            json!({"keep_originals": true}),
        )
        .await;
    assert!(assert_forbidden(&reply).contains("only an admin"));

    // Refusals are audited.
    let denied: Vec<Value> = app
        .audit("outcome=denied")
        .await
        .into_iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("dataset."))
        .collect();
    assert!(denied.len() >= 5, "{denied:?}");
}

fn pydicom_file_or_skip(test: &str) -> Option<std::path::PathBuf> {
    imaging_python(test)?;
    Some(pydicom_file("CT_small.dcm"))
}

#[tokio::test]
async fn dataset_requests_with_bad_values_are_refused_with_the_field() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    assert_field_error(
        &app.post(&teacher.token, "/api/v1/datasets", json!({"name": "  "}))
            .await,
        422,
        "invalid_input",
        "name",
    );
    let reply = app
        .post(&teacher.token, "/api/v1/datasets", json!({"name": 5}))
        .await;
    assert_eq!(reply.0.as_u16(), 422, "{}", reply.1);
    let reply = app
        .post(
            &teacher.token,
            "/api/v1/datasets",
            json!({"name": "a", "colour": "red"}),
        )
        .await;
    assert_eq!(reply.0.as_u16(), 422, "{}", reply.1);
    app.dataset(&teacher.token, "Same", None).await;
    assert_error(
        &app.post(&teacher.token, "/api/v1/datasets", json!({"name": "Same"}))
            .await,
        409,
        "conflict",
    );
    assert_error(
        &app.get(&teacher.token, "/api/v1/datasets/999999").await,
        404,
        "not_found",
    );
    assert_error(
        &app.get(&teacher.token, "/api/v1/series/999999").await,
        404,
        "not_found",
    );
    let reply = app
        .post(
            &teacher.token,
            "/api/v1/datasets",
            json!({"name": "b", "class": 424242}),
        )
        .await;
    assert_error(&reply, 404, "not_found");
}

#[tokio::test]
async fn uploads_are_de_identified_indexed_and_reported_file_by_file() {
    let app = TestApp::spawn().await;
    let Some(python) = imaging_python("uploads_are_de_identified") else {
        return;
    };
    let room = classroom(&app).await;
    let dataset = app
        .dataset(&room.teacher.token, "Mixed", Some(room.class))
        .await;
    let series_dir = tempfile::tempdir().unwrap();
    make_series(&python, series_dir.path(), &["--slices", "6"]);
    let mut files = folder_files(series_dir.path());
    let ct = file(&pydicom_file("CT_small.dcm"));
    let original_ct = ct.1.clone();
    files.push(ct.clone());
    files.push(file(&pydicom_file("MR_small.dcm")));
    // Files without preamble and file meta (the data set alone, as old archives hold them):
    // pydicom's, and one made here from a Part 10 file.
    files.push(file(&pydicom_file("ExplVR_LitEndNoMeta.dcm")));
    let mr = std::fs::read(pydicom_file("MR_small.dcm")).unwrap();
    let mut bare = data_set_only(&mr);
    // Make it a different instance, so it is not the MR file again.
    let uid = b"1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457";
    let at = bare
        .windows(uid.len())
        .position(|w| w == uid)
        .expect("SOP Instance UID");
    bare[at + uid.len() - 1] = b'8';
    files.push(("bare.dcm".into(), bare));
    // Broken and hostile files, each skipped with a reason while the rest import.
    files.push((
        "notes.txt".into(),
        b"these are my notes, not an image".to_vec(),
    ));
    files.push(("truncated.dcm".into(), original_ct[..1000].to_vec()));
    files.push((
        "broken.nii".into(),
        [348i32.to_le_bytes().to_vec(), vec![0xff; 400]].concat(),
    ));
    let zip = zip_of(&[
        ("case2/../../evil.dcm", &original_ct),
        ("/etc/absolute.dcm", &original_ct),
        (
            "case2/ok.dcm",
            &std::fs::read(pydicom_file("CT_small.dcm")).unwrap(),
        ),
        ("case2/inner.zip", &zip_of(&[("a.txt", b"a")])),
    ]);
    files.push(("bundle.zip".into(), zip));

    let (status, report) = app.upload(&room.teacher.token, dataset, files).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let skipped: Vec<(String, String)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason = |name: &str| {
        skipped
            .iter()
            .find(|(n, _)| n.ends_with(name))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{name} not skipped: {skipped:?}"))
    };
    assert!(reason("notes.txt").contains("not an imaging file"));
    assert!(!reason("truncated.dcm").is_empty());
    assert!(!reason("broken.nii").is_empty());
    assert!(reason("evil.dcm").contains("unsafe"), "{skipped:?}");
    assert!(reason("absolute.dcm").contains("unsafe"), "{skipped:?}");
    assert!(reason("inner.zip").contains("nested"), "{skipped:?}");
    // 6 slices + CT + MR + the two bare data sets; the zip's copy of CT_small is the same file.
    assert_eq!(report["imported"], 10, "{report}");
    assert_eq!(report["already_present"], 1, "{report}");
    assert_eq!(report["received"], 10 + 1 + skipped.len(), "{report}");
    // File by file: what each became, in its series; the zip's copy is the CT's instance.
    let outcomes = report["files"].as_array().unwrap();
    assert_eq!(outcomes.len(), 11, "{report}");
    let outcome = |name: &str| {
        outcomes
            .iter()
            .find(|f| f["name"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} has no outcome: {report}"))
    };
    assert_eq!(outcome("CT_small.dcm")["outcome"], "imported");
    assert_eq!(outcome("case2/ok.dcm")["outcome"], "already_present");
    assert_eq!(
        outcome("case2/ok.dcm")["instance"],
        outcome("CT_small.dcm")["instance"]
    );
    for file in outcomes {
        assert!(
            report["series"]
                .as_array()
                .unwrap()
                .contains(&file["series"]),
            "{file} is in a series the report does not name"
        );
    }
    let deid = &report["deidentification"];
    assert_eq!(deid["applied"], true);
    for attribute in ["PatientBirthDate", "InstitutionName"] {
        let all: Vec<&str> = ["removed", "replaced", "emptied"]
            .iter()
            .flat_map(|k| deid[k].as_array().unwrap())
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(all.contains(&attribute), "{attribute} not in {deid}");
    }
    assert!(deid["dates"].as_str().unwrap().contains("shifted"));

    // The identifying values are in no stored object.
    for object in stored_objects(&app) {
        for secret in [
            &b"DOE^JANE"[..],
            b"MRN-0042",
            b"St Example Hospital",
            b"CompressedSamples^CT1",
        ] {
            assert!(
                !contains(&object, secret),
                "{} found in a stored object",
                String::from_utf8_lossy(secret)
            );
        }
    }

    // Browse: pseudonymised patients, their studies and series; search by modality and text.
    let patients = app
        .get_ok(
            &room.student.token,
            &format!("/api/v1/datasets/{dataset}/patients"),
        )
        .await;
    let pseudonyms: Vec<&str> = patients
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pseudonym"].as_str().unwrap())
        .collect();
    assert!(pseudonyms.len() >= 3, "{patients}");
    assert!(!pseudonyms.contains(&"MRN-0042"));
    let studies = app
        .get_ok(
            &room.student.token,
            &format!("/api/v1/datasets/{dataset}/studies"),
        )
        .await;
    let synthetic = studies
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instances"] == 6)
        .unwrap_or_else(|| panic!("{studies}"));
    assert_ne!(synthetic["study_date"], "20240315", "dates are shifted");
    assert_eq!(synthetic["study_date"].as_str().unwrap().len(), 8);
    let ct_series = app
        .get_ok(
            &room.student.token,
            &format!("/api/v1/datasets/{dataset}/series?modality=ct"),
        )
        .await;
    assert!(
        ct_series
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["modality"] == "CT")
    );
    let mr_series = app
        .get_ok(
            &room.student.token,
            &format!("/api/v1/datasets/{dataset}/series?modality=MR"),
        )
        .await;
    assert_eq!(mr_series.as_array().unwrap().len(), 1);
    let found = app
        .get_ok(
            &room.student.token,
            &format!("/api/v1/datasets/{dataset}/series?q=chest"),
        )
        .await;
    // Body part is kept; descriptions are removed by the Basic Profile.
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["instances"], 6);
    assert_eq!(found[0]["description"], "");

    // The upload is recorded, audited, and its report can be read again.
    let uploads = app
        .get_ok(
            &room.teacher.token,
            &format!("/api/v1/datasets/{dataset}/uploads"),
        )
        .await;
    let upload = uploads[0]["id"].as_i64().unwrap();
    let again = app
        .get_ok(&room.teacher.token, &format!("/api/v1/uploads/{upload}"))
        .await;
    assert_eq!(again["imported"], 10);
    assert_forbidden(
        &app.get(&room.student.token, &format!("/api/v1/uploads/{upload}"))
            .await,
    );
    let audit = app.audit("").await;
    let uploads_audited = audit
        .iter()
        .filter(|e| e["action"] == "dataset.upload")
        .count();
    assert_eq!(uploads_audited, 1);

    // The same files again change nothing.
    let (_, again) = app
        .upload(
            &room.teacher.token,
            dataset,
            folder_files(series_dir.path()),
        )
        .await;
    assert_eq!(again["imported"], 0, "{again}");
    assert_eq!(again["already_present"], 6, "{again}");
}

#[tokio::test]
async fn a_series_that_forms_a_volume_downloads_as_nifti_equal_to_the_pixels() {
    let app = TestApp::spawn().await;
    let Some(python) = imaging_python("volume_nifti") else {
        return;
    };
    let teacher = app.user(Role::Teacher).await;
    let dataset = app.dataset(&teacher.token, "Volumes", None).await;
    let dir = tempfile::tempdir().unwrap();
    make_series(
        &python,
        dir.path(),
        &["--slices", "10", "--size", "24", "--orientation", "coronal"],
    );
    let (_, report) = app
        .upload(&teacher.token, dataset, folder_files(dir.path()))
        .await;
    let series = report["series"][0].as_i64().unwrap();
    let derived = app.derived_series(&teacher.token, series).await;
    assert_eq!(derived["derived"], "ready", "{derived}");
    assert_eq!(derived["summary"]["volume"]["ok"], true, "{derived}");
    assert_eq!(derived["summary"]["volume"]["dims"], json!([24, 24, 10]));
    let spacing = derived["summary"]["volume"]["spacing"].as_array().unwrap();
    assert!(
        (spacing[2].as_f64().unwrap() - 2.5).abs() < 1e-6,
        "{derived}"
    );

    let thumbnail = app
        .http
        .get(format!("{}/api/v1/series/{series}/thumbnail", app.url))
        .bearer_auth(&teacher.token)
        .send()
        .await
        .unwrap();
    assert_eq!(thumbnail.status(), StatusCode::OK);
    assert!(thumbnail.bytes().await.unwrap().starts_with(b"\x89PNG"));

    let response = app
        .http
        .get(format!("{}/api/v1/series/{series}/nifti", app.url))
        .bearer_auth(&teacher.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .ends_with(".nii.gz\"")
    );
    let bytes = response.bytes().await.unwrap();
    let out = dir.path().join("volume.nii.gz");
    std::fs::write(&out, &bytes).unwrap();
    // nibabel reads it; voxel (i, j, k) holds the HU the generator wrote for it, whatever
    // order the files were named and numbered in (only the geometry gives the order).
    let check = std::process::Command::new(&python)
        .arg("-c")
        .arg(
            "import sys, nibabel, numpy as np\n\
             img = nibabel.load(sys.argv[1]); d = img.get_fdata()\n\
             assert d.shape == (24, 24, 10), d.shape\n\
             k, r, c = np.meshgrid(np.arange(10), np.arange(24), np.arange(24), indexing='ij')\n\
             expected = k * 10 + r - c\n\
             got = np.transpose(d, (2, 1, 0))[:, ::-1, :]\n\
             assert np.array_equal(got, expected), (got[0,:3,:3], expected[0,:3,:3])\n\
             print('ok')",
        )
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        with_action(&app.audit("").await, "dataset.download").len(),
        1
    );
}

#[tokio::test]
async fn a_series_with_a_missing_slice_is_reported_and_not_converted() {
    let app = TestApp::spawn().await;
    let Some(python) = imaging_python("missing_slice") else {
        return;
    };
    let teacher = app.user(Role::Teacher).await;
    let dataset = app.dataset(&teacher.token, "Gaps", None).await;
    let dir = tempfile::tempdir().unwrap();
    make_series(&python, dir.path(), &["--slices", "8", "--missing", "4"]);
    let (_, report) = app
        .upload(&teacher.token, dataset, folder_files(dir.path()))
        .await;
    let series = report["series"][0].as_i64().unwrap();
    let derived = app.derived_series(&teacher.token, series).await;
    assert_eq!(derived["summary"]["volume"]["ok"], false, "{derived}");
    let reason = derived["summary"]["volume"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("missing") || reason.contains("gap"),
        "{reason}"
    );
    let reply = app
        .get(&teacher.token, &format!("/api/v1/series/{series}/nifti"))
        .await;
    let message = assert_error(&reply, 409, "not_a_volume");
    assert!(message.contains(reason), "{message}");
    // Still browsable, with a thumbnail.
    assert_eq!(derived["summary"]["images"], 7);
}

#[tokio::test]
async fn nifti_uploads_and_their_masks_are_linked_and_cleaned() {
    let app = TestApp::spawn().await;
    let Some(python) = imaging_python("nifti_masks") else {
        return;
    };
    let teacher = app.user(Role::Teacher).await;
    let dataset = app.dataset(&teacher.token, "Segmentation", None).await;
    let dir = tempfile::tempdir().unwrap();
    let script = "import sys, nibabel, numpy as np\n\
        a = np.arange(8*6*5, dtype=np.int16).reshape(8, 6, 5)\n\
        img = nibabel.Nifti1Image(a, np.diag([0.9, 0.9, 2.0, 1.0]))\n\
        img.header['descrip'] = b'Jane Doe 1970'\n\
        nibabel.save(img, sys.argv[1] + '/case1.nii.gz')\n\
        m = (a % 3 == 0).astype(np.uint8)\n\
        nibabel.save(nibabel.Nifti1Image(m, np.diag([0.9, 0.9, 2.0, 1.0])), sys.argv[1] + '/case1_seg.nii.gz')";
    let made = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(made.success());
    let files: Vec<(String, Vec<u8>)> = folder_files(dir.path())
        .into_iter()
        .map(|(name, bytes)| (format!("patient7/{name}"), bytes))
        .collect();
    let (status, report) = app.upload(&teacher.token, dataset, files).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["imported"], 2, "{report}");
    let series = app
        .get_ok(
            &teacher.token,
            &format!("/api/v1/datasets/{dataset}/series"),
        )
        .await;
    let image = series
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["description"] == "case1.nii.gz")
        .unwrap();
    let mask = series
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["description"] == "case1_seg.nii.gz")
        .unwrap();
    assert_eq!(mask["label_of"], image["id"]);
    assert_eq!(image["patient_pseudonym"], "patient7");
    let derived = app
        .derived_series(&teacher.token, image["id"].as_i64().unwrap())
        .await;
    assert_eq!(derived["labels"], json!([mask["id"]]));
    assert_eq!(derived["summary"]["volume"]["dims"], json!([8, 6, 5]));
    // The free-text description is gone from what is stored and served.
    for object in stored_objects(&app) {
        let mut plain = Vec::new();
        let _ =
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&object[..]), &mut plain);
        assert!(!contains(&plain, b"Jane Doe"));
    }
}

#[tokio::test]
async fn an_upload_without_files_or_with_a_torn_body_changes_nothing() {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let dataset = app.dataset(&teacher.token, "Empty", None).await;
    let form = reqwest::multipart::Form::new().text("note", "hello");
    let response = app
        .http
        .post(format!("{}/api/v1/datasets/{dataset}/files", app.url))
        .bearer_auth(&teacher.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let reply = (response.status(), response.json::<Value>().await.unwrap());
    assert_error(&reply, 400, "invalid_upload");

    // A multipart body cut off in the middle of a file.
    let body = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.dcm\"\r\n\r\nDICM partial";
    let response = app
        .http
        .post(format!("{}/api/v1/datasets/{dataset}/files", app.url))
        .bearer_auth(&teacher.token)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(body)
        .send()
        .await
        .unwrap();
    let reply = (response.status(), response.json::<Value>().await.unwrap());
    assert_error(&reply, 400, "invalid_upload");
    // Not multipart at all.
    let response = app
        .http
        .post(format!("{}/api/v1/datasets/{dataset}/files", app.url))
        .bearer_auth(&teacher.token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    let listed = app
        .get_ok(&teacher.token, &format!("/api/v1/datasets/{dataset}"))
        .await;
    assert_eq!(listed["instances"], 0);
    assert!(stored_objects(&app).is_empty());
    let spool = app.data_dir().join("spool");
    let left: Vec<_> = std::fs::read_dir(&spool).into_iter().flatten().collect();
    assert!(left.is_empty(), "spooled files left behind: {left:?}");
}

#[tokio::test]
async fn deleting_a_dataset_removes_its_files_but_not_those_another_dataset_holds() {
    let app = TestApp::spawn().await;
    if imaging_python("delete_dataset").is_none() {
        return;
    }
    let teacher = app.user(Role::Teacher).await;
    let first = app.dataset(&teacher.token, "First", None).await;
    let second = app.dataset(&teacher.token, "Second", None).await;
    let ct = file(&pydicom_file("CT_small.dcm"));
    let mr = file(&pydicom_file("MR_small.dcm"));
    app.upload(&teacher.token, first, vec![ct.clone(), mr])
        .await;
    app.upload(&teacher.token, second, vec![ct]).await;
    // Thumbnails are stored in the background; count once they are all there.
    for dataset in [first, second] {
        let series = app
            .get_ok(
                &teacher.token,
                &format!("/api/v1/datasets/{dataset}/series"),
            )
            .await;
        for one in series.as_array().unwrap() {
            app.derived_series(&teacher.token, one["id"].as_i64().unwrap())
                .await;
        }
    }
    let before = stored_objects(&app).len();
    let reply = app
        .delete(&teacher.token, &format!("/api/v1/datasets/{first}"))
        .await;
    assert_eq!(reply.0, StatusCode::NO_CONTENT, "{}", reply.1);
    let after = stored_objects(&app).len();
    assert!(after < before, "{before} → {after}");
    // The CT shared with the second dataset is still there and still served.
    let series = app
        .get_ok(&teacher.token, &format!("/api/v1/datasets/{second}/series"))
        .await;
    let id = series[0]["id"].as_i64().unwrap();
    let derived = app.derived_series(&teacher.token, id).await;
    assert_eq!(derived["instances"], 1);
    assert_error(
        &app.get(&teacher.token, &format!("/api/v1/datasets/{first}"))
            .await,
        404,
        "not_found",
    );
    assert_eq!(with_action(&app.audit("").await, "dataset.delete").len(), 1);
}

/// Every DICOM file pydicom ships with its tests, and those of the `pydicom-data` package
/// (CT, MR, US, RT, many transfer syntaxes, colour, big endian, broken files): each upload
/// imports or skips every file with a reason, and every imported series is then either
/// shown (a PNG) or refused with a clear reason, never a server error.
#[tokio::test]
async fn every_real_test_file_of_other_projects_is_imported_or_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    if imaging_python("real_test_files").is_none() {
        return;
    }
    let teacher = app.user(Role::Teacher).await;
    let dataset = app.dataset(&teacher.token, "Real files", None).await;
    let pydicom_dir = pydicom_file("CT_small.dcm").parent().unwrap().to_path_buf();
    let data_store = std::fs::read_dir("/opt/voxhub/imaging-venv/lib")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("site-packages/data_store/data"))
        .find(|p| p.is_dir());
    let Some(data_store) = data_store else {
        if std::env::var_os("CI").is_some() {
            panic!("pydicom-data is missing from the imaging venv; .ci/run must install it");
        }
        eprintln!("\n*** SKIPPED real_test_files: pip install pydicom-data into the venv ***\n");
        return;
    };
    let mut names = Vec::new();
    for dir in [&pydicom_dir, &data_store] {
        let files: Vec<(String, Vec<u8>)> = folder_files(dir)
            .into_iter()
            .filter(|(name, _)| name.ends_with(".dcm"))
            .collect();
        names.extend(files.iter().map(|(n, _)| n.clone()));
        // In parts, as the command line sends them.
        for chunk in files.chunks(24) {
            let (status, report) = app.upload(&teacher.token, dataset, chunk.to_vec()).await;
            assert_eq!(status, StatusCode::OK, "{report}");
            let accounted = report["imported"].as_u64().unwrap()
                + report["already_present"].as_u64().unwrap()
                + report["skipped"].as_array().unwrap().len() as u64;
            assert_eq!(accounted, chunk.len() as u64, "{report}");
            for skipped in report["skipped"].as_array().unwrap() {
                let reason = skipped["reason"].as_str().unwrap();
                assert!(reason.split_whitespace().count() >= 3, "{skipped}");
            }
        }
    }
    assert!(names.len() > 100, "{} files", names.len());
    let series = app
        .get_ok(
            &teacher.token,
            &format!("/api/v1/datasets/{dataset}/series"),
        )
        .await;
    let series = series.as_array().unwrap();
    assert!(series.len() > 20, "{} series", series.len());
    let mut shown = 0;
    for one in series {
        let id = one["id"].as_i64().unwrap();
        let derived = app.derived_series(&teacher.token, id).await;
        let view = app
            .get(&teacher.token, &format!("/api/v1/series/{id}/view"))
            .await;
        assert!(
            view.0.is_success() || view.0.is_client_error(),
            "series {id}: {} {}",
            view.0,
            view.1
        );
        if !view.0.is_success() {
            assert!(
                view.1["error"]["message"].as_str().unwrap().len() > 20,
                "{}",
                view.1
            );
            continue;
        }
        let plane = view.1["planes"][0]["name"]
            .as_str()
            .unwrap_or("stack")
            .to_string();
        let response = app
            .http
            .get(format!(
                "{}/api/v1/series/{id}/slices/{plane}/0.png",
                app.url
            ))
            .bearer_auth(&teacher.token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.bytes().await.unwrap();
        assert!(
            status.is_success() || status.is_client_error(),
            "series {id} ({}): slice answered {status}: {}",
            derived["summary"],
            String::from_utf8_lossy(&body)
        );
        if status.is_success() {
            assert!(body.starts_with(b"\x89PNG"));
            shown += 1;
        }
    }
    assert!(
        shown > 15,
        "only {shown} of {} series could be shown",
        series.len()
    );
}

#[tokio::test]
async fn with_clean_descriptors_descriptions_stay_without_identifying_words() {
    let app = TestApp::spawn_with_imaging(voxhub_web::datasets::ImagingSettings {
        deid: voxhub_imaging::deid::DeidConfig {
            clean_descriptors: true,
            ..imaging_settings().deid
        },
        ..imaging_settings()
    })
    .await;
    let Some(python) = imaging_python("with_clean_descriptors") else {
        return;
    };
    let admin = app.admin.token.clone();
    let dataset = app.dataset(&admin, "Described", None).await;
    let series_dir = tempfile::tempdir().unwrap();
    make_series(
        &python,
        series_dir.path(),
        &[
            "--slices",
            "3",
            "--series-description",
            "Doe AX 2.5mm MRN-0042 15.03.2024 St Example",
        ],
    );
    let (status, report) = app
        .upload(&admin, dataset, folder_files(series_dir.path()))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let replaced = report["deidentification"]["replaced"].to_string();
    assert!(replaced.contains("SeriesDescription"), "{report}");
    let series = app
        .get_ok(&admin, &format!("/api/v1/datasets/{dataset}/series"))
        .await;
    // The patient's name and ID, the date and the institution's words are gone.
    assert_eq!(series[0]["description"], "AX 2.5mm", "{series}");
    let found = app
        .get_ok(
            &admin,
            &format!("/api/v1/datasets/{dataset}/series?q=2.5mm"),
        )
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let studies = app
        .get_ok(&admin, &format!("/api/v1/datasets/{dataset}/studies"))
        .await;
    assert_eq!(studies[0]["description"], "CT chest synthetic", "{studies}");
}
