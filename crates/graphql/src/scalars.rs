//! The scalars: Credits (a decimal string with at most three fraction
//! digits) and DateTime (RFC 3339).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, Utc};
use creditgate_domain::Credits;

/// A decimal amount of credits, as a string with at most 3 fraction digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditsScalar(pub Credits);

/// An amount of credits: a decimal string with at most three fraction
/// digits ("12", "0.125", "-3.5"), exact (stored as integer milli-credits).
/// Never a float: read it as a string or a decimal type.
#[Scalar(name = "Credits")]
impl ScalarType for CreditsScalar {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => s
                .parse()
                .map(CreditsScalar)
                .map_err(|e| InputValueError::custom(e.to_string())),
            Value::Number(n) => Err(InputValueError::custom(format!(
                "credits are a decimal string such as \"12.5\", not the number {n}"
            ))),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

impl From<Credits> for CreditsScalar {
    fn from(c: Credits) -> Self {
        CreditsScalar(c)
    }
}

/// A point in time, as an RFC 3339 string in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

/// A point in time: an RFC 3339 date-time string with its offset. Answers
/// are in UTC ("2026-11-30T14:05:00.123456+00:00", fraction digits as
/// needed); inputs take any offset ("2026-11-30T15:05:00+01:00" and
/// "2026-11-30T14:05:00Z" are the same instant).
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://scalars.graphql.org/andimarek/date-time"
)]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => s.parse::<DateTime<Utc>>().map(Timestamp).map_err(|e| {
                InputValueError::custom(format!(
                    "a DateTime is an RFC 3339 string such as \"2026-11-30T14:05:00Z\" ({e})"
                ))
            }),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp(t)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}
