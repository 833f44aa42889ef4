//! A real JupyterLab behind voxhub's proxy: a student launches an instance through the API,
//! waits until it is ready, then — through the proxy only — creates a kernel with
//! JupyterLab's REST API, runs `print(6*7)` over the kernel WebSocket and reads `42`.
//! Another student is refused at the same address, over HTTP and WebSocket.
//!
//! JupyterLab comes from PyPI (`.ci/run` installs it into /opt/voxhub/jupyter-venv). Where
//! it is missing the test says so loudly and skips, except under CI, where it fails.

mod common;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ADMIN_PASSWORD: &str = "jupyter-test-admin-password";

fn jupyter() -> Option<String> {
    let candidate = std::env::var("VOXHUB_TEST_JUPYTER")
        .unwrap_or_else(|_| "/opt/voxhub/jupyter-venv/bin/jupyter".into());
    std::path::Path::new(&candidate)
        .exists()
        .then_some(candidate)
}

fn start(data_dir: &std::path::Path, jupyter: &str) -> (common::KillOnDrop, String) {
    common::serve(
        data_dir,
        ADMIN_PASSWORD,
        &[("VOXHUB_INSTANCES__JUPYTER", jupyter)],
    )
}

async fn student(http: &reqwest::Client, url: &str, admin: &str, username: &str) -> String {
    let response = http
        .post(format!("{url}/api/v1/users"))
        .bearer_auth(admin)
        .json(&json!({"username": username, "display_name": username, "role": "student", "password": "a-student-password"}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    common::login(http, url, username, "a-student-password").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_runs_code_through_the_proxy_and_nobody_else_gets_in() {
    let Some(jupyter) = jupyter() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "JupyterLab is required under CI; .ci/run installs it into /opt/voxhub/jupyter-venv"
            );
        }
        eprintln!(
            "\n*** SKIPPED JupyterLab test: no JupyterLab at /opt/voxhub/jupyter-venv (or VOXHUB_TEST_JUPYTER). Run .ci/run to install it. ***\n"
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (_server, url) = start(&work.path().join("data"), &jupyter);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let admin = common::login(&http, &url, "admin", ADMIN_PASSWORD).await;
    let owner = student(&http, &url, &admin, "owner").await;
    let intruder = student(&http, &url, &admin, "intruder").await;

    let launched: Value = http
        .post(format!("{url}/api/v1/instances"))
        .bearer_auth(&owner)
        .json(&json!({"size": "small", "time_limit": "10m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = launched["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("launch failed: {launched}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let view = loop {
        let text = http
            .get(format!("{url}/api/v1/workloads/{id}"))
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let view: Value = serde_json::from_str(&text).unwrap();
        if view["state"] == "running" {
            assert!(
                !text.to_lowercase().contains("token="),
                "the instance's own token is never shown: {text}"
            );
            break view;
        }
        assert!(
            view["state"] == "queued" || view["state"] == "starting",
            "the instance did not start: {view}"
        );
        assert!(
            Instant::now() < deadline,
            "JupyterLab was not ready within 120 s: {view}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(view["open_url"], format!("/i/{id}/lab"));

    // A kernel, created through the proxy with the owner's voxhub token only.
    let base = format!("{url}/i/{id}");
    let kernel: Value = http
        .post(format!("{base}/api/kernels"))
        .bearer_auth(&owner)
        .json(&json!({"name": "python3"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kernel_id = kernel["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no kernel: {kernel}"))
        .to_string();

    // Code over the kernel WebSocket, through the proxy.
    let ws_url = format!(
        "{}/api/kernels/{kernel_id}/channels?session_id=voxhub-test",
        base.replacen("http://", "ws://", 1)
    );
    let mut request = ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {owner}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the WebSocket opens through the proxy");
    let msg_id = "voxhub-test-1";
    let execute = json!({
        "header": {"msg_id": msg_id, "username": "owner", "session": "voxhub-test", "msg_type": "execute_request", "version": "5.3", "date": "2026-01-01T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": "print(6*7)", "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}
    });
    socket
        .send(Message::text(execute.to_string()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let printed = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, socket.next())
            .await
            .expect("the kernel answers within 60 s");
        let Some(Ok(Message::Text(text))) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(text.as_str()).unwrap();
        if message["parent_header"]["msg_id"] == msg_id && message["header"]["msg_type"] == "stream"
        {
            break message["content"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
    };
    assert_eq!(printed.trim(), "42");
    socket.close(None).await.ok();

    // Another student is refused, over HTTP and WebSocket.
    let refused = http
        .get(format!("{base}/api/status"))
        .bearer_auth(&intruder)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("someone else"),
        "{body}"
    );
    let mut request = ws_url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {intruder}").parse().unwrap(),
    );
    assert!(
        tokio_tungstenite::connect_async(request).await.is_err(),
        "the WebSocket is refused to another student"
    );
    // A browser that is not logged in is sent to the login page.
    let anonymous = http.get(format!("{base}/lab")).send().await.unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(
        anonymous.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?next=")
    );

    // Stopping ends it; the address then says so.
    let stopped: Value = http
        .post(format!("{url}/api/v1/workloads/{id}/stop"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stopped["state"] != "running" || stopped["stop_requested"] == true,
        "{stopped}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view: Value = http
            .get(format!("{url}/api/v1/workloads/{id}"))
            .bearer_auth(&owner)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["state"] == "cancelled" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the instance did not stop: {view}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let gone = http
        .get(format!("{base}/api/status"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), reqwest::StatusCode::GONE);
}
