//! Balance alerts, as pure functions over a wallet's `available` credits.
//!
//! Each user has up to [`MAX_THRESHOLDS`] thresholds on `available`
//! (monthly + permanent − held: holds count). Each threshold is either
//! *armed* (available is above it: the next fall to or below it raises an
//! alert) or *fired* (available is at or below it: the next rise above it
//! raises RECOVERED). An alert is raised exactly once per crossing:
//! - LOW when a change takes `available` from above a threshold to or below
//!   it;
//! - DEPLETED instead of LOW for the threshold 0: it is the alert of
//!   `available` reaching 0 (balances never go negative, so "to or below 0"
//!   is "at 0"). A user who wants to hear of an empty wallet keeps 0 among
//!   their thresholds (the shipped default does); one who does not, leaves
//!   it out. One fall across several thresholds raises one alert for each,
//!   highest first;
//! - RECOVERED when a change takes `available` from at or below a threshold
//!   it had fired for to above it; lowest threshold first.
//!
//! Invariants kept by [`Thresholds`] and [`evaluate_alerts`]:
//! - thresholds are at most [`MAX_THRESHOLDS`], none negative, distinct, and
//!   kept highest first;
//! - the state returned after a change is the state of `available` after it
//!   (a threshold is fired exactly when `after <= threshold`), so chaining
//!   the states of successive changes raises one alert per crossing and
//!   never two in a row of the same direction for one threshold;
//! - a change that leaves every threshold on its side raises nothing.
//!
//! Storage keeps the state next to the thresholds and evaluates every
//! change of the wallet, under its lock, in the transaction of the change.

use crate::credits::Credits;
use crate::kinds::AlertKind;

/// The most thresholds one user may have.
pub const MAX_THRESHOLDS: usize = 5;

/// Why thresholds are refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error("at most {MAX_THRESHOLDS} alert thresholds, got {0}")]
    TooMany(usize),
    #[error("an alert threshold cannot be negative, got {0}")]
    Negative(Credits),
    #[error("the alert threshold {0} is given twice")]
    Duplicate(Credits),
}

/// A valid set of thresholds: at most [`MAX_THRESHOLDS`], none negative,
/// distinct, highest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Thresholds(Vec<Credits>);

impl Thresholds {
    /// Checks and orders `levels` (in any order).
    pub fn new(levels: impl IntoIterator<Item = Credits>) -> Result<Thresholds, ThresholdError> {
        let mut levels: Vec<Credits> = levels.into_iter().collect();
        if levels.len() > MAX_THRESHOLDS {
            return Err(ThresholdError::TooMany(levels.len()));
        }
        if let Some(negative) = levels.iter().find(|l| l.is_negative()) {
            return Err(ThresholdError::Negative(*negative));
        }
        levels.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(pair) = levels.windows(2).find(|w| w[0] == w[1]) {
            return Err(ThresholdError::Duplicate(pair[0]));
        }
        Ok(Thresholds(levels))
    }

    /// The shipped default: 10 credits (LOW) and 0 (DEPLETED).
    pub fn shipped() -> Thresholds {
        Thresholds(vec![Credits::from_millis(10_000), Credits::ZERO])
    }

    /// Highest first.
    pub fn levels(&self) -> &[Credits] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Per threshold, whether it has fired (available at or below it, waiting
/// for RECOVERED) or is armed. A threshold the state does not know is
/// judged by `available` before the change (see [`evaluate_alerts`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertState {
    /// (threshold, fired), in no particular order, one per threshold.
    levels: Vec<(Credits, bool)>,
}

impl AlertState {
    /// The state that `available` puts `thresholds` in: fired exactly for
    /// those at or above it.
    pub fn at(thresholds: &Thresholds, available: Credits) -> AlertState {
        AlertState {
            levels: thresholds.levels().iter().map(|t| (*t, available <= *t)).collect(),
        }
    }

    /// From stored pairs (threshold, fired); a repeated threshold keeps its
    /// first pair.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Credits, bool)>) -> AlertState {
        let mut levels: Vec<(Credits, bool)> = Vec::new();
        for (t, fired) in pairs {
            if !levels.iter().any(|(l, _)| *l == t) {
                levels.push((t, fired));
            }
        }
        AlertState { levels }
    }

    /// (threshold, fired) for each threshold it knows.
    pub fn pairs(&self) -> &[(Credits, bool)] {
        &self.levels
    }

