//! BYOK keys: validated with their provider, stored encrypted.

use creditgate_domain::BillingMode;
use creditgate_gateway::ErrorKind;
use creditgate_storage::ByokKeyRecord;
use secrecy::SecretString;

use crate::error::AiError;
use crate::service::{AiService, short};
use crate::vault::hint;

const MAX_API_KEY_LEN: usize = 512;

impl AiService {
    /// Validates a key with its provider, then stores it encrypted.
    pub async fn set_key(&self, user_id: &str, provider: &str, api_key: &str) -> Result<ByokKeyRecord, AiError> {
        let api_key = api_key.trim();
        if api_key.is_empty() || api_key.len() > MAX_API_KEY_LEN || api_key.chars().any(char::is_control) {
            return Err(AiError::BadInput(format!(
                "apiKey must have 1 to {MAX_API_KEY_LEN} printable characters"
            )));
        }
        if self.0.gateway.provider(provider).is_none() {
            return Err(AiError::BadInput(format!("unknown provider `{}`", short(provider))));
        }
        let secret = SecretString::from(api_key.to_owned());
        match self.0.gateway.validate_key(provider, &secret).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::KeyInvalid => {
                return Err(AiError::KeyInvalid(format!("{provider} refused this key")));
            }
            Err(e) => return Err(AiError::from_provider(&e)),
        }
        let ciphertext = self
            .0
            .vault
            .encrypt(&secret)
            .map_err(|e| AiError::Internal(e.to_string()))?;
        Ok(self
            .0
            .store
            .put_byok_key(user_id, provider, ciphertext, hint(api_key))
            .await?)
    }

    pub async fn remove_key(&self, user_id: &str, provider: &str) -> Result<bool, AiError> {
        Ok(self.0.store.remove_byok_key(user_id, provider).await?)
    }

    pub async fn keys(&self, user_id: &str) -> Result<Vec<ByokKeyRecord>, AiError> {
        Ok(self.0.store.byok_keys(user_id).await?)
    }

    /// How the user's AI requests are paid for by default.
    pub async fn billing_mode(&self, user_id: &str) -> Result<BillingMode, AiError> {
        let keys = self.0.store.byok_keys(user_id).await?;
        Ok(if keys.iter().any(|k| self.0.gateway.provider(&k.provider).is_some()) {
            BillingMode::Byok
        } else {
            BillingMode::Credits
        })
    }
}
