//! Display shapes of tasks and jobs for the templates: numbers already formatted, and
//! which buttons apply. Pure functions of the models (no database), so the first render
//! and every live update over SSE produce the same HTML.

use entity::{job, task};
use serde::Serialize;

use super::fmt;
use crate::{
    service::verification::{Verification, VerifyStatus},
    worker::status::JobStatus,
};

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
    /// Finished and not being verified (the service says why when it cannot).
    pub can_verify: bool,
    /// A retry first asks for the passwords (they were wiped).
    pub needs_passwords: bool,
    pub has_log: bool,
    pub verify: Option<VerifyView>,
}

/// The last verification of a job, in words.
#[derive(Serialize)]
pub struct VerifyView {
    /// `running`, `identical`, `differs` or `error`.
    pub status: String,
    /// Badge class.
    pub class: &'static str,
    pub at: String,
    /// One line: totals, or why it could not compare.
    pub summary: String,
    /// What differs, one line per folder or list.
    pub differences: Vec<String>,
}

fn verify_view(j: &job::Model) -> Option<VerifyView> {
    let v = Verification::of(j)?;
    let class = match v.status {
        VerifyStatus::Running => "st-running",
        VerifyStatus::Identical => "st-ok",
        VerifyStatus::Differs => "st-bad",
        VerifyStatus::Error => "st-warning",
    };
    let mut differences = Vec::new();
    let summary = match &v.report {
        None => "comparing the two mailboxes…".to_string(),
        Some(r) if r.error.is_some() => r.error.clone().unwrap_or_default(),
        Some(r) => {
            for (what, list) in [
                ("folders missing on the destination", &r.missing_folders),
                ("extra folders on the destination", &r.extra_folders),
                (
                    "subscriptions missing on the destination",
                    &r.missing_subscriptions,
                ),
                (
                    "extra subscriptions on the destination",
                    &r.extra_subscriptions,
                ),
            ] {
                if !list.is_empty() {
                    differences.push(format!("{what}: {}", list.join(", ")));
                }
            }
            for f in r.folders.iter().filter(|f| !f.identical) {
                let mut parts = Vec::new();
                for (n, word) in [
                    (f.missing, "missing"),
                    (f.extra, "extra"),
                    (f.flag_differences, "with other flags"),
                    (f.date_differences, "with another date"),
                    (f.unidentified, "unidentified"),
                ] {
                    if n > 0 {
                        parts.push(format!("{} {word}", fmt::count(n as i64)));
                    }
                }
                let name = if f.host1 == f.host2 {
                    f.host1.clone()
                } else {
                    format!("{} → {}", f.host1, f.host2)
                };
                differences.push(format!(
                    "{name}: {} vs {} messages; {}",
                    fmt::count(f.messages_host1 as i64),
                    fmt::count(f.messages_host2 as i64),
                    parts.join(", ")
                ));
            }
            format!(
                "{} folders, {} / {} messages",
                r.folders_compared,
                fmt::count(r.messages_host1 as i64),
                fmt::count(r.messages_host2 as i64)
            )
        }
    };
    Some(VerifyView {
        status: v.status.as_str().into(),
        class,
        at: fmt::time_opt(v.at.as_ref()),
        summary,
        differences,
    })
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
    let verify = verify_view(j);
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
        can_verify: status.is_final()
            && status != JobStatus::Interrupted
            && verify.as_ref().is_none_or(|v| v.status != "running"),
        needs_passwords: crate::service::retry_passwords::needs_passwords(j),
        has_log: j.log_path.is_some(),
        verify,
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
