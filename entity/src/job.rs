//! One mailbox pair of a task, and everything known about its runs.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub task_id: i64,
    /// Line order in the batch (1-based).
    pub position: i32,
    pub user1: String,
    pub user2: String,
    /// XChaCha20-Poly1305 (nonce ‖ ciphertext), bound to this row and field; NULL once wiped.
    pub password1: Option<Vec<u8>>,
    pub password2: Option<Vec<u8>>,
    /// Effective hosts of this pair (task hosts unless the CSV row overrode them).
    pub host1: String,
    pub host2: String,
    /// Extra imapsync arguments of this row (JSON array), validated.
    pub extra_args: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub cancel_requested: bool,
    /// Worker that runs it, and when that worker last said it is alive.
    pub claimed_by: Option<String>,
    pub heartbeat_at: Option<DateTimeUtc>,
    pub exit_code: Option<i32>,
    pub exit_name: Option<String>,
    pub reason: Option<String>,
    /// JSON array of error lines (capped).
    pub errors: Option<String>,
    pub messages_done: i64,
    pub messages_total: Option<i64>,
    pub bytes_done: i64,
    pub bytes_total: Option<i64>,
    pub folder_index: Option<i32>,
    pub folder_count: Option<i32>,
    pub folder_name: Option<String>,
    pub eta_secs: Option<i64>,
    pub messages_transferred: Option<i64>,
    pub messages_skipped: Option<i64>,
    pub errors_count: Option<i64>,
    pub bytes_transferred: Option<i64>,
    pub duration_secs: Option<f64>,
    /// imapsync's "sync looks good" verdict (None when not printed).
    pub sync_ok: Option<bool>,
    pub unidentified: Option<i64>,
    /// Full run summary as JSON.
    pub summary: Option<String>,
    pub log_path: Option<String>,
    /// Last verification: `running`, `identical`, `differs` or `error` (None: never).
    pub verify_status: Option<String>,
    /// Its report (the verifier's JSON), once finished.
    pub verify_report: Option<String>,
    /// When it started (while `running`) or finished.
    pub verified_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::task::Entity",
        from = "Column::TaskId",
        to = "super::task::Column::Id",
        on_delete = "Cascade"
    )]
    Task,
}

impl Related<super::task::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Task.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
