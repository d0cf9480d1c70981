//! The pool's batched writes (`service::pool_writes`) on both databases: several ends in one
//! transaction, what each records, and progress that never overwrites a written end. The
//! pool itself is stopped, so these writes are the only ones.

use std::time::Duration;

use chrono::Utc;
use entity::job;
use pymap::{
    service::pool_writes::{self, RunEnd, record_ends},
    worker::{
        engine::RunResult,
        imapsync::{
            exit::Outcome,
            parse::{Progress, RunSummary},
        },
        queue::{self, Limits},
        status::JobStatus,
    },
};
use sea_orm::EntityTrait;

use crate::{
    harness::Backend,
    pool::{jobs_of, lines, pool_app, submit, task_of},
};

fn end(job: &job::Model, status: JobStatus, secs: f64, retry: bool) -> RunEnd {
    let mut summary = RunSummary::default();
    summary.stats.messages_transferred = Some(7);
    summary.progress.messages_done = 9;
    RunEnd {
        job_id: job.id,
        task_id: job.task_id,
        attempt: job.attempts,
        result: RunResult {
            outcome: Outcome {
                status,
                exit_code: Some(if status == JobStatus::Failed { 102 } else { 0 }),
                exit_name: "TEST".into(),
                reason: format!("Ended {status:?}."),
                retryable: retry,
            },
            summary,
        },
        duration_secs: secs,
        retry_at: retry.then(|| Utc::now() + chrono::Duration::minutes(5)),
    }
}

async fn claim_all(app: &crate::harness::TestApp) -> Vec<i64> {
    let limits = Limits {
        per_source_host: 100,
        per_destination_host: 100,
    };
    let log_dir = app.state.config.log_dir();
    queue::claim(&app.state.db, "test-worker", limits, 100, &log_dir)
        .await
        .unwrap()
}

async fn ends_in_one_transaction(backend: Backend) {
    let Some(app) = pool_app(backend, |_| {}).await else {
        return;
    };
    app.state.pool.shutdown().await; // nothing else writes these jobs
    let task = submit(&app, "src.example.com", "dst.example.com", &lines("a", 3))
        .await
        .unwrap();
    assert_eq!(claim_all(&app).await.len(), 3);
    let jobs = jobs_of(&app, task.id).await;
    let db = &app.state.db;

    // Two ends and one retry, written together.
    let ends = [
        end(&jobs[0], JobStatus::Succeeded, 1.5, false),
        end(&jobs[1], JobStatus::Warning, 2.0, false),
        end(&jobs[2], JobStatus::Failed, 0.5, true),
    ];
    let tasks = record_ends(db, &ends).await.unwrap();
    assert_eq!(tasks.len(), 1, "one recount for the task");
    let t = &tasks[0];
    assert_eq!(
        (
            t.jobs_succeeded,
            t.jobs_warning,
            t.jobs_queued,
            t.jobs_running
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(t.status, "running", "a retry is still to come");
    let after = jobs_of(&app, task.id).await;
    assert_eq!(after[0].status, "succeeded");
    assert_eq!(after[0].duration_secs, Some(1.5));
    assert!(after[0].finished_at.is_some() && after[0].claimed_by.is_none());
    assert_eq!(
        (after[1].messages_transferred, after[1].messages_done),
        (Some(7), 9)
    );
    let retried = &after[2];
    assert_eq!(retried.status, "queued");
    assert!(retried.finished_at.is_none() && retried.next_attempt_at.is_some());
    let reason = retried.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("Ended Failed. Retrying automatically at ")
            && reason.ends_with("(attempt 1 failed)."),
        "{reason}"
    );

    // The second attempt adds its run time to the first's.
    let mut active: job::ActiveModel = retried.clone().into();
    use sea_orm::{ActiveModelTrait, Set};
    active.next_attempt_at = Set(None);
    active.update(db).await.unwrap();
    assert_eq!(claim_all(&app).await, vec![retried.id]);
    let second = job::Entity::find_by_id(retried.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.attempts, 2);

    // Progress handed over late for an ended job leaves its final figures alone; a
    // running job's progress and heartbeat are written.
    let late = Progress {
        messages_done: 1,
        ..Progress::default()
    };
    let live = Progress {
        messages_done: 4,
        messages_total: Some(10),
        ..Progress::default()
    };
    let before = second.heartbeat_at;
    tokio::time::sleep(Duration::from_millis(20)).await;
    pool_writes::save_progress(db, &[(jobs[0].id, late), (second.id, live)])
        .await
        .unwrap();
    let first = job::Entity::find_by_id(jobs[0].id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.messages_done, 9, "the end's figure stays");
    let running = job::Entity::find_by_id(second.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (running.messages_done, running.messages_total),
        (4, Some(10))
    );
    assert!(
        running.heartbeat_at > before,
        "progress says the job is alive"
    );

    record_ends(db, &[end(&second, JobStatus::Succeeded, 2.25, false)])
        .await
        .unwrap();
    let done = job::Entity::find_by_id(second.id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.status.as_str(), done.duration_secs),
        ("succeeded", Some(2.75))
    );
    let t = task_of(&app, task.id).await;
    assert_eq!(
        (t.status.as_str(), t.jobs_succeeded, t.jobs_warning),
        ("warning", 2, 1)
    );
    assert!(t.finished_at.is_some());
    app.stop().await;
}

mod ends_in_one_transaction {
    use crate::harness::Backend;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::ends_in_one_transaction(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::ends_in_one_transaction(Backend::Postgres).await
    }
}
