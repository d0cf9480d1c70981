//! `/jobs/{id}`: get, cancel, retry, and the log (text with tail or byte range, download,
//! live stream).

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream::BoxStream};
use poem::{Body, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::{Attachment, AttachmentType, EventStream, Json, PlainText},
};

use super::{
    Tag,
    auth::{Caller, Via, still_valid},
    body::JsonBody,
    error::ApiError,
    model::{Job, RetryJob, Status},
};
use crate::{
    service::{
        Actor,
        batch::Secret,
        job_state::{self, RetryCredentials},
        logs::{self, LogRange},
        tasks,
    },
    state::AppState,
    worker::status::JobStatus,
};

#[derive(ApiResponse)]
pub enum LogText {
    /// Part of the log. Headers say which bytes of how many.
    #[oai(status = 200)]
    Text(
        PlainText<String>,
        /// First byte of this part.
        #[oai(header = "x-log-offset")]
        u64,
        /// Byte after the last one of this part (the next `offset` when following).
        #[oai(header = "x-log-end")]
        u64,
        /// Size of the whole log now.
        #[oai(header = "x-log-size")]
        u64,
    ),
}

#[derive(ApiResponse)]
pub enum VerifyStarted {
    /// The comparison runs in the background.
    #[oai(status = 202)]
    Accepted(Json<Job>),
}

/// An event of a log stream: `lines` (complete lines from `offset` to `end`), then
/// `end` once the job is finished and everything was sent.
#[derive(Clone, Debug, Object)]
pub struct LogEvent {
    #[oai(rename = "type")]
    pub kind: String,
    pub offset: u64,
    pub end: u64,
    pub text: String,
    /// With `end`: how the job ended.
    pub status: Option<Status>,
}

/// Lines shown first when a stream starts.
const STREAM_TAIL_LINES: usize = 200;
const STREAM_POLL: Duration = Duration::from_millis(300);
const STATUS_POLL: Duration = Duration::from_secs(2);
/// A stream ends on its own after this long (clients reconnect from the last offset).
const STREAM_MAX: Duration = Duration::from_secs(3600);

pub struct JobsApi;

#[OpenApi(tag = "Tag::Jobs")]
impl JobsApi {
    /// Get a job
    #[oai(path = "/jobs/:job_id", method = "get", operation_id = "get_job")]
    async fn get(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        job_id: Path<i64>,
    ) -> Result<Json<Job>, ApiError> {
        let (_, job) = tasks::get_job(&state.db, &caller.actor, job_id.0).await?;
        Ok(Json(job.into()))
    }

