//! Spend limits (admins' issue): an admin's monthly cap on the credits a
//! member or a team may consume, with the counter of what was consumed (or
//! is held) against it in the current billing cycle. A hold updates the
//! counter in its own transaction, so concurrent holds of different wallets
//! of one team serialize on the team's row.
//!
//! Also the indexes the usage aggregations need: AI usage of an
//! organization in a time range, and the members of an organization by team.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SpendLimits {
    Table,
    OrgId,
    /// `user:<id>` or `team:<name>`: one limit per member or team.
    Scope,
    UserId,
    Team,
    MonthlyCredits,
    Spent,
    CycleStart,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JournalEntries {
    Table,
    OrgId,
    Kind,
    At,
    UserId,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    OrgId,
    Team,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SpendLimits::Table)
                    .col(ColumnDef::new(SpendLimits::OrgId).string().not_null())
                    .col(ColumnDef::new(SpendLimits::Scope).string().not_null())
                    .col(ColumnDef::new(SpendLimits::UserId).string().null())
                    .col(ColumnDef::new(SpendLimits::Team).string().null())
                    .col(ColumnDef::new(SpendLimits::MonthlyCredits).big_integer().not_null())
                    .col(ColumnDef::new(SpendLimits::Spent).big_integer().not_null().default(0))
                    .col(
                        ColumnDef::new(SpendLimits::CycleStart)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SpendLimits::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(SpendLimits::OrgId).col(SpendLimits::Scope))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journal_org_kind_at")
                    .table(JournalEntries::Table)
                    .col(JournalEntries::OrgId)
                    .col(JournalEntries::Kind)
                    .col(JournalEntries::At)
                    .col(JournalEntries::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_org_team")
                    .table(Users::Table)
                    .col(Users::OrgId)
                    .col(Users::Team)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name("users_org_team").table(Users::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("journal_org_kind_at")
                    .table(JournalEntries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(SpendLimits::Table).to_owned())
            .await
    }
}
