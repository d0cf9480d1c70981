//! The in-process worker pool: claims jobs from the database queue, runs them on their
//! engine with bounded concurrency, persists progress at most once a second, publishes
//! events, retries transient failures with exponential backoff, honours cancel requests
//! (also those made on another replica), and on shutdown marks its jobs interrupted so
//! the next start resumes them.
//!
//! The loop is the only writer of its jobs' state: run ends and progress snapshots wait in
//! [`Pending`] and the loop writes each kind in one transaction per turn
//! (`service::pool_writes` says why).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use entity::{job, task};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::{sync::Notify, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    engine::{Engine, JobSpec, RunResult},
    events::{Event, EventBus, EventKind},
    imapsync::{
        exit::Outcome,
        parse::{Progress, RunSummary},
    },
    observer::{Observer, ProgressSink},
    queue::{self, Limits},
    status::JobStatus,
};
use crate::service::{
    credentials,
    hosts::parse_host,
    imapsync_options::MigrationOptions,
    job_state,
    pool_writes::{self, RunEnd},
    tasks::EngineCheck,
};

/// The engines this process can run; `Err` says why one is unavailable.
#[derive(Clone)]
pub struct Engines {
    pub imapsync: Result<Arc<dyn Engine>, String>,
    pub native: Result<Arc<dyn Engine>, String>,
}

impl Engines {
    pub fn get(&self, name: &str) -> Result<Arc<dyn Engine>, String> {
        match name {
            "imapsync" => self.imapsync.clone(),
            "native" => self.native.clone(),
            other => Err(format!("unknown engine {other}")),
        }
    }
}

impl EngineCheck for Engines {
    fn check(&self, engine: &str) -> Result<(), String> {
        self.get(engine).map(|_| ())
    }
}

/// How often the pool looks for tasks created by other processes.
const WATCH_INTERVAL: Duration = Duration::from_millis(25);
/// How often the loop writes the progress snapshots that piled up (each job hands one over
/// at most once a second).
const PROGRESS_WRITES: Duration = Duration::from_millis(250);
/// Turns in a row an end may fail to be written before the pool lets go of the job: it
/// stays `running` in the database with a silent heartbeat, and recovery queues it again.
const END_WRITE_TRIES: u32 = 5;

#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub concurrency: usize,
    pub limits: Limits,
    pub max_attempts: u32,
    pub retry_base: Duration,
    /// A running job whose heartbeat is older than this belonged to a dead process.
    pub stale_after: Duration,
    pub poll_interval: Duration,
    pub log_dir: PathBuf,
    /// Parent of the per-job private work dirs.
    pub run_dir: PathBuf,
    pub credential_retention_days: u32,
}

struct RunningJob {
    cancel: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

/// What the loop writes at its next turn.
#[derive(Default)]
struct Pending {
    /// Ended runs (the events take the owner from the recounted task). A job stays in `running`
    /// (its slot taken, its heartbeat renewed) until its end is written.
    ends: Vec<RunEnd>,
    /// Turns in a row writing `ends` failed.
    end_failures: u32,
    progress: HashMap<i64, Progress>,
}

struct Inner {
    db: DatabaseConnection,
    key: [u8; 32],
    engines: Engines,
    bus: EventBus,
    config: PoolConfig,
    worker_id: String,
    wake: Notify,
    stop: CancellationToken,
    /// Set while shutting down: outcomes of the jobs we stop are not recorded as cancels.
    draining: std::sync::atomic::AtomicBool,
    running: Mutex<HashMap<i64, RunningJob>>,
    pending: Mutex<Pending>,
}

impl ProgressSink for Inner {
    fn progress(&self, job_id: i64, progress: Progress) {
        self.pending
            .lock()
            .expect("pending lock")
            .progress
            .insert(job_id, progress);
    }
}

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    pub fn new(
        db: DatabaseConnection,
        key: [u8; 32],
        engines: Engines,
        bus: EventBus,
        config: PoolConfig,
    ) -> Self {
        let worker_id = format!(
            "{}:{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "pymap".into()),
            std::process::id(),
            crate::keys::random_hex(4)
        );
        Self {
            inner: Arc::new(Inner {
                db,
                key,
                engines,
                bus,
                config,
                worker_id,
                wake: Notify::new(),
                stop: CancellationToken::new(),
                draining: false.into(),
                running: Mutex::new(HashMap::new()),
                pending: Mutex::new(Pending::default()),
            }),
        }
    }

