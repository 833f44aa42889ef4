//! The local-process executor: runs each workload as a process on this machine under a
//! supervisor of its own (see [`supervise_main`]), which keeps running when voxhub stops,
//! enforces the time limit and records the outcome in the workload's directory. Every
//! answer of [`LocalExecutor`] is read from those directories and checked against the
//! live processes, so a restarted voxhub re-adopts what still runs.
//!
//! # On disk
//!
//! ```text
//! <run_dir>/<workload_id>/spec.json       the WorkloadSpec, written by `start`
//! <run_dir>/<workload_id>/state.json      {shim_pid, shim_start_ticks, boot_id, child_pid,
//!                                          started_at_s, enforcement}, once the program runs
//! <run_dir>/<workload_id>/exit.json       {phase, started_at_s, ended_at_s, enforcement}, the outcome
//! <run_dir>/<workload_id>/stop            present once a stop was asked for
//! <run_dir>/<workload_id>/output.log      stdout and stderr together, capped
//! <run_dir>/<workload_id>/log_generation  how many times output.log was compacted
//! <run_dir>/logs/<workload_id>.log        the log of a forgotten workload
//! ```
//!
//! # Phases, as `observe` derives them
//!
//! - `exit.json` exists: its phase (`Exited`, `Signaled`, `TimedOut` or `FailedToStart`).
//! - `state.json` exists and its supervisor lives (same boot id, the pid's start time in
//!   `/proc/<pid>/stat` unchanged, not a zombie): `Running`.
//! - `state.json` exists but that supervisor is gone: `Lost` (the machine restarted, or
//!   the supervisor was killed before it could record the outcome).
//! - Only `spec.json`: the supervisor has not recorded the start yet. That is `Running`
//!   for [`START_WINDOW_S`] after `spec.json` was written (a start in progress), then
//!   `FailedToStart` (voxhub stopped between writing the spec and starting the supervisor).
//!
//! `start` waits until the supervisor has recorded the start, so after it returns the
//! last case is only seen by others looking at the same run directory meanwhile.
//!
//! # Limits
//!
//! - **Time**: counted by the supervisor from the program's start on the monotonic clock,
//!   also while voxhub is down. At `time_limit_s` it sends SIGTERM (and SIGCONT) to the
//!   program's process group, after `grace_s` SIGKILL; the outcome is `TimedOut` however
//!   the program then ended. `time_limit_s == 0` means no time limit (as in Slurm).
//! - **Stop**: the same SIGTERM, grace, SIGKILL; the outcome is what really happened
//!   (`Signaled { signal: 15 }` for most programs, `Signaled { signal: 9 }` for one that
//!   ignores SIGTERM, `Exited { code }` for one that exits on it).
//! - **The end**: when the program (the process that was started) ends, the workload has
//!   ended: whatever it left running is SIGKILLed, its process group and also processes
//!   that left the group (the supervisor is a child subreaper, so orphans come back to it).
//! - **Log**: stdout and stderr go into one `output.log` of at most `log_cap_bytes`
//!   (raised to 4096 when smaller). A write that would pass the cap first rewrites the
//!   log as `[voxhub: N older bytes dropped (log generation G)]` followed by the newest
//!   half of the cap, starting at a line boundary when one is near. Voxhub's own notes
//!   (time limit reached, stop requested, SIGKILL sent, out of memory) are lines of the
//!   form `[voxhub: …]` in the same log.
//! - **Log offsets** from [`LogChunk::next_offset`] hold the log generation in their top
//!   16 bits; an offset from an older generation (or offset 0 once the log was
//!   compacted) returns `restarted: true` and the log from its new beginning.
//! - **Memory and CPU**: enforced only with cgroup v2 (see [`Enforcement::note`]).
//!   GPUs: `CUDA_VISIBLE_DEVICES` is the comma list of the granted devices, empty (no GPU
//!   visible) without a GPU grant.
//! - **Environment**: only the spec's variables, `PATH` (a standard one when the spec has
//!   none), and `VOXHUB_WORKLOAD_ID`, `VOXHUB_USER`, `VOXHUB_WORKSPACE`, `HOME` (the
//!   workspace) and `CUDA_VISIBLE_DEVICES`, which override the spec's. Nothing of the
//!   voxhub server's own environment reaches a workload.
//! - **Who runs it**: the workload runs as the user voxhub runs as; this backend does not
//!   switch users, so it does not isolate the workloads of different users from each
//!   other.
//! - **If the supervisor dies** (killed, out of memory), the program is SIGKILLed by the
//!   kernel (`PR_SET_PDEATHSIG`) and the workload reads as `Lost`.
//!
//! # Running voxhub so that workloads survive it
//!
//! Supervisors start in a session of their own, so a terminal's Ctrl-C or the end of
//! voxhub leaves them running. Under systemd, give the voxhub unit `KillMode=process`:
//! the default (`control-group`) would kill every supervisor with the server.

