//! The append-only, hash-chained audit log: appending inside a write transaction, listing
//! with filters, and verifying the chain.

use crate::{Result, Store, WriteTx, escape_like, now_ms};
use sqlx::Row;
use voxhub_core::audit::{ChainBreak, ChainWalker, Entry, NewEntry, entry_hash};

impl WriteTx {
    /// Appends an entry to the chain; it is written only if the transaction commits.
    pub async fn audit(&mut self, entry: NewEntry) -> Result<i64> {
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.conn())
            .await?;
        let prev_seq: i64 = head.get(0);
        let prev_hash: String = head.get(1);
        let seq = prev_seq + 1;
        let at_ms = now_ms();
        let hash = entry_hash(&prev_hash, seq, at_ms, &entry.fields());
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, actor_id, actor_name, action, target, source, outcome, detail, admin_power, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(seq)
        .bind(at_ms)
        .bind(entry.actor_id)
        .bind(&entry.actor_name)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.source)
        .bind(entry.outcome.as_str())
        .bind(&entry.detail)
        .bind(entry.admin_power)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(self.conn())
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(&hash)
            .execute(self.conn())
            .await?;
        Ok(seq)
    }
}

/// Filters for browsing the log; every field narrows the result.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// Exact username of the actor.
    pub actor: Option<String>,
    /// Action prefix, e.g. `user.` or `auth.login`.
    pub action: Option<String>,
    /// Text contained in the target.
    pub target: Option<String>,
    pub outcome: Option<String>,
    /// Only entries with a smaller sequence number (for paging backwards).
    pub before_seq: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: i64,
}

/// The result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: i64,
    pub head_hash: String,
}

fn entry_from_row(row: &sqlx::sqlite::SqliteRow) -> Entry {
    Entry {
        seq: row.get("seq"),
        at_ms: row.get("at_ms"),
        actor_id: row.get("actor_id"),
        actor_name: row.get("actor_name"),
        action: row.get("action"),
        target: row.get("target"),
        source: row.get("source"),
        outcome: row.get("outcome"),
        detail: row.get("detail"),
        admin_power: row.get("admin_power"),
        prev_hash: row.get("prev_hash"),
        hash: row.get("hash"),
    }
}

impl Store {
    /// Newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<Entry>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log
             WHERE ($1 IS NULL OR actor_name = $1)
               AND ($2 IS NULL OR action LIKE $2 ESCAPE '\\')
               AND ($3 IS NULL OR target LIKE $3 ESCAPE '\\')
               AND ($4 IS NULL OR outcome = $4)
               AND ($5 IS NULL OR seq < $5)
               AND ($6 IS NULL OR at_ms >= $6)
               AND ($7 IS NULL OR at_ms < $7)
             ORDER BY seq DESC LIMIT $8",
        )
        .bind(filter.actor.as_deref())
        .bind(
            filter
                .action
                .as_deref()
                .map(|a| format!("{}%", escape_like(a))),
        )
        .bind(
            filter
                .target
                .as_deref()
                .map(|t| format!("%{}%", escape_like(t))),
        )
        .bind(filter.outcome.as_deref())
        .bind(filter.before_seq)
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .bind(filter.limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(entry_from_row).collect())
    }

    /// Walks every entry in order, in pages so memory stays flat however long the log is.
    /// `Ok(Err(break))` means the database answered and the chain is broken.
    pub async fn verify_audit(&self) -> Result<std::result::Result<Verified, ChainBreak>> {
        let head_seq: i64 = sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let mut walker = ChainWalker::default();
        let mut after = 0i64;
        loop {
            let rows =
                sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT 5000")
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let entry = entry_from_row(row);
                if let Err(broken) = walker.feed(&entry) {
                    return Ok(Err(broken));
                }
                after = entry.seq;
            }
        }
        let head_hash = walker.last_hash().to_string();
        Ok(walker
            .finish(head_seq)
            .map(|entries| Verified { entries, head_hash }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::store;
    use voxhub_core::audit::Outcome;

    fn entry(action: &str, actor: &str) -> NewEntry {
        NewEntry {
            actor_id: None,
            actor_name: actor.into(),
            action: action.into(),
            target: "user:1 anna_x".into(),
            source: "127.0.0.1".into(),
            outcome: Outcome::Success,
            detail: String::new(),
            admin_power: false,
        }
    }

    #[tokio::test]
    async fn entries_chain_and_verify() {
        let (store, _dir) = store().await;
        for i in 0..3 {
            let mut tx = store.begin().await.unwrap();
            tx.audit(entry(&format!("user.create{i}"), "admin"))
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let verified = store.verify_audit().await.unwrap().unwrap();
        assert_eq!(verified.entries, 3);
    }

    #[tokio::test]
    async fn a_rolled_back_transaction_leaves_no_entry() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        tx.audit(entry("user.create", "admin")).await.unwrap();
        drop(tx);
        assert!(
            store
                .list_audit(&AuditFilter {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, 0);
    }

    #[tokio::test]
    async fn the_database_refuses_updates_and_deletes_of_entries() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        tx.audit(entry("user.create", "admin")).await.unwrap();
        tx.commit().await.unwrap();
        let update = sqlx::query("UPDATE audit_log SET actor_name = 'x'")
            .execute(store.pool())
            .await;
        assert!(update.unwrap_err().to_string().contains("append-only"));
        assert!(
            sqlx::query("DELETE FROM audit_log")
                .execute(store.pool())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn filters_narrow_the_list_and_treat_wildcards_literally() {
        let (store, _dir) = store().await;
        let mut tx = store.begin().await.unwrap();
        tx.audit(entry("auth.login", "anna")).await.unwrap();
        tx.audit(entry("user.create", "admin")).await.unwrap();
        tx.audit(entry("user.disable", "admin")).await.unwrap();
        tx.commit().await.unwrap();
        let filter = |actor: Option<&str>, action: Option<&str>| AuditFilter {
            actor: actor.map(str::to_string),
            action: action.map(str::to_string),
            limit: 50,
            ..Default::default()
        };
        assert_eq!(
            store
                .list_audit(&filter(Some("admin"), None))
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .list_audit(&filter(None, Some("user.")))
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store
                .list_audit(&filter(None, Some("%")))
                .await
                .unwrap()
                .len(),
            0
        );
        let newest_first = store.list_audit(&filter(None, None)).await.unwrap();
        assert_eq!(newest_first[0].action, "user.disable");
        let by_target = |text: &str| AuditFilter {
            target: Some(text.into()),
            limit: 50,
            ..Default::default()
        };
        assert_eq!(
            store.list_audit(&by_target("anna_x")).await.unwrap().len(),
            3
        );
        assert_eq!(store.list_audit(&by_target("ann%")).await.unwrap().len(), 0);
    }
}
