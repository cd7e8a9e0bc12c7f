//! The wallet's rules, as pure functions over its state.
//!
//! A wallet holds two kinds of credit: monthly (granted per billing cycle,
//! expiring at its end) and permanent (never expiring). Holds reserve credits
//! for calls whose cost is known only afterwards; each hold remembers which
//! bucket it reserved from, so that a hold open across a cycle boundary keeps
//! its reservation and its unused monthly part expires with its own cycle
//! when it resolves (no rollover, and never a negative balance).
//!
//! Every function here mutates a [`WalletState`] and returns the journal
//! postings that explain the change; storage persists both in one
//! transaction. Invariants kept by every function (and checked by
//! [`WalletState::check`]):
//! - no bucket is negative, and no bucket holds less than is reserved from it
//!   (`monthly >= held_monthly >= 0`, `permanent >= held_permanent >= 0`);
//! - spending takes monthly credits first: permanent credits are charged only
//!   when no unreserved monthly credit is left.

use chrono::{DateTime, Utc};

use crate::credits::Credits;
use crate::cycle::Cycle;
use crate::kinds::ActivityKind;

/// Why a ledger operation cannot be done. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("insufficient credits: {requested} requested, {available} available")]
    InsufficientCredits { requested: Credits, available: Credits },
    #[error("the amount must be positive, got {0}")]
    NonPositiveAmount(Credits),
    #[error("the balance would go past the largest amount of credits")]
    Overflow,
}

/// The cached state of one wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletState {
    pub monthly: Credits,
    pub permanent: Credits,
    pub held_monthly: Credits,
    pub held_permanent: Credits,
    /// Monthly credits granted for the current cycle.
    pub monthly_allocation: Credits,
    pub cycle: Cycle,
}

/// One journal line to be written: what moved, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub kind: ActivityKind,
    pub monthly_delta: Credits,
    pub permanent_delta: Credits,
    /// What the entry took from the wallet (positive for charges, 0 otherwise).
    pub credits_consumed: Credits,
    pub description: Option<String>,
}

impl Posting {
    fn new(
        kind: ActivityKind,
        monthly_delta: i64,
        permanent_delta: i64,
        description: impl Into<Option<String>>,
    ) -> Self {
        Posting {
            kind,
            monthly_delta: Credits::from_millis(monthly_delta),
            permanent_delta: Credits::from_millis(permanent_delta),
            credits_consumed: Credits::ZERO,
            description: description.into(),
        }
    }

    /// monthly_delta + permanent_delta.
    pub fn total_delta(&self) -> Credits {
        Credits::from_millis(self.monthly_delta.millis() + self.permanent_delta.millis())
    }
}

/// What a hold reserved, and in which cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub monthly: Credits,
    pub permanent: Credits,
    /// Start of the wallet's cycle when the hold was placed.
    pub cycle_start: DateTime<Utc>,
}

impl Reservation {
    pub fn amount(&self) -> Credits {
        Credits::from_millis(self.monthly.millis() + self.permanent.millis())
    }
}

/// The outcome of resolving a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// What was charged: the cost, capped at the hold.
    pub charged: Credits,
    /// The cost asked for was more than the hold (charged the hold instead).
    pub overrun: bool,
    pub monthly_delta: Credits,
    pub permanent_delta: Credits,
    /// The unused monthly part of a hold placed in a cycle that has since
    /// ended: it expires now, as that cycle's credits did.
    pub expiry: Option<Posting>,
}

impl WalletState {
    /// A new wallet for `cycle`, with the full allocation of that cycle.
    pub fn open(cycle: Cycle, allocation: Credits) -> (WalletState, Vec<Posting>) {
        let allocation = allocation.max(Credits::ZERO);
        let state = WalletState {
            monthly: allocation,
            permanent: Credits::ZERO,
            held_monthly: Credits::ZERO,
            held_permanent: Credits::ZERO,
            monthly_allocation: allocation,
            cycle,
        };
        let postings = if allocation.is_positive() {
            vec![Posting::new(
                ActivityKind::MonthlyAllocation,
                allocation.millis(),
                0,
                format!("Monthly allocation for the cycle starting {}", cycle.start.date_naive()),
            )]
        } else {
            Vec::new()
        };
        (state, postings)
    }

