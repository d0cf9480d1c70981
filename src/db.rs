//! Opening the database (SQLite by default, PostgreSQL when configured) and running the
//! schema migrations.

use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::config::redact_url;

#[derive(Debug, thiserror::Error)]
#[error("database {url} unreachable after {waited:?}: {source}")]
pub struct ConnectError {
    pub url: String,
    pub waited: Duration,
    pub source: DbErr,
}

fn options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut url = url.to_string();
    if url.starts_with("sqlite:") && !url.contains('?') && !url.contains(":memory:") {
        url.push_str("?mode=rwc");
    }
    let mut opts = ConnectOptions::new(url);
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .max_connections(max_connections)
        // sqlx pings every connection when it goes back to the pool, so one that broke
        // during a query is never handed out again; pinging once more on every checkout
        // (sqlx's default) added a third round trip to each query (checkout ping, query,
        // release ping). Connections idle long enough for a server restart or a proxy's
        // idle cut are still tested first.
        .test_before_acquire_if_idle_for(Duration::from_secs(10))
        // WAL lets readers run beside the writer and the busy timeout makes concurrent
        // writers wait instead of failing with "database is locked" (Pymap's bug).
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(15))
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
        })
        .map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_connect(|conn, _meta| {
                Box::pin(async move {
                    let mut handle = conn.lock_handle().await?;
                    stable_query_plans(handle.as_raw_handle());
                    Ok(())
                })
            })
        });
    opts
}

/// Switch off SQLite's memory statistics, once per process and before SQLite starts.
///
/// Why: while they are on (SQLite's default), every allocation SQLite makes takes one
/// process-wide mutex to update the counters, and sqlx runs each connection on its own
/// thread, so concurrent queries queue on that lock (5 % of a task listing's CPU). pymap
/// never reads the statistics. Too late (SQLite already started in this process) is
/// harmless: the setting is refused and the default stays.
fn sqlite_without_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int; sqlite3_config is only called
        // here, once, and SQLite refuses it (SQLITE_MISUSE) if it has already started.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(rc, "SQLite already started: memory statistics stay on");
        }
    });
}

/// Turn on SQLite's query planner stability guarantee for one connection.
///
/// Why: sea-query binds `LIMIT` (and so every `.one()`) as a parameter. Without this,
/// SQLite peeks at that bound value while planning and marks the prepared statement to be
/// re-prepared whenever the parameter is bound again, which sqlx does on every execution,
/// so the statement cache never paid off: re-parsing was 14 % of the CPU of a task
/// listing (BENCHMARKS.md, "REST API"). With the guarantee the plan does not depend on
/// bound values and cached statements are reused as they are.
fn stable_query_plans(db: std::ptr::NonNull<libsqlite3_sys::sqlite3>) {
    let mut enabled: std::ffi::c_int = 0;
    // SAFETY: `db` is a live connection handle that sqlx has locked for us (its worker
    // thread makes no calls on it meanwhile); SQLITE_DBCONFIG_ENABLE_QPSG takes an int
    // and an int* to report the new setting, both valid for the call.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db.as_ptr(),
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            &mut enabled as *mut std::ffi::c_int,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK || enabled != 1 {
        tracing::warn!(rc, "SQLite: could not enable stable query plans");
    }
}

/// Connect with a pool of at most `max_connections` (`Config::database_max_connections`),
/// retrying with backoff for up to `wait` (services start in parallel under
/// supervisord), then give up with a message that names the database.
pub async fn connect(
    url: &str,
    wait: Duration,
    max_connections: u32,
) -> Result<DatabaseConnection, ConnectError> {
    if url.starts_with("sqlite:") {
        sqlite_without_memory_statistics();
    }
    if let Some(path) = url.strip_prefix("sqlite://")
        && let Some(parent) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match Database::connect(options(url, max_connections)).await {
            Ok(db) => return Ok(db),
            Err(source) => {
                let waited = started.elapsed();
                if waited + delay > wait {
                    return Err(ConnectError {
                        url: redact_url(url),
                        waited,
                        source,
                    });
                }
                tracing::warn!(url = %redact_url(url), error = %source, retry_in = ?delay, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Begin a transaction that will write. On SQLite it takes the write lock at BEGIN
/// (`BEGIN IMMEDIATE`), so concurrent writers queue on the busy timeout instead of failing
/// with "database is locked" when a read lock cannot be upgraded.
pub async fn write_txn(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// The configured database, connected (waiting `database_wait_secs`, pool of
/// `database_max_connections`) and migrated: what every command that uses it starts with.
pub async fn open(config: &crate::config::Config) -> anyhow::Result<DatabaseConnection> {
    let wait = Duration::from_secs(config.database_wait_secs);
    let url = config.database_url();
    let db = connect(&url, wait, config.database_max_connections()).await?;
    migrate(&db)
        .await
        .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))?;
    Ok(db)
}

/// A cheap round trip for `/readyz`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pooled SQLite connection plans without peeking at bound values (else cached
    /// statements are re-prepared on every execution, see `stable_query_plans`).
    #[tokio::test]
    async fn sqlite_connections_have_stable_query_plans() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/qpsg.db", dir.path().display());
        let db = connect(&url, Duration::from_secs(5), 4).await.unwrap();
        let pool = db.get_sqlite_connection_pool();
        // Two connections at once: the setting must not only be on the first one.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut conn = pool.acquire().await.unwrap();
            let mut handle = conn.lock_handle().await.unwrap();
            let mut enabled: std::ffi::c_int = -1;
            // SAFETY: a live, locked handle; -1 only reads the setting into `enabled`.
            let rc = unsafe {
                libsqlite3_sys::sqlite3_db_config(
                    handle.as_raw_handle().as_ptr(),
                    libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                    -1 as std::ffi::c_int,
                    &mut enabled as *mut std::ffi::c_int,
                )
            };
            assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
            assert_eq!(enabled, 1);
            drop(handle);
            held.push(conn);
        }
    }
}
