//! What an AI request is charged once it has ended, from what is known
//! about its usage. Plain rules, no I/O: metering computes the cost of the
//! tokens with the pricing table and asks here what to charge.
//!
//! Invariants:
//! - a request is never charged more than its hold;
//! - a request paid through the user's own key (BYOK) is charged 0, and the
//!   credits it would have cost are recorded as avoided;
//! - a credit-paid request whose provider reported its usage is charged the
//!   cost of that usage (up to the hold);
//! - one whose provider reported nothing is charged its whole hold (the
//!   most it could have cost: the provider may bill it in full);
//! - one cut off midway (a stream that broke or was cancelled) is charged
//!   what it produced: the tokens the provider had reported so far, else an
//!   estimate from the text it sent (about four bytes a token) and from the
//!   prompt's size.

use crate::credits::Credits;
use crate::kinds::BillingMode;
use crate::pricing::approx_tokens;

/// Where the token counts of a settle come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// The provider reported them.
    Reported,
    /// Estimated from what a cut-off request produced.
    Estimated,
    /// Nothing is known: the provider answered without usage.
    Unknown,
}

/// What to charge and what was avoided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub charged: Credits,
    /// The credits a BYOK request would have cost (0 when paid with credits).
    pub avoided: Credits,
}

/// The charge of a request that held `held` and whose tokens cost `cost`.
pub fn charge_for(mode: BillingMode, held: Credits, cost: Credits, source: UsageSource) -> Charge {
    match mode {
        BillingMode::Byok => Charge {
            charged: Credits::ZERO,
            avoided: cost,
        },
        BillingMode::Credits => Charge {
            charged: match source {
                UsageSource::Reported | UsageSource::Estimated => cost.min(held),
                UsageSource::Unknown => held,
            },
            avoided: Credits::ZERO,
        },
    }
}

/// The token counts of a request cut off midway: what the provider had
/// reported, else estimates from the prompt and the text produced.
pub fn partial_usage<'a>(
    reported_input: Option<u64>,
    reported_output: Option<u64>,
    prompt: impl IntoIterator<Item = &'a str>,
    produced: &str,
) -> (u64, u64) {
    let input = reported_input.unwrap_or_else(|| prompt.into_iter().map(approx_tokens).sum());
    let output = reported_output.unwrap_or_else(|| approx_tokens(produced));
    (input, output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(millis: i64) -> Credits {
        Credits::from_millis(millis)
    }

    #[test]
    fn the_rules() {
        let byok = charge_for(BillingMode::Byok, c(0), c(120), UsageSource::Reported);
        assert_eq!((byok.charged, byok.avoided), (c(0), c(120)));
        let paid = charge_for(BillingMode::Credits, c(500), c(120), UsageSource::Reported);
        assert_eq!((paid.charged, paid.avoided), (c(120), c(0)));
        let unknown = charge_for(BillingMode::Credits, c(500), c(120), UsageSource::Unknown);
        assert_eq!(unknown.charged, c(500));
        let over = charge_for(BillingMode::Credits, c(100), c(120), UsageSource::Estimated);
        assert_eq!(over.charged, c(100));
    }

    #[test]
    fn partial_usage_prefers_what_was_reported() {
        assert_eq!(partial_usage(Some(10), Some(3), ["abcdefgh"], "abcd"), (10, 3));
        assert_eq!(partial_usage(None, None, ["abcdefgh", "abc"], "abcde"), (3, 2));
    }

    proptest! {
        #[test]
        fn never_more_than_the_hold_never_negative(held in 0i64..1_000_000, cost in 0i64..2_000_000) {
            for source in [UsageSource::Reported, UsageSource::Estimated, UsageSource::Unknown] {
                let ch = charge_for(BillingMode::Credits, c(held), c(cost), source);
                prop_assert!(ch.charged <= c(held));
                prop_assert!(!ch.charged.is_negative());
                let b = charge_for(BillingMode::Byok, c(0), c(cost), source);
                prop_assert_eq!(b.charged, Credits::ZERO);
            }
        }
    }
}
