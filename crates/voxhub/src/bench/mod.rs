//! `voxhub bench`: the project's own benchmark harness. Each subcommand starts what it
//! measures itself (a fresh voxhub server as a child process on loopback with a temporary
//! data directory, and the peer it compares with), bounds every load in count and time,
//! and prints a table (Markdown with `--markdown`).
//!
//! | module | measures |
//! | --- | --- |
//! | `http` | login, `/api/v1/me` and the dashboard under many concurrent clients |
//! | `jobs` | 1,000 trivial batch jobs from submission to the last end; Slurm as the peer |
//! | `instances` | N JupyterLab instances launched at once until all answer; JupyterHub as the peer |
//! | `imaging` | dataset ingest, series → NIfTI, slice rendering and QIDO-RS search; Orthanc and dcm2niix as the peers |
//! | `scheduler` | the in-process scheduling decision on a large simulated cluster |
//! | `procs` | resident memory and CPU time from `/proc`, and the quiet-machine check |
//!
//! This file holds what they share: starting the server, logging in, creating accounts,
//! finding the peer scripts in `bench/` at the repository root, and printing tables.

mod http;
mod imaging;
mod instances;
mod jobs;
mod procs;
mod scheduler;

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// Without a subcommand, `voxhub bench` runs `voxhub bench http` with these flags.
    #[command(flatten)]
    http: http::HttpArgs,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// Login, `/api/v1/me` and the dashboard under many concurrent clients.
    Http(http::HttpArgs),
    /// Trivial batch jobs (`true`) from submission to the last end; `--slurm` compares Slurm.
    Jobs(jobs::JobsArgs),
    /// JupyterLab instances launched at once until all answer; `--jupyterhub` compares JupyterHub.
    Instances(instances::InstancesArgs),
    /// Imaging datasets: ingest, NIfTI, rendering, QIDO-RS; `--orthanc`/`--dcm2niix` compare the peers.
    Imaging(imaging::ImagingArgs),
    /// The scheduling decision on a simulated cluster of 1,000 nodes and 10,000 queued workloads.
    Scheduler(scheduler::SchedulerArgs),
}

pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.command {
        None => http::run(args.http).await,
        Some(BenchCommand::Http(args)) => http::run(args).await,
        Some(BenchCommand::Jobs(args)) => jobs::run(args).await,
        Some(BenchCommand::Instances(args)) => instances::run(args).await,
        Some(BenchCommand::Imaging(args)) => imaging::run(args).await,
        Some(BenchCommand::Scheduler(args)) => scheduler::run(args),
    }
}

pub(crate) const ADMIN_PASSWORD: &str = "bench-admin-password";
pub(crate) const USER_PASSWORD: &str = "bench-user-password";

/// A voxhub server started by the benchmark; killed when dropped.
pub(crate) struct Server {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory (the run directory of the workloads is `run/` inside it).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Starts `voxhub serve` on 127.0.0.1 with a fresh data directory, the given extra
/// environment and, when given, a configuration file written into the data directory.
pub(crate) fn start_server(env: &[(&str, String)], config_toml: Option<&str>) -> Result<Server> {
    let dir = tempfile::Builder::new().prefix("voxhub-bench-").tempdir()?;
    let exe = std::env::current_exe().context("cannot find the voxhub binary")?;
    let mut command = Command::new(exe);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("VOXHUB_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("VOXHUB_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(text) = config_toml {
        let path = dir.path().join("bench.toml");
        std::fs::write(&path, text)?;
        command.arg("--config").arg(path);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .context("failed to start the voxhub server")?;
    let stdout = child.stdout.take().context("no server output")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let Some(line) = lines.next() else {
            let _ = child.wait();
            bail!("the server stopped before it listened")
        };
        if let Some(rest) = line?.strip_prefix("voxhub is listening on ") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Server { child, url, dir })
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    percentile(&sorted, 50.0)
}

pub(crate) async fn login(
    http: &reqwest::Client,
    url: &str,
    username: &str,
    password: &str,
) -> Result<String> {
    let response = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "login as {username} failed: {}",
            response.text().await.unwrap_or_default()
        );
    }
    let body: serde_json::Value = response.json().await?;
    Ok(body["token"].as_str().unwrap_or_default().to_string())
}

/// Creates a student account with [`USER_PASSWORD`] as the admin.
pub(crate) async fn create_student(
    http: &reqwest::Client,
    url: &str,
    admin_token: &str,
    username: &str,
) -> Result<()> {
    let response = http
        .post(format!("{url}/api/v1/users"))
        .bearer_auth(admin_token)
        .json(&json!({"username": username, "display_name": format!("Bench user {username}"), "role": "student", "password": USER_PASSWORD}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "creating {username} failed: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// The folder of peer set-up scripts: `--scripts`, else `bench/` of the source tree this
/// binary was built from, else `./bench`.
pub(crate) fn scripts_dir(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench");
    for candidate in [built_from, PathBuf::from("bench")] {
        if candidate.join("slurm_start.sh").exists() {
            return Ok(std::path::absolute(&candidate)?);
        }
    }
    bail!("cannot find the bench/ folder with the peer scripts; give it with --scripts")
}

/// A table printed as aligned text or as Markdown.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    /// `true` for right-aligned (numeric) columns.
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Headers ending in `>` are right-aligned; the `>` is not printed.
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.trim_end_matches('>')).collect(),
            numeric: headers.iter().map(|h| h.ends_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self, markdown: bool) {
        if markdown {
            println!("| {} |", self.headers.join(" | "));
            let rule: Vec<&str> = self
                .numeric
                .iter()
                .map(|&n| if n { "---:" } else { "---" })
                .collect();
            println!("| {} |", rule.join(" | "));
            for row in &self.rows {
                println!("| {} |", row.join(" | "));
            }
            return;
        }
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if self.numeric[i] {
                        format!("{c:>width$}", width = widths[i])
                    } else {
                        format!("{c:<width$}", width = widths[i])
                    }
                })
                .collect();
            println!("{}", padded.join("  ").trim_end());
        };
        line(self.headers.iter().map(|h| h.to_string()).collect());
        for row in &self.rows {
            line(row.clone());
        }
    }
}

/// A number with `decimals` places, or `-` when absent.
pub(crate) fn num(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}
