//! `voxhub bench instances`: N JupyterLab instances launched at once, one per user, on a
//! fresh voxhub server whose instance size is small enough that all N fit. Measures the
//! time until every one answers `GET /i/<id>/api/status` through voxhub's proxy with its
//! owner's bearer token, the resident memory of the server, of the supervisors and of the
//! JupyterLab processes, and the time to stop them all. With `--jupyterhub` the same N
//! servers are requested from JupyterHub (`bench/jupyterhub_spawn.py`) in the same run.

use super::procs::{
    MachineLoad, ProcTable, cmdline, cpu_seconds, descendants, memory_mib, process_table, pss_mib,
    signal_matching, ticks_per_second, wait_quiet,
};
use super::{
    ADMIN_PASSWORD, Table, USER_PASSWORD, create_student, login, median, num, scripts_dir,
    start_server,
};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct InstancesArgs {
    /// Instances launched at once, one run per value (comma-separated, 1 to 200 each).
    #[arg(long, value_delimiter = ',', default_value = "20,60")]
    count: Vec<usize>,
    /// Runs per count.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The `jupyter` command voxhub starts.
    #[arg(long, default_value = "/opt/voxhub/jupyter-venv/bin/jupyter")]
    jupyter: PathBuf,
    /// CPU cores of the benchmark's instance size. The node declares at least
    /// count × this many cores (all cores of the machine, or more: overcommitted).
    #[arg(long, default_value_t = 0.05)]
    size_cpus: f64,
    /// Memory of the benchmark's instance size (JupyterLab needs about 130 MB where the
    /// grant is enforced with cgroups).
    #[arg(long, default_value = "256M")]
    size_memory: String,
    /// Seconds from the launch until an instance that does not answer counts as failed.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Seconds after all are ready before memory is sampled.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Also request the same servers from JupyterHub (installed by
    /// `bench/jupyterhub_install.sh` when missing).
    #[arg(long)]
    jupyterhub: bool,
    /// Where the JupyterHub peer is (or gets) installed.
    #[arg(long, default_value = "/opt/voxhub/bench-jupyterhub")]
    jupyterhub_prefix: PathBuf,
    /// The folder with the peer scripts (default: `bench/` of the source tree).
    #[arg(long)]
    scripts: Option<PathBuf>,
    /// Print a Markdown table (for BENCHMARKS.md) instead of plain text.
    #[arg(long)]
    markdown: bool,
}

/// How often the harness lists the workloads to notice running instances.
const POLL: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Outcome {
    system: String,
    n: usize,
    ready: usize,
    all_ready_s: Option<f64>,
    first_ready_s: Option<f64>,
    median_ready_s: Option<f64>,
    server_rss_idle: Option<f64>,
    server_rss_peak: Option<f64>,
    server_rss_after: Option<f64>,
    proxy_rss_after: Option<f64>,
    supervisors_rss_after: Option<f64>,
    supervisors_pss_after: Option<f64>,
    jupyter_rss_after: Option<f64>,
    jupyter_pss_after: Option<f64>,
    server_cpu_s: Option<f64>,
    jupyter_cpu_s: Option<f64>,
    machine_busy_pct: Option<f64>,
    stop_all_s: Option<f64>,
    note: String,
}

