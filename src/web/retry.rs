//! Retrying jobs, including after the stored passwords were wiped: the row's Retry
//! button leads to a form asking for them (one job), and the task page has a box for a
//! pasted batch (several jobs, matched by user names). Passwords are never sent back.

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Form, Path},
};
use serde::Deserialize;
use serde_json::json;

use super::{Error, page::Web};
use crate::service::{
    FieldError, ServiceError,
    batch::Secret,
    job_state::{self, RetryCredentials},
    retry_passwords::{self, needs_passwords},
    tasks,
};

#[derive(Deserialize, Default)]
pub struct RetryForm {
    #[serde(default)]
    password1: String,
    #[serde(default)]
    password2: String,
}

fn task_url(task_id: i64, job_id: i64) -> String {
    format!("/tasks/{task_id}#job-{job_id}")
}

async fn render_form(
    web: &Web<'_>,
    job_id: i64,
    status: StatusCode,
    errors: &[FieldError],
) -> poem::Result<Response> {
    let (task, job) = tasks::get_job(&web.state.db, web.actor(), job_id)
        .await
        .map_err(Error::from)?;
    let html = web.render(
        "retry.html",
        json!({
            "task": { "id": task.id, "label": task.label },
            "job": {
                "id": job.id, "user1": job.user1, "user2": job.user2,
                "host1": job.host1, "host2": job.host2, "status": job.status,
            },
            "wiped": needs_passwords(&job),
            "errors": errors,
        }),
    )?;
    Ok(html.with_status(status).into_response())
}

/// `GET /jobs/:id/retry`: the form asking for new passwords.
#[handler]
pub async fn form_page(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    render_form(&web, id, StatusCode::OK, &[]).await
}

/// `POST /jobs/:id/retry`: queue the job again; with wiped passwords and none given,
/// go to the form instead of failing.
#[handler]
pub async fn retry_job(
    web: Web<'_>,
    Path(id): Path<i64>,
    Form(form): Form<RetryForm>,
) -> poem::Result<Response> {
    let state = web.state;
    let (task, job) = tasks::get_job(&state.db, web.actor(), id)
        .await
        .map_err(Error::from)?;
    let creds = match (form.password1.is_empty(), form.password2.is_empty()) {
        (true, true) if needs_passwords(&job) => {
            web.flash(
                "warn",
                "The stored passwords of this mailbox were wiped after the retention period: give them again to retry.",
            );
            return Ok(super::page::see_other(&format!("/jobs/{id}/retry")));
        }
        (true, true) => None,
        (true, false) => {
            let e = FieldError {
                field: "password1".into(),
                line: None,
                message: "is required with password2".into(),
            };
            return render_form(&web, id, StatusCode::UNPROCESSABLE_ENTITY, &[e]).await;
        }
        // An empty destination password means the same as the source's (as in a batch).
        (false, p2_empty) => Some(RetryCredentials {
            password2: Secret::new(if p2_empty {
                form.password1.clone()
            } else {
                form.password2
            }),
            password1: Secret::new(form.password1),
        }),
    };
    let r = job_state::retry_job(
        &state.db,
        &state.keys.credentials,
        &state.events,
        web.actor(),
        id,
        creds,
    )
    .await;
    state.pool.wake();
    let to = task_url(task.id, id);
    match r {
        Ok(j) => Ok(web.done(&to, format!("Mailbox {} queued again.", j.user1))),
        Err(ServiceError::Invalid { field, message }) => {
            let e = FieldError {
                field,
                line: None,
                message,
            };
            render_form(&web, id, StatusCode::UNPROCESSABLE_ENTITY, &[e]).await
        }
        Err(e @ ServiceError::Conflict(_)) => {
            web.flash("error", e.to_string());
            Ok(super::page::see_other(&to))
        }
        Err(e) => Err(Error::from(e).into()),
    }
}

#[derive(Deserialize)]
pub struct BatchForm {
    #[serde(default)]
    passwords: String,
}

/// `POST /tasks/:id/retry-passwords`: new passwords for several mailboxes at once.
#[handler]
pub async fn retry_batch(
    web: Web<'_>,
    Path(id): Path<i64>,
    Form(form): Form<BatchForm>,
) -> poem::Result<Response> {
    let state = web.state;
    let r = retry_passwords::retry_with_batch(
        &state.db,
        &state.keys.credentials,
        &state.events,
        web.actor(),
        id,
        &form.passwords,
    )
    .await;
    state.pool.wake();
    let to = format!("/tasks/{id}");
    let problems = |errors: Vec<FieldError>| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("Nothing was queued: {}", list.join("; "))
    };
    match r {
        Ok(n) => Ok(web.done(
            &to,
            format!(
                "{n} mailbox{} queued again with the new passwords.",
                if n == 1 { "" } else { "es" }
            ),
        )),
        Err(ServiceError::InvalidMany(errors)) => {
            web.flash("error", problems(errors));
            Ok(super::page::see_other(&to))
        }
        Err(ServiceError::Invalid { field, message }) => {
            let e = FieldError {
                field,
                line: None,
                message,
            };
            web.flash("error", problems(vec![e]));
            Ok(super::page::see_other(&to))
        }
        Err(e @ ServiceError::Conflict(_)) => {
            web.flash("error", e.to_string());
            Ok(super::page::see_other(&to))
        }
        Err(e) => Err(Error::from(e).into()),
    }
}
