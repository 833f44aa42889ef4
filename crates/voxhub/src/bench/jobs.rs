//! `voxhub bench jobs`: job throughput from submission to the end. A fresh voxhub server
//! with a node of all cores and no per-user limit gets `--count` trivial jobs (`true`,
//! small CPU and memory so that many run at once) from a few concurrent submitters over
//! the API; the clock runs from the first submission until the queue is empty, then every
//! job's outcome is checked. With `--slurm` the same jobs (`sbatch --wrap true`) go
//! through a one-node Slurm started by `bench/slurm_start.sh`, in the same run.

use super::procs::{MachineLoad, RssSampler, cpu_seconds, wait_quiet};
use super::{
    ADMIN_PASSWORD, Table, USER_PASSWORD, create_student, login, median, num, percentile,
    scripts_dir, start_server,
};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct JobsArgs {
    /// Jobs to run (1 to 10,000).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Runs (1 to 10); each runs voxhub, then the peer, on fresh servers.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Concurrent submitters (1 to 64).
    #[arg(long, default_value_t = 4)]
    submitters: usize,
    /// CPU cores each job asks for.
    #[arg(long, default_value_t = 0.05)]
    cpus: f64,
    /// Memory each job asks for.
    #[arg(long, default_value = "16M")]
    memory: String,
    /// Seconds to wait for every job to end before giving up (10 to 3600).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Also run the same jobs through a one-node Slurm (needs `slurm-wlm` and `munge`).
    #[arg(long)]
    slurm: bool,
    /// CPUs the Slurm node declares (one job per CPU; more than the machine has
    /// overcommits it, as voxhub's fractional requests do).
    #[arg(long, default_value_t = 64)]
    slurm_cpus: u32,
    /// The folder with the peer scripts (default: `bench/` of the source tree).
    #[arg(long)]
    scripts: Option<PathBuf>,
    /// Print a Markdown table (for BENCHMARKS.md) instead of plain text.
    #[arg(long)]
    markdown: bool,
}

/// How often the harness looks whether everything has ended (both systems alike).
const POLL: Duration = Duration::from_millis(200);

struct Outcome {
    system: String,
    jobs: usize,
    submit_s: f64,
    submit_p50_ms: f64,
    submit_p99_ms: f64,
    submit_errors: usize,
    all_done_s: f64,
    succeeded: usize,
    /// State (as the system names it) → count, for everything that did not succeed.
    other: BTreeMap<String, usize>,
    daemon_rss_max_mib: f64,
    daemon_cpu_s: f64,
    machine_busy_pct: f64,
}

