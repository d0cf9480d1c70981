//! The `Engine` seam: what the pool asks of a migration engine (imapsync now, the native
//! IMAP engine later), so the pool, UI, API and CLI never special-case one.

use std::{future::Future, path::PathBuf, pin::Pin, sync::Arc};

use tokio_util::sync::CancellationToken;

use super::imapsync::{
    exit::Outcome,
    parse::{Progress, RunSummary},
};
use crate::service::{batch::Secret, hosts::HostSpec, imapsync_options::MigrationOptions};

/// One mailbox pair to migrate, with everything an engine needs and nothing it may leak:
/// passwords stay [`Secret`]s until the engine hands them to the server.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub job_id: i64,
    pub task_id: i64,
    pub host1: HostSpec,
    pub user1: String,
    pub password1: Secret,
    pub host2: HostSpec,
    pub user2: String,
    pub password2: Secret,
    pub options: MigrationOptions,
    /// The job's log file (created/appended by the engine; named by ids only).
    pub log_path: PathBuf,
    /// A private (0700) directory for this run, emptied and removed by the engine.
    pub work_dir: PathBuf,
}

/// Receives what a run reports while it runs. Called from the engine's tasks: keep it
/// cheap and non-blocking (the pool coalesces progress to one write per second).
pub trait JobObserver: Send + Sync {
    /// `rare` is true for totals, folder changes, errors and notices (persist at once);
    /// false for per-message updates (coalesce).
    fn progress(&self, job_id: i64, progress: &Progress, rare: bool);
    /// One output line, already written to the job's log file.
    fn line(&self, job_id: i64, line: &str);
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub outcome: Outcome,
    pub summary: RunSummary,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub trait Engine: Send + Sync {
    /// `imapsync` or `native`.
    fn name(&self) -> &'static str;
    /// Version string for the system page, or why the engine is unavailable.
    fn version(&self) -> Result<String, String>;
    /// Run one job to its end. Cancelling `cancel` stops it (gracefully, then by force)
    /// and the outcome says `Cancelled`. Errors that prevent starting at all (engine
    /// missing, work dir unusable) come back as a `Failed` outcome, never a panic.
    fn run(
        &self,
        spec: JobSpec,
        observer: Arc<dyn JobObserver>,
        cancel: CancellationToken,
    ) -> BoxFuture<RunResult>;
}
