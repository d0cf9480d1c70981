//! One task: summary, one row per mailbox, and the actions on the task and its jobs.
//! Live updates come from `live.rs`; both render the same partial templates.

use entity::task;
use poem::{
    IntoResponse, Response, handler,
    web::{Html, Path},
};
use serde_json::{Value, json};

use super::{
    Error,
    page::Web,
    views::{job_row, task_summary},
};
use crate::service::{
    Actor, ServiceError, accounts, imapsync_options::MigrationOptions, job_state, task_actions,
    tasks,
};

/// The options that differ from the defaults, in words.
fn option_words(task: &task::Model) -> Vec<String> {
    let Ok(o) = serde_json::from_str::<MigrationOptions>(&task.options) else {
        return vec!["(options unreadable)".into()];
    };
    let mut out = Vec::new();
    let mut flag = |on: bool, word: &str| {
        if on {
            out.push(word.to_string());
        }
    };
    flag(o.dry_run, "dry run");
    flag(o.just_login, "credential check only");
    flag(o.just_folders, "folders only");
    flag(o.sync_duplicates, "copy duplicates");
    flag(!o.add_header, "no header for messages without Message-Id");
    flag(o.delete_on_destination, "delete on destination");
    flag(
        o.accept_invalid_certs1,
        "self-signed certificate accepted on the source",
    );
    flag(
        o.accept_invalid_certs2,
        "self-signed certificate accepted on the destination",
    );
    for (name, list) in [("only", &o.include_folders), ("skip", &o.exclude_folders)] {
        if !list.is_empty() {
            out.push(format!("{name} folders {}", list.join(", ")));
        }
    }
    if let Some(d) = o.max_age_days {
        out.push(format!("newer than {d} days"));
    }
    if let Some(d) = o.min_age_days {
        out.push(format!("older than {d} days"));
    }
    if let Some(b) = o.max_size_bytes {
        out.push(format!("messages up to {}", super::fmt::bytes(b as i64)));
    }
    if let Some(t) = o.timeout_secs {
        out.push(format!("timeout {t} s"));
    }
    if !o.extra_args.is_empty() {
        out.push(format!("extra: {}", o.extra_args.join(" ")));
    }
    out
}

/// The summary partial's context (also sent over SSE).
pub fn summary_context(task: &task::Model, actor: &Actor, csrf: &str) -> Value {
    json!({
        "task": task_summary(task),
        "is_admin": actor.is_admin(),
        "csrf_token": csrf,
    })
}

#[handler]
pub async fn detail(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Html<String>> {
    let db = &web.state.db;
    let task = tasks::get(db, web.actor(), id).await.map_err(Error::from)?;
    let jobs = tasks::jobs(db, web.actor(), id)
        .await
        .map_err(Error::from)?;
    let owner = if Some(task.owner_id) == web.actor().id {
        web.user.user.name.clone()
    } else {
        accounts::find_by_id(db, task.owner_id)
            .await
            .map_err(Error::from)?
            .map_or_else(|| format!("user #{}", task.owner_id), |u| u.name)
    };
    let rows: Vec<_> = jobs.iter().map(|j| job_row(&task, j)).collect();
    let csrf = super::csrf::token(web.session, web.state);
    let mut ctx = summary_context(&task, web.actor(), &csrf);
    ctx["jobs"] = json!(rows);
    ctx["owner"] = json!(owner);
    ctx["options"] = json!(option_words(&task));
    Ok(web.render("task.html", ctx)?)
}

fn back(task_id: i64) -> String {
    format!("/tasks/{task_id}")
}

/// A failed action becomes a flash message on the page it came from: the user sees why
/// (already finished, passwords wiped…) without leaving the task.
fn outcome<T>(
    web: &Web<'_>,
    to: &str,
    result: Result<T, ServiceError>,
    ok: impl FnOnce(T) -> String,
) -> poem::Result<Response> {
    match result {
        Ok(v) => Ok(web.done(to, ok(v))),
        Err(
            e @ (ServiceError::Conflict(_)
            | ServiceError::Invalid { .. }
            | ServiceError::InvalidMany(_)),
        ) => {
            web.flash("error", e.to_string());
            Ok(super::page::see_other(to))
        }
        Err(e) => Err(Error::from(e).into()),
    }
}

#[handler]
pub async fn cancel(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let r = job_state::cancel_task(&web.state.db, &web.state.events, web.actor(), id).await;
    outcome(&web, &back(id), r, |_| {
        format!("Task #{id} is being cancelled.")
    })
}

#[handler]
pub async fn retry_failed(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let state = web.state;
    let r = job_state::retry_failed(
        &state.db,
        &state.keys.credentials,
        &state.events,
        web.actor(),
        id,
    )
    .await;
    state.pool.wake();
    outcome(&web, &back(id), r, |n| match n {
        0 => "No failed mailbox to retry.".to_string(),
        1 => "1 failed mailbox queued again.".to_string(),
        n => format!("{n} failed mailboxes queued again."),
    })
}

#[handler]
pub async fn archive(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let r =
        task_actions::set_archived(&web.state.db, &web.state.events, web.actor(), id, true).await;
    outcome(&web, &back(id), r, |_| format!("Task #{id} archived."))
}

#[handler]
pub async fn unarchive(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let r =
        task_actions::set_archived(&web.state.db, &web.state.events, web.actor(), id, false).await;
    outcome(&web, &back(id), r, |_| {
        format!("Task #{id} restored from the archive.")
    })
}

#[handler]
pub async fn delete(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let state = web.state;
    let r = task_actions::delete(&state.db, web.actor(), id, &state.config.log_dir()).await;
    match r {
        Ok(()) => Ok(web.done("/tasks", format!("Task #{id} deleted."))),
        Err(e) => outcome(&web, &back(id), Err::<(), _>(e), |_| String::new()),
    }
}

#[handler]
pub async fn cancel_job(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let db = &web.state.db;
    let (task, _) = tasks::get_job(db, web.actor(), id)
        .await
        .map_err(Error::from)?;
    let r = job_state::cancel_job(db, &web.state.events, web.actor(), id).await;
    let to = format!("{}#job-{id}", back(task.id));
    outcome(&web, &to, r, |j| {
        format!("Mailbox {} is being cancelled.", j.user1)
    })
}

/// Start comparing the job's two mailboxes; the result appears in its row (live).
#[handler]
pub async fn verify_job(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let state = web.state;
    let (task, _) = tasks::get_job(&state.db, web.actor(), id)
        .await
        .map_err(Error::from)?;
    let r = state.verifier.start(web.actor(), id).await;
    let to = format!("{}#job-{id}", back(task.id));
    outcome(&web, &to, r, |j| {
        format!(
            "Verifying mailbox {}: the result appears in its row.",
            j.user1
        )
    })
}

/// `GET /tasks/:id/report.csv`: one row per mailbox, safe to open in a spreadsheet.
#[handler]
pub async fn report_csv(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    let (_, rows) = crate::service::query::report(&web.state.db, web.actor(), id)
        .await
        .map_err(Error::from)?;
    let body = crate::service::query::report_csv(&rows);
    Ok(body
        .with_content_type("text/csv; charset=utf-8")
        .with_header(
            "content-disposition",
            format!("attachment; filename=\"task-{id}-report.csv\""),
        )
        .into_response())
}
