//! Metered AI requests: every AI request of the SPA goes through here, is
//! paid from credits or through the user's own key, charged exactly, and
//! logged. Pricing and routing are pure; storage, providers and keys sit
//! behind the store, the gateway and the vault.

pub mod config;
mod error;
mod hold;
mod keys;
mod prepare;
pub mod routing;
mod run;
mod service;
mod settle;
mod stream;
mod types;
pub mod vault;

pub use config::{AiConfig, PricingConfig};
pub use error::AiError;
pub use service::AiService;
pub use types::{AiMessage, AiOutcome, AiRequest, Estimate, FeatureInfo, StreamItem};
pub use vault::{KeyVault, VaultError, hint};
