//! The audit trail for admins: filters by user, action, object, outcome and time, newest
//! first, with cursor or page paging.

use chrono::{DateTime, Utc};
use entity::audit_event;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder,
};

use super::{Cursor, MAX_LIMIT, check_limit, page_offset, page_statement};
use crate::service::{Actor, Result, ServiceError};

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Acting user's name (as recorded, case-insensitive).
    pub user: Option<String>,
    /// An exact action (`task.cancel`), or a family ending in `.` or `*` (`task.`).
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// `success` or `failure`.
    pub outcome: Option<String>,
    /// From this instant (inclusive) …
    pub from: Option<DateTime<Utc>>,
    /// … to this one (exclusive).
    pub to: Option<DateTime<Utc>>,
    pub limit: u64,
    pub cursor: Option<String>,
    pub page: Option<u64>,
    pub with_total: bool,
}

#[derive(Clone, Debug)]
pub struct AuditPage {
    pub items: Vec<audit_event::Model>,
    pub next_cursor: Option<String>,
    pub total: Option<u64>,
}

fn text(v: &Option<String>, field: &str, max: usize) -> Result<Option<String>> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.chars().count() > max => Err(ServiceError::invalid(
            field,
            format!("must be at most {max} characters"),
        )),
        Some(s) => Ok(Some(s.to_string())),
    }
}

fn filters(q: &AuditQuery) -> Result<Condition> {
    let mut cond = Condition::all();
    if let Some(user) = text(&q.user, "user", 64)? {
        cond = cond.add(audit_event::Column::ActorName.eq(user.to_lowercase()));
    }
    if let Some(action) = text(&q.action, "action", 64)? {
        if let Some(family) = action
            .strip_suffix('*')
            .or_else(|| action.ends_with('.').then_some(action.as_str()))
        {
            if !family
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_'))
            {
                return Err(ServiceError::invalid(
                    "action",
                    "may only contain letters, digits, '.', '_' and a final '*'",
                ));
            }
            cond = cond.add(audit_event::Column::Action.starts_with(family));
        } else {
            cond = cond.add(audit_event::Column::Action.eq(action));
        }
    }
    if let Some(kind) = text(&q.object_type, "object_type", 32)? {
        cond = cond.add(audit_event::Column::ObjectType.eq(kind));
    }
    if let Some(id) = text(&q.object_id, "object_id", 128)? {
        cond = cond.add(audit_event::Column::ObjectId.eq(id));
    }
    match q.outcome.as_deref().map(str::trim) {
        None | Some("") => {}
        Some(o @ ("success" | "failure")) => {
            cond = cond.add(audit_event::Column::Outcome.eq(o));
        }
        Some(_) => {
            return Err(ServiceError::invalid(
                "outcome",
                "must be success or failure",
            ));
        }
    }
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(ServiceError::invalid("to", "must be later than from"));
    }
    if let Some(from) = q.from {
        cond = cond.add(audit_event::Column::At.gte(from));
    }
    if let Some(to) = q.to {
        cond = cond.add(audit_event::Column::At.lt(to));
    }
    Ok(cond)
}

/// One page of the audit trail, newest first. Admins only.
pub async fn list_audit(
    db: &DatabaseConnection,
    actor: &Actor,
    q: &AuditQuery,
) -> Result<AuditPage> {
    if !actor.is_admin() {
        return Err(ServiceError::Forbidden);
    }
    let limit = check_limit(q.limit, MAX_LIMIT)?;
    let cond = filters(q)?;
    let total = if q.with_total {
        Some(
            audit_event::Entity::find()
                .filter(cond.clone())
                .count(db)
                .await?,
        )
    } else {
        None
    };
    let key = "id.desc";
    let mut select = audit_event::Entity::find().filter(cond);
    let offset = match (&q.cursor, q.page) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "page",
                "give a cursor or a page, not both",
            ));
        }
        (Some(text), None) => {
            let cursor = Cursor::decode(text, key)?;
            select = select.filter(audit_event::Column::Id.lt(cursor.id));
            0
        }
        (None, page) => page_offset(page, limit)?,
    };
    let stmt = page_statement(
        select.order_by_desc(audit_event::Column::Id),
        db.get_database_backend(),
        limit + 1,
        offset,
    );
    let mut items = audit_event::Model::find_by_statement(stmt).all(db).await?;
    let next_cursor = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items.last().map(|last| {
            Cursor {
                k: key.into(),
                v: serde_json::Value::Null,
                id: last.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(AuditPage {
        items,
        next_cursor,
        total,
    })
}
