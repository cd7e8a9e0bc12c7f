//! What requests are told apart by.

use sha2::{Digest, Sha256};

/// A fingerprint of a request, to tell a retry from a different request
/// that reuses its idempotency key.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}
