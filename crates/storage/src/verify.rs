//! `VerifyingReader`: hashes an object as it is streamed and fails at the end if the hash is
//! not the object's id.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use crate::{ObjectId, StorageError};

enum State {
    Reading(Sha256),
    Verified,
    Corrupt,
}

/// Passes bytes through while hashing them; at end of stream it checks the hash and reports
/// a clean end only if the content is what the id names.
pub(crate) struct VerifyingReader<R> {
    inner: R,
    id: ObjectId,
    state: State,
}

impl<R> VerifyingReader<R> {
    pub(crate) fn new(inner: R, id: ObjectId) -> Self {
        VerifyingReader {
            inner,
            id,
            state: State::Reading(Sha256::new()),
        }
    }

    fn corrupt(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            StorageError::Corrupt {
                id: self.id.clone(),
            },
        )
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for VerifyingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            State::Verified => return Poll::Ready(Ok(())),
            // Repeating the error matters: a reader that retried after the failure and then
            // saw a clean end would take the corrupt bytes as good.
            State::Corrupt => return Poll::Ready(Err(this.corrupt())),
            State::Reading(_) => {}
        }
        // With no room the inner reader reads nothing, which must not be taken for the end.
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let State::Reading(hasher) = &mut this.state else {
            unreachable!("checked above")
        };
        let fresh = &buf.filled()[before..];
        if !fresh.is_empty() {
            hasher.update(fresh);
            return Poll::Ready(Ok(()));
        }
        let digest: [u8; 32] = std::mem::take(hasher).finalize().into();
        if ObjectId::from_digest(digest) == this.id {
            this.state = State::Verified;
            Poll::Ready(Ok(()))
        } else {
            this.state = State::Corrupt;
            Poll::Ready(Err(this.corrupt()))
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn matching_content_reads_to_a_clean_end() {
        let content = b"slice 1 of 300".to_vec();
        let mut reader = VerifyingReader::new(&content[..], ObjectId::for_content(&content));
        let mut read = Vec::new();
        reader.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, content);
    }

    #[tokio::test]
    async fn changed_content_fails_at_the_end_and_keeps_failing() {
        let id = ObjectId::for_content(b"slice 1 of 300");
        let mut reader = VerifyingReader::new(&b"slice 2 of 300"[..], id.clone());
        let mut read = Vec::new();
        let error = reader.read_to_end(&mut read).await.unwrap_err();
        assert_eq!(StorageError::corruption_in(&error), Some(&id));
        let again = reader.read(&mut [0; 16]).await.unwrap_err();
        assert_eq!(StorageError::corruption_in(&again), Some(&id));
    }
}
