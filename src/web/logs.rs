//! A job's log: the page (tail, or search results), and the whole file as a download.
//! Reached by job id only; the live tail is in `live.rs`.

use poem::{
    Body, IntoResponse, Response, handler,
    web::{Html, Path, Query},
};
use serde::Deserialize;
use serde_json::json;

use super::{Error, page::Web};
use crate::service::{
    logs::{self, LogChunk, LogRange},
    web_support,
};

/// Lines of the end of a log the page shows at first.
const TAIL_LINES: usize = 2000;
const MAX_MATCHES: usize = 2000;

/// Only whole lines: a line still being written is sent by the live tail once complete.
/// Returns the text and the offset just after it.
pub fn whole_lines(chunk: &LogChunk, forced: bool) -> (&str, u64) {
    match chunk.text.rfind('\n') {
        Some(i) => (&chunk.text[..=i], chunk.offset + i as u64 + 1),
        // One line longer than a whole chunk: better in pieces than never.
        None if forced => (&chunk.text, chunk.end),
        None => ("", chunk.offset),
    }
}

#[derive(Deserialize)]
pub struct LogQuery {
    q: Option<String>,
}

#[handler]
pub async fn page(
    web: Web<'_>,
    Path(id): Path<i64>,
    Query(query): Query<LogQuery>,
) -> poem::Result<Html<String>> {
    let log = logs::job_log(&web.state.db, web.actor(), &web.state.config.log_dir(), id)
        .await
        .map_err(Error::from)?;
    let q = query.q.unwrap_or_default().trim().to_string();
    let mut ctx = json!({
        "job": {
            "id": log.job.id,
            "user1": log.job.user1,
            "user2": log.job.user2,
            "status": log.job.status,
            "live": log.job.status == "running" || log.job.status == "queued",
        },
        "task": { "id": log.task.id, "label": log.task.label },
        "has_log": log.path.is_some(),
        "q": q,
    });
    if let Some(path) = &log.path {
        if q.is_empty() {
            let tail = logs::read(path, LogRange::Tail(TAIL_LINES))
                .await
                .map_err(Error::from)?;
            let (text, end) = whole_lines(&tail, false);
            ctx["text"] = json!(text);
            ctx["offset"] = json!(end);
            ctx["truncated"] = json!(tail.offset > 0);
        } else {
            let (hits, total) = web_support::log_search(path, &q, MAX_MATCHES)
                .await
                .map_err(Error::from)?;
            let hits: Vec<_> = hits
                .into_iter()
                .map(|(n, line)| json!({ "n": n, "line": line }))
                .collect();
            ctx["matches"] = json!(hits);
            ctx["total"] = json!(total);
        }
    }
    Ok(web.render("log.html", ctx)?)
}

#[handler]
pub async fn download(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let log = logs::job_log(&web.state.db, web.actor(), &web.state.config.log_dir(), id)
        .await
        .map_err(Error::from)?;
    let path = log.path.ok_or(Error::NotFound)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound.into()),
        Err(e) => return Err(Error::Internal(format!("job log {id}: {e}")).into()),
    };
    Ok(Body::from_async_read(file)
        .with_content_type("text/plain; charset=utf-8")
        .with_header(
            "content-disposition",
            format!("attachment; filename=\"task-{}-job-{id}.log\"", log.task.id),
        )
        .into_response())
}
