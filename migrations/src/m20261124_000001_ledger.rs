//! Organizations, users, wallets, the journal and holds.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    PlanId,
    BillingAnchor,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    OrgId,
    Name,
    Email,
    Team,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Wallets {
    Table,
    UserId,
    OrgId,
    MonthlyBalance,
    PermanentBalance,
    HeldMonthly,
    HeldPermanent,
    MonthlyAllocation,
    CycleStart,
    CycleEnd,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JournalEntries {
    Table,
    Id,
    UserId,
    OrgId,
    At,
    Kind,
    Feature,
    BillingMode,
    Status,
    Provider,
    Model,
    InputTokens,
    OutputTokens,
    CreditsConsumed,
    CreditsAvoided,
    MonthlyDelta,
    PermanentDelta,
    BalanceAfter,
    PricingVersion,
    IdempotencyKey,
    RequestHash,
    HoldId,
    Reference,
    Description,
    WalletVersion,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    Id,
    UserId,
    MonthlyPart,
    PermanentPart,
    CycleStart,
    Status,
    CreatedAt,
    Deadline,
    ResolvedAt,
    IdempotencyKey,
    RequestHash,
    JournalEntryId,
    Details,
    Result,
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().default(0).to_owned()
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().not_null().to_owned()
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().not_null().to_owned()
}

fn opt_text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(text(Organizations::Id).primary_key().to_owned())
                    .col(text(Organizations::Name))
                    .col(text(Organizations::PlanId))
                    .col(ts(Organizations::BillingAnchor))
                    .col(ts(Organizations::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(text(Users::Id).primary_key().to_owned())
                    .col(text(Users::OrgId))
                    .col(opt_text(Users::Name))
                    .col(opt_text(Users::Email))
                    .col(opt_text(Users::Team))
                    .col(text(Users::Role))
                    .col(ts(Users::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Users::Table, Users::OrgId)
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_org")
                    .table(Users::Table)
                    .col(Users::OrgId)
                    .to_owned(),
            )
            .await?;

        // The wallet caches the sum of its journal. The checks make a negative
        // bucket impossible even for a faulty writer.
        manager
            .create_table(
                Table::create()
                    .table(Wallets::Table)
                    .col(text(Wallets::UserId).primary_key().to_owned())
                    .col(text(Wallets::OrgId))
                    .col(big(Wallets::MonthlyBalance))
                    .col(big(Wallets::PermanentBalance))
                    .col(big(Wallets::HeldMonthly))
                    .col(big(Wallets::HeldPermanent))
                    .col(big(Wallets::MonthlyAllocation))
                    .col(ts(Wallets::CycleStart))
                    .col(ts(Wallets::CycleEnd))
                    .col(big(Wallets::Version))
                    .col(ts(Wallets::UpdatedAt))
                    .check(Expr::col(Wallets::HeldMonthly).gte(0))
                    .check(Expr::col(Wallets::HeldPermanent).gte(0))
                    .check(Expr::col(Wallets::MonthlyBalance).gte(Expr::col(Wallets::HeldMonthly)))
                    .check(Expr::col(Wallets::PermanentBalance).gte(Expr::col(Wallets::HeldPermanent)))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Wallets::Table, Wallets::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("wallets_cycle_end")
                    .table(Wallets::Table)
                    .col(Wallets::CycleEnd)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("wallets_org")
                    .table(Wallets::Table)
                    .col(Wallets::OrgId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(JournalEntries::Table)
                    .col(
                        ColumnDef::new(JournalEntries::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text(JournalEntries::UserId))
                    .col(text(JournalEntries::OrgId))
                    .col(ts(JournalEntries::At))
                    .col(text(JournalEntries::Kind))
                    .col(opt_text(JournalEntries::Feature))
                    .col(opt_text(JournalEntries::BillingMode))
                    .col(opt_text(JournalEntries::Status))
                    .col(opt_text(JournalEntries::Provider))
                    .col(opt_text(JournalEntries::Model))
                    .col(ColumnDef::new(JournalEntries::InputTokens).big_integer().null())
                    .col(ColumnDef::new(JournalEntries::OutputTokens).big_integer().null())
                    .col(big(JournalEntries::CreditsConsumed))
                    .col(big(JournalEntries::CreditsAvoided))
                    .col(big(JournalEntries::MonthlyDelta))
                    .col(big(JournalEntries::PermanentDelta))
                    .col(big(JournalEntries::BalanceAfter))
                    .col(opt_text(JournalEntries::PricingVersion))
                    .col(opt_text(JournalEntries::IdempotencyKey))
                    .col(opt_text(JournalEntries::RequestHash))
                    .col(opt_text(JournalEntries::HoldId))
                    .col(opt_text(JournalEntries::Reference))
                    .col(opt_text(JournalEntries::Description))
                    .col(big(JournalEntries::WalletVersion))
                    .foreign_key(
                        ForeignKey::create()
                            .from(JournalEntries::Table, JournalEntries::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One key moves credits once per user. NULL keys do not collide.
        manager
            .create_index(
                Index::create()
                    .name("journal_user_idempotency")
                    .table(JournalEntries::Table)
                    .col(JournalEntries::UserId)
                    .col(JournalEntries::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journal_user_id")
                    .table(JournalEntries::Table)
                    .col(JournalEntries::UserId)
                    .col(JournalEntries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journal_org_at")
                    .table(JournalEntries::Table)
                    .col(JournalEntries::OrgId)
                    .col(JournalEntries::At)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Holds::Table)
                    .col(text(Holds::Id).primary_key().to_owned())
                    .col(text(Holds::UserId))
                    .col(big(Holds::MonthlyPart))
                    .col(big(Holds::PermanentPart))
                    .col(ts(Holds::CycleStart))
                    .col(text(Holds::Status))
                    .col(ts(Holds::CreatedAt))
                    .col(ts(Holds::Deadline))
                    .col(ColumnDef::new(Holds::ResolvedAt).timestamp_with_time_zone().null())
                    .col(opt_text(Holds::IdempotencyKey))
                    .col(opt_text(Holds::RequestHash))
                    .col(ColumnDef::new(Holds::JournalEntryId).big_integer().null())
                    .col(ColumnDef::new(Holds::Details).text().null())
                    .col(ColumnDef::new(Holds::Result).text().null())
                    .check(Expr::col(Holds::MonthlyPart).gte(0))
                    .check(Expr::col(Holds::PermanentPart).gte(0))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Holds::Table, Holds::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("holds_user_idempotency")
                    .table(Holds::Table)
                    .col(Holds::UserId)
                    .col(Holds::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("holds_status_deadline")
                    .table(Holds::Table)
                    .col(Holds::Status)
                    .col(Holds::Deadline)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("holds_user_status")
                    .table(Holds::Table)
                    .col(Holds::UserId)
                    .col(Holds::Status)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Holds::Table.into_iden(),
            JournalEntries::Table.into_iden(),
            Wallets::Table.into_iden(),
            Users::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
