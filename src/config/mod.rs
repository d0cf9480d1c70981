//! Configuration: the typed settings and the secret wrapper.
//!
//! Layering (defaults → `config.json` → `PYMAP_*` environment → CLI flags) lives in
//! [`load`]; this module only says what can be configured and what the defaults are.

mod load;
mod show;

pub use load::{ConfigError, Loaded, Overrides, load, load_from};
pub use show::render_show;

use std::{fmt, net::SocketAddr, path::PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A string that must never reach a log line, an error message or `config show`.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

/// Environment values arrive parsed (`PYMAP_SECRET_KEY=1234` is a number), so a secret
/// accepts any scalar and keeps its text.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything pymap can be told. Field names are the JSON keys; `PYMAP_<NAME>` with `__`
/// for nesting sets them from the environment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Where the SQLite database, the generated secret key and (by default) logs live.
    pub data_dir: PathBuf,
    /// Application and job logs; defaults to `<data_dir>/logs`. `PYMAP_LOGDIR` is the old
    /// Pymap spelling.
    pub log_dir: Option<PathBuf>,
    /// Parent of the private per-job work directories, which hold imapsync's pass files
    /// while a job runs. Unset: a directory in RAM, so mailbox passwords never reach a disk
    /// (see [`Config::run_dir`]).
    pub run_dir: Option<PathBuf>,
    /// Days of daily application log files to keep.
    pub log_retention_days: usize,
    /// tracing filter, e.g. `info` or `pymap=debug,info`.
    pub log_level: String,
    /// `sqlite://…` or `postgres://…`; defaults to `sqlite://<data_dir>/pymap.db`.
    pub database_url: Option<Secret>,
    /// How long start-up waits for an unreachable database before giving up.
    pub database_wait_secs: u64,
    /// Most database connections this process opens (2 to 1000). Unset: on PostgreSQL
    /// twice the CPUs pymap may use, at least 4; on SQLite 8
    /// (see [`Config::database_max_connections`]).
    pub database_max_connections: Option<u32>,
    /// Optional Redis for sessions, throttling and events shared between replicas.
    pub redis_url: Option<Secret>,
    /// Prefix for every Redis key, so one Redis can serve several installations.
    pub redis_prefix: String,
    /// Keys CSRF tokens, session cookies and credential encryption; generated into
    /// `<data_dir>/.secret` when absent.
    pub secret_key: Option<Secret>,
    /// Password of the bootstrap `admin` user created when no user exists.
    pub admin_password: Option<Secret>,
    /// Public URL users reach pymap at (sets cookie `Secure` when https).
    pub public_url: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDR ranges).
    #[serde(deserialize_with = "ip_ranges")]
    pub trusted_proxies: Vec<IpNet>,
    /// Old Pymap host shortcuts: `[regex, suffix]` pairs applied to typed host names.
    pub hosts: Vec<(String, String)>,
    pub session: SessionConfig,
    pub login_throttle: ThrottleConfig,
    pub workers: WorkerConfig,
    /// Path of the imapsync executable; looked up on PATH when unset.
    pub imapsync_path: Option<PathBuf>,
    /// Largest batch accepted in one task.
    pub batch_max_lines: usize,
    /// Days after a task ends before its stored mailbox passwords are wiped.
    pub credential_retention_days: u32,
    /// Who may read `/metrics`.
    pub metrics: MetricsConfig,
}

/// Access to `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsMode {
    /// `/metrics` answers 404.
    #[default]
    Off,
    /// Scrapers send `Authorization: Bearer <metrics.token>`.
    Token,
    /// Clients whose address is within `metrics.trusted`.
    Trusted,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    pub mode: MetricsMode,
    /// Bearer token for `mode = token` (at least 16 characters).
    pub token: Option<Secret>,
    /// Addresses or CIDR ranges allowed with `mode = trusted` (the client address as
    /// determined with `trusted_proxies`).
    #[serde(deserialize_with = "ip_ranges")]
    pub trusted: Vec<IpNet>,
}

/// Addresses or CIDR ranges. A bare address (`127.0.0.1`, `::1`) means that one host, as
/// an administrator writes it; `IpNet` alone would insist on a prefix length.
fn ip_ranges<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|item| parse_ip_range(item).map_err(serde::de::Error::custom))
        .collect()
}

