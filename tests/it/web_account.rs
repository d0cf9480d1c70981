//! Account and admin pages over HTTP: password change, host patterns with preview, API
//! tokens shown once, user administration, audit trail filters, system page, dashboard.

use std::time::Duration;

use reqwest::StatusCode;

use crate::{
    harness::{Backend, login},
    pool::wait_final,
    web::{ALICE, BOB, Ui, get, post, submit_batch},
};

async fn account_page(backend: Backend) {
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    // Password: wrong current one, mismatch, too short, then a good change.
    let cases = [
        (
            "wrong-password-1",
            "new-password-123",
            "new-password-123",
            "is not correct",
        ),
        (
            ALICE.1,
            "new-password-123",
            "other-password-12",
            "does not match",
        ),
        (ALICE.1, "short", "short", "must be 10 to"),
    ];
    for (current, new, confirm, says) in cases {
        let resp = post(
            &ui,
            &ui.alice,
            "/account/password",
            &[
                ("current_password", current),
                ("new_password", new),
                ("confirm_password", confirm),
            ],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = resp.text().await.unwrap();
        assert!(body.contains(says), "{says}: {body}");
        assert!(
            !body.contains(current) && !body.contains(new),
            "passwords never echoed"
        );
    }
    let fields = [
        ("current_password", ALICE.1),
        ("new_password", "brand-new-password-1"),
        ("confirm_password", "brand-new-password-1"),
    ];
    let resp = post(&ui, &ui.alice, "/account/password", &fields).await;
    assert_eq!(resp.status(), 303);
    let (_, page) = get(&ui.alice, &ui.url("/account")).await;
    assert!(page.contains("Your password was changed."));
    let fresh = ui.app.client();
    assert_eq!(
        login(&ui.app, &fresh, ALICE.0, "brand-new-password-1")
            .await
            .status(),
        303
    );

    // Host patterns: preview without saving, invalid ones named by index, then save.
    let bad = [
        ("regex", "^ok$"),
        ("suffix", ".example.com"),
        ("regex", "("),
        ("suffix", ".x"),
        ("test_host", "ok"),
        ("action", "preview"),
    ];
    let resp = post(&ui, &ui.alice, "/account/hosts", &bad).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = resp.text().await.unwrap();
    assert!(body.contains("host_patterns[1].regex"), "{body}");
    let good = [
        ("regex", "^box[0-9]+$"),
        ("suffix", ".hosting.example"),
        ("regex", ""),
        ("suffix", ""),
        ("test_host", "box7"),
        ("action", "preview"),
    ];
    let resp = post(&ui, &ui.alice, "/account/hosts", &good).await;
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("box7.hosting.example") && body.contains("your pattern #1"),
        "{body}"
    );
    let (_, json) = get(&ui.alice, &ui.url("/hosts/preview?host=box7")).await;
    assert!(
        !json.contains("hosting.example"),
        "preview saved nothing: {json}"
    );
    let mut save = good.to_vec();
    save[5] = ("action", "save");
    let resp = post(&ui, &ui.alice, "/account/hosts", &save).await;
    assert_eq!(resp.status(), 303);
    let (_, json) = get(&ui.alice, &ui.url("/hosts/preview?host=box7")).await;
    assert!(json.contains("box7.hosting.example"), "{json}");
    let (_, json) = get(&ui.bob, &ui.url("/hosts/preview?host=box7")).await;
    assert!(
        !json.contains("hosting.example"),
        "patterns are per user: {json}"
    );

    // API tokens: the secret once, then only its prefix; revoke; bob cannot revoke it.
    let resp = post(
        &ui,
        &ui.alice,
        "/account/tokens",
        &[("name", "backup script"), ("expires_days", "30")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let start = body.find("id=\"new-token\">").unwrap() + "id=\"new-token\">".len();
    let secret = body[start..].split('<').next().unwrap().to_string();
    assert!(
        secret.starts_with("pymap_") && secret.len() > 40,
        "{secret}"
    );
    let (_, page) = get(&ui.alice, &ui.url("/account")).await;
    assert!(
        !page.contains(&secret) && page.contains(&secret[..14]),
        "shown once"
    );
    let resp = post(
        &ui,
        &ui.alice,
        "/account/tokens",
        &[("name", ""), ("expires_days", "x")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let id = page
        .split("/account/tokens/")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_string();
    let path = format!("/account/tokens/{id}/revoke");
    assert_eq!(post(&ui, &ui.bob, &path, &[]).await.status(), 404);
    assert_eq!(post(&ui, &ui.alice, &path, &[]).await.status(), 303);
    let (_, page) = get(&ui.alice, &ui.url("/account")).await;
    assert!(page.contains("revoked") && page.contains("Token revoked."));
    ui.app.stop().await;
}

async fn admin_pages(backend: Backend) {
    let Some(ui) = Ui::start(backend).await else {
        return;
    };
    // Users: only admins act; input problems are shown on the page.
    let create = [
        ("name", "carol"),
        ("password", "carol-password-1"),
        ("role", "user"),
    ];
    assert_eq!(
        post(&ui, &ui.alice, "/admin/users", &create).await.status(),
        403
    );
    assert_eq!(
        post(&ui, &ui.admin, "/admin/users", &create).await.status(),
        303
    );
    let resp = post(&ui, &ui.admin, "/admin/users", &create).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await.unwrap().contains("already exists"));
    let resp = post(
        &ui,
        &ui.admin,
        "/admin/users",
        &[("name", "dave"), ("password", "short"), ("role", "user")],
    )
    .await;
    assert!(resp.text().await.unwrap().contains("at least"));
    for (action, fields) in [
        ("disable", vec![]),
        ("password", vec![("password", "x")]),
        ("role", vec![("role", "admin")]),
    ] {
        let path = format!("/admin/users/bob/{action}");
        assert_eq!(
            post(&ui, &ui.alice, &path, &fields).await.status(),
            403,
            "{action}"
        );
    }
    // Disabling bob ends his session at once.
    assert_eq!(get(&ui.bob, &ui.url("/tasks")).await.0, 200);
    assert_eq!(
        post(&ui, &ui.admin, "/admin/users/bob/disable", &[])
            .await
            .status(),
        303
    );
    assert_eq!(
        ui.bob.get(ui.url("/tasks")).send().await.unwrap().status(),
        303
    );
    let (_, page) = get(&ui.admin, &ui.url("/admin/users")).await;
    assert!(page.contains("User bob disabled") && page.contains("disabled</span>"));
    post(&ui, &ui.admin, "/admin/users/bob/enable", &[]).await;
    let fields = [("password", "reset-password-1")];
    assert_eq!(
        post(&ui, &ui.admin, "/admin/users/bob/password", &fields)
            .await
            .status(),
        303
    );
    let bob = ui.app.client();
    assert_eq!(
        login(&ui.app, &bob, BOB.0, "reset-password-1")
            .await
            .status(),
        303
    );
    post(
        &ui,
        &ui.admin,
        "/admin/users/carol/role",
        &[("role", "admin")],
    )
    .await;
    let (_, page) = get(&ui.admin, &ui.url("/admin/users")).await;
    assert!(page.contains("carol is now admin"));
    let resp = post(&ui, &ui.admin, "/admin/users/admin/disable", &[]).await;
    assert_eq!(
        resp.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "not yourself"
    );
    assert_eq!(
        post(&ui, &ui.admin, "/admin/users/nobody/disable", &[])
            .await
            .status(),
        404
    );

    // Audit trail: task actions are recorded; filters by user, action family, date.
    let task = submit_batch(&ui, &ui.alice, "standin-g+speed50@m1.example.com pw\n").await;
    wait_final(&ui.app, task, Duration::from_secs(30)).await;
    post(&ui, &ui.alice, &format!("/tasks/{task}/archive"), &[]).await;
    let (_, page) = get(&ui.admin, &ui.url("/admin/audit?action=task.")).await;
    assert!(
        page.contains("task.create") && page.contains("task.archive"),
        "{page}"
    );
    assert!(!page.contains("<code>user.disable</code>"));
    let (_, page) = get(&ui.admin, &ui.url("/admin/audit?user=admin&action=user.")).await;
    assert!(page.contains("user.disable") && page.contains("user.role_change"));
    assert!(!page.contains("task.create"));
    let (_, page) = get(
        &ui.admin,
        &ui.url(&format!("/admin/audit?object=task:{task}")),
    )
    .await;
    assert!(page.contains(&format!("href=\"/tasks/{task}\"")));
    let (_, page) = get(
        &ui.admin,
        &ui.url("/admin/audit?from=2000-01-01&to=2000-01-02"),
    )
    .await;
    assert!(page.contains("No event matches"));
    let (_, page) = get(&ui.admin, &ui.url("/admin/audit?from=yesterday")).await;
    assert!(page.contains("YYYY-MM-DD"));
    let (_, page) = get(&ui.admin, &ui.url("/admin/audit?outcome=failure")).await;
    assert!(page.contains("st-failure") || page.contains("No event matches"));

    // System: the stand-in's version, pool and queue, storage and Redis.
    let (status, page) = get(&ui.admin, &ui.url("/admin/system")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("version 2.229") && page.contains("native"),
        "{page}"
    );
    assert!(page.contains("0 queued") && page.contains("slots"));
    assert!(page.contains("not configured") || page.contains(">ok<"));

    // Dashboard: the user's own numbers; the admin's are everyone's.
    let task = submit_batch(&ui, &ui.alice, "standin-g+speed50@m2.example.com pw\n").await;
    let (_, mine) = get(&ui.alice, &ui.url("/")).await;
    assert!(mine.contains("your tasks") && mine.contains(&format!("href=\"/tasks/{task}\"")));
    let (_, bobs) = get(&bob, &ui.url("/")).await;
    assert!(bobs.contains("No task yet"));
    let (_, all) = get(&ui.admin, &ui.url("/")).await;
    assert!(all.contains("all users") && all.contains(&format!("href=\"/tasks/{task}\"")));
    ui.app.stop().await;
}

mod sqlite_memory {
    use crate::harness::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn account_page() {
        super::account_page(Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_pages() {
        super::admin_pages(Backend::Sqlite).await
    }
}

mod postgres_redis {
    use crate::harness::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn account_page() {
        super::account_page(Backend::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admin_pages() {
        super::admin_pages(Backend::Postgres).await
    }
}
