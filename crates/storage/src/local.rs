//! `LocalStore`: objects as files in a local directory, each written to a temporary file,
//! synced and renamed into place so that it appears whole or not at all.
//!
//! Layout under the root, every directory mode 0700 and every file 0600:
//!
//! ```text
//! objects/ab/cdef…   the object whose id is abcdef… (two-level fan-out keeps directories small)
//! tmp/put-…          puts in progress, or left by a crash until `sweep_temporaries`
//! ```
//!
//! `tmp/` sits beside `objects/` so that the rename never crosses a filesystem.
//!
//! [`ObjectStore::local_path`] hands out an object's file for hard links (the server's
//! read-only data views for workloads); such a link makes the shared file 0444, which is
//! safe because `objects/` stays 0700 and the view's own top directory guards the link.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::verify::VerifyingReader;
use crate::{ObjectId, ObjectReader, ObjectStore, StorageError};

/// How much of a source file `put_file` holds in memory at once.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// An [`ObjectStore`] in a directory of the local filesystem.
#[derive(Debug, Clone)]
pub struct LocalStore {
    layout: Arc<Layout>,
}

#[derive(Debug)]
struct Layout {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
}

impl LocalStore {
    /// Opens the store at `root`, creating its directories (mode 0700) where missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStore, StorageError> {
        let root = root.into();
        let layout = Layout {
            objects: root.join("objects"),
            tmp: root.join("tmp"),
            root,
        };
        for dir in [&layout.root, &layout.objects, &layout.tmp] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(StorageError::io(format!(
                    "create storage directory {}",
                    dir.display()
                )))?;
        }
        Ok(LocalStore {
            layout: Arc::new(layout),
        })
    }

    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// The file that holds an object, whether or not it exists. Reading it directly skips the
    /// checksum; it is here for tests and diagnostics.
    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        self.layout.object_path(id)
    }

    /// The directory of puts in progress.
    pub fn temporary_dir(&self) -> &Path {
        &self.layout.tmp
    }
}

impl Layout {
    fn object_path(&self, id: &ObjectId) -> PathBuf {
        let (fan_out, rest) = id.as_str().split_at(2);
        self.objects.join(fan_out).join(rest)
    }

    fn new_temporary(&self) -> Result<NamedTempFile, StorageError> {
        // A failed put drops the NamedTempFile, which removes the file; only a crash leaves one.
        tempfile::Builder::new()
            .prefix("put-")
            .tempfile_in(&self.tmp)
            .map_err(StorageError::io(format!(
                "create a temporary file in {}",
                self.tmp.display()
            )))
    }

    /// Makes a fully written temporary file the object `id`, durably.
    fn commit(
        &self,
        temporary: NamedTempFile,
        id: &ObjectId,
        len: u64,
    ) -> Result<(), StorageError> {
        let destination = self.object_path(id);
        if is_present(&destination, len) {
            return Ok(());
        }
        // The data must be on disk before the rename: otherwise a crash could leave the
        // name pointing at a file with missing blocks.
        temporary
            .as_file()
            .sync_all()
            .map_err(StorageError::io(format!("sync the new object {id}")))?;
        let fan_out = destination
            .parent()
            .expect("object paths have a fan-out directory");
        self.create_fan_out(fan_out)?;
        temporary
            .persist(&destination)
            .map_err(|error| StorageError::Io {
                action: format!("move the new object {id} into place"),
                source: error.error,
            })?;
        // Syncing the directory makes the rename itself durable before put returns.
        sync_directory(fan_out)
    }

    fn create_fan_out(&self, fan_out: &Path) -> Result<(), StorageError> {
        match DirBuilder::new().mode(0o700).create(fan_out) {
            Ok(()) => sync_directory(&self.objects),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(StorageError::Io {
                action: format!("create directory {}", fan_out.display()),
                source: error,
            }),
        }
    }

    fn put(&self, bytes: &[u8]) -> Result<ObjectId, StorageError> {
        let id = ObjectId::for_content(bytes);
        let len = bytes.len() as u64;
        // Content-addressing makes a stored object with this id and size the same content,
        // so writing it again would only cost I/O.
        if is_present(&self.object_path(&id), len) {
            return Ok(id);
        }
        let mut temporary = self.new_temporary()?;
        temporary
            .write_all(bytes)
            .map_err(StorageError::io(format!("write the new object {id}")))?;
        self.commit(temporary, &id, len)?;
        Ok(id)
    }

