//! Tests of the local-process executor: the conformance suite, then what only a local
//! backend can show (process groups, supervisors that outlive the executor or die, pids
//! that are recycled).

mod suite;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use suite::{
    SuiteSetup, executor_suite, sh, spec, wait_until_finished, wait_until_running, whole_log,
};
use voxhub_exec::{ExecError, Executor, LocalExecutor, Phase, SupervisorCommand};

fn supervisor() -> SupervisorCommand {
    SupervisorCommand {
        program: PathBuf::from(env!("CARGO_BIN_EXE_voxhub-supervise")),
        args: Vec::new(),
    }
}

struct Fixture {
    /// Kept for its lifetime: removed at the end of the test.
    _root: tempfile::TempDir,
    run_dir: PathBuf,
    workspace: PathBuf,
    executor: LocalExecutor,
}

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let run_dir = root.path().join("run");
    let workspace = root.path().join("workspace");
    std::fs::create_dir(&workspace).unwrap();
    let executor = LocalExecutor::new(run_dir.clone(), supervisor());
    Fixture {
        _root: root,
        run_dir,
        workspace,
        executor,
    }
}

fn state(run_dir: &Path, workload_id: i64) -> serde_json::Value {
    let path = run_dir.join(workload_id.to_string()).join("state.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn pid_in_state(run_dir: &Path, workload_id: i64, field: &str) -> i32 {
    state(run_dir, workload_id)[field].as_i64().unwrap() as i32
}

fn process_is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .trim_start()
                .chars()
                .next();
            state == Some('Z')
        }
    }
}

