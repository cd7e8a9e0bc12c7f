//! Random sequences of ledger operations against a plain model of the
//! wallet, checked after every step, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::Duration;
use common::*;
use creditgate_domain::{ActivityKind, Credits, HoldStatus, PlanCatalog, cycle_at};
use creditgate_storage::testing::Backend;
use creditgate_storage::{CreditRequest, HoldRequest, Placement, StoreError, UsageDetails};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Grant(i64),
    Hold(i64),
    Settle(usize, i64),
    Release(usize),
    /// Let the hold deadline pass and run the sweep.
    Expire,
    /// Move the clock forward by this many hours.
    Advance(i64),
    Plan(usize),
    /// A settle or release of an already resolved hold.
    ResolveAgain(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1i64..=60_000).prop_map(Op::Grant),
        4 => (1i64..=90_000).prop_map(Op::Hold),
        4 => (any::<usize>(), 0i64..=120_000).prop_map(|(i, c)| Op::Settle(i, c)),
        2 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::Expire),
        2 => (1i64..=24 * 50).prop_map(Op::Advance),
        1 => (0usize..3).prop_map(Op::Plan),
        1 => any::<usize>().prop_map(Op::ResolveAgain),
    ]
}

#[derive(Debug, Clone)]
struct ModelHold {
    id: String,
    monthly: i64,
    permanent: i64,
    cycle_start: chrono::DateTime<chrono::Utc>,
    deadline: chrono::DateTime<chrono::Utc>,
    open: bool,
}

/// The wallet, as simply as it can be said.
#[derive(Debug, Default)]
struct Model {
    monthly: i64,
    permanent: i64,
    allocation: i64,
    cycle_start: Option<chrono::DateTime<chrono::Utc>>,
    cycle_end: Option<chrono::DateTime<chrono::Utc>>,
    holds: Vec<ModelHold>,
}

impl Model {
    fn held_monthly(&self) -> i64 {
        self.holds.iter().filter(|h| h.open).map(|h| h.monthly).sum()
    }
    fn held_permanent(&self) -> i64 {
        self.holds.iter().filter(|h| h.open).map(|h| h.permanent).sum()
    }
    fn available(&self) -> i64 {
        self.monthly + self.permanent - self.held_monthly() - self.held_permanent()
    }
    /// Cycle close on touch: unreserved monthly credits expire, the plan's
    /// allocation comes in.
    fn touch(&mut self, now: chrono::DateTime<chrono::Utc>, anchor: chrono::DateTime<chrono::Utc>, plan: i64) {
        if now < self.cycle_end.unwrap() {
            return;
        }
        let c = cycle_at(anchor, now);
        self.monthly = self.held_monthly() + plan;
        self.allocation = plan;
        self.cycle_start = Some(c.start);
        self.cycle_end = Some(c.end);
    }
    fn resolve(&mut self, i: usize, cost: i64) -> i64 {
        let h = self.holds[i].clone();
        let charged = cost.min(h.monthly + h.permanent);
        let free_monthly = self.monthly - self.held_monthly();
        let from_hold_m = charged.min(h.monthly);
        let from_free_m = (charged - from_hold_m).min(free_monthly);
        let from_p = charged - from_hold_m - from_free_m;
        let expired = if h.cycle_start < self.cycle_start.unwrap() {
            h.monthly - from_hold_m
        } else {
            0
        };
        self.monthly -= from_hold_m + from_free_m + expired;
        self.permanent -= from_p;
        self.holds[i].open = false;
        charged
    }
}

