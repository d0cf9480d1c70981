//! Retrying after the stored passwords were wiped (`credential_retention_days`): the
//! user gives them again, for one job or as a pasted batch matched to the task's jobs by
//! user names. They are sealed for each job's row (as at creation) and the jobs queued
//! in the same transaction, so a job is never queued without its passwords.

use entity::job;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use super::{
    Actor, FieldError, Result, ServiceError, announce,
    batch::{self, BatchLimits},
    job_state::{RetryCredentials, refresh_task, retry_in},
};
use crate::worker::{events::EventBus, status::JobStatus};

const FIELD: &str = "passwords";

/// Whether a retry of this job needs new passwords.
pub fn needs_passwords(job: &job::Model) -> bool {
    job.password1.is_none() || job.password2.is_none()
}

fn retryable(job: &job::Model) -> bool {
    job.status
        .parse::<JobStatus>()
        .is_ok_and(|s| s.is_final() && s != JobStatus::Interrupted)
}

fn line_error(line: usize, message: String) -> FieldError {
    FieldError {
        field: FIELD.into(),
        line: Some(line),
        message,
    }
}

/// Retry the jobs of a task named in `text`, one `user1 password1 [user2 password2]`
/// line per mailbox (the batch format; CSV works too). Every line must match a job
/// of this task that can be retried and whose passwords were wiped; otherwise nothing
/// is queued and each problem is reported with its line. Returns how many were queued.
pub async fn retry_with_batch(
    db: &DatabaseConnection,
    key: &[u8; 32],
    events: &EventBus,
    actor: &Actor,
    task_id: i64,
    text: &str,
) -> Result<usize> {
    let task = super::tasks::get(db, actor, task_id).await?;
    let pairs = batch::parse_auto(text.as_bytes(), &BatchLimits::default()).map_err(|errs| {
        ServiceError::InvalidMany(
            errs.0
                .into_iter()
                .map(|e| {
                    let field = e
                        .column
                        .map_or(FIELD.to_string(), |c| format!("{FIELD}.{c}"));
                    FieldError {
                        field,
                        line: Some(e.line),
                        message: e.message,
                    }
                })
                .collect(),
        )
    })?;
    if pairs.is_empty() {
        return Err(ServiceError::invalid(
            FIELD,
            "paste one line per mailbox: user1 password1 user2 password2",
        ));
    }
    let txn = crate::db::write_txn(db).await?;
    let waiting: Vec<job::Model> = job::Entity::find()
        .filter(job::Column::TaskId.eq(task.id))
        .order_by_asc(job::Column::Position)
        .all(&txn)
        .await?
        .into_iter()
        .filter(|j| retryable(j) && needs_passwords(j))
        .collect();
    let mut errors = Vec::new();
    // (job id, line that named it, its passwords)
    let mut chosen: Vec<(i64, usize, RetryCredentials)> = Vec::new();
    for pair in pairs {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let matches: Vec<&job::Model> = waiting
            .iter()
            .filter(|j| same(&j.user1, &pair.user1) && same(&j.user2, &pair.user2))
            .collect();
        if matches.is_empty() {
            errors.push(line_error(
                pair.line,
                format!(
                    "no mailbox {} → {} of this task is waiting for new passwords",
                    pair.user1, pair.user2
                ),
            ));
            continue;
        }
        for j in matches {
            if let Some((_, first, _)) = chosen.iter().find(|(id, _, _)| *id == j.id) {
                errors.push(line_error(
                    pair.line,
                    format!("the same mailbox as line {first}"),
                ));
                continue;
            }
            chosen.push((
                j.id,
                pair.line,
                RetryCredentials {
                    password1: pair.password1.clone(),
                    password2: pair.password2.clone(),
                },
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ServiceError::InvalidMany(errors));
    }
    let ids: Vec<i64> = chosen.iter().map(|(id, _, _)| *id).collect();
    for (id, _, creds) in chosen {
        retry_in(&txn, key, actor, id, Some(creds)).await?;
    }
    refresh_task(&txn, task.id).await?;
    txn.commit().await?;
    announce::changed(db, events, task.id, &ids).await;
    Ok(ids.len())
}
