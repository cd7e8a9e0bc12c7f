//! Streamed answers: SSE framing, metering and timeouts.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use creditgate_provider_sdk::sse::SseParser;
use creditgate_provider_sdk::{Provider, StreamEvent as PluginEvent, UsageUpdate};
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::{ProviderError, Usage};

pub(crate) type ByteSource = Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

pub(crate) fn http_source(provider: String, response: reqwest::Response) -> ByteSource {
    Box::pin(response.bytes_stream().map(move |item| {
        item.map_err(|err| ProviderError::StreamInterrupted {
            provider: provider.clone(),
            message: crate::error_chain(&err),
        })
    }))
}

/// One item of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// More text.
    TextDelta(String),
    /// The provider said the answer is complete. Always the last item.
    Finished {
        /// The final usage, when the provider reported both counts.
        usage: Option<Usage>,
        /// The model that answered.
        model: String,
    },
}

/// What a stream has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSnapshot {
    /// All text received.
    pub text: String,
    /// Input tokens, if the provider reported them (Anthropic does at the
    /// start of a stream; OpenAI only at the end).
    pub input_tokens: Option<u64>,
    /// Output tokens, if the provider reported them (at the end).
    pub output_tokens: Option<u64>,
    /// Of the input, tokens read from the prompt cache, if reported.
    pub cached_input_tokens: Option<u64>,
    /// Of the input, tokens written to the prompt cache, if reported.
    pub cache_write_tokens: Option<u64>,
    /// Of the output, reasoning tokens, if reported.
    pub reasoning_tokens: Option<u64>,
    /// The model, once known.
    pub model: String,
    /// Whether the provider said the answer is complete.
    pub finished: bool,
    /// The error that ended the stream, if any.
    pub error: Option<ProviderError>,
    /// Raw bytes received from upstream.
    pub bytes_received: u64,
}

impl StreamSnapshot {
    /// The usage, when both totals are known (an unreported part is 0).
    pub fn usage(&self) -> Option<Usage> {
        self.reported().complete()
    }

    /// What the provider reported so far, field by field.
    pub fn reported(&self) -> UsageUpdate {
        UsageUpdate {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cache_write_tokens: self.cache_write_tokens,
            reasoning_tokens: self.reasoning_tokens,
        }
    }

    fn apply(&mut self, update: &UsageUpdate) {
        let mut running = self.reported();
        running.apply(update);
        self.input_tokens = running.input_tokens;
        self.output_tokens = running.output_tokens;
        self.cached_input_tokens = running.cached_input_tokens;
        self.cache_write_tokens = running.cache_write_tokens;
        self.reasoning_tokens = running.reasoning_tokens;
    }
}

/// A shared, always-readable view of a stream's progress. Clone it before
/// consuming the stream; it stays valid after the stream is dropped (a
/// cancelled request), so metering can charge for what was produced.
#[derive(Debug, Clone, Default)]
pub struct StreamMeter(Arc<Mutex<StreamSnapshot>>);

