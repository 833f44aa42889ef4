//! The workload runtime: the executor, the node's capacity, the settings, and the
//! reconcile loop. The database holds what should run; each [`tick`] compares it with what
//! the executor reports, records outcomes, and starts what the scheduler admits. Every
//! step is idempotent, so a crash or restart at any point recovers on the next tick.

use crate::AppState;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use voxhub_core::role::Role;
use voxhub_exec::{Executor, Phase, WorkloadSpec};
use voxhub_scheduler as scheduler;
use voxhub_store::now_s;
use voxhub_store::workloads::{State, Workload};

/// An instance size people can pick in the launch wizard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Size {
    pub name: String,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub gpus: u32,
}

/// Settings of the workload runtime.
#[derive(Debug, Clone)]
pub struct WorkloadSettings {
    pub max_time_limit_s: i64,
    pub default_time_limit_s: i64,
    pub grace_s: u64,
    pub log_cap_bytes: u64,
    pub policy: scheduler::Policy,
    pub priority_admin: i32,
    pub priority_teacher: i32,
    pub priority_student: i32,
    /// The command that runs JupyterLab (`jupyter`, or a path into a virtual environment).
    pub jupyter_command: String,
    pub instance_startup_timeout_s: i64,
    pub sizes: Vec<Size>,
    /// Largest file accepted by a workspace upload.
    pub max_upload_bytes: usize,
    /// When set (the server runs as root), each user's workloads run as the operating-system
    /// user and group `base + user id`, and their workspace belongs to that user alone.
    pub run_as_base_uid: Option<u32>,
}

impl Default for WorkloadSettings {
    fn default() -> Self {
        Self {
            max_time_limit_s: 12 * 3600,
            default_time_limit_s: 2 * 3600,
            grace_s: 10,
            log_cap_bytes: 16 * 1024 * 1024,
            policy: scheduler::Policy::default(),
            priority_admin: 30,
            priority_teacher: 20,
            priority_student: 10,
            jupyter_command: "jupyter".into(),
            instance_startup_timeout_s: 300,
            sizes: vec![
                Size {
                    name: "small".into(),
                    cpu_millis: 1000,
                    memory_mib: 2048,
                    gpus: 0,
                },
                Size {
                    name: "medium".into(),
                    cpu_millis: 2000,
                    memory_mib: 4096,
                    gpus: 0,
                },
            ],
            max_upload_bytes: 512 * 1024 * 1024,
            run_as_base_uid: None,
        }
    }
}

impl WorkloadSettings {
    pub fn priority_of(&self, role: Role) -> i32 {
        match role {
            Role::Admin => self.priority_admin,
            Role::Teacher => self.priority_teacher,
            Role::Student => self.priority_student,
        }
    }
}

/// Everything the workload side of the platform needs.
pub struct Runtime {
    pub executor: Arc<dyn Executor>,
    pub node: scheduler::Node,
    pub settings: WorkloadSettings,
    /// Where each user's workspace directory lives (`<root>/<username>`).
    pub workspaces_root: PathBuf,
    pub wake: tokio::sync::Notify,
    /// One reconcile pass at a time: a pass that admits a workload starts it before another
    /// pass may observe it.
    tick_lock: tokio::sync::Mutex<()>,
    /// Estimated starts from the last look-ahead simulation and when it ran; the simulation
    /// is costly on a large cluster, so it runs at most every few seconds.
    estimates: tokio::sync::Mutex<Option<CachedEstimates>>,
    pub http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        axum::body::Body,
    >,
}

impl Runtime {
    pub fn new(
        executor: Arc<dyn Executor>,
        node: scheduler::Node,
        settings: WorkloadSettings,
        workspaces_root: PathBuf,
    ) -> Self {
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build_http();
        Self {
            executor,
            node,
            settings,
            workspaces_root,
            wake: tokio::sync::Notify::new(),
            tick_lock: tokio::sync::Mutex::new(()),
            estimates: tokio::sync::Mutex::new(None),
            http,
        }
    }

    pub fn workspace_of(&self, username: &str) -> PathBuf {
        self.workspaces_root.join(username)
    }

