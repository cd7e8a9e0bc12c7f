//! BYOK keys at rest: encrypted with age to the server's X25519 recipient.
//!
//! The identity that decrypts comes from configuration (a file, or an
//! environment variable holding `AGE-SECRET-KEY-1...`); in the embedded
//! default it is generated on first start into the data folder with
//! owner-only permissions. Keys are decrypted only for their owner's
//! request and live in `SecretString`s, which never print.

use std::io::Write;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the BYOK identity at {path} cannot be used: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("the BYOK identity in the environment variable {0} is not an age X25519 identity")]
    IdentityEnv(String),
    #[error("a stored key cannot be decrypted with this identity")]
    Decrypt,
    #[error("a key cannot be encrypted: {0}")]
    Encrypt(String),
}

/// Encrypts keys to the server's recipient and decrypts them with its
/// identity. The identity file may hold several identities, newest first:
/// the first encrypts, every one decrypts (a rotation interrupted midway
/// loses nothing).
pub struct KeyVault {
    identities: Vec<age::x25519::Identity>,
    recipient: age::x25519::Recipient,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVault")
            .field("recipient", &self.recipient.to_string())
            .finish_non_exhaustive()
    }
}

impl KeyVault {
    pub fn new(identity: age::x25519::Identity) -> Self {
        let recipient = identity.to_public();
        KeyVault {
            identities: vec![identity],
            recipient,
        }
    }

    /// A vault whose new identity encrypts, and which still decrypts with
    /// this one's identities (the first step of a rotation).
    pub fn rotated(&self) -> KeyVault {
        let fresh = age::x25519::Identity::generate();
        let recipient = fresh.to_public();
        let mut identities = vec![fresh];
        identities.extend(self.identities.iter().cloned());
        KeyVault { identities, recipient }
    }

    /// Only the identity that encrypts (the last step of a rotation).
    pub fn current_only(&self) -> KeyVault {
        KeyVault {
            identities: self.identities.iter().take(1).cloned().collect(),
            recipient: self.recipient.clone(),
        }
    }

    /// A fresh identity (tests, rotation).
    pub fn generate() -> Self {
        Self::new(age::x25519::Identity::generate())
    }

    /// The identity in `path`, which must exist (production: every replica
    /// must decrypt with the same identity, so none is generated).
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        Self::load_or(path, false)
    }

    /// The identity in `path`, created there (mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> Result<Self, VaultError> {
        Self::load_or(path, true)
    }

    fn load_or(path: &Path, create: bool) -> Result<Self, VaultError> {
        let err = |reason: String| VaultError::Identity {
            path: path.to_owned(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).ok_or_else(|| err("not an age X25519 identity".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let vault = Self::generate();
                vault.write_identity(path).map_err(|e| err(e.to_string()))?;
                Ok(vault)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// The identity held in an environment variable.
    pub fn from_env(var: &str) -> Result<Self, VaultError> {
        let text = std::env::var(var).map_err(|_| VaultError::IdentityEnv(var.to_owned()))?;
        Self::parse(&text).ok_or_else(|| VaultError::IdentityEnv(var.to_owned()))
    }

    fn parse(text: &str) -> Option<Self> {
        let identities = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
            .map(|l| l.parse::<age::x25519::Identity>().ok())
            .collect::<Option<Vec<_>>>()?;
        let recipient = identities.first()?.to_public();
        Some(KeyVault { identities, recipient })
    }

    /// Writes the identities to `path` with owner-only permissions,
    /// atomically (a temporary file renamed over it).
    pub fn write_identity(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        self.write_identity_to(&tmp)?;
        std::fs::rename(&tmp, path)
    }

    fn write_identity_to(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(path)?;
        writeln!(f, "# creditgate BYOK identity; public key: {}", self.recipient)?;
        writeln!(f, "# The first identity encrypts; every identity decrypts.")?;
        for identity in &self.identities {
            writeln!(f, "{}", identity.to_string().expose_secret())?;
        }
        f.sync_all()
    }

    /// The public recipient (safe to show).
    pub fn recipient(&self) -> String {
        self.recipient.to_string()
    }

    /// Encrypts a key; the result is base64 text for storage.
    pub fn encrypt(&self, key: &SecretString) -> Result<String, VaultError> {
        let bytes = age::encrypt(&self.recipient, key.expose_secret().as_bytes())
            .map_err(|e| VaultError::Encrypt(e.to_string()))?;
        Ok(base64_encode(&bytes))
    }

    pub fn decrypt(&self, stored: &str) -> Result<SecretString, VaultError> {
        let bytes = base64_decode(stored).ok_or(VaultError::Decrypt)?;
        for identity in &self.identities {
            if let Ok(plain) = age::decrypt(identity, &bytes) {
                return String::from_utf8(plain)
                    .map(SecretString::from)
                    .map_err(|_| VaultError::Decrypt);
            }
        }
        Err(VaultError::Decrypt)
    }
}

/// A few characters of a key, enough to recognise it, never the key: its
/// prefix up to the first dash-separated part and its last four characters.
pub fn hint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 12 {
        return "…".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    let prefix: String = key.split('-').next().filter(|p| p.len() <= 6).unwrap_or("").to_owned();
    if prefix.is_empty() {
        format!("…{tail}")
    } else {
        format!("{prefix}-…{tail}")
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_plaintext() {
        let vault = KeyVault::generate();
        let key = SecretString::from("sk-proj-abcdefghijklmnop1234");
        let stored = vault.encrypt(&key).unwrap();
        assert!(!stored.contains("abcdefghijklmnop"));
        assert_eq!(
            vault.decrypt(&stored).unwrap().expose_secret(),
            "sk-proj-abcdefghijklmnop1234"
        );
        assert!(
            KeyVault::generate().decrypt(&stored).is_err(),
            "another identity cannot read it"
        );
        assert_eq!(hint("sk-proj-abcdefghijklmnop1234"), "sk-…1234");
        assert!(!format!("{vault:?}").contains("AGE-SECRET"));
    }

    #[test]
    fn rotation_keeps_every_key_readable() {
        let old = KeyVault::generate();
        let stored = old.encrypt(&SecretString::from("sk-test-rotation-000")).unwrap();
        let mid = old.rotated();
        assert_eq!(mid.decrypt(&stored).unwrap().expose_secret(), "sk-test-rotation-000");
        let again = mid.encrypt(&mid.decrypt(&stored).unwrap()).unwrap();
        let new = mid.current_only();
        assert!(new.decrypt(&stored).is_err());
        assert_eq!(new.decrypt(&again).unwrap().expose_secret(), "sk-test-rotation-000");
    }

    #[test]
    fn identity_file_is_owner_only_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("byok-identity.txt");
        let a = KeyVault::load_or_create(&path).unwrap();
        let b = KeyVault::load_or_create(&path).unwrap();
        assert_eq!(a.recipient(), b.recipient());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
