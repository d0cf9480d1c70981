//! The web UI in a real browser: Debian's headless Chromium driven through chromedriver
//! with fantoccini. Log in, submit a two-line batch, watch both progress bars reach
//! 100 % without reloading, watch a log tail grow, cancel a running job and retry it,
//! log out. Screenshots of every page, light and dark, go to `target/screenshots/` for
//! a reviewer to look at.
//!
//! Needs `PYMAP_TEST_CHROMIUM` and `PYMAP_TEST_CHROMEDRIVER` (set by `scripts/test.sh`);
//! skipped without them, except under `CI=true`.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::json;

use crate::{
    harness::{ADMIN_PASSWORD, Backend, service_url},
    pool::{jobs_of, pool_app},
};

/// chromedriver on a free port; killed (by its pid) when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(chromedriver: &str) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    }
}

async fn browser(driver: &Driver, chromium: &str) -> Client {
    let profile = driver._profile.path().display().to_string();
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        &format!("--user-data-dir={profile}"),
        "--window-size=1280,900",
    ];
    let caps = json!({ "goog:chromeOptions": { "binary": chromium, "args": args } });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    // WebDriver speaks plain HTTP on loopback; rustls only needs a provider to exist.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    ClientBuilder::rustls()
        .expect("rustls connector")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("webdriver session")
}

fn shots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str, theme: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(shots_dir().join(format!("{name}-{theme}.png")), png).unwrap();
}

/// Poll `check` until it answers `Some`, or fail after `limit` with `what`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    let el = c.find(Locator::Css(css)).await.ok()?;
    el.attr(name).await.ok().flatten()
}

/// Values of the progress bars in the mailbox rows.
async fn row_progress(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for bar in c
        .find_all(Locator::Css("#jobs progress"))
        .await
        .unwrap_or_default()
    {
        out.push(bar.attr("value").await.ok().flatten().unwrap_or_default());
    }
    out
}

