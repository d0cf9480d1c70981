//! Task and job listings with filters, sorting and pagination.

use entity::{job, task, user};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, JoinType,
    PaginatorTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, RelationDef, Select, Value,
    sea_query::{Expr, ExprTrait, Func, Query, SimpleExpr},
};

use super::{
    Cursor, MAX_JOB_LIMIT, MAX_LIMIT, SortDir, check_limit, contains_pattern, page_offset,
    page_statement,
};
use crate::{
    service::{Actor, Result, ServiceError, accounts::normalize_name},
    worker::status::JobStatus,
};

/// Which tasks to show with respect to archiving.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArchivedFilter {
    /// Only tasks that are not archived (the default view).
    #[default]
    Exclude,
    /// Only archived tasks.
    Only,
    /// Both.
    Include,
}

/// Sort keys of the task list; ties are broken by id in the same direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskSort {
    /// Creation order (the id).
    #[default]
    Created,
    Label,
    Status,
    Mailboxes,
    Source,
    Destination,
    RunTime,
}

impl TaskSort {
    pub const ALL: [TaskSort; 7] = [
        TaskSort::Created,
        TaskSort::Label,
        TaskSort::Status,
        TaskSort::Mailboxes,
        TaskSort::Source,
        TaskSort::Destination,
        TaskSort::RunTime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskSort::Created => "created",
            TaskSort::Label => "label",
            TaskSort::Status => "status",
            TaskSort::Mailboxes => "mailboxes",
            TaskSort::Source => "source",
            TaskSort::Destination => "destination",
            TaskSort::RunTime => "run_time",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The column sorted on, with whether its values are text; `None` for the id.
    fn column(self) -> Option<(task::Column, bool)> {
        match self {
            TaskSort::Created => None,
            TaskSort::Label => Some((task::Column::Label, true)),
            TaskSort::Status => Some((task::Column::Status, true)),
            TaskSort::Mailboxes => Some((task::Column::JobsTotal, false)),
            TaskSort::Source => Some((task::Column::Source, true)),
            TaskSort::Destination => Some((task::Column::Destination, true)),
            TaskSort::RunTime => Some((task::Column::RunTimeSecs, false)),
        }
    }

    fn value_of(self, t: &task::Model) -> serde_json::Value {
        match self {
            TaskSort::Created => serde_json::Value::Null,
            TaskSort::Label => t.label.clone().into(),
            TaskSort::Status => t.status.clone().into(),
            TaskSort::Mailboxes => t.jobs_total.into(),
            TaskSort::Source => t.source.clone().into(),
            TaskSort::Destination => t.destination.clone().into(),
            TaskSort::RunTime => t.run_time_secs.into(),
        }
    }
}

/// What to list. `Default` is the first page of the caller's visible, unarchived tasks,
/// newest first.
#[derive(Clone, Debug, Default)]
pub struct TaskQuery {
    /// Any of these statuses (empty: all).
    pub statuses: Vec<JobStatus>,
    /// Owner's user name. Admins may name anyone; others only themselves.
    pub owner: Option<String>,
    pub archived: ArchivedFilter,
    /// Case-insensitive text in the label, the hosts, or a mailbox user name of the task
    /// (a number also matches the task id).
    pub search: Option<String>,
    pub sort: TaskSort,
    pub dir: SortDir,
    /// Rows per page (0: default).
    pub limit: u64,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1-based page number, instead of a cursor.
    pub page: Option<u64>,
    /// Also count all matching tasks (a second query).
    pub with_total: bool,
}

/// A task with its owner's name.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRow {
    pub task: task::Model,
    /// `None` only if the owner's account was removed from the database by hand.
    pub owner_name: Option<String>,
}

