//! Streamed requests (aiStream). As with `run`, the hold and the upstream
//! connection are made in a task of their own, so a subscriber that goes
//! away cannot leave a hold open; once streaming, the stream's guard ends
//! the request exactly once, whichever way it ends: finished (charged the
//! reported usage), broken or dropped midway (charged what it produced),
//! or dropped before any output (released).

use creditgate_domain::AiRequestStatus;
use creditgate_gateway::{ApiKey, ChatRequest, ChatStream, StreamEvent, StreamMeter, Usage};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use crate::error::AiError;
use crate::hold::{Held, Placed};
use crate::prepare::Prepared;
use crate::service::AiService;
use crate::settle::Ended;
use crate::types::{AiOutcome, AiRequest, StreamItem};

/// How a stream ended.
enum StreamEnd<'a> {
    Finished(Option<Usage>),
    Broken(&'a AiError),
    Dropped,
}

/// A streaming request not yet ended.
struct Streaming {
    service: AiService,
    user_id: String,
    held: Held,
    meter: StreamMeter,
    prepared: Prepared,
}

impl Streaming {
    /// Ends the request: settles or releases its hold, once.
    async fn end(self, how: StreamEnd<'_>) -> Result<Option<AiOutcome>, AiError> {
        let Streaming {
            service,
            user_id,
            held,
            meter,
            prepared: p,
        } = self;
        let snap = meter.snapshot();
        let produced = !snap.text.is_empty() || snap.output_tokens.unwrap_or(0) > 0;
        let status = match how {
            StreamEnd::Finished(usage) => {
                let ended = Ended::answered(usage, snap.text, &p, &held);
                return service.settle(&user_id, &held, &p, ended).await.map(Some);
            }
            StreamEnd::Broken(err) if !produced => {
                service.release_failed(&user_id, &held.id, &p, err).await?;
                return Ok(None);
            }
            StreamEnd::Dropped if !produced => {
                service
                    .release_cancelled(&user_id, &held.id, &p, "the subscriber went away before any output")
                    .await?;
                return Ok(None);
            }
            StreamEnd::Broken(_) => AiRequestStatus::Failed,
            StreamEnd::Dropped => AiRequestStatus::Cancelled,
        };
        let ended = Ended::cut_off(snap, &p, status);
        service.settle(&user_id, &held, &p, ended).await.map(Some)
    }
}

/// Ends a stream that its subscriber dropped (CANCELLED): the upstream
/// connection closes with the stream.
struct StreamGuard(Option<Streaming>);

impl StreamGuard {
    async fn end(&mut self, how: StreamEnd<'_>) -> Result<Option<AiOutcome>, AiError> {
        match self.0.take() {
            Some(s) => s.end(how).await,
            None => Ok(None),
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let Some(streaming) = self.0.take() else { return };
        let hold_id = streaming.held.id.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                hold_id,
                "stream dropped outside a runtime; the sweep will release its hold"
            );
            return;
        };
        handle.spawn(async move {
            if let Err(e) = streaming.end(StreamEnd::Dropped).await {
                tracing::error!(hold_id, error = %e, "could not end a cancelled stream; the sweep will release it");
            }
        });
    }
}

enum Opened {
    Replay(Box<AiOutcome>),
    Live(Box<(ChatStream, StreamGuard)>),
}

impl AiService {
    /// Runs a request and streams its answer: text deltas, then the result.
    pub async fn run_stream(
        &self,
        user_id: &str,
        req: &AiRequest,
    ) -> Result<BoxStream<'static, Result<StreamItem, AiError>>, AiError> {
        self.check_rate(user_id)?;
        self.check_request(req)?;
        if let Some(outcome) = self.replay(user_id, req).await? {
            return Ok(futures::stream::once(async move { Ok(StreamItem::Done(Box::new(outcome))) }).boxed());
        }
        let p = self.prepare(user_id, req).await?;
        let key = self.api_key(&p)?;
        let cancel = CancellationToken::new();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let service = self.clone();
        let user = user_id.to_owned();
        let req = req.clone();
        // Boxed for the reason given in `run`.
        let task = tokio::spawn(Box::pin(async move {
            service.open_stream(user, &req, p, key, &cancel).await
        }));
        let opened = task
            .await
            .map_err(|e| AiError::Internal(format!("an AI stream's task ended abnormally: {e}")))??;
        let (upstream, guard) = match opened {
            Opened::Replay(outcome) => {
                return Ok(futures::stream::once(async move { Ok(StreamItem::Done(outcome)) }).boxed());
            }
            Opened::Live(live) => *live,
        };
        Ok(futures::stream::unfold(Some((upstream, guard)), |state| async move {
            let (mut upstream, mut guard) = state?;
            let item = match upstream.next().await {
                Some(Ok(StreamEvent::TextDelta(text))) => {
                    return Some((Ok(StreamItem::Delta(text)), Some((upstream, guard))));
                }
                Some(Ok(StreamEvent::Finished { usage, .. })) => match guard.end(StreamEnd::Finished(usage)).await {
                    Ok(Some(outcome)) => Ok(StreamItem::Done(Box::new(outcome))),
                    Ok(None) => Err(AiError::Internal("a finished stream has no result".into())),
                    Err(e) => Err(e),
                },
                broken => {
                    let err = match broken {
                        Some(Err(e)) => AiError::from_provider(&e),
                        _ => AiError::Unavailable("the provider ended the stream early".into()),
                    };
                    if let Err(e) = guard.end(StreamEnd::Broken(&err)).await {
                        tracing::error!(error = %e, "could not end a broken stream; the sweep will release it");
                    }
                    Err(err)
                }
            };
            Some((item, None))
        })
        .boxed())
    }

    /// Holds and connects; a subscriber gone meanwhile releases the hold.
    async fn open_stream(
        &self,
        user_id: String,
        req: &AiRequest,
        p: Prepared,
        key: ApiKey,
        cancel: &CancellationToken,
    ) -> Result<Opened, AiError> {
        let held = match self.hold(&user_id, req, &p).await? {
            Placed::New(held) => held,
            Placed::Replay(outcome) => return Ok(Opened::Replay(outcome)),
        };
        let chat = ChatRequest {
            model: p.model.clone(),
            messages: p.messages.clone(),
            max_output_tokens: held.output_cap,
            stream: true,
        };
        let connected = tokio::select! {
            c = self.0.gateway.chat_stream(&p.provider, chat, key) => c,
            () = cancel.cancelled() => {
                self.release_cancelled(&user_id, &held.id, &p, "the subscriber went away before the provider answered")
                    .await?;
                return Err(AiError::Unavailable("the request was cancelled".into()));
            }
        };
        let upstream = match connected {
            Ok(s) => s,
            Err(e) => {
                let err = AiError::from_provider(&e);
                self.release_failed(&user_id, &held.id, &p, &err).await?;
                return Err(err);
            }
        };
        let guard = StreamGuard(Some(Streaming {
            service: self.clone(),
            user_id,
            meter: upstream.meter(),
            held,
            prepared: p,
        }));
        Ok(Opened::Live(Box::new((upstream, guard))))
    }
}