/// Click what `css` finds; rows are replaced live over SSE, so an element found a moment
/// ago may be stale: find it again and retry.
async fn click(c: &Client, css: &str) {
    let started = Instant::now();
    loop {
        let found = c.find(Locator::Css(css)).await;
        match found {
            Ok(el) => match el.click().await {
                Ok(()) => return,
                Err(e) if started.elapsed() > Duration::from_secs(30) => panic!("click {css}: {e}"),
                Err(_) => {}
            },
            Err(e) if started.elapsed() > Duration::from_secs(60) => panic!("find {css}: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, css: &str, text: &str) -> Element {
    let el = c.find(Locator::Css(css)).await.unwrap();
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
    el
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flow() {
    let (Some(chromium), Some(chromedriver)) = (
        service_url("PYMAP_TEST_CHROMIUM"),
        service_url("PYMAP_TEST_CHROMEDRIVER"),
    ) else {
        return;
    };
    let Some(app) = pool_app(Backend::Sqlite, |c| {
        c.hosts = vec![("^mx[0-9]+$".into(), ".mail.example.com".into())];
    })
    .await
    else {
        return;
    };
    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    let url = |p: &str| app.url(p);
    let long = Duration::from_secs(60);

    // Log in.
    c.goto(&url("/login")).await.unwrap();
    shot(&c, "login", "light").await;
    fill(&c, "#name", "admin").await;
    fill(&c, "#password", ADMIN_PASSWORD).await;
    c.find(Locator::Css("form[action='/login'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("nav[aria-label=Main]"))
        .await
        .unwrap();
    shot(&c, "dashboard-empty", "light").await;

    // New migration: the typed shortcut resolves as you type.
    c.goto(&url("/migrate")).await.unwrap();
    fill(&c, "#source", "mx1").await;
    let resolved = until(Duration::from_secs(10), "host preview", || async {
        let t = c
            .find(Locator::Id("source-preview"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        t.contains("mx1.mail.example.com").then_some(t)
    })
    .await;
    assert!(resolved.contains("global pattern #1"), "{resolved}");
    fill(&c, "#destination", "dst.example.com:143").await;
    fill(&c, "#label", "Browser batch").await;
    let batch = "standin-a+speed1.5@m1.example.com pw-one\nstandin-j+speed2@m2.example.com pw-two";
    fill(&c, "#batch", batch).await;
    // "Check credentials" answers in place: the batch stays in its box.
    c.find(Locator::Id("check"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let heading = until(Duration::from_secs(20), "check results", || async {
        c.find(Locator::Css("#check-results h2"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
    .await;
    assert_eq!(heading, "Login check of 2 lines");
    let kept = c
        .find(Locator::Id("batch"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some(batch), "the pasted batch is kept");
    shot(&c, "migrate", "light").await;
    c.find(Locator::Id("start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(Duration::from_secs(20), "task page", || async {
        let u = c.current_url().await.ok()?;
        u.path().starts_with("/tasks/").then_some(())
    })
    .await;
    let task_url = c.current_url().await.unwrap().to_string();
    let task_id: i64 = task_url.rsplit('/').next().unwrap().parse().unwrap();

    // Both progress bars reach 100 % while the page stays the same document: an element
    // found now would be stale after any reload.
    let footer = c.find(Locator::Css("footer")).await.unwrap();
    let mut seen_partial = false;
    let started = Instant::now();
    loop {
        let values = row_progress(&c).await;
        seen_partial |= values.iter().any(|v| v != "0" && v != "100");
        if values.len() == 2 && values.iter().all(|v| v == "100") {
            break;
        }
        assert!(started.elapsed() < long, "bars not at 100%: {values:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen_partial, "progress was seen between 0 and 100");
    footer
        .text()
        .await
        .expect("same document: the page was never reloaded");
    assert_eq!(
        attr(&c, "#live", "class").await.as_deref(),
        Some("live-dot on")
    );
    until(long, "task summary done", || async {
        let s = c
            .find(Locator::Id("task-status"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (s == "warning" || s == "succeeded").then_some(())
    })
    .await;
    shot(&c, "task", "light").await;

    // A slow job: its log grows live, then it is cancelled and retried.
    c.goto(&url("/migrate")).await.unwrap();
    fill(&c, "#source", "src.example.com").await;
    fill(&c, "#destination", "dst.example.com").await;
    fill(&c, "#batch", "standin-a+speed0.4@slow.example.com pw").await;
    c.find(Locator::Id("start"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(Duration::from_secs(20), "second task page", || async {
        let u = c.current_url().await.ok()?.to_string();
        (u.contains("/tasks/") && u != task_url).then_some(())
    })
    .await;
    let slow_task: i64 = c
        .current_url()
        .await
        .unwrap()
        .path()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let job = jobs_of(&app, slow_task).await.remove(0);
    let log_link = format!("a[href='/jobs/{}/log']", job.id);
    click(&c, &log_link).await;
    c.wait().for_element(Locator::Id("log")).await.unwrap();
    let first = c
        .find(Locator::Id("log"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .len();
    until(long, "log lines arriving", || async {
        let now = c
            .find(Locator::Id("log"))
            .await
            .ok()?
            .text()
            .await
            .ok()?
            .len();
        (now > first + 200).then_some(())
    })
    .await;
    assert_eq!(
        attr(&c, "#follow", "checked").await.as_deref(),
        Some("true")
    );
    shot(&c, "log", "light").await;

    c.goto(&format!(
        "{}#job-{}",
        url(&format!("/tasks/{slow_task}")),
        job.id
    ))
    .await
    .unwrap();
    let cancel = format!("button[formaction='/jobs/{}/cancel']", job.id);
    click(&c, &cancel).await;
    let row = format!("#job-{}", job.id);
    until(long, "job cancelled", || async {
        (attr(&c, &row, "data-status").await? == "cancelled").then_some(())
    })
    .await;
    let retry = format!("button[formaction='/jobs/{}/retry']", job.id);
    click(&c, &retry).await;
    until(long, "job running again", || async {
        let s = attr(&c, &row, "data-status").await?;
        (s == "running" || s == "queued").then_some(())
    })
    .await;
    let flash = c
        .find(Locator::Css(".flash.ok"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(flash.contains("queued again"), "{flash}");
    until(long, "retried job runs", || async {
        (attr(&c, &row, "data-status").await? == "running").then_some(())
    })
    .await;
    shot(&c, "task-running", "light").await;

    // Every page, light then dark (the toggle cycles system → light → dark), in a tall
    // window so the tables are in the picture.
    c.set_window_size(1280, 1500).await.unwrap();
    let pages = [
        ("dashboard", "/".to_string()),
        ("tasks", "/tasks".into()),
        ("task", format!("/tasks/{task_id}")),
        ("log", format!("/jobs/{}/log", job.id)),
        ("migrate", "/migrate".into()),
        ("account", "/account".into()),
        ("users", "/admin/users".into()),
        ("audit", "/admin/audit".into()),
        ("system", "/admin/system".into()),
        ("not-found", "/tasks/999999".into()),
    ];
    for theme in ["light", "dark"] {
        if theme == "dark" {
            c.goto(&url("/")).await.unwrap();
            for _ in 0..2 {
                c.find(Locator::Id("theme-toggle"))
                    .await
                    .unwrap()
                    .click()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            assert_eq!(
                attr(&c, "html", "data-theme").await.as_deref(),
                Some("dark")
            );
        }
        for (name, path) in &pages {
            c.goto(&url(path)).await.unwrap();
            c.wait().for_element(Locator::Css("footer")).await.unwrap();
            shot(&c, name, theme).await;
        }
    }
    // A phone-sized window (responsive layout), dark.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&url(&format!("/tasks/{task_id}"))).await.unwrap();
    shot(&c, "task-phone", "dark").await;
    let wider = c
        .execute(
            "return document.documentElement.scrollWidth > innerWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(wider, json!(false), "no sideways scrolling on a phone");
    c.goto(&url("/login?next=/")).await.unwrap();

    // Log out.
    c.goto(&url("/")).await.unwrap();
    c.find(Locator::Css("form[action='/logout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(Duration::from_secs(10), "login page", || async {
        (c.current_url().await.ok()?.path() == "/login").then_some(())
    })
    .await;
    c.goto(&url("/tasks")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    c.close().await.unwrap();
    drop(driver);
    app.stop().await;
}
