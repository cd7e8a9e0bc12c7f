//! Purchases of credit packs, and the payment provider's webhook events
//! already applied.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Purchases {
    Table,
    Id,
    UserId,
    OrgId,
    PackId,
    PackName,
    Credits,
    PriceCents,
    Currency,
    Status,
    Provider,
    ProviderSessionId,
    PaymentIntent,
    IdempotencyKey,
    RequestHash,
    CheckoutUrl,
    CreatedAt,
    CompletedAt,
    UpdatedAt,
    RefundedCredits,
    CreditsTakenBack,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    Provider,
    EventType,
    PurchaseId,
    ProcessedAt,
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
                    .table(Purchases::Table)
                    .col(text(Purchases::Id).primary_key().to_owned())
                    .col(text(Purchases::UserId))
                    .col(text(Purchases::OrgId))
                    // The pack as it was sold: a later change of the catalog
                    // does not rewrite what was bought.
                    .col(text(Purchases::PackId))
                    .col(text(Purchases::PackName))
                    .col(big(Purchases::Credits))
                    .col(big(Purchases::PriceCents))
                    .col(text(Purchases::Currency))
                    .col(text(Purchases::Status))
                    .col(text(Purchases::Provider))
                    .col(opt_text(Purchases::ProviderSessionId))
                    .col(opt_text(Purchases::PaymentIntent))
                    .col(text(Purchases::IdempotencyKey))
                    .col(text(Purchases::RequestHash))
                    .col(ColumnDef::new(Purchases::CheckoutUrl).text().null())
                    .col(ts(Purchases::CreatedAt))
                    .col(ColumnDef::new(Purchases::CompletedAt).timestamp_with_time_zone().null())
                    .col(ts(Purchases::UpdatedAt))
                    // Credits the refunds so far stand for, and what was
                    // actually taken back (never more than was left).
                    .col(big(Purchases::RefundedCredits))
                    .col(big(Purchases::CreditsTakenBack))
                    .check(Expr::col(Purchases::Credits).gt(0))
                    .check(Expr::col(Purchases::RefundedCredits).gte(0))
                    .check(Expr::col(Purchases::RefundedCredits).lte(Expr::col(Purchases::Credits)))
                    .check(Expr::col(Purchases::CreditsTakenBack).gte(0))
                    .check(Expr::col(Purchases::CreditsTakenBack).lte(Expr::col(Purchases::RefundedCredits)))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Purchases::Table, Purchases::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One key buys once per user.
        manager
            .create_index(
                Index::create()
                    .name("purchases_user_idempotency")
                    .table(Purchases::Table)
                    .col(Purchases::UserId)
                    .col(Purchases::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // One purchase per checkout session. NULLs do not collide.
        manager
            .create_index(
                Index::create()
                    .name("purchases_provider_session")
                    .table(Purchases::Table)
                    .col(Purchases::ProviderSessionId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("purchases_payment_intent")
                    .table(Purchases::Table)
                    .col(Purchases::PaymentIntent)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("purchases_user_created")
                    .table(Purchases::Table)
                    .col(Purchases::UserId)
                    .col(Purchases::CreatedAt)
                    .to_owned(),
            )
            .await?;

        // Each provider event is applied once: its id is recorded in the
        // transaction that applies it.
        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .col(text(WebhookEvents::Id).primary_key().to_owned())
                    .col(text(WebhookEvents::Provider))
                    .col(text(WebhookEvents::EventType))
                    .col(opt_text(WebhookEvents::PurchaseId))
                    .col(ts(WebhookEvents::ProcessedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [WebhookEvents::Table.into_iden(), Purchases::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
