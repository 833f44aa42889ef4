//! Restart safety: the `voxhub` server is killed with SIGKILL while jobs run and is started
//! again on the same data directory. Workloads still alive are re-adopted (same supervisor,
//! same start), workloads that ended while it was down get their real outcome, a workload
//! whose supervisor died is marked Failed with the reason, queued work stays in the queue,
//! and nothing runs twice.

mod common;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "restart-test-admin-password";

fn start(data_dir: &std::path::Path) -> (common::KillOnDrop, String) {
    common::serve(
        data_dir,
        ADMIN_PASSWORD,
        &[
            ("VOXHUB_NODE__CPUS", "3"),
            ("VOXHUB_NODE__MEMORY", "4G"),
            ("VOXHUB_WORKLOADS__MAX_RUNNING_PER_USER", "0"),
            ("VOXHUB_WORKLOADS__GRACE_S", "1"),
        ],
    )
}

async fn submit(http: &reqwest::Client, url: &str, token: &str, script: &str, cpus: f64) -> i64 {
    let body: Value = http
        .post(format!("{url}/api/v1/jobs"))
        .bearer_auth(token)
        .json(&json!({"argv": ["sh", "-c", script], "cpus": cpus, "memory": "64M", "time_limit": "10m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("submit failed: {body}"))
}

async fn workload(http: &reqwest::Client, url: &str, token: &str, id: i64) -> Value {
    http.get(format!("{url}/api/v1/workloads/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: i64,
    states: &[&str],
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = workload(http, url, token, id).await;
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

fn shim_pid(data_dir: &std::path::Path, id: i64) -> i32 {
    let state: Value = serde_json::from_slice(
        &std::fs::read(data_dir.join("run").join(id.to_string()).join("state.json")).unwrap(),
    )
    .unwrap();
    state["shim_pid"].as_i64().unwrap() as i32
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_re_adopts_running_work_and_records_what_ended_while_it_was_down() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let http = reqwest::Client::new();
    let (server, url) = start(&data_dir);
    let token = common::login(&http, &url, "admin", ADMIN_PASSWORD).await;

    let finishes = submit(
        &http,
        &url,
        &token,
        "sleep 4; echo finished-while-down",
        1.0,
    )
    .await;
    let fails = submit(&http, &url, &token, "sleep 4; exit 7", 0.5).await;
    let keeps_running = submit(&http, &url, &token, "sleep 120", 0.5).await;
    let loses_supervisor = submit(&http, &url, &token, "sleep 120", 0.5).await;
    let waits = submit(&http, &url, &token, "echo queued-job-ran", 2.0).await;
    let mut started = std::collections::HashMap::new();
    for id in [finishes, fails, keeps_running, loses_supervisor] {
        let view = wait_for(&http, &url, &token, id, &["running"]).await;
        started.insert(id, view["started_at"].clone());
    }
    assert_eq!(
        workload(&http, &url, &token, waits).await["state"],
        "queued"
    );
    let survivor = shim_pid(&data_dir, keeps_running);

    // SIGKILL the server, then take one workload's supervisor away while it is down.
    drop(server);
    let lost = shim_pid(&data_dir, loses_supervisor);
    // SAFETY: sending a signal to a pid this test started through the server.
    unsafe { libc::kill(lost, libc::SIGKILL) };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(alive(survivor), "workloads outlive the server");

    let (_server, url) = start(&data_dir);
    let token = common::login(&http, &url, "admin", ADMIN_PASSWORD).await;
    let done = wait_for(&http, &url, &token, finishes, &["succeeded", "failed"]).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let output = http
        .get(format!("{url}/api/v1/workloads/{finishes}/logs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        output.matches("finished-while-down").count(),
        1,
        "it ran once: {output}"
    );
    let failed = wait_for(&http, &url, &token, fails, &["failed", "succeeded"]).await;
    assert_eq!(
        failed["exit_code"], 7,
        "the real exit code is recorded: {failed}"
    );
    let lost_view = wait_for(
        &http,
        &url,
        &token,
        loses_supervisor,
        &["failed", "succeeded", "cancelled"],
    )
    .await;
    assert_eq!(lost_view["state"], "failed", "{lost_view}");
    assert!(
        lost_view["reason"].as_str().unwrap().contains("lost"),
        "the reason says it was lost: {lost_view}"
    );
    let adopted = workload(&http, &url, &token, keeps_running).await;
    assert_eq!(adopted["state"], "running", "{adopted}");
    assert_eq!(
        adopted["started_at"], started[&keeps_running],
        "re-adopted, not started again"
    );
    assert_eq!(
        shim_pid(&data_dir, keeps_running),
        survivor,
        "the same supervisor still runs it"
    );
    for id in [finishes, fails] {
        assert_eq!(
            workload(&http, &url, &token, id).await["started_at"],
            started[&id],
            "nothing ran twice"
        );
    }
    // The queued job kept its place and runs now that capacity is free.
    let queued = wait_for(&http, &url, &token, waits, &["succeeded", "failed"]).await;
    assert_eq!(queued["state"], "succeeded", "{queued}");

    let stopped: Value = http
        .post(format!("{url}/api/v1/workloads/{keeps_running}/stop"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(stopped["stop_requested"] == true, "{stopped}");
    wait_for(&http, &url, &token, keeps_running, &["cancelled"]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(survivor) {
        assert!(
            Instant::now() < deadline,
            "the re-adopted workload's supervisor ended after stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
