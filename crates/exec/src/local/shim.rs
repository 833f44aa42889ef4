//! The supervisor ("shim") of one workload, like conmon or containerd-shim: a small
//! process of its own, detached from voxhub, that starts the program, feeds its output
//! into the capped log, enforces the time limit and stop requests on the whole process
//! group, and records the outcome in `exit.json`. It outlives a crash or restart of the
//! voxhub server, so no outcome is lost and no time limit is skipped.
//!
//! Its life:
//! 1. `supervise_main` forks; the parent waits until the child has recorded either
//!    `state.json` (the program runs) or `exit.json` (it could not start), then exits, so
//!    whoever started it knows the outcome of the start. The child calls `setsid`, becomes
//!    a child subreaper (orphans of the workload come back to it) and goes on.
//! 2. It reads `spec.json`, checks the working directory and the program, sets up the
//!    cgroup when the machine offers cgroup v2, and starts the program in a process group
//!    of its own with a clean environment, stdout and stderr into one pipe.
//! 3. It waits for: the program's end, the time limit (SIGTERM to the group, `grace_s`,
//!    SIGKILL), or a stop request (a `stop` file or SIGTERM/SIGINT to the shim; then the
//!    same SIGTERM, grace, SIGKILL).
//! 4. When the program ends, what is left of its process group is SIGKILLed and reaped,
//!    the output pipe is drained into the log, and `exit.json` is written.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::cgroup::{self, Cgroup};
use super::logfile::LogWriter;
use super::process;
use super::records::{
    self, EXIT_FILE, ExitRecord, SPEC_FILE, STATE_FILE, STOP_FILE, StateRecord, now_s,
};
use crate::{Enforcement, Phase, WorkloadSpec};

/// `PATH` for a workload whose spec sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long the end waits for the rest of the process group to vanish and for the
/// output pipe to close, when something refuses to die (a process stuck in the kernel,
/// or one that left the process group but still holds the output).
const END_WAIT: Duration = Duration::from_secs(5);
/// The longest sleep between checks of the `stop` file.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
const LOG_READ_BYTES: usize = 64 * 1024;

/// Runs the supervisor of the workload whose directory is `dir` (it holds `spec.json`).
///
/// Call it from `main` before anything starts a thread (before a tokio runtime): it forks
/// to detach itself, which is only safe in a process with one thread. With more threads
/// it does not fork and supervises in the calling process instead (its parent then sees
/// it exit only when the workload ends).
///
/// Exits with success once the outcome of the start is recorded (the returned code is
/// that of the parent half of the fork; the supervising half returns when the workload
/// has ended and its outcome is recorded).
pub fn supervise_main(dir: &Path) -> ExitCode {
    mark_inherited_descriptors_close_on_exec();
    let Ok(dir) = std::path::absolute(dir) else {
        return ExitCode::from(2);
    };
    if thread_count() != Some(1) {
        // SAFETY: plain system call; it fails harmlessly when already a group leader.
        unsafe { libc::setsid() };
        return supervise(&dir, Ready(None));
    }
    let Ok((mut ready_reader, ready_writer)) = std::io::pipe() else {
        return ExitCode::from(2);
    };
    // SAFETY: this process has one thread (checked above), so the child may go on
    // running ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => {
            drop(ready_reader);
            drop(ready_writer);
            // SAFETY: as above.
            unsafe { libc::setsid() };
            supervise(&dir, Ready(None))
        }
        0 => {
            drop(ready_reader);
            // SAFETY: as above; the child of a fork is never a group leader.
            unsafe { libc::setsid() };
            supervise(&dir, Ready(Some(ready_writer)))
        }
        _ => {
            drop(ready_writer);
            let mut byte = [0u8; 1];
            loop {
                match ready_reader.read(&mut byte) {
                    Ok(1) => return ExitCode::SUCCESS,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    // The supervisor ended without recording anything.
                    _ => return ExitCode::from(1),
                }
            }
        }
    }
}

/// Tells the parent half of the fork that the start's outcome is on disk.
struct Ready(Option<std::io::PipeWriter>);

impl Ready {
    fn signal(&mut self) {
        if let Some(mut writer) = self.0.take() {
            let _ = writer.write_all(b"1");
        }
    }
}

fn thread_count() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
}

