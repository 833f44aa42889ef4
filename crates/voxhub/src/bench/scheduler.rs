//! `voxhub bench scheduler`: times the pure scheduling decision in process, on the
//! simulated cluster of `voxhub_scheduler` (1,000 nodes of 8 GPUs, 10,000 queued by
//! default), for the default policy and without a per-user limit, and `queue_view` (the
//! positions and estimated starts of the queue page) on a smaller cluster.

use super::procs::wait_quiet;
use super::{Table, num, percentile};
use anyhow::{Result, bail};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;
use voxhub_scheduler::{Policy, SIMULATED_NOW_S, queue_view, schedule, simulated_cluster};

#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// Timed calls per case (1 to 1000); the first, untimed call warms up.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Nodes of the simulated cluster for `schedule`.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// GPUs per node.
    #[arg(long, default_value_t = 8)]
    gpus_per_node: u32,
    /// Queued workloads for `schedule`.
    #[arg(long, default_value_t = 10_000)]
    queued: usize,
    /// Nodes and queued workloads of the smaller cluster for `queue_view`, as NODES,QUEUED
    /// (0,0 leaves it out).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    view: Vec<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print a Markdown table (for BENCHMARKS.md) instead of plain text.
    #[arg(long)]
    markdown: bool,
}

struct Case {
    function: &'static str,
    policy: String,
    nodes: usize,
    running: usize,
    queued: usize,
    result: usize,
    times_ms: Vec<f64>,
}

fn time_calls(runs: usize, mut call: impl FnMut() -> usize) -> (usize, Vec<f64>) {
    let result = call();
    let mut times_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        black_box(call());
        times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times_ms.sort_by(|a, b| a.total_cmp(b));
    (result, times_ms)
}

fn policy_name(policy: &Policy) -> String {
    match policy.max_running_per_user {
        0 => "no per-user limit".into(),
        n => format!("default ({n} per user)"),
    }
}

pub fn run(args: SchedulerArgs) -> Result<ExitCode> {
    if !(1..=1000).contains(&args.runs) {
        bail!("--runs must be between 1 and 1000");
    }
    if args.nodes > 100_000 || args.queued > 1_000_000 {
        bail!("at most 100,000 nodes and 1,000,000 queued workloads");
    }
    let policies = [
        Policy::default(),
        Policy {
            max_running_per_user: 0,
            ..Policy::default()
        },
    ];
    let mut cases = Vec::new();
    wait_quiet(std::time::Duration::from_secs(60));
    let (nodes, running, queue) =
        simulated_cluster(args.nodes, args.gpus_per_node, args.queued, args.seed);
    for policy in &policies {
        eprintln!(
            "schedule: {} nodes, {} running, {} queued, {} …",
            nodes.len(),
            running.len(),
            queue.len(),
            policy_name(policy)
        );
        let (admitted, times_ms) = time_calls(args.runs, || {
            schedule(SIMULATED_NOW_S, &nodes, &running, &queue, policy).len()
        });
        cases.push(Case {
            function: "schedule",
            policy: policy_name(policy),
            nodes: nodes.len(),
            running: running.len(),
            queued: queue.len(),
            result: admitted,
            times_ms,
        });
    }
    if let [view_nodes, view_queued] = args.view[..]
        && view_nodes > 0
        && view_queued > 0
    {
        let (nodes, running, queue) =
            simulated_cluster(view_nodes, args.gpus_per_node, view_queued, args.seed);
        let policy = Policy::default();
        eprintln!(
            "queue_view: {} nodes, {} running, {} queued …",
            nodes.len(),
            running.len(),
            queue.len()
        );
        let (with_estimate, times_ms) = time_calls(args.runs, || {
            queue_view(SIMULATED_NOW_S, &nodes, &running, &queue, &policy)
                .iter()
                .filter(|p| p.estimated_start_s.is_some())
                .count()
        });
        cases.push(Case {
            function: "queue_view",
            policy: policy_name(&policy),
            nodes: nodes.len(),
            running: running.len(),
            queued: queue.len(),
            result: with_estimate,
            times_ms,
        });
    }

    let mut table = Table::new(&[
        "function",
        "policy",
        "nodes>",
        "running>",
        "queued>",
        "result>",
        "calls>",
        "median ms>",
        "p90 ms>",
        "min ms>",
    ]);
    for case in &cases {
        table.row(vec![
            case.function.into(),
            case.policy.clone(),
            case.nodes.to_string(),
            case.running.to_string(),
            case.queued.to_string(),
            case.result.to_string(),
            case.times_ms.len().to_string(),
            num(Some(percentile(&case.times_ms, 50.0)), 2),
            num(Some(percentile(&case.times_ms, 90.0)), 2),
            num(case.times_ms.first().copied(), 2),
        ]);
    }
    table.print(args.markdown);
    println!();
    println!(
        "result: workloads admitted (schedule) or queued workloads with an estimated start (queue_view)."
    );
    Ok(ExitCode::SUCCESS)
}
