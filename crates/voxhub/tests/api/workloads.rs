//! Jobs through the queue with the real local-process executor: running, outcomes, time
//! limits, stopping, queue order and admin control, logs, workspaces, usage records, bad
//! input, and every permission rule from the side of the user who must not get through.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use voxhub_core::role::Role;
use voxhub_web::runtime::WorkloadSettings;

fn settings() -> WorkloadSettings {
    let mut policy = WorkloadSettings::default().policy;
    policy.max_running_per_user = 10;
    WorkloadSettings {
        grace_s: 1,
        max_time_limit_s: 3600,
        default_time_limit_s: 600,
        policy,
        ..WorkloadSettings::default()
    }
}

async fn app() -> TestApp {
    TestApp::spawn_with_workloads(4, 4096, settings()).await
}

async fn submit(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.post(token, "/api/v1/jobs", body).await
}

async fn submit_ok(app: &TestApp, token: &str, argv: &[&str]) -> i64 {
    let (status, body) = submit(
        app,
        token,
        json!({"argv": argv, "time_limit": "1m", "memory": "64M"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

/// Waits until the workload is in one of `states` and returns it.
async fn wait_for(app: &TestApp, token: &str, id: i64, states: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = app.get_ok(token, &format!("/api/v1/workloads/{id}")).await;
        if states.iter().any(|s| view["state"] == *s) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "workload {id} never reached {states:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a request whose answer is not JSON (logs, files) and returns its text.
async fn text(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    assert!(!status.is_server_error(), "server error {status}");
    (status, response.text().await.unwrap_or_default())
}

async fn logs(app: &TestApp, token: &str, id: i64) -> String {
    let (status, output) = text(app.builder(
        reqwest::Method::GET,
        token,
        &format!("/api/v1/workloads/{id}/logs"),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_in_the_workspace_with_its_identity_and_succeeds() {
    let app = app().await;
    let student = app.user(Role::Student).await;
    let id = submit_ok(
        &app,
        &student.token,
        &["sh", "-c", "echo hello; echo \"id=$VOXHUB_WORKLOAD_ID user=$VOXHUB_USER\"; pwd; echo $HOME; echo kept > result.txt"],
    )
    .await;
    let view = wait_for(&app, &student.token, id, &["succeeded", "failed"]).await;
    assert_eq!(view["state"], "succeeded", "{view}");
    assert_eq!(view["exit_code"], 0);
    let output = logs(&app, &student.token, id).await;
    assert!(output.contains("hello"), "{output}");
    assert!(
        output.contains(&format!("id={id} user={}", student.username)),
        "{output}"
    );
    let workspace = app.data_dir().join("workspaces").join(&student.username);
    assert!(
        output.contains(&workspace.display().to_string()),
        "runs in and with HOME at the workspace: {output}"
    );
    let files = app.get_ok(&student.token, "/api/v1/workspace").await;
    assert!(
        files
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "result.txt"),
        "{files}"
    );
    let usage = app.store.usage_of(id).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].outcome.as_deref(), Some("succeeded"));
    assert!(usage[0].ended_at.is_some());
    assert_eq!(app.audit("action=workload.submit").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_and_a_missing_program_end_failed_with_the_reason() {
    let app = app().await;
    let student = app.user(Role::Student).await;
    let failing = submit_ok(&app, &student.token, &["sh", "-c", "echo oops >&2; exit 3"]).await;
    let missing = submit_ok(&app, &student.token, &["no-such-program-xyz", "--flag"]).await;
    let view = wait_for(&app, &student.token, failing, &["failed"]).await;
    assert_eq!(view["exit_code"], 3);
    assert!(
        view["reason"].as_str().unwrap().contains("code 3"),
        "{view}"
    );
    assert!(
        logs(&app, &student.token, failing).await.contains("oops"),
        "stderr is in the log too"
    );
    let view = wait_for(&app, &student.token, missing, &["failed"]).await;
    assert!(
        view["reason"]
            .as_str()
            .unwrap()
            .contains("no-such-program-xyz"),
        "{view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_runs_out_of_time_is_ended_and_its_workspace_kept() {
    let app = app().await;
    let student = app.user(Role::Student).await;
    let (status, body) = submit(
        &app,
        &student.token,
        json!({"argv": ["sh", "-c", "echo started > before-timeout.txt; trap '' TERM; sleep 60"], "time_limit": "2s", "memory": "64M"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let view = wait_for(
        &app,
        &student.token,
        id,
        &["timed_out", "failed", "succeeded"],
    )
    .await;
    assert_eq!(view["state"], "timed_out", "{view}");
    assert_eq!(view["state_label"], "Timed out");
    let files = app.get_ok(&student.token, "/api/v1/workspace").await;
    assert!(
        files
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "before-timeout.txt"),
        "{files}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_stops_a_running_job_and_cancels_a_queued_one_and_the_next_starts() {
    let mut settings = settings();
    settings.policy.max_running_per_user = 10;
    let app = TestApp::spawn_with_workloads(1, 4096, settings).await;
    let student = app.user(Role::Student).await;
    let body = |cmd: &str| json!({"argv": ["sh", "-c", cmd], "cpus": 1, "time_limit": "5m", "memory": "64M"});
    let (_, first) = submit(&app, &student.token, body("sleep 60")).await;
    let (_, second) = submit(&app, &student.token, body("sleep 60")).await;
    let (_, third) = submit(&app, &student.token, body("echo third")).await;
    let (first, second, third) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
        third["id"].as_i64().unwrap(),
    );
    wait_for(&app, &student.token, first, &["running"]).await;
    let queued = app
        .get_ok(&student.token, &format!("/api/v1/workloads/{second}"))
        .await;
    assert_eq!(queued["state"], "queued");
    assert_eq!(queued["position"], 1, "{queued}");
    let third_view = app
        .get_ok(&student.token, &format!("/api/v1/workloads/{third}"))
        .await;
    assert_eq!(third_view["position"], 2, "{third_view}");

    let (status, cancelled) = app
        .post(
            &student.token,
            &format!("/api/v1/workloads/{second}/stop"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    wait_for(&app, &student.token, second, &["cancelled"]).await;
    let (status, _) = app
        .post(
            &student.token,
            &format!("/api/v1/workloads/{first}/stop"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let stopped = wait_for(&app, &student.token, first, &["cancelled", "failed"]).await;
    assert_eq!(stopped["state"], "cancelled", "{stopped}");
    let done = wait_for(&app, &student.token, third, &["succeeded"]).await;
    assert_eq!(
        done["state"], "succeeded",
        "the next queued job started once the CPU was free"
    );
    let (status, body) = app
        .post(
            &student.token,
            &format!("/api/v1/workloads/{first}/stop"),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "stopping an ended workload says so: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_hold_release_and_reorder_the_queue_and_students_cannot() {
    let app = TestApp::spawn_with_workloads(1, 4096, settings()).await;
    let student = app.user(Role::Student).await;
    let body = json!({"argv": ["sleep", "30"], "cpus": 1, "time_limit": "5m", "memory": "64M"});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, view) = submit(&app, &student.token, body.clone()).await;
        ids.push(view["id"].as_i64().unwrap());
    }
    wait_for(&app, &student.token, ids[0], &["running"]).await;
    let (status, reply) = app
        .post(
            &student.token,
            &format!("/api/v1/workloads/{}/queue", ids[2]),
            json!({"action": "up"}),
        )
        .await;
    assert_forbidden(&(status, reply));
    let (status, moved) = app
        .post(
            &app.admin.token,
            &format!("/api/v1/workloads/{}/queue", ids[2]),
            json!({"action": "up"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["position"], 1, "{moved}");
    let (status, held) = app
        .post(
            &app.admin.token,
            &format!("/api/v1/workloads/{}/queue", ids[2]),
            json!({"action": "hold"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(held["held"], true);
    let other = app
        .get_ok(&app.admin.token, &format!("/api/v1/workloads/{}", ids[1]))
        .await;
    assert_eq!(
        other["position"], 1,
        "a held workload does not block the others: {other}"
    );
    let (status, _) = app
        .post(
            &app.admin.token,
            &format!("/api/v1/workloads/{}/queue", ids[2]),
            json!({"action": "release"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post(
            &app.admin.token,
            &format!("/api/v1/workloads/{}/queue", ids[0]),
            json!({"action": "hold"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a running workload cannot be held: {body}"
    );
    let (status, body) = app
        .post(
            &app.admin.token,
            &format!("/api/v1/workloads/{}/queue", ids[1]),
            json!({"action": "sideways"}),
        )
        .await;
    assert!(status.is_client_error(), "{body}");
    assert_eq!(
        app.audit("action=workload.up").await.len(),
        2,
        "allowed and refused moves are both recorded"
    );
    for id in ids {
        app.post(
            &app.admin.token,
            &format!("/api/v1/workloads/{id}/stop"),
            json!({}),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_keeps_one_student_from_taking_the_machine() {
    let mut settings = settings();
    settings.policy.max_running_per_user = 1;
    let app = TestApp::spawn_with_workloads(4, 4096, settings).await;
    let busy = app.user(Role::Student).await;
    let other = app.user(Role::Student).await;
    let body = json!({"argv": ["sleep", "30"], "cpus": 1, "time_limit": "5m", "memory": "64M"});
    let (_, a) = submit(&app, &busy.token, body.clone()).await;
    let (_, b) = submit(&app, &busy.token, body.clone()).await;
    let (_, c) = submit(&app, &other.token, body.clone()).await;
    wait_for(&app, &busy.token, a["id"].as_i64().unwrap(), &["running"]).await;
    wait_for(&app, &other.token, c["id"].as_i64().unwrap(), &["running"]).await;
    let waiting = app
        .get_ok(&busy.token, &format!("/api/v1/workloads/{}", b["id"]))
        .await;
    assert_eq!(
        waiting["state"], "queued",
        "the second job of the same student waits: {waiting}"
    );
    for id in [&a["id"], &b["id"], &c["id"]] {
        app.post(
            &app.admin.token,
            &format!("/api/v1/workloads/{id}/stop"),
            json!({}),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_the_log_streams_output_until_the_job_ends() {
    let app = app().await;
    let student = app.user(Role::Student).await;
    let id = submit_ok(
        &app,
        &student.token,
        &[
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; sleep 0.3; done",
        ],
    )
    .await;
    let (status, output) = text(app.builder(
        reqwest::Method::GET,
        &student.token,
        &format!("/api/v1/workloads/{id}/logs?follow=true"),
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        output.contains("line1") && output.contains("line3"),
        "{output}"
    );
    let view = app
        .get_ok(&student.token, &format!("/api/v1/workloads/{id}"))
        .await;
    assert_eq!(
        view["state"], "succeeded",
        "the stream ends when the job does"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_requests_get_clear_errors_and_create_nothing() {
    let app = app().await;
    let student = app.user(Role::Student).await;
    let cases = [
        (json!({"argv": []}), "argv"),
        (json!({"argv": ["true"], "cpus": -1}), "cpus"),
        (json!({"argv": ["true"], "cpus": 0}), "cpus"),
        (json!({"argv": ["true"], "memory": "lots"}), "memory"),
        (json!({"argv": ["true"], "memory": "99999999T"}), "memory"),
        (json!({"argv": ["true"], "time_limit": "5h"}), "time_limit"),
        (
            json!({"argv": ["true"], "time_limit": "soon"}),
            "time_limit",
        ),
        (json!({"argv": ["true"], "workdir": "../.."}), "workdir"),
        (json!({"argv": ["true"], "workdir": "/etc"}), "workdir"),
        (
            json!({"argv": ["true"], "env": {"VOXHUB_USER": "admin"}}),
            "env",
        ),
        (json!({"argv": ["true"], "env": {"BAD NAME": "x"}}), "env"),
        (json!({"argv": ["true"], "cpus": 64}), "resources"),
        (json!({"argv": ["true"], "gpus": 2}), "resources"),
        (json!({"argv": ["true"], "memory": "1T"}), "resources"),
    ];
    for (body, field) in cases {
        let reply = submit(&app, &student.token, body.clone()).await;
        let message = assert_field_error(&reply, 422, "invalid_input", field);
        assert!(!message.is_empty(), "{body}");
    }
    let reply = submit(
        &app,
        &student.token,
        json!({"argv": ["true"], "cpus": "two"}),
    )
    .await;
    assert_eq!(reply.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.1);
    let reply = submit(
        &app,
        &student.token,
        json!({"argv": ["true"], "colour": "red"}),
    )
    .await;
    assert_eq!(reply.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.1);
    let (status, body) = app
        .post(
            &student.token,
            "/api/v1/instances",
            json!({"size": "enormous"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("small"),
        "lists the sizes: {body}"
    );
    let (status, body) = app
        .post(
            &student.token,
            "/api/v1/instances",
            json!({"size": "small", "instance_type": "matlab"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let reply = app.get(&student.token, "/api/v1/workloads/999999").await;
    assert_error(&reply, 404, "not_found");
    let mine = app.get_ok(&student.token, "/api/v1/workloads").await;
    assert_eq!(
        mine.as_array().unwrap().len(),
        0,
        "nothing was queued: {mine}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_cannot_see_follow_stop_or_read_another_students_work() {
    let app = app().await;
    let owner = app.user(Role::Student).await;
    let intruder = app.user(Role::Student).await;
    let id = submit_ok(
        &app,
        &owner.token,
        &[
            "sh",
            "-c",
            "echo secret-output > notes.txt; echo secret-output; sleep 20",
        ],
    )
    .await;
    wait_for(&app, &owner.token, id, &["running"]).await;
    assert_forbidden(
        &app.get(&intruder.token, &format!("/api/v1/workloads/{id}"))
            .await,
    );
    assert_forbidden(
        &app.get(&intruder.token, &format!("/api/v1/workloads/{id}/logs"))
            .await,
    );
    assert_forbidden(
        &app.post(
            &intruder.token,
            &format!("/api/v1/workloads/{id}/stop"),
            json!({}),
        )
        .await,
    );
    assert_forbidden(
        &app.get(
            &intruder.token,
            &format!("/api/v1/workspace?user={}", owner.username),
        )
        .await,
    );
    let reply = app
        .get(
            &intruder.token,
            &format!(
                "/api/v1/workspace/file?path=notes.txt&user={}",
                owner.username
            ),
        )
        .await;
    assert_forbidden(&reply);
    let theirs = app.get_ok(&intruder.token, "/api/v1/workloads").await;
    assert!(
        theirs.as_array().unwrap().is_empty(),
        "another student's work is not listed: {theirs}"
    );
    let still = app
        .get_ok(&owner.token, &format!("/api/v1/workloads/{id}"))
        .await;
    assert_eq!(
        still["state"], "running",
        "the refused stop changed nothing"
    );
    assert!(
        !app.audit("action=workload.stop&outcome=denied")
            .await
            .is_empty()
    );
    let (status, _) = app
        .post(
            &app.admin.token,
            &format!("/api/v1/workloads/{id}/stop"),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an admin can stop anyone's workload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_sees_their_class_workloads_but_cannot_stop_them() {
    let app = app().await;
    let teacher = app.user(Role::Teacher).await;
    let student = app.user(Role::Student).await;
    let outsider = app.user(Role::Student).await;
    let class = app.create_class(&teacher.token, "Imaging 1").await;
    app.add_member(&teacher.token, class, &student.username, "student")
        .await;
    let id = submit_ok(&app, &student.token, &["sleep", "20"]).await;
    let outside = submit_ok(&app, &outsider.token, &["sleep", "20"]).await;
    let seen = app.get_ok(&teacher.token, "/api/v1/workloads").await;
    let ids: Vec<i64> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&id), "the class's workload is listed: {seen}");
    assert!(
        !ids.contains(&outside),
        "workloads outside the teacher's classes are not: {seen}"
    );
    assert_eq!(
        app.get(&teacher.token, &format!("/api/v1/workloads/{id}"))
            .await
            .0,
        StatusCode::OK
    );
    assert_forbidden(
        &app.get(&teacher.token, &format!("/api/v1/workloads/{outside}"))
            .await,
    );
    assert_forbidden(
        &app.post(
            &teacher.token,
            &format!("/api/v1/workloads/{id}/stop"),
            json!({}),
        )
        .await,
    );
    for id in [id, outside] {
        app.post(
            &app.admin.token,
            &format!("/api/v1/workloads/{id}/stop"),
            json!({}),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_files_upload_download_and_stay_inside_the_workspace() {
    let app = app().await;
    let student = app.user(Role::Student).await;
    let put = |path: &str| {
        app.builder(
            reqwest::Method::PUT,
            &student.token,
            &format!("/api/v1/workspace/file?path={path}"),
        )
    };
    let (status, answer) = text(put("data/scan-notes.txt").body("window 40/400")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let listed = app
        .get_ok(&student.token, "/api/v1/workspace?path=data")
        .await;
    assert_eq!(listed[0]["name"], "scan-notes.txt", "{listed}");
    let (_, download) = text(app.builder(
        reqwest::Method::GET,
        &student.token,
        "/api/v1/workspace/file?path=data/scan-notes.txt",
    ))
    .await;
    assert_eq!(download, "window 40/400");
    for bad in ["../escape.txt", "/etc/passwd", "data/../../x"] {
        let (status, _) = text(put(bad).body("x")).await;
        assert!(status.is_client_error(), "{bad}: {status}");
        let reply = app
            .get(
                &student.token,
                &format!("/api/v1/workspace/file?path={bad}"),
            )
            .await;
        assert!(reply.0.is_client_error(), "{bad}: {}", reply.0);
    }
    let root = app.data_dir().join("workspaces").join(&student.username);
    std::os::unix::fs::symlink("/etc", root.join("outside")).unwrap();
    let reply = app
        .get(
            &student.token,
            "/api/v1/workspace/file?path=outside/hostname",
        )
        .await;
    assert_forbidden(&reply);
    let reply = app
        .get(&student.token, "/api/v1/workspace?path=outside")
        .await;
    assert_forbidden(&reply);
    let reply = app
        .get(&student.token, "/api/v1/workspace/file?path=missing.txt")
        .await;
    assert_error(&reply, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_students_job_cannot_read_another_students_workspace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("*** SKIPPED: separate workload users need the server to run as root ***");
        return;
    }
    let mut settings = settings();
    settings.run_as_base_uid = Some(300_000);
    let app = TestApp::spawn_with_workloads(4, 4096, settings).await;
    let victim = app.user(Role::Student).await;
    let attacker = app.user(Role::Student).await;
    let (status, _) = text(
        app.builder(
            reqwest::Method::PUT,
            &victim.token,
            "/api/v1/workspace/file?path=private/diagnosis.txt",
        )
        .body("patient 17"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let own = submit_ok(
        &app,
        &victim.token,
        &["sh", "-c", "cat private/diagnosis.txt; id -u"],
    )
    .await;
    let view = wait_for(&app, &victim.token, own, &["succeeded", "failed"]).await;
    assert_eq!(
        view["state"], "succeeded",
        "the owner's job reads their uploaded file: {view}"
    );
    let output = logs(&app, &victim.token, own).await;
    assert!(
        output.contains("patient 17") && output.contains(&(300_000 + victim.id).to_string()),
        "{output}"
    );

    let script = format!(
        "cat ../{0}/private/diagnosis.txt; ls ..; cat {1}/voxhub.db | head -c 10; ls {1}/run; echo done",
        victim.username,
        app.data_dir().display()
    );
    let theirs = submit_ok(&app, &attacker.token, &["sh", "-c", &script]).await;
    wait_for(&app, &attacker.token, theirs, &["succeeded", "failed"]).await;
    let output = logs(&app, &attacker.token, theirs).await;
    assert!(!output.contains("patient 17"), "{output}");
    assert!(
        output.contains("cannot open directory '..'"),
        "the list of workspaces is not readable: {output}"
    );
    assert!(
        !output.contains("SQLite"),
        "the database is not readable: {output}"
    );
    assert!(
        !output.contains("logs"),
        "the run records are not readable: {output}"
    );
    assert!(
        output.contains("Permission denied") && output.contains("done"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_submits_waits_for_lists_and_moves_files() {
    let app = app().await;
    let student = app.user(Role::Student).await;
    let config = tempfile::tempdir().unwrap();
    let dir = config.path();
    run_voxhub(
        dir,
        &[
            "login",
            "--server",
            &app.url,
            "--username",
            &student.username,
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    )
    .await
    .assert_success();
    let submitted = run_voxhub(
        dir,
        &[
            "job",
            "submit",
            "--cpus",
            "0.5",
            "--mem",
            "64M",
            "--time",
            "1m",
            "--name",
            "cli job",
            "--wait",
            "--",
            "sh",
            "-c",
            "echo from-the-cli; exit 4",
        ],
        None,
    )
    .await;
    assert_eq!(
        submitted.code,
        Some(4),
        "the exit code of the job is the command's: {submitted:?}"
    );
    assert!(submitted.stdout.contains("from-the-cli"), "{submitted:?}");
    let listed = run_voxhub(dir, &["job", "list"], None).await;
    listed.assert_success();
    assert!(
        listed.stdout.contains("cli job") && listed.stdout.contains("Failed"),
        "{listed:?}"
    );

    let local = dir.join("scan.txt");
    std::fs::write(&local, "slice thickness 1.25").unwrap();
    run_voxhub(
        dir,
        &[
            "workspace",
            "upload",
            local.to_str().unwrap(),
            "--to",
            "data/",
        ],
        None,
    )
    .await
    .assert_success();
    let ls = run_voxhub(dir, &["workspace", "ls", "data"], None).await;
    assert!(ls.stdout.contains("scan.txt"), "{ls:?}");
    let copy = dir.join("copy.txt");
    run_voxhub(
        dir,
        &[
            "workspace",
            "download",
            "data/scan.txt",
            "--output",
            copy.to_str().unwrap(),
        ],
        None,
    )
    .await
    .assert_success();
    assert_eq!(
        std::fs::read_to_string(copy).unwrap(),
        "slice thickness 1.25"
    );

    let refused = run_voxhub(dir, &["job", "submit", "--cpus", "99", "--", "true"], None).await;
    assert_ne!(refused.code, Some(0));
    assert!(refused.stderr.contains("can never run here"), "{refused:?}");
    let refused = run_voxhub(dir, &["queue", "hold", "1"], None).await;
    assert_ne!(
        refused.code,
        Some(0),
        "students cannot hold work: {refused:?}"
    );
    assert!(refused.stderr.contains("only an admin"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_grants_become_cuda_visible_devices_and_are_never_shared() {
    // The node declares two GPUs, as configuration can; no real GPU is needed because the
    // grant only becomes an environment variable (NVML detection needs a driver and is not
    // exercised here).
    let node = voxhub_scheduler::Node {
        name: "local".into(),
        cpu_millis: 4000,
        memory_mib: 4096,
        gpu_devices: vec![0, 1],
    };
    let app = TestApp::spawn_on_node(node, settings()).await;
    let student = app.user(Role::Student).await;
    let body = |gpus: u32| json!({"argv": ["sh", "-c", "echo gpus=[$CUDA_VISIBLE_DEVICES]; sleep 2"], "gpus": gpus, "memory": "64M", "time_limit": "1m"});
    let (_, first) = submit(&app, &student.token, body(1)).await;
    let (_, second) = submit(&app, &student.token, body(1)).await;
    let (_, none) = submit(&app, &student.token, body(0)).await;
    let (_, waiting) = submit(&app, &student.token, body(1)).await;
    let ids: Vec<i64> = [&first, &second, &none, &waiting]
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    let running_first = wait_for(&app, &student.token, ids[0], &["running", "succeeded"]).await;
    let running_second = wait_for(&app, &student.token, ids[1], &["running", "succeeded"]).await;
    let mut devices = vec![
        running_first["gpu_devices"][0].as_u64().unwrap(),
        running_second["gpu_devices"][0].as_u64().unwrap(),
    ];
    devices.sort();
    assert_eq!(devices, vec![0, 1], "two jobs, two different GPUs");
    let third = app
        .get_ok(&student.token, &format!("/api/v1/workloads/{}", ids[3]))
        .await;
    assert_eq!(
        third["state"], "queued",
        "a third GPU job waits for a free GPU: {third}"
    );
    for id in &ids {
        wait_for(&app, &student.token, *id, &["succeeded"]).await;
    }
    let output = logs(&app, &student.token, ids[0]).await;
    assert!(
        output.contains(&format!("gpus=[{}]", running_first["gpu_devices"][0])),
        "{output}"
    );
    assert!(
        logs(&app, &student.token, ids[2]).await.contains("gpus=[]"),
        "no GPU is visible without a grant"
    );
    let (status, body) = submit(&app, &student.token, body(3)).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "3 GPUs can never fit a 2-GPU machine: {body}"
    );
}
