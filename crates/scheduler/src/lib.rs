//! The scheduling decision of voxhub, as a pure function: from the nodes and their
//! capacity, what runs on them, and the queue, decide which queued workloads to admit
//! now, on which node, with which grant. No I/O, no clock: `now_s` is passed in.
//!
//! INTERFACE CONTRACT (used by the rest of voxhub; keep these names and meanings):
//! - [`schedule`] returns admissions in the order they should be started.
//! - [`check_fits_somewhere`] is called at submit time to reject requests that can never run.
//! - [`queue_view`] gives every queued workload its 1-based position and an estimated start.

/// What a workload asks for. CPU in thousandths of a core so fractions fit later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    /// Whole GPUs.
    pub gpus: u32,
}

/// One machine that can run workloads.
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
        Self { max_running_per_user: 2, aging_interval_s: 60, backfill: true }
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

/// Decides what to start now. Placeholder: to be implemented.
pub fn schedule(now_s: i64, nodes: &[Node], running: &[Running], queue: &[Queued], policy: &Policy) -> Vec<Admit> {
    let _ = (now_s, nodes, running, queue, policy);
    Vec::new()
}

/// `Err` with a message for people when no node could ever hold `request`.
pub fn check_fits_somewhere(nodes: &[Node], request: &Request) -> Result<(), String> {
    let _ = (nodes, request);
    Ok(())
}

/// Positions and estimated starts of every queued workload.
pub fn queue_view(now_s: i64, nodes: &[Node], running: &[Running], queue: &[Queued], policy: &Policy) -> Vec<Place> {
    let _ = (now_s, nodes, running, queue, policy);
    Vec::new()
}
