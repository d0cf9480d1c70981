//! The task list: search, filters, sort, pages (all server side, through
//! `query::list_tasks`), and bulk actions on the selected tasks.

use poem::{
    Response, handler,
    web::{Form, Html, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Error, fmt,
    page::{Web, query_string, see_other},
};
use crate::{
    service::{
        ServiceError, job_state,
        query::{self, ArchivedFilter, SortDir, TaskQuery, TaskSort},
        task_actions,
    },
    worker::status::JobStatus,
};

const PER_PAGE: u64 = 50;

/// The list's query string, kept as typed so links and the filter form can repeat it.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ListParams {
    q: String,
    status: String,
    owner: String,
    /// `""` (not archived), `only`, `all`.
    archived: String,
    /// Admins: `mine` shows only their own tasks.
    scope: String,
    sort: String,
    dir: String,
    page: Option<u64>,
}

impl ListParams {
    fn pairs(&self, page: Option<u64>, sort: Option<(&str, &str)>) -> String {
        let (s, d) = sort.unwrap_or((&self.sort, &self.dir));
        query_string([
            ("q", self.q.clone()),
            ("status", self.status.clone()),
            ("owner", self.owner.clone()),
            ("archived", self.archived.clone()),
            ("scope", self.scope.clone()),
            ("sort", s.to_string()),
            ("dir", d.to_string()),
            (
                "page",
                page.filter(|&p| p > 1)
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ),
        ])
    }
}

#[derive(Serialize)]
struct Row {
    id: i64,
    label: String,
    owner: String,
    source: String,
    destination: String,
    status: String,
    archived: bool,
    total: i32,
    done: i32,
    done_pct: i64,
    failed: i32,
    created: String,
    run_time: String,
}

#[handler]
pub async fn list(web: Web<'_>, Query(p): Query<ListParams>) -> poem::Result<Html<String>> {
    let is_admin = web.actor().is_admin();
    let mut errors = Vec::new();
    let statuses = match p.status.as_str() {
        "" => vec![],
        s => match s.parse::<JobStatus>() {
            Ok(st) => vec![st],
            Err(_) => {
                errors.push(format!("unknown status {s:?}"));
                vec![]
            }
        },
    };
    let owner = if is_admin && p.scope == "mine" {
        Some(web.user.user.name.clone())
    } else if is_admin {
        Some(p.owner.clone()).filter(|o| !o.trim().is_empty())
    } else {
        None
    };
    let sort = TaskSort::parse(&p.sort).unwrap_or_default();
    let dir = SortDir::parse(&p.dir).unwrap_or_default();
    let q = TaskQuery {
        statuses,
        owner,
        archived: match p.archived.as_str() {
            "only" => ArchivedFilter::Only,
            "all" => ArchivedFilter::Include,
            _ => ArchivedFilter::Exclude,
        },
        search: Some(p.q.clone()).filter(|s| !s.trim().is_empty()),
        sort,
        dir,
        limit: PER_PAGE,
        cursor: None,
        page: p.page,
        with_total: true,
    };
    let page = match query::list_tasks(&web.state.db, web.actor(), &q).await {
        Ok(page) => Some(page),
        Err(ServiceError::Invalid { field, message }) => {
            errors.push(format!("{field}: {message}"));
            None
        }
        Err(e) => return Err(Error::from(e).into()),
    };
    let current = p.page.unwrap_or(1).max(1);
    let (rows, total, has_next) = match &page {
        Some(page) => (
            page.items
                .iter()
                .map(|r| {
                    let t = &r.task;
                    let done = t.jobs_succeeded + t.jobs_warning + t.jobs_failed + t.jobs_cancelled;
                    Row {
                        id: t.id,
                        label: t.label.clone(),
                        owner: r.owner_name.clone().unwrap_or_default(),
                        source: t.source.clone(),
                        destination: t.destination.clone(),
                        status: t.status.clone(),
                        archived: t.archived,
                        total: t.jobs_total,
                        done,
                        done_pct: fmt::percent(done as i64, Some(t.jobs_total as i64)).unwrap_or(0),
                        failed: t.jobs_failed,
                        created: fmt::time(&t.created_at),
                        run_time: fmt::duration(t.run_time_secs),
                    }
                })
                .collect::<Vec<_>>(),
            page.total.unwrap_or(0),
            page.next_cursor.is_some(),
        ),
        None => (Vec::new(), 0, false),
    };
    let first = (current - 1) * PER_PAGE + 1;
    let label = if rows.is_empty() {
        String::new()
    } else {
        format!(
            "{}–{} of {}",
            first,
            first + rows.len() as u64 - 1,
            fmt::count(total as i64)
        )
    };
    // Column headers link to their sort; the current one flips direction.
    let sort_link = |key: &str| {
        let dir = if sort.as_str() == key && dir == SortDir::Desc {
            "asc"
        } else {
            "desc"
        };
        p.pairs(None, Some((key, dir)))
    };
    let sorts: serde_json::Map<String, serde_json::Value> = TaskSort::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), json!(sort_link(k.as_str()))))
        .collect();
    Ok(web.render(
        "tasks.html",
        json!({
            "rows": rows,
            "params": p,
            "errors": errors,
            "statuses": JobStatus::ALL.iter().filter(|s| **s != JobStatus::Interrupted).map(|s| s.as_str()).collect::<Vec<_>>(),
            "sort": sort.as_str(),
            "dir": dir.as_str(),
            "sorts": sorts,
            "back": format!("/tasks?{}", p.pairs(p.page, None)),
            "page": {
                "label": label,
                "prev": (current > 1).then(|| format!("/tasks?{}", p.pairs(Some(current - 1), None))),
                "next": has_next.then(|| format!("/tasks?{}", p.pairs(Some(current + 1), None))),
            },
        }),
    )?)
}

