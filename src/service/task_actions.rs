//! Actions on whole tasks besides cancel and retry (`job_state.rs`): archiving (hide a
//! finished task from the default lists) and deleting (admins only).

use std::path::Path;

use entity::{job, task};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::{
    Actor, Result, ServiceError, announce,
    audit::{self, Entry},
};
use crate::worker::events::EventBus;

fn is_live(task: &task::Model) -> bool {
    task.jobs_queued > 0 || task.jobs_running > 0
}

/// Archive (or unarchive) a task the actor may see. Only finished tasks can be archived:
/// a live task would disappear from the lists while it still runs.
pub async fn set_archived(
    db: &DatabaseConnection,
    events: &EventBus,
    actor: &Actor,
    task_id: i64,
    archived: bool,
) -> Result<task::Model> {
    let txn = crate::db::write_txn(db).await?;
    let task = task::Entity::find_by_id(task_id)
        .one(&txn)
        .await?
        .filter(|t| actor.is_admin() || Some(t.owner_id) == actor.id)
        .ok_or(ServiceError::NotFound)?;
    if task.archived == archived {
        txn.commit().await?;
        return Ok(task);
    }
    if archived && is_live(&task) {
        return Err(ServiceError::Conflict(format!(
            "task {task_id} still has queued or running jobs; cancel it or wait until it ends"
        )));
    }
    let mut active: task::ActiveModel = task.into();
    active.archived = Set(archived);
    let task = active.update(&txn).await?;
    let action = if archived {
        "task.archive"
    } else {
        "task.unarchive"
    };
    audit::record(&txn, actor, Entry::ok(action).on("task", task_id)).await?;
    txn.commit().await?;
    announce::changed(db, events, task_id, &[]).await;
    Ok(task)
}

/// Delete a finished task, its jobs (with their stored credentials) and its job logs.
/// Admins only; others get `NotFound` for tasks they cannot see and `Forbidden` for
/// their own.
pub async fn delete(
    db: &DatabaseConnection,
    actor: &Actor,
    task_id: i64,
    log_dir: &Path,
) -> Result<()> {
    let txn = crate::db::write_txn(db).await?;
    let task = task::Entity::find_by_id(task_id)
        .one(&txn)
        .await?
        .filter(|t| actor.is_admin() || Some(t.owner_id) == actor.id)
        .ok_or(ServiceError::NotFound)?;
    if !actor.is_admin() {
        return Err(ServiceError::Forbidden);
    }
    if is_live(&task) {
        return Err(ServiceError::Conflict(format!(
            "task {task_id} still has queued or running jobs; cancel it first"
        )));
    }
    job::Entity::delete_many()
        .filter(job::Column::TaskId.eq(task_id))
        .exec(&txn)
        .await?;
    task::Entity::delete_by_id(task_id).exec(&txn).await?;
    audit::record(
        &txn,
        actor,
        Entry::ok("task.delete").on("task", task_id).detail(format!(
            "{:?}: {} mailboxes, {} → {}",
            task.label, task.jobs_total, task.source, task.destination
        )),
    )
    .await?;
    txn.commit().await?;
    // Logs are named by ids only (see the pool), so this is the task's directory.
    let dir = log_dir.join("jobs").join(format!("task-{task_id}"));
    if dir.exists()
        && let Err(e) = tokio::fs::remove_dir_all(&dir).await
    {
        tracing::warn!(task_id, dir = %dir.display(), error = %e, "cannot remove the logs of a deleted task");
    }
    Ok(())
}
