//! Aggregates: the dashboard counts, queue depth and the job totals behind `/metrics`.
//! Each is a fixed handful of aggregate queries, independent of the number of rows.

use chrono::{Duration, Utc};
use sea_orm::{DatabaseConnection, FromQueryResult, Statement, Value};

use super::placeholders;
use crate::{
    service::{Actor, Result, ServiceError},
    worker::status::JobStatus,
};

/// The worker pool as seen from this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolUsage {
    /// Jobs this process runs at most at once.
    pub concurrency: usize,
    /// Jobs this process runs now.
    pub running_here: usize,
}

/// The dashboard: the actor's own work, or everyone's for admins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dashboard {
    pub tasks: u64,
    /// Mailbox pairs (jobs) of those tasks.
    pub mailboxes: u64,
    pub running: u64,
    pub queued: u64,
    pub succeeded_24h: u64,
    pub warning_24h: u64,
    pub failed_24h: u64,
    /// Messages and bytes copied by the last run of every job.
    pub messages_moved: u64,
    pub bytes_moved: u64,
    /// Sum of the jobs' run times.
    pub run_time_secs: u64,
    /// Accounts that are not disabled.
    pub active_users: u64,
    pub pool: PoolUsage,
}

#[derive(FromQueryResult)]
struct TaskSums {
    tasks: i64,
    mailboxes: i64,
    running: i64,
    queued: i64,
    run_time: i64,
}

#[derive(FromQueryResult)]
struct JobSums {
    succeeded: i64,
    warning: i64,
    failed: i64,
    messages: i64,
    bytes: i64,
}

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

fn n(v: i64) -> u64 {
    v.max(0) as u64
}

async fn one<T: FromQueryResult>(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<T> {
    let backend = db.get_database_backend();
    let stmt = Statement::from_sql_and_values(backend, placeholders(backend, sql), values);
    T::find_by_statement(stmt)
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::Internal("an aggregate returned no row".into()))
}

async fn all<T: FromQueryResult>(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<T>> {
    let backend = db.get_database_backend();
    let stmt = Statement::from_sql_and_values(backend, placeholders(backend, sql), values);
    Ok(T::find_by_statement(stmt).all(db).await?)
}

/// `CAST(COALESCE(SUM(expr), 0) AS BIGINT)`: PostgreSQL sums BIGINTs as NUMERIC.
fn sum(expr: &str, alias: &str) -> String {
    format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT) AS {alias}")
}

fn ended(status: JobStatus, alias: &str) -> String {
    sum(
        &format!(
            "CASE WHEN j.finished_at >= ? AND j.status = '{}' THEN 1 ELSE 0 END",
            status.as_str()
        ),
        alias,
    )
}

pub async fn dashboard(
    db: &DatabaseConnection,
    actor: &Actor,
    pool: PoolUsage,
) -> Result<Dashboard> {
    let owner = if actor.is_admin() {
        None
    } else {
        Some(actor.id.ok_or(ServiceError::Forbidden)?)
    };
    let task_sql = format!(
        "SELECT COUNT(*) AS tasks, {}, {}, {}, {} FROM tasks{}",
        sum("jobs_total", "mailboxes"),
        sum("jobs_running", "running"),
        sum("jobs_queued", "queued"),
        sum("run_time_secs", "run_time"),
        if owner.is_some() {
            " WHERE owner_id = ?"
        } else {
            ""
        }
    );
    let tasks: TaskSums = one(db, &task_sql, owner.map(Value::from).into_iter().collect()).await?;
    let since = Utc::now() - Duration::hours(24);
    let job_sql = format!(
        "SELECT {}, {}, {}, {}, {} FROM jobs j{}",
        ended(JobStatus::Succeeded, "succeeded"),
        ended(JobStatus::Warning, "warning"),
        ended(JobStatus::Failed, "failed"),
        sum("j.messages_transferred", "messages"),
        sum("j.bytes_transferred", "bytes"),
        if owner.is_some() {
            " JOIN tasks t ON t.id = j.task_id WHERE t.owner_id = ?"
        } else {
            ""
        }
    );
    let mut values: Vec<Value> = vec![since.into(), since.into(), since.into()];
    values.extend(owner.map(Value::from));
    let jobs: JobSums = one(db, &job_sql, values).await?;
    let users: Count = one(
        db,
        "SELECT COUNT(*) AS n FROM users WHERE disabled = ?",
        vec![false.into()],
    )
    .await?;
    Ok(Dashboard {
        tasks: n(tasks.tasks),
        mailboxes: n(tasks.mailboxes),
        running: n(tasks.running),
        queued: n(tasks.queued),
        succeeded_24h: n(jobs.succeeded),
        warning_24h: n(jobs.warning),
        failed_24h: n(jobs.failed),
        messages_moved: n(jobs.messages),
        bytes_moved: n(jobs.bytes),
        run_time_secs: n(tasks.run_time),
        active_users: n(users.n),
        pool,
    })
}

