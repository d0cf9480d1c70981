//! The REST API over HTTP: every endpoint's happy path, the permission matrix, validation
//! errors, live events and metrics, the native engine and the verifier end to end — on
//! SQLite and PostgreSQL. Helpers live here; the cases are in `api/`.

mod flows;
mod listing;
mod live;
mod native;
mod perms;
mod validation;

use chrono::{Duration, Utc};
use pymap::{
    config::Config,
    service::{Actor, Role, accounts, auth::actor_for, tokens},
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    harness::{Backend, Options, TestApp},
    pool::standin,
};

/// A caller of the API: a bearer token, a session cookie (with its CSRF token), or no
/// credentials.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
    pub csrf: Option<String>,
}

/// A response: status and body (JSON, or the text as a JSON string).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn text(&self) -> &str {
        self.body.as_str().unwrap_or_default()
    }
}

impl Client {
    pub fn new(app: &TestApp, token: Option<String>) -> Self {
        Self {
            http: app.client(),
            base: app.url("/api/v1"),
            token,
            csrf: None,
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = &self.csrf {
            req = req.header("x-csrf-token", c);
        }
        req
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("the server answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let is_json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        let text = resp.text().await.unwrap();
        let body = if is_json {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
        } else {
            Value::String(text)
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn post_empty(&self, path: &str) -> Reply {
        self.call(Method::POST, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }
}

pub const PASSWORD_A: &str = "password-of-a-123";
pub const PASSWORD_B: &str = "password-of-b-123";

/// An app with an admin, users `alice` and `bob`, and a token for each.
pub struct World {
    pub app: TestApp,
    pub admin: Client,
    pub a: Client,
    pub b: Client,
    pub anon: Client,
}

impl World {
    pub async fn actor(&self, name: &str) -> Actor {
        let u = accounts::find_by_name(&self.app.state.db, name)
            .await
            .unwrap()
            .unwrap();
        actor_for(&u, None)
    }

    /// A new bearer token for `name`.
    pub async fn token(&self, name: &str) -> String {
        let actor = self.actor(name).await;
        tokens::create(&self.app.state.db, &actor, "test", None)
            .await
            .unwrap()
            .secret
    }

    pub fn client(&self, token: Option<String>) -> Client {
        Client::new(&self.app, token)
    }
}

/// Start an app whose imapsync is the stand-in; `running: false` keeps the pool idle
/// (tasks stay queued).
pub async fn world(
    backend: Backend,
    running: bool,
    tweak: impl FnOnce(&mut Config) + Send + 'static,
) -> Option<World> {
    let app = TestApp::start(Options::new(backend, false).with(move |c| {
        c.imapsync_path = Some(standin().into());
        c.workers.cancel_grace_secs = 2;
        c.workers.retry_base_secs = 1;
        c.workers.max_attempts = 1;
        if !running {
            c.workers.concurrency = 0;
        }
        tweak(c);
    }))
    .await?;
    let db = &app.state.db;
    let cli = Actor::cli();
    for (name, pw) in [("alice", PASSWORD_A), ("bob", PASSWORD_B)] {
        accounts::create(db, &cli, name, pw, Role::User)
            .await
            .unwrap();
    }
    let mut w = World {
        admin: Client::new(&app, None),
        a: Client::new(&app, None),
        b: Client::new(&app, None),
        anon: Client::new(&app, None),
        app,
    };
    w.admin.token = Some(w.token("admin").await);
    w.a.token = Some(w.token("alice").await);
    w.b.token = Some(w.token("bob").await);
    Some(w)
}

/// A token that expired a minute ago.
pub async fn expired_token(w: &World, name: &str) -> String {
    use entity::api_token;
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let actor = w.actor(name).await;
    let created = tokens::create(
        &w.app.state.db,
        &actor,
        "short-lived",
        Some(Utc::now() + Duration::hours(1)),
    )
    .await
    .unwrap();
    let row = api_token::Entity::find_by_id(created.token.id)
        .one(&w.app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut active: api_token::ActiveModel = row.into();
    active.expires_at = Set(Some(Utc::now() - Duration::minutes(1)));
    active.update(&w.app.state.db).await.unwrap();
    created.secret
}

/// A JSON task body with a text batch.
pub fn task_body(batch: &str) -> Value {
    json!({
        "label": "api test",
        "source": "src.example.com",
        "destination": "dst.example.com:143",
        "batch": batch,
    })
}

/// Create a task as `client`; panics unless 201.
pub async fn create_task(client: &Client, batch: &str) -> Value {
    let r = client.post("/tasks", task_body(batch)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

/// Poll a task until none of its jobs is queued or running.
pub async fn wait_task(client: &Client, id: i64) -> Value {
    let started = std::time::Instant::now();
    loop {
        let t = client.get(&format!("/tasks/{id}")).await;
        assert_eq!(t.status, 200, "{:?}", t.body);
        let jobs = &t.body["jobs"];
        if jobs["queued"] == 0 && jobs["running"] == 0 {
            return t.body;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "task {id} did not finish: {:?}",
            t.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
}

/// One `#[tokio::test]` per storage backend.
#[macro_export]
macro_rules! api_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::harness::Backend;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() { super::$name(Backend::Sqlite).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() { super::$name(Backend::Postgres).await }
            }
        )*
    };
}

/// The spec is a contract: any change shows up here for review.
#[test]
fn openapi_spec_snapshot() {
    let spec: Value = serde_json::from_str(&pymap::api::spec_json()).unwrap();
    insta::assert_json_snapshot!("openapi_spec", spec);
}

/// `/api/doc` works without internet: every asset is ours, no external URL is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_are_self_contained() {
    let Some(w) = world(Backend::Sqlite, false, |_| {}).await else {
        return;
    };
    let http = w.app.client();
    let page = http.get(w.app.url("/api/doc")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("<style"),
        "no inline code: {html}"
    );
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            assets.push(part.split('"').next().unwrap().to_string());
        }
    }
    assert_eq!(assets.len(), 3, "{assets:?}");
    for asset in &assets {
        assert!(asset.starts_with("/api/doc/"), "{asset}");
        let resp = http.get(w.app.url(asset)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        let body = resp.text().await.unwrap();
        assert!(body.len() > 100, "{asset} is empty");
        for cdn in [
            "unpkg.com",
            "jsdelivr",
            "cdnjs",
            "googleapis",
            "fonts.gstatic",
        ] {
            assert!(!body.contains(cdn), "{asset} mentions {cdn}");
        }
    }
    let start = http
        .get(w.app.url("/api/doc/start.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(start.contains("validatorUrl: null") && start.contains("/api/openapi.json"));
    for (path, ct) in [("/api/openapi.json", "json"), ("/api/openapi.yaml", "yaml")] {
        let resp = http.get(w.app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .contains(ct)
        );
        assert!(resp.text().await.unwrap().contains("/tasks/{task_id}"));
    }
}