    pub fn held(&self) -> Credits {
        Credits::from_millis(self.held_monthly.millis() + self.held_permanent.millis())
    }

    /// monthly + permanent.
    pub fn total(&self) -> Credits {
        Credits::from_millis(self.monthly.millis().saturating_add(self.permanent.millis()))
    }

    /// monthly + permanent - held.
    pub fn available(&self) -> Credits {
        Credits::from_millis(
            self.free_monthly()
                .millis()
                .saturating_add(self.free_permanent().millis()),
        )
    }

    pub fn free_monthly(&self) -> Credits {
        Credits::from_millis(self.monthly.millis() - self.held_monthly.millis())
    }

    pub fn free_permanent(&self) -> Credits {
        Credits::from_millis(self.permanent.millis() - self.held_permanent.millis())
    }

    pub fn cycle_ended(&self, now: DateTime<Utc>) -> bool {
        now >= self.cycle.end
    }

    /// The invariants every operation keeps; a description of the first one
    /// broken.
    pub fn check(&self) -> Result<(), String> {
        if self.held_monthly.is_negative() || self.held_permanent.is_negative() {
            return Err(format!("negative hold: {self:?}"));
        }
        if self.monthly < self.held_monthly {
            return Err(format!("monthly below its reservations: {self:?}"));
        }
        if self.permanent < self.held_permanent {
            return Err(format!("permanent below its reservations: {self:?}"));
        }
        Ok(())
    }

    /// Closes the wallet's cycle, however many cycles ago it ended, and opens
    /// `current` with `allocation`: one MONTHLY_EXPIRY for the unreserved
    /// monthly credits left, one MONTHLY_ALLOCATION for the new cycle.
    /// Monthly credits reserved by open holds stay reserved; they expire when
    /// their hold resolves. Does nothing when `current` is not later.
    pub fn close_cycle(&mut self, current: Cycle, allocation: Credits) -> Vec<Posting> {
        if current.start < self.cycle.end {
            return Vec::new();
        }
        let mut postings = Vec::with_capacity(2);
        let left = self.free_monthly();
        if left.is_positive() {
            postings.push(Posting::new(
                ActivityKind::MonthlyExpiry,
                -left.millis(),
                0,
                format!(
                    "Unused monthly credits of the cycle {} to {} expired",
                    self.cycle.start.date_naive(),
                    self.cycle.end.date_naive()
                ),
            ));
        }
        let allocation = allocation.max(Credits::ZERO);
        if allocation.is_positive() {
            postings.push(Posting::new(
                ActivityKind::MonthlyAllocation,
                allocation.millis(),
                0,
                format!(
                    "Monthly allocation for the cycle starting {}",
                    current.start.date_naive()
                ),
            ));
        }
        self.monthly = Credits::from_millis(self.held_monthly.millis() + allocation.millis());
        self.monthly_allocation = allocation;
        self.cycle = current;
        postings
    }

    /// Reserves `amount`, monthly credits first.
    pub fn place_hold(&mut self, amount: Credits) -> Result<Reservation, LedgerError> {
        if !amount.is_positive() {
            return Err(LedgerError::NonPositiveAmount(amount));
        }
        let available = self.available();
        if available < amount {
            return Err(LedgerError::InsufficientCredits {
                requested: amount,
                available,
            });
        }
        let monthly = amount.min(self.free_monthly());
        let permanent = Credits::from_millis(amount.millis() - monthly.millis());
        self.held_monthly = Credits::from_millis(self.held_monthly.millis() + monthly.millis());
        self.held_permanent = Credits::from_millis(self.held_permanent.millis() + permanent.millis());
        Ok(Reservation {
            monthly,
            permanent,
            cycle_start: self.cycle.start,
        })
    }

