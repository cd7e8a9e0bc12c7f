//! Indexes for the periodic housekeeping: pruning processed webhook events
//! by age, and finding PENDING purchases that never reached the provider.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    ProcessedAt,
}

#[derive(DeriveIden)]
enum Purchases {
    Table,
    Status,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("webhook_events_processed_at")
                    .table(WebhookEvents::Table)
                    .col(WebhookEvents::ProcessedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("purchases_status_created")
                    .table(Purchases::Table)
                    .col(Purchases::Status)
                    .col(Purchases::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("purchases_status_created")
                    .table(Purchases::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("webhook_events_processed_at")
                    .table(WebhookEvents::Table)
                    .to_owned(),
            )
            .await
    }
}
