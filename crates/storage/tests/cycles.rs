//! Billing cycles with an injected clock, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use chrono::Duration;
use common::*;
use creditgate_domain::{ActivityKind, Clock};
use creditgate_storage::testing::Backend;
use creditgate_storage::{HoldRequest, Placement, UsageDetails};

fn kinds(entries: &[creditgate_storage::Entry]) -> Vec<(ActivityKind, String)> {
    entries.iter().map(|e| (e.kind, e.total_delta_text())).collect()
}

trait Total {
    fn total_delta_text(&self) -> String;
}
impl Total for creditgate_storage::Entry {
    fn total_delta_text(&self) -> String {
        creditgate_domain::Credits::from_millis(self.monthly_delta.millis() + self.permanent_delta.millis()).to_string()
    }
}

async fn spend(env: &Env, user: &str, amount: &str) {
    let Placement::Placed { hold, .. } = env.store.place_hold(user, &HoldRequest::new(cr(amount))).await.unwrap()
    else {
        panic!()
    };
    env.store
        .settle_hold(user, &hold.id, cr(amount), UsageDetails::default())
        .await
        .unwrap();
}

async fn anchor_on_the_31st(backend: Backend) {
    let env = env(backend, "2025-01-31T09:00:00Z").await;
    env.store.ensure_user(&member("u", "o")).await.unwrap();
    let w = env.store.wallet("u").await.unwrap();
    assert_eq!(
        (w.cycle_start, w.cycle_end),
        (at("2025-01-31T00:00:00Z"), at("2025-02-28T00:00:00Z"))
    );
    spend(&env, "u", "30").await;
    env.clock.set(at("2025-02-28T00:00:00Z"));
    let w = env.store.wallet("u").await.unwrap();
    assert_eq!(
        (w.cycle_start, w.cycle_end),
        (at("2025-02-28T00:00:00Z"), at("2025-03-31T00:00:00Z"))
    );
    assert_eq!((w.monthly_balance, w.monthly_allocation), (cr("100"), cr("100")));
    env.clock.set(at("2025-04-01T00:00:00Z"));
    let w = env.store.wallet("u").await.unwrap();
    assert_eq!(
        (w.cycle_start, w.cycle_end),
        (at("2025-03-31T00:00:00Z"), at("2025-04-30T00:00:00Z"))
    );
    let log = journal(&env.store, "u").await;
    assert_eq!(
        kinds(&log),
        vec![
            (ActivityKind::MonthlyAllocation, "100".into()),
            (ActivityKind::AiUsage, "-30".into()),
            (ActivityKind::MonthlyExpiry, "-70".into()),
            (ActivityKind::MonthlyAllocation, "100".into()),
            (ActivityKind::MonthlyExpiry, "-100".into()),
            (ActivityKind::MonthlyAllocation, "100".into()),
        ]
    );
    assert_books_balance(&env.store, "u").await;
}

async fn february_in_a_leap_year(backend: Backend) {
    let env = env(backend, "2024-01-30T12:00:00Z").await;
    env.store.ensure_user(&member("u", "o")).await.unwrap();
    env.clock.set(at("2024-02-28T23:59:59Z"));
    let w = env.store.wallet("u").await.unwrap();
    assert_eq!(
        w.cycle_end,
        at("2024-02-29T00:00:00Z"),
        "Jan 30 + 1 month is Feb 29 in 2024"
    );
    env.clock.set(at("2024-02-29T00:00:00Z"));
    let w = env.store.wallet("u").await.unwrap();
    assert_eq!(
        (w.cycle_start, w.cycle_end),
        (at("2024-02-29T00:00:00Z"), at("2024-03-30T00:00:00Z"))
    );
    assert_books_balance(&env.store, "u").await;
}

async fn joining_mid_cycle_gets_the_full_allocation(backend: Backend) {
    let env = env(backend, "2025-05-10T08:00:00Z").await;
    env.store.ensure_user(&member("first", "o")).await.unwrap();
    env.clock.set(at("2025-05-28T17:00:00Z"));
    env.store.ensure_user(&member("late", "o")).await.unwrap();
    let w = env.store.wallet("late").await.unwrap();
    assert_eq!(
        (w.cycle_start, w.cycle_end),
        (at("2025-05-10T00:00:00Z"), at("2025-06-10T00:00:00Z"))
    );
    assert_eq!((w.monthly_balance, w.monthly_allocation), (cr("100"), cr("100")));
    assert_books_balance(&env.store, "late").await;
}

async fn idle_for_three_cycles(backend: Backend) {
    let env = env(backend, "2025-01-15T08:00:00Z").await;
    env.store.ensure_user(&member("u", "o")).await.unwrap();
    spend(&env, "u", "12.5").await;
    env.clock.set(at("2025-04-20T00:00:00Z"));
    let w = env.store.wallet("u").await.unwrap();
    assert_eq!(
        (w.cycle_start, w.cycle_end),
        (at("2025-04-15T00:00:00Z"), at("2025-05-15T00:00:00Z"))
    );
    let log = journal(&env.store, "u").await;
    assert_eq!(
        kinds(&log[2..]),
        vec![
            (ActivityKind::MonthlyExpiry, "-87.5".into()),
            (ActivityKind::MonthlyAllocation, "100".into())
        ],
        "one expiry of what was left, one allocation for the current cycle"
    );
    assert_books_balance(&env.store, "u").await;
}

