//! The verifier's last result per job: status (`running`, `identical`, `differs`,
//! `error`), the report as JSON, and when it was started (while running) or finished.
//! All nullable: a job that was never verified has none.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    VerifyStatus,
    VerifyReport,
    VerifiedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds only one at a time.
        for column in [
            string_null(Jobs::VerifyStatus),
            text_null(Jobs::VerifyReport),
            timestamp_with_time_zone_null(Jobs::VerifiedAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Jobs::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Jobs::VerifiedAt, Jobs::VerifyReport, Jobs::VerifyStatus] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Jobs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
