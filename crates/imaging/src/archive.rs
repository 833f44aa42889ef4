//! Expanding a zip upload safely. Every entry either reaches the caller with a sanitised
//! relative path or is skipped with a reason a person can act on: unsafe paths, links,
//! encrypted or nested archives, operating-system metadata, and anything that decompresses
//! past the limits. Sizes are counted on the bytes the decompressor really produces; the
//! sizes an archive declares are never trusted.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};

/// How much an archive may expand to. The defaults suit one upload of a study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Entries listed in the archive, directories included; more refuses the whole archive.
    pub max_entries: u64,
    /// Bytes decompressed from all entries together, skipped ones included.
    pub max_total_bytes: u64,
    /// Bytes decompressed from one entry.
    pub max_entry_bytes: u64,
    /// An entry that expands more than this many times its compressed size ...
    pub max_compression_ratio: u64,
    /// ... once it has produced more than this many bytes, is treated as a zip bomb.
    pub ratio_checked_above_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entries: 100_000,
            max_total_bytes: 4 << 30,
            max_entry_bytes: 1 << 30,
            max_compression_ratio: 100,
            ratio_checked_above_bytes: 1 << 20,
        }
    }
}

/// Why one entry was not expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The name could lead outside the upload (`..`, an absolute path, a drive letter) or
    /// cannot be a file name (NUL, control characters).
    UnsafePath {
        reason: &'static str,
    },
    SymbolicLink,
    /// A device, pipe or socket entry.
    SpecialFile,
    Encrypted,
    NestedArchive,
    /// `__MACOSX/`, `.DS_Store`, `._*`, `Thumbs.db`, `desktop.ini`: nothing a person uploaded on purpose.
    OperatingSystemMetadata,
    /// Another entry already has the same sanitised path.
    DuplicateName,
    EntryTooLarge {
        limit_bytes: u64,
    },
    /// The entry decompresses to more than its header declares.
    LargerThanDeclared {
        declared_bytes: u64,
    },
    CompressionRatio {
        limit: u64,
    },
    TotalTooLarge {
        limit_bytes: u64,
    },
    UnsupportedCompression {
        method: String,
    },
    Damaged {
        reason: String,
    },
}

impl SkipReason {
    /// Whether the skip is routine (operating-system metadata) and may be shown quietly.
    pub fn is_metadata(&self) -> bool {
        matches!(self, SkipReason::OperatingSystemMetadata)
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::UnsafePath { reason } => write!(f, "unsafe name: {reason}"),
            SkipReason::SymbolicLink => f.write_str("symbolic links are not expanded"),
            SkipReason::SpecialFile => f.write_str("not a regular file (device, pipe or socket)"),
            SkipReason::Encrypted => {
                f.write_str("the entry is encrypted; upload it without a password")
            }
            SkipReason::NestedArchive => {
                f.write_str("nested archives are not expanded; upload it separately")
            }
            SkipReason::OperatingSystemMetadata => f.write_str("operating-system metadata"),
            SkipReason::DuplicateName => {
                f.write_str("another entry has the same name; the first one was kept")
            }
            SkipReason::EntryTooLarge { limit_bytes } => write!(
                f,
                "the entry expands to more than {limit_bytes} bytes; upload it on its own"
            ),
            SkipReason::LargerThanDeclared { declared_bytes } => write!(
                f,
                "the entry expands past the {declared_bytes} bytes its header declares (a zip bomb?)"
            ),
            SkipReason::CompressionRatio { limit } => write!(
                f,
                "the entry expands more than {limit} times its compressed size (a zip bomb?)"
            ),
            SkipReason::TotalTooLarge { limit_bytes } => write!(
                f,
                "the archive expands to more than {limit_bytes} bytes in total; split the upload"
            ),
            SkipReason::UnsupportedCompression { method } => write!(
                f,
                "compressed with {method}, which voxhub does not read; re-create the zip with standard (deflate) compression"
            ),
            SkipReason::Damaged { reason } => write!(f, "the entry is damaged: {reason}"),
        }
    }
}

