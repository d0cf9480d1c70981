//! Actions seen live and retries after the password wipe: a cancel, retry or archive
//! in one tab reaches another tab's event stream at once (the worker is idle, so only
//! the action can have announced it); a job whose passwords were wiped asks for them
//! (API and web, one job or a pasted batch) and stores them encrypted; and the disk
//! space on the system page.

use std::time::{Duration, Instant};

use pymap::service::{credentials, job_state};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    api::{PASSWORD_A, World, create_task, world},
    harness::{Backend, csrf_from, login},
    pool::jobs_of,
};

/// A Server-Sent Events reader over a streaming response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next `(event, data)` within `wait`, skipping keep-alive comments.
    async fn next(&mut self, wait: Duration) -> Option<(String, String)> {
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
                    return Some((name, data));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// Events until one satisfies `want`, within `wait` in all.
    async fn until(
        &mut self,
        wait: Duration,
        mut want: impl FnMut(&str, &Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + wait;
        while let Some((name, data)) = self
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            let v: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            if want(&name, &v) {
                return Some(v);
            }
        }
        None
    }
}

async fn open(w: &World, path: &str) -> Sse {
    let resp =
        w.a.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    Sse {
        resp,
        buf: String::new(),
    }
}

const LIVE: Duration = Duration::from_secs(1);

/// Two "tabs" of alice: a stream, and actions through other requests.
async fn actions_reach_other_tabs(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let task = create_task(&w.a, "u1@x.example pw1\nu2@x.example pw2\n").await;
    let task_id = task["id"].as_i64().unwrap();
    let jobs = jobs_of(&w.app, task_id).await;
    let mut events = open(&w, "/events").await;
    let mut filtered = open(&w, &format!("/events?task_id={task_id}")).await;

    // Cancel one queued job: the worker never touches it again.
    let asked = Instant::now();
    let r =
        w.a.post_empty(&format!("/jobs/{}/cancel", jobs[0].id))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = events
        .until(LIVE, |name, v| {
            name == "job_status" && v["job_id"] == jobs[0].id && v["status"] == "cancelled"
        })
        .await;
    assert!(
        seen.is_some(),
        "no job_status event within {LIVE:?} of the cancel"
    );
    assert!(asked.elapsed() < LIVE + Duration::from_millis(500));
    let summary = events
        .until(LIVE, |name, v| {
            name == "task_status" && v["task_id"] == task_id
        })
        .await
        .expect("the task's counts follow");
    assert_eq!(summary["jobs"]["cancelled"], 1, "{summary}");
    assert!(
        filtered
            .until(LIVE, |name, v| name == "job_status"
                && v["job_id"] == jobs[0].id)
            .await
            .is_some(),
        "a stream filtered on the task sees it too"
    );

    // Retry it: queued again, announced.
    let r =
        w.a.post(&format!("/jobs/{}/retry", jobs[0].id), json!({}))
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        events
            .until(LIVE, |name, v| name == "job_status"
                && v["job_id"] == jobs[0].id
                && v["status"] == "queued")
            .await
            .is_some(),
        "retry announced"
    );

    // Cancel the whole task, then archive it: each shows up.
    let r = w.a.post_empty(&format!("/tasks/{task_id}/cancel")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut cancelled = Vec::new();
    while cancelled.len() < 2 {
        let Some(v) = events
            .until(LIVE, |name, v| {
                name == "job_status" && v["status"] == "cancelled"
            })
            .await
        else {
            panic!("only {cancelled:?} announced as cancelled");
        };
        cancelled.push(v["job_id"].as_i64().unwrap());
    }
    cancelled.sort_unstable();
    assert_eq!(cancelled, [jobs[0].id, jobs[1].id]);
    let r = w.a.post_empty(&format!("/tasks/{task_id}/archive")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        events
            .until(LIVE, |name, v| name == "task_status"
                && v["task_id"] == task_id)
            .await
            .is_some(),
        "archive announced"
    );

    // Bob's stream sees none of it.
    let mut bob =
        w.b.request(reqwest::Method::GET, "/events")
            .send()
            .await
            .unwrap();
    let r = w.a.post_empty(&format!("/tasks/{task_id}/unarchive")).await;
    assert_eq!(r.status, 200);
    let leaked = tokio::time::timeout(Duration::from_millis(600), bob.chunk()).await;
    assert!(
        !matches!(&leaked, Ok(Ok(Some(c))) if String::from_utf8_lossy(c).contains("task_id")),
        "{leaked:?}"
    );
    w.app.stop().await;
}

