//! The account page: change password, own host patterns (with a preview of how a typed
//! host resolves), and API tokens (the secret is shown once, in the creation response).

use chrono::{Duration, Utc};
use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Form, Path},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Error, fmt, page::Web};
use crate::service::{
    FieldError, ServiceError, accounts,
    hosts::{HostPattern, HostPatterns},
    profile, tokens,
};

/// Empty pattern rows offered below the saved ones.
const SPARE_ROWS: usize = 2;

fn errors_of(e: ServiceError) -> Result<Vec<FieldError>, Error> {
    match e {
        ServiceError::InvalidMany(list) => Ok(list),
        ServiceError::Invalid { field, message } => Ok(vec![FieldError {
            field,
            line: None,
            message,
        }]),
        ServiceError::Conflict(message) => Ok(vec![FieldError {
            field: "name".into(),
            line: None,
            message,
        }]),
        e => Err(e.into()),
    }
}

/// The page with everything on it; `extra` carries a form's errors or results.
async fn render(
    web: &Web<'_>,
    status: StatusCode,
    patterns: Option<Vec<HostPattern>>,
    extra: Value,
) -> poem::Result<Response> {
    let db = &web.state.db;
    let mut rows = match patterns {
        Some(p) => p,
        None => profile::host_patterns(db, web.actor())
            .await
            .map_err(Error::from)?,
    };
    rows.extend((0..SPARE_ROWS).map(|_| HostPattern {
        regex: String::new(),
        suffix: String::new(),
    }));
    let now = Utc::now();
    let list: Vec<Value> = tokens::list(db, web.actor())
        .await
        .map_err(Error::from)?
        .iter()
        .map(|t| {
            let state = if t.revoked_at.is_some() {
                "revoked"
            } else if tokens::is_active(t, now) {
                "active"
            } else {
                "expired"
            };
            json!({
                "id": t.id,
                "name": t.name,
                "prefix": t.prefix,
                "state": state,
                "created": fmt::time(&t.created_at),
                "expires": t.expires_at.as_ref().map(fmt::time).unwrap_or_else(|| "never".into()),
                "last_used": t.last_used_at.as_ref().map(fmt::time).unwrap_or_else(|| "never".into()),
            })
        })
        .collect();
    let global: Vec<HostPattern> = profile::global_patterns(&web.state.config);
    let mut ctx = json!({
        "patterns": rows,
        "global": global,
        "tokens": list,
    });
    if let (Some(obj), Value::Object(more)) = (ctx.as_object_mut(), extra) {
        obj.extend(more);
    }
    Ok(web
        .render("account.html", ctx)?
        .with_status(status)
        .into_response())
}

#[handler]
pub async fn page(web: Web<'_>) -> poem::Result<Response> {
    render(&web, StatusCode::OK, None, json!({})).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm_password: String,
}

#[handler]
pub async fn password(web: Web<'_>, Form(f): Form<PasswordForm>) -> poem::Result<Response> {
    let result = if f.new_password != f.confirm_password {
        Err(ServiceError::invalid(
            "confirm_password",
            "does not match the new password",
        ))
    } else {
        accounts::change_own_password(
            &web.state.db,
            web.actor(),
            &f.current_password,
            &f.new_password,
        )
        .await
    };
    match result {
        Ok(()) => Ok(web.done("/account", "Your password was changed.")),
        Err(e) => {
            let errors = errors_of(e)?;
            let ctx = json!({ "password_errors": errors });
            render(&web, StatusCode::UNPROCESSABLE_ENTITY, None, ctx).await
        }
    }
}

/// `POST /account/hosts`: rows of `regex`/`suffix` pairs, `test_host`, and `action`
/// `save` or `preview` (resolve `test_host` with the rows as typed, saving nothing).
#[handler]
pub async fn hosts(
    web: Web<'_>,
    Form(fields): Form<Vec<(String, String)>>,
) -> poem::Result<Response> {
    let values = |k: &'static str| {
        fields
            .iter()
            .filter(move |(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let patterns: Vec<HostPattern> = values("regex")
        .zip(values("suffix"))
        .filter(|(r, s)| !(r.trim().is_empty() && s.trim().is_empty()))
        .map(|(regex, suffix)| HostPattern { regex, suffix })
        .collect();
    let test = values("test_host").next().unwrap_or_default();
    let action = values("action").next().unwrap_or_default();
    if action == "save" {
        return match profile::set_host_patterns(&web.state.db, web.actor(), &patterns).await {
            Ok(saved) => Ok(web.done(
                "/account#hosts",
                format!("{} host patterns saved.", saved.len()),
            )),
            Err(e) => {
                let ctx = json!({ "host_errors": errors_of(e)? });
                render(&web, StatusCode::UNPROCESSABLE_ENTITY, Some(patterns), ctx).await
            }
        };
    }
    let cleaned = match profile::validate_patterns(&patterns) {
        Ok(p) => p,
        Err(e) => {
            let ctx = json!({ "host_errors": errors_of(e)?, "test_host": test });
            return render(&web, StatusCode::UNPROCESSABLE_ENTITY, Some(patterns), ctx).await;
        }
    };
    let global = profile::global_patterns(&web.state.config);
    let preview = match HostPatterns::new(&cleaned, &global) {
        Ok(compiled) => match compiled.resolve(&test) {
            Ok(r) => json!({ "ok": true, "resolved": r.resolved.to_string(), "via": r.via() }),
            Err(e) => json!({ "ok": false, "error": e.to_string() }),
        },
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    };
    let ctx = json!({ "preview": preview, "test_host": test });
    render(&web, StatusCode::OK, Some(patterns), ctx).await
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
    #[serde(default)]
    expires_days: String,
}

#[handler]
pub async fn create_token(web: Web<'_>, Form(f): Form<TokenForm>) -> poem::Result<Response> {
    let expires = match f.expires_days.trim() {
        "" => Ok(None),
        d => match d.parse::<i64>() {
            Ok(n @ 1..=3650) => Ok(Some(Utc::now() + Duration::days(n))),
            _ => Err(ServiceError::invalid(
                "expires_days",
                "must be 1 to 3650 days, or empty",
            )),
        },
    };
    let result = match expires {
        Ok(at) => tokens::create(&web.state.db, web.actor(), &f.name, at).await,
        Err(e) => Err(e),
    };
    match result {
        // Rendered directly (not via a redirect and flash) so the secret is never
        // stored in the session.
        Ok(new) => {
            let ctx = json!({ "new_token": { "name": new.token.name, "secret": new.secret } });
            render(&web, StatusCode::OK, None, ctx).await
        }
        Err(e) => {
            let ctx = json!({ "token_errors": errors_of(e)?, "token_name": f.name });
            render(&web, StatusCode::UNPROCESSABLE_ENTITY, None, ctx).await
        }
    }
}

#[handler]
pub async fn revoke_token(web: Web<'_>, Path(id): Path<i64>) -> poem::Result<Response> {
    tokens::revoke(&web.state.db, web.actor(), id)
        .await
        .map_err(Error::from)?;
    Ok(web.done("/account#tokens", "Token revoked."))
}
