//! The conformance suite of the `Executor` trait: what every backend must do, written
//! against `&dyn Executor` so each backend's tests run the same cases
//! (`executor_suite(&local, &setup)`, later `executor_suite(&podman, &setup)`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use voxhub_exec::{ExecError, Executor, Grant, Observed, Phase, WorkloadSpec};

/// What a backend's test gives the suite.
pub struct SuiteSetup {
    /// An existing, empty directory that the backend's workloads can use as workspace.
    pub workspace: PathBuf,
    /// The suite uses ids from here on (up to 100 of them).
    pub first_workload_id: i64,
}

/// A small spec for `argv` with generous limits; tests change what they need.
pub fn spec(workload_id: i64, workspace: &std::path::Path, argv: &[&str]) -> WorkloadSpec {
    WorkloadSpec {
        workload_id,
        user: "alice".to_owned(),
        argv: argv.iter().map(|arg| (*arg).to_owned()).collect(),
        env: Vec::new(),
        workspace: workspace.to_owned(),
        workdir: workspace.to_owned(),
        grant: Grant {
            cpu_millis: 1000,
            memory_mib: 256,
            gpu_devices: Vec::new(),
        },
        time_limit_s: 20,
        grace_s: 1,
        log_cap_bytes: 1 << 20,
        run_as: None,
    }
}

pub fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

/// Polls until the workload is no longer `Running`.
pub async fn wait_until_finished(
    executor: &dyn Executor,
    workload_id: i64,
    timeout: Duration,
) -> Observed {
    let give_up_at = Instant::now() + timeout;
    loop {
        let observed = executor.observe(workload_id).await.unwrap();
        if observed.phase != Phase::Running {
            return observed;
        }
        assert!(
            Instant::now() < give_up_at,
            "workload {workload_id} still runs after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls until the workload is `Running` (for tests that stop or restart it).
pub async fn wait_until_running(executor: &dyn Executor, workload_id: i64) {
    let observed = executor.observe(workload_id).await.unwrap();
    assert_eq!(observed.phase, Phase::Running, "{observed:?}");
}

/// The whole log from the beginning, paging with `page_bytes`.
pub async fn whole_log(executor: &dyn Executor, workload_id: i64, page_bytes: usize) -> String {
    let mut offset = 0;
    let mut log = Vec::new();
    loop {
        let chunk = executor
            .logs(workload_id, offset, page_bytes)
            .await
            .unwrap();
        if chunk.restarted {
            log.clear();
        }
        if chunk.data.is_empty() {
            return String::from_utf8(log).unwrap();
        }
        log.extend_from_slice(&chunk.data);
        offset = chunk.next_offset;
    }
}

pub async fn executor_suite(executor: &dyn Executor, setup: &SuiteSetup) {
    let id = |n: i64| setup.first_workload_id + n;
    let ws = setup.workspace.as_path();
    tokio::join!(
        a_job_that_prints_and_exits_zero_is_exited_zero_with_its_output(executor, ws, id(0)),
        an_exit_code_is_reported(executor, ws, id(1)),
        a_missing_program_fails_to_start_naming_it(executor, ws, id(2)),
        a_missing_working_directory_fails_to_start_naming_it(executor, ws, id(3)),
        the_environment_and_working_directory_are_set(executor, ws, id(4)),
        no_gpu_is_visible_without_a_gpu_grant(executor, ws, id(5)),
        the_time_limit_ends_a_job(executor, ws, id(6)),
        a_job_ignoring_sigterm_is_killed_after_the_grace(executor, ws, id(7)),
        stop_ends_a_job_and_is_idempotent(executor, ws, id(8)),
        starting_twice_runs_once(executor, ws, id(9)),
        the_log_is_capped_and_keeps_the_newest_output(executor, ws, id(10)),
        unknown_workloads_are_not_found(executor, id(11)),
        forget_keeps_the_log_and_drops_the_rest(executor, ws, id(12)),
    );
    let listed: Vec<i64> = executor
        .list()
        .await
        .unwrap()
        .iter()
        .map(|workload| workload.workload_id)
        .collect();
    for n in [0, 1, 2, 6, 9] {
        assert!(listed.contains(&id(n)), "{} missing in {listed:?}", id(n));
    }
    assert!(
        !listed.contains(&id(12)),
        "forgotten workloads are not listed"
    );
    assert!(!listed.contains(&id(11)));
}

pub async fn a_job_that_prints_and_exits_zero_is_exited_zero_with_its_output(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    let spec = spec(workload_id, workspace, &sh("echo hello; echo oops >&2"));
    executor.start(&spec).await.unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(10)).await;
    assert_eq!(observed.phase, Phase::Exited { code: 0 });
    assert!(observed.started_at_s > 0);
    assert!(
        observed
            .ended_at_s
            .is_some_and(|ended| ended >= observed.started_at_s)
    );
    assert!(
        !observed.enforcement.note.is_empty(),
        "the enforcement is explained"
    );
    let log = whole_log(executor, workload_id, 1 << 20).await;
    assert!(log.contains("hello\n") && log.contains("oops\n"), "{log:?}");
}

pub async fn an_exit_code_is_reported(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    executor
        .start(&spec(workload_id, workspace, &sh("exit 3")))
        .await
        .unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(10)).await;
    assert_eq!(observed.phase, Phase::Exited { code: 3 });
}

pub async fn a_missing_program_fails_to_start_naming_it(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    executor
        .start(&spec(
            workload_id,
            workspace,
            &["pythn-not-installed", "train.py"],
        ))
        .await
        .unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(10)).await;
    match observed.phase {
        Phase::FailedToStart { reason } => {
            assert!(reason.contains("'pythn-not-installed'"), "{reason}");
            assert!(reason.contains("not found"), "{reason}");
        }
        other => panic!("expected FailedToStart, got {other:?}"),
    }
}

