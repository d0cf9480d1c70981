//! "Check credentials" before a migration: every line's logins tried against a real
//! Dovecot (good and bad passwords on each side, a refused port), through the API
//! preflight and the web form, and no password ever in an answer.

use serde_json::{Value, json};

use crate::{
    api::world,
    dovecot::{Dovecot, HOSTILE, Options},
    harness::Backend,
    web::{Ui, submit_form},
};

/// A port on 127.0.0.1 nobody listens on (bound, then released).
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Passwords used below that are wrong; none may appear in a response.
const WRONG1: &str = "Wrong-Source-Pw-1";
const WRONG2: &str = "Wrong-Dest-Pw-2";
const SECRETS: [&str; 6] = [
    "alice-secret",
    "bob-secret",
    "carol-secret",
    "dave-secret",
    WRONG1,
    WRONG2,
];

fn side(line: &Value, which: &str) -> (String, String) {
    let s = &line[which];
    (
        s["status"].as_str().unwrap_or("?").to_string(),
        s["message"].as_str().unwrap_or_default().to_string(),
    )
}

async fn api_preflight_checks_logins(backend: Backend) {
    let Some(server) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let host = format!("127.0.0.1:{}", server.port);
    let closed = format!("127.0.0.1:{}", refused_port());
    let mailbox = |u1: &str, p1: &str, u2: &str, p2: &str| json!({"user1": u1, "password1": p1, "user2": u2, "password2": p2});
    let to_closed = |u1: &str, p1: &str, u2: &str, p2: &str| {
        let mut m = mailbox(u1, p1, u2, p2);
        m["host2"] = json!(closed);
        m
    };
    // The refused host comes first: line 9 starts only once line 1 is done (8 at a
    // time, in order), so it must find the host already known as unreachable.
    let body = json!({
        "source": host, "destination": host, "engine": "native",
        "mailboxes": [
            to_closed("dave", "dave-secret", "dave", "dave-secret"),
            mailbox("alice", "alice-secret", "bob", "bob-secret"),
            mailbox("bob", WRONG1, "bob", "bob-secret"),
            mailbox("carol", "carol-secret", "carol", WRONG2),
            mailbox("hostile", HOSTILE, "hostile", HOSTILE),
            to_closed("bob", "bob-secret", "alice", "alice-secret"),
            to_closed("alice", "alice-secret", "carol", "carol-secret"),
            to_closed("carol", "carol-secret", "alice", "alice-secret"),
            to_closed("dave", "dave-secret", "alice", "alice-secret"),
        ],
    });
    let r = w.a.post("/preflight/credentials", body.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["logins_checked"], true);
    let lines = r.body["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 9);
    let summary: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["source_login"]["status"].as_str().unwrap(),
                l["destination_login"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    let refused = ("ok", "unreachable");
    assert_eq!(
        summary,
        [
            refused,
            ("ok", "ok"),
            ("rejected", "ok"),
            ("ok", "rejected"),
            ("ok", "ok"),
            refused,
            refused,
            refused,
            refused,
        ],
        "{:?}",
        r.body
    );
    assert_eq!(lines[1]["login"], "ok");
    assert_eq!(lines[1]["message"], Value::Null);
    assert_eq!(lines[2]["login"], "failed");
    assert_eq!(
        lines[2]["message"], "source: wrong user name or password",
        "the side is named"
    );
    assert_eq!(
        lines[3]["message"],
        "destination: wrong user name or password"
    );
    assert_eq!(lines[0]["message"], "destination: cannot connect");
    let (_, why) = side(&lines[0], "destination_login");
    assert!(
        why.contains(&closed) && why.contains("could not connect"),
        "the reason names the address: {why}"
    );
    let (_, why) = side(&lines[8], "destination_login");
    assert!(
        why.contains("not tried") && why.contains("earlier line") && why.contains(&closed),
        "an unreachable host is not waited for twice: {why}"
    );
    let text = r.body.to_string();
    for secret in SECRETS.iter().chain([&HOSTILE]) {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    // Nothing was created, and the servers saw real logins (and logouts).
    assert_eq!(w.a.get("/tasks").await.body["items"], json!([]));
    let log = server.log();
    assert!(log.contains("Logged out"), "{log}");

    // Without the check: the same validation, every line unchecked.
    let r =
        w.a.post("/preflight/credentials?check_logins=false", body)
            .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["logins_checked"], false);
    assert_eq!(r.body["lines"][1]["login"], "unchecked");
    assert_eq!(r.body["lines"][1]["source_login"], Value::Null);
    w.app.stop().await;
}

async fn web_form_checks_logins(backend: Backend) {
    let Some(server) = Dovecot::start(Options::slash()).await else {
        return;
    };
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    let host = format!("127.0.0.1:{}", server.port);
    let closed = format!("127.0.0.1:{}", refused_port());
    let csv = format!(
        "user1,password1,user2,password2,host2\n\
         alice,alice-secret,alice,alice-secret,\n\
         bob,{WRONG1},bob,bob-secret,\n\
         carol,carol-secret,carol,{WRONG2},\n\
         dave,dave-secret,dave,dave-secret,{closed}\n"
    );
    let fields = [
        ("source", host.as_str()),
        ("destination", host.as_str()),
        ("engine", "native"),
    ];
    let resp = submit_form(
        &ui,
        &ui.alice,
        "/migrate/check",
        &fields,
        Some(("batch_file", csv.as_bytes())),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("Login check of 4 lines"), "{body}");
    assert!(body.contains("3 of 4 lines cannot log in"), "{body}");
    // One row per CSV line (the header is line 1), each side with its own verdict.
    let row = |line: usize| {
        let start = body
            .find(&format!("<tr data-line=\"{line}\""))
            .unwrap_or_else(|| panic!("row {line} in {body}"));
        let end = body[start..].find("</tr>").unwrap() + start;
        body[start..end].to_string()
    };
    let statuses = |r: &str| -> Vec<String> {
        r.match_indices("data-status=\"")
            .map(|(i, m)| {
                let s = &r[i + m.len()..];
                s[..s.find('"').unwrap()].to_string()
            })
            .collect()
    };
    assert_eq!(statuses(&row(2)), ["ok", "ok"]);
    assert!(row(2).contains("data-login=\"ok\""));
    assert_eq!(statuses(&row(3)), ["rejected", "ok"]);
    assert!(row(3).contains("wrong credentials"));
    assert_eq!(statuses(&row(4)), ["ok", "rejected"]);
    assert_eq!(statuses(&row(5)), ["ok", "unreachable"]);
    assert!(row(5).contains(&closed) && row(5).contains("cannot connect"));
    for secret in SECRETS {
        assert!(!body.contains(secret), "{secret} echoed");
    }
    let (_, list) = crate::web::get(&ui.alice, &ui.url("/tasks")).await;
    assert!(list.contains("No task matches"), "a check creates nothing");
    ui.app.stop().await;
}

crate::api_backends!(api_preflight_checks_logins, web_form_checks_logins);
