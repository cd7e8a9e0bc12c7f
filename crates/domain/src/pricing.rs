//! Pricing: what an AI request costs, from a versioned table.
//!
//! Per provider and model, credits per 1,000 input and output tokens; per
//! feature a base cost, a default provider and model, a default output
//! budget and a system prompt. An unknown model is refused, never priced at
//! 0. All arithmetic is exact in milli-credits and rounds up (a fraction of
//! a milli-credit is charged as one).

use std::collections::BTreeMap;

use crate::credits::Credits;
use crate::kinds::AiFeature;

/// The price of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_1k: Credits,
    pub output_per_1k: Credits,
    /// The most output tokens the model produces in one answer.
    pub max_output_tokens: u32,
}

/// How a feature is priced and served by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturePricing {
    pub description: String,
    pub base_cost: Credits,
    pub default_provider: String,
    pub default_model: String,
    /// Output tokens a request gets when it does not say.
    pub default_output_tokens: u32,
    /// The fewest output tokens worth running the request for: a wallet that
    /// cannot afford this many is refused with INSUFFICIENT_CREDITS.
    pub min_output_tokens: u32,
    pub system_prompt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("model `{model}` of provider `{provider}` has no price; it cannot be used")]
    UnknownModel { provider: String, model: String },
    #[error("feature {0} is not configured")]
    UnknownFeature(AiFeature),
    #[error("pricing: {0}")]
    Invalid(String),
    #[error("the cost is past the largest amount of credits")]
    Overflow,
}

/// A versioned pricing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingTable {
    version: String,
    models: BTreeMap<(String, String), ModelPrice>,
    features: BTreeMap<&'static str, FeaturePricing>,
    /// Per provider, the model that serves when only the provider is known.
    default_models: BTreeMap<String, String>,
}