    /// Every queued workload's place: the position is exact (a sort), the estimated start
    /// comes from a look-ahead simulation at most [`ESTIMATE_MAX_AGE`] old.
    pub async fn queue_places(
        &self,
        store: &voxhub_store::Store,
    ) -> Result<std::collections::HashMap<i64, scheduler::Place>, voxhub_store::StoreError> {
        let now = now_s();
        let active = store.active_workloads().await?;
        let (running, queued) = scheduler_inputs(&active);
        let estimates = {
            let mut cache = self.estimates.lock().await;
            match cache.as_ref() {
                Some((at, estimates)) if at.elapsed() < ESTIMATE_MAX_AGE => estimates.clone(),
                _ => {
                    let view = scheduler::queue_view(
                        now,
                        std::slice::from_ref(&self.node),
                        &running,
                        &queued,
                        &self.settings.policy,
                    );
                    let estimates = std::sync::Arc::new(
                        view.into_iter()
                            .map(|p| (p.workload_id, p.estimated_start_s))
                            .collect(),
                    );
                    *cache = Some((std::time::Instant::now(), std::sync::Arc::clone(&estimates)));
                    estimates
                }
            }
        };
        let mut order: Vec<&scheduler::Queued> = queued.iter().collect();
        order.sort_by_key(|q| {
            (
                q.held,
                -scheduler::effective_priority(q, now, &self.settings.policy),
                q.order,
                q.workload_id,
            )
        });
        Ok(order
            .into_iter()
            .enumerate()
            .map(|(index, q)| {
                let estimated_start_s = if q.held {
                    None
                } else {
                    estimates.get(&q.workload_id).copied().flatten()
                };
                (
                    q.workload_id,
                    scheduler::Place {
                        workload_id: q.workload_id,
                        position: index + 1,
                        estimated_start_s,
                    },
                )
            })
            .collect())
    }

    /// The operating-system identity a user's workloads run as, if users are kept apart.
    pub fn run_as(&self, user_id: i64) -> Option<voxhub_exec::RunAs> {
        let base = self.settings.run_as_base_uid?;
        let id = base.checked_add(u32::try_from(user_id).ok()?)?;
        Some(voxhub_exec::RunAs { uid: id, gid: id })
    }

    /// Creates a user's workspace if needed and makes it theirs alone (mode 0700, owned by
    /// their workload identity) when users are kept apart.
    pub async fn prepare_workspace(
        &self,
        username: &str,
        user_id: i64,
    ) -> std::io::Result<PathBuf> {
        let path = self.workspace_of(username);
        tokio::fs::create_dir_all(&path).await?;
        if let Some(run_as) = self.run_as(user_id) {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::chown(&path, Some(run_as.uid), Some(run_as.gid))?;
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).await?;
        }
        Ok(path)
    }

    /// Gives a file written by the server to the workspace's owner.
    pub fn hand_over(&self, path: &std::path::Path, user_id: i64) -> std::io::Result<()> {
        match self.run_as(user_id) {
            Some(run_as) => std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)),
            None => Ok(()),
        }
    }

    /// The path at which an instance is served through the proxy.
    pub fn instance_base(workload_id: i64) -> String {
        format!("/i/{workload_id}/")
    }
}

/// Lets workload users pass through the data directory to their own workspace while
/// listing nothing on the way, and keeps the database and run records the server's alone.
pub fn harden_data_dir(data_dir: &std::path::Path, database_files: &[&str]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    };
    std::fs::create_dir_all(data_dir.join("workspaces"))?;
    mode(data_dir, 0o711)?;
    mode(&data_dir.join("workspaces"), 0o711)?;
    if data_dir.join("run").is_dir() {
        mode(&data_dir.join("run"), 0o700)?;
    }
    for file in database_files {
        for suffix in ["", "-wal", "-shm"] {
            let path = data_dir.join(format!("{file}{suffix}"));
            if path.exists() {
                mode(&path, 0o600)?;
            }
        }
    }
    Ok(())
}

/// Estimated start per queued workload, and when they were computed.
type CachedEstimates = (
    std::time::Instant,
    std::sync::Arc<std::collections::HashMap<i64, Option<i64>>>,
);

/// How stale an estimated start may be.
pub const ESTIMATE_MAX_AGE: Duration = Duration::from_secs(3);

