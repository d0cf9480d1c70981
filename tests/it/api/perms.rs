//! The permission matrix: anonymous, user A, user B, admin, the token of a disabled user
//! and an expired token, against every endpoint; and session cookies with CSRF.

use pymap::service::{Actor, Role, accounts};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Client, PASSWORD_A, create_task, expired_token, task_body, world};
use crate::{
    harness::{Backend, login},
    pool::line,
};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// 2xx.
    Ok,
    /// 2xx, or 409 when the object's state does not allow it (still permitted).
    Allowed,
    Status(u16),
}

struct Matrix {
    failures: Vec<String>,
}

impl Matrix {
    async fn check(
        &mut self,
        who: &str,
        c: &Client,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: Expect,
    ) {
        let mut req = c.request(method.clone(), path);
        if let Some(b) = &body {
            req = req.json(b);
        }
        // Streams: the status is enough; dropping the response closes them.
        let resp = req.send().await.expect("the server answers");
        let status = resp.status().as_u16();
        let ok = match want {
            Expect::Ok => (200..300).contains(&status),
            Expect::Allowed => (200..300).contains(&status) || status == 409,
            Expect::Status(s) => status == s,
        };
        let is_json = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or_default().contains("json"));
        if status >= 400 && !is_json {
            self.failures.push(format!(
                "{who} {method} {path}: error {status} without the JSON error body"
            ));
        }
        if !ok {
            let text = if status >= 300 {
                resp.text().await.unwrap_or_default()
            } else {
                String::new()
            };
            self.failures.push(format!(
                "{who} {method} {path}: got {status}, want {want:?} {text}"
            ));
        }
    }
}

async fn permission_matrix(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let db = &w.app.state.db;
    accounts::create(db, &Actor::cli(), "dave", "password-of-dave-1", Role::User)
        .await
        .unwrap();
    let disabled = w.client(Some(w.token("dave").await));
    accounts::set_disabled(db, &Actor::cli(), "dave", true)
        .await
        .unwrap();
    let expired = w.client(Some(expired_token(&w, "alice").await));

    let ta = create_task(&w.a, &line("g", "pw-a")).await["id"]
        .as_i64()
        .unwrap();
    let tb = create_task(&w.b, &line("g", "pw-b")).await["id"]
        .as_i64()
        .unwrap();
    let job_of = |t: i64| {
        let c = w.admin.clone();
        async move {
            c.get(&format!("/tasks/{t}/jobs")).await.body["items"][0]["id"]
                .as_i64()
                .unwrap()
        }
    };
    let (ja, jb) = (job_of(ta).await, job_of(tb).await);

    let mut m = Matrix {
        failures: Vec::new(),
    };
    use Expect::*;
    let unauth = [
        ("anonymous", &w.anon),
        ("disabled user's token", &disabled),
        ("expired token", &expired),
    ];

    // Endpoints every signed-in user may call.
    let open: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/me".into(), None),
        (Method::GET, "/tasks".into(), None),
        (Method::GET, "/me/tokens".into(), None),
        (Method::GET, "/me/host-patterns".into(), None),
        (Method::GET, "/dashboard".into(), None),
        (
            Method::GET,
            "/preflight/host?host=mx1.example.com".into(),
            None,
        ),
        (Method::GET, "/events".into(), None),
        (
            Method::PUT,
            "/me/host-patterns".into(),
            Some(json!({"patterns": []})),
        ),
        (
            Method::POST,
            "/me/tokens".into(),
            Some(json!({"name": "matrix"})),
        ),
        (
            Method::POST,
            "/preflight/credentials?check_logins=false".into(),
            Some(task_body("u@x.example pw\n")),
        ),
        (
            Method::POST,
            "/tasks".into(),
            Some(task_body("u@x.example pw\n")),
        ),
    ];
    // A's objects: A and admins may, B gets 404 (not 403: ids are not confirmed).
    let owned: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/tasks/{ta}"), None),
        (Method::GET, format!("/tasks/{ta}/jobs"), None),
        (Method::GET, format!("/tasks/{ta}/report"), None),
        (Method::GET, format!("/tasks/{ta}/report.csv"), None),
        (Method::GET, format!("/jobs/{ja}"), None),
        (Method::GET, format!("/jobs/{ja}/log?tail=5"), None),
        (Method::GET, format!("/jobs/{ja}/log/download"), None),
        (Method::GET, format!("/jobs/{ja}/log/stream"), None),
        (Method::GET, format!("/events?task_id={ta}"), None),
        (Method::POST, format!("/jobs/{ja}/retry"), None),
        (Method::POST, format!("/tasks/{ta}/archive"), None),
        (Method::POST, format!("/tasks/{ta}/retry-failed"), None),
        (Method::POST, format!("/jobs/{ja}/cancel"), None),
        (Method::POST, format!("/tasks/{ta}/cancel"), None),
        (Method::POST, format!("/tasks/{ta}/unarchive"), None),
    ];
    // Admins only.
    let admin_only: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/users".into(), None),
        (Method::GET, "/audit".into(), None),
        (Method::GET, "/system".into(), None),
        (
            Method::PATCH,
            "/users/bob".into(),
            Some(json!({"role": "user"})),
        ),
        (
            Method::PUT,
            "/users/bob/password".into(),
            Some(json!({"password": PASSWORD_A})),
        ),
    ];

    for (method, path, body) in open.iter().chain(&owned).chain(&admin_only) {
        for (who, c) in &unauth {
            m.check(who, c, method.clone(), path, body.clone(), Status(401))
                .await;
        }
    }
    for (method, path, body) in &open {
        for (who, c) in [("alice", &w.a), ("bob", &w.b), ("admin", &w.admin)] {
            m.check(who, c, method.clone(), path, body.clone(), Ok)
                .await;
        }
    }
    for (method, path, body) in &owned {
        m.check("bob", &w.b, method.clone(), path, body.clone(), Status(404))
            .await;
        m.check("alice", &w.a, method.clone(), path, body.clone(), Allowed)
            .await;
        m.check(
            "admin",
            &w.admin,
            method.clone(),
            path,
            body.clone(),
            Allowed,
        )
        .await;
        // The same on B's objects, the other way round.
        let theirs = path
            .replace(&format!("/tasks/{ta}"), &format!("/tasks/{tb}"))
            .replace(&format!("/jobs/{ja}"), &format!("/jobs/{jb}"))
            .replace(&format!("task_id={ta}"), &format!("task_id={tb}"));
        m.check(
            "alice",
            &w.a,
            method.clone(),
            &theirs,
            body.clone(),
            Status(404),
        )
        .await;
    }
    for (method, path, body) in &admin_only {
        m.check(
            "alice",
            &w.a,
            method.clone(),
            path,
            body.clone(),
            Status(403),
        )
        .await;
        m.check("admin", &w.admin, method.clone(), path, body.clone(), Ok)
            .await;
    }
    m.check(
        "admin",
        &w.admin,
        Method::POST,
        "/users",
        Some(json!({"name": "erin", "password": "password-of-erin"})),
        Ok,
    )
    .await;
    m.check(
        "alice",
        &w.a,
        Method::POST,
        "/users",
        Some(json!({"name": "frank", "password": "password-of-frank"})),
        Status(403),
    )
    .await;
    // Owner filters: admins may name anyone, users only themselves.
    m.check(
        "alice",
        &w.a,
        Method::GET,
        "/tasks?owner=bob",
        None,
        Status(403),
    )
    .await;
    m.check("alice", &w.a, Method::GET, "/tasks?owner=alice", None, Ok)
        .await;
    m.check("admin", &w.admin, Method::GET, "/tasks?owner=bob", None, Ok)
        .await;
    // Deleting: admins only; others get 403 for their own task, 404 for someone else's.
    m.check(
        "alice",
        &w.a,
        Method::DELETE,
        &format!("/tasks/{ta}"),
        None,
        Status(403),
    )
    .await;
    m.check(
        "bob",
        &w.b,
        Method::DELETE,
        &format!("/tasks/{ta}"),
        None,
        Status(404),
    )
    .await;
    m.check(
        "admin",
        &w.admin,
        Method::DELETE,
        &format!("/tasks/{ta}"),
        None,
        Ok,
    )
    .await;
    // Revoking someone else's token: 404.
    let bobs = w.b.post("/me/tokens", json!({"name": "bob's"})).await.body["token"]["id"]
        .as_i64()
        .unwrap();
    m.check(
        "alice",
        &w.a,
        Method::DELETE,
        &format!("/me/tokens/{bobs}"),
        None,
        Status(404),
    )
    .await;
    m.check(
        "bob",
        &w.b,
        Method::DELETE,
        &format!("/me/tokens/{bobs}"),
        None,
        Ok,
    )
    .await;

    assert!(
        m.failures.is_empty(),
        "{} failures:\n{}",
        m.failures.len(),
        m.failures.join("\n")
    );
    let bob_tasks = w.admin.get("/tasks?owner=bob").await;
    assert!(
        bob_tasks.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["owner"] == "bob")
    );
}