impl PricingTable {
    pub fn new(
        version: impl Into<String>,
        models: BTreeMap<(String, String), ModelPrice>,
        features: BTreeMap<AiFeature, FeaturePricing>,
        default_models: BTreeMap<String, String>,
    ) -> Result<Self, PricingError> {
        let version = version.into();
        if version.trim().is_empty() {
            return Err(PricingError::Invalid("the version must not be empty".into()));
        }
        for ((p, m), price) in &models {
            if price.input_per_1k.is_negative() || price.output_per_1k.is_negative() {
                return Err(PricingError::Invalid(format!("{p}/{m} has a negative price")));
            }
            if price.max_output_tokens == 0 {
                return Err(PricingError::Invalid(format!("{p}/{m} has max_output_tokens 0")));
            }
        }
        let mut by_name = BTreeMap::new();
        for feature in AiFeature::ALL {
            let f = features.get(feature).ok_or(PricingError::UnknownFeature(*feature))?;
            if f.base_cost.is_negative() {
                return Err(PricingError::Invalid(format!("{feature} has a negative base cost")));
            }
            if f.min_output_tokens == 0 || f.min_output_tokens > f.default_output_tokens {
                return Err(PricingError::Invalid(format!(
                    "{feature}: min_output_tokens must be between 1 and default_output_tokens"
                )));
            }
            if !models.contains_key(&(f.default_provider.clone(), f.default_model.clone())) {
                return Err(PricingError::Invalid(format!(
                    "{feature}: its default model {}/{} has no price",
                    f.default_provider, f.default_model
                )));
            }
            by_name.insert(feature.as_str(), f.clone());
        }
        for (p, m) in &default_models {
            if !models.contains_key(&(p.clone(), m.clone())) {
                return Err(PricingError::Invalid(format!("default model {p}/{m} has no price")));
            }
        }
        Ok(PricingTable {
            version,
            models,
            features: by_name,
            default_models,
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn feature(&self, feature: AiFeature) -> Result<&FeaturePricing, PricingError> {
        self.features
            .get(feature.as_str())
            .ok_or(PricingError::UnknownFeature(feature))
    }

    pub fn price(&self, provider: &str, model: &str) -> Result<&ModelPrice, PricingError> {
        self.models
            .get(&(provider.to_owned(), model.to_owned()))
            .ok_or_else(|| PricingError::UnknownModel {
                provider: provider.to_owned(),
                model: model.to_owned(),
            })
    }

    /// Every priced model, as (provider, model), in order.
    pub fn models(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.models.keys().map(|(p, m)| (p.as_str(), m.as_str()))
    }

    /// The priced models of a provider.
    pub fn models_of<'a>(&'a self, provider: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.models
            .keys()
            .filter(move |(p, _)| p == provider)
            .map(|(_, m)| m.as_str())
    }

    /// The model that serves a provider when the request names none: the
    /// configured default, else the feature's default when it is that
    /// provider's, else its first priced model.
    pub fn default_model(&self, provider: &str, feature: AiFeature) -> Option<String> {
        if let Some(m) = self.default_models.get(provider) {
            return Some(m.clone());
        }
        if let Ok(f) = self.feature(feature)
            && f.default_provider == provider
        {
            return Some(f.default_model.clone());
        }
        self.models_of(provider).next().map(str::to_owned)
    }

    /// The cost of a request: base + tokens at the model's price, rounded up.
    pub fn cost(
        &self,
        feature: AiFeature,
        provider: &str,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<Credits, PricingError> {
        let base = self.feature(feature)?.base_cost;
        let price = self.price(provider, model)?;
        token_cost(base, price, input_tokens, output_tokens)
    }

    /// The most output tokens `budget` pays for on top of the base and the
    /// input, at most `cap`.
    pub fn affordable_output_tokens(
        &self,
        feature: AiFeature,
        provider: &str,
        model: &str,
        input_tokens: u64,
        budget: Credits,
        cap: u32,
    ) -> Result<u32, PricingError> {
        let base = self.feature(feature)?.base_cost;
        let price = self.price(provider, model)?;
        // cost(out) = base + ceil((in * pin + out * pout) / 1000) <= budget
        //   <=>  in * pin + out * pout <= (budget - base) * 1000
        let room = (i128::from(budget.millis()) - i128::from(base.millis())) * 1000
            - i128::from(input_tokens) * i128::from(price.input_per_1k.millis());
        if room < 0 {
            return Ok(0);
        }
        let per_1k = i128::from(price.output_per_1k.millis());
        if per_1k == 0 {
            return Ok(cap);
        }
        let most = room / per_1k;
        Ok(u32::try_from(most.min(i128::from(cap))).unwrap_or(cap))
    }
}

fn token_cost(base: Credits, price: &ModelPrice, input: u64, output: u64) -> Result<Credits, PricingError> {
    let tokens = i128::from(input) * i128::from(price.input_per_1k.millis())
        + i128::from(output) * i128::from(price.output_per_1k.millis());
    let variable = (tokens + 999) / 1000;
    let total = i128::from(base.millis()) + variable;
    i64::try_from(total)
        .map(Credits::from_millis)
        .map_err(|_| PricingError::Overflow)
}

/// A safe upper bound of the tokens of a prompt: byte-level BPE tokenizers
/// (OpenAI's, Anthropic's) never produce more tokens than bytes, plus a few
/// tokens of framing per message.
pub fn max_prompt_tokens<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut total = 8u64;
    for p in parts {
        total = total.saturating_add(p.len() as u64).saturating_add(8);
    }
    total
}

/// An estimate of the tokens of generated text when the provider did not
/// report them (a stream cancelled before its usage arrived): about four
/// bytes of text per token, rounded up.
pub fn approx_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table() -> PricingTable {
        let c = |s: &str| s.parse::<Credits>().unwrap();
        let mut models = BTreeMap::new();
        models.insert(
            ("demo".to_owned(), "m".to_owned()),
            ModelPrice {
                input_per_1k: c("0.5"),
                output_per_1k: c("1.5"),
                max_output_tokens: 4096,
            },
        );
        let mut features = BTreeMap::new();
        for f in AiFeature::ALL {
            features.insert(
                *f,
                FeaturePricing {
                    description: "d".into(),
                    base_cost: c("0.1"),
                    default_provider: "demo".into(),
                    default_model: "m".into(),
                    default_output_tokens: 500,
                    min_output_tokens: 50,
                    system_prompt: "s".into(),
                },
            );
        }
        PricingTable::new("v1", models, features, BTreeMap::new()).unwrap()
    }

    #[test]
    fn cost_rounds_up_and_refuses_unknown_models() {
        let t = table();
        // 0.1 + (1000*0.5 + 1000*1.5)/1000 = 2.1
        assert_eq!(
            t.cost(AiFeature::Chat, "demo", "m", 1000, 1000).unwrap().to_string(),
            "2.1"
        );
        // one input token: 0.5 milli-credits, rounded up to 1
        assert_eq!(t.cost(AiFeature::Chat, "demo", "m", 1, 0).unwrap().millis(), 101);
        assert!(matches!(
            t.cost(AiFeature::Chat, "demo", "x", 1, 1),
            Err(PricingError::UnknownModel { .. })
        ));
    }

    proptest! {
        #[test]
        fn affordable_output_is_affordable_and_maximal(input in 0u64..100_000, budget in 0i64..1_000_000) {
            let t = table();
            let budget = Credits::from_millis(budget);
            let out = t.affordable_output_tokens(AiFeature::Chat, "demo", "m", input, budget, 4096).unwrap();
            if out > 0 {
                prop_assert!(t.cost(AiFeature::Chat, "demo", "m", input, u64::from(out)).unwrap() <= budget);
            }
            if out < 4096 && t.cost(AiFeature::Chat, "demo", "m", input, 0).unwrap() <= budget {
                prop_assert!(t.cost(AiFeature::Chat, "demo", "m", input, u64::from(out) + 1).unwrap() > budget);
            }
        }
    }
}
