//! Pricing: what an AI request costs, from a versioned table.
//!
//! Per provider and model, credits per 1,000 input and output tokens; per
//! feature a base cost, a default provider and model, a default output
//! budget and a system prompt. An unknown model is refused, never priced at
//! 0. All arithmetic is exact in milli-credits and rounds up (a fraction of
//! a milli-credit is charged as one).
//!
//! A model may price the kinds of tokens providers bill differently: input
//! read from the prompt cache (usually cheaper), input written to it (usually
//! dearer) and reasoning output. A kind without its own price costs the plain
//! input or output price. Each token of a [`TokenUsage`] is priced once, by
//! its kind, and the sum is rounded up once.

use std::collections::BTreeMap;

use crate::credits::Credits;
use crate::kinds::AiFeature;
use crate::tokens::TokenUsage;

/// The price of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    pub input_per_1k: Credits,
    pub output_per_1k: Credits,
    /// The most output tokens the model produces in one answer.
    pub max_output_tokens: u32,
    /// Input read from the prompt cache (OpenAI `cached_tokens`, Anthropic
    /// `cache_read_input_tokens`); `None`: the input price.
    pub cached_input_per_1k: Option<Credits>,
    /// Input written to the prompt cache (Anthropic
    /// `cache_creation_input_tokens`); `None`: the input price.
    pub cache_write_per_1k: Option<Credits>,
    /// Reasoning output (OpenAI `reasoning_tokens`, Anthropic thinking);
    /// `None`: the output price.
    pub reasoning_per_1k: Option<Credits>,
}

impl ModelPrice {
    /// Plain input and output prices; every other kind costs the same.
    pub const fn new(input_per_1k: Credits, output_per_1k: Credits, max_output_tokens: u32) -> Self {
        ModelPrice {
            input_per_1k,
            output_per_1k,
            max_output_tokens,
            cached_input_per_1k: None,
            cache_write_per_1k: None,
            reasoning_per_1k: None,
        }
    }

    /// The price of cached input.
    pub fn cached_input(&self) -> Credits {
        self.cached_input_per_1k.unwrap_or(self.input_per_1k)
    }

    /// The price of input written to the cache.
    pub fn cache_write(&self) -> Credits {
        self.cache_write_per_1k.unwrap_or(self.input_per_1k)
    }

    /// The price of reasoning output.
    pub fn reasoning(&self) -> Credits {
        self.reasoning_per_1k.unwrap_or(self.output_per_1k)
    }

    /// The dearest price an input token can have, whatever its kind.
    pub fn max_input(&self) -> Credits {
        self.input_per_1k.max(self.cached_input()).max(self.cache_write())
    }

    /// The dearest price an output token can have, whatever its kind.
    pub fn max_output(&self) -> Credits {
        self.output_per_1k.max(self.reasoning())
    }

