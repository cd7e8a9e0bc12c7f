//! A streamed answer as OpenAI streams it: `chat.completion.chunk`
//! events (a role chunk, a chunk per text delta, a finish chunk, the usage
//! chunk when asked for), then `data: [DONE]`. The last chunk carries the
//! `creditgate` object: the charge is known only at the end.

use std::convert::Infallible;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use creditgate_graphql::ApiError;
use creditgate_metering::{AiError, AiOutcome, StreamItem};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;

use super::{CompatError, billing, now, wire};

/// The chunks of one streamed answer.
struct Chunks {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    /// Whether any text went out (a replayed answer comes whole, at the end).
    sent_text: bool,
}

impl Chunks {
    fn chunk(&self, delta: wire::Delta, finish_reason: Option<&'static str>) -> wire::Chunk<'_> {
        wire::Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            service_tier: "default",
            system_fingerprint: None,
            choices: vec![wire::ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
            usage: None,
            creditgate: None,
        }
    }

    fn text(&mut self, text: String) -> Event {
        self.sent_text = true;
        event(&self.chunk(
            wire::Delta {
                role: None,
                content: Some(text),
            },
            None,
        ))
    }

    /// The end: the rest of a replayed answer, the finish chunk, the
    /// usage chunk (when asked for); the last carries the `creditgate`
    /// object. Then `[DONE]`.
    fn done(&mut self, outcome: AiOutcome) -> Vec<Event> {
        let billing = match billing(&outcome) {
            Ok(b) => b,
            Err(e) => return vec![error_event(&e)],
        };
        let mut events = Vec::with_capacity(4);
        if !self.sent_text && !outcome.content.is_empty() {
            events.push(self.text(outcome.content.clone()));
        }
        let mut finish = self.chunk(wire::Delta::default(), Some("stop"));
        if self.include_usage {
            events.push(event(&finish));
            let mut last = self.chunk(wire::Delta::default(), None);
            last.choices.clear();
            last.usage = Some(wire::Usage::new(outcome.input_tokens, outcome.output_tokens));
            last.creditgate = Some(billing);
            events.push(event(&last));
        } else {
            finish.creditgate = Some(billing);
            events.push(event(&finish));
        }
        events.push(Event::default().data("[DONE]"));
        events
    }
}

fn event<T: Serialize>(value: &T) -> Event {
    match serde_json::to_string(value) {
        Ok(json) => Event::default().data(json),
        Err(e) => error_event(&ApiError::internal(&e).into()),
    }
}

/// An error in the middle of a stream: `data: {"error": {...}}`, as
/// OpenAI sends it (the SDKs raise it); no `[DONE]` follows.
fn error_event(e: &CompatError) -> Event {
    Event::default().data(e.body())
}

/// A streamed answer: a role chunk, a chunk per text delta, the end.
pub(super) fn streamed(
    items: BoxStream<'static, Result<StreamItem, AiError>>,
    model: String,
    include_usage: bool,
) -> Response {
    let mut chunks = Chunks {
        id: format!("chatcmpl-{}", hex::encode(rand::random::<[u8; 12]>())),
        model,
        created: now(),
        include_usage,
        sent_text: false,
    };
    let first = event(&chunks.chunk(
        wire::Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        },
        None,
    ));
    let rest = items
        .map(move |item| match item {
            Ok(StreamItem::Delta(text)) => vec![chunks.text(text)],
            Ok(StreamItem::Done(outcome)) => chunks.done(*outcome),
            Err(e) => vec![error_event(&e.into())],
        })
        .flat_map(futures::stream::iter);
    let events = futures::stream::once(async move { first })
        .chain(rest)
        .map(Ok::<_, Infallible>);
    Sse::new(events).into_response()
}
