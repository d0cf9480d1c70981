//! The permission matrix, driven by the OpenAPI spec. Every operation of the spec has a
//! row here — an endpoint added without one fails the test, so none is left out — and
//! every row is called by: anonymous, the token of a disabled user, an expired, a revoked
//! and a malformed token (all 401 with the error body); user A, user B and an admin
//! (2xx, 403 for what needs an admin, 404 for objects the caller may not see — the same
//! 404 as for an id that does not exist); and A's session cookie without the CSRF header
//! (403 on unsafe methods).

use std::collections::BTreeSet;

use pymap::service::{Actor, Role, accounts, tokens};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    api::{Client, PASSWORD_A, World, create_task, expired_token, task_body, world},
    harness::{Backend, login},
    pool::line,
};

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Access {
    /// Any signed-in user.
    Signed,
    /// A's object: A and admins; B gets 404.
    Owned,
    /// Admins only; others get 403.
    Admin,
    /// Admins only, on A's object: A gets 403, B 404.
    AdminOwned,
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    /// A CSV batch upload (multipart/form-data).
    Csv,
}

struct Row {
    method: Method,
    /// The spec's template; `{…}` is filled in per caller.
    path: &'static str,
    /// Appended to the path (not part of the template).
    query: &'static str,
    access: Access,
    body: Body,
    /// Statuses that show the caller was let through, besides 2xx: 409 when the object's
    /// state does not allow the action, 422 for a body that is invalid on purpose.
    also_ok: &'static [u16],
}

fn row(method: Method, path: &'static str, access: Access) -> Row {
    Row {
        method,
        path,
        query: "",
        access,
        body: Body::None,
        also_ok: &[],
    }
}

impl Row {
    fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
    fn query(mut self, q: &'static str) -> Self {
        self.query = q;
        self
    }
    fn also(mut self, ok: &'static [u16]) -> Self {
        self.also_ok = ok;
        self
    }
}

fn rows() -> Vec<Row> {
    use Access::*;
    let get = Method::GET;
    let post = Method::POST;
    vec![
        row(get.clone(), "/me", Signed),
        row(get.clone(), "/me/host-patterns", Signed),
        row(Method::PUT, "/me/host-patterns", Signed).json(json!({"patterns": []})),
        // A wrong current password: 422 proves the caller got through to the check.
        row(Method::PUT, "/me/password", Signed)
            .json(
                json!({"current_password": "not-the-password", "new_password": "whatever-pw-123"}),
            )
            .also(&[422]),
        row(get.clone(), "/me/tokens", Signed),
        row(post.clone(), "/me/tokens", Signed).json(json!({"name": "matrix"})),
        row(Method::DELETE, "/me/tokens/{token_id}", Owned),
        row(get.clone(), "/dashboard", Signed),
        row(get.clone(), "/events", Signed),
        row(get.clone(), "/preflight/host", Signed).query("?host=mx1.example.com"),
        row(post.clone(), "/preflight/credentials", Signed)
            .query("?check_logins=false")
            .json(task_body("u@x.example pw\n")),
        row(get.clone(), "/tasks", Signed),
        row(post.clone(), "/tasks", Signed).json(task_body("u@x.example pw\n")),
        Row {
            body: Body::Csv,
            ..row(post.clone(), "/tasks/csv", Signed)
        },
        row(get.clone(), "/tasks/{task_id}", Owned),
        row(get.clone(), "/tasks/{task_id}/jobs", Owned),
        row(get.clone(), "/tasks/{task_id}/report", Owned),
        row(get.clone(), "/tasks/{task_id}/report.csv", Owned),
        row(get.clone(), "/events", Owned).query("?task_id={task_id}"),
        row(get.clone(), "/jobs/{job_id}", Owned),
        row(get.clone(), "/jobs/{job_id}/log", Owned).query("?tail=5"),
        row(get.clone(), "/jobs/{job_id}/log/download", Owned),
        row(get.clone(), "/jobs/{job_id}/log/stream", Owned),
        row(post.clone(), "/jobs/{job_id}/verify", Owned).also(&[409]),
        row(post.clone(), "/jobs/{job_id}/retry", Owned).also(&[409]),
        row(post.clone(), "/jobs/{job_id}/cancel", Owned).also(&[409]),
        row(post.clone(), "/tasks/{task_id}/retry-failed", Owned).also(&[409]),
        row(post.clone(), "/tasks/{task_id}/cancel", Owned).also(&[409]),
        row(post.clone(), "/tasks/{task_id}/archive", Owned).also(&[409]),
        row(post.clone(), "/tasks/{task_id}/unarchive", Owned).also(&[409]),
        row(get.clone(), "/users", Admin),
        row(post.clone(), "/users", Admin)
            .json(json!({"name": "matrix-user", "password": "matrix-password-1"})),
        row(Method::PATCH, "/users/{name}", Admin).json(json!({"role": "user"})),
        row(Method::PUT, "/users/{name}/password", Admin)
            .json(json!({"password": "reset-password-123"})),
        row(get.clone(), "/audit", Admin),
        row(get.clone(), "/system", Admin),
        // Last: it removes A's task.
        row(Method::DELETE, "/tasks/{task_id}", AdminOwned),
    ]
}

