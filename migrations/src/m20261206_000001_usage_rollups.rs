//! Usage rollups (issue 12): the AI usage of each organization summed per
//! closed UTC day, so that orgUsage reads a few rows per day instead of
//! every journal entry of its range.
//!
//! - `usage_user_days`: per organization, day and user (perUser, perTeam).
//! - `usage_org_days`: per organization, day and feature (`''`: none)
//!   (totals, byFeature, trend).
//! - `usage_rollup_days`: which (organization, day) is rolled up. Its row is
//!   written in the same transaction as the day's sums, and its primary key
//!   is the claim: a day is rolled up once, whichever replica gets there
//!   first.
//! - `usage_user_months` and `usage_rollup_months`: the same per user for
//!   whole UTC months whose every day is rolled up, summed from their days,
//!   so that a long range reads a row per user and month.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsageUserDays {
    Table,
    OrgId,
    Day,
    UserId,
}

#[derive(DeriveIden)]
enum UsageOrgDays {
    Table,
    OrgId,
    Day,
    Feature,
}

#[derive(DeriveIden)]
enum UsageRollupDays {
    Table,
    OrgId,
    Day,
    BuiltAt,
}

#[derive(DeriveIden)]
enum UsageUserMonths {
    Table,
    OrgId,
    Month,
    UserId,
}

#[derive(DeriveIden)]
enum UsageRollupMonths {
    Table,
    OrgId,
    Month,
    BuiltAt,
}

#[derive(DeriveIden)]
enum Sums {
    Credits,
    CreditsAvoided,
    Requests,
    ByokRequests,
    InputTokens,
    OutputTokens,
    PermanentSpent,
}

fn with_sums(t: &mut TableCreateStatement) -> &mut TableCreateStatement {
    for col in [
        Sums::Credits,
        Sums::CreditsAvoided,
        Sums::Requests,
        Sums::ByokRequests,
        Sums::InputTokens,
        Sums::OutputTokens,
        Sums::PermanentSpent,
    ] {
        t.col(ColumnDef::new(col).big_integer().not_null());
    }
    t
}

/// Creates `table`; on SQLite `WITHOUT ROWID`, so that its rows are stored
/// in primary key order (organization, day, ...) and a range of days is
/// read in one sweep, with no lookup from an index into the table.
async fn create_clustered(manager: &SchemaManager<'_>, table: &mut TableCreateStatement) -> Result<(), DbErr> {
    if manager.get_database_backend() == DbBackend::Sqlite {
        let sql = format!("{} WITHOUT ROWID", table.to_string(SqliteQueryBuilder));
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    } else {
        manager.create_table(table.to_owned()).await
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_clustered(
            manager,
            with_sums(
                Table::create()
                    .table(UsageUserDays::Table)
                    .col(ColumnDef::new(UsageUserDays::OrgId).string().not_null())
                    .col(ColumnDef::new(UsageUserDays::Day).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(UsageUserDays::UserId).string().not_null()),
            )
            .primary_key(
                Index::create()
                    .col(UsageUserDays::OrgId)
                    .col(UsageUserDays::Day)
                    .col(UsageUserDays::UserId),
            ),
        )
        .await?;
        create_clustered(
            manager,
            with_sums(
                Table::create()
                    .table(UsageOrgDays::Table)
                    .col(ColumnDef::new(UsageOrgDays::OrgId).string().not_null())
                    .col(ColumnDef::new(UsageOrgDays::Day).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(UsageOrgDays::Feature).string().not_null()),
            )
            .primary_key(
                Index::create()
                    .col(UsageOrgDays::OrgId)
                    .col(UsageOrgDays::Day)
                    .col(UsageOrgDays::Feature),
            ),
        )
        .await?;
        create_clustered(
            manager,
            with_sums(
                Table::create()
                    .table(UsageUserMonths::Table)
                    .col(ColumnDef::new(UsageUserMonths::OrgId).string().not_null())
                    .col(
                        ColumnDef::new(UsageUserMonths::Month)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(UsageUserMonths::UserId).string().not_null()),
            )
            .primary_key(
                Index::create()
                    .col(UsageUserMonths::OrgId)
                    .col(UsageUserMonths::Month)
                    .col(UsageUserMonths::UserId),
            ),
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageRollupMonths::Table)
                    .col(ColumnDef::new(UsageRollupMonths::OrgId).string().not_null())
                    .col(
                        ColumnDef::new(UsageRollupMonths::Month)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UsageRollupMonths::BuiltAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(UsageRollupMonths::OrgId)
                            .col(UsageRollupMonths::Month),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsageRollupDays::Table)
                    .col(ColumnDef::new(UsageRollupDays::OrgId).string().not_null())
                    .col(
                        ColumnDef::new(UsageRollupDays::Day)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UsageRollupDays::BuiltAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(UsageRollupDays::OrgId).col(UsageRollupDays::Day))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UsageRollupMonths::Table.into_iden(),
            UsageUserMonths::Table.into_iden(),
            UsageRollupDays::Table.into_iden(),
            UsageOrgDays::Table.into_iden(),
            UsageUserDays::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
