//! The per-mailbox report of a task (JSON rows and CSV export).

use chrono::{DateTime, Utc};
use entity::{job, task};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::service::{Actor, Result};

/// One mailbox pair and how its last run ended. No credentials.
#[derive(Clone, Debug, PartialEq, FromQueryResult, serde::Serialize)]
pub struct ReportRow {
    pub id: i64,
    pub position: i32,
    pub user1: String,
    pub user2: String,
    pub host1: String,
    pub host2: String,
    pub status: String,
    pub attempts: i32,
    pub exit_code: Option<i32>,
    pub exit_name: Option<String>,
    pub reason: Option<String>,
    pub messages_transferred: Option<i64>,
    pub messages_skipped: Option<i64>,
    pub errors_count: Option<i64>,
    pub bytes_transferred: Option<i64>,
    pub duration_secs: Option<f64>,
    pub sync_ok: Option<bool>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The task and one row per mailbox, in batch order.
pub async fn report(
    db: &DatabaseConnection,
    actor: &Actor,
    task_id: i64,
) -> Result<(task::Model, Vec<ReportRow>)> {
    let task = crate::service::tasks::get(db, actor, task_id).await?;
    use job::Column as C;
    let rows = job::Entity::find()
        .select_only()
        .columns([
            C::Id,
            C::Position,
            C::User1,
            C::User2,
            C::Host1,
            C::Host2,
            C::Status,
            C::Attempts,
            C::ExitCode,
            C::ExitName,
            C::Reason,
            C::MessagesTransferred,
            C::MessagesSkipped,
            C::ErrorsCount,
            C::BytesTransferred,
            C::DurationSecs,
            C::SyncOk,
            C::StartedAt,
            C::FinishedAt,
        ])
        .filter(C::TaskId.eq(task_id))
        .order_by_asc(C::Position)
        .into_model::<ReportRow>()
        .all(db)
        .await?;
    Ok((task, rows))
}

/// Spreadsheets run cells starting with these as formulas; such text gets a leading `'`.
fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

pub const CSV_COLUMNS: [&str; 19] = [
    "id",
    "position",
    "user1",
    "user2",
    "host1",
    "host2",
    "status",
    "attempts",
    "exit_code",
    "exit_name",
    "reason",
    "messages_transferred",
    "messages_skipped",
    "errors_count",
    "bytes_transferred",
    "duration_secs",
    "sync_ok",
    "started_at",
    "finished_at",
];

/// The report as CSV (RFC 4180, header row first), safe to open in a spreadsheet.
pub fn report_csv(rows: &[ReportRow]) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, record: Vec<String>| {
        out.write_record(&record).expect("writing to memory");
    };
    write(
        &mut out,
        CSV_COLUMNS.iter().map(|c| c.to_string()).collect(),
    );
    for r in rows {
        write(
            &mut out,
            vec![
                r.id.to_string(),
                r.position.to_string(),
                cell(&r.user1),
                cell(&r.user2),
                cell(&r.host1),
                cell(&r.host2),
                r.status.clone(),
                r.attempts.to_string(),
                opt(&r.exit_code),
                cell(&opt(&r.exit_name)),
                cell(&opt(&r.reason)),
                opt(&r.messages_transferred),
                opt(&r.messages_skipped),
                opt(&r.errors_count),
                opt(&r.bytes_transferred),
                r.duration_secs
                    .map(|d| format!("{d:.1}"))
                    .unwrap_or_default(),
                opt(&r.sync_ok),
                r.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                r.finished_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            ],
        );
    }
    out.into_inner().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused() {
        let row = ReportRow {
            id: 1,
            position: 1,
            user1: "=HYPERLINK(\"x\")".into(),
            user2: "bob@example.com".into(),
            host1: "a".into(),
            host2: "b".into(),
            status: "failed".into(),
            attempts: 1,
            exit_code: Some(161),
            exit_name: Some("EXIT_AUTHENTICATION_FAILURE_USER1".into()),
            reason: Some("Login failed, with \"quotes\", commas".into()),
            messages_transferred: None,
            messages_skipped: None,
            errors_count: Some(1),
            bytes_transferred: None,
            duration_secs: Some(1.25),
            sync_ok: None,
            started_at: None,
            finished_at: None,
        };
        let text = String::from_utf8(report_csv(&[row])).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("id,position,user1"));
        let line = lines.next().unwrap();
        assert!(line.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{line}");
        assert!(
            line.contains("\"Login failed, with \"\"quotes\"\", commas\""),
            "{line}"
        );
        assert!(line.contains(",1.2,") || line.contains(",1.3,"), "{line}");
    }
}