/// Decoded by position: [`with_owner`] selects the task's columns in `task::Column` order
/// (sea-orm's `find()`), then the owner's name. Why not by name (the derive): that looks
/// every column of every row up by a freshly formatted name, a tenth of the CPU of a
/// page of tasks. `Column as usize` is the column's place in that order, so no field can
/// be read from a neighbour's position.
impl FromQueryResult for TaskRow {
    fn from_query_result(res: &QueryResult, _pre: &str) -> std::result::Result<Self, DbErr> {
        use task::Column as C;
        let at = |c: C| c as usize;
        let task = task::Model {
            id: res.try_get_by_index(at(C::Id))?,
            owner_id: res.try_get_by_index(at(C::OwnerId))?,
            label: res.try_get_by_index(at(C::Label))?,
            source_typed: res.try_get_by_index(at(C::SourceTyped))?,
            destination_typed: res.try_get_by_index(at(C::DestinationTyped))?,
            source: res.try_get_by_index(at(C::Source))?,
            destination: res.try_get_by_index(at(C::Destination))?,
            engine: res.try_get_by_index(at(C::Engine))?,
            options: res.try_get_by_index(at(C::Options))?,
            status: res.try_get_by_index(at(C::Status))?,
            jobs_total: res.try_get_by_index(at(C::JobsTotal))?,
            jobs_queued: res.try_get_by_index(at(C::JobsQueued))?,
            jobs_running: res.try_get_by_index(at(C::JobsRunning))?,
            jobs_succeeded: res.try_get_by_index(at(C::JobsSucceeded))?,
            jobs_warning: res.try_get_by_index(at(C::JobsWarning))?,
            jobs_failed: res.try_get_by_index(at(C::JobsFailed))?,
            jobs_cancelled: res.try_get_by_index(at(C::JobsCancelled))?,
            cancel_requested: res.try_get_by_index(at(C::CancelRequested))?,
            archived: res.try_get_by_index(at(C::Archived))?,
            created_at: res.try_get_by_index(at(C::CreatedAt))?,
            started_at: res.try_get_by_index(at(C::StartedAt))?,
            finished_at: res.try_get_by_index(at(C::FinishedAt))?,
            run_time_secs: res.try_get_by_index(at(C::RunTimeSecs))?,
            credentials_wiped_at: res.try_get_by_index(at(C::CredentialsWipedAt))?,
        };
        Ok(TaskRow {
            task,
            owner_name: res.try_get_by_index(task_columns())?,
        })
    }
}

/// How many columns a task has (the owner's name comes right after them).
fn task_columns() -> usize {
    use sea_orm::Iterable;
    task::Column::iter().count()
}

#[derive(Clone, Debug)]
pub struct TaskPage {
    pub items: Vec<TaskRow>,
    /// Give this back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    pub total: Option<u64>,
}

fn owner_join() -> RelationDef {
    task::Entity::belongs_to(user::Entity)
        .from(task::Column::OwnerId)
        .to(user::Column::Id)
        .into()
}

/// Tasks joined with their owner's name.
fn with_owner() -> Select<task::Entity> {
    task::Entity::find()
        .column_as(Expr::col((user::Entity, user::Column::Name)), "owner_name")
        .join(JoinType::LeftJoin, owner_join())
}

fn lower_like(column: SimpleExpr, pattern: &sea_orm::sea_query::LikeExpr) -> SimpleExpr {
    Expr::expr(Func::lower(column)).like(pattern.clone())
}

