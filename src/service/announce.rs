//! Telling open pages what a user action changed. The worker publishes what it does
//! itself; actions (cancel, retry, archive) change rows the worker may never touch again
//! (a queued job cancelled before it started), so without this another tab would show
//! the old state until a reload. Called after commit, with the state read back, so
//! subscribers see what the database says.

use entity::{job, task};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::worker::events::{Event, EventBus, EventKind};

/// More changed jobs than this and only the task's summary is announced: thousands of
/// row events at once would overflow subscribers (they would reload anyway).
const MAX_JOB_EVENTS: usize = 1000;

/// Publish the current status of `job_ids` and of their task. Best effort: the action
/// has committed already, so a failed read is logged, not returned.
pub async fn changed(db: &DatabaseConnection, events: &EventBus, task_id: i64, job_ids: &[i64]) {
    if let Err(e) = publish(db, events, task_id, job_ids).await {
        tracing::warn!(task_id, error = %e, "cannot announce a task change");
    }
}

async fn publish(
    db: &DatabaseConnection,
    events: &EventBus,
    task_id: i64,
    job_ids: &[i64],
) -> Result<(), sea_orm::DbErr> {
    let Some(task) = task::Entity::find_by_id(task_id).one(db).await? else {
        return Ok(());
    };
    if !job_ids.is_empty() && job_ids.len() <= MAX_JOB_EVENTS {
        let jobs = job::Entity::find()
            .filter(job::Column::Id.is_in(job_ids.to_vec()))
            .filter(job::Column::TaskId.eq(task_id))
            .all(db)
            .await?;
        for j in jobs {
            events.publish(Event {
                owner_id: task.owner_id,
                task_id,
                job_id: Some(j.id),
                kind: EventKind::JobStatus {
                    status: j.status,
                    reason: j.reason,
                    exit_code: j.exit_code,
                },
                origin: String::new(),
            });
        }
    }
    events.publish(Event {
        owner_id: task.owner_id,
        task_id,
        job_id: None,
        kind: EventKind::TaskStatus {
            status: task.status,
            queued: task.jobs_queued,
            running: task.jobs_running,
            succeeded: task.jobs_succeeded,
            warning: task.jobs_warning,
            failed: task.jobs_failed,
            cancelled: task.jobs_cancelled,
        },
        origin: String::new(),
    });
    Ok(())
}