/// Every operation of the spec is a row, and every row is an operation of the spec.
#[test]
fn every_operation_has_a_row() {
    let spec: Value = serde_json::from_str(&pymap::api::spec_json()).unwrap();
    let mut in_spec = BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            in_spec.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let in_matrix: BTreeSet<String> = rows()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let missing: Vec<_> = in_spec.difference(&in_matrix).collect();
    let unknown: Vec<_> = in_matrix.difference(&in_spec).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "add a row to tests/it/api_matrix.rs for {missing:?}; not in the spec: {unknown:?}"
    );
}

/// The ids a caller's requests are filled in with.
struct Ids {
    task: i64,
    job: i64,
    token: i64,
}

fn fill(template: &str, ids: &Ids) -> String {
    template
        .replace("{task_id}", &ids.task.to_string())
        .replace("{job_id}", &ids.job.to_string())
        .replace("{token_id}", &ids.token.to_string())
        .replace("{name}", "bob")
}

/// A small CSV batch as multipart/form-data.
fn csv_form() -> (String, String) {
    let b = "pymap-matrix-boundary";
    let mut body = String::new();
    for (name, value) in [
        ("source", "src.example.com"),
        ("destination", "dst.example.com"),
    ] {
        body.push_str(&format!(
            "--{b}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{b}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"b.csv\"\r\ncontent-type: text/csv\r\n\r\nuser1,password1\nu@x.example,pw\r\n--{b}--\r\n"
    ));
    (format!("multipart/form-data; boundary={b}"), body)
}

struct Outcome {
    status: u16,
    body: Value,
    www_authenticate: bool,
}

async fn call(c: &Client, r: &Row, ids: &Ids) -> Outcome {
    let path = format!("{}{}", fill(r.path, ids), fill(r.query, ids));
    let mut req = c.request(r.method.clone(), &path);
    match &r.body {
        Body::None => {}
        Body::Json(v) => req = req.json(v),
        Body::Csv => {
            let (ct, form) = csv_form();
            req = req.header("content-type", ct).body(form);
        }
    }
    let resp = req.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    let www_authenticate = resp.headers().contains_key("www-authenticate");
    // Streams stay open: read bodies of errors only (dropping the response closes them).
    let body = if status >= 400 {
        let text = resp.text().await.unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    } else {
        Value::Null
    };
    Outcome {
        status,
        body,
        www_authenticate,
    }
}

/// The error body: `{code, message, request_id, details[]}`.
fn error_body(o: &Outcome) -> bool {
    o.body["code"].is_string()
        && o.body["message"].is_string()
        && o.body["request_id"].as_str().is_some_and(|r| !r.is_empty())
        && o.body["details"].is_array()
}

struct Failures(Vec<String>);

impl Failures {
    fn expect(&mut self, who: &str, r: &Row, o: &Outcome, want: &str, ok: bool) {
        if !ok {
            self.0.push(format!(
                "{who} {} {}{}: got {} {}, want {want}",
                r.method, r.path, r.query, o.status, o.body
            ));
        }
        if o.status >= 400 && !error_body(o) {
            self.0.push(format!(
                "{who} {} {}: {} without the error body: {}",
                r.method, r.path, o.status, o.body
            ));
        }
    }

    fn permitted(&mut self, who: &str, r: &Row, o: &Outcome) {
        let ok = (200..300).contains(&o.status) || r.also_ok.contains(&o.status);
        self.expect(who, r, o, "2xx", ok);
    }

    fn status(&mut self, who: &str, r: &Row, o: &Outcome, want: u16) {
        self.expect(who, r, o, &want.to_string(), o.status == want);
    }
}

async fn setup(w: &World) -> (Ids, Ids) {
    let db = &w.app.state.db;
    let task_of = |c: Client, pw: &'static str| async move {
        create_task(&c, &line("g", pw)).await["id"]
            .as_i64()
            .unwrap()
    };
    let (ta, tb) = (
        task_of(w.a.clone(), "pw-a").await,
        task_of(w.b.clone(), "pw-b").await,
    );
    let job_of = |t: i64| {
        let c = w.admin.clone();
        async move {
            c.get(&format!("/tasks/{t}/jobs")).await.body["items"][0]["id"]
                .as_i64()
                .unwrap()
        }
    };
    let spare = |name: &'static str| async move {
        let actor = w.actor(name).await;
        tokens::create(db, &actor, "spare", None)
            .await
            .unwrap()
            .token
            .id
    };
    (
        Ids {
            task: ta,
            job: job_of(ta).await,
            token: spare("alice").await,
        },
        Ids {
            task: tb,
            job: job_of(tb).await,
            token: spare("bob").await,
        },
    )
}