/// Descriptors the supervisor inherited (from voxhub: sockets, the database) must not
/// reach the workload.
fn mark_inherited_descriptors_close_on_exec() {
    // SAFETY: close_range only changes descriptor flags; failure (old kernel) is harmless.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

const HANDLED_SIGNALS: [i32; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn handled_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in HANDLED_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// The supervisor takes its signals with `sigtimedwait`, so they are blocked (also in the
/// log thread, which inherits the mask); the program gets an empty mask back.
fn block_handled_signals() {
    let set = handled_signal_set();
    // SAFETY: a valid set; the old mask is not needed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Waits up to `timeout` for one of the handled signals; `None` on timeout.
fn wait_for_signal(timeout: Duration) -> Option<i32> {
    let set = handled_signal_set();
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid pointers; the siginfo is not read.
    let signal = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::sigtimedwait(&set, &mut info, &timeout)
    };
    (signal > 0).then_some(signal)
}

fn signal_group(process_group: i32, signal: i32) {
    if process_group > 1 {
        // SAFETY: plain system call; ESRCH (nothing left) is fine.
        unsafe { libc::kill(-process_group, signal) };
    }
}

/// Whether the program has ended, without collecting its status: until the rest of its
/// process group is killed, its pid must stay taken so the group id cannot be reused.
fn has_ended_uncollected(pid: i32) -> bool {
    // SAFETY: a zeroed siginfo the kernel fills; si_pid stays 0 when nothing ended.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let result = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        result == 0 && info.si_pid() == pid
    }
}

/// Collects ended orphans that were handed to this subreaper, leaving the program alone.
fn reap_children_except(keep: i32) {
    loop {
        // SAFETY: as in `has_ended_uncollected`.
        let ended = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let result = libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            if result != 0 { 0 } else { info.si_pid() }
        };
        if ended <= 0 || ended == keep {
            return;
        }
        // SAFETY: collects exactly the child that was just seen to have ended.
        unsafe { libc::waitpid(ended, std::ptr::null_mut(), 0) };
    }
}

