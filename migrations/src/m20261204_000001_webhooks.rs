//! Outgoing webhooks: the durable outbox (one row per event and endpoint,
//! written in the transaction of the change that raised the event) and
//! every delivery attempt.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhookOutbox {
    Table,
    Id,
    EventId,
    EventType,
    Endpoint,
    Payload,
    CreatedAt,
    NextAttemptAt,
    Attempts,
    DeliveredAt,
    GaveUpAt,
    LastError,
    LeaseUntil,
    LeaseToken,
}

#[derive(DeriveIden)]
enum WebhookAttempts {
    Table,
    Id,
    OutboxId,
    Attempt,
    At,
    StatusCode,
    Error,
    DurationMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookOutbox::Table)
                    .col(ColumnDef::new(WebhookOutbox::Id).string().not_null().primary_key())
                    // The `webhook-id` receivers deduplicate by.
                    .col(ColumnDef::new(WebhookOutbox::EventId).string().not_null())
                    .col(ColumnDef::new(WebhookOutbox::EventType).string().not_null())
                    .col(ColumnDef::new(WebhookOutbox::Endpoint).string().not_null())
                    // The exact body that is signed and sent, every attempt alike.
                    .col(ColumnDef::new(WebhookOutbox::Payload).text().not_null())
                    .col(
                        ColumnDef::new(WebhookOutbox::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(WebhookOutbox::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookOutbox::Attempts).integer().not_null().default(0))
                    .col(
                        ColumnDef::new(WebhookOutbox::DeliveredAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(WebhookOutbox::GaveUpAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(WebhookOutbox::LastError).string().null())
                    // A replica delivering the row holds it until then.
                    .col(
                        ColumnDef::new(WebhookOutbox::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(WebhookOutbox::LeaseToken).string().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_outbox_event_endpoint")
                    .table(WebhookOutbox::Table)
                    .col(WebhookOutbox::EventId)
                    .col(WebhookOutbox::Endpoint)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_outbox_due")
                    .table(WebhookOutbox::Table)
                    .col(WebhookOutbox::Endpoint)
                    .col(WebhookOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempts::Table)
                    .col(
                        ColumnDef::new(WebhookAttempts::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(WebhookAttempts::OutboxId).string().not_null())
                    .col(ColumnDef::new(WebhookAttempts::Attempt).integer().not_null())
                    .col(
                        ColumnDef::new(WebhookAttempts::At)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(WebhookAttempts::StatusCode).integer().null())
                    .col(ColumnDef::new(WebhookAttempts::Error).string().null())
                    .col(ColumnDef::new(WebhookAttempts::DurationMs).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookAttempts::Table, WebhookAttempts::OutboxId)
                            .to(WebhookOutbox::Table, WebhookOutbox::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_attempts_outbox")
                    .table(WebhookAttempts::Table)
                    .col(WebhookAttempts::OutboxId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookAttempts::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookOutbox::Table).to_owned())
            .await
    }
}