/// Jobs waiting and running across all replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounts {
    /// Queued jobs, including those waiting for an automatic retry.
    pub queued: u64,
    /// Queued jobs that may start now.
    pub ready: u64,
    pub running: u64,
}

#[derive(FromQueryResult)]
struct QueueSums {
    queued: i64,
    ready: i64,
    running: i64,
}

/// Queue depth. Not filtered by user: callers decide who may see it.
pub async fn queue_counts(db: &DatabaseConnection) -> Result<QueueCounts> {
    let sql = format!(
        "SELECT {}, {}, {} FROM jobs WHERE status IN ('queued', 'running')",
        sum("CASE WHEN status = 'queued' THEN 1 ELSE 0 END", "queued"),
        sum(
            "CASE WHEN status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= ?) THEN 1 ELSE 0 END",
            "ready"
        ),
        sum("CASE WHEN status = 'running' THEN 1 ELSE 0 END", "running"),
    );
    let q: QueueSums = one(db, &sql, vec![Utc::now().into()]).await?;
    Ok(QueueCounts {
        queued: n(q.queued),
        ready: n(q.ready),
        running: n(q.running),
    })
}

/// Everything `/metrics` reports from the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobTotals {
    /// Jobs per status (every status present, zeros included).
    pub by_status: Vec<(JobStatus, u64)>,
    /// Failed jobs per exit name (`AUTH_FAILURE`, `NOT_STARTED`…).
    pub failures_by_exit: Vec<(String, u64)>,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(FromQueryResult)]
struct Group {
    key: Option<String>,
    n: i64,
}

#[derive(FromQueryResult)]
struct Moved {
    messages: i64,
    bytes: i64,
}

/// Totals over all jobs. Not filtered by user: callers decide who may see them.
pub async fn job_totals(db: &DatabaseConnection) -> Result<JobTotals> {
    let groups: Vec<Group> = all(
        db,
        "SELECT status AS key, COUNT(*) AS n FROM jobs GROUP BY status",
        vec![],
    )
    .await?;
    let by_status = JobStatus::ALL
        .into_iter()
        .map(|s| {
            let count = groups
                .iter()
                .filter(|g| g.key.as_deref() == Some(s.as_str()))
                .map(|g| n(g.n))
                .sum();
            (s, count)
        })
        .collect();
    let failures: Vec<Group> = all(
        db,
        "SELECT exit_name AS key, COUNT(*) AS n FROM jobs WHERE status = 'failed' GROUP BY exit_name ORDER BY exit_name",
        vec![],
    )
    .await?;
    let moved: Moved = one(
        db,
        &format!(
            "SELECT {}, {} FROM jobs",
            sum("messages_transferred", "messages"),
            sum("bytes_transferred", "bytes")
        ),
        vec![],
    )
    .await?;
    Ok(JobTotals {
        by_status,
        failures_by_exit: failures
            .into_iter()
            .map(|g| (g.key.unwrap_or_else(|| "UNKNOWN".into()), n(g.n)))
            .collect(),
        messages: n(moved.messages),
        bytes: n(moved.bytes),
    })
}