    /// Cancel a job
    #[oai(
        path = "/jobs/:job_id/cancel",
        method = "post",
        operation_id = "cancel_job"
    )]
    async fn cancel(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        job_id: Path<i64>,
    ) -> Result<Json<Job>, ApiError> {
        let job = job_state::cancel_job(&state.db, &state.events, &caller.actor, job_id.0).await?;
        Ok(Json(job.into()))
    }

    /// Retry a finished job
    ///
    /// The run resumes (what is already on the destination is skipped). Give the
    /// passwords only when the stored ones were wiped (`credentials_stored: false`).
    #[oai(
        path = "/jobs/:job_id/retry",
        method = "post",
        operation_id = "retry_job"
    )]
    async fn retry(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        job_id: Path<i64>,
        body: JsonBody<Option<RetryJob>>,
    ) -> Result<Json<Job>, ApiError> {
        let creds = match body.0 {
            None => None,
            Some(RetryJob {
                password1: None,
                password2: None,
            }) => None,
            Some(RetryJob {
                password1: Some(p1),
                password2,
            }) => Some(RetryCredentials {
                password2: Secret::new(password2.unwrap_or_else(|| p1.clone())),
                password1: Secret::new(p1),
            }),
            Some(RetryJob {
                password1: None, ..
            }) => {
                return Err(ApiError::invalid("password1", "is required with password2"));
            }
        };
        let job = job_state::retry_job(
            &state.db,
            &state.keys.credentials,
            &state.events,
            &caller.actor,
            job_id.0,
            creds,
        )
        .await?;
        state.pool.wake();
        Ok(Json(job.into()))
    }

    /// Verify a finished job
    ///
    /// Compares the job's two mailboxes (read-only; any engine): folders, subscriptions,
    /// per folder the message multisets, flags and keywords, internal dates and sizes.
    /// Answers at once with the job, `verification.status: running`; the report is stored
    /// with the job when the comparison ends (a `job_verify` event on `/events`, or poll
    /// `GET /jobs/{id}`). Needs the stored passwords: once they were wiped, retry the job
    /// with new passwords first (409 says so). 409 too while the job is queued or running,
    /// or already being verified.
    #[oai(
        path = "/jobs/:job_id/verify",
        method = "post",
        operation_id = "verify_job"
    )]
    async fn verify(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        job_id: Path<i64>,
    ) -> Result<VerifyStarted, ApiError> {
        let job = state.verifier.start(&caller.actor, job_id.0).await?;
        Ok(VerifyStarted::Accepted(Json(job.into())))
    }

    /// A job's log as text
    ///
    /// The last `tail` lines (default 100), or `limit` bytes from `offset` (at most
    /// 4 MiB). An empty text when the job has not written anything yet.
    #[oai(path = "/jobs/:job_id/log", method = "get", operation_id = "job_log")]
    async fn log(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        job_id: Path<i64>,
        /// Number of lines from the end (at most 10000).
        tail: Query<Option<u32>>,
        /// First byte to return (instead of `tail`).
        offset: Query<Option<u64>>,
        /// Bytes to return from `offset` (default and maximum 4 MiB).
        limit: Query<Option<u64>>,
    ) -> Result<LogText, ApiError> {
        let range = match (tail.0, offset.0) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid("tail", "give tail or offset, not both"));
            }
            (_, Some(offset)) => LogRange::Bytes {
                offset,
                limit: limit.0.unwrap_or(logs::MAX_CHUNK_BYTES),
            },
            (tail, None) => LogRange::Tail(tail.unwrap_or(100) as usize),
        };
        let log =
            logs::job_log(&state.db, &caller.actor, &state.config.log_dir(), job_id.0).await?;
        let chunk = match &log.path {
            Some(path) => logs::read(path, range).await?,
            None => logs::LogChunk {
                text: String::new(),
                offset: 0,
                end: 0,
                size: 0,
            },
        };
        Ok(LogText::Text(
            PlainText(chunk.text),
            chunk.offset,
            chunk.end,
            chunk.size,
        ))
    }

    /// Download a job's whole log
    #[oai(
        path = "/jobs/:job_id/log/download",
        method = "get",
        operation_id = "download_job_log"
    )]
    async fn download(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        job_id: Path<i64>,
    ) -> Result<Attachment<Body>, ApiError> {
        let log =
            logs::job_log(&state.db, &caller.actor, &state.config.log_dir(), job_id.0).await?;
        let body = match &log.path {
            Some(path) => match tokio::fs::File::open(path).await {
                Ok(file) => Body::from_async_read(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Body::empty(),
                Err(e) => return Err(ApiError::internal(format!("opening a job log: {e}"))),
            },
            None => Body::empty(),
        };
        Ok(Attachment::new(body)
            .attachment_type(AttachmentType::Attachment)
            .filename(format!("pymap-task-{}-job-{}.log", log.task.id, log.job.id)))
    }

    /// Follow a job's log (Server-Sent Events)
    ///
    /// Starts with the last 200 lines (or from `offset`), then sends new complete lines
    /// as they are written, and an `end` event once the job is finished.
    #[oai(
        path = "/jobs/:job_id/log/stream",
        method = "get",
        operation_id = "stream_job_log"
    )]
    async fn stream(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        job_id: Path<i64>,
        /// Continue from this byte (e.g. the last `end` seen before a reconnect).
        offset: Query<Option<u64>>,
    ) -> Result<EventStream<BoxStream<'static, LogEvent>>, ApiError> {
        let log =
            logs::job_log(&state.db, &caller.actor, &state.config.log_dir(), job_id.0).await?;
        let start = match (&log.path, offset.0) {
            (_, Some(offset)) => offset,
            (Some(path), None) => {
                logs::read(path, LogRange::Tail(STREAM_TAIL_LINES))
                    .await?
                    .offset
            }
            (None, None) => 0,
        };
        let follower = Follower {
            state: state.clone(),
            user_id: caller.user.id,
            via: caller.via,
            actor: caller.actor,
            job_id: job_id.0,
            path: log.path,
            pos: start,
            started: Instant::now(),
            last_status: Instant::now() - STATUS_POLL,
            done: false,
        };
        let stream = futures_util::stream::unfold(follower, |mut f| async move {
            let event = f.next().await?;
            Some((event, f))
        });
        Ok(EventStream::new(stream.boxed())
            .keep_alive(Duration::from_secs(15))
            .to_event(|e: LogEvent| {
                let name = e.kind.clone();
                let data = serde_json::to_string(&poem_openapi::types::ToJSON::to_json(&e))
                    .unwrap_or_default();
                poem::web::sse::Event::message(data).event_type(name)
            }))
    }
}