impl StreamMeter {
    /// A copy of the current state.
    pub fn snapshot(&self) -> StreamSnapshot {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn update<T>(&self, f: impl FnOnce(&mut StreamSnapshot) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A streamed chat answer: `Stream<Item = Result<StreamEvent, ProviderError>>`.
///
/// Ends after [`StreamEvent::Finished`] or after the first error. Dropping it
/// closes the upstream connection.
pub struct ChatStream {
    provider: String,
    plugin: Arc<dyn Provider>,
    source: Option<ByteSource>,
    parser: SseParser,
    pending: VecDeque<Result<StreamEvent, ProviderError>>,
    meter: StreamMeter,
    idle: Duration,
    total: Duration,
    idle_sleep: Pin<Box<Sleep>>,
    total_sleep: Pin<Box<Sleep>>,
    done: bool,
    key: crate::Key,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("provider", &self.provider)
            .field("done", &self.done)
            .finish()
    }
}

impl ChatStream {
    pub(crate) fn new(
        provider: String,
        plugin: Arc<dyn Provider>,
        source: ByteSource,
        model: String,
        idle: Duration,
        total: Duration,
        key: crate::Key,
    ) -> Self {
        let meter = StreamMeter::default();
        meter.update(|s| s.model = model);
        let now = Instant::now();
        Self {
            provider,
            plugin,
            source: Some(source),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            meter,
            idle,
            total,
            idle_sleep: Box::pin(tokio::time::sleep_until(now + idle)),
            total_sleep: Box::pin(tokio::time::sleep_until(now + total)),
            done: false,
            key,
        }
    }

    /// The meter of this stream (clone it to keep it after the stream).
    pub fn meter(&self) -> StreamMeter {
        self.meter.clone()
    }

    fn fail(&mut self, err: ProviderError) {
        let err = crate::redact_error(err, self.key.secret());
        self.meter.update(|s| s.error = Some(err.clone()));
        self.pending.push_back(Err(err));
        self.finish_reading();
    }

    fn finish_reading(&mut self) {
        self.done = true;
        // Drops the upstream connection.
        self.source = None;
    }

    fn finished(&mut self) {
        let (usage, model) = self.meter.update(|s| {
            s.finished = true;
            (s.usage(), s.model.clone())
        });
        self.pending.push_back(Ok(StreamEvent::Finished { usage, model }));
        self.finish_reading();
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        self.meter.update(|s| s.bytes_received += bytes.len() as u64);
        let events = match self.parser.push(bytes) {
            Ok(events) => events,
            Err(err) => {
                self.fail(ProviderError::StreamInterrupted {
                    provider: self.provider.clone(),
                    message: err.to_string(),
                });
                return;
            }
        };
        for event in events {
            if self.done {
                return;
            }
            let plugin = Arc::clone(&self.plugin);
            let parsed =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plugin.parse_stream_event(&event))) {
                    Ok(Ok(parsed)) => parsed,
                    Ok(Err(err)) => {
                        self.fail(crate::plugin_error(&self.provider, err));
                        return;
                    }
                    Err(payload) => {
                        self.fail(ProviderError::PluginPanic {
                            provider: self.provider.clone(),
                            message: creditgate_provider_sdk::protocol::panic_message(payload.as_ref()),
                        });
                        return;
                    }
                };
            for item in parsed {
                match item {
                    PluginEvent::TextDelta { text } => {
                        self.meter.update(|s| s.text.push_str(&text));
                        self.pending.push_back(Ok(StreamEvent::TextDelta(text)));
                    }
                    PluginEvent::Usage(update) => self.meter.update(|s| s.apply(&update)),
                    PluginEvent::Model { model } => self.meter.update(|s| s.model = model),
                    PluginEvent::Done => {
                        self.finished();
                        return;
                    }
                    PluginEvent::Error(err) => {
                        let key_source = self.key.source;
                        self.fail(crate::from_class(&self.provider, None, None, err, key_source));
                        return;
                    }
                }
            }
        }
    }
}

impl Stream for ChatStream {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.pending.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            if this.total_sleep.as_mut().poll(cx).is_ready() {
                this.fail(ProviderError::Timeout {
                    provider: this.provider.clone(),
                    what: "total stream time",
                    after: this.total,
                });
                continue;
            }
            let Some(source) = this.source.as_mut() else {
                this.done = true;
                continue;
            };
            match source.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    let deadline = Instant::now() + this.idle;
                    this.idle_sleep.as_mut().reset(deadline);
                    this.on_bytes(&bytes);
                }
                Poll::Ready(Some(Err(err))) => this.fail(err),
                Poll::Ready(None) => {
                    if this.meter.snapshot().usage().is_some() {
                        // Some compatible servers end without a terminator;
                        // complete usage means the answer is complete.
                        this.finished();
                    } else {
                        this.fail(ProviderError::StreamInterrupted {
                            provider: this.provider.clone(),
                            message: "the stream ended before the provider said it was complete".into(),
                        });
                    }
                }
                Poll::Pending => {
                    if this.idle_sleep.as_mut().poll(cx).is_ready() {
                        this.fail(ProviderError::Timeout {
                            provider: this.provider.clone(),
                            what: "no data within the stream idle timeout",
                            after: this.idle,
                        });
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