mod cgroup;
mod logfile;
mod process;
mod records;
mod shim;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use shim::supervise_main;

use crate::{Enforcement, ExecError, Executor, LogChunk, Observed, Phase, WorkloadSpec};
use records::{
    ARCHIVED_LOGS_DIR, EXIT_FILE, ExitRecord, LOG_FILE, LOG_GENERATION_FILE, SPEC_FILE, STATE_FILE,
    STOP_FILE, StateRecord,
};

/// How long after `spec.json` was written a workload without `state.json` still counts as
/// starting (`Running`) rather than `FailedToStart`.
pub const START_WINDOW_S: i64 = 60;
/// How long `start` waits for the supervisor to record the start before it returns anyway.
const START_WAIT: Duration = Duration::from_secs(30);
const START_POLL: Duration = Duration::from_millis(10);

/// How to run a workload's supervisor: `program args… <workload dir>`. The voxhub binary
/// passes itself with `["supervise"]`; its `supervise` subcommand calls
/// [`supervise_main`] with the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl SupervisorCommand {
    /// The running executable with `args` before the directory, e.g.
    /// `SupervisorCommand::current_exe(&["supervise"])`.
    pub fn current_exe(args: &[&str]) -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        })
    }
}

/// Runs workloads as local processes; see the module documentation.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    run_dir: PathBuf,
    supervisor: SupervisorCommand,
}

impl LocalExecutor {
    /// `run_dir` holds one directory per workload and is created on the first start. Give
    /// every voxhub instance on a machine the same `run_dir` across restarts: that is how
    /// it finds its workloads again.
    pub fn new(run_dir: PathBuf, supervisor: SupervisorCommand) -> Self {
        let run_dir = std::path::absolute(&run_dir).unwrap_or(run_dir);
        Self {
            run_dir,
            supervisor,
        }
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
}

/// Runs blocking file and process work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ExecError> + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        ExecError::Io(std::io::Error::other(format!(
            "an executor task failed: {error}"
        )))
    })?
}

#[async_trait::async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &str {
        "local"
    }

    async fn start(&self, spec: &WorkloadSpec) -> Result<(), ExecError> {
        let run_dir = self.run_dir.clone();
        let owned_spec = spec.clone();
        let Some(dir) = blocking(move || Ok(create_workload_dir(&run_dir, &owned_spec)?)).await?
        else {
            return Ok(());
        };
        let mut command = tokio::process::Command::new(&self.supervisor.program);
        command
            .args(&self.supervisor.args)
            .arg(&dir)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        let mut supervisor = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                // Nothing ran: leave no trace, so a later start can try again.
                let remove = dir.clone();
                blocking(move || Ok(std::fs::remove_dir_all(remove)?)).await?;
                return Err(ExecError::Start(format!(
                    "the supervisor '{}' could not be started: {error}",
                    self.supervisor.program.display()
                )));
            }
        };
        let waited = tokio::time::timeout(START_WAIT, async {
            tokio::select! {
                status = supervisor.wait() => Some(status),
                () = wait_for_start_record(&dir) => None,
            }
        })
        .await;
        let reason = match waited {
            Ok(Some(Ok(status))) if status.success() => return Ok(()),
            Ok(Some(Ok(status))) => {
                format!("its supervisor ended ({status}) before it recorded a start")
            }
            Ok(Some(Err(error))) => format!("its supervisor could not be waited for: {error}"),
            // Recorded by a supervisor that did not detach (see `supervise_main`).
            Ok(None) => return Ok(()),
            Err(_) => {
                tracing::warn!(
                    workload_id = spec.workload_id,
                    "the supervisor did not record a start within {} s",
                    START_WAIT.as_secs()
                );
                return Ok(());
            }
        };
        blocking(move || Ok(record_failure_unless_recorded(&dir, reason)?)).await
    }

    async fn observe(&self, workload_id: i64) -> Result<Observed, ExecError> {
        let run_dir = self.run_dir.clone();
        blocking(move || observe_workload(&run_dir, workload_id)).await
    }

    async fn stop(&self, workload_id: i64) -> Result<(), ExecError> {
        let run_dir = self.run_dir.clone();
        blocking(move || stop_workload(&run_dir, workload_id)).await
    }

    async fn list(&self) -> Result<Vec<Observed>, ExecError> {
        let run_dir = self.run_dir.clone();
        blocking(move || list_workloads(&run_dir)).await
    }

    async fn logs(
        &self,
        workload_id: i64,
        offset: u64,
        max_bytes: usize,
    ) -> Result<LogChunk, ExecError> {
        let run_dir = self.run_dir.clone();
        blocking(move || read_logs(&run_dir, workload_id, offset, max_bytes)).await
    }

    async fn forget(&self, workload_id: i64) -> Result<(), ExecError> {
        let run_dir = self.run_dir.clone();
        blocking(move || forget_workload(&run_dir, workload_id)).await
    }
}

