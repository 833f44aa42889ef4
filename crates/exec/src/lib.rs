//! Executors: one trait, [`Executor`], for every backend that can run a workload (local
//! processes now; Docker/Podman, Kubernetes and Slurm later). The scheduler never knows
//! which backend runs a workload, and executors never touch the database.
//!
//! INTERFACE CONTRACT (used by the rest of voxhub; keep these names and meanings):
//! - `start` is idempotent per workload id: starting an id that already exists is a no-op.
//! - `observe`/`list` report what really runs, from the backend's own records, so the
//!   platform can re-adopt workloads after it restarts (identity is checked, not just a pid).
//! - `stop` asks the workload to end (SIGTERM, a grace period, then SIGKILL of the whole
//!   process group) and is idempotent.
//! - Time limits are enforced by the backend itself, also while voxhub is down.
//!
//! | Backend | Module | Needs |
//! |---|---|---|
//! | local processes, one supervisor each | [`local`] | Linux (`/proc`); cgroup v2 to enforce memory and CPU |

pub mod local;

pub use local::{LocalExecutor, SupervisorCommand, supervise_main};

use std::path::PathBuf;

/// Everything needed to start a workload, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadSpec {
    pub workload_id: i64,
    /// The owner's username (goes into `VOXHUB_USER`).
    pub user: String,
    /// Program and arguments; the program is looked up on `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Extra environment variables (the executor adds `VOXHUB_WORKLOAD_ID`, `VOXHUB_USER`,
    /// `VOXHUB_WORKSPACE`, `HOME` and `CUDA_VISIBLE_DEVICES`).
    pub env: Vec<(String, String)>,
    /// The user's workspace directory (absolute); it becomes `HOME`.
    pub workspace: PathBuf,
    /// Working directory (absolute, inside the workspace).
    pub workdir: PathBuf,
    pub grant: Grant,
    pub time_limit_s: u64,
    /// Seconds between SIGTERM and SIGKILL.
    pub grace_s: u64,
    /// Largest size of the workload's log; older output is dropped with a marker.
    pub log_cap_bytes: u64,
    /// The operating-system user and group to run as, so that one person's workloads
    /// cannot read another's files; `None` runs as the supervisor's own user.
    #[serde(default)]
    pub run_as: Option<RunAs>,
}

/// A numeric user and group id (no account needs to exist for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Resources granted to a workload.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub gpu_devices: Vec<u32>,
}

/// Where a workload is in its life, as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    Running,
    /// Ended by itself with this exit code.
    Exited {
        code: i32,
    },
    /// Ended by a signal it did not ask for (e.g. killed by the OOM killer or `stop`).
    Signaled {
        signal: i32,
    },
    /// Ended by its time limit.
    TimedOut,
    /// Never started: the program does not exist, the directory is missing, …
    FailedToStart {
        reason: String,
    },
    /// The backend lost track of it (e.g. the machine rebooted).
    Lost {
        reason: String,
    },
}

/// How a grant is enforced on this backend.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Enforcement {
    pub memory: bool,
    pub cpu: bool,
    /// In words: how the limits are applied, or why they are not.
    pub note: String,
}

/// A workload as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    pub workload_id: i64,
    pub phase: Phase,
    pub started_at_s: i64,
    pub ended_at_s: Option<i64>,
    pub enforcement: Enforcement,
}

/// A piece of a workload's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub data: Vec<u8>,
    /// Offset to ask for next.
    pub next_offset: u64,
    /// True when the log was compacted since `offset` was handed out (older output
    /// dropped); the chunk then starts from the new beginning.
    pub restarted: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    #[error("workload {0} is not known to this executor")]
    NotFound(i64),
    #[error("the workload could not be started: {0}")]
    Start(String),
    /// `forget` was asked for a workload that still runs.
    #[error("workload {0} is still running; stop it before forgetting it")]
    StillRunning(i64),
    #[error("executor I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// A short name for people and logs, e.g. `local`.
    fn name(&self) -> &str;
    async fn start(&self, spec: &WorkloadSpec) -> Result<(), ExecError>;
    async fn observe(&self, workload_id: i64) -> Result<Observed, ExecError>;
    async fn stop(&self, workload_id: i64) -> Result<(), ExecError>;
    async fn list(&self) -> Result<Vec<Observed>, ExecError>;
    /// Up to `max_bytes` of output from `offset` on.
    async fn logs(
        &self,
        workload_id: i64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<LogChunk, ExecError>;
    /// Drops what the backend keeps of an ended workload except its log.
    async fn forget(&self, workload_id: i64) -> Result<(), ExecError>;
}
