//! Workload operations shared by the API, the pages and the CLI: submitting jobs,
//! launching instances, the queue view, stopping, admin queue control, and logs.
//! Like [`crate::service`], every operation checks permission and writes its audit entry.

use crate::AppState;
use crate::error::ApiError;
use crate::runtime::{Runtime, human_duration};
use crate::service::Context;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};
use voxhub_core::InvalidInput;
use voxhub_core::audit::Outcome;
use voxhub_core::duration::parse_duration_s;
use voxhub_core::names;
use voxhub_core::permissions;
use voxhub_core::resources::{cpus_from_cores, parse_memory_mib};
use voxhub_core::role::{ClassRole, Role};
use voxhub_scheduler as scheduler;
use voxhub_store::now_s;
use voxhub_store::workloads::{NewWorkload, State, Workload, WorkloadFilter};

pub const MAX_ARGS: usize = 1000;
pub const MAX_ARG_BYTES: usize = 8192;
pub const MAX_ENV: usize = 100;

fn default_cpus() -> f64 {
    1.0
}
fn default_memory() -> String {
    "1G".into()
}

/// A batch job to run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// A name to recognise it by; defaults to the program's name.
    pub name: Option<String>,
    /// The program and its arguments, e.g. `["python", "train.py", "--epochs", "5"]`.
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory relative to your workspace (default: the workspace itself).
    #[serde(default)]
    pub workdir: String,
    /// CPU cores, e.g. 2 or 0.5 (default 1).
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// Memory, e.g. `4G` or `512M` (default `1G`).
    #[serde(default = "default_memory")]
    pub memory: String,
    /// Whole GPUs (default 0).
    #[serde(default)]
    pub gpus: u32,
    /// Time limit, e.g. `2h` or `30m` (default: the platform's default, usually 2 h).
    pub time_limit: Option<String>,
    /// The class this work is for (default: your only class, if you are in exactly one).
    pub class_id: Option<i64>,
}

fn default_instance_type() -> String {
    "jupyterlab".into()
}

/// An interactive environment to launch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceRequest {
    /// `jupyterlab` (the default and, for now, the only type).
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// One of the sizes from `GET /api/v1/sizes`, e.g. `small`.
    pub size: String,
    /// Time limit, e.g. `2h` (default: the platform's default).
    pub time_limit: Option<String>,
    pub class_id: Option<i64>,
}

/// A workload as shown in the queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkloadView {
    #[serde(flatten)]
    pub workload: Workload,
    /// The state in words, e.g. `Timed out`.
    pub state_label: String,
    /// 1-based place in line while queued.
    pub position: Option<usize>,
    #[schema(format = DateTime)]
    pub estimated_start: Option<String>,
    /// Seconds left before the time limit while starting or running.
    pub remaining_s: Option<i64>,
    /// Where to open an interactive instance (while it runs).
    pub open_url: Option<String>,
}

/// Which workloads to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Your own.
    Mine,
    /// Everything you may see: yours, your classes' (teachers), everyone's (admins).
    #[default]
    Visible,
}

pub fn runtime(state: &AppState) -> Result<&Runtime, ApiError> {
    state.runtime.as_deref().ok_or_else(|| {
        ApiError::unavailable("this server does not run workloads; ask your administrator")
    })
}

