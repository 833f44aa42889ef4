//! What the scheduler's property tests share: random small clusters and queues, a plain
//! model of a cluster that is easy to trust, and a simulation of time passing.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use voxhub_scheduler::{
    Admit, Grant, Node, Policy, Queued, Request, Running, effective_priority, schedule,
};

pub const NOW_S: i64 = 10_000;

/// Nodes, what runs on them, a queue and a policy, all small enough that many fit in a
/// second and still collide often.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub nodes: Vec<Node>,
    pub running: Vec<Running>,
    pub queue: Vec<Queued>,
    pub policy: Policy,
}

pub fn nodes() -> impl Strategy<Value = Vec<Node>> {
    let node = (
        1..=8u64,
        1..=8u64,
        prop::collection::btree_set(0..6u32, 0..=4),
    );
    prop::collection::vec(node, 1..=4).prop_map(|shapes| {
        shapes
            .into_iter()
            .enumerate()
            .map(|(index, (cores, gib, devices))| Node {
                // Names out of index order, so that ties are broken by name and not by place.
                name: format!("n{}", (index * 7 + 3) % 10),
                cpu_millis: cores * 1000,
                memory_mib: gib * 1024,
                gpu_devices: devices.into_iter().rev().collect(),
            })
            .collect()
    })
}

pub fn request() -> impl Strategy<Value = Request> {
    (
        0..=16u64,
        0..=8u64,
        prop_oneof![3 => Just(0u32), 4 => 1..=2u32, 2 => 3..=5u32],
    )
        .prop_map(|(half_cores, gib, gpus)| Request {
            cpu_millis: half_cores * 500,
            memory_mib: gib * 1024,
            gpus,
        })
}

/// A running workload before it is placed: which node to try, what it holds, when it ends.
fn running_wish() -> impl Strategy<Value = (usize, Request, i64, i64)> {
    (0..4usize, request(), 1..=2000i64, 1..=5i64)
}

/// Places the wishes that fit, on the lowest free devices, so that the running work is
/// what a correct scheduler could have started.
pub fn place_running(nodes: &[Node], wishes: &[(usize, Request, i64, i64)]) -> Vec<Running> {
    let mut model = Model::new(NOW_S, nodes, &[]);
    let mut running = Vec::new();
    for (number, &(node, request, ends_in_s, user_id)) in wishes.iter().enumerate() {
        let node = node % nodes.len();
        if !model.fits_now(node, &request) {
            continue;
        }
        let gpu_devices: Vec<u32> = model.free_devices[node]
            .iter()
            .take(request.gpus as usize)
            .copied()
            .collect();
        let workload = Running {
            workload_id: 10_000 + number as i64,
            user_id,
            node: nodes[node].name.clone(),
            grant: Grant {
                cpu_millis: request.cpu_millis,
                memory_mib: request.memory_mib,
                gpu_devices,
            },
            ends_at_s: NOW_S + ends_in_s,
        };
        model.hold(&workload);
        running.push(workload);
    }
    running
}

pub fn queued() -> impl Strategy<Value = Queued> {
    (
        prop_oneof![Just(10), Just(20), Just(30)],
        0..6i64,
        0..=900i64,
        request(),
        1..=1500i64,
        prop::bool::weighted(0.1),
        1..=5i64,
    )
        .prop_map(
            |(priority, order, waited_s, request, time_limit_s, held, user_id)| Queued {
                workload_id: 0,
                user_id,
                priority,
                order,
                submitted_at_s: NOW_S - waited_s,
                request,
                time_limit_s,
                held,
            },
        )
}

pub fn policy() -> impl Strategy<Value = Policy> {
    (
        0..=3usize,
        prop_oneof![Just(0i64), Just(60), Just(250)],
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(max_running_per_user, aging_interval_s, backfill)| Policy {
                max_running_per_user,
                aging_interval_s,
                backfill,
            },
        )
}

pub fn scenario() -> impl Strategy<Value = Scenario> {
    (
        nodes(),
        prop::collection::vec(running_wish(), 0..=8),
        prop::collection::vec(queued(), 0..=12),
        policy(),
    )
        .prop_map(|(nodes, wishes, queue, policy)| {
            let running = place_running(&nodes, &wishes);
            Scenario {
                nodes,
                running,
                queue: with_ids(queue),
                policy,
            }
        })
}