pub async fn run(args: InstancesArgs) -> Result<ExitCode> {
    if args.count.is_empty() || args.count.iter().any(|&n| n == 0 || n > 200) {
        bail!("--count values must be between 1 and 200");
    }
    if !(1..=10).contains(&args.runs) {
        bail!("--runs must be between 1 and 10");
    }
    if !(30..=3600).contains(&args.timeout) {
        bail!("--timeout must be between 30 and 3600 seconds");
    }
    if !(0.001..=64.0).contains(&args.size_cpus) {
        bail!("--size-cpus must be between 0.001 and 64");
    }
    if args.settle > 120 {
        bail!("--settle must be at most 120 seconds");
    }
    let size_memory_mib =
        voxhub_core::resources::parse_memory_mib("size_memory", &args.size_memory)
            .map_err(|e| anyhow::anyhow!("--size-memory: {}", e.message))?;
    if !args.jupyter.exists() {
        bail!(
            "JupyterLab is not installed at {}; install it with\n  /usr/bin/python3 -m venv /opt/voxhub/jupyter-venv && /opt/voxhub/jupyter-venv/bin/pip install jupyterlab\nor give another `jupyter` with --jupyter",
            args.jupyter.display()
        );
    }
    let jupyterhub = if args.jupyterhub {
        prepare_jupyterhub(&args)?
    } else {
        None
    };
    let mut outcomes = Vec::new();
    for &n in &args.count {
        for run in 1..=args.runs {
            eprintln!("voxhub: {n} instances at once (run {run}) …");
            outcomes.push(match run_voxhub(&args, n, size_memory_mib).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    eprintln!("the voxhub run failed: {error:#}");
                    Outcome {
                        system: "voxhub".into(),
                        n,
                        note: format!("failed: {error:#}"),
                        ..Outcome::default()
                    }
                }
            });
            if let Some((scripts, python)) = &jupyterhub {
                eprintln!("JupyterHub: {n} servers at once (run {run}) …");
                outcomes.push(run_jupyterhub(&args, scripts, python, n).await);
            }
        }
    }
    print_outcomes(&args, &outcomes);
    let all_ready = outcomes.iter().all(|o| o.ready == o.n);
    Ok(if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn print_outcomes(args: &InstancesArgs, outcomes: &[Outcome]) {
    let mut table = Table::new(&[
        "system",
        "instances>",
        "ready>",
        "all ready s>",
        "first ready s>",
        "median ready s>",
        "server RSS idle MiB>",
        "server RSS peak MiB>",
        "server RSS after MiB>",
        "proxy RSS MiB>",
        "supervisors RSS (PSS) MiB>",
        "JupyterLab RSS (PSS) MiB>",
        "server CPU s>",
        "JupyterLab CPU s>",
        "machine busy %>",
        "stop all s>",
    ]);
    for o in outcomes {
        table.row(vec![
            o.system.clone(),
            o.n.to_string(),
            o.ready.to_string(),
            num(o.all_ready_s, 1),
            num(o.first_ready_s, 1),
            num(o.median_ready_s, 1),
            num(o.server_rss_idle, 0),
            num(o.server_rss_peak, 0),
            num(o.server_rss_after, 0),
            num(o.proxy_rss_after, 0),
            with_pss(o.supervisors_rss_after, o.supervisors_pss_after),
            with_pss(o.jupyter_rss_after, o.jupyter_pss_after),
            num(o.server_cpu_s, 1),
            num(o.jupyter_cpu_s, 0),
            num(o.machine_busy_pct, 0),
            num(o.stop_all_s, 1),
        ]);
    }
    table.print(args.markdown);
    println!();
    println!(
        "server = the voxhub server (its proxy included) or the JupyterHub hub; proxy = configurable-http-proxy; supervisors = voxhub's per-instance supervisor processes; JupyterLab = all single-user server processes (RSS summed, PSS shares pages between them). Memory after = {} s after all were ready; CPU s = used from the launch until all were ready.",
        args.settle
    );
    for o in outcomes {
        if !o.note.is_empty() {
            println!("{} with {}: {}", o.system, o.n, o.note);
        }
    }
    for pair in outcomes.chunks(2) {
        if let [v, j] = pair
            && v.system == "voxhub"
            && j.system.starts_with("JupyterHub")
            && let (Some(a), Some(b)) = (v.all_ready_s, j.all_ready_s)
        {
            println!(
                "{} instances: JupyterHub / voxhub time to all ready: {:.2}× ({b:.1} s vs {a:.1} s); server memory after: {} vs {} MiB.",
                v.n,
                b / a,
                num(
                    j.server_rss_after
                        .zip(j.proxy_rss_after)
                        .map(|(h, p)| h + p),
                    0
                ),
                num(v.server_rss_after, 0),
            );
        }
    }
}

/// Finds the supervisors of one server's workloads and the processes under them.
struct ProcessScan {
    marker: String,
    kinds: HashMap<u32, bool>,
}

struct ScanResult {
    supervisors: Vec<u32>,
    supervisors_rss: f64,
    supervisors_pss: f64,
    jupyter_rss: f64,
    jupyter_pss: f64,
    jupyter_cpu_s: f64,
}

impl ProcessScan {
    fn new(data_dir: &Path) -> Self {
        Self {
            marker: format!("supervise {}", data_dir.join("run").display()),
            kinds: HashMap::new(),
        }
    }

    fn is_supervisor(&mut self, pid: u32) -> bool {
        if let Some(&known) = self.kinds.get(&pid) {
            return known;
        }
        let line = cmdline(pid);
        if line.is_empty() {
            return false;
        }
        let supervisor = line.contains(&self.marker);
        self.kinds.insert(pid, supervisor);
        supervisor
    }

    /// The supervisors and what runs under them; PSS only `with_pss` (it costs more).
    fn scan(&mut self, with_pss: bool) -> ScanResult {
        let table: ProcTable = process_table();
        let supervisors: Vec<u32> = table
            .keys()
            .copied()
            .filter(|&pid| self.is_supervisor(pid))
            .collect();
        let jupyter = descendants(&table, &supervisors);
        let pss = |pids: &[u32]| {
            if with_pss {
                pids.iter().map(|&pid| pss_mib(pid)).sum()
            } else {
                0.0
            }
        };
        ScanResult {
            supervisors_rss: supervisors.iter().map(|pid| table[pid].rss_mib).sum(),
            supervisors_pss: pss(&supervisors),
            jupyter_rss: jupyter.iter().map(|pid| table[pid].rss_mib).sum(),
            jupyter_pss: pss(&jupyter),
            jupyter_cpu_s: jupyter
                .iter()
                .map(|pid| table[pid].cpu_ticks as f64)
                .sum::<f64>()
                / ticks_per_second(),
            supervisors,
        }
    }
}

/// Stops whatever supervisors of the server's workloads are still running when dropped
/// (SIGTERM, then SIGKILL), so that a failed run leaves no JupyterLab behind.
struct SupervisorGuard {
    data_dir: PathBuf,
}

impl Drop for SupervisorGuard {
    fn drop(&mut self) {
        let mut scan = ProcessScan::new(&self.data_dir);
        let left = scan.scan(false).supervisors;
        if left.is_empty() {
            return;
        }
        eprintln!("stopping {} supervisors left running", left.len());
        signal_matching(&left, &scan.marker, libc::SIGTERM);
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(200));
            if ProcessScan::new(&self.data_dir)
                .scan(false)
                .supervisors
                .is_empty()
            {
                return;
            }
        }
        let left = ProcessScan::new(&self.data_dir).scan(false).supervisors;
        signal_matching(&left, &scan.marker, libc::SIGKILL);
    }
}

