//! Configuration of metered AI: pricing, BYOK identity, rate limits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use creditgate_domain::{AiFeature, Credits, FeaturePricing, ModelPrice, PricingError, PricingTable};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPriceConfig {
    pub provider: String,
    pub model: String,
    pub input_per_1k: Credits,
    pub output_per_1k: Credits,
    pub max_output_tokens: u32,
    /// Input read from the provider's prompt cache; default: `input_per_1k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_1k: Option<Credits>,
    /// Input written to the provider's prompt cache; default: `input_per_1k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_1k: Option<Credits>,
    /// Reasoning (thinking) output; default: `output_per_1k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_per_1k: Option<Credits>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    pub description: String,
    pub base_cost: Credits,
    pub default_provider: String,
    pub default_model: String,
    pub default_output_tokens: u32,
    pub min_output_tokens: u32,
    pub system_prompt: String,
}

/// The versioned pricing table, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// Recorded on every AI entry charged with this table.
    pub version: String,
    pub models: Vec<ModelPriceConfig>,
    /// By feature name (CHAT, EXECUTIVE_ANALYSIS, STANDUP_SYNTHESIS, AUTO_SCHEDULING).
    pub features: BTreeMap<String, FeatureConfig>,
    /// Per provider, the model used when a request names none.
    pub default_models: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AiConfig {
    /// The age identity that decrypts stored BYOK keys (default:
    /// `<data_dir>/byok-identity.txt`, generated on first start).
    pub identity_file: Option<PathBuf>,
    /// Or the name of an environment variable holding it.
    pub identity_env: Option<String>,
    /// AI requests per user per minute on this replica; 0 turns the limit off.
    pub requests_per_minute: u32,
    /// Requests a user may make at once above the steady rate.
    pub burst: u32,
    /// Largest total size of a request's messages, in bytes.
    pub max_prompt_bytes: usize,
    /// Messages in one request, at most.
    pub max_messages: usize,
    pub pricing: PricingConfig,
}

impl Default for AiConfig {
    fn default() -> Self {
        AiConfig {
            identity_file: None,
            identity_env: None,
            requests_per_minute: 60,
            burst: 20,
            max_prompt_bytes: 128 * 1024,
            max_messages: 200,
            pricing: PricingConfig::default(),
        }
    }
}

fn price(provider: &str, model: &str, input: i64, output: i64, max_output_tokens: u32) -> ModelPriceConfig {
    ModelPriceConfig {
        provider: provider.into(),
        model: model.into(),
        // milli-credits per 1,000 tokens
        input_per_1k: Credits::from_millis(input),
        output_per_1k: Credits::from_millis(output),
        max_output_tokens,
        cached_input_per_1k: None,
        cache_write_per_1k: None,
        reasoning_per_1k: None,
    }
}

/// A model with a prompt cache: reads at `cached`, writes at `write`
/// (milli-credits per 1,000 tokens); `None` prices them as plain input.
fn cached(mut p: ModelPriceConfig, cached: i64, write: Option<i64>) -> ModelPriceConfig {
    p.cached_input_per_1k = Some(Credits::from_millis(cached));
    p.cache_write_per_1k = write.map(Credits::from_millis);
    p
}