/// Runs [`tick`] every second, and at once whenever something is submitted or stopped.
pub fn spawn_loop(state: AppState) {
    tokio::spawn(async move {
        loop {
            // Look often while anything is in the queue, so ends are seen and the next
            // workload starts quickly; rarely when the machine is idle.
            let pause = match tick(&state).await {
                Ok(0) => Duration::from_secs(1),
                Ok(_) => Duration::from_millis(200),
                Err(error) => {
                    tracing::error!("reconcile failed: {error}");
                    Duration::from_secs(1)
                }
            };
            let Some(runtime) = state.runtime.as_ref() else {
                return;
            };
            tokio::select! {
                () = runtime.wake.notified() => {},
                () = tokio::time::sleep(pause) => {},
            }
        }
    });
}

fn scheduler_request(w: &Workload) -> scheduler::Request {
    scheduler::Request {
        cpu_millis: w.cpu_millis.max(0) as u64,
        memory_mib: w.memory_mib.max(0) as u64,
        gpus: w.gpus.max(0) as u32,
    }
}

/// The queue as the scheduler sees it.
pub fn scheduler_inputs(
    workloads: &[Workload],
) -> (Vec<scheduler::Running>, Vec<scheduler::Queued>) {
    let mut running = Vec::new();
    let mut queued = Vec::new();
    for w in workloads {
        match w.state {
            State::Starting | State::Running => running.push(scheduler::Running {
                workload_id: w.id,
                user_id: w.owner_id,
                node: w.node.clone().unwrap_or_default(),
                grant: scheduler::Grant {
                    cpu_millis: w.cpu_millis.max(0) as u64,
                    memory_mib: w.memory_mib.max(0) as u64,
                    gpu_devices: w.gpu_devices.clone().unwrap_or_default(),
                },
                ends_at_s: w.started_at.unwrap_or(w.created_at) + w.time_limit_s,
            }),
            State::Queued if !w.stop_requested => queued.push(scheduler::Queued {
                workload_id: w.id,
                user_id: w.owner_id,
                priority: w.priority,
                order: w.queue_order,
                submitted_at_s: w.created_at,
                request: scheduler_request(w),
                time_limit_s: w.time_limit_s,
                held: w.held,
            }),
            _ => {}
        }
    }
    (running, queued)
}

/// What an observed end means for the workload's state and reason.
fn outcome_of(
    phase: &Phase,
    stop_requested: bool,
    time_limit_s: i64,
) -> Option<(State, Option<i32>, String)> {
    Some(match phase {
        Phase::Running => return None,
        // A program that exits cleanly on SIGTERM was still stopped, not finished.
        Phase::Exited { code } if stop_requested => {
            (State::Cancelled, Some(*code), "stopped on request".into())
        }
        Phase::Exited { code: 0 } => (State::Succeeded, Some(0), String::new()),
        Phase::Exited { code } => (
            State::Failed,
            Some(*code),
            format!("the program exited with code {code}"),
        ),
        Phase::Signaled { .. } if stop_requested => {
            (State::Cancelled, None, "stopped on request".into())
        }
        Phase::Signaled { signal: 9 } => (
            State::Failed,
            None,
            "the program was killed (signal 9); if it used a lot of memory, ask for more memory"
                .into(),
        ),
        Phase::Signaled { signal } => (
            State::Failed,
            None,
            format!("the program was ended by signal {signal}"),
        ),
        Phase::TimedOut => (
            State::TimedOut,
            None,
            format!(
                "the time limit of {} ran out; the workspace was kept",
                human_duration(time_limit_s)
            ),
        ),
        Phase::FailedToStart { reason } => (State::Failed, None, reason.clone()),
        Phase::Lost { reason } => (State::Failed, None, format!("lost: {reason}")),
    })
}

pub fn human_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    if seconds >= 3600 && seconds % 3600 == 0 {
        format!("{} h", seconds / 3600)
    } else if seconds >= 3600 {
        format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60)
    } else if seconds >= 60 {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

/// Whether an instance's server answers through its base path.
async fn instance_ready(runtime: &Runtime, workload: &Workload) -> bool {
    let (Some(port), Some(secret)) = (workload.port, workload.secret.as_deref()) else {
        return false;
    };
    let uri = format!(
        "http://127.0.0.1:{port}{}api/status",
        Runtime::instance_base(workload.id)
    );
    let Ok(request) = axum::http::Request::get(uri)
        .header("authorization", format!("token {secret}"))
        .body(axum::body::Body::empty())
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), runtime.http.request(request)).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}

