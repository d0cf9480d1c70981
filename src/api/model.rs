//! Request and response bodies of the task and job endpoints. Passwords only ever appear
//! in request bodies, as `writeOnly` fields.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{job, task};
use poem_openapi::{Enum, Object};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::direct_json::{rfc3339, rfc3339_opt};

use super::model_verify::JobVerification;
use crate::{
    service::{
        imapsync_options::{MigrationOptions, TlsMode as Tls},
        query::{ReportRow as ServiceReportRow, TaskRow},
        verification::Verification,
    },
    worker::{imapsync::parse::Progress, status::JobStatus},
};

/// Status of a job, and of a task (a task is never `interrupted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Warning,
    Failed,
    Cancelled,
    Interrupted,
}

impl From<JobStatus> for Status {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Queued => Status::Queued,
            JobStatus::Running => Status::Running,
            JobStatus::Succeeded => Status::Succeeded,
            JobStatus::Warning => Status::Warning,
            JobStatus::Failed => Status::Failed,
            JobStatus::Cancelled => Status::Cancelled,
            JobStatus::Interrupted => Status::Interrupted,
        }
    }
}

impl Status {
    /// A status as stored (the pool writes only known names).
    pub fn stored(s: &str) -> Self {
        s.parse::<JobStatus>()
            .map(Status::from)
            .unwrap_or_else(|_| {
                tracing::warn!(status = s, "unknown status in the database");
                Status::Failed
            })
    }
}

/// How imapsync talks TLS to one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Auto,
    Plain,
    Starttls,
    Implicit,
}

impl From<Tls> for TlsMode {
    fn from(t: Tls) -> Self {
        match t {
            Tls::Auto => TlsMode::Auto,
            Tls::Plain => TlsMode::Plain,
            Tls::Starttls => TlsMode::Starttls,
            Tls::Implicit => TlsMode::Implicit,
        }
    }
}

impl From<TlsMode> for Tls {
    fn from(t: TlsMode) -> Self {
        match t {
            TlsMode::Auto => Tls::Auto,
            TlsMode::Plain => Tls::Plain,
            TlsMode::Starttls => Tls::Starttls,
            TlsMode::Implicit => Tls::Implicit,
        }
    }
}

/// Migration options of a task.
#[derive(Clone, Debug, Object, Serialize)]
pub struct Options {
    pub dry_run: bool,
    pub just_login: bool,
    pub just_folders: bool,
    pub include_folders: Vec<String>,
    pub exclude_folders: Vec<String>,
    pub max_age_days: Option<u32>,
    pub min_age_days: Option<u32>,
    pub max_size_bytes: Option<u64>,
    pub sync_duplicates: bool,
    pub add_header: bool,
    pub delete_on_destination: bool,
    pub tls1: TlsMode,
    pub tls2: TlsMode,
    pub timeout_secs: Option<u32>,
    /// Accept a self-signed certificate from the source (native engine and verifier).
    pub accept_invalid_certs1: bool,
    /// Accept a self-signed certificate from the destination.
    pub accept_invalid_certs2: bool,
    /// Extra imapsync arguments (allowlisted), one argv element each.
    pub extra_args: Vec<String>,
    /// These options already written as JSON, set only by the options memo
    /// (`stored_options`), which builds it from the fields above and hands the pair out
    /// unchanged. Response bodies copy it instead of writing the same object again for
    /// every task that shares these options. Not part of the schema or of `ToJSON`.
    #[oai(skip)]
    #[serde(skip)]
    pub(super) json: Option<Arc<RawValue>>,
}

/// A task's options in a response body: the memo's ready JSON when there is one, else
/// the fields.
fn options_json<S: Serializer>(options: &Options, s: S) -> Result<S::Ok, S::Error> {
    match &options.json {
        Some(json) => json.serialize(s),
        None => options.serialize(s),
    }
}

impl From<MigrationOptions> for Options {
    fn from(o: MigrationOptions) -> Self {
        Self {
            dry_run: o.dry_run,
            just_login: o.just_login,
            just_folders: o.just_folders,
            include_folders: o.include_folders,
            exclude_folders: o.exclude_folders,
            max_age_days: o.max_age_days,
            min_age_days: o.min_age_days,
            max_size_bytes: o.max_size_bytes,
            sync_duplicates: o.sync_duplicates,
            add_header: o.add_header,
            delete_on_destination: o.delete_on_destination,
            tls1: o.tls1.into(),
            tls2: o.tls2.into(),
            timeout_secs: o.timeout_secs,
            accept_invalid_certs1: o.accept_invalid_certs1,
            accept_invalid_certs2: o.accept_invalid_certs2,
            extra_args: o.extra_args,
            json: None,
        }
    }
}

