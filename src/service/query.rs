//! Read models for lists, dashboards, reports and the audit trail, shared by the web UI
//! and the REST API.
//!
//! Every listing is one indexed query per page (task rows carry their owner's name through
//! a join, never a lookup per row) with keyset ("cursor") pagination that stays fast on
//! deep pages, or classic page numbers for UIs that show them. Counting the total is a
//! second query and only done on request.

mod audit;
mod report;
mod stats;
mod tasks;

pub use audit::{AuditPage, AuditQuery, list_audit};
pub use report::{ReportRow, report, report_csv};
pub use stats::{
    Dashboard, JobTotals, PoolUsage, QueueCounts, dashboard, job_totals, queue_counts,
};
pub use tasks::{
    ArchivedFilter, JobPage, JobQuery, TaskPage, TaskQuery, TaskRow, TaskSort, list_jobs,
    list_tasks, task_row,
};

use sea_orm::{DbBackend, sea_query::LikeExpr};
use serde::{Deserialize, Serialize};

use super::{Result, ServiceError};

/// Rows per page unless asked otherwise.
pub const DEFAULT_LIMIT: u64 = 50;
/// Most rows of a task or audit page.
pub const MAX_LIMIT: u64 = 200;
/// Most jobs per page (a task detail page may show a whole batch).
pub const MAX_JOB_LIMIT: u64 = 1000;
/// Deepest page number (offset paging gets slow; use the cursor beyond).
pub const MAX_PAGE: u64 = 10_000;
/// Longest search text.
pub const MAX_SEARCH_CHARS: usize = 200;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    #[default]
    Desc,
}

impl SortDir {
    pub fn as_str(self) -> &'static str {
        match self {
            SortDir::Asc => "asc",
            SortDir::Desc => "desc",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "asc" => Some(SortDir::Asc),
            "desc" => Some(SortDir::Desc),
            _ => None,
        }
    }

    fn order(self) -> sea_orm::Order {
        match self {
            SortDir::Asc => sea_orm::Order::Asc,
            SortDir::Desc => sea_orm::Order::Desc,
        }
    }
}

/// Position after the last row of a page: the sort key it was made for, that row's sort
/// value and id. Opaque to clients (hex of JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// Sort key and direction, e.g. `label.asc`.
    k: String,
    /// The sort value of the last row (absent when sorting by id).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    v: serde_json::Value,
    id: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).expect("cursors serialise"))
    }

    /// Decode a cursor given back by a client; it must belong to `key`.
    fn decode(text: &str, key: &str) -> Result<Self> {
        let bad = || ServiceError::invalid("cursor", "is not a cursor of this listing");
        if text.len() > 4096 {
            return Err(bad());
        }
        let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if cursor.k != key {
            return Err(ServiceError::invalid(
                "cursor",
                "belongs to another sort order; start again without a cursor",
            ));
        }
        Ok(cursor)
    }
}

/// `limit` as asked (0 = default), checked against `max`.
fn check_limit(limit: u64, max: u64) -> Result<u64> {
    match limit {
        0 => Ok(DEFAULT_LIMIT.min(max)),
        n if n <= max => Ok(n),
        _ => Err(ServiceError::invalid(
            "limit",
            format!("must be 1 to {max}"),
        )),
    }
}

/// Rows to skip for a 1-based page number.
fn page_offset(page: Option<u64>, limit: u64) -> Result<u64> {
    match page {
        None => Ok(0),
        Some(p @ 1..=MAX_PAGE) => Ok((p - 1) * limit),
        Some(_) => Err(ServiceError::invalid(
            "page",
            format!("must be 1 to {MAX_PAGE}; use the cursor for deeper pages"),
        )),
    }
}

/// A case-insensitive "contains" pattern for LIKE on a LOWER(...) column, with `%`, `_`
/// and `\` in the search text taken literally. `None` for a blank search.
fn contains_pattern(search: Option<&str>) -> Result<Option<LikeExpr>> {
    let Some(text) = search.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_SEARCH_CHARS {
        return Err(ServiceError::invalid(
            "q",
            format!("must be at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Ok(Some(LikeExpr::new(pattern).escape('\\')))
}

/// The statement of a page query with `LIMIT` (and `OFFSET`) written into the SQL as
/// numbers instead of bound parameters (sea-query binds them).
///
/// Why: PostgreSQL plans a prepared statement anew on every execution while a custom plan
/// looks cheaper than the generic one, and with `LIMIT $n` it always does (the generic
/// plan must assume a large limit), so every page request paid for planning (0.6 ms,
/// more than running the query). With a literal limit it settles on the generic plan
/// after five executions. The numbers are checked integers, never text from a client.
/// `select` must carry no limit or offset of its own.
fn page_statement<Q: sea_orm::QueryTrait>(
    select: Q,
    backend: DbBackend,
    limit: u64,
    offset: u64,
) -> sea_orm::Statement {
    let mut stmt = select.build(backend);
    stmt.sql.push_str(&format!(" LIMIT {limit}"));
    if offset > 0 {
        stmt.sql.push_str(&format!(" OFFSET {offset}"));
    }
    stmt
}

/// Write `?` placeholders the way the backend wants them (`$1`, `$2`… on PostgreSQL).
fn placeholders(backend: DbBackend, sql: &str) -> String {
    if backend != DbBackend::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_sort() {
        let c = Cursor {
            k: "label.asc".into(),
            v: serde_json::json!("Mail 2024"),
            id: 42,
        };
        let text = c.encode();
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(Cursor::decode(&text, "label.asc").unwrap(), c);
        assert!(Cursor::decode(&text, "label.desc").is_err());
        assert!(Cursor::decode("zz", "label.asc").is_err());
        assert!(Cursor::decode(&hex::encode("{}"), "label.asc").is_err());
    }

    #[test]
    fn limits_and_pages_are_checked() {
        assert_eq!(check_limit(0, MAX_LIMIT).unwrap(), DEFAULT_LIMIT);
        assert_eq!(check_limit(200, MAX_LIMIT).unwrap(), 200);
        assert!(check_limit(201, MAX_LIMIT).is_err());
        assert_eq!(page_offset(Some(3), 50).unwrap(), 100);
        assert!(page_offset(Some(0), 50).is_err());
        assert!(page_offset(Some(MAX_PAGE + 1), 50).is_err());
    }

    #[test]
    fn search_patterns_escape_wildcards() {
        assert!(contains_pattern(Some("   ")).unwrap().is_none());
        assert!(contains_pattern(Some(&"x".repeat(201))).is_err());
        assert!(contains_pattern(Some("50%_a\\b")).unwrap().is_some());
    }

    /// The limit and offset are part of the SQL text, not parameters (PostgreSQL keeps a
    /// generic plan only then), and the filter's parameters are untouched.
    #[test]
    fn page_limits_are_written_as_numbers() {
        use entity::task;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            let select = || task::Entity::find().filter(task::Column::Archived.eq(false));
            let first = page_statement(select(), backend, 51, 0);
            assert!(first.sql.ends_with(" LIMIT 51"), "{}", first.sql);
            assert_eq!(first.values.as_ref().map(|v| v.0.len()), Some(1));
            let deeper = page_statement(select(), backend, 51, 100);
            assert!(
                deeper.sql.ends_with(" LIMIT 51 OFFSET 100"),
                "{}",
                deeper.sql
            );
            assert_eq!(deeper.values, first.values);
        }
    }

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            placeholders(DbBackend::Postgres, "a = ? AND b = ?"),
            "a = $1 AND b = $2"
        );
        assert_eq!(placeholders(DbBackend::Sqlite, "a = ?"), "a = ?");
    }
}
