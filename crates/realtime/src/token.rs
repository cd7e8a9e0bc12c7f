//! The expiry of a bearer token that has already been verified.

use base64::Engine;
use chrono::{DateTime, Utc};

/// The `exp` claim of a JWT (`Bearer ` prefix allowed). Reads the claims
/// without checking the signature: call it only on a token that was
/// verified.
pub fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    DateTime::from_timestamp(value.get("exp")?.as_i64()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"a","exp":1700000000}"#);
        let token = format!("Bearer x.{claims}.sig");
        assert_eq!(jwt_expiry(&token).map(|t| t.timestamp()), Some(1_700_000_000));
        assert_eq!(jwt_expiry("nonsense"), None);
    }
}