/// One entry that was not expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    /// The name as stored in the archive (not sanitised; invalid UTF-8 replaced).
    pub name: String,
    pub reason: SkipReason,
}

/// What an expansion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Entries handed to the caller.
    pub files: usize,
    /// Bytes handed to the caller.
    pub bytes: u64,
    pub skipped: Vec<SkippedEntry>,
    /// Whether the central directory listed one raw name twice; the zip reader keeps one of
    /// them, so the others are neither expanded nor listed in `skipped`.
    pub duplicate_names_in_directory: bool,
}

/// Why no entry could be expanded at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    #[error("the upload is not a readable zip archive: {reason}")]
    NotZip { reason: String },
    #[error("the archive lists {entries} entries; at most {limit} are expanded from one upload")]
    TooManyEntries { entries: u64, limit: u64 },
    #[error("the archive could not be read: {0}")]
    Io(#[from] std::io::Error),
}

/// An expansion that ended early: the archive was unreadable, or the caller stopped it.
#[derive(Debug, thiserror::Error)]
pub enum ExpandError<E> {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("expansion stopped: {0}")]
    Stopped(E),
}

/// Bytes read from the decompressor at a time.
const CHUNK_BYTES: usize = 64 * 1024;
/// Longest sanitised path handed to the caller.
const MAX_PATH_BYTES: usize = 4096;
/// Smallest central-directory record: what bounds the entries a directory of a given size holds.
const CENTRAL_RECORD_BYTES: u64 = 46;
/// File type bits of a Unix mode.
const MODE_TYPE_MASK: u32 = 0o170000;
const MODE_REGULAR: u32 = 0o100000;
const MODE_DIRECTORY: u32 = 0o040000;
const MODE_SYMLINK: u32 = 0o120000;

/// Expands every entry of a zip archive, calling `each` with the entry's sanitised relative
/// path (`/`-separated, never empty, never leaving the archive) and its bytes. Entries that
/// are refused are listed with their reason and the others still expand; directories are
/// ignored. An error from `each` stops the expansion and is returned as
/// [`ExpandError::Stopped`].
pub fn expand<R, E, F>(
    mut reader: R,
    limits: &ArchiveLimits,
    mut each: F,
) -> Result<Expansion, ExpandError<E>>
where
    R: Read + Seek,
    F: FnMut(&str, &[u8]) -> Result<(), E>,
{
    // The zip reader builds its whole index from the central directory: bound the entry
    // count from the end record before letting it.
    if let Some(entries) = declared_entries(&mut reader)?
        && entries > limits.max_entries
    {
        return Err(ArchiveError::TooManyEntries {
            entries,
            limit: limits.max_entries,
        }
        .into());
    }
    reader.seek(SeekFrom::Start(0)).map_err(ArchiveError::Io)?;
    let mut archive = zip::ZipArchive::new(reader).map_err(|error| match error {
        zip::result::ZipError::Io(error) => ArchiveError::Io(error),
        other => ArchiveError::NotZip {
            reason: other.to_string(),
        },
    })?;
    if archive.len() as u64 > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            entries: archive.len() as u64,
            limit: limits.max_entries,
        }
        .into());
    }
    let mut expansion = Expansion {
        duplicate_names_in_directory: archive.has_duplicate_names(),
        ..Expansion::default()
    };
    let mut produced_total = 0u64;
    let mut seen = HashSet::new();
    let mut chunk = vec![0u8; CHUNK_BYTES];
    for index in 0..archive.len() {
        let (name, method, checked) = match archive.by_index_data(index) {
            Ok(entry) => (
                String::from_utf8_lossy(entry.name_raw()).into_owned(),
                entry.compression().to_string(),
                check_entry(&entry),
            ),
            Err(error) => (
                format!("entry {}", index + 1),
                String::new(),
                Err(SkipReason::Damaged {
                    reason: error.to_string(),
                }),
            ),
        };
        let path = match checked {
            Ok(Some(path)) => path,
            Ok(None) => continue,
            Err(reason) => {
                expansion.skipped.push(SkippedEntry { name, reason });
                continue;
            }
        };
        if !seen.insert(path.clone()) {
            expansion.skipped.push(SkippedEntry {
                name,
                reason: SkipReason::DuplicateName,
            });
            continue;
        }
        let remaining_total = limits.max_total_bytes.saturating_sub(produced_total);
        let outcome = match archive.by_index(index) {
            Ok(mut file) => {
                let sizes = Sizes {
                    compressed: file.compressed_size(),
                    declared: file.size(),
                };
                match refuse_by_declared_size(sizes, limits) {
                    Some(reason) => Outcome::Refused(0, reason),
                    None => read_bounded(&mut file, &mut chunk, limits, remaining_total, sizes),
                }
            }
            Err(error) => Outcome::Refused(
                0,
                match error {
                    zip::result::ZipError::CompressionMethodNotSupported(_)
                    | zip::result::ZipError::UnsupportedArchive(_) => {
                        SkipReason::UnsupportedCompression { method }
                    }
                    other => SkipReason::Damaged {
                        reason: other.to_string(),
                    },
                },
            ),
        };
        match outcome {
            Outcome::Complete(data) => {
                produced_total += data.len() as u64;
                each(&path, &data).map_err(ExpandError::Stopped)?;
                expansion.files += 1;
                expansion.bytes += data.len() as u64;
            }
            Outcome::Refused(produced, reason) => {
                produced_total += produced;
                expansion.skipped.push(SkippedEntry { name, reason });
            }
        }
    }
    Ok(expansion)
}

