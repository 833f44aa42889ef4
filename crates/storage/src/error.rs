//! The one error type of object storage; every message names the object or path it is about.

use std::io;

use crate::ObjectId;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No object with this id is stored.
    #[error("object {id} does not exist")]
    NotFound { id: ObjectId },
    /// The stored bytes no longer hash to the id: the object must not be used.
    #[error("object {id} is corrupt: its content no longer has the SHA-256 its id names")]
    Corrupt { id: ObjectId },
    /// Text that is not 64 lowercase hexadecimal characters was offered as an id.
    #[error("{given:?} is not an object id: an id is 64 lowercase hexadecimal characters")]
    InvalidId { given: String },
    /// The backend itself failed; `action` names what was being done and to which object or path.
    #[error("failed to {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> StorageError {
        let action = action.into();
        move |source| StorageError::Io { action, source }
    }

    /// The object a read from [`ObjectStore::open`](crate::ObjectStore::open) found corrupt,
    /// if that is why the read failed. Readers must return `io::Error`, so corruption arrives
    /// wrapped in one; this unwraps it.
    pub fn corruption_in(error: &io::Error) -> Option<&ObjectId> {
        match error.get_ref()?.downcast_ref::<StorageError>()? {
            StorageError::Corrupt { id } => Some(id),
            _ => None,
        }
    }
}
