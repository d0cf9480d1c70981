//! Who is calling: `Authorization: Bearer <token>`, or the web UI's session cookie (then
//! unsafe methods must carry the `X-CSRF-Token` header, checked with `web`'s CSRF
//! tokens). The user is re-read on every request, so disabling an account or revoking a
//! token takes effect at once.

use chrono::{DateTime, Utc};
use entity::user;
use poem::{Request, RequestBody, http::Method, session::Session};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaSecurityScheme, Registry},
};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::{
    service::{self, Actor},
    state::AppState,
    web::{ClientAddr, SESSION_USER_ID, csrf_token},
};

pub const BEARER_SCHEME: &str = "bearerAuth";
pub const SESSION_SCHEME: &str = "sessionCookie";

/// How the caller proved who they are.
#[derive(Clone, Debug)]
pub enum Via {
    Session {
        csrf_token: String,
    },
    Token {
        id: i64,
        expires_at: Option<DateTime<Utc>>,
    },
}

/// An authenticated caller. Operations that take one require authentication (401
/// without it).
pub struct Caller {
    pub user: user::Model,
    pub actor: Actor,
    pub via: Via,
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.actor.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

/// Whether the credentials a long-lived stream was opened with still hold: the user is
/// enabled, the token not revoked or expired, and a stream opened as an admin (which
/// shows everyone's jobs) still belongs to an admin. Errors count as "no".
pub async fn still_valid(
    db: &sea_orm::DatabaseConnection,
    user_id: i64,
    via: &Via,
    opened_as_admin: bool,
) -> bool {
    use sea_orm::EntityTrait;
    let user_ok = matches!(
        service::accounts::find_by_id(db, user_id).await,
        Ok(Some(u)) if !u.disabled
            && (!opened_as_admin || service::auth::actor_for(&u, None).is_admin())
    );
    match via {
        Via::Session { .. } => user_ok,
        Via::Token { id, .. } => {
            user_ok
                && matches!(
                    entity::api_token::Entity::find_by_id(*id).one(db).await,
                    Ok(Some(t)) if service::tokens::is_active(&t, Utc::now())
                )
        }
    }
}

fn bearer(req: &Request) -> Option<Result<&str, ApiError>> {
    let header = req.headers().get("authorization")?;
    let Some(value) = header.to_str().ok() else {
        return Some(Err(ApiError::invalid_token()));
    };
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some(Err(ApiError::new(
            poem::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "only `Authorization: Bearer <token>` is accepted",
        )));
    }
    Some(Ok(token.trim()))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub async fn authenticate(req: &Request) -> Result<Caller, ApiError> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::internal("application state is not attached"))?;
    let addr = req.extensions().get::<ClientAddr>().and_then(|c| c.0);
    if let Some(token) = bearer(req) {
        let (user, token) = service::tokens::authenticate(&state.db, token?)
            .await
            .map_err(ApiError::from)?;
        let actor = service::auth::actor_for(&user, addr);
        return Ok(Caller {
            user,
            actor,
            via: Via::Token {
                id: token.id,
                expires_at: token.expires_at,
            },
        });
    }
    let session = req
        .extensions()
        .get::<Session>()
        .ok_or_else(ApiError::unauthorized)?;
    let id = session
        .get::<i64>(SESSION_USER_ID)
        .ok_or_else(ApiError::unauthorized)?;
    let user = service::accounts::find_by_id(&state.db, id)
        .await
        .map_err(ApiError::from)?
        .filter(|u| !u.disabled)
        .ok_or_else(ApiError::unauthorized)?;
    let expected = csrf_token(session, state);
    if !is_safe(req.method()) {
        let given = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            tracing::warn!(path = %req.uri().path(), "API: CSRF header missing or wrong");
            return Err(ApiError::csrf());
        }
    }
    let actor = service::auth::actor_for(&user, addr);
    Ok(Caller {
        user,
        actor,
        via: Via::Session {
            csrf_token: expected,
        },
    })
}

impl<'a> ApiExtractor<'a> for Caller {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            BEARER_SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "A personal API token (POST /api/v1/me/tokens), sent as `Authorization: Bearer pymap_…`.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: Some("pymap_<64 hex digits>"),
                flows: None,
                openid_connect_url: None,
            },
        );
        registry.create_security_scheme(
            SESSION_SCHEME,
            MetaSecurityScheme {
                ty: "apiKey",
                description: Some(
                    "The web UI's session cookie. Unsafe methods also need the `X-CSRF-Token` header (`csrf_token` of GET /api/v1/me).",
                ),
                name: Some("pymap_session"),
                key_in: Some("cookie"),
                scheme: None,
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![BEARER_SCHEME, SESSION_SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        authenticate(request).await.map_err(Into::into)
    }
}
