//! `voxhub serve` on an empty data directory creates one admin and prints its password once;
//! later starts on the same directory create no second admin and print no password.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

struct Server {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    url: String,
    /// Every stdout line read so far.
    seen: Vec<String>,
}

impl Server {
    /// Starts `voxhub serve` on a free port and reads up to the "listening" line.
    async fn start(data_dir: &Path, admin_password: Option<&str>) -> Server {
        let home = data_dir.join("home");
        let mut command = voxhub_command(&home);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("VOXHUB_LOG__LEVEL", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(password) = admin_password {
            command.env("VOXHUB_ADMIN_PASSWORD", password);
        }
        let mut child = command.spawn().expect("start voxhub serve");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut server = Server {
            child,
            lines,
            url: String::new(),
            seen: Vec::new(),
        };
        let line = server
            .read_until(|l| l.starts_with("voxhub is listening on "))
            .await;
        server.url = line
            .trim_start_matches("voxhub is listening on ")
            .trim()
            .to_string();
        assert!(server.url.starts_with("http://127.0.0.1:"), "{line}");
        server
    }

    async fn next_line(&mut self) -> Option<String> {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("voxhub printed nothing for 30 s after {:?}", self.seen))
            .expect("read stdout");
        if let Some(line) = &line {
            self.seen.push(line.clone());
        }
        line
    }

    async fn read_until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            match self.next_line().await {
                Some(line) if wanted(&line) => return line,
                Some(_) => {}
                None => panic!(
                    "voxhub stopped before printing the expected line: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits until the server answers, so everything it prints at start is in the pipe.
    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(response) = http.get(format!("{}/healthz", self.url)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("voxhub at {} never became healthy", self.url);
    }

    /// Kills the server and returns everything it printed.
    async fn kill(mut self) -> Vec<String> {
        self.child.kill().await.expect("kill voxhub");
        while self.next_line().await.is_some() {}
        self.seen
    }
}

async fn login(url: &str, password: &str) -> (StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .expect("login request");
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

async fn user_count(url: &str, token: &str) -> usize {
    let users: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/users"))
        .bearer_auth(token)
        .send()
        .await
        .expect("list users")
        .json()
        .await
        .expect("JSON");
    users.as_array().expect("user list").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_prints_a_generated_admin_password_once_and_a_second_start_creates_no_second_admin()
 {
    let data = tempfile::tempdir().unwrap();

    let mut first = Server::start(data.path(), None).await;
    let url = first.url.clone();
    first
        .read_until(|l| l.starts_with("open ") && l.contains(&url))
        .await;
    first
        .read_until(|l| l.contains("first admin account was created"))
        .await;
    first.read_until(|l| l.trim() == "username: admin").await;
    let password_line = first
        .read_until(|l| l.trim().starts_with("password:"))
        .await;
    let password = password_line
        .trim()
        .trim_start_matches("password:")
        .trim()
        .to_string();
    assert!(
        password.len() >= 20,
        "a long generated password: {password_line}"
    );
    first
        .read_until(|l| l.contains(&format!("{url}/login")))
        .await;

    let (status, body) = login(&url, &password).await;
    assert_eq!(status, StatusCode::OK, "the printed password works: {body}");
    assert_eq!(body["user"]["role"], "admin");
    let printed = first.kill().await;
    assert_eq!(
        printed.iter().filter(|l| l.contains(&password)).count(),
        1,
        "the password is shown once: {printed:?}"
    );

    let second = Server::start(data.path(), None).await;
    second.wait_ready().await;
    let second_url = second.url.clone();
    let (status, body) = login(&second_url, &password).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the first password still works: {body}"
    );
    assert_eq!(
        user_count(&second_url, body["token"].as_str().unwrap()).await,
        1,
        "no second admin"
    );
    let printed = second.kill().await;
    assert!(
        !printed.iter().any(|l| l.contains("password")),
        "no password on a later start: {printed:?}"
    );
    assert!(
        !printed
            .iter()
            .any(|l| l.contains("admin account was created")),
        "{printed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_password_can_come_from_the_environment_and_is_never_printed() {
    let data = tempfile::tempdir().unwrap();
    let chosen = "chosen by the operator";
    let mut server = Server::start(data.path(), Some(chosen)).await;
    server
        .read_until(|l| l.contains("VOXHUB_ADMIN_PASSWORD"))
        .await;
    server.wait_ready().await;
    let url = server.url.clone();
    let (status, body) = login(&url, chosen).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let printed = server.kill().await;
    assert!(!printed.iter().any(|l| l.contains(chosen)), "{printed:?}");

    // A later start with another password in the environment changes nothing.
    let server = Server::start(data.path(), Some("a different password now")).await;
    server.wait_ready().await;
    let url = server.url.clone();
    let (status, body) = login(&url, chosen).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(user_count(&url, body["token"].as_str().unwrap()).await, 1);
    let (status, _) = login(&url, "a different password now").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_short_admin_password_in_the_environment_stops_the_first_start_with_a_message() {
    let data = tempfile::tempdir().unwrap();
    let home = data.path().join("home");
    let output = voxhub_command(&home)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("VOXHUB_ADMIN_PASSWORD", "short")
        .output()
        .await
        .expect("run voxhub serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("VOXHUB_ADMIN_PASSWORD") && stderr.contains("at least 10"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_digit_admin_password_in_the_environment_is_accepted() {
    let data = tempfile::tempdir().unwrap();
    let digits = "12345678901234";
    let mut server = Server::start(data.path(), Some(digits)).await;
    server
        .read_until(|l| l.contains("VOXHUB_ADMIN_PASSWORD"))
        .await;
    let url = server.url.clone();
    let (status, body) = login(&url, digits).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.kill().await;
}
