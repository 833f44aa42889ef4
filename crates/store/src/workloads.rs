//! The workload queue: jobs and interactive instances, their states, and usage records.
//! Which workload runs is decided by the scheduler; this module only records it.

use crate::{Result, Store, StoreError, WriteTx, now_s};
use serde::Serialize;
use std::collections::BTreeMap;

/// The life of a workload. Queued → Starting → Running → one of the four ends; a queued
/// workload can also end directly (cancelled, or failed to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    Starting,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Starting => "starting",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::TimedOut => "timed_out",
        }
    }

    /// The state as people read it.
    pub fn label(self) -> &'static str {
        match self {
            State::Queued => "Queued",
            State::Starting => "Starting",
            State::Running => "Running",
            State::Succeeded => "Succeeded",
            State::Failed => "Failed",
            State::Cancelled => "Cancelled",
            State::TimedOut => "Timed out",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, State::Queued | State::Starting | State::Running)
    }
}

impl TryFrom<String> for State {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Ok(match value.as_str() {
            "queued" => State::Queued,
            "starting" => State::Starting,
            "running" => State::Running,
            "succeeded" => State::Succeeded,
            "failed" => State::Failed,
            "cancelled" => State::Cancelled,
            "timed_out" => State::TimedOut,
            other => return Err(format!("unknown workload state '{other}'")),
        })
    }
}

/// A workload as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Workload {
    pub id: i64,
    pub owner_id: i64,
    /// The owner's username.
    pub owner: String,
    pub class_id: Option<i64>,
    /// `job` or `instance`.
    pub kind: String,
    /// For instances: `jupyterlab`.
    pub instance_type: Option<String>,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub state: State,
    pub held: bool,
    pub priority: i32,
    #[serde(skip)]
    pub queue_order: i64,
    #[sqlx(json)]
    pub argv: Vec<String>,
    #[sqlx(json)]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the owner's workspace.
    pub workdir: String,
    pub cpu_millis: i64,
    pub memory_mib: i64,
    pub gpus: i32,
    pub time_limit_s: i64,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "voxhub_core::timefmt::serialize_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<i64>,
    pub node: Option<String>,
    #[sqlx(json(nullable))]
    pub gpu_devices: Option<Vec<u32>>,
    pub exit_code: Option<i32>,
    /// Why it ended the way it did, or why it waits, in words.
    pub reason: String,
    /// How the grant is enforced (cgroups) or why it is not.
    pub enforcement: String,
    #[serde(skip)]
    pub port: Option<i32>,
    #[serde(skip)]
    pub secret: Option<String>,
    pub stop_requested: bool,
}

const WORKLOAD_SELECT: &str =
    "SELECT w.*, u.username AS owner FROM workloads w JOIN users u ON u.id = w.owner_id";

pub struct NewWorkload<'a> {
    pub owner_id: i64,
    pub class_id: Option<i64>,
    pub kind: &'a str,
    pub instance_type: Option<&'a str>,
    pub name: &'a str,
    pub priority: i32,
    pub argv: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub workdir: &'a str,
    pub cpu_millis: i64,
    pub memory_mib: i64,
    pub gpus: i32,
    pub time_limit_s: i64,
}

/// Which workloads to list.
#[derive(Debug, Clone, Default)]
pub struct WorkloadFilter {
    /// Only this owner's.
    pub owner_id: Option<i64>,
    /// Only workloads of these classes, or owned by `or_owner_id`.
    pub class_ids: Option<Vec<i64>>,
    pub or_owner_id: Option<i64>,
    /// Only queued, starting and running ones.
    pub active_only: bool,
    pub limit: i64,
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "there is no workload with id {id}; the queue page lists yours"
    ))
}

impl WriteTx {
    pub async fn insert_workload(&mut self, new: &NewWorkload<'_>) -> Result<i64> {
        let argv =
            serde_json::to_string(new.argv).map_err(|e| StoreError::Database(e.to_string()))?;
        let env =
            serde_json::to_string(new.env).map_err(|e| StoreError::Database(e.to_string()))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO workloads (owner_id, class_id, kind, instance_type, name, state, held, priority, queue_order,
                argv, env, workdir, cpu_millis, memory_mib, gpus, time_limit_s, created_at)
             VALUES ($1, $2, $3, $4, $5, 'queued', FALSE, $6, 0, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(new.owner_id)
        .bind(new.class_id)
        .bind(new.kind)
        .bind(new.instance_type)
        .bind(new.name)
        .bind(new.priority)
        .bind(argv)
        .bind(env)
        .bind(new.workdir)
        .bind(new.cpu_millis)
        .bind(new.memory_mib)
        .bind(new.gpus)
        .bind(new.time_limit_s)
        .bind(now_s())
        .fetch_one(self.conn())
        .await?;
        // Spaced order keys leave room to move a workload between two others.
        sqlx::query("UPDATE workloads SET queue_order = $1 WHERE id = $2")
            .bind(id * 1024)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(id)
    }

    /// Queued → Starting, with the grant; opens the usage record.
    pub async fn mark_starting(
        &mut self,
        id: i64,
        node: &str,
        gpu_devices: &[u32],
        port: Option<i32>,
        secret: Option<&str>,
    ) -> Result<bool> {
        let now = now_s();
        let devices =
            serde_json::to_string(gpu_devices).map_err(|e| StoreError::Database(e.to_string()))?;
        let done = sqlx::query(
            "UPDATE workloads SET state = 'starting', started_at = $2, node = $3, gpu_devices = $4, port = $5, secret = $6,
                reason = ''
             WHERE id = $1 AND state = 'queued' AND held = FALSE",
        )
        .bind(id)
        .bind(now)
        .bind(node)
        .bind(&devices)
        .bind(port)
        .bind(secret)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO usage_records (workload_id, user_id, class_id, node, cpu_millis, memory_mib, gpu_devices, started_at)
             SELECT id, owner_id, class_id, $2, cpu_millis, memory_mib, $3, $4 FROM workloads WHERE id = $1",
        )
        .bind(id)
        .bind(node)
        .bind(&devices)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(true)
    }

