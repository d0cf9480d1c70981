//! `/tasks`: create (JSON or CSV upload), list, get, cancel, retry failed, archive,
//! delete, report (JSON and CSV), and a task's jobs.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, Multipart, OpenApi,
    param::{Path, Query},
    payload::{Binary, Json},
    types::multipart::{JsonField, Upload},
};

use super::{
    Tag,
    auth::Caller,
    body::JsonBody,
    direct_json::DirectJson,
    error::ApiError,
    model::{CreateTask, JobList, OptionsInput, Report, RetryResult, Task, TaskList},
    params, task_env,
};
use crate::{
    service::{
        job_state,
        query::{self, JobQuery, TaskQuery},
        task_actions,
        tasks::{self, BatchInput, NewTask},
    },
    state::AppState,
};

#[derive(ApiResponse)]
pub enum CreatedTask {
    /// The task was created and queued.
    #[oai(status = 201)]
    Created(Json<Task>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
pub enum CsvReport {
    /// The per-mailbox report as CSV.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Csv(
        Binary<Vec<u8>>,
        #[oai(header = "content-disposition")] String,
    ),
}

/// A new task from an uploaded CSV file (columns user1, password1, user2, password2,
/// host1, host2, options).
#[derive(Multipart)]
pub struct CreateTaskCsv {
    pub file: Upload,
    pub source: String,
    pub destination: String,
    pub label: Option<String>,
    pub engine: Option<String>,
    /// JSON object of migration options.
    pub options: Option<JsonField<OptionsInput>>,
    pub extra_args: Option<String>,
    pub owner: Option<String>,
}

/// Largest uploaded batch file.
const MAX_UPLOAD: usize = 8 * 1024 * 1024;

pub struct TasksApi;

#[OpenApi(tag = "Tag::Tasks")]
impl TasksApi {
    /// Create a task from a JSON batch
    ///
    /// Validates everything first (hosts, options, every batch line) and creates nothing
    /// unless all of it is valid; errors name each field and batch line.
    #[oai(path = "/tasks", method = "post", operation_id = "create_task")]
    async fn create(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        body: JsonBody<CreateTask>,
    ) -> Result<CreatedTask, ApiError> {
        let (new, lines) = params::new_task(body.0)?;
        let task = tasks::create(&task_env(state), &caller.actor, new)
            .await
            .map_err(|e| lines.remap(e))?;
        state.pool.wake();
        let row = query::task_row(&state.db, &caller.actor, task.id).await?;
        Ok(CreatedTask::Created(Json(row.into())))
    }

    /// Create a task from an uploaded CSV file
    #[oai(path = "/tasks/csv", method = "post", operation_id = "create_task_csv")]
    async fn create_csv(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        form: CreateTaskCsv,
    ) -> Result<CreatedTask, ApiError> {
        if form.file.size() > MAX_UPLOAD {
            return Err(ApiError::invalid(
                "file",
                format!("must be at most {} MiB", MAX_UPLOAD / 1024 / 1024),
            ));
        }
        let bytes = form
            .file
            .into_vec()
            .await
            .map_err(|e| ApiError::internal(format!("reading an upload: {e}")))?;
        let new = NewTask {
            label: form.label.unwrap_or_default(),
            source: form.source,
            destination: form.destination,
            engine: form.engine.unwrap_or_else(|| "imapsync".into()),
            options: form.options.map(|o| o.0).unwrap_or_default().into_options(),
            extra_args: form.extra_args.unwrap_or_default(),
            batch: BatchInput::Csv(bytes),
            owner: form.owner,
        };
        let task = tasks::create(&task_env(state), &caller.actor, new).await?;
        state.pool.wake();
        let row = query::task_row(&state.db, &caller.actor, task.id).await?;
        Ok(CreatedTask::Created(Json(row.into())))
    }

    /// List tasks
    ///
    /// Your tasks, or everyone's for admins (filter with `owner`). Newest first unless
    /// sorted otherwise. Page with `cursor` (from `next_cursor`) or `page`.
    #[oai(path = "/tasks", method = "get", operation_id = "list_tasks")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        /// Comma-separated statuses: queued, running, succeeded, warning, failed, cancelled.
        status: Query<Option<String>>,
        /// Owner's user name (admins; others may only name themselves).
        owner: Query<Option<String>>,
        /// `false` (default): hide archived; `true`: only archived; `all`.
        archived: Query<Option<String>>,
        /// Text in the label, a host or a mailbox user name; or a task id.
        q: Query<Option<String>>,
        /// created (default), label, status, mailboxes, source, destination, run_time.
        sort: Query<Option<String>>,
        /// desc (default) or asc.
        order: Query<Option<String>>,
        /// Rows per page, 1 to 200 (default 50).
        limit: Query<Option<u64>>,
        cursor: Query<Option<String>>,
        /// 1-based page number (instead of a cursor).
        page: Query<Option<u64>>,
        /// Also count all matching tasks.
        total: Query<Option<bool>>,
    ) -> Result<DirectJson<TaskList>, ApiError> {
        let query = TaskQuery {
            statuses: params::statuses(status.0.as_deref())?,
            owner: owner.0,
            archived: params::archived(archived.0.as_deref())?,
            search: q.0,
            sort: params::sort(sort.0.as_deref())?,
            dir: params::order(order.0.as_deref())?,
            limit: limit.0.unwrap_or(0),
            cursor: cursor.0.filter(|c| !c.is_empty()),
            page: page.0,
            with_total: total.0.unwrap_or(false),
        };
        let page = query::list_tasks(&state.db, &caller.actor, &query).await?;
        Ok(DirectJson(TaskList {
            items: page.items.into_iter().map(Task::from).collect(),
            next_cursor: page.next_cursor,
            total: page.total,
        }))
    }

