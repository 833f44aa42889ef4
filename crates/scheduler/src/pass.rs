//! One scheduling pass: the queue order, then strict order with EASY backfilling behind
//! the first workload that does not fit.

use std::cmp::Reverse;

use crate::state::{Capacity, ClusterState};
use crate::{Policy, Queued, Request, effective_priority};

/// Sorts queue indices into the order of rule 1: effective priority, highest first, then
/// `order`, then `workload_id`, then the index so that even duplicates sort one way.
pub(crate) fn sort_by_queue_order(
    indices: &mut [usize],
    now_s: i64,
    queue: &[Queued],
    policy: &Policy,
) {
    let mut keyed: Vec<(Reverse<i64>, i64, i64, usize)> = indices
        .iter()
        .map(|&index| {
            let queued = &queue[index];
            let priority = effective_priority(queued, now_s, policy);
            (Reverse(priority), queued.order, queued.workload_id, index)
        })
        .collect();
    keyed.sort_unstable();
    for (slot, key) in indices.iter_mut().zip(keyed) {
        *slot = key.3;
    }
}

/// One workload's place in [`AgingOrder`], with what its effective priority is made of.
#[derive(Debug, Clone, Copy)]
struct Aged {
    base: i128,
    remainder_s: i64,
    submitted_at_s: i64,
    order: i64,
    workload_id: i64,
    index: usize,
}

/// Queue indices kept in the order of rule 1 as time passes, without sorting again at
/// every step of the queue view.
///
/// With `A = aging_interval_s`, `s = q·A + r` and `t = T·A + u` (floor division, so
/// `0 <= r, u < A`), `floor((t - s) / A) = T - q - [u < r]`. Past the `T` that all share, a
/// workload's effective priority is `priority - q`, one less while `u < r`. Sorted once by
/// `priority - q`, the workloads split at any time into two runs that each stay sorted,
/// and one merge gives the order.
pub(crate) struct AgingOrder {
    by_base: Vec<Aged>,
    aging_interval_s: i64,
}

impl AgingOrder {
    pub fn new(indices: &[usize], queue: &[Queued], policy: &Policy) -> Self {
        let aging_interval_s = policy.aging_interval_s.max(0);
        let mut by_base: Vec<Aged> = indices
            .iter()
            .map(|&index| {
                let queued = &queue[index];
                let (whole, remainder_s) = if aging_interval_s > 0 {
                    (
                        queued.submitted_at_s.div_euclid(aging_interval_s),
                        queued.submitted_at_s.rem_euclid(aging_interval_s),
                    )
                } else {
                    (0, 0)
                };
                Aged {
                    base: i128::from(queued.priority) - i128::from(whole),
                    remainder_s,
                    submitted_at_s: queued.submitted_at_s,
                    order: queued.order,
                    workload_id: queued.workload_id,
                    index,
                }
            })
            .collect();
        by_base.sort_by_key(|aged| (Reverse(aged.base), aged.order, aged.workload_id, aged.index));
        AgingOrder {
            by_base,
            aging_interval_s,
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        self.by_base.retain(|aged| keep(aged.index));
    }

    pub fn is_empty(&self) -> bool {
        self.by_base.is_empty()
    }

    /// Writes the queue order at `time_s` into `out`.
    pub fn order_at(&self, time_s: i64, queue: &[Queued], policy: &Policy, out: &mut Vec<usize>) {
        out.clear();
        // Waiting clamps at zero for workloads submitted after `time_s`, and saturates for
        // absurd times; the arithmetic above holds for neither, so sort those the plain way.
        let plain = self.aging_interval_s > 0
            && self.by_base.iter().any(|aged| {
                aged.submitted_at_s > time_s || time_s.checked_sub(aged.submitted_at_s).is_none()
            });
        if plain {
            out.extend(self.by_base.iter().map(|aged| aged.index));
            sort_by_queue_order(out, time_s, queue, policy);
            return;
        }
        let now_remainder_s = if self.aging_interval_s > 0 {
            time_s.rem_euclid(self.aging_interval_s)
        } else {
            0
        };
        let behind = |aged: &Aged| aged.remainder_s > now_remainder_s;
        let key = |aged: &Aged| {
            let base = aged.base - i128::from(behind(aged));
            (Reverse(base), aged.order, aged.workload_id, aged.index)
        };
        let mut level = self.by_base.iter().filter(|aged| !behind(aged)).peekable();
        let mut lagging = self.by_base.iter().filter(|aged| behind(aged)).peekable();
        loop {
            let next = match (level.peek(), lagging.peek()) {
                (Some(a), Some(b)) if key(a) <= key(b) => level.next(),
                (Some(_), Some(_)) => lagging.next(),
                (Some(_), None) => level.next(),
                (None, Some(_)) => lagging.next(),
                (None, None) => break,
            };
            out.extend(next.map(|aged| aged.index));
        }
    }
}

/// A queued workload started by a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Admission {
    pub queue_index: usize,
    pub node: usize,
    pub gpu_devices: Vec<u32>,
}