    /// Reserves `amount`, or as much as is available when that is less but
    /// at least `minimum` (a request whose output is then capped to what
    /// the wallet affords).
    pub fn place_hold_up_to(&mut self, amount: Credits, minimum: Credits) -> Result<Reservation, LedgerError> {
        let available = self.available();
        if available >= amount {
            return self.place_hold(amount);
        }
        let minimum = minimum.max(Credits::from_millis(1));
        if available >= minimum {
            return self.place_hold(available);
        }
        Err(LedgerError::InsufficientCredits {
            requested: minimum.min(amount),
            available,
        })
    }

    /// Resolves a hold: charges `cost` (at most the hold), monthly credits
    /// first (the hold's own, then any unreserved, then the hold's
    /// permanent), and frees the rest. A release is a settlement at 0.
    pub fn settle_hold(&mut self, hold: &Reservation, cost: Credits) -> Settlement {
        let cost = cost.max(Credits::ZERO);
        let amount = hold.amount();
        let overrun = cost > amount;
        let charged = cost.min(amount);

        let from_hold_monthly = charged.millis().min(hold.monthly.millis());
        let rest = charged.millis() - from_hold_monthly;
        let from_free_monthly = rest.min(self.free_monthly().millis().max(0));
        let from_permanent = rest - from_free_monthly;

        let from_past_cycle = hold.cycle_start < self.cycle.start;
        let expired = if from_past_cycle {
            hold.monthly.millis() - from_hold_monthly
        } else {
            0
        };

        let monthly_delta = -(from_hold_monthly + from_free_monthly);
        self.monthly = Credits::from_millis(self.monthly.millis() + monthly_delta - expired);
        self.permanent = Credits::from_millis(self.permanent.millis() - from_permanent);
        self.held_monthly = Credits::from_millis(self.held_monthly.millis() - hold.monthly.millis());
        self.held_permanent = Credits::from_millis(self.held_permanent.millis() - hold.permanent.millis());

        let expiry = (expired > 0).then(|| {
            Posting::new(
                ActivityKind::MonthlyExpiry,
                -expired,
                0,
                format!(
                    "Monthly credits reserved in the cycle starting {} expired with it",
                    hold.cycle_start.date_naive()
                ),
            )
        });
        Settlement {
            charged,
            overrun,
            monthly_delta: Credits::from_millis(monthly_delta),
            permanent_delta: Credits::from_millis(-from_permanent),
            expiry,
        }
    }

    /// Adds permanent credits (a grant, a purchase, a positive adjustment).
    pub fn add_permanent(
        &mut self,
        kind: ActivityKind,
        amount: Credits,
        description: Option<String>,
    ) -> Result<Posting, LedgerError> {
        if !amount.is_positive() {
            return Err(LedgerError::NonPositiveAmount(amount));
        }
        let permanent = self.permanent.checked_add(amount).ok_or(LedgerError::Overflow)?;
        // The total must stay representable too.
        self.monthly.checked_add(permanent).ok_or(LedgerError::Overflow)?;
        self.permanent = permanent;
        Ok(Posting::new(kind, 0, amount.millis(), description))
    }

    /// Takes back up to `amount` permanent credits, as far as they are left
    /// unreserved (a refund); never below 0.
    pub fn take_back_permanent(&mut self, amount: Credits, description: Option<String>) -> Posting {
        self.deduct_permanent(ActivityKind::Refund, amount, description)
    }

    /// A negative correction (ADJUSTMENT) of up to `amount` permanent
    /// credits, as far as they are left unreserved; never below 0. When
    /// less was left, the entry's description says so.
    pub fn adjust_down(&mut self, amount: Credits, reason: &str) -> Posting {
        let left = self.free_permanent().max(Credits::ZERO);
        let description = if amount > left {
            format!("{reason} ({amount} requested; only {left} left, all of it taken)")
        } else {
            reason.to_owned()
        };
        self.deduct_permanent(ActivityKind::Adjustment, amount, Some(description))
    }

    fn deduct_permanent(&mut self, kind: ActivityKind, amount: Credits, description: Option<String>) -> Posting {
        let taken = amount.max(Credits::ZERO).min(self.free_permanent().max(Credits::ZERO));
        self.permanent = Credits::from_millis(self.permanent.millis() - taken.millis());
        Posting::new(kind, 0, -taken.millis(), description)
    }

