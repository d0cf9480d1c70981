//! `/me`: profile, password change, host patterns and API tokens.

use chrono::{Duration, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, OpenApi, param::Path, payload::Json};

use super::{
    Tag,
    auth::{Caller, Via},
    body::JsonBody,
    error::ApiError,
    model_account::{
        AuthMethod, CreatedToken, HostPattern, HostPatterns, NewToken, PasswordChange, Profile,
        SetHostPatterns, Token,
    },
};
use crate::{
    service::{self, hosts::HostPattern as ServicePattern, profile, tokens},
    state::AppState,
};

#[derive(ApiResponse)]
pub enum Done {
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
pub enum TokenCreated {
    /// Store `secret` now: it is not shown again.
    #[oai(status = 201)]
    Created(Json<CreatedToken>),
}

/// Longest token lifetime asked for in days (about ten years).
const MAX_TOKEN_DAYS: u32 = 3660;

pub struct MeApi;

#[OpenApi(tag = "Tag::Me")]
impl MeApi {
    /// Your account
    ///
    /// With session authentication, `csrf_token` is the value to send as `X-CSRF-Token`.
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(&self, caller: Caller) -> Result<Json<Profile>, ApiError> {
        let (auth, csrf_token, token_expires_at) = match caller.via {
            Via::Session { csrf_token } => (AuthMethod::Session, Some(csrf_token), None),
            Via::Token { expires_at, .. } => (AuthMethod::Token, None, expires_at),
        };
        let user = caller.user;
        // `Result` only so that the spec lists the 401 of a missing or bad credential.
        Ok(Json(Profile {
            id: user.id,
            role: if caller.actor.is_admin() {
                super::model_account::Role::Admin
            } else {
                super::model_account::Role::User
            },
            name: user.name,
            created_at: user.created_at,
            last_login_at: user.last_login_at,
            auth,
            csrf_token,
            token_expires_at,
        }))
    }

    /// Change your password
    #[oai(
        path = "/me/password",
        method = "put",
        operation_id = "change_password"
    )]
    async fn password(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        body: JsonBody<PasswordChange>,
    ) -> Result<Done, ApiError> {
        service::accounts::change_own_password(
            &state.db,
            &caller.actor,
            &body.0.current_password,
            &body.0.new_password,
        )
        .await?;
        Ok(Done::Done)
    }

    /// Your host patterns (and the global ones)
    #[oai(
        path = "/me/host-patterns",
        method = "get",
        operation_id = "get_host_patterns"
    )]
    async fn host_patterns(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
    ) -> Result<Json<HostPatterns>, ApiError> {
        // `Result` only so that the spec lists the 401 of a missing or bad credential.
        Ok(Json(HostPatterns {
            patterns: profile::stored_patterns(&caller.user)
                .into_iter()
                .map(Into::into)
                .collect(),
            global: profile::global_patterns(&state.config)
                .into_iter()
                .map(Into::into)
                .collect(),
        }))
    }

    /// Replace your host patterns
    ///
    /// Each regex is checked; errors name `host_patterns[i].regex` or `.suffix`.
    #[oai(
        path = "/me/host-patterns",
        method = "put",
        operation_id = "set_host_patterns"
    )]
    async fn set_host_patterns(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        body: JsonBody<SetHostPatterns>,
    ) -> Result<Json<HostPatterns>, ApiError> {
        let patterns: Vec<ServicePattern> = body.0.patterns.into_iter().map(Into::into).collect();
        let saved = profile::set_host_patterns(&state.db, &caller.actor, &patterns).await?;
        Ok(Json(HostPatterns {
            patterns: saved.into_iter().map(HostPattern::from).collect(),
            global: profile::global_patterns(&state.config)
                .into_iter()
                .map(Into::into)
                .collect(),
        }))
    }

    /// Your API tokens
    #[oai(path = "/me/tokens", method = "get", operation_id = "list_tokens")]
    async fn tokens(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
    ) -> Result<Json<Vec<Token>>, ApiError> {
        let list = tokens::list(&state.db, &caller.actor).await?;
        Ok(Json(list.into_iter().map(Into::into).collect()))
    }

    /// Create an API token
    ///
    /// The secret is in this response only; pymap stores just its hash. A token created
    /// with an expiring token expires no later than it (by default: at the same time).
    #[oai(path = "/me/tokens", method = "post", operation_id = "create_token")]
    async fn create_token(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        body: JsonBody<NewToken>,
    ) -> Result<TokenCreated, ApiError> {
        let b = body.0;
        let expires_at = match (b.expires_at, b.expires_in_days) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "expires_in_days",
                    "give expires_at or expires_in_days, not both",
                ));
            }
            (at, None) => at,
            (None, Some(days @ 1..=MAX_TOKEN_DAYS)) => {
                Some(Utc::now() + Duration::days(days as i64))
            }
            (None, Some(_)) => {
                return Err(ApiError::invalid(
                    "expires_in_days",
                    format!("must be 1 to {MAX_TOKEN_DAYS}"),
                ));
            }
        };
        let parent = match caller.via {
            Via::Token { expires_at, .. } => expires_at,
            Via::Session { .. } => None,
        };
        let expires_at = tokens::bounded_expiry(expires_at, parent)?;
        let created = tokens::create(&state.db, &caller.actor, &b.name, expires_at).await?;
        Ok(TokenCreated::Created(Json(CreatedToken {
            token: created.token.into(),
            secret: created.secret,
        })))
    }

    /// Revoke an API token
    #[oai(
        path = "/me/tokens/:token_id",
        method = "delete",
        operation_id = "revoke_token"
    )]
    async fn revoke_token(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        token_id: Path<i64>,
    ) -> Result<Done, ApiError> {
        tokens::revoke(&state.db, &caller.actor, token_id.0).await?;
        Ok(Done::Done)
    }
}
