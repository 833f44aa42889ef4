//! Process identity on Linux: what `/proc/<pid>/stat` and the boot id say about a pid, so
//! that a supervisor is recognised by (boot, pid, start time) and never by its pid alone.

use std::path::Path;

use super::records::StateRecord;

const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Field 4.
    pub parent_pid: i32,
    /// Field 22: clock ticks after boot when the process started.
    pub start_ticks: u64,
}

impl ProcessStat {
    /// A zombie has ended; only its exit status is left for its parent to collect.
    pub fn has_ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of a `/proc/<pid>/stat` file. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcessStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3, so field 22 is `fields[19]`.
    let state = fields.first()?.chars().next()?;
    let parent_pid = fields.get(1)?.parse().ok()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(ProcessStat {
        state,
        parent_pid,
        start_ticks,
    })
}

/// `Ok(None)` when there is no such process.
pub(crate) fn process_stat(pid: i32) -> std::io::Result<Option<ProcessStat>> {
    if pid <= 0 {
        return Ok(None);
    }
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    parse_stat(&text).map(Some).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat has an unexpected format"),
        )
    })
}

/// The processes whose parent is `parent_pid`, zombies included.
pub(crate) fn children_of(parent_pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            process_stat(pid)
                .ok()
                .flatten()
                .is_some_and(|stat| stat.parent_pid == parent_pid)
        })
        .collect()
}

pub(crate) fn own_start_ticks() -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/stat")?;
    parse_stat(&text)
        .map(|stat| stat.start_ticks)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "/proc/self/stat has an unexpected format",
            )
        })
}

pub(crate) fn boot_id() -> std::io::Result<String> {
    read_boot_id(Path::new(BOOT_ID_FILE))
}

fn read_boot_id(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// Whether the supervisor recorded in `state` is still alive; if not, why, in words that
/// complete "the workload was lost: …".
pub(crate) fn supervisor_liveness(state: &StateRecord) -> std::io::Result<Result<(), String>> {
    if boot_id()? != state.boot_id {
        return Ok(Err(
            "its supervisor process is gone: the machine restarted after the workload started"
                .to_owned(),
        ));
    }
    Ok(match process_stat(state.shim_pid)? {
        None => Err(
            "its supervisor process is gone (the machine may have restarted, or the \
             supervisor was killed before it recorded an outcome)"
                .to_owned(),
        ),
        Some(stat) if stat.start_ticks != state.shim_start_ticks => Err(
            "its supervisor process is gone (its process id now belongs to another process)"
                .to_owned(),
        ),
        Some(stat) if stat.has_ended() => {
            Err("its supervisor process is gone (it ended without recording an outcome)".to_owned())
        }
        Some(_) => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "4242 (evil) name (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200";
        assert_eq!(
            parse_stat(text),
            Some(ProcessStat {
                state: 'S',
                parent_pid: 1,
                start_ticks: 987654
            })
        );
    }

    #[test]
    fn truncated_stat_text_is_rejected() {
        assert_eq!(parse_stat("12 (sh) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis at all"), None);
    }

    #[test]
    fn this_process_is_recognised_by_its_start_ticks() {
        let own = process_stat(std::process::id() as i32).unwrap().unwrap();
        assert_eq!(own.start_ticks, own_start_ticks().unwrap());
        assert!(!own.has_ended());
        assert!(!boot_id().unwrap().is_empty());
    }

    #[test]
    fn children_are_found_by_their_parent() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let children = children_of(std::process::id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(children.contains(&(child.id() as i32)), "{children:?}");
    }
}
