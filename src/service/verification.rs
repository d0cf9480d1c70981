//! The "verify" action on a finished job: compare the job's two mailboxes with the
//! verifier (read-only, engine-independent, so imapsync jobs too) and keep the report
//! with the job.
//!
//! The request only checks, marks the job `running` and returns; the comparison runs in a
//! background task, because it takes as long as listing every message on both sides. At
//! most [`MAX_RUNNING`] comparisons run at once per process and at most [`MAX_PENDING`]
//! wait or run, so a burst of clicks cannot open hundreds of IMAP connections. Start and
//! end are published on the event bus, so live pages and API streams update.
//!
//! A verification that never ends (pymap stopped while it ran) stays `running` in the
//! database; after [`STALE_AFTER`] it is shown as an error and may be started again. That
//! rule needs no start-up sweep, which could not tell another replica's live run from a
//! dead one.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use entity::{job, task};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};
use tokio::sync::Semaphore;

use super::{
    Actor, Result, ServiceError,
    audit::{self, Entry},
    credentials,
    hosts::parse_host,
    imapsync_options::MigrationOptions,
};
use crate::worker::{
    events::{Event, EventBus, EventKind},
    native::{NativeOptions, VerifyReport, VerifySpec, verify},
    status::JobStatus,
};

/// Comparisons running at the same time in this process.
pub const MAX_RUNNING: usize = 2;
/// Comparisons running or waiting for a slot; beyond this a request is refused.
pub const MAX_PENDING: usize = 32;
/// Longest comparison; it then ends as an error.
pub const TIMEOUT: Duration = Duration::from_secs(3600);
/// A `running` verification older than this was lost (see the module comment).
pub const STALE_AFTER: chrono::Duration = chrono::Duration::seconds(3600 + 600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyStatus {
    Running,
    Identical,
    Differs,
    Error,
}

impl VerifyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyStatus::Running => "running",
            VerifyStatus::Identical => "identical",
            VerifyStatus::Differs => "differs",
            VerifyStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => VerifyStatus::Running,
            "identical" => VerifyStatus::Identical,
            "differs" => VerifyStatus::Differs,
            "error" => VerifyStatus::Error,
            _ => return None,
        })
    }

    pub fn of(report: &VerifyReport) -> Self {
        if report.error.is_some() {
            VerifyStatus::Error
        } else if report.identical {
            VerifyStatus::Identical
        } else {
            VerifyStatus::Differs
        }
    }
}

/// The last verification of a job, as stored (a lost `running` one shown as an error).
#[derive(Clone, Debug)]
pub struct Verification {
    pub status: VerifyStatus,
    /// Started (while running) or finished.
    pub at: Option<chrono::DateTime<Utc>>,
    /// Absent while running.
    pub report: Option<VerifyReport>,
}

impl Verification {
    /// `None` when the job was never verified.
    pub fn of(job: &job::Model) -> Option<Self> {
        let status = VerifyStatus::parse(job.verify_status.as_deref()?)?;
        let mut report = job
            .verify_report
            .as_deref()
            .and_then(|r| serde_json::from_str::<VerifyReport>(r).ok());
        let lost = status == VerifyStatus::Running
            && job.verified_at.is_none_or(|t| t < Utc::now() - STALE_AFTER);
        if lost {
            report = Some(VerifyReport {
                error: Some(
                    "The verification did not finish (pymap stopped while it ran); start it again."
                        .into(),
                ),
                ..VerifyReport::default()
            });
        }
        Some(Self {
            status: if lost { VerifyStatus::Error } else { status },
            at: job.verified_at,
            report,
        })
    }
}

/// Runs verifications in the background; one per process, cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    db: DatabaseConnection,
    key: [u8; 32],
    bus: EventBus,
    native: NativeOptions,
    slots: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
}

