//! Whether a request could ever run on the cluster, and the message for people when it
//! cannot.

use crate::{Node, Request};

fn gpus(count: u64) -> String {
    if count == 1 {
        "1 GPU".to_string()
    } else {
        format!("{count} GPUs")
    }
}

/// Cores as people write them: `4`, `1.5`, `0.25`.
fn cores_number(cpu_millis: u64) -> String {
    let whole = cpu_millis / 1000;
    let fraction = cpu_millis % 1000;
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction:03}")
            .trim_end_matches('0')
            .to_string()
    }
}

fn cores(cpu_millis: u64) -> String {
    let number = cores_number(cpu_millis);
    if cpu_millis == 1000 {
        "1 CPU core".to_string()
    } else {
        format!("{number} CPU cores")
    }
}

fn memory(memory_mib: u64) -> String {
    if memory_mib >= 1024 && memory_mib.is_multiple_of(1024) {
        format!("{} GiB", memory_mib / 1024)
    } else {
        format!("{memory_mib} MiB")
    }
}

pub(crate) fn check_fits_somewhere(nodes: &[Node], request: &Request) -> Result<(), String> {
    if request.cpu_millis == 0 || request.memory_mib == 0 {
        return Err("ask for at least some CPU and memory".to_string());
    }
    if nodes.is_empty() {
        return Err(
            "there are no machines to run on yet; ask an administrator to add one".to_string(),
        );
    }
    let wanted_gpus = u64::from(request.gpus);
    let holds = |node: &Node| {
        node.cpu_millis >= request.cpu_millis
            && node.memory_mib >= request.memory_mib
            && node_gpus(node) >= wanted_gpus
    };
    if nodes.iter().any(holds) {
        return Ok(());
    }

    let most_gpus = nodes.iter().map(node_gpus).max().unwrap_or(0);
    if wanted_gpus > most_gpus {
        return Err(if most_gpus == 0 {
            format!("no machine has {}; none has a GPU", gpus(wanted_gpus))
        } else {
            format!(
                "no machine has {}; the largest has {most_gpus}",
                gpus(wanted_gpus)
            )
        });
    }
    let with_gpus: Vec<&Node> = nodes
        .iter()
        .filter(|node| node_gpus(node) >= wanted_gpus)
        .collect();
    // Only name the GPUs when they narrow down the machines.
    let those = if with_gpus.len() < nodes.len() {
        format!("no machine with {} has", gpus(wanted_gpus))
    } else {
        "no machine has".to_string()
    };
    let most_cpu_millis = with_gpus
        .iter()
        .map(|node| node.cpu_millis)
        .max()
        .unwrap_or(0);
    if request.cpu_millis > most_cpu_millis {
        return Err(format!(
            "{those} {}; the largest has {}",
            cores(request.cpu_millis),
            cores_number(most_cpu_millis)
        ));
    }
    let most_memory_mib = with_gpus
        .iter()
        .map(|node| node.memory_mib)
        .max()
        .unwrap_or(0);
    if request.memory_mib > most_memory_mib {
        return Err(format!(
            "{those} {} of memory; the largest has {}",
            memory(request.memory_mib),
            memory(most_memory_mib)
        ));
    }
    Err(format!(
        "{those} {} and {} of memory together; ask for fewer cores or less memory",
        cores(request.cpu_millis),
        memory(request.memory_mib)
    ))
}

/// Repeated device indices count once, as the scheduler counts them.
fn node_gpus(node: &Node) -> u64 {
    let mut devices = node.gpu_devices.clone();
    devices.sort_unstable();
    devices.dedup();
    devices.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cores: u64, memory_gib: u64, gpus: u32) -> Node {
        Node {
            name: name.into(),
            cpu_millis: cores * 1000,
            memory_mib: memory_gib * 1024,
            gpu_devices: (0..gpus).collect(),
        }
    }

    fn request(cpu_millis: u64, memory_mib: u64, gpus: u32) -> Request {
        Request {
            cpu_millis,
            memory_mib,
            gpus,
        }
    }

    #[test]
    fn impossible_requests_are_rejected_with_a_message_that_says_what_is_there() {
        let cluster = [node("small", 16, 64, 4), node("big", 64, 512, 0)];
        let table: &[(Request, Result<(), &str>)] = &[
            (request(4000, 8192, 2), Ok(())),
            (request(64_000, 512 * 1024, 0), Ok(())),
            (
                request(1000, 1024, 8),
                Err("no machine has 8 GPUs; the largest has 4"),
            ),
            (request(1000, 1024, 1), Ok(())),
            (
                request(128_000, 1024, 0),
                Err("no machine has 128 CPU cores; the largest has 64"),
            ),
            (
                request(32_000, 1024, 1),
                Err("no machine with 1 GPU has 32 CPU cores; the largest has 16"),
            ),
            (request(1500, 1024, 4), Ok(())),
            (
                request(16_500, 1024, 4),
                Err("no machine with 4 GPUs has 16.5 CPU cores; the largest has 16"),
            ),
            (
                request(1000, 1024 * 1024, 0),
                Err("no machine has 1024 GiB of memory; the largest has 512 GiB"),
            ),
            (
                request(1000, 100 * 1024, 2),
                Err("no machine with 2 GPUs has 100 GiB of memory; the largest has 64 GiB"),
            ),
            (
                request(0, 1024, 0),
                Err("ask for at least some CPU and memory"),
            ),
            (
                request(1000, 0, 1),
                Err("ask for at least some CPU and memory"),
            ),
        ];
        for (wanted, expected) in table {
            let found = check_fits_somewhere(&cluster, wanted);
            assert_eq!(
                found.as_ref().map_err(String::as_str),
                expected.as_ref().map_err(|message| *message),
                "request {wanted:?}"
            );
        }
    }

    #[test]
    fn resources_spread_over_machines_are_not_enough_together() {
        let cluster = [node("cores", 64, 16, 0), node("memory", 8, 256, 0)];
        let found = check_fits_somewhere(&cluster, &request(32_000, 128 * 1024, 0));
        assert_eq!(
            found.unwrap_err(),
            "no machine has 32 CPU cores and 128 GiB of memory together; ask for fewer cores or less memory"
        );
    }

    #[test]
    fn gpus_are_refused_where_no_machine_has_one() {
        let found = check_fits_somewhere(&[node("cpu", 8, 16, 0)], &request(1000, 1024, 1));
        assert_eq!(found.unwrap_err(), "no machine has 1 GPU; none has a GPU");
    }

    #[test]
    fn an_empty_cluster_fits_nothing() {
        let found = check_fits_somewhere(&[], &request(1000, 1024, 0));
        assert!(found.unwrap_err().starts_with("there are no machines"));
    }

    #[test]
    fn small_amounts_are_written_the_way_people_write_them() {
        let table = [
            (250, "0.25 CPU cores"),
            (1000, "1 CPU core"),
            (1500, "1.5 CPU cores"),
            (2000, "2 CPU cores"),
        ];
        for (cpu_millis, expected) in table {
            assert_eq!(cores(cpu_millis), expected);
        }
        assert_eq!(memory(512), "512 MiB");
        assert_eq!(memory(1536), "1536 MiB");
        assert_eq!(memory(2048), "2 GiB");
    }
}
