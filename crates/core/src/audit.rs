//! Audit entries and their hash chain. Each entry's hash covers its own fields and the
//! previous entry's hash, and entries carry a gap-free sequence number, so altering,
//! inserting or removing any entry breaks the chain at that entry.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash that stands before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether the action was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// An entry before it is written: what happened, by whom, to what, from where.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub actor_id: Option<i64>,
    /// The username as it was at the time (or as typed, for a failed login).
    pub actor_name: String,
    /// A dotted verb such as `user.create` or `auth.login`.
    pub action: String,
    /// What was acted on, as `kind:id` plus a readable name, e.g. `class:3 Anatomy 1`.
    pub target: String,
    /// The source network address.
    pub source: String,
    pub outcome: Outcome,
    /// Extra facts (changed fields, reasons), never secrets.
    pub detail: String,
    /// True when the actor used admin power on something that is not their own.
    pub admin_power: bool,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub outcome: String,
    pub detail: String,
    pub admin_power: bool,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry: SHA-256 over the previous hash and every field, each field
/// length-prefixed so that no two different entries serialise alike.
pub fn entry_hash(prev_hash: &str, seq: i64, at_ms: i64, entry: &EntryFields<'_>) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(&at_ms.to_be_bytes());
    field(
        entry
            .actor_id
            .map(|id| id.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    field(entry.actor_name.as_bytes());
    field(entry.action.as_bytes());
    field(entry.target.as_bytes());
    field(entry.source.as_bytes());
    field(entry.outcome.as_bytes());
    field(entry.detail.as_bytes());
    field(&[entry.admin_power as u8]);
    hex::encode(hasher.finalize())
}

/// The hashed fields of an entry, borrowed from either a new or a stored entry.
pub struct EntryFields<'a> {
    pub actor_id: Option<i64>,
    pub actor_name: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub source: &'a str,
    pub outcome: &'a str,
    pub detail: &'a str,
    pub admin_power: bool,
}

impl NewEntry {
    pub fn fields(&self) -> EntryFields<'_> {
        EntryFields {
            actor_id: self.actor_id,
            actor_name: &self.actor_name,
            action: &self.action,
            target: &self.target,
            source: &self.source,
            outcome: self.outcome.as_str(),
            detail: &self.detail,
            admin_power: self.admin_power,
        }
    }
}

impl Entry {
    pub fn fields(&self) -> EntryFields<'_> {
        EntryFields {
            actor_id: self.actor_id,
            actor_name: &self.actor_name,
            action: &self.action,
            target: &self.target,
            source: &self.source,
            outcome: &self.outcome,
            detail: &self.detail,
            admin_power: self.admin_power,
        }
    }
}

/// Where the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq} was altered: its contents no longer match its hash")]
    Altered { seq: i64 },
    #[error("entry {expected_seq} was removed: the entry after {previous_seq} is {found_seq}")]
    Removed {
        expected_seq: i64,
        previous_seq: i64,
        found_seq: i64,
    },
    #[error("entry {seq} does not follow the entry before it: its recorded previous hash differs")]
    Relinked { seq: i64 },
    #[error(
        "the last entries were removed: the log ends at entry {last_seq} but entry {head_seq} was written"
    )]
    TailRemoved { last_seq: i64, head_seq: i64 },
}

/// Walks the chain incrementally: feed entries in sequence order, then call [`ChainWalker::finish`]
/// with the sequence number of the last entry ever written.
#[derive(Debug)]
pub struct ChainWalker {
    prev_hash: String,
    prev_seq: i64,
}

impl Default for ChainWalker {
    fn default() -> Self {
        Self {
            prev_hash: GENESIS_HASH.to_string(),
            prev_seq: 0,
        }
    }
}

impl ChainWalker {
    pub fn feed(&mut self, entry: &Entry) -> Result<(), ChainBreak> {
        if entry.seq != self.prev_seq + 1 {
            return Err(ChainBreak::Removed {
                expected_seq: self.prev_seq + 1,
                previous_seq: self.prev_seq,
                found_seq: entry.seq,
            });
        }
        if entry_hash(&entry.prev_hash, entry.seq, entry.at_ms, &entry.fields()) != entry.hash {
            return Err(ChainBreak::Altered { seq: entry.seq });
        }
        if entry.prev_hash != self.prev_hash {
            return Err(ChainBreak::Relinked { seq: entry.seq });
        }
        self.prev_hash = entry.hash.clone();
        self.prev_seq = entry.seq;
        Ok(())
    }

    /// Returns the number of entries checked.
    pub fn finish(self, head_seq: i64) -> Result<i64, ChainBreak> {
        if head_seq > self.prev_seq {
            return Err(ChainBreak::TailRemoved {
                last_seq: self.prev_seq,
                head_seq,
            });
        }
        Ok(self.prev_seq)
    }

    pub fn last_hash(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Entry> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let new = NewEntry {
                    actor_id: Some(1),
                    actor_name: "admin".into(),
                    action: "user.create".into(),
                    target: format!("user:{seq}"),
                    source: "127.0.0.1".into(),
                    outcome: Outcome::Success,
                    detail: String::new(),
                    admin_power: true,
                };
                let hash = entry_hash(&prev, seq, seq * 10, &new.fields());
                let entry = Entry {
                    seq,
                    at_ms: seq * 10,
                    actor_id: new.actor_id,
                    actor_name: new.actor_name,
                    action: new.action,
                    target: new.target,
                    source: new.source,
                    outcome: "success".into(),
                    detail: new.detail,
                    admin_power: true,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                entry
            })
            .collect()
    }

    fn walk(entries: &[Entry], head: i64) -> Result<i64, ChainBreak> {
        let mut walker = ChainWalker::default();
        for entry in entries {
            walker.feed(entry)?;
        }
        walker.finish(head)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(walk(&chain(5), 5), Ok(5));
        assert_eq!(walk(&[], 0), Ok(0));
    }

    #[test]
    fn an_altered_field_names_the_entry() {
        let mut entries = chain(5);
        entries[2].target = "user:99".into();
        assert_eq!(walk(&entries, 5), Err(ChainBreak::Altered { seq: 3 }));
    }

    #[test]
    fn a_removed_entry_names_the_gap() {
        let mut entries = chain(5);
        entries.remove(1);
        assert_eq!(
            walk(&entries, 5),
            Err(ChainBreak::Removed {
                expected_seq: 2,
                previous_seq: 1,
                found_seq: 3
            })
        );
    }

    #[test]
    fn a_removed_tail_is_found_from_the_head() {
        let entries = chain(5);
        assert_eq!(
            walk(&entries[..3], 5),
            Err(ChainBreak::TailRemoved {
                last_seq: 3,
                head_seq: 5
            })
        );
    }

    #[test]
    fn a_rehashed_entry_still_breaks_the_link_to_the_next() {
        let mut entries = chain(4);
        entries[1].detail = "edited".into();
        entries[1].hash = entry_hash(
            &entries[1].prev_hash,
            2,
            entries[1].at_ms,
            &entries[1].fields(),
        );
        assert_eq!(walk(&entries, 4), Err(ChainBreak::Relinked { seq: 3 }));
    }
}
