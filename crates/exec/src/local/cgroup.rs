//! Resource limits through cgroup v2, when this machine offers them: one cgroup per
//! workload under `/sys/fs/cgroup/voxhub/`, with `memory.max` and `cpu.max` from the grant.
//! Anything less than a writable cgroup v2 hierarchy with the memory and cpu controllers
//! means the limits are not enforced, and the enforcement note says why.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::{Enforcement, Grant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const VOXHUB_GROUP: &str = "voxhub";
/// `CGROUP2_SUPER_MAGIC` from `linux/magic.h`.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// The period of `cpu.max`, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses a smaller `cpu.max` quota.
const MIN_CPU_QUOTA_US: u64 = 1_000;
const NOT_ENFORCED: &str = "not enforced: this machine has no writable cgroup v2 hierarchy with \
                            the memory and cpu controllers";

/// A workload's own cgroup, ready for its program to join.
pub(crate) struct Cgroup {
    dir: PathBuf,
    /// `cgroup.procs`, opened before the program is forked: the child writes `0` to it
    /// (itself) before it executes the program, so nothing it starts escapes the limits.
    procs: OwnedFd,
    memory_mib: u64,
}

impl Cgroup {
    pub fn procs_fd(&self) -> i32 {
        self.procs.as_raw_fd()
    }

    /// How many processes the kernel killed for running out of memory in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
        events
            .lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn memory_mib(&self) -> u64 {
        self.memory_mib
    }

    /// Kills whatever is left in the cgroup (also processes that left the workload's
    /// process group) and removes it. Best effort: a cgroup that cannot be removed now is
    /// left for an administrator, which costs nothing but a directory.
    pub fn kill_and_remove(self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), b"1");
        for _ in 0..100 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
}

/// Creates the workload's cgroup when the machine allows it. Always returns what is
/// enforced, in words.
pub(crate) fn set_up(workload_id: i64, grant: &Grant) -> (Option<Cgroup>, Enforcement) {
    set_up_under(Path::new(CGROUP_ROOT), workload_id, grant)
}

fn not_enforced(why: String) -> (Option<Cgroup>, Enforcement) {
    (
        None,
        Enforcement {
            memory: false,
            cpu: false,
            note: format!("{NOT_ENFORCED} ({why})"),
        },
    )
}

fn set_up_under(root: &Path, workload_id: i64, grant: &Grant) -> (Option<Cgroup>, Enforcement) {
    if !is_cgroup2(root) {
        return not_enforced(format!("{} is not a cgroup v2 file system", root.display()));
    }
    let controllers =
        std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    if !has_memory_and_cpu(&controllers) {
        return not_enforced(format!(
            "{}/cgroup.subtree_control does not enable memory and cpu",
            root.display()
        ));
    }
    match create(root, workload_id, grant) {
        Ok(cgroup) => {
            let memory = match grant.memory_mib {
                0 => "no memory limit (the grant has none)".to_owned(),
                mib => format!("memory.max {mib} MiB"),
            };
            let cpu = match grant.cpu_millis {
                0 => "no cpu limit (the grant has none)".to_owned(),
                millis => format!("cpu.max {millis} millicores"),
            };
            let note = format!("cgroup v2 {}: {memory}, {cpu}", cgroup.dir.display());
            let enforcement = Enforcement {
                memory: grant.memory_mib > 0,
                cpu: grant.cpu_millis > 0,
                note,
            };
            (Some(cgroup), enforcement)
        }
        Err(error) => not_enforced(error),
    }
}

fn is_cgroup2(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statfs the kernel fills.
    let result = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    result == 0 && stat.f_type as i64 == CGROUP2_SUPER_MAGIC
}

fn has_memory_and_cpu(controllers: &str) -> bool {
    let names: Vec<&str> = controllers.split_whitespace().collect();
    names.contains(&"memory") && names.contains(&"cpu")
}

