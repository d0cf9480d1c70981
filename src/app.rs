//! Starting pymap: connect the stores, run migrations, make sure an admin exists, then
//! serve HTTP until told to stop.

use std::{future::Future, sync::Arc, time::Duration};

use poem::{Endpoint, Server, listener::TcpAcceptor};
use redis::aio::ConnectionManager;

use crate::{
    config::{Config, redact_url},
    db,
    keys::{Keys, load_or_create_secret},
    service,
    shared_store::Throttle,
    state::AppState,
    web,
    worker::{
        engine::Engine,
        events::EventBus,
        imapsync::runner::ImapsyncEngine,
        native::{NativeEngine, NativeOptions},
        pool::{Engines, Pool, PoolConfig},
        queue::Limits,
    },
};

/// The whole HTTP application for a state (tests call this directly).
pub fn router(state: AppState) -> impl Endpoint {
    web::routes(state)
}

/// Connect to Redis, retrying like the database does (supervisord starts all at once).
pub async fn connect_redis(url: &str, prefix_wait: Duration) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)
        .map_err(|e| anyhow::anyhow!("redis_url {} is invalid: {e}", redact_url(url)))?;
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = async {
            let mut conn = client.get_connection_manager().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(conn)) => return Ok(conn),
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                if started.elapsed() + delay > prefix_wait {
                    anyhow::bail!(
                        "redis {} unreachable after {:?}: {error}",
                        redact_url(url),
                        started.elapsed()
                    );
                }
                tracing::warn!(url = %redact_url(url), %error, retry_in = ?delay, "redis not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Everything `serve` needs before it can answer requests.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let wait = Duration::from_secs(config.database_wait_secs);
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!("data_dir {} is not usable: {e}", config.data_dir.display())
    })?;
    let secret = load_or_create_secret(&config)?;
    let db = db::open(&config).await?;
    let redis = match &config.redis_url {
        Some(url) => Some(connect_redis(url.expose(), wait).await?),
        None => None,
    };
    let throttle = match &redis {
        Some(conn) => Throttle::Redis {
            conn: conn.clone(),
            prefix: config.redis_prefix.clone(),
        },
        None => Throttle::memory(),
    };
    let admin_password = config
        .admin_password
        .as_ref()
        .map(|s| s.expose().to_string());
    if let Some(generated) =
        service::accounts::ensure_bootstrap_admin(&db, admin_password.as_deref()).await?
    {
        // Shown once on the console (not in log files) and kept in a 0600 file in the
        // data dir, because there is no other way to learn it.
        let path = config.data_dir.join("initial-admin-password");
        write_private(&path, &generated)?;
        tracing::warn!(
            path = %path.display(),
            "created user `admin` with a generated password (printed once below and stored in this file; delete it after logging in)"
        );
        eprintln!("\n  pymap: user `admin` created with password: {generated}\n");
    }
    let keys = Keys::derive(&secret);
    let mut events = EventBus::new();
    if let (Some(conn), Some(url)) = (&redis, &config.redis_url) {
        events = events
            .with_redis(url.expose(), conn.clone(), &config.redis_prefix)
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to redis events: {e}"))?;
    }
    let pool = Pool::new(
        db.clone(),
        keys.credentials,
        engines(&config),
        events.clone(),
        pool_config(&config),
    );
    let verifier = service::verification::Verifier::new(
        db.clone(),
        keys.credentials,
        events.clone(),
        NativeOptions::default(),
    );
    Ok(AppState {
        config: Arc::new(config),
        db,
        redis,
        keys: Arc::new(keys),
        templates: Arc::new(web::templates::environment()),
        throttle,
        pool,
        events,
        verifier,
    })
}

/// The engines available here. imapsync is optional (not packaged in Debian): without it,
/// tasks for that engine are refused with the reason.
pub fn engines(config: &Config) -> Engines {
    let imapsync = ImapsyncEngine::locate(config.imapsync_path.as_deref()).map(|e| {
        Arc::new(e.with_grace(Duration::from_secs(config.workers.cancel_grace_secs)))
            as Arc<dyn Engine>
    });
    if let Err(why) = &imapsync {
        tracing::warn!("imapsync engine unavailable: {why}");
    }
    Engines {
        imapsync,
        native: Ok(Arc::new(NativeEngine::new(NativeOptions::default())) as Arc<dyn Engine>),
    }
}

pub fn pool_config(config: &Config) -> PoolConfig {
    PoolConfig {
        concurrency: config.workers.concurrency,
        limits: Limits {
            per_source_host: config.workers.per_source_host,
            per_destination_host: config.workers.per_destination_host,
        },
        max_attempts: config.workers.max_attempts,
        retry_base: Duration::from_secs(config.workers.retry_base_secs),
        stale_after: Duration::from_secs(config.workers.stale_after_secs),
        poll_interval: Duration::from_millis(500),
        log_dir: config.log_dir(),
        run_dir: config.run_dir(),
        credential_retention_days: config.credential_retention_days,
    }
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    writeln!(file, "{text}")?;
    Ok(())
}

/// Serve on `listener` until `shutdown` resolves, then drain requests for a few seconds.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(config).await?;
    serve(state, listener, shutdown).await
}

pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let pool = state.pool.clone();
    let pool_task = pool.start().await?;
    let app = router(state);
    tracing::info!(%addr, "pymap listening");
    crate::notify::ready();
    let server = Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?);
    server
        .run_with_graceful_shutdown(
            app,
            async move {
                shutdown.await;
                crate::notify::stopping();
                tracing::info!("shutting down");
            },
            Some(Duration::from_secs(10)),
        )
        .await?;
    // Stop running jobs and mark them interrupted before the process ends.
    pool.shutdown().await;
    let _ = pool_task.await;
    Ok(())
}