    pub fn engines(&self) -> &Engines {
        &self.inner.engines
    }

    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// Look for work now (after a submit or a retry) instead of at the next poll.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub fn running_jobs(&self) -> usize {
        self.inner.running.lock().expect("pool lock").len()
    }

    /// Recover what a dead process left behind, then run the claim loop until
    /// [`Pool::shutdown`].
    pub async fn start(&self) -> anyhow::Result<JoinHandle<()>> {
        let inner = &self.inner;
        // Private to us, and without the pass and pid files of a previous process.
        super::run_dir::prepare(&inner.config.run_dir, true).map_err(anyhow::Error::msg)?;
        let stale = Utc::now() - chrono::Duration::from_std(inner.config.stale_after)?;
        let requeued = job_state::recover_interrupted(&inner.db, stale).await?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "jobs interrupted by a previous stop were queued again"
            );
        }
        let pool = self.clone();
        Ok(tokio::spawn(async move { pool.run_loop().await }))
    }

    async fn run_loop(&self) {
        let inner = &self.inner;
        let mut last_beat = Instant::now();
        let mut last_sweep = Instant::now() - Duration::from_secs(3600);
        let mut last_poll = Instant::now();
        let mut last_progress = Instant::now();
        let mut newest_task = queue::newest_task(&inner.db).await.unwrap_or_default();
        loop {
            let woken = tokio::select! {
                _ = inner.stop.cancelled() => break,
                _ = inner.wake.notified() => true,
                _ = tokio::time::sleep(WATCH_INTERVAL) => false,
            };
            if last_progress.elapsed() >= PROGRESS_WRITES {
                last_progress = Instant::now();
                self.write_progress().await;
            }
            if !woken {
                // Tasks submitted by another process (`pymap batch`, another replica)
                // cannot wake us: a cheap primary-key lookup notices them quickly,
                // while the full claim query runs only at the poll interval.
                let newest = queue::newest_task(&inner.db).await.unwrap_or(newest_task);
                if newest == newest_task && last_poll.elapsed() < inner.config.poll_interval {
                    continue;
                }
                newest_task = newest;
            }
            last_poll = Instant::now();
            // Ends first: the slots they free are filled in the same turn.
            let _ = self.write_ends().await;
            if last_beat.elapsed() >= Duration::from_secs(1) {
                last_beat = Instant::now();
                self.beat().await;
            }
            if last_sweep.elapsed() >= Duration::from_secs(600) {
                last_sweep = Instant::now();
                self.sweep().await;
            }
            self.fill().await;
        }
    }

    /// Heartbeats and cancel requests for our jobs.
    async fn beat(&self) {
        let ids: Vec<i64> = self
            .inner
            .running
            .lock()
            .expect("pool lock")
            .keys()
            .copied()
            .collect();
        match queue::heartbeat(&self.inner.db, &ids).await {
            Ok(cancel) => {
                let running = self.inner.running.lock().expect("pool lock");
                for id in cancel {
                    if let Some(job) = running.get(&id) {
                        job.cancel.cancel();
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }

    /// Recover jobs of dead replicas and wipe expired credentials.
    async fn sweep(&self) {
        let inner = &self.inner;
        if let Ok(stale) = chrono::Duration::from_std(inner.config.stale_after)
            && let Err(e) = job_state::recover_interrupted(&inner.db, Utc::now() - stale).await
        {
            tracing::warn!(error = %e, "recovery sweep failed");
        }
        match job_state::wipe_expired_credentials(&inner.db, inner.config.credential_retention_days)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                tasks = n,
                "wiped stored mailbox passwords after the retention period"
            ),
            Err(e) => tracing::warn!(error = %e, "credential retention sweep failed"),
        }
    }

    async fn fill(&self) {
        let inner = &self.inner;
        if inner.stop.is_cancelled() {
            return;
        }
        let free = inner.config.concurrency.saturating_sub(self.running_jobs());
        let claimed = queue::claim(
            &inner.db,
            &inner.worker_id,
            inner.config.limits,
            free,
            &inner.config.log_dir,
        )
        .await;
        let ids = match claimed {
            Ok(ids) if ids.is_empty() => return,
            Ok(ids) => ids,
            Err(e) => return tracing::warn!(error = %e, "cannot claim jobs"),
        };
        // Two reads for the whole wave, not two per job.
        let loaded = async {
            let jobs = job::Entity::find()
                .filter(job::Column::Id.is_in(ids.clone()))
                .all(&inner.db)
                .await?;
            let mut task_ids: Vec<i64> = jobs.iter().map(|j| j.task_id).collect();
            task_ids.sort_unstable();
            task_ids.dedup();
            let tasks = task::Entity::find()
                .filter(task::Column::Id.is_in(task_ids))
                .all(&inner.db)
                .await?;
            Ok::<_, sea_orm::DbErr>((jobs, tasks))
        }
        .await;
        match loaded {
            Ok((jobs, tasks)) => {
                let mut jobs: HashMap<i64, job::Model> =
                    jobs.into_iter().map(|j| (j.id, j)).collect();
                let tasks: HashMap<i64, task::Model> =
                    tasks.into_iter().map(|t| (t.id, t)).collect();
                for id in ids {
                    let Some(job) = jobs.remove(&id) else {
                        continue;
                    };
                    let Some(task) = tasks.get(&job.task_id) else {
                        continue;
                    };
                    self.launch(job, task.clone());
                }
            }
            // The claimed jobs stay `running` with a heartbeat nobody renews: recovery
            // queues them again once the heartbeat is stale.
            Err(e) => tracing::warn!(error = %e, "cannot load claimed jobs"),
        }
    }

    fn launch(&self, job: job::Model, task: task::Model) {
        let job_id = job.id;
        let cancel = CancellationToken::new();
        let mut running = self.inner.running.lock().expect("pool lock");
        running.insert(
            job_id,
            RunningJob {
                cancel: cancel.clone(),
                handle: None,
            },
        );
        let pool = self.clone();
        let handle = tokio::spawn(async move {
            match pool.run_job(job, task, cancel).await {
                // The loop writes it, then frees the slot.
                Some(end) => {
                    let mut pending = pool.inner.pending.lock().expect("pending lock");
                    pending.progress.remove(&job_id);
                    pending.ends.push(end);
                }
                None => {
                    pool.inner
                        .running
                        .lock()
                        .expect("pool lock")
                        .remove(&job_id);
                }
            }
            pool.wake();
        });
        if let Some(job) = running.get_mut(&job_id) {
            job.handle = Some(handle);
        }
    }

    /// Run one attempt; `None` when shutting down (the job is then marked interrupted).
    async fn run_job(
        &self,
        job: job::Model,
        task: task::Model,
        cancel: CancellationToken,
    ) -> Option<RunEnd> {
        let inner = &self.inner;
        let job_id = job.id;
        let running = JobStatus::Running.as_str();
        self.publish_status(&task, job.id, running, None, None);
        let log_path = queue::job_log_path(&inner.config.log_dir, task.id, job_id);
        let started = Instant::now();
        let result = match self.spec(&task, &job, log_path.clone()) {
            Err(reason) => failed_before_start(&log_path, &job, &task.engine, reason),
            Ok(spec) => match inner.engines.get(&task.engine) {
                Err(reason) => failed_before_start(&log_path, &job, &task.engine, reason),
                Ok(engine) => {
                    let _ = write_attempt_header(&log_path, job.attempts, engine.name());
                    let (bus, sink) = (inner.bus.clone(), self.inner.clone());
                    let observer = Arc::new(Observer::new(bus, sink, task.owner_id, task.id));
                    let persister = observer.clone().spawn_persister(job_id);
                    let result = engine.run(spec, observer.clone(), cancel.clone()).await;
                    persister.abort();
                    result
                }
            },
        };
        if inner.draining.load(std::sync::atomic::Ordering::SeqCst) {
            // Shutdown: `shutdown()` marks the job interrupted; the next start resumes it.
            return None;
        }
        let retry_at = (result.outcome.retryable
            && !cancel.is_cancelled()
            && (job.attempts as u32) < inner.config.max_attempts)
            .then(|| {
                let factor = 2u32.saturating_pow((job.attempts.max(1) - 1) as u32);
                Utc::now()
                    + chrono::Duration::from_std(inner.config.retry_base * factor)
                        .unwrap_or_default()
            });
        Some(RunEnd {
            job_id,
            task_id: task.id,
            attempt: job.attempts,
            result,
            duration_secs: started.elapsed().as_secs_f64(),
            retry_at,
        })
    }

    /// Write the ends handed over since the last turn, publish them, free their slots.
    /// Returns the jobs whose end was written.
    async fn write_ends(&self) -> Vec<i64> {
        let inner = &self.inner;
        let runs = std::mem::take(&mut inner.pending.lock().expect("pending lock").ends);
        if runs.is_empty() {
            return Vec::new();
        }
        match pool_writes::record_ends(&inner.db, &runs).await {
            Ok(tasks) => {
                inner.pending.lock().expect("pending lock").end_failures = 0;
                let tasks: HashMap<i64, task::Model> =
                    tasks.into_iter().map(|t| (t.id, t)).collect();
                for end in &runs {
                    let (status, reason) = end.recorded();
                    if let Some(task) = tasks.get(&end.task_id) {
                        let code = end.result.outcome.exit_code;
                        self.publish_status(task, end.job_id, status.as_str(), Some(reason), code);
                    }
                }
                self.release(&runs);
                runs.iter().map(|r| r.job_id).collect()
            }
            Err(e) => {
                let mut pending = inner.pending.lock().expect("pending lock");
                pending.end_failures += 1;
                let ids: Vec<i64> = runs.iter().map(|r| r.job_id).collect();
                if pending.end_failures >= END_WRITE_TRIES {
                    pending.end_failures = 0;
                    drop(pending);
                    tracing::error!(jobs = ?ids, error = %e, "cannot record how these jobs ended; recovery will queue them again");
                    self.release(&runs);
                } else {
                    tracing::warn!(jobs = ?ids, error = %e, "cannot record how jobs ended yet; retrying");
                    pending.ends.extend(runs);
                }
                Vec::new()
            }
        }
    }

    fn release(&self, runs: &[RunEnd]) {
        let mut running = self.inner.running.lock().expect("pool lock");
        for end in runs {
            running.remove(&end.job_id);
        }
    }

    /// Write the progress snapshots handed over since the last write.
    async fn write_progress(&self) {
        let inner = &self.inner;
        let snapshots: Vec<(i64, Progress)> = {
            let mut pending = inner.pending.lock().expect("pending lock");
            pending.progress.drain().collect()
        };
        if let Err(e) = pool_writes::save_progress(&inner.db, &snapshots).await {
            // The next snapshot of each job replaces this one; the events went out already.
            tracing::warn!(jobs = snapshots.len(), error = %e, "cannot save progress");
        }
    }

    fn spec(
        &self,
        task: &task::Model,
        job: &job::Model,
        log_path: PathBuf,
    ) -> Result<JobSpec, String> {
        let key = &self.inner.key;
        let wiped =
            "The stored passwords were wiped after the retention period; retry with the passwords.";
        let password1 = job.password1.as_deref().ok_or(wiped)?;
        let password2 = job.password2.as_deref().ok_or(wiped)?;
        let undecryptable = "The stored passwords cannot be decrypted (was the secret key changed?); retry with the passwords.";
        let password1 =
            credentials::decrypt(key, job.id, "password1", password1).ok_or(undecryptable)?;
        let password2 =
            credentials::decrypt(key, job.id, "password2", password2).ok_or(undecryptable)?;
        let mut options: MigrationOptions = serde_json::from_str(&task.options)
            .map_err(|e| format!("stored options are unreadable: {e}"))?;
        if let Some(extra) = &job.extra_args {
            let extra: Vec<String> = serde_json::from_str(extra)
                .map_err(|e| format!("stored row options are unreadable: {e}"))?;
            options.extra_args.extend(extra);
        }
        Ok(JobSpec {
            job_id: job.id,
            task_id: task.id,
            host1: parse_host(&job.host1).map_err(|e| e.to_string())?,
            user1: job.user1.clone(),
            password1,
            host2: parse_host(&job.host2).map_err(|e| e.to_string())?,
            user2: job.user2.clone(),
            password2,
            options,
            log_path,
            work_dir: self.inner.config.run_dir.join(format!("job-{}", job.id)),
        })
    }

    fn publish_status(
        &self,
        task: &task::Model,
        job_id: i64,
        status: &str,
        reason: Option<String>,
        exit_code: Option<i32>,
    ) {
        let bus = &self.inner.bus;
        bus.publish(Event {
            owner_id: task.owner_id,
            task_id: task.id,
            job_id: Some(job_id),
            kind: EventKind::JobStatus {
                status: status.to_string(),
                reason,
                exit_code,
            },
            origin: String::new(),
        });
        bus.publish(Event {
            owner_id: task.owner_id,
            task_id: task.id,
            job_id: None,
            kind: EventKind::TaskStatus {
                status: task.status.clone(),
                queued: task.jobs_queued,
                running: task.jobs_running,
                succeeded: task.jobs_succeeded,
                warning: task.jobs_warning,
                failed: task.jobs_failed,
                cancelled: task.jobs_cancelled,
            },
            origin: String::new(),
        });
    }

    /// Stop claiming, stop running jobs (TERM, then KILL after the engine's grace), and
    /// mark them interrupted so the next start queues them again.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (ids, handles): (Vec<i64>, Vec<JoinHandle<()>>) = {
            let mut running = inner.running.lock().expect("pool lock");
            running
                .iter_mut()
                .map(|(id, job)| {
                    job.cancel.cancel();
                    (*id, job.handle.take())
                })
                .filter_map(|(id, h)| h.map(|h| (id, h)))
                .unzip()
        };
        for handle in handles {
            let _ = handle.await;
        }
        // Runs that ended before the stop are recorded as they ended, the others (and any
        // whose end cannot be written now) as interrupted.
        self.write_progress().await;
        let recorded = self.write_ends().await;
        let ids: Vec<i64> = ids
            .into_iter()
            .filter(|id| !recorded.contains(id))
            .collect();
        super::run_dir::remove_if_empty(&inner.config.run_dir);
        if let Err(e) = job_state::mark_interrupted(&inner.db, &ids).await {
            tracing::error!(error = %e, "cannot mark running jobs interrupted");
        } else if !ids.is_empty() {
            tracing::info!(
                jobs = ids.len(),
                "running jobs marked interrupted; they resume at the next start"
            );
        }
    }
}

/// The claim already recorded the log path, so the log says why nothing ran.
fn failed_before_start(
    log_path: &std::path::Path,
    job: &job::Model,
    engine: &str,
    reason: String,
) -> RunResult {
    let _ = write_attempt_header(log_path, job.attempts, engine).and_then(|()| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(log_path)?;
        writeln!(f, "pymap: not started: {reason}")
    });
    RunResult {
        outcome: Outcome {
            status: JobStatus::Failed,
            exit_code: None,
            exit_name: "NOT_STARTED".into(),
            reason,
            retryable: false,
        },
        summary: RunSummary::default(),
    }
}

fn write_attempt_header(path: &std::path::Path, attempt: i32, engine: &str) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    writeln!(
        f,
        "pymap: attempt {attempt} with {engine} started at {}",
        Utc::now().to_rfc3339()
    )
}
