//! Tasks (batches), jobs (mailbox pairs) and per-user host patterns.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    HostPatterns,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    OwnerId,
    Label,
    SourceTyped,
    DestinationTyped,
    Source,
    Destination,
    Engine,
    Options,
    Status,
    JobsTotal,
    JobsQueued,
    JobsRunning,
    JobsSucceeded,
    JobsWarning,
    JobsFailed,
    JobsCancelled,
    CancelRequested,
    Archived,
    CreatedAt,
    StartedAt,
    FinishedAt,
    RunTimeSecs,
    CredentialsWipedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    TaskId,
    Position,
    User1,
    User2,
    Password1,
    Password2,
    Host1,
    Host2,
    ExtraArgs,
    Status,
    Attempts,
    NextAttemptAt,
    CancelRequested,
    ClaimedBy,
    HeartbeatAt,
    ExitCode,
    ExitName,
    Reason,
    Errors,
    MessagesDone,
    MessagesTotal,
    BytesDone,
    BytesTotal,
    FolderIndex,
    FolderCount,
    FolderName,
    EtaSecs,
    MessagesTransferred,
    MessagesSkipped,
    ErrorsCount,
    BytesTransferred,
    DurationSecs,
    SyncOk,
    Unidentified,
    Summary,
    LogPath,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UsersRef {
    #[sea_orm(iden = "users")]
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(string(Users::HostPatterns).default("[]"))
                    .to_owned(),
            )
            .await?;
        let counts = [
            Tasks::JobsTotal,
            Tasks::JobsQueued,
            Tasks::JobsRunning,
            Tasks::JobsSucceeded,
            Tasks::JobsWarning,
            Tasks::JobsFailed,
            Tasks::JobsCancelled,
        ];
        let mut tasks = Table::create();
        tasks
            .table(Tasks::Table)
            .col(big_pk_auto(Tasks::Id))
            .col(big_integer(Tasks::OwnerId))
            .col(string(Tasks::Label))
            .col(string(Tasks::SourceTyped))
            .col(string(Tasks::DestinationTyped))
            .col(string(Tasks::Source))
            .col(string(Tasks::Destination))
            .col(string(Tasks::Engine))
            .col(text(Tasks::Options))
            .col(string(Tasks::Status));
        for c in counts {
            tasks.col(integer(c).default(0));
        }
        tasks
            .col(boolean(Tasks::CancelRequested).default(false))
            .col(boolean(Tasks::Archived).default(false))
            .col(timestamp_with_time_zone(Tasks::CreatedAt))
            .col(timestamp_with_time_zone_null(Tasks::StartedAt))
            .col(timestamp_with_time_zone_null(Tasks::FinishedAt))
            .col(big_integer(Tasks::RunTimeSecs).default(0))
            .col(timestamp_with_time_zone_null(Tasks::CredentialsWipedAt))
            .foreign_key(
                ForeignKey::create()
                    .from(Tasks::Table, Tasks::OwnerId)
                    .to(UsersRef::Table, UsersRef::Id),
            );
        manager.create_table(tasks.to_owned()).await?;

        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(big_pk_auto(Jobs::Id))
                    .col(big_integer(Jobs::TaskId))
                    .col(integer(Jobs::Position))
                    .col(string(Jobs::User1))
                    .col(string(Jobs::User2))
                    .col(blob_null(Jobs::Password1))
                    .col(blob_null(Jobs::Password2))
                    .col(string(Jobs::Host1))
                    .col(string(Jobs::Host2))
                    .col(text_null(Jobs::ExtraArgs))
                    .col(string(Jobs::Status))
                    .col(integer(Jobs::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(Jobs::NextAttemptAt))
                    .col(boolean(Jobs::CancelRequested).default(false))
                    .col(string_null(Jobs::ClaimedBy))
                    .col(timestamp_with_time_zone_null(Jobs::HeartbeatAt))
                    .col(integer_null(Jobs::ExitCode))
                    .col(string_null(Jobs::ExitName))
                    .col(text_null(Jobs::Reason))
                    .col(text_null(Jobs::Errors))
                    .col(big_integer(Jobs::MessagesDone).default(0))
                    .col(big_integer_null(Jobs::MessagesTotal))
                    .col(big_integer(Jobs::BytesDone).default(0))
                    .col(big_integer_null(Jobs::BytesTotal))
                    .col(integer_null(Jobs::FolderIndex))
                    .col(integer_null(Jobs::FolderCount))
                    .col(string_null(Jobs::FolderName))
                    .col(big_integer_null(Jobs::EtaSecs))
                    .col(big_integer_null(Jobs::MessagesTransferred))
                    .col(big_integer_null(Jobs::MessagesSkipped))
                    .col(big_integer_null(Jobs::ErrorsCount))
                    .col(big_integer_null(Jobs::BytesTransferred))
                    .col(double_null(Jobs::DurationSecs))
                    .col(boolean_null(Jobs::SyncOk))
                    .col(big_integer_null(Jobs::Unidentified))
                    .col(text_null(Jobs::Summary))
                    .col(string_null(Jobs::LogPath))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone_null(Jobs::StartedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Jobs::Table, Jobs::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        let indexes: [(&str, Tasks); 3] = [
            ("idx_tasks_owner", Tasks::OwnerId),
            ("idx_tasks_status", Tasks::Status),
            ("idx_tasks_created", Tasks::CreatedAt),
        ];
        for (name, col) in indexes {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Tasks::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_task_position")
                    .table(Jobs::Table)
                    .col(Jobs::TaskId)
                    .col(Jobs::Position)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_status")
                    .table(Jobs::Table)
                    .col(Jobs::Status)
                    .col(Jobs::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Tasks::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::HostPatterns)
                    .to_owned(),
            )
            .await
    }
}
