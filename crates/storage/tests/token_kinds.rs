//! The kinds of tokens an AI entry was charged for round-trip through the
//! journal, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use creditgate_domain::{ActivityKind, AiFeature, BillingMode, TokenUsage};
use creditgate_storage::testing::Backend;
use creditgate_storage::{HoldRequest, Placement, UsageDetails};

async fn hold(env: &Env, user: &str, amount: &str) -> String {
    let Placement::Placed { hold, .. } = env.store.place_hold(user, &HoldRequest::new(cr(amount))).await.unwrap()
    else {
        panic!("the hold was not placed")
    };
    hold.id
}

async fn the_kinds_of_tokens_are_recorded_on_the_entry(backend: Backend) {
    let env = env(backend, "2026-11-25T09:00:00Z").await;
    env.store.ensure_user(&member("u", "o")).await.unwrap();
    // The Anthropic cache-hit fixture plus a cache write and reasoning.
    let tokens = TokenUsage::plain(24 + 2051 + 100, 10)
        .with_cached_input(2051)
        .with_cache_write(100)
        .with_reasoning(4);
    let usage = UsageDetails {
        feature: Some(AiFeature::Chat),
        billing_mode: Some(BillingMode::Credits),
        provider: Some("anthropic".into()),
        model: Some("claude-sonnet-4-6".into()),
        ..UsageDetails::default()
    }
    .with_tokens(&tokens);
    let id = hold(&env, "u", "5").await;
    let settled = env.store.settle_hold("u", &id, cr("1.5"), usage).await.unwrap();
    let written = settled.entry.unwrap();

    // A plain settle without kinds, and a grant: no kinds recorded.
    let id = hold(&env, "u", "1").await;
    env.store
        .settle_hold("u", &id, cr("0.5"), UsageDetails::default())
        .await
        .unwrap();

    let log = journal(&env.store, "u").await;
    let ai: Vec<_> = log.iter().filter(|e| e.kind == ActivityKind::AiUsage).collect();
    assert_eq!(ai.len(), 2);
    let read = ai[0];
    assert_eq!(read, &written);
    assert_eq!(
        (read.input_tokens, read.output_tokens),
        (Some(24 + 2051 + 100), Some(10))
    );
    assert_eq!(
        (read.cached_input_tokens, read.cache_write_tokens, read.reasoning_tokens),
        (Some(2051), Some(100), Some(4))
    );
    let plain = ai[1];
    assert_eq!(
        (
            plain.cached_input_tokens,
            plain.cache_write_tokens,
            plain.reasoning_tokens
        ),
        (None, None, None)
    );
    let allocation = log.iter().find(|e| e.kind == ActivityKind::MonthlyAllocation).unwrap();
    assert_eq!(allocation.cached_input_tokens, None);
    assert_books_balance(&env.store, "u").await;
}

async fn an_entry_with_no_cache_records_zero_kinds(backend: Backend) {
    let env = env(backend, "2026-11-25T09:00:00Z").await;
    env.store.ensure_user(&member("u", "o")).await.unwrap();
    let id = hold(&env, "u", "1").await;
    let usage = UsageDetails::default().with_tokens(&TokenUsage::plain(27, 7));
    let entry = env
        .store
        .settle_hold("u", &id, cr("0.1"), usage)
        .await
        .unwrap()
        .entry
        .unwrap();
    let read = journal(&env.store, "u")
        .await
        .into_iter()
        .find(|e| e.id == entry.id)
        .unwrap();
    assert_eq!(
        (
            read.input_tokens,
            read.cached_input_tokens,
            read.cache_write_tokens,
            read.reasoning_tokens
        ),
        (Some(27), Some(0), Some(0), Some(0))
    );
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
    the_kinds_of_tokens_are_recorded_on_the_entry,
    an_entry_with_no_cache_records_zero_kinds
);