/// The WHERE clause of a listing: visibility, then the filters.
fn filters(actor: &Actor, q: &TaskQuery) -> Result<Condition> {
    let mut cond = Condition::all();
    if !actor.is_admin() {
        cond = cond.add(task::Column::OwnerId.eq(actor.id.ok_or(ServiceError::Forbidden)?));
    }
    if let Some(owner) = q.owner.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let name = normalize_name(owner)
            .map_err(|_| ServiceError::invalid("owner", "is not a user name"))?;
        if !actor.is_admin() && name != actor.name {
            return Err(ServiceError::Forbidden);
        }
        cond = cond.add(
            task::Column::OwnerId.in_subquery(
                Query::select()
                    .column(user::Column::Id)
                    .from(user::Entity)
                    .and_where(Expr::col((user::Entity, user::Column::Name)).eq(name))
                    .to_owned(),
            ),
        );
    }
    cond = match q.archived {
        ArchivedFilter::Exclude => cond.add(task::Column::Archived.eq(false)),
        ArchivedFilter::Only => cond.add(task::Column::Archived.eq(true)),
        ArchivedFilter::Include => cond,
    };
    if !q.statuses.is_empty() {
        cond = cond.add(task::Column::Status.is_in(q.statuses.iter().map(|s| s.as_str())));
    }
    if let Some(pattern) = contains_pattern(q.search.as_deref())? {
        let col = |c: task::Column| Expr::col((task::Entity, c));
        let mut any = Condition::any()
            .add(lower_like(col(task::Column::Label), &pattern))
            .add(lower_like(col(task::Column::Source), &pattern))
            .add(lower_like(col(task::Column::Destination), &pattern))
            .add(lower_like(col(task::Column::SourceTyped), &pattern))
            .add(lower_like(col(task::Column::DestinationTyped), &pattern));
        let jcol = |c: job::Column| Expr::col((job::Entity, c));
        any = any.add(
            task::Column::Id.in_subquery(
                Query::select()
                    .column(job::Column::TaskId)
                    .from(job::Entity)
                    .cond_where(
                        Condition::any()
                            .add(lower_like(jcol(job::Column::User1), &pattern))
                            .add(lower_like(jcol(job::Column::User2), &pattern)),
                    )
                    .to_owned(),
            ),
        );
        let text = q.search.as_deref().unwrap_or_default().trim();
        if let Ok(id) = text.trim_start_matches('#').parse::<i64>() {
            any = any.add(task::Column::Id.eq(id));
        }
        cond = cond.add(any);
    }
    Ok(cond)
}

/// Rows strictly after the cursor in the listing's order.
fn after(sort: TaskSort, dir: SortDir, cursor: &Cursor) -> Result<Condition> {
    let bad = || ServiceError::invalid("cursor", "is not a cursor of this listing");
    let beyond = |col: task::Column, v: Value| match dir {
        SortDir::Asc => col.gt(v),
        SortDir::Desc => col.lt(v),
    };
    let id_after = beyond(task::Column::Id, cursor.id.into());
    let Some((col, text)) = sort.column() else {
        return Ok(Condition::all().add(id_after));
    };
    let value: Value = match (&cursor.v, text) {
        (serde_json::Value::String(s), true) => s.clone().into(),
        (serde_json::Value::Number(n), false) => n.as_i64().ok_or_else(bad)?.into(),
        _ => return Err(bad()),
    };
    Ok(Condition::any()
        .add(beyond(col, value.clone()))
        .add(Condition::all().add(col.eq(value)).add(id_after)))
}

