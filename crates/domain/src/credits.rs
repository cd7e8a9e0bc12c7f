//! Exact amounts of credits.
//!
//! Credits are stored as integer milli-credits (`i64`) and shown as a decimal
//! string with at most three fraction digits. No floating point is involved
//! anywhere: parsing is a strict hand-written grammar, display is integer
//! arithmetic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milli-credits per credit.
pub const MILLIS_PER_CREDIT: i64 = 1_000;

/// An exact amount of credits, in milli-credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Credits(i64);

/// Why a string is not an amount of credits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseCreditsError {
    #[error("an amount of credits must not be empty")]
    Empty,
    #[error(
        "`{0}` is not an amount of credits: use a plain decimal such as \"12\" or \"0.125\" (no exponent, sign `+`, spaces or separators)"
    )]
    Syntax(String),
    #[error("`{0}` has more than three fraction digits; credits are exact to 0.001")]
    TooPrecise(String),
    #[error("`{0}` is out of range")]
    OutOfRange(String),
}

impl Credits {
    pub const ZERO: Credits = Credits(0);
    pub const MAX: Credits = Credits(i64::MAX);

    /// From milli-credits.
    pub const fn from_millis(millis: i64) -> Self {
        Credits(millis)
    }

    /// From whole credits; `None` past the range.
    pub const fn from_whole(credits: i64) -> Option<Self> {
        match credits.checked_mul(MILLIS_PER_CREDIT) {
            Some(m) => Some(Credits(m)),
            None => None,
        }
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Credits) -> Option<Credits> {
        self.0.checked_add(other.0).map(Credits)
    }

    pub fn checked_sub(self, other: Credits) -> Option<Credits> {
        self.0.checked_sub(other.0).map(Credits)
    }

    pub fn checked_neg(self) -> Option<Credits> {
        self.0.checked_neg().map(Credits)
    }

    pub fn min(self, other: Credits) -> Credits {
        Credits(self.0.min(other.0))
    }

    pub fn max(self, other: Credits) -> Credits {
        Credits(self.0.max(other.0))
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.0 < 0;
        // unsigned_abs handles i64::MIN without overflow.
        let abs = self.0.unsigned_abs();
        let whole = abs / MILLIS_PER_CREDIT as u64;
        let frac = abs % MILLIS_PER_CREDIT as u64;
        if negative {
            f.write_str("-")?;
        }
        write!(f, "{whole}")?;
        if frac != 0 {
            let digits = format!("{frac:03}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

impl FromStr for Credits {
    type Err = ParseCreditsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ParseCreditsError::Empty);
        }
        let syntax = || ParseCreditsError::Syntax(s.to_owned());
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = match body.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (body, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let frac = match frac {
            None => "",
            Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => return Err(syntax()),
            Some(f) if f.len() > 3 => return Err(ParseCreditsError::TooPrecise(s.to_owned())),
            Some(f) => f,
        };
        let out_of_range = || ParseCreditsError::OutOfRange(s.to_owned());
        // Accumulate negatively so that i64::MIN milli-credits parses too.
        let mut millis: i64 = 0;
        for b in whole.bytes() {
            millis = millis
                .checked_mul(10)
                .and_then(|m| m.checked_sub(i64::from(b - b'0')))
                .ok_or_else(out_of_range)?;
        }
        millis = millis.checked_mul(MILLIS_PER_CREDIT).ok_or_else(out_of_range)?;
        let mut scale = 100;
        for b in frac.bytes() {
            millis = millis
                .checked_sub(i64::from(b - b'0') * scale)
                .ok_or_else(out_of_range)?;
            scale /= 10;
        }
        if negative {
            Ok(Credits(millis))
        } else {
            millis.checked_neg().map(Credits).ok_or_else(out_of_range)
        }
    }
}

impl Serialize for Credits {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Credits {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Int(i) => {
                Credits::from_whole(i).ok_or_else(|| serde::de::Error::custom(format!("{i} credits is out of range")))
            }
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_canonical_forms() {
        for (text, millis, shown) in [
            ("12", 12_000, "12"),
            ("0.125", 125, "0.125"),
            ("-3.5", -3_500, "-3.5"),
            ("0.1", 100, "0.1"),
            ("1.000", 1_000, "1"),
            ("007", 7_000, "7"),
            ("0", 0, "0"),
            ("-0", 0, "0"),
        ] {
            let c: Credits = text.parse().unwrap();
            assert_eq!(c.millis(), millis, "{text}");
            assert_eq!(c.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "", "1e3", "1E3", "+1", " 1", "1 ", "1.", ".5", "1.2345", "0.0001", "1,5", "NaN", "inf", "--1", "1.-2",
            "0x10", "١",
        ] {
            assert!(bad.parse::<Credits>().is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            "1.2345".parse::<Credits>(),
            Err(ParseCreditsError::TooPrecise(_))
        ));
        assert!(matches!(
            "9223372036854775.808".parse::<Credits>(),
            Err(ParseCreditsError::OutOfRange(_))
        ));
        assert!(matches!(
            "99999999999999999999".parse::<Credits>(),
            Err(ParseCreditsError::OutOfRange(_))
        ));
    }

    #[test]
    fn extremes_round_trip() {
        for c in [Credits::MAX, Credits::from_millis(i64::MIN)] {
            assert_eq!(c.to_string().parse::<Credits>().unwrap(), c);
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(millis in any::<i64>()) {
            let c = Credits::from_millis(millis);
            prop_assert_eq!(c.to_string().parse::<Credits>().unwrap(), c);
        }
    }
}
