//! The dataset pages from the side of the browser, without a browser: forms posted with the
//! session cookie, refused without their CSRF value, by people who may not change the
//! dataset, and with nothing to upload; every refusal is a page that says what to do, and
//! nothing is imported. A DICOM series uploaded through the page is browsable with its
//! geometry, and the patient's name appears nowhere.

use crate::support::*;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use voxhub_core::role::Role;

struct Setup {
    app: TestApp,
    teacher: TestUser,
    /// A student of the class the dataset is shared with.
    student: TestUser,
    /// A student of no class.
    outsider: TestUser,
    class: i64,
    dataset: i64,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let class = app.create_class(&teacher.token, "Radiology 101").await;
    let student = app.user(Role::Student).await;
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    let outsider = app.user(Role::Student).await;
    let dataset = app
        .dataset(&teacher.token, "Chest CT teaching set", Some(class))
        .await;
    Setup {
        app,
        teacher,
        student,
        outsider,
        class,
        dataset,
    }
}

fn with_session(request: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
    request.header("Cookie", format!("voxhub_session={token}"))
}

/// A page as the browser of `token`'s session gets it: status, HTML and headers.
async fn page(app: &TestApp, token: &str, path: &str) -> (StatusCode, String) {
    let response = with_session(app.http.get(format!("{}{path}", app.url)), token)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let html = response.text().await.unwrap_or_default();
    assert!(!status.is_server_error(), "GET {path}: {status}: {html}");
    (status, html)
}

/// The CSRF value of the forms on a page.
fn csrf_of(html: &str) -> String {
    let start = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field on the page: {html}"))
        + "name=\"csrf\" value=\"".len();
    html[start..]
        .split('"')
        .next()
        .expect("CSRF value")
        .to_string()
}

/// Posts a multipart form to a page; answers status, HTML and the redirect target.
async fn post_multipart(
    app: &TestApp,
    token: &str,
    path: &str,
    form: Form,
) -> (StatusCode, String, Option<String>) {
    let response = with_session(app.http.post(format!("{}{path}", app.url)), token)
        .multipart(form)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let html = response.text().await.unwrap_or_default();
    assert!(!status.is_server_error(), "POST {path}: {status}: {html}");
    (status, html, location)
}

/// Posts an ordinary form to a page.
async fn post_form(
    app: &TestApp,
    token: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String, Option<String>) {
    let response = with_session(app.http.post(format!("{}{path}", app.url)), token)
        .form(fields)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let html = response.text().await.unwrap_or_default();
    assert!(!status.is_server_error(), "POST {path}: {status}: {html}");
    (status, html, location)
}

fn junk() -> Part {
    Part::bytes(b"shopping list: milk, eggs".to_vec()).file_name("notes.txt")
}

