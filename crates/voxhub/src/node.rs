//! The local machine as the scheduler sees it: CPU cores and memory from the operating
//! system (or the configuration), GPUs from NVML when an NVIDIA driver is present.

use crate::config::{Config, NodeConfig};
use anyhow::{Context, Result, bail};
use std::path::Path;
use voxhub_core::duration::parse_duration_s;
use voxhub_core::resources::{cpus_from_cores, parse_memory_mib};
use voxhub_scheduler::Node;
use voxhub_web::runtime::{Size, WorkloadSettings};

/// Indices of the GPUs NVML reports, or none when there is no driver.
pub fn detect_gpus() -> (Vec<u32>, String) {
    match nvml_wrapper::Nvml::init() {
        Ok(nvml) => match nvml.device_count() {
            Ok(count) => {
                let names: Vec<String> = (0..count)
                    .map(|i| {
                        nvml.device_by_index(i)
                            .and_then(|d| {
                                Ok(format!(
                                    "{} ({} MiB)",
                                    d.name()?,
                                    d.memory_info()?.total / (1024 * 1024)
                                ))
                            })
                            .unwrap_or_else(|_| "unknown GPU".into())
                    })
                    .collect();
                (
                    (0..count).collect(),
                    format!("NVML found {count} GPU(s): {}", names.join(", ")),
                )
            }
            Err(error) => (
                Vec::new(),
                format!("NVML answered but could not count GPUs: {error}"),
            ),
        },
        Err(error) => (
            Vec::new(),
            format!("no GPUs: NVML is not available ({error})"),
        ),
    }
}

fn total_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// The node from configuration, filling what is left out from the machine itself.
pub fn local_node(config: &NodeConfig) -> Result<(Node, String)> {
    let cpu_millis = if config.cpus > 0.0 {
        cpus_from_cores("node.cpus", config.cpus)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() as u64 * 1000)
            .unwrap_or(1000)
    };
    let memory_mib = if config.memory.trim().is_empty() {
        total_memory_mib().map(|m| m * 9 / 10).unwrap_or(1024)
    } else {
        parse_memory_mib("node.memory", &config.memory)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?
    };
    let (gpu_devices, note) = match &config.gpus {
        Some(devices) => (
            devices.clone(),
            format!("GPUs from the configuration: {devices:?}"),
        ),
        None => detect_gpus(),
    };
    Ok((
        Node {
            name: config.name.clone(),
            cpu_millis,
            memory_mib,
            gpu_devices,
        },
        note,
    ))
}

/// The workload settings from configuration; sizes that can never fit this node are left out.
pub fn workload_settings(config: &Config, node: &Node) -> Result<WorkloadSettings> {
    let w = &config.workloads;
    let max_time_limit_s = parse_duration_s("workloads.max_time_limit", &w.max_time_limit)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let default_time_limit_s =
        parse_duration_s("workloads.default_time_limit", &w.default_time_limit)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    if default_time_limit_s > max_time_limit_s {
        bail!(
            "invalid configuration: workloads.default_time_limit is longer than workloads.max_time_limit"
        );
    }
    let mut sizes = Vec::new();
    for size in &config.instances.sizes {
        let parsed = Size {
            name: size.name.clone(),
            cpu_millis: cpus_from_cores("instances.sizes.cpus", size.cpus)
                .map_err(|e| anyhow::anyhow!("invalid configuration: size {}: {e}", size.name))?,
            memory_mib: parse_memory_mib("instances.sizes.memory", &size.memory)
                .map_err(|e| anyhow::anyhow!("invalid configuration: size {}: {e}", size.name))?,
            gpus: size.gpus,
        };
        let request = voxhub_scheduler::Request {
            cpu_millis: parsed.cpu_millis,
            memory_mib: parsed.memory_mib,
            gpus: parsed.gpus,
        };
        if voxhub_scheduler::check_fits_somewhere(std::slice::from_ref(node), &request).is_ok() {
            sizes.push(parsed);
        } else {
            tracing::info!(
                "instance size '{}' does not fit this machine and is not offered",
                size.name
            );
        }
    }
    if sizes.is_empty() {
        bail!("no instance size fits this machine; add a smaller one under [instances] sizes");
    }
    Ok(WorkloadSettings {
        max_time_limit_s,
        default_time_limit_s,
        grace_s: w.grace_s,
        log_cap_bytes: w.log_cap_mib.max(1) * 1024 * 1024,
        policy: voxhub_scheduler::Policy {
            max_running_per_user: w.max_running_per_user,
            aging_interval_s: w.aging_interval_s,
            backfill: w.backfill,
        },
        priority_admin: w.priority_admin,
        priority_teacher: w.priority_teacher,
        priority_student: w.priority_student,
        jupyter_command: config.instances.jupyter.clone(),
        instance_startup_timeout_s: config.instances.startup_timeout_s.max(5),
        sizes,
        max_upload_bytes: w.max_upload_mib.max(1) * 1024 * 1024,
        run_as_base_uid: run_as_base_uid(w.separate_users, w.first_uid, &config.server.data_dir),
    })
}

/// Separate workload users need root, and a data directory other users can pass through;
/// without either, workloads share the server's user and the log says what to change.
fn run_as_base_uid(
    separate_users: bool,
    first_uid: u32,
    data_dir: &std::path::Path,
) -> Option<u32> {
    if !separate_users {
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        tracing::warn!(
            "workloads run as this server's own user because it does not run as root: one user's workload can read another's workspace; run voxhub as root for a class"
        );
        return None;
    }
    if let Some(closed) = closed_ancestor(data_dir) {
        tracing::warn!(
            "workloads run as this server's own user because {} cannot be entered by other users: one user's workload can read another's workspace; put the data directory somewhere like /srv/voxhub",
            closed.display()
        );
        return None;
    }
    Some(first_uid)
}

/// The first folder on the way to `dir` that other users may not pass through.
fn closed_ancestor(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let absolute = std::path::absolute(dir).ok()?;
    absolute
        .ancestors()
        .skip(1)
        .find(|folder| std::fs::metadata(folder).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(std::path::Path::to_path_buf)
}

/// Checks that the data directory's workspace root can be made.
pub fn workspaces_root(data_dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let root = data_dir.join("workspaces");
    std::fs::create_dir_all(&root)
        .with_context(|| format!("failed to create {}", root.display()))?;
    voxhub_web::runtime::harden_data_dir(data_dir, &[crate::serve::DATABASE_FILE])
        .with_context(|| format!("failed to set the permissions of {}", data_dir.display()))?;
    Ok(root)
}

/// Reads the secret in `path`, or creates it (32 random bytes, hex, mode 0600) when the
/// file does not exist. A file that exists but is too short is an error, never replaced:
/// replacing it would give the same patients new pseudonyms.
pub fn load_or_create_secret(path: &Path) -> Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim();
            if text.len() < 32 {
                anyhow::bail!(
                    "the de-identification secret in {} is shorter than 32 characters; restore it from a backup (a new secret would give known patients new pseudonyms)",
                    path.display()
                );
            }
            Ok(text.as_bytes().to_vec())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("failed to create {}", parent.display()))?;
            }
            let secret = hex::encode(voxhub_core::secret::new_key());
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| {
                    format!(
                        "failed to create the de-identification secret {}",
                        path.display()
                    )
                })?;
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("failed to write {}", path.display()))?;
            tracing::info!(
                "created the de-identification secret {}; back it up with the database",
                path.display()
            );
            Ok(secret.into_bytes())
        }
        Err(error) => Err(error).with_context(|| format!("failed to read {}", path.display())),
    }
}