/// The first workload that did not fit, and what later workloads must leave it.
struct Reservation {
    user_id: i64,
    time_s: i64,
    node: usize,
    /// What the reserved node will have at the shadow time beyond the head's request and
    /// beyond the backfilled workloads still running then.
    spare: Capacity,
}

/// Requests that did not fit anywhere earlier in the pass. Capacity only shrinks during a
/// pass, so a request at least as big in every resource cannot fit either; queues hold
/// few distinct shapes, so this turns most of a long blocked queue into cheap checks.
#[derive(Default)]
struct TooBig {
    requests: Vec<Request>,
}

impl TooBig {
    const LIMIT: usize = 32;

    fn contains(&self, request: &Request) -> bool {
        self.requests.iter().any(|small| {
            request.cpu_millis >= small.cpu_millis
                && request.memory_mib >= small.memory_mib
                && request.gpus >= small.gpus
        })
    }

    fn add(&mut self, request: &Request) {
        if self.requests.len() < Self::LIMIT && !self.contains(request) {
            self.requests.push(*request);
        }
    }
}

/// The smallest of each resource asked for at or after each position of `order`, held
/// workloads left out: when that much cannot fit anywhere, nothing left can.
fn smallest_requests_from(queue: &[Queued], order: &[usize]) -> Vec<Request> {
    let nothing_left = Request {
        cpu_millis: u64::MAX,
        memory_mib: u64::MAX,
        gpus: u32::MAX,
    };
    let mut smallest = vec![nothing_left; order.len() + 1];
    for position in (0..order.len()).rev() {
        let queued = &queue[order[position]];
        let after = smallest[position + 1];
        smallest[position] = if queued.held {
            after
        } else {
            Request {
                cpu_millis: after.cpu_millis.min(queued.request.cpu_millis),
                memory_mib: after.memory_mib.min(queued.request.memory_mib),
                gpus: after.gpus.min(queued.request.gpus),
            }
        };
    }
    smallest
}

/// Walks `order` (queue indices, already in queue order) once at `now_s` and starts what
/// the rules allow, updating `state` as it goes. Returns the admissions in order.
pub(crate) fn run_pass(
    state: &mut ClusterState,
    now_s: i64,
    queue: &[Queued],
    order: &[usize],
    policy: &Policy,
) -> Vec<Admission> {
    let limit = policy.max_running_per_user;
    let smallest_from = smallest_requests_from(queue, order);
    let mut bound = state.fit_bound();
    let mut too_big = TooBig::default();
    let mut reservation: Option<Reservation> = None;
    let mut admissions = Vec::new();
    for (position, &queue_index) in order.iter().enumerate() {
        if !bound.might_fit(&smallest_from[position]) {
            break;
        }
        let queued = &queue[queue_index];
        if queued.held {
            continue;
        }
        // Behind the head, a workload that cannot fit now is simply passed over; most of
        // a long blocked queue leaves here, before the per-user count is looked up.
        if reservation.is_some() && !bound.might_fit(&queued.request) {
            continue;
        }
        if limit > 0 {
            // Without a slot kept, the head's own later workloads could backfill into its
            // last slot at every pass and hold it back for ever.
            let keep_slot_for_head = reservation
                .as_ref()
                .is_some_and(|head| head.user_id == queued.user_id);
            if state.running_of(queued.user_id) + usize::from(keep_slot_for_head) >= limit {
                continue;
            }
        }
        let request = &queued.request;
        let end_s = now_s.saturating_add(queued.time_limit_s.max(0));
        let fitting = if !bound.might_fit(request) || too_big.contains(request) {
            None
        } else {
            state.best_node(request, None)
        };
        let Some(mut node) = fitting else {
            too_big.add(request);
            // A workload that no node could hold even empty would block everything behind
            // it for ever, so it never becomes the head.
            if reservation.is_none() && state.could_ever_hold(request) {
                if !policy.backfill {
                    break;
                }
                reservation = state.shadow(request).map(|shadow| Reservation {
                    user_id: queued.user_id,
                    time_s: shadow.time_s,
                    node: shadow.node,
                    spare: shadow.spare,
                });
            }
            continue;
        };
        if let Some(head) = reservation.as_mut()
            && node == head.node
            && end_s > head.time_s
        {
            if head.spare.covers(request) {
                head.spare = head.spare.minus(request);
            } else {
                match state.best_node(request, Some(head.node)) {
                    Some(other) => node = other,
                    None => continue,
                }
            }
        }
        let gpu_devices = state.admit(node, request, queued.user_id, end_s);
        bound = state.fit_bound();
        admissions.push(Admission {
            queue_index,
            node,
            gpu_devices,
        });
    }
    admissions
}

