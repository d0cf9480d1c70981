//! Login, logout, throttling, CSRF, session renewal and disabled users — on SQLite and
//! PostgreSQL, with sessions in memory and in Redis.

use entity::audit_event;
use pymap::service::{Actor, Role, accounts};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::harness::{
    ADMIN_PASSWORD, Backend, Options, TestApp, csrf_from, get_text, login, post_form,
    session_cookie,
};

async fn actions(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    audit_event::Entity::find()
        .order_by_asc(audit_event::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.outcome, e.detail))
        .collect()
}

async fn login_logout(backend: Backend, redis: bool) {
    let Some(app) = TestApp::start(Options::new(backend, redis)).await else {
        return;
    };
    let client = app.client();
    // Anonymous home redirects to the login page.
    let resp = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/login");

    // The session id changes at login (renewal), so a pre-login cookie is worthless.
    let page = client.get(app.url("/login")).send().await.unwrap();
    let before = session_cookie(&page).expect("login page starts a session for CSRF");
    let token = csrf_from(&page.text().await.unwrap());
    let resp = post_form(
        &client,
        &app.url("/login"),
        &[
            ("name", "ADMIN"),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", &token),
        ],
    )
    .await;
    assert_eq!(
        resp.status(),
        303,
        "login succeeds (names are case-insensitive)"
    );
    let after = session_cookie(&resp).expect("new session cookie at login");
    assert_ne!(before, after);
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("Max-Age=")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    // The old cookie does not authenticate.
    let stale = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = stale
        .get(app.url("/"))
        .header("cookie", format!("pymap_session={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);

    let home = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    let html = home.text().await.unwrap();
    assert!(
        html.contains("Log out") && html.contains(">admin<"),
        "signed in as admin"
    );

    // Logout needs the (rotated) CSRF token and ends the session.
    let token = csrf_from(&html);
    let resp = post_form(
        &client,
        &app.url("/logout"),
        &[("csrf_token", token.as_str())],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let resp = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 303, "logged out");

    let log = actions(&app).await;
    assert!(
        log.contains(&("login".into(), "success".into(), None)),
        "{log:?}"
    );
    assert!(
        log.contains(&("logout".into(), "success".into(), None)),
        "{log:?}"
    );
    app.stop().await;
}

async fn wrong_password_and_unknown_user_look_alike(backend: Backend, redis: bool) {
    let Some(app) = TestApp::start(Options::new(backend, redis)).await else {
        return;
    };
    let client = app.client();
    let wrong = login(&app, &client, "admin", "not-the-password").await;
    assert_eq!(wrong.status(), 401);
    let wrong = wrong.text().await.unwrap();
    let unknown = login(&app, &client, "nobody", "not-the-password").await;
    assert_eq!(unknown.status(), 401);
    let unknown = unknown.text().await.unwrap();
    let msg = "invalid user name or password";
    assert!(wrong.contains(msg) && unknown.contains(msg));
    assert!(
        !wrong.contains("not-the-password"),
        "the password is never echoed"
    );
    // The audit trail knows the difference; the client does not.
    let log = actions(&app).await;
    assert!(log.contains(&(
        "login".into(),
        "failure".into(),
        Some("wrong password".into())
    )));
    assert!(log.contains(&(
        "login".into(),
        "failure".into(),
        Some("unknown user".into())
    )));
    app.stop().await;
}

async fn throttling(backend: Backend, redis: bool) {
    let opts = Options::new(backend, redis).with(|c| {
        c.login_throttle.per_user = 3;
        c.login_throttle.per_address = 5;
    });
    let Some(app) = TestApp::start(opts).await else {
        return;
    };
    let client = app.client();
    for _ in 0..3 {
        assert_eq!(
            login(&app, &client, "admin", "wrong-password")
                .await
                .status(),
            401
        );
    }
    // Per user: even the right password is refused now, without being checked.
    let resp = login(&app, &client, "admin", ADMIN_PASSWORD).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("too many failed logins")
    );
    // Per address: other names from the same address run out too.
    assert_eq!(
        login(&app, &client, "other1", "wrong-password")
            .await
            .status(),
        401
    );
    assert_eq!(
        login(&app, &client, "other2", "wrong-password")
            .await
            .status(),
        401
    );
    assert_eq!(
        login(&app, &client, "other3", "wrong-password")
            .await
            .status(),
        429
    );
    assert!(
        actions(&app)
            .await
            .iter()
            .any(|(a, _, _)| a == "login.throttled")
    );
    app.stop().await;
}

async fn csrf_is_required(backend: Backend, redis: bool) {
    let Some(app) = TestApp::start(Options::new(backend, redis)).await else {
        return;
    };
    let client = app.client();
    client.get(app.url("/login")).send().await.unwrap();
    let form = [("name", "admin"), ("password", ADMIN_PASSWORD)];
    let resp = client
        .post(app.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "no token");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("request id"),
        "error page shows the request id"
    );
    let resp = post_form(
        &client,
        &app.url("/login"),
        &[
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", "00"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 403, "wrong token");
    // A token from another session is refused as well.
    let other = app.client();
    let foreign = csrf_from(&get_text(&other, &app.url("/login")).await);
    let resp = post_form(
        &client,
        &app.url("/login"),
        &[
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", &foreign),
        ],
    )
    .await;
    assert_eq!(resp.status(), 403, "token of another session");
    // The header form works (for scripts and fetch()).
    let token = csrf_from(&get_text(&client, &app.url("/login")).await);
    let resp = client
        .post(app.url("/login"))
        .header("x-csrf-token", token)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    // Logged in, logout without a token is refused and the session survives.
    let resp = client.post(app.url("/logout")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 200);
    app.stop().await;
}

async fn disabled_user(backend: Backend, redis: bool) {
    let Some(app) = TestApp::start(Options::new(backend, redis)).await else {
        return;
    };
    let db = &app.state.db;
    accounts::create(db, &Actor::cli(), "alice", "alice-password-1", Role::User)
        .await
        .unwrap();
    let client = app.client();
    assert_eq!(
        login(&app, &client, "alice", "alice-password-1")
            .await
            .status(),
        303
    );
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 200);

    accounts::set_disabled(db, &Actor::cli(), "alice", true)
        .await
        .unwrap();
    // Her open session ends at the next request…
    let resp = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    // …and she cannot log in again, with the same message as a wrong password.
    let resp = login(&app, &client, "alice", "alice-password-1").await;
    assert_eq!(resp.status(), 401);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("invalid user name or password")
    );
    let log = actions(&app).await;
    assert!(log.contains(&("user.disable".into(), "success".into(), None)));
    assert!(log.contains(&(
        "login".into(),
        "failure".into(),
        Some("account disabled".into())
    )));

    accounts::set_disabled(db, &Actor::cli(), "alice", false)
        .await
        .unwrap();
    assert_eq!(
        login(&app, &client, "alice", "alice-password-1")
            .await
            .status(),
        303
    );
    app.stop().await;
}

