//! Admin pages: users (create, disable, reset password, role), the audit trail with
//! filters, and the system status. Every call checks the admin role in the service layer.

use chrono::{NaiveDate, TimeZone, Utc};
use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Form, Html, Path, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Error, fmt,
    health::{database_status, redis_status},
    page::{Web, query_string},
};
use crate::service::{
    Role, ServiceError, accounts,
    query::{self, AuditQuery},
    web_support::require_admin,
};

async fn render_users(web: &Web<'_>, status: StatusCode, extra: Value) -> poem::Result<Response> {
    let users: Vec<Value> = accounts::list(&web.state.db, web.actor())
        .await
        .map_err(Error::from)?
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "role": u.role,
                "disabled": u.disabled,
                "created": fmt::time(&u.created_at),
                "last_login": u.last_login_at.as_ref().map(fmt::time).unwrap_or_else(|| "never".into()),
                "is_me": Some(u.id) == web.actor().id,
            })
        })
        .collect();
    let mut ctx = json!({ "users": users });
    if let (Some(obj), Value::Object(more)) = (ctx.as_object_mut(), extra) {
        obj.extend(more);
    }
    Ok(web
        .render("users.html", ctx)?
        .with_status(status)
        .into_response())
}

#[handler]
pub async fn list_users(web: Web<'_>) -> poem::Result<Response> {
    render_users(&web, StatusCode::OK, json!({})).await
}

fn role(s: &str) -> Result<Role, ServiceError> {
    Role::parse(s).ok_or_else(|| ServiceError::invalid("role", "must be admin or user"))
}

/// Input problems go back to the page with the message; the rest is an error page.
async fn or_form_error(
    web: &Web<'_>,
    r: Result<String, ServiceError>,
    extra: Value,
) -> poem::Result<Response> {
    match r {
        Ok(message) => Ok(web.done("/admin/users", message)),
        Err(e @ (ServiceError::Invalid { .. } | ServiceError::Conflict(_))) => {
            let mut ctx = extra;
            ctx["error"] = json!(e.to_string());
            render_users(web, StatusCode::UNPROCESSABLE_ENTITY, ctx).await
        }
        Err(e) => Err(Error::from(e).into()),
    }
}

#[derive(Deserialize)]
pub struct NewUserForm {
    name: String,
    password: String,
    role: String,
}

#[handler]
pub async fn create_user(web: Web<'_>, Form(f): Form<NewUserForm>) -> poem::Result<Response> {
    let r = match role(&f.role) {
        Ok(role) => accounts::create(&web.state.db, web.actor(), &f.name, &f.password, role)
            .await
            .map(|u| format!("User {} created.", u.name)),
        Err(e) => Err(e),
    };
    or_form_error(&web, r, json!({ "new_name": f.name, "new_role": f.role })).await
}

#[derive(Deserialize)]
pub struct UserAction {
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

/// `POST /admin/users/:name/:action` with action `disable`, `enable`, `password`, `role`.
#[handler]
pub async fn user_action(
    web: Web<'_>,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<UserAction>,
) -> poem::Result<Response> {
    let (db, actor) = (&web.state.db, web.actor());
    let r = match action.as_str() {
        "disable" => accounts::set_disabled(db, actor, &name, true)
            .await
            .map(|()| format!("User {name} disabled; their sessions and tokens stop working.")),
        "enable" => accounts::set_disabled(db, actor, &name, false)
            .await
            .map(|()| format!("User {name} enabled.")),
        "password" => accounts::set_password(db, actor, &name, &f.password)
            .await
            .map(|()| format!("Password of {name} reset.")),
        "role" => match role(&f.role) {
            Ok(r) => accounts::set_role(db, actor, &name, r)
                .await
                .map(|()| format!("{name} is now {}.", r.as_str())),
            Err(e) => Err(e),
        },
        _ => return Err(Error::NotFound.into()),
    };
    or_form_error(&web, r, json!({})).await
}

#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AuditParams {
    user: String,
    action: String,
    outcome: String,
    object: String,
    from: String,
    to: String,
    page: Option<u64>,
}

impl AuditParams {
    fn link(&self, page: u64) -> String {
        let q = query_string([
            ("user", self.user.clone()),
            ("action", self.action.clone()),
            ("outcome", self.outcome.clone()),
            ("object", self.object.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            (
                "page",
                if page > 1 {
                    page.to_string()
                } else {
                    String::new()
                },
            ),
        ]);
        format!("/admin/audit?{q}")
    }
}

/// A `YYYY-MM-DD` day as its first instant (plus `days`), UTC.
fn day(s: &str, days: i64, field: &str, errors: &mut Vec<String>) -> Option<chrono::DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => {
            let start = d.and_hms_opt(0, 0, 0).expect("midnight exists");
            Some(Utc.from_utc_datetime(&start) + chrono::Duration::days(days))
        }
        Err(_) => {
            errors.push(format!("{field}: use the form YYYY-MM-DD"));
            None
        }
    }
}

const AUDIT_PAGE: u64 = 100;

