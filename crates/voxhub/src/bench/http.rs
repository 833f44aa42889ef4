//! `voxhub bench http`: loads a fresh voxhub server with many concurrent clients for a
//! bounded time per scenario, and reports latency percentiles, throughput, errors and the
//! server's resident memory.
//!
//! Scenarios: `login` (password login, argon2id-bound), `me` (`GET /api/v1/me` with a
//! bearer token) and `dashboard` (the HTML dashboard with a session cookie).

use super::procs::memory_mib;
use super::{
    ADMIN_PASSWORD, Server, USER_PASSWORD, create_student, login, percentile, start_server,
};
use anyhow::{Result, bail};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct HttpArgs {
    /// Concurrent clients, one run per value (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "60,500")]
    clients: Vec<usize>,
    /// Seconds each scenario runs for each client count (1 to 120).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Scenarios to run (comma-separated): login, me, dashboard.
    #[arg(long, value_delimiter = ',', default_value = "login,me,dashboard")]
    scenarios: Vec<String>,
    /// Distinct accounts the clients log in as.
    #[arg(long, default_value_t = 20)]
    accounts: usize,
    /// Print a Markdown table (for BENCHMARKS.md) instead of plain text.
    #[arg(long)]
    markdown: bool,
}

struct Outcome {
    scenario: String,
    clients: usize,
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    rss_max_mib: f64,
}

async fn run_scenario(
    server: &Server,
    scenario: &str,
    clients: usize,
    seconds: u64,
    usernames: Arc<Vec<String>>,
    tokens: Arc<Vec<String>>,
) -> Result<Outcome> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(120))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let pid = server.pid();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(memory_mib(pid).0);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak.max(memory_mib(pid).0)
        })
    };
    let mut tasks = Vec::with_capacity(clients);
    for client_index in 0..clients {
        let http = http.clone();
        let url = server.url.clone();
        let scenario = scenario.to_string();
        let usernames = usernames.clone();
        let tokens = tokens.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies_ms = Vec::new();
            let mut errors = 0usize;
            let mut i = client_index;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let request = match scenario.as_str() {
                    "login" => http
                        .post(format!("{url}/api/v1/auth/login"))
                        .json(&json!({"username": usernames[i % usernames.len()], "password": USER_PASSWORD})),
                    "me" => http.get(format!("{url}/api/v1/me")).bearer_auth(&tokens[i % tokens.len()]),
                    _ => http.get(format!("{url}/")).header("cookie", format!("voxhub_session={}", tokens[i % tokens.len()])),
                };
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
                i += clients;
            }
            (latencies_ms, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut l, e) = task.await?;
        latencies.append(&mut l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_max_mib = sampler.await?;
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(Outcome {
        scenario: scenario.to_string(),
        clients,
        requests: latencies.len(),
        errors,
        seconds: elapsed,
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        rss_max_mib,
    })
}

pub async fn run(args: HttpArgs) -> Result<ExitCode> {
    if !(1..=120).contains(&args.seconds) {
        bail!("--seconds must be between 1 and 120");
    }
    if args.clients.iter().any(|&c| c == 0 || c > 2000) {
        bail!("--clients values must be between 1 and 2000");
    }
    for scenario in &args.scenarios {
        if !matches!(scenario.as_str(), "login" | "me" | "dashboard") {
            bail!("unknown scenario '{scenario}'; choose from login, me, dashboard");
        }
    }
    let server = start_server(&[], None)?;
    let http = reqwest::Client::new();
    let admin = login(&http, &server.url, "admin", ADMIN_PASSWORD).await?;
    let mut usernames = Vec::new();
    for n in 0..args.accounts.max(1) {
        let username = format!("bench{n:03}");
        create_student(&http, &server.url, &admin, &username).await?;
        usernames.push(username);
    }
    let mut tokens = Vec::new();
    for username in &usernames {
        tokens.push(login(&http, &server.url, username, USER_PASSWORD).await?);
    }
    let (usernames, tokens) = (Arc::new(usernames), Arc::new(tokens));
    let (idle_rss, _) = memory_mib(server.pid());
    eprintln!(
        "server at {} (pid {}), {:.1} MiB resident when idle",
        server.url,
        server.pid(),
        idle_rss
    );

    let mut outcomes = Vec::new();
    for &clients in &args.clients {
        for scenario in &args.scenarios {
            eprintln!(
                "running {scenario} with {clients} clients for {} s …",
                args.seconds
            );
            outcomes.push(
                run_scenario(
                    &server,
                    scenario,
                    clients,
                    args.seconds,
                    usernames.clone(),
                    tokens.clone(),
                )
                .await?,
            );
        }
    }
    let (_, peak) = memory_mib(server.pid());
    if args.markdown {
        println!(
            "| scenario | clients | requests | req/s | p50 ms | p99 ms | max ms | errors | server RSS max MiB |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for o in &outcomes {
            println!(
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.0} |",
                o.scenario,
                o.clients,
                o.requests,
                o.requests as f64 / o.seconds,
                o.p50_ms,
                o.p99_ms,
                o.max_ms,
                o.errors,
                o.rss_max_mib
            );
        }
        println!();
        println!(
            "Server resident memory: {idle_rss:.0} MiB idle, {peak:.0} MiB peak over the whole run."
        );
    } else {
        println!(
            "{:<10} {:>7} {:>9} {:>8} {:>9} {:>9} {:>9} {:>7} {:>9}",
            "scenario",
            "clients",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "RSS MiB"
        );
        for o in &outcomes {
            println!(
                "{:<10} {:>7} {:>9} {:>8.0} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>9.0}",
                o.scenario,
                o.clients,
                o.requests,
                o.requests as f64 / o.seconds,
                o.p50_ms,
                o.p99_ms,
                o.max_ms,
                o.errors,
                o.rss_max_mib
            );
        }
        println!("server resident memory: {idle_rss:.0} MiB idle, {peak:.0} MiB peak");
    }
    Ok(ExitCode::SUCCESS)
}
