//! Billing cycles.
//!
//! A cycle starts on the organization's billing anchor and lasts one calendar
//! month. Cycle `k` starts at `anchor + k months`, always computed from the
//! anchor (never from the previous cycle), so an anchor on the 31st falls on
//! the last day of shorter months and comes back to the 31st afterwards.

use chrono::{DateTime, Datelike, Months, NaiveTime, TimeZone, Utc};

/// Where billing cycles start: midnight UTC of the day the organization was
/// created.
pub fn anchor_for(created_at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&created_at.date_naive().and_time(NaiveTime::MIN))
}

/// The start of cycle `index` (0 is the anchor's own cycle).
pub fn cycle_start(anchor: DateTime<Utc>, index: u32) -> DateTime<Utc> {
    anchor
        .checked_add_months(Months::new(index))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// One billing cycle, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Cycle {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// The cycle that contains `now`. Before the anchor, the anchor's own cycle.
pub fn cycle_at(anchor: DateTime<Utc>, now: DateTime<Utc>) -> Cycle {
    let mut index = if now <= anchor {
        0
    } else {
        let months = (now.year() - anchor.year()) * 12 + now.month() as i32 - anchor.month() as i32;
        u32::try_from(months.max(0)).unwrap_or(0)
    };
    // The month difference can be one too high (now is earlier in its month
    // than the anchor's day); step back until the start is not after now.
    while index > 0 && cycle_start(anchor, index) > now {
        index -= 1;
    }
    while cycle_start(anchor, index + 1) <= now {
        index += 1;
    }
    Cycle {
        start: cycle_start(anchor, index),
        end: cycle_start(anchor, index + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn anchor_on_the_31st_clamps_and_comes_back() {
        let anchor = anchor_for(at("2025-01-31T15:30:00Z"));
        assert_eq!(anchor, at("2025-01-31T00:00:00Z"));
        let starts: Vec<_> = (0..5).map(|i| cycle_start(anchor, i)).collect();
        assert_eq!(
            starts,
            vec![
                at("2025-01-31T00:00:00Z"),
                at("2025-02-28T00:00:00Z"),
                at("2025-03-31T00:00:00Z"),
                at("2025-04-30T00:00:00Z"),
                at("2025-05-31T00:00:00Z"),
            ]
        );
        let c = cycle_at(anchor, at("2025-03-15T12:00:00Z"));
        assert_eq!(c.start, at("2025-02-28T00:00:00Z"));
        assert_eq!(c.end, at("2025-03-31T00:00:00Z"));
    }

    #[test]
    fn february_of_a_leap_year() {
        let anchor = anchor_for(at("2024-01-31T08:00:00Z"));
        let c = cycle_at(anchor, at("2024-02-28T23:59:59Z"));
        assert_eq!(c.start, at("2024-01-31T00:00:00Z"));
        assert_eq!(c.end, at("2024-02-29T00:00:00Z"));
        let c = cycle_at(anchor, at("2024-02-29T00:00:00Z"));
        assert_eq!(c.start, at("2024-02-29T00:00:00Z"));
        assert_eq!(c.end, at("2024-03-31T00:00:00Z"));
    }

    proptest! {
        #[test]
        fn the_cycle_at_contains_now(anchor_s in 0i64..4_000_000_000, delta in 0i64..400_000_000) {
            let anchor = anchor_for(DateTime::from_timestamp(anchor_s, 0).unwrap());
            let now = anchor + chrono::Duration::seconds(delta);
            let c = cycle_at(anchor, now);
            prop_assert!(c.contains(now));
            prop_assert!(c.end > c.start);
            let days = (c.end - c.start).num_days();
            prop_assert!((28..=31).contains(&days));
        }
    }
}