impl Default for PricingConfig {
    /// The shipped table: the offline demo provider serves every feature, so
    /// the embedded default works at once; OpenAI and Anthropic models are
    /// priced for when their keys are configured.
    fn default() -> Self {
        let feature = |description: &str, base: i64, out: u32, min: u32, prompt: &str| FeatureConfig {
            description: description.into(),
            base_cost: Credits::from_millis(base),
            default_provider: "demo".into(),
            default_model: "demo-1".into(),
            default_output_tokens: out,
            min_output_tokens: min,
            system_prompt: prompt.into(),
        };
        let mut features = BTreeMap::new();
        features.insert(
            "CHAT".into(),
            feature(
                "Chat with an assistant that knows your projects.",
                100,
                1_024,
                64,
                "You are a helpful assistant inside a project-management application. Answer briefly and concretely.",
            ),
        );
        features.insert(
            "EXECUTIVE_ANALYSIS".into(),
            feature(
                "An executive summary of a portfolio: progress, risks and decisions needed.",
                1_000,
                2_048,
                256,
                "You are an analyst writing for executives. Summarize progress, risks and decisions needed.",
            ),
        );
        features.insert(
            "STANDUP_SYNTHESIS".into(),
            feature(
                "A synthesis of the team's standup notes.",
                500,
                1_024,
                128,
                "Synthesize these standup notes: what was done, what is next, what is blocked.",
            ),
        );
        features.insert(
            "AUTO_SCHEDULING".into(),
            feature(
                "A proposed schedule for open tasks given their estimates and dependencies.",
                500,
                1_024,
                128,
                "Propose a schedule for these tasks, respecting dependencies, estimates and capacity.",
            ),
        );
        let mut default_models = BTreeMap::new();
        default_models.insert("openai".into(), "gpt-4o-mini".into());
        default_models.insert("anthropic".into(), "claude-haiku-4-5-20251001".into());
        default_models.insert("demo".into(), "demo-1".into());
        PricingConfig {
            version: "2026-11-01".into(),
            models: vec![
                price("demo", "demo-1", 500, 1_500, 4_096),
                // As the providers bill them: OpenAI's cached input at its
                // cached price (reasoning at the output price); Anthropic's
                // cache reads at 0.1x and 5-minute cache writes at 1.25x input.
                cached(price("openai", "gpt-4o-mini", 150, 600, 16_384), 75, None),
                cached(price("openai", "gpt-4o", 2_500, 10_000, 16_384), 1_250, None),
                cached(price("openai", "gpt-4.1", 2_000, 8_000, 32_768), 500, None),
                cached(price("openai", "gpt-5", 1_250, 10_000, 128_000), 125, None),
                cached(
                    price("anthropic", "claude-sonnet-4-6", 3_000, 15_000, 64_000),
                    300,
                    Some(3_750),
                ),
                cached(
                    price("anthropic", "claude-haiku-4-5-20251001", 1_000, 5_000, 64_000),
                    100,
                    Some(1_250),
                ),
            ],
            features,
            default_models,
        }
    }
}

impl PricingConfig {
    pub fn table(&self) -> Result<PricingTable, PricingError> {
        let mut models = BTreeMap::new();
        for m in &self.models {
            let key = (m.provider.clone(), m.model.clone());
            let price = ModelPrice {
                cached_input_per_1k: m.cached_input_per_1k,
                cache_write_per_1k: m.cache_write_per_1k,
                reasoning_per_1k: m.reasoning_per_1k,
                ..ModelPrice::new(m.input_per_1k, m.output_per_1k, m.max_output_tokens)
            };
            if models.insert(key, price).is_some() {
                return Err(PricingError::Invalid(format!(
                    "{}/{} is priced twice",
                    m.provider, m.model
                )));
            }
        }
        let mut features = BTreeMap::new();
        for (name, f) in &self.features {
            let feature: AiFeature = name
                .parse()
                .map_err(|_| PricingError::Invalid(format!("`{name}` is not a feature")))?;
            features.insert(
                feature,
                FeaturePricing {
                    description: f.description.clone(),
                    base_cost: f.base_cost,
                    default_provider: f.default_provider.clone(),
                    default_model: f.default_model.clone(),
                    default_output_tokens: f.default_output_tokens,
                    min_output_tokens: f.min_output_tokens,
                    system_prompt: f.system_prompt.clone(),
                },
            );
        }
        PricingTable::new(self.version.clone(), models, features, self.default_models.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_pricing_is_valid() {
        let t = PricingConfig::default().table().unwrap();
        assert_eq!(t.feature(AiFeature::Chat).unwrap().default_provider, "demo");
        let sonnet = t.price("anthropic", "claude-sonnet-4-6").unwrap();
        assert_eq!(sonnet.cached_input().to_string(), "0.3");
        assert_eq!(sonnet.cache_write().to_string(), "3.75");
        assert_eq!(sonnet.reasoning(), sonnet.output_per_1k);
    }

    #[test]
    fn token_kind_prices_are_optional_keys() {
        let m: ModelPriceConfig = serde_json::from_value(serde_json::json!({
            "provider": "openai", "model": "o-x", "input_per_1k": "1", "output_per_1k": "4",
            "max_output_tokens": 1000, "cached_input_per_1k": "0.25", "reasoning_per_1k": "5",
        }))
        .unwrap();
        assert_eq!(m.cached_input_per_1k, Some("0.25".parse().unwrap()));
        assert_eq!(m.cache_write_per_1k, None);
        assert_eq!(m.reasoning_per_1k, Some("5".parse().unwrap()));
        let mut config = PricingConfig::default();
        config.models.push(m);
        let table = config.table().unwrap();
        let price = table.price("openai", "o-x").unwrap();
        assert_eq!(price.cache_write(), price.input_per_1k);
        assert_eq!(price.reasoning().to_string(), "5");
    }
}
