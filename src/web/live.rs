//! Server-sent events for live pages.
//!
//! Task pages get rendered HTML (`{id, html}` pairs) for the rows that changed, so the
//! browser swaps them in and formatting lives only in the templates. Events are used
//! as "something changed" signals: the state itself is re-read through the service
//! layer, so what is shown is what the database says, with the same permission checks.
//!
//! Log pages tail the file from a byte offset (the event id, so a reconnecting browser
//! resumes where it stopped); log-line events only wake the reader early.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::stream;
use poem::{
    Request, handler,
    web::{
        Path, Query,
        sse::{Event as SseEvent, SSE},
    },
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Error, page::Web, task::summary_context, templates, views::job_row};
use crate::{
    service::{
        Actor,
        logs::{self, LogRange},
        tasks,
    },
    state::AppState,
    worker::events::{Event, EventKind},
};

/// Changes arriving within this window are sent together.
const COALESCE: Duration = Duration::from_millis(300);
/// Rows finished this recently are re-sent on (re)connect, covering the gap between
/// the page render and the event stream.
const RECENT: chrono::Duration = chrono::Duration::seconds(120);
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Largest piece of log sent in one event.
const LOG_CHUNK: u64 = 64 * 1024;

struct TaskFeed {
    state: AppState,
    actor: Actor,
    csrf: String,
    task_id: i64,
    rx: broadcast::Receiver<Arc<Event>>,
    first: bool,
}

enum Change {
    /// These jobs (and maybe the summary) changed.
    Some(BTreeSet<i64>, bool),
    /// We fell behind the event bus: the page should reload.
    Stale,
    Closed,
}

impl TaskFeed {
    async fn next_change(&mut self) -> Change {
        let mut jobs = BTreeSet::new();
        let mut summary = false;
        let mut deadline: Option<Instant> = None;
        loop {
            let received = match deadline {
                None => self.rx.recv().await,
                Some(d) => {
                    match tokio::time::timeout(
                        d.saturating_duration_since(Instant::now()),
                        self.rx.recv(),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => return Change::Some(jobs, summary),
                    }
                }
            };
            match received {
                Ok(event) if event.task_id == self.task_id => {
                    match event.kind {
                        EventKind::LogLine { .. } => continue,
                        EventKind::TaskStatus { .. } => summary = true,
                        EventKind::JobStatus { .. } => summary = true,
                        EventKind::JobProgress { .. } | EventKind::JobVerify { .. } => {}
                    }
                    jobs.extend(event.job_id);
                    deadline.get_or_insert_with(|| Instant::now() + COALESCE);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return Change::Stale,
                Err(RecvError::Closed) => return Change::Closed,
            }
        }
    }

    /// Rendered replacements for the summary and the given jobs.
    async fn render(
        &self,
        jobs: &BTreeSet<i64>,
        summary: bool,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let db = &self.state.db;
        let env = &self.state.templates;
        let task = tasks::get(db, &self.actor, self.task_id).await?;
        let mut out = Vec::new();
        if summary {
            let ctx = summary_context(&task, &self.actor, &self.csrf);
            out.push(json!({ "id": "summary", "html": templates::render(env, "_task_summary.html", ctx)? }));
        }
        for &id in jobs {
            let (_, job) = tasks::get_job(db, &self.actor, id).await?;
            let html =
                templates::render(env, "_job_row.html", json!({ "j": job_row(&task, &job) }))?;
            out.push(json!({ "id": format!("job-{id}"), "html": html }));
        }
        Ok(out)
    }

    /// On connect: the summary and every row that is running or ended recently.
    async fn catch_up(&self) -> Result<Vec<serde_json::Value>, Error> {
        let since = chrono::Utc::now() - RECENT;
        let jobs = tasks::jobs(&self.state.db, &self.actor, self.task_id).await?;
        let ids = jobs
            .iter()
            .filter(|j| j.status == "running" || j.finished_at.is_some_and(|t| t > since))
            .map(|j| j.id)
            .collect();
        self.render(&ids, true).await
    }

    async fn next_event(mut self) -> Option<(SseEvent, Self)> {
        loop {
            let rendered = if std::mem::take(&mut self.first) {
                self.catch_up().await
            } else {
                match self.next_change().await {
                    Change::Some(jobs, summary) => self.render(&jobs, summary).await,
                    Change::Stale => {
                        return Some((SseEvent::message("{}").event_type("stale"), self));
                    }
                    Change::Closed => return None,
                }
            };
            match rendered {
                Ok(parts) if parts.is_empty() => continue,
                Ok(parts) => {
                    let data = serde_json::to_string(&parts).expect("json");
                    return Some((SseEvent::message(data).event_type("swap"), self));
                }
                // The task was deleted (or the user lost access): end the stream.
                Err(Error::NotFound) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "live task update failed");
                    return None;
                }
            }
        }
    }
}