/// One page of the tasks the actor may see.
pub async fn list_tasks(db: &DatabaseConnection, actor: &Actor, q: &TaskQuery) -> Result<TaskPage> {
    let limit = check_limit(q.limit, MAX_LIMIT)?;
    let key = format!("{}.{}", q.sort.as_str(), q.dir.as_str());
    let cond = filters(actor, q)?;
    let total = if q.with_total {
        Some(task::Entity::find().filter(cond.clone()).count(db).await?)
    } else {
        None
    };
    let mut select = with_owner().filter(cond);
    let offset = match (&q.cursor, q.page) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "page",
                "give a cursor or a page, not both",
            ));
        }
        (Some(text), None) => {
            let cursor = Cursor::decode(text, &key)?;
            select = select.filter(after(q.sort, q.dir, &cursor)?);
            0
        }
        (None, page) => page_offset(page, limit)?,
    };
    if let Some((col, _)) = q.sort.column() {
        select = select.order_by(col, q.dir.order());
    }
    let select = select.order_by(task::Column::Id, q.dir.order());
    let stmt = page_statement(select, db.get_database_backend(), limit + 1, offset);
    let mut items = TaskRow::find_by_statement(stmt).all(db).await?;
    let next_cursor = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| {
            Cursor {
                k: key,
                v: q.sort.value_of(&last.task),
                id: last.task.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(TaskPage {
        items,
        next_cursor,
        total,
    })
}

/// One task with its owner's name, if the actor may see it (else `NotFound`).
pub async fn task_row(db: &DatabaseConnection, actor: &Actor, task_id: i64) -> Result<TaskRow> {
    let row = with_owner()
        .filter(task::Column::Id.eq(task_id))
        .into_model::<TaskRow>()
        .one(db)
        .await?
        .ok_or(ServiceError::NotFound)?;
    if actor.is_admin() || Some(row.task.owner_id) == actor.id {
        Ok(row)
    } else {
        Err(ServiceError::NotFound)
    }
}

/// What jobs of a task to list, in batch order.
#[derive(Clone, Debug, Default)]
pub struct JobQuery {
    pub statuses: Vec<JobStatus>,
    /// Case-insensitive text in either user name or host.
    pub search: Option<String>,
    /// Rows per page (0: default); at most [`MAX_JOB_LIMIT`].
    pub limit: u64,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub struct JobPage {
    pub items: Vec<job::Model>,
    pub next_cursor: Option<String>,
}

/// One page of a task's jobs, if the actor may see the task.
pub async fn list_jobs(
    db: &DatabaseConnection,
    actor: &Actor,
    task_id: i64,
    q: &JobQuery,
) -> Result<JobPage> {
    let limit = check_limit(q.limit, MAX_JOB_LIMIT)?;
    crate::service::tasks::get(db, actor, task_id).await?;
    let key = "position.asc";
    let mut select = job::Entity::find().filter(job::Column::TaskId.eq(task_id));
    if !q.statuses.is_empty() {
        select = select.filter(job::Column::Status.is_in(q.statuses.iter().map(|s| s.as_str())));
    }
    if let Some(pattern) = contains_pattern(q.search.as_deref())? {
        let col = |c: job::Column| Expr::col((job::Entity, c));
        select = select.filter(
            Condition::any()
                .add(lower_like(col(job::Column::User1), &pattern))
                .add(lower_like(col(job::Column::User2), &pattern))
                .add(lower_like(col(job::Column::Host1), &pattern))
                .add(lower_like(col(job::Column::Host2), &pattern)),
        );
    }
    if let Some(text) = &q.cursor {
        let cursor = Cursor::decode(text, key)?;
        let position = cursor
            .v
            .as_i64()
            .ok_or_else(|| ServiceError::invalid("cursor", "is not a cursor of this listing"))?;
        select = select.filter(job::Column::Position.gt(position));
    }
    let stmt = page_statement(
        select.order_by_asc(job::Column::Position),
        db.get_database_backend(),
        limit + 1,
        0,
    );
    let mut items = job::Model::find_by_statement(stmt).all(db).await?;
    let next_cursor = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| {
            Cursor {
                k: key.into(),
                v: last.position.into(),
                id: last.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(JobPage { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, Iterable, QueryTrait};

    use super::*;

    /// `TaskRow` reads by position: the query must list the task's columns in
    /// `task::Column` order and then the owner's name, on both backends.
    #[test]
    fn task_rows_are_selected_in_column_order() {
        use sea_orm::IdenStatic;
        let mut expected: Vec<String> = task::Column::iter()
            .map(|c| format!("\"tasks\".\"{}\"", c.as_str()))
            .collect();
        expected.push("\"users\".\"name\" AS \"owner_name\"".into());
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let sql = with_owner().build(backend).sql;
            let list = sql
                .strip_prefix("SELECT ")
                .and_then(|rest| rest.split(" FROM ").next())
                .unwrap_or_default();
            let columns: Vec<&str> = list.split(", ").collect();
            assert_eq!(columns, expected, "{backend:?}: {sql}");
            assert_eq!(task_columns(), expected.len() - 1);
        }
        for (i, c) in task::Column::iter().enumerate() {
            assert_eq!(c as usize, i);
        }
    }
}
