//! Balance alerts in storage: each user's thresholds with their state (on
//! the wallet's row), and the append-only log of raised alerts.
//!
//! Every wallet change commits through [`crate::store::LockedWallet`], whose
//! lock returns the settings with the wallet and which calls
//! [`evaluate_change`] and [`record_alerts`] in the transaction of the
//! change: the alerts it raises (and the thresholds' new state, written with
//! the wallet) commit or roll back with it, so a crash neither loses nor
//! doubles one, and concurrent changes of one wallet are evaluated one after
//! the other.
//!
//! A user without settings of their own has the configured default
//! thresholds; their state is stored only once an alert has been raised
//! (until then it is what `available` says). Alerts carry the wallet version
//! of their change, so real-time delivery reads them exactly like journal
//! entries: by version, once per change.

use chrono::{DateTime, Utc};
use creditgate_domain::{Alert, AlertKind, AlertState, Credits, Thresholds, evaluate_alerts};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::entities::{balance_alerts as log, wallets};
use crate::error::{StoreError, StoreResult};
use crate::model::Wallet;
use crate::store::Store;

/// A raised balance alert, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceAlert {
    pub id: i64,
    pub user_id: String,
    pub org_id: String,
    pub kind: AlertKind,
    pub threshold: Credits,
    /// `available` right after the change that raised it.
    pub available: Credits,
    /// The wallet version of that change.
    pub wallet_version: i64,
    pub at: DateTime<Utc>,
}

impl BalanceAlert {
    /// The webhook this alert is sent as: `balance.low`, `balance.depleted`
    /// or `balance.recovered`.
    pub fn webhook_event(&self) -> crate::outbox::OutgoingEvent {
        use crate::outbox::event_types;
        let event_type = match self.kind {
            AlertKind::Low => event_types::BALANCE_LOW,
            AlertKind::Depleted => event_types::BALANCE_DEPLETED,
            AlertKind::Recovered => event_types::BALANCE_RECOVERED,
        };
        crate::outbox::OutgoingEvent::new(
            event_type,
            serde_json::json!({
                "userId": self.user_id,
                "orgId": self.org_id,
                "alertId": self.id.to_string(),
                "threshold": self.threshold.to_string(),
                "available": self.available.to_string(),
                "at": self.at,
            }),
        )
    }
}

impl TryFrom<log::Model> for BalanceAlert {
    type Error = StoreError;
    fn try_from(m: log::Model) -> Result<Self, StoreError> {
        Ok(BalanceAlert {
            kind: m.kind.parse().map_err(StoreError::corrupt)?,
            id: m.id,
            user_id: m.user_id,
            org_id: m.org_id,
            threshold: Credits::from_millis(m.threshold),
            available: Credits::from_millis(m.available),
            wallet_version: m.wallet_version,
            at: m.created_at,
        })
    }
}

fn encode_levels(t: &Thresholds) -> String {
    let millis: Vec<i64> = t.levels().iter().map(|c| c.millis()).collect();
    serde_json::Value::from(millis).to_string()
}

fn decode_levels(user_id: &str, text: &str) -> StoreResult<Thresholds> {
    let millis: Vec<i64> =
        serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("alert thresholds of `{user_id}`: {e}")))?;
    Thresholds::new(millis.into_iter().map(Credits::from_millis))
        .map_err(|e| StoreError::corrupt(format!("alert thresholds of `{user_id}`: {e}")))
}

fn encode_state(s: &AlertState) -> String {
    let pairs: Vec<(i64, bool)> = s.pairs().iter().map(|(t, f)| (t.millis(), *f)).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_state(user_id: &str, text: &str) -> StoreResult<AlertState> {
    let pairs: Vec<(i64, bool)> =
        serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("alert state of `{user_id}`: {e}")))?;
    Ok(AlertState::from_pairs(
        pairs.into_iter().map(|(t, f)| (Credits::from_millis(t), f)),
    ))
}

/// A wallet's alert settings as its row stores them (read with the
/// wallet's lock, written with its change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoredAlerts {
    /// `None`: the configured default thresholds.
    pub thresholds: Option<String>,
    /// `None`: nothing stored yet; the state is what `available` says.
    pub state: Option<String>,
}

impl StoredAlerts {
    pub(crate) fn of(row: &wallets::Model) -> Self {
        StoredAlerts {
            thresholds: row.alert_thresholds.clone(),
            state: row.alert_state.clone(),
        }
    }

    fn thresholds(&self, user_id: &str, defaults: &Thresholds) -> StoreResult<Thresholds> {
        match self.thresholds.as_deref() {
            Some(text) => decode_levels(user_id, text),
            None => Ok(defaults.clone()),
        }
    }
}

/// One committed-to-be change of a wallet, as alerts see it.
pub(crate) struct AlertChange<'a> {
    pub user_id: &'a str,
    /// `available` before the change; `None` for the change that opens the
    /// wallet (nothing was crossed to get there).
    pub before: Option<Credits>,
    pub after: Credits,
    /// The thresholds of users without their own.
    pub defaults: &'a Thresholds,
}