/// `POST /tasks/bulk`: `action` applied to every `ids`; one summary message.
#[handler]
pub async fn bulk(
    web: Web<'_>,
    Form(fields): Form<Vec<(String, String)>>,
) -> poem::Result<Response> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let action = get("action").unwrap_or_default().to_string();
    let back = super::page::local_path(get("back"), "/tasks");
    let ids: Vec<i64> = fields
        .iter()
        .filter(|(n, _)| n == "ids")
        .filter_map(|(_, v)| v.parse().ok())
        .take(500)
        .collect();
    if ids.is_empty() {
        web.flash("error", "Select at least one task first.");
        return Ok(see_other(&back));
    }
    let (state, actor) = (web.state, web.actor());
    let (mut done, mut failed) = (Vec::new(), Vec::new());
    for &id in &ids {
        let r = match action.as_str() {
            "cancel" => job_state::cancel_task(&state.db, &state.events, actor, id)
                .await
                .map(|_| ()),
            "retry_failed" => job_state::retry_failed(
                &state.db,
                &state.keys.credentials,
                &state.events,
                actor,
                id,
            )
            .await
            .map(|_| ()),
            "archive" => task_actions::set_archived(&state.db, &state.events, actor, id, true)
                .await
                .map(|_| ()),
            "unarchive" => task_actions::set_archived(&state.db, &state.events, actor, id, false)
                .await
                .map(|_| ()),
            "delete" => task_actions::delete(&state.db, actor, id, &state.config.log_dir()).await,
            _ => return Err(Error::BadRequest("unknown action".into()).into()),
        };
        match r {
            Ok(()) => done.push(format!("#{id}")),
            Err(e @ (ServiceError::Db(_) | ServiceError::Internal(_))) => {
                return Err(Error::from(e).into());
            }
            // Not found, not allowed, still running…: reported per task, the rest goes on.
            Err(e) => failed.push(format!("#{id}: {e}")),
        }
    }
    if action == "retry_failed" {
        state.pool.wake();
    }
    let verb = action.replace('_', " ");
    if !done.is_empty() {
        web.flash("ok", format!("{verb}: done for {}.", done.join(", ")));
    }
    if !failed.is_empty() {
        web.flash(
            "error",
            format!("{verb}: not done for {}.", failed.join("; ")),
        );
    }
    Ok(see_other(&back))
}
