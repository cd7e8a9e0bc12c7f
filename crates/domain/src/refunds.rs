//! Refunds of credit packs: how much of a purchase's credits a payment
//! provider's refund stands for.
//!
//! Invariants: a share is never negative nor more than the purchase's
//! credits; it grows with what was refunded; a full refund (or a refund of
//! the whole amount) is all of the credits; a partial one rounds down, so
//! the credits taken back never exceed what the money refunded bought.

use crate::Credits;

/// How much of a purchase a refund covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundShare {
    /// Refunded so far, in the payment's smallest currency unit.
    pub amount_refunded: i64,
    /// The payment's amount.
    pub amount: i64,
    /// The payment is fully refunded.
    pub fully: bool,
}

impl RefundShare {
    /// The credits of `credits` this share stands for (rounded down).
    #[must_use]
    pub fn of(&self, credits: Credits) -> Credits {
        if self.fully || self.amount <= 0 || self.amount_refunded >= self.amount {
            return credits;
        }
        let share = i128::from(credits.millis()) * i128::from(self.amount_refunded.max(0)) / i128::from(self.amount);
        // Below `credits` (the refunded part is below the amount), so it fits.
        Credits::from_millis(i64::try_from(share).unwrap_or(credits.millis()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn share(amount_refunded: i64, amount: i64, fully: bool) -> RefundShare {
        RefundShare {
            amount_refunded,
            amount,
            fully,
        }
    }

    #[test]
    fn refund_shares_round_down_and_full_is_all() {
        let c = Credits::from_millis(500_000);
        assert_eq!(share(250, 500, false).of(c), Credits::from_millis(250_000));
        assert_eq!(share(1, 3, false).of(c), Credits::from_millis(166_666));
        assert_eq!(share(0, 500, false).of(c), Credits::ZERO);
        assert_eq!(share(500, 500, false).of(c), c);
        assert_eq!(share(10, 500, true).of(c), c);
    }

    proptest! {
        #[test]
        fn a_share_is_within_the_credits_and_grows_with_the_refund(
            credits in 0i64..i64::MAX / 2,
            amount in 1i64..10_000_000,
            a in -10i64..10_000_010,
            b in -10i64..10_000_010,
        ) {
            let c = Credits::from_millis(credits);
            let (lo, hi) = (a.min(b), a.max(b));
            let (small, large) = (share(lo, amount, false).of(c), share(hi, amount, false).of(c));
            prop_assert!(!small.is_negative());
            prop_assert!(small <= large);
            prop_assert!(large <= c);
            if lo < amount {
                // Rounded down: never more than the refunded fraction.
                prop_assert!(i128::from(small.millis()) * i128::from(amount)
                    <= i128::from(c.millis()) * i128::from(lo.max(0)));
            } else {
                prop_assert_eq!(small, c);
            }
            prop_assert_eq!(share(lo, amount, true).of(c), c);
        }
    }
}
