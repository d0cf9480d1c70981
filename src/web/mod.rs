//! HTML pages. Handlers parse the request, call `service/` and render a template; they
//! hold no business rules.

mod account;
mod admin;
mod assets;
mod auth;
mod context;
mod csrf;
mod dashboard;
mod error;
mod fmt;
mod health;
mod live;
mod logs;
mod migrate;
mod page;
mod retry;
mod task;
mod task_list;
pub mod templates;
mod views;

pub use assets::total_bytes as asset_bytes;
pub use context::{ClientAddr, RequestId, client_addr};
pub use error::Error;
// The REST API authenticates with the same session and CSRF tokens.
pub(crate) use auth::USER_ID as SESSION_USER_ID;
pub(crate) use csrf::token as csrf_token;

use poem::{
    Endpoint, EndpointExt, Route, get, post,
    session::{CookieConfig, MemoryStorage, ServerSession},
    web::cookie::CookieKey,
};

use crate::{shared_store::SessionStore, state::AppState};

/// All routes with their middleware, outermost last.
pub fn routes(state: AppState) -> impl Endpoint {
    let cookie = CookieConfig::signed(CookieKey::from(&state.keys.cookie[..]))
        .name("pymap_session")
        .path("/")
        .http_only(true)
        .secure(state.config.cookie_secure())
        .same_site(poem::web::cookie::SameSite::Lax)
        .max_age(std::time::Duration::from_secs(
            state.config.session.max_age_secs,
        ));
    let sessions = match &state.redis {
        Some(conn) => SessionStore::Redis {
            conn: conn.clone(),
            prefix: state.config.redis_prefix.clone(),
        },
        None => SessionStore::Memory(MemoryStorage::new()),
    };
    let pages = Route::new()
        .at("/", get(dashboard::dashboard))
        .at("/login", get(auth::login_page).post(auth::login_submit))
        .at("/logout", post(auth::logout))
        .at("/theme", post(page::set_theme))
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/static/:file", get(assets::asset))
        .at("/migrate", get(migrate::form_page).post(migrate::submit))
        .at("/migrate/check", post(migrate::check_page))
        .at("/hosts/preview", get(migrate::preview))
        .at("/tasks", get(task_list::list))
        .at("/tasks/bulk", post(task_list::bulk))
        .at("/tasks/:id", get(task::detail))
        .at("/tasks/:id/events", get(live::task_events))
        .at("/tasks/:id/report.csv", get(task::report_csv))
        .at("/tasks/:id/cancel", post(task::cancel))
        .at("/tasks/:id/retry-failed", post(task::retry_failed))
        .at("/tasks/:id/archive", post(task::archive))
        .at("/tasks/:id/unarchive", post(task::unarchive))
        .at("/tasks/:id/delete", post(task::delete))
        .at("/jobs/:id/cancel", post(task::cancel_job))
        .at(
            "/jobs/:id/retry",
            get(retry::form_page).post(retry::retry_job),
        )
        .at("/jobs/:id/verify", post(task::verify_job))
        .at("/tasks/:id/retry-passwords", post(retry::retry_batch))
        .at("/jobs/:id/log", get(logs::page))
        .at("/jobs/:id/log/stream", get(live::log_stream))
        .at("/jobs/:id/log/download", get(logs::download))
        .at("/account", get(account::page))
        .at("/account/password", post(account::password))
        .at("/account/hosts", post(account::hosts))
        .at("/account/tokens", post(account::create_token))
        .at("/account/tokens/:id/revoke", post(account::revoke_token))
        .at(
            "/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .at("/admin/users/:name/:action", post(admin::user_action))
        .at("/admin/audit", get(admin::audit))
        .at("/admin/system", get(admin::system))
        .around(page::async_redirects)
        .around(csrf::around)
        .around(context::render_errors);
    Route::new()
        // The API renders its own JSON errors and checks CSRF itself (bearer tokens need
        // none), so it sits beside the pages' CSRF and error layers, not inside them.
        .nest("/api", crate::api::routes())
        .at("/metrics", get(crate::api::metrics::metrics))
        .nest("/", pages)
        .with(ServerSession::new(cookie, sessions))
        .around(crate::api::metrics::track)
        .around(context::around)
        .data(state)
}
