//! What the benchmarks read from `/proc` (Linux): resident memory and CPU time of
//! processes and process trees, the machine's busy CPU time, and the wait for a quiet
//! machine before a measurement starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Resident and peak resident memory of a process, in MiB.
pub(crate) fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One process as `/proc/<pid>/stat` tells it.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub ppid: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_mib: f64,
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

pub(crate) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn parse_stat(text: &str, page: u64) -> Option<Proc> {
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(Proc {
        ppid: fields.get(1)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        rss_mib: (fields.get(21)?.parse::<u64>().ok()? * page) as f64 / (1024.0 * 1024.0),
    })
}

/// Every process of the machine, by pid.
pub(crate) type ProcTable = HashMap<u32, Proc>;

/// Every process of the machine.
pub(crate) fn process_table() -> ProcTable {
    let page = page_size();
    let mut table = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(proc) = parse_stat(&text, page)
        {
            table.insert(pid, proc);
        }
    }
    table
}

/// The command line of a process, its arguments joined by spaces.
pub(crate) fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// All descendants of `roots` (the roots not included).
pub(crate) fn descendants(table: &ProcTable, roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, proc) in table {
        children.entry(proc.ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(child);
            stack.push(child);
        }
    }
    out
}

/// CPU seconds a process has used so far (0 once it is gone).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|text| parse_stat(&text, 4096))
        .map(|p| p.cpu_ticks as f64 / ticks_per_second())
        .unwrap_or(0.0)
}

/// Busy and total CPU time of the whole machine, in clock ticks, from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Measures how busy all cores of the machine were between `start` and `busy_percent`.
pub(crate) struct MachineLoad {
    busy: u64,
    total: u64,
}

impl MachineLoad {
    pub fn start() -> Self {
        let (busy, total) = machine_ticks();
        Self { busy, total }
    }

    /// Percent of all cores' time that was busy since `start`.
    pub fn busy_percent(&self) -> f64 {
        let (busy, total) = machine_ticks();
        let total = total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        busy.saturating_sub(self.busy) as f64 * 100.0 / total as f64
    }
}

/// Waits until the machine was at most 15 % busy over 2 s, for at most `max_wait`.
/// Returns the last busy percentage seen, and says so when it gave up.
pub(crate) fn wait_quiet(max_wait: Duration) -> f64 {
    let started = Instant::now();
    loop {
        let load = MachineLoad::start();
        std::thread::sleep(Duration::from_secs(2));
        let busy = load.busy_percent();
        if busy <= 15.0 {
            return busy;
        }
        if started.elapsed() > max_wait {
            eprintln!(
                "warning: the machine is still {busy:.0} % busy with other work; the figures will be lower than on a quiet machine"
            );
            return busy;
        }
        eprintln!("the machine is {busy:.0} % busy with other work; waiting for it to calm down …");
    }
}

/// Sends `signal` to each process that still runs `marker` in its command line.
pub(crate) fn signal_matching(pids: &[u32], marker: &str, signal: i32) -> usize {
    let mut sent = 0;
    for &pid in pids {
        if cmdline(pid).contains(marker) {
            // SAFETY: plain system call; the pid was checked to still be the process meant.
            if unsafe { libc::kill(pid as i32, signal) } == 0 {
                sent += 1;
            }
        }
    }
    sent
}

/// Proportional set size of a process in MiB (shared pages divided among their users),
/// from `/proc/<pid>/smaps_rollup`; 0 when it cannot be read.
pub(crate) fn pss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Samples the largest resident memory of some processes (summed) until stopped.
pub(crate) struct RssSampler {
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

impl RssSampler {
    pub(crate) fn start(pids: Vec<u32>) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let task = tokio::spawn(async move {
            let mut peak: f64 = 0.0;
            loop {
                let now: f64 = pids.iter().map(|&pid| memory_mib(pid).0).sum();
                peak = peak.max(now);
                if !flag.load(Ordering::Relaxed) {
                    return peak;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { running, task }
    }

    pub(crate) async fn stop(self) -> f64 {
        self.running.store(false, Ordering::Relaxed);
        self.task.await.unwrap_or(0.0)
    }
}
