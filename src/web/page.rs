//! What every HTML page shares: the signed-in user, the CSRF token, the request id, the
//! colour theme, flash messages and the navigation. Handlers take a [`Web`] and call
//! [`Web::render`]; nothing here decides what a user may see (the service layer does).

use poem::{
    FromRequest, IntoResponse, Request, RequestBody, Response,
    session::Session,
    web::{Html, Redirect},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Error, RequestId, auth::CurrentUser, csrf, templates};
use crate::{service::Actor, state::AppState};

const FLASH: &str = "flash";
pub const THEME_COOKIE: &str = "pymap_theme";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flash {
    /// `ok`, `error` or `info`: picks the colour and the ARIA role.
    pub kind: String,
    pub text: String,
}

/// Queue a message for the next page this session renders (after a redirect).
pub fn flash(session: &Session, kind: &str, text: impl Into<String>) {
    let mut list: Vec<Flash> = session.get(FLASH).unwrap_or_default();
    // A page that is never shown (a lost redirect) must not let the queue grow unbounded.
    if list.len() < 10 {
        list.push(Flash {
            kind: kind.into(),
            text: text.into(),
        });
    }
    session.set(FLASH, list);
}

/// `light`, `dark`, or empty for "follow the system", from the theme cookie.
pub fn theme(req: &Request) -> &'static str {
    let cookies = req
        .headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok());
    for header in cookies {
        for pair in header.split(';') {
            match pair.trim().split_once('=') {
                Some((THEME_COOKIE, "dark")) => return "dark",
                Some((THEME_COOKIE, "light")) => return "light",
                _ => {}
            }
        }
    }
    ""
}

fn request_id(req: &Request) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

/// The context every template gets; `extra` is merged on top.
pub fn base_context(
    state: &AppState,
    req: &Request,
    session: &Session,
    user: Option<&CurrentUser>,
    extra: Value,
) -> Value {
    let flashes: Vec<Flash> = session.get(FLASH).unwrap_or_default();
    if !flashes.is_empty() {
        session.remove(FLASH);
    }
    let mut ctx = json!({
        "csrf_token": csrf::token(session, state),
        "request_id": request_id(req),
        "theme": theme(req),
        "path": req.uri().path(),
        "flashes": flashes,
        "user": user.map(|u| json!({
            "name": u.user.name,
            "role": u.user.role,
            "is_admin": u.actor.is_admin(),
        })),
    });
    if let (Some(obj), Value::Object(more)) = (ctx.as_object_mut(), extra) {
        obj.extend(more);
    }
    ctx
}

/// A signed-in request: everything a page handler needs besides its own parameters.
pub struct Web<'a> {
    pub state: &'a AppState,
    pub session: &'a Session,
    pub req: &'a Request,
    pub user: CurrentUser,
}

impl<'a> FromRequest<'a> for Web<'a> {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let user = CurrentUser::from_request(req, body).await?;
        Ok(Web {
            state: req.data::<AppState>().expect("state is attached"),
            session: req.extensions().get::<Session>().expect("session layer"),
            req,
            user,
        })
    }
}

impl Web<'_> {
    pub fn actor(&self) -> &Actor {
        &self.user.actor
    }

    pub fn render(&self, name: &str, extra: Value) -> Result<Html<String>, Error> {
        let ctx = base_context(self.state, self.req, self.session, Some(&self.user), extra);
        templates::render(&self.state.templates, name, ctx).map(Html)
    }

    pub fn flash(&self, kind: &str, text: impl Into<String>) {
        flash(self.session, kind, text);
    }

    /// Flash `text` and go to `to` (POST-redirect-GET).
    pub fn done(&self, to: &str, text: impl Into<String>) -> Response {
        self.flash("ok", text);
        see_other(to)
    }
}

pub fn see_other(to: &str) -> Response {
    Redirect::see_other(to).into_response()
}

/// Where a form wants to go back to, if it is a local path (no open redirect).
pub fn local_path(next: Option<&str>, fallback: &str) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => fallback.into(),
    }
}

/// `a=1&b=x y` for links that keep the current filters.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            out.append_pair(k, &v);
        }
    }
    out.finish()
}

#[derive(Deserialize)]
pub struct ThemeForm {
    #[serde(default)]
    theme: String,
    next: Option<String>,
}

/// `POST /theme`: pin light or dark, or follow the system again (empty). A cookie, not
/// the session, so the choice survives logging out.
#[poem::handler]
pub fn set_theme(req: &Request, poem::web::Form(f): poem::web::Form<ThemeForm>) -> Response {
    let state = req.data::<AppState>().expect("state is attached");
    let secure = if state.config.cookie_secure() {
        "; Secure"
    } else {
        ""
    };
    let cookie = match f.theme.as_str() {
        t @ ("light" | "dark") => {
            format!("{THEME_COOKIE}={t}; Path=/; Max-Age=31536000; SameSite=Lax; HttpOnly{secure}")
        }
        _ => format!("{THEME_COOKIE}=; Path=/; Max-Age=0; SameSite=Lax; HttpOnly{secure}"),
    };
    let mut resp = see_other(&local_path(f.next.as_deref(), "/"));
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().append("set-cookie", v);
    }
    resp
}

/// Forms submitted by `pymap.js` (header `x-pymap-async`) get their redirect as an
/// `x-redirect` header on a 200, because `fetch` would otherwise follow it and eat the
/// flash message meant for the page the browser goes to next.
pub async fn async_redirects<E: poem::Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let is_async = req.headers().contains_key("x-pymap-async");
    let resp = ep.call(req).await?.into_response();
    if is_async
        && resp.status() == poem::http::StatusCode::SEE_OTHER
        && let Some(location) = resp.headers().get("location").cloned()
    {
        return Ok(Response::builder()
            .status(poem::http::StatusCode::OK)
            .header("x-redirect", location)
            .finish());
    }
    Ok(resp)
}
