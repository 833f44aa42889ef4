//! The queue as people see it: each workload's place in line and when it should start,
//! found by replaying scheduling passes over future time.

use crate::pass::{AgingOrder, run_pass, sort_by_queue_order};
use crate::state::ClusterState;
use crate::{Node, Place, Policy, Queued, Running};

/// A bound on simulated events, so that the view always returns promptly; workloads not
/// placed by then get no estimate. Every event ends at least one workload, so the bound is
/// only reached with more running and queued workloads than this.
const MAX_SIMULATED_EVENTS: usize = 100_000;

pub(crate) fn queue_view(
    now_s: i64,
    nodes: &[Node],
    running: &[Running],
    queue: &[Queued],
    policy: &Policy,
) -> Vec<Place> {
    let mut order: Vec<usize> = (0..queue.len()).collect();
    sort_by_queue_order(&mut order, now_s, queue, policy);
    let (not_held, held): (Vec<usize>, Vec<usize>) =
        order.iter().partition(|&&index| !queue[index].held);

    let mut state = ClusterState::new(now_s, nodes, running);
    let mut estimated_start_s: Vec<Option<i64>> = vec![None; queue.len()];
    let waiting: Vec<usize> = not_held
        .iter()
        .copied()
        .filter(|&index| state.could_ever_hold(&queue[index].request))
        .collect();
    let mut waiting = AgingOrder::new(&waiting, queue, policy);
    let mut order_now: Vec<usize> = Vec::with_capacity(queue.len());
    let mut time_s = now_s;
    for _ in 0..MAX_SIMULATED_EVENTS {
        waiting.order_at(time_s, queue, policy, &mut order_now);
        let admissions = run_pass(&mut state, time_s, queue, &order_now, policy);
        if !admissions.is_empty() {
            for admission in &admissions {
                estimated_start_s[admission.queue_index] = Some(time_s);
            }
            waiting.retain(|index| estimated_start_s[index].is_none());
        }
        let Some(next_end_s) = state.next_end_s() else {
            break;
        };
        if waiting.is_empty() {
            break;
        }
        // Workloads past their end are expected to end now, so time never goes back.
        time_s = time_s.max(next_end_s);
        state.end_through(time_s);
    }

    not_held
        .iter()
        .chain(held.iter())
        .enumerate()
        .map(|(offset, &index)| Place {
            workload_id: queue[index].workload_id,
            position: offset + 1,
            estimated_start_s: estimated_start_s[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::{Grant, Node, Policy, Queued, Request, Running, queue_view};

    const NOW_S: i64 = 1000;

    fn node(name: &str, gpus: u32) -> Node {
        Node {
            name: name.into(),
            cpu_millis: 16_000,
            memory_mib: 65_536,
            gpu_devices: (0..gpus).collect(),
        }
    }

    fn job(workload_id: i64, gpus: u32, time_limit_s: i64) -> Queued {
        Queued {
            workload_id,
            user_id: workload_id,
            priority: 10,
            order: workload_id,
            submitted_at_s: NOW_S,
            request: Request {
                cpu_millis: 1000,
                memory_mib: 1024,
                gpus,
            },
            time_limit_s,
            held: false,
        }
    }

    fn policy() -> Policy {
        Policy {
            max_running_per_user: 0,
            aging_interval_s: 0,
            backfill: true,
        }
    }

    fn view(
        nodes: &[Node],
        running: &[Running],
        queue: &[Queued],
    ) -> Vec<(i64, usize, Option<i64>)> {
        queue_view(NOW_S, nodes, running, queue, &policy())
            .into_iter()
            .map(|place| (place.workload_id, place.position, place.estimated_start_s))
            .collect()
    }

    #[test]
    fn estimates_follow_the_workloads_ahead_to_their_time_limits() {
        let nodes = [node("a", 2)];
        let running = [Running {
            workload_id: 99,
            user_id: 99,
            node: "a".into(),
            grant: Grant {
                cpu_millis: 1000,
                memory_mib: 1024,
                gpu_devices: vec![0],
            },
            ends_at_s: 1500,
        }];
        let queue = [job(1, 1, 100), job(2, 2, 300), job(3, 1, 50), job(4, 2, 10)];
        let expected = vec![
            (1, 1, Some(1000)),
            (2, 2, Some(1500)),
            (3, 3, Some(1100)),
            (4, 4, Some(1800)),
        ];
        assert_eq!(view(&nodes, &running, &queue), expected);
    }

    #[test]
    fn held_workloads_come_last_without_an_estimate() {
        let nodes = [node("a", 1)];
        let queue = [
            Queued {
                held: true,
                ..job(1, 0, 100)
            },
            job(2, 1, 100),
            job(3, 1, 100),
        ];
        let expected = vec![(2, 1, Some(1000)), (3, 2, Some(1100)), (1, 3, None)];
        assert_eq!(view(&nodes, &[], &queue), expected);
    }

    #[test]
    fn a_workload_that_never_fits_has_no_estimate_and_delays_nobody() {
        let nodes = [node("a", 1)];
        let queue = [job(1, 2, 100), job(2, 1, 100)];
        assert_eq!(
            view(&nodes, &[], &queue),
            vec![(1, 1, None), (2, 2, Some(1000))]
        );
    }

    #[test]
    fn a_workload_past_its_end_is_expected_to_end_now() {
        let nodes = [node("a", 1)];
        let running = [Running {
            workload_id: 99,
            user_id: 99,
            node: "a".into(),
            grant: Grant {
                cpu_millis: 1000,
                memory_mib: 1024,
                gpu_devices: vec![0],
            },
            ends_at_s: 10,
        }];
        assert_eq!(
            view(&nodes, &running, &[job(1, 1, 100)]),
            vec![(1, 1, Some(1000))]
        );
    }

    #[test]
    fn backfilled_workloads_are_estimated_to_start_now() {
        let nodes = [node("a", 2)];
        let running = [Running {
            workload_id: 99,
            user_id: 99,
            node: "a".into(),
            grant: Grant {
                cpu_millis: 1000,
                memory_mib: 1024,
                gpu_devices: vec![0],
            },
            ends_at_s: 2000,
        }];
        let queue = [job(1, 2, 100), job(2, 1, 1000), job(3, 1, 1001)];
        let expected = vec![(1, 1, Some(2000)), (2, 2, Some(1000)), (3, 3, Some(2100))];
        assert_eq!(view(&nodes, &running, &queue), expected);
    }
}
