//! Property tests of `schedule` and `queue_view` over thousands of random small clusters
//! and queues, checked against a plain model of the cluster.

mod support;

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use support::{Model, NOW_S, Scenario, queue_order, scenario, with_ids};
use voxhub_scheduler::{Admit, Grant, Policy, Queued, Request, Running, queue_view, schedule};

fn run(scenario: &Scenario) -> Vec<Admit> {
    schedule(
        NOW_S,
        &scenario.nodes,
        &scenario.running,
        &scenario.queue,
        &scenario.policy,
    )
}

fn queued_by_id(queue: &[Queued]) -> HashMap<i64, &Queued> {
    queue
        .iter()
        .map(|queued| (queued.workload_id, queued))
        .collect()
}

/// Whether the per-user limit leaves `queued` a slot, with the admissions made so far in
/// `model`, keeping one for the head when `queued` is of the head's user.
fn user_has_room(model: &Model, policy: &Policy, queued: &Queued, head_user: Option<i64>) -> bool {
    let limit = policy.max_running_per_user;
    let running = model
        .running_per_user
        .get(&queued.user_id)
        .copied()
        .unwrap_or(0);
    limit == 0 || running + usize::from(head_user == Some(queued.user_id)) < limit
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn admissions_never_overcommit_a_node_and_grants_equal_requests(scenario in scenario()) {
        let admitted = run(&scenario);
        let by_id = queued_by_id(&scenario.queue);
        for node in &scenario.nodes {
            let mut cpu_millis = 0;
            let mut memory_mib = 0;
            let mut devices = Vec::new();
            for workload in scenario.running.iter().filter(|workload| workload.node == node.name) {
                cpu_millis += workload.grant.cpu_millis;
                memory_mib += workload.grant.memory_mib;
                devices.extend(workload.grant.gpu_devices.iter().copied());
            }
            for admit in admitted.iter().filter(|admit| admit.node == node.name) {
                let request = by_id[&admit.workload_id].request;
                prop_assert_eq!(admit.grant.cpu_millis, request.cpu_millis);
                prop_assert_eq!(admit.grant.memory_mib, request.memory_mib);
                prop_assert_eq!(admit.grant.gpu_devices.len(), request.gpus as usize);
                cpu_millis += admit.grant.cpu_millis;
                memory_mib += admit.grant.memory_mib;
                devices.extend(admit.grant.gpu_devices.iter().copied());
            }
            prop_assert!(cpu_millis <= node.cpu_millis, "CPU over-committed on {}", node.name);
            prop_assert!(memory_mib <= node.memory_mib, "memory over-committed on {}", node.name);
            let distinct: BTreeSet<u32> = devices.iter().copied().collect();
            prop_assert_eq!(distinct.len(), devices.len(), "a device granted twice on {}", node.name);
            prop_assert!(distinct.iter().all(|device| node.gpu_devices.contains(device)));
        }
        let ids: BTreeSet<i64> = admitted.iter().map(|admit| admit.workload_id).collect();
        prop_assert_eq!(ids.len(), admitted.len(), "a workload admitted twice");
    }

    #[test]
    fn held_workloads_are_never_admitted_and_no_user_exceeds_the_limit(scenario in scenario()) {
        let admitted = run(&scenario);
        let by_id = queued_by_id(&scenario.queue);
        let mut per_user: HashMap<i64, usize> = HashMap::new();
        for workload in &scenario.running {
            *per_user.entry(workload.user_id).or_insert(0) += 1;
        }
        let before = per_user.clone();
        for admit in &admitted {
            let queued = by_id[&admit.workload_id];
            prop_assert!(!queued.held, "held workload {} admitted", queued.workload_id);
            *per_user.entry(queued.user_id).or_insert(0) += 1;
        }
        let limit = scenario.policy.max_running_per_user;
        if limit > 0 {
            for (user, count) in per_user {
                let already = before.get(&user).copied().unwrap_or(0);
                prop_assert!(count <= limit.max(already), "user {} runs {} with a limit of {}", user, count, limit);
            }
        }
    }

    /// Walks the queue order with a plain model and checks every workload against the rules.
    ///
    /// Here a left-out workload W "fits" when some node has free, after the admissions that
    /// come before W in the order, at least W's CPU, memory and GPU count, and that node is
    /// not the reserved head's node, or W ends by the head's shadow time, or W fits in what
    /// the head's node will have spare at the shadow time beyond the head and the earlier
    /// long backfills there. W does not count when it is held, when its user has no slot
    /// left (one kept for the head's user), or when no node could hold it even empty.
    /// Such a W is never left out while a later workload is admitted, and without backfill
    /// nothing after the first blocked workload is admitted.
    #[test]
    fn a_left_out_workload_never_fits_in_capacity_not_reserved_for_an_earlier_head(scenario in scenario()) {
        let admitted = run(&scenario);
        let Scenario { nodes, running, queue, policy } = &scenario;
        let admissions: HashMap<i64, (usize, &Admit)> =
            admitted.iter().enumerate().map(|(place, admit)| (admit.workload_id, (place, admit))).collect();
        let mut model = Model::new(NOW_S, nodes, running);
        let mut head: Option<(i64, support::Shadow)> = None;
        let mut stopped = false;
        let mut next_place = 0;
        for index in queue_order(queue, policy) {
            let queued = &queue[index];
            let request = &queued.request;
            let end_s = NOW_S + queued.time_limit_s;
            let allowed_on = |model: &Model, node: usize, head: &Option<(i64, support::Shadow)>| match head {
                None => true,
                Some((_, shadow)) => {
                    node != shadow.node
                        || end_s <= shadow.time_s
                        || (shadow.spare_cpu_millis >= request.cpu_millis as i64
                            && shadow.spare_memory_mib >= request.memory_mib as i64
                            && shadow.spare_gpus >= i64::from(request.gpus))
                }
            } && model.fits_now(node, request);
            let head_user = head.map(|(user, _)| user);
            if let Some(&(place, admit)) = admissions.get(&queued.workload_id) {
                prop_assert!(!stopped, "{} admitted after the pass stopped", queued.workload_id);
                prop_assert_eq!(place, next_place, "admissions come in queue order");
                next_place += 1;
                prop_assert!(!queued.held);
                prop_assert!(user_has_room(&model, policy, queued, head_user));
                let node = model.node_index(&admit.node).unwrap();
                prop_assert!(allowed_on(&model, node, &head), "{:?} not allowed on its node", admit);
                let best = (0..nodes.len())
                    .filter(|&candidate| allowed_on(&model, candidate, &head))
                    .min_by_key(|&candidate| {
                        let free = (model.free_devices[candidate].len(), model.free_cpu_millis[candidate]);
                        (free, model.names[candidate].clone())
                    });
                prop_assert_eq!(best, Some(node), "{:?} is not on the best-fitting node", admit);
                let lowest: Vec<u32> =
                    model.free_devices[node].iter().take(request.gpus as usize).copied().collect();
                prop_assert_eq!(&admit.grant.gpu_devices, &lowest, "not the lowest free devices");
                if let Some((_, shadow)) = head.as_mut()
                    && node == shadow.node
                    && end_s > shadow.time_s
                {
                    shadow.spare_cpu_millis -= request.cpu_millis as i64;
                    shadow.spare_memory_mib -= request.memory_mib as i64;
                    shadow.spare_gpus -= i64::from(request.gpus);
                }
                model.admit(admit, queued);
                continue;
            }
            if stopped
                || queued.held
                || !user_has_room(&model, policy, queued, head_user)
                || !model.could_ever_hold(request)
            {
                continue;
            }
            let fits = (0..nodes.len()).any(|node| allowed_on(&model, node, &head));
            prop_assert!(!fits, "{} left out though it fits", queued.workload_id);
            let fits_now = (0..nodes.len()).any(|node| model.fits_now(node, request));
            if head.is_none() && !fits_now {
                if policy.backfill {
                    let shadow = model.shadow(request);
                    prop_assert!(shadow.is_some(), "a workload that fits an empty node has a shadow time");
                    head = shadow.map(|shadow| (queued.user_id, shadow));
                } else {
                    stopped = true;
                }
            }
        }
        prop_assert_eq!(next_place, admitted.len(), "every admission is a queued workload");
    }

    /// The head is the first workload in order that is left out though not held, not at
    /// its user's limit and not too big for every node. Its shadow time, computed again
    /// with every admission of the call running, is no later than with only the admissions
    /// that came before it.
    #[test]
    fn backfilling_never_delays_the_reserved_head(scenario in scenario()) {
        let admitted = run(&scenario);
        let Scenario { nodes, running, queue, policy } = &scenario;
        let by_id: HashMap<i64, &Admit> = admitted.iter().map(|admit| (admit.workload_id, admit)).collect();
        let mut before_head = Model::new(NOW_S, nodes, running);
        let mut head = None;
        for index in queue_order(queue, policy) {
            let queued = &queue[index];
            if let Some(admit) = by_id.get(&queued.workload_id) {
                before_head.admit(admit, queued);
            } else if !queued.held
                && user_has_room(&before_head, policy, queued, None)
                && before_head.could_ever_hold(&queued.request)
            {
                head = Some(queued);
                break;
            }
        }
        let Some(head) = head else { return Ok(()) };
        let mut after = Model::new(NOW_S, nodes, running);
        for admit in &admitted {
            let queued = queue.iter().find(|queued| queued.workload_id == admit.workload_id).unwrap();
            after.admit(admit, queued);
        }
        let planned = before_head.shadow(&head.request).expect("the head fits some node when it is empty");
        let again = after.shadow(&head.request).expect("the head still fits some node when it is empty");
        prop_assert!(again.time_s <= planned.time_s, "head {} delayed from {} to {}", head.workload_id, planned.time_s, again.time_s);
    }

    #[test]
    fn resources_reported_twice_or_overcommitted_are_never_handed_out_again(
        scenario in scenario(),
        extra in prop::collection::vec((0..5usize, 0..=16u64, prop::collection::vec(0..6u32, 0..3), 0..3000i64), 0..4),
    ) {
        let mut scenario = scenario;
        for (node, half_cores, gpu_devices, ends_in_s) in extra {
            let name = scenario.nodes.get(node).map(|node| node.name.clone()).unwrap_or_else(|| "gone".into());
            scenario.running.push(Running {
                workload_id: 77_000 + node as i64,
                user_id: 9,
                node: name,
                grant: Grant { cpu_millis: half_cores * 500, memory_mib: 512, gpu_devices },
                ends_at_s: NOW_S - 1000 + ends_in_s,
            });
        }
        let admitted = run(&scenario);
        let mut model = Model::new(NOW_S, &scenario.nodes, &scenario.running);
        let by_id = queued_by_id(&scenario.queue);
        for admit in &admitted {
            let node = model.node_index(&admit.node).unwrap();
            let queued = by_id[&admit.workload_id];
            prop_assert!(model.fits_now(node, &queued.request), "{:?} does not fit", admit);
            for device in &admit.grant.gpu_devices {
                prop_assert!(model.free_devices[node].contains(device), "{:?} takes a busy device", admit);
            }
            model.admit(admit, queued);
        }
    }

    #[test]
    fn queue_view_gives_positions_one_to_n_with_held_last(scenario in scenario()) {
        let Scenario { nodes, running, queue, policy } = &scenario;
        let places = queue_view(NOW_S, nodes, running, queue, policy);
        prop_assert_eq!(places.len(), queue.len());
        let by_id = queued_by_id(queue);
        let order = queue_order(queue, policy);
        let expected: Vec<i64> = order
            .iter()
            .filter(|&&index| !queue[index].held)
            .chain(order.iter().filter(|&&index| queue[index].held))
            .map(|&index| queue[index].workload_id)
            .collect();
        let found: Vec<i64> = places.iter().map(|place| place.workload_id).collect();
        prop_assert_eq!(found, expected);
        let admitted: BTreeSet<i64> = run(&scenario).iter().map(|admit| admit.workload_id).collect();
        let model = Model::new(NOW_S, nodes, running);
        for (offset, place) in places.iter().enumerate() {
            let queued = by_id[&place.workload_id];
            prop_assert_eq!(place.position, offset + 1);
            let never = queued.held || !model.could_ever_hold(&queued.request);
            prop_assert_eq!(place.estimated_start_s.is_none(), never, "{:?}", place);
            // Every running workload here ends after now, so only what starts now is
            // estimated to start now.
            prop_assert_eq!(place.estimated_start_s == Some(NOW_S), admitted.contains(&place.workload_id), "{:?}", place);
            prop_assert!(place.estimated_start_s.is_none_or(|start_s| start_s >= NOW_S));
        }
    }

    /// Equal requests with equal time limits, no per-user limit, and an order that aging
    /// cannot change (one priority, submitted in order): a later one never starts first.
    #[test]
    fn estimates_do_not_decrease_along_the_order_for_equal_requests(
        scenario in scenario(),
        shapes in prop::collection::vec((support::request(), 1..=1500i64), 1..=3),
        picks in prop::collection::vec((0..3usize, prop::bool::weighted(0.1), 0..=5i64), 1..=14),
        aging_interval_s in prop_oneof![Just(0i64), Just(60)],
        backfill in any::<bool>(),
    ) {
        let count = picks.len() as i64;
        let queue: Vec<Queued> = picks
            .iter()
            .enumerate()
            .map(|(index, &(shape, held, user_id))| {
                let (request, time_limit_s) = shapes[shape % shapes.len()];
                Queued {
                    workload_id: 0,
                    user_id,
                    priority: 10,
                    order: index as i64,
                    submitted_at_s: NOW_S - (count - index as i64) * 37,
                    request,
                    time_limit_s,
                    held,
                }
            })
            .collect();
        let queue = with_ids(queue);
        let policy = Policy { max_running_per_user: 0, aging_interval_s, backfill };
        let places = queue_view(NOW_S, &scenario.nodes, &scenario.running, &queue, &policy);
        let by_id = queued_by_id(&queue);
        let mut latest: HashMap<(u64, u64, u32, i64), Option<i64>> = HashMap::new();
        for place in places.iter().filter(|place| !by_id[&place.workload_id].held) {
            let queued = by_id[&place.workload_id];
            let Request { cpu_millis, memory_mib, gpus } = queued.request;
            let key = (cpu_millis, memory_mib, gpus, queued.time_limit_s);
            if let Some(&earlier) = latest.get(&key) {
                let in_order = match (earlier, place.estimated_start_s) {
                    (Some(earlier), Some(later)) => earlier <= later,
                    (None, None) => true,
                    _ => false,
                };
                prop_assert!(in_order, "{:?} before {:?}", earlier, place);
            }
            latest.insert(key, place.estimated_start_s);
        }
    }
}
