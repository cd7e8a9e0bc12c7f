//! Balance-alert thresholds and their state move onto the wallet row (the
//! performance issue): every wallet change evaluates them under the
//! wallet's lock, and the statement that takes the lock now returns them,
//! so a change no longer reads a second table. `alert_state` NULL: nothing
//! stored yet (the state is what `available` says); `alert_thresholds`
//! NULL: the configured default thresholds.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Wallets {
    Table,
    AlertThresholds,
    AlertState,
}

#[derive(DeriveIden)]
enum BalanceAlertSettings {
    Table,
    UserId,
    OrgId,
    Thresholds,
    State,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for col in [Wallets::AlertThresholds, Wallets::AlertState] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Wallets::Table)
                        .add_column(ColumnDef::new(col).text().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE wallets SET \
                   alert_thresholds = (SELECT s.thresholds FROM balance_alert_settings s WHERE s.user_id = wallets.user_id), \
                   alert_state = (SELECT s.state FROM balance_alert_settings s WHERE s.user_id = wallets.user_id) \
                 WHERE EXISTS (SELECT 1 FROM balance_alert_settings s WHERE s.user_id = wallets.user_id)",
            )
            .await?;
        manager
            .drop_table(Table::drop().table(BalanceAlertSettings::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BalanceAlertSettings::Table)
                    .col(
                        ColumnDef::new(BalanceAlertSettings::UserId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(BalanceAlertSettings::OrgId).string().not_null())
                    .col(ColumnDef::new(BalanceAlertSettings::Thresholds).text().null())
                    .col(ColumnDef::new(BalanceAlertSettings::State).text().not_null())
                    .col(
                        ColumnDef::new(BalanceAlertSettings::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO balance_alert_settings (user_id, org_id, thresholds, state, updated_at) \
                 SELECT user_id, org_id, alert_thresholds, alert_state, updated_at FROM wallets \
                 WHERE alert_state IS NOT NULL",
            )
            .await?;
        for col in [Wallets::AlertThresholds, Wallets::AlertState] {
            manager
                .alter_table(Table::alter().table(Wallets::Table).drop_column(col).to_owned())
                .await?;
        }
        Ok(())
    }
}
