//! `GET /events`: live job progress and status changes (Server-Sent Events) for what the
//! caller may see: their own tasks, or all for admins; optionally one task only.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream::BoxStream};
use poem::web::Data;
use poem_openapi::{Enum, Object, OpenApi, param::Query, payload::EventStream, types::ToJSON};
use tokio::sync::broadcast::error::RecvError;

use super::{
    Tag,
    auth::{Caller, Via, still_valid},
    error::ApiError,
    model::{JobCounts, JobProgress, Status},
    model_verify::VerifyStatus,
};
use crate::{
    service::{tasks, verification::VerifyStatus as Stored},
    state::AppState,
    worker::events::{Event, EventKind},
};

/// How often a stream re-checks that its caller may still listen.
const RECHECK: Duration = Duration::from_secs(30);

struct Watch {
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Event>>,
    db: sea_orm::DatabaseConnection,
    user_id: i64,
    via: Via,
    admin: bool,
    checked: Instant,
}

pub struct EventsApi;

#[OpenApi(tag = "Tag::Events")]
impl EventsApi {
    /// Live events (Server-Sent Events)
    ///
    /// Event names: `job_progress`, `job_status`, `task_status`, `job_verify` (a
    /// verification started or ended: `verify_status`; the report is in the job), and
    /// `lagged` when this stream fell behind (reload what you show). A comment line every 15 s keeps the
    /// connection open.
    #[oai(path = "/events", method = "get", operation_id = "stream_events")]
    async fn events(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        /// Only events of this task.
        task_id: Query<Option<i64>>,
    ) -> Result<EventStream<BoxStream<'static, LiveEvent>>, ApiError> {
        if let Some(id) = task_id.0 {
            // 404 for a task the caller may not see, as everywhere.
            tasks::get(&state.db, &caller.actor, id).await?;
        }
        let only_task = task_id.0;
        let owner = if caller.actor.is_admin() {
            None
        } else {
            Some(caller.actor.id.ok_or_else(ApiError::forbidden)?)
        };
        let watch = Watch {
            rx: state.events.subscribe(),
            db: state.db.clone(),
            user_id: caller.user.id,
            via: caller.via,
            admin: caller.actor.is_admin(),
            checked: Instant::now(),
        };
        let stream = futures_util::stream::unfold(watch, move |mut w| async move {
            loop {
                let received = tokio::select! {
                    r = w.rx.recv() => r,
                    _ = tokio::time::sleep(RECHECK.saturating_sub(w.checked.elapsed())) => {
                        // A disabled user, a revoked token or a lost admin role ends the stream.
                        if !still_valid(&w.db, w.user_id, &w.via, w.admin).await {
                            return None;
                        }
                        w.checked = Instant::now();
                        continue;
                    }
                };
                match received {
                    Ok(event) => {
                        if owner.is_some_and(|o| o != event.owner_id)
                            || only_task.is_some_and(|t| t != event.task_id)
                        {
                            continue;
                        }
                        if let Some(e) =
                            LiveEvent::from_bus(event.task_id, event.job_id, &event.kind)
                        {
                            return Some((e, w));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => return Some((LiveEvent::lagged(missed), w)),
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok(EventStream::new(stream.boxed())
            .keep_alive(Duration::from_secs(15))
            .to_event(|e: LiveEvent| {
                let data = serde_json::to_string(&e.to_json()).unwrap_or_default();
                poem::web::sse::Event::message(data).event_type(e.event_name())
            }))
    }
}

/// Kinds of live events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum EventType {
    JobProgress,
    JobStatus,
    TaskStatus,
    JobVerify,
    /// This stream fell behind and `missed` events were dropped: reload what you show.
    Lagged,
}

/// A live event (the SSE event name is `type`).
#[derive(Clone, Debug, Object)]
pub struct LiveEvent {
    #[oai(rename = "type")]
    pub kind: EventType,
    pub task_id: Option<i64>,
    pub job_id: Option<i64>,
    pub status: Option<Status>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub progress: Option<JobProgress>,
    pub jobs: Option<JobCounts>,
    /// With `job_verify`.
    pub verify_status: Option<VerifyStatus>,
    pub missed: Option<u64>,
}

impl LiveEvent {
    fn blank(kind: EventType) -> Self {
        Self {
            kind,
            task_id: None,
            job_id: None,
            status: None,
            reason: None,
            exit_code: None,
            progress: None,
            jobs: None,
            verify_status: None,
            missed: None,
        }
    }

    pub fn lagged(missed: u64) -> Self {
        Self {
            missed: Some(missed),
            ..Self::blank(EventType::Lagged)
        }
    }

    /// The API form of a bus event; `None` for log lines (they have their own stream).
    pub fn from_bus(task_id: i64, job_id: Option<i64>, kind: &EventKind) -> Option<Self> {
        let base = |k| Self {
            task_id: Some(task_id),
            job_id,
            ..Self::blank(k)
        };
        Some(match kind {
            EventKind::JobProgress { progress } => Self {
                progress: Some(progress.into()),
                ..base(EventType::JobProgress)
            },
            EventKind::JobStatus {
                status,
                reason,
                exit_code,
            } => Self {
                status: Some(Status::stored(status)),
                reason: reason.clone(),
                exit_code: *exit_code,
                ..base(EventType::JobStatus)
            },
            EventKind::TaskStatus {
                status,
                queued,
                running,
                succeeded,
                warning,
                failed,
                cancelled,
            } => Self {
                status: Some(Status::stored(status)),
                jobs: Some(JobCounts {
                    total: queued + running + succeeded + warning + failed + cancelled,
                    queued: *queued,
                    running: *running,
                    succeeded: *succeeded,
                    warning: *warning,
                    failed: *failed,
                    cancelled: *cancelled,
                }),
                ..base(EventType::TaskStatus)
            },
            EventKind::JobVerify { verify_status } => Self {
                verify_status: Stored::parse(verify_status).map(Into::into),
                ..base(EventType::JobVerify)
            },
            EventKind::LogLine { .. } => return None,
        })
    }

    pub fn event_name(&self) -> &'static str {
        match self.kind {
            EventType::JobProgress => "job_progress",
            EventType::JobStatus => "job_status",
            EventType::TaskStatus => "task_status",
            EventType::JobVerify => "job_verify",
            EventType::Lagged => "lagged",
        }
    }
}