#[handler]
pub async fn audit(web: Web<'_>, Query(p): Query<AuditParams>) -> poem::Result<Html<String>> {
    let mut errors = Vec::new();
    // "task:12" filters one object; a bare word is an object type.
    let (object_type, object_id) = match p.object.trim().split_once(':') {
        Some((t, id)) => (Some(t.to_string()), Some(id.to_string())),
        None => (Some(p.object.clone()), None),
    };
    let q = AuditQuery {
        user: Some(p.user.clone()),
        action: Some(p.action.clone()),
        object_type,
        object_id,
        outcome: Some(p.outcome.clone()),
        from: day(&p.from, 0, "from", &mut errors),
        // The "to" day is included.
        to: day(&p.to, 1, "to", &mut errors),
        limit: AUDIT_PAGE,
        cursor: None,
        page: p.page,
        with_total: true,
    };
    let page = match query::list_audit(&web.state.db, web.actor(), &q).await {
        Ok(page) => Some(page),
        Err(ServiceError::Invalid { field, message }) => {
            errors.push(format!("{field}: {message}"));
            None
        }
        Err(e) => return Err(Error::from(e).into()),
    };
    let current = p.page.unwrap_or(1).max(1);
    let (events, total, more) = match page {
        Some(page) => (
            page.items,
            page.total.unwrap_or(0),
            page.next_cursor.is_some(),
        ),
        None => (Vec::new(), 0, false),
    };
    let first = (current - 1) * AUDIT_PAGE + 1;
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "at": e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                "user": e.actor_name,
                "action": e.action,
                "object": match (&e.object_type, &e.object_id) {
                    (Some(t), Some(id)) => format!("{t}:{id}"),
                    (Some(t), None) => t.clone(),
                    _ => String::new(),
                },
                "task_link": (e.object_type.as_deref() == Some("task")).then(|| e.object_id.clone()).flatten(),
                "outcome": e.outcome,
                "detail": e.detail,
                "addr": e.client_addr,
            })
        })
        .collect();
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
    Ok(web.render(
        "audit.html",
        json!({
            "rows": rows,
            "params": p,
            "errors": errors,
            "page": {
                "label": label,
                "prev": (current > 1).then(|| p.link(current - 1)),
                "next": more.then(|| p.link(current + 1)),
            },
        }),
    )?)
}

#[handler]
pub async fn system(web: Web<'_>) -> poem::Result<Html<String>> {
    require_admin(web.actor()).map_err(Error::from)?;
    let state = web.state;
    let mut engines = Vec::new();
    for name in ["imapsync", "native"] {
        let status = match state.pool.engines().get(name) {
            // Asking an engine its version may run a program: off the async threads.
            Ok(engine) => tokio::task::spawn_blocking(move || engine.version())
                .await
                .map_err(|e| Error::Internal(format!("engine version: {e}")))?,
            Err(why) => Err(why),
        };
        engines.push(match status {
            Ok(version) => json!({ "name": name, "ok": true, "text": version }),
            Err(why) => json!({ "name": name, "ok": false, "text": why }),
        });
    }
    let queue = query::queue_counts(&state.db).await.map_err(Error::from)?;
    let config = &state.config;
    let w = &config.workers;
    let disk = crate::service::disk::report(config.data_dir.clone(), config.log_dir()).await;
    let filesystem = |f: &Result<crate::service::disk::Filesystem, String>| match f {
        Ok(f) => json!({
            "ok": true,
            "free": fmt::bytes(f.free_bytes as i64),
            "total": fmt::bytes(f.total_bytes as i64),
            "free_pct": fmt::percent(f.free_bytes as i64, Some(f.total_bytes as i64)),
            "low": f.low,
        }),
        Err(why) => json!({ "ok": false, "why": why }),
    };
    let backend = match state.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "PostgreSQL",
        sea_orm::DbBackend::Sqlite => "SQLite",
        _ => "other",
    };
    Ok(web.render(
        "system.html",
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "engines": engines,
            "pool": {
                "concurrency": w.concurrency,
                "running_here": state.pool.running_jobs(),
                "per_source_host": w.per_source_host,
                "per_destination_host": w.per_destination_host,
                "max_attempts": w.max_attempts,
                "retry_base": fmt::duration(w.retry_base_secs as i64),
                "cancel_grace": fmt::duration(w.cancel_grace_secs as i64),
            },
            "queue": queue,
            "storage": {
                "backend": backend,
                "url": crate::config::redact_url(&config.database_url()),
                "database": database_status(state).await,
                "data_dir": config.data_dir.display().to_string(),
                "log_dir": config.log_dir().display().to_string(),
                "retention_days": config.credential_retention_days,
            },
            "disk": {
                "low": disk.low(),
                "low_percent": crate::service::disk::LOW_PERCENT,
                "data": filesystem(&disk.data),
                "logs": filesystem(&disk.logs),
                "log_dir_size": match &disk.log_dir_bytes {
                    Ok(b) => fmt::bytes(*b as i64),
                    Err(why) => format!("unknown ({why})"),
                },
                "log_dir_partial": disk.log_dir_partial,
            },
            "redis": redis_status(state).await,
        }),
    )?)
}