/// The web UI's session works for the API, with the CSRF header on unsafe methods.
async fn session_and_csrf(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let http = w.app.client();
    assert_eq!(
        login(&w.app, &http, "alice", PASSWORD_A).await.status(),
        303
    );
    let mut session = Client {
        http: http.clone(),
        base: w.app.url("/api/v1"),
        token: None,
        csrf: None,
    };
    let me = session.get("/me").await;
    assert_eq!(
        (me.status, me.body["auth"].as_str()),
        (200, Some("session")),
        "{:?}",
        me.body
    );
    let csrf = me.body["csrf_token"].as_str().unwrap().to_string();

    let no_header = session.post("/tasks", task_body("u@x.example pw\n")).await;
    assert_eq!((no_header.status, no_header.code()), (403, "csrf_failed"));
    session.csrf = Some("0".repeat(64));
    assert_eq!(
        session
            .put("/me/host-patterns", json!({"patterns": []}))
            .await
            .code(),
        "csrf_failed"
    );
    session.csrf = Some(csrf.clone());
    let created = session.post("/tasks", task_body("u@x.example pw\n")).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["owner"], "alice");

    // A bearer token wins over the cookie and needs no CSRF header.
    let mut both = session.clone();
    both.csrf = None;
    both.token = w.b.token.clone();
    assert_eq!(both.get("/me").await.body["name"], "bob");
    assert_eq!(
        both.post("/tasks", task_body("u@x.example pw\n"))
            .await
            .status,
        201
    );
    // A malformed Authorization header is not silently ignored.
    let odd = session
        .send(
            session
                .request(Method::GET, "/me")
                .header("authorization", "Basic YTpi"),
        )
        .await;
    assert_eq!(odd.status, 401);

    // Disabling the account ends its API access at once.
    accounts::set_disabled(&w.app.state.db, &Actor::cli(), "alice", true)
        .await
        .unwrap();
    assert_eq!(session.get("/me").await.status, 401);
}

crate::api_backends!(permission_matrix, session_and_csrf);