/// Unique workload ids, in an order unrelated to the queue order.
pub fn with_ids(mut queue: Vec<Queued>) -> Vec<Queued> {
    let count = queue.len() as i64;
    for (index, queued) in queue.iter_mut().enumerate() {
        queued.workload_id = (index as i64 * 5 + 2) % (count * 5 + 1) + 1;
    }
    queue
}

/// The queue order of rule 1, written out plainly.
pub fn queue_order(queue: &[Queued], policy: &Policy) -> Vec<usize> {
    let mut order: Vec<usize> = (0..queue.len()).collect();
    order.sort_by_key(|&index| {
        let queued = &queue[index];
        (
            -effective_priority(queued, NOW_S, policy),
            queued.order,
            queued.workload_id,
        )
    });
    order
}

/// When and where a blocked workload will first fit, and what its node has spare then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadow {
    pub time_s: i64,
    pub node: usize,
    pub spare_cpu_millis: i64,
    pub spare_memory_mib: i64,
    pub spare_gpus: i64,
}

/// A cluster kept the simple way: free amounts per node, free device sets, and a list of
/// what holds what until when.
#[derive(Debug, Clone)]
pub struct Model {
    pub now_s: i64,
    pub names: Vec<String>,
    pub total: Vec<Request>,
    pub free_cpu_millis: Vec<i64>,
    pub free_memory_mib: Vec<i64>,
    pub free_devices: Vec<BTreeSet<u32>>,
    /// (node, cpu, memory, gpus, expected end)
    pub holdings: Vec<(usize, i64, i64, i64, i64)>,
    pub running_per_user: HashMap<i64, usize>,
}

impl Model {
    pub fn new(now_s: i64, nodes: &[Node], running: &[Running]) -> Self {
        let mut model = Model {
            now_s,
            names: nodes.iter().map(|node| node.name.clone()).collect(),
            total: nodes
                .iter()
                .map(|node| Request {
                    cpu_millis: node.cpu_millis,
                    memory_mib: node.memory_mib,
                    gpus: node.gpu_devices.iter().collect::<BTreeSet<_>>().len() as u32,
                })
                .collect(),
            free_cpu_millis: nodes.iter().map(|node| node.cpu_millis as i64).collect(),
            free_memory_mib: nodes.iter().map(|node| node.memory_mib as i64).collect(),
            free_devices: nodes
                .iter()
                .map(|node| node.gpu_devices.iter().copied().collect())
                .collect(),
            holdings: Vec::new(),
            running_per_user: HashMap::new(),
        };
        for workload in running {
            model.hold(workload);
        }
        model
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|candidate| candidate == name)
    }

    /// Takes what a running workload holds; devices already taken or unknown are not
    /// counted twice.
    pub fn hold(&mut self, workload: &Running) {
        *self.running_per_user.entry(workload.user_id).or_insert(0) += 1;
        let Some(node) = self.node_index(&workload.node) else {
            return;
        };
        let mut gpus = 0;
        for device in &workload.grant.gpu_devices {
            if self.free_devices[node].remove(device) {
                gpus += 1;
            }
        }
        let cpu_millis = workload.grant.cpu_millis as i64;
        let memory_mib = workload.grant.memory_mib as i64;
        self.free_cpu_millis[node] -= cpu_millis;
        self.free_memory_mib[node] -= memory_mib;
        self.holdings.push((
            node,
            cpu_millis,
            memory_mib,
            gpus,
            workload.ends_at_s.max(self.now_s),
        ));
    }

    pub fn admit(&mut self, admit: &Admit, queued: &Queued) {
        self.hold(&Running {
            workload_id: admit.workload_id,
            user_id: queued.user_id,
            node: admit.node.clone(),
            grant: admit.grant.clone(),
            ends_at_s: self.now_s + queued.time_limit_s,
        });
    }

    pub fn fits_now(&self, node: usize, request: &Request) -> bool {
        self.free_cpu_millis[node] >= request.cpu_millis as i64
            && self.free_memory_mib[node] >= request.memory_mib as i64
            && self.free_devices[node].len() >= request.gpus as usize
    }

    pub fn could_ever_hold(&self, request: &Request) -> bool {
        self.total.iter().any(|total| {
            total.cpu_millis >= request.cpu_millis
                && total.memory_mib >= request.memory_mib
                && total.gpus >= request.gpus
        })
    }

    /// Tries every time at which something ends and every node: the first time anything
    /// fits, the node left with the fewest GPUs, then the least CPU, then the first name.
    pub fn shadow(&self, request: &Request) -> Option<Shadow> {
        let times: BTreeSet<i64> = self.holdings.iter().map(|holding| holding.4).collect();
        for time_s in times {
            let mut best: Option<(i64, i64, String, Shadow)> = None;
            for node in 0..self.names.len() {
                let ended = self
                    .holdings
                    .iter()
                    .filter(|holding| holding.0 == node && holding.4 <= time_s);
                let (mut cpu, mut memory, mut gpus) = (
                    self.free_cpu_millis[node],
                    self.free_memory_mib[node],
                    self.free_devices[node].len() as i64,
                );
                for holding in ended {
                    cpu += holding.1;
                    memory += holding.2;
                    gpus += holding.3;
                }
                let fits = cpu >= request.cpu_millis as i64
                    && memory >= request.memory_mib as i64
                    && gpus >= i64::from(request.gpus);
                if !fits {
                    continue;
                }
                let shadow = Shadow {
                    time_s,
                    node,
                    spare_cpu_millis: cpu - request.cpu_millis as i64,
                    spare_memory_mib: memory - request.memory_mib as i64,
                    spare_gpus: gpus - i64::from(request.gpus),
                };
                let key = (gpus, cpu, self.names[node].clone(), shadow);
                if best
                    .as_ref()
                    .is_none_or(|chosen| (key.0, key.1, &key.2) < (chosen.0, chosen.1, &chosen.2))
                {
                    best = Some(key);
                }
            }
            if let Some((_, _, _, shadow)) = best {
                return Some(shadow);
            }
        }
        None
    }
}

