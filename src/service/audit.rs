//! The audit trail. Callers pass the transaction of the change they record, so the
//! change and its audit line commit or roll back together.

use chrono::Utc;
use entity::audit_event;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryOrder, QuerySelect, Set};

use super::{Actor, Result};

pub struct Entry<'a> {
    pub action: &'a str,
    pub object: Option<(&'a str, String)>,
    pub success: bool,
    pub detail: Option<String>,
}

impl<'a> Entry<'a> {
    pub fn ok(action: &'a str) -> Self {
        Self {
            action,
            object: None,
            success: true,
            detail: None,
        }
    }
    pub fn failed(action: &'a str) -> Self {
        Self {
            success: false,
            ..Self::ok(action)
        }
    }
    pub fn on(mut self, kind: &'a str, id: impl ToString) -> Self {
        self.object = Some((kind, id.to_string()));
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

pub async fn record(conn: &impl ConnectionTrait, actor: &Actor, entry: Entry<'_>) -> Result<()> {
    let (object_type, object_id) = match entry.object {
        Some((kind, id)) => (Some(kind.to_string()), Some(id)),
        None => (None, None),
    };
    audit_event::ActiveModel {
        at: Set(Utc::now()),
        actor_id: Set(actor.id),
        actor_name: Set(actor.name.clone()),
        action: Set(entry.action.to_string()),
        object_type: Set(object_type),
        object_id: Set(object_id),
        client_addr: Set(actor.addr.map(|a| a.to_string())),
        outcome: Set(if entry.success { "success" } else { "failure" }.to_string()),
        detail: Set(entry.detail),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Newest first. Filters and paging arrive with the admin pages.
pub async fn recent(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<audit_event::Model>> {
    Ok(audit_event::Entity::find()
        .order_by_desc(audit_event::Column::Id)
        .limit(limit)
        .all(conn)
        .await?)
}
