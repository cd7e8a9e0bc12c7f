//! Signing per the Standard Webhooks specification: `webhook-signature` is
//! `v1,<base64 of HMAC-SHA256("{webhook-id}.{webhook-timestamp}.{body}")>`,
//! keyed with the base64-decoded part of a `whsec_...` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// The key sizes the specification allows, in bytes.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Why a secret cannot sign. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must start with `whsec_`")]
    Prefix,
    #[error("must be `whsec_` followed by base64")]
    Base64,
    #[error("must hold 24 to 64 bytes after `whsec_` (it holds {0})")]
    Length(usize),
}

/// Signs deliveries to one endpoint. Its key is never printed.
pub struct Signer {
    key: SecretSlice<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    pub fn from_secret(secret: &SecretString) -> Result<Self, SecretError> {
        let encoded = secret
            .expose_secret()
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Signer { key: key.into() })
    }

    /// The `webhook-signature` header of `body` sent as `msg_id` at
    /// `timestamp` (Unix seconds).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &str) -> String {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.key.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_specifications_example() {
        // The test vector of the Standard Webhooks reference libraries.
        let signer = Signer::from_secret(&SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_bad_secrets_without_showing_them() {
        for (secret, want) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretError::Prefix),
            ("whsec_not base64!", SecretError::Base64),
            ("whsec_c2hvcnQ=", SecretError::Length(5)),
        ] {
            let err = Signer::from_secret(&SecretString::from(secret)).unwrap_err();
            assert_eq!(err, want);
            assert!(!err.to_string().contains(secret.trim_start_matches(PREFIX)));
        }
        let ok = Signer::from_secret(&SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        assert!(!format!("{ok:?}").contains("MfKQ"));
    }
}