/// Migration options; every field is optional and defaults as in the web form.
#[derive(Clone, Debug, Default, Object)]
#[oai(deny_unknown_fields)]
pub struct OptionsInput {
    pub dry_run: Option<bool>,
    /// Only check that both logins work.
    pub just_login: Option<bool>,
    pub just_folders: Option<bool>,
    /// Folder regexes to include.
    pub include_folders: Option<Vec<String>>,
    pub exclude_folders: Option<Vec<String>>,
    pub max_age_days: Option<u32>,
    pub min_age_days: Option<u32>,
    pub max_size_bytes: Option<u64>,
    pub sync_duplicates: Option<bool>,
    /// Default true.
    pub add_header: Option<bool>,
    /// Removes messages on the destination that are not on the source; needs
    /// `delete_confirmed: true`.
    pub delete_on_destination: Option<bool>,
    pub delete_confirmed: Option<bool>,
    pub tls1: Option<TlsMode>,
    pub tls2: Option<TlsMode>,
    pub timeout_secs: Option<u32>,
    /// Accept a self-signed (unverifiable) TLS certificate from the source. Default false.
    /// The native engine and the verifier honour it; imapsync does not verify
    /// certificates anyway.
    pub accept_invalid_certs1: Option<bool>,
    /// The same for the destination.
    pub accept_invalid_certs2: Option<bool>,
}

impl OptionsInput {
    pub fn into_options(self) -> MigrationOptions {
        let d = MigrationOptions::default();
        MigrationOptions {
            dry_run: self.dry_run.unwrap_or(d.dry_run),
            just_login: self.just_login.unwrap_or(d.just_login),
            just_folders: self.just_folders.unwrap_or(d.just_folders),
            include_folders: self.include_folders.unwrap_or_default(),
            exclude_folders: self.exclude_folders.unwrap_or_default(),
            max_age_days: self.max_age_days,
            min_age_days: self.min_age_days,
            max_size_bytes: self.max_size_bytes,
            sync_duplicates: self.sync_duplicates.unwrap_or(d.sync_duplicates),
            add_header: self.add_header.unwrap_or(d.add_header),
            delete_on_destination: self
                .delete_on_destination
                .unwrap_or(d.delete_on_destination),
            delete_confirmed: self.delete_confirmed.unwrap_or(d.delete_confirmed),
            tls1: self.tls1.map(Into::into).unwrap_or(d.tls1),
            tls2: self.tls2.map(Into::into).unwrap_or(d.tls2),
            timeout_secs: self.timeout_secs,
            accept_invalid_certs1: self
                .accept_invalid_certs1
                .unwrap_or(d.accept_invalid_certs1),
            accept_invalid_certs2: self
                .accept_invalid_certs2
                .unwrap_or(d.accept_invalid_certs2),
            extra_args: Vec::new(),
        }
    }
}

/// Jobs of a task per status.
#[derive(Clone, Debug, Object, Serialize)]
pub struct JobCounts {
    pub total: i32,
    pub queued: i32,
    pub running: i32,
    pub succeeded: i32,
    pub warning: i32,
    pub failed: i32,
    pub cancelled: i32,
}

// Serialize: the list and detail responses are written with `DirectJson`.
#[derive(Clone, Debug, Object, Serialize)]
pub struct Task {
    pub id: i64,
    /// Owner's user name.
    pub owner: String,
    pub label: String,
    /// Hosts after HOSTS expansion (`host` or `host:port`).
    pub source: String,
    pub destination: String,
    /// Hosts as typed.
    pub source_typed: String,
    pub destination_typed: String,
    pub engine: String,
    #[serde(serialize_with = "options_json")]
    pub options: Options,
    pub status: Status,
    pub jobs: JobCounts,
    pub archived: bool,
    pub cancel_requested: bool,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    pub run_time_secs: i64,
    /// The stored mailbox passwords were wiped after the retention period.
    pub credentials_wiped: bool,
}

