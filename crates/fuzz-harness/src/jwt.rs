//! JWT claims (`crates/server/src/auth.rs`, `Authenticator::authenticate`).
//!
//! Input: one mode byte, then
//! * mode 0: a token, as is (and as an `Authorization` header value);
//! * mode 1: the claims JSON of a token signed with the test HS256 secret
//!   under the header `{"alg":"HS256","typ":"JWT"}`; the interesting case,
//!   since a signature check otherwise refuses everything;
//! * mode 2: a header JSON, a newline, then the claims JSON, both signed;
//! * mode 3: as mode 1, but the signed token is sent as a header value.
//!
//! Oracles: no panic; an error never shows the secret; a token with a bad
//! signature is never accepted; an accepted token had JSON claims whose
//! `exp` is not past, whose role is one creditgate knows, and gives an
//! identity whose fields keep their documented bounds.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use creditgate_server::{Authenticator, Config};
use creditgate_storage::Identity;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::JWT_SECRET;

const DEFAULT_HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

/// The bound `auth.rs` keeps on every string claim.
const CLAIM_MAX: usize = 256;

struct Setup {
    auth: Authenticator,
    leeway: i64,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let config = Config::from_toml(&format!("jwt_secret = {JWT_SECRET:?}")).expect("configuration");
        let leeway = i64::try_from(config.jwt.leeway_secs).expect("leeway");
        Setup {
            auth: Authenticator::from_config(&config).expect("authenticator"),
            leeway,
        }
    })
}

fn mac(signing_input: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(JWT_SECRET.as_bytes()).expect("HMAC takes any key");
    mac.update(signing_input);
    mac.finalize().into_bytes().to_vec()
}

/// `header.claims.signature`, signed with the test secret.
pub fn sign(header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let signature = URL_SAFE_NO_PAD.encode(mac(input.as_bytes()));
    format!("{input}.{signature}")
}

/// Whether `token` carries a valid HS256 signature under the test secret.
fn signature_is_valid(token: &str) -> bool {
    let Some((input, signature)) = token.trim().rsplit_once('.') else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(signature.trim_end_matches('='))
        .is_ok_and(|s| s == mac(input.as_bytes()))
}

pub fn target(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = setup();
    match mode % 4 {
        0 => {
            let token = String::from_utf8_lossy(rest);
            let outcome = s.auth.authenticate(&token);
            check(&outcome, None, s.leeway);
            if outcome.is_ok() {
                assert!(
                    signature_is_valid(&token),
                    "a token without a valid signature was accepted"
                );
            }
            let header = s.auth.authenticate_header(Some(&token));
            check(&header, None, s.leeway);
        }
        2 => {
            let (header, claims) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &b""[..]),
            };
            let token = sign(header, claims);
            let outcome = s.auth.authenticate(&token);
            if outcome.is_ok() {
                let header: Value =
                    serde_json::from_str(&String::from_utf8_lossy(header)).expect("an accepted header is JSON");
                assert_eq!(header["alg"], "HS256", "a token not signed with HS256 was accepted");
            }
            check(&outcome, Some(claims), s.leeway);
        }
        mode => {
            let token = sign(DEFAULT_HEADER, rest);
            let outcome = if mode == 3 {
                s.auth.authenticate_header(Some(&format!("Bearer {token}")))
            } else {
                s.auth.authenticate(&token)
            };
            check(&outcome, Some(rest), s.leeway);
        }
    }
}

fn check<E: std::fmt::Display>(outcome: &Result<Identity, E>, claims: Option<&[u8]>, leeway: i64) {
    let id = match outcome {
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains(JWT_SECRET), "an error shows the secret: {message}");
            return;
        }
        Ok(id) => id,
    };
    for (name, value) in [("sub", &id.user_id), ("org", &id.org_id)] {
        assert!(
            !value.trim().is_empty() && value.len() <= CLAIM_MAX,
            "claim `{name}` out of bounds: {value:?}"
        );
    }
    for value in [&id.name, &id.email, &id.team, &id.org_name].into_iter().flatten() {
        assert!(
            value.chars().count() <= CLAIM_MAX,
            "an optional claim is not clipped: {value:?}"
        );
    }
    if let Some(claims) = claims {
        // serde_json skips unknown fields without checking their UTF-8, so
        // accepted claims may hold invalid bytes there: read them lossily.
        let claims: Value = serde_json::from_str(&String::from_utf8_lossy(claims)).expect("accepted claims are JSON");
        let exp = claims["exp"].as_f64().expect("accepted claims have a numeric exp");
        let now = chrono::Utc::now().timestamp() as f64;
        assert!(
            exp >= now - leeway as f64 - 1.0,
            "an expired token was accepted: exp {exp}"
        );
        assert_eq!(
            claims["role"].as_str(),
            Some(id.role.as_str()),
            "the identity's role is not the claim's"
        );
    }
}
