//! CSRF protection for every state-changing request.
//!
//! The session holds a random nonce; the token is HMAC(csrf key, nonce), so tokens are
//! bound to one session and one installation. Unsafe methods must echo it in the
//! `X-CSRF-Token` header or a `csrf_token` form field (or query parameter, for multipart
//! uploads whose body we do not buffer here).

use hmac::{Hmac, Mac};
use poem::{Body, Endpoint, Request, Response, http::Method, session::Session};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Error;
use crate::{keys::random_hex, state::AppState};

const NONCE: &str = "csrf_nonce";
/// Larger urlencoded bodies are refused rather than buffered.
const MAX_FORM: usize = 2 * 1024 * 1024;

fn token_for(key: &[u8; 32], nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The token for this session, creating its nonce on first use.
pub fn token(session: &Session, state: &AppState) -> String {
    let nonce = match session.get::<String>(NONCE) {
        Some(n) => n,
        None => {
            let n = random_hex(16);
            session.set(NONCE, &n);
            n
        }
    };
    token_for(&state.keys.csrf, &nonce)
}

/// Start a fresh nonce (at login), so a token seen before login is worthless after.
pub fn rotate(session: &Session) {
    session.set(NONCE, random_hex(16));
}

fn valid(session: &Session, state: &AppState, given: &str) -> bool {
    let Some(nonce) = session.get::<String>(NONCE) else {
        return false;
    };
    let expected = token_for(&state.keys.csrf, &nonce);
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

fn field(pairs: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(pairs)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub async fn around<E: Endpoint>(ep: E, mut req: Request) -> poem::Result<Response>
where
    E::Output: poem::IntoResponse,
{
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return ep.call(req).await.map(poem::IntoResponse::into_response);
    }
    let state = req.data::<AppState>().cloned().expect("state is attached");
    let session = req
        .extensions()
        .get::<Session>()
        .cloned()
        .expect("session layer is outside");
    let mut given = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            req.uri()
                .query()
                .and_then(|q| field(q.as_bytes(), "csrf_token"))
        });
    let is_form = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if given.is_none() && is_form {
        let body = req
            .take_body()
            .into_bytes_limit(MAX_FORM)
            .await
            .map_err(|_| {
                Error::BadRequest(format!("form larger than {} MiB", MAX_FORM / 1024 / 1024))
            })?;
        given = field(&body, "csrf_token");
        req.set_body(Body::from(body));
    }
    match given {
        Some(token) if valid(&session, &state, &token) => {
            ep.call(req).await.map(poem::IntoResponse::into_response)
        }
        _ => {
            tracing::warn!(path = %req.uri().path(), "CSRF token missing or wrong");
            Err(Error::Csrf.into())
        }
    }
}
