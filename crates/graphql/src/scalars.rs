//! The Credits scalar: a decimal string with at most three fraction digits.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
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
