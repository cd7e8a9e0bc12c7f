//! The outbox of outgoing webhooks. An event is written here in the
//! transaction of the change that raised it (one row per event and
//! configured endpoint), so a crash can neither lose it nor raise it for a
//! change that did not happen. Delivery claims due rows under a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a guarded update on SQLite's
//! single writer), so one replica at a time delivers a row; a replica that
//! dies mid-delivery leaves its lease to expire and another takes over.
//! Every attempt is recorded.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType, Order, Query};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde_json::{Value, json};

use crate::entities::{webhook_attempts, webhook_outbox};
use crate::error::{StoreError, StoreResult};
use crate::store::Store;

/// The event types creditgate raises.
pub mod event_types {
    pub const PURCHASE_COMPLETED: &str = "purchase.completed";
    pub const PURCHASE_REFUNDED: &str = "purchase.refunded";
    pub const CYCLE_RESET: &str = "cycle.reset";
    pub const BYOK_KEY_FAILED: &str = "byok.key_failed";
    pub const BALANCE_LOW: &str = "balance.low";
    pub const BALANCE_DEPLETED: &str = "balance.depleted";
    pub const BALANCE_RECOVERED: &str = "balance.recovered";

    /// Every event type, for validating endpoint filters.
    pub const ALL: [&str; 7] = [
        PURCHASE_COMPLETED,
        PURCHASE_REFUNDED,
        CYCLE_RESET,
        BYOK_KEY_FAILED,
        BALANCE_LOW,
        BALANCE_DEPLETED,
        BALANCE_RECOVERED,
    ];
}

/// Where events go: an endpoint's URL and the event types it takes (all
/// when `None`). Secrets are not the store's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRoute {
    pub url: String,
    pub event_types: Option<Vec<String>>,
}

impl WebhookRoute {
    fn takes(&self, event_type: &str) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == event_type))
    }
}

/// The configured endpoints; none by default (then nothing is written).
#[derive(Debug, Clone, Default)]
pub struct WebhookRoutes(Arc<Vec<WebhookRoute>>);

impl WebhookRoutes {
    pub fn new(routes: Vec<WebhookRoute>) -> Self {
        WebhookRoutes(Arc::new(routes))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An event to raise: its type and its `data`. The envelope (`type`,
/// `timestamp`, `data`, per Standard Webhooks) is added when it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    pub event_type: String,
    pub data: Value,
}

impl OutgoingEvent {
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        OutgoingEvent {
            event_type: event_type.into(),
            data,
        }
    }
}

/// Writes `event` into the outbox inside `txn`, one row per endpoint that
/// takes its type: it is delivered if and only if `txn` commits. Returns the
/// event's id (its `webhook-id`), or `None` when no endpoint takes it.
pub async fn enqueue(
    txn: &impl sea_orm::ConnectionTrait,
    routes: &WebhookRoutes,
    event: &OutgoingEvent,
    now: DateTime<Utc>,
) -> StoreResult<Option<String>> {
    let targets: Vec<&WebhookRoute> = routes.0.iter().filter(|r| r.takes(&event.event_type)).collect();
    if targets.is_empty() {
        return Ok(None);
    }
    let event_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let body = json!({
        "type": event.event_type,
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": event.data,
    });
    let payload = serde_json::to_string(&body).map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    let rows = targets.into_iter().map(|route| webhook_outbox::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        event_id: Set(event_id.clone()),
        event_type: Set(event.event_type.clone()),
        endpoint: Set(route.url.clone()),
        payload: Set(payload.clone()),
        created_at: Set(now),
        next_attempt_at: Set(now),
        attempts: Set(0),
        delivered_at: Set(None),
        gave_up_at: Set(None),
        last_error: Set(None),
        lease_until: Set(None),
        lease_token: Set(None),
    });
    webhook_outbox::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(Some(event_id))
}

/// A row claimed for delivery, under a lease only its claimer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The outbox row.
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub endpoint: String,
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// Attempts before this one.
    pub attempts: i32,
    lease_token: String,
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(DateTime<Utc>),
    GiveUp,
}

/// A row of the outbox as an operator sees it.
pub type OutboxRow = webhook_outbox::Model;
/// An attempt as recorded.
pub type AttemptRow = webhook_attempts::Model;

fn due(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(webhook_outbox::Column::DeliveredAt.is_null())
        .add(webhook_outbox::Column::GaveUpAt.is_null())
        .add(webhook_outbox::Column::NextAttemptAt.lte(now))
        .add(
            Condition::any()
                .add(webhook_outbox::Column::LeaseUntil.is_null())
                .add(webhook_outbox::Column::LeaseUntil.lte(now)),
        )
}

impl Store {
    /// The configured endpoints events are written for.
    pub fn with_webhook_routes(mut self, routes: WebhookRoutes) -> Self {
        self.webhooks = routes;
        self.new_writers();
        self
    }

    /// Writes `event` into the outbox inside `txn` (see [`enqueue`]).
    pub async fn enqueue_event(&self, txn: &DatabaseTransaction, event: &OutgoingEvent) -> StoreResult<Option<String>> {
        enqueue(txn, &self.webhooks, event, self.clock.now()).await
    }