/// State of one log stream.
struct Follower {
    state: AppState,
    user_id: i64,
    via: Via,
    actor: Actor,
    job_id: i64,
    path: Option<std::path::PathBuf>,
    pos: u64,
    started: Instant,
    last_status: Instant,
    done: bool,
}

impl Follower {
    /// The next event, waiting for one; `None` ends the stream.
    async fn next(&mut self) -> Option<LogEvent> {
        if self.done {
            return None;
        }
        loop {
            if self.started.elapsed() > STREAM_MAX {
                return None;
            }
            // The path appears once the job first runs.
            if self.path.is_none() {
                self.path = tasks::get_job(&self.state.db, &self.actor, self.job_id)
                    .await
                    .ok()
                    .and_then(|(_, j)| j.log_path.map(Into::into));
            }
            if let Some(path) = &self.path {
                let range = LogRange::Lines {
                    offset: self.pos,
                    limit: 256 * 1024,
                };
                match logs::read(path, range).await {
                    Ok(chunk) if !chunk.text.is_empty() => {
                        let event = LogEvent {
                            kind: "lines".into(),
                            offset: chunk.offset,
                            end: chunk.end,
                            text: chunk.text,
                            status: None,
                        };
                        self.pos = chunk.end;
                        return Some(event);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(job_id = self.job_id, error = %e, "log stream read failed");
                        return None;
                    }
                }
            }
            if self.last_status.elapsed() >= STATUS_POLL {
                self.last_status = Instant::now();
                // The actor was captured when the stream opened: a disabled user, a
                // revoked token or a lost admin role must end it, as on `/events`.
                let admin = self.actor.is_admin();
                if !still_valid(&self.state.db, self.user_id, &self.via, admin).await {
                    return None;
                }
                match tasks::get_job(&self.state.db, &self.actor, self.job_id).await {
                    Ok((_, job)) => {
                        let status = job.status.parse::<JobStatus>().ok();
                        if status.is_some_and(|s| s.is_final()) {
                            // The last bytes, a partial last line included.
                            if let Some(path) = &self.path
                                && let Ok(chunk) = logs::read(
                                    path,
                                    LogRange::Bytes {
                                        offset: self.pos,
                                        limit: logs::MAX_CHUNK_BYTES,
                                    },
                                )
                                .await
                                && !chunk.text.is_empty()
                            {
                                self.pos = chunk.end;
                                return Some(LogEvent {
                                    kind: "lines".into(),
                                    offset: chunk.offset,
                                    end: chunk.end,
                                    text: chunk.text,
                                    status: None,
                                });
                            }
                            self.done = true;
                            return Some(LogEvent {
                                kind: "end".into(),
                                offset: self.pos,
                                end: self.pos,
                                text: String::new(),
                                status: status.map(Status::from),
                            });
                        }
                    }
                    // Deleted, or the caller lost access: stop.
                    Err(_) => return None,
                }
            }
            tokio::time::sleep(STREAM_POLL).await;
        }
    }
}
