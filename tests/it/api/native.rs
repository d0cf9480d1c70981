//! End to end through the HTTP API with the native engine and a real Dovecot (see
//! `dovecot.rs`): submit a task, follow `/events` to its end, check the job's result, then
//! `POST /jobs/{id}/verify` until the stored report says identical; break the destination
//! and verify again (differs, naming the folder). Also: the per-side "accept a self-signed
//! certificate" option decides whether the TLS destination is reachable, a cancelled
//! imapsync job can be verified too, and wiped passwords are refused with the reason.

use std::time::{Duration, Instant};

use entity::job;
use futures::StreamExt;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{Value, json};

use super::{Client, World, live::Sse, wait_task, world};
use crate::{
    api_backends,
    dovecot::{self, CorpusSpec, Dovecot, Options, secret},
    harness::{ADMIN_PASSWORD, Backend, csrf_from, get_text, login, post_form},
};

fn task(server: &Dovecot, engine: &str, accept2: bool) -> Value {
    json!({
        "label": format!("{engine} e2e"),
        "source": format!("127.0.0.1:{}", server.port),
        // Implicit TLS with the server's self-signed certificate.
        "destination": format!("127.0.0.1:{}", server.tls_port.expect("a TLS server")),
        "engine": engine,
        "options": { "tls1": "plain", "tls2": "implicit", "accept_invalid_certs2": accept2 },
        "mailboxes": [{
            "user1": "alice", "password1": secret("alice").expose(),
            "user2": "bob", "password2": secret("bob").expose(),
        }],
    })
}

