//! The worker pool's own writes, batched: the pool's loop is their only writer and hands
//! over everything that piled up since its last turn — all run ends in one transaction, all
//! running jobs' progress in another.
//!
//! Why: on SQLite every write transaction takes the one write lock. When each of 200 jobs
//! wrote its own end (a read, an update and a task recount) and its own progress every
//! second, the claim that starts the next jobs queued behind them in SQLite's busy handler:
//! a burst of ends delayed the next claim by half a second. One transaction per kind and
//! turn writes the same rows with one lock and one commit.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use entity::{job, task};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};

use super::{Result, job_state::refresh_task};
use crate::worker::{engine::RunResult, imapsync::parse::Progress, status::JobStatus};

/// How one attempt of a job ended, as the pool hands it over.
#[derive(Debug)]
pub struct RunEnd {
    pub job_id: i64,
    pub task_id: i64,
    /// The attempt that ended (the claim counted it).
    pub attempt: i32,
    pub result: RunResult,
    /// Run time of this attempt; the job's total adds it up.
    pub duration_secs: f64,
    /// Queue the job again at this time (automatic retry).
    pub retry_at: Option<DateTime<Utc>>,
}

impl RunEnd {
    /// The status and reason recorded: the outcome's, or `queued` with when it retries.
    pub fn recorded(&self) -> (JobStatus, String) {
        let o = &self.result.outcome;
        match self.retry_at {
            Some(at) => (
                JobStatus::Queued,
                format!(
                    "{} Retrying automatically at {} (attempt {} failed).",
                    o.reason,
                    at.format("%H:%M:%S UTC"),
                    self.attempt
                ),
            ),
            None => (o.status, o.reason.clone()),
        }
    }
}

/// Record `ends` in one transaction: one UPDATE per job (no read back), then one recount per
/// task. Returns the recounted tasks.
pub async fn record_ends(db: &DatabaseConnection, ends: &[RunEnd]) -> Result<Vec<task::Model>> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let txn = crate::db::write_txn(db).await?;
    for end in ends {
        record_end(&txn, end).await?;
    }
    let task_ids: BTreeSet<i64> = ends.iter().map(|e| e.task_id).collect();
    let mut tasks = Vec::with_capacity(task_ids.len());
    for task_id in task_ids {
        tasks.push(refresh_task(&txn, task_id).await?);
    }
    txn.commit().await?;
    Ok(tasks)
}

async fn record_end(conn: &impl ConnectionTrait, end: &RunEnd) -> Result<()> {
    let (o, s) = (&end.result.outcome, &end.result.summary);
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let (status, reason) = end.recorded();
    let now = Utc::now();
    let sync_ok = if s.verdict.sync_looks_good {
        Some(true)
    } else if s.verdict.sync_not_finished {
        Some(false)
    } else {
        None
    };
    let errors_count = s.errors_listed.or(Some(s.errors.len() as u64));
    job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(status.as_str()))
        .col_expr(job::Column::Reason, Expr::value(Some(reason)))
        .col_expr(job::Column::NextAttemptAt, Expr::value(end.retry_at))
        .col_expr(job::Column::ExitCode, Expr::value(o.exit_code))
        .col_expr(
            job::Column::ExitName,
            Expr::value(Some(o.exit_name.clone())),
        )
        .col_expr(
            job::Column::Errors,
            Expr::value(Some(serde_json::to_string(&s.errors).unwrap_or_default())),
        )
        .col_expr(
            job::Column::MessagesTransferred,
            Expr::value(s.stats.messages_transferred.map(to_i64)),
        )
        .col_expr(
            job::Column::MessagesSkipped,
            Expr::value(s.stats.messages_skipped.map(to_i64)),
        )
        .col_expr(
            job::Column::ErrorsCount,
            Expr::value(errors_count.map(to_i64)),
        )
        .col_expr(
            job::Column::BytesTransferred,
            Expr::value(s.stats.bytes_transferred.map(to_i64)),
        )
        .col_expr(
            job::Column::DurationSecs,
            Expr::col(job::Column::DurationSecs)
                .if_null(0.0)
                .add(end.duration_secs),
        )
        .col_expr(job::Column::SyncOk, Expr::value(sync_ok))
        .col_expr(
            job::Column::Unidentified,
            Expr::value(s.verdict.unidentified_host1.map(to_i64)),
        )
        .col_expr(
            job::Column::Summary,
            Expr::value(serde_json::to_string(s).ok()),
        )
        .col_expr(
            job::Column::MessagesDone,
            Expr::value(to_i64(s.progress.messages_done)),
        )
        .col_expr(
            job::Column::BytesDone,
            Expr::value(to_i64(s.progress.bytes_done)),
        )
        .col_expr(job::Column::ClaimedBy, Expr::value(Option::<String>::None))
        .col_expr(
            job::Column::FinishedAt,
            Expr::value(status.is_final().then_some(now)),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(job::Column::Id.eq(end.job_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Persist the live progress of running jobs, and so say they are alive, in one transaction.
pub async fn save_progress(db: &DatabaseConnection, snapshots: &[(i64, Progress)]) -> Result<()> {
    if snapshots.is_empty() {
        return Ok(());
    }
    let txn = crate::db::write_txn(db).await?;
    let now = Utc::now();
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (job_id, p) in snapshots {
        job::Entity::update_many()
            .col_expr(
                job::Column::MessagesDone,
                Expr::value(to_i64(p.messages_done)),
            )
            .col_expr(
                job::Column::MessagesTotal,
                Expr::value(p.messages_total.map(to_i64)),
            )
            .col_expr(job::Column::BytesDone, Expr::value(to_i64(p.bytes_done)))
            .col_expr(
                job::Column::BytesTotal,
                Expr::value(p.bytes_total.map(to_i64)),
            )
            .col_expr(
                job::Column::FolderIndex,
                Expr::value(p.folder_index.map(|v| v as i32)),
            )
            .col_expr(
                job::Column::FolderCount,
                Expr::value(p.folder_count.map(|v| v as i32)),
            )
            .col_expr(job::Column::FolderName, Expr::value(p.folder_name.clone()))
            .col_expr(job::Column::EtaSecs, Expr::value(p.eta_secs.map(to_i64)))
            .col_expr(job::Column::HeartbeatAt, Expr::value(now))
            // A job whose end was written meanwhile keeps its final figures.
            .filter(job::Column::Id.eq(*job_id))
            .filter(job::Column::Status.eq(JobStatus::Running.as_str()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}
