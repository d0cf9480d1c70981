//! The web UI over HTTP: every page for anonymous, user A, user B and admin; CSRF on
//! every form; error pages with request ids; theme and flash messages. Shared helpers
//! for the other `web_*` test files live here too.

use std::time::{Duration, Instant};

use pymap::service::{Actor, Role, accounts};
use reqwest::{Client, StatusCode};

use crate::{
    harness::{ADMIN_PASSWORD, Backend, Options, TestApp, csrf_from, login},
    pool::standin,
};

pub const ALICE: (&str, &str) = ("alice", "alice-password-1");
pub const BOB: (&str, &str) = ("bob", "bob-password-12");

/// An app with the imapsync stand-in, users alice and bob, and a logged-in client each.
pub struct Ui {
    pub app: TestApp,
    pub admin: Client,
    pub alice: Client,
    pub bob: Client,
}

impl Ui {
    /// On PostgreSQL also with Redis (sessions, flash messages and live events go
    /// through it), on SQLite in memory.
    pub async fn start(backend: Backend) -> Option<Self> {
        let redis = backend == Backend::Postgres;
        let app = TestApp::start(Options::new(backend, redis).with(|c| {
            c.imapsync_path = Some(standin().into());
            c.workers.cancel_grace_secs = 2;
            c.workers.retry_base_secs = 1;
            c.hosts = vec![("^mx[0-9]+$".into(), ".mail.example.com".into())];
        }))
        .await?;
        for (name, password) in [ALICE, BOB] {
            accounts::create(&app.state.db, &Actor::cli(), name, password, Role::User)
                .await
                .unwrap();
        }
        let admin = app.client();
        assert_eq!(
            login(&app, &admin, "admin", ADMIN_PASSWORD).await.status(),
            303
        );
        let alice = app.client();
        assert_eq!(login(&app, &alice, ALICE.0, ALICE.1).await.status(), 303);
        let bob = app.client();
        assert_eq!(login(&app, &bob, BOB.0, BOB.1).await.status(), 303);
        Some(Self {
            app,
            admin,
            alice,
            bob,
        })
    }

    pub fn url(&self, path: &str) -> String {
        self.app.url(path)
    }
}

pub async fn get(client: &Client, url: &str) -> (StatusCode, String) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// The CSRF token of this client's session (from a page that has one).
pub async fn token(ui: &Ui, client: &Client) -> String {
    csrf_from(&get(client, &ui.url("/account")).await.1)
}

pub async fn post(
    ui: &Ui,
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let token = token(ui, client).await;
    let mut all = fields.to_vec();
    all.push(("csrf_token", &token));
    client.post(ui.url(path)).form(&all).send().await.unwrap()
}

