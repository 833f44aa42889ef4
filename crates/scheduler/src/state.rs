//! The cluster while a decision is being made: what each node has free, which GPU
//! devices are taken, what holds them until when, and how many workloads each user runs.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::{Node, Request, Running};

/// Hashes integer ids with one multiplication: ids need no defence against crafted
/// collisions, and SipHash was a tenth of the queue view's time.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, number: u64) {
        self.0 = (self.0 ^ number).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_i64(&mut self, number: i64) {
        self.write_u64(number as u64);
    }

    fn write_usize(&mut self, number: usize) {
        self.write_u64(number as u64);
    }
}

pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// One node's capacity and what is free on it now.
pub(crate) struct NodeState<'a> {
    pub name: &'a str,
    pub total_cpu_millis: u64,
    pub total_memory_mib: u64,
    /// Sorted and without repeats, so that walking it finds the lowest free indices first.
    pub devices: Vec<u32>,
    pub device_taken: Vec<bool>,
    /// Signed and wide because what executors report may over-commit a node, and ending a
    /// workload must give back exactly what it took.
    pub free_cpu_millis: i128,
    pub free_memory_mib: i128,
    pub free_gpus: u32,
}

impl NodeState<'_> {
    pub fn fits_now(&self, request: &Request) -> bool {
        self.free().covers(request)
    }

    pub fn could_ever_hold(&self, request: &Request) -> bool {
        self.total_cpu_millis >= request.cpu_millis
            && self.total_memory_mib >= request.memory_mib
            && self.devices.len() as u64 >= u64::from(request.gpus)
    }

    pub fn free(&self) -> Capacity {
        Capacity {
            cpu_millis: self.free_cpu_millis,
            memory_mib: self.free_memory_mib,
            gpus: i64::from(self.free_gpus),
        }
    }
}

/// An amount of CPU, memory and GPUs that may be negative while a node is over-committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Capacity {
    pub cpu_millis: i128,
    pub memory_mib: i128,
    pub gpus: i64,
}

impl Capacity {
    pub fn covers(&self, request: &Request) -> bool {
        self.cpu_millis >= i128::from(request.cpu_millis)
            && self.memory_mib >= i128::from(request.memory_mib)
            && self.gpus >= i64::from(request.gpus)
    }

    pub fn minus(self, request: &Request) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis - i128::from(request.cpu_millis),
            memory_mib: self.memory_mib - i128::from(request.memory_mib),
            gpus: self.gpus - i64::from(request.gpus),
        }
    }

    pub fn plus(self, other: Capacity) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis + other.cpu_millis,
            memory_mib: self.memory_mib + other.memory_mib,
            gpus: self.gpus + other.gpus,
        }
    }
}

/// The resources one workload holds until it ends.
pub(crate) struct Holding {
    /// `None` for a workload reported on a node the scheduler was not given: it holds no
    /// capacity here but still counts against its user's limit.
    pub node: Option<usize>,
    pub user_id: i64,
    pub cpu_millis: i128,
    pub memory_mib: i128,
    /// Positions in the node's device list; only the devices this workload really took, so
    /// that a device reported twice is given back once.
    pub device_positions: Vec<usize>,
}

impl Holding {
    fn capacity(&self) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis,
            memory_mib: self.memory_mib,
            gpus: self.device_positions.len() as i64,
        }
    }
}

/// For each number of GPUs, the most CPU and the most memory free on any one node with
/// at least that many GPUs free: a request above either cannot fit anywhere, which is told
/// in a few instructions instead of a walk over every node.
pub(crate) struct FitBound {
    most_free_with_gpus: Vec<(i128, i128)>,
}

impl FitBound {
    pub fn might_fit(&self, request: &Request) -> bool {
        self.most_free_with_gpus
            .get(request.gpus as usize)
            .is_some_and(|&(cpu_millis, memory_mib)| {
                cpu_millis >= i128::from(request.cpu_millis)
                    && memory_mib >= i128::from(request.memory_mib)
            })
    }
}

/// When and where a blocked workload will fit first, and what that node will have left
/// beside it then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shadow {
    pub time_s: i64,
    pub node: usize,
    pub spare: Capacity,
}

pub(crate) struct ClusterState<'a> {
    pub nodes: Vec<NodeState<'a>>,
    /// Keyed by (expected end, arrival) so that walking it in order replays the future.
    holdings: BTreeMap<(i64, u64), Holding>,
    running_per_user: IdMap<i64, usize>,
    next_arrival: u64,
}

/// Best fit: the node left with the fewest free GPUs, then the least free CPU, so that big
/// holes stay whole for big requests; names make the choice reproducible.
fn best_fit_order(a: (Capacity, &str), b: (Capacity, &str)) -> Ordering {
    a.0.gpus
        .cmp(&b.0.gpus)
        .then(a.0.cpu_millis.cmp(&b.0.cpu_millis))
        .then(a.1.cmp(b.1))
}

