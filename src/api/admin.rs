//! Admin endpoints (users, audit trail, system) and the dashboard counts.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use sea_orm::DbBackend;

use super::{
    Tag,
    auth::Caller,
    body::JsonBody,
    error::ApiError,
    model_account::{
        AuditList, Dashboard, DiskInfo, EngineInfo, NewUser, PasswordReset, PoolInfo, QueueInfo,
        Role, System, User, UserPatch,
    },
    params,
};
use crate::{
    service::{
        self, accounts,
        query::{self, AuditQuery, PoolUsage},
    },
    state::AppState,
};

#[derive(ApiResponse)]
pub enum UserCreated {
    #[oai(status = 201)]
    Created(Json<User>),
}

#[derive(ApiResponse)]
pub enum Done {
    #[oai(status = 204)]
    Done,
}

/// Engine versions cost a process start each; they are kept for a few minutes.
static ENGINES: Mutex<Option<(Instant, Vec<EngineInfo>)>> = Mutex::new(None);
const ENGINES_TTL: Duration = Duration::from_secs(300);

async fn engines(state: &AppState) -> Vec<EngineInfo> {
    if let Some((at, list)) = ENGINES.lock().expect("engines cache").as_ref()
        && at.elapsed() < ENGINES_TTL
    {
        return list.clone();
    }
    let engines = state.pool.engines().clone();
    let list = tokio::task::spawn_blocking(move || {
        ["imapsync", "native"]
            .into_iter()
            .map(|name| match engines.get(name) {
                Ok(engine) => match engine.version() {
                    Ok(v) => EngineInfo {
                        name: name.into(),
                        available: true,
                        version: Some(v),
                        reason: None,
                    },
                    Err(why) => EngineInfo {
                        name: name.into(),
                        available: false,
                        version: None,
                        reason: Some(why),
                    },
                },
                Err(why) => EngineInfo {
                    name: name.into(),
                    available: false,
                    version: None,
                    reason: Some(why),
                },
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    *ENGINES.lock().expect("engines cache") = Some((Instant::now(), list.clone()));
    list
}

fn pool_usage(state: &AppState) -> PoolUsage {
    PoolUsage {
        concurrency: state.config.workers.concurrency,
        running_here: state.pool.running_jobs(),
    }
}

pub struct AdminApi;

#[OpenApi]
impl AdminApi {
    /// List users (admins)
    #[oai(
        path = "/users",
        method = "get",
        operation_id = "list_users",
        tag = "Tag::Users"
    )]
    async fn users(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
    ) -> Result<Json<Vec<User>>, ApiError> {
        let users = accounts::list(&state.db, &caller.actor).await?;
        Ok(Json(users.into_iter().map(Into::into).collect()))
    }

    /// Create a user (admins)
    #[oai(
        path = "/users",
        method = "post",
        operation_id = "create_user",
        tag = "Tag::Users"
    )]
    async fn create_user(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        body: JsonBody<NewUser>,
    ) -> Result<UserCreated, ApiError> {
        let b = body.0;
        let role = b.role.unwrap_or(Role::User).into();
        let user = accounts::create(&state.db, &caller.actor, &b.name, &b.password, role).await?;
        Ok(UserCreated::Created(Json(user.into())))
    }

    /// Disable, enable or change the role of a user (admins)
    #[oai(
        path = "/users/:name",
        method = "patch",
        operation_id = "update_user",
        tag = "Tag::Users"
    )]
    async fn update_user(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        name: Path<String>,
        body: JsonBody<UserPatch>,
    ) -> Result<Json<User>, ApiError> {
        caller.require_admin()?;
        let b = body.0;
        if let Some(disabled) = b.disabled {
            accounts::set_disabled(&state.db, &caller.actor, &name.0, disabled).await?;
        }
        if let Some(role) = b.role {
            accounts::set_role(&state.db, &caller.actor, &name.0, role.into()).await?;
        }
        let user = accounts::find_by_name(&state.db, &name.0)
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(Json(user.into()))
    }

    /// Reset a user's password (admins)
    #[oai(
        path = "/users/:name/password",
        method = "put",
        operation_id = "reset_password",
        tag = "Tag::Users"
    )]
    async fn reset_password(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        name: Path<String>,
        body: JsonBody<PasswordReset>,
    ) -> Result<Done, ApiError> {
        accounts::set_password(&state.db, &caller.actor, &name.0, &body.0.password).await?;
        Ok(Done::Done)
    }

    /// The audit trail (admins)
    ///
    /// Newest first. `action` is exact (`task.cancel`) or a family (`task.`).
    #[oai(
        path = "/audit",
        method = "get",
        operation_id = "list_audit",
        tag = "Tag::Audit"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        /// Acting user's name.
        user: Query<Option<String>>,
        action: Query<Option<String>>,
        /// e.g. `task`, `job`, `user`, `token`.
        object_type: Query<Option<String>>,
        object_id: Query<Option<String>>,
        /// `success` or `failure`.
        outcome: Query<Option<String>>,
        /// From (inclusive): RFC 3339 instant or date.
        from: Query<Option<String>>,
        /// To (exclusive): RFC 3339 instant or date.
        to: Query<Option<String>>,
        limit: Query<Option<u64>>,
        cursor: Query<Option<String>>,
        page: Query<Option<u64>>,
        total: Query<Option<bool>>,
    ) -> Result<Json<AuditList>, ApiError> {
        caller.require_admin()?;
        let q = AuditQuery {
            user: user.0,
            action: action.0,
            object_type: object_type.0,
            object_id: object_id.0,
            outcome: outcome.0,
            from: params::instant("from", from.0.as_deref())?,
            to: params::instant("to", to.0.as_deref())?,
            limit: limit.0.unwrap_or(0),
            cursor: cursor.0.filter(|c| !c.is_empty()),
            page: page.0,
            with_total: total.0.unwrap_or(false),
        };
        let page = query::list_audit(&state.db, &caller.actor, &q).await?;
        Ok(Json(AuditList {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
            total: page.total,
        }))
    }

    /// System: version, engines, pool, queue and disk space (admins)
    #[oai(
        path = "/system",
        method = "get",
        operation_id = "get_system",
        tag = "Tag::System"
    )]
    async fn system(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
    ) -> Result<Json<System>, ApiError> {
        caller.require_admin()?;
        let queue = query::queue_counts(&state.db).await?;
        let workers = &state.config.workers;
        let config = &state.config;
        let (data_dir, log_dir) = (config.data_dir.clone(), config.log_dir());
        let disk = DiskInfo::new(
            data_dir.display().to_string(),
            log_dir.display().to_string(),
            &service::disk::report(data_dir, log_dir).await,
        );
        Ok(Json(System {
            version: env!("CARGO_PKG_VERSION").into(),
            engines: engines(state).await,
            pool: PoolInfo {
                concurrency: workers.concurrency as u64,
                per_source_host: workers.per_source_host as u64,
                per_destination_host: workers.per_destination_host as u64,
                running_here: state.pool.running_jobs() as u64,
            },
            queue: QueueInfo {
                queued: queue.queued,
                ready: queue.ready,
                running: queue.running,
            },
            database: match state.db.get_database_backend() {
                DbBackend::Postgres => "postgres",
                _ => "sqlite",
            }
            .into(),
            redis: state.redis.is_some(),
            disk,
        }))
    }

    /// Dashboard counts
    ///
    /// Your tasks, or everyone's for admins.
    #[oai(
        path = "/dashboard",
        method = "get",
        operation_id = "get_dashboard",
        tag = "Tag::System"
    )]
    async fn dashboard(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
    ) -> Result<Json<Dashboard>, ApiError> {
        let d = service::query::dashboard(&state.db, &caller.actor, pool_usage(state)).await?;
        Ok(Json(d.into()))
    }
}
