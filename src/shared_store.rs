//! State that several replicas must share: login-throttle counters and sessions.
//! Kept in Redis when configured, in this process otherwise.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use poem::session::{MemoryStorage, SessionStorage};
use redis::{AsyncCommands, aio::ConnectionManager};
use serde_json::Value;

/// Fixed-window failure counters keyed by `addr:<ip>` / `user:<name>`.
#[derive(Clone)]
pub enum Throttle {
    Memory(Arc<Mutex<HashMap<String, (u32, Instant)>>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

impl Throttle {
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// Failures recorded for `key` in the current window, and the time left in it.
    pub async fn failures(&self, key: &str) -> redis::RedisResult<(u32, Duration)> {
        match self {
            Self::Memory(map) => {
                let map = map.lock().expect("throttle lock");
                Ok(match map.get(key) {
                    Some((count, until)) if *until > Instant::now() => {
                        (*count, until.saturating_duration_since(Instant::now()))
                    }
                    _ => (0, Duration::ZERO),
                })
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let k = format!("{prefix}throttle:{key}");
                let (count, ttl): (Option<u32>, i64) =
                    redis::pipe().get(&k).ttl(&k).query_async(&mut conn).await?;
                Ok((count.unwrap_or(0), Duration::from_secs(ttl.max(0) as u64)))
            }
        }
    }

    pub async fn record_failure(&self, key: &str, window: Duration) -> redis::RedisResult<()> {
        match self {
            Self::Memory(map) => {
                let mut map = map.lock().expect("throttle lock");
                let now = Instant::now();
                // Drop expired windows now and then so the map cannot grow without bound.
                if map.len() > 10_000 {
                    map.retain(|_, (_, until)| *until > now);
                }
                let entry = map.entry(key.to_string()).or_insert((0, now + window));
                if entry.1 <= now {
                    *entry = (0, now + window);
                }
                entry.0 += 1;
                Ok(())
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let k = format!("{prefix}throttle:{key}");
                redis::pipe()
                    .atomic()
                    .incr(&k, 1)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&k)
                    .arg(window.as_secs())
                    .arg("NX")
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            }
        }
    }

    pub async fn reset(&self, key: &str) -> redis::RedisResult<()> {
        match self {
            Self::Memory(map) => {
                map.lock().expect("throttle lock").remove(key);
                Ok(())
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                conn.del::<_, ()>(format!("{prefix}throttle:{key}")).await
            }
        }
    }
}

/// Session storage: memory for a single process, Redis (with our key prefix and the
/// cookie's max-age as TTL) when replicas share it.
pub enum SessionStore {
    Memory(MemoryStorage),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

fn redis_err(e: redis::RedisError) -> poem::Error {
    tracing::error!(error = %e, "session store unavailable");
    poem::Error::from_string(
        "session store unavailable",
        poem::http::StatusCode::SERVICE_UNAVAILABLE,
    )
}

impl SessionStorage for SessionStore {
    async fn load_session<'a>(
        &'a self,
        session_id: &'a str,
    ) -> poem::Result<Option<BTreeMap<String, Value>>> {
        match self {
            Self::Memory(m) => m.load_session(session_id).await,
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let data: Option<String> = conn
                    .get(format!("{prefix}session:{session_id}"))
                    .await
                    .map_err(redis_err)?;
                Ok(data.and_then(|d| serde_json::from_str(&d).ok()))
            }
        }
    }

    async fn update_session<'a>(
        &'a self,
        session_id: &'a str,
        entries: &'a BTreeMap<String, Value>,
        expires: Option<Duration>,
    ) -> poem::Result<()> {
        match self {
            Self::Memory(m) => m.update_session(session_id, entries, expires).await,
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let key = format!("{prefix}session:{session_id}");
                let value = serde_json::to_string(entries).unwrap_or_default();
                let ttl = expires.unwrap_or(Duration::from_secs(8 * 3600)).as_secs();
                conn.set_ex::<_, _, ()>(key, value, ttl.max(1))
                    .await
                    .map_err(redis_err)
            }
        }
    }

    async fn remove_session<'a>(&'a self, session_id: &'a str) -> poem::Result<()> {
        match self {
            Self::Memory(m) => m.remove_session(session_id).await,
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                conn.del::<_, ()>(format!("{prefix}session:{session_id}"))
                    .await
                    .map_err(redis_err)
            }
        }
    }
}
