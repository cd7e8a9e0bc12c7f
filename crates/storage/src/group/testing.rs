//! Test support: a given list of operations run as one batch.

use creditgate_domain::{Credits, HoldStatus};
use tokio::sync::oneshot;

use super::{Done, Job, Op, Resolve};
use crate::error::{StoreError, StoreResult};
use crate::holds::{HoldRequest, Outcome, Placement};
use crate::model::{Resolution, UsageDetails};
use crate::store::Store;

/// An operation of [`Store::run_batch_for_test`].
#[cfg(feature = "test-support")]
#[derive(Debug, Clone)]
#[expect(clippy::large_enum_variant, reason = "built once per operation of a test")]
pub enum BatchOp {
    Hold {
        user_id: String,
        req: HoldRequest,
    },
    Settle {
        user_id: String,
        hold_id: String,
        cost: Credits,
    },
    Release {
        user_id: String,
        hold_id: String,
    },
    /// A settle that keeps the call's result for retries.
    SettleWithResult {
        user_id: String,
        hold_id: String,
        cost: Credits,
        result: String,
    },
    /// A release of a call that failed: its idempotency key is freed.
    ReleaseFailed {
        user_id: String,
        hold_id: String,
    },
}

/// An answer of [`Store::run_batch_for_test`].
#[cfg(feature = "test-support")]
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "built once per operation of a test")]
pub enum BatchAnswer {
    Hold(Placement),
    Resolution(Resolution),
}

impl Store {
    /// Applies `ops` as one batch, as a writer does, and answers each in
    /// order: for tests that need operations to share a transaction.
    #[cfg(feature = "test-support")]
    pub async fn run_batch_for_test(&self, ops: Vec<BatchOp>) -> Vec<StoreResult<BatchAnswer>> {
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        for op in ops {
            let resolve = |user_id: String, hold_id: String, cost, status, outcome| {
                Op::Resolve(Resolve {
                    user_id,
                    hold_id,
                    cost,
                    status,
                    usage: Some(UsageDetails::default()),
                    outcome,
                })
            };
            let (settled, released) = (HoldStatus::Settled, HoldStatus::Released);
            let op = match op {
                BatchOp::Hold { user_id, req } => Op::Hold { user_id, req },
                BatchOp::Settle { user_id, hold_id, cost } => {
                    resolve(user_id, hold_id, cost, settled, Outcome::default())
                }
                BatchOp::Release { user_id, hold_id } => {
                    resolve(user_id, hold_id, Credits::ZERO, released, Outcome::default())
                }
                BatchOp::SettleWithResult {
                    user_id,
                    hold_id,
                    cost,
                    result,
                } => resolve(user_id, hold_id, cost, settled, Outcome::with_result(result)),
                BatchOp::ReleaseFailed { user_id, hold_id } => {
                    resolve(user_id, hold_id, Credits::ZERO, released, Outcome::failed())
                }
            };
            let (reply, answer) = oneshot::channel();
            jobs.push(Job { op, reply });
            answers.push(answer);
        }
        self.run_batch(jobs).await;
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(match answer.await {
                Ok(Ok(Done::Hold(p))) => Ok(BatchAnswer::Hold(p)),
                Ok(Ok(Done::Resolve(r))) => Ok(BatchAnswer::Resolution(r)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::corrupt("an operation went unanswered")),
            });
        }
        out
    }
}
