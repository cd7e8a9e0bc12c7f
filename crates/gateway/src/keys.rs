//! Keys: which key a request uses, and the check that the plugin put the
//! key's placeholder exactly where its manifest says before the key is
//! swapped in (in a header marked sensitive by the sender).

use creditgate_provider_sdk::{HttpRequest, KeyPlacement, check_key_placement};
use secrecy::{ExposeSecret, SecretString};

use crate::gateway::Entry;
use crate::{KeySource, ProviderError};

/// A resolved key and whose it is.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) secret: Option<SecretString>,
    pub(crate) source: KeySource,
}

impl Key {
    pub(crate) fn secret(&self) -> Option<&SecretString> {
        self.secret.as_ref()
    }
}

/// Which key a request uses.
#[derive(Debug, Clone)]
pub enum ApiKey {
    /// The platform's key for the provider (credit-paid requests).
    Platform,
    /// The user's own key (BYOK).
    User(SecretString),
}

/// Checks the key placement and injects the key into a copy of the headers.
pub(crate) fn inject_key(entry: &Entry, request: &mut HttpRequest, key: &Key) -> Result<Option<usize>, ProviderError> {
    let index = check_key_placement(&entry.manifest.key, request).map_err(|message| ProviderError::Plugin {
        provider: entry.id.clone(),
        message: format!("refused request: {message}"),
    })?;
    if let (Some(index), Some(key)) = (index, key.secret())
        && let Some((_, value)) = request.headers.get_mut(index)
    {
        *value = match entry.manifest.key {
            KeyPlacement::Bearer => format!("Bearer {}", key.expose_secret()),
            _ => key.expose_secret().to_owned(),
        };
    }
    Ok(index)
}
