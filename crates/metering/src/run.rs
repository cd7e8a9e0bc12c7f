//! Running a request to its end. The work after validation runs in a task
//! of its own, so that a client that goes away cannot leave it half done:
//! dropping the caller's future cancels the provider call, and the task
//! then releases the hold at once (CANCELLED, nothing charged). Once the
//! provider has answered, the task settles whatever happens to the caller,
//! and the result stays with the hold for a retry with the same key.

use creditgate_domain::BillingMode;
use creditgate_gateway::ChatRequest;
use tokio_util::sync::CancellationToken;

use crate::error::AiError;
use crate::hold::Placed;
use crate::prepare::Prepared;
use crate::service::AiService;
use crate::settle::Ended;
use crate::types::{AiOutcome, AiRequest};

enum RunError {
    Failed(AiError),
    /// The user's key failed and they allow credits to take over.
    Fallback(Prepared, AiError),
}

impl From<AiError> for RunError {
    fn from(e: AiError) -> Self {
        RunError::Failed(e)
    }
}

impl AiService {
    /// Runs a request to its end: hold, call, settle (or release), log.
    pub async fn run(&self, user_id: &str, req: &AiRequest) -> Result<AiOutcome, AiError> {
        self.check_rate(user_id)?;
        self.check_request(req)?;
        if let Some(outcome) = self.replay(user_id, req).await? {
            return Ok(outcome);
        }
        let prepared = self.prepare(user_id, req).await?;
        let cancel = CancellationToken::new();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let service = self.clone();
        let user_id = user_id.to_owned();
        let req = req.clone();
        // Boxed: the task's future is large (a hold, a provider call and a
        // settle, each with its store future inside), and tokio moves a
        // task's stage whole when it spawns, finishes and reads it (three
        // copies of ~10 KiB per request, 1.5% of the server's CPU at
        // concurrency 32); a box moves as a pointer.
        let task = tokio::spawn(Box::pin(async move {
            service.run_routed(&user_id, &req, prepared, &cancel).await
        }));
        task.await
            .map_err(|e| AiError::Internal(format!("an AI request's task ended abnormally: {e}")))?
    }

    async fn run_routed(
        &self,
        user_id: &str,
        req: &AiRequest,
        prepared: Prepared,
        cancel: &CancellationToken,
    ) -> Result<AiOutcome, AiError> {
        match self.run_prepared(user_id, req, prepared, cancel).await {
            Ok(outcome) => Ok(outcome),
            Err(RunError::Failed(e)) => Err(e),
            Err(RunError::Fallback(prepared, err)) => {
                tracing::info!(user_id, provider = %prepared.provider, "BYOK request failed; falling back to credits");
                match self
                    .run_prepared(user_id, req, prepared.through_credits(), cancel)
                    .await
                {
                    Ok(outcome) => Ok(outcome),
                    Err(RunError::Fallback(_, _)) => Err(err),
                    Err(RunError::Failed(e)) => Err(e),
                }
            }
        }
    }

    async fn run_prepared(
        &self,
        user_id: &str,
        req: &AiRequest,
        p: Prepared,
        cancel: &CancellationToken,
    ) -> Result<AiOutcome, RunError> {
        let key = match self.api_key(&p) {
            Ok(k) => k,
            Err(e) if p.mode == BillingMode::Byok && self.fallback_allowed(user_id, &e).await => {
                return Err(RunError::Fallback(p, e));
            }
            Err(e) => return Err(e.into()),
        };
        let held = match self.hold(user_id, req, &p).await? {
            Placed::New(held) => held,
            Placed::Replay(outcome) => return Ok(*outcome),
        };
        let chat = ChatRequest {
            model: p.model.clone(),
            messages: p.messages.clone(),
            max_output_tokens: held.output_cap,
            stream: false,
        };
        let answer = tokio::select! {
            answer = self.0.gateway.chat(&p.provider, chat, key) => answer,
            () = cancel.cancelled() => {
                self.release_cancelled(user_id, &held.id, &p, "the client went away before the provider answered")
                    .await?;
                return Err(AiError::Unavailable("the request was cancelled".into()).into());
            }
        };
        match answer {
            Ok(resp) => {
                let ended = Ended::answered(resp.usage, resp.text, &p, &held);
                Ok(self.settle(user_id, &held, &p, ended).await?)
            }
            Err(e) => {
                let err = AiError::from_provider(&e);
                tracing::warn!(user_id, provider = %p.provider, error = %e, "AI request failed");
                self.release_failed(user_id, &held.id, &p, &err).await?;
                if p.mode == BillingMode::Byok && self.fallback_allowed(user_id, &err).await {
                    return Err(RunError::Fallback(p, err));
                }
                Err(err.into())
            }
        }
    }
}
