//! Page weight of the web UI, for BENCHMARKS.md (a measurement, not a pass/fail timing):
//! server time of the dashboard and of a task detail page with 500 mailboxes, and the
//! bytes of CSS and JavaScript a browser downloads.
//!
//! ```sh
//! source /tmp/services.env   # not needed: SQLite only
//! cargo test --release --test it web_weight -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use entity::job;
use pymap::service::job_state;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

use crate::{
    harness::{ADMIN_PASSWORD, Backend, login},
    pool::{pool_app, submit},
};

const JOBS: usize = 500;
const RUNS: usize = 30;

/// Give the jobs a realistic mix of states and numbers without running them.
async fn spread_states(db: &sea_orm::DatabaseConnection, task_id: i64) {
    let groups = [
        ("succeeded", 0, 300),
        ("warning", 300, 340),
        ("failed", 340, 360),
        ("running", 360, 368),
    ];
    // Finished runs keep their whole summary (statistics, errors) as JSON: a few kB.
    let summary = format!(
        "{{\"stats\":{{{}}},\"errors\":[{}]}}",
        (0..40)
            .map(|i| format!("\"field_{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(","),
        (0..10)
            .map(|i| format!("\"Err {i}/10: a long imapsync error line about folder INBOX/{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    for (status, from, to) in groups {
        let mut update = job::Entity::update_many()
            .col_expr(job::Column::Status, Expr::value(status))
            .col_expr(job::Column::MessagesDone, Expr::value(1234_i64))
            .col_expr(job::Column::MessagesTotal, Expr::value(Some(2000_i64)))
            .col_expr(job::Column::BytesDone, Expr::value(123_456_789_i64))
            .col_expr(job::Column::BytesTotal, Expr::value(Some(234_567_890_i64)))
            .col_expr(job::Column::FolderIndex, Expr::value(Some(3)))
            .col_expr(job::Column::FolderCount, Expr::value(Some(16)))
            .col_expr(job::Column::FolderName, Expr::value(Some("INBOX/Projects")))
            .col_expr(job::Column::EtaSecs, Expr::value(Some(95_i64)))
            .col_expr(job::Column::Attempts, Expr::value(1))
            .col_expr(
                job::Column::LogPath,
                Expr::value(Some("/nonexistent/job.log")),
            );
        if status != "running" {
            update = update
                .col_expr(job::Column::MessagesTransferred, Expr::value(Some(1230_i64)))
                .col_expr(job::Column::MessagesSkipped, Expr::value(Some(4_i64)))
                .col_expr(job::Column::ErrorsCount, Expr::value(Some(0_i64)))
                .col_expr(job::Column::DurationSecs, Expr::value(Some(812.5_f64)))
                .col_expr(job::Column::FinishedAt, Expr::value(Some(chrono::Utc::now())))
                .col_expr(job::Column::Summary, Expr::value(Some(summary.clone())))
                .col_expr(
                    job::Column::Reason,
                    Expr::value(Some("4 messages were not copied: 3 duplicates on host1 and 1 without Message-ID/Received.")),
                );
        }
        update
            .filter(job::Column::TaskId.eq(task_id))
            .filter(job::Column::Position.gt(from))
            .filter(job::Column::Position.lte(to))
            .exec(db)
            .await
            .unwrap();
    }
    job_state::refresh_task(db, task_id).await.unwrap();
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100]),
        ms(*times.last().unwrap())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for BENCHMARKS.md; run with --ignored --nocapture"]
async fn web_weight() {
    // No worker slots: the seeded states stay as they are.
    let Some(app) = pool_app(Backend::Sqlite, |c| c.workers.concurrency = 0).await else {
        return;
    };
    let batch: String = (1..=JOBS)
        .map(|i| format!("user{i}@old.example.com pw{i} user{i}@new.example.com pw{i}\n"))
        .collect();
    let task = submit(&app, "imap.old.example.com", "imap.new.example.com", &batch)
        .await
        .unwrap();
    spread_states(&app.state.db, task.id).await;
    for i in 0..50 {
        submit(
            &app,
            "a.example.com",
            "b.example.com",
            &format!("u{i}@x.example.com pw\n"),
        )
        .await
        .unwrap();
    }
    let client = app.client();
    assert_eq!(
        login(&app, &client, "admin", ADMIN_PASSWORD).await.status(),
        303
    );
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("\n## page weight ({build} build, SQLite, {JOBS} mailboxes in one task)");
    for (name, path) in [
        ("dashboard", "/".to_string()),
        ("task detail", format!("/tasks/{}", task.id)),
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for run in 0..RUNS + 3 {
            let started = Instant::now();
            let resp = client.get(app.url(&path)).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let body = resp.bytes().await.unwrap();
            // The first runs warm caches (templates, connections).
            if run >= 3 {
                times.push(started.elapsed());
            }
            size = body.len();
        }
        if name == "task detail" {
            let html = client
                .get(app.url(&path))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_eq!(html.matches("<tr id=\"job-").count(), JOBS);
        }
        println!("{name:12} {} ; HTML {} kB", summary(times), size / 1000);
    }
    println!(
        "CSS + JS     {} bytes ({:.1} kB), served once and cached (immutable, hashed names)",
        pymap::web::asset_bytes(),
        pymap::web::asset_bytes() as f64 / 1000.0
    );
    app.stop().await;
}
