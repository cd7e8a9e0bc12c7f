//! Streamed answers: SSE framing, metering and timeouts.
//!
//! The events framed from one chunk of bytes go to the plugin together, in
//! one plugin call on the blocking pool under the plugin time limit (see
//! `plugin_call`); the stream reads no more bytes until that call is done.
//! An error or panic of the plugin on one event ends the stream (the events
//! before it are kept).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use creditgate_provider_sdk::sse::SseParser;
use creditgate_provider_sdk::{PluginError, SseEvent, StreamEvent as PluginEvent, UsageUpdate};
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::gateway::Entry;
use crate::{ProviderError, Usage};

/// What the plugin made of a batch of events: one result per event, up to
/// and including the first error.
type Parsed = Result<Vec<Result<Vec<PluginEvent>, PluginError>>, ProviderError>;
type Parsing = Pin<Box<dyn Future<Output = Parsed> + Send>>;

pub(crate) type ByteSource = Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

pub(crate) fn http_source(provider: String, response: reqwest::Response) -> ByteSource {
    Box::pin(response.bytes_stream().map(move |item| {
        item.map_err(|err| ProviderError::StreamInterrupted {
            provider: provider.clone(),
            message: crate::redact::error_chain(&err),
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
    entry: Arc<Entry>,
    source: Option<ByteSource>,
    parser: SseParser,
    /// The plugin call parsing the last chunk's events, while it runs.
    parsing: Option<Parsing>,
    pending: VecDeque<Result<StreamEvent, ProviderError>>,
    meter: StreamMeter,
    idle_sleep: Pin<Box<Sleep>>,
    total_sleep: Pin<Box<Sleep>>,
    done: bool,
    key: crate::keys::Key,
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
    pub(crate) fn new(entry: Arc<Entry>, source: ByteSource, model: String, key: crate::keys::Key) -> Self {
        let meter = StreamMeter::default();
        meter.update(|s| s.model = model);
        let now = Instant::now();
        let (idle, total) = (entry.timeouts.stream_idle, entry.timeouts.stream_total);
        Self {
            provider: entry.id.clone(),
            entry,
            source: Some(source),
            parser: SseParser::new(),
            parsing: None,
            pending: VecDeque::new(),
            meter,
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
        let err = crate::redact::redact_error(err, self.key.secret());
        self.meter.update(|s| s.error = Some(err.clone()));
        self.pending.push_back(Err(err));
        self.finish_reading();
    }

    fn finish_reading(&mut self) {
        self.done = true;
        // Drops the upstream connection (and a plugin call in flight).
        self.source = None;
        self.parsing = None;
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
        if events.is_empty() {
            return;
        }
        let entry = Arc::clone(&self.entry);
        self.parsing = Some(Box::pin(async move {
            crate::plugin_call::call(&entry, "parse_stream_event", move |p| Ok(parse_all(p, &events))).await
        }));
    }

    /// Applies what the plugin made of a batch of events.
    fn on_parsed(&mut self, parsed: Parsed) {
        let results = match parsed {
            Ok(results) => results,
            Err(err) => {
                self.fail(err);
                return;
            }
        };
        for result in results {
            if self.done {
                return;
            }
            let parsed = match result {
                Ok(parsed) => parsed,
                Err(err) => {
                    let err = crate::plugin_call::plugin_error(&self.entry, "parse_stream_event", err);
                    self.fail(err);
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
                        self.fail(crate::classify::from_class(&self.provider, None, None, err, key_source));
                        return;
                    }
                }
            }
        }
    }
}

/// Parses each event in order (panics caught), stopping at the first error.
fn parse_all(
    plugin: &dyn creditgate_provider_sdk::Provider,
    events: &[SseEvent],
) -> Vec<Result<Vec<PluginEvent>, PluginError>> {
    let mut results = Vec::with_capacity(events.len());
    for event in events {
        let result = crate::plugin_call::guard(|| plugin.parse_stream_event(event)).and_then(|r| r);
        let failed = result.is_err();
        results.push(result);
        if failed {
            break;
        }
    }
    results
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
                    after: this.entry.timeouts.stream_total,
                });
                continue;
            }
            if let Some(parsing) = this.parsing.as_mut() {
                match parsing.as_mut().poll(cx) {
                    Poll::Ready(parsed) => {
                        this.parsing = None;
                        this.on_parsed(parsed);
                        // The plugin's time does not count as upstream silence.
                        let deadline = Instant::now() + this.entry.timeouts.stream_idle;
                        this.idle_sleep.as_mut().reset(deadline);
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            let Some(source) = this.source.as_mut() else {
                this.done = true;
                continue;
            };
            match source.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    let deadline = Instant::now() + this.entry.timeouts.stream_idle;
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
                            after: this.entry.timeouts.stream_idle,
                        });
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
