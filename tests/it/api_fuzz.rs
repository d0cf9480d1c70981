//! Property-based fuzzing of the API: arbitrary JSON and strings in request bodies and
//! query parameters (batch, hosts, options, filters) never produce a 5xx, never crash
//! the server, always give the JSON error body for errors, and never echo a password.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::{
    api::{Client, world},
    harness::{Backend, TestApp},
};

/// Marks every password the fuzzer sends; no response may contain it.
const MARK: &str = "PWMARK";

struct Target {
    rt: tokio::runtime::Runtime,
    client: Client,
    admin: Client,
    _app: TestApp,
}

/// One app for all cases (SQLite, idle pool), on its own runtime.
fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let w = rt
            .block_on(world(Backend::Sqlite, false, |_| {}))
            .expect("SQLite needs no service");
        Target {
            rt,
            client: w.a.clone(),
            admin: w.admin.clone(),
            _app: w.app,
        }
    })
}

/// Send and check the invariants; returns the status.
fn check(c: &Client, method: reqwest::Method, path: &str, body: Option<&Value>) -> u16 {
    let mut req = c.request(method.clone(), path);
    if let Some(b) = body {
        req = req.json(b);
    }
    send_checked(c, req, &format!("{method} {path}"), &format!("{body:?}"))
}

fn send_checked(c: &Client, req: reqwest::RequestBuilder, what: &str, sent: &str) -> u16 {
    let t = target();
    let reply = t.rt.block_on(c.send(req));
    assert!(
        reply.status < 500,
        "{what} -> {}: {:?}\nbody: {sent}",
        reply.status,
        reply.body
    );
    if reply.status >= 400 {
        assert!(reply.body["code"].is_string(), "{what}: {:?}", reply.body);
        assert!(reply.body["request_id"].is_string());
    }
    assert!(
        !reply.body.to_string().contains(MARK),
        "{what} echoed a password: {:?}",
        reply.body
    );
    reply.status
}

/// A multipart/form-data body with text fields and one file (bytes as they come).
fn multipart(fields: &[(&str, &str)], file: &[u8]) -> (String, Vec<u8>) {
    let b = "pymap-fuzz-boundary-93e1";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{b}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{b}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"b.csv\"\r\ncontent-type: text/csv\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// CSV batch files: arbitrary bytes, or rows under a header whose passwords carry the mark.
fn csv_file() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just("user1,password1\n".to_string()),
        Just("user1,password1,user2,password2,host1,host2,options\n".to_string()),
        "[a-z0-9,]{0,40}\n",
    ];
    let rows = prop::collection::vec((text(), text(), text()), 0..5).prop_map(|rows| {
        rows.into_iter()
            .map(|(u, pw, rest)| {
                let pw = pw.replace(['"', ',', '\n', '\r'], "");
                format!("{u},\"{MARK}{pw}\",{rest}\n")
            })
            .collect::<String>()
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        (header, rows).prop_map(|(h, r)| format!("{h}{r}").into_bytes()),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[a-z0-9@.:_ -]{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that look like what users type, and plain garbage.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        "[a-z0-9.-]{1,30}(:[0-9]{1,6})?",
        "(-|--)[a-z0-9-]{1,20}( [a-z0-9./=*]{0,20})?",
        Just(String::new()),
        Just("\u{0}\u{202e}\r\n\t".to_string()),
    ]
}

const OPTION_KEYS: [&str; 16] = [
    "dry_run",
    "just_login",
    "just_folders",
    "include_folders",
    "exclude_folders",
    "max_age_days",
    "min_age_days",
    "max_size_bytes",
    "sync_duplicates",
    "add_header",
    "delete_on_destination",
    "delete_confirmed",
    "tls1",
    "tls2",
    "timeout_secs",
    "bogus",
];

fn options() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(&OPTION_KEYS[..]), any_json()), 0..6).prop_map(
        |kv| {
            Value::Object(
                kv.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>(),
            )
        },
    )
}

fn mailbox() -> impl Strategy<Value = Value> {
    (
        text(),
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        any_json(),
    )
        .prop_map(|(u1, pw, u2, h1, opts, extra)| {
            let mut m = json!({"user1": u1, "password1": format!("{MARK}{pw}")});
            if let Some(u2) = u2 {
                m["user2"] = u2.into();
                m["password2"] = format!("{MARK}2").into();
            }
            if let Some(h1) = h1 {
                m["host1"] = h1.into();
            }
            if let Some(o) = opts {
                m["options"] = o.into();
            }
            if extra.is_object() {
                m["extra"] = extra;
            }
            m
        })
}

/// A batch in the text format whose passwords carry the mark.
fn batch_text() -> impl Strategy<Value = String> {
    prop::collection::vec((text(), text(), any::<bool>()), 0..6).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(user, pw, four)| {
                let pw = format!("{MARK}{}", pw.replace(char::is_whitespace, ""));
                if four {
                    format!("{user} {pw} {user} {pw}\n")
                } else {
                    format!("{user} {pw}\n")
                }
            })
            .collect()
    })
}