pub fn parse_ip_range(item: &str) -> Result<IpNet, String> {
    let item = item.trim();
    item.parse::<IpNet>()
        .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{item:?} is neither an IP address nor a CIDR range"))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionConfig {
    /// Session lifetime, renewed at login.
    pub max_age_secs: u64,
    /// Force the cookie `Secure` flag; by default it follows `public_url`'s scheme.
    pub secure_cookie: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ThrottleConfig {
    /// Failed logins allowed per client address within the window.
    pub per_address: u32,
    /// Failed logins allowed per user name within the window.
    pub per_user: u32,
    pub window_secs: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Jobs running at once in this process.
    pub concurrency: usize,
    /// Jobs running at once against one source host.
    pub per_source_host: usize,
    /// Jobs running at once against one destination host.
    pub per_destination_host: usize,
    /// Seconds between SIGTERM and SIGKILL when a job is cancelled.
    pub cancel_grace_secs: u64,
    /// Attempts for transient failures, the first run included.
    pub max_attempts: u32,
    /// First retry delay; doubles with every attempt.
    pub retry_base_secs: u64,
    /// A running job whose worker has not reported for this long is considered orphaned
    /// (its process died) and is queued again.
    pub stale_after_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: PathBuf::from("data"),
            log_dir: None,
            run_dir: None,
            log_retention_days: 14,
            log_level: "info".into(),
            database_url: None,
            database_wait_secs: 60,
            database_max_connections: None,
            redis_url: None,
            redis_prefix: "pymap:".into(),
            secret_key: None,
            admin_password: None,
            public_url: None,
            trusted_proxies: Vec::new(),
            hosts: Vec::new(),
            session: SessionConfig::default(),
            login_throttle: ThrottleConfig::default(),
            workers: WorkerConfig::default(),
            imapsync_path: None,
            batch_max_lines: 5000,
            credential_retention_days: 7,
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_age_secs: 8 * 3600,
            secure_cookie: None,
        }
    }
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_address: 20,
            per_user: 5,
            window_secs: 15 * 60,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            per_source_host: 4,
            per_destination_host: 4,
            cancel_grace_secs: 10,
            max_attempts: 3,
            retry_base_secs: 30,
            stale_after_secs: 30,
        }
    }
}

impl Config {
    pub fn log_dir(&self) -> PathBuf {
        self.log_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("logs"))
    }

    /// Where the per-job work directories go: as configured, else in RAM — systemd's
    /// `$RUNTIME_DIRECTORY/jobs` (the unit sets `RuntimeDirectory=pymap`), else
    /// `/dev/shm/pymap-<uid>-<hash of the data dir>` — and only where neither exists
    /// `<data_dir>/run`.
    ///
    /// Why RAM: the pass files imapsync reads are the mailbox passwords in clear text; on
    /// tmpfs they never reach a disk. It is also cheaper: with 1,000 jobs at 200 at once,
    /// pymap used 38–40 % less CPU than with the same files on ext4 (BENCHMARKS.md,
    /// "Worker pool"). The hash keeps two installations (two data dirs) of one user apart.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir_from(
            std::env::var_os("RUNTIME_DIRECTORY").as_deref(),
            std::path::Path::new("/dev/shm"),
        )
    }

    /// [`Config::run_dir`] with the environment and the RAM file system given.
    pub fn run_dir_from(
        &self,
        runtime_directory: Option<&std::ffi::OsStr>,
        shm: &std::path::Path,
    ) -> PathBuf {
        if let Some(dir) = &self.run_dir {
            return dir.clone();
        }
        // systemd may list several directories, separated by colons: ours is the first.
        let runtime = runtime_directory
            .and_then(|v| v.to_str())
            .and_then(|v| v.split(':').next())
            .filter(|v| !v.is_empty());
        if let Some(dir) = runtime {
            return PathBuf::from(dir).join("jobs");
        }
        if shm.is_dir() && rustix::fs::access(shm, rustix::fs::Access::WRITE_OK).is_ok() {
            use sha2::Digest;
            let data_dir = std::path::absolute(&self.data_dir).unwrap_or(self.data_dir.clone());
            let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
            let uid = rustix::process::geteuid().as_raw();
            return shm.join(format!("pymap-{uid}-{}", &hex::encode(digest)[..12]));
        }
        self.data_dir.join("run")
    }

    /// The database pool's size: as configured, else on PostgreSQL twice the CPUs this
    /// process may use (cgroup limits included), at least 4, and on SQLite 8.
    ///
    /// Why: PostgreSQL runs one process per connection, and on the same few cores more
    /// connections only add processes competing for the CPU. On this 2-core machine a
    /// pool of 4 instead of 16 (the earlier fixed size) gave the REST API 9–20 % more
    /// requests per second, a p99 21–22 % lower and 14 % less PostgreSQL CPU per task
    /// list (BENCHMARKS.md, "REST API"). A database server with many cores of its own may
    /// want more: set `database_max_connections`. SQLite keeps its 8: there a smaller
    /// pool measured no clear gain for the API and slowed the worker pool's dispatch at
    /// 200 concurrent jobs.
    pub fn database_max_connections(&self) -> u32 {
        self.database_max_connections.unwrap_or_else(|| {
            if self.database_url().starts_with("sqlite:") {
                return 8;
            }
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            (2 * cpus).clamp(4, 1000) as u32
        })
    }

    /// The database URL in effect, SQLite in the data dir unless configured.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_string(),
            None => format!("sqlite://{}", self.data_dir.join("pymap.db").display()),
        }
    }

    pub fn cookie_secure(&self) -> bool {
        self.session.secure_cookie.unwrap_or_else(|| {
            self.public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        })
    }
}

/// Hide the password part of a `scheme://user:password@host/…` URL for display.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}