/// `GET /tasks/:id/events`
#[handler]
pub async fn task_events(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<SSE> {
    // Subscribe before the catch-up read, so a change in between is not lost.
    let rx = web.state.events.subscribe();
    tasks::get(&web.state.db, web.actor(), id)
        .await
        .map_err(Error::from)?;
    let feed = TaskFeed {
        state: web.state.clone(),
        actor: web.actor().clone(),
        csrf: super::csrf::token(web.session, web.state),
        task_id: id,
        rx,
        first: true,
    };
    let events = stream::unfold(feed, TaskFeed::next_event);
    Ok(SSE::new(events).keep_alive(KEEP_ALIVE))
}

struct LogFeed {
    state: AppState,
    actor: Actor,
    job_id: i64,
    path: Option<PathBuf>,
    offset: u64,
    rx: broadcast::Receiver<Arc<Event>>,
}

impl LogFeed {
    /// Wait until this job logs a line, or a second passes (the job may run on another
    /// replica, whose lines do not reach our bus).
    async fn wait(&mut self) -> bool {
        let deadline = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return true,
                r = self.rx.recv() => match r {
                    Ok(e) if e.job_id == Some(self.job_id) && matches!(e.kind, EventKind::LogLine { .. }) => {
                        // Let a burst of lines land in the file, then read them at once.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        return true;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return false,
                },
            }
        }
    }

    async fn next_event(mut self) -> Option<(SseEvent, Self)> {
        loop {
            if self.path.is_none() {
                // No run has started yet: look again until one does.
                let log_dir = self.state.config.log_dir();
                let log = logs::job_log(&self.state.db, &self.actor, &log_dir, self.job_id)
                    .await
                    .ok()?;
                self.path = log.path;
            }
            if let Some(path) = &self.path {
                let range = LogRange::Bytes {
                    offset: self.offset,
                    limit: LOG_CHUNK,
                };
                match logs::read(path, range).await {
                    // Shorter than where we were: the file was replaced, start over.
                    Ok(chunk) if chunk.size < self.offset => self.offset = 0,
                    Ok(chunk) => {
                        let forced = chunk.end - chunk.offset == LOG_CHUNK;
                        let (text, end) = super::logs::whole_lines(&chunk, forced);
                        if !text.is_empty() {
                            self.offset = end;
                            let data = json!({ "text": text }).to_string();
                            let event = SseEvent::message(data)
                                .event_type("lines")
                                .id(end.to_string());
                            return Some((event, self));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(job_id = self.job_id, error = %e, "live log read failed");
                        return None;
                    }
                }
            }
            if !self.wait().await {
                return None;
            }
        }
    }
}

#[derive(Deserialize)]
pub struct OffsetQuery {
    offset: Option<u64>,
}

/// `GET /jobs/:id/log/stream?offset=N`: lines after byte N, then live.
#[handler]
pub async fn log_stream(
    web: Web<'_>,
    req: &Request,
    Path(id): Path<i64>,
    Query(q): Query<OffsetQuery>,
) -> poem::Result<SSE> {
    let rx = web.state.events.subscribe();
    let log = logs::job_log(&web.state.db, web.actor(), &web.state.config.log_dir(), id)
        .await
        .map_err(Error::from)?;
    // A reconnecting EventSource says where it stopped; that wins over the page's offset.
    let resumed = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let feed = LogFeed {
        state: web.state.clone(),
        actor: web.actor().clone(),
        job_id: id,
        path: log.path,
        offset: resumed.or(q.offset).unwrap_or(0),
        rx,
    };
    Ok(SSE::new(stream::unfold(feed, LogFeed::next_event)).keep_alive(KEEP_ALIVE))
}