impl<'a> ClusterState<'a> {
    /// Running workloads past their end still hold their resources; they are expected to
    /// end at `now_s`.
    pub fn new(now_s: i64, nodes: &'a [Node], running: &[Running]) -> Self {
        let mut index_by_name: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
        let node_states = nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                index_by_name.entry(node.name.as_str()).or_insert(index);
                let mut devices = node.gpu_devices.clone();
                devices.sort_unstable();
                devices.dedup();
                NodeState {
                    name: &node.name,
                    total_cpu_millis: node.cpu_millis,
                    total_memory_mib: node.memory_mib,
                    device_taken: vec![false; devices.len()],
                    free_gpus: devices.len() as u32,
                    devices,
                    free_cpu_millis: i128::from(node.cpu_millis),
                    free_memory_mib: i128::from(node.memory_mib),
                }
            })
            .collect();
        let mut state = ClusterState {
            nodes: node_states,
            holdings: BTreeMap::new(),
            running_per_user: IdMap::default(),
            next_arrival: 0,
        };
        for workload in running {
            let node = index_by_name.get(workload.node.as_str()).copied();
            let mut device_positions = Vec::new();
            if let Some(index) = node {
                let node_state = &state.nodes[index];
                for device in &workload.grant.gpu_devices {
                    if let Ok(position) = node_state.devices.binary_search(device)
                        && !node_state.device_taken[position]
                        && !device_positions.contains(&position)
                    {
                        device_positions.push(position);
                    }
                }
            }
            let holding = Holding {
                node,
                user_id: workload.user_id,
                cpu_millis: i128::from(workload.grant.cpu_millis),
                memory_mib: i128::from(workload.grant.memory_mib),
                device_positions,
            };
            state.take(holding, workload.ends_at_s.max(now_s));
        }
        state
    }

    fn take(&mut self, holding: Holding, end_s: i64) {
        if let Some(index) = holding.node {
            let node = &mut self.nodes[index];
            node.free_cpu_millis -= holding.cpu_millis;
            node.free_memory_mib -= holding.memory_mib;
            for &position in &holding.device_positions {
                node.device_taken[position] = true;
                node.free_gpus -= 1;
            }
        }
        *self.running_per_user.entry(holding.user_id).or_insert(0) += 1;
        self.holdings.insert((end_s, self.next_arrival), holding);
        self.next_arrival += 1;
    }

    fn give_back(&mut self, holding: Holding) {
        if let Some(index) = holding.node {
            let node = &mut self.nodes[index];
            node.free_cpu_millis += holding.cpu_millis;
            node.free_memory_mib += holding.memory_mib;
            for &position in &holding.device_positions {
                node.device_taken[position] = false;
                node.free_gpus += 1;
            }
        }
        if let Some(count) = self.running_per_user.get_mut(&holding.user_id) {
            *count -= 1;
            if *count == 0 {
                self.running_per_user.remove(&holding.user_id);
            }
        }
    }

    /// Starts a workload on `node`, which must fit it, and returns the devices it gets.
    pub fn admit(&mut self, node: usize, request: &Request, user_id: i64, end_s: i64) -> Vec<u32> {
        let node_state = &self.nodes[node];
        debug_assert!(node_state.fits_now(request));
        let device_positions: Vec<usize> = (0..node_state.devices.len())
            .filter(|&position| !node_state.device_taken[position])
            .take(request.gpus as usize)
            .collect();
        let gpu_devices = device_positions
            .iter()
            .map(|&position| node_state.devices[position])
            .collect();
        let holding = Holding {
            node: Some(node),
            user_id,
            cpu_millis: i128::from(request.cpu_millis),
            memory_mib: i128::from(request.memory_mib),
            device_positions,
        };
        self.take(holding, end_s);
        gpu_devices
    }

    /// Ends every workload expected to end at or before `time_s`.
    pub fn end_through(&mut self, time_s: i64) {
        while let Some(entry) = self.holdings.first_entry() {
            if entry.key().0 > time_s {
                break;
            }
            let holding = entry.remove();
            self.give_back(holding);
        }
    }

    pub fn next_end_s(&self) -> Option<i64> {
        self.holdings.keys().next().map(|&(end_s, _)| end_s)
    }

    pub fn running_of(&self, user_id: i64) -> usize {
        self.running_per_user.get(&user_id).copied().unwrap_or(0)
    }

    pub fn could_ever_hold(&self, request: &Request) -> bool {
        self.nodes.iter().any(|node| node.could_ever_hold(request))
    }

    pub fn fit_bound(&self) -> FitBound {
        let mut most_free_with_gpus: Vec<(i128, i128)> = Vec::new();
        for node in &self.nodes {
            let gpus = node.free_gpus as usize;
            if most_free_with_gpus.len() <= gpus {
                most_free_with_gpus.resize(gpus + 1, (i128::MIN, i128::MIN));
            }
            let most = &mut most_free_with_gpus[gpus];
            *most = (
                most.0.max(node.free_cpu_millis),
                most.1.max(node.free_memory_mib),
            );
        }
        for gpus in (0..most_free_with_gpus.len().saturating_sub(1)).rev() {
            let more = most_free_with_gpus[gpus + 1];
            let most = &mut most_free_with_gpus[gpus];
            *most = (most.0.max(more.0), most.1.max(more.1));
        }
        FitBound {
            most_free_with_gpus,
        }
    }

    /// The best-fitting node for `request` now, leaving out `excluded`.
    pub fn best_node(&self, request: &Request, excluded: Option<usize>) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (index, node) in self.nodes.iter().enumerate() {
            if Some(index) == excluded || !node.fits_now(request) {
                continue;
            }
            let better = best.is_none_or(|chosen| {
                let chosen = &self.nodes[chosen];
                best_fit_order((node.free(), node.name), (chosen.free(), chosen.name)).is_lt()
            });
            if better {
                best = Some(index);
            }
        }
        best
    }

    /// The earliest time at which `request` fits on some node as the current workloads end
    /// (all of those ending at one time end together), and the best-fitting node then.
    /// `None` when it would not fit even after every workload has ended.
    pub fn shadow(&self, request: &Request) -> Option<Shadow> {
        let mut released: IdMap<usize, Capacity> = IdMap::default();
        let mut touched: Vec<usize> = Vec::new();
        let mut entries = self.holdings.iter().peekable();
        while let Some(&(&(time_s, _), _)) = entries.peek() {
            touched.clear();
            while let Some(&(&(end_s, _), holding)) = entries.peek() {
                if end_s != time_s {
                    break;
                }
                entries.next();
                if let Some(node) = holding.node {
                    let sum = released.entry(node).or_default();
                    *sum = sum.plus(holding.capacity());
                    touched.push(node);
                }
            }
            let mut best: Option<(usize, Capacity)> = None;
            for &node in &touched {
                let free = self.nodes[node].free().plus(released[&node]);
                if !free.covers(request) {
                    continue;
                }
                let better = best.is_none_or(|(chosen, chosen_free)| {
                    let name = self.nodes[node].name;
                    best_fit_order((free, name), (chosen_free, self.nodes[chosen].name)).is_lt()
                });
                if better {
                    best = Some((node, free));
                }
            }
            if let Some((node, free)) = best {
                return Some(Shadow {
                    time_s,
                    node,
                    spare: free.minus(request),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;

    fn node(name: &str, cpu_millis: u64, memory_mib: u64, gpus: u32) -> Node {
        Node {
            name: name.into(),
            cpu_millis,
            memory_mib,
            gpu_devices: (0..gpus).collect(),
        }
    }

    fn running(node: &str, cpu_millis: u64, devices: &[u32], ends_at_s: i64) -> Running {
        Running {
            workload_id: 1,
            user_id: 1,
            node: node.into(),
            grant: Grant {
                cpu_millis,
                memory_mib: 1,
                gpu_devices: devices.to_vec(),
            },
            ends_at_s,
        }
    }

    fn request(cpu_millis: u64, gpus: u32) -> Request {
        Request {
            cpu_millis,
            memory_mib: 1,
            gpus,
        }
    }

    #[test]
    fn a_device_reported_twice_is_taken_once_and_given_back_once() {
        let nodes = [node("a", 8000, 100, 2)];
        let twice = [
            running("a", 1000, &[0, 0], 10),
            running("a", 1000, &[0], 20),
        ];
        let mut state = ClusterState::new(0, &nodes, &twice);
        assert_eq!(state.nodes[0].free_gpus, 1);
        state.end_through(10);
        assert_eq!(state.nodes[0].free_gpus, 2);
        state.end_through(20);
        assert_eq!(state.nodes[0].free_gpus, 2);
        assert_eq!(state.nodes[0].free_cpu_millis, 8000);
    }

    #[test]
    fn devices_a_node_does_not_have_are_ignored() {
        let nodes = [node("a", 8000, 100, 2)];
        let state = ClusterState::new(0, &nodes, &[running("a", 1000, &[7], 10)]);
        assert_eq!(state.nodes[0].free_gpus, 2);
    }

    #[test]
    fn workloads_on_unknown_nodes_count_for_their_user_only() {
        let nodes = [node("a", 8000, 100, 2)];
        let state = ClusterState::new(0, &nodes, &[running("gone", 1000, &[0], 10)]);
        assert_eq!(state.nodes[0].free_gpus, 2);
        assert_eq!(state.running_of(1), 1);
    }

    #[test]
    fn an_overcommitted_node_gets_back_exactly_what_was_taken() {
        let nodes = [node("a", 1000, 100, 0)];
        let too_much = [running("a", 1500, &[], 10), running("a", 1500, &[], 20)];
        let mut state = ClusterState::new(0, &nodes, &too_much);
        assert_eq!(state.nodes[0].free_cpu_millis, -2000);
        state.end_through(10);
        assert!(!state.nodes[0].fits_now(&request(1000, 0)));
        state.end_through(20);
        assert!(state.nodes[0].fits_now(&request(1000, 0)));
    }

    #[test]
    fn admission_takes_the_lowest_free_devices() {
        let nodes = [node("a", 8000, 100, 4)];
        let mut state = ClusterState::new(0, &nodes, &[running("a", 1000, &[1], 10)]);
        assert_eq!(state.admit(0, &request(1000, 2), 2, 50), vec![0, 2]);
        assert_eq!(state.admit(0, &request(1000, 1), 2, 50), vec![3]);
        assert_eq!(state.running_of(2), 2);
    }

    #[test]
    fn best_fit_prefers_fewest_free_gpus_then_least_free_cpu_then_name() {
        /// Nodes as (name, CPU, GPUs), a request, and the node it should go to.
        type Case<'a> = (&'a [(&'a str, u64, u32)], Request, Option<&'a str>);
        let table: &[Case] = &[
            (
                &[("a", 8000, 4), ("b", 8000, 2)],
                request(1000, 1),
                Some("b"),
            ),
            (
                &[("a", 4000, 2), ("b", 8000, 2)],
                request(1000, 1),
                Some("a"),
            ),
            (
                &[("b", 8000, 2), ("a", 8000, 2)],
                request(1000, 1),
                Some("a"),
            ),
            (
                &[("a", 8000, 4), ("b", 500, 0)],
                request(1000, 0),
                Some("a"),
            ),
            (&[("a", 8000, 1), ("b", 8000, 2)], request(1000, 3), None),
        ];
        for (shape, wanted, expected) in table {
            let nodes: Vec<Node> = shape
                .iter()
                .map(|&(name, cpu, gpus)| node(name, cpu, 100, gpus))
                .collect();
            let state = ClusterState::new(0, &nodes, &[]);
            let chosen = state
                .best_node(wanted, None)
                .map(|index| nodes[index].name.as_str());
            assert_eq!(chosen, *expected, "nodes {shape:?}, request {wanted:?}");
        }
    }

    #[test]
    fn shadow_is_the_first_end_after_which_the_request_fits_and_says_what_is_spare() {
        let nodes = [node("a", 8000, 100, 4), node("b", 8000, 100, 4)];
        let busy = [
            running("a", 2000, &[0, 1], 30),
            running("a", 2000, &[2, 3], 50),
            running("b", 2000, &[0, 1, 2], 40),
        ];
        let state = ClusterState::new(0, &nodes, &busy);
        let table = [
            (request(1000, 2), Some((30, "a", 0))),
            (request(1000, 4), Some((40, "b", 0))),
            (request(1000, 3), Some((40, "b", 1))),
            (request(1000, 5), None),
        ];
        for (wanted, expected) in table {
            let shadow = state.shadow(&wanted);
            let found = shadow.map(|s| (s.time_s, nodes[s.node].name.as_str(), s.spare.gpus));
            assert_eq!(found, expected, "request {wanted:?}");
        }
    }

    #[test]
    fn the_fit_bound_never_refuses_what_fits_and_refuses_what_no_node_has() {
        let nodes = [
            node("a", 8000, 100, 4),
            node("b", 32_000, 100, 1),
            node("c", 2000, 100, 0),
        ];
        let state = ClusterState::new(0, &nodes, &[running("a", 1000, &[0], 10)]);
        let bound = state.fit_bound();
        let table = [
            (request(7000, 3), true),
            (request(8000, 3), false),
            (request(32_000, 1), true),
            (request(32_000, 2), false),
            (request(1000, 4), false),
            (request(33_000, 0), false),
        ];
        for (wanted, expected) in table {
            assert_eq!(bound.might_fit(&wanted), expected, "request {wanted:?}");
            if expected {
                assert!(state.best_node(&wanted, None).is_some());
            }
        }
    }

    #[test]
    fn overdue_workloads_are_expected_to_end_now() {
        let nodes = [node("a", 8000, 100, 1)];
        let state = ClusterState::new(100, &nodes, &[running("a", 1000, &[0], 40)]);
        assert_eq!(state.next_end_s(), Some(100));
        assert_eq!(state.shadow(&request(1000, 1)).map(|s| s.time_s), Some(100));
    }
}