fn check_argv(argv: &[String]) -> Result<(), InvalidInput> {
    if argv.is_empty() || argv[0].trim().is_empty() {
        return Err(InvalidInput::new(
            "argv",
            "give the program to run, e.g. [\"python\", \"train.py\"]",
        ));
    }
    if argv.len() > MAX_ARGS {
        return Err(InvalidInput::new(
            "argv",
            format!("a command may have at most {MAX_ARGS} arguments"),
        ));
    }
    if argv
        .iter()
        .any(|a| a.len() > MAX_ARG_BYTES || a.contains('\0'))
    {
        return Err(InvalidInput::new(
            "argv",
            format!(
                "each argument must be at most {MAX_ARG_BYTES} bytes and contain no NUL character"
            ),
        ));
    }
    Ok(())
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), InvalidInput> {
    if env.len() > MAX_ENV {
        return Err(InvalidInput::new(
            "env",
            format!("at most {MAX_ENV} environment variables"),
        ));
    }
    for (key, value) in env {
        let valid_name = !key.is_empty()
            && key.len() <= 128
            && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(InvalidInput::new(
                "env",
                format!(
                    "'{}' is not a valid variable name; use letters, digits and _",
                    key.chars().take(40).collect::<String>()
                ),
            ));
        }
        if key.starts_with("VOXHUB_") || key == "HOME" || key == "CUDA_VISIBLE_DEVICES" {
            return Err(InvalidInput::new(
                "env",
                format!("{key} is set by voxhub and cannot be changed"),
            ));
        }
        if value.len() > MAX_ARG_BYTES || value.contains('\0') {
            return Err(InvalidInput::new(
                "env",
                format!("the value of {key} is too long or contains a NUL character"),
            ));
        }
    }
    Ok(())
}

/// A path inside a workspace: relative, no `..`, no root; `""` is the workspace itself.
pub fn check_relative_path(field: &'static str, raw: &str) -> Result<String, InvalidInput> {
    let trimmed = raw.trim().trim_start_matches("./");
    if trimmed.len() > 1024 || trimmed.contains('\0') {
        return Err(InvalidInput::new(
            field,
            "the path is too long or contains a NUL character",
        ));
    }
    let path = Path::new(trimmed);
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(InvalidInput::new(
                    field,
                    format!(
                        "'{}' leaves your workspace; give a folder inside it, e.g. projects/unet",
                        raw.chars().take(60).collect::<String>()
                    ),
                ));
            }
        }
    }
    Ok(trimmed.trim_end_matches('/').to_string())
}

fn check_time_limit(runtime: &Runtime, raw: Option<&str>) -> Result<i64, InvalidInput> {
    let limit = match raw {
        Some(raw) => parse_duration_s("time_limit", raw)?,
        None => runtime.settings.default_time_limit_s,
    };
    if limit > runtime.settings.max_time_limit_s {
        return Err(InvalidInput::new(
            "time_limit",
            format!(
                "the longest time limit allowed here is {}; ask for less or split the work",
                human_duration(runtime.settings.max_time_limit_s)
            ),
        ));
    }
    Ok(limit)
}

/// The class a workload belongs to: the one asked for (the caller must be in it), or the
/// caller's only class.
async fn class_for(
    state: &AppState,
    ctx: &Context<'_>,
    requested: Option<i64>,
) -> Result<Option<i64>, ApiError> {
    let memberships = state.store.memberships_of(ctx.caller.user.id).await?;
    match requested {
        Some(class_id) => {
            if memberships.iter().any(|m| m.id == class_id) || ctx.caller.user.role == Role::Admin {
                state.store.class(class_id).await?;
                Ok(Some(class_id))
            } else {
                Err(ApiError::forbidden(format!(
                    "you are not in class {class_id}, so you cannot run work for it"
                )))
            }
        }
        None if memberships.len() == 1 => Ok(Some(memberships[0].id)),
        None => Ok(None),
    }
}

struct Submission<'a> {
    kind: &'a str,
    instance_type: Option<&'a str>,
    name: String,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    workdir: String,
    request: scheduler::Request,
    time_limit_s: i64,
    class_id: Option<i64>,
}

