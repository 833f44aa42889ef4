//! Object storage: one trait, [`ObjectStore`], for every place that keeps dataset objects,
//! workspace snapshots and results (a local directory now; S3-compatible stores later). The
//! database holds the index only; objects hold the bytes.
//!
//! Objects are content-addressed: an object's [`ObjectId`] is the SHA-256 of its bytes, so the
//! same content is stored once, and every read checks the bytes against the id.
//!
//! | Backend | Type | Needs |
//! |---|---|---|
//! | local directory | [`LocalStore`] | a POSIX filesystem where `rename` is atomic |
//!
//! A new backend must pass the conformance suite in `tests/suite` (`store_suite`); an S3
//! backend (the `object_store` crate, tested against moto) is planned for a later issue.

mod error;
mod id;
mod local;
mod verify;

pub use error::StorageError;
pub use id::ObjectId;
pub use local::LocalStore;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncRead;

/// A stream of one object's bytes, checked against its id as it is read.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// A content-addressed object store.
///
/// CONTRACT (every backend; the rest of voxhub relies on these meanings):
/// - An object's id is the lowercase hex SHA-256 of its content. Ids are never chosen by the
///   caller, so the same content always lands on the same id.
/// - `put` and `put_file` are idempotent: storing content that is already there is a no-op
///   that returns the same id, and concurrent puts of the same content all succeed with one
///   object. When an object with the id already exists and has the right size it is kept
///   as it is; damage is found on read instead (see below), and deleting and putting again
///   repairs it.
/// - Puts are atomic: an object becomes visible whole or not at all, also across a crash or
///   power loss. Once a put returns, the object is durable. A put interrupted by a crash may
///   leave a temporary file, never a partial object; `sweep_temporaries` removes those.
/// - Reads never hand out wrong bytes as good: `get` fails with [`StorageError::Corrupt`]
///   instead of returning them, and the [`ObjectReader`] from `open` fails at the end of the
///   stream (see `open`).
/// - `delete` is idempotent: deleting an absent object succeeds. Deleting an object that a
///   concurrent reader has open is allowed; whether that read completes depends on the
///   backend, and callers (the index) must not delete what they still reference.
/// - Every method may be retried after an error.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `bytes` and returns their id.
    async fn put(&self, bytes: &[u8]) -> Result<ObjectId, StorageError>;

    /// Stores the content of the file at `path`, streaming it: the file is never held in
    /// memory whole, so it may be larger than memory.
    async fn put_file(&self, path: &Path) -> Result<ObjectId, StorageError>;

    /// The whole content of an object, verified against its id.
    async fn get(&self, id: &ObjectId) -> Result<Vec<u8>, StorageError>;

    /// A stream of an object's content, for objects too large to hold in memory.
    ///
    /// Bytes are handed out as they are read, before the whole object has been checked; the
    /// check happens at the end. If the content does not match its id, the read that would
    /// have reported the end fails instead, with an `io::Error` of kind `InvalidData` that
    /// [`StorageError::corruption_in`] turns back into the id. A consumer must therefore read
    /// to the end and treat the bytes as untrusted until that last read succeeded (write them
    /// to a temporary file and commit after, for example); one that stops early gets no check.
    async fn open(&self, id: &ObjectId) -> Result<ObjectReader, StorageError>;

    /// Whether an object is stored (its content is not checked).
    async fn exists(&self, id: &ObjectId) -> Result<bool, StorageError>;

    /// An object's size in bytes (its content is not checked).
    async fn size(&self, id: &ObjectId) -> Result<u64, StorageError>;

    /// Removes an object; succeeds also when there is none.
    async fn delete(&self, id: &ObjectId) -> Result<(), StorageError>;

    /// The ids of all stored objects, sorted.
    async fn list(&self) -> Result<Vec<ObjectId>, StorageError>;

    /// Removes what interrupted puts left behind, if it is older than `older_than`, and
    /// returns how many were removed. The age keeps puts that are still running safe: pass
    /// more than the longest put can take (an hour is generous); `Duration::ZERO` is only
    /// safe while no put runs.
    async fn sweep_temporaries(&self, older_than: Duration) -> Result<usize, StorageError>;

    /// The file on this machine that holds an object, for backends that keep objects as
    /// local files (`None` for the others), so a caller can hard-link it instead of copying
    /// it. Reading the file skips the checksum; the file must never be written, though a
    /// caller may make it read-only for everyone (mode 0444) where the path to it is guarded.
    fn local_path(&self, _id: &ObjectId) -> Option<std::path::PathBuf> {
        None
    }
}