async fn upload_count(app: &TestApp, dataset: i64) -> usize {
    app.store.uploads(dataset).await.expect("uploads").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_with_no_file_is_answered_with_a_page_that_says_what_to_do() {
    let Setup {
        app,
        teacher,
        dataset,
        ..
    } = setup().await;
    let (status, html) = page(&app, &teacher.token, &format!("/datasets/{dataset}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    for form in ["upload-files", "upload-folder", "upload-zip"] {
        assert!(html.contains(&format!("id=\"{form}\"")), "{form} in {html}");
    }
    assert!(html.contains("webkitdirectory"), "a folder can be chosen");
    let csrf = csrf_of(&html);
    let path = format!("/datasets/{dataset}/upload");

    let (status, html, _) = post_multipart(
        &app,
        &teacher.token,
        &path,
        Form::new().text("csrf", csrf.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("The upload did not work"), "{html}");
    assert!(
        html.contains("choose files, a folder or a zip"),
        "says what to do: {html}"
    );
    assert!(
        html.contains(&format!("href=\"/datasets/{dataset}\"")),
        "leads back: {html}"
    );

    // What a browser sends for a file field left empty: a part with no name and no bytes.
    let empty = Part::bytes(Vec::new()).file_name("");
    let (status, html, _) = post_multipart(
        &app,
        &teacher.token,
        &path,
        Form::new().text("csrf", csrf.clone()).part("file", empty),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    assert!(html.contains("no file was chosen"), "{html}");

    // Not a form at all.
    let response = with_session(app.http.post(format!("{}{path}", app.url)), &teacher.token)
        .body("file=x")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("choose files with the form")
    );
    assert_eq!(upload_count(&app, dataset).await, 0, "nothing was imported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_who_may_not_change_a_dataset_get_the_forbidden_page() {
    let Setup {
        app,
        teacher,
        student,
        outsider,
        dataset,
        ..
    } = setup().await;
    // A student outside the class sees neither the dataset nor its name.
    let (status, html) = page(&app, &outsider.token, &format!("/datasets/{dataset}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("Not allowed"), "{html}");
    assert!(html.contains("not shared with you"), "{html}");
    assert!(!html.contains("Chest CT teaching set"), "{html}");
    let (status, html) = page(&app, &outsider.token, "/datasets").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("Chest CT teaching set"), "{html}");
    let outsider_csrf = csrf_of(&html);
    let (status, html, _) = post_multipart(
        &app,
        &outsider.token,
        &format!("/datasets/{dataset}/upload"),
        Form::new().text("csrf", outsider_csrf).part("file", junk()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");

    // A student of the class reads it, without any form that changes it.
    let (status, html) = page(&app, &student.token, &format!("/datasets/{dataset}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Chest CT teaching set"), "{html}");
    assert!(html.contains("read-only"), "{html}");
    for form in ["upload-files", "change-dataset", "delete"] {
        assert!(
            !html.contains(&format!("id=\"{form}\"")),
            "no {form} for students: {html}"
        );
    }
    let student_csrf = csrf_of(&html);
    let (status, html, _) = post_multipart(
        &app,
        &student.token,
        &format!("/datasets/{dataset}/upload"),
        Form::new()
            .text("csrf", student_csrf.clone())
            .part("file", junk()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("read-only"), "{html}");
    let (status, _) = page(&app, &student.token, &format!("/datasets/{dataset}/delete")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post_form(
        &app,
        &student.token,
        &format!("/datasets/{dataset}/delete"),
        &[("csrf", &student_csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post_form(
        &app,
        &student.token,
        &format!("/datasets/{dataset}"),
        &[
            ("csrf", &student_csrf),
            ("name", "mine now"),
            ("description", ""),
            ("share", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(upload_count(&app, dataset).await, 0, "nothing was imported");
    let kept = app.store.dataset(dataset).await.unwrap();
    assert_eq!(kept.name, "Chest CT teaching set");

    // The teacher's upload report is for those who may change the dataset.
    let (_, html) = page(&app, &teacher.token, &format!("/datasets/{dataset}")).await;
    let (status, _, location) = post_multipart(
        &app,
        &teacher.token,
        &format!("/datasets/{dataset}/upload"),
        Form::new()
            .text("csrf", csrf_of(&html))
            .part("file", junk()),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let report = location.expect("redirect to the report");
    let (status, _) = page(&app, &student.token, &report).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = page(&app, &outsider.token, &report).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another dataset's id in the path does not open the report.
    let other = app.dataset(&teacher.token, "Other", None).await;
    let upload_id = report.rsplit('/').next().unwrap();
    let (status, _) = page(
        &app,
        &teacher.token,
        &format!("/datasets/{other}/uploads/{upload_id}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_their_csrf_value_are_refused() {
    let Setup {
        app,
        teacher,
        class,
        dataset,
        ..
    } = setup().await;
    let path = format!("/datasets/{dataset}/upload");
    let (status, html, _) = post_multipart(
        &app,
        &teacher.token,
        &path,
        Form::new().part("file", junk()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("reload the page and try again"), "{html}");
    let (status, html, _) = post_multipart(
        &app,
        &teacher.token,
        &path,
        Form::new()
            .text("csrf", "0".repeat(64))
            .part("file", junk()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert_eq!(upload_count(&app, dataset).await, 0, "nothing was imported");

    let class = class.to_string();
    let (status, _, _) = post_form(
        &app,
        &teacher.token,
        "/datasets",
        &[("name", "Forged"), ("share", &class)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post_form(
        &app,
        &teacher.token,
        &format!("/datasets/{dataset}/delete"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let names: Vec<String> = app
        .store
        .all_datasets()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(
        names,
        ["Chest CT teaching set"],
        "nothing was created or deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_create_form_says_what_is_wrong_and_keeps_what_was_typed() {
    let Setup {
        app,
        teacher,
        outsider,
        class,
        ..
    } = setup().await;
    let (_, html) = page(&app, &teacher.token, "/datasets").await;
    assert!(
        html.contains("Shared read-only with the class Radiology 101"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let (status, html, _) = post_form(
        &app,
        &teacher.token,
        "/datasets",
        &[
            ("csrf", &csrf),
            ("name", "   "),
            ("description", "Week 3 cases"),
            ("share", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("notice error"), "{html}");
    assert!(
        html.contains("Week 3 cases"),
        "keeps the description: {html}"
    );
    let (status, html, _) = post_form(
        &app,
        &teacher.token,
        "/datasets",
        &[("csrf", &csrf), ("name", "Week 3"), ("share", "class 1")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("choose a class from the list"), "{html}");

    // A student may keep a private dataset, but not publish one to a class they do not teach.
    let (_, html) = page(&app, &outsider.token, "/datasets").await;
    assert!(!html.contains("Radiology 101"), "{html}");
    let outsider_csrf = csrf_of(&html);
    let (status, html, _) = post_form(
        &app,
        &outsider.token,
        "/datasets",
        &[
            ("csrf", &outsider_csrf),
            ("name", "Published"),
            ("share", &class.to_string()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("only the teachers of a class"), "{html}");
    let (status, _, location) = post_form(
        &app,
        &outsider.token,
        "/datasets",
        &[
            ("csrf", &outsider_csrf),
            ("name", "My notes"),
            ("share", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(location.ends_with("?done=created"), "{location}");
    let (status, html) = page(&app, &outsider.token, &location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Private: only its owner"), "{html}");
    assert!(
        html.contains("id=\"upload-files\""),
        "the owner may upload: {html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_uploaded_from_the_page_is_browsable_and_the_patient_is_never_named() {
    let Some(python) = imaging_python("dataset pages") else {
        return;
    };
    let Setup {
        app,
        teacher,
        student,
        dataset,
        ..
    } = setup().await;
    let work = tempfile::tempdir().unwrap();
    make_series(&python, &work.path().join("whole"), &["--slices", "8"]);
    make_series(
        &python,
        &work.path().join("gap"),
        &["--slices", "8", "--missing", "4", "--seed", "8"],
    );
    let (_, html) = page(&app, &teacher.token, &format!("/datasets/{dataset}")).await;
    let mut form = Form::new().text("csrf", csrf_of(&html));
    for folder in ["whole", "gap"] {
        for (name, bytes) in folder_files(&work.path().join(folder)) {
            form = form.part(
                "file",
                Part::bytes(bytes).file_name(format!("{folder}/{name}")),
            );
        }
    }
    form = form.part("file", junk());
    let (status, html, location) = post_multipart(
        &app,
        &teacher.token,
        &format!("/datasets/{dataset}/upload"),
        form,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let report = location.unwrap();

    // Wait until both series are prepared.
    let series = app
        .get_ok(
            &teacher.token,
            &format!("/api/v1/datasets/{dataset}/series"),
        )
        .await;
    let series: Vec<i64> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(series.len(), 2, "two series");
    for id in &series {
        app.derived_series(&teacher.token, *id).await;
    }

    let (status, html) = page(&app, &teacher.token, &report).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"count-imported\">15<"), "{html}");
    assert!(
        html.contains("notes.txt"),
        "the junk file is listed: {html}"
    );
    assert!(html.contains("id=\"deidentification\""), "{html}");
    assert!(
        html.contains("PatientName") || html.contains("PatientID"),
        "names what was replaced: {html}"
    );
    assert!(
        html.contains("shifted"),
        "says how dates were handled: {html}"
    );
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "no reload once prepared"
    );

    let (status, html) = page(&app, &student.token, &format!("/datasets/{dataset}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("CT"), "{html}");
    assert!(html.contains("CHEST"), "{html}");
    assert!(html.contains("32 × 32 × 8"), "volume dimensions: {html}");
    assert!(html.contains("0.7 × 0.8 × 2.5 mm"), "voxel spacing: {html}");
    assert!(html.contains("32 × 32<"), "the series with a gap: {html}");
    assert!(html.contains("not a volume"), "{html}");
    assert!(
        html.contains("missing"),
        "the reason names the missing slice: {html}"
    );
    assert!(html.contains("/thumbnail\""), "{html}");
    assert!(!html.contains("http-equiv=\"refresh\""), "{html}");
    for secret in ["DOE", "JANE", "MRN-0042", "St Example Hospital", "ACC123"] {
        assert!(!html.contains(secret), "{secret} on the dataset page");
    }
    let thumbnail = with_session(
        app.http.get(format!(
            "{}/datasets/{dataset}/series/{}/thumbnail",
            app.url, series[0]
        )),
        &student.token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(thumbnail.status(), StatusCode::OK);
    assert_eq!(thumbnail.headers()["content-type"], "image/png");
    assert!(
        thumbnail
            .bytes()
            .await
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );

    // Search: by modality and by text.
    let (_, html) = page(
        &app,
        &student.token,
        &format!("/datasets/{dataset}?modality=MR"),
    )
    .await;
    assert!(html.contains("No series matches this search"), "{html}");
    let (_, html) = page(
        &app,
        &student.token,
        &format!("/datasets/{dataset}?modality=CT&q=chest"),
    )
    .await;
    assert_eq!(html.matches("class=\"series-row\"").count(), 2, "{html}");
    let (_, html) = page(
        &app,
        &student.token,
        &format!("/datasets/{dataset}?q=no-such-text"),
    )
    .await;
    assert!(html.contains("No series matches this search"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_renames_makes_private_and_deletes_a_dataset_after_confirming() {
    let Setup {
        app,
        teacher,
        student,
        dataset,
        ..
    } = setup().await;
    let (_, html) = page(&app, &teacher.token, &format!("/datasets/{dataset}")).await;
    let csrf = csrf_of(&html);
    let path = format!("/datasets/{dataset}");

    let (status, html, _) = post_form(
        &app,
        &teacher.token,
        &path,
        &[
            ("csrf", &csrf),
            ("name", ""),
            ("description", "x"),
            ("share", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("notice error"), "{html}");
    assert!(
        html.contains("id=\"change-dataset\""),
        "the form again: {html}"
    );

    let (status, _, location) = post_form(
        &app,
        &teacher.token,
        &path,
        &[
            ("csrf", &csrf),
            ("name", "Chest CT — archive"),
            ("description", "Old cases"),
            ("share", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(&*format!("{path}?done=changed")));
    let changed = app.store.dataset(dataset).await.unwrap();
    assert_eq!(
        (changed.name.as_str(), changed.class_id),
        ("Chest CT — archive", None)
    );
    let (status, _) = page(&app, &student.token, &path).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "private now");

    let (status, html) = page(&app, &teacher.token, &format!("{path}/delete")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("It cannot be undone"), "{html}");
    assert!(
        app.store.dataset(dataset).await.is_ok(),
        "asking deletes nothing"
    );
    let (status, _, location) = post_form(
        &app,
        &teacher.token,
        &format!("{path}/delete"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/datasets?done=deleted"));
    assert!(app.store.dataset(dataset).await.is_err(), "deleted");
    let (status, html) = page(&app, &teacher.token, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
}
