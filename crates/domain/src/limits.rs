//! Spend limits: an admin's monthly cap on the credits a member, or a whole
//! team, may consume. Plain rules, no I/O: the store locks the counters and
//! asks these functions what a hold may take.
//!
//! Precedence: every limit that applies (the member's own and their team's)
//! must afford a request, so the stricter of them (the one with the least
//! left) is the one that binds and the one a wallet shows.

use chrono::{DateTime, Utc};

use crate::credits::Credits;

/// One limit and what was consumed against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitState {
    /// The cap per billing cycle.
    pub monthly: Credits,
    /// Credits consumed (or held) against it in the cycle starting at
    /// `cycle_start`.
    pub spent: Credits,
    pub cycle_start: DateTime<Utc>,
}

impl LimitState {
    /// What was consumed in the cycle starting at `cycle`: nothing when the
    /// counter belongs to an earlier cycle (a new cycle starts from 0).
    pub fn spent_in(&self, cycle: DateTime<Utc>) -> Credits {
        if self.cycle_start == cycle {
            self.spent
        } else {
            Credits::ZERO
        }
    }

    /// What is left in the cycle starting at `cycle` (never negative).
    pub fn left_in(&self, cycle: DateTime<Utc>) -> Credits {
        let left = self.monthly.millis().saturating_sub(self.spent_in(cycle).millis());
        Credits::from_millis(left.max(0))
    }

    /// The counter after consuming `amount` (negative: giving back) in the
    /// cycle starting at `cycle`; never below 0.
    pub fn consume(&self, cycle: DateTime<Utc>, amount: Credits) -> LimitState {
        let spent = self.spent_in(cycle).millis().saturating_add(amount.millis()).max(0);
        LimitState {
            monthly: self.monthly,
            spent: Credits::from_millis(spent),
            cycle_start: cycle,
        }
    }
}

/// The limits refuse a request: even its smallest useful hold is more than
/// the stricter of them has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("spend limit reached: {requested} needed, {left} left this billing cycle")]
pub struct LimitReached {
    pub requested: Credits,
    pub left: Credits,
}

/// What is left under every limit in `limits` this cycle: the least of
/// them; `None` when there is no limit.
pub fn left_under(limits: &[LimitState], cycle: DateTime<Utc>) -> Option<Credits> {
    limits.iter().map(|l| l.left_in(cycle)).min()
}

/// The most a hold may take under the limits: `amount` when they afford it;
/// with a `minimum`, what they leave when that is at least the minimum;
/// else [`LimitReached`].
pub fn affordable(amount: Credits, minimum: Option<Credits>, left: Option<Credits>) -> Result<Credits, LimitReached> {
    let Some(left) = left else {
        return Ok(amount);
    };
    if amount <= left {
        return Ok(amount);
    }
    match minimum {
        Some(min) if min <= left => Ok(left),
        Some(min) => Err(LimitReached { requested: min, left }),
        None => Err(LimitReached {
            requested: amount,
            left,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: i64) -> Credits {
        Credits::from_millis(v * 1000)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_new_cycle_starts_from_nothing() {
        let l = LimitState {
            monthly: c(10),
            spent: c(8),
            cycle_start: at("2026-11-01T00:00:00Z"),
        };
        assert_eq!(l.left_in(at("2026-11-01T00:00:00Z")), c(2));
        assert_eq!(l.left_in(at("2026-12-01T00:00:00Z")), c(10));
        let next = l.consume(at("2026-12-01T00:00:00Z"), c(3));
        assert_eq!(next.spent, c(3));
        assert_eq!(l.consume(at("2026-11-01T00:00:00Z"), c(-20)).spent, Credits::ZERO);
    }

    #[test]
    fn the_stricter_limit_binds_and_caps_the_hold() {
        let cycle = at("2026-11-01T00:00:00Z");
        let member = LimitState {
            monthly: c(10),
            spent: c(1),
            cycle_start: cycle,
        };
        let team = LimitState {
            monthly: c(100),
            spent: c(96),
            cycle_start: cycle,
        };
        let left = left_under(&[member, team], cycle);
        assert_eq!(left, Some(c(4)));
        assert_eq!(affordable(c(3), Some(c(1)), left), Ok(c(3)));
        assert_eq!(affordable(c(6), Some(c(1)), left), Ok(c(4)));
        assert_eq!(
            affordable(c(6), Some(c(5)), left),
            Err(LimitReached {
                requested: c(5),
                left: c(4)
            })
        );
        assert!(affordable(c(6), None, left).is_err());
        assert_eq!(affordable(c(6), None, None), Ok(c(6)));
    }
}