    /// Get a task
    #[oai(path = "/tasks/:task_id", method = "get", operation_id = "get_task")]
    async fn get(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
    ) -> Result<DirectJson<Task>, ApiError> {
        let row = query::task_row(&state.db, &caller.actor, task_id.0).await?;
        Ok(DirectJson(row.into()))
    }

    /// Cancel a task
    ///
    /// Queued jobs never start; running ones are stopped.
    #[oai(
        path = "/tasks/:task_id/cancel",
        method = "post",
        operation_id = "cancel_task"
    )]
    async fn cancel(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
    ) -> Result<Json<Task>, ApiError> {
        job_state::cancel_task(&state.db, &state.events, &caller.actor, task_id.0).await?;
        let row = query::task_row(&state.db, &caller.actor, task_id.0).await?;
        Ok(Json(row.into()))
    }

    /// Retry the failed jobs of a task
    #[oai(
        path = "/tasks/:task_id/retry-failed",
        method = "post",
        operation_id = "retry_failed_jobs"
    )]
    async fn retry_failed(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
    ) -> Result<Json<RetryResult>, ApiError> {
        let queued = job_state::retry_failed(
            &state.db,
            &state.keys.credentials,
            &state.events,
            &caller.actor,
            task_id.0,
        )
        .await?;
        state.pool.wake();
        Ok(Json(RetryResult {
            queued: queued as u64,
        }))
    }

    /// Archive a finished task
    #[oai(
        path = "/tasks/:task_id/archive",
        method = "post",
        operation_id = "archive_task"
    )]
    async fn archive(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
    ) -> Result<Json<Task>, ApiError> {
        task_actions::set_archived(&state.db, &state.events, &caller.actor, task_id.0, true)
            .await?;
        let row = query::task_row(&state.db, &caller.actor, task_id.0).await?;
        Ok(Json(row.into()))
    }

    /// Unarchive a task
    #[oai(
        path = "/tasks/:task_id/unarchive",
        method = "post",
        operation_id = "unarchive_task"
    )]
    async fn unarchive(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
    ) -> Result<Json<Task>, ApiError> {
        task_actions::set_archived(&state.db, &state.events, &caller.actor, task_id.0, false)
            .await?;
        let row = query::task_row(&state.db, &caller.actor, task_id.0).await?;
        Ok(Json(row.into()))
    }

    /// Delete a finished task (admins)
    ///
    /// Removes the task, its jobs, their stored credentials and their logs.
    #[oai(
        path = "/tasks/:task_id",
        method = "delete",
        operation_id = "delete_task"
    )]
    async fn delete(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
    ) -> Result<Deleted, ApiError> {
        task_actions::delete(&state.db, &caller.actor, task_id.0, &state.config.log_dir()).await?;
        Ok(Deleted::Deleted)
    }

    /// Per-mailbox report
    #[oai(
        path = "/tasks/:task_id/report",
        method = "get",
        operation_id = "task_report"
    )]
    async fn report(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
    ) -> Result<Json<Report>, ApiError> {
        let row = query::task_row(&state.db, &caller.actor, task_id.0).await?;
        let (_, rows) = query::report(&state.db, &caller.actor, task_id.0).await?;
        Ok(Json(Report {
            task: row.into(),
            rows: rows.into_iter().map(Into::into).collect(),
        }))
    }

    /// Per-mailbox report as CSV
    #[oai(
        path = "/tasks/:task_id/report.csv",
        method = "get",
        operation_id = "task_report_csv"
    )]
    async fn report_csv(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
    ) -> Result<CsvReport, ApiError> {
        let (task, rows) = query::report(&state.db, &caller.actor, task_id.0).await?;
        Ok(CsvReport::Csv(
            Binary(query::report_csv(&rows)),
            format!("attachment; filename=\"pymap-task-{}-report.csv\"", task.id),
        ))
    }

    /// List a task's jobs
    ///
    /// In batch order; page with `cursor`.
    #[oai(
        path = "/tasks/:task_id/jobs",
        method = "get",
        operation_id = "list_jobs"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn jobs(
        &self,
        caller: Caller,
        Data(state): Data<&AppState>,
        task_id: Path<i64>,
        /// Comma-separated statuses.
        status: Query<Option<String>>,
        /// Text in a user name or host.
        q: Query<Option<String>>,
        /// Rows per page, 1 to 1000 (default 50).
        limit: Query<Option<u64>>,
        cursor: Query<Option<String>>,
    ) -> Result<Json<JobList>, ApiError> {
        let query = JobQuery {
            statuses: params::statuses(status.0.as_deref())?,
            search: q.0,
            limit: limit.0.unwrap_or(0),
            cursor: cursor.0.filter(|c| !c.is_empty()),
        };
        let page = query::list_jobs(&state.db, &caller.actor, task_id.0, &query).await?;
        Ok(Json(JobList {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }))
    }
}