/// Evaluates one wallet change against the user's thresholds (pure: the
/// settings came with the wallet's lock). Returns the alerts it raises and
/// updates `stored` to the thresholds' new state, which the change writes
/// with the wallet. A change that leaves `available` where it was costs
/// nothing.
pub(crate) fn evaluate_change(change: &AlertChange<'_>, stored: &mut StoredAlerts) -> StoreResult<Vec<Alert>> {
    if change.before == Some(change.after) {
        return Ok(Vec::new());
    }
    let thresholds = stored.thresholds(change.user_id, change.defaults)?;
    if thresholds.is_empty() && stored.state.is_none() {
        return Ok(Vec::new());
    }
    let state = stored
        .state
        .as_deref()
        .map(|text| decode_state(change.user_id, text))
        .transpose()?;
    let before = change.before.unwrap_or(change.after);
    let (alerts, next) = evaluate_alerts(&thresholds, state.as_ref(), before, change.after);
    // Nothing stored: the state is what `available` says, until an alert
    // makes it worth keeping.
    if state.as_ref() != Some(&next) && (state.is_some() || !alerts.is_empty()) {
        stored.state = Some(encode_state(&next));
    }
    Ok(alerts)
}

/// Writes raised alerts to the log in `txn`, the transaction of the change
/// that raised them; returns them as logged. Whatever else must happen
/// exactly once per alert (an outgoing webhook in the outbox) belongs here,
/// in the same transaction.
pub(crate) async fn record_alerts(
    txn: &impl ConnectionTrait,
    user_id: &str,
    org_id: &str,
    wallet_version: i64,
    now: DateTime<Utc>,
    alerts: &[Alert],
) -> StoreResult<Vec<BalanceAlert>> {
    let mut written = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let row = log::ActiveModel {
            id: NotSet,
            user_id: Set(user_id.to_owned()),
            org_id: Set(org_id.to_owned()),
            kind: Set(alert.kind.as_str().to_owned()),
            threshold: Set(alert.threshold.millis()),
            available: Set(alert.available.millis()),
            wallet_version: Set(wallet_version),
            created_at: Set(now),
        };
        let inserted = log::Entity::insert(row).exec_with_returning(txn).await?;
        written.push(BalanceAlert::try_from(inserted)?);
    }
    Ok(written)
}

impl Store {
    /// The thresholds of users who have not set their own.
    pub fn default_alert_thresholds(&self) -> &Thresholds {
        &self.alert_defaults
    }

    /// The user's alert thresholds (their own, or the default), highest first.
    pub async fn alert_thresholds(&self, user_id: &str) -> StoreResult<Thresholds> {
        let own: Option<Option<String>> = wallets::Entity::find_by_id(user_id.to_owned())
            .select_only()
            .column(wallets::Column::AlertThresholds)
            .into_tuple()
            .one(&self.db)
            .await?;
        let stored = StoredAlerts {
            thresholds: own.flatten(),
            state: None,
        };
        stored.thresholds(user_id, &self.alert_defaults)
    }

    /// Sets the user's own alert thresholds (an empty set: no alerts). Each
    /// starts in the state the wallet's `available` puts it in now: setting
    /// a threshold above it raises nothing, and RECOVERED follows once
    /// `available` rises above it. The wallet's version moves (its
    /// `alertThresholds` changed), so subscribers see the new wallet.
    pub async fn set_alert_thresholds(&self, user_id: &str, thresholds: &Thresholds) -> StoreResult<Wallet> {
        let mut locked = self.lock_existing(user_id).await?;
        let state = AlertState::at(thresholds, locked.state.available());
        locked.alerts = StoredAlerts {
            thresholds: Some(encode_levels(thresholds)),
            state: Some(encode_state(&state)),
        };
        Ok(locked.commit_and_publish(self).await?.wallet)
    }

    /// The user's alerts, oldest first: at most `limit`, the newest ones
    /// when there are more.
    pub async fn balance_alerts(&self, user_id: &str, limit: u64) -> StoreResult<Vec<BalanceAlert>> {
        let rows = log::Entity::find()
            .filter(log::Column::UserId.eq(user_id))
            .order_by_desc(log::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter().rev().map(BalanceAlert::try_from).collect()
    }

    /// The user's alerts raised by the wallet versions in
    /// `(after_version, up_to_version]`, oldest first; at most `limit` (the
    /// newest ones when there are more).
    pub async fn alerts_of_versions(
        &self,
        user_id: &str,
        after_version: i64,
        up_to_version: i64,
        limit: u64,
    ) -> StoreResult<Vec<BalanceAlert>> {
        if up_to_version <= after_version {
            return Ok(Vec::new());
        }
        let rows = log::Entity::find()
            .filter(log::Column::UserId.eq(user_id))
            .filter(log::Column::WalletVersion.gt(after_version))
            .filter(log::Column::WalletVersion.lte(up_to_version))
            .order_by_desc(log::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter().rev().map(BalanceAlert::try_from).collect()
    }
}