    fn prices(&self) -> [Credits; 5] {
        [
            self.input_per_1k,
            self.output_per_1k,
            self.cached_input(),
            self.cache_write(),
            self.reasoning(),
        ]
    }
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
            if price.prices().iter().any(|p| p.is_negative()) {
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

    /// The cost of a request whose tokens are all plain input and output:
    /// [`PricingTable::cost_of`] of [`TokenUsage::plain`].
    pub fn cost(
        &self,
        feature: AiFeature,
        provider: &str,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<Credits, PricingError> {
        self.cost_of(
            feature,
            provider,
            model,
            &TokenUsage::plain(input_tokens, output_tokens),
        )
    }

    /// The cost of a request as the provider bills it: base + each kind of
    /// token at its price (cached input, cache writes, plain input, reasoning,
    /// plain output), rounded up once.
    pub fn cost_of(
        &self,
        feature: AiFeature,
        provider: &str,
        model: &str,
        usage: &TokenUsage,
    ) -> Result<Credits, PricingError> {
        let base = self.feature(feature)?.base_cost;
        let price = self.price(provider, model)?;
        token_cost(base, price, usage)
    }

    /// The most a request of `input_tokens` and `output_tokens` can cost,
    /// whatever kinds the provider reports them as: every input token at the
    /// dearest input price (a cache write may cost more than plain input),
    /// every output token at the dearest output price. What a hold takes, so
    /// that the settled [`PricingTable::cost_of`] never exceeds it.
    pub fn max_cost(
        &self,
        feature: AiFeature,
        provider: &str,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<Credits, PricingError> {
        let base = self.feature(feature)?.base_cost;
        let price = self.price(provider, model)?;
        let worst = ModelPrice::new(price.max_input(), price.max_output(), price.max_output_tokens);
        token_cost(base, &worst, &TokenUsage::plain(input_tokens, output_tokens))
    }

    /// The most output tokens `budget` pays for on top of the base and the
    /// input, at most `cap`, at the dearest prices ([`PricingTable::max_cost`]
    /// of the input and the answer stays within `budget`).
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
            - i128::from(input_tokens) * i128::from(price.max_input().millis());
        if room < 0 {
            return Ok(0);
        }
        let per_1k = i128::from(price.max_output().millis());
        if per_1k == 0 {
            return Ok(cap);
        }
        let most = room / per_1k;
        Ok(u32::try_from(most.min(i128::from(cap))).unwrap_or(cap))
    }
}

fn token_cost(base: Credits, price: &ModelPrice, usage: &TokenUsage) -> Result<Credits, PricingError> {
    let at = |n: u64, p: Credits| i128::from(n) * i128::from(p.millis());
    let tokens = at(usage.plain_input(), price.input_per_1k)
        + at(usage.cached_input(), price.cached_input())
        + at(usage.cache_write(), price.cache_write())
        + at(usage.plain_output(), price.output_per_1k)
        + at(usage.reasoning(), price.reasoning());
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

    fn c(s: &str) -> Credits {
        s.parse::<Credits>().unwrap()
    }

    /// `demo/m`: plain prices only. `demo/cache`: cached input at a tenth of
    /// the input price, cache writes at 1.25 times it, reasoning at the
    /// output price (as Anthropic and OpenAI bill them). `demo/dear`: cache
    /// reads dearer than plain input and reasoning dearer than output, which
    /// no provider does but the configuration allows.
    fn table() -> PricingTable {
        let mut models = BTreeMap::new();
        models.insert(
            ("demo".to_owned(), "m".to_owned()),
            ModelPrice::new(c("0.5"), c("1.5"), 4096),
        );
        models.insert(
            ("demo".to_owned(), "cache".to_owned()),
            ModelPrice {
                cached_input_per_1k: Some(c("0.3")),
                cache_write_per_1k: Some(c("3.75")),
                ..ModelPrice::new(c("3"), c("15"), 4096)
            },
        );
        models.insert(
            ("demo".to_owned(), "dear".to_owned()),
            ModelPrice {
                cached_input_per_1k: Some(c("0.7")),
                cache_write_per_1k: Some(c("0.6")),
                reasoning_per_1k: Some(c("2.5")),
                ..ModelPrice::new(c("0.5"), c("1.5"), 4096)
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

    #[test]
    fn each_kind_of_token_is_priced_once_at_its_own_price() {
        let t = table();
        // The Anthropic cache-hit fixture: 24 plain input, 2,051 cache reads,
        // 10 output. 0.1 + (24*3 + 2051*0.3 + 10*15)/1000 = 0.1 + 0.8373,
        // rounded up to the milli-credit.
        let hit = TokenUsage::plain(24 + 2051, 10).with_cached_input(2051);
        assert_eq!(t.cost_of(AiFeature::Chat, "demo", "cache", &hit).unwrap().millis(), 938);
        // All as plain input it would have been 0.1 + (2075*3 + 10*15)/1000.
        assert_eq!(
            t.cost(AiFeature::Chat, "demo", "cache", 2075, 10).unwrap().millis(),
            6_475
        );
        // 1,000 cache writes of 2,000 input: 1000*3.75 + 1000*3 = 6.75.
        let write = TokenUsage::plain(2000, 0).with_cache_write(1000);
        assert_eq!(
            t.cost_of(AiFeature::Chat, "demo", "cache", &write).unwrap().millis(),
            6_850
        );
        // Reasoning without its own price costs the output price.
        let reasoning = TokenUsage::plain(0, 1000).with_reasoning(600);
        assert_eq!(
            t.cost_of(AiFeature::Chat, "demo", "cache", &reasoning).unwrap(),
            t.cost(AiFeature::Chat, "demo", "cache", 0, 1000).unwrap()
        );
        // ... and its own price when it has one: 400*1.5 + 600*2.5 = 2.1.
        assert_eq!(
            t.cost_of(AiFeature::Chat, "demo", "dear", &reasoning).unwrap().millis(),
            2_200
        );
    }

    #[test]
    fn a_negative_price_of_any_kind_is_refused() {
        let t = table();
        let mut models = BTreeMap::new();
        models.insert(
            ("demo".to_owned(), "m".to_owned()),
            ModelPrice {
                cache_write_per_1k: Some(c("-0.001")),
                ..ModelPrice::new(c("1"), c("1"), 10)
            },
        );
        let features = AiFeature::ALL
            .iter()
            .map(|f| (*f, t.feature(*f).unwrap().clone()))
            .collect();
        assert!(matches!(
            PricingTable::new("v", models, features, BTreeMap::new()),
            Err(PricingError::Invalid(_))
        ));
    }

    /// A usage of up to 100k tokens of each kind.
    fn usage() -> impl Strategy<Value = TokenUsage> {
        (
            0u64..100_000,
            0u64..100_000,
            0u64..100_000,
            0u64..100_000,
            0u64..100_000,
        )
            .prop_map(|(plain_in, cached, write, plain_out, reasoning)| {
                TokenUsage::plain(plain_in + cached + write, plain_out + reasoning)
                    .with_cached_input(cached)
                    .with_cache_write(write)
                    .with_reasoning(reasoning)
            })
    }

    const MODELS: [&str; 3] = ["m", "cache", "dear"];

    proptest! {
        #[test]
        fn kinds_without_a_price_cost_the_plain_price(u in usage()) {
            let t = table();
            prop_assert_eq!(
                t.cost_of(AiFeature::Chat, "demo", "m", &u).unwrap(),
                t.cost(AiFeature::Chat, "demo", "m", u.input(), u.output()).unwrap()
            );
        }

        #[test]
        fn cheaper_cached_input_never_costs_more_than_all_plain(u in usage()) {
            let t = table();
            // demo/cache: reads cheaper, reasoning at the output price; without
            // cache writes (the only dearer kind) the bill is at most all-plain.
            let no_writes = TokenUsage::plain(u.input() - u.cache_write(), u.output())
                .with_cached_input(u.cached_input())
                .with_reasoning(u.reasoning());
            let kinds = t.cost_of(AiFeature::Chat, "demo", "cache", &no_writes).unwrap();
            let plain = t.cost(AiFeature::Chat, "demo", "cache", no_writes.input(), no_writes.output()).unwrap();
            prop_assert!(kinds <= plain);
            if no_writes.cached_input() >= 1000 {
                prop_assert!(kinds < plain);
            }
        }

        #[test]
        fn cost_is_at_least_the_base_and_at_most_the_max_cost(u in usage(), m in 0usize..3) {
            let t = table();
            let cost = t.cost_of(AiFeature::Chat, "demo", MODELS[m], &u).unwrap();
            prop_assert!(cost >= t.feature(AiFeature::Chat).unwrap().base_cost);
            prop_assert!(!cost.is_negative());
            prop_assert!(cost <= t.max_cost(AiFeature::Chat, "demo", MODELS[m], u.input(), u.output()).unwrap());
        }

        #[test]
        fn one_more_token_of_any_kind_never_costs_less(u in usage(), m in 0usize..3, kind in 0usize..5) {
            let t = table();
            let more = match kind {
                0 => TokenUsage::plain(u.input() + 1, u.output())
                    .with_cached_input(u.cached_input())
                    .with_cache_write(u.cache_write())
                    .with_reasoning(u.reasoning()),
                1 => TokenUsage::plain(u.input() + 1, u.output())
                    .with_cached_input(u.cached_input() + 1)
                    .with_cache_write(u.cache_write())
                    .with_reasoning(u.reasoning()),
                2 => TokenUsage::plain(u.input() + 1, u.output())
                    .with_cached_input(u.cached_input())
                    .with_cache_write(u.cache_write() + 1)
                    .with_reasoning(u.reasoning()),
                3 => TokenUsage::plain(u.input(), u.output() + 1)
                    .with_cached_input(u.cached_input())
                    .with_cache_write(u.cache_write())
                    .with_reasoning(u.reasoning()),
                _ => TokenUsage::plain(u.input(), u.output() + 1)
                    .with_cached_input(u.cached_input())
                    .with_cache_write(u.cache_write())
                    .with_reasoning(u.reasoning() + 1),
            };
            prop_assert!(
                t.cost_of(AiFeature::Chat, "demo", MODELS[m], &more).unwrap()
                    >= t.cost_of(AiFeature::Chat, "demo", MODELS[m], &u).unwrap()
            );
        }

        #[test]
        fn affordable_output_is_affordable_whatever_kinds_the_tokens_turn_out(
            u in usage(), m in 0usize..3, budget in 0i64..10_000_000,
        ) {
            let t = table();
            let budget = Credits::from_millis(budget);
            let out = t.affordable_output_tokens(AiFeature::Chat, "demo", MODELS[m], u.input(), budget, 4096).unwrap();
            if out > 0 {
                let answer = TokenUsage::plain(u.input(), u64::from(out))
                    .with_cached_input(u.cached_input())
                    .with_cache_write(u.cache_write())
                    .with_reasoning(u.reasoning());
                prop_assert!(t.cost_of(AiFeature::Chat, "demo", MODELS[m], &answer).unwrap() <= budget);
            }
        }

        #[test]
        fn affordable_output_is_affordable_and_maximal(
            input in 0u64..100_000, budget in 0i64..1_000_000, m in 0usize..3,
        ) {
            let t = table();
            let budget = Credits::from_millis(budget);
            let max = |out: u64| t.max_cost(AiFeature::Chat, "demo", MODELS[m], input, out).unwrap();
            let out = t.affordable_output_tokens(AiFeature::Chat, "demo", MODELS[m], input, budget, 4096).unwrap();
            if out > 0 {
                prop_assert!(max(u64::from(out)) <= budget);
            }
            if out < 4096 && max(0) <= budget {
                prop_assert!(max(u64::from(out) + 1) > budget);
            }
            if m == 0 {
                // Without dearer kinds, the max cost is the plain cost.
                prop_assert_eq!(max(u64::from(out)), t.cost(AiFeature::Chat, "demo", "m", input, u64::from(out)).unwrap());
            }
        }
    }
}