fn server_config(args: &InstancesArgs, n: usize, size_memory_mib: u64) -> String {
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1) as f64;
    let node_cpus = cores.max((n as f64 * args.size_cpus * 100.0).ceil() / 100.0);
    let node_memory_mib = n as u64 * size_memory_mib + 1024;
    format!(
        "[workloads]\nmax_running_per_user = 0\n\n[node]\ncpus = {node_cpus:?}\nmemory = \"{node_memory_mib}M\"\n\n[instances]\njupyter = \"{}\"\nstartup_timeout_s = {}\n\n[[instances.sizes]]\nname = \"bench\"\ncpus = {:?}\nmemory = \"{}\"\n",
        args.jupyter.display(),
        args.timeout,
        args.size_cpus,
        args.size_memory
    )
}

async fn run_voxhub(args: &InstancesArgs, n: usize, size_memory_mib: u64) -> Result<Outcome> {
    let config = server_config(args, n, size_memory_mib);
    let server = start_server(&[], Some(&config))?;
    let _guard = SupervisorGuard {
        data_dir: server.data_dir().to_path_buf(),
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n + 8)
        .timeout(Duration::from_secs(60))
        .build()?;
    let admin = login(&http, &server.url, "admin", ADMIN_PASSWORD).await?;
    let mut tokens = Vec::new();
    for i in 1..=n {
        let username = format!("u{i:03}");
        create_student(&http, &server.url, &admin, &username).await?;
        tokens.push(login(&http, &server.url, &username, USER_PASSWORD).await?);
    }
    let busy_before = tokio::task::spawn_blocking(|| wait_quiet(Duration::from_secs(60))).await?;
    let pid = server.pid();
    let server_rss_idle = memory_mib(pid).0;

    // Memory peaks, sampled every 0.5 s from the launch until all are ready.
    let peak = Arc::new(Mutex::new(0.0f64));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = memory_mib(pid).0;
                {
                    let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                    *p = p.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    let cpu_before = cpu_seconds(pid);
    let load = MachineLoad::start();
    let started = Instant::now();
    let mut launches = Vec::new();
    for token in &tokens {
        let (http, url, token) = (http.clone(), server.url.clone(), token.clone());
        launches.push(tokio::spawn(async move {
            let response = http
                .post(format!("{url}/api/v1/instances"))
                .bearer_auth(&token)
                .json(&json!({"size": "bench", "time_limit": "30m"}))
                .send()
                .await?;
            let status = response.status();
            let view: Value = response.json().await.unwrap_or(Value::Null);
            if status != reqwest::StatusCode::CREATED {
                bail!(
                    "launch refused: {status}: {}",
                    view["message"].as_str().unwrap_or("")
                );
            }
            view["id"].as_i64().context("the answer has no id")
        }));
    }
    // id → the owner's token
    let mut owners: HashMap<i64, String> = HashMap::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (launch, token) in launches.into_iter().zip(&tokens) {
        match launch.await? {
            Ok(id) => {
                owners.insert(id, token.clone());
            }
            Err(error) => *failures.entry(format!("{error:#}")).or_default() += 1,
        }
    }

    // Readiness: list the workloads; check each running instance through the proxy.
    let ready: Arc<Mutex<HashMap<i64, f64>>> = Arc::default();
    let mut checking: HashSet<i64> = HashSet::new();
    let mut ended: HashMap<i64, String> = HashMap::new();
    let deadline = started + Duration::from_secs(args.timeout);
    loop {
        let active: Value = http
            .get(format!("{}/api/v1/workloads?active=true", server.url))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        let listed: HashMap<i64, String> = active
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| Some((w["id"].as_i64()?, w["state"].as_str()?.to_string())))
            .collect();
        for (&id, token) in &owners {
            match listed.get(&id).map(String::as_str) {
                Some("running") if !checking.contains(&id) => {
                    checking.insert(id);
                    let (http, url, token, ready) = (
                        http.clone(),
                        server.url.clone(),
                        token.clone(),
                        ready.clone(),
                    );
                    tokio::spawn(async move {
                        while Instant::now() < deadline {
                            let answer = http
                                .get(format!("{url}/i/{id}/api/status"))
                                .bearer_auth(&token)
                                .send()
                                .await;
                            if matches!(&answer, Ok(r) if r.status() == reqwest::StatusCode::OK) {
                                let mut ready = ready.lock().unwrap_or_else(|e| e.into_inner());
                                ready.insert(id, started.elapsed().as_secs_f64());
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    });
                }
                None if !ended.contains_key(&id) && !ready_has(&ready, id) => {
                    let view: Value = http
                        .get(format!("{}/api/v1/workloads/{id}", server.url))
                        .bearer_auth(&admin)
                        .send()
                        .await?
                        .json()
                        .await?;
                    ended.insert(
                        id,
                        format!(
                            "{}: {}",
                            view["state"].as_str().unwrap_or("?"),
                            view["reason"].as_str().unwrap_or("")
                        ),
                    );
                }
                _ => {}
            }
        }
        let ready_now = ready.lock().unwrap_or_else(|e| e.into_inner()).len();
        if ready_now + ended.len() >= owners.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let server_cpu_s = cpu_seconds(pid) - cpu_before;
    let machine_busy_pct = load.busy_percent();
    let data_dir = server.data_dir().to_path_buf();
    let at_ready =
        tokio::task::spawn_blocking(move || ProcessScan::new(&data_dir).scan(false)).await?;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;
    let server_rss_peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
    let times: Vec<f64> = ready
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .copied()
        .collect();
    for reason in ended.values() {
        *failures
            .entry(format!("ended early: {reason}"))
            .or_default() += 1;
    }
    let not_answering = owners.len().saturating_sub(times.len() + ended.len());
    if not_answering > 0 {
        *failures
            .entry(format!("did not answer within {} s", args.timeout))
            .or_default() += not_answering;
    }

    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let server_rss_after = memory_mib(pid).0;
    let data_dir = server.data_dir().to_path_buf();
    let after = tokio::task::spawn_blocking(move || ProcessScan::new(&data_dir).scan(true)).await?;

    // Stop them all (each by its owner) and wait until none is active.
    let stopping = Instant::now();
    let mut stops = Vec::new();
    for (&id, token) in &owners {
        let (http, url, token) = (http.clone(), server.url.clone(), token.clone());
        stops.push(tokio::spawn(async move {
            http.post(format!("{url}/api/v1/workloads/{id}/stop"))
                .bearer_auth(&token)
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    for stop in stops {
        let _ = stop.await?;
    }
    let mut stop_all_s = None;
    while stopping.elapsed() < Duration::from_secs(120) {
        let active: Value = http
            .get(format!("{}/api/v1/workloads?active=true", server.url))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        if active.as_array().is_none_or(|a| a.is_empty()) {
            stop_all_s = Some(stopping.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let mut end_states: BTreeMap<String, usize> = BTreeMap::new();
    for &id in owners.keys() {
        let view: Value = http
            .get(format!("{}/api/v1/workloads/{id}", server.url))
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        *end_states
            .entry(view["state"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let data_dir = server.data_dir().to_path_buf();
    let left = tokio::task::spawn_blocking(move || {
        ProcessScan::new(&data_dir).scan(false).supervisors.len()
    })
    .await?;

    let mut notes = Vec::new();
    for (failure, count) in &failures {
        notes.push(format!("{count} × {failure}"));
    }
    notes.push(format!(
        "after stop: {}",
        end_states
            .iter()
            .map(|(state, count)| format!("{count} {state}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if left > 0 {
        notes.push(format!("{left} supervisors still running 1 s after"));
    }
    notes.push(format!(
        "{} supervisors seen; {busy_before:.0} % busy before the launch",
        after.supervisors.len()
    ));
    Ok(Outcome {
        system: "voxhub".into(),
        n,
        ready: times.len(),
        all_ready_s: (times.len() == n).then(|| times.iter().copied().fold(0.0, f64::max)),
        first_ready_s: times.iter().copied().reduce(f64::min),
        median_ready_s: (!times.is_empty()).then(|| median(&times)),
        server_rss_idle: Some(server_rss_idle),
        server_rss_peak: Some(server_rss_peak),
        server_rss_after: Some(server_rss_after),
        proxy_rss_after: None,
        supervisors_rss_after: Some(after.supervisors_rss),
        supervisors_pss_after: Some(after.supervisors_pss),
        jupyter_rss_after: Some(after.jupyter_rss),
        jupyter_pss_after: Some(after.jupyter_pss),
        server_cpu_s: Some(server_cpu_s),
        jupyter_cpu_s: Some(at_ready.jupyter_cpu_s),
        machine_busy_pct: Some(machine_busy_pct),
        stop_all_s,
        note: notes.join("; "),
    })
}

fn with_pss(rss: Option<f64>, pss: Option<f64>) -> String {
    match (rss, pss) {
        (Some(rss), Some(pss)) => format!("{rss:.0} ({pss:.0})"),
        (rss, _) => num(rss, 0),
    }
}

fn ready_has(ready: &Mutex<HashMap<i64, f64>>, id: i64) -> bool {
    ready
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&id)
}

/// The scripts folder and the peer's Python, installing the peer when it is missing;
/// `None` (after saying why) when it cannot be had.
fn prepare_jupyterhub(args: &InstancesArgs) -> Result<Option<(PathBuf, PathBuf)>> {
    let scripts = scripts_dir(args.scripts.as_deref())?;
    let prefix = &args.jupyterhub_prefix;
    let python = prefix.join("venv/bin/python");
    let installed = prefix.join("venv/bin/jupyterhub").exists()
        && prefix
            .join("node/node_modules/.bin/configurable-http-proxy")
            .exists();
    if !installed {
        eprintln!(
            "installing the JupyterHub peer into {} (PyPI and npm) …",
            prefix.display()
        );
        let status = std::process::Command::new("bash")
            .arg(scripts.join("jupyterhub_install.sh"))
            .arg(prefix)
            .status()
            .context("cannot run jupyterhub_install.sh")?;
        if !status.success() {
            eprintln!(
                "skipping the JupyterHub comparison: the install failed ({status}); voxhub's figures follow alone."
            );
            return Ok(None);
        }
    }
    Ok(Some((scripts, python)))
}

async fn run_jupyterhub(args: &InstancesArgs, scripts: &Path, python: &Path, n: usize) -> Outcome {
    let mut outcome = Outcome {
        system: "JupyterHub".into(),
        n,
        ..Outcome::default()
    };
    let output = tokio::process::Command::new(python)
        .arg(scripts.join("jupyterhub_spawn.py"))
        .arg(n.to_string())
        .arg("--prefix")
        .arg(&args.jupyterhub_prefix)
        .arg("--config")
        .arg(scripts.join("jupyterhub_config.py"))
        .arg("--timeout")
        .arg(args.timeout.to_string())
        .arg("--settle")
        .arg(args.settle.to_string())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await;
    let record: Value = match output {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok())
            .unwrap_or(Value::Null),
        Err(error) => {
            outcome.note = format!("jupyterhub_spawn.py could not run: {error}");
            return outcome;
        }
    };
    if record.is_null() {
        outcome.note = "jupyterhub_spawn.py printed no result".into();
        return outcome;
    }
    let f = |key: &str| record[key].as_f64();
    if let Some(version) = record["versions"]["jupyterhub"].as_str() {
        outcome.system = format!("JupyterHub {version}");
    }
    outcome.ready = record["ok"].as_u64().unwrap_or(0) as usize;
    outcome.all_ready_s = f("all_ready_s");
    outcome.first_ready_s = f("first_ready_s");
    outcome.median_ready_s = f("ready_p50_s");
    outcome.server_rss_idle = f("hub_rss_mib_idle");
    outcome.server_rss_peak = f("hub_rss_mib_peak");
    outcome.server_rss_after = f("hub_rss_mib_after");
    outcome.proxy_rss_after = f("proxy_rss_mib_after");
    outcome.jupyter_rss_after = f("singleuser_rss_mib_after");
    outcome.jupyter_pss_after = f("singleuser_pss_mib_after");
    outcome.server_cpu_s = f("hub_cpu_s");
    outcome.jupyter_cpu_s = f("singleuser_cpu_s");
    outcome.machine_busy_pct = f("machine_busy_pct");
    outcome.stop_all_s = f("stop_all_s");
    let mut notes = Vec::new();
    if let Some(error) = record["error"].as_str() {
        notes.push(format!("error: {error}"));
    }
    if let Some(failures) = record["failures"].as_object() {
        for (user, why) in failures.iter().take(3) {
            notes.push(format!("{user}: {}", why.as_str().unwrap_or("")));
        }
    }
    notes.push(format!(
        "proxy RSS peak {} MiB, proxy CPU {} s, hub's own median spawn {} s, {} % busy before the launch",
        num(f("proxy_rss_mib_peak"), 0),
        num(f("proxy_cpu_s"), 1),
        num(f("hub_reported_spawn_p50_s"), 1),
        num(f("machine_busy_pct_before"), 0)
    ));
    outcome.note = notes.join("; ");
    outcome
}
