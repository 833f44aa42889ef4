//! Nobody starves: the scheduler run over simulated time, with higher-priority work that
//! keeps arriving, starts every workload that fits somewhere within a bounded time.

mod support;

use proptest::prelude::*;
use support::{simulate, with_ids};
use voxhub_scheduler::{Node, Policy, Queued, Request};

fn gpu_node(name: &str, gpus: u32) -> Node {
    Node {
        name: name.into(),
        cpu_millis: 64_000,
        memory_mib: 256 * 1024,
        gpu_devices: (0..gpus).collect(),
    }
}

fn workload(workload_id: i64, priority: i32, gpus: u32, submitted_at_s: i64) -> Queued {
    Queued {
        workload_id,
        user_id: workload_id,
        priority,
        order: workload_id,
        submitted_at_s,
        request: Request {
            cpu_millis: 1000,
            memory_mib: 1024,
            gpus,
        },
        time_limit_s: 300,
        held: false,
    }
}

/// Two nodes of four GPUs; one low-priority job wants a whole node while one-GPU jobs of
/// higher priority arrive faster than the cluster can run them, from 0 until 20,000 s.
#[test]
fn a_whole_node_job_starves_behind_a_stream_without_aging_and_starts_with_it() {
    let nodes = [gpu_node("a", 4), gpu_node("b", 4)];
    let mut arrivals = vec![workload(1, 10, 4, 600)];
    arrivals.extend((0..=666).map(|number| workload(100 + number, 30, 1, number * 30)));
    let with_aging = Policy {
        max_running_per_user: 0,
        aging_interval_s: 60,
        backfill: true,
    };
    let started = simulate(&nodes, arrivals.clone(), &with_aging, 40_000);
    let start_s = started[&1];
    eprintln!("with aging the whole-node job starts at {start_s}");
    assert!(
        start_s <= 4000,
        "with aging the whole-node job starts at {start_s}"
    );

    let without_aging = Policy {
        aging_interval_s: 0,
        ..with_aging
    };
    let started = simulate(&nodes, arrivals, &without_aging, 40_000);
    assert!(
        started.get(&1).is_none_or(|&start_s| start_s > 20_000),
        "{:?}",
        started.get(&1)
    );
}

/// Where a request is drawn for a node, and how much of it: every workload then fits some
/// node when that node is empty.
fn request_for(
    nodes: &[Node],
    (pick, cpu_part, memory_part, gpus): (usize, u64, u64, u32),
) -> Request {
    let node = &nodes[pick % nodes.len()];
    Request {
        cpu_millis: (node.cpu_millis * cpu_part / 4).max(500),
        memory_mib: (node.memory_mib * memory_part / 4).max(512),
        gpus: gpus.min(node.gpu_devices.len() as u32),
    }
}

type Shape = (usize, u64, u64, u32);

fn shape() -> impl Strategy<Value = Shape> {
    (0..3usize, 1..=4u64, 1..=4u64, 0..=4u32)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A workload of priority `p` submitted at `s` has a higher effective priority than
    /// anything of priority up to `P` submitted after `s + (P - p + 1) * A`, so only the
    /// `n` workloads submitted by then and not started before `s` can ever be ahead of it. While it waits, one of
    /// them starts at least every two longest time limits (the head starts by its shadow
    /// time; a per-user slot frees within one time limit), which gives the bound
    /// `s + (P - p + 1) * A + (n + 2) * 2 * L`.
    #[test]
    fn every_workload_that_fits_starts_within_a_bounded_time(
        node_gpus in prop::collection::vec((0..=4u32, 4..=16u64, 8..=32u64), 1..=3),
        low in prop::collection::vec((shape(), 10..=300i64, 1..=4i64, 0..=3000i64), 1..=5),
        stream in prop::collection::vec((shape(), 10..=300i64, 1..=60i64, prop_oneof![Just(20), Just(30)], 1..=6i64), 10..=120),
        max_running_per_user in 0..=2usize,
        aging_interval_s in prop_oneof![Just(30i64), Just(60)],
        backfill in any::<bool>(),
    ) {
        let nodes: Vec<Node> = node_gpus
            .iter()
            .enumerate()
            .map(|(index, &(gpus, cores, gib))| Node {
                name: format!("n{index}"),
                cpu_millis: cores * 1000,
                memory_mib: gib * 1024,
                gpu_devices: (0..gpus).collect(),
            })
            .collect();
        let mut arrivals = Vec::new();
        for &(shape, time_limit_s, user_id, submitted_at_s) in &low {
            arrivals.push(Queued {
                workload_id: 0,
                user_id,
                priority: 10,
                order: arrivals.len() as i64,
                submitted_at_s,
                request: request_for(&nodes, shape),
                time_limit_s,
                held: false,
            });
        }
        let mut submitted_at_s = 0;
        for &(shape, time_limit_s, gap_s, priority, user_id) in &stream {
            submitted_at_s += gap_s;
            arrivals.push(Queued {
                workload_id: 0,
                user_id,
                priority,
                order: arrivals.len() as i64,
                submitted_at_s,
                request: request_for(&nodes, shape),
                time_limit_s,
                held: false,
            });
        }
        let arrivals = with_ids(arrivals);
        let policy = Policy { max_running_per_user, aging_interval_s, backfill };
        let longest_s = arrivals.iter().map(|queued| queued.time_limit_s).max().unwrap();
        let top_priority = arrivals.iter().map(|queued| queued.priority).max().unwrap();
        let until_s = arrivals.iter().map(|queued| queued.submitted_at_s).max().unwrap()
            + (arrivals.len() as i64 + 2) * 2 * longest_s
            + 30 * aging_interval_s;
        let started = simulate(&nodes, arrivals.clone(), &policy, until_s);
        let bound_s = |queued: &Queued| {
            let overtaken_after_s =
                queued.submitted_at_s + i64::from(top_priority - queued.priority + 1) * aging_interval_s;
            let ahead = arrivals
                .iter()
                .filter(|other| other.submitted_at_s <= overtaken_after_s)
                .filter(|other| started.get(&other.workload_id).is_none_or(|&start_s| start_s >= queued.submitted_at_s))
                .count() as i64;
            overtaken_after_s + (ahead + 2) * 2 * longest_s
        };
        for queued in &arrivals {
            let start_s = started.get(&queued.workload_id).copied();
            prop_assert!(
                start_s.is_some_and(|start_s| start_s <= bound_s(queued)),
                "{:?} started at {:?}, bound {}",
                queued,
                start_s,
                bound_s(queued)
            );
        }
    }
}