async fn wait_until_gone(pid: i32) -> bool {
    let give_up_at = Instant::now() + Duration::from_secs(3);
    while Instant::now() < give_up_at {
        if process_is_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The pids a script wrote to `pids` in its working directory, once it has written `count`.
async fn pids_written(file: &Path, count: usize) -> Vec<i32> {
    let give_up_at = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let pids: Vec<i32> = text
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        if pids.len() >= count {
            return pids;
        }
        assert!(
            Instant::now() < give_up_at,
            "the script never wrote its pids"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A shell that ignores SIGTERM, with a background child, both writing their pids.
fn group_script(pid_file: &Path) -> String {
    format!(
        r#"trap "" TERM; sleep 30 & echo $! >> '{file}'; echo $$ >> '{file}'; wait; sleep 30"#,
        file = pid_file.display()
    )
}

#[tokio::test]
async fn local_executor_passes_the_conformance_suite() {
    let fixture = fixture();
    assert_eq!(fixture.executor.name(), "local");
    let setup = SuiteSetup {
        workspace: fixture.workspace.clone(),
        first_workload_id: 1000,
    };
    executor_suite(&fixture.executor, &setup).await;
}

#[tokio::test]
async fn the_time_limit_kills_the_whole_process_group() {
    let fixture = fixture();
    let pid_file = fixture.workspace.join("pids");
    let mut spec = spec(1, &fixture.workspace, &sh(&group_script(&pid_file)));
    spec.time_limit_s = 1;
    spec.grace_s = 1;
    fixture.executor.start(&spec).await.unwrap();
    let pids = pids_written(&pid_file, 2).await;
    let observed = wait_until_finished(&fixture.executor, 1, Duration::from_secs(8)).await;
    assert_eq!(observed.phase, Phase::TimedOut);
    for pid in pids {
        assert!(
            process_is_gone(pid),
            "process {pid} of the workload survived"
        );
    }
    let log = whole_log(&fixture.executor, 1, 1 << 20).await;
    assert!(
        log.contains("[voxhub: time limit of 1 s reached"),
        "{log:?}"
    );
    assert!(log.contains("sending SIGKILL"), "{log:?}");
}

#[tokio::test]
async fn stop_kills_the_whole_process_group() {
    let fixture = fixture();
    let pid_file = fixture.workspace.join("pids");
    let mut spec = spec(2, &fixture.workspace, &sh(&group_script(&pid_file)));
    spec.grace_s = 1;
    fixture.executor.start(&spec).await.unwrap();
    let pids = pids_written(&pid_file, 2).await;
    fixture.executor.stop(2).await.unwrap();
    let observed = wait_until_finished(&fixture.executor, 2, Duration::from_secs(5)).await;
    assert_eq!(
        observed.phase,
        Phase::Signaled { signal: 9 },
        "it ignored SIGTERM"
    );
    for pid in pids {
        assert!(
            process_is_gone(pid),
            "process {pid} of the workload survived"
        );
    }
}

#[tokio::test]
async fn a_program_that_exits_on_sigterm_with_a_code_is_reported_as_it_ended() {
    let fixture = fixture();
    let spec = spec(
        3,
        &fixture.workspace,
        &sh(r#"trap "exit 42" TERM; sleep 30 & wait"#),
    );
    fixture.executor.start(&spec).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    fixture.executor.stop(3).await.unwrap();
    let observed = wait_until_finished(&fixture.executor, 3, Duration::from_secs(5)).await;
    assert_eq!(observed.phase, Phase::Exited { code: 42 });
}

#[tokio::test]
async fn leftover_background_processes_end_with_the_program() {
    let fixture = fixture();
    let pid_file = fixture.workspace.join("pids");
    // The second one leaves the process group and the session, as a daemon would; the
    // script ends only once it has.
    let script = format!(
        r#"sleep 30 & echo $! >> '{file}'
setsid sh -c "echo \$\$ >> '{file}'; exec sleep 31" &
while [ "$(wc -l < '{file}')" -lt 2 ]; do sleep 0.02; done
echo started"#,
        file = pid_file.display()
    );
    fixture
        .executor
        .start(&spec(4, &fixture.workspace, &sh(&script)))
        .await
        .unwrap();
    let observed = wait_until_finished(&fixture.executor, 4, Duration::from_secs(5)).await;
    assert_eq!(observed.phase, Phase::Exited { code: 0 });
    let pids = pids_written(&pid_file, 1).await;
    assert!(
        process_is_gone(pids[0]),
        "the background sleep outlived the workload"
    );
    assert_eq!(whole_log(&fixture.executor, 4, 100).await, "started\n");
}

#[tokio::test]
async fn a_new_executor_re_adopts_a_running_workload_and_sees_its_real_exit_code() {
    let fixture = fixture();
    let spec = spec(
        5,
        &fixture.workspace,
        &sh("echo begun; sleep 2; echo done; exit 7"),
    );
    {
        let first = LocalExecutor::new(fixture.run_dir.clone(), supervisor());
        first.start(&spec).await.unwrap();
        wait_until_running(&first, 5).await;
    }
    let second = LocalExecutor::new(fixture.run_dir.clone(), supervisor());
    let listed = second.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].phase, Phase::Running);
    second.start(&spec).await.unwrap();
    let observed = wait_until_finished(&second, 5, Duration::from_secs(10)).await;
    assert_eq!(observed.phase, Phase::Exited { code: 7 });
    assert_eq!(whole_log(&second, 5, 1 << 20).await, "begun\ndone\n");
}

#[tokio::test]
async fn a_killed_supervisor_makes_the_workload_lost_and_takes_the_program_with_it() {
    let fixture = fixture();
    fixture
        .executor
        .start(&spec(6, &fixture.workspace, &["sleep", "30"]))
        .await
        .unwrap();
    wait_until_running(&fixture.executor, 6).await;
    let shim = pid_in_state(&fixture.run_dir, 6, "shim_pid");
    let child = pid_in_state(&fixture.run_dir, 6, "child_pid");
    // SAFETY: plain system call.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    assert!(wait_until_gone(shim).await);
    match fixture.executor.observe(6).await.unwrap().phase {
        Phase::Lost { reason } => {
            assert!(reason.contains("supervisor process is gone"), "{reason}")
        }
        other => panic!("expected Lost, got {other:?}"),
    }
    assert!(
        wait_until_gone(child).await,
        "the program ran on without its supervisor"
    );
    fixture.executor.stop(6).await.unwrap();
    fixture.executor.forget(6).await.unwrap();
}

#[tokio::test]
async fn a_recycled_supervisor_pid_is_not_mistaken_for_the_supervisor() {
    let fixture = fixture();
    let mut spec = spec(7, &fixture.workspace, &["sleep", "30"]);
    spec.time_limit_s = 5;
    fixture.executor.start(&spec).await.unwrap();
    wait_until_running(&fixture.executor, 7).await;
    let state_path = fixture.run_dir.join("7").join("state.json");
    let mut state = state(&fixture.run_dir, 7);
    let shim = state["shim_pid"].as_i64().unwrap() as i32;
    let ticks = state["shim_start_ticks"].as_u64().unwrap();
    state["shim_start_ticks"] = serde_json::json!(ticks + 1);
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    match fixture.executor.observe(7).await.unwrap().phase {
        Phase::Lost { reason } => assert!(reason.contains("another process"), "{reason}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    // The executor no longer signals that pid; end the real supervisor directly.
    fixture.executor.stop(7).await.unwrap();
    // SAFETY: plain system call to the supervisor this test started.
    unsafe { libc::kill(shim, libc::SIGTERM) };
    let give_up_at = Instant::now() + Duration::from_secs(5);
    loop {
        let phase = fixture.executor.observe(7).await.unwrap().phase;
        if phase == (Phase::Signaled { signal: 15 }) {
            break;
        }
        assert!(
            Instant::now() < give_up_at,
            "the outcome was never recorded: {phase:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_start_interrupted_before_the_supervisor_ran_is_starting_then_failed() {
    let fixture = fixture();
    let dir = fixture.run_dir.join("8");
    std::fs::create_dir_all(&dir).unwrap();
    let spec_json = serde_json::to_vec(&spec(8, &fixture.workspace, &["true"])).unwrap();
    std::fs::write(dir.join("spec.json"), spec_json).unwrap();
    assert_eq!(
        fixture.executor.observe(8).await.unwrap().phase,
        Phase::Running
    );
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(dir.join("spec.json"))
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    match fixture.executor.observe(8).await.unwrap().phase {
        Phase::FailedToStart { reason } => {
            assert!(reason.contains("never recorded a start"), "{reason}")
        }
        other => panic!("expected FailedToStart, got {other:?}"),
    }
}

#[tokio::test]
async fn a_supervisor_that_cannot_be_started_is_an_error_and_leaves_no_trace() {
    let fixture = fixture();
    let executor = LocalExecutor::new(
        fixture.run_dir.clone(),
        SupervisorCommand {
            program: fixture.run_dir.join("no-such-supervisor"),
            args: vec!["supervise".to_owned()],
        },
    );
    let error = executor
        .start(&spec(9, &fixture.workspace, &["true"]))
        .await
        .unwrap_err();
    assert!(matches!(error, ExecError::Start(_)), "{error}");
    assert!(error.to_string().contains("no-such-supervisor"), "{error}");
    assert!(matches!(
        executor.observe(9).await,
        Err(ExecError::NotFound(9))
    ));
    fixture
        .executor
        .start(&spec(9, &fixture.workspace, &["true"]))
        .await
        .unwrap();
    let observed = wait_until_finished(&fixture.executor, 9, Duration::from_secs(5)).await;
    assert_eq!(
        observed.phase,
        Phase::Exited { code: 0 },
        "a later start can run it"
    );
}

#[tokio::test]
async fn a_running_workload_cannot_be_forgotten() {
    let fixture = fixture();
    fixture
        .executor
        .start(&spec(10, &fixture.workspace, &["sleep", "30"]))
        .await
        .unwrap();
    assert!(matches!(
        fixture.executor.forget(10).await,
        Err(ExecError::StillRunning(10))
    ));
    fixture.executor.stop(10).await.unwrap();
    wait_until_finished(&fixture.executor, 10, Duration::from_secs(5)).await;
    fixture.executor.forget(10).await.unwrap();
    assert!(!fixture.run_dir.join("10").exists());
    assert!(fixture.run_dir.join("logs").join("10.log").exists());
}

#[tokio::test]
async fn the_enforcement_says_what_this_machine_does() {
    let fixture = fixture();
    fixture
        .executor
        .start(&spec(11, &fixture.workspace, &["true"]))
        .await
        .unwrap();
    let observed = wait_until_finished(&fixture.executor, 11, Duration::from_secs(5)).await;
    let enforcement = observed.enforcement;
    if enforcement.memory {
        assert!(
            enforcement.note.starts_with("cgroup v2"),
            "{}",
            enforcement.note
        );
    } else {
        eprintln!(
            "NOTE: memory and cpu limits are not enforced here: {}",
            enforcement.note
        );
        assert!(
            enforcement.note.starts_with("not enforced"),
            "{}",
            enforcement.note
        );
    }
}

#[tokio::test]
async fn an_empty_run_directory_lists_nothing() {
    let fixture = fixture();
    assert!(fixture.executor.list().await.unwrap().is_empty());
}

#[test]
fn the_supervisor_records_a_directory_without_a_spec_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_voxhub-supervise"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let exit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("exit.json")).unwrap()).unwrap();
    let reason = exit["phase"]["FailedToStart"]["reason"].as_str().unwrap();
    assert!(reason.contains("spec.json"), "{reason}");
}

#[tokio::test]
async fn a_workload_run_as_another_user_cannot_read_the_supervisors_files() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("*** SKIPPED: switching users needs root; this test runs as another user ***");
        return;
    }
    let fixture = fixture();
    let root = fixture.workspace.parent().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&fixture.workspace, Some(200_123), Some(200_123)).unwrap();
    let secret = root.join("secret.txt");
    std::fs::write(&secret, "not for workloads").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let script = format!(
        "id -u; id -g; cat {} || echo refused; echo mine > own.txt",
        secret.display()
    );
    let mut spec = spec(11, &fixture.workspace, &sh(&script));
    spec.run_as = Some(voxhub_exec::RunAs {
        uid: 200_123,
        gid: 200_123,
    });
    fixture.executor.start(&spec).await.unwrap();
    let observed = wait_until_finished(&fixture.executor, 11, Duration::from_secs(10)).await;
    assert_eq!(observed.phase, Phase::Exited { code: 0 });
    let log = whole_log(&fixture.executor, 11, 4096).await;
    assert!(log.contains("200123\n200123\n"), "{log}");
    assert!(
        log.contains("refused") && !log.contains("not for workloads"),
        "{log}"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(fixture.workspace.join("own.txt"))
            .unwrap()
            .uid(),
        200_123
    );
}