async fn run(backend: Backend, ops: Vec<Op>) {
    let env = env(backend, "2024-01-31T10:00:00Z").await;
    let (store, clock) = (&env.store, &env.clock);
    let plans = PlanCatalog::shipped();
    let plan_ids = ["free", "team", "business"];
    let mut plan = plans.get("free").unwrap().monthly_credits_per_user.millis();
    store.ensure_user(&member("u1", "o1")).await.unwrap();
    let anchor = store.organization("o1").await.unwrap().unwrap().billing_anchor;
    let w = store.wallet("u1").await.unwrap();
    let mut m = Model {
        monthly: plan,
        allocation: plan,
        cycle_start: Some(w.cycle_start),
        cycle_end: Some(w.cycle_end),
        ..Model::default()
    };
    let usage = UsageDetails::default;

    for (step, op) in ops.into_iter().enumerate() {
        let now = clock.now_for_test();
        match op.clone() {
            Op::Grant(a) => {
                m.touch(now, anchor, plan);
                let req = CreditRequest {
                    kind: ActivityKind::Grant,
                    amount: Credits::from_millis(a),
                    description: Some("model".into()),
                    reference: None,
                    idempotency_key: Some(format!("g{step}")),
                };
                let e = store.add_credits("u1", &req).await.unwrap();
                assert_eq!(e.permanent_delta.millis(), a);
                m.permanent += a;
            }
            Op::Hold(a) => {
                m.touch(now, anchor, plan);
                let mut req = HoldRequest::new(Credits::from_millis(a));
                req.ttl = Some(Duration::seconds(60));
                match store.place_hold("u1", &req).await {
                    Ok(Placement::Placed { hold, .. }) => {
                        assert!(
                            m.available() >= a,
                            "hold of {a} placed with only {} available",
                            m.available()
                        );
                        let free_m = m.monthly - m.held_monthly();
                        let mm = a.min(free_m);
                        assert_eq!(hold.monthly_part.millis(), mm, "hold takes monthly first");
                        m.holds.push(ModelHold {
                            id: hold.id,
                            monthly: mm,
                            permanent: a - mm,
                            cycle_start: m.cycle_start.unwrap(),
                            deadline: now + Duration::seconds(60),
                            open: true,
                        });
                    }
                    Err(StoreError::InsufficientCredits { available, .. }) => {
                        assert!(m.available() < a);
                        assert_eq!(available.millis(), m.available());
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Op::Settle(..) | Op::Release(_) if m.holds.iter().any(|h| h.open) => {
                let (i, cost) = match op {
                    Op::Settle(i, c) => (i, c),
                    Op::Release(i) => (i, 0),
                    _ => unreachable!(),
                };
                let open: Vec<usize> = (0..m.holds.len()).filter(|&j| m.holds[j].open).collect();
                let idx = open[i % open.len()];
                let id = m.holds[idx].id.clone();
                m.touch(now, anchor, plan);
                let perm_before = m.permanent;
                let res = match op {
                    Op::Settle(..) => store.settle_hold("u1", &id, Credits::from_millis(cost), usage()).await,
                    _ => store.release_hold("u1", &id, None).await,
                };
                let res = res.unwrap();
                let charged = m.resolve(idx, cost);
                assert_eq!(res.charged.millis(), charged);
                assert_eq!(res.overrun, cost > charged);
                if m.permanent < perm_before {
                    assert_eq!(
                        m.monthly - m.held_monthly(),
                        0,
                        "permanent spent while monthly was left"
                    );
                    assert_eq!(
                        res.wallet.monthly_balance.millis() - res.wallet.held_monthly.millis(),
                        0
                    );
                }
            }
            Op::Settle(..) | Op::Release(_) => {}
            Op::ResolveAgain(i) => {
                let closed: Vec<usize> = (0..m.holds.len()).filter(|&j| !m.holds[j].open).collect();
                if !closed.is_empty() {
                    let id = m.holds[closed[i % closed.len()]].id.clone();
                    let again = store.settle_hold("u1", &id, Credits::from_millis(1), usage()).await;
                    assert!(matches!(again, Err(StoreError::HoldNotOpen { .. })), "{again:?}");
                    let again = store.release_hold("u1", &id, None).await;
                    assert!(matches!(again, Err(StoreError::HoldNotOpen { .. })), "{again:?}");
                }
            }
            Op::Expire => {
                clock.advance(Duration::seconds(61));
                let now = clock.now_for_test();
                m.touch(now, anchor, plan);
                let due: Vec<usize> = (0..m.holds.len())
                    .filter(|&j| m.holds[j].open && m.holds[j].deadline <= now)
                    .collect();
                let n = store.expire_holds(1_000).await.unwrap();
                assert_eq!(n, due.len());
                for j in due {
                    m.resolve(j, 0);
                }
                for h in store.open_holds("u1").await.unwrap() {
                    assert!(m.holds.iter().any(|x| x.id == h.id && x.open));
                }
            }
            Op::Advance(hours) => {
                clock.advance(Duration::hours(hours));
                if hours % 2 == 0 {
                    // Half the time the sweep closes the cycle, else the next touch.
                    store.close_ended_cycles(100).await.unwrap();
                    m.touch(clock.now_for_test(), anchor, plan);
                }
            }
            Op::Plan(p) => {
                m.touch(now, anchor, plan);
                let new = plans.get(plan_ids[p]).unwrap().monthly_credits_per_user.millis();
                store.set_organization_plan("o1", plan_ids[p]).await.unwrap();
                if new != plan && new > m.allocation {
                    m.monthly += new - m.allocation;
                    m.allocation = new;
                }
                plan = new;
            }
        }
        // After every step: the store agrees with the model.
        m.touch(clock.now_for_test(), anchor, plan);
        let w = store.wallet("u1").await.unwrap();
        let got = (
            w.monthly_balance.millis(),
            w.permanent_balance.millis(),
            w.held_monthly.millis(),
            w.held_permanent.millis(),
            w.monthly_allocation.millis(),
        );
        let want = (
            m.monthly,
            m.permanent,
            m.held_monthly(),
            m.held_permanent(),
            m.allocation,
        );
        assert_eq!(got, want, "after step {step} {op:?}");
        assert!(w.monthly_balance >= w.held_monthly && w.permanent_balance >= w.held_permanent);
        assert!(w.held_monthly.millis() >= 0 && w.held_permanent.millis() >= 0);
        assert_books_balance(store, "u1").await;
    }
    // Every hold resolved at most once, and what is open is what the model says.
    let open = store.open_holds("u1").await.unwrap();
    assert_eq!(open.len(), m.holds.iter().filter(|h| h.open).count());
    let _ = HoldStatus::Open;
}

trait NowForTest {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc>;
}

impl NowForTest for std::sync::Arc<creditgate_domain::ManualClock> {
    fn now_for_test(&self) -> chrono::DateTime<chrono::Utc> {
        use creditgate_domain::Clock;
        self.now()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn sqlite_ledger_matches_the_model(ops in proptest::collection::vec(op(), 1..50)) {
        runtime().block_on(run(Backend::Sqlite, ops));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]
    #[test]
    fn postgres_ledger_matches_the_model(ops in proptest::collection::vec(op(), 1..50)) {
        runtime().block_on(run(Backend::Postgres, ops));
    }
}
