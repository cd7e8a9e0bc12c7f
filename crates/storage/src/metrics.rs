//! What the store counts for the metrics endpoint (through the `metrics`
//! facade: nothing is recorded unless the server installs a recorder).

use creditgate_domain::BillingMode;

use crate::model::WalletChange;

/// Credits charged, in milli-credits (exact integers), by billing mode.
pub const CREDITS_CHARGED: &str = "creditgate_credits_charged_millicredits_total";

/// Operations per group commit (see `group`).
pub const BATCH_SIZE: &str = "creditgate_ledger_batch_size";

/// SQLite: ledger batches by where their wallets came from (`outcome`:
/// `taken` from the mirror, `read` from the database, `stale`: taken, then
/// found changed behind the process's back and run again, reading; see
/// `group`'s `mirror`).
pub const LEDGER_MIRROR: &str = "creditgate_ledger_mirror_total";

pub use crate::checkpoint::WAL_PAGES as SQLITE_WAL_PAGES;

/// Counts the credits a committed change charged.
pub(crate) fn count_charges(change: &WalletChange) {
    for entry in &change.entries {
        let millis = entry.credits_consumed.millis();
        if millis > 0 {
            let mode = entry.billing_mode.map_or("NONE", BillingMode::as_str);
            metrics::counter!(CREDITS_CHARGED, "billing_mode" => mode).increment(millis.unsigned_abs());
        }
    }
}
