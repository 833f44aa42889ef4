//! The command line for workloads: `voxhub job`, `voxhub instance`, `voxhub queue` and
//! `voxhub workspace`, all over the server's API.

use crate::cli::{print_json, print_table, s};
use crate::client::{Client, query_escape};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum JobCommand {
    /// Submit a job: `voxhub job submit --cpus 2 --mem 4G --time 2h -- python train.py`.
    Submit {
        /// CPU cores, e.g. 2 or 0.5.
        #[arg(long, default_value = "1")]
        cpus: f64,
        /// Memory, e.g. 4G or 512M.
        #[arg(long, default_value = "1G")]
        mem: String,
        /// Whole GPUs.
        #[arg(long, default_value_t = 0)]
        gpus: u32,
        /// Time limit, e.g. 2h or 30m (default: the server's).
        #[arg(long)]
        time: Option<String>,
        /// A name to recognise the job by.
        #[arg(long)]
        name: Option<String>,
        /// Folder in your workspace to run in.
        #[arg(long, default_value = "")]
        workdir: String,
        /// Environment variable NAME=value (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Class id the job is for.
        #[arg(long)]
        class: Option<i64>,
        /// Wait for the job to end, printing its output, and exit with its exit code.
        #[arg(long)]
        wait: bool,
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Your workloads (all you may see with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// One workload in detail.
    Show { id: i64 },
    /// Print a workload's output; -f follows it until the workload ends.
    Logs {
        id: i64,
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop a running job or cancel a queued one.
    Cancel { id: i64 },
}

#[derive(Subcommand)]
pub enum InstanceCommand {
    /// Launch JupyterLab and print the address to open.
    Launch {
        /// Size: see `voxhub instance sizes`.
        #[arg(long, default_value = "small")]
        size: String,
        /// Time limit, e.g. 2h.
        #[arg(long)]
        time: Option<String>,
        #[arg(long)]
        class: Option<i64>,
    },
    /// The sizes you can choose from.
    Sizes,
    /// Stop an environment; its workspace is kept.
    Stop { id: i64 },
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Keep a queued workload from starting (admins).
    Hold { id: i64 },
    /// Let a held workload start again (admins).
    Release { id: i64 },
    /// Move a queued workload one place up (admins).
    Up { id: i64 },
    /// Move a queued workload one place down (admins).
    Down { id: i64 },
}

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// List a folder of your workspace.
    Ls {
        #[arg(default_value = "")]
        path: String,
    },
    /// Upload a local file into your workspace.
    Upload {
        file: PathBuf,
        /// Where in the workspace (default: its top, same file name).
        #[arg(long)]
        to: Option<String>,
    },
    /// Download a file of your workspace.
    Download {
        path: String,
        /// Local file to write (default: the same name in the current folder).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

fn workload_rows(views: &Value) -> Vec<Vec<String>> {
    views
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let place = match w["state"].as_str() {
                Some("queued") if w["held"] == true => "held".to_string(),
                Some("queued") => w["position"]
                    .as_u64()
                    .map(|p| format!("#{p}"))
                    .unwrap_or_default(),
                Some("starting" | "running") => w["remaining_s"]
                    .as_i64()
                    .map(|r| format!("{} min left", r / 60))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            vec![
                s(&w["id"]),
                s(&w["name"]),
                s(&w["owner"]),
                s(&w["kind"]),
                s(&w["state_label"]),
                place,
                s(&w["created_at"]),
            ]
        })
        .collect()
}

/// What a stop request means right after it was made.
fn stopping_label(view: &Value) -> String {
    match view["state"].as_str() {
        Some("queued" | "starting" | "running") => "stopping; its workspace is kept".into(),
        _ => s(&view["state_label"]),
    }
}

const HEADERS: [&str; 7] = ["id", "name", "owner", "type", "state", "place", "created"];

async fn follow_logs(client: &Client, id: i64, follow: bool) -> Result<()> {
    let path = format!("/api/v1/workloads/{id}/logs?follow={follow}");
    let mut response = client
        .raw(
            reqwest::Method::GET,
            &path,
            None,
            follow.then_some(std::time::Duration::from_secs(7 * 24 * 3600)),
        )
        .await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = response.chunk().await.context("the log stream broke off")? {
        stdout.write_all(&chunk)?;
        stdout.flush()?;
    }
    Ok(())
}

pub async fn job(command: JobCommand, client: Client, json: bool) -> Result<ExitCode> {
    match command {
        JobCommand::Submit {
            cpus,
            mem,
            gpus,
            time,
            name,
            workdir,
            env,
            class,
            wait,
            command,
        } => {
            let mut variables = serde_json::Map::new();
            for pair in env {
                let Some((key, value)) = pair.split_once('=') else {
                    bail!("--env takes NAME=value, not '{pair}'")
                };
                variables.insert(key.to_string(), json!(value));
            }
            let view = client
                .post(
                    "/api/v1/jobs",
                    json!({"name": name, "argv": command, "env": variables, "workdir": workdir, "cpus": cpus,
                           "memory": mem, "gpus": gpus, "time_limit": time, "class_id": class}),
                )
                .await?;
            let id = view["id"].as_i64().unwrap_or_default();
            if json {
                print_json(&view);
            } else {
                eprintln!(
                    "Job {id} submitted: {} ({}).",
                    s(&view["name"]),
                    s(&view["state_label"])
                );
            }
            if wait {
                follow_logs(&client, id, true).await?;
                let end = client.get(&format!("/api/v1/workloads/{id}")).await?;
                eprintln!(
                    "Job {id} ended: {}{}",
                    s(&end["state_label"]),
                    end["reason"]
                        .as_str()
                        .filter(|r| !r.is_empty())
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
                let code = end["exit_code"]
                    .as_i64()
                    .unwrap_or(if end["state"] == "succeeded" { 0 } else { 1 });
                return Ok(ExitCode::from(code.clamp(0, 255) as u8));
            }
        }
        JobCommand::List { all } => {
            let scope = if all { "visible" } else { "mine" };
            let views = client
                .get(&format!("/api/v1/workloads?scope={scope}"))
                .await?;
            if json {
                print_json(&views)
            } else {
                print_table(&HEADERS, workload_rows(&views))
            }
        }
        JobCommand::Show { id } => {
            let view = client.get(&format!("/api/v1/workloads/{id}")).await?;
            if json {
                print_json(&view);
            } else {
                print_table(&HEADERS, workload_rows(&json!([view])));
                for (label, key) in [
                    ("command", "argv"),
                    ("reason", "reason"),
                    ("limits", "enforcement"),
                    ("open", "open_url"),
                ] {
                    let value = &view[key];
                    let text = if let Some(list) = value.as_array() {
                        list.iter().map(s).collect::<Vec<_>>().join(" ")
                    } else {
                        s(value)
                    };
                    if !text.is_empty() && text != "-" {
                        println!("{label}: {text}");
                    }
                }
            }
        }
        JobCommand::Logs { id, follow } => follow_logs(&client, id, follow).await?,
        JobCommand::Cancel { id } => {
            let view = client
                .post(&format!("/api/v1/workloads/{id}/stop"), json!({}))
                .await?;
            if json {
                print_json(&view)
            } else {
                println!("Workload {id}: {}.", stopping_label(&view))
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn instance(command: InstanceCommand, client: Client, json: bool) -> Result<ExitCode> {
    match command {
        InstanceCommand::Launch { size, time, class } => {
            let view = client
                .post(
                    "/api/v1/instances",
                    json!({"size": size, "time_limit": time, "class_id": class}),
                )
                .await?;
            let id = view["id"].as_i64().unwrap_or_default();
            if json {
                print_json(&view);
            } else {
                println!(
                    "Environment {id} is {}. Open it at {}/i/{id}/lab once it runs (voxhub job show {id}).",
                    s(&view["state_label"]).to_lowercase(),
                    client.server
                );
            }
        }
        InstanceCommand::Sizes => {
            let sizes = client.get("/api/v1/sizes").await?;
            if json {
                print_json(&sizes);
            } else {
                let rows = sizes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|z| {
                        vec![
                            s(&z["name"]),
                            format!("{}", z["cpu_millis"].as_f64().unwrap_or(0.0) / 1000.0),
                            format!("{} MiB", s(&z["memory_mib"])),
                            s(&z["gpus"]),
                        ]
                    })
                    .collect();
                print_table(&["size", "cpu", "memory", "gpus"], rows);
            }
        }
        InstanceCommand::Stop { id } => {
            let view = client
                .post(&format!("/api/v1/workloads/{id}/stop"), json!({}))
                .await?;
            if json {
                print_json(&view)
            } else {
                println!("Environment {id}: {}.", stopping_label(&view))
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn queue(command: Option<QueueCommand>, client: Client, json: bool) -> Result<ExitCode> {
    let (id, action) = match command {
        None => {
            let views = client.get("/api/v1/workloads?active=true").await?;
            if json {
                print_json(&views)
            } else {
                print_table(&HEADERS, workload_rows(&views))
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(QueueCommand::Hold { id }) => (id, "hold"),
        Some(QueueCommand::Release { id }) => (id, "release"),
        Some(QueueCommand::Up { id }) => (id, "up"),
        Some(QueueCommand::Down { id }) => (id, "down"),
    };
    let view = client
        .post(
            &format!("/api/v1/workloads/{id}/queue"),
            json!({"action": action}),
        )
        .await?;
    if json {
        print_json(&view)
    } else {
        print_table(&HEADERS, workload_rows(&json!([view])))
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn workspace(command: WorkspaceCommand, client: Client, json: bool) -> Result<ExitCode> {
    match command {
        WorkspaceCommand::Ls { path } => {
            let entries = client
                .get(&format!("/api/v1/workspace?path={}", query_escape(&path)))
                .await?;
            if json {
                print_json(&entries);
            } else {
                let rows = entries
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        let name = if e["kind"] == "directory" {
                            format!("{}/", s(&e["name"]))
                        } else {
                            s(&e["name"])
                        };
                        vec![
                            name,
                            if e["kind"] == "directory" {
                                String::new()
                            } else {
                                s(&e["size_bytes"])
                            },
                            s(&e["modified"]),
                        ]
                    })
                    .collect();
                print_table(&["name", "bytes", "changed"], rows);
            }
        }
        WorkspaceCommand::Upload { file, to } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .context("give a file, not a folder")?;
            let target = to
                .map(|t| {
                    if t.ends_with('/') {
                        format!("{t}{name}")
                    } else {
                        t
                    }
                })
                .unwrap_or(name);
            let response = client
                .raw(
                    reqwest::Method::PUT,
                    &format!("/api/v1/workspace/file?path={}", query_escape(&target)),
                    Some(bytes),
                    None,
                )
                .await?;
            let entry: Value = response.json().await?;
            if json {
                print_json(&entry)
            } else {
                println!(
                    "Uploaded {} ({} bytes).",
                    s(&entry["path"]),
                    s(&entry["size_bytes"])
                )
            }
        }
        WorkspaceCommand::Download { path, output } => {
            let mut response = client
                .raw(
                    reqwest::Method::GET,
                    &format!("/api/v1/workspace/file?path={}", query_escape(&path)),
                    None,
                    None,
                )
                .await?;
            let output = output.unwrap_or_else(|| {
                PathBuf::from(std::path::Path::new(&path).file_name().unwrap_or_default())
            });
            let mut file = std::fs::File::create(&output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            let mut total = 0usize;
            while let Some(chunk) = response.chunk().await? {
                file.write_all(&chunk)?;
                total += chunk.len();
            }
            if !json {
                println!("Downloaded {path} to {} ({total} bytes).", output.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