async fn submit(
    state: &AppState,
    ctx: &Context<'_>,
    submission: Submission<'_>,
) -> Result<WorkloadView, ApiError> {
    let runtime = runtime(state)?;
    scheduler::check_fits_somewhere(std::slice::from_ref(&runtime.node), &submission.request)
        .map_err(|message| {
            ApiError::from(InvalidInput::new(
                "resources",
                format!("this can never run here: {message}"),
            ))
        })?;
    let priority = runtime.settings.priority_of(ctx.caller.user.role);
    let mut tx = state.store.begin().await?;
    let id = tx
        .insert_workload(&NewWorkload {
            owner_id: ctx.caller.user.id,
            class_id: submission.class_id,
            kind: submission.kind,
            instance_type: submission.instance_type,
            name: &submission.name,
            priority,
            argv: &submission.argv,
            env: &submission.env,
            workdir: &submission.workdir,
            cpu_millis: submission.request.cpu_millis as i64,
            memory_mib: submission.request.memory_mib as i64,
            gpus: submission.request.gpus as i32,
            time_limit_s: submission.time_limit_s,
        })
        .await?;
    tx.audit(ctx.entry(
        "workload.submit",
        format!("workload:{id} {}", submission.name),
        Outcome::Success,
        format!(
            "{} {} cpu, {} MiB, {} GPU, {}",
            submission.kind,
            submission.request.cpu_millis as f64 / 1000.0,
            submission.request.memory_mib,
            submission.request.gpus,
            human_duration(submission.time_limit_s)
        ),
        false,
    ))
    .await?;
    tx.commit().await?;
    runtime.wake.notify_one();
    get(state, ctx, id).await
}

pub async fn submit_job(
    state: &AppState,
    ctx: &Context<'_>,
    request: JobRequest,
) -> Result<WorkloadView, ApiError> {
    let runtime = runtime(state)?;
    check_argv(&request.argv)?;
    check_env(&request.env)?;
    let workdir = check_relative_path("workdir", &request.workdir)?;
    let name = match &request.name {
        Some(name) if !name.trim().is_empty() => names::plain_text("name", name, 100)?,
        _ => Path::new(&request.argv[0])
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(100).collect())
            .unwrap_or_else(|| "job".into()),
    };
    if request.gpus > 64 {
        return Err(InvalidInput::new("gpus", "ask for at most 64 GPUs").into());
    }
    let scheduler_request = scheduler::Request {
        cpu_millis: cpus_from_cores("cpus", request.cpus)?,
        memory_mib: parse_memory_mib("memory", &request.memory)?,
        gpus: request.gpus,
    };
    let time_limit_s = check_time_limit(runtime, request.time_limit.as_deref())?;
    let class_id = class_for(state, ctx, request.class_id).await?;
    submit(
        state,
        ctx,
        Submission {
            kind: "job",
            instance_type: None,
            name,
            argv: request.argv,
            env: request.env,
            workdir,
            request: scheduler_request,
            time_limit_s,
            class_id,
        },
    )
    .await
}

pub async fn launch_instance(
    state: &AppState,
    ctx: &Context<'_>,
    request: InstanceRequest,
) -> Result<WorkloadView, ApiError> {
    let runtime = runtime(state)?;
    if request.instance_type != "jupyterlab" {
        return Err(InvalidInput::new(
            "instance_type",
            format!(
                "there is no environment type '{}'; available: jupyterlab",
                request.instance_type.chars().take(40).collect::<String>()
            ),
        )
        .into());
    }
    let size = runtime
        .settings
        .sizes
        .iter()
        .find(|s| s.name == request.size.trim())
        .ok_or_else(|| {
            let names: Vec<&str> = runtime
                .settings
                .sizes
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            ApiError::from(InvalidInput::new(
                "size",
                format!(
                    "there is no size '{}'; choose one of: {}",
                    request.size.chars().take(40).collect::<String>(),
                    names.join(", ")
                ),
            ))
        })?;
    let time_limit_s = check_time_limit(runtime, request.time_limit.as_deref())?;
    let class_id = class_for(state, ctx, request.class_id).await?;
    submit(
        state,
        ctx,
        Submission {
            kind: "instance",
            instance_type: Some("jupyterlab"),
            name: format!("JupyterLab ({})", size.name),
            argv: vec!["jupyter".into(), "lab".into()],
            env: BTreeMap::new(),
            workdir: String::new(),
            request: scheduler::Request {
                cpu_millis: size.cpu_millis,
                memory_mib: size.memory_mib,
                gpus: size.gpus,
            },
            time_limit_s,
            class_id,
        },
    )
    .await
}

