//! Times `schedule` and `queue_view` on a simulated cluster, in release mode:
//! `cargo run --release -p voxhub-scheduler --example schedule_timing [nodes] [queued]`.

use std::time::{Duration, Instant};

use voxhub_scheduler::{Policy, SIMULATED_NOW_S, queue_view, schedule, simulated_cluster};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let mut arguments = std::env::args()
        .skip(1)
        .map(|argument| argument.parse::<usize>().expect("a number"));
    let nodes = arguments.next().unwrap_or(1000);
    let queued = arguments.next().unwrap_or(10_000);
    let (machines, running, queue) = simulated_cluster(nodes, 8, queued, 42);
    let total_gpus = machines.len() * 8;
    let busy_gpus: usize = running
        .iter()
        .map(|workload| workload.grant.gpu_devices.len())
        .sum();
    println!(
        "{nodes} nodes of 8 GPUs ({busy_gpus} of {total_gpus} GPUs busy, {} running), {queued} queued",
        running.len()
    );
    for policy in [
        Policy::default(),
        Policy {
            max_running_per_user: 0,
            ..Policy::default()
        },
    ] {
        let mut samples = Vec::new();
        let mut admitted = 0;
        for _ in 0..7 {
            let started = Instant::now();
            admitted = schedule(SIMULATED_NOW_S, &machines, &running, &queue, &policy).len();
            samples.push(started.elapsed());
        }
        println!(
            "schedule, {policy:?}: {admitted} admitted, median {:?}",
            median(samples)
        );
    }
    let started = Instant::now();
    let places = queue_view(
        SIMULATED_NOW_S,
        &machines,
        &running,
        &queue,
        &Policy::default(),
    );
    let estimated = places
        .iter()
        .filter(|place| place.estimated_start_s.is_some())
        .count();
    println!(
        "queue_view: {estimated} of {} estimated in {:?}",
        places.len(),
        started.elapsed()
    );
}