fn task_body() -> impl Strategy<Value = Value> {
    (
        text(),
        text(),
        prop::option::of(text()),
        prop::option::of(options()),
        prop::option::of(text()),
        prop_oneof![
            batch_text().prop_map(|b| json!({"batch": b})),
            prop::collection::vec(mailbox(), 0..4).prop_map(|m| json!({"mailboxes": m})),
            Just(json!({}))
        ],
    )
        .prop_map(
            |(source, destination, engine, options, extra_args, batch)| {
                let mut body = json!({"source": source, "destination": destination});
                if let Some(e) = engine {
                    body["engine"] = e.into();
                }
                if let Some(o) = options {
                    body["options"] = o;
                }
                if let Some(x) = extra_args {
                    body["extra_args"] = x.into();
                }
                if let Value::Object(b) = batch {
                    body.as_object_mut().unwrap().extend(b);
                }
                body
            },
        )
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn task_bodies(body in task_body()) {
        let t = target();
        check(&t.client, reqwest::Method::POST, "/tasks", Some(&body));
        check(&t.client, reqwest::Method::POST, "/preflight/credentials?check_logins=false", Some(&body));
    }

    #[test]
    fn arbitrary_json_anywhere(body in any_json(), path in prop::sample::select(vec![
        "/tasks", "/preflight/credentials", "/me/tokens", "/me/host-patterns", "/me/password",
        "/users", "/jobs/1/retry", "/tasks/1/cancel",
    ])) {
        let t = target();
        let method = match path {
            "/me/host-patterns" | "/me/password" => reqwest::Method::PUT,
            _ => reqwest::Method::POST,
        };
        check(&t.client, method.clone(), path, Some(&body));
        check(&t.admin, method, path, Some(&body));
    }

    #[test]
    fn filters(status in text(), owner in text(), archived in text(), q in text(), sort in text(),
               order in text(), limit in text(), cursor in text(), page in text(), total in text()) {
        let t = target();
        let query = format!(
            "/tasks?status={}&owner={}&archived={}&q={}&sort={}&order={}&limit={}&cursor={}&page={}&total={}",
            enc(&status), enc(&owner), enc(&archived), enc(&q), enc(&sort), enc(&order),
            enc(&limit), enc(&cursor), enc(&page), enc(&total)
        );
        check(&t.client, reqwest::Method::GET, &query, None);
        check(&t.admin, reqwest::Method::GET, &query, None);
        let audit = format!(
            "/audit?user={}&action={}&from={}&to={}&outcome={}&object_type={}&cursor={}&limit={}",
            enc(&owner), enc(&q), enc(&status), enc(&archived), enc(&sort), enc(&order), enc(&cursor), enc(&limit)
        );
        check(&t.admin, reqwest::Method::GET, &audit, None);
        check(&t.client, reqwest::Method::GET, &format!("/tasks/1/jobs?status={}&q={}&cursor={}", enc(&status), enc(&q), enc(&cursor)), None);
        check(&t.client, reqwest::Method::GET, &format!("/jobs/1/log?tail={}&offset={}", enc(&limit), enc(&page)), None);
    }

    #[test]
    fn hosts_and_patterns(host in text(), regex in text(), suffix in text()) {
        let t = target();
        check(&t.client, reqwest::Method::GET, &format!("/preflight/host?host={}", enc(&host)), None);
        let body = json!({"patterns": [{"regex": regex, "suffix": suffix}]});
        check(&t.client, reqwest::Method::PUT, "/me/host-patterns", Some(&body));
        // Whatever was saved, resolving still works or fails cleanly.
        check(&t.client, reqwest::Method::GET, &format!("/preflight/host?host={}", enc(&host)), None);
    }

    #[test]
    fn csv_uploads(file in csv_file(), source in text(), destination in text(),
                   options in prop::option::of(any_json()), engine in prop::option::of(text())) {
        let t = target();
        let options = options.map(|o| o.to_string());
        let mut fields = vec![("source", source.as_str()), ("destination", destination.as_str())];
        if let Some(o) = &options {
            fields.push(("options", o.as_str()));
        }
        if let Some(e) = &engine {
            fields.push(("engine", e.as_str()));
        }
        let (ct, body) = multipart(&fields, &file);
        let req = t.client.request(reqwest::Method::POST, "/tasks/csv").header("content-type", ct).body(body);
        send_checked(&t.client, req, "POST /tasks/csv", &format!("{fields:?} {file:?}"));
    }

    #[test]
    fn path_segments(segment in text()) {
        let t = target();
        for base in ["/tasks/", "/jobs/", "/users/", "/me/tokens/"] {
            let path = format!("{base}{}", enc(&segment));
            check(&t.admin, reqwest::Method::GET, &path, None);
            check(&t.admin, reqwest::Method::DELETE, &path, None);
        }
    }
}
