//! The payment housekeeping of the periodic sweep: processed webhook events
//! older than `payments.webhook_event_retention_days` are deleted, and
//! PENDING purchases that never got a checkout session within
//! `payments.abandoned_purchase_secs` are marked FAILED, and outgoing
//! webhooks delivered or given up more than `webhooks.retention_days` ago
//! are deleted, and closed days of AI usage are rolled up for orgUsage (a
//! few at a time: each reads a day of an organization's journal). Each
//! claims its rows with guarded statements (a rolled-up day by its unique
//! marker row), so every replica may run it at once.

use creditgate_storage::Store;

use crate::config::Config;

/// The most (organization, day) usage rollups one pass builds.
const ROLLUP_DAYS_PER_PASS: u64 = 50;

#[derive(Debug, Clone, Copy)]
pub struct Housekeeping {
    event_retention: chrono::Duration,
    abandoned_after: chrono::Duration,
    outbox_retention: chrono::Duration,
}

impl Housekeeping {
    pub fn from_config(config: &Config) -> Self {
        let days = i64::try_from(config.payments.webhook_event_retention_days).unwrap_or(i64::MAX / 86_400_000);
        let secs = i64::try_from(config.payments.abandoned_purchase_secs).unwrap_or(i64::MAX / 1_000);
        let outbox_days = i64::try_from(config.webhooks.retention_days).unwrap_or(i64::MAX / 86_400_000);
        Housekeeping {
            outbox_retention: chrono::Duration::try_days(outbox_days).unwrap_or(chrono::Duration::MAX),
            event_retention: chrono::Duration::try_days(days).unwrap_or(chrono::Duration::MAX),
            abandoned_after: chrono::Duration::try_seconds(secs).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// One pass: up to `batch` rows of each kind. Failures are logged; the
    /// next pass tries again.
    pub async fn run(&self, store: &Store, batch: u64) {
        let now = store.now();
        let before = now
            .checked_sub_signed(self.event_retention)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match store.prune_webhook_events(before, batch).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "forgot processed webhook events past their retention"),
            Err(e) => tracing::warn!(error = %e, "webhook event pruning failed"),
        }
        let before = now
            .checked_sub_signed(self.abandoned_after)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match store.fail_abandoned_purchases(before, batch).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(failed = n, "failed purchases that never reached the payment provider"),
            Err(e) => tracing::warn!(error = %e, "abandoned purchase sweep failed"),
        }
        let before = now
            .checked_sub_signed(self.outbox_retention)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match store.prune_webhook_outbox(before, batch).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "forgot outgoing webhooks past their retention"),
            Err(e) => tracing::warn!(error = %e, "outgoing webhook pruning failed"),
        }
        match store.roll_up_usage(batch.min(ROLLUP_DAYS_PER_PASS)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(days = n, "rolled up closed days of AI usage"),
            Err(e) => tracing::warn!(error = %e, "usage rollup failed"),
        }
    }
}