fn create(root: &Path, workload_id: i64, grant: &Grant) -> Result<Cgroup, String> {
    let parent = root.join(VOXHUB_GROUP);
    let failed = |what: &str, path: &Path, error: std::io::Error| {
        format!("cannot {what} {}: {error}", path.display())
    };
    match std::fs::create_dir(&parent) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(failed("create", &parent, error)),
    }
    let parent_control = parent.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&parent_control).unwrap_or_default();
    if !has_memory_and_cpu(&enabled) {
        std::fs::write(&parent_control, b"+memory +cpu")
            .map_err(|error| failed("enable memory and cpu in", &parent_control, error))?;
    }
    let dir = parent.join(workload_id.to_string());
    // A cgroup left by an earlier run of the same id is empty; remove it to start clean.
    let _ = std::fs::remove_dir(&dir);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(failed("create", &dir, error)),
    }
    let result = (|| {
        let memory_max = match grant.memory_mib {
            0 => "max".to_owned(),
            mib => mib.saturating_mul(1024 * 1024).to_string(),
        };
        let path = dir.join("memory.max");
        std::fs::write(&path, memory_max).map_err(|error| failed("write", &path, error))?;
        if grant.memory_mib > 0 {
            // Without this, a workload past its limit would swap instead of ending. Not
            // every kernel has swap accounting, so this one is best effort.
            let _ = std::fs::write(dir.join("memory.swap.max"), b"0");
        }
        let cpu_max = match grant.cpu_millis {
            0 => format!("max {CPU_PERIOD_US}"),
            millis => format!(
                "{} {CPU_PERIOD_US}",
                millis.saturating_mul(100).max(MIN_CPU_QUOTA_US)
            ),
        };
        let path = dir.join("cpu.max");
        std::fs::write(&path, cpu_max).map_err(|error| failed("write", &path, error))?;
        let path = dir.join("cgroup.procs");
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|error| failed("open", &path, error))?;
        Ok(Cgroup {
            dir: dir.clone(),
            procs: procs.into(),
            memory_mib: grant.memory_mib,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir(&dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_is_not_cgroup2_means_not_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let (cgroup, enforcement) = set_up_under(dir.path(), 1, &Grant::default());
        assert!(cgroup.is_none());
        assert!(!enforcement.memory && !enforcement.cpu);
        assert!(
            enforcement.note.starts_with("not enforced:"),
            "{}",
            enforcement.note
        );
        assert!(
            enforcement.note.contains("not a cgroup v2"),
            "{}",
            enforcement.note
        );
    }

    #[test]
    fn controllers_are_found_among_others() {
        assert!(has_memory_and_cpu("cpuset cpu io memory pids\n"));
        assert!(!has_memory_and_cpu("cpuset io memory pids"));
        assert!(!has_memory_and_cpu(""));
    }

    /// The kernel's side cannot be tested on a machine without cgroup v2; this checks
    /// what is written where, on a plain directory shaped like a cgroup.
    #[test]
    fn a_grant_is_written_as_memory_max_and_cpu_max() {
        let root = tempfile::tempdir().unwrap();
        let workload = root.path().join(VOXHUB_GROUP).join("12");
        std::fs::create_dir_all(&workload).unwrap();
        std::fs::write(workload.join("cgroup.procs"), "").unwrap();
        let grant = Grant {
            cpu_millis: 1500,
            memory_mib: 256,
            gpu_devices: Vec::new(),
        };
        let cgroup = create(root.path(), 12, &grant).unwrap();
        let read = |name: &str| std::fs::read_to_string(workload.join(name)).unwrap();
        assert_eq!(read("memory.max"), "268435456");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "150000 100000");
        let parent_control = root
            .path()
            .join(VOXHUB_GROUP)
            .join("cgroup.subtree_control");
        assert_eq!(
            std::fs::read_to_string(parent_control).unwrap(),
            "+memory +cpu"
        );
        assert!(cgroup.procs_fd() >= 0);
        assert_eq!(cgroup.memory_mib(), 256);

        let tiny = Grant {
            cpu_millis: 1,
            memory_mib: 0,
            gpu_devices: Vec::new(),
        };
        create(root.path(), 12, &tiny).unwrap();
        assert_eq!(read("memory.max"), "max");
        assert_eq!(
            read("cpu.max"),
            "1000 100000",
            "the kernel's smallest quota"
        );
    }

    #[test]
    fn this_machine_reports_what_it_enforces() {
        let (cgroup, enforcement) = set_up(-4242, &Grant::default());
        match cgroup {
            Some(cgroup) => {
                assert!(
                    enforcement.note.starts_with("cgroup v2"),
                    "{}",
                    enforcement.note
                );
                cgroup.kill_and_remove();
            }
            None => assert!(
                enforcement.note.starts_with("not enforced"),
                "{}",
                enforcement.note
            ),
        }
    }
}
