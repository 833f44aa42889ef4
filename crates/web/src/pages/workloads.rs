//! Pages for the queue, submitting a job, the "new environment" wizard, one workload with
//! its live log, and the workspace.

use super::{
    Notice, PageCaller, PageError, PageForm, PagePath, PageQuery, csrf_field, page, url_escape,
};
use crate::AppState;
use crate::auth::ClientAddr;
use crate::error::ApiError;
use crate::runtime::human_duration;
use crate::workloads::{self, InstanceRequest, JobRequest, QueueAction, Scope, WorkloadView};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use voxhub_core::role::Role;
use voxhub_core::timefmt::human;
use voxhub_store::workloads::State as WorkloadState;

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
    scope: Option<String>,
}

fn notice_for(done: Option<&str>) -> Option<Notice> {
    let text = match done? {
        "submitted" => "Your job is in the queue. It starts as soon as resources are free.",
        "launched" => {
            "Your environment is starting. Its Open button appears here in a few seconds."
        }
        "stopped" => {
            "Stop requested. The workload ends within a few seconds; its workspace is kept."
        }
        "queue_changed" => "The queue was changed.",
        "uploaded" => "The file was uploaded to your workspace.",
        _ => return None,
    };
    Some(Notice::Ok(text.into()))
}

fn state_badge(view: &WorkloadView) -> Markup {
    let class = match view.workload.state {
        WorkloadState::Running | WorkloadState::Succeeded => "active",
        WorkloadState::Failed | WorkloadState::TimedOut => "revoked",
        WorkloadState::Queued | WorkloadState::Starting => "expired",
        WorkloadState::Cancelled => "",
    };
    html! { span class={"badge " (class)} { (view.state_label) } }
}

fn resources(view: &WorkloadView) -> String {
    let w = &view.workload;
    let mut text = format!(
        "{} CPU · {} · ",
        w.cpu_millis as f64 / 1000.0,
        memory_text(w.memory_mib)
    );
    if w.gpus > 0 {
        text.push_str(&format!("{} GPU · ", w.gpus));
    }
    text.push_str(&human_duration(w.time_limit_s));
    text
}