/// The result of decompressing one entry.
enum Outcome {
    Complete(Vec<u8>),
    /// Bytes produced before refusing, and why.
    Refused(u64, SkipReason),
}

/// What the central directory says of an entry's size.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    compressed: u64,
    declared: u64,
}

/// Refuses what the declared sizes already show to be over a limit, saving the work of
/// decompressing it; [`read_bounded`] still counts the real bytes of everything else.
fn refuse_by_declared_size(sizes: Sizes, limits: &ArchiveLimits) -> Option<SkipReason> {
    let ratio_exceeded = sizes.declared
        > limits
            .max_compression_ratio
            .saturating_mul(sizes.compressed.max(1));
    if sizes.declared > limits.ratio_checked_above_bytes && ratio_exceeded {
        return Some(SkipReason::CompressionRatio {
            limit: limits.max_compression_ratio,
        });
    }
    if sizes.declared > limits.max_entry_bytes {
        return Some(SkipReason::EntryTooLarge {
            limit_bytes: limits.max_entry_bytes,
        });
    }
    None
}

/// Decompresses one entry chunk by chunk, stopping as soon as it passes a limit.
fn read_bounded(
    file: &mut impl std::io::Read,
    chunk: &mut [u8],
    limits: &ArchiveLimits,
    remaining_total: u64,
    sizes: Sizes,
) -> Outcome {
    let mut data: Vec<u8> = Vec::new();
    let mut produced = 0u64;
    loop {
        let count = match file.read(chunk) {
            Ok(0) => return Outcome::Complete(data),
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                // The zip reader stops an entry that outgrows its declared size with an
                // error that only its text tells apart; any other error is damage.
                let reason = if error.kind() == std::io::ErrorKind::Unsupported {
                    SkipReason::UnsupportedCompression {
                        method: "a method voxhub does not read".into(),
                    }
                } else if error.to_string().contains("declared") {
                    SkipReason::LargerThanDeclared {
                        declared_bytes: sizes.declared,
                    }
                } else {
                    SkipReason::Damaged {
                        reason: error.to_string(),
                    }
                };
                return Outcome::Refused(produced, reason);
            }
        };
        if produced == 0 && is_zip_magic(&chunk[..count]) {
            return Outcome::Refused(count as u64, SkipReason::NestedArchive);
        }
        produced += count as u64;
        if produced > limits.max_entry_bytes {
            return Outcome::Refused(
                produced,
                SkipReason::EntryTooLarge {
                    limit_bytes: limits.max_entry_bytes,
                },
            );
        }
        if produced > remaining_total {
            return Outcome::Refused(
                produced,
                SkipReason::TotalTooLarge {
                    limit_bytes: limits.max_total_bytes,
                },
            );
        }
        if produced > limits.ratio_checked_above_bytes
            && produced
                > limits
                    .max_compression_ratio
                    .saturating_mul(sizes.compressed.max(1))
        {
            return Outcome::Refused(
                produced,
                SkipReason::CompressionRatio {
                    limit: limits.max_compression_ratio,
                },
            );
        }
        data.extend_from_slice(&chunk[..count]);
    }
}

