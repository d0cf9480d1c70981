//! Shared test harness: databases on SQLite and PostgreSQL, optional Redis, and the app
//! started in-process on 127.0.0.1:0.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use pymap::{
    config::{Config, Secret},
    state::AppState,
};
use sea_orm::{ConnectionTrait, Database};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub const ADMIN_PASSWORD: &str = "admin-password-123";

fn ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
}

/// A service URL from the test environment; `None` (skip) outside CI, panic in CI.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if ci() => panic!(
            "{var} is not set: under CI=true every service must be available (run ./scripts/test.sh)"
        ),
        _ => {
            eprintln!("SKIP: {var} not set; run ./scripts/test.sh to start the services");
            None
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", pymap::keys::random_hex(6))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database URL for `backend` (`None`: skipped).
pub async fn database_url(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("test.db").display())),
        Backend::Postgres => {
            let admin = service_url("PYMAP_TEST_DATABASE_URL")?;
            let name = unique("pymap_test_");
            let conn = Database::connect(&admin)
                .await
                .expect("connect to the test PostgreSQL");
            conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create database");
            conn.close().await.ok();
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b)
                .expect("URL with a database");
            Some(format!("{base}/{name}"))
        }
    }
}

pub struct Options {
    pub backend: Backend,
    pub redis: bool,
    pub tweak: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Options {
    pub fn new(backend: Backend, redis: bool) -> Self {
        Self {
            backend,
            redis,
            tweak: Box::new(|_| {}),
        }
    }
    pub fn with(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweak = Box::new(f);
        self
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    /// Holds the data dir until the app is dropped.
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Start with the given options, or `None` when a required service is absent.
    pub async fn start(opts: Options) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            admin_password: Some(Secret::new(ADMIN_PASSWORD)),
            database_wait_secs: 5,
            ..Config::default()
        };
        config.database_url = Some(Secret::new(database_url(opts.backend, dir.path()).await?));
        if opts.redis {
            config.redis_url = Some(Secret::new(service_url("PYMAP_TEST_REDIS_URL")?));
            config.redis_prefix = unique("pymap-test-") + ":";
        }
        (opts.tweak)(&mut config);
        Some(Self::start_with(config, dir).await)
    }

    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = pymap::build_state(config).await.expect("app state");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(pymap::serve(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            state,
            _dir: dir,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A browser-like client: cookies kept, redirects not followed (tests look at them).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// Stop gracefully and hand back the data dir (to start again on the same data).
    pub async fn into_dir(mut self) -> tempfile::TempDir {
        self.shutdown_and_wait().await;
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._dir, dir)
    }

    async fn shutdown_and_wait(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// The CSRF token embedded in a page.
pub fn csrf_from(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("page has a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// GET /login, then POST the form with its token. Returns the POST response.
pub async fn login(
    app: &TestApp,
    client: &reqwest::Client,
    name: &str,
    password: &str,
) -> reqwest::Response {
    let page = client
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_from(&page);
    client
        .post(app.url("/login"))
        .form(&[
            ("name", name),
            ("password", password),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap()
}

pub fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.cookies()
        .find(|c| c.name() == "pymap_session")
        .map(|c| c.value().to_string())
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pymap"))
}

/// Generate one `#[tokio::test]` per storage backend × session store.
#[macro_export]
macro_rules! matrix {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::harness::Backend;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_memory() { super::$name(Backend::Sqlite, false).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_redis() { super::$name(Backend::Sqlite, true).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_memory() { super::$name(Backend::Postgres, false).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_redis() { super::$name(Backend::Postgres, true).await }
            }
        )*
    };
}

/// A TCP forwarder that can be cut, to make a real service unreachable mid-test.
pub struct CutProxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl CutProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: std::sync::Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Default::default();
        let list = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(handle);
            }
        });
        Self { addr, task, conns }
    }

    /// Close the listening socket and every forwarded connection.
    pub fn cut(&self) {
        self.task.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// host:port of a service URL.
pub fn socket_of(url: &str) -> SocketAddr {
    let parsed = url::Url::parse(url).unwrap();
    let host = parsed.host_str().unwrap();
    let port = parsed.port().unwrap();
    format!("{host}:{port}").parse().unwrap()
}

/// The same URL pointed at another address.
pub fn with_addr(url: &str, addr: SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_port(Some(addr.port())).unwrap();
    parsed.to_string()
}

/// GET a page's text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// POST an urlencoded form.
pub async fn post_form(
    client: &reqwest::Client,
    url: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    client.post(url).form(fields).send().await.unwrap()
}