async fn matrix(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let db = &w.app.state.db;
    let cli = Actor::cli();
    accounts::create(db, &cli, "dave", "password-of-dave-1", Role::User)
        .await
        .unwrap();
    let disabled = w.client(Some(w.token("dave").await));
    accounts::set_disabled(db, &cli, "dave", true)
        .await
        .unwrap();
    let expired = w.client(Some(expired_token(&w, "alice").await));
    let revoked = {
        let actor = w.actor("alice").await;
        let made = tokens::create(db, &actor, "revoked", None).await.unwrap();
        tokens::revoke(db, &actor, made.token.id).await.unwrap();
        w.client(Some(made.secret))
    };
    let malformed = w.client(Some("pymap_not-a-token".into()));
    let (ids_a, ids_b) = setup(&w).await;
    let nowhere = Ids {
        task: 987_654_321,
        job: 987_654_321,
        token: 987_654_321,
    };
    // A's session, sending no CSRF header.
    let http = w.app.client();
    assert_eq!(
        login(&w.app, &http, "alice", PASSWORD_A).await.status(),
        303
    );
    let session = Client {
        http,
        base: w.app.url("/api/v1"),
        token: None,
        csrf: None,
    };

    let mut f = Failures(Vec::new());
    for r in rows() {
        for (who, c) in [
            ("anonymous", &w.anon),
            ("disabled user's token", &disabled),
            ("expired token", &expired),
            ("revoked token", &revoked),
            ("malformed token", &malformed),
        ] {
            let o = call(c, &r, &ids_a).await;
            f.status(who, &r, &o, 401);
            if o.status == 401 && !o.www_authenticate {
                f.0.push(format!(
                    "{who} {} {}: 401 without WWW-Authenticate",
                    r.method, r.path
                ));
            }
        }
        let unsafe_method = !matches!(r.method, Method::GET | Method::HEAD);
        if unsafe_method {
            let o = call(&session, &r, &ids_a).await;
            f.status("alice's session without CSRF header", &r, &o, 403);
            if o.body["code"] != "csrf_failed" {
                f.0.push(format!(
                    "{} {}: {} is not csrf_failed",
                    r.method, r.path, o.body
                ));
            }
        }
        match r.access {
            Access::Signed => {
                for (who, c) in [("alice", &w.a), ("bob", &w.b), ("admin", &w.admin)] {
                    let o = call(c, &r, &ids_a).await;
                    f.permitted(who, &r, &o);
                }
            }
            Access::Owned => {
                let theirs = call(&w.b, &r, &ids_a).await;
                f.status("bob on alice's", &r, &theirs, 404);
                // Not found looks the same whether the object exists or not.
                let absent = call(&w.b, &r, &nowhere).await;
                if (theirs.status, &theirs.body["code"], &theirs.body["message"])
                    != (absent.status, &absent.body["code"], &absent.body["message"])
                {
                    f.0.push(format!(
                        "{} {}: someone else's object ({} {}) differs from a missing one ({} {})",
                        r.method, r.path, theirs.status, theirs.body, absent.status, absent.body
                    ));
                }
                let o = call(&w.a, &r, &ids_b).await;
                f.status("alice on bob's", &r, &o, 404);
                let o = call(&w.a, &r, &ids_a).await;
                f.permitted("alice", &r, &o);
                let o = call(&w.admin, &r, &ids_b).await;
                f.permitted("admin on bob's", &r, &o);
            }
            Access::Admin => {
                for (who, c) in [("alice", &w.a), ("bob", &w.b)] {
                    let o = call(c, &r, &ids_a).await;
                    f.status(who, &r, &o, 403);
                }
                let o = call(&w.admin, &r, &ids_a).await;
                f.permitted("admin", &r, &o);
            }
            Access::AdminOwned => {
                let o = call(&w.a, &r, &ids_a).await;
                f.status("alice on her own", &r, &o, 403);
                let o = call(&w.b, &r, &ids_a).await;
                f.status("bob on alice's", &r, &o, 404);
                let o = call(&w.admin, &r, &ids_a).await;
                f.permitted("admin", &r, &o);
                let gone = call(
                    &w.a,
                    &row(Method::GET, "/tasks/{task_id}", Access::Owned),
                    &ids_a,
                )
                .await;
                f.status("alice after the delete", &r, &gone, 404);
            }
        }
    }
    assert!(
        f.0.is_empty(),
        "{} failures:\n{}",
        f.0.len(),
        f.0.join("\n")
    );
}

crate::api_backends!(matrix);