/// Adds what the queue page shows to each workload: position, estimated start, time left.
async fn views(state: &AppState, workloads: Vec<Workload>) -> Result<Vec<WorkloadView>, ApiError> {
    let now = now_s();
    let places: HashMap<i64, scheduler::Place> = match state.runtime.as_deref() {
        Some(runtime) if workloads.iter().any(|w| w.state == State::Queued) => {
            runtime.queue_places(&state.store).await?
        }
        _ => HashMap::new(),
    };
    Ok(workloads
        .into_iter()
        .map(|w| {
            let place = places.get(&w.id).filter(|_| w.state == State::Queued);
            let remaining_s = matches!(w.state, State::Starting | State::Running)
                .then(|| (w.started_at.unwrap_or(now) + w.time_limit_s - now).max(0));
            let open_url = (w.kind == "instance" && w.state == State::Running)
                .then(|| format!("{}lab", Runtime::instance_base(w.id)));
            WorkloadView {
                state_label: w.state.label().into(),
                position: place.map(|p| p.position),
                estimated_start: place
                    .and_then(|p| p.estimated_start_s)
                    .map(voxhub_core::timefmt::rfc3339),
                remaining_s,
                open_url,
                workload: w,
            }
        })
        .collect())
}

/// Whether the caller teaches the workload's class.
async fn teaches(
    state: &AppState,
    ctx: &Context<'_>,
    workload: &Workload,
) -> Result<bool, ApiError> {
    Ok(match workload.class_id {
        Some(class_id) => {
            state.store.membership(class_id, ctx.caller.user.id).await? == Some(ClassRole::Teacher)
        }
        None => false,
    })
}

/// A workload the caller may see.
pub async fn visible(state: &AppState, ctx: &Context<'_>, id: i64) -> Result<Workload, ApiError> {
    let workload = state.store.workload(id).await?;
    let teaches = teaches(state, ctx, &workload).await?;
    let check = permissions::can_view_workload(&ctx.caller.actor(), workload.owner_id, teaches);
    crate::service::allowed(
        ctx,
        state,
        "workload.read",
        &format!("workload:{} {}", workload.id, workload.name),
        check,
    )
    .await?;
    Ok(workload)
}

pub async fn get(state: &AppState, ctx: &Context<'_>, id: i64) -> Result<WorkloadView, ApiError> {
    let workload = visible(state, ctx, id).await?;
    Ok(views(state, vec![workload]).await?.remove(0))
}

pub async fn list(
    state: &AppState,
    ctx: &Context<'_>,
    scope: Scope,
    active_only: bool,
) -> Result<Vec<WorkloadView>, ApiError> {
    let user = &ctx.caller.user;
    let mut filter = WorkloadFilter {
        active_only,
        limit: 500,
        ..Default::default()
    };
    match (scope, user.role) {
        (Scope::Mine, _) | (Scope::Visible, Role::Student) => filter.owner_id = Some(user.id),
        (Scope::Visible, Role::Admin) => {}
        (Scope::Visible, Role::Teacher) => {
            let taught: Vec<i64> = state
                .store
                .memberships_of(user.id)
                .await?
                .into_iter()
                .filter(|m| m.role == ClassRole::Teacher)
                .map(|m| m.id)
                .collect();
            filter.class_ids = Some(taught);
            filter.or_owner_id = Some(user.id);
        }
    }
    let workloads = state.store.workloads(&filter).await?;
    views(state, workloads).await
}

