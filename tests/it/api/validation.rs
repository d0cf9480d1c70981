//! Validation errors: one body everywhere, field paths and batch line numbers, and never
//! a password in an error.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Reply, task_body, world};
use crate::harness::Backend;

fn fields(r: &Reply) -> Vec<(String, Option<u64>)> {
    r.body["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no details: {:?}", r.body))
        .iter()
        .map(|d| (d["field"].as_str().unwrap().to_string(), d["line"].as_u64()))
        .collect()
}

/// Every error has `{code, message, request_id, details}` and the request id header.
fn well_formed(r: &Reply) {
    assert!(
        r.body["code"].is_string() && r.body["message"].is_string(),
        "{:?}",
        r.body
    );
    assert!(r.body["details"].is_array(), "{:?}", r.body);
    let rid = r.body["request_id"].as_str().unwrap();
    assert_eq!(r.headers["x-request-id"].to_str().unwrap(), rid);
    assert!(!rid.is_empty());
}

async fn validation_errors(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let secret = "Sup3r-Secret-PW";

    // Batch lines: each problem with its line.
    let batch = format!("good@x.example {secret}\nonly-a-user\n\nbad user@x {secret}\n");
    let r = w.a.post("/tasks", task_body(&batch)).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{:?}",
        r.body
    );
    well_formed(&r);
    let f = fields(&r);
    assert!(f.iter().any(|(_, l)| *l == Some(2)), "{f:?}");
    assert!(
        f.iter().all(|(field, _)| field.starts_with("batch")),
        "{f:?}"
    );
    assert!(!r.body.to_string().contains(secret));

    // Hosts, options, engine and label, all at once.
    let body = json!({
        "source": "-evil", "destination": "http://x/y", "engine": "other",
        "label": "x".repeat(300), "batch": format!("a@x.example {secret}\n"),
        "options": {"max_age_days": 0, "delete_on_destination": true, "include_folders": ["("]},
        "extra_args": "--password1 nope"
    });
    let r = w.a.post("/tasks", body).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let f: Vec<String> = fields(&r).into_iter().map(|(f, _)| f).collect();
    for want in [
        "source",
        "destination",
        "engine",
        "options.max_age_days",
        "options.delete_on_destination",
        "options.include_folders[0]",
        "extra_args",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
    }

    // JSON mailboxes: errors name the entry, and `line` is its 1-based index.
    let body = json!({
        "source": "src.example.com", "destination": "dst.example.com",
        "mailboxes": [
            {"user1": "ok@x.example", "password1": secret},
            {"user1": "", "password1": secret},
            {"user1": "c@x.example", "password1": format!("multi\nline\n{secret}")}
        ]
    });
    let r = w.a.post("/tasks", body).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let f = fields(&r);
    // The multi-line password makes CSV line numbers drift; entries stay exact.
    assert_eq!(
        f,
        [
            ("mailboxes[1].user1".into(), Some(2)),
            ("mailboxes[2].password1".into(), Some(3))
        ]
    );
    assert!(!r.body.to_string().contains(secret));
    // Host checks run once every line parses.
    let body = json!({
        "source": "src.example.com", "destination": "dst.example.com",
        "mailboxes": [
            {"user1": "a@x.example", "password1": format!("with \"quotes\", commas {secret}")},
            {"user1": "b@x.example", "password1": secret},
            {"user1": "c@x.example", "password1": secret, "host1": "bad host"}
        ]
    });
    let r = w.a.post("/tasks", body).await;
    assert_eq!(fields(&r), [("mailboxes[2].host1".into(), Some(3))]);
    assert!(!r.body.to_string().contains(secret));

    // Schema errors name the path and never repeat the value.
    let body = json!({
        "source": "s.example", "destination": "d.example",
        "mailboxes": [{"user1": "a@x.example", "password1": 31337424242i64}],
        "options": {"dry_run": "yes", "tls1": "sometimes", "timeout_secs": -5},
        "optoins": {}
    });
    let r = w.a.post("/tasks", body).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let f: Vec<String> = fields(&r).into_iter().map(|(f, _)| f).collect();
    for want in [
        "mailboxes[0].password1",
        "options.dry_run",
        "options.tls1",
        "options.timeout_secs",
        "optoins",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
    }
    assert!(!r.body.to_string().contains("31337424242"), "{:?}", r.body);
    let r = w.a.post("/tasks", json!({"batch": "a b"})).await;
    assert_eq!(
        fields(&r),
        [("source".into(), None), ("destination".into(), None)]
    );
    let r =
        w.a.post("/tasks", json!({"source": "s", "destination": "d"}))
            .await;
    assert_eq!(fields(&r), [("batch".into(), None)]);
    let r =
        w.a.post(
            "/tasks",
            json!({"source": "s", "destination": "d", "batch": "a b", "mailboxes": []}),
        )
        .await;
    assert_eq!(fields(&r)[0].0, "mailboxes");
    let r = w.a.post("/tasks", json!([1, 2])).await;
    assert_eq!(fields(&r), [("body".into(), None)]);

    // Malformed requests.
    let raw = |ct: Option<&str>, body: &'static str| {
        let mut req = w.a.request(Method::POST, "/tasks").body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req
    };
    let r =
        w.a.send(raw(Some("application/json"), "{\"source\": "))
            .await;
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    well_formed(&r);
    let r = w.a.send(raw(Some("text/plain"), "hello")).await;
    assert_eq!((r.status, r.code()), (415, "unsupported_media_type"));
    let r = w.a.send(raw(None, "")).await;
    assert_eq!(r.status, 415);
    // Announcing a body over the limit is refused before it is read (raw HTTP: a client
    // library would try to send it all).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(w.app.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/tasks HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            w.a.token.as_deref().unwrap(),
            64 * 1024 * 1024
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }

    // Query parameters.
    let r = w.a.get("/tasks?status=bogus").await;
    assert_eq!((r.status, fields(&r)[0].0.as_str()), (422, "status"));
    let r = w.a.get("/tasks?limit=abc").await;
    assert_eq!(
        (r.status, r.code(), fields(&r)[0].0.as_str()),
        (400, "bad_request", "limit")
    );
    let r = w.a.get("/tasks?limit=201").await;
    assert_eq!((r.status, fields(&r)[0].0.as_str()), (422, "limit"));
    for q in [
        "sort=nope",
        "order=up",
        "archived=maybe",
        "cursor=zz",
        "page=0",
        "q=".to_string().as_str(),
    ] {
        let r = w.a.get(&format!("/tasks?{q}")).await;
        assert!(
            r.status == 422 || (q == "q=" && r.status == 200),
            "{q}: {:?}",
            r.body
        );
    }
    let r = w.a.get(&format!("/tasks?q={}", "y".repeat(300))).await;
    assert_eq!(fields(&r)[0].0, "q");
    let r = w.admin.get("/audit?from=yesterday").await;
    assert_eq!(fields(&r)[0].0, "from");
    let r = w.admin.get("/audit?from=2030-01-02&to=2030-01-01").await;
    assert_eq!(fields(&r)[0].0, "to");
    let r = w.a.get("/tasks/abc").await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = w.a.get("/preflight/host?host=a%20b").await;
    assert_eq!((r.status, fields(&r)[0].0.as_str()), (422, "host"));
    let r = w.a.get("/preflight/host").await;
    assert_eq!((r.status, fields(&r)[0].0.as_str()), (400, "host"));

    // Unknown paths and methods under /api are JSON too.
    let r = w.a.get("/nope").await;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    well_formed(&r);
    let r = w.a.call(Method::DELETE, "/me", None).await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed"));

    // Account inputs.
    let r = w.a.put("/me/host-patterns", json!({"patterns": [{"regex": "^ok$", "suffix": ".x"}, {"regex": "(", "suffix": ""}, {"regex": "^a$", "suffix": "bad suffix"}]})).await;
    assert_eq!(
        fields(&r),
        [
            ("host_patterns[1].regex".into(), None),
            ("host_patterns[2].suffix".into(), None)
        ]
    );
    let r =
        w.a.post(
            "/me/tokens",
            json!({"name": "t", "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(fields(&r)[0].0, "expires_at");
    let r =
        w.a.post("/me/tokens", json!({"name": "t", "expires_at": "soon"}))
            .await;
    assert_eq!(fields(&r)[0].0, "expires_at");
    let r = w.a.post("/me/tokens", json!({"name": ""})).await;
    assert_eq!(fields(&r)[0].0, "name");
    let r =
        w.a.put(
            "/me/password",
            json!({"current_password": secret, "new_password": "short"}),
        )
        .await;
    assert!(!r.body.to_string().contains(secret));
    let r = w
        .admin
        .post("/users", json!({"name": "bad name!", "password": secret}))
        .await;
    assert_eq!(fields(&r)[0].0, "name");
    assert!(!r.body.to_string().contains(secret));
    let r = w
        .admin
        .post("/users", json!({"name": "okname", "password": "x"}))
        .await;
    assert_eq!(r.status, 422);
    let r = w
        .admin
        .post(
            "/users",
            json!({"name": "okname", "password": "long-enough-pw", "role": "root"}),
        )
        .await;
    assert_eq!(fields(&r)[0].0, "role", "{:?}", r.body);

    // Conflicts.
    let t = super::create_task(&w.a, "u@x.example pw\n").await;
    let id = t["id"].as_i64().unwrap();
    let r = w.a.post_empty(&format!("/tasks/{id}/archive")).await;
    assert_eq!((r.status, r.code()), (409, "conflict"));
    let job = w.a.get(&format!("/tasks/{id}/jobs")).await.body["items"][0]["id"]
        .as_i64()
        .unwrap();
    let r = w.a.post_empty(&format!("/jobs/{job}/retry")).await;
    assert_eq!(r.status, 409);
    let r =
        w.a.post(&format!("/jobs/{job}/retry"), json!({"password2": secret}))
            .await;
    assert_eq!(fields(&r)[0].0, "password1");
    assert!(!r.body.to_string().contains(secret));
    let r = w.admin.delete(&format!("/tasks/{id}")).await;
    assert_eq!(r.status, 409);
    let _: Value = r.body;
}

crate::api_backends!(validation_errors);