/// A workload's start, or `None` when it never started within the simulation.
pub type Starts = HashMap<i64, i64>;

/// Runs the scheduler over simulated time: workloads arrive at their `submitted_at_s`,
/// run their whole time limit, and the scheduler is asked at every arrival and every end.
/// Checks at every step that nothing is handed out twice.
pub fn simulate(
    nodes: &[Node],
    mut arrivals: Vec<Queued>,
    policy: &Policy,
    until_s: i64,
) -> Starts {
    arrivals.sort_by_key(|queued| std::cmp::Reverse(queued.submitted_at_s));
    let mut running: Vec<Running> = Vec::new();
    let mut queue: Vec<Queued> = Vec::new();
    let mut starts = Starts::new();
    loop {
        let next_arrival_s = arrivals.last().map(|queued| queued.submitted_at_s);
        let next_end_s = running.iter().map(|workload| workload.ends_at_s).min();
        let Some(time_s) = next_arrival_s.into_iter().chain(next_end_s).min() else {
            break;
        };
        if time_s > until_s {
            break;
        }
        running.retain(|workload| workload.ends_at_s > time_s);
        while arrivals
            .last()
            .is_some_and(|queued| queued.submitted_at_s <= time_s)
        {
            queue.push(arrivals.pop().unwrap());
        }
        let admitted = schedule(time_s, nodes, &running, &queue, policy);
        let mut model = Model::new(time_s, nodes, &running);
        for admit in &admitted {
            let queued = queue
                .iter()
                .find(|queued| queued.workload_id == admit.workload_id)
                .unwrap()
                .clone();
            let node = model.node_index(&admit.node).unwrap();
            assert!(
                model.fits_now(node, &queued.request),
                "at {time_s}, {admit:?} does not fit"
            );
            for device in &admit.grant.gpu_devices {
                assert!(
                    model.free_devices[node].contains(device),
                    "at {time_s}, {admit:?} takes a busy device"
                );
            }
            model.admit(admit, &queued);
            starts.insert(admit.workload_id, time_s);
            running.push(Running {
                workload_id: admit.workload_id,
                user_id: queued.user_id,
                node: admit.node.clone(),
                grant: admit.grant.clone(),
                ends_at_s: time_s + queued.time_limit_s,
            });
            queue.retain(|waiting| waiting.workload_id != admit.workload_id);
        }
    }
    starts
}
