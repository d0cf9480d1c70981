//! Happy paths of every endpoint, driven by the imapsync stand-in.

use serde_json::json;

use super::{PASSWORD_A, create_task, wait_task, world};
use crate::{harness::Backend, pool::line};

/// A multipart/form-data body (reqwest is built without its multipart feature).
pub fn multipart(fields: &[(&str, &str)], file: (&str, &str, &str)) -> (String, String) {
    let boundary = "pymap-test-boundary-7d1c";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    let (name, filename, content) = file;
    body.push_str(&format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\ncontent-type: text/csv\r\n\r\n{content}\r\n--{boundary}--\r\n"
    ));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Tasks and jobs: create (JSON and CSV), list, get, jobs, logs, report, retry, cancel,
/// archive, delete.
async fn tasks_and_jobs(backend: Backend) {
    let Some(w) = world(backend, true, |_| {}).await else {
        return;
    };
    let batch = [line("g+speed20", "pw-one"), line("c+speed20", "pw-two")].concat();
    let task = create_task(&w.a, &batch).await;
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["owner"], "alice");
    assert_eq!(task["jobs"]["total"], 2);
    assert_eq!(task["source"], "src.example.com");
    assert!(
        !task.to_string().contains("pw-one"),
        "no password in responses"
    );

    let done = wait_task(&w.a, id).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(
        (
            done["jobs"]["succeeded"].as_i64(),
            done["jobs"]["failed"].as_i64()
        ),
        (Some(1), Some(1))
    );

    let list = w.a.get("/tasks?limit=10&total=true").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["items"][0]["id"], id);
    assert_eq!(
        w.a.get(&format!("/tasks/{id}")).await.body["label"],
        "api test"
    );

    let jobs = w.a.get(&format!("/tasks/{id}/jobs")).await;
    assert_eq!(jobs.status, 200);
    let items = jobs.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    let (ok, failed) = (&items[0], &items[1]);
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["exit_code"], 161);
    assert!(failed["reason"].as_str().unwrap().len() > 5);
    assert_eq!(failed["has_log"], true);
    assert_eq!(failed["credentials_stored"], true);
    assert!(!jobs.body.to_string().contains("pw-two"));
    let failed_id = failed["id"].as_i64().unwrap();
    let only_failed = w.a.get(&format!("/tasks/{id}/jobs?status=failed")).await;
    assert_eq!(only_failed.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        w.a.get(&format!("/jobs/{failed_id}")).await.body["user1"],
        failed["user1"]
    );

    // Logs: tail, byte range, download.
    let tail = w.a.get(&format!("/jobs/{failed_id}/log?tail=3")).await;
    assert_eq!(tail.status, 200);
    assert!(
        tail.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(tail.text().lines().count(), 3, "{}", tail.text());
    let size: u64 = tail.headers["x-log-size"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 100);
    let range =
        w.a.get(&format!("/jobs/{failed_id}/log?offset=0&limit=10"))
            .await;
    assert_eq!(range.text().len(), 10);
    assert_eq!(range.headers["x-log-end"], "10");
    let full = w.a.request(
        reqwest::Method::GET,
        &format!("/jobs/{failed_id}/log/download"),
    );
    let full = full.send().await.unwrap();
    assert_eq!(full.status(), 200);
    assert!(
        full.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let text = full.text().await.unwrap();
    assert_eq!(text.len() as u64, size);
    assert!(text.contains("pymap: attempt 1"));
    assert!(!text.contains("pw-two"), "passwords never reach logs");

    // The log stream replays the end of a finished job's log, then says `end`.
    let stream = w.a.request(
        reqwest::Method::GET,
        &format!("/jobs/{failed_id}/log/stream"),
    );
    let mut resp = stream.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut sse = String::new();
    while let Some(chunk) = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
        .await
        .expect("stream answers")
        .unwrap()
    {
        sse.push_str(&String::from_utf8_lossy(&chunk));
        if sse.contains("event: end") {
            break;
        }
    }
    assert!(
        sse.contains("event: lines") && sse.contains("\"status\":\"failed\""),
        "{sse}"
    );

    // Report, JSON and CSV.
    let report = w.a.get(&format!("/tasks/{id}/report")).await;
    assert_eq!(report.status, 200);
    assert_eq!(report.body["rows"].as_array().unwrap().len(), 2);
    assert_eq!(report.body["rows"][1]["exit_code"], 161);
    let csv = w.a.get(&format!("/tasks/{id}/report.csv")).await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(csv.text().starts_with("id,position,user1,user2"));
    assert_eq!(csv.text().lines().count(), 3);

    // Retry: the failed job again (stored credentials), then one job by id.
    let retried = w.a.post_empty(&format!("/tasks/{id}/retry-failed")).await;
    assert_eq!(
        (retried.status, retried.body["queued"].as_u64()),
        (200, Some(1))
    );
    wait_task(&w.a, id).await;
    let again = w.a.post_empty(&format!("/jobs/{failed_id}/retry")).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    wait_task(&w.a, id).await;
    let with_passwords =
        w.a.post(
            &format!("/jobs/{failed_id}/retry"),
            json!({"password1": "new-pw"}),
        )
        .await;
    assert_eq!(with_passwords.status, 200, "{:?}", with_passwords.body);
    wait_task(&w.a, id).await;
    assert_eq!(
        w.a.get(&format!("/jobs/{failed_id}")).await.body["attempts"],
        1
    );

    // Cancel (a finished task: nothing to stop, still fine), archive, unarchive.
    assert_eq!(
        w.a.post_empty(&format!("/tasks/{id}/cancel")).await.status,
        200
    );
    assert_eq!(
        w.a.post_empty(&format!("/jobs/{failed_id}/cancel"))
            .await
            .status,
        200
    );
    let archived = w.a.post_empty(&format!("/tasks/{id}/archive")).await;
    assert_eq!(archived.body["archived"], true);
    assert_eq!(
        w.a.get("/tasks").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        w.a.get("/tasks?archived=true").await.body["items"][0]["id"],
        id
    );
    assert_eq!(
        w.a.post_empty(&format!("/tasks/{id}/unarchive")).await.body["archived"],
        false
    );

    // CSV upload.
    let csv = "user1,password1\nstandin-g+speed20@m1.example.com,\"p,w\"\n";
    let (content_type, form) = multipart(
        &[
            ("source", "src.example.com"),
            ("destination", "dst.example.com"),
            ("label", "from csv"),
            ("options", r#"{"dry_run": true}"#),
        ],
        ("file", "batch.csv", csv),
    );
    let up =
        w.a.send(
            w.a.request(reqwest::Method::POST, "/tasks/csv")
                .header("content-type", content_type)
                .body(form),
        )
        .await;
    assert_eq!(up.status, 201, "{:?}", up.body);
    assert_eq!(up.body["options"]["dry_run"], true);
    assert_eq!(up.body["jobs"]["total"], 1);
    let csv_id = up.body["id"].as_i64().unwrap();
    wait_task(&w.a, csv_id).await;

    // JSON mailboxes, created by an admin for alice.
    let body = json!({
        "source": "src.example.com", "destination": "dst.example.com", "owner": "alice",
        "mailboxes": [{"user1": "standin-g+speed20@m2.example.com", "password1": "x y"}],
        "options": {"tls1": "implicit", "max_age_days": 30}
    });
    let made = w.admin.post("/tasks", body).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["owner"], "alice");
    assert_eq!(made.body["options"]["tls1"], "implicit");
    let made_id = made.body["id"].as_i64().unwrap();
    wait_task(&w.admin, made_id).await;

    // Delete (admins), with its logs.
    let log_dir = w
        .app
        .state
        .config
        .log_dir()
        .join("jobs")
        .join(format!("task-{id}"));
    assert!(log_dir.exists());
    assert_eq!(w.admin.delete(&format!("/tasks/{id}")).await.status, 204);
    assert_eq!(w.a.get(&format!("/tasks/{id}")).await.status, 404);
    assert_eq!(w.a.get(&format!("/jobs/{failed_id}")).await.status, 404);
    assert!(!log_dir.exists());

    // The audit trail recorded the API's actions.
    let audit = w.admin.get("/audit?object_type=task&limit=100").await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "task.create",
        "task.cancel",
        "task.archive",
        "task.unarchive",
        "task.delete",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

/// Account, tokens, host patterns, preflight, users, audit, system, dashboard.
async fn accounts_and_admin(backend: Backend) {
    let Some(w) = world(backend, false, |c| {
        c.hosts = vec![("^gl[0-9]+$".into(), ".global.example".into())];
    })
    .await
    else {
        return;
    };
    let me = w.a.get("/me").await;
    assert_eq!(
        (
            me.status,
            me.body["name"].as_str(),
            me.body["auth"].as_str()
        ),
        (200, Some("alice"), Some("token"))
    );
    assert_eq!(me.body["role"], "user");

    // Host patterns and their preview.
    let set =
        w.a.put(
            "/me/host-patterns",
            json!({"patterns": [{"regex": "^mx[0-9]+$", "suffix": ".mail.example.com"}]}),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.body["global"][0]["suffix"], ".global.example");
    assert_eq!(
        w.a.get("/me/host-patterns").await.body["patterns"][0]["regex"],
        "^mx[0-9]+$"
    );
    let r = w.a.get("/preflight/host?host=MX7").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["resolved"].as_str(), r.body["via"].as_str()),
        (Some("mx7.mail.example.com"), Some("your pattern #1"))
    );
    assert_eq!(
        w.a.get("/preflight/host?host=gl2:993").await.body["port"],
        993
    );
    assert_eq!(
        w.b.get("/preflight/host?host=mx7").await.body["resolved"],
        "mx7",
        "patterns are per user"
    );

    // Preflight of a batch: validated and resolved (login checks against real servers
    // are in `login_check.rs`).
    let body = json!({"source": "mx1", "destination": "gl1", "batch": "u1@x.example p1\nu2@x.example p2 u2@y.example p3\n"});
    let pf =
        w.a.post("/preflight/credentials?check_logins=false", body)
            .await;
    assert_eq!(pf.status, 200, "{:?}", pf.body);
    assert_eq!(pf.body["mailboxes"], 2);
    assert_eq!(pf.body["lines"][1]["line"], 2);
    assert_eq!(pf.body["lines"][1]["user2"], "u2@y.example");
    assert_eq!(pf.body["destination"]["resolved"], "gl1.global.example");
    assert!(!pf.body.to_string().contains("p3"));

    // Tokens: create (secret once), list (never the secret), use, revoke.
    let made =
        w.a.post("/me/tokens", json!({"name": "ci", "expires_in_days": 30}))
            .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let secret = made.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("pymap_"));
    let token_id = made.body["token"]["id"].as_i64().unwrap();
    assert!(made.body["token"]["expires_at"].is_string());
    let list = w.a.get("/me/tokens").await;
    assert!(!list.body.to_string().contains(&secret));
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == token_id && t["active"] == true)
    );
    let ci = w.client(Some(secret.clone()));
    assert_eq!(
        ci.get("/me").await.body["token_expires_at"],
        made.body["token"]["expires_at"]
    );
    assert_eq!(
        w.a.delete(&format!("/me/tokens/{token_id}")).await.status,
        204
    );
    assert_eq!(ci.get("/me").await.status, 401);
    assert_eq!(
        w.b.delete(&format!("/me/tokens/{token_id}")).await.status,
        404
    );

    // Password change.
    let wrong =
        w.a.put(
            "/me/password",
            json!({"current_password": "nope", "new_password": "another-password-1"}),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.body["details"][0]["field"].as_str()),
        (422, Some("current_password"))
    );
    let ok =
        w.a.put(
            "/me/password",
            json!({"current_password": PASSWORD_A, "new_password": "another-password-1"}),
        )
        .await;
    assert_eq!(ok.status, 204, "{:?}", ok.body);

    // Users (admins).
    let created = w
        .admin
        .post(
            "/users",
            json!({"name": "Carol", "password": "carol-password-1", "role": "user"}),
        )
        .await;
    assert_eq!(
        (created.status, created.body["name"].as_str()),
        (201, Some("carol"))
    );
    let dup = w
        .admin
        .post(
            "/users",
            json!({"name": "carol", "password": "carol-password-1"}),
        )
        .await;
    assert_eq!((dup.status, dup.code()), (409, "conflict"));
    let users = w.admin.get("/users").await;
    assert_eq!(users.body.as_array().unwrap().len(), 4);
    assert!(!users.body.to_string().contains("argon2"));
    let patched = w
        .admin
        .patch("/users/carol", json!({"role": "admin", "disabled": true}))
        .await;
    assert_eq!(
        (
            patched.body["role"].as_str(),
            patched.body["disabled"].as_bool()
        ),
        (Some("admin"), Some(true))
    );
    assert_eq!(
        w.admin
            .put(
                "/users/carol/password",
                json!({"password": "reset-password-1"})
            )
            .await
            .status,
        204
    );
    assert_eq!(
        w.admin
            .patch("/users/nobody", json!({"disabled": true}))
            .await
            .status,
        404
    );
    let self_disable = w
        .admin
        .patch("/users/admin", json!({"disabled": true}))
        .await;
    assert_eq!(self_disable.status, 422, "{:?}", self_disable.body);

    // Audit trail with filters and paging.
    let audit = w
        .admin
        .get("/audit?user=admin&action=user.&limit=2&total=true")
        .await;
    assert_eq!(audit.status, 200, "{:?}", audit.body);
    assert!(audit.body["total"].as_u64().unwrap() >= 4);
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 2);
    let next = audit.body["next_cursor"].as_str().unwrap();
    let page2 = w
        .admin
        .get(&format!(
            "/audit?user=admin&action=user.&limit=2&cursor={next}"
        ))
        .await;
    assert!(page2.body["items"][0]["id"].as_i64() < audit.body["items"][1]["id"].as_i64());
    let exact = w
        .admin
        .get("/audit?action=token.revoke&outcome=success")
        .await;
    assert_eq!(exact.body["items"][0]["actor_name"], "alice");
    let today = chrono::Utc::now().date_naive();
    let dated = w
        .admin
        .get(&format!(
            "/audit?from={today}&to={}",
            today + chrono::Duration::days(1)
        ))
        .await;
    assert!(!dated.body["items"].as_array().unwrap().is_empty());
    assert_eq!(
        w.admin.get("/audit?from=2030-01-01").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // System and dashboard.
    let sys = w.admin.get("/system").await;
    assert_eq!(sys.status, 200, "{:?}", sys.body);
    let imapsync = &sys.body["engines"][0];
    assert_eq!(
        (
            imapsync["name"].as_str(),
            imapsync["available"].as_bool(),
            imapsync["version"].as_str()
        ),
        (Some("imapsync"), Some(true), Some("2.229"))
    );
    let native = &sys.body["engines"][1];
    assert_eq!(
        (native["name"].as_str(), native["available"].as_bool()),
        (Some("native"), Some(true))
    );
    assert!(
        native["version"]
            .as_str()
            .is_some_and(|v| v.contains("native IMAP engine")),
        "{native}"
    );
    assert!(sys.body["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(sys.body["pool"]["running_here"], 0);
    assert_eq!(sys.body["pool"]["concurrency"], 0);
    assert!(sys.body["queue"]["queued"].is_u64());
    create_task(&w.b, &line("g", "pw")).await;
    let dash = w.b.get("/dashboard").await;
    assert_eq!(dash.status, 200);
    assert_eq!(
        (dash.body["tasks"].as_u64(), dash.body["queued"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        w.a.get("/dashboard").await.body["tasks"],
        0,
        "only your own"
    );
    assert_eq!(w.admin.get("/dashboard").await.body["tasks"], 1);
}

crate::api_backends!(tasks_and_jobs, accounts_and_admin);