/// Holds one of the [`MAX_PENDING`] places until dropped.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Verifier {
    /// `native`: connection settings (timeouts, engine-wide certificate acceptance).
    pub fn new(
        db: DatabaseConnection,
        key: [u8; 32],
        bus: EventBus,
        native: NativeOptions,
    ) -> Self {
        Self {
            db,
            key,
            bus,
            native,
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn reserve(&self) -> Result<Pending> {
        if self.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(ServiceError::Conflict(format!(
                "{MAX_PENDING} verifications are already running or waiting; try again in a few minutes"
            )));
        }
        Ok(Pending(self.pending.clone()))
    }

    /// Start verifying a finished job the actor may see. Returns the job marked
    /// `running`; the report is stored with it when the comparison ends.
    pub async fn start(&self, actor: &Actor, job_id: i64) -> Result<job::Model> {
        let place = self.reserve()?;
        let txn = crate::db::write_txn(&self.db).await?;
        let job = job::Entity::find_by_id(job_id)
            .one(&txn)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let task = task::Entity::find_by_id(job.task_id)
            .one(&txn)
            .await?
            .filter(|t| actor.is_admin() || Some(t.owner_id) == actor.id)
            .ok_or(ServiceError::NotFound)?;
        let status: JobStatus = job
            .status
            .parse()
            .map_err(|_| ServiceError::Internal("bad job status".into()))?;
        if !status.is_final() || status == JobStatus::Interrupted {
            return Err(ServiceError::Conflict(format!(
                "job {job_id} is {status}; it can be verified once it has finished"
            )));
        }
        if Verification::of(&job).is_some_and(|v| v.status == VerifyStatus::Running) {
            return Err(ServiceError::Conflict(format!(
                "job {job_id} is being verified already; the report follows when it ends"
            )));
        }
        let spec = self.spec(&task, &job)?;
        let now = Utc::now();
        let mut a: job::ActiveModel = job.into();
        a.verify_status = Set(Some(VerifyStatus::Running.as_str().into()));
        a.verify_report = Set(None);
        a.verified_at = Set(Some(now));
        let job = a.update(&txn).await?;
        audit::record(&txn, actor, Entry::ok("job.verify").on("job", job_id)).await?;
        txn.commit().await?;
        self.publish(&task, job_id, VerifyStatus::Running);
        let this = self.clone();
        tokio::spawn(async move {
            let _place = place;
            this.run(task, job_id, spec).await;
        });
        Ok(job)
    }

    /// What the verifier needs from the job: hosts, users, the stored passwords and the
    /// task's options (folder filters and age/size limits apply to both sides).
    fn spec(&self, task: &task::Model, job: &job::Model) -> Result<VerifySpec> {
        let (Some(p1), Some(p2)) = (job.password1.as_deref(), job.password2.as_deref()) else {
            return Err(ServiceError::Conflict(format!(
                "the stored mailbox passwords of job {} were wiped after the retention period; \
                 retry the job with new passwords, then verify it",
                job.id
            )));
        };
        let undecryptable = || {
            ServiceError::Conflict(format!(
                "the stored mailbox passwords of job {} cannot be decrypted (was the secret key \
                 changed?); retry the job with new passwords, then verify it",
                job.id
            ))
        };
        let password1 =
            credentials::decrypt(&self.key, job.id, "password1", p1).ok_or_else(undecryptable)?;
        let password2 =
            credentials::decrypt(&self.key, job.id, "password2", p2).ok_or_else(undecryptable)?;
        let options: MigrationOptions = serde_json::from_str(&task.options)
            .map_err(|e| ServiceError::Internal(format!("stored options are unreadable: {e}")))?;
        let host = |h: &str| {
            parse_host(h).map_err(|e| ServiceError::Internal(format!("stored host {h:?}: {e}")))
        };
        Ok(VerifySpec {
            host1: host(&job.host1)?,
            user1: job.user1.clone(),
            password1,
            host2: host(&job.host2)?,
            user2: job.user2.clone(),
            password2,
            options,
            native: self.native.clone(),
        })
    }

    async fn run(&self, task: task::Model, job_id: i64, spec: VerifySpec) {
        let report = {
            // The semaphore lives as long as the verifier: acquiring cannot fail.
            let _slot = self.slots.acquire().await;
            match tokio::time::timeout(TIMEOUT, verify(&spec)).await {
                Ok(report) => report,
                Err(_) => VerifyReport {
                    error: Some(format!(
                        "The comparison took longer than {} minutes and was stopped.",
                        TIMEOUT.as_secs() / 60
                    )),
                    checked_at: Utc::now().to_rfc3339(),
                    ..VerifyReport::default()
                },
            }
        };
        let status = VerifyStatus::of(&report);
        let stored = job::Entity::update_many()
            .col_expr(job::Column::VerifyStatus, Expr::value(status.as_str()))
            .col_expr(
                job::Column::VerifyReport,
                Expr::value(serde_json::to_string(&report).ok()),
            )
            .col_expr(job::Column::VerifiedAt, Expr::value(Utc::now()))
            .filter(job::Column::Id.eq(job_id))
            .exec(&self.db)
            .await;
        match stored {
            Ok(_) => self.publish(&task, job_id, status),
            // The report is lost, not the mailboxes; the row stays `running` until stale.
            Err(e) => tracing::error!(job_id, error = %e, "cannot store a verification report"),
        }
        tracing::info!(job_id, status = status.as_str(), "verification ended");
    }

    fn publish(&self, task: &task::Model, job_id: i64, status: VerifyStatus) {
        self.bus.publish(Event {
            owner_id: task.owner_id,
            task_id: task.id,
            job_id: Some(job_id),
            kind: EventKind::JobVerify {
                verify_status: status.as_str().into(),
            },
            origin: String::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_with(status: Option<&str>, at: Option<chrono::DateTime<Utc>>) -> job::Model {
        job::Model {
            id: 1,
            task_id: 1,
            position: 1,
            user1: "a".into(),
            user2: "b".into(),
            password1: None,
            password2: None,
            host1: "h1".into(),
            host2: "h2".into(),
            extra_args: None,
            status: "succeeded".into(),
            attempts: 1,
            next_attempt_at: None,
            cancel_requested: false,
            claimed_by: None,
            heartbeat_at: None,
            exit_code: None,
            exit_name: None,
            reason: None,
            errors: None,
            messages_done: 0,
            messages_total: None,
            bytes_done: 0,
            bytes_total: None,
            folder_index: None,
            folder_count: None,
            folder_name: None,
            eta_secs: None,
            messages_transferred: None,
            messages_skipped: None,
            errors_count: None,
            bytes_transferred: None,
            duration_secs: None,
            sync_ok: None,
            unidentified: None,
            summary: None,
            log_path: None,
            verify_status: status.map(Into::into),
            verify_report: None,
            verified_at: at,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_lost_running_verification_becomes_an_error() {
        assert!(Verification::of(&job_with(None, None)).is_none());
        let fresh = Verification::of(&job_with(Some("running"), Some(Utc::now()))).unwrap();
        assert_eq!(fresh.status, VerifyStatus::Running);
        assert!(fresh.report.is_none());
        let old = Utc::now() - STALE_AFTER - chrono::Duration::seconds(1);
        let lost = Verification::of(&job_with(Some("running"), Some(old))).unwrap();
        assert_eq!(lost.status, VerifyStatus::Error);
        assert!(
            lost.report
                .unwrap()
                .error
                .unwrap()
                .contains("start it again")
        );
    }

    #[test]
    fn status_of_a_report() {
        let mut r = VerifyReport::default();
        assert_eq!(VerifyStatus::of(&r), VerifyStatus::Differs);
        r.identical = true;
        assert_eq!(VerifyStatus::of(&r), VerifyStatus::Identical);
        r.error = Some("Host1: refused".into());
        assert_eq!(VerifyStatus::of(&r), VerifyStatus::Error);
        for s in ["running", "identical", "differs", "error"] {
            assert_eq!(VerifyStatus::parse(s).unwrap().as_str(), s);
        }
    }
}
