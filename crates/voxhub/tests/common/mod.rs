//! What the tests that run the real `voxhub` binary share: starting `voxhub serve` on a
//! free loopback port with a data directory and extra environment, and stopping it (SIGKILL)
//! when the guard is dropped; logging in through the API; headless Chromium ([`chromium`]);
//! the imaging venv's Python.

#![allow(dead_code)]

pub mod chromium;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `voxhub serve --listen 127.0.0.1:0 --data-dir DIR` with `VOXHUB_ADMIN_PASSWORD`
/// and `env`, and returns it with the address it printed.
pub fn serve(
    data_dir: &std::path::Path,
    admin_password: &str,
    env: &[(&str, &str)],
) -> (KillOnDrop, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_voxhub"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("VOXHUB_ADMIN_PASSWORD", admin_password)
        .env("VOXHUB_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("voxhub starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("voxhub prints its address")
            .expect("readable output");
        if let Some(rest) = line.strip_prefix("voxhub is listening on ") {
            break rest.trim().to_string();
        }
    };
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (KillOnDrop(child), url)
}

/// Logs in through the API and returns the session token.
pub async fn login(http: &reqwest::Client, url: &str, username: &str, password: &str) -> String {
    let body: serde_json::Value = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON answer");
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login failed: {body}"))
        .to_string()
}

/// The Python of the imaging venv (pydicom, nibabel, numpy) that `.ci/run` installs, or
/// `None` after a loud note; under CI a missing venv is a failure.
pub fn imaging_python(test: &str) -> Option<std::path::PathBuf> {
    let python = std::path::Path::new("/opt/voxhub/imaging-venv/bin/python");
    if python.is_file() {
        return Some(python.to_path_buf());
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: /opt/voxhub/imaging-venv is missing and CI is set: .ci/run must install it"
        );
    }
    eprintln!("\n*** SKIPPED {test}: /opt/voxhub/imaging-venv is missing (run .ci/run) ***\n");
    None
}