/// One reconcile pass. Safe to run at any time, any number of times. Returns how many
/// workloads are still queued, starting or running.
pub async fn tick(state: &AppState) -> Result<usize, String> {
    let Some(runtime) = state.runtime.as_ref() else {
        return Ok(0);
    };
    let _one_at_a_time = runtime.tick_lock.lock().await;
    let store = &state.store;
    let workloads = store.active_workloads().await.map_err(|e| e.to_string())?;
    let now = now_s();

    // 1. Observe what should be running and record what has ended.
    for workload in workloads
        .iter()
        .filter(|w| matches!(w.state, State::Starting | State::Running))
    {
        let observed = match runtime.executor.observe(workload.id).await {
            Ok(observed) => observed,
            Err(voxhub_exec::ExecError::NotFound(_)) => {
                end(
                    state,
                    workload,
                    State::Failed,
                    None,
                    "lost: the executor has no record of it",
                    now,
                )
                .await?;
                continue;
            }
            Err(error) => {
                tracing::warn!(workload = workload.id, "cannot observe: {error}");
                continue;
            }
        };
        if let Some((new_state, code, reason)) = outcome_of(
            &observed.phase,
            workload.stop_requested,
            workload.time_limit_s,
        ) {
            let ended_at = observed.ended_at_s.unwrap_or(now);
            if workload.enforcement.is_empty() && !observed.enforcement.note.is_empty() {
                // A job that ended before it was seen running still says how it was limited.
                let mut tx = store.begin().await.map_err(|e| e.to_string())?;
                tx.set_enforcement(workload.id, &observed.enforcement.note)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())?;
            }
            end(state, workload, new_state, code, &reason, ended_at).await?;
            if let Err(error) = runtime.executor.forget(workload.id).await {
                tracing::warn!(workload = workload.id, "cannot clean up: {error}");
            }
            continue;
        }
        if workload.stop_requested {
            if let Err(error) = runtime.executor.stop(workload.id).await {
                tracing::warn!(workload = workload.id, "cannot stop: {error}");
            }
            continue;
        }
        if workload.state == State::Starting {
            let ready = workload.kind == "job" || instance_ready(runtime, workload).await;
            if ready {
                let enforcement = observed.enforcement.note.clone();
                let mut tx = store.begin().await.map_err(|e| e.to_string())?;
                tx.mark_running(workload.id, &enforcement)
                    .await
                    .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())?;
            } else if now - workload.started_at.unwrap_or(now)
                > runtime.settings.instance_startup_timeout_s
            {
                runtime.executor.stop(workload.id).await.ok();
                end(
                    state,
                    workload,
                    State::Failed,
                    None,
                    "JupyterLab did not answer in time; try launching again",
                    now,
                )
                .await?;
            }
        }
    }

    // 2. Queued workloads that were cancelled never start.
    for workload in workloads
        .iter()
        .filter(|w| w.state == State::Queued && w.stop_requested)
    {
        end(
            state,
            workload,
            State::Cancelled,
            None,
            "cancelled before it started",
            now,
        )
        .await?;
    }

    // 3. Admit what the scheduler says fits, in its order.
    let workloads = store.active_workloads().await.map_err(|e| e.to_string())?;
    let (running, queued) = scheduler_inputs(&workloads);
    let admits = scheduler::schedule(
        now,
        std::slice::from_ref(&runtime.node),
        &running,
        &queued,
        &runtime.settings.policy,
    );
    // Starts run side by side: each waits for its supervisor to record the start, and
    // that wait, not the machine, would otherwise bound how fast the queue drains. The
    // pass still holds the tick lock, so no other pass sees a half-started workload.
    let mut starts = tokio::task::JoinSet::new();
    for admit in admits {
        let Some(workload) = workloads
            .iter()
            .find(|w| w.id == admit.workload_id)
            .cloned()
        else {
            continue;
        };
        let state = state.clone();
        starts.spawn(async move {
            match state.runtime.as_deref() {
                Some(runtime) => start(&state, runtime, &workload, &admit).await,
                None => Ok(()),
            }
        });
    }
    while let Some(started) = starts.join_next().await {
        started.map_err(|e| e.to_string())??;
    }
    Ok(workloads.len())
}

