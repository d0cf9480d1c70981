//! Listing tasks and jobs: filters, search, every sort order with cursor and page
//! pagination (each row exactly once, in order).

use std::collections::HashSet;

use entity::task;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{Value, json};

use super::{Client, World, world};
use crate::harness::Backend;

async fn make(c: &Client, label: &str, mailboxes: usize, tag: &str) -> i64 {
    let batch: String = (1..=mailboxes)
        .map(|i| format!("{tag}-{i}@example.org pw\n"))
        .collect();
    let r = c
        .post(
            "/tasks",
            json!({"label": label, "source": "src.example.com", "destination": "dst.example.com", "batch": batch}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

async fn set_task(w: &World, id: i64, f: impl FnOnce(&mut task::ActiveModel)) {
    let row = task::Entity::find_by_id(id)
        .one(&w.app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut a: task::ActiveModel = row.into();
    f(&mut a);
    a.update(&w.app.state.db).await.unwrap();
}

/// Follow `next_cursor` to the end; returns the items in order.
async fn walk(c: &Client, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(cur) => format!("/tasks?{query}&cursor={cur}"),
            None => format!("/tasks?{query}"),
        };
        let r = c.get(&url).await;
        assert_eq!(r.status, 200, "{url}: {:?}", r.body);
        items.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return items,
        }
    }
    panic!("pagination does not end for {query}");
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|t| t["id"].as_i64().unwrap()).collect()
}

/// The sort key of a task as the server compares it.
fn key(t: &Value, sort: &str) -> Value {
    match sort {
        "created" => t["id"].clone(),
        "mailboxes" => t["jobs"]["total"].clone(),
        "run_time" => t["run_time_secs"].clone(),
        other => t[other].clone(),
    }
}

fn cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.as_str().unwrap().cmp(b.as_str().unwrap()),
    }
}

async fn listing(backend: Backend) {
    let Some(w) = world(backend, false, |_| {}).await else {
        return;
    };
    let mut alice = Vec::new();
    for i in 0..23 {
        let label = format!("batch-{:02}", (i * 7) % 23);
        alice.push(make(&w.a, &label, 1 + i % 4, "user").await);
    }
    let special = make(&w.a, "promo-50%_off", 2, "special").await;
    alice.push(special);
    let mut bob = Vec::new();
    for i in 0..9 {
        bob.push(make(&w.b, &format!("bob-{i}"), 2, "bobuser").await);
    }
    // Some variety in status, run time and archiving.
    for (n, id) in alice.iter().enumerate() {
        set_task(&w, *id, |a| {
            a.run_time_secs = Set((n as i64 * 37) % 11);
            if n % 5 == 0 {
                a.status = Set("failed".into());
            }
        })
        .await;
    }
    set_task(&w, alice[3], |a| a.archived = Set(true)).await;

    // Visibility and totals.
    let mine = w.a.get("/tasks?total=true&limit=5").await;
    assert_eq!(mine.body["total"], 23, "alice's 24 minus one archived");
    assert_eq!(w.admin.get("/tasks?total=true").await.body["total"], 32);
    assert_eq!(
        w.admin.get("/tasks?total=true&owner=bob").await.body["total"],
        9
    );
    assert_eq!(
        w.a.get("/tasks?total=true&archived=all").await.body["total"],
        24
    );
    assert_eq!(
        ids(w.a.get("/tasks?archived=true").await.body["items"]
            .as_array()
            .unwrap()),
        [alice[3]]
    );

    // Every sort, both directions, small pages: each task once, in order.
    for sort in [
        "created",
        "label",
        "status",
        "mailboxes",
        "source",
        "destination",
        "run_time",
    ] {
        for order in ["asc", "desc"] {
            let items = walk(&w.a, &format!("sort={sort}&order={order}&limit=4")).await;
            let got = ids(&items);
            let unique: HashSet<i64> = got.iter().copied().collect();
            assert_eq!(
                (got.len(), unique.len()),
                (23, 23),
                "{sort} {order}: {got:?}"
            );
            for pair in items.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let mut ord = cmp(&key(a, sort), &key(b, sort));
                if ord == std::cmp::Ordering::Equal {
                    ord = cmp(&a["id"], &b["id"]);
                }
                let want = if order == "asc" {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                };
                assert_eq!(ord, want, "{sort} {order}: {} then {}", a["id"], b["id"]);
            }
            // Page numbers give the same sequence.
            let mut paged = Vec::new();
            for page in 1..=6 {
                let r =
                    w.a.get(&format!(
                        "/tasks?sort={sort}&order={order}&limit=4&page={page}"
                    ))
                    .await;
                paged.extend(ids(r.body["items"].as_array().unwrap()));
            }
            assert_eq!(paged, got, "{sort} {order} by page");
        }
    }
    // A cursor belongs to its sort order.
    let first = w.a.get("/tasks?sort=label&limit=2").await;
    let cur = first.body["next_cursor"].as_str().unwrap();
    assert_eq!(
        w.a.get(&format!("/tasks?sort=status&cursor={cur}"))
            .await
            .status,
        422
    );
    assert_eq!(
        w.a.get(&format!("/tasks?sort=label&cursor={cur}&page=2"))
            .await
            .status,
        422
    );

    // Filters and search.
    let failed = walk(&w.a, "status=failed&limit=50").await;
    assert_eq!(
        failed.len(),
        5,
        "alice's 0, 5, 10, 15, 20: {:?}",
        ids(&failed)
    );
    assert!(failed.iter().all(|t| t["status"] == "failed"));
    assert_eq!(walk(&w.a, "status=failed,queued").await.len(), 23);
    let by_label = walk(&w.a, "q=BATCH-0").await;
    assert!(
        by_label.len() >= 9
            && by_label
                .iter()
                .all(|t| t["label"].as_str().unwrap().starts_with("batch-0"))
    );
    assert_eq!(
        ids(&walk(&w.a, "q=50%25_").await),
        [special],
        "% and _ are literal"
    );
    assert_eq!(
        ids(&walk(&w.a, "q=special-2@").await),
        [special],
        "mailbox user names"
    );
    assert_eq!(
        ids(&walk(&w.a, &format!("q=%23{}", alice[7])).await),
        [alice[7]],
        "task id"
    );
    assert_eq!(
        walk(&w.a, "q=bobuser").await.len(),
        0,
        "never someone else's"
    );
    assert_eq!(walk(&w.admin, "q=bobuser").await.len(), 9);
    assert_eq!(walk(&w.a, "q=zzz-nothing").await.len(), 0);

    // Jobs of a task, in batch order, paged.
    let big = make(&w.a, "big", 12, "mbx").await;
    let mut positions = Vec::new();
    let mut cursor = String::new();
    loop {
        let r =
            w.a.get(&format!("/tasks/{big}/jobs?limit=5&cursor={cursor}"))
                .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        positions.extend(
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["position"].as_i64().unwrap()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(positions, (1..=12).collect::<Vec<i64>>());
    let found = w.a.get(&format!("/tasks/{big}/jobs?q=MBX-11@")).await;
    assert_eq!(found.body["items"][0]["position"], 11);
    assert_eq!(
        w.a.get(&format!("/tasks/{big}/jobs?limit=1001"))
            .await
            .status,
        422
    );
}

crate::api_backends!(listing);
