//! Schema history. Each migration is a file named by date; never edit one that shipped.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_accounts;
mod m20261123_000002_tasks_jobs;
mod m20261123_000003_api_tokens;
mod m20261123_000004_job_verification;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_accounts::Migration),
            Box::new(m20261123_000002_tasks_jobs::Migration),
            Box::new(m20261123_000003_api_tokens::Migration),
            Box::new(m20261123_000004_job_verification::Migration),
        ]
    }
}