/// A task whose jobs ended and whose passwords were wiped.
async fn wiped_task(w: &World, batch: &str) -> (i64, Vec<i64>) {
    let task = create_task(&w.a, batch).await;
    let id = task["id"].as_i64().unwrap();
    assert_eq!(
        w.a.post_empty(&format!("/tasks/{id}/cancel")).await.status,
        200
    );
    let wiped = job_state::wipe_expired_credentials(&w.app.state.db, 0)
        .await
        .unwrap();
    assert!(wiped >= 1);
    let jobs = jobs_of(&w.app, id).await;
    assert!(jobs.iter().all(|j| j.password1.is_none()));
    (id, jobs.iter().map(|j| j.id).collect())
}

/// The stored passwords of a job decrypt to these (and are not stored in clear).
async fn stored(w: &World, job_id: i64, p1: &str, p2: &str) {
    use entity::job;
    use sea_orm::EntityTrait;
    let j = job::Entity::find_by_id(job_id)
        .one(&w.app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.status, "queued");
    let key = &w.app.state.keys.credentials;
    for (field, sealed, want) in [
        ("password1", &j.password1, p1),
        ("password2", &j.password2, p2),
    ] {
        let sealed = sealed.as_ref().expect("stored again");
        assert!(
            !sealed.windows(want.len()).any(|w| w == want.as_bytes()),
            "{field} stored in clear"
        );
        let open = credentials::decrypt(key, job_id, field, sealed).expect("decrypts");
        assert_eq!(open.expose(), want);
    }
}