pub async fn run(args: JobsArgs) -> Result<ExitCode> {
    if !(1..=10_000).contains(&args.count) {
        bail!("--count must be between 1 and 10,000");
    }
    if !(1..=64).contains(&args.submitters) {
        bail!("--submitters must be between 1 and 64");
    }
    if !(10..=3600).contains(&args.timeout) {
        bail!("--timeout must be between 10 and 3600 seconds");
    }
    if !(1..=4096).contains(&args.slurm_cpus) {
        bail!("--slurm-cpus must be between 1 and 4096");
    }
    let scripts = if args.slurm {
        Some(scripts_dir(args.scripts.as_deref())?)
    } else {
        None
    };
    if !(1..=10).contains(&args.runs) {
        bail!("--runs must be between 1 and 10");
    }
    let mut outcomes = Vec::new();
    let mut slurm_note = None;
    for run in 1..=args.runs {
        eprintln!("run {run} of {}", args.runs);
        outcomes.push(run_voxhub(&args).await?);
        if let Some(scripts) = &scripts
            && slurm_note.is_none()
        {
            match run_slurm(&args, scripts).await {
                Ok(Some(outcome)) => outcomes.push(outcome),
                Ok(None) => slurm_note = Some("Slurm was skipped (see above)."),
                Err(error) => {
                    eprintln!("the Slurm run failed: {error:#}");
                    slurm_note = Some("The Slurm run failed (see above).");
                }
            }
        }
    }
    print_outcomes(&args, &outcomes, slurm_note);
    let all_succeeded = outcomes
        .iter()
        .all(|o| o.succeeded == o.jobs && o.submit_errors == 0);
    Ok(if all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn print_outcomes(args: &JobsArgs, outcomes: &[Outcome], note: Option<&str>) {
    let mut table = Table::new(&[
        "system",
        "jobs>",
        "submit s>",
        "submit jobs/s>",
        "submit p50 ms>",
        "submit p99 ms>",
        "all done s>",
        "jobs/s end to end>",
        "not succeeded>",
        "daemon RSS max MiB>",
        "daemon CPU s>",
        "machine busy %>",
    ]);
    for o in outcomes {
        let not_ok = o.jobs - o.succeeded.min(o.jobs);
        let detail = if o.other.is_empty() && o.submit_errors == 0 {
            not_ok.to_string()
        } else {
            let mut parts: Vec<String> = o.other.iter().map(|(k, v)| format!("{v} {k}")).collect();
            if o.submit_errors > 0 {
                parts.push(format!("{} refused", o.submit_errors));
            }
            format!("{not_ok} ({})", parts.join(", "))
        };
        table.row(vec![
            o.system.clone(),
            o.jobs.to_string(),
            num(Some(o.submit_s), 2),
            num(Some(o.jobs as f64 / o.submit_s), 0),
            num(Some(o.submit_p50_ms), 1),
            num(Some(o.submit_p99_ms), 1),
            num(Some(o.all_done_s), 2),
            num(Some(o.jobs as f64 / o.all_done_s), 1),
            detail,
            num(Some(o.daemon_rss_max_mib), 0),
            num(Some(o.daemon_cpu_s), 1),
            num(Some(o.machine_busy_pct), 0),
        ]);
    }
    table.print(args.markdown);
    println!();
    println!(
        "{} submitters; each job `true` with {} CPU and {}; all done = first submission until nothing is queued or running (polled every {} ms).",
        args.submitters,
        args.cpus,
        args.memory,
        POLL.as_millis()
    );
    let (voxhub, slurm): (Vec<&Outcome>, Vec<&Outcome>) =
        outcomes.iter().partition(|o| o.system == "voxhub");
    if !slurm.is_empty() {
        let rate = |list: &[&Outcome], seconds: fn(&Outcome) -> f64| {
            median(
                &list
                    .iter()
                    .map(|o| o.jobs as f64 / seconds(o))
                    .collect::<Vec<_>>(),
            )
        };
        let (v_end, s_end) = (
            rate(&voxhub, |o| o.all_done_s),
            rate(&slurm, |o| o.all_done_s),
        );
        let (v_sub, s_sub) = (rate(&voxhub, |o| o.submit_s), rate(&slurm, |o| o.submit_s));
        println!(
            "voxhub / Slurm end to end{}: {:.2}× ({v_end:.1} vs {s_end:.1} jobs/s); submission: {:.2}× ({v_sub:.0} vs {s_sub:.0} jobs/s).",
            match voxhub.len().min(slurm.len()) {
                1 => String::new(),
                runs => format!(" (median of {runs} runs)"),
            },
            v_end / s_end,
            v_sub / s_sub
        );
    }
    if let Some(note) = note {
        println!("{note}");
    }
}

async fn run_voxhub(args: &JobsArgs) -> Result<Outcome> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let server = start_server(
        &[
            ("VOXHUB_WORKLOADS__MAX_RUNNING_PER_USER", "0".into()),
            ("VOXHUB_NODE__CPUS", format!("{cores}.0")),
        ],
        None,
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.submitters + 4)
        .timeout(Duration::from_secs(120))
        .build()?;
    let admin = login(&http, &server.url, "admin", ADMIN_PASSWORD).await?;
    create_student(&http, &server.url, &admin, "benchjobs").await?;
    let token = login(&http, &server.url, "benchjobs", USER_PASSWORD).await?;
    eprintln!(
        "voxhub server at {} (pid {}), node of {cores} cores, no per-user limit",
        server.url,
        server.pid()
    );
    let body = |name: String| json!({"name": name, "argv": ["true"], "cpus": args.cpus, "memory": args.memory, "time_limit": "10m"});
    // One job first, untimed, so both systems are measured warm.
    submit_voxhub(&http, &server.url, &token, body("warm-up".into())).await?;
    wait_voxhub_empty(&http, &server.url, &token, Duration::from_secs(60)).await?;
    tokio::task::spawn_blocking(|| wait_quiet(Duration::from_secs(60))).await?;
    eprintln!("voxhub: submitting {} jobs …", args.count);

    let rss = RssSampler::start(vec![server.pid()]);
    let cpu_before = cpu_seconds(server.pid());
    let load = MachineLoad::start();
    let started = Instant::now();
    let mut submitters = Vec::new();
    for k in 0..args.submitters {
        let http = http.clone();
        let url = server.url.clone();
        let token = token.clone();
        let bodies: Vec<Value> = (k..args.count)
            .step_by(args.submitters)
            .map(|i| body(format!("bench-{i}")))
            .collect();
        submitters.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut latencies_ms = Vec::new();
            let mut errors = Vec::new();
            for body in bodies {
                let sent = Instant::now();
                match submit_voxhub(&http, &url, &token, body).await {
                    Ok(id) => {
                        latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                        ids.push(id);
                    }
                    Err(error) => errors.push(format!("{error:#}")),
                }
            }
            (ids, latencies_ms, errors)
        }));
    }
    let mut ids = Vec::new();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in submitters {
        let (mut i, mut l, mut e) = task.await?;
        ids.append(&mut i);
        latencies.append(&mut l);
        errors.append(&mut e);
    }
    let submit_s = started.elapsed().as_secs_f64();
    let timeout = Duration::from_secs(args.timeout).saturating_sub(started.elapsed());
    let drained = wait_voxhub_empty(&http, &server.url, &token, timeout).await;
    let all_done_s = started.elapsed().as_secs_f64();
    let machine_busy_pct = load.busy_percent();
    let daemon_cpu_s = cpu_seconds(server.pid()) - cpu_before;
    let daemon_rss_max_mib = rss.stop().await;
    if let Some(first) = errors.first() {
        eprintln!(
            "voxhub refused {} submissions; the first: {first}",
            errors.len()
        );
    }
    if let Err(error) = drained {
        eprintln!("voxhub: {error:#}");
    }

    // Every job's outcome, after the clock has stopped.
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let ids = Arc::new(ids);
    let mut checkers = Vec::new();
    for k in 0..8 {
        let (http, url, token, ids) =
            (http.clone(), server.url.clone(), token.clone(), ids.clone());
        checkers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for id in ids.iter().skip(k).step_by(8) {
                let view: Value = match http
                    .get(format!("{url}/api/v1/workloads/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                {
                    Ok(response) => response.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                seen.push((
                    view["state"].as_str().unwrap_or("unknown").to_string(),
                    view["reason"].as_str().unwrap_or_default().to_string(),
                ));
            }
            seen
        }));
    }
    for checker in checkers {
        for (state, reason) in checker.await? {
            if state != "succeeded" && !reason.is_empty() {
                *reasons.entry(reason).or_default() += 1;
            }
            *states.entry(state).or_default() += 1;
        }
    }
    for (reason, count) in &reasons {
        eprintln!("voxhub: {count} jobs did not succeed: {reason}");
    }
    let succeeded = states.remove("succeeded").unwrap_or(0);
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(Outcome {
        system: "voxhub".into(),
        jobs: args.count,
        submit_s,
        submit_p50_ms: percentile(&latencies, 50.0),
        submit_p99_ms: percentile(&latencies, 99.0),
        submit_errors: errors.len(),
        all_done_s,
        succeeded,
        other: states,
        daemon_rss_max_mib,
        daemon_cpu_s,
        machine_busy_pct,
    })
}

