//! The on-disk layout of one workload under the run directory, the records the supervisor
//! writes there, and the small file helpers both sides use (atomic replace, optional read).
//!
//! ```text
//! <run_dir>/<workload_id>/spec.json       WorkloadSpec, written by `start` before the supervisor runs
//! <run_dir>/<workload_id>/state.json      StateRecord, written by the supervisor once the program runs
//! <run_dir>/<workload_id>/exit.json       ExitRecord, written by the supervisor last (the outcome)
//! <run_dir>/<workload_id>/stop            present once `stop` was asked for
//! <run_dir>/<workload_id>/output.log      stdout and stderr together, capped
//! <run_dir>/<workload_id>/log_generation  how many times output.log was compacted
//! <run_dir>/logs/<workload_id>.log        output.log after `forget`
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Enforcement, Phase};

pub(crate) const SPEC_FILE: &str = "spec.json";
pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const STOP_FILE: &str = "stop";
pub(crate) const LOG_FILE: &str = "output.log";
pub(crate) const LOG_GENERATION_FILE: &str = "log_generation";
/// Where `forget` keeps the logs of forgotten workloads, next to the workload directories.
pub(crate) const ARCHIVED_LOGS_DIR: &str = "logs";

/// Written by the supervisor as soon as the program runs; with it, anyone can check that
/// the supervisor still lives (and is the same process, not a recycled pid).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StateRecord {
    pub shim_pid: i32,
    /// Field 22 of `/proc/<shim_pid>/stat`: clock ticks after boot when it started.
    pub shim_start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` at that time: pids and ticks mean nothing across boots.
    pub boot_id: String,
    /// The program's pid, which is also its process group id.
    pub child_pid: i32,
    pub started_at_s: i64,
    pub enforcement: Enforcement,
}

/// The outcome, written atomically by the supervisor as its last act.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExitRecord {
    pub phase: Phase,
    pub started_at_s: i64,
    pub ended_at_s: i64,
    pub enforcement: Enforcement,
}

pub(crate) fn workload_dir(run_dir: &Path, workload_id: i64) -> PathBuf {
    run_dir.join(workload_id.to_string())
}

pub(crate) fn archived_log(run_dir: &Path, workload_id: i64) -> PathBuf {
    run_dir
        .join(ARCHIVED_LOGS_DIR)
        .join(format!("{workload_id}.log"))
}

pub(crate) fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// Replaces `path` with `bytes` so that readers see the old or the new content, never a
/// part: write a temporary file next to it, flush it to disk, rename it over.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?;
    let mut temporary_name = file_name.to_os_string();
    temporary_name.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

pub(crate) fn write_json_atomically<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

/// `Ok(None)` when the file does not exist; an error when it exists but cannot be read or
/// is not the expected JSON (records are replaced atomically, so that means tampering or
/// a disk problem, and guessing would be wrong).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not valid: {error}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EXIT_FILE);
        assert!(read_json::<ExitRecord>(&path).unwrap().is_none());
        let record = ExitRecord {
            phase: Phase::Exited { code: 3 },
            started_at_s: 10,
            ended_at_s: 12,
            enforcement: Enforcement::default(),
        };
        write_json_atomically(&path, &record).unwrap();
        assert_eq!(read_json::<ExitRecord>(&path).unwrap(), Some(record));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        std::fs::write(&path, b"{\"shim_pid\": ").unwrap();
        let error = read_json::<StateRecord>(&path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("state.json"), "{error}");
    }
}