async fn end(
    state: &AppState,
    workload: &Workload,
    new_state: State,
    code: Option<i32>,
    reason: &str,
    ended_at: i64,
) -> Result<(), String> {
    let mut tx = state.store.begin().await.map_err(|e| e.to_string())?;
    tx.mark_ended(workload.id, new_state, code, reason, ended_at)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    if let Some(runtime) = state.runtime.as_ref() {
        runtime.wake.notify_one();
    }
    Ok(())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The command line of a JupyterLab instance behind the proxy.
fn jupyter_argv(
    settings: &WorkloadSettings,
    workload_id: i64,
    port: u16,
    secret: &str,
    workspace: &std::path::Path,
) -> Vec<String> {
    vec![
        settings.jupyter_command.clone(),
        "lab".into(),
        "--no-browser".into(),
        "--ServerApp.ip=127.0.0.1".into(),
        format!("--ServerApp.port={port}"),
        "--ServerApp.port_retries=0".into(),
        format!(
            "--ServerApp.base_url={}",
            Runtime::instance_base(workload_id)
        ),
        format!("--IdentityProvider.token={secret}"),
        format!("--ServerApp.root_dir={}", workspace.display()),
        // The proxy keeps the browser's Host header, which need not be a local name.
        "--ServerApp.allow_remote_access=True".into(),
        // Harmless when the executor runs it as an unprivileged user, needed when it cannot.
        "--ServerApp.allow_root=True".into(),
        "--LabApp.news_url=".into(),
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate".into(),
    ]
}

async fn start(
    state: &AppState,
    runtime: &Runtime,
    workload: &Workload,
    admit: &scheduler::Admit,
) -> Result<(), String> {
    let is_instance = workload.kind == "instance";
    let (port, secret) = if is_instance {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        (Some(port), Some(voxhub_core::secret::new_token().secret))
    } else {
        (None, None)
    };
    {
        let mut tx = state.store.begin().await.map_err(|e| e.to_string())?;
        let marked = tx
            .mark_starting(
                workload.id,
                &admit.node,
                &admit.grant.gpu_devices,
                port.map(i32::from),
                secret.as_deref(),
            )
            .await
            .map_err(|e| e.to_string())?;
        if !marked {
            return Ok(());
        }
        tx.commit().await.map_err(|e| e.to_string())?;
    }
    let workspace = match runtime
        .prepare_workspace(&workload.owner, workload.owner_id)
        .await
    {
        Ok(workspace) => workspace,
        Err(error) => {
            return end(
                state,
                workload,
                State::Failed,
                None,
                &format!("the workspace could not be created: {error}"),
                now_s(),
            )
            .await;
        }
    };
    let argv = match (port, secret.as_deref()) {
        (Some(port), Some(secret)) => {
            jupyter_argv(&runtime.settings, workload.id, port, secret, &workspace)
        }
        _ => workload.argv.clone(),
    };
    let workdir = if workload.workdir.is_empty() {
        workspace.clone()
    } else {
        workspace.join(&workload.workdir)
    };
    let mut env: Vec<(String, String)> = workload
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    env.extend(crate::datasets::data_views::workload_env(state, runtime, workload).await);
    let spec = WorkloadSpec {
        workload_id: workload.id,
        user: workload.owner.clone(),
        argv,
        env,
        workspace: workspace.clone(),
        workdir,
        grant: voxhub_exec::Grant {
            cpu_millis: admit.grant.cpu_millis,
            memory_mib: admit.grant.memory_mib,
            gpu_devices: admit.grant.gpu_devices.clone(),
        },
        time_limit_s: workload.time_limit_s.max(1) as u64,
        grace_s: runtime.settings.grace_s,
        log_cap_bytes: runtime.settings.log_cap_bytes,
        run_as: runtime.run_as(workload.owner_id),
    };
    if let Err(error) = runtime.executor.start(&spec).await {
        return end(
            state,
            workload,
            State::Failed,
            None,
            &error.to_string(),
            now_s(),
        )
        .await;
    }
    Ok(())
}