    /// Starting → Running.
    pub async fn mark_running(&mut self, id: i64, enforcement: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE workloads SET state = 'running', enforcement = $2 WHERE id = $1 AND state = 'starting'")
            .bind(id)
            .bind(enforcement)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_enforcement(&mut self, id: i64, enforcement: &str) -> Result<()> {
        sqlx::query("UPDATE workloads SET enforcement = $2 WHERE id = $1")
            .bind(id)
            .bind(enforcement)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Any active state → an end state; closes the usage record. Returns false when the
    /// workload had already ended (so an end is recorded once).
    pub async fn mark_ended(
        &mut self,
        id: i64,
        state: State,
        exit_code: Option<i32>,
        reason: &str,
        ended_at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE workloads SET state = $2, exit_code = $3, reason = $4, ended_at = $5
             WHERE id = $1 AND state IN ('queued', 'starting', 'running')",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(exit_code)
        .bind(reason)
        .bind(ended_at)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE usage_records SET ended_at = $2, outcome = $3 WHERE workload_id = $1 AND ended_at IS NULL")
            .bind(id)
            .bind(ended_at)
            .bind(state.as_str())
            .execute(self.conn())
            .await?;
        Ok(true)
    }

    pub async fn request_stop(&mut self, id: i64) -> Result<()> {
        sqlx::query("UPDATE workloads SET stop_requested = TRUE WHERE id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn set_held(&mut self, id: i64, held: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE workloads SET held = $2 WHERE id = $1 AND state = 'queued'")
            .bind(id)
            .bind(held)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn set_queue_order(&mut self, id: i64, queue_order: i64) -> Result<()> {
        sqlx::query("UPDATE workloads SET queue_order = $2 WHERE id = $1")
            .bind(id)
            .bind(queue_order)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

/// One row of usage: who used what, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UsageRecord {
    pub workload_id: i64,
    pub user_id: i64,
    pub class_id: Option<i64>,
    pub node: String,
    pub cpu_millis: i64,
    pub memory_mib: i64,
    #[sqlx(json)]
    pub gpu_devices: Vec<u32>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
}

impl Store {
    pub async fn workload(&self, id: i64) -> Result<Workload> {
        sqlx::query_as::<_, Workload>(sqlx::AssertSqlSafe(format!(
            "{WORKLOAD_SELECT} WHERE w.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| not_found(id))
    }

    /// Workloads newest first, narrowed by the filter.
    pub async fn workloads(&self, filter: &WorkloadFilter) -> Result<Vec<Workload>> {
        let classes = filter
            .class_ids
            .as_ref()
            .map(|ids| serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()));
        Ok(sqlx::query_as::<_, Workload>(sqlx::AssertSqlSafe(format!(
            "{WORKLOAD_SELECT}
             WHERE ($1 IS NULL OR w.owner_id = $1)
               AND ($2 IS NULL OR w.class_id IN (SELECT value FROM json_each($2)) OR w.owner_id = $3)
               AND ($4 = FALSE OR w.state IN ('queued', 'starting', 'running'))
             ORDER BY w.id DESC LIMIT $5"
        )))
        .bind(filter.owner_id)
        .bind(classes)
        .bind(filter.or_owner_id)
        .bind(filter.active_only)
        .bind(filter.limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every queued, starting and running workload, in queue order.
    pub async fn active_workloads(&self) -> Result<Vec<Workload>> {
        Ok(sqlx::query_as::<_, Workload>(sqlx::AssertSqlSafe(format!(
            "{WORKLOAD_SELECT} WHERE w.state IN ('queued', 'starting', 'running') ORDER BY w.queue_order, w.id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn usage_of(&self, workload_id: i64) -> Result<Vec<UsageRecord>> {
        Ok(sqlx::query_as::<_, UsageRecord>(
            "SELECT workload_id, user_id, class_id, node, cpu_millis, memory_mib, gpu_devices, started_at, ended_at, outcome
             FROM usage_records WHERE workload_id = $1 ORDER BY id",
        )
        .bind(workload_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Running workloads per user (for the per-user limit shown at submit time).
    pub async fn count_active_of(&self, owner_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM workloads WHERE owner_id = $1 AND state IN ('queued', 'starting', 'running')")
            .bind(owner_id)
            .fetch_one(&self.pool)
            .await?)
    }
}