/// Kills what is left of the workload, also processes that left its process group (a
/// `setsid` daemon): as a child subreaper the supervisor inherits every orphaned
/// descendant, so killing its children until it has none reaches them all.
fn kill_all_descendants(give_up_at: Instant) {
    let own_pid = std::process::id() as i32;
    loop {
        reap_all_children();
        let children = process::children_of(own_pid);
        if children.is_empty() || Instant::now() >= give_up_at {
            return;
        }
        for child in children {
            // SAFETY: an unreaped child's pid cannot be reused, and nothing reaps
            // between listing and killing.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn reap_all_children() {
    // SAFETY: non-blocking collection of any ended child.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// The raw wait status of `pid`, blocking.
fn collect_status(pid: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: a valid pointer to the status.
        let result = unsafe { libc::waitpid(pid, &mut status, 0) };
        if result == pid {
            return Some(status);
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

fn phase_of_status(status: i32) -> Phase {
    if libc::WIFEXITED(status) {
        Phase::Exited {
            code: libc::WEXITSTATUS(status),
        }
    } else if libc::WIFSIGNALED(status) {
        Phase::Signaled {
            signal: libc::WTERMSIG(status),
        }
    } else {
        Phase::Lost {
            reason: format!("its supervisor got an unexpected wait status {status}"),
        }
    }
}

/// Finds the program to execute: a name with a `/` is taken relative to the working
/// directory; any other name is looked up on the workload's `PATH`.
pub(crate) fn resolve_program(
    program: &OsStr,
    path_variable: &OsStr,
    workdir: &Path,
) -> Result<PathBuf, String> {
    let shown = program.to_string_lossy();
    if program.is_empty() {
        return Err("the command is empty".to_owned());
    }
    if program.as_bytes().contains(&b'/') {
        let candidate = workdir.join(program);
        return match std::fs::metadata(&candidate) {
            Err(_) => Err(format!("the program '{shown}' does not exist")),
            Ok(metadata) if metadata.is_dir() => {
                Err(format!("the program '{shown}' is a directory"))
            }
            Ok(_) if !is_executable(&candidate) => {
                Err(format!("the program '{shown}' is not executable"))
            }
            Ok(_) => Ok(candidate),
        };
    }
    for directory in path_variable.as_bytes().split(|&byte| byte == b':') {
        let directory = match directory {
            b"" => Path::new("."),
            bytes => Path::new(OsStr::from_bytes(bytes)),
        };
        let candidate = workdir.join(directory).join(program);
        if std::fs::metadata(&candidate).is_ok_and(|metadata| metadata.is_file())
            && is_executable(&candidate)
        {
            return Ok(candidate);
        }
    }
    Err(format!(
        "the program '{shown}' was not found on PATH ({})",
        path_variable.to_string_lossy()
    ))
}

fn is_executable(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::access(c_path.as_ptr(), libc::X_OK) == 0 }
}

/// The program's whole environment: the spec's variables, a default `PATH` when the spec
/// has none, and the variables voxhub sets (which win over the spec's).
pub(crate) fn child_environment(
    spec: &WorkloadSpec,
) -> Result<BTreeMap<OsString, OsString>, String> {
    let mut environment = BTreeMap::new();
    for (name, value) in &spec.env {
        if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0') {
            return Err(format!(
                "the environment variable name '{name}' or its value is not valid"
            ));
        }
        environment.insert(OsString::from(name), OsString::from(value));
    }
    environment
        .entry(OsString::from("PATH"))
        .or_insert_with(|| OsString::from(DEFAULT_PATH));
    let devices: Vec<String> = spec.grant.gpu_devices.iter().map(u32::to_string).collect();
    let workspace = spec.workspace.as_os_str().to_owned();
    for (name, value) in [
        (
            "VOXHUB_WORKLOAD_ID",
            OsString::from(spec.workload_id.to_string()),
        ),
        ("VOXHUB_USER", OsString::from(&spec.user)),
        ("VOXHUB_WORKSPACE", workspace.clone()),
        ("HOME", workspace),
        // An empty list hides every GPU from CUDA, which is what a grant without GPUs means.
        ("CUDA_VISIBLE_DEVICES", OsString::from(devices.join(","))),
    ] {
        environment.insert(OsString::from(name), value);
    }
    Ok(environment)
}

fn check_workdir(workdir: &Path) -> Result<(), String> {
    if !workdir.is_absolute() {
        return Err(format!(
            "the working directory '{}' is not an absolute path",
            workdir.display()
        ));
    }
    match std::fs::metadata(workdir) {
        Err(_) => Err(format!(
            "the working directory '{}' does not exist",
            workdir.display()
        )),
        Ok(metadata) if !metadata.is_dir() => Err(format!(
            "the working directory '{}' is not a directory",
            workdir.display()
        )),
        Ok(_) => Ok(()),
    }
}

/// Records that the workload never started.
fn record_failed_start(
    dir: &Path,
    ready: &mut Ready,
    reason: String,
    enforcement: Enforcement,
) -> ExitCode {
    let now = now_s();
    let record = ExitRecord {
        phase: Phase::FailedToStart { reason },
        started_at_s: now,
        ended_at_s: now,
        enforcement,
    };
    let written = records::write_json_atomically(&dir.join(EXIT_FILE), &record);
    ready.signal();
    if written.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn lock(log: &Mutex<LogWriter>) -> std::sync::MutexGuard<'_, LogWriter> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why the supervisor began to end the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    TimeLimit,
    Stop,
}

fn supervise(dir: &Path, mut ready: Ready) -> ExitCode {
    let _ = std::env::set_current_dir("/");
    block_handled_signals();
    // SAFETY: plain prctl; without it orphans of the workload would go to init and the
    // end could not wait for them.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    let spec: WorkloadSpec = match records::read_json(&dir.join(SPEC_FILE)) {
        Ok(Some(spec)) => spec,
        Ok(None) => {
            let reason = format!("{} has no {SPEC_FILE}", dir.display());
            return record_failed_start(dir, &mut ready, reason, Enforcement::default());
        }
        Err(error) => {
            let reason = format!("its spec could not be read: {error}");
            return record_failed_start(dir, &mut ready, reason, Enforcement::default());
        }
    };
    let checked = (|| {
        let environment = child_environment(&spec)?;
        check_workdir(&spec.workdir)?;
        let program = spec.argv.first().map(OsStr::new).unwrap_or_default();
        let path_variable = environment
            .get(OsStr::new("PATH"))
            .cloned()
            .unwrap_or_default();
        let resolved = resolve_program(program, &path_variable, &spec.workdir)?;
        Ok::<_, String>((environment, resolved))
    })();
    let (environment, program) = match checked {
        Ok(checked) => checked,
        Err(reason) => return record_failed_start(dir, &mut ready, reason, Enforcement::default()),
    };
    let (cgroup, enforcement) = cgroup::set_up(spec.workload_id, &spec.grant);
    let log = match LogWriter::open(dir, spec.log_cap_bytes) {
        Ok(log) => Arc::new(Mutex::new(log)),
        Err(error) => {
            if let Some(cgroup) = cgroup {
                cgroup.kill_and_remove();
            }
            let reason = format!("its log could not be opened: {error}");
            return record_failed_start(dir, &mut ready, reason, enforcement);
        }
    };
    let started = match start_program(&spec, &environment, &program, cgroup.as_ref(), &log) {
        Ok(started) => started,
        Err(reason) => {
            if let Some(cgroup) = cgroup {
                cgroup.kill_and_remove();
            }
            return record_failed_start(dir, &mut ready, reason, enforcement);
        }
    };
    let started_at_s = now_s();
    let state = (|| {
        Ok::<_, std::io::Error>(StateRecord {
            shim_pid: std::process::id() as i32,
            shim_start_ticks: process::own_start_ticks()?,
            boot_id: process::boot_id()?,
            child_pid: started.pid,
            started_at_s,
            enforcement: enforcement.clone(),
        })
    })()
    .and_then(|state| records::write_json_atomically(&dir.join(STATE_FILE), &state));
    if let Err(error) = state {
        // Nobody could ever observe or stop a workload without its state: end it now.
        signal_group(started.pid, libc::SIGKILL);
        collect_status(started.pid);
        kill_all_descendants(Instant::now() + END_WAIT);
        if let Some(cgroup) = cgroup {
            cgroup.kill_and_remove();
        }
        let reason = format!("its state could not be recorded: {error}");
        return record_failed_start(dir, &mut ready, reason, enforcement);
    }
    ready.signal();

    let cause = wait_for_end(dir, &spec, started.pid, &log);
    // The program has ended; nothing it started may outlive it.
    signal_group(started.pid, libc::SIGKILL);
    let status = collect_status(started.pid);
    let give_up_at = Instant::now() + END_WAIT;
    kill_all_descendants(give_up_at);
    let remaining = give_up_at.saturating_duration_since(Instant::now());
    if started.log_drained.recv_timeout(remaining).is_err() {
        let _ = lock(&log).note(
            "a process that could not be ended still holds the workload's output; \
             what it writes now is not recorded",
        );
    }
    if let Some(cgroup) = cgroup {
        let oom_kills = cgroup.oom_kills();
        if oom_kills > 0 {
            let _ = lock(&log).note(&format!(
                "the kernel ended {oom_kills} process(es) of the workload for going past its \
                 memory limit of {} MiB",
                cgroup.memory_mib()
            ));
        }
        cgroup.kill_and_remove();
    }
    let phase = match (cause, status) {
        (Some(Cause::TimeLimit), _) => Phase::TimedOut,
        (_, Some(status)) => phase_of_status(status),
        (_, None) => Phase::Lost {
            reason: "its supervisor could not collect its exit status".to_owned(),
        },
    };
    let record = ExitRecord {
        phase,
        started_at_s,
        ended_at_s: now_s(),
        enforcement,
    };
    match records::write_json_atomically(&dir.join(EXIT_FILE), &record) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

struct StartedProgram {
    pid: i32,
    /// Receives once the log thread has read the output pipe to its end.
    log_drained: mpsc::Receiver<()>,
}

fn start_program(
    spec: &WorkloadSpec,
    environment: &BTreeMap<OsString, OsString>,
    program: &Path,
    cgroup: Option<&Cgroup>,
    log: &Arc<Mutex<LogWriter>>,
) -> Result<StartedProgram, String> {
    let (mut output_reader, output_writer) =
        std::io::pipe().map_err(|error| format!("its output pipe could not be made: {error}"))?;
    let stderr_writer = output_writer
        .try_clone()
        .map_err(|error| format!("its output pipe could not be made: {error}"))?;
    // The log thread starts first, so it ends (at the pipe's end of file) whatever happens next.
    let (drained_sender, log_drained) = mpsc::channel();
    let thread_log = Arc::clone(log);
    std::thread::Builder::new()
        .name("voxhub-log".to_owned())
        .spawn(move || {
            let mut buffer = vec![0u8; LOG_READ_BYTES];
            loop {
                match output_reader.read(&mut buffer) {
                    Ok(0) => break,
                    // A log that cannot be written loses output, but the pipe must keep
                    // draining or the workload would block on its next write.
                    Ok(read) => drop(lock(&thread_log).append(&buffer[..read])),
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = drained_sender.send(());
        })
        .map_err(|error| format!("its log thread could not be started: {error}"))?;

    let supervisor_pid = std::process::id() as i32;
    let procs_fd = cgroup.map(Cgroup::procs_fd);
    let (argv0, arguments) = spec
        .argv
        .split_first()
        .ok_or_else(|| "the command is empty".to_owned())?;
    let mut command = std::process::Command::new(program);
    command
        .arg0(argv0)
        .args(arguments)
        .env_clear()
        .envs(environment)
        .current_dir(&spec.workdir)
        .stdin(std::process::Stdio::null())
        .stdout(output_writer)
        .stderr(stderr_writer)
        .process_group(0);
    if let Some(run_as) = spec.run_as {
        // std drops supplementary groups (setgroups) before it changes the ids.
        command.uid(run_as.uid).gid(run_as.gid);
    }
    // SAFETY: the closure makes only async-signal-safe system calls and allocates nothing.
    unsafe {
        command.pre_exec(move || prepare_child(supervisor_pid, procs_fd));
    }
    let spawned = command.spawn();
    // The supervisor's copies of the pipe's writing end must close, or the log thread
    // would never see the end of the output.
    drop(command);
    let child =
        spawned.map_err(|error| format!("the program '{argv0}' could not be started: {error}"))?;
    Ok(StartedProgram {
        pid: child.id() as i32,
        log_drained,
    })
}

/// Runs in the forked child just before it executes the program.
fn prepare_child(supervisor_pid: i32, procs_fd: Option<i32>) -> std::io::Result<()> {
    // SAFETY: async-signal-safe system calls with valid arguments.
    unsafe {
        // If the supervisor dies, the program must not run on without limits.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::getppid() != supervisor_pid {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(fd) = procs_fd
            && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
        {
            return Err(std::io::Error::last_os_error());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    Ok(())
}

/// Waits until the program ends, ending it on the time limit or a stop request. Returns
/// why the supervisor ended it, if it did.
fn wait_for_end(
    dir: &Path,
    spec: &WorkloadSpec,
    pid: i32,
    log: &Mutex<LogWriter>,
) -> Option<Cause> {
    let started = Instant::now();
    // A limit too large to represent is no limit; a grace too large, no SIGKILL.
    let deadline = match spec.time_limit_s {
        0 => None,
        limit_s => started.checked_add(Duration::from_secs(limit_s)),
    };
    let grace = Duration::from_secs(spec.grace_s);
    let stop_file = dir.join(STOP_FILE);
    let mut stop_signalled = false;
    let mut ending: Option<(Cause, Option<Instant>)> = None;
    let mut killed = false;
    loop {
        if has_ended_uncollected(pid) {
            return ending.map(|(cause, _)| cause);
        }
        reap_children_except(pid);
        let now = Instant::now();
        if ending.is_none() {
            let cause = if stop_signalled || stop_file.exists() {
                Some(Cause::Stop)
            } else if deadline.is_some_and(|deadline| now >= deadline) {
                Some(Cause::TimeLimit)
            } else {
                None
            };
            if let Some(cause) = cause {
                let why = match cause {
                    Cause::TimeLimit => format!("time limit of {} s reached", spec.time_limit_s),
                    Cause::Stop => "stop requested".to_owned(),
                };
                let _ = lock(log).note(&format!(
                    "{why}: sending SIGTERM to the workload's processes, SIGKILL after {} s",
                    spec.grace_s
                ));
                signal_group(pid, libc::SIGTERM);
                // A stopped process acts on SIGTERM only once it runs again.
                signal_group(pid, libc::SIGCONT);
                ending = Some((cause, now.checked_add(grace)));
            }
        }
        if let Some((_, Some(kill_at))) = ending
            && !killed
            && now >= kill_at
        {
            let _ = lock(log).note(&format!(
                "still running {} s after SIGTERM: sending SIGKILL",
                spec.grace_s
            ));
            signal_group(pid, libc::SIGKILL);
            killed = true;
        }
        let next_event = match ending {
            None => deadline,
            Some((_, kill_at)) if !killed => kill_at,
            Some(_) => None,
        };
        let wait = next_event.map_or(POLL_INTERVAL, |at| {
            at.saturating_duration_since(now).min(POLL_INTERVAL)
        });
        if let Some(libc::SIGTERM | libc::SIGINT) = wait_for_signal(wait) {
            stop_signalled = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;

    fn spec() -> WorkloadSpec {
        WorkloadSpec {
            workload_id: 7,
            user: "alice".to_owned(),
            argv: vec!["true".to_owned()],
            env: vec![
                ("CUDA_VISIBLE_DEVICES".to_owned(), "0,1,2,3".to_owned()),
                ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ],
            workspace: PathBuf::from("/home/alice"),
            workdir: PathBuf::from("/home/alice/project"),
            grant: Grant {
                cpu_millis: 1000,
                memory_mib: 512,
                gpu_devices: vec![1, 3],
            },
            time_limit_s: 60,
            grace_s: 5,
            log_cap_bytes: 1 << 20,
            run_as: None,
        }
    }

    fn variable<'a>(environment: &'a BTreeMap<OsString, OsString>, name: &str) -> &'a str {
        environment[OsStr::new(name)].to_str().unwrap()
    }

    #[test]
    fn the_environment_gets_voxhub_variables_that_the_spec_cannot_override() {
        let environment = child_environment(&spec()).unwrap();
        assert_eq!(variable(&environment, "CUDA_VISIBLE_DEVICES"), "1,3");
        assert_eq!(variable(&environment, "HOME"), "/home/alice");
        assert_eq!(variable(&environment, "VOXHUB_WORKSPACE"), "/home/alice");
        assert_eq!(variable(&environment, "VOXHUB_USER"), "alice");
        assert_eq!(variable(&environment, "VOXHUB_WORKLOAD_ID"), "7");
        assert_eq!(variable(&environment, "LANG"), "C.UTF-8");
        assert_eq!(variable(&environment, "PATH"), DEFAULT_PATH);
    }

    #[test]
    fn a_grant_without_gpus_hides_every_gpu() {
        let mut spec = spec();
        spec.grant.gpu_devices.clear();
        let environment = child_environment(&spec).unwrap();
        assert_eq!(variable(&environment, "CUDA_VISIBLE_DEVICES"), "");
    }

    #[test]
    fn a_bad_variable_name_is_a_reason_not_a_panic() {
        let mut spec = spec();
        spec.env.push(("A=B".to_owned(), "x".to_owned()));
        let reason = child_environment(&spec).unwrap_err();
        assert!(reason.contains("'A=B'"), "{reason}");
    }

    #[test]
    fn programs_are_found_on_path_or_relative_to_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let found =
            resolve_program(OsStr::new("sh"), OsStr::new(DEFAULT_PATH), dir.path()).unwrap();
        assert!(found.ends_with("sh"), "{}", found.display());
        let missing =
            resolve_program(OsStr::new("pythn"), OsStr::new("/usr/bin"), dir.path()).unwrap_err();
        assert_eq!(
            missing,
            "the program 'pythn' was not found on PATH (/usr/bin)"
        );
        std::fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        let not_executable =
            resolve_program(OsStr::new("./run.sh"), OsStr::new(""), dir.path()).unwrap_err();
        assert!(
            not_executable.contains("not executable"),
            "{not_executable}"
        );
        let absent =
            resolve_program(OsStr::new("./absent"), OsStr::new(""), dir.path()).unwrap_err();
        assert!(absent.contains("does not exist"), "{absent}");
        assert_eq!(
            resolve_program(OsStr::new(""), OsStr::new(""), dir.path()).unwrap_err(),
            "the command is empty"
        );
    }

    #[test]
    fn the_working_directory_must_be_an_existing_absolute_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_workdir(dir.path()).is_ok());
        assert!(
            check_workdir(Path::new("relative"))
                .unwrap_err()
                .contains("absolute")
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(
            check_workdir(&file)
                .unwrap_err()
                .contains("not a directory")
        );
        assert!(
            check_workdir(&dir.path().join("gone"))
                .unwrap_err()
                .contains("does not exist")
        );
    }

    #[test]
    fn wait_statuses_become_phases() {
        assert_eq!(phase_of_status(3 << 8), Phase::Exited { code: 3 });
        assert_eq!(
            phase_of_status(libc::SIGKILL),
            Phase::Signaled { signal: 9 }
        );
    }
}
