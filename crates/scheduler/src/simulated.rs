//! A made-up but realistic cluster, the same for the same seed, for benchmarks and tests:
//! nodes, what already runs on them, and a queue with a mix of requests and priorities.

use crate::{Grant, Node, Queued, Request, Running};

/// The `now_s` that the times of [`simulated_cluster`] are relative to: pass it to
/// [`crate::schedule`] and [`crate::queue_view`].
pub const SIMULATED_NOW_S: i64 = 1_700_000_000;

/// xorshift64*: tiny and good enough to make up clusters without a dependency.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        // A zero state would stay zero for ever.
        Xorshift((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const CORE: u64 = 1000;
const GIB: u64 = 1024;
/// Students and teachers with work in the queue.
const QUEUED_USERS: u64 = 200;
/// Users with running work only; a few running workloads belong to queued users
/// instead, so that some of them start at their per-user limit.
const OTHER_USERS: u64 = 2000;

/// A request like the ones people send: a fifth CPU-only, the rest 1 to 8 GPUs (mostly
/// few, never more than a node has) with cores and memory in proportion.
fn made_up_request(random: &mut Xorshift, gpus_per_node: u32) -> Request {
    let gpus = match random.between(0, 99) {
        0..=19 => 0,
        20..=54 => 1,
        55..=74 => 2,
        75..=79 => 3,
        80..=91 => 4,
        _ => 8,
    }
    .min(gpus_per_node);
    if gpus == 0 {
        Request {
            cpu_millis: random.between(1, 16) * CORE / 2,
            memory_mib: random.between(1, 64) * GIB,
            gpus: 0,
        }
    } else {
        let per_gpu = u64::from(gpus);
        Request {
            cpu_millis: per_gpu * random.between(2, 16) * CORE,
            memory_mib: per_gpu * random.between(16, 128) * GIB,
            gpus,
        }
    }
}

/// `nodes` machines with `gpus_per_node` GPUs each (16 cores and 128 GiB per GPU, at
/// least 16 cores and 64 GiB), about half busy with running work that ends within a day,
/// and `queued` workloads submitted over the last two hours: priorities 10, 20 and 30
/// (mostly 10), 200 users, a few held, time limits from ten minutes to a day.
/// Times are relative to [`SIMULATED_NOW_S`].
pub fn simulated_cluster(
    nodes: usize,
    gpus_per_node: u32,
    queued: usize,
    seed: u64,
) -> (Vec<Node>, Vec<Running>, Vec<Queued>) {
    let mut random = Xorshift::new(seed);
    let now_s = SIMULATED_NOW_S;
    let per_gpu = u64::from(gpus_per_node.max(1));
    let name_width = nodes.to_string().len().max(3);
    let machines: Vec<Node> = (0..nodes)
        .map(|index| Node {
            name: format!("node-{index:0name_width$}"),
            cpu_millis: (16 * per_gpu).max(16) * CORE,
            memory_mib: (128 * per_gpu).max(64) * GIB,
            gpu_devices: (0..gpus_per_node).collect(),
        })
        .collect();

    let mut running = Vec::new();
    let mut next_workload_id = 1;
    for machine in &machines {
        let mut free_cpu_millis = machine.cpu_millis;
        let mut free_memory_mib = machine.memory_mib;
        let mut free_devices: Vec<u32> = machine.gpu_devices.clone();
        // A few attempts per node, each kept only if it fits, leave nodes from idle to full.
        for _ in 0..random.between(0, 2 * per_gpu) {
            let request = made_up_request(&mut random, gpus_per_node);
            let fits = request.cpu_millis <= free_cpu_millis
                && request.memory_mib <= free_memory_mib
                && request.gpus as usize <= free_devices.len();
            if !fits {
                continue;
            }
            free_cpu_millis -= request.cpu_millis;
            free_memory_mib -= request.memory_mib;
            let gpu_devices: Vec<u32> = free_devices.drain(..request.gpus as usize).collect();
            running.push(Running {
                workload_id: next_workload_id,
                user_id: if random.chance(3) {
                    random.between(1, QUEUED_USERS)
                } else {
                    QUEUED_USERS + random.between(1, OTHER_USERS)
                } as i64,
                node: machine.name.clone(),
                grant: Grant {
                    cpu_millis: request.cpu_millis,
                    memory_mib: request.memory_mib,
                    gpu_devices,
                },
                ends_at_s: now_s + random.between(60, 24 * 3600) as i64,
            });
            next_workload_id += 1;
        }
    }

    let queue = (0..queued)
        .map(|index| {
            let priority = match random.between(0, 99) {
                0..=69 => 10,
                70..=89 => 20,
                _ => 30,
            };
            let two_hours_s = 2 * 3600;
            let submitted_ago_s = two_hours_s - (index as i64 * two_hours_s) / queued.max(1) as i64;
            Queued {
                workload_id: 1_000_000 + index as i64,
                user_id: random.between(1, QUEUED_USERS) as i64,
                priority,
                order: index as i64,
                submitted_at_s: now_s - submitted_ago_s,
                request: made_up_request(&mut random, gpus_per_node),
                time_limit_s: random.between(10, 24 * 60) as i64 * 60,
                held: random.chance(2),
            }
        })
        .collect();
    (machines, running, queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_cluster_and_another_seed_another() {
        assert_eq!(
            simulated_cluster(20, 8, 100, 7),
            simulated_cluster(20, 8, 100, 7)
        );
        assert_ne!(
            simulated_cluster(20, 8, 100, 7),
            simulated_cluster(20, 8, 100, 8)
        );
    }

    #[test]
    fn the_made_up_cluster_is_consistent_and_mixed() {
        let (nodes, running, queue) = simulated_cluster(50, 8, 2000, 1);
        assert_eq!(nodes.len(), 50);
        assert_eq!(queue.len(), 2000);
        assert!(!running.is_empty());
        for node in &nodes {
            let on_node = running.iter().filter(|workload| workload.node == node.name);
            let (mut cpu_millis, mut memory_mib, mut devices) = (0, 0, Vec::<u32>::new());
            for workload in on_node {
                cpu_millis += workload.grant.cpu_millis;
                memory_mib += workload.grant.memory_mib;
                devices.extend(&workload.grant.gpu_devices);
                assert!(workload.ends_at_s > SIMULATED_NOW_S);
            }
            let device_count = devices.len();
            devices.sort_unstable();
            devices.dedup();
            assert_eq!(
                devices.len(),
                device_count,
                "no device is given twice on {}",
                node.name
            );
            assert!(cpu_millis <= node.cpu_millis && memory_mib <= node.memory_mib);
        }
        let cpu_only = queue
            .iter()
            .filter(|workload| workload.request.gpus == 0)
            .count();
        let whole_node = queue
            .iter()
            .filter(|workload| workload.request.gpus == 8)
            .count();
        let held = queue.iter().filter(|workload| workload.held).count();
        assert!((200..600).contains(&cpu_only), "{cpu_only} CPU-only");
        assert!((50..300).contains(&whole_node), "{whole_node} whole-node");
        assert!((10..100).contains(&held), "{held} held");
        for priority in [10, 20, 30] {
            assert!(queue.iter().any(|workload| workload.priority == priority));
        }
        for workload in &queue {
            assert!(check_fits(&nodes, &workload.request));
            assert!(workload.submitted_at_s <= SIMULATED_NOW_S);
        }
    }

    fn check_fits(nodes: &[Node], request: &Request) -> bool {
        crate::check_fits_somewhere(nodes, request).is_ok()
    }

    #[test]
    fn machines_without_gpus_get_only_cpu_work() {
        let (nodes, running, queue) = simulated_cluster(3, 0, 50, 3);
        assert!(
            nodes
                .iter()
                .all(|node| node.gpu_devices.is_empty() && node.cpu_millis >= 16 * CORE)
        );
        assert!(
            running
                .iter()
                .all(|workload| workload.grant.gpu_devices.is_empty())
        );
        assert!(queue.iter().all(|workload| workload.request.gpus == 0));
    }
}
