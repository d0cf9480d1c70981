//! Job and task state transitions shared by the worker pool and user actions (cancel,
//! retry). Each function is one transaction; task counts are recomputed from the jobs in
//! the same transaction, so they can never drift.

use chrono::{DateTime, Utc};
use entity::{job, task};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, Set, sea_query::Expr,
};

use super::{
    Actor, Result, ServiceError, announce,
    audit::{self, Entry},
    batch::Secret,
    credentials,
};
use crate::worker::{events::EventBus, status::JobStatus};

/// Recompute a task's counts and status from its jobs.
///
/// The task row is locked first (PostgreSQL; SQLite writers are serialised anyway): under
/// READ COMMITTED two jobs finishing together would each count without the other's
/// uncommitted change, and the later commit would leave a task "running" forever. Behind
/// the lock, the count statement sees everything the previous holder committed.
pub async fn refresh_task(conn: &impl ConnectionTrait, task_id: i64) -> Result<task::Model> {
    let task = task::Entity::find_by_id(task_id)
        .lock_exclusive()
        .one(conn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let rows: Vec<(String, i64, Option<f64>)> = job::Entity::find()
        .select_only()
        .column(job::Column::Status)
        .column_as(job::Column::Id.count(), "n")
        .column_as(job::Column::DurationSecs.sum(), "secs")
        .filter(job::Column::TaskId.eq(task_id))
        .group_by(job::Column::Status)
        .into_tuple()
        .all(conn)
        .await?;
    let count = |s: JobStatus| {
        rows.iter()
            .filter(|r| r.0 == s.as_str())
            .map(|r| r.1)
            .sum::<i64>() as i32
    };
    let total: i32 = rows.iter().map(|r| r.1).sum::<i64>() as i32;
    let run_time: f64 = rows.iter().filter_map(|r| r.2).sum();
    let (queued, running) = (
        count(JobStatus::Queued) + count(JobStatus::Interrupted),
        count(JobStatus::Running),
    );
    let (failed, cancelled, warning) = (
        count(JobStatus::Failed),
        count(JobStatus::Cancelled),
        count(JobStatus::Warning),
    );
    let status = if running > 0 {
        JobStatus::Running
    } else if queued > 0 {
        if task.started_at.is_some() {
            JobStatus::Running
        } else {
            JobStatus::Queued
        }
    } else if failed > 0 {
        JobStatus::Failed
    } else if cancelled > 0 {
        JobStatus::Cancelled
    } else if warning > 0 {
        JobStatus::Warning
    } else {
        JobStatus::Succeeded
    };
    let now = Utc::now();
    let finished = queued == 0 && running == 0;
    let mut active: task::ActiveModel = task.clone().into();
    active.jobs_total = Set(total);
    active.jobs_queued = Set(queued);
    active.jobs_running = Set(running);
    active.jobs_succeeded = Set(count(JobStatus::Succeeded));
    active.jobs_warning = Set(warning);
    active.jobs_failed = Set(failed);
    active.jobs_cancelled = Set(cancelled);
    active.status = Set(status.as_str().into());
    active.run_time_secs = Set(run_time.round() as i64);
    if running > 0 && task.started_at.is_none() {
        active.started_at = Set(Some(now));
    }
    active.finished_at = Set(if finished {
        task.finished_at.or(Some(now))
    } else {
        None
    });
    Ok(active.update(conn).await?)
}

fn may_act(actor: &Actor, task: &task::Model) -> Result<()> {
    if actor.is_admin() || actor.id == Some(task.owner_id) {
        Ok(())
    } else {
        Err(ServiceError::NotFound)
    }
}

/// A job and its task, if the actor may act on them (else `NotFound`).
async fn job_for_action(
    conn: &impl ConnectionTrait,
    actor: &Actor,
    job_id: i64,
) -> Result<(task::Model, job::Model)> {
    let job = job::Entity::find_by_id(job_id)
        .one(conn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let task = task::Entity::find_by_id(job.task_id)
        .one(conn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    may_act(actor, &task)?;
    Ok((task, job))
}

const CANCELLED_BEFORE_START: &str = "Cancelled before it started.";

/// Cancel a whole task: queued jobs never start, running ones are stopped by their worker.
pub async fn cancel_task(
    db: &DatabaseConnection,
    events: &EventBus,
    actor: &Actor,
    task_id: i64,
) -> Result<task::Model> {
    let txn = crate::db::write_txn(db).await?;
    let task = task::Entity::find_by_id(task_id)
        .one(&txn)
        .await?
        .ok_or(ServiceError::NotFound)?;
    may_act(actor, &task)?;
    let mut a: task::ActiveModel = task.clone().into();
    a.cancel_requested = Set(true);
    a.update(&txn).await?;
    let changed = cancel_jobs(&txn, job::Column::TaskId.eq(task_id)).await?;
    let task = refresh_task(&txn, task_id).await?;
    audit::record(&txn, actor, Entry::ok("task.cancel").on("task", task_id)).await?;
    txn.commit().await?;
    announce::changed(db, events, task_id, &changed).await;
    Ok(task)
}

pub async fn cancel_job(
    db: &DatabaseConnection,
    events: &EventBus,
    actor: &Actor,
    job_id: i64,
) -> Result<job::Model> {
    let txn = crate::db::write_txn(db).await?;
    let (task, _) = job_for_action(&txn, actor, job_id).await?;
    cancel_jobs(&txn, job::Column::Id.eq(job_id)).await?;
    refresh_task(&txn, task.id).await?;
    audit::record(&txn, actor, Entry::ok("job.cancel").on("job", job_id)).await?;
    txn.commit().await?;
    announce::changed(db, events, task.id, &[job_id]).await;
    job::Entity::find_by_id(job_id)
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// Cancels the matching queued, interrupted and running jobs; returns their ids.
async fn cancel_jobs(
    conn: &impl ConnectionTrait,
    which: sea_orm::sea_query::SimpleExpr,
) -> Result<Vec<i64>> {
    let now = Utc::now();
    let live = [
        JobStatus::Queued.as_str(),
        JobStatus::Interrupted.as_str(),
        JobStatus::Running.as_str(),
    ];
    let changed: Vec<i64> = job::Entity::find()
        .select_only()
        .column(job::Column::Id)
        .filter(which.clone())
        .filter(job::Column::Status.is_in(live))
        .into_tuple()
        .all(conn)
        .await?;
    job::Entity::update_many()
        .col_expr(
            job::Column::Status,
            Expr::value(JobStatus::Cancelled.as_str()),
        )
        .col_expr(job::Column::Reason, Expr::value(CANCELLED_BEFORE_START))
        .col_expr(job::Column::FinishedAt, Expr::value(now))
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(which.clone())
        .filter(
            job::Column::Status
                .is_in([JobStatus::Queued.as_str(), JobStatus::Interrupted.as_str()]),
        )
        .exec(conn)
        .await?;
    job::Entity::update_many()
        .col_expr(job::Column::CancelRequested, Expr::value(true))
        .filter(which)
        .filter(job::Column::Status.eq(JobStatus::Running.as_str()))
        .exec(conn)
        .await?;
    Ok(changed)
}

/// New credentials for a retry after the stored ones were wiped.
pub struct RetryCredentials {
    pub password1: Secret,
    pub password2: Secret,
}

/// Queue a finished job again. It resumes: imapsync skips what is already there.
pub async fn retry_job(
    db: &DatabaseConnection,
    key: &[u8; 32],
    events: &EventBus,
    actor: &Actor,
    job_id: i64,
    creds: Option<RetryCredentials>,
) -> Result<job::Model> {
    let txn = crate::db::write_txn(db).await?;
    let (task_id, job) = retry_in(&txn, key, actor, job_id, creds).await?;
    refresh_task(&txn, task_id).await?;
    txn.commit().await?;
    announce::changed(db, events, task_id, &[job_id]).await;
    Ok(job)
}

/// The retry of one job inside the caller's transaction (which then refreshes the
/// task): new passwords, when given, are sealed for this job's row before it is queued.
pub(super) async fn retry_in(
    txn: &impl ConnectionTrait,
    key: &[u8; 32],
    actor: &Actor,
    job_id: i64,
    creds: Option<RetryCredentials>,
) -> Result<(i64, job::Model)> {
    let (task, job) = job_for_action(txn, actor, job_id).await?;
    let status: JobStatus = job
        .status
        .parse()
        .map_err(|_| ServiceError::Internal("bad job status".into()))?;
    if !status.is_final() || status == JobStatus::Interrupted {
        return Err(ServiceError::Conflict(format!(
            "job {job_id} is {status}; only finished jobs can be retried"
        )));
    }
    let mut a: job::ActiveModel = job.clone().into();
    match creds {
        Some(c) => {
            a.password1 = Set(Some(credentials::encrypt(
                key,
                job_id,
                "password1",
                &c.password1,
            )));
            a.password2 = Set(Some(credentials::encrypt(
                key,
                job_id,
                "password2",
                &c.password2,
            )));
        }
        None if job.password1.is_none() || job.password2.is_none() => {
            return Err(ServiceError::invalid(
                "password1",
                "the stored passwords were wiped after the retention period; give password1 and password2 to retry",
            ));
        }
        None => {}
    }
    a.status = Set(JobStatus::Queued.as_str().into());
    a.cancel_requested = Set(false);
    a.next_attempt_at = Set(None);
    a.attempts = Set(0);
    a.finished_at = Set(None);
    // A report about the mailboxes before this run would mislead next to its result.
    a.verify_status = Set(None);
    a.verify_report = Set(None);
    a.verified_at = Set(None);
    a.updated_at = Set(Utc::now());
    let job = a.update(txn).await?;
    if task.cancel_requested {
        let mut t: task::ActiveModel = task.clone().into();
        t.cancel_requested = Set(false);
        t.update(txn).await?;
    }
    audit::record(txn, actor, Entry::ok("job.retry").on("job", job_id)).await?;
    Ok((task.id, job))
}

/// Retry every failed job of a task, in one transaction; returns how many were queued.
pub async fn retry_failed(
    db: &DatabaseConnection,
    key: &[u8; 32],
    events: &EventBus,
    actor: &Actor,
    task_id: i64,
) -> Result<usize> {
    let task = super::tasks::get(db, actor, task_id).await?;
    let txn = crate::db::write_txn(db).await?;
    let failed: Vec<i64> = job::Entity::find()
        .select_only()
        .column(job::Column::Id)
        .filter(job::Column::TaskId.eq(task.id))
        .filter(job::Column::Status.eq(JobStatus::Failed.as_str()))
        .into_tuple()
        .all(&txn)
        .await?;
    for &id in &failed {
        retry_in(&txn, key, actor, id, None).await?;
    }
    if !failed.is_empty() {
        refresh_task(&txn, task.id).await?;
    }
    txn.commit().await?;
    announce::changed(db, events, task.id, &failed).await;
    Ok(failed.len())
}

/// Jobs whose worker stopped saying it is alive become `interrupted`, and every
/// interrupted job is queued again (a re-run resumes). Returns how many were requeued.
pub async fn recover_interrupted(
    db: &DatabaseConnection,
    stale_before: DateTime<Utc>,
) -> Result<u64> {
    let txn = crate::db::write_txn(db).await?;
    let now = Utc::now();
    let stale = job::Entity::find()
        .filter(job::Column::Status.eq(JobStatus::Running.as_str()))
        .filter(
            sea_orm::Condition::any()
                .add(job::Column::HeartbeatAt.lt(stale_before))
                .add(job::Column::HeartbeatAt.is_null()),
        )
        .all(&txn)
        .await?;
    let mut tasks: Vec<i64> = stale.iter().map(|j| j.task_id).collect();
    let interrupted = job::Entity::find()
        .filter(job::Column::Status.eq(JobStatus::Interrupted.as_str()))
        .all(&txn)
        .await?;
    tasks.extend(interrupted.iter().map(|j| j.task_id));
    let ids: Vec<i64> = stale
        .iter()
        .chain(interrupted.iter())
        .map(|j| j.id)
        .collect();
    for chunk in ids.chunks(500) {
        job::Entity::update_many()
            .col_expr(job::Column::Status, Expr::value(JobStatus::Queued.as_str()))
            .col_expr(job::Column::ClaimedBy, Expr::value(Option::<String>::None))
            .col_expr(
                job::Column::Reason,
                Expr::value("Interrupted: pymap stopped while this job ran. Queued again; the re-run resumes."),
            )
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .filter(job::Column::Id.is_in(chunk.to_vec()))
            .exec(&txn)
            .await?;
    }
    tasks.sort_unstable();
    tasks.dedup();
    for task_id in tasks {
        refresh_task(&txn, task_id).await?;
    }
    txn.commit().await?;
    Ok(ids.len() as u64)
}

/// On graceful shutdown: the jobs this worker was running become `interrupted`.
pub async fn mark_interrupted(db: &DatabaseConnection, job_ids: &[i64]) -> Result<()> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let txn = crate::db::write_txn(db).await?;
    let jobs = job::Entity::find()
        .filter(job::Column::Id.is_in(job_ids.to_vec()))
        .all(&txn)
        .await?;
    job::Entity::update_many()
        .col_expr(
            job::Column::Status,
            Expr::value(JobStatus::Interrupted.as_str()),
        )
        .col_expr(job::Column::ClaimedBy, Expr::value(Option::<String>::None))
        .col_expr(
            job::Column::Reason,
            Expr::value("Interrupted: pymap was stopping. It will resume at the next start."),
        )
        .col_expr(job::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(job::Column::Id.is_in(job_ids.to_vec()))
        .filter(job::Column::Status.eq(JobStatus::Running.as_str()))
        .exec(&txn)
        .await?;
    let mut tasks: Vec<i64> = jobs.iter().map(|j| j.task_id).collect();
    tasks.sort_unstable();
    tasks.dedup();
    for task_id in tasks {
        refresh_task(&txn, task_id).await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Wipe stored mailbox passwords of tasks that ended more than `days` ago.
pub async fn wipe_expired_credentials(db: &DatabaseConnection, days: u32) -> Result<u64> {
    let cutoff = Utc::now() - chrono::Duration::days(days as i64);
    let txn = crate::db::write_txn(db).await?;
    let tasks = task::Entity::find()
        .filter(task::Column::FinishedAt.lt(cutoff))
        .filter(task::Column::CredentialsWipedAt.is_null())
        .all(&txn)
        .await?;
    for t in &tasks {
        job::Entity::update_many()
            .col_expr(job::Column::Password1, Expr::value(Option::<Vec<u8>>::None))
            .col_expr(job::Column::Password2, Expr::value(Option::<Vec<u8>>::None))
            .filter(job::Column::TaskId.eq(t.id))
            .exec(&txn)
            .await?;
        let mut a: task::ActiveModel = t.clone().into();
        a.credentials_wiped_at = Set(Some(Utc::now()));
        a.update(&txn).await?;
        audit::record(
            &txn,
            &Actor::system(),
            Entry::ok("task.credentials_wiped").on("task", t.id),
        )
        .await?;
    }
    txn.commit().await?;
    Ok(tasks.len() as u64)
}
