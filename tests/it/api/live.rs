//! Live events over SSE (each client sees its own tasks only) and `/metrics`.

use std::time::{Duration, Instant};

use pymap::config::{MetricsMode, Secret};
use serde_json::Value;

use super::{Client, create_task, wait_task, world};
use crate::{harness::Backend, pool::line};

/// A Server-Sent Events reader (also used by `api/native.rs`).
pub(super) struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    pub(super) async fn open(c: &Client, path: &str) -> Sse {
        let resp = c.request(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (name, data) within `wait`, skipping keep-alive comments.
    pub(super) async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for l in block.lines() {
                    if let Some(v) = l.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = l.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    return Some((name, serde_json::from_str(&data).unwrap()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Every event arriving within `wait`.
    async fn drain(&mut self, wait: Duration) -> Vec<(String, Value)> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(e) = self
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            out.push(e);
        }
        out
    }
}

fn tasks_in(events: &[(String, Value)]) -> Vec<i64> {
    let mut ids: Vec<i64> = events
        .iter()
        .filter_map(|(_, d)| d["task_id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

async fn events_are_per_user(backend: Backend) {
    let Some(w) = world(backend, true, |_| {}).await else {
        return;
    };
    let mut on_a = Sse::open(&w.a, "/events").await;
    let mut on_b = Sse::open(&w.b, "/events").await;
    let mut on_admin = Sse::open(&w.admin, "/events").await;

    let ta = create_task(&w.a, &line("a+speed2", "pw-a")).await["id"]
        .as_i64()
        .unwrap();
    let mut only_ta = Sse::open(&w.a, &format!("/events?task_id={ta}")).await;
    let mut seen_a = Vec::new();
    let started = Instant::now();
    // Until A's job has ended.
    loop {
        let (name, data) = on_a
            .next(Duration::from_secs(60))
            .await
            .expect("alice gets events for her task");
        let end = name == "job_status" && data["status"] != "running";
        seen_a.push((name, data));
        if end {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    let names: Vec<&str> = seen_a.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"job_progress"), "{names:?}");
    assert!(
        names.contains(&"job_status") && names.contains(&"task_status"),
        "{names:?}"
    );
    assert_eq!(tasks_in(&seen_a), [ta]);
    let progress: Vec<&Value> = seen_a
        .iter()
        .filter(|(n, _)| n == "job_progress")
        .map(|(_, d)| d)
        .collect();
    assert!(progress.iter().all(|p| p["job_id"].is_i64()));
    assert!(
        progress
            .iter()
            .any(|p| p["progress"]["messages_done"].as_i64() > Some(0)),
        "{progress:?}"
    );

    // Bob saw nothing of it; the admin saw it all.
    assert_eq!(
        on_b.drain(Duration::from_millis(800)).await,
        vec![],
        "bob sees none of alice's events"
    );
    let admin_seen = on_admin.drain(Duration::from_millis(500)).await;
    assert_eq!(tasks_in(&admin_seen), [ta]);
    assert!(admin_seen.iter().any(|(n, _)| n == "job_progress"));
    wait_task(&w.a, ta).await;

    // Bob's task: his stream sees it, alice's and her filtered one do not.
    let tb = create_task(&w.b, &line("g+speed20", "pw-b")).await["id"]
        .as_i64()
        .unwrap();
    let mut seen_b = Vec::new();
    while let Some(e) = on_b.next(Duration::from_secs(30)).await {
        let end = e.0 == "job_status" && e.1["status"] != "running";
        seen_b.push(e);
        if end {
            break;
        }
    }
    assert_eq!(tasks_in(&seen_b), [tb]);
    let late_a = on_a.drain(Duration::from_millis(800)).await;
    assert!(
        !tasks_in(&late_a).contains(&tb),
        "alice sees none of bob's events: {late_a:?}"
    );
    let filtered = only_ta.drain(Duration::from_millis(300)).await;
    assert!(tasks_in(&filtered).iter().all(|t| *t == ta), "{filtered:?}");
    assert_eq!(w.a.get(&format!("/events?task_id={tb}")).await.status, 404);
}

async fn metrics(backend: Backend) {
    let token = "metrics-token-0123456789";
    let Some(w) = world(backend, true, move |c| {
        c.metrics.mode = MetricsMode::Token;
        c.metrics.token = Some(Secret::new(token));
    })
    .await
    else {
        return;
    };
    let t = create_task(&w.a, &line("c+speed20", "pw")).await["id"]
        .as_i64()
        .unwrap();
    wait_task(&w.a, t).await;
    let http = w.app.client();
    let url = w.app.url("/metrics");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let resp = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    for want in [
        "pymap_jobs{status=\"failed\"} 1",
        "pymap_jobs{status=\"queued\"} 0",
        "pymap_queue_depth 0",
        "pymap_jobs_running 0",
        "pymap_migrated_messages ",
        "pymap_migrated_bytes ",
        "pymap_engine_failures{reason=\"EXIT_AUTHENTICATION_FAILURE_USER1\"} 1",
        "# TYPE pymap_http_request_duration_seconds histogram",
        "pymap_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/tasks/{task_id}\",le=\"+Inf\"}",
        "pymap_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/tasks\"}",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        !text.contains(&format!("/api/v1/tasks/{t}")),
        "routes are templates"
    );
}

async fn metrics_access(backend: Backend) {
    if backend != Backend::Sqlite {
        return;
    }
    let cases: [(MetricsMode, &str, u16); 3] = [
        (MetricsMode::Off, "", 404),
        (MetricsMode::Trusted, "127.0.0.0/8", 200),
        (MetricsMode::Trusted, "10.0.0.0/8", 403),
    ];
    for (mode, net, want) in cases {
        let net = net.to_string();
        let Some(w) = world(backend, false, move |c| {
            c.metrics.mode = mode;
            c.metrics.trusted = net.parse().ok().into_iter().collect();
        })
        .await
        else {
            return;
        };
        let status = w
            .app
            .client()
            .get(w.app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, want, "{mode:?}");
    }
}

crate::api_backends!(events_are_per_user, metrics, metrics_access);
