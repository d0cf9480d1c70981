//! Display shapes of tasks and jobs for the templates: numbers already formatted, and
//! which buttons apply. Pure functions of the models (no database), so the first render
//! and every live update over SSE produce the same HTML.

use entity::{job, task};
use serde::Serialize;

use super::fmt;
use crate::worker::status::JobStatus;

#[derive(Serialize)]
pub struct JobRow {
    pub id: i64,
    pub position: i32,
    pub user1: String,
    pub user2: String,
    /// Shown only when the row overrides the task's hosts.
    pub host1: Option<String>,
    pub host2: Option<String>,
    pub status: String,
    pub live: bool,
    pub messages: String,
    pub messages_pct: Option<i64>,
    pub bytes: String,
    pub bytes_pct: Option<i64>,
    pub eta: String,
    pub folder: String,
    pub transferred: String,
    pub skipped: String,
    pub errors: String,
    pub duration: String,
    pub reason: String,
    pub attempts: i32,
    pub can_cancel: bool,
    pub can_retry: bool,
    /// A retry first asks for the passwords (they were wiped).
    pub needs_passwords: bool,
    pub has_log: bool,
}

fn opt_count(v: Option<i64>) -> String {
    v.map(fmt::count).unwrap_or_else(|| "–".into())
}

pub fn job_row(task: &task::Model, j: &job::Model) -> JobRow {
    let status: JobStatus = j.status.parse().unwrap_or(JobStatus::Failed);
    let live = !status.is_final();
    let messages = match j.messages_total {
        Some(t) => format!("{} / {}", fmt::count(j.messages_done), fmt::count(t)),
        None if j.messages_done > 0 => fmt::count(j.messages_done),
        None => String::new(),
    };
    let bytes = match j.bytes_total {
        Some(t) => format!("{} / {}", fmt::bytes(j.bytes_done), fmt::bytes(t)),
        None if j.bytes_done > 0 => fmt::bytes(j.bytes_done),
        None => String::new(),
    };
    let folder = match (j.folder_index, j.folder_count) {
        (Some(i), Some(n)) if live => format!(
            "{i}/{n}{}",
            j.folder_name
                .as_deref()
                .map(|f| format!(" {f}"))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let eta = match j.eta_secs {
        Some(s) if status == JobStatus::Running => fmt::duration(s),
        _ => String::new(),
    };
    JobRow {
        id: j.id,
        position: j.position,
        user1: j.user1.clone(),
        user2: j.user2.clone(),
        host1: (j.host1 != task.source).then(|| j.host1.clone()),
        host2: (j.host2 != task.destination).then(|| j.host2.clone()),
        status: j.status.clone(),
        live,
        messages,
        messages_pct: fmt::percent(j.messages_done, j.messages_total),
        bytes,
        bytes_pct: fmt::percent(j.bytes_done, j.bytes_total),
        eta,
        folder,
        transferred: opt_count(j.messages_transferred),
        skipped: opt_count(j.messages_skipped),
        errors: opt_count(j.errors_count),
        duration: j
            .duration_secs
            .map(|d| fmt::duration(d.round() as i64))
            .unwrap_or_default(),
        reason: j.reason.clone().unwrap_or_default(),
        attempts: j.attempts,
        can_cancel: live,
        can_retry: status.is_final() && status != JobStatus::Interrupted,
        needs_passwords: crate::service::retry_passwords::needs_passwords(j),
        has_log: j.log_path.is_some(),
    }
}

#[derive(Serialize)]
pub struct TaskSummary {
    pub id: i64,
    pub label: String,
    pub source: String,
    pub destination: String,
    pub engine: String,
    pub status: String,
    pub archived: bool,
    pub total: i32,
    pub queued: i32,
    pub running: i32,
    pub succeeded: i32,
    pub warning: i32,
    pub failed: i32,
    pub cancelled: i32,
    /// Mailboxes that reached a final state.
    pub done: i32,
    pub done_pct: i64,
    pub created: String,
    pub started: String,
    pub finished: String,
    pub run_time: String,
    pub live: bool,
    pub credentials_wiped: bool,
}

pub fn task_summary(t: &task::Model) -> TaskSummary {
    let done = t.jobs_succeeded + t.jobs_warning + t.jobs_failed + t.jobs_cancelled;
    TaskSummary {
        id: t.id,
        label: t.label.clone(),
        source: t.source.clone(),
        destination: t.destination.clone(),
        engine: t.engine.clone(),
        status: t.status.clone(),
        archived: t.archived,
        total: t.jobs_total,
        queued: t.jobs_queued,
        running: t.jobs_running,
        succeeded: t.jobs_succeeded,
        warning: t.jobs_warning,
        failed: t.jobs_failed,
        cancelled: t.jobs_cancelled,
        done,
        done_pct: fmt::percent(done as i64, Some(t.jobs_total as i64)).unwrap_or(0),
        created: fmt::time(&t.created_at),
        started: fmt::time_opt(t.started_at.as_ref()),
        finished: fmt::time_opt(t.finished_at.as_ref()),
        run_time: fmt::duration(t.run_time_secs),
        live: t.jobs_queued + t.jobs_running > 0,
        credentials_wiped: t.credentials_wiped_at.is_some(),
    }
}