/// A multipart body (reqwest here is built without its multipart feature).
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "pymap-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"batch.csv\"\r\nContent-Type: text/csv\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Submit the new-migration form (to `/migrate` or `/migrate/check`).
pub async fn submit_form(
    ui: &Ui,
    client: &Client,
    path: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> reqwest::Response {
    let token = token(ui, client).await;
    let (ct, body) = multipart(fields, file);
    client
        .post(ui.url(&format!("{path}?csrf_token={token}")))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Submit a text batch from src.example.com to dst.example.com; returns the task id.
pub async fn submit_batch(ui: &Ui, client: &Client, batch: &str) -> i64 {
    let fields = [
        ("source", "src.example.com"),
        ("destination", "dst.example.com:143"),
        ("engine", "imapsync"),
        ("add_header", "on"),
        ("batch", batch),
    ];
    let resp = submit_form(ui, client, "/migrate", &fields, None).await;
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    let to = resp.headers()["location"].to_str().unwrap().to_string();
    to.strip_prefix("/tasks/").unwrap().parse().unwrap()
}

/// Events of an SSE response: `(event, data)` until `want` matched or `limit` passed.
pub async fn sse_until(
    resp: &mut reqwest::Response,
    limit: Duration,
    mut want: impl FnMut(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let started = Instant::now();
    let mut buf = String::new();
    let mut events = Vec::new();
    while started.elapsed() < limit {
        let left = limit.saturating_sub(started.elapsed());
        let chunk = match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = ("message".to_string(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if data.is_empty() {
                continue;
            }
            let done = want(&event, &data);
            events.push((event, data));
            if done {
                return events;
            }
        }
    }
    events
}

/// Pages everyone signed in may open.
const USER_PAGES: [&str; 4] = ["/", "/migrate", "/tasks", "/account"];
const ADMIN_PAGES: [&str; 3] = ["/admin/users", "/admin/audit", "/admin/system"];

async fn pages_by_role(backend: Backend) {
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    let anonymous = ui.app.client();
    for path in USER_PAGES.iter().chain(&ADMIN_PAGES) {
        let resp = anonymous.get(ui.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 303, "{path}");
        assert!(
            resp.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/login"),
            "{path}"
        );
    }
    for path in USER_PAGES.iter().chain(&ADMIN_PAGES) {
        let (status, body) = get(&ui.admin, &ui.url(path)).await;
        assert_eq!(status, 200, "admin {path}: {body}");
        assert!(
            body.contains("<main id=\"main\">") && body.contains("Log out"),
            "{path}"
        );
    }
    for path in USER_PAGES {
        let (status, body) = get(&ui.alice, &ui.url(path)).await;
        assert_eq!(status, 200, "alice {path}");
        assert!(
            !body.contains("/admin/users"),
            "no admin links for users: {path}"
        );
    }
    for path in ADMIN_PAGES {
        let resp = ui.alice.get(ui.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("403") && body.contains(&rid),
            "{path}: {body}"
        );
    }
    // Static assets: hashed names, cached forever, everything else 404.
    let (_, home) = get(&ui.alice, &ui.url("/")).await;
    for attr in ["href=\"/static/pymap.", "src=\"/static/pymap."] {
        let start = home.find(attr).unwrap() + attr.find('/').unwrap();
        let path = home[start..].split('"').next().unwrap();
        let resp = anonymous.get(ui.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }
    assert_eq!(
        anonymous
            .get(ui.url("/static/pymap.css"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    ui.app.stop().await;
}

async fn csrf_on_every_form(backend: Backend) {
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    let task = submit_batch(&ui, &ui.alice, "standin-g+speed50@m1.example.com pw\n").await;
    let forms = [
        "/logout".to_string(),
        "/theme".into(),
        "/tasks/bulk".into(),
        format!("/tasks/{task}/cancel"),
        format!("/tasks/{task}/retry-failed"),
        format!("/tasks/{task}/archive"),
        format!("/tasks/{task}/unarchive"),
        format!("/tasks/{task}/delete"),
        "/jobs/1/cancel".into(),
        "/jobs/1/retry".into(),
        "/account/password".into(),
        "/account/hosts".into(),
        "/account/tokens".into(),
        "/account/tokens/1/revoke".into(),
        "/admin/users".into(),
        "/admin/users/bob/disable".into(),
    ];
    for path in &forms {
        for token in [None, Some("0123abcd")] {
            let mut fields = vec![("name", "x")];
            fields.extend(token.map(|t| ("csrf_token", t)));
            let resp = ui
                .admin
                .post(ui.url(path))
                .form(&fields)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{path} with {token:?}");
            let body = resp.text().await.unwrap();
            assert!(body.contains("form expired"), "{path}: {body}");
        }
    }
    // Multipart forms carry the token in the URL: without it, nothing is created.
    let (ct, body) = multipart(&[("source", "a"), ("batch", "x@y pw")], None);
    for path in ["/migrate", "/migrate/check", "/migrate?csrf_token=bad"] {
        let resp = ui
            .alice
            .post(ui.url(path))
            .header("content-type", ct.clone())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
    }
    // A token of one session is worthless in another.
    let alice_token = token(&ui, &ui.alice).await;
    let resp = ui
        .bob
        .post(ui.url("/account/tokens"))
        .form(&[("name", "x"), ("csrf_token", &alice_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The task is still there and still alice's alone.
    assert_eq!(
        get(&ui.alice, &ui.url(&format!("/tasks/{task}"))).await.0,
        200
    );
    ui.app.stop().await;
}

async fn error_pages_and_theme(backend: Backend) {
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    for path in ["/no/such/page", "/tasks/999999", "/jobs/999999/log"] {
        let resp = ui.alice.get(ui.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("404 · Not Found") && body.contains(&rid),
            "{body}"
        );
    }
    // A 500 tells the request id and nothing of the cause: a job whose stored log path
    // points outside the log directory (only a tampered database does that).
    let task = submit_batch(&ui, &ui.alice, "standin-g+speed50@m1.example.com pw\n").await;
    crate::pool::wait_final(&ui.app, task, Duration::from_secs(30)).await;
    let job = crate::pool::jobs_of(&ui.app, task).await.remove(0);
    use sea_orm::{ActiveModelTrait, Set};
    let mut tampered: entity::job::ActiveModel = job.clone().into();
    tampered.log_path = Set(Some("/etc/passwd".into()));
    tampered.update(&ui.app.state.db).await.unwrap();
    for path in [
        format!("/jobs/{}/log", job.id),
        format!("/jobs/{}/log/download", job.id),
    ] {
        let resp = ui.alice.get(ui.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 500, "{path}");
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = resp.text().await.unwrap();
        assert!(
            body.contains(&rid) && body.contains("internal error"),
            "{body}"
        );
        assert!(
            !body.contains("passwd") && !body.contains("root:"),
            "{body}"
        );
    }
    // Theme: follows the system until pinned; the choice is a cookie that outlives logout.
    let (_, page) = get(&ui.alice, &ui.url("/tasks")).await;
    assert!(page.contains("<html lang=\"en\">") && page.contains("Theme: system"));
    let resp = post(
        &ui,
        &ui.alice,
        "/theme",
        &[("theme", "dark"), ("next", "/tasks")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/tasks");
    let (_, page) = get(&ui.alice, &ui.url("/tasks")).await;
    assert!(page.contains("data-theme=\"dark\""), "{page}");
    // An outside `next` is not followed.
    let resp = post(
        &ui,
        &ui.alice,
        "/theme",
        &[("theme", ""), ("next", "//evil.example")],
    )
    .await;
    assert_eq!(resp.headers()["location"], "/");
    let (_, page) = get(&ui.alice, &ui.url("/tasks")).await;
    assert!(!page.contains("data-theme"));
    // Security headers on pages: no inline script or style can run.
    let resp = ui.alice.get(ui.url("/")).send().await.unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"));
    let body = resp.text().await.unwrap();
    assert!(
        !body.contains("<script>") && !body.contains("style=\""),
        "no inline code"
    );
    ui.app.stop().await;
}

mod sqlite_memory {
    use crate::harness::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_by_role() {
        super::pages_by_role(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn csrf_on_every_form() {
        super::csrf_on_every_form(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn error_pages_and_theme() {
        super::error_pages_and_theme(Backend::Sqlite).await
    }
}

mod postgres_redis {
    use crate::harness::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_by_role() {
        super::pages_by_role(Backend::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn error_pages_and_theme() {
        super::error_pages_and_theme(Backend::Postgres).await
    }
}
