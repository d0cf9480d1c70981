//! An account that can log in to pymap.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Lower-cased login name, unique.
    #[sea_orm(unique)]
    pub name: String,
    /// argon2id PHC string; never the password itself.
    pub password_hash: String,
    /// `admin` or `user`.
    pub role: String,
    pub disabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_login_at: Option<DateTimeUtc>,
    /// The user's own HOSTS patterns, JSON `[[regex, suffix], …]`, tried before the global ones.
    pub host_patterns: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