async fn the_sweep_closes_idle_wallets(backend: Backend) {
    let env = env(backend, "2025-01-15T08:00:00Z").await;
    for u in ["a", "b", "c"] {
        env.store.ensure_user(&member(u, "o")).await.unwrap();
    }
    env.clock.advance(Duration::days(40));
    assert_eq!(env.store.close_ended_cycles(100).await.unwrap(), 3);
    assert_eq!(
        env.store.close_ended_cycles(100).await.unwrap(),
        0,
        "each wallet is closed once"
    );
    for u in ["a", "b", "c"] {
        let log = journal(&env.store, u).await;
        assert_eq!(log.len(), 3, "allocation, expiry, allocation");
        assert_books_balance(&env.store, u).await;
    }
}

async fn a_hold_open_across_the_boundary(backend: Backend) {
    let env = env(backend, "2025-01-15T08:00:00Z").await;
    env.store.ensure_user(&member("u", "o")).await.unwrap();
    let mut req = HoldRequest::new(cr("80"));
    req.ttl = Some(Duration::days(60));
    let Placement::Placed { hold, .. } = env.store.place_hold("u", &req).await.unwrap() else {
        panic!()
    };
    env.clock.set(at("2025-02-15T00:00:01Z"));
    let w = env.store.wallet("u").await.unwrap();
    assert_eq!(
        w.available(),
        cr("100"),
        "the new allocation is whole; the hold keeps its reservation"
    );
    assert_eq!(w.held(), cr("80"));
    let res = env
        .store
        .settle_hold("u", &hold.id, cr("15"), UsageDetails::default())
        .await
        .unwrap();
    assert_eq!(res.charged, cr("15"));
    assert_eq!(
        (res.wallet.monthly_balance, res.wallet.held()),
        (cr("100"), cr("0")),
        "no rollover"
    );
    let log = journal(&env.store, "u").await;
    assert_eq!(
        kinds(&log),
        vec![
            (ActivityKind::MonthlyAllocation, "100".into()),
            (ActivityKind::MonthlyExpiry, "-20".into()),
            (ActivityKind::MonthlyAllocation, "100".into()),
            (ActivityKind::AiUsage, "-15".into()),
            (ActivityKind::MonthlyExpiry, "-65".into()),
        ]
    );
    assert_books_balance(&env.store, "u").await;
}

async fn plan_upgrade_now_downgrade_next_cycle(backend: Backend) {
    let env = env(backend, "2025-01-15T08:00:00Z").await;
    env.store.ensure_user(&member("a", "o")).await.unwrap();
    env.store.ensure_user(&member("b", "o")).await.unwrap();
    spend(&env, "a", "40").await;
    env.store.set_organization_plan("o", "team").await.unwrap();
    for (u, monthly) in [("a", "960"), ("b", "1000")] {
        let w = env.store.wallet(u).await.unwrap();
        assert_eq!(
            (w.monthly_balance, w.monthly_allocation),
            (cr(monthly), cr("1000")),
            "{u}"
        );
    }
    env.store.set_organization_plan("o", "free").await.unwrap();
    let w = env.store.wallet("b").await.unwrap();
    assert_eq!(w.monthly_balance, cr("1000"), "a downgrade waits for the next cycle");
    env.store.set_organization_plan("o", "team").await.unwrap();
    let w = env.store.wallet("b").await.unwrap();
    assert_eq!(w.monthly_balance, cr("1000"), "upgrading back grants nothing twice");
    env.store.set_organization_plan("o", "free").await.unwrap();
    env.clock.set(at("2025-02-15T00:00:00Z"));
    let w = env.store.wallet("b").await.unwrap();
    assert_eq!((w.monthly_balance, w.monthly_allocation), (cr("100"), cr("100")));
    let log = journal(&env.store, "b").await;
    let plan_entries: Vec<_> = log
        .iter()
        .filter(|e| e.description.as_deref().unwrap_or("").starts_with("Plan changed"))
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        plan_entries,
        vec![
            ActivityKind::MonthlyAllocation,
            ActivityKind::Adjustment,
            ActivityKind::Adjustment,
            ActivityKind::Adjustment
        ]
    );
    for u in ["a", "b"] {
        assert_books_balance(&env.store, u).await;
    }
    let _ = env.clock.now();
}

macro_rules! on_both {
    ($($name:ident),+) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await } )+
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await } )+
        }
    };
}

on_both!(
    anchor_on_the_31st,
    february_in_a_leap_year,
    joining_mid_cycle_gets_the_full_allocation,
    idle_for_three_cycles,
    the_sweep_closes_idle_wallets,
    a_hold_open_across_the_boundary,
    plan_upgrade_now_downgrade_next_cycle
);
