//! `/preflight`: check a batch before submitting it (per-line results) and preview how a
//! typed host resolves.

use poem::web::Data;
use poem_openapi::{OpenApi, param::Query, payload::Json};

use super::{
    Tag,
    auth::Caller,
    body::JsonBody,
    error::ApiError,
    model::CreateTask,
    model_account::{HostResolution, PreflightLine, PreflightReport},
    params, task_env,
};
use crate::{
    service::tasks::{self, NewTask},
    state::AppState,
};

/// Why logins cannot be checked yet: imapsync has `--justlogin`, but only as a whole
/// migration run, and the native engine (which will check logins directly) is not there.
const NO_LOGIN_CHECK: &str = "no engine in this version can check logins without starting a \
    migration; the batch itself is valid. Check logins with a task whose options have \
    just_login: true, or call this with check_logins=false to see the resolved batch";

pub struct PreflightApi;

#[OpenApi(tag = "Tag::Preflight")]
impl PreflightApi {
    /// Check a batch before submitting it
    ///
    /// Validates the batch exactly like task creation (same per-line errors) and resolves
    /// every host. With `check_logins` (the default) it would also try both logins of
    /// every line; until an engine can do that, it answers 501 after validating.
    #[oai(
        path = "/preflight/credentials",
        method = "post",
        operation_id = "preflight_batch"
    )]
    async fn credentials(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        body: JsonBody<CreateTask>,
        /// Try the logins too (default true).
        check_logins: Query<Option<bool>>,
    ) -> Result<Json<PreflightReport>, ApiError> {
        let b = body.0;
        let (batch, map) = params::batch(b.batch, b.mailboxes)?;
        let new = NewTask {
            label: b.label.unwrap_or_default(),
            source: b.source,
            destination: b.destination,
            engine: b.engine.unwrap_or_else(|| "imapsync".into()),
            options: b.options.unwrap_or_default().into_options(),
            extra_args: b.extra_args.unwrap_or_default(),
            batch,
            owner: b.owner,
        };
        let plan = tasks::plan(&task_env(state), &caller.actor, new)
            .await
            .map_err(|e| match &map {
                Some(map) => map.remap(e),
                None => e,
            })?;
        if check_logins.0.unwrap_or(true) {
            return Err(ApiError::not_implemented(NO_LOGIN_CHECK));
        }
        let lines = plan
            .jobs
            .iter()
            .map(|j| PreflightLine {
                line: map
                    .as_ref()
                    .map_or(j.pair.line, |m| m.client_line(j.pair.line))
                    as u64,
                user1: j.pair.user1.clone(),
                user2: j.pair.user2.clone(),
                host1: j.host1.clone(),
                host2: j.host2.clone(),
                login: "unchecked".into(),
                message: None,
            })
            .collect::<Vec<_>>();
        Ok(Json(PreflightReport {
            mailboxes: lines.len() as u64,
            source: plan.source.into(),
            destination: plan.destination.into(),
            engine: plan.engine,
            lines,
            logins_checked: false,
        }))
    }

    /// Preview how a typed host resolves
    ///
    /// Applies your host patterns, then the global ones, and validates the result.
    #[oai(
        path = "/preflight/host",
        method = "get",
        operation_id = "resolve_host"
    )]
    async fn host(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        /// The host as typed, e.g. `mx1` or `imap.example.com:993`.
        host: Query<String>,
    ) -> Result<Json<HostResolution>, ApiError> {
        let r = tasks::preview_host(&state.db, &state.config, &caller.actor, &host.0).await?;
        Ok(Json(r.into()))
    }
}
