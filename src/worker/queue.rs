//! The queue is the database: jobs are claimed with a conditional UPDATE (only one
//! claimer can move a row from `queued` to `running`), so a restart loses nothing and
//! several processes can share one PostgreSQL.
//!
//! Choice of the next job: among the first few queued jobs of every task (window
//! query), prefer the task with the fewest running jobs (fair interleaving: a 500-mailbox
//! batch cannot starve a 2-mailbox one), then the oldest task, then batch order; skip jobs
//! whose source or destination host is at its limit.

use std::collections::HashMap;

use chrono::Utc;
use entity::job;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, Statement,
    sea_query::{Expr, ExprTrait},
};

use super::status::JobStatus;

/// How many queued jobs per task are considered at each claim (a wave can start this
/// many jobs of one task).
const HEAD_PER_TASK: i64 = 256;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_source_host: usize,
    pub per_destination_host: usize,
}

#[derive(Debug, FromQueryResult)]
struct Candidate {
    id: i64,
    task_id: i64,
    host1: String,
    host2: String,
}

#[derive(Debug, Default)]
struct Running {
    per_task: HashMap<i64, usize>,
    per_host1: HashMap<String, usize>,
    per_host2: HashMap<String, usize>,
}

async fn running(db: &DatabaseConnection) -> Result<Running, sea_orm::DbErr> {
    let rows: Vec<(i64, String, String)> = job::Entity::find()
        .select_only()
        .columns([job::Column::TaskId, job::Column::Host1, job::Column::Host2])
        .filter(job::Column::Status.eq(JobStatus::Running.as_str()))
        .into_tuple()
        .all(db)
        .await?;
    let mut r = Running::default();
    for (task, h1, h2) in rows {
        *r.per_task.entry(task).or_default() += 1;
        *r.per_host1.entry(h1).or_default() += 1;
        *r.per_host2.entry(h2).or_default() += 1;
    }
    Ok(r)
}

async fn candidates(db: &DatabaseConnection) -> Result<Vec<Candidate>, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let (p1, p2) = match backend {
        DbBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let sql = format!(
        "SELECT id, task_id, host1, host2 FROM ( \
           SELECT id, task_id, host1, host2, position, \
                  ROW_NUMBER() OVER (PARTITION BY task_id ORDER BY position) AS rn \
           FROM jobs \
           WHERE status = 'queued' AND (next_attempt_at IS NULL OR next_attempt_at <= {p1}) \
         ) c WHERE rn <= {p2} ORDER BY task_id, position"
    );
    let stmt =
        Statement::from_sql_and_values(backend, sql, [Utc::now().into(), HEAD_PER_TASK.into()]);
    Candidate::find_by_statement(stmt).all(db).await
}

/// Where a job's log lives: named by ids only (never by user names).
pub fn job_log_path(log_dir: &std::path::Path, task_id: i64, job_id: i64) -> std::path::PathBuf {
    log_dir
        .join("jobs")
        .join(format!("task-{task_id}"))
        .join(format!("job-{job_id}.log"))
}

/// Claim up to `max` jobs for `worker` in one transaction (a wave of 200 claims costs one
/// commit, not 200), recording each job's log path in the same write: a separate write
/// per job before its start serialised 200 SQLite commits (≈ 300 ms for a wave).
/// Returns the claimed job ids in start order.
pub async fn claim(
    db: &DatabaseConnection,
    worker: &str,
    limits: Limits,
    max: usize,
    log_dir: &std::path::Path,
) -> Result<Vec<i64>, sea_orm::DbErr> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut running = running(db).await?;
    let cands = candidates(db).await?;
    // Pick in rounds: each round takes the next job of the task with the fewest running
    // (then the oldest task), so tasks interleave; batch order holds within a task.
    let mut per_task: std::collections::BTreeMap<i64, std::collections::VecDeque<Candidate>> =
        Default::default();
    for c in cands {
        per_task.entry(c.task_id).or_default().push_back(c);
    }
    let mut picked = Vec::new();
    while picked.len() < max {
        let next = per_task
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(task, _)| (running.per_task.get(task).copied().unwrap_or(0), *task))
            .min();
        let Some((_, task)) = next else { break };
        let queue = per_task.get_mut(&task).expect("task from the map");
        // The first job of this task whose hosts have room; skip the rest of a task that has none.
        let pos = queue.iter().position(|c| {
            running.per_host1.get(&c.host1).copied().unwrap_or(0) < limits.per_source_host
                && running.per_host2.get(&c.host2).copied().unwrap_or(0)
                    < limits.per_destination_host
        });
        match pos {
            Some(i) => {
                let c = queue.remove(i).expect("index from position");
                *running.per_task.entry(c.task_id).or_default() += 1;
                *running.per_host1.entry(c.host1.clone()).or_default() += 1;
                *running.per_host2.entry(c.host2.clone()).or_default() += 1;
                picked.push(c);
            }
            None => queue.clear(),
        }
    }
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let txn = crate::db::write_txn(db).await?;
    let now = Utc::now();
    let mut claimed = Vec::with_capacity(picked.len());
    let mut tasks = Vec::new();
    for c in &picked {
        let res = job::Entity::update_many()
            .col_expr(
                job::Column::Status,
                Expr::value(JobStatus::Running.as_str()),
            )
            .col_expr(job::Column::ClaimedBy, Expr::value(worker))
            .col_expr(job::Column::HeartbeatAt, Expr::value(now))
            .col_expr(job::Column::StartedAt, Expr::value(now))
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                job::Column::LogPath,
                Expr::value(job_log_path(log_dir, c.task_id, c.id).display().to_string()),
            )
            .col_expr(
                job::Column::FinishedAt,
                Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .col_expr(
                job::Column::Attempts,
                Expr::col(job::Column::Attempts).add(1),
            )
            .filter(job::Column::Id.eq(c.id))
            .filter(job::Column::Status.eq(JobStatus::Queued.as_str()))
            .exec(&txn)
            .await?;
        // Another process may have taken it meanwhile: then it is simply not ours.
        if res.rows_affected == 1 {
            claimed.push(c.id);
            tasks.push(c.task_id);
        }
    }
    tasks.sort_unstable();
    tasks.dedup();
    for task_id in tasks {
        crate::service::job_state::refresh_task(&txn, task_id)
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    }
    txn.commit().await?;
    Ok(claimed)
}

/// Id of the newest task (0 when none): a primary-key lookup, cheap enough to poll.
pub async fn newest_task(db: &DatabaseConnection) -> Result<i64, sea_orm::DbErr> {
    let id: Option<Option<i64>> = entity::task::Entity::find()
        .select_only()
        .column_as(entity::task::Column::Id.max(), "id")
        .into_tuple()
        .one(db)
        .await?;
    Ok(id.flatten().unwrap_or(0))
}

/// Keep our running jobs' heartbeats fresh and report which ones were asked to stop.
pub async fn heartbeat(db: &DatabaseConnection, ids: &[i64]) -> Result<Vec<i64>, sea_orm::DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    job::Entity::update_many()
        .col_expr(job::Column::HeartbeatAt, Expr::value(Utc::now()))
        .filter(job::Column::Id.is_in(ids.to_vec()))
        .exec(db)
        .await?;
    job::Entity::find()
        .select_only()
        .column(job::Column::Id)
        .filter(job::Column::Id.is_in(ids.to_vec()))
        .filter(job::Column::CancelRequested.eq(true))
        .into_tuple()
        .all(db)
        .await
}