async fn security_headers_and_error_pages(backend: Backend, redis: bool) {
    let Some(app) = TestApp::start(Options::new(backend, redis)).await else {
        return;
    };
    let resp = app
        .client()
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let h = resp.headers().clone();
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    let rid = h["x-request-id"].to_str().unwrap().to_string();
    assert!(
        resp.text().await.unwrap().contains(&rid),
        "the page quotes the request id"
    );
    // Open redirects are refused after login.
    let client = app.client();
    let page = get_text(&client, &app.url("/login?next=//evil.example")).await;
    let token = csrf_from(&page);
    let resp = post_form(
        &client,
        &app.url("/login"),
        &[
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf_token", &token),
            ("next", "//evil.example"),
        ],
    )
    .await;
    assert_eq!(resp.headers()["location"], "/");
    app.stop().await;
}

crate::matrix!(
    login_logout,
    wrong_password_and_unknown_user_look_alike,
    throttling,
    csrf_is_required,
    disabled_user,
    security_headers_and_error_pages,
);

/// The client address comes from X-Forwarded-For only when the peer is a trusted proxy.
#[tokio::test]
async fn forwarded_for_only_from_trusted_proxy() {
    for (trusted, expect) in [
        (vec![], "127.0.0.1"),
        (vec!["127.0.0.1/32".parse().unwrap()], "198.51.100.7"),
    ] {
        let opts = Options::new(Backend::Sqlite, false).with(move |c| c.trusted_proxies = trusted);
        let app = TestApp::start(opts).await.unwrap();
        let client = app.client();
        let page = get_text(&client, &app.url("/login")).await;
        client
            .post(app.url("/login"))
            .header("x-forwarded-for", "198.51.100.7")
            .form(&[
                ("name", "admin"),
                ("password", "wrong-password"),
                ("csrf_token", &csrf_from(&page)),
            ])
            .send()
            .await
            .unwrap();
        let event = audit_event::Entity::find()
            .filter(audit_event::Column::Action.eq("login"))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.client_addr.as_deref(), Some(expect));
        app.stop().await;
    }
}
