//! The scheduling decision of voxhub, as a pure function: from the nodes and their
//! capacity, what runs on them, and the queue, decide which queued workloads to admit
//! now, on which node, with which grant. No I/O, no clock: `now_s` is passed in.
//!
//! INTERFACE CONTRACT (used by the rest of voxhub; keep these names and meanings):
//! - [`schedule`] returns admissions in the order they should be started.
//! - [`check_fits_somewhere`] is called at submit time to reject requests that can never run.
//! - [`queue_view`] gives every queued workload its 1-based position and an estimated start.
//!
//! Also public: [`effective_priority`], to show people where aging has brought a workload,
//! and [`simulated_cluster`] with [`SIMULATED_NOW_S`], a made-up cluster for benchmarks.
//!
//! The rules, in the order [`schedule`] applies them:
//! 1. The queue is ordered by [`effective_priority`] (highest first), then `order`, then
//!    `workload_id`. Held workloads are skipped and block nobody.
//! 2. A user already running `max_running_per_user` workloads (admissions of the same call
//!    included) is skipped and blocks nobody.
//! 3. A workload starts only when its whole request fits on one node; among the nodes that
//!    fit, the one left with the fewest free GPUs, then the least free CPU, then the first
//!    name wins, and the grant names the lowest free device indices.
//! 4. The first workload that does not fit becomes the reserved head: it gets the node on
//!    which it will fit earliest as running workloads end (its shadow time). Later
//!    workloads still start when they fit now and cannot delay it (EASY backfilling): they
//!    end by the shadow time, or fit beside the head on its node, or go to another node.
//!    Later workloads of the head's user also leave it a slot under the per-user limit.
//!    A workload that no node could hold even when empty never becomes the head.
//!
//! | module | owns |
//! | --- | --- |
//! | `state` | free capacity per node, taken devices, what holds them until when |
//! | `pass` | the queue order and one pass of strict order with backfilling |
//! | `view` | positions and estimated starts, by simulating passes over future time |
//! | `fits` | whether a request could ever run, and the message when it cannot |
//! | `simulated` | a deterministic made-up cluster for benchmarks and tests |

mod fits;
mod pass;
mod simulated;
mod state;
mod view;

pub use simulated::{SIMULATED_NOW_S, simulated_cluster};

/// What a workload asks for. CPU in thousandths of a core so fractions fit later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    /// Whole GPUs.
    pub gpus: u32,
}

/// One machine that can run workloads. Names are unique: running workloads and
/// admissions refer to nodes by name, and only the first node of a repeated name is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    /// Device indices of the node's GPUs (e.g. `[0, 1, 2, 3]`).
    pub gpu_devices: Vec<u32>,
}

/// What a workload was given: the resources and the exact GPU devices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub gpu_devices: Vec<u32>,
}

/// A workload that holds resources now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub workload_id: i64,
    pub user_id: i64,
    pub node: String,
    pub grant: Grant,
    /// When its time limit ends it at the latest (seconds since the epoch).
    pub ends_at_s: i64,
}

/// A workload waiting in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub workload_id: i64,
    pub user_id: i64,
    /// Higher runs first (e.g. admin 30, teacher 20, student 10).
    pub priority: i32,
    /// Tie-break within a priority: smaller first (submission order; admins may reorder).
    pub order: i64,
    pub submitted_at_s: i64,
    pub request: Request,
    pub time_limit_s: i64,
    /// Held workloads are never admitted and do not block others.
    pub held: bool,
}

/// Tunable rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// At most this many running workloads per user; 0 means no limit.
    pub max_running_per_user: usize,
    /// Every this many seconds of waiting raise a workload's priority by one, so nobody
    /// starves behind a stream of higher-priority work; 0 turns aging off.
    pub aging_interval_s: i64,
    /// Let later workloads that fit start ahead of a blocked one when they cannot delay it.
    pub backfill: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_running_per_user: 2,
            aging_interval_s: 60,
            backfill: true,
        }
    }
}

/// Start `workload_id` on `node` with `grant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admit {
    pub workload_id: i64,
    pub node: String,
    pub grant: Grant,
}

/// A queued workload's place in line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub workload_id: i64,
    /// 1-based position among the queued (held ones included, after the others).
    pub position: usize,
    /// When it is expected to start if every running workload uses its full time, or
    /// `None` when that cannot be told (held, or behind something that never fits).
    pub estimated_start_s: Option<i64>,
}

/// A workload's priority after aging: `priority + floor(waited / aging_interval_s)`,
/// where time spent before `submitted_at_s` (a clock running ahead) counts as no wait.
pub fn effective_priority(queued: &Queued, now_s: i64, policy: &Policy) -> i64 {
    let priority = i64::from(queued.priority);
    if policy.aging_interval_s <= 0 {
        return priority;
    }
    let waited_s = now_s.saturating_sub(queued.submitted_at_s).max(0);
    priority.saturating_add(waited_s / policy.aging_interval_s)
}

/// Decides what to start now, following the rules in the crate documentation.
///
/// A running workload past its `ends_at_s` still holds its resources and is expected to end
/// at `now_s`; one on a node not in `nodes` holds nothing but counts for its user.
pub fn schedule(
    now_s: i64,
    nodes: &[Node],
    running: &[Running],
    queue: &[Queued],
    policy: &Policy,
) -> Vec<Admit> {
    let mut state = state::ClusterState::new(now_s, nodes, running);
    let mut order: Vec<usize> = (0..queue.len()).collect();
    pass::sort_by_queue_order(&mut order, now_s, queue, policy);
    pass::run_pass(&mut state, now_s, queue, &order, policy)
        .into_iter()
        .map(|admission| {
            let queued = &queue[admission.queue_index];
            Admit {
                workload_id: queued.workload_id,
                node: nodes[admission.node].name.clone(),
                grant: Grant {
                    cpu_millis: queued.request.cpu_millis,
                    memory_mib: queued.request.memory_mib,
                    gpu_devices: admission.gpu_devices,
                },
            }
        })
        .collect()
}

/// `Err` with a message for people when no node could ever hold `request`, or when the
/// request asks for no CPU or no memory.
pub fn check_fits_somewhere(nodes: &[Node], request: &Request) -> Result<(), String> {
    fits::check_fits_somewhere(nodes, request)
}

/// Positions and estimated starts of every queued workload, in position order.
///
/// Held workloads come after all the others, with no estimate. Estimates come from
/// replaying [`schedule`] over future time, assuming every running and every simulated
/// workload uses its whole time limit and nothing new arrives: what [`schedule`] would
/// start now gets `now_s`; a workload that no node could ever hold gets `None` and delays
/// nobody.
pub fn queue_view(
    now_s: i64,
    nodes: &[Node],
    running: &[Running],
    queue: &[Queued],
    policy: &Policy,
) -> Vec<Place> {
    view::queue_view(now_s, nodes, running, queue, policy)
}
