//! HTML pages. Handlers parse the request, call `service/` and render a template; they
//! hold no business rules.

mod assets;
mod auth;
mod context;
mod csrf;
mod error;
mod health;
pub mod templates;

pub use context::{ClientAddr, RequestId, client_addr};
pub use error::Error;

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
    Route::new()
        .at("/", get(auth::home))
        .at("/login", get(auth::login_page).post(auth::login_submit))
        .at("/logout", post(auth::logout))
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/static/:file", get(assets::asset))
        .around(csrf::around)
        .around(context::render_errors)
        .with(ServerSession::new(cookie, sessions))
        .around(context::around)
        .data(state)
}
