//! The database behind voxhub: connection set-up, migrations and one repository module per
//! resource. SQLite (WAL) is the embedded default; the SQL is written to port to PostgreSQL.
//!
//! Every change goes through a [`WriteTx`]: a transaction that holds the process-wide write
//! lock and carries the audit call, so a change and its audit entry commit together or not
//! at all. Reads use the pool directly.
//!
//! This crate knows nothing of HTTP; its errors are [`StoreError`], which name what was
//! missing or in conflict in words the web layer can show as they are.

pub mod audit;
pub mod classes;
pub mod datasets;
pub mod dicomweb;
pub mod invites;
pub mod tokens;
pub mod users;
pub mod workloads;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqliteConnection, SqlitePool};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use voxhub_core::invite::InviteProblem;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The thing asked for does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// The change clashes with what is stored (a taken username, a member already added).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invite(InviteProblem),
    /// The database failed; the message is for the log, not for users.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration failed: {error}"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Whether an error from the database is a broken UNIQUE constraint.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Escapes `%`, `_` and `\` so user text is matched literally by `LIKE … ESCAPE '\'`.
pub(crate) fn escape_like(raw: &str) -> String {
    raw.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The database: a connection pool and the lock that serialises writes.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Database(format!(
                    "cannot open the database at {}: {e}",
                    path.display()
                ))
            })?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Starts a write transaction. Writes are serialised in this process and take SQLite's
    /// write lock at once, so reading the audit chain's head inside is never stale.
    pub async fn begin(&self) -> Result<WriteTx> {
        let guard = self.write_lock.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _guard: guard })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A write transaction holding the write lock. Dropping it without [`WriteTx::commit`]
/// rolls everything back, audit entries included.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("voxhub.db"))
            .await
            .unwrap();
        (store, dir)
    }

    /// Creates a student account called `username` with a placeholder hash.
    pub async fn student(tx: &mut WriteTx, username: &str) -> crate::users::User {
        let name = voxhub_core::names::Username::parse(username).unwrap();
        tx.create_user(crate::users::NewUser {
            username: &name,
            display_name: "Anna",
            role: voxhub_core::role::Role::Student,
            password_hash: "h",
        })
        .await
        .unwrap()
    }
}
