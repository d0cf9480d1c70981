//! Submitting tasks and counting their jobs. Job ids are reserved in bulk inside the write transaction, so the
//! password ciphertexts (bound to id + field) can go in with multi-row INSERTs. These
//! tests hold that scheme to its promises on both backends: concurrent submissions never
//! share an id, every ciphertext opens only with its own row id, and ids of deleted jobs
//! are never handed out again (job log files are named after them).

use std::collections::HashSet;

use pymap::service::{credentials, job_state, task_actions};

use crate::{
    harness::Backend,
    pool::{admin, jobs_of, pool_app, submit},
};

fn batch(task: usize, n: usize) -> String {
    (1..=n)
        .map(|i| format!("user{i}@t{task}.example.com pw-{task}-{i}\n"))
        .collect()
}

async fn bulk_ids(backend: Backend) {
    // Concurrency 0: nothing runs, the test looks at what the submission wrote.
    let Some(app) = pool_app(backend, |c| c.workers.concurrency = 0).await else {
        return;
    };
    let batches = [batch(1, 300), batch(2, 300), batch(3, 300)];
    let (a, b, c) = tokio::join!(
        submit(&app, "src.example.com", "dst.example.com", &batches[0]),
        submit(&app, "src.example.com", "dst.example.com", &batches[1]),
        submit(&app, "src.example.com", "dst.example.com", &batches[2]),
    );
    let tasks = [a.unwrap(), b.unwrap(), c.unwrap()];
    let key = &app.state.keys.credentials;
    let mut seen = HashSet::new();
    let mut highest = 0;
    for (t, task) in tasks.iter().enumerate() {
        let jobs = jobs_of(&app, task.id).await;
        assert_eq!(jobs.len(), 300);
        for (i, job) in jobs.iter().enumerate() {
            assert!(seen.insert(job.id), "job id {} handed out twice", job.id);
            assert_eq!(job.position as usize, i + 1);
            assert_eq!(job.user1, format!("user{}@t{}.example.com", i + 1, t + 1));
            let sealed = job.password1.as_deref().expect("password1 stored");
            let clear = credentials::decrypt(key, job.id, "password1", sealed)
                .expect("ciphertext opens with its own id");
            assert_eq!(clear.expose(), format!("pw-{}-{}", t + 1, i + 1));
            // Bound to the row and the field: another id or field does not open it.
            assert!(credentials::decrypt(key, job.id + 1, "password1", sealed).is_none());
            assert!(credentials::decrypt(key, job.id, "password2", sealed).is_none());
            assert!(
                !String::from_utf8_lossy(sealed).contains("pw-"),
                "password stored in clear"
            );
            highest = highest.max(job.id);
        }
    }
    // Delete the task holding the highest ids: the next task must not reuse them.
    let owner = admin(&app).await;
    let last = tasks.iter().max_by_key(|t| t.id).unwrap();
    job_state::cancel_task(&app.state.db, &app.state.events, &owner, last.id)
        .await
        .unwrap();
    task_actions::delete(&app.state.db, &owner, last.id, &app.state.config.log_dir())
        .await
        .unwrap();
    let next = submit(&app, "src.example.com", "dst.example.com", &batch(4, 5))
        .await
        .unwrap();
    let jobs = jobs_of(&app, next.id).await;
    assert_eq!(jobs.len(), 5);
    for job in &jobs {
        assert!(
            job.id > highest,
            "job id {} reused (deleted jobs went up to {highest})",
            job.id
        );
    }
    app.stop().await;
}

mod bulk_ids {
    use crate::harness::Backend;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::bulk_ids(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::bulk_ids(Backend::Postgres).await
    }
}

/// Many jobs finishing at the same moment: the task's counters must end exact. On
/// PostgreSQL (READ COMMITTED) concurrent finishers used to count without each other's
/// uncommitted change and leave the task "running 1" forever.
async fn counts_exact_when_jobs_finish_together(backend: Backend) {
    let Some(app) = pool_app(backend, |c| {
        c.workers.concurrency = 20;
        c.workers.per_source_host = 20;
        c.workers.per_destination_host = 20;
    })
    .await
    else {
        return;
    };
    for round in 0..3 {
        let batch: String = (1..=40)
            .map(|i| format!("standin-a+speed0+startup0@m{i}.r{round}.example.com pw\n"))
            .collect();
        let task = submit(&app, "src.example.com", "dst.example.com", &batch)
            .await
            .unwrap();
        let jobs =
            crate::pool::wait_final(&app, task.id, std::time::Duration::from_secs(120)).await;
        assert!(
            jobs.iter().all(|j| j.status == "warning"),
            "fixture a ends in warning"
        );
        // The last finisher's refresh is the one that counts; give it its commit.
        let mut task = crate::pool::task_of(&app, task.id).await;
        for _ in 0..50 {
            if task.jobs_running == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            task = crate::pool::task_of(&app, task.id).await;
        }
        assert_eq!(
            (task.jobs_running, task.jobs_queued, task.jobs_warning),
            (0, 0, 40),
            "round {round}: {task:?}"
        );
        assert_eq!(task.status, "warning", "round {round}");
    }
    app.stop().await;
}

mod counts_exact_when_jobs_finish_together {
    use crate::harness::Backend;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::counts_exact_when_jobs_finish_together(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::counts_exact_when_jobs_finish_together(Backend::Postgres).await
    }
}
