//! Metered AI requests: every AI request of the SPA goes through here, is
//! paid from credits or through the user's own key, charged exactly, and
//! logged. Pricing and routing are pure; storage, providers and keys sit
//! behind the store, the gateway and the vault.

pub mod config;
pub mod routing;
pub mod service;
pub mod vault;

pub use config::{AiConfig, PricingConfig};
pub use service::{AiError, AiMessage, AiOutcome, AiRequest, AiService, Estimate, FeatureInfo, StreamItem};
pub use vault::{KeyVault, VaultError, hint};
