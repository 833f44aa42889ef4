//! A workload's log file: the supervisor appends to it with a size cap (compacting it to
//! its newest half, marked, through an atomic rename), and readers page through it with
//! offsets that notice a compaction.
//!
//! A log offset carries the log's generation (how many times it was compacted, modulo
//! 2^16) in its top 16 bits and a byte position in the lower 48. The generation of a file
//! is written in its first line, `[voxhub: N older bytes dropped (log generation G)]`, so
//! a reader that opened the file knows which generation it holds even while the
//! supervisor compacts it again. `log_generation` is written *before* each rename, so a
//! genuine marker never names a generation above it; a first line printed by the
//! workload itself that claims more is not believed.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::records::{LOG_FILE, LOG_GENERATION_FILE, write_atomically};
use crate::LogChunk;

/// Smaller caps are raised to this, so the marker and some output always fit.
pub(crate) const MIN_LOG_CAP_BYTES: u64 = 4096;
/// The most one `logs` call returns, whatever it asks for.
pub(crate) const MAX_CHUNK_BYTES: usize = 8 << 20;
const GENERATION_SHIFT: u32 = 48;
const POSITION_MASK: u64 = (1 << GENERATION_SHIFT) - 1;
const GENERATION_MASK: u64 = 0xFFFF;
/// When a compaction cuts a line in two, the partial line is dropped if it is at most this long.
const LINE_SEARCH_BYTES: usize = 4096;
const MARKER_PREFIX: &str = "[voxhub: ";
const MARKER_MIDDLE: &str = " older bytes dropped (log generation ";
const MARKER_SUFFIX: &str = ")]\n";
/// Longer than any marker, so reading this much from the start finds a whole one.
const MARKER_MAX_BYTES: usize = 128;

pub(crate) fn encode_offset(generation: u64, position: u64) -> u64 {
    ((generation & GENERATION_MASK) << GENERATION_SHIFT) | (position & POSITION_MASK)
}

/// `(generation modulo 2^16, byte position)`.
pub(crate) fn decode_offset(offset: u64) -> (u64, u64) {
    (offset >> GENERATION_SHIFT, offset & POSITION_MASK)
}

fn marker(dropped_bytes: u64, generation: u64) -> String {
    format!("{MARKER_PREFIX}{dropped_bytes}{MARKER_MIDDLE}{generation}{MARKER_SUFFIX}")
}

/// `(dropped bytes, generation, marker length)` when `start` begins with a marker.
fn parse_marker(start: &[u8]) -> Option<(u64, u64, usize)> {
    let line_end = start.iter().position(|&byte| byte == b'\n')? + 1;
    let line = std::str::from_utf8(&start[..line_end]).ok()?;
    let inner = line
        .strip_prefix(MARKER_PREFIX)?
        .strip_suffix(MARKER_SUFFIX)?;
    let (dropped, generation) = inner.split_once(MARKER_MIDDLE)?;
    Some((dropped.parse().ok()?, generation.parse().ok()?, line_end))
}

/// Appends output to `output.log`, keeping it at most `cap` bytes.
pub(crate) struct LogWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    cap: u64,
    generation: u64,
    dropped_bytes: u64,
    marker_len: u64,
    last_byte: Option<u8>,
}

impl LogWriter {
    /// Opens (or creates) `dir/output.log` for appending.
    pub fn open(dir: &Path, cap_bytes: u64) -> std::io::Result<Self> {
        let path = dir.join(LOG_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let size = file.metadata()?.len();
        let mut start = vec![0; MARKER_MAX_BYTES.min(size as usize)];
        file.read_exact_at(&mut start, 0)?;
        let (dropped_bytes, generation, marker_len) = parse_marker(&start).unwrap_or((0, 0, 0));
        let mut last_byte = [0];
        let last_byte = match size {
            0 => None,
            _ => {
                file.read_exact_at(&mut last_byte, size - 1)?;
                Some(last_byte[0])
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            file,
            size,
            cap: cap_bytes.max(MIN_LOG_CAP_BYTES),
            generation,
            dropped_bytes,
            marker_len: marker_len as u64,
            last_byte,
        })
    }

    pub fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let written = if self.size + data.len() as u64 > self.cap {
            self.compact_with(data)
        } else {
            self.file
                .write_all(data)
                .map(|()| self.size += data.len() as u64)
        };
        match written {
            Ok(()) => self.last_byte = data.last().copied(),
            // A partial write (a full disk) leaves the file longer than counted.
            Err(_) => {
                self.size = self
                    .file
                    .metadata()
                    .map_or(self.size, |metadata| metadata.len())
            }
        }
        written
    }

