//! Token counts of one AI request, normalized across providers.
//!
//! Providers count the same things differently:
//!
//! * OpenAI: `prompt_tokens` INCLUDES `prompt_tokens_details.cached_tokens`;
//!   `completion_tokens` INCLUDES `completion_tokens_details.reasoning_tokens`.
//! * Anthropic: `input_tokens` EXCLUDES cache reads and cache writes (total
//!   input = `input_tokens + cache_read_input_tokens +
//!   cache_creation_input_tokens`); `output_tokens` includes thinking tokens.
//!
//! [`TokenUsage`] holds one shape: the input total, of which some were read
//! from the provider's prompt cache and some were written to it; and the
//! output total, of which some were reasoning. The parts are never larger
//! than their total, so every token is priced exactly once.

/// Input total (of which cached, of which cache-written) and output total
/// (of which reasoning). Built with [`TokenUsage::plain`] and the `with_*`
/// methods, which keep the parts within their totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TokenUsage {
    input: u64,
    cached_input: u64,
    cache_write: u64,
    output: u64,
    reasoning: u64,
}

impl TokenUsage {
    /// Input and output tokens with no cached, cache-written or reasoning part.
    pub const fn plain(input: u64, output: u64) -> Self {
        TokenUsage {
            input,
            cached_input: 0,
            cache_write: 0,
            output,
            reasoning: 0,
        }
    }

    /// Of the input, `n` tokens were read from the prompt cache (at most the
    /// input that is not already a cache write).
    #[must_use]
    pub fn with_cached_input(mut self, n: u64) -> Self {
        self.cached_input = n.min(self.input - self.cache_write);
        self
    }

    /// Of the input, `n` tokens were written to the prompt cache (at most the
    /// input that is not already a cache read).
    #[must_use]
    pub fn with_cache_write(mut self, n: u64) -> Self {
        self.cache_write = n.min(self.input - self.cached_input);
        self
    }

    /// Of the output, `n` tokens were reasoning (at most the output).
    #[must_use]
    pub fn with_reasoning(mut self, n: u64) -> Self {
        self.reasoning = n.min(self.output);
        self
    }

    /// All input tokens, cache reads and writes included.
    pub const fn input(&self) -> u64 {
        self.input
    }

    /// Input tokens read from the prompt cache.
    pub const fn cached_input(&self) -> u64 {
        self.cached_input
    }

    /// Input tokens written to the prompt cache.
    pub const fn cache_write(&self) -> u64 {
        self.cache_write
    }

    /// Input tokens neither read from nor written to the cache.
    pub const fn plain_input(&self) -> u64 {
        self.input - self.cached_input - self.cache_write
    }

    /// All output tokens, reasoning included.
    pub const fn output(&self) -> u64 {
        self.output
    }

    /// Output tokens spent on reasoning.
    pub const fn reasoning(&self) -> u64 {
        self.reasoning
    }

    /// Output tokens that are not reasoning.
    pub const fn plain_output(&self) -> u64 {
        self.output - self.reasoning
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_never_exceed_their_totals() {
        let u = TokenUsage::plain(10, 5)
            .with_cached_input(8)
            .with_cache_write(8)
            .with_reasoning(9);
        assert_eq!(
            (u.input(), u.cached_input(), u.cache_write(), u.plain_input()),
            (10, 8, 2, 0)
        );
        assert_eq!((u.output(), u.reasoning(), u.plain_output()), (5, 5, 0));
        let w = TokenUsage::plain(10, 0).with_cache_write(3).with_cached_input(100);
        assert_eq!((w.cached_input(), w.cache_write(), w.plain_input()), (7, 3, 0));
    }
}
