//! Migrations through the web UI: the form (validation per line, CSV upload, check,
//! host preview), task detail with live SSE rows, logs (tail, live, search, download),
//! task and job actions, the task list, and who may see and do what.

use std::time::Duration;

use reqwest::StatusCode;

use crate::{
    harness::Backend,
    pool::{jobs_of, wait_final},
    web::{Ui, get, post, sse_until, submit_batch, submit_form},
};

const PASSWORD: &str = "Sup3r-Secret-pw";

async fn new_migration_form(backend: Backend) {
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    // Per-line errors, all at once; nothing created; passwords never sent back.
    let batch = format!(
        "standin-g@m1.example.com {PASSWORD}\n-bad@x {PASSWORD}\nonly-one-field\nstandin-g@m1.example.com {PASSWORD}\n"
    );
    let fields = [
        ("source", "src.example.com"),
        ("destination", "http://dst/"),
        ("engine", "imapsync"),
        ("max_age_days", "soon"),
        ("batch", batch.as_str()),
    ];
    let resp = submit_form(&ui, &ui.alice, "/migrate", &fields, None).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("max_age_days") && body.contains("whole number"),
        "{body}"
    );
    let fields = [
        ("max_age_days", ""),
        fields[0],
        fields[1],
        fields[2],
        fields[4],
    ];
    let resp = submit_form(&ui, &ui.alice, "/migrate", &fields, None).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("data-line=\"2\"") && body.contains("data-line=\"3\""),
        "{body}"
    );
    assert!(body.contains("destination"), "host error named: {body}");
    assert!(!body.contains(PASSWORD), "the batch is never echoed");
    assert!(body.contains("src.example.com"), "other fields are kept");
    assert_eq!(crate::pool::jobs_of(&ui.app, 1).await.len(), 0);

    // Check credentials: every line validated and its logins tried (these hosts do not
    // exist; real servers are in `login_check.rs`), no task created.
    let batch =
        format!("standin-g@m1.example.com {PASSWORD}\nstandin-a@m2.example.com {PASSWORD}\n");
    let fields = [
        ("source", "mx1"),
        ("destination", "dst.example.com"),
        ("engine", "imapsync"),
        ("batch", batch.as_str()),
    ];
    let resp = submit_form(&ui, &ui.alice, "/migrate/check", &fields, None).await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("Login check of 2 lines") && body.contains("2 of 2 lines cannot log in"),
        "{body}"
    );
    assert!(body.contains("standin-a@m2.example.com") && body.contains("mx1.mail.example.com"));
    assert!(!body.contains(PASSWORD));
    let (_, list) = get(&ui.alice, &ui.url("/tasks")).await;
    assert!(list.contains("No task matches"), "check creates nothing");

    // Host preview as you type (the user's and global patterns).
    let (status, json) = get(&ui.alice, &ui.url("/hosts/preview?host=MX7")).await;
    assert_eq!(status, 200);
    assert!(
        json.contains("mx7.mail.example.com") && json.contains("global pattern #1"),
        "{json}"
    );
    let (_, json) = get(&ui.alice, &ui.url("/hosts/preview?host=-x")).await;
    assert!(json.contains("\"ok\":false"), "{json}");
    assert_eq!(
        ui.app
            .client()
            .get(ui.url("/hosts/preview?host=a"))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );

    // CSV upload; the async (JS) variant gets its redirect as a header.
    let csv = format!(
        "user1,password1,user2,password2,host2\nstandin-g+speed50@c.example.com,\"{PASSWORD}, with comma\",u2@c.example.com,p2,mx9\n"
    );
    let token = crate::web::token(&ui, &ui.alice).await;
    let (ct, body) = crate::web::multipart(
        &[
            ("source", "src.example.com"),
            ("destination", "dst.example.com"),
            ("engine", "imapsync"),
            ("label", "From CSV"),
        ],
        Some(("batch_file", csv.as_bytes())),
    );
    let resp = ui
        .alice
        .post(ui.url(&format!("/migrate?csrf_token={token}")))
        .header("content-type", ct)
        .header("x-pymap-async", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let to = resp.headers()["x-redirect"].to_str().unwrap().to_string();
    let (status, page) = get(&ui.alice, &ui.url(&to)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("From CSV") && page.contains("started with 1 mailbox"),
        "flash shown: {page}"
    );
    assert!(
        page.contains("mx9.mail.example.com"),
        "row host override shown"
    );
    assert!(!page.contains(PASSWORD));
    let (_, again) = get(&ui.alice, &ui.url(&to)).await;
    assert!(
        !again.contains("started with 1 mailbox"),
        "a flash shows once"
    );
    ui.app.stop().await;
}