fn is_zip_magic(bytes: &[u8]) -> bool {
    [b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"]
        .iter()
        .any(|magic| bytes.starts_with(*magic))
}

/// Everything decided from the central directory alone: `Ok(None)` for a directory,
/// `Ok(Some(path))` for an entry to decompress.
fn check_entry(entry: &zip::read::ZipFileEntry<'_>) -> Result<Option<String>, SkipReason> {
    let name = entry.name().map_err(|error| SkipReason::Damaged {
        reason: error.to_string(),
    })?;
    let mode_type = entry.unix_mode().map(|mode| mode & MODE_TYPE_MASK);
    if entry.is_dir() || mode_type == Some(MODE_DIRECTORY) {
        return Ok(None);
    }
    let path = sanitise(&name).map_err(|reason| SkipReason::UnsafePath { reason })?;
    if is_operating_system_metadata(&path) {
        return Err(SkipReason::OperatingSystemMetadata);
    }
    match mode_type {
        Some(MODE_SYMLINK) => return Err(SkipReason::SymbolicLink),
        None | Some(0) | Some(MODE_REGULAR) => {}
        Some(_) => return Err(SkipReason::SpecialFile),
    }
    if entry.encrypted() {
        return Err(SkipReason::Encrypted);
    }
    let method = entry.compression();
    if !matches!(
        method,
        zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated
    ) {
        // The number is the only stable way to name what the reader was not built with.
        #[allow(deprecated)]
        let number = method.to_u16();
        return Err(SkipReason::UnsupportedCompression {
            method: format!(
                "{} (zip method {number})",
                zip::CompressionMethod::name_from_u16(number)
            ),
        });
    }
    if is_archive_name(&path) {
        return Err(SkipReason::NestedArchive);
    }
    Ok(Some(path))
}

/// A relative `/`-separated path that cannot leave the folder it is expanded into, or why not.
/// Backslashes are separators (Windows tools write them), so `..\x` is caught as `../x`.
fn sanitise(name: &str) -> Result<String, &'static str> {
    if name.contains('\0') {
        return Err("the name contains a NUL character");
    }
    if name.chars().any(char::is_control) {
        return Err("the name contains control characters");
    }
    let unified = name.replace('\\', "/");
    if unified.starts_with('/') {
        return Err("absolute path");
    }
    let first = unified.as_bytes();
    if first.len() >= 2 && first[0].is_ascii_alphabetic() && first[1] == b':' {
        return Err("the name starts with a drive letter");
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("the path leads out of the archive (..)"),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("the name is empty");
    }
    let path = parts.join("/");
    if path.len() > MAX_PATH_BYTES {
        return Err("the name is longer than 4096 bytes");
    }
    Ok(path)
}

fn is_operating_system_metadata(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    path.split('/').any(|part| part == "__MACOSX")
        || base == ".DS_Store"
        || base.starts_with("._")
        || base.eq_ignore_ascii_case("Thumbs.db")
        || base.eq_ignore_ascii_case("desktop.ini")
}

