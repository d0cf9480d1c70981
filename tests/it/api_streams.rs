//! Credentials that stop holding while in use: open log streams end when their token is
//! revoked or their admin loses the role; a token cannot mint a token that outlives it.
//! And `/metrics` keeps a bounded set of series whatever methods clients send.

use std::time::Duration;

use pymap::{
    config::MetricsMode,
    service::{Actor, Role, accounts, tokens},
};
use serde_json::json;

use crate::{
    api::{Client, World, create_task, world},
    harness::Backend,
    pool::line,
};

/// Whether the stream at `path` ends (the server closes it) within `wait`.
async fn ends_within(resp: &mut reqwest::Response, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None) | Err(_)) => return true,
        }
    }
}

async fn open(c: &Client, path: &str) -> reqwest::Response {
    let resp = c
        .request(reqwest::Method::GET, path)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(resp.status(), 200, "{path}");
    resp
}

async fn queued_job(w: &World) -> i64 {
    let task = create_task(&w.a, &line("g", "pw-stream")).await["id"]
        .as_i64()
        .unwrap();
    w.a.get(&format!("/tasks/{task}/jobs")).await.body["items"][0]["id"]
        .as_i64()
        .unwrap()
}

/// A job log stream is long-lived (up to an hour): what ended the caller's access must
/// end it too.
async fn log_stream_ends_with_access(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let db = &w.app.state.db;
    let job = queued_job(&w).await;
    let path = format!("/jobs/{job}/log/stream");

    // A token revoked while its stream is open.
    let made = tokens::create(db, &w.actor("alice").await, "stream", None)
        .await
        .unwrap();
    let mut resp = open(&w.client(Some(made.secret.clone())), &path).await;
    assert!(
        !ends_within(&mut resp, Duration::from_millis(2500)).await,
        "a valid stream stays open"
    );
    assert_eq!(
        w.a.delete(&format!("/me/tokens/{}", made.token.id))
            .await
            .status,
        204
    );
    assert!(
        ends_within(&mut resp, Duration::from_secs(8)).await,
        "the stream of a revoked token ends"
    );

    // An admin watching someone else's job, then demoted.
    accounts::create(db, &Actor::cli(), "erin", "password-of-erin-1", Role::Admin)
        .await
        .unwrap();
    let erin = w.client(Some(w.token("erin").await));
    let mut resp = open(&erin, &path).await;
    accounts::set_role(db, &Actor::cli(), "erin", Role::User)
        .await
        .unwrap();
    assert!(
        ends_within(&mut resp, Duration::from_secs(8)).await,
        "a demoted admin's stream of another user's job ends"
    );
    assert_eq!(erin.get(&format!("/jobs/{job}")).await.status, 404);

    // A user disabled while watching their own job.
    let mut resp = open(&w.a, &path).await;
    accounts::set_disabled(db, &Actor::cli(), "alice", true)
        .await
        .unwrap();
    assert!(
        ends_within(&mut resp, Duration::from_secs(8)).await,
        "a disabled user's stream ends"
    );
}

/// An expiring token cannot create a token that lasts longer than itself.
async fn tokens_made_by_tokens_are_bounded(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let short =
        w.a.post("/me/tokens", json!({"name": "short", "expires_in_days": 2}))
            .await;
    assert_eq!(short.status, 201, "{:?}", short.body);
    let parent_expiry = short.body["token"]["expires_at"]
        .as_str()
        .unwrap()
        .to_string();
    let short = w.client(Some(short.body["secret"].as_str().unwrap().into()));

    let child = short.post("/me/tokens", json!({"name": "child"})).await;
    assert_eq!(child.status, 201, "{:?}", child.body);
    assert_eq!(
        child.body["token"]["expires_at"], parent_expiry,
        "no expiry asked: the parent's"
    );
    let longer = short
        .post(
            "/me/tokens",
            json!({"name": "longer", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(
        (longer.status, longer.body["details"][0]["field"].as_str()),
        (422, Some("expires_at")),
        "{:?}",
        longer.body
    );
    let sooner = short
        .post(
            "/me/tokens",
            json!({"name": "sooner", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(sooner.status, 201, "{:?}", sooner.body);
    // A token without expiry (and a session) may still create lasting tokens.
    let lasting = w.a.post("/me/tokens", json!({"name": "lasting"})).await;
    assert_eq!(
        (
            lasting.status,
            lasting.body["token"]["expires_at"].is_null()
        ),
        (201, true)
    );
}

/// Any token is a valid HTTP method; each would otherwise be a new series forever.
async fn metrics_methods_are_bounded(backend: Backend) {
    if backend != Backend::Sqlite {
        return;
    }
    let Some(w) = world(backend, false, |c| {
        c.metrics.mode = MetricsMode::Trusted;
        c.metrics.trusted = "127.0.0.0/8".parse().ok().into_iter().collect();
    })
    .await
    else {
        return;
    };
    let http = w.app.client();
    for method in ["BREW", "WHEN", "PROPFIND"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = http
            .request(m, w.app.url("/api/v1/tasks"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{method}");
    }
    let text = http
        .get(w.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("method=\"OTHER\""), "{text}");
    for method in ["BREW", "WHEN", "PROPFIND"] {
        assert!(!text.contains(method), "{method} became a label:\n{text}");
    }
}

crate::api_backends!(
    log_stream_ends_with_access,
    tokens_made_by_tokens_are_bounded,
    metrics_methods_are_bounded
);
