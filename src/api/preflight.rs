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
    service::{login_check, tasks},
    state::AppState,
    worker::native::NativeOptions,
};

pub struct PreflightApi;

#[OpenApi(tag = "Tag::Preflight")]
impl PreflightApi {
    /// Check a batch before submitting it
    ///
    /// Validates the batch exactly like task creation (same per-line errors) and resolves
    /// every host. With `check_logins` (the default) it also logs in on both sides of
    /// every line with pymap's own IMAP client (8 lines at a time, each login bounded)
    /// and logs out again; nothing is created either way.
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
        let (new, lines) = params::new_task(body.0)?;
        let plan = tasks::plan(&task_env(state), &caller.actor, new)
            .await
            .map_err(|e| lines.remap(e))?;
        let checked = if check_logins.0.unwrap_or(true) {
            // The pool's native engine runs with the default options too (see `app.rs`).
            Some(login_check::check_plan(&plan, &NativeOptions::default()).await)
        } else {
            None
        };
        let lines = plan
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let result = checked.as_ref().map(|c| &c[i]);
                PreflightLine {
                    line: lines.client_line(j.pair.line) as u64,
                    user1: j.pair.user1.clone(),
                    user2: j.pair.user2.clone(),
                    host1: j.host1.clone(),
                    host2: j.host2.clone(),
                    login: match result {
                        None => "unchecked",
                        Some(r) if r.ok() => "ok",
                        Some(_) => "failed",
                    }
                    .into(),
                    message: result.filter(|r| !r.ok()).map(|r| r.summary()),
                    source_login: result.map(|r| (&r.source).into()),
                    destination_login: result.map(|r| (&r.destination).into()),
                }
            })
            .collect::<Vec<_>>();
        Ok(Json(PreflightReport {
            mailboxes: lines.len() as u64,
            source: plan.source.into(),
            destination: plan.destination.into(),
            engine: plan.engine,
            lines,
            logins_checked: checked.is_some(),
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
