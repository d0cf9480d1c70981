//! Login, logout and the signed-in user.

use poem::{
    FromRequest, IntoResponse, Request, RequestBody, Response, handler,
    http::StatusCode,
    session::Session,
    web::{Data, Form, Html, Redirect},
};
use serde::Deserialize;
use serde_json::json;

use super::{ClientAddr, Error, csrf, templates};
use crate::{
    service::{self, Actor, ServiceError, auth::LoginLimits},
    state::AppState,
};

pub(crate) const USER_ID: &str = "user_id";

/// The signed-in user, re-read from the database on every request so that disabling an
/// account ends its sessions at once.
pub struct CurrentUser {
    pub user: entity::user::Model,
    pub actor: Actor,
}

impl<'a> FromRequest<'a> for CurrentUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req.data::<AppState>().expect("state is attached");
        let session = req.extensions().get::<Session>().expect("session layer");
        let addr = req.extensions().get::<ClientAddr>().and_then(|c| c.0);
        let login = || -> poem::Error {
            let next = req.uri().path();
            let target = if req.method() == poem::http::Method::GET && next != "/" {
                format!(
                    "/login?next={}",
                    form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                )
            } else {
                "/login".into()
            };
            poem::Error::from_response(Redirect::see_other(target).into_response())
        };
        let Some(id) = session.get::<i64>(USER_ID) else {
            return Err(login());
        };
        let user = service::accounts::find_by_id(&state.db, id)
            .await
            .map_err(Error::from)?;
        match user {
            Some(user) if !user.disabled => {
                let actor = service::auth::actor_for(&user, addr);
                Ok(CurrentUser { user, actor })
            }
            _ => {
                session.purge();
                Err(login())
            }
        }
    }
}

fn page(
    state: &AppState,
    req: &Request,
    session: &Session,
    name: &str,
    extra: serde_json::Value,
) -> Result<Html<String>, Error> {
    let ctx = super::page::base_context(state, req, session, None, extra);
    templates::render(&state.templates, name, ctx).map(Html)
}

/// Only local paths are followed after login (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[handler]
pub async fn login_page(
    req: &Request,
    session: &Session,
    Data(state): Data<&AppState>,
    poem::web::Query(q): poem::web::Query<NextQuery>,
) -> poem::Result<Response> {
    if session.get::<i64>(USER_ID).is_some() {
        return Ok(Redirect::see_other(safe_next(q.next.as_deref())).into_response());
    }
    Ok(page(state, req, session, "login.html", json!({ "next": q.next }))?.into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

#[handler]
pub async fn login_submit(
    req: &Request,
    session: &Session,
    Data(state): Data<&AppState>,
    Form(form): Form<LoginForm>,
) -> poem::Result<Response> {
    let addr = req.extensions().get::<ClientAddr>().and_then(|c| c.0);
    let limits = LoginLimits {
        throttle: &state.throttle,
        config: &state.config.login_throttle,
    };
    match service::auth::login(&state.db, limits, &form.name, &form.password, addr).await {
        Ok(user) => {
            // New session id and new CSRF nonce: nothing from before login carries over.
            session.clear();
            session.set(USER_ID, user.id);
            csrf::rotate(session);
            session.renew();
            Ok(Redirect::see_other(safe_next(form.next.as_deref())).into_response())
        }
        Err(e @ (ServiceError::InvalidCredentials | ServiceError::Throttled { .. })) => {
            let status = match e {
                ServiceError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let html = page(
                state,
                req,
                session,
                "login.html",
                json!({ "error": e.to_string(), "name": form.name, "next": form.next }),
            )?;
            let mut resp = html.with_status(status).into_response();
            if let ServiceError::Throttled { retry_after } = e {
                resp.headers_mut()
                    .insert("retry-after", retry_after.as_secs().max(1).into());
            }
            Ok(resp)
        }
        Err(e) => Err(Error::from(e).into()),
    }
}

#[handler]
pub async fn logout(
    session: &Session,
    Data(state): Data<&AppState>,
    user: CurrentUser,
) -> poem::Result<Response> {
    service::auth::logout(&state.db, &user.actor)
        .await
        .map_err(Error::from)?;
    session.purge();
    Ok(Redirect::see_other("/login").into_response())
}