    fn put_file(&self, source: &Path) -> Result<ObjectId, StorageError> {
        let reading = || format!("read {}", source.display());
        let mut file = File::open(source).map_err(StorageError::io(reading()))?;
        let mut temporary = self.new_temporary()?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; COPY_BUFFER_BYTES];
        let mut len = 0u64;
        loop {
            let count = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(StorageError::io(reading())(error)),
            };
            let chunk = &buffer[..count];
            hasher.update(chunk);
            temporary
                .write_all(chunk)
                .map_err(StorageError::io(format!(
                    "copy {} into the store",
                    source.display()
                )))?;
            len += count as u64;
        }
        let id = ObjectId::from_digest(hasher.finalize().into());
        self.commit(temporary, &id, len)?;
        Ok(id)
    }

    fn get(&self, id: &ObjectId) -> Result<Vec<u8>, StorageError> {
        let bytes =
            fs::read(self.object_path(id)).map_err(|error| not_found_or(id, "read", error))?;
        if ObjectId::for_content(&bytes) != *id {
            return Err(StorageError::Corrupt { id: id.clone() });
        }
        Ok(bytes)
    }

    fn list(&self) -> Result<Vec<ObjectId>, StorageError> {
        let listing = |dir: &Path| format!("list {}", dir.display());
        let mut ids = Vec::new();
        for fan_out in
            fs::read_dir(&self.objects).map_err(StorageError::io(listing(&self.objects)))?
        {
            let fan_out = fan_out.map_err(StorageError::io(listing(&self.objects)))?;
            let Some(prefix) = fan_out.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !fan_out.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let dir = fan_out.path();
            for entry in fs::read_dir(&dir).map_err(StorageError::io(listing(&dir)))? {
                let entry = entry.map_err(StorageError::io(listing(&dir)))?;
                // Names that do not make an id were not written by the store; they are not
                // objects, and listing them would hand callers ids that fail on every read.
                let Some(rest) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Ok(id) = ObjectId::parse(&format!("{prefix}{rest}")) {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn sweep_temporaries(&self, older_than: Duration) -> Result<usize, StorageError> {
        let listing = || format!("list {}", self.tmp.display());
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp).map_err(StorageError::io(listing()))? {
            let entry = entry.map_err(StorageError::io(listing()))?;
            let path = entry.path();
            let modified = match entry.metadata().and_then(|meta| meta.modified()) {
                Ok(modified) => modified,
                // The put finished (renamed its file away) while we looked.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => {
                    return Err(StorageError::io(format!("inspect {}", path.display()))(
                        error,
                    ));
                }
            };
            // A modification time in the future gives an error here; such a file is kept.
            let old_enough = now
                .duration_since(modified)
                .is_ok_and(|age| age >= older_than);
            if !old_enough {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(StorageError::io(format!("remove {}", path.display()))(
                        error,
                    ));
                }
            }
        }
        Ok(removed)
    }
}

fn is_present(path: &Path, len: u64) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() == len)
}

fn sync_directory(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(StorageError::io(format!(
            "sync directory {}",
            dir.display()
        )))
}

fn not_found_or(id: &ObjectId, verb: &str, error: io::Error) -> StorageError {
    if error.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound { id: id.clone() }
    } else {
        StorageError::Io {
            action: format!("{verb} object {id}"),
            source: error,
        }
    }
}

/// Runs filesystem work on tokio's blocking pool: std's calls (and fsync above all) would
/// otherwise stall every task on the same runtime thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(StorageError::Io {
            action: "run storage work on the blocking pool".to_owned(),
            source: io::Error::other(error),
        }),
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, bytes: &[u8]) -> Result<ObjectId, StorageError> {
        let layout = Arc::clone(&self.layout);
        // The blocking pool needs owned data; one copy is cheap next to the fsync.
        let bytes = bytes.to_vec();
        blocking(move || layout.put(&bytes)).await
    }

    async fn put_file(&self, path: &Path) -> Result<ObjectId, StorageError> {
        let layout = Arc::clone(&self.layout);
        let path = path.to_owned();
        blocking(move || layout.put_file(&path)).await
    }

    async fn get(&self, id: &ObjectId) -> Result<Vec<u8>, StorageError> {
        let layout = Arc::clone(&self.layout);
        let id = id.clone();
        blocking(move || layout.get(&id)).await
    }

    async fn open(&self, id: &ObjectId) -> Result<ObjectReader, StorageError> {
        let file = tokio::fs::File::open(self.object_path(id))
            .await
            .map_err(|error| not_found_or(id, "open", error))?;
        Ok(Box::new(VerifyingReader::new(file, id.clone())))
    }

    async fn exists(&self, id: &ObjectId) -> Result<bool, StorageError> {
        match tokio::fs::metadata(self.object_path(id)).await {
            Ok(meta) => Ok(meta.is_file()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(not_found_or(id, "inspect", error)),
        }
    }

    async fn size(&self, id: &ObjectId) -> Result<u64, StorageError> {
        tokio::fs::metadata(self.object_path(id))
            .await
            .map(|meta| meta.len())
            .map_err(|error| not_found_or(id, "inspect", error))
    }

    async fn delete(&self, id: &ObjectId) -> Result<(), StorageError> {
        // The directory is not synced: a delete that a crash undoes leaves an unreferenced
        // object, which is harmless, and the fan-out directory stays because a concurrent
        // put may be about to rename into it.
        match tokio::fs::remove_file(self.object_path(id)).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(not_found_or(id, "delete", error)),
        }
    }

    async fn list(&self) -> Result<Vec<ObjectId>, StorageError> {
        let layout = Arc::clone(&self.layout);
        blocking(move || layout.list()).await
    }

    async fn sweep_temporaries(&self, older_than: Duration) -> Result<usize, StorageError> {
        let layout = Arc::clone(&self.layout);
        blocking(move || layout.sweep_temporaries(older_than)).await
    }

    fn local_path(&self, id: &ObjectId) -> Option<PathBuf> {
        Some(self.layout.object_path(id))
    }
}
