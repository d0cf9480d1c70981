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

fn options(url: &str) -> ConnectOptions {
    let mut url = url.to_string();
    if url.starts_with("sqlite:") && !url.contains('?') && !url.contains(":memory:") {
        url.push_str("?mode=rwc");
    }
    let sqlite = url.starts_with("sqlite:");
    let mut opts = ConnectOptions::new(url);
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .max_connections(if sqlite { 8 } else { 16 })
        // WAL lets readers run beside the writer and the busy timeout makes concurrent
        // writers wait instead of failing with "database is locked" (Pymap's bug).
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(15))
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
        });
    opts
}

/// Connect, retrying with backoff for up to `wait` (services start in parallel under
/// supervisord), then give up with a message that names the database.
pub async fn connect(url: &str, wait: Duration) -> Result<DatabaseConnection, ConnectError> {
    if let Some(path) = url.strip_prefix("sqlite://")
        && let Some(parent) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
        && !parent.as_os_str().is_empty()
    {
        let _ = std::fs::create_dir_all(parent);
    }
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match Database::connect(options(url)).await {
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

/// A cheap round trip for `/readyz`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}