    /// `Some(true)` when `threshold` has fired, `Some(false)` when armed,
    /// `None` when the state does not know it.
    pub fn fired(&self, threshold: Credits) -> Option<bool> {
        self.levels.iter().find(|(t, _)| *t == threshold).map(|(_, f)| *f)
    }
}

/// One alert to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    pub threshold: Credits,
    /// `available` right after the change that raised it.
    pub available: Credits,
}

/// The alerts one change of `available` raises, and the state after it.
///
/// `state` is what the previous change left (`None`: nothing stored yet);
/// a threshold it does not know is judged by `before`: fired when
/// `before <= threshold`. A threshold fires (LOW, or DEPLETED for 0) when it
/// was armed and `after <= threshold`; it recovers (RECOVERED) when it had
/// fired and `after > threshold`. Falls are listed highest threshold first,
/// rises lowest first (the order in which `available` passes them).
pub fn evaluate_alerts(
    thresholds: &Thresholds,
    state: Option<&AlertState>,
    before: Credits,
    after: Credits,
) -> (Vec<Alert>, AlertState) {
    let mut falls = Vec::new();
    let mut rises = Vec::new();
    for &threshold in thresholds.levels() {
        let was_fired = state.and_then(|s| s.fired(threshold)).unwrap_or(before <= threshold);
        let fired = after <= threshold;
        if fired && !was_fired {
            let kind = if threshold.is_zero() {
                AlertKind::Depleted
            } else {
                AlertKind::Low
            };
            falls.push(Alert {
                kind,
                threshold,
                available: after,
            });
        } else if was_fired && !fired {
            rises.push(Alert {
                kind: AlertKind::Recovered,
                threshold,
                available: after,
            });
        }
    }
    rises.reverse();
    falls.extend(rises);
    (falls, AlertState::at(thresholds, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(v: i64) -> Credits {
        Credits::from_whole(v).unwrap()
    }

    fn th(levels: &[i64]) -> Thresholds {
        Thresholds::new(levels.iter().map(|l| c(*l))).unwrap()
    }

    fn kinds(alerts: &[Alert]) -> Vec<(AlertKind, Credits)> {
        alerts.iter().map(|a| (a.kind, a.threshold)).collect()
    }

    #[test]
    fn thresholds_are_checked_and_ordered() {
        assert_eq!(th(&[0, 10, 5]).levels(), &[c(10), c(5), c(0)]);
        assert_eq!(
            Thresholds::new([1, 2, 3, 4, 5, 6].map(c)),
            Err(ThresholdError::TooMany(6))
        );
        assert_eq!(Thresholds::new([c(1), c(-1)]), Err(ThresholdError::Negative(c(-1))));
        assert_eq!(
            Thresholds::new([c(3), c(1), c(3)]),
            Err(ThresholdError::Duplicate(c(3)))
        );
        assert!(Thresholds::new(Vec::new()).unwrap().is_empty());
        assert_eq!(Thresholds::shipped(), th(&[10, 0]));
    }

    #[test]
    fn a_fall_raises_low_then_depleted_and_a_rise_recovers() {
        let t = th(&[10, 0]);
        let (a, s) = evaluate_alerts(&t, None, c(50), c(8));
        assert_eq!(kinds(&a), vec![(AlertKind::Low, c(10))]);
        assert_eq!(a[0].available, c(8));
        // Further down, above 0: nothing more.
        let (a, s) = evaluate_alerts(&t, Some(&s), c(8), c(3));
        assert!(a.is_empty());
        let (a, s) = evaluate_alerts(&t, Some(&s), c(3), c(0));
        assert_eq!(kinds(&a), vec![(AlertKind::Depleted, c(0))]);
        // A purchase: both recover, lowest first.
        let (a, s) = evaluate_alerts(&t, Some(&s), c(0), c(100));
        assert_eq!(
            kinds(&a),
            vec![(AlertKind::Recovered, c(0)), (AlertKind::Recovered, c(10))]
        );
        // Straight to 0 across both: one alert each, highest first.
        let (a, _) = evaluate_alerts(&t, Some(&s), c(100), c(0));
        assert_eq!(kinds(&a), vec![(AlertKind::Low, c(10)), (AlertKind::Depleted, c(0))]);
    }

    #[test]
    fn exactly_at_the_threshold_is_low() {
        let t = th(&[10]);
        let (a, s) = evaluate_alerts(&t, None, c(11), c(10));
        assert_eq!(kinds(&a), vec![(AlertKind::Low, c(10))]);
        let (a, _) = evaluate_alerts(&t, Some(&s), c(10), Credits::from_millis(10_001));
        assert_eq!(kinds(&a), vec![(AlertKind::Recovered, c(10))]);
    }

    #[test]
    fn the_stored_state_wins_over_before() {
        // A change the state did not see took available to 5; the next one
        // (5 -> 4) still raises the LOW that was due, once.
        let t = th(&[10]);
        let armed = AlertState::at(&t, c(20));
        let (a, s) = evaluate_alerts(&t, Some(&armed), c(5), c(4));
        assert_eq!(kinds(&a), vec![(AlertKind::Low, c(10))]);
        let (a, _) = evaluate_alerts(&t, Some(&s), c(4), c(3));
        assert!(a.is_empty());
    }

    /// Arbitrary thresholds and a walk of `available` (never negative).
    fn thresholds() -> impl Strategy<Value = Thresholds> {
        proptest::collection::btree_set(0i64..50, 0..=MAX_THRESHOLDS)
            .prop_map(|set| Thresholds::new(set.into_iter().map(Credits::from_millis)).unwrap())
    }

    proptest! {
        #[test]
        fn once_per_crossing(t in thresholds(), walk in proptest::collection::vec(0i64..60, 1..40)) {
            let walk: Vec<Credits> = walk.into_iter().map(Credits::from_millis).collect();
            let mut state: Option<AlertState> = None;
            let mut raised: Vec<Vec<Alert>> = Vec::new();
            for pair in walk.windows(2) {
                let (alerts, next) = evaluate_alerts(&t, state.as_ref(), pair[0], pair[1]);
                prop_assert_eq!(&next, &AlertState::at(&t, pair[1]));
                raised.push(alerts);
                state = Some(next);
            }
            for &level in t.levels() {
                let mut fired = walk[0] <= level;
                for (i, pair) in walk.windows(2).enumerate() {
                    let crossed = (pair[0] <= level) != (pair[1] <= level);
                    let here: Vec<&Alert> = raised[i].iter().filter(|a| a.threshold == level).collect();
                    // One alert exactly when this change crossed the level.
                    prop_assert_eq!(here.len(), usize::from(crossed));
                    if let Some(a) = here.first() {
                        let expected = if fired {
                            AlertKind::Recovered
                        } else if level.is_zero() {
                            AlertKind::Depleted
                        } else {
                            AlertKind::Low
                        };
                        prop_assert_eq!(a.kind, expected);
                        prop_assert_eq!(a.available, pair[1]);
                        fired = !fired;
                    }
                }
            }
        }

        #[test]
        fn any_stored_state_is_set_right_by_one_change(
            t in thresholds(),
            stale in proptest::collection::vec(any::<bool>(), MAX_THRESHOLDS),
            before in 0i64..60,
            after in 0i64..60,
        ) {
            let state = AlertState::from_pairs(t.levels().iter().copied().zip(stale.iter().copied()));
            let before = Credits::from_millis(before);
            let after = Credits::from_millis(after);
            let (alerts, next) = evaluate_alerts(&t, Some(&state), before, after);
            prop_assert_eq!(&next, &AlertState::at(&t, after));
            // At most one alert per threshold, in the direction the stale
            // state owed, and nothing more on a change that stays put.
            for &level in t.levels() {
                let here: Vec<&Alert> = alerts.iter().filter(|a| a.threshold == level).collect();
                let owed = state.fired(level) != Some(after <= level);
                prop_assert_eq!(here.len(), usize::from(owed));
            }
            let (again, _) = evaluate_alerts(&t, Some(&next), after, after);
            prop_assert!(again.is_empty());
        }

        #[test]
        fn falls_are_highest_first_and_rises_lowest_first(
            t in thresholds(), before in 0i64..60, after in 0i64..60,
        ) {
            let (alerts, _) = evaluate_alerts(&t, None, Credits::from_millis(before), Credits::from_millis(after));
            let levels: Vec<Credits> = alerts.iter().map(|a| a.threshold).collect();
            let mut sorted = levels.clone();
            if after < before {
                sorted.sort_unstable_by(|a, b| b.cmp(a));
            } else {
                sorted.sort_unstable();
            }
            prop_assert_eq!(levels, sorted);
        }
    }
}
