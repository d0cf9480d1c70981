//! The REST API (`/api/v1`), described by OpenAPI (`/api/openapi.json`, `.yaml`) with
//! interactive docs at `/api/doc`, all served from the binary.
//!
//! Handlers parse the request, call `service/` and shape the answer; they hold no
//! business rules. Every failure is an [`ApiError`] rendered by [`render`] as
//! `{code, message, request_id, details[]}`.

mod admin;
mod auth;
mod body;
mod direct_json;
mod docs;
pub mod error;
mod events;
mod jobs;
mod me;
pub mod metrics;
mod model;
mod model_account;
mod model_verify;
mod params;
mod preflight;
mod stored_options;
mod tasks;

pub use auth::{Caller, Via};
pub use error::{ApiError, ErrorBody, ErrorDetail};

use poem::{Endpoint, EndpointExt, IntoResponse, PathPattern, Request, Response, Route};
use poem_openapi::{OpenApiService, Tags};

use crate::{service::tasks::TaskEnv, state::AppState, web::RequestId};

/// Largest request body (a CSV upload of a big batch fits comfortably).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Version of the API contract (not of pymap).
pub const API_VERSION: &str = "1.0";

#[derive(Tags)]
pub enum Tag {
    /// Batches of mailbox migrations.
    Tasks,
    /// One mailbox pair each: status, progress, logs.
    Jobs,
    /// Check a batch before submitting it.
    Preflight,
    /// Your account, host patterns and API tokens.
    Me,
    /// Accounts (admins).
    Users,
    /// The audit trail (admins).
    Audit,
    /// Dashboard counts, engines, pool and queue.
    System,
    /// Live progress over Server-Sent Events.
    Events,
}

pub type Apis = (
    tasks::TasksApi,
    jobs::JobsApi,
    preflight::PreflightApi,
    me::MeApi,
    admin::AdminApi,
    events::EventsApi,
);

/// The OpenAPI service (also used to produce the spec in tests).
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            tasks::TasksApi,
            jobs::JobsApi,
            preflight::PreflightApi,
            me::MeApi,
            admin::AdminApi,
            events::EventsApi,
        ),
        "pymap",
        API_VERSION,
    )
    .description(
        "Migrate IMAP mailboxes in batches. Authenticate with `Authorization: Bearer <token>` \
         (create one with POST /me/tokens) or the web UI's session cookie plus the \
         `X-CSRF-Token` header for unsafe methods. Every error has the body \
         `{code, message, request_id, details[]}`.",
    )
    .server("/api/v1")
}

/// The spec as JSON.
pub fn spec_json() -> String {
    service().spec()
}

/// Everything under `/api`.
pub fn routes() -> impl Endpoint {
    let api = service();
    let json = api.spec();
    let yaml = api.spec_yaml();
    let docs = docs::endpoint(&api);
    Route::new()
        .at(
            "/openapi.json",
            poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(json.clone())
            }),
        )
        .at(
            "/openapi.yaml",
            poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("application/yaml")
                    .body(yaml.clone())
            }),
        )
        .nest("/doc", docs)
        .nest("/v1", api)
        .around(render)
}

/// Refuse oversized bodies up front and turn every error into the JSON error body with
/// the request id (keeping the route template for the latency metrics).
async fn render<E: Endpoint>(ep: E, mut req: Request) -> poem::Result<Response> {
    let rid = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Ok(ApiError::payload_too_large(MAX_BODY).into_response_with(&rid));
    }
    if declared.is_none()
        && !matches!(
            *req.method(),
            poem::http::Method::GET | poem::http::Method::HEAD
        )
    {
        // A chunked body is cut after the limit (and then fails to parse) rather than
        // filling memory or the disk.
        use tokio::io::AsyncReadExt;
        let body = req.take_body().into_async_read().take(MAX_BODY as u64 + 1);
        req.set_body(poem::Body::from_async_read(body));
    }
    match ep.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err) => {
            let pattern = err.data::<PathPattern>().cloned();
            let mut resp = error::classify(&err).into_response_with(&rid);
            if let Some(p) = pattern {
                resp.set_data(p);
            }
            Ok(resp)
        }
    }
}

/// What task creation needs from the state.
fn task_env(state: &AppState) -> TaskEnv<'_> {
    TaskEnv {
        db: &state.db,
        config: &state.config,
        credentials_key: &state.keys.credentials,
        engines: state.pool.engines(),
    }
}