/// Creates `<run_dir>/<id>/spec.json` atomically: the spec is written in a staging
/// directory that is then renamed into place unless the id exists already. `None` when it
/// did (this start is a no-op); exactly one of several concurrent starts gets `Some`.
fn create_workload_dir(run_dir: &Path, spec: &WorkloadSpec) -> std::io::Result<Option<PathBuf>> {
    use std::os::unix::fs::DirBuilderExt;
    // Specs may carry secrets in their environment: other users of the machine keep out.
    let mut private = std::fs::DirBuilder::new();
    private.recursive(true).mode(0o700);
    private.create(run_dir)?;
    let dir = records::workload_dir(run_dir, spec.workload_id);
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Ok(None);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let staging = run_dir.join(format!(
        ".starting-{}-{}-{nanos}",
        spec.workload_id,
        std::process::id()
    ));
    private.recursive(false).create(&staging)?;
    let moved = records::write_json_atomically(&staging.join(SPEC_FILE), spec)
        .and_then(|()| rename_unless_exists(&staging, &dir));
    match moved {
        Ok(true) => Ok(Some(dir)),
        Ok(false) => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(None)
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(error)
        }
    }
}

/// `Ok(false)` when `to` exists already.
fn rename_unless_exists(from: &Path, to: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c_from = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let c_to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated paths.
    let result = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if result == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => Ok(false),
        // A file system without RENAME_NOREPLACE: a plain rename still refuses to replace
        // a directory that is not empty, and a workload directory never is.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => match std::fs::rename(from, to) {
            Ok(()) => Ok(true),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EEXIST) | Some(libc::ENOTEMPTY)
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        },
        _ => Err(error),
    }
}

async fn wait_for_start_record(dir: &Path) {
    let state = dir.join(STATE_FILE);
    let exit = dir.join(EXIT_FILE);
    loop {
        if tokio::fs::try_exists(&state).await.unwrap_or(false)
            || tokio::fs::try_exists(&exit).await.unwrap_or(false)
        {
            return;
        }
        tokio::time::sleep(START_POLL).await;
    }
}

/// After the supervisor ended without recording anything: record why, so the workload
/// reads as `FailedToStart` and not as a start that never ends.
fn record_failure_unless_recorded(dir: &Path, reason: String) -> std::io::Result<()> {
    if dir.join(STATE_FILE).exists() || dir.join(EXIT_FILE).exists() {
        return Ok(());
    }
    let now = records::now_s();
    let record = ExitRecord {
        phase: Phase::FailedToStart { reason },
        started_at_s: now,
        ended_at_s: now,
        enforcement: Enforcement::default(),
    };
    records::write_json_atomically(&dir.join(EXIT_FILE), &record)
}

fn finished(workload_id: i64, exit: ExitRecord) -> Observed {
    Observed {
        workload_id,
        phase: exit.phase,
        started_at_s: exit.started_at_s,
        ended_at_s: Some(exit.ended_at_s),
        enforcement: exit.enforcement,
    }
}

