//! A batch: one source, one destination, options, and one job per mailbox pair.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub owner_id: i64,
    pub label: String,
    /// As the user typed them.
    pub source_typed: String,
    pub destination_typed: String,
    /// After HOSTS expansion and validation (`host` or `host:port`).
    pub source: String,
    pub destination: String,
    /// `imapsync` or `native`.
    pub engine: String,
    /// `MigrationOptions` as JSON.
    pub options: String,
    /// `queued`, `running`, `succeeded`, `warning`, `failed`, `cancelled`.
    pub status: String,
    pub jobs_total: i32,
    pub jobs_queued: i32,
    pub jobs_running: i32,
    pub jobs_succeeded: i32,
    pub jobs_warning: i32,
    pub jobs_failed: i32,
    pub jobs_cancelled: i32,
    pub cancel_requested: bool,
    pub archived: bool,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// Sum of the jobs' run times.
    pub run_time_secs: i64,
    pub credentials_wiped_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::job::Entity")]
    Job,
}

impl Related<super::job::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Job.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