fn memory_text(mib: i64) -> String {
    if mib >= 1024 && mib % 1024 == 0 {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

fn when(view: &WorkloadView) -> Markup {
    let w = &view.workload;
    html! {
        @match w.state {
            WorkloadState::Queued => {
                @if w.held { "held by an admin" }
                @else if let Some(position) = view.position { "number " (position) " in line" }
                @if let Some(start) = &view.estimated_start { br; span.muted { "expected " (start.replace('T', " ").trim_end_matches('Z')) " UTC" } }
            }
            WorkloadState::Starting | WorkloadState::Running => {
                @if let Some(left) = view.remaining_s { (human_duration(left)) " left" }
            }
            _ => { @if let Some(ended) = w.ended_at { "ended " (human(ended)) } }
        }
    }
}

fn queue_table(caller: &PageCaller, views: &[WorkloadView]) -> Markup {
    let admin = caller.0.user.role == Role::Admin;
    html! {
        @if views.is_empty() {
            div.card { p { "Nothing here yet. " a href="/environments/new" { "Start a JupyterLab environment" } " or " a href="/jobs/new" { "submit a job" } "." } }
        } @else {
            table #queue {
                thead { tr { th { "#" } th { "Name" } th { "Owner" } th { "Type" } th { "State" } th { "Place / time" } th { "Resources" } th { "Created" } th {} } }
                tbody {
                    @for view in views {
                        @let w = &view.workload;
                        tr {
                            td { (w.id) }
                            td { a href={"/workloads/" (w.id)} { (w.name) } }
                            td { (w.owner) }
                            td { (if w.kind == "instance" { "environment" } else { "job" }) }
                            td { (state_badge(view)) }
                            td { (when(view)) }
                            td { (resources(view)) }
                            td { (human(w.created_at)) }
                            td {
                                @if let Some(url) = &view.open_url { a.button href=(url) target="_blank" rel="noopener" { "Open" } " " }
                                @if w.state.is_active() && (w.owner_id == caller.0.user.id || admin) {
                                    form.inline method="post" action={"/workloads/" (w.id) "/stop"} {
                                        (csrf_field(caller)) button.small.secondary type="submit" { @if w.state == WorkloadState::Queued { "Cancel" } @else { "Stop" } }
                                    }
                                }
                                @if admin && w.state == WorkloadState::Queued {
                                    @for (action, label) in [("up", "↑"), ("down", "↓"), (if w.held { "release" } else { "hold" }, if w.held { "Release" } else { "Hold" })] {
                                        " "
                                        form.inline method="post" action={"/workloads/" (w.id) "/queue"} {
                                            (csrf_field(caller)) input type="hidden" name="action" value=(action);
                                            button.small.secondary type="submit" title={(action) " in the queue"} { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn queue_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageQuery(query): PageQuery<DoneQuery>,
) -> Result<Markup, PageError> {
    let scope = if query.scope.as_deref() == Some("mine") {
        Scope::Mine
    } else {
        Scope::Visible
    };
    let views = workloads::list(&state, &caller.0.context(&source), scope, false).await?;
    let (active, ended): (Vec<_>, Vec<_>) = views
        .into_iter()
        .partition(|v| v.workload.state.is_active());
    let mut active = active;
    active.sort_by_key(|v| {
        (
            v.workload.state != WorkloadState::Running,
            v.workload.state != WorkloadState::Starting,
            v.position.unwrap_or(usize::MAX),
            v.workload.id,
        )
    });
    let content = html! {
        h1 { "Queue" }
        p {
            a.button href="/environments/new" { "New environment" } " "
            a.button href="/jobs/new" style="background:#e8ecf4;color:#1d2433" { "Submit a job" }
            @if caller.0.user.role != Role::Student { " " a href=(if scope == Scope::Mine { "/queue" } else { "/queue?scope=mine" }) { (if scope == Scope::Mine { "Show everything I can see" } else { "Show only mine" }) } }
        }
        h2 { "Running and waiting" }
        (queue_table(&caller, &active))
        h2 { "Ended" }
        (queue_table(&caller, &ended[..ended.len().min(100)]))
    };
    Ok(page(
        &caller,
        "/queue",
        "Queue",
        notice_for(query.done.as_deref()),
        content,
    ))
}

#[derive(Deserialize, Default)]
pub struct JobForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    workdir: String,
    #[serde(default)]
    cpus: String,
    #[serde(default)]
    memory: String,
    #[serde(default)]
    gpus: String,
    #[serde(default)]
    time_limit: String,
    #[serde(default)]
    env: String,
}

fn job_form(caller: &PageCaller, form: &JobForm) -> Markup {
    let value = |v: &str, default: &'static str| {
        if v.is_empty() {
            default.to_string()
        } else {
            v.to_string()
        }
    };
    html! {
        h1 { "Submit a job" }
        p.muted { "A job runs a command in your workspace without you watching it: training, inference, preprocessing. It waits in the queue until the resources are free." }
        form.card #job-form method="post" action="/jobs" {
            (csrf_field(caller))
            label for="command" { "Command " span.hint { "(as you would type it, e.g. python train.py --epochs 5)" } }
            input #command type="text" name="command" value=(form.command) required placeholder="python train.py";
            div.row {
                div { label for="job_name" { "Name " span.hint { "(optional)" } } input #job_name type="text" name="name" value=(form.name) maxlength="100"; }
                div { label for="workdir" { "Folder in your workspace " span.hint { "(optional)" } } input #workdir type="text" name="workdir" value=(form.workdir) placeholder="projects/unet"; }
            }
            div.row {
                div { label for="cpus" { "CPU cores" } input #cpus type="text" name="cpus" value=(value(&form.cpus, "1")); }
                div { label for="memory" { "Memory" } input #memory type="text" name="memory" value=(value(&form.memory, "2G")); }
                div { label for="gpus" { "GPUs" } input #gpus type="number" min="0" max="64" name="gpus" value=(value(&form.gpus, "0")); }
                div { label for="time_limit" { "Time limit" } input #time_limit type="text" name="time_limit" value=(value(&form.time_limit, "1h")); }
            }
            label for="env" { "Environment variables " span.hint { "(optional, one NAME=value per line)" } }
            textarea #env name="env" { (form.env) }
            p { button type="submit" { "Submit job" } }
        }
    }
}

pub async fn job_page(caller: PageCaller) -> Markup {
    page(
        &caller,
        "/queue",
        "Submit a job",
        None,
        job_form(&caller, &JobForm::default()),
    )
}

/// Splits a command line like a shell would for simple cases: spaces separate words,
/// single or double quotes keep spaces inside a word.
fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote in the command is not closed".into());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

pub async fn job_submit(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<JobForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let failed = |message: String, form: &JobForm| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            page(
                &caller,
                "/queue",
                "Submit a job",
                Some(Notice::Error(message)),
                job_form(&caller, form),
            ),
        )
            .into_response()
    };
    let argv = match split_command(&form.command) {
        Ok(argv) => argv,
        Err(message) => return Ok(failed(message, &form)),
    };
    let mut env = BTreeMap::new();
    for line in form.env.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((key, value)) => {
                env.insert(key.trim().to_string(), value.to_string());
            }
            None => return Ok(failed(format!("'{line}' is not NAME=value"), &form)),
        }
    }
    let Ok(cpus) = form.cpus.trim().parse::<f64>() else {
        return Ok(failed(
            "CPU cores must be a number such as 1 or 0.5".into(),
            &form,
        ));
    };
    let gpus = if form.gpus.trim().is_empty() {
        0
    } else {
        match form.gpus.trim().parse::<u32>() {
            Ok(gpus) => gpus,
            Err(_) => {
                return Ok(failed(
                    "GPUs must be a whole number such as 0 or 1".into(),
                    &form,
                ));
            }
        }
    };
    let request = JobRequest {
        name: Some(form.name.clone()).filter(|n| !n.trim().is_empty()),
        argv,
        env,
        workdir: form.workdir.clone(),
        cpus,
        memory: form.memory.clone(),
        gpus,
        time_limit: Some(form.time_limit.clone()).filter(|t| !t.trim().is_empty()),
        class_id: None,
    };
    match workloads::submit_job(&state, &caller.0.context(&source), request).await {
        Ok(view) => Ok(
            Redirect::to(&format!("/workloads/{}?done=submitted", view.workload.id))
                .into_response(),
        ),
        Err(error) if error.status.is_client_error() && error.status != StatusCode::FORBIDDEN => {
            Ok(failed(error.message, &form))
        }
        Err(error) => Err(error.into()),
    }
}

fn environment_form(state: &AppState, caller: &PageCaller) -> Result<Markup, ApiError> {
    let sizes = workloads::sizes(state)?;
    Ok(html! {
        h1 { "New environment" }
        form.card #environment-form method="post" action="/environments" {
            (csrf_field(caller))
            h2 { "1. Environment" }
            label { input type="radio" name="instance_type" value="jupyterlab" checked; " JupyterLab — notebooks, a terminal and your workspace files" }
            h2 { "2. Size" }
            @for (i, size) in sizes.iter().enumerate() {
                label { input type="radio" name="size" value=(size.name) checked[i == 0];
                    " " strong { (size.name) } " — " (size.cpu_millis as f64 / 1000.0) " CPU, " (memory_text(size.memory_mib as i64))
                    @if size.gpus > 0 { ", " (size.gpus) " GPU" } }
            }
            h2 { "3. Time" }
            select name="time_limit" aria-label="Time limit" {
                option value="1h" { "1 hour" } option value="2h" selected { "2 hours" } option value="4h" { "4 hours" } option value="8h" { "8 hours" }
            }
            p.muted { "When the time is up the environment stops; everything saved in your workspace stays." }
            p { button type="submit" { "Launch" } }
        }
    })
}

pub async fn environment_page(
    State(state): State<AppState>,
    caller: PageCaller,
) -> Result<Markup, PageError> {
    let content = environment_form(&state, &caller)?;
    Ok(page(&caller, "/queue", "New environment", None, content))
}

#[derive(Deserialize)]
pub struct EnvironmentForm {
    csrf: String,
    instance_type: String,
    size: String,
    time_limit: String,
}

pub async fn environment_launch(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageForm(form): PageForm<EnvironmentForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    let request = InstanceRequest {
        instance_type: form.instance_type,
        size: form.size,
        time_limit: Some(form.time_limit),
        class_id: None,
    };
    match workloads::launch_instance(&state, &caller.0.context(&source), request).await {
        Ok(view) => Ok(
            Redirect::to(&format!("/workloads/{}?done=launched", view.workload.id)).into_response(),
        ),
        Err(error) if error.status.is_client_error() && error.status != StatusCode::FORBIDDEN => {
            let content = environment_form(&state, &caller)?;
            Ok((
                error.status,
                page(
                    &caller,
                    "/queue",
                    "New environment",
                    Some(Notice::Error(error.message)),
                    content,
                ),
            )
                .into_response())
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn workload_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageQuery(query): PageQuery<DoneQuery>,
) -> Result<Markup, PageError> {
    let view = workloads::get(&state, &caller.0.context(&source), id).await?;
    let w = &view.workload;
    let admin = caller.0.user.role == Role::Admin;
    let content = html! {
        p { a href="/queue" { "← Queue" } }
        h1 #workload-name { (w.name) " " (state_badge(&view)) }
        @if w.state.is_active() {
            // A plain refresh keeps the state current without any script.
            meta http-equiv="refresh" content="5";
        }
        div.card {
            p { (when(&view)) }
            @if let Some(url) = &view.open_url { p { a.button #open href=(url) target="_blank" rel="noopener" { "Open JupyterLab" } } }
            @if w.kind == "instance" && matches!(w.state, WorkloadState::Queued | WorkloadState::Starting) { p.muted { "Starting JupyterLab… this page refreshes by itself." } }
            @if !w.reason.is_empty() { p #reason { strong { "Why: " } (w.reason) } }
            table {
                tr { th { "Owner" } td { (w.owner) } }
                tr { th { "Type" } td { (if w.kind == "instance" { "JupyterLab environment" } else { "job" }) } }
                @if w.kind == "job" { tr { th { "Command" } td { code { (shell_words(&w.argv)) } } } }
                @if w.kind == "job" && !w.workdir.is_empty() { tr { th { "Folder" } td { (w.workdir) } } }
                tr { th { "Resources" } td { (resources(&view)) } }
                @if let Some(devices) = &w.gpu_devices { @if !devices.is_empty() { tr { th { "GPU devices" } td { (devices.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")) } } } }
                @if !w.enforcement.is_empty() { tr { th { "Limits" } td { (w.enforcement) } } }
                tr { th { "Created" } td { (human(w.created_at)) } }
                @if let Some(t) = w.started_at { tr { th { "Started" } td { (human(t)) } } }
                @if let Some(t) = w.ended_at { tr { th { "Ended" } td { (human(t)) } } }
                @if let Some(code) = w.exit_code { tr { th { "Exit code" } td { (code) } } }
            }
            @if w.state.is_active() && (w.owner_id == caller.0.user.id || admin) {
                form method="post" action={"/workloads/" (w.id) "/stop"} {
                    (csrf_field(&caller)) button.danger type="submit" { @if w.state == WorkloadState::Queued { "Cancel" } @else { "Stop" } }
                }
            }
        }
        h2 { "Output" }
        @if w.state.is_active() {
            iframe #log title="Output" src={"/workloads/" (w.id) "/log?follow=true"} style="width:100%;height:28rem;border:1px solid #d9dee8;border-radius:6px;background:#fff" {}
        } @else {
            iframe #log title="Output" src={"/workloads/" (w.id) "/log"} style="width:100%;height:28rem;border:1px solid #d9dee8;border-radius:6px;background:#fff" {}
        }
        p.muted { a href={"/workloads/" (w.id) "/log"} { "Open the whole output as text" } }
    };
    Ok(page(
        &caller,
        "/queue",
        &w.name,
        // "In the queue" or "starting" no longer holds once the workload has ended.
        notice_for(query.done.as_deref())
            .filter(|_| w.state.is_active() || query.done.as_deref() == Some("stopped")),
        content,
    ))
}

/// A command line as it could be typed again: words with spaces or quotes are quoted.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Deserialize, Default)]
pub struct LogQuery {
    follow: Option<bool>,
}

pub async fn workload_log(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageQuery(query): PageQuery<LogQuery>,
) -> Result<Response, PageError> {
    Ok(crate::api::workloads::log_response(
        state,
        caller.0,
        source,
        id,
        0,
        query.follow.unwrap_or(false),
    )
    .await?)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn workload_stop(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    workloads::stop(&state, &caller.0.context(&source), id).await?;
    Ok(Redirect::to(&format!("/workloads/{id}?done=stopped")).into_response())
}

#[derive(Deserialize)]
pub struct QueueForm {
    csrf: String,
    action: QueueAction,
}

pub async fn workload_queue(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PagePath(id): PagePath<i64>,
    PageForm(form): PageForm<QueueForm>,
) -> Result<Response, PageError> {
    caller.check_csrf(&form.csrf)?;
    workloads::queue_action(&state, &caller.0.context(&source), id, form.action).await?;
    Ok(Redirect::to("/queue?done=queue_changed").into_response())
}

#[derive(Deserialize, Default)]
pub struct WorkspaceQuery {
    path: Option<String>,
    done: Option<String>,
}

pub async fn workspace_page(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageQuery(query): PageQuery<WorkspaceQuery>,
) -> Result<Markup, PageError> {
    let path = query.path.clone().unwrap_or_default();
    let entries = crate::workspace::list(&state, &caller.0.context(&source), None, &path).await?;
    let parent = std::path::Path::new(&path)
        .parent()
        .map(|p| p.display().to_string());
    let content = html! {
        h1 { "Workspace" }
        p.muted { "Your own folder. Every environment and job you start sees it as its home folder, and everything in it stays when they end." }
        p { "Folder: " strong #workspace-path { "/" (path) }
            @if let Some(parent) = parent.filter(|_| !path.is_empty()) { " · " a href={"/workspace?path=" (url_escape(&parent))} { "up one folder" } } }
        table #files {
            thead { tr { th { "Name" } th { "Size" } th { "Changed" } } }
            tbody {
                @for entry in &entries {
                    tr {
                        td { @if entry.kind == "directory" { a href={"/workspace?path=" (url_escape(&entry.path))} { (entry.name) "/" } }
                             @else { a href={"/workspace/file?path=" (url_escape(&entry.path))} download { (entry.name) } } }
                        td { @if entry.kind == "file" { (entry.size_bytes) " bytes" } }
                        td { (entry.modified.clone().unwrap_or_default().replace('T', " ").trim_end_matches('Z')) }
                    }
                }
            }
        }
        @if entries.is_empty() { p.muted { "This folder is empty." } }
        form.card #upload method="post" action={"/workspace/upload?path=" (url_escape(&path))} enctype="multipart/form-data" {
            (csrf_field(&caller))
            label for="file" { "Upload a file into this folder" }
            div.row { div { input #file type="file" name="file" required; } div.shrink { button type="submit" { "Upload" } } }
        }
    };
    Ok(page(
        &caller,
        "/workspace",
        "Workspace",
        notice_for(query.done.as_deref()),
        content,
    ))
}

pub async fn workspace_download(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageQuery(query): PageQuery<WorkspaceQuery>,
) -> Result<Response, PageError> {
    let ctx = caller.0.context(&source);
    Ok(crate::api::workloads::file_response(
        &state,
        &ctx,
        None,
        query.path.as_deref().unwrap_or(""),
    )
    .await?)
}

pub async fn workspace_upload(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    caller: PageCaller,
    PageQuery(query): PageQuery<WorkspaceQuery>,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    let folder = query.path.clone().unwrap_or_default();
    let limit = workloads::runtime(&state)?.settings.max_upload_bytes;
    let mut csrf = String::new();
    let mut saved = false;
    let bad =
        |message: &str| PageError(ApiError::bad_request("invalid_upload", message.to_string()));
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|_| bad("the upload could not be read; try again"))?
    {
        match field.name() {
            Some("csrf") => {
                csrf = field
                    .text()
                    .await
                    .map_err(|_| bad("the upload could not be read"))?
            }
            Some("file") => {
                caller.check_csrf(&csrf)?;
                let name = field
                    .file_name()
                    .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_string())
                    .unwrap_or_default();
                if name.is_empty() {
                    return Err(bad("choose a file to upload"));
                }
                let mut bytes = Vec::new();
                let mut field = field;
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|_| bad("the upload was interrupted; try again"))?
                {
                    if bytes.len() + chunk.len() > limit {
                        return Err(PageError(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "file_too_large",
                            format!(
                                "the file is larger than the {} MiB allowed for one upload",
                                limit / (1024 * 1024)
                            ),
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                let relative = if folder.is_empty() {
                    name
                } else {
                    format!("{folder}/{name}")
                };
                crate::workspace::save_file(
                    &state,
                    &caller.0.context(&source),
                    None,
                    &relative,
                    &bytes,
                )
                .await?;
                saved = true;
            }
            _ => {}
        }
    }
    if !saved {
        return Err(bad("choose a file to upload"));
    }
    Ok(Redirect::to(&format!(
        "/workspace?path={}&done=uploaded",
        url_escape(&folder)
    ))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::split_command;

    #[test]
    fn commands_are_shown_as_they_could_be_typed_again() {
        let argv: Vec<String> = ["sh", "-c", "echo hi > a.txt", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            super::shell_words(&argv),
            "sh -c 'echo hi > a.txt' 'it'\\''s'"
        );
        assert_eq!(
            split_command(&super::shell_words(&argv[..3])).unwrap(),
            argv[..3]
        );
    }

    #[test]
    fn commands_split_on_spaces_and_keep_quoted_words() {
        assert_eq!(
            split_command("python train.py --lr 0.1").unwrap(),
            ["python", "train.py", "--lr", "0.1"]
        );
        assert_eq!(
            split_command("echo 'a b' \"c d\" ''").unwrap(),
            ["echo", "a b", "c d", ""]
        );
        assert!(split_command("echo 'unclosed").is_err());
        assert!(split_command("   ").unwrap().is_empty());
    }
}
