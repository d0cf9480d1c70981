//! One line of the audit trail: who did what to which object, when, from where, and how
//! it ended. Written in the same transaction as the change it records.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    /// The acting user, when known (a failed login for an unknown name has none).
    pub actor_id: Option<i64>,
    /// Name as typed or `system`/`cli`; kept even if the user is later renamed or deleted.
    pub actor_name: String,
    /// Dotted verb such as `login.failure` or `user.create`.
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub client_addr: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Short human detail (never a secret).
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
