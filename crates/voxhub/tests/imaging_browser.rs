//! The imaging flow in a real browser: headless Chromium drives the `voxhub` binary. A
//! teacher creates a dataset shared with her class and uploads a folder holding a synthetic
//! CT series (pydicom) and a stray text file, reads the upload report (the text file skipped
//! with its reason, what de-identification did), uploads the same slices again as many
//! files and as a zip (nothing changes), browses to the series (its thumbnail loads), opens
//! the viewer, scrolls, applies the lung preset and changes plane. A student of the class
//! opens the dataset read-only; a student outside it gets the "not allowed" page. Last, the
//! teacher downloads the NIfTI volume from the viewer. The patient's name, ID, institution
//! and accession number appear on no page.
//!
//! Chromium and the imaging venv are required under CI (`CI` set); elsewhere the test says
//! loudly that it skipped.

mod common;

use common::chromium::{self, fill, log_in, screenshot, set_value, submit, text_of, wait_for};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "imaging-browser-admin-password";
const PASSWORD: &str = "stethoscope-2026";
const SLICES: usize = 30;
/// What the synthetic files say about the patient; de-identification must remove all of it.
const IDENTIFYING: [&str; 6] = [
    "DOE^JANE",
    "DOE",
    "JANE",
    "MRN-0042",
    "St Example Hospital",
    "ACC123",
];

