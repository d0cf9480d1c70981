//! The worker pool and its database queue, driven end to end through the service layer.
//!
//! These tests check process handling, not migration: the engine runs
//! `imapsync-standin`, which replays captured real imapsync runs (stdout, exit status,
//! signal behaviour, timing) and moves no mail. Scenario and speed ride in the user name
//! (`standin-<fixture>+speed<X>@…`, see the stand-in's doc).

use std::time::{Duration, Instant};

use entity::{job, task};
use pymap::{
    config::Config,
    service::{
        Actor, ServiceError, accounts,
        auth::actor_for,
        imapsync_options::MigrationOptions,
        job_state,
        tasks::{self, BatchInput, NewTask, TaskEnv},
    },
    worker::status::JobStatus,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::harness::{Backend, Options, TestApp};

pub fn standin() -> String {
    env!("CARGO_BIN_EXE_imapsync-standin").to_string()
}

/// An app whose imapsync is the stand-in, with pool settings from `tweak`.
pub async fn pool_app(
    backend: Backend,
    tweak: impl FnOnce(&mut Config) + Send + 'static,
) -> Option<TestApp> {
    TestApp::start(Options::new(backend, false).with(move |c| {
        c.imapsync_path = Some(standin().into());
        c.workers.cancel_grace_secs = 2;
        c.workers.retry_base_secs = 1;
        tweak(c);
    }))
    .await
}

pub async fn admin(app: &TestApp) -> Actor {
    let user = accounts::find_by_name(&app.state.db, "admin")
        .await
        .unwrap()
        .unwrap();
    actor_for(&user, None)
}

/// Submit a text batch between two hosts as admin and wake the pool.
pub async fn submit(
    app: &TestApp,
    source: &str,
    destination: &str,
    batch: &str,
) -> Result<task::Model, ServiceError> {
    let env = TaskEnv {
        db: &app.state.db,
        config: &app.state.config,
        credentials_key: &app.state.keys.credentials,
        engines: app.state.pool.engines(),
    };
    let new = NewTask {
        label: String::new(),
        source: source.into(),
        destination: destination.into(),
        engine: "imapsync".into(),
        options: MigrationOptions::default(),
        extra_args: String::new(),
        batch: BatchInput::Text(batch.into()),
        owner: None,
    };
    let task = tasks::create(&env, &admin(app).await, new).await?;
    app.state.pool.wake();
    Ok(task)
}

/// One batch line with the same stand-in user on both sides.
pub fn line(scenario: &str, password: &str) -> String {
    format!("standin-{scenario}@example.com {password}\n")
}

/// `n` lines of one scenario, told apart by their domain (a batch refuses duplicates).
pub fn lines(scenario: &str, n: usize) -> String {
    (1..=n)
        .map(|i| format!("standin-{scenario}@m{i}.example.com pw\n"))
        .collect()
}

pub async fn jobs_of(app: &TestApp, task_id: i64) -> Vec<job::Model> {
    job::Entity::find()
        .filter(job::Column::TaskId.eq(task_id))
        .order_by_asc(job::Column::Position)
        .all(&app.state.db)
        .await
        .unwrap()
}

pub async fn task_of(app: &TestApp, task_id: i64) -> task::Model {
    task::Entity::find_by_id(task_id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
}

/// Wait until every job of the task is final.
pub async fn wait_final(app: &TestApp, task_id: i64, limit: Duration) -> Vec<job::Model> {
    let started = Instant::now();
    loop {
        let jobs = jobs_of(app, task_id).await;
        if jobs
            .iter()
            .all(|j| j.status.parse::<JobStatus>().unwrap().is_final() && j.status != "interrupted")
        {
            return jobs;
        }
        assert!(
            started.elapsed() < limit,
            "task {task_id} not finished after {limit:?}: {:?}",
            jobs.iter()
                .map(|j| (&j.user1, &j.status))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_running(app: &TestApp, task_id: i64) -> job::Model {
    let started = Instant::now();
    loop {
        if let Some(j) = jobs_of(app, task_id)
            .await
            .into_iter()
            .find(|j| j.status == "running" && j.messages_done > 0)
        {
            return j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no job started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn statuses_and_retries(backend: Backend) {
    let Some(app) = pool_app(backend, |c| c.workers.max_attempts = 2).await else {
        return;
    };
    let mut events = app.state.events.subscribe();
    let batch = [
        line("g+speed20", "pw-g"),
        line("a+speed20", "pw-a"),
        line("c+speed20", "pw-c"),
        line("e+speed20", "pw-e"),
    ]
    .concat();
    let task = submit(&app, "src.example.com", "dst.example.com:143", &batch)
        .await
        .unwrap();
    let jobs = wait_final(&app, task.id, Duration::from_secs(60)).await;
    let by_user = |prefix: &str| jobs.iter().find(|j| j.user1.starts_with(prefix)).unwrap();

    let g = by_user("standin-g");
    assert_eq!(g.status, "succeeded", "{:?}", g.reason);
    let a = by_user("standin-a");
    assert_eq!(a.status, "warning");
    assert!(
        a.reason.as_deref().unwrap().contains("4 messages"),
        "{:?}",
        a.reason
    );
    assert_eq!(a.messages_done, 300);
    assert_eq!(a.messages_transferred, Some(296));
    // Authentication failure: never retried.
    let c = by_user("standin-c");
    assert_eq!(
        (c.status.as_str(), c.exit_code, c.attempts),
        ("failed", Some(161), 1)
    );
    // Connection refused (transient): retried once with backoff, then failed.
    let e = by_user("standin-e");
    assert_eq!(
        (e.status.as_str(), e.exit_code, e.attempts),
        ("failed", Some(102), 2)
    );
    let log = std::fs::read_to_string(e.log_path.as_deref().unwrap()).unwrap();
    let starts: Vec<chrono::DateTime<chrono::Utc>> = log
        .lines()
        .filter_map(|l| l.strip_prefix("pymap: attempt "))
        .map(|l| l.rsplit(" started at ").next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(starts.len(), 2, "both attempts in one log");
    assert!(
        starts[1] - starts[0] >= chrono::Duration::seconds(1),
        "backoff before the retry"
    );

    let t = task_of(&app, task.id).await;
    assert_eq!(
        (
            t.jobs_succeeded,
            t.jobs_warning,
            t.jobs_failed,
            t.jobs_queued,
            t.jobs_running
        ),
        (1, 1, 2, 0, 0)
    );
    assert_eq!(t.status, "failed");
    assert!(t.finished_at.is_some() && t.started_at.is_some());

    // No pass file or work dir survives, no password in a log or in the database.
    // In RAM by default (config::run_dir), so the passwords never reached a disk.
    let run_dir = app.state.config.run_dir();
    if std::env::var_os("RUNTIME_DIRECTORY").is_none() && std::path::Path::new("/dev/shm").is_dir()
    {
        assert!(run_dir.starts_with("/dev/shm"), "{run_dir:?}");
    }
    assert_eq!(
        std::fs::read_dir(&run_dir).unwrap().count(),
        0,
        "work dirs removed"
    );
    for j in &jobs {
        let log = std::fs::read_to_string(j.log_path.as_deref().unwrap()).unwrap();
        for pw in ["pw-g", "pw-a", "pw-c", "pw-e"] {
            assert!(!log.contains(pw), "password in log of job {}", j.id);
            assert!(!j.reason.as_deref().unwrap_or_default().contains(pw));
        }
        let blob = j.password1.as_ref().unwrap();
        assert!(
            !String::from_utf8_lossy(blob).contains("pw-"),
            "encrypted at rest"
        );
    }

    // Live events were published for progress, status changes and log lines.
    let (mut progress, mut status, mut lines) = (0, 0, 0);
    while let Ok(ev) = events.try_recv() {
        match &ev.kind {
            pymap::worker::events::EventKind::JobProgress { .. } => progress += 1,
            pymap::worker::events::EventKind::JobStatus { .. } => status += 1,
            pymap::worker::events::EventKind::LogLine { .. } => lines += 1,
            _ => {}
        }
    }
    assert!(
        progress >= 1 && status >= 8 && lines > 300,
        "progress {progress} status {status} lines {lines}"
    );
    app.stop().await;
}

async fn limits_and_fairness(backend: Backend) {
    let Some(app) = pool_app(backend, |c| {
        c.workers.concurrency = 3;
        c.workers.per_destination_host = 2;
    })
    .await
    else {
        return;
    };
    let big = submit(
        &app,
        "src.example.com",
        "one.example.com",
        &lines("a+speed4", 6),
    )
    .await
    .unwrap();
    let small = submit(
        &app,
        "src.example.com",
        "two.example.com",
        &lines("a+speed4", 2),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (mut max_total, mut max_one) = (0, 0);
    loop {
        let jobs = [jobs_of(&app, big.id).await, jobs_of(&app, small.id).await].concat();
        let running: Vec<_> = jobs.iter().filter(|j| j.status == "running").collect();
        max_total = max_total.max(running.len());
        max_one = max_one.max(
            running
                .iter()
                .filter(|j| j.host2 == "one.example.com")
                .count(),
        );
        if jobs
            .iter()
            .all(|j| j.status != "queued" && j.status != "running")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "batch did not finish"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(max_total, 3, "global concurrency reached and respected");
    assert_eq!(max_one, 2, "per-destination limit respected");
    // The small task did not wait for the big one to drain.
    let big_jobs = jobs_of(&app, big.id).await;
    let small_first = jobs_of(&app, small.id).await[0].started_at.unwrap();
    assert!(
        small_first < big_jobs[3].started_at.unwrap(),
        "fair interleaving"
    );
    app.stop().await;
}

async fn cancel_task_and_hanging_job(backend: Backend) {
    let Some(app) = pool_app(backend, |c| {
        c.workers.concurrency = 1;
        c.workers.cancel_grace_secs = 1;
    })
    .await
    else {
        return;
    };
    // The first job ignores TERM (imapsync sometimes hangs up to --timeout): KILL follows.
    let batch = line("a+speed1+hang", "pw") + &lines("a+speed1", 2);
    let task = submit(&app, "src.example.com", "dst.example.com", &batch)
        .await
        .unwrap();
    let running = wait_running(&app, task.id).await;
    let asked = Instant::now();
    job_state::cancel_task(
        &app.state.db,
        &app.state.events,
        &admin(&app).await,
        task.id,
    )
    .await
    .unwrap();
    let jobs = wait_final(&app, task.id, Duration::from_secs(30)).await;
    let elapsed = asked.elapsed();
    assert!(
        jobs.iter().all(|j| j.status == "cancelled"),
        "{:?}",
        jobs.iter().map(|j| &j.status).collect::<Vec<_>>()
    );
    assert!(
        elapsed >= Duration::from_secs(1),
        "waited the grace period before KILL"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "did not wait for imapsync's --timeout"
    );
    let first = jobs.iter().find(|j| j.id == running.id).unwrap();
    assert_eq!(first.exit_name.as_deref(), Some("SIGKILL"));
    assert!(
        jobs.iter()
            .filter(|j| j.id != running.id)
            .all(|j| j.attempts == 0),
        "queued jobs never started"
    );
    let log = std::fs::read_to_string(first.log_path.as_deref().unwrap()).unwrap();
    assert!(log.contains("SIGKILL"), "the log says what pymap did");
    assert_eq!(task_of(&app, task.id).await.status, "cancelled");
    app.stop().await;
}

async fn restart_recovery(backend: Backend) {
    let Some(app) = pool_app(backend, |_| {}).await else {
        return;
    };
    let task = submit(
        &app,
        "src.example.com",
        "dst.example.com",
        &line("a+speed2", "pw"),
    )
    .await
    .unwrap();
    wait_running(&app, task.id).await;
    let config = (*app.state.config).clone();
    let dir = app.into_dir().await;
    // Graceful stop: the running job is marked interrupted, not failed or cancelled.
    let db = pymap::db::connect(&config.database_url(), Duration::from_secs(5), 4)
        .await
        .unwrap();
    let j = job::Entity::find()
        .filter(job::Column::TaskId.eq(task.id))
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.status, "interrupted", "{:?}", j.reason);
    // Now pretend the process had died instead (kill -9): still `running`, silent heartbeat.
    use sea_orm::{ActiveModelTrait, Set};
    let mut crashed: job::ActiveModel = j.into();
    crashed.status = Set("running".into());
    crashed.claimed_by = Set(Some("dead-host:1:x".into()));
    crashed.heartbeat_at = Set(Some(chrono::Utc::now() - chrono::Duration::hours(1)));
    crashed.update(&db).await.unwrap();
    // A pass file left behind by the dead process is removed at start.
    let stale = config.run_dir().join("job-999999");
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&stale)
        .unwrap();
    std::fs::write(stale.join("passfile1"), "old secret\n").unwrap();
    // Start again on the same data: the job is queued again and completes.
    let app = TestApp::start_with(config, dir).await;
    // The pool starts with the server task: give it a moment.
    let started = Instant::now();
    while stale.exists() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!stale.exists(), "stale pass files removed at start");
    let jobs = wait_final(&app, task.id, Duration::from_secs(60)).await;
    assert_eq!(jobs[0].status, "warning");
    assert_eq!(jobs[0].attempts, 2);
    app.stop().await;
}

async fn crash_recovery_and_manual_retry(backend: Backend) {
    let Some(app) = pool_app(backend, |c| c.workers.stale_after_secs = 1).await else {
        return;
    };
    let task = submit(
        &app,
        "src.example.com",
        "dst.example.com",
        &line("c+speed20", "pw"),
    )
    .await
    .unwrap();
    let jobs = wait_final(&app, task.id, Duration::from_secs(30)).await;
    assert_eq!(jobs[0].status, "failed");
    let actor = admin(&app).await;
    let key = app.state.keys.credentials;
    // Retry: queued again, runs again.
    job_state::retry_job(
        &app.state.db,
        &key,
        &app.state.events,
        &actor,
        jobs[0].id,
        None,
    )
    .await
    .unwrap();
    app.state.pool.wake();
    let jobs = wait_final(&app, task.id, Duration::from_secs(30)).await;
    assert_eq!((jobs[0].status.as_str(), jobs[0].attempts), ("failed", 1));
    // After the retention period the passwords are gone and a retry asks for them.
    assert_eq!(
        job_state::wipe_expired_credentials(&app.state.db, 0)
            .await
            .unwrap(),
        1
    );
    let j = &jobs_of(&app, task.id).await[0];
    assert!(j.password1.is_none() && j.password2.is_none());
    let err = job_state::retry_job(&app.state.db, &key, &app.state.events, &actor, j.id, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("password1"), "{err}");
    // A user who is not the owner cannot touch it (and does not learn it exists).
    let bob = accounts::create(
        &app.state.db,
        &Actor::cli(),
        "bob",
        "bob-password-1",
        pymap::service::Role::User,
    )
    .await
    .unwrap();
    let err = job_state::cancel_task(
        &app.state.db,
        &app.state.events,
        &actor_for(&bob, None),
        task.id,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound));
    app.stop().await;
}

macro_rules! backends {
    ($($name:ident),*) => {$(
        mod $name {
            use crate::harness::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(Backend::Postgres).await }
        }
    )*};
}

backends!(
    statuses_and_retries,
    limits_and_fairness,
    cancel_task_and_hanging_job,
    restart_recovery,
    crash_recovery_and_manual_retry
);

#[tokio::test]
async fn invalid_batches_create_nothing_and_name_lines() {
    let app = pool_app(Backend::Sqlite, |_| {}).await.unwrap();
    let batch = "ok@x.example pw\nbroken-line-with-three fields here\n-evil@x pw\n";
    let err = submit(&app, "src.example.com", "dst.example.com", batch)
        .await
        .unwrap_err();
    let ServiceError::InvalidMany(errors) = err else {
        panic!("{err:?}")
    };
    assert!(errors.iter().any(|e| e.line == Some(2)), "{errors:?}");
    assert!(errors.iter().any(|e| e.line == Some(3)), "{errors:?}");
    assert!(
        task::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap()
            .is_empty(),
        "nothing created"
    );
    // Option injection through a host is refused.
    let err = submit(&app, "--help", "dst.example.com", "u@x pw\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("source"), "{err}");
    // The engine must exist.
    let app2 = TestApp::start(
        Options::new(Backend::Sqlite, false)
            .with(|c| c.imapsync_path = Some("/nonexistent/imapsync".into())),
    )
    .await
    .unwrap();
    let err = submit(&app2, "src.example.com", "dst.example.com", "u@x pw\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("imapsync"), "{err}");
    app.stop().await;
    app2.stop().await;
}