pub async fn a_missing_working_directory_fails_to_start_naming_it(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    let mut spec = spec(workload_id, workspace, &["true"]);
    spec.workdir = workspace.join("no-such-directory");
    executor.start(&spec).await.unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(10)).await;
    match observed.phase {
        Phase::FailedToStart { reason } => {
            assert!(reason.contains("no-such-directory"), "{reason}")
        }
        other => panic!("expected FailedToStart, got {other:?}"),
    }
}

pub async fn the_environment_and_working_directory_are_set(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    let workdir = workspace.join(format!("project-{workload_id}"));
    std::fs::create_dir_all(&workdir).unwrap();
    let mut spec = spec(
        workload_id,
        workspace,
        &sh(
            r#"printf '%s|%s|%s|%s|[%s]|%s\n' "$VOXHUB_WORKLOAD_ID" "$VOXHUB_USER" "$VOXHUB_WORKSPACE" "$HOME" "$CUDA_VISIBLE_DEVICES" "$EXTRA"; pwd -P"#,
        ),
    );
    spec.workdir = workdir.clone();
    spec.grant.gpu_devices = vec![1, 3];
    spec.env = vec![
        ("EXTRA".to_owned(), "42".to_owned()),
        ("CUDA_VISIBLE_DEVICES".to_owned(), "0,1,2,3".to_owned()),
    ];
    executor.start(&spec).await.unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(10)).await;
    assert_eq!(observed.phase, Phase::Exited { code: 0 });
    let log = whole_log(executor, workload_id, 1 << 20).await;
    let ws = workspace.display();
    assert!(
        log.starts_with(&format!("{workload_id}|alice|{ws}|{ws}|[1,3]|42\n")),
        "{log:?}"
    );
    let real_workdir = workdir.canonicalize().unwrap();
    assert!(
        log.ends_with(&format!("{}\n", real_workdir.display())),
        "{log:?}"
    );
}

pub async fn no_gpu_is_visible_without_a_gpu_grant(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    let spec = spec(
        workload_id,
        workspace,
        &sh(r#"printf '[%s]\n' "${CUDA_VISIBLE_DEVICES-unset}""#),
    );
    executor.start(&spec).await.unwrap();
    wait_until_finished(executor, workload_id, Duration::from_secs(10)).await;
    assert_eq!(whole_log(executor, workload_id, 1 << 20).await, "[]\n");
}

pub async fn the_time_limit_ends_a_job(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    let mut spec = spec(workload_id, workspace, &["sleep", "30"]);
    spec.time_limit_s = 1;
    spec.grace_s = 1;
    let started = Instant::now();
    executor.start(&spec).await.unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(8)).await;
    assert_eq!(observed.phase, Phase::TimedOut);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "ended early: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM should end sleep at once: {took:?}"
    );
}

