//! One wallet's operations: locked once, applied in order, written once.

use std::collections::BTreeMap;
use std::sync::Arc;

use creditgate_domain::WalletState;

use super::batch::{Batch, Failed};
use super::{Done, Op};
use crate::error::{StoreError, StoreResult};
use crate::holds::{HoldApplied, Placement, ResolveApplied};
use crate::model::{Hold, Resolution, Wallet, WalletChange};
use crate::store::{LockedWallet, Store};

/// What an operation gave before its wallet's change committed.
#[expect(
    clippy::large_enum_variant,
    reason = "one per operation of a batch, moved once into its answer"
)]
enum Answer {
    Now(StoreResult<Done>),
    Placed(Hold, WalletState),
    Resolved(ResolveApplied, WalletState),
}

/// One wallet's operations, applied and written (not yet committed when
/// nested in a batch).
pub(super) struct Applied {
    pub(super) change: Option<WalletChange>,
    answers: Vec<Answer>,
    user_id: String,
    org_id: String,
    version: i64,
    /// Which of the batch's deferred entries are this wallet's.
    pub(super) deferred: std::ops::Range<usize>,
}

impl Applied {
    pub(super) fn answers(self) -> Vec<StoreResult<Done>> {
        let Applied {
            change,
            answers,
            user_id,
            org_id,
            version,
            ..
        } = self;
        let wallet = |state: &WalletState| Wallet::from_state(&user_id, &org_id, state, version);
        answers
            .into_iter()
            .map(|a| match a {
                Answer::Now(done) => done,
                Answer::Placed(hold, state) => Ok(Done::Hold(Placement::Placed {
                    hold,
                    wallet: wallet(&state),
                })),
                Answer::Resolved(r, state) => Ok(Done::Resolve(Resolution {
                    charged: r.charged,
                    overrun: r.overrun,
                    entry: r
                        .entry
                        .and_then(|i| change.as_ref().and_then(|c| c.entries.get(i)).cloned()),
                    wallet: wallet(&state),
                })),
            })
            .collect()
    }
}

impl Store {
    /// One operation in a transaction of its own: a batch of one (locked
    /// and written as a batch is, in as few round trips).
    pub(super) async fn run_alone(&self, op: Op) -> StoreResult<Done> {
        let user_id = op.user_id();
        let wallets = BTreeMap::from([(user_id, vec![&op])]);
        let mut answers = match self.run_wallets(&wallets).await {
            Ok(answers) => answers,
            Err(Failed::Before(e)) => return Err(e),
            Err(Failed::Commit(e)) => return Err(Failed::commit_error(&e)),
        };
        answers
            .pop()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| Err(StoreError::corrupt("an operation went unanswered")))
    }

    /// Applies `ops` in order to `user_id`'s wallet, which the batch
    /// locked, and defers the writes of the result to the batch. An error
    /// is a failure of the database: the batch is given up.
    /// `locked` is `None` when there is no such wallet.
    pub(super) async fn apply_ops(
        &self,
        batch: &Arc<Batch>,
        locked: Option<LockedWallet>,
        user_id: &str,
        ops: &[&Op],
    ) -> StoreResult<Applied> {
        let Some(mut locked) = locked else {
            let answers = ops
                .iter()
                .map(|_| {
                    Answer::Now(Err(StoreError::NotFound {
                        what: "user",
                        id: user_id.to_owned(),
                    }))
                })
                .collect();
            return Ok(Applied {
                change: None,
                answers,
                user_id: user_id.to_owned(),
                org_id: String::new(),
                version: 0,
                deferred: 0..0,
            });
        };
        let mut answers = Vec::with_capacity(ops.len());
        let mut wrote = false;
        for &op in ops {
            let answer = match op {
                Op::Hold { req, .. } => self.apply_hold(batch, &mut locked, req).await.map(|a| match a {
                    Ok(HoldApplied::Placed(hold)) => Answer::Placed(hold, locked.state.clone()),
                    Ok(HoldApplied::Existing(p)) => Answer::Now(Ok(Done::Hold(p))),
                    Err(refused) => Answer::Now(Err(refused)),
                }),
                Op::Resolve(r) => self.apply_resolve(batch, &mut locked, r).await.map(|a| match a {
                    Ok(resolved) => Answer::Resolved(resolved, locked.state.clone()),
                    Err(refused) => Answer::Now(Err(refused)),
                }),
            };
            match answer {
                Ok(a) => {
                    wrote |= matches!(a, Answer::Placed(..) | Answer::Resolved(..));
                    answers.push(a);
                }
                Err(e) => {
                    let _ = locked.rollback().await;
                    return Err(e);
                }
            }
        }
        let (user_id, org_id) = (locked.user_id.clone(), locked.org_id.clone());
        let version = locked.version;
        let first = batch.entries_deferred();
        let change = if wrote || locked.has_changes() {
            Some(locked.commit_notifying(self.notify_channel.as_deref()).await?)
        } else {
            locked.rollback().await?;
            None
        };
        Ok(Applied {
            change,
            answers,
            user_id,
            org_id,
            version,
            deferred: first..batch.entries_deferred(),
        })
    }
}
