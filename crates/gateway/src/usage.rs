//! From what a provider reported to what metering prices.
//!
//! A plugin's [`Usage`] is normalized (totals, and parts of them); this turns
//! it into the domain's [`TokenUsage`], which keeps every part within its
//! total, so a plugin reporting more cached tokens than input cannot make a
//! token be charged twice or not at all.

use creditgate_domain::TokenUsage;

use crate::{ChatResponse, StreamSnapshot, Usage};

/// The tokens to price for a provider's usage (parts clamped to their totals).
pub fn token_usage(usage: &Usage) -> TokenUsage {
    TokenUsage::plain(usage.input_tokens, usage.output_tokens)
        .with_cached_input(usage.cached_input_tokens)
        .with_cache_write(usage.cache_write_tokens)
        .with_reasoning(usage.reasoning_tokens)
}

impl ChatResponse {
    /// The tokens to price, when the provider reported usage.
    pub fn token_usage(&self) -> Option<TokenUsage> {
        self.usage.as_ref().map(token_usage)
    }
}

impl StreamSnapshot {
    /// The tokens to price for what the stream saw: the reported totals, else
    /// the given estimates (`input`, `output`: a stream cut before its
    /// usage); the reported parts, clamped to those totals.
    pub fn token_usage_or(&self, input: u64, output: u64) -> TokenUsage {
        TokenUsage::plain(self.input_tokens.unwrap_or(input), self.output_tokens.unwrap_or(output))
            .with_cached_input(self.cached_input_tokens.unwrap_or(0))
            .with_cache_write(self.cache_write_tokens.unwrap_or(0))
            .with_reasoning(self.reasoning_tokens.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_become_parts_and_are_clamped_to_their_totals() {
        let t = token_usage(&Usage::new(2075, 10).cached_input(2051).reasoning(4));
        assert_eq!((t.input(), t.cached_input(), t.plain_input()), (2075, 2051, 24));
        assert_eq!((t.output(), t.reasoning()), (10, 4));
        // A plugin claiming more cached than input: everything is cached, once.
        let t = token_usage(&Usage::new(10, 1).cached_input(50).cache_write(5).reasoning(9));
        assert_eq!((t.cached_input(), t.cache_write(), t.plain_input()), (10, 0, 0));
        assert_eq!(t.reasoning(), 1);
    }

    #[test]
    fn a_cut_stream_takes_the_estimates_and_keeps_the_reported_parts() {
        let snap = StreamSnapshot {
            input_tokens: Some(2075),
            cached_input_tokens: Some(2051),
            cache_write_tokens: Some(0),
            ..StreamSnapshot::default()
        };
        let t = snap.token_usage_or(999, 7);
        assert_eq!((t.input(), t.cached_input(), t.output()), (2075, 2051, 7));
        assert_eq!(StreamSnapshot::default().token_usage_or(3, 4), TokenUsage::plain(3, 4));
    }
}
