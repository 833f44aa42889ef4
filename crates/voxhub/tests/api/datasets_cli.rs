//! Imaging datasets through the `voxhub dataset` command line (a folder of synthetic DICOM,
//! a zip and a junk file uploaded in batches, the summary and its exit codes, browsing,
//! NIfTI download checked with nibabel, sharing, deleting), and the read-only data view
//! that workloads get in `VOXHUB_DATA`: the volumes their owner may read, and nothing else.

use crate::support::*;
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};
use voxhub_core::role::Role;
use voxhub_web::runtime::WorkloadSettings;

/// Logs the command line in as `user` with its own config folder.
async fn cli_login(app: &TestApp, user: &TestUser) -> tempfile::TempDir {
    let config = tempfile::tempdir().unwrap();
    run_voxhub(
        config.path(),
        &[
            "login",
            "--server",
            &app.url,
            "--username",
            &user.username,
            "--password-stdin",
        ],
        Some(&format!("{}\n", user.password)),
    )
    .await
    .assert_success();
    config
}

fn zip_folder(folder: &Path, prefix: &str, out: &Path) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in folder_files(folder) {
        zip.start_file(format!("{prefix}/{name}"), options).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn json_of(output: &CliOutput) -> Value {
    serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", output.stdout, output.stderr))
}

#[track_caller]
fn assert_code(output: &CliOutput, code: i32) {
    assert_eq!(
        output.code,
        Some(code),
        "expected exit code {code}:\nstdout: {}\nstderr: {}",
        output.stdout,
        output.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_a_zip_and_a_junk_file_upload_through_the_command_line() {
    let Some(python) = imaging_python("a_folder_a_zip_and_a_junk_file_upload") else {
        return;
    };
    let app = TestApp::spawn().await;
    let teacher = app.user(Role::Teacher).await;
    let outsider = app.user(Role::Student).await;
    let config = cli_login(&app, &teacher).await;
    let dir = config.path();
    let work = tempfile::tempdir().unwrap();
    // 70 slices: more than one request holds (64 files), so the upload takes two.
    let folder = work.path().join("upload");
    make_series(
        &python,
        &folder.join("caseA"),
        &["--slices", "70", "--size", "8", "--patient-id", "MRN-A"],
    );
    let zipped = work.path().join("zipped");
    make_series(
        &python,
        &zipped,
        &[
            "--slices",
            "5",
            "--size",
            "8",
            "--patient-id",
            "MRN-B",
            "--patient",
            "ROE^RICHARD",
        ],
    );
    let zip = work.path().join("more.zip");
    zip_folder(&zipped, "caseB", &zip);
    let junk = work.path().join("notes.txt");
    std::fs::write(&junk, "not an image at all").unwrap();
    std::fs::write(folder.join(".DS_Store"), "finder litter").unwrap();

    let created = run_voxhub(
        dir,
        &[
            "dataset",
            "create",
            "Chest CT",
            "--description",
            "synthetic",
            "--json",
        ],
        None,
    )
    .await;
    created.assert_success();
    let id = json_of(&created)["id"].as_i64().unwrap().to_string();

    let paths = [
        folder.to_str().unwrap(),
        zip.to_str().unwrap(),
        junk.to_str().unwrap(),
    ];
    let mut args = vec!["dataset", "upload", &id];
    args.extend(paths);
    let started = Instant::now();
    let upload = run_voxhub(dir, &args, None).await;
    assert_code(&upload, 0);
    eprintln!("uploaded 72 files in {:?}", started.elapsed());
    let out = &upload.stdout;
    assert!(out.contains("in 2 requests"), "{out}");
    assert!(out.contains("imported:        75"), "{out}");
    assert!(out.contains("already present: 0"), "{out}");
    assert!(out.contains("skipped:         1"), "{out}");
    assert!(
        out.contains("notes.txt: not an imaging file voxhub reads"),
        "the junk file is named with its reason: {out}"
    );
    assert!(out.contains("hidden files left out: 1"), "{out}");
    assert!(
        out.contains("De-identification:") && out.contains("UIDs replaced"),
        "{out}"
    );
    assert!(out.contains("2 series received files"), "{out}");
    // Not a terminal: plain progress lines on standard error, the last one complete.
    assert!(
        upload.stderr.contains("upload: 72/72 files"),
        "{}",
        upload.stderr
    );

    // The same files again: all already there, nothing new, still a success.
    args.push("--json");
    let again = run_voxhub(dir, &args, None).await;
    assert_code(&again, 0);
    let summary = json_of(&again);
    assert_eq!(summary["imported"], 0, "{summary}");
    assert_eq!(summary["already_present"], 75, "{summary}");
    assert_eq!(summary["received"], 76, "{summary}");
    assert_eq!(summary["requests"], 2, "{summary}");
    assert_eq!(summary["uploads"].as_array().unwrap().len(), 2);
    assert_eq!(summary["skipped"][0]["name"], "notes.txt", "{summary}");
    assert_eq!(summary["deidentification"]["applied"], true);
    assert!(
        summary["deidentification"]["replaced"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "PatientID"),
        "{summary}"
    );
    let series: Vec<i64> = summary["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_i64().unwrap())
        .collect();
    assert_eq!(series.len(), 2, "{summary}");

    // Only junk: everything skipped is exit code 1; a path that is not there, or a dataset
    // of someone else, is an error (2) that names the problem.
    let only_junk = run_voxhub(
        dir,
        &["dataset", "upload", &id, junk.to_str().unwrap()],
        None,
    )
    .await;
    assert_code(&only_junk, 1);
    let missing = work.path().join("no-such-folder");
    let nothing = run_voxhub(
        dir,
        &["dataset", "upload", &id, missing.to_str().unwrap()],
        None,
    )
    .await;
    assert_code(&nothing, 2);
    assert!(nothing.stderr.contains("cannot read"), "{}", nothing.stderr);
    let outsider_config = cli_login(&app, &outsider).await;
    let refused = run_voxhub(
        outsider_config.path(),
        &["dataset", "upload", &id, folder.to_str().unwrap()],
        None,
    )
    .await;
    assert_code(&refused, 2);
    assert!(
        refused.stderr.starts_with("error: ") && refused.stderr.contains("not shared with you"),
        "{}",
        refused.stderr
    );

    for one in &series {
        let derived = app.derived_series(&teacher.token, *one).await;
        assert_eq!(derived["derived"], "ready", "{derived}");
    }
    let show = run_voxhub(dir, &["dataset", "show", &id], None).await;
    show.assert_success();
    let text = &show.stdout;
    assert!(
        text.contains("Chest CT (id") && text.contains("2 patients"),
        "{text}"
    );
    assert!(text.contains("70 images, 8x8x70, volume: yes"), "{text}");
    assert!(text.contains("5 images, 8x8x5, volume: yes"), "{text}");
    assert!(text.contains("\n  study "), "{text}");
    assert!(
        !text.contains("MRN-A") && !text.contains("DOE"),
        "pseudonyms only: {text}"
    );
    let show_json = json_of(&run_voxhub(dir, &["dataset", "show", &id, "--json"], None).await);
    assert_eq!(show_json["series"].as_array().unwrap().len(), 2);
    assert_eq!(show_json["patients"].as_array().unwrap().len(), 2);

    let listed = run_voxhub(dir, &["dataset", "series", &id, "--modality", "ct"], None).await;
    listed.assert_success();
    assert!(
        listed.stdout.contains("8x8x70") && listed.stdout.contains("yes"),
        "{}",
        listed.stdout
    );
    let none = json_of(
        &run_voxhub(
            dir,
            &[
                "dataset",
                "series",
                &id,
                "--search",
                "no such text",
                "--json",
            ],
            None,
        )
        .await,
    );
    assert_eq!(none, Value::Array(vec![]));

    let big = show_json["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instances"] == 70)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let nifti = work.path().join("out.nii.gz");
    let download = run_voxhub(
        dir,
        &[
            "dataset",
            "download-nifti",
            &big,
            "-o",
            nifti.to_str().unwrap(),
        ],
        None,
    )
    .await;
    download.assert_success();
    assert!(
        download.stdout.contains("Saved series"),
        "{}",
        download.stdout
    );
    let shape = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys, nibabel; print(tuple(int(n) for n in nibabel.load(sys.argv[1]).shape))",
            nifti.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&shape.stdout).trim(),
        "(8, 8, 70)",
        "{}",
        String::from_utf8_lossy(&shape.stderr)
    );

    let class = app.create_class(&teacher.token, "Radiology 101").await;
    let class = class.to_string();
    let shared = run_voxhub(dir, &["dataset", "share", &id, "--class", &class], None).await;
    shared.assert_success();
    assert!(
        shared
            .stdout
            .contains("shared read-only with class Radiology 101"),
        "{}",
        shared.stdout
    );
    let private = run_voxhub(dir, &["dataset", "share", &id, "--private"], None).await;
    private.assert_success();
    assert!(
        private.stdout.contains("is now private"),
        "{}",
        private.stdout
    );
    let neither = run_voxhub(dir, &["dataset", "share", &id], None).await;
    assert_code(&neither, 2);

    let unconfirmed = run_voxhub(dir, &["dataset", "delete", &id], None).await;
    assert_code(&unconfirmed, 1);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    run_voxhub(dir, &["dataset", "delete", &id, "--yes"], None)
        .await
        .assert_success();
    let left = json_of(&run_voxhub(dir, &["dataset", "list", "--json"], None).await);
    assert_eq!(left, Value::Array(vec![]));
}

async fn wait_ended(app: &TestApp, token: &str, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = app.get_ok(token, &format!("/api/v1/workloads/{id}")).await;
        if view["state"] == "succeeded" || view["state"] == "failed" {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "workload {id} did not end: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn job_output(app: &TestApp, token: &str, script: &str) -> String {
    let (status, view) = app
        .post(
            token,
            "/api/v1/jobs",
            serde_json::json!({"argv": ["sh", "-c", script], "time_limit": "2m", "memory": "256M"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{view}");
    let id = view["id"].as_i64().unwrap();
    let end = wait_ended(app, token, id).await;
    let response = app
        .builder(
            reqwest::Method::GET,
            token,
            &format!("/api/v1/workloads/{id}/logs"),
        )
        .send()
        .await
        .unwrap();
    let output = response.text().await.unwrap();
    assert_eq!(end["state"], "succeeded", "{end}\n{output}");
    output
}

async fn upload_series(
    app: &TestApp,
    python: &Path,
    token: &str,
    dataset: i64,
    args: &[&str],
) -> i64 {
    let folder = tempfile::tempdir().unwrap();
    make_series(python, folder.path(), args);
    let (status, report) = app
        .upload(token, dataset, folder_files(folder.path()))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{report}");
    let series = report["series"][0].as_i64().unwrap();
    app.derived_series(token, series).await;
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_read_the_volumes_their_owner_may_read_and_nothing_else() {
    let Some(python) = imaging_python("workloads_read_the_volumes_their_owner_may_read") else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut settings = WorkloadSettings {
        grace_s: 1,
        max_time_limit_s: 3600,
        default_time_limit_s: 600,
        ..WorkloadSettings::default()
    };
    if root {
        // Workloads run as their owner's own uid, as on a real server run by root.
        settings.run_as_base_uid = Some(310_000);
    } else {
        eprintln!(
            "*** not root: workloads run as this user; the view's modes are checked, its group is not ***"
        );
    }
    let app = TestApp::spawn_with_workloads(4, 4096, settings).await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Radiology 101").await;
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    let shared = app.dataset(&teacher.token, "Shared CT", Some(class)).await;
    let private = app.dataset(&teacher.token, "Teacher notes", None).await;
    let volume = upload_series(
        &app,
        &python,
        &teacher.token,
        shared,
        &["--slices", "8", "--size", "12"],
    )
    .await;
    let gap = upload_series(
        &app,
        &python,
        &teacher.token,
        shared,
        &[
            "--slices",
            "8",
            "--size",
            "12",
            "--missing",
            "3",
            "--patient-id",
            "MRN-GAP",
        ],
    )
    .await;
    upload_series(
        &app,
        &python,
        &teacher.token,
        private,
        &["--slices", "6", "--size", "12"],
    )
    .await;

    let script = r#"
        ls -R "$VOXHUB_DATA/"
        echo "--- top"; cat "$VOXHUB_DATA/README.txt"
        echo "--- dataset"; cat "$VOXHUB_DATA/Shared_CT/README.txt"
        f=$(find "$VOXHUB_DATA/" -name '*.nii.gz' | head -n 1)
        echo "file=$f"
        if test -w "$f"; then echo WRITABLE; else echo not-writable; fi
        if (echo x >> "$f") 2>/dev/null; then echo APPENDED; else echo cannot-append; fi
        if touch "$VOXHUB_DATA/Shared_CT/new" 2>/dev/null; then echo CREATED; else echo cannot-create; fi
        "$PYTHON" -c 'import sys, nibabel; print("shape", tuple(int(n) for n in nibabel.load(sys.argv[1]).shape))' "$f"
        id -u
    "#
    .replace("$PYTHON", python.to_str().unwrap());
    let output = job_output(&app, &student.token, &script).await;
    assert!(output.contains("Shared_CT"), "{output}");
    assert!(
        !output.contains("Teacher_notes") && !output.contains(&format!("dataset {private}")),
        "a dataset the student may not read is not in their view: {output}"
    );
    assert!(
        output.contains("shape (12, 12, 8)"),
        "the volume reads with nibabel: {output}"
    );
    assert!(output.contains(&format!("series {volume}: ")), "{output}");
    assert!(
        output.contains(&format!("series {gap} ")) && output.contains("Series not here (1)"),
        "the series with a missing slice is listed with its reason: {output}"
    );
    assert!(output.contains("not-writable"), "{output}");
    assert!(
        output.contains("cannot-append") && output.contains("cannot-create"),
        "{output}"
    );
    if root {
        assert!(
            output.contains(&(310_000 + student.id).to_string()),
            "{output}"
        );
    }

    // What is enforced, seen from outside: modes, the group, and hard links (no copies).
    let views = app.data_dir().join("data-views");
    let link = views.join(student.id.to_string());
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let top = std::fs::metadata(&link).unwrap();
    if root {
        assert_eq!(top.mode() & 0o777, 0o550);
        assert_eq!(top.gid(), 310_000 + student.id as u32);
        assert_eq!(top.uid(), 0);
    } else {
        assert_eq!(top.mode() & 0o777, 0o555);
    }
    let dataset_dir = link.join("Shared_CT");
    assert_eq!(
        std::fs::metadata(&dataset_dir).unwrap().mode() & 0o777,
        0o555
    );
    let nifti: Vec<_> = walk_files(&dataset_dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".nii.gz"))
        .collect();
    assert_eq!(nifti.len(), 1, "{nifti:?}");
    let meta = std::fs::metadata(&nifti[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert!(
        meta.nlink() >= 2,
        "a hard link to the stored object, not a copy"
    );
    assert_eq!(app.audit("action=dataset.workload").await.len(), 1);

    // Unshared: the next workload's view no longer has it, and the old tree is gone.
    let (status, body) = app
        .patch(
            &teacher.token,
            &format!("/api/v1/datasets/{shared}"),
            serde_json::json!({"class": null}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let output = job_output(
        &app,
        &student.token,
        r#"ls "$VOXHUB_DATA/"; cat "$VOXHUB_DATA/README.txt""#,
    )
    .await;
    assert!(!output.contains("Shared_CT"), "{output}");
    assert!(output.contains("(none yet"), "{output}");
    let trees = std::fs::read_dir(&views)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!(".{}-", student.id))
        })
        .count();
    assert_eq!(trees, 1, "replaced trees are removed");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