fn is_archive_name(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [
        ".zip", ".7z", ".rar", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz",
    ]
    .iter()
    .any(|extension| lower.ends_with(extension))
}

/// The entry count the end of central directory record declares (the zip64 one when the
/// classic fields overflow), or what the directory's size implies, whichever is larger;
/// `None` when no end record is found, which the zip reader then reports.
fn declared_entries(reader: &mut (impl Read + Seek)) -> Result<Option<u64>, ArchiveError> {
    const END_RECORD: usize = 22;
    const MAX_COMMENT: usize = 65535;
    let length = reader.seek(SeekFrom::End(0))?;
    let tail_length = length.min((END_RECORD + MAX_COMMENT) as u64);
    reader.seek(SeekFrom::Start(length - tail_length))?;
    let mut tail = vec![0u8; tail_length as usize];
    reader.read_exact(&mut tail)?;
    let Some(position) = (0..tail.len().saturating_sub(END_RECORD - 1))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
    else {
        return Ok(None);
    };
    let record = &tail[position..position + END_RECORD];
    let u16_at =
        |bytes: &[u8], at: usize| u64::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
    let u32_at = |bytes: &[u8], at: usize| {
        u64::from(u32::from_le_bytes([
            bytes[at],
            bytes[at + 1],
            bytes[at + 2],
            bytes[at + 3],
        ]))
    };
    let u64_at = |bytes: &[u8], at: usize| {
        let mut array = [0u8; 8];
        array.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(array)
    };
    let mut entries = u16_at(record, 10);
    let mut directory_bytes = u32_at(record, 12);
    // Zip64: a locator just before the end record points at the zip64 end record.
    let record_offset = length - tail_length + position as u64;
    if (entries == 0xFFFF || directory_bytes == 0xFFFF_FFFF) && record_offset >= 20 {
        let mut locator = [0u8; 20];
        reader.seek(SeekFrom::Start(record_offset - 20))?;
        reader.read_exact(&mut locator)?;
        if locator.starts_with(b"PK\x06\x07") {
            let zip64_offset = u64_at(&locator, 8);
            let mut zip64 = [0u8; 56];
            if zip64_offset
                .checked_add(56)
                .is_some_and(|end| end <= length)
            {
                reader.seek(SeekFrom::Start(zip64_offset))?;
                reader.read_exact(&mut zip64)?;
                if zip64.starts_with(b"PK\x06\x06") {
                    entries = u64_at(&zip64, 32);
                    directory_bytes = u64_at(&zip64, 40);
                }
            }
        }
    }
    Ok(Some(entries.max(directory_bytes / CENTRAL_RECORD_BYTES)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_are_normalised() {
        assert_eq!(
            sanitise("study/series/IM1.dcm").unwrap(),
            "study/series/IM1.dcm"
        );
        assert_eq!(sanitise("./a//b/./c").unwrap(), "a/b/c");
        assert_eq!(sanitise("dir\\file.dcm").unwrap(), "dir/file.dcm");
    }

    #[test]
    fn unsafe_names_are_refused() {
        for name in [
            "../evil",
            "a/../../evil",
            "..\\..\\evil",
            "/etc/passwd",
            "\\\\server\\share",
            "C:/Windows/evil",
            "c:evil",
            "a\0b",
            "a\nb",
            "",
            "./",
        ] {
            assert!(sanitise(name).is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn operating_system_files_are_recognised() {
        assert!(is_operating_system_metadata("__MACOSX/study/._IM1"));
        assert!(is_operating_system_metadata("study/.DS_Store"));
        assert!(is_operating_system_metadata("THUMBS.DB"));
        assert!(!is_operating_system_metadata("study/IM1.dcm"));
    }

    #[test]
    fn nifti_gz_is_not_an_archive_name() {
        assert!(!is_archive_name("brain.nii.gz"));
        assert!(is_archive_name("inner.ZIP"));
        assert!(is_archive_name("more.tar.gz"));
    }
}