fn observe_workload(run_dir: &Path, workload_id: i64) -> Result<Observed, ExecError> {
    let dir = records::workload_dir(run_dir, workload_id);
    if !dir.is_dir() {
        return Err(ExecError::NotFound(workload_id));
    }
    if let Some(exit) = records::read_json::<ExitRecord>(&dir.join(EXIT_FILE))? {
        return Ok(finished(workload_id, exit));
    }
    if let Some(state) = records::read_json::<StateRecord>(&dir.join(STATE_FILE))? {
        let phase = match process::supervisor_liveness(&state)? {
            Ok(()) => Phase::Running,
            Err(reason) => {
                // It may have recorded the outcome and ended since `exit.json` was looked at.
                if let Some(exit) = records::read_json::<ExitRecord>(&dir.join(EXIT_FILE))? {
                    return Ok(finished(workload_id, exit));
                }
                Phase::Lost { reason }
            }
        };
        return Ok(Observed {
            workload_id,
            phase,
            started_at_s: state.started_at_s,
            ended_at_s: None,
            enforcement: state.enforcement,
        });
    }
    let written_at_s = match std::fs::metadata(dir.join(SPEC_FILE)) {
        Ok(metadata) => metadata
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or(0),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Observed {
                workload_id,
                phase: Phase::Lost {
                    reason: format!(
                        "its records are incomplete: {} has no {SPEC_FILE}",
                        dir.display()
                    ),
                },
                started_at_s: 0,
                ended_at_s: None,
                enforcement: Enforcement::default(),
            });
        }
        Err(error) => return Err(error.into()),
    };
    let phase = if records::now_s() - written_at_s < START_WINDOW_S {
        Phase::Running
    } else {
        Phase::FailedToStart {
            reason: "its supervisor never recorded a start (voxhub may have stopped while \
                     starting it)"
                .to_owned(),
        }
    };
    Ok(Observed {
        workload_id,
        phase,
        started_at_s: written_at_s,
        ended_at_s: None,
        enforcement: Enforcement {
            memory: false,
            cpu: false,
            note: "not known yet: the workload is starting".to_owned(),
        },
    })
}

fn stop_workload(run_dir: &Path, workload_id: i64) -> Result<(), ExecError> {
    let dir = records::workload_dir(run_dir, workload_id);
    if !dir.is_dir() {
        return Err(ExecError::NotFound(workload_id));
    }
    if dir.join(EXIT_FILE).exists() {
        return Ok(());
    }
    // The file is the request; the signal only wakes the supervisor. A supervisor still
    // starting sees the file when it begins to wait.
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(STOP_FILE))?;
    if let Some(state) = records::read_json::<StateRecord>(&dir.join(STATE_FILE))?
        && process::supervisor_liveness(&state)?.is_ok()
    {
        // SAFETY: plain system call to a process whose identity was just checked.
        unsafe { libc::kill(state.shim_pid, libc::SIGTERM) };
    }
    Ok(())
}

fn list_workloads(run_dir: &Path) -> Result<Vec<Observed>, ExecError> {
    let entries = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut observed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(workload_id) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i64>().ok())
        else {
            continue;
        };
        match observe_workload(run_dir, workload_id) {
            Ok(workload) => observed.push(workload),
            // Forgotten meanwhile.
            Err(ExecError::NotFound(_)) => {}
            // One damaged directory must not hide the others.
            Err(error) => observed.push(Observed {
                workload_id,
                phase: Phase::Lost {
                    reason: format!("its records cannot be read: {error}"),
                },
                started_at_s: 0,
                ended_at_s: None,
                enforcement: Enforcement::default(),
            }),
        }
    }
    observed.sort_by_key(|workload| workload.workload_id);
    Ok(observed)
}

fn read_logs(
    run_dir: &Path,
    workload_id: i64,
    offset: u64,
    max_bytes: usize,
) -> Result<LogChunk, ExecError> {
    let dir = records::workload_dir(run_dir, workload_id);
    if dir.is_dir() {
        return Ok(logfile::read_chunk(
            &dir.join(LOG_FILE),
            Some(&dir.join(LOG_GENERATION_FILE)),
            offset,
            max_bytes,
        )?);
    }
    let archived = records::archived_log(run_dir, workload_id);
    if archived.is_file() {
        return Ok(logfile::read_chunk(&archived, None, offset, max_bytes)?);
    }
    Err(ExecError::NotFound(workload_id))
}

fn forget_workload(run_dir: &Path, workload_id: i64) -> Result<(), ExecError> {
    let dir = records::workload_dir(run_dir, workload_id);
    if !dir.is_dir() {
        return if records::archived_log(run_dir, workload_id).is_file() {
            Ok(())
        } else {
            Err(ExecError::NotFound(workload_id))
        };
    }
    if observe_workload(run_dir, workload_id)?.phase == Phase::Running {
        return Err(ExecError::StillRunning(workload_id));
    }
    std::fs::create_dir_all(run_dir.join(ARCHIVED_LOGS_DIR))?;
    match std::fs::rename(
        dir.join(LOG_FILE),
        records::archived_log(run_dir, workload_id),
    ) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
