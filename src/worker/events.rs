//! Live events: job progress and status changes, published in-process (tokio broadcast)
//! and, when Redis is configured, over Redis pub/sub so a page served by one replica can
//! follow a job run by another. Log lines stay in-process (they are also in the log file).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::imapsync::parse::Progress;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    JobProgress {
        progress: Progress,
    },
    JobStatus {
        status: String,
        reason: Option<String>,
        exit_code: Option<i32>,
    },
    TaskStatus {
        status: String,
        queued: i32,
        running: i32,
        succeeded: i32,
        warning: i32,
        failed: i32,
        cancelled: i32,
    },
    LogLine {
        line: String,
    },
    /// A verification of the job started or ended (`running`, `identical`, `differs`,
    /// `error`); the report itself is read from the job.
    JobVerify {
        verify_status: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Owner of the task: subscribers filter on it for permissions.
    pub owner_id: i64,
    pub task_id: i64,
    pub job_id: Option<i64>,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The replica that published it (to drop our own echo from Redis).
    #[serde(default)]
    pub origin: String,
}

#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    origin: String,
    redis: Option<(redis::aio::ConnectionManager, String)>,
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            tx,
            origin: crate::keys::random_hex(8),
            redis: None,
        }
    }

    /// Also publish to and receive from Redis channel `<prefix>events`.
    pub async fn with_redis(
        mut self,
        url: &str,
        conn: redis::aio::ConnectionManager,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let channel = format!("{prefix}events");
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let tx = self.tx.clone();
        let origin = self.origin.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut stream = pubsub.on_message();
            while let Some(msg) = stream.next().await {
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                match serde_json::from_str::<Event>(&payload) {
                    Ok(event) if event.origin != origin => {
                        let _ = tx.send(Arc::new(event));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "undecodable event on redis"),
                }
            }
            tracing::warn!("redis event subscription ended");
        });
        self.redis = Some((conn, channel));
        Ok(self)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn publish(&self, mut event: Event) {
        event.origin = self.origin.clone();
        let is_line = matches!(event.kind, EventKind::LogLine { .. });
        if let (Some((conn, channel)), false) = (&self.redis, is_line) {
            let mut conn = conn.clone();
            let channel = channel.clone();
            let payload = serde_json::to_string(&event).expect("events serialise");
            tokio::spawn(async move {
                if let Err(e) = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload)
                    .query_async::<i64>(&mut conn)
                    .await
                {
                    tracing::warn!(error = %e, "cannot publish event to redis");
                }
            });
        }
        let _ = self.tx.send(Arc::new(event));
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}