/// The only job of a task.
async fn only_job(c: &Client, task_id: i64) -> Value {
    let r = c.get(&format!("/tasks/{task_id}/jobs")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{:?}", r.body);
    items[0].clone()
}

/// Starts a verification and polls the job until the stored report is final.
async fn verify(c: &Client, job_id: i64) -> Value {
    let r = c.post_empty(&format!("/jobs/{job_id}/verify")).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["verification"]["status"], "running", "{:?}", r.body);
    assert!(r.body["verification"]["report"].is_null());
    let started = Instant::now();
    loop {
        let j = c.get(&format!("/jobs/{job_id}")).await;
        assert_eq!(j.status, 200, "{:?}", j.body);
        let v = &j.body["verification"];
        if v["status"] != "running" {
            assert!(v["at"].is_string(), "{v}");
            return v.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "verification of job {job_id} did not end: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads events until this task has nothing queued or running; returns the event names.
async fn follow(events: &mut Sse, task_id: i64) -> Vec<String> {
    let started = Instant::now();
    let mut names = Vec::new();
    loop {
        let (name, data) = events
            .next(Duration::from_secs(120))
            .await
            .expect("events until the task ends");
        if data["task_id"] != task_id {
            continue;
        }
        names.push(name.clone());
        if name == "task_status" && data["jobs"]["queued"] == 0 && data["jobs"]["running"] == 0 {
            return names;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "{names:?}");
    }
}

async fn native_task_then_verify(backend: Backend) {
    let Some(server) = Dovecot::start(Options::tls()).await else {
        return;
    };
    let Some(w) = world(backend, true, |_| {}).await else {
        return;
    };
    let spec = CorpusSpec {
        messages: 40,
        big: 1,
        big_size: 600 * 1024,
        ..CorpusSpec::small()
    };
    let corpus = dovecot::fill(&server, "alice", &spec).await;
    // Subscribed before the task exists, so no event of it can be missed.
    let mut events = Sse::open(&w.a, "/events").await;

    // Without accepting the self-signed certificate the destination is refused.
    let r = w.a.post("/tasks", task(&server, "native", false)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let refused = r.body["id"].as_i64().unwrap();
    follow(&mut events, refused).await;
    let j = only_job(&w.a, refused).await;
    assert_eq!(j["status"], "failed", "{j}");
    let reason = j["reason"].as_str().unwrap();
    assert!(
        reason.contains("certificate") && reason.contains("host2"),
        "{reason}"
    );

    let r = w.a.post("/tasks", task(&server, "native", true)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["engine"], "native");
    assert_eq!(r.body["options"]["accept_invalid_certs2"], true);
    assert_eq!(r.body["options"]["accept_invalid_certs1"], false);
    let task_id = r.body["id"].as_i64().unwrap();
    let names = follow(&mut events, task_id).await;
    for want in ["job_status", "job_progress", "task_status"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let t = w.a.get(&format!("/tasks/{task_id}")).await;
    assert_eq!(t.body["status"], "succeeded", "{:?}", t.body);
    let j = only_job(&w.a, task_id).await;
    let job_id = j["id"].as_i64().unwrap();
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["exit_name"], "EX_OK", "{j}");
    assert_eq!(j["result"]["messages_transferred"], corpus.messages, "{j}");
    assert_eq!(j["result"]["bytes_transferred"], corpus.bytes, "{j}");
    assert_eq!(j["result"]["messages_skipped"], 0, "{j}");
    assert_eq!(j["progress"]["messages_done"], corpus.messages, "{j}");
    assert!(j["verification"].is_null(), "never verified yet: {j}");

    let v = verify(&w.a, job_id).await;
    assert_eq!(v["status"], "identical", "{v}");
    let report = &v["report"];
    assert_eq!(report["identical"], true, "{v}");
    assert_eq!(report["messages_host1"], corpus.messages, "{v}");
    assert_eq!(report["messages_host2"], corpus.messages, "{v}");
    assert_eq!(report["folders"], json!([]), "{v}");
    assert!(report["folders_compared"].as_u64().unwrap() > 5, "{v}");
    // The start and the end of the verification were announced.
    let mut seen = Vec::new();
    while let Some((name, data)) = events.next(Duration::from_secs(10)).await {
        if name == "job_verify" && data["job_id"] == job_id {
            seen.push(data["verify_status"].as_str().unwrap().to_string());
            if seen.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(seen, ["running", "identical"]);

    // One message of the destination's INBOX goes: verify says so, and where.
    let mut s = dovecot::session(&server, "bob").await;
    s.select("INBOX").await.unwrap();
    s.store("1", "+FLAGS.SILENT (\\Deleted)")
        .await
        .unwrap()
        .count()
        .await;
    s.expunge().await.unwrap().count().await;
    s.logout().await.ok();
    let v = verify(&w.a, job_id).await;
    assert_eq!(v["status"], "differs", "{v}");
    let report = &v["report"];
    assert_eq!(report["identical"], false, "{v}");
    let folders = report["folders"].as_array().unwrap();
    assert_eq!(folders.len(), 1, "{v}");
    assert_eq!(folders[0]["host1"], "INBOX", "{v}");
    assert_eq!(folders[0]["missing"], 1, "{v}");
    assert_eq!(folders[0]["examples"][0]["kind"], "missing", "{v}");
    assert_eq!(report["messages_host2"], corpus.messages - 1, "{v}");

    // The task page shows the stored result in the job's row, with a Verify button.
    let browser = w.app.client();
    login(&w.app, &browser, "admin", ADMIN_PASSWORD).await;
    let page = get_text(&browser, &w.app.url(&format!("/tasks/{task_id}"))).await;
    let row = page
        .split(&format!("id=\"job-{job_id}\""))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row for job {job_id}: {page}"));
    assert!(row.contains("data-verify=\"differs\""), "{row}");
    assert!(
        row.contains("INBOX: ") && row.contains("1 missing"),
        "{row}"
    );
    assert!(row.contains(&format!("/jobs/{job_id}/verify")), "{row}");
    // Its Verify button starts another run; the API shows it.
    let done = post_form(
        &browser,
        &w.app.url(&format!("/jobs/{job_id}/verify")),
        &[("csrf_token", &csrf_from(&page))],
    )
    .await;
    assert_eq!(done.status(), 303, "{:?}", done.text().await);
    let started = Instant::now();
    loop {
        let j = w.a.get(&format!("/jobs/{job_id}")).await;
        let again = &j.body["verification"];
        if again["status"] != "running" && again["at"] != v["at"] {
            assert_eq!(again["status"], "differs", "{again}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{again}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    imapsync_job_and_wiped_passwords(&w, &server).await;
}

/// The verifier compares mailboxes, whatever the engine: a cancelled imapsync job can be
/// verified too. Once the stored passwords are wiped, verify says to retry with new ones.
async fn imapsync_job_and_wiped_passwords(w: &World, server: &Dovecot) {
    let r = w.a.post("/tasks", task(server, "imapsync", true)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let task_id = r.body["id"].as_i64().unwrap();
    let c = w.a.post_empty(&format!("/tasks/{task_id}/cancel")).await;
    assert_eq!(c.status, 200, "{:?}", c.body);
    // Polled, not followed: a job cancelled before it started publishes no event.
    let t = wait_task(&w.a, task_id).await;
    assert_eq!(t["status"], "cancelled", "{t}");
    let j = only_job(&w.a, task_id).await;
    let job_id = j["id"].as_i64().unwrap();
    // bob lost one INBOX message above, so alice and bob differ.
    let v = verify(&w.a, job_id).await;
    assert_eq!(v["status"], "differs", "{v}");

    // Another user cannot see the job, so cannot verify it either.
    let r = w.b.post_empty(&format!("/jobs/{job_id}/verify")).await;
    assert_eq!(r.status, 404, "{:?}", r.body);

    let db = &w.app.state.db;
    let row = job::Entity::find_by_id(job_id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    let mut a: job::ActiveModel = row.into();
    a.password1 = Set(None);
    a.password2 = Set(None);
    a.update(db).await.unwrap();
    let r = w.a.post_empty(&format!("/jobs/{job_id}/verify")).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.code(), "conflict");
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains("wiped") && message.contains("retry the job with new passwords"),
        "{message}"
    );
    // The last report is still there.
    let j = w.a.get(&format!("/jobs/{job_id}")).await;
    assert_eq!(j.body["verification"]["status"], "differs");
}

api_backends!(native_task_then_verify);