    /// Claims up to `limit` due rows of `endpoint` until `lease` from now:
    /// no other claim gets them before their lease ends.
    pub async fn claim_webhooks(
        &self,
        endpoint: &str,
        limit: u64,
        lease: chrono::Duration,
    ) -> StoreResult<Vec<WebhookDelivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let until = now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let token = uuid::Uuid::new_v4().to_string();
        let mut pick = Query::select();
        pick.column(webhook_outbox::Column::Id)
            .from(webhook_outbox::Entity)
            .cond_where(due(now).add(webhook_outbox::Column::Endpoint.eq(endpoint)))
            .order_by(webhook_outbox::Column::NextAttemptAt, Order::Asc)
            .limit(limit);
        if self.db.get_database_backend() == DbBackend::Postgres {
            // Two replicas claiming at once take different rows, neither waits.
            pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = webhook_outbox::Entity::update_many()
            .col_expr(webhook_outbox::Column::LeaseUntil, Expr::value(Some(until)))
            .col_expr(webhook_outbox::Column::LeaseToken, Expr::value(Some(token.clone())))
            .filter(webhook_outbox::Column::Id.in_subquery(pick))
            // Checked again on the locked row.
            .filter(due(now))
            .exec_with_returning(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| WebhookDelivery {
                id: r.id,
                event_id: r.event_id,
                event_type: r.event_type,
                endpoint: r.endpoint,
                payload: r.payload,
                created_at: r.created_at,
                attempts: r.attempts,
                lease_token: token.clone(),
            })
            .collect())
    }

    /// Records an attempt and what follows it, in one transaction. `false`
    /// when the lease was lost meanwhile (another replica took the row
    /// over): the attempt is recorded, the row is left to its new holder.
    pub async fn record_webhook_attempt(
        &self,
        delivery: &WebhookDelivery,
        attempt: &WebhookAttempt,
        after: AfterAttempt,
    ) -> StoreResult<bool> {
        let txn = self.db.begin().await?;
        let number = delivery.attempts.saturating_add(1);
        webhook_attempts::Entity::insert(webhook_attempts::ActiveModel {
            id: NotSet,
            outbox_id: Set(delivery.id.clone()),
            attempt: Set(number),
            at: Set(attempt.at),
            status_code: Set(attempt.status_code.map(i32::from)),
            error: Set(attempt.error.clone()),
            duration_ms: Set(attempt.duration_ms),
        })
        .exec_without_returning(&txn)
        .await?;
        let now = self.clock.now();
        let mut update = webhook_outbox::Entity::update_many()
            .col_expr(webhook_outbox::Column::Attempts, Expr::value(number))
            .col_expr(
                webhook_outbox::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(webhook_outbox::Column::LeaseToken, Expr::value(Option::<String>::None))
            .col_expr(webhook_outbox::Column::LastError, Expr::value(attempt_summary(attempt)));
        update = match after {
            AfterAttempt::Delivered => update.col_expr(webhook_outbox::Column::DeliveredAt, Expr::value(Some(now))),
            AfterAttempt::RetryAt(at) => update.col_expr(webhook_outbox::Column::NextAttemptAt, Expr::value(at)),
            AfterAttempt::GiveUp => update.col_expr(webhook_outbox::Column::GaveUpAt, Expr::value(Some(now))),
        };
        let updated = update
            .filter(webhook_outbox::Column::Id.eq(delivery.id.as_str()))
            .filter(webhook_outbox::Column::LeaseToken.eq(delivery.lease_token.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(updated.rows_affected == 1)
    }

    /// Gives a claimed row back at once (a replica shutting down): the next
    /// claim may take it without waiting for the lease to end.
    pub async fn release_webhook(&self, delivery: &WebhookDelivery) -> StoreResult<()> {
        webhook_outbox::Entity::update_many()
            .col_expr(
                webhook_outbox::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(webhook_outbox::Column::LeaseToken, Expr::value(Option::<String>::None))
            .filter(webhook_outbox::Column::Id.eq(delivery.id.as_str()))
            .filter(webhook_outbox::Column::LeaseToken.eq(delivery.lease_token.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes up to `limit` rows delivered or given up before `before`,
    /// with their attempts. Returns how many rows it deleted.
    pub async fn prune_webhook_outbox(&self, before: DateTime<Utc>, limit: u64) -> StoreResult<u64> {
        let finished = || {
            Condition::any()
                .add(webhook_outbox::Column::DeliveredAt.lt(before))
                .add(webhook_outbox::Column::GaveUpAt.lt(before))
        };
        let ids: Vec<String> = webhook_outbox::Entity::find()
            .select_only()
            .column(webhook_outbox::Column::Id)
            .filter(finished())
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin().await?;
        webhook_attempts::Entity::delete_many()
            .filter(webhook_attempts::Column::OutboxId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        let deleted = webhook_outbox::Entity::delete_many()
            .filter(webhook_outbox::Column::Id.is_in(ids))
            .filter(finished())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected)
    }

    /// The outbox rows of an event type (or all), oldest first.
    pub async fn webhook_outbox(&self, event_type: Option<&str>) -> StoreResult<Vec<OutboxRow>> {
        let mut query = webhook_outbox::Entity::find()
            .order_by_asc(webhook_outbox::Column::CreatedAt)
            .order_by_asc(webhook_outbox::Column::Id);
        if let Some(t) = event_type {
            query = query.filter(webhook_outbox::Column::EventType.eq(t));
        }
        Ok(query.all(&self.db).await?)
    }

    /// The attempts of an outbox row, in order.
    pub async fn webhook_attempts(&self, outbox_id: &str) -> StoreResult<Vec<AttemptRow>> {
        Ok(webhook_attempts::Entity::find()
            .filter(webhook_attempts::Column::OutboxId.eq(outbox_id))
            .order_by_asc(webhook_attempts::Column::Id)
            .all(&self.db)
            .await?)
    }
}

/// The outcome of a failed attempt in a few words (`None` on success).
fn attempt_summary(attempt: &WebhookAttempt) -> Option<String> {
    match (&attempt.error, attempt.status_code) {
        (Some(e), _) => Some(e.chars().take(500).collect()),
        (None, Some(code)) if !(200..300).contains(&code) => Some(format!("HTTP {code}")),
        _ => None,
    }
}