/// Stops a running workload or cancels a queued one (owner or admin).
pub async fn stop(state: &AppState, ctx: &Context<'_>, id: i64) -> Result<WorkloadView, ApiError> {
    let workload = state.store.workload(id).await?;
    let target = format!("workload:{} {}", workload.id, workload.name);
    let check = permissions::can_stop_workload(&ctx.caller.actor(), workload.owner_id);
    crate::service::allowed(ctx, state, "workload.stop", &target, check).await?;
    if !workload.state.is_active() {
        return Err(ApiError::conflict(format!(
            "this workload has already ended ({}); nothing to stop",
            workload.state.label()
        )));
    }
    let mut tx = state.store.begin().await?;
    tx.request_stop(id).await?;
    let admin_power =
        ctx.caller.user.role == Role::Admin && workload.owner_id != ctx.caller.user.id;
    tx.audit(ctx.entry(
        "workload.stop",
        target,
        Outcome::Success,
        format!("was {}", workload.state.label()),
        admin_power,
    ))
    .await?;
    tx.commit().await?;
    let runtime = runtime(state)?;
    if matches!(workload.state, State::Starting | State::Running) {
        match runtime.executor.stop(id).await {
            // Still being started (its data views are being built, say): the stop request
            // is recorded, and every reconcile pass sends it again until it has ended.
            Ok(()) | Err(voxhub_exec::ExecError::NotFound(_)) => {}
            Err(error) => return Err(ApiError::internal(error)),
        }
    }
    runtime.wake.notify_one();
    get(state, ctx, id).await
}

/// Admin queue control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueAction {
    Hold,
    Release,
    Up,
    Down,
}

pub async fn queue_action(
    state: &AppState,
    ctx: &Context<'_>,
    id: i64,
    action: QueueAction,
) -> Result<WorkloadView, ApiError> {
    let target = format!("workload:{id}");
    let name = format!("workload.{}", format!("{action:?}").to_lowercase());
    let check =
        permissions::require_admin(&ctx.caller.actor(), "hold, release or reorder the queue");
    crate::service::allowed(ctx, state, &name, &target, check).await?;
    let workload = state.store.workload(id).await?;
    if workload.state != State::Queued {
        return Err(ApiError::conflict(format!(
            "only queued workloads can be held or moved; this one is {}",
            workload.state.label()
        )));
    }
    let mut tx = state.store.begin().await?;
    match action {
        QueueAction::Hold | QueueAction::Release => {
            tx.set_held(id, action == QueueAction::Hold).await?;
        }
        QueueAction::Up | QueueAction::Down => {
            // Swap places with the neighbour of the same priority in the queue.
            let active = state.store.active_workloads().await?;
            let mut queued: Vec<&Workload> = active
                .iter()
                .filter(|w| w.state == State::Queued && w.priority == workload.priority)
                .collect();
            queued.sort_by_key(|w| (w.queue_order, w.id));
            let index = queued.iter().position(|w| w.id == id).unwrap_or(0);
            let neighbour = match action {
                QueueAction::Up if index > 0 => Some(queued[index - 1]),
                QueueAction::Down => queued.get(index + 1).copied(),
                _ => None,
            };
            if let Some(other) = neighbour {
                tx.set_queue_order(id, other.queue_order).await?;
                tx.set_queue_order(other.id, workload.queue_order).await?;
            }
        }
    }
    tx.audit(ctx.entry(
        &name,
        format!("workload:{} {}", workload.id, workload.name),
        Outcome::Success,
        String::new(),
        true,
    ))
    .await?;
    tx.commit().await?;
    runtime(state)?.wake.notify_one();
    get(state, ctx, id).await
}

/// Reads a workload's log from `offset`.
pub async fn log_chunk(
    state: &AppState,
    ctx: &Context<'_>,
    id: i64,
    offset: u64,
    max_bytes: usize,
) -> Result<(Workload, voxhub_exec::LogChunk), ApiError> {
    let workload = visible(state, ctx, id).await?;
    let runtime = runtime(state)?;
    match runtime.executor.logs(id, offset, max_bytes).await {
        Ok(chunk) => Ok((workload, chunk)),
        Err(voxhub_exec::ExecError::NotFound(_)) => Ok((
            workload,
            voxhub_exec::LogChunk {
                data: Vec::new(),
                next_offset: offset,
                restarted: false,
            },
        )),
        Err(error) => Err(ApiError::internal(error)),
    }
}

/// The sizes people can choose for an instance.
pub fn sizes(state: &AppState) -> Result<Vec<crate::runtime::Size>, ApiError> {
    Ok(runtime(state)?.settings.sizes.clone())
}