impl Task {
    pub fn new(t: task::Model, owner: Option<String>) -> Self {
        let options = super::stored_options::options_from_stored(&t.options);
        Self {
            id: t.id,
            owner: owner.unwrap_or_else(|| format!("#{}", t.owner_id)),
            label: t.label,
            source: t.source,
            destination: t.destination,
            source_typed: t.source_typed,
            destination_typed: t.destination_typed,
            engine: t.engine,
            options,
            status: Status::stored(&t.status),
            jobs: JobCounts {
                total: t.jobs_total,
                queued: t.jobs_queued,
                running: t.jobs_running,
                succeeded: t.jobs_succeeded,
                warning: t.jobs_warning,
                failed: t.jobs_failed,
                cancelled: t.jobs_cancelled,
            },
            archived: t.archived,
            cancel_requested: t.cancel_requested,
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            run_time_secs: t.run_time_secs,
            credentials_wiped: t.credentials_wiped_at.is_some(),
        }
    }
}

impl From<TaskRow> for Task {
    fn from(r: TaskRow) -> Self {
        Task::new(r.task, r.owner_name)
    }
}

#[derive(Clone, Debug, Object, Serialize)]
pub struct TaskList {
    pub items: Vec<Task>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// All matching tasks, when asked for with `total=true`.
    pub total: Option<u64>,
}

/// One mailbox pair of a JSON batch. `user2`/`password2` default to side 1.
#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct MailboxInput {
    pub user1: String,
    #[oai(write_only)]
    pub password1: String,
    pub user2: Option<String>,
    #[oai(write_only)]
    pub password2: Option<String>,
    /// Overrides the task's source host for this mailbox.
    pub host1: Option<String>,
    pub host2: Option<String>,
    /// Extra imapsync arguments for this mailbox (allowlisted).
    pub options: Option<String>,
}

/// A new task. Give the batch either as `batch` (the text or CSV format of the web form,
/// line numbers in errors refer to it) or as `mailboxes` (errors name
/// `mailboxes[i]` and give `line` = i + 1).
#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CreateTask {
    pub label: Option<String>,
    /// Source host as typed (HOSTS patterns apply).
    pub source: String,
    pub destination: String,
    /// `imapsync` (default) or `native`.
    pub engine: Option<String>,
    pub options: Option<OptionsInput>,
    /// Extra imapsync arguments as typed (allowlisted).
    pub extra_args: Option<String>,
    #[oai(write_only)]
    pub batch: Option<String>,
    pub mailboxes: Option<Vec<MailboxInput>>,
    /// Admins only: create the task for this user.
    pub owner: Option<String>,
}

/// Live progress of a running job.
#[derive(Clone, Debug, Object)]
pub struct JobProgress {
    pub messages_done: i64,
    pub messages_total: Option<i64>,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub folder_index: Option<i32>,
    pub folder_count: Option<i32>,
    pub folder_name: Option<String>,
    pub eta_secs: Option<i64>,
    /// Messages done in percent of the total, when known.
    pub percent: Option<f64>,
}

fn percent(done: i64, total: Option<i64>) -> Option<f64> {
    total
        .filter(|t| *t > 0)
        .map(|t| ((done as f64 / t as f64) * 1000.0).round().min(1000.0) / 10.0)
}

