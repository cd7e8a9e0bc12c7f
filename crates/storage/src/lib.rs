//! The storage of creditgate on SeaORM: organizations, users, wallets, the
//! append-only journal and holds, on SQLite (embedded default) and
//! PostgreSQL (production).
//!
//! Every movement of credits locks its wallet row (a version bump that is
//! the first statement of its transaction: the row lock on PostgreSQL, the
//! write lock on SQLite), applies the domain's rules to what it read, and
//! writes the new balances as guarded deltas together with the journal
//! entries, in one transaction. Listeners hear of a change after its commit.

mod alerts;
mod byok;
mod cache;
mod checkpoint;
mod credits;
pub mod entities;
mod error;
mod group;
mod holds;
mod identity;
mod keyed;
mod limits;
mod locked;
mod maintenance;
mod members;
pub mod metrics;
mod model;
mod ops;
mod outbox;
mod plans;
mod purchases;
mod query;
mod realtime;
mod rollup_months;
mod rollups;
mod stats;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;
mod usage;
mod usage_journal;

pub use alerts::BalanceAlert;
pub use byok::{AiSettings, ByokKeyRecord, StoredCiphertext};
pub use cache::{Cached, FORGET};
pub use credits::CreditRequest;
pub use error::{StoreError, StoreResult};
#[cfg(feature = "test-support")]
pub use group::{BatchAnswer, BatchOp};
pub use holds::{HoldRequest, Placement};
pub use keyed::KeyedHold;
pub use limits::{LimitTarget, SpendLimit};
pub use members::{MemberPage, MemberRecord};
pub use model::{
    ActivityFilter, ActivityPage, Discrepancy, Entry, Hold, Identity, Organization, Resolution, UsageDetails, User,
    Wallet, WalletChange,
};
pub use ops::fingerprint;
pub use outbox::{
    AfterAttempt, AttemptRow, OutboxRow, OutgoingEvent, WebhookAttempt, WebhookDelivery, WebhookRoute, WebhookRoutes,
    enqueue, event_types,
};
pub use purchases::{NewPurchase, ProviderEvent, Purchase, PurchaseStart, PurchaseStatus, PurchaseUpdate, RefundShare};
pub use rollups::ROLLUP_GRACE;
pub use stats::PoolStats;
pub use store::{Store, StoreOptions, WalletListener};
pub use usage::{Bucket, TeamUsage, UsagePoint, UsageTotals};
