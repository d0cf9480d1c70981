//! API tokens, and the indexes the task/job/audit listings need to stay fast with tens of
//! thousands of rows (one indexed range scan per page).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    UserId,
    Name,
    Prefix,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    OwnerId,
    Archived,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    TaskId,
    Status,
    FinishedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    ActorName,
}

/// (name, table, columns) of every index this migration adds.
fn indexes() -> Vec<(&'static str, DynIden, Vec<DynIden>)> {
    vec![
        (
            "idx_api_tokens_user",
            ApiTokens::Table.into_iden(),
            vec![ApiTokens::UserId.into_iden()],
        ),
        // A user's tasks, newest first, with or without archived ones.
        (
            "idx_tasks_owner_archived_id",
            Tasks::Table.into_iden(),
            vec![
                Tasks::OwnerId.into_iden(),
                Tasks::Archived.into_iden(),
                Tasks::Id.into_iden(),
            ],
        ),
        // Everyone's tasks (admins), newest first.
        (
            "idx_tasks_archived_id",
            Tasks::Table.into_iden(),
            vec![Tasks::Archived.into_iden(), Tasks::Id.into_iden()],
        ),
        // Failed jobs of a task (retry failed, report filters).
        (
            "idx_jobs_task_status",
            Jobs::Table.into_iden(),
            vec![Jobs::TaskId.into_iden(), Jobs::Status.into_iden()],
        ),
        // Dashboard: what ended in the last 24 hours.
        (
            "idx_jobs_finished",
            Jobs::Table.into_iden(),
            vec![Jobs::FinishedAt.into_iden()],
        ),
        // Audit trail filtered by user name, newest first.
        (
            "idx_audit_events_actor_name",
            AuditEvents::Table.into_iden(),
            vec![
                AuditEvents::ActorName.into_iden(),
                AuditEvents::Id.into_iden(),
            ],
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .col(big_pk_auto(ApiTokens::Id))
                    .col(big_integer(ApiTokens::UserId))
                    .col(string(ApiTokens::Name))
                    .col(string(ApiTokens::Prefix))
                    .col(string_uniq(ApiTokens::TokenHash))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiTokens::Table, ApiTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, table, columns) in indexes() {
            let mut index = Index::create();
            index.name(name).table(table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in indexes().into_iter().skip(1) {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ApiTokens::Table).to_owned())
            .await
    }
}