fn clamp(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl From<&Progress> for JobProgress {
    fn from(p: &Progress) -> Self {
        let done = clamp(p.messages_done);
        let total = p.messages_total.map(clamp);
        Self {
            messages_done: done,
            messages_total: total,
            bytes_done: clamp(p.bytes_done),
            bytes_total: p.bytes_total.map(clamp),
            folder_index: p.folder_index.map(|v| v as i32),
            folder_count: p.folder_count.map(|v| v as i32),
            folder_name: p.folder_name.clone(),
            eta_secs: p.eta_secs.map(clamp),
            percent: percent(done, total),
        }
    }
}

/// How the last run ended.
#[derive(Clone, Debug, Object)]
pub struct JobResult {
    pub messages_transferred: Option<i64>,
    pub messages_skipped: Option<i64>,
    pub errors_count: Option<i64>,
    pub bytes_transferred: Option<i64>,
    pub duration_secs: Option<f64>,
    /// imapsync's "sync looks good" verdict, when it printed one.
    pub sync_ok: Option<bool>,
    /// Messages on the source imapsync could not identify.
    pub unidentified: Option<i64>,
}

/// One mailbox pair and its migration. No credentials.
#[derive(Clone, Debug, Object)]
pub struct Job {
    pub id: i64,
    pub task_id: i64,
    /// Line order in the batch (1-based).
    pub position: i32,
    pub user1: String,
    pub user2: String,
    pub host1: String,
    pub host2: String,
    pub status: Status,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub exit_code: Option<i32>,
    pub exit_name: Option<String>,
    /// The outcome in words.
    pub reason: Option<String>,
    /// Error lines of the last run (capped).
    pub errors: Vec<String>,
    pub progress: JobProgress,
    pub result: JobResult,
    /// A log exists (GET /jobs/{id}/log).
    pub has_log: bool,
    /// The mailbox passwords are still stored (a retry needs none).
    pub credentials_stored: bool,
    /// The last verification (`POST /jobs/{id}/verify`); absent when never verified.
    pub verification: Option<JobVerification>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<job::Model> for Job {
    fn from(j: job::Model) -> Self {
        let errors = j
            .errors
            .as_deref()
            .and_then(|e| serde_json::from_str::<Vec<String>>(e).ok())
            .unwrap_or_default();
        let verification = Verification::of(&j);
        Self {
            id: j.id,
            task_id: j.task_id,
            position: j.position,
            user1: j.user1,
            user2: j.user2,
            host1: j.host1,
            host2: j.host2,
            status: Status::stored(&j.status),
            attempts: j.attempts,
            next_attempt_at: j.next_attempt_at,
            cancel_requested: j.cancel_requested,
            exit_code: j.exit_code,
            exit_name: j.exit_name,
            reason: j.reason,
            errors,
            progress: JobProgress {
                messages_done: j.messages_done,
                messages_total: j.messages_total,
                bytes_done: j.bytes_done,
                bytes_total: j.bytes_total,
                folder_index: j.folder_index,
                folder_count: j.folder_count,
                folder_name: j.folder_name,
                eta_secs: j.eta_secs,
                percent: percent(j.messages_done, j.messages_total),
            },
            result: JobResult {
                messages_transferred: j.messages_transferred,
                messages_skipped: j.messages_skipped,
                errors_count: j.errors_count,
                bytes_transferred: j.bytes_transferred,
                duration_secs: j.duration_secs,
                sync_ok: j.sync_ok,
                unidentified: j.unidentified,
            },
            has_log: j.log_path.is_some(),
            credentials_stored: j.password1.is_some() && j.password2.is_some(),
            verification: verification.map(Into::into),
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            updated_at: j.updated_at,
        }
    }
}

#[derive(Clone, Debug, Object)]
pub struct JobList {
    pub items: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// New passwords for a retry, needed once the stored ones were wiped.
#[derive(Clone, Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct RetryJob {
    #[oai(write_only)]
    pub password1: Option<String>,
    #[oai(write_only)]
    pub password2: Option<String>,
}

#[derive(Clone, Debug, Object)]
pub struct RetryResult {
    /// Jobs queued again.
    pub queued: u64,
}

/// One row of the per-mailbox report.
#[derive(Clone, Debug, Object)]
pub struct ReportRow {
    pub id: i64,
    pub position: i32,
    pub user1: String,
    pub user2: String,
    pub host1: String,
    pub host2: String,
    pub status: Status,
    pub attempts: i32,
    pub exit_code: Option<i32>,
    pub exit_name: Option<String>,
    pub reason: Option<String>,
    pub messages_transferred: Option<i64>,
    pub messages_skipped: Option<i64>,
    pub errors_count: Option<i64>,
    pub bytes_transferred: Option<i64>,
    pub duration_secs: Option<f64>,
    pub sync_ok: Option<bool>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<ServiceReportRow> for ReportRow {
    fn from(r: ServiceReportRow) -> Self {
        Self {
            id: r.id,
            position: r.position,
            user1: r.user1,
            user2: r.user2,
            host1: r.host1,
            host2: r.host2,
            status: Status::stored(&r.status),
            attempts: r.attempts,
            exit_code: r.exit_code,
            exit_name: r.exit_name,
            reason: r.reason,
            messages_transferred: r.messages_transferred,
            messages_skipped: r.messages_skipped,
            errors_count: r.errors_count,
            bytes_transferred: r.bytes_transferred,
            duration_secs: r.duration_secs,
            sync_ok: r.sync_ok,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

#[derive(Clone, Debug, Object)]
pub struct Report {
    pub task: Task,
    pub rows: Vec<ReportRow>,
}
