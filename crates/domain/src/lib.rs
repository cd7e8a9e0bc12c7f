//! The domain of creditgate: exact credits, billing cycles, the wallet's
//! ledger rules and holds. Plain Rust, no I/O: storage, providers and the
//! clock sit behind traits elsewhere and call into this.

pub mod clock;
pub mod credits;
pub mod cycle;
pub mod kinds;
pub mod ledger;
pub mod limits;

pub use clock::{Clock, ManualClock, SystemClock};
pub use credits::{Credits, ParseCreditsError};
pub use cycle::{Cycle, anchor_for, cycle_at};
pub use kinds::{ActivityKind, AiFeature, AiRequestStatus, AlertKind, BillingMode, HoldStatus, Role, UnknownValue};
pub use ledger::{LedgerError, Posting, Reservation, Settlement, WalletState};
pub use limits::{LimitReached, LimitState};
pub mod plans;
pub use plans::{Plan, PlanCatalog, PlanCatalogError};
pub mod pricing;
pub use pricing::{FeaturePricing, ModelPrice, PricingError, PricingTable, approx_tokens, max_prompt_tokens};
pub mod tokens;
pub use tokens::TokenUsage;
pub mod text;
pub use text::{TextError, check_id, check_key, check_text, clean_display};
pub mod charging;
pub use charging::{Charge, UsageSource, charge_for, partial_usage};
pub mod refunds;
pub use refunds::RefundShare;
pub mod alerts;
pub use alerts::{Alert, AlertState, MAX_THRESHOLDS, ThresholdError, Thresholds, evaluate_alerts};
