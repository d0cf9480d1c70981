//! The dashboard: counts over the user's tasks (everyone's for admins), the worker pool,
//! and the latest tasks.

use poem::{handler, web::Html};
use serde_json::json;

use super::{Error, fmt, page::Web, views::task_summary};
use crate::service::query::{self, PoolUsage, TaskQuery};

const RECENT: u64 = 8;

#[handler]
pub async fn dashboard(web: Web<'_>) -> poem::Result<Html<String>> {
    let state = web.state;
    let pool = PoolUsage {
        concurrency: state.config.workers.concurrency,
        running_here: state.pool.running_jobs(),
    };
    let d = query::dashboard(&state.db, web.actor(), pool)
        .await
        .map_err(Error::from)?;
    let recent = query::list_tasks(
        &state.db,
        web.actor(),
        &TaskQuery {
            limit: RECENT,
            ..Default::default()
        },
    )
    .await
    .map_err(Error::from)?;
    let tasks: Vec<_> = recent.items.iter().map(|r| task_summary(&r.task)).collect();
    let n = |v: u64| fmt::count(v as i64);
    Ok(web.render(
        "dashboard.html",
        json!({
            "scope": if web.actor().is_admin() { "all users" } else { "your tasks" },
            "tiles": [
                { "n": n(d.tasks), "l": "tasks", "href": "/tasks?archived=all" },
                { "n": n(d.mailboxes), "l": "mailboxes" },
                { "n": n(d.running), "l": "running", "href": "/tasks?status=running" },
                { "n": n(d.queued), "l": "queued", "href": "/tasks?status=queued" },
                { "n": n(d.succeeded_24h), "l": "succeeded (24 h)", "cls": "st-succeeded" },
                { "n": n(d.warning_24h), "l": "warning (24 h)", "cls": "st-warning" },
                { "n": n(d.failed_24h), "l": "failed (24 h)", "cls": "st-failed" },
                { "n": n(d.messages_moved), "l": "messages moved" },
                { "n": fmt::bytes(d.bytes_moved as i64), "l": "data moved" },
                { "n": fmt::duration(d.run_time_secs as i64), "l": "total run time" },
                { "n": n(d.active_users), "l": "active users" },
                { "n": format!("{} / {}", d.pool.running_here, d.pool.concurrency), "l": "worker slots in use" },
            ],
            "pool_pct": fmt::percent(d.pool.running_here as i64, Some(d.pool.concurrency as i64)).unwrap_or(0),
            "tasks": tasks,
        }),
    )?)
}