async fn submit_voxhub(http: &reqwest::Client, url: &str, token: &str, body: Value) -> Result<i64> {
    let response = http
        .post(format!("{url}/api/v1/jobs"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let view: Value = response.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::CREATED {
        bail!(
            "{status}: {}",
            view["message"].as_str().unwrap_or("no message")
        );
    }
    view["id"].as_i64().context("the answer has no id")
}

/// Polls the caller's active workloads until there are none.
async fn wait_voxhub_empty(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut last = 0;
    loop {
        let response = http
            .get(format!("{url}/api/v1/workloads?active=true&scope=mine"))
            .bearer_auth(token)
            .send()
            .await?;
        if response.status().is_success() {
            let active: Value = response.json().await?;
            last = active.as_array().map(Vec::len).unwrap_or(0);
            if last == 0 {
                return Ok(());
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "{last} (of at most 500 listed) workloads were still active after {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The Slurm daemons of one run; stopped by `slurm_stop.sh` when dropped.
struct Slurm {
    dir: tempfile::TempDir,
    stop_script: PathBuf,
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let status = std::process::Command::new("bash")
            .arg(&self.stop_script)
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "warning: stopping Slurm failed; its daemons may still run (PID files in {})",
                self.dir.path().display()
            );
        }
    }
}

impl Slurm {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("slurm.conf")
    }

    fn pid(&self, daemon: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join(format!("{daemon}.pid")))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts Slurm with `slurm_start.sh`; `None` (after saying why) when it is not installed.
fn start_slurm(args: &JobsArgs, scripts: &Path) -> Result<Option<Slurm>> {
    let dir = tempfile::Builder::new()
        .prefix("voxhub-bench-slurm-")
        .tempdir()?;
    let (ctld_port, slurmd_port) = (free_port()?, free_port()?);
    let slurm = Slurm {
        dir,
        stop_script: scripts.join("slurm_stop.sh"),
    };
    let status = std::process::Command::new("bash")
        .arg(scripts.join("slurm_start.sh"))
        .arg(slurm.dir.path())
        .arg(args.slurm_cpus.to_string())
        .arg(ctld_port.to_string())
        .arg(slurmd_port.to_string())
        .status()
        .context("cannot run slurm_start.sh")?;
    match status.code() {
        Some(0) => Ok(Some(slurm)),
        Some(3) => {
            eprintln!("skipping the Slurm comparison; voxhub's figures follow alone.");
            Ok(None)
        }
        _ => bail!(
            "slurm_start.sh failed ({status}); its logs are in {}",
            slurm.dir.path().join("log").display()
        ),
    }
}

async fn slurm_command(slurm: &Slurm, program: &str, args: &[&str]) -> Result<String> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .env("SLURM_CONF", slurm.conf())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

const SBATCH: &[&str] = &[
    "--parsable",
    "-o",
    "/dev/null",
    "-e",
    "/dev/null",
    "-n1",
    "--mem=16M",
    "-t",
    "10",
    "--wrap",
    "true",
];

async fn wait_slurm_empty(slurm: &Slurm, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let queue = slurm_command(slurm, "squeue", &["-h", "-o", "%i"]).await?;
        let left = queue.lines().filter(|l| !l.trim().is_empty()).count();
        if left == 0 {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!(
                "{left} Slurm jobs were still queued or running after {} s",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn run_slurm(args: &JobsArgs, scripts: &Path) -> Result<Option<Outcome>> {
    let Some(slurm) = start_slurm(args, scripts)? else {
        return Ok(None);
    };
    let version = slurm_command(&slurm, "sinfo", &["-V"]).await?;
    // One job first, untimed (Slurm's first scheduling pass comes a few seconds after start).
    slurm_command(&slurm, "sbatch", SBATCH).await?;
    wait_slurm_empty(&slurm, Duration::from_secs(60)).await?;
    tokio::task::spawn_blocking(|| wait_quiet(Duration::from_secs(60))).await?;
    eprintln!("Slurm: submitting {} jobs …", args.count);
    let daemons: Vec<u32> = ["slurmctld", "slurmd"]
        .iter()
        .filter_map(|d| slurm.pid(d))
        .collect();
    let rss = RssSampler::start(daemons.clone());
    let cpu_before: f64 = daemons.iter().map(|&p| cpu_seconds(p)).sum();
    let load = MachineLoad::start();
    let started = Instant::now();
    let slurm = Arc::new(slurm);
    let mut submitters = Vec::new();
    for k in 0..args.submitters {
        let slurm = slurm.clone();
        let jobs = (k..args.count).step_by(args.submitters).count();
        submitters.push(tokio::spawn(async move {
            let mut latencies_ms = Vec::new();
            let mut errors = Vec::new();
            for _ in 0..jobs {
                let sent = Instant::now();
                match slurm_command(&slurm, "sbatch", SBATCH).await {
                    Ok(_) => latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0),
                    Err(error) => errors.push(format!("{error:#}")),
                }
            }
            (latencies_ms, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in submitters {
        let (mut l, mut e) = task.await?;
        latencies.append(&mut l);
        errors.append(&mut e);
    }
    let submit_s = started.elapsed().as_secs_f64();
    let timeout = Duration::from_secs(args.timeout).saturating_sub(started.elapsed());
    let drained = wait_slurm_empty(&slurm, timeout).await;
    let all_done_s = started.elapsed().as_secs_f64();
    let machine_busy_pct = load.busy_percent();
    let daemon_cpu_s = daemons.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu_before;
    let daemon_rss_max_mib = rss.stop().await;
    if let Some(first) = errors.first() {
        eprintln!("sbatch failed {} times; the first: {first}", errors.len());
    }
    if let Err(error) = drained {
        eprintln!("Slurm: {error:#}");
    }
    // Finished jobs stay visible for MinJobAge (300 s): count their end states, the
    // warm-up job excepted (job id 1).
    let listing = slurm_command(&slurm, "squeue", &["-h", "-t", "all", "-o", "%i %T"]).await?;
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for line in listing.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(id), Some(state)) = (parts.next(), parts.next())
            && id != "1"
        {
            *states.entry(state.to_lowercase()).or_default() += 1;
        }
    }
    let succeeded = states.remove("completed").unwrap_or(0);
    let missing =
        (args.count - errors.len()).saturating_sub(succeeded + states.values().sum::<usize>());
    if missing > 0 {
        states.insert("not listed".into(), missing);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(Some(Outcome {
        system: format!(
            "Slurm {} ({} CPUs, {})",
            version.split_whitespace().nth(1).unwrap_or("?"),
            args.slurm_cpus,
            if std::env::var("SLURM_PROFILE").as_deref() == Ok("default") {
                "as shipped"
            } else {
                "tuned"
            }
        ),
        jobs: args.count,
        submit_s,
        submit_p50_ms: percentile(&latencies, 50.0),
        submit_p99_ms: percentile(&latencies, 99.0),
        submit_errors: errors.len(),
        all_done_s,
        succeeded,
        other: states,
        daemon_rss_max_mib,
        daemon_cpu_s,
        machine_busy_pct,
    }))
}