/// Creates accounts and the class through the API, as the admin and the teacher.
async fn accounts(url: &str) -> i64 {
    let http = reqwest::Client::new();
    let admin = common::login(&http, url, "admin", ADMIN_PASSWORD).await;
    for (username, name, role) in [
        ("dr.weber", "Dr. Anna Weber", "teacher"),
        ("lena.k", "Lena Koch", "student"),
        ("tom.b", "Tom Berger", "student"),
    ] {
        let reply = http
            .post(format!("{url}/api/v1/users"))
            .bearer_auth(&admin)
            .json(&json!({"username": username, "display_name": name, "role": role, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201, "create {username}");
    }
    let teacher = common::login(&http, url, "dr.weber", PASSWORD).await;
    let class: Value = http
        .post(format!("{url}/api/v1/classes"))
        .bearer_auth(&teacher)
        .json(&json!({"name": "Thoracic Imaging", "starts_on": "2026-09-01", "ends_on": "2027-01-31"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let class_id = class["id"].as_i64().expect("class id");
    let reply = http
        .post(format!("{url}/api/v1/classes/{class_id}/members"))
        .bearer_auth(&teacher)
        .json(&json!({"username": "lena.k", "role": "student"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "add the student to the class");
    class_id
}

/// Writes the synthetic CT series (the API tests' fixture script) and a stray text file.
fn make_upload_folder(python: &Path, folder: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/imaging_fixtures.py");
    let status = std::process::Command::new(python)
        .arg(script)
        .arg(folder)
        .args(["--slices", &SLICES.to_string(), "--size", "128"])
        .status()
        .expect("run imaging_fixtures.py");
    assert!(status.success(), "imaging_fixtures.py failed");
    std::fs::write(
        folder.join("notes.txt"),
        "Remember: slices 10-14 show the nodule.",
    )
    .unwrap();
}

/// Fails when the page shows anything that identifies the patient.
async fn assert_anonymous(client: &Client, what: &str) {
    let html = client.source().await.unwrap();
    for secret in IDENTIFYING {
        assert!(
            !html.contains(secret),
            "{secret} appears on the {what} page"
        );
    }
}

/// Runs a script in the page that calls `done(result)` when finished.
async fn run_async(client: &Client, script: &str, args: Vec<Value>) -> Value {
    client
        .execute_async(script, args)
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Fetches a URL with the browser's cookies: status, length, first bytes, a checksum of the
/// bytes and the Content-Disposition header.
async fn fetch_in_page(client: &Client, href: &str) -> Value {
    run_async(
        client,
        r#"const [href, done] = arguments;
        fetch(href, {credentials: 'same-origin'}).then(async (r) => {
            const bytes = new Uint8Array(await r.arrayBuffer());
            let sum = 0;
            for (const b of bytes) { sum = (sum * 31 + b) >>> 0; }
            done({status: r.status, length: bytes.length, first: Array.from(bytes.slice(0, 2)),
                  sum, disposition: r.headers.get('content-disposition') || ''});
        }).catch((e) => done({error: String(e)}));"#,
        vec![href.into()],
    )
    .await
}

/// Waits until `read` gives a value other than `before`; returns it.
async fn wait_for_change<F, Fut>(what: &str, before: &str, read: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = read().await;
        if now != before {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what} stayed {before:?} for 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The viewer's image: its address, and whether it has loaded (naturalWidth > 0).
async fn viewer_image(client: &Client) -> (String, bool) {
    let state = client
        .execute(
            "const img = document.getElementById('viewer-image');
             return [img.currentSrc || img.src || '', img.complete && img.naturalWidth > 0];",
            vec![],
        )
        .await
        .unwrap();
    (
        state[0].as_str().unwrap_or_default().to_string(),
        state[1].as_bool().unwrap_or(false),
    )
}

/// Waits until the viewer's image has loaded; returns its address.
async fn loaded_viewer_image(client: &Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (src, loaded) = viewer_image(client).await;
        if loaded {
            return src;
        }
        if Instant::now() > deadline {
            screenshot(client, "imaging-viewer-not-loaded").await;
            panic!("the viewer's image did not load: {src}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_teacher_uploads_a_ct_series_and_the_class_browses_views_and_downloads_it() {
    let test = "imaging browser test";
    if !chromium::available(test) {
        return;
    }
    let Some(python) = common::imaging_python(test) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("CT chest");
    make_upload_folder(&python, &folder);
    let (_server, url) = common::serve(&work.path().join("data"), ADMIN_PASSWORD, &[]);
    let class_id = accounts(&url).await;
    let (_driver, port) = chromium::start_chromedriver();
    let teacher = chromium::browser(port, &work.path().join("teacher-profile")).await;
    let student = chromium::browser(port, &work.path().join("student-profile")).await;
    let outsider = chromium::browser(port, &work.path().join("outsider-profile")).await;

    let result = async {
        // The teacher logs in and creates a dataset shared with her class.
        log_in(
            &teacher,
            &url,
            "/datasets",
            "dr.weber",
            PASSWORD,
            "#create-dataset",
        )
        .await;
        assert_eq!(teacher.current_url().await.unwrap().path(), "/datasets");
        fill(&teacher, "dataset_name", "Chest CT — week 3").await;
        fill(
            &teacher,
            "dataset_description",
            "Low-dose chest CT for the nodule exercise.",
        )
        .await;
        set_value(&teacher, "share", &class_id.to_string()).await;
        screenshot(&teacher, "imaging-01-create").await;
        submit(&teacher, "#create-dataset", "#dataset-name").await;
        let dataset_url = teacher.current_url().await.unwrap();
        let dataset_path = dataset_url.path().to_string();
        assert!(dataset_path.starts_with("/datasets/"), "{dataset_url}");
        assert_eq!(text_of(&teacher, "dataset-name").await, "Chest CT — week 3");
        let sharing = text_of(&teacher, "dataset-sharing").await;
        assert!(sharing.contains("Thoracic Imaging"), "{sharing}");
        assert!(
            teacher.find(Locator::Css(".notice.ok")).await.is_ok(),
            "says it was created"
        );

        // Uploads the folder: the series and a stray text file.
        teacher
            .find(Locator::Id("folder"))
            .await
            .unwrap()
            .send_keys(folder.to_str().unwrap())
            .await
            .unwrap();
        screenshot(&teacher, "imaging-02-folder-chosen").await;
        submit(&teacher, "#upload-folder", "#report-title").await;
        screenshot(&teacher, "imaging-03-report").await;
        assert_eq!(
            text_of(&teacher, "count-received").await,
            (SLICES + 1).to_string()
        );
        assert_eq!(
            text_of(&teacher, "count-imported").await,
            SLICES.to_string()
        );
        let skipped = text_of(&teacher, "skipped").await;
        assert!(skipped.contains("notes.txt"), "{skipped}");
        assert!(
            skipped
                .lines()
                .any(|line| line.contains("notes.txt") && line.len() > "notes.txt".len() + 10),
            "the stray file is skipped with a reason: {skipped}"
        );
        let replaced = text_of(&teacher, "deid-replaced").await;
        assert!(
            replaced.contains("PatientName") || replaced.contains("PatientID"),
            "{replaced}"
        );
        let removed = text_of(&teacher, "deid-removed").await;
        assert!(!removed.is_empty() && removed != "none", "{removed}");
        assert!(text_of(&teacher, "deid-dates").await.contains("shifted"));
        assert_anonymous(&teacher, "upload report").await;

        // The same slices again, as many files: already there, nothing changes.
        teacher.goto(dataset_url.as_str()).await.unwrap();
        let mut slices: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .map(|p| p.display().to_string())
            .collect();
        slices.sort();
        assert_eq!(slices.len(), SLICES);
        teacher
            .find(Locator::Id("files"))
            .await
            .unwrap()
            .send_keys(&slices.join("\n"))
            .await
            .unwrap();
        submit(&teacher, "#upload-files", "#report-title").await;
        assert_eq!(text_of(&teacher, "count-imported").await, "0");
        assert!(
            text_of(&teacher, "count-already")
                .await
                .starts_with(&SLICES.to_string())
        );
        assert!(
            teacher.find(Locator::Id("no-skipped")).await.is_ok(),
            "nothing skipped"
        );

        // And as a zip of the folder: the same, and the text file skipped again.
        let zip = work.path().join("CT chest.zip");
        let zipped = std::process::Command::new(&python)
            .args(["-m", "zipfile", "-c"])
            .arg(&zip)
            .arg(&folder)
            .status()
            .unwrap();
        assert!(zipped.success(), "python -m zipfile");
        teacher.goto(dataset_url.as_str()).await.unwrap();
        teacher
            .find(Locator::Id("zip"))
            .await
            .unwrap()
            .send_keys(zip.to_str().unwrap())
            .await
            .unwrap();
        submit(&teacher, "#upload-zip", "#report-title").await;
        assert_eq!(
            text_of(&teacher, "count-received").await,
            (SLICES + 1).to_string()
        );
        assert!(
            text_of(&teacher, "count-already")
                .await
                .starts_with(&SLICES.to_string())
        );
        assert!(text_of(&teacher, "skipped").await.contains("notes.txt"));

        // Browses to the series: it is prepared (the page reloads by itself until then).
        teacher
            .find(Locator::Id("back-to-dataset"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(
            &teacher,
            ".series-row .badge.active",
            60,
            "the series prepared as a volume",
        )
        .await;
        let row = teacher
            .find(Locator::Css(".series-row"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for expected in [
            "CT",
            "CHEST",
            &format!("{SLICES}"),
            &format!("128 × 128 × {SLICES}"),
            "mm",
            "volume",
        ] {
            assert!(
                row.contains(expected),
                "{expected} in the series row: {row}"
            );
        }
        // The date is shown, shifted by de-identification.
        assert!(
            !row.contains("2024-03-15"),
            "the real date is not shown: {row}"
        );
        assert!(
            row.split_whitespace().any(|word| word.len() == 10
                && word.as_bytes()[4] == b'-'
                && word.as_bytes()[7] == b'-'),
            "a date: {row}"
        );
        let counts = text_of(&teacher, "dataset-counts").await;
        assert!(
            counts.contains("1 patient") && counts.contains(&format!("{SLICES} files")),
            "{counts}"
        );
        let thumbnail = run_async(
            &teacher,
            r#"const done = arguments[0];
            const img = document.querySelector('.series-row img.thumbnail');
            img.scrollIntoView();
            const check = () => img.complete ? done(img.naturalWidth) : setTimeout(check, 50);
            check();"#,
            vec![],
        )
        .await;
        assert!(
            thumbnail.as_u64().unwrap_or(0) > 0,
            "the thumbnail loaded: {thumbnail}"
        );
        assert!(
            teacher
                .find(Locator::Css("meta[http-equiv=refresh]"))
                .await
                .is_err(),
            "no reload once ready"
        );
        screenshot(&teacher, "imaging-04-dataset").await;
        assert_anonymous(&teacher, "dataset").await;

        // Search: by modality and by text.
        set_value(&teacher, "modality", "CT").await;
        fill(&teacher, "q", "no such series").await;
        submit(&teacher, "#search", "#no-series").await;
        fill(&teacher, "q", "chest").await;
        submit(&teacher, "#search", ".series-row").await;

        // Opens the viewer and scrolls through the slices.
        teacher
            .find(Locator::Css("a.open-series"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&teacher, "#viewer-image", 20, "the viewer").await;
        assert!(
            teacher
                .current_url()
                .await
                .unwrap()
                .path()
                .starts_with("/series/")
        );
        let first_src = loaded_viewer_image(&teacher).await;
        let first_label = text_of(&teacher, "slice-label").await;
        let first_bytes = fetch_in_page(&teacher, &first_src).await;
        screenshot(&teacher, "imaging-05-viewer").await;
        teacher
            .find(Locator::Id("viewer-image"))
            .await
            .unwrap()
            .click()
            .await
            .ok();
        teacher
            .active_element()
            .await
            .unwrap()
            .send_keys(&fantoccini::key::Key::Down.to_string())
            .await
            .unwrap();
        let label = wait_for_change("the slice label after ArrowDown", &first_label, || async {
            text_of(&teacher, "slice-label").await
        })
        .await;
        let src = wait_for_change("the image after ArrowDown", &first_src, || async {
            viewer_image(&teacher).await.0
        })
        .await;
        loaded_viewer_image(&teacher).await;
        let bytes = fetch_in_page(&teacher, &src).await;
        assert_eq!(bytes["status"], 200, "{bytes}");
        assert_ne!(
            bytes["sum"], first_bytes["sum"],
            "another slice shows other pixels"
        );
        // The slider moves through the series too.
        teacher
            .execute(
                "const s = document.getElementById('slice-slider');
                 s.value = String(Number(s.max || 0));
                 s.dispatchEvent(new Event('input', {bubbles: true}));
                 s.dispatchEvent(new Event('change', {bubbles: true}));",
                vec![],
            )
            .await
            .unwrap();
        let last_label = wait_for_change("the slice label after the slider", &label, || async {
            text_of(&teacher, "slice-label").await
        })
        .await;
        assert!(
            last_label.contains(&SLICES.to_string()),
            "the last slice: {last_label}"
        );
        loaded_viewer_image(&teacher).await;

        // The lung preset changes the window.
        let window_before = text_of(&teacher, "wl-readout").await;
        let src_before = viewer_image(&teacher).await.0;
        teacher
            .find(Locator::Id("preset-lung"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let window = wait_for_change(
            "the window after the lung preset",
            &window_before,
            || async { text_of(&teacher, "wl-readout").await },
        )
        .await;
        assert!(
            window.contains("1500") && window.contains("-600"),
            "the lung window: {window}"
        );
        wait_for_change("the image after the lung preset", &src_before, || async {
            viewer_image(&teacher).await.0
        })
        .await;
        loaded_viewer_image(&teacher).await;
        screenshot(&teacher, "imaging-06-lung-window").await;

        // Another plane.
        let axial_label = text_of(&teacher, "slice-label").await;
        teacher
            .find(Locator::Id("plane-coronal"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_change(
            "the slice label in the coronal plane",
            &axial_label,
            || async { text_of(&teacher, "slice-label").await },
        )
        .await;
        loaded_viewer_image(&teacher).await;
        screenshot(&teacher, "imaging-07-coronal").await;
        assert_anonymous(&teacher, "viewer").await;

        // A student of the class opens the dataset read-only.
        log_in(&student, &url, "/datasets", "lena.k", PASSWORD, "#datasets").await;
        let list = text_of(&student, "datasets").await;
        assert!(
            list.contains("Chest CT — week 3") && list.contains("read-only"),
            "{list}"
        );
        student.goto(&format!("{url}{dataset_path}")).await.unwrap();
        wait_for(&student, "#read-only", 10, "the read-only note").await;
        for form in ["upload", "upload-files", "change-dataset", "delete"] {
            assert!(
                student.find(Locator::Id(form)).await.is_err(),
                "students have no #{form}"
            );
        }
        assert!(student.find(Locator::Css(".series-row")).await.is_ok());
        screenshot(&student, "imaging-08-student").await;
        assert_anonymous(&student, "student's dataset").await;
        student
            .find(Locator::Css("a.open-series"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&student, "#viewer-image", 20, "the student's viewer").await;
        loaded_viewer_image(&student).await;

        // A student outside the class is not allowed in.
        log_in(
            &outsider,
            &url,
            dataset_path.as_str(),
            "tom.b",
            PASSWORD,
            "header.top",
        )
        .await;
        // The login page answers with the page asked for, here a refusal.
        wait_for_change(
            "the page after the outsider's login",
            "Log in to voxhub",
            || async {
                match outsider.find(Locator::Css("h1")).await {
                    Ok(h1) => h1.text().await.unwrap_or_default(),
                    Err(_) => "Log in to voxhub".to_string(),
                }
            },
        )
        .await;
        assert_eq!(outsider.current_url().await.unwrap().path(), dataset_path);
        let heading = outsider
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(heading, "Not allowed");
        let message = outsider
            .find(Locator::Css(".notice.error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(message.contains("not shared with you"), "{message}");
        assert!(
            !outsider.source().await.unwrap().contains("Chest CT"),
            "not even its name"
        );
        screenshot(&outsider, "imaging-09-outsider").await;
        // The teacher, still in the viewer, downloads the volume as NIfTI.
        let href = teacher
            .find(Locator::Id("download-nifti"))
            .await
            .unwrap()
            .prop("href")
            .await
            .unwrap()
            .expect("the download link has an address");
        let download = fetch_in_page(&teacher, &href).await;
        assert_eq!(download["status"], 200, "{download}");
        assert_eq!(
            download["first"],
            json!([0x1f, 0x8b]),
            "a gzip file: {download}"
        );
        assert!(
            download["length"].as_u64().unwrap() > 2000,
            "a whole volume: {download}"
        );
        let disposition = download["disposition"].as_str().unwrap();
        assert!(
            disposition.contains("attachment") && disposition.contains(".nii.gz"),
            "{disposition}"
        );
    }
    .await;
    teacher.close().await.ok();
    student.close().await.ok();
    outsider.close().await.ok();
    result
}