async fn live_task_and_logs(backend: Backend) {
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    let batch = "standin-a+speed4@m1.example.com pw\nstandin-g+speed10@m2.example.com pw\n";
    let task = submit_batch(&ui, &ui.alice, batch).await;
    let (status, page) = get(&ui.alice, &ui.url(&format!("/tasks/{task}"))).await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("data-sse=\"/tasks/{task}/events\"")));
    assert_eq!(page.matches("<tr id=\"job-").count(), 2);

    // Live rows: rendered HTML per changed row, ending with both at 100 %.
    let mut resp = ui
        .alice
        .get(ui.url(&format!("/tasks/{task}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut finished = std::collections::HashSet::new();
    let events = sse_until(&mut resp, Duration::from_secs(60), |event, data| {
        assert_eq!(event, "swap");
        let parts: Vec<serde_json::Value> = serde_json::from_str(data).unwrap();
        for p in parts {
            let html = p["html"].as_str().unwrap();
            if html.contains("data-status=\"warning\"")
                || html.contains("data-status=\"succeeded\"")
            {
                finished.insert(p["id"].as_str().unwrap().to_string());
            }
        }
        finished.len() == 2
    })
    .await;
    assert_eq!(finished.len(), 2, "both rows finished live: {events:?}");
    assert!(
        events
            .iter()
            .any(|(_, d)| d.contains("<progress") && d.contains("msgs")),
        "progress rows were sent"
    );
    assert!(
        events.iter().any(|(_, d)| d.contains("\"summary\"")),
        "summary updates"
    );
    drop(resp);
    let jobs = wait_final(&ui.app, task, Duration::from_secs(30)).await;
    let a = jobs
        .iter()
        .find(|j| j.user1.starts_with("standin-a"))
        .unwrap();
    let (_, page) = get(&ui.alice, &ui.url(&format!("/tasks/{task}"))).await;
    assert!(page.contains("value=\"100\""), "progress bars at 100%");

    // Log page: the tail, the live stream from an offset, search and download.
    let (status, log) = get(&ui.alice, &ui.url(&format!("/jobs/{}/log", a.id))).await;
    assert_eq!(status, 200);
    assert!(
        log.contains("pymap: attempt 1 with imapsync") && log.contains("Transfer started"),
        "{log}"
    );
    let (_, found) = get(
        &ui.alice,
        &ui.url(&format!("/jobs/{}/log?q=TRANSFER+started", a.id)),
    )
    .await;
    assert!(
        found.contains("2 lines containing") && found.contains("    4</span>  Transfer started at"),
        "{found}"
    );
    let resp = ui
        .alice
        .get(ui.url(&format!("/jobs/{}/log/download", a.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let whole = resp.text().await.unwrap();
    assert!(whole.lines().count() > 100 && !whole.contains("pw\n"));
    let mut stream = ui
        .alice
        .get(ui.url(&format!("/jobs/{}/log/stream?offset=0", a.id)))
        .send()
        .await
        .unwrap();
    let events = sse_until(&mut stream, Duration::from_secs(10), |e, d| {
        e == "lines" && d.contains("Exiting with return value")
    })
    .await;
    let text: String = events
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        text, whole,
        "the stream replays the file exactly, in whole lines"
    );
    drop(stream);

    // CSV report.
    let resp = ui
        .alice
        .get(ui.url(&format!("/tasks/{task}/report.csv")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    assert!(
        csv.starts_with("id,position,user1") && csv.lines().count() == 3,
        "{csv}"
    );
    ui.app.stop().await;
}

async fn actions_and_permissions(backend: Backend) {
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    // A slow job to cancel, a failing one to retry.
    let batch = "standin-a+speed1@m1.example.com pw\nstandin-c+speed50@m2.example.com pw\n";
    let task = submit_batch(&ui, &ui.alice, batch).await;
    let jobs = jobs_of(&ui.app, task).await;
    let (slow, bad) = (&jobs[0], &jobs[1]);

    // Bob and the anonymous see nothing of it: 404, not 403.
    let paths = [
        format!("/tasks/{task}"),
        format!("/tasks/{task}/events"),
        format!("/tasks/{task}/report.csv"),
        format!("/jobs/{}/log", slow.id),
        format!("/jobs/{}/log/stream", slow.id),
        format!("/jobs/{}/log/download", slow.id),
    ];
    for path in &paths {
        assert_eq!(get(&ui.bob, &ui.url(path)).await.0, 404, "bob {path}");
        let anon = ui.app.client().get(ui.url(path)).send().await.unwrap();
        assert_eq!(anon.status(), 303, "anonymous {path}");
    }
    for path in [
        format!("/tasks/{task}/cancel"),
        format!("/tasks/{task}/retry-failed"),
        format!("/tasks/{task}/archive"),
        format!("/jobs/{}/cancel", slow.id),
        format!("/jobs/{}/retry", bad.id),
    ] {
        assert_eq!(
            post(&ui, &ui.bob, &path, &[]).await.status(),
            404,
            "bob {path}"
        );
    }
    let resp = post(
        &ui,
        &ui.bob,
        "/tasks/bulk",
        &[("action", "cancel"), ("ids", &task.to_string())],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let (_, page) = get(&ui.bob, &ui.url("/tasks")).await;
    assert!(
        page.contains("not done for #") && page.contains("not found"),
        "{page}"
    );
    assert!(
        !page.contains(&format!("href=\"/tasks/{task}\"")),
        "bob's list is empty"
    );
    // The admin sees it (and its owner), and may filter by owner.
    let (status, page) = get(&ui.admin, &ui.url(&format!("/tasks/{task}"))).await;
    assert_eq!(status, 200);
    assert!(page.contains("<dd>alice</dd>"));
    let (_, list) = get(&ui.admin, &ui.url("/tasks?owner=alice")).await;
    assert!(list.contains(&format!("href=\"/tasks/{task}\"")));
    let (_, list) = get(&ui.admin, &ui.url("/tasks?owner=bob")).await;
    assert!(!list.contains(&format!("href=\"/tasks/{task}\"")));
    let (_, list) = get(&ui.admin, &ui.url("/tasks?scope=mine")).await;
    assert!(!list.contains(&format!("href=\"/tasks/{task}\"")));

    // Alice cancels the running job, then retries it; the failed one is retried in bulk.
    let started = std::time::Instant::now();
    while jobs_of(&ui.app, task).await[0].status != "running" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "job never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = post(&ui, &ui.alice, &format!("/jobs/{}/cancel", slow.id), &[]).await;
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!("/tasks/{task}#job-{}", slow.id)
    );
    let jobs = wait_final(&ui.app, task, Duration::from_secs(30)).await;
    assert_eq!(
        (jobs[0].status.as_str(), jobs[1].status.as_str()),
        ("cancelled", "failed")
    );
    let (_, page) = get(&ui.alice, &ui.url(&format!("/tasks/{task}"))).await;
    assert!(page.contains("is being cancelled") && page.contains("Retry 1 failed"));
    post(&ui, &ui.alice, &format!("/jobs/{}/retry", slow.id), &[]).await;
    post(&ui, &ui.alice, &format!("/tasks/{task}/retry-failed"), &[]).await;
    let (_, page) = get(&ui.alice, &ui.url(&format!("/tasks/{task}"))).await;
    assert!(page.contains("queued again"), "{page}");
    post(&ui, &ui.alice, &format!("/tasks/{task}/cancel"), &[]).await;
    // Retried jobs may be cancelled before or while they run: either way they end.
    let jobs = wait_final(&ui.app, task, Duration::from_secs(30)).await;
    assert!(
        jobs.iter()
            .all(|j| j.status == "cancelled" || j.status == "failed"),
        "{:?}",
        jobs.iter().map(|j| &j.status).collect::<Vec<_>>()
    );
    // Retrying an unfinished job is refused with a message, not an error page.
    post(&ui, &ui.alice, &format!("/jobs/{}/retry", slow.id), &[]).await;
    let resp = post(&ui, &ui.alice, &format!("/jobs/{}/retry", slow.id), &[]).await;
    assert_eq!(resp.status(), 303);
    let (_, page) = get(&ui.alice, &ui.url(&format!("/tasks/{task}"))).await;
    assert!(page.contains("only finished jobs can be retried"), "{page}");
    post(&ui, &ui.alice, &format!("/tasks/{task}/cancel"), &[]).await;
    wait_final(&ui.app, task, Duration::from_secs(30)).await;

    // Archive hides it from the default list; delete is for admins only.
    post(&ui, &ui.alice, &format!("/tasks/{task}/archive"), &[]).await;
    let (_, list) = get(&ui.alice, &ui.url("/tasks")).await;
    assert!(!list.contains(&format!("href=\"/tasks/{task}\"")));
    let (_, list) = get(&ui.alice, &ui.url("/tasks?archived=only")).await;
    assert!(list.contains(&format!("href=\"/tasks/{task}\"")));
    let resp = post(&ui, &ui.alice, &format!("/tasks/{task}/delete"), &[]).await;
    assert_eq!(resp.status(), 403, "alice may not delete");
    let resp = post(&ui, &ui.admin, &format!("/tasks/{task}/delete"), &[]).await;
    assert_eq!(resp.headers()["location"], "/tasks");
    assert_eq!(
        get(&ui.alice, &ui.url(&format!("/tasks/{task}"))).await.0,
        404
    );

    // Search, status filter, sorting and pages over many tasks.
    for i in 0..55 {
        submit_batch(
            &ui,
            &ui.bob,
            &format!("standin-g+speed50@n{i}.example.com pw\n"),
        )
        .await;
    }
    let (_, list) = get(&ui.bob, &ui.url("/tasks")).await;
    assert!(
        list.contains("1–50 of 55") && list.contains("rel=\"next\""),
        "paged"
    );
    let (_, list) = get(&ui.bob, &ui.url("/tasks?page=2")).await;
    assert!(list.contains("51–55 of 55") && list.contains("rel=\"prev\""));
    let (_, list) = get(&ui.bob, &ui.url("/tasks?q=n17.example")).await;
    assert!(list.contains("1–1 of 1"), "search by mailbox: {list}");
    let (_, list) = get(&ui.bob, &ui.url("/tasks?sort=label&dir=asc&status=bogus")).await;
    assert!(list.contains("unknown status"));
    ui.app.stop().await;
}

mod sqlite_memory {
    use crate::harness::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_migration_form() {
        super::new_migration_form(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_task_and_logs() {
        super::live_task_and_logs(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn actions_and_permissions() {
        super::actions_and_permissions(Backend::Sqlite).await
    }
}

mod postgres_redis {
    use crate::harness::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_migration_form() {
        super::new_migration_form(Backend::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_task_and_logs() {
        super::live_task_and_logs(Backend::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn actions_and_permissions() {
        super::actions_and_permissions(Backend::Postgres).await
    }
}