    /// The organization moved to a plan giving `allocation` monthly credits.
    /// An upgrade grants the difference for the current cycle at once (as
    /// far as this cycle's allocation is below it); a downgrade applies from
    /// the next cycle. Both are recorded.
    pub fn change_plan(&mut self, allocation: Credits, plan_name: &str) -> Posting {
        let allocation = allocation.max(Credits::ZERO);
        if allocation > self.monthly_allocation {
            let diff = allocation.millis() - self.monthly_allocation.millis();
            self.monthly = Credits::from_millis(self.monthly.millis() + diff);
            self.monthly_allocation = allocation;
            Posting::new(
                ActivityKind::MonthlyAllocation,
                diff,
                0,
                format!("Plan changed to {plan_name}: the difference for the current cycle"),
            )
        } else {
            Posting::new(
                ActivityKind::Adjustment,
                0,
                0,
                format!("Plan changed to {plan_name}: {allocation} monthly credits from the next cycle"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cycle::{anchor_for, cycle_at};

    fn c(v: i64) -> Credits {
        Credits::from_whole(v).unwrap()
    }

    fn cycle(s: &str) -> Cycle {
        let t = DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        cycle_at(anchor_for(t), t)
    }

    #[test]
    fn a_negative_adjustment_takes_what_is_left_and_says_so() {
        let (mut w, _) = WalletState::open(cycle("2025-01-10T00:00:00Z"), c(10));
        w.add_permanent(ActivityKind::Grant, c(5), None).unwrap();
        let p = w.adjust_down(c(2), "duplicate grant");
        assert_eq!(
            (p.kind, p.permanent_delta, p.monthly_delta),
            (ActivityKind::Adjustment, c(-2), c(0))
        );
        assert_eq!(p.description.as_deref(), Some("duplicate grant"));
        let p = w.adjust_down(c(50), "chargeback");
        assert_eq!(p.permanent_delta, c(-3));
        assert_eq!(
            p.description.as_deref(),
            Some("chargeback (50 requested; only 3 left, all of it taken)")
        );
        assert_eq!((w.permanent, w.monthly), (c(0), c(10)));
    }

    #[test]
    fn spends_monthly_first_then_permanent() {
        let (mut w, _) = WalletState::open(cycle("2025-01-10T00:00:00Z"), c(10));
        w.add_permanent(ActivityKind::Grant, c(5), None).unwrap();
        let h = w.place_hold(c(12)).unwrap();
        assert_eq!((h.monthly, h.permanent), (c(10), c(2)));
        let s = w.settle_hold(&h, c(11));
        assert_eq!((s.monthly_delta, s.permanent_delta), (c(-10), c(-1)));
        assert_eq!((w.monthly, w.permanent, w.held()), (c(0), c(4), c(0)));
        w.check().unwrap();
    }

    #[test]
    fn a_hold_across_a_boundary_expires_its_unused_monthly_part() {
        let first = cycle("2025-01-10T00:00:00Z");
        let (mut w, _) = WalletState::open(first, c(100));
        let h = w.place_hold(c(80)).unwrap();
        let next = Cycle {
            start: first.end,
            end: first.end + chrono::Duration::days(28),
        };
        let posts = w.close_cycle(next, c(100));
        assert_eq!(posts[0].monthly_delta, c(-20));
        assert_eq!(w.available(), c(100));
        let s = w.settle_hold(&h, c(10));
        assert_eq!(s.charged, c(10));
        assert_eq!(s.expiry.unwrap().monthly_delta, c(-70));
        assert_eq!((w.monthly, w.held()), (c(100), c(0)));
    }

    #[test]
    fn overrun_is_capped_at_the_hold() {
        let (mut w, _) = WalletState::open(cycle("2025-01-10T00:00:00Z"), c(10));
        let h = w.place_hold(c(3)).unwrap();
        let s = w.settle_hold(&h, c(7));
        assert!(s.overrun);
        assert_eq!((s.charged, w.monthly), (c(3), c(7)));
    }
}