#[cfg(test)]
mod order_tests {
    use proptest::prelude::*;

    use super::{AgingOrder, sort_by_queue_order};
    use crate::{Policy, Queued, Request};

    fn queued() -> impl Strategy<Value = Queued> {
        (0..5i32, 0..4i64, -500..500i64, any::<bool>()).prop_map(
            |(priority, order, submitted_at_s, held)| Queued {
                workload_id: 0,
                user_id: 1,
                priority: priority * 10,
                order,
                submitted_at_s,
                request: Request::default(),
                time_limit_s: 60,
                held,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_aging_order_matches_sorting_by_effective_priority(
            mut queue in prop::collection::vec(queued(), 0..30),
            aging_interval_s in prop_oneof![Just(0i64), 1..100i64],
            times_s in prop::collection::vec(-600..2000i64, 1..8),
        ) {
            for (index, queued) in queue.iter_mut().enumerate() {
                queued.workload_id = index as i64 % 7;
            }
            let policy = Policy { aging_interval_s, ..Policy::default() };
            let indices: Vec<usize> = (0..queue.len()).collect();
            let aging = AgingOrder::new(&indices, &queue, &policy);
            let mut found = Vec::new();
            for time_s in times_s {
                let mut expected = indices.clone();
                sort_by_queue_order(&mut expected, time_s, &queue, &policy);
                aging.order_at(time_s, &queue, &policy, &mut found);
                prop_assert_eq!(&found, &expected, "at {}", time_s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Grant, Node, Policy, Queued, Request, Running, effective_priority, schedule};

    const NOW_S: i64 = 1000;

    fn node(name: &str, cores: u64, gpus: u32) -> Node {
        Node {
            name: name.into(),
            cpu_millis: cores * 1000,
            memory_mib: 64 * 1024,
            gpu_devices: (0..gpus).collect(),
        }
    }

    fn job(workload_id: i64, cores: u64, gpus: u32, time_limit_s: i64) -> Queued {
        Queued {
            workload_id,
            user_id: workload_id,
            priority: 10,
            order: workload_id,
            submitted_at_s: NOW_S,
            request: Request {
                cpu_millis: cores * 1000,
                memory_mib: 1024,
                gpus,
            },
            time_limit_s,
            held: false,
        }
    }

    fn busy(node: &str, cores: u64, devices: &[u32], ends_at_s: i64) -> Running {
        Running {
            workload_id: 900 + ends_at_s,
            user_id: 900,
            node: node.into(),
            grant: Grant {
                cpu_millis: cores * 1000,
                memory_mib: 1024,
                gpu_devices: devices.to_vec(),
            },
            ends_at_s,
        }
    }

    fn no_limit() -> Policy {
        Policy {
            max_running_per_user: 0,
            aging_interval_s: 0,
            backfill: true,
        }
    }

    /// The admitted workload ids with their nodes and devices.
    fn admitted(
        nodes: &[Node],
        running: &[Running],
        queue: &[Queued],
        policy: &Policy,
    ) -> Vec<(i64, String, Vec<u32>)> {
        schedule(NOW_S, nodes, running, queue, policy)
            .into_iter()
            .map(|admit| (admit.workload_id, admit.node, admit.grant.gpu_devices))
            .collect()
    }

    fn ids(nodes: &[Node], running: &[Running], queue: &[Queued], policy: &Policy) -> Vec<i64> {
        admitted(nodes, running, queue, policy)
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    }

    #[test]
    fn effective_priority_grows_by_one_per_aging_interval_waited() {
        let policy = |aging_interval_s| Policy {
            aging_interval_s,
            ..Policy::default()
        };
        let table = [
            (0, 60, 10),
            (59, 60, 10),
            (60, 60, 11),
            (600, 60, 20),
            (600, 0, 10),
            (-600, 60, 10),
        ];
        for (waited_s, aging_interval_s, expected) in table {
            let queued = Queued {
                submitted_at_s: NOW_S - waited_s,
                ..job(1, 1, 0, 60)
            };
            assert_eq!(
                effective_priority(&queued, NOW_S, &policy(aging_interval_s)),
                expected,
                "waited {waited_s} s, aging every {aging_interval_s} s"
            );
        }
    }

    #[test]
    fn admissions_follow_priority_then_order_then_workload_id() {
        let nodes = [node("a", 4, 0)];
        let high = Queued {
            priority: 20,
            order: 9,
            ..job(3, 1, 0, 60)
        };
        let early = Queued {
            order: 1,
            ..job(2, 1, 0, 60)
        };
        let same_order = Queued {
            order: 1,
            ..job(1, 1, 0, 60)
        };
        let late = Queued {
            order: 5,
            ..job(4, 1, 0, 60)
        };
        let queue = [late.clone(), early, high, same_order];
        assert_eq!(ids(&nodes, &[], &queue, &no_limit()), vec![3, 1, 2, 4]);
        let aged = Queued {
            submitted_at_s: NOW_S - 600,
            ..late
        };
        let aging = Policy {
            aging_interval_s: 60,
            ..no_limit()
        };
        assert_eq!(ids(&nodes, &[], &[aged, job(1, 1, 0, 60)], &aging)[0], 4);
    }

    #[test]
    fn held_workloads_are_never_admitted_and_block_nobody() {
        let nodes = [node("a", 4, 0)];
        let held = Queued {
            held: true,
            ..job(1, 1, 0, 60)
        };
        let held_big = Queued {
            held: true,
            ..job(2, 64, 0, 60)
        };
        let queue = [held, held_big, job(3, 4, 0, 60)];
        let policy = Policy {
            backfill: false,
            ..no_limit()
        };
        assert_eq!(ids(&nodes, &[], &queue, &policy), vec![3]);
    }

    #[test]
    fn a_user_at_the_limit_is_skipped_without_blocking_others() {
        let nodes = [node("a", 16, 0)];
        let mine = |workload_id| Queued {
            user_id: 7,
            ..job(workload_id, 1, 0, 60)
        };
        let queue = [mine(1), mine(2), mine(3), job(4, 1, 0, 60)];
        let table = [
            (0, vec![], vec![1, 2, 3, 4]),
            (2, vec![], vec![1, 2, 4]),
            (
                2,
                vec![Running {
                    user_id: 7,
                    ..busy("a", 1, &[], 5000)
                }],
                vec![1, 4],
            ),
            (
                1,
                vec![Running {
                    user_id: 7,
                    ..busy("a", 1, &[], 5000)
                }],
                vec![4],
            ),
        ];
        for (max_running_per_user, running, expected) in table {
            let policy = Policy {
                max_running_per_user,
                backfill: false,
                ..no_limit()
            };
            assert_eq!(
                ids(&nodes, &running, &queue, &policy),
                expected,
                "limit {max_running_per_user}"
            );
        }
    }

    #[test]
    fn a_workload_goes_where_it_leaves_the_fewest_gpus_with_the_lowest_free_devices() {
        let nodes = [node("a", 32, 8), node("b", 32, 4), node("c", 32, 4)];
        let running = [busy("b", 1, &[0, 2], 5000)];
        let queue = [
            job(1, 1, 2, 60),
            job(2, 1, 1, 60),
            job(3, 1, 4, 60),
            job(4, 1, 0, 60),
        ];
        let expected = vec![
            (1, "b".to_string(), vec![1, 3]),
            (2, "c".to_string(), vec![0]),
            (3, "a".to_string(), vec![0, 1, 2, 3]),
            (4, "b".to_string(), vec![]),
        ];
        assert_eq!(admitted(&nodes, &running, &queue, &no_limit()), expected);
    }

    #[test]
    fn without_backfill_the_first_workload_that_does_not_fit_stops_the_pass() {
        let nodes = [node("a", 8, 2)];
        let queue = [job(1, 1, 1, 60), job(2, 1, 2, 60), job(3, 1, 1, 60)];
        let policy = Policy {
            backfill: false,
            ..no_limit()
        };
        assert_eq!(ids(&nodes, &[], &queue, &policy), vec![1]);
        assert_eq!(ids(&nodes, &[], &queue, &no_limit()), vec![1, 3]);
    }

    #[test]
    fn a_workload_no_node_could_ever_hold_blocks_nobody() {
        let nodes = [node("a", 8, 2)];
        let queue = [job(1, 1, 3, 60), job(2, 64, 0, 60), job(3, 1, 2, 60)];
        let policy = Policy {
            backfill: false,
            ..no_limit()
        };
        assert_eq!(ids(&nodes, &[], &queue, &policy), vec![3]);
    }

    /// Node `a` (12 cores and 1 GPU free now) frees its 4 GPUs at 2000 for the head, which
    /// leaves 8 cores spare there; node `b` has 14 cores and 1 GPU free that nothing reserves.
    #[test]
    fn backfill_starts_only_what_cannot_delay_the_reserved_head() {
        let nodes = [node("a", 16, 4), node("b", 16, 2)];
        let running = [busy("a", 4, &[0, 1, 2], 2000), busy("b", 2, &[0], 9000)];
        let head = job(1, 8, 4, 3600);
        /// A case's name, the workloads queued behind the head, and where they start.
        type Case<'a> = (&'a str, Vec<Queued>, Vec<(i64, &'a str)>);
        let table: &[Case] = &[
            (
                "ends by the shadow time on the reserved node",
                vec![job(2, 1, 1, 1000)],
                vec![(2, "a")],
            ),
            (
                "fits beside the head on its node",
                vec![job(2, 8, 0, 99_999)],
                vec![(2, "a")],
            ),
            (
                "too big to fit beside the head goes to another node",
                vec![job(2, 9, 0, 99_999)],
                vec![(2, "b")],
            ),
            (
                "too big beside the head and nowhere else",
                vec![job(2, 9, 0, 99_999), job(3, 9, 0, 99_999)],
                vec![(2, "b")],
            ),
            (
                "the spare beside the head is used up",
                vec![job(2, 8, 0, 99_999), job(3, 1, 0, 99_999)],
                vec![(2, "a"), (3, "b")],
            ),
        ];
        for (case, later, expected) in table {
            let mut queue = vec![head.clone()];
            queue.extend(later.iter().cloned());
            let found = admitted(&nodes, &running, &queue, &no_limit());
            let found: Vec<(i64, &str)> = found
                .iter()
                .map(|(id, node, _)| (*id, node.as_str()))
                .collect();
            assert_eq!(found, *expected, "{case}");
        }
    }

    #[test]
    fn a_long_gpu_job_cannot_take_the_devices_the_head_waits_for() {
        let nodes = [node("a", 16, 4)];
        let running = [busy("a", 1, &[0, 1], 2000)];
        let queue = [job(1, 1, 4, 3600), job(2, 1, 1, 5000), job(3, 1, 1, 1000)];
        assert_eq!(ids(&nodes, &running, &queue, &no_limit()), vec![3]);
    }

    #[test]
    fn admissions_of_the_same_pass_count_when_the_head_is_reserved() {
        let nodes = [node("a", 16, 2), node("b", 16, 2)];
        let running = [busy("b", 1, &[0], 3000)];
        // Workload 1 takes node a until 1500, so the head waits for a, not for b at 3000,
        // and a long workload may take b's free GPU.
        let queue = [job(1, 1, 2, 500), job(2, 1, 2, 60), job(3, 1, 1, 9000)];
        assert_eq!(ids(&nodes, &running, &queue, &no_limit()), vec![1, 3]);
    }

    #[test]
    fn later_workloads_of_the_heads_user_leave_it_a_slot() {
        let nodes = [node("a", 16, 2)];
        let running = [busy("a", 1, &[0], 2000)];
        let mine = |workload_id, gpus| Queued {
            user_id: 7,
            ..job(workload_id, 1, gpus, 100)
        };
        let queue = [mine(1, 2), mine(2, 0), job(3, 1, 0, 100)];
        let policy = |max_running_per_user| Policy {
            max_running_per_user,
            ..no_limit()
        };
        assert_eq!(ids(&nodes, &running, &queue, &policy(1)), vec![3]);
        assert_eq!(ids(&nodes, &running, &queue, &policy(2)), vec![2, 3]);
    }

    #[test]
    fn an_empty_queue_or_an_empty_cluster_admits_nothing() {
        assert!(ids(&[node("a", 4, 1)], &[], &[], &no_limit()).is_empty());
        assert!(ids(&[], &[], &[job(1, 1, 0, 60)], &no_limit()).is_empty());
    }
}