async fn retry_after_wipe_api(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let (_, jobs) = wiped_task(&w, "u1@x.example pw1\n").await;
    let path = format!("/jobs/{}/retry", jobs[0]);
    let r = w.a.post_empty(&path).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "validation_failed"),
        "{:?}",
        r.body
    );
    assert_eq!(r.body["details"][0]["field"], "password1", "{:?}", r.body);
    assert!(
        r.body["message"].as_str().unwrap().contains("wiped"),
        "{:?}",
        r.body
    );
    let r = w.a.post(&path, json!({"password2": "only-two"})).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["details"][0]["field"], "password1");
    let r =
        w.a.post(
            &path,
            json!({"password1": "New-Pw-One-1", "password2": "New-Pw-Two-2"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["credentials_stored"], true);
    assert!(!r.body.to_string().contains("New-Pw-One-1"));
    stored(&w, jobs[0], "New-Pw-One-1", "New-Pw-Two-2").await;
    w.app.stop().await;
}

async fn retry_after_wipe_web(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let browser = w.app.client();
    assert_eq!(
        login(&w.app, &browser, "alice", PASSWORD_A).await.status(),
        303
    );
    let (task_id, jobs) = wiped_task(
        &w,
        "one@x.example pw1\ntwo@x.example pw2 two@y.example pw3\nthree@x.example pw4\n",
    )
    .await;
    let page = |path: String| {
        let browser = browser.clone();
        let url = w.app.url(&path);
        async move {
            let resp = browser.get(url).send().await.unwrap();
            (resp.status(), resp.text().await.unwrap())
        }
    };
    let (_, task_page) = page(format!("/tasks/{task_id}")).await;
    assert!(
        task_page.contains("Retry with new passwords") && task_page.contains("3 mailboxes"),
        "{task_page}"
    );
    let token = csrf_from(&task_page);
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let browser = browser.clone();
        let url = w.app.url(&path);
        let token = token.clone();
        async move {
            let mut all = fields;
            all.push(("csrf_token", token));
            browser.post(url).form(&all).send().await.unwrap()
        }
    };

    // The row's Retry without passwords leads to the form.
    let resp = post(format!("/jobs/{}/retry", jobs[0]), vec![]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        resp.headers()["location"],
        format!("/jobs/{}/retry", jobs[0]).as_str()
    );
    let (status, form) = page(format!("/jobs/{}/retry", jobs[0])).await;
    assert_eq!(status, 200);
    assert!(
        form.contains("were wiped") && form.contains("name=\"password1\""),
        "{form}"
    );
    // CSRF applies.
    let resp = browser
        .post(w.app.url(&format!("/jobs/{}/retry", jobs[0])))
        .form(&[("password1", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(
        format!("/jobs/{}/retry", jobs[0]),
        vec![("password2", "Only-Two-Pw".into())],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = resp.text().await.unwrap();
    assert!(body.contains("password1") && !body.contains("Only-Two-Pw"));
    let resp = post(
        format!("/jobs/{}/retry", jobs[0]),
        vec![("password1", "Web-Pw-One-1".into())],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    stored(&w, jobs[0], "Web-Pw-One-1", "Web-Pw-One-1").await;

    // A pasted batch for the others: all lines must match, else nothing is queued.
    let resp = post(
        format!("/tasks/{task_id}/retry-passwords"),
        vec![(
            "passwords",
            "two@x.example Batch-Pw-2 two@y.example Batch-Pw-3\nnobody@x.example Batch-Pw-9\n"
                .into(),
        )],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, after) = page(format!("/tasks/{task_id}")).await;
    assert!(
        after.contains("Nothing was queued") && after.contains("line 2"),
        "{after}"
    );
    assert!(!after.contains("Batch-Pw"), "no password echoed");
    assert!(jobs_of(&w.app, task_id).await[1].password1.is_none());
    let resp = post(
        format!("/tasks/{task_id}/retry-passwords"),
        vec![(
            "passwords",
            "two@x.example Batch-Pw-2 two@y.example Batch-Pw-3\nTHREE@x.example Batch-Pw-4\n"
                .into(),
        )],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, done) = page(format!("/tasks/{task_id}")).await;
    assert!(done.contains("2 mailboxes queued again"), "{done}");
    assert!(!done.contains("Retry with new passwords"), "none waits now");
    stored(&w, jobs[1], "Batch-Pw-2", "Batch-Pw-3").await;
    stored(&w, jobs[2], "Batch-Pw-4", "Batch-Pw-4").await;
    w.app.stop().await;
}

async fn system_disk(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let log_dir = w.app.state.config.log_dir();
    std::fs::create_dir_all(log_dir.join("task-1")).unwrap();
    std::fs::write(log_dir.join("task-1/job-1.log"), vec![b'x'; 4321]).unwrap();
    let r = w.admin.get("/system").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let disk = &r.body["disk"];
    let bytes = disk["log_dir_bytes"].as_u64().unwrap();
    assert!(bytes >= 4321, "{disk}");
    for fs in [&disk["data"], &disk["logs"]] {
        let (free, total) = (
            fs["free_bytes"].as_u64().unwrap(),
            fs["total_bytes"].as_u64().unwrap(),
        );
        assert!(total > 0 && free <= total, "{fs}");
        assert_eq!(fs["low"], free * 10 < total, "{fs}");
    }
    assert_eq!(
        disk["data"]["path"],
        w.app.state.config.data_dir.display().to_string()
    );
    assert_eq!(w.a.get("/system").await.status, 403, "admins only");

    let browser = w.app.client();
    let admin_pw = crate::harness::ADMIN_PASSWORD;
    assert_eq!(
        login(&w.app, &browser, "admin", admin_pw).await.status(),
        303
    );
    let html = browser
        .get(w.app.url("/admin/system"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("id=\"disk\"") && html.contains(" free of "),
        "{html}"
    );
    assert!(html.contains("id=\"log-size\""), "{html}");
    w.app.stop().await;
}

crate::api_backends!(
    actions_reach_other_tabs,
    retry_after_wipe_api,
    retry_after_wipe_web,
    system_disk
);
