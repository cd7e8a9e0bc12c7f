//! Identity: JWTs in, callers out.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use creditgate_domain::Role;
use creditgate_storage::Identity;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, JwtAlgorithm};

/// The claims creditgate reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub org: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_name: Option<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why a token was refused. The messages name no secret and no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send `Authorization: Bearer <JWT>`")]
    Missing,
    #[error("the Authorization header must be `Bearer <JWT>`")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Tokens verified at most, kept with what they say (see
/// [`Authenticator::authenticate`]).
const VERIFIED_TOKENS: usize = 4_096;

/// A token kept longer than this is verified every time instead (a token
/// is a few hundred bytes; this bounds what the cache can hold).
const LONGEST_KEPT_TOKEN: usize = 4_096;

/// A token this replica verified: who it names, and until when.
#[derive(Clone)]
struct Verified {
    identity: Identity,
    exp: i64,
}

/// Checks tokens, and (with an HS256 secret) signs them for development.
pub struct Authenticator {
    decoding: DecodingKey,
    validation: Validation,
    signing: Option<(EncodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
    /// Tokens already verified, by the whole token (signature included).
    verified: quick_cache::sync::Cache<String, Verified>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn from_config(config: &Config) -> Result<Authenticator, ConfigError> {
        let jwt = &config.jwt;
        let (decoding, signing, algorithm) = match jwt.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = hs256_secret(config)?;
                let bytes = secret.expose_secret().as_bytes();
                (
                    DecodingKey::from_secret(bytes),
                    Some((EncodingKey::from_secret(bytes), Algorithm::HS256)),
                    Algorithm::HS256,
                )
            }
            alg => {
                let path = jwt.public_key_file.as_deref().ok_or(ConfigError::Key {
                    key: "jwt.public_key_file",
                    message: "is required for this algorithm".into(),
                })?;
                let pem = std::fs::read(path).map_err(|e| ConfigError::Key {
                    key: "jwt.public_key_file",
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                let bad = |e: jsonwebtoken::errors::Error| ConfigError::Key {
                    key: "jwt.public_key_file",
                    message: format!("not a usable PEM public key: {e}"),
                };
                match alg {
                    JwtAlgorithm::RS256 => (DecodingKey::from_rsa_pem(&pem).map_err(bad)?, None, Algorithm::RS256),
                    JwtAlgorithm::ES256 => (DecodingKey::from_ec_pem(&pem).map_err(bad)?, None, Algorithm::ES256),
                    _ => (DecodingKey::from_ed_pem(&pem).map_err(bad)?, None, Algorithm::EdDSA),
                }
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = jwt.leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        match &jwt.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &jwt.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Authenticator {
            decoding,
            validation,
            signing,
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS),
        })
    }

    /// The caller of an `Authorization` header value.
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Malformed)?;
        self.authenticate(token)
    }

    /// The caller a token names. A client sends the same token with every
    /// request until it expires, so a token verified once is kept (a few
    /// thousand, the least used dropped first) with what it says: verifying
    /// it again, a signature and two JSON documents, was 3% of a credit-paid
    /// request's work. It is kept under the whole token, signature
    /// included, so only the very token this replica verified is ever
    /// answered from the cache, and only until it expires, by the same
    /// rule (and leeway) as a first verification.
    pub fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some(known) = self.verified.get(token) {
            if self.expired(known.exp) {
                self.verified.remove(token);
                return Err(AuthError::Expired);
            }
            return Ok(known.identity);
        }
        let verified = self.verify(token)?;
        if token.len() <= LONGEST_KEPT_TOKEN {
            self.verified.insert(token.to_owned(), verified.clone());
        }
        Ok(verified.identity)
    }

    /// Whether a token expiring at `exp` has expired, as `jsonwebtoken`
    /// decides it: `exp` more than the leeway in the past.
    fn expired(&self, exp: i64) -> bool {
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(i64::MAX);
        exp.saturating_add(leeway) < Utc::now().timestamp()
    }

    /// Verifies a token and reads its claims.
    fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
            ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
            ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
            ErrorKind::InvalidAlgorithm => AuthError::Invalid("wrong algorithm".into()),
            ErrorKind::MissingRequiredClaim(c) => AuthError::Invalid(format!("missing claim `{c}`")),
            ErrorKind::Json(_) => AuthError::Invalid("claims are missing or malformed".into()),
            _ => AuthError::Invalid("malformed token".into()),
        })?;
        let c = data.claims;
        let role: Role = c.role.parse().map_err(|_| {
            AuthError::Invalid(format!(
                "unknown role `{}`",
                c.role.chars().take(32).collect::<String>()
            ))
        })?;
        // Ids are checked by the documented text rules (an id with a control
        // character is refused); display claims are cleaned, never refused.
        for (name, value) in [("sub", &c.sub), ("org", &c.org)] {
            creditgate_domain::check_id(name, value).map_err(|e| AuthError::Invalid(format!("claim {e}")))?;
        }
        let clean = |v: Option<String>| v.as_deref().and_then(creditgate_domain::clean_display);
        Ok(Verified {
            identity: Identity {
                user_id: c.sub,
                org_id: c.org,
                role,
                name: clean(c.name),
                email: clean(c.email),
                team: clean(c.team),
                org_name: clean(c.org_name),
                expires_at: DateTime::from_timestamp(c.exp, 0),
            },
            exp: c.exp,
        })
    }

    /// Signs a development token; only with an HS256 secret.
    pub fn issue(&self, who: &TokenRequest) -> Result<String, AuthError> {
        let Some((key, alg)) = &self.signing else {
            return Err(AuthError::Invalid(
                "tokens can only be signed with an HS256 secret".into(),
            ));
        };
        let claims = Claims {
            sub: who.sub.clone(),
            org: who.org.clone(),
            role: who.role.as_str().to_owned(),
            name: who.name.clone(),
            email: who.email.clone(),
            team: who.team.clone(),
            org_name: who.org_name.clone(),
            exp: (Utc::now() + who.ttl).timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        encode(&Header::new(*alg), &claims, key).map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// What `creditgate token` signs.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub sub: String,
    pub org: String,
    pub role: Role,
    pub name: Option<String>,
    pub email: Option<String>,
    pub team: Option<String>,
    pub org_name: Option<String>,
    pub ttl: Duration,
}

/// The configured secret, or the one generated into the data folder on
/// first start (owner-only), which `creditgate token` reads too.
fn hs256_secret(config: &Config) -> Result<SecretString, ConfigError> {
    if let Some(secret) = &config.jwt_secret {
        if secret.expose_secret().len() < 32 {
            return Err(ConfigError::Key {
                key: "jwt_secret",
                message: "must be at least 32 characters".into(),
            });
        }
        return Ok(secret.clone());
    }
    config.ensure_data_dir()?;
    let path = config.data_dir.join("jwt-secret");
    read_or_create_secret(&path).map_err(|source| ConfigError::DataDir { path, source })
}

fn read_or_create_secret(path: &Path) -> std::io::Result<SecretString> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if existing.len() >= 32 {
            return Ok(SecretString::from(existing));
        }
    }
    let bytes: [u8; 32] = rand::random();
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut f = options.open(path)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    Ok(SecretString::from(secret))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "unit-secret-unit-secret-unit-secret-0123";

    fn authenticator() -> Authenticator {
        let config = Config::from_toml(&format!("jwt_secret = {SECRET:?}")).unwrap();
        Authenticator::from_config(&config).unwrap()
    }

    fn sign(claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn the_identity_carries_the_verified_expiry() {
        let exp = Utc::now().timestamp() + 600;
        let token = sign(&json!({"sub": "alice", "org": "acme", "role": "member", "exp": exp}));
        let id = authenticator().authenticate(&token).unwrap();
        assert_eq!(id.expires_at.map(|t| t.timestamp()), Some(exp));
    }

    #[test]
    fn a_verified_token_still_expires() {
        let config = Config::from_toml(&format!("jwt_secret = {SECRET:?}\n[jwt]\nleeway_secs = 0")).unwrap();
        let auth = Authenticator::from_config(&config).unwrap();
        let exp = Utc::now().timestamp() + 1;
        let token = sign(&json!({"sub": "alice", "org": "acme", "role": "member", "exp": exp}));
        assert_eq!(auth.authenticate(&token).unwrap().user_id, "alice");
        // Answered from the cache while it is valid...
        assert_eq!(auth.authenticate(&token).unwrap().user_id, "alice");
        // ...and refused from it once it is not.
        while Utc::now().timestamp() <= exp {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(auth.authenticate(&token), Err(AuthError::Expired));
        assert_eq!(auth.authenticate(&token), Err(AuthError::Expired));
    }

    #[test]
    fn a_verified_token_vouches_for_no_other() {
        let auth = authenticator();
        let exp = Utc::now().timestamp() + 600;
        let token = sign(&json!({"sub": "alice", "org": "acme", "role": "member", "exp": exp}));
        auth.authenticate(&token).unwrap();
        // The same claims under another signature, and another caller's
        // claims under the verified signature: both refused.
        let parts: Vec<&str> = token.split('.').collect();
        let resigned = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert_eq!(
            auth.authenticate(&resigned),
            Err(AuthError::Invalid("bad signature".into()))
        );
        let mallory =
            URL_SAFE_NO_PAD.encode(json!({"sub": "mallory", "org": "acme", "role": "admin", "exp": exp}).to_string());
        let borrowed = format!("{}.{mallory}.{}", parts[0], parts[2]);
        assert_eq!(
            auth.authenticate(&borrowed),
            Err(AuthError::Invalid("bad signature".into()))
        );
        assert_eq!(auth.authenticate(&token).unwrap().user_id, "alice");
    }

    #[test]
    fn an_expiry_edited_into_a_signed_token_is_refused() {
        let exp = Utc::now().timestamp() + 600;
        let token = sign(&json!({"sub": "alice", "org": "acme", "role": "member", "exp": exp}));
        let later = URL_SAFE_NO_PAD
            .encode(json!({"sub": "alice", "org": "acme", "role": "member", "exp": exp + 86_400}).to_string());
        let parts: Vec<&str> = token.split('.').collect();
        let edited = format!("{}.{later}.{}", parts[0], parts[2]);
        assert_eq!(
            authenticator().authenticate(&edited),
            Err(AuthError::Invalid("bad signature".into()))
        );
    }
}