    /// A line from voxhub itself (why the workload is being stopped, …), on a line of its own.
    pub fn note(&mut self, text: &str) -> std::io::Result<()> {
        let mut line = String::new();
        if self.last_byte.is_some_and(|byte| byte != b'\n') {
            line.push('\n');
        }
        line.push_str("[voxhub: ");
        line.push_str(text);
        line.push_str("]\n");
        self.append(line.as_bytes())
    }

    /// Rewrites the log as a marker followed by the newest half of the cap of (what the
    /// file holds after its marker, then `data`).
    fn compact_with(&mut self, data: &[u8]) -> std::io::Result<()> {
        let body_in_file = self.size - self.marker_len;
        let total = body_in_file + data.len() as u64;
        let keep = (self.cap / 2).min(total);
        let from_data = keep.min(data.len() as u64) as usize;
        let from_file = keep - from_data as u64;
        // One byte before the kept part tells whether the cut falls at the start of a line.
        let previous_in_file = from_data == data.len() && from_file < body_in_file;
        let read_len = from_file + u64::from(previous_in_file);
        let mut kept = vec![0; read_len as usize];
        self.file.read_exact_at(&mut kept, self.size - read_len)?;
        let previous_byte = if previous_in_file {
            Some(kept.remove(0))
        } else if from_data < data.len() {
            Some(data[data.len() - from_data - 1])
        } else {
            None
        };
        kept.extend_from_slice(&data[data.len() - from_data..]);
        let mut start = 0;
        if previous_byte.is_some_and(|byte| byte != b'\n') {
            let search = &kept[..kept.len().min(LINE_SEARCH_BYTES)];
            if let Some(newline) = search.iter().position(|&byte| byte == b'\n')
                && newline + 1 < kept.len()
            {
                start = newline + 1;
            }
        }
        let kept = &kept[start..];
        let generation = self.generation + 1;
        let dropped_bytes = self.dropped_bytes + (total - kept.len() as u64);
        let marker = marker(dropped_bytes, generation);

        let temporary = self.dir.join(format!("{LOG_FILE}.compacting"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&temporary)?;
        file.write_all(marker.as_bytes())?;
        file.write_all(kept)?;
        // The generation file first: a marker must never name a generation above it.
        write_atomically(
            &self.dir.join(LOG_GENERATION_FILE),
            format!("{generation}\n").as_bytes(),
        )?;
        std::fs::rename(&temporary, self.dir.join(LOG_FILE))?;
        self.file = file;
        self.size = (marker.len() + kept.len()) as u64;
        self.marker_len = marker.len() as u64;
        self.generation = generation;
        self.dropped_bytes = dropped_bytes;
        Ok(())
    }
}

/// Reads up to `max_bytes` of the log at `log_path` from `offset`. `generation_file` is
/// the live workload's `log_generation` (absent for an archived log, which no longer
/// changes). A missing log reads as empty: the supervisor may not have created it yet.
pub(crate) fn read_chunk(
    log_path: &Path,
    generation_file: Option<&Path>,
    offset: u64,
    max_bytes: usize,
) -> std::io::Result<LogChunk> {
    let file = match File::open(log_path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogChunk {
                data: Vec::new(),
                next_offset: offset,
                restarted: false,
            });
        }
        Err(error) => return Err(error),
    };
    let len = file.metadata()?.len();
    let mut start = vec![0; MARKER_MAX_BYTES.min(len as usize)];
    file.read_exact_at(&mut start, 0)?;
    let highest_generation = match generation_file {
        Some(path) => Some(read_generation_file(path)?),
        None => None,
    };
    let generation = match parse_marker(&start) {
        Some((_, generation, _)) if highest_generation.is_none_or(|high| generation <= high) => {
            generation
        }
        _ => 0,
    };
    let (wanted_generation, position) = decode_offset(offset);
    let (restarted, position) = if wanted_generation == generation & GENERATION_MASK {
        (false, position.min(len))
    } else {
        (true, 0)
    };
    let wanted = ((len - position) as usize)
        .min(max_bytes)
        .min(MAX_CHUNK_BYTES);
    let mut data = vec![0; wanted];
    let mut filled = 0;
    while filled < wanted {
        match file.read_at(&mut data[filled..], position + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    data.truncate(filled);
    Ok(LogChunk {
        next_offset: encode_offset(generation, position + filled as u64),
        data,
        restarted,
    })
}

fn read_generation_file(path: &Path) -> std::io::Result<u64> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join(LOG_FILE)).unwrap()
    }

    fn chunk(dir: &Path, offset: u64, max_bytes: usize) -> LogChunk {
        read_chunk(
            &dir.join(LOG_FILE),
            Some(&dir.join(LOG_GENERATION_FILE)),
            offset,
            max_bytes,
        )
        .unwrap()
    }

    #[test]
    fn offsets_carry_generation_and_position() {
        let offset = encode_offset(3, 123_456);
        assert_eq!(decode_offset(offset), (3, 123_456));
        assert_eq!(decode_offset(encode_offset(0x1_0002, 7)), (2, 7));
        assert_eq!(
            encode_offset(0, 42),
            42,
            "generation 0 offsets are plain positions"
        );
    }

    #[test]
    fn markers_are_parsed_only_when_whole() {
        let text = marker(123, 4);
        assert_eq!(parse_marker(text.as_bytes()), Some((123, 4, text.len())));
        assert_eq!(
            parse_marker(b"[voxhub: 12 older bytes dropped (log gen"),
            None
        );
        assert_eq!(parse_marker(b"hello\n"), None);
    }

    #[test]
    fn output_below_the_cap_is_kept_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(dir.path(), 10_000).unwrap();
        log.append(b"one\n").unwrap();
        log.append(b"two\n").unwrap();
        assert_eq!(read_all(dir.path()), b"one\ntwo\n");
        let first = chunk(dir.path(), 0, 4);
        assert_eq!(first.data, b"one\n");
        assert!(!first.restarted);
        let second = chunk(dir.path(), first.next_offset, 100);
        assert_eq!(second.data, b"two\n");
        let end = chunk(dir.path(), second.next_offset, 100);
        assert!(end.data.is_empty());
        assert_eq!(end.next_offset, second.next_offset);
    }

    #[test]
    fn the_log_never_exceeds_its_cap_and_keeps_the_newest_output() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 8192;
        let mut log = LogWriter::open(dir.path(), cap).unwrap();
        let mut written = 0u64;
        for line in 0..5000 {
            let text = format!("line {line}\n");
            written += text.len() as u64;
            log.append(text.as_bytes()).unwrap();
            assert!(log.size <= cap, "size {} after line {line}", log.size);
        }
        let text = String::from_utf8(read_all(dir.path())).unwrap();
        let (first_line, body) = text.split_once('\n').unwrap();
        let (dropped, generation, _) = parse_marker(text.as_bytes()).unwrap();
        assert!(first_line.starts_with("[voxhub: "), "{first_line}");
        assert!(generation > 1);
        assert_eq!(
            dropped + body.len() as u64,
            written,
            "every byte is kept or counted"
        );
        assert!(body.ends_with("line 4999\n"));
        assert!(
            body.starts_with("line "),
            "the cut falls between lines: {body:.20}"
        );
        let generation_file =
            std::fs::read_to_string(dir.path().join(LOG_GENERATION_FILE)).unwrap();
        assert_eq!(generation_file.trim(), generation.to_string());
    }

    #[test]
    fn one_write_larger_than_the_cap_keeps_its_newest_half() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(dir.path(), 4096).unwrap();
        log.append(b"early\n").unwrap();
        let big: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        log.append(&big).unwrap();
        let text = read_all(dir.path());
        let (dropped, generation, marker_len) = parse_marker(&text).unwrap();
        assert_eq!(generation, 1);
        assert_eq!(&text[marker_len..], &big[big.len() - 2048..]);
        assert_eq!(dropped, 6 + 20_000 - 2048);
    }

    #[test]
    fn a_reader_notices_compaction_and_starts_again_from_the_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(dir.path(), 4096).unwrap();
        log.append(b"before\n").unwrap();
        let old = chunk(dir.path(), 0, 1 << 20);
        assert_eq!(old.data, b"before\n");
        for _ in 0..100 {
            log.append(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n")
                .unwrap();
        }
        let after = chunk(dir.path(), old.next_offset, 1 << 20);
        assert!(after.restarted);
        assert!(after.data.starts_with(b"[voxhub: "));
        let (generation, position) = decode_offset(after.next_offset);
        assert_eq!(generation, log.generation);
        assert_eq!(position, log.size);
        let next = chunk(dir.path(), after.next_offset, 1 << 20);
        assert!(!next.restarted && next.data.is_empty());
    }

    #[test]
    fn a_marker_printed_by_the_workload_does_not_fake_a_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(dir.path(), 4096).unwrap();
        log.append(marker(5, 9).as_bytes()).unwrap();
        log.append(b"real output\n").unwrap();
        let all = chunk(dir.path(), 0, 1 << 20);
        assert!(!all.restarted, "no compaction has happened yet");
        assert_eq!(decode_offset(all.next_offset).0, 0);
    }

    #[test]
    fn notes_start_on_a_line_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogWriter::open(dir.path(), 4096).unwrap();
        log.append(b"partial").unwrap();
        log.note("stop requested").unwrap();
        log.note("again").unwrap();
        assert_eq!(
            read_all(dir.path()),
            b"partial\n[voxhub: stop requested]\n[voxhub: again]\n"
        );
    }

    #[test]
    fn a_missing_log_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = chunk(dir.path(), 77, 10);
        assert!(empty.data.is_empty());
        assert_eq!(empty.next_offset, 77);
    }
}
