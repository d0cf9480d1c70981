//! `/healthz` and `/readyz`, including a database or Redis that goes away.

use std::time::Duration;

use pymap::config::Secret;

use crate::harness::{
    Backend, CutProxy, Options, TestApp, database_url, service_url, socket_of, with_addr,
};

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let resp = app.client().get(app.url("/readyz")).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn healthz_and_readyz_on_sqlite() {
    let app = TestApp::start(Options::new(Backend::Sqlite, false))
        .await
        .unwrap();
    let resp = app.client().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200);
    assert_eq!(body["database"], "ok");
    assert_eq!(body["redis"], "not configured");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_when_postgres_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(Backend::Postgres, dir.path()).await else {
        return;
    };
    let proxy = CutProxy::start(socket_of(&url)).await;
    let proxied = with_addr(&url, proxy.addr);
    let app = TestApp::start(
        Options::new(Backend::Sqlite, false)
            .with(move |c| c.database_url = Some(Secret::new(proxied))),
    )
    .await
    .unwrap();
    assert_eq!(readyz(&app).await.0, 200);
    proxy.cut();
    let started = std::time::Instant::now();
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_ne!(body["database"], "ok");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answers quickly even when the database hangs"
    );
    // The process is still alive.
    assert_eq!(
        app.client()
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_when_redis_goes_away() {
    let Some(url) = service_url("PYMAP_TEST_REDIS_URL") else {
        return;
    };
    let proxy = CutProxy::start(socket_of(&url)).await;
    let proxied = with_addr(&url, proxy.addr);
    let app = TestApp::start(
        Options::new(Backend::Sqlite, false)
            .with(move |c| c.redis_url = Some(Secret::new(proxied))),
    )
    .await
    .unwrap();
    let (status, body) = readyz(&app).await;
    assert_eq!((status, body["redis"].as_str()), (200, Some("ok")));
    proxy.cut();
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_ne!(body["redis"], "ok");
    app.stop().await;
}
