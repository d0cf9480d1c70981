//! Writing the jobs of a new task in bulk.
//!
//! The password ciphertexts are bound to the job's row id (associated data = id + field),
//! so an id must be known before the row is written. Inserting each row and then updating
//! it with its ciphertext cost two statements per job (2,000 round trips for a 1,000-line
//! batch, the bulk of the submit→start latency). Instead the ids are reserved first, inside
//! the same write transaction, and all rows go in with multi-row INSERTs.

use chrono::{DateTime, Utc};
use entity::job;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, FromQueryResult, Set, Statement,
};

use super::{Result, ServiceError, credentials, tasks::PlannedJob};
use crate::worker::status::JobStatus;

/// Rows per INSERT: 13 bound columns a row keeps far below SQLite's and PostgreSQL's
/// parameter limits, and a statement stays small enough to plan quickly.
const ROWS_PER_STATEMENT: usize = 250;

#[derive(FromQueryResult)]
struct Id {
    id: i64,
}

/// Reserves `n` job ids that no other transaction can take.
///
/// SQLite: the caller holds the write lock (`BEGIN IMMEDIATE`), so nobody else inserts
/// until commit; ids continue after both the highest id in use and the AUTOINCREMENT
/// counter, so ids of deleted jobs (whose log files were named after them) are never
/// reused. PostgreSQL: `nextval` hands out unique values to concurrent transactions.
async fn reserve_ids(txn: &DatabaseTransaction, n: usize) -> Result<Vec<i64>> {
    let backend = txn.get_database_backend();
    match backend {
        DbBackend::Postgres => {
            let stmt = Statement::from_sql_and_values(
                backend,
                "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) AS id \
                 FROM generate_series(1, $1)",
                [(n as i64).into()],
            );
            let ids: Vec<i64> = Id::find_by_statement(stmt)
                .all(txn)
                .await?
                .into_iter()
                .map(|r| r.id)
                .collect();
            if ids.len() != n {
                return Err(ServiceError::Internal(format!(
                    "reserved {} job ids instead of {n}",
                    ids.len()
                )));
            }
            Ok(ids)
        }
        _ => {
            let stmt = Statement::from_string(
                backend,
                "SELECT MAX( \
                   COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0), \
                   COALESCE((SELECT MAX(id) FROM jobs), 0)) AS id",
            );
            let base = Id::find_by_statement(stmt)
                .one(txn)
                .await?
                .map_or(0, |r| r.id);
            Ok((1..=n as i64).map(|i| base + i).collect())
        }
    }
}

/// Inserts the jobs of task `task_id`, in batch order, with their sealed passwords.
pub(super) async fn insert_jobs(
    txn: &DatabaseTransaction,
    credentials_key: &[u8; 32],
    task_id: i64,
    planned: &[PlannedJob],
    now: DateTime<Utc>,
) -> Result<()> {
    let ids = reserve_ids(txn, planned.len()).await?;
    let rows: Vec<job::ActiveModel> = planned
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, (p, &id))| job::ActiveModel {
            id: Set(id),
            task_id: Set(task_id),
            position: Set(i as i32 + 1),
            user1: Set(p.pair.user1.clone()),
            user2: Set(p.pair.user2.clone()),
            password1: Set(Some(credentials::encrypt(
                credentials_key,
                id,
                "password1",
                &p.pair.password1,
            ))),
            password2: Set(Some(credentials::encrypt(
                credentials_key,
                id,
                "password2",
                &p.pair.password2,
            ))),
            host1: Set(p.host1.clone()),
            host2: Set(p.host2.clone()),
            extra_args: Set(p
                .extra_args
                .as_ref()
                .map(|a| serde_json::to_string(a).expect("strings serialise"))),
            status: Set(JobStatus::Queued.as_str().into()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        job::Entity::insert_many(chunk.to_vec()).exec(txn).await?;
    }
    Ok(())
}