pub async fn a_job_ignoring_sigterm_is_killed_after_the_grace(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    let mut spec = spec(workload_id, workspace, &sh(r#"trap "" TERM; sleep 30"#));
    spec.time_limit_s = 1;
    spec.grace_s = 1;
    let started = Instant::now();
    executor.start(&spec).await.unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(8)).await;
    assert_eq!(observed.phase, Phase::TimedOut);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "SIGKILL only after the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
}

pub async fn stop_ends_a_job_and_is_idempotent(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    executor
        .start(&spec(workload_id, workspace, &["sleep", "30"]))
        .await
        .unwrap();
    wait_until_running(executor, workload_id).await;
    let stopped = Instant::now();
    executor.stop(workload_id).await.unwrap();
    executor.stop(workload_id).await.unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(5)).await;
    assert_eq!(observed.phase, Phase::Signaled { signal: 15 });
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopped.elapsed()
    );
    executor.stop(workload_id).await.unwrap();
    assert_eq!(
        executor.observe(workload_id).await.unwrap().phase,
        Phase::Signaled { signal: 15 },
        "stopping an ended workload changes nothing"
    );
}

pub async fn starting_twice_runs_once(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    let counter = workspace.join(format!("runs-{workload_id}"));
    let script = format!("echo ran >> '{}'", counter.display());
    let spec = spec(workload_id, workspace, &sh(&script));
    let (first, second) = tokio::join!(executor.start(&spec), executor.start(&spec));
    first.unwrap();
    second.unwrap();
    executor.start(&spec).await.unwrap();
    wait_until_finished(executor, workload_id, Duration::from_secs(10)).await;
    executor.start(&spec).await.unwrap();
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "ran\n");
    let phase = executor.observe(workload_id).await.unwrap().phase;
    assert_eq!(
        phase,
        Phase::Exited { code: 0 },
        "a later start does not run it again"
    );
}

pub async fn the_log_is_capped_and_keeps_the_newest_output(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    let cap = 64 * 1024;
    let mut spec = spec(workload_id, workspace, &["seq", "1", "200000"]);
    spec.log_cap_bytes = cap;
    executor.start(&spec).await.unwrap();
    let observed = wait_until_finished(executor, workload_id, Duration::from_secs(20)).await;
    assert_eq!(observed.phase, Phase::Exited { code: 0 });
    let log = whole_log(executor, workload_id, 10_000).await;
    assert!(log.len() as u64 <= cap, "{} bytes", log.len());
    let (marker, rest) = log.split_once('\n').unwrap();
    assert!(
        marker.starts_with("[voxhub: ") && marker.contains("older bytes dropped"),
        "{marker}"
    );
    assert!(
        rest.ends_with("199999\n200000\n"),
        "{:?}",
        &rest[rest.len() - 20..]
    );
    let first_kept: u64 = rest.lines().next().unwrap().parse().unwrap();
    let kept_lines = rest.lines().count() as u64;
    assert_eq!(
        first_kept + kept_lines - 1,
        200_000,
        "whole lines, none missing"
    );
}

pub async fn unknown_workloads_are_not_found(executor: &dyn Executor, workload_id: i64) {
    assert!(matches!(
        executor.observe(workload_id).await,
        Err(ExecError::NotFound(id)) if id == workload_id
    ));
    assert!(matches!(
        executor.stop(workload_id).await,
        Err(ExecError::NotFound(_))
    ));
    assert!(matches!(
        executor.logs(workload_id, 0, 10).await,
        Err(ExecError::NotFound(_))
    ));
    assert!(matches!(
        executor.forget(workload_id).await,
        Err(ExecError::NotFound(_))
    ));
}

pub async fn forget_keeps_the_log_and_drops_the_rest(
    executor: &dyn Executor,
    workspace: &std::path::Path,
    workload_id: i64,
) {
    executor
        .start(&spec(workload_id, workspace, &sh("echo kept")))
        .await
        .unwrap();
    wait_until_finished(executor, workload_id, Duration::from_secs(10)).await;
    executor.forget(workload_id).await.unwrap();
    assert!(matches!(
        executor.observe(workload_id).await,
        Err(ExecError::NotFound(_))
    ));
    assert_eq!(whole_log(executor, workload_id, 3).await, "kept\n");
    executor.forget(workload_id).await.unwrap();
}
