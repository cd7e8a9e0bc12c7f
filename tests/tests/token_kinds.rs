//! The kinds of tokens an AI entry was charged for, as the activity log
//! shows them: cachedInputTokens, cacheWriteTokens and reasoningTokens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_domain::TokenUsage;
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use creditgate_storage::{HoldRequest, Placement, UsageDetails};
use serde_json::{Value, json};

const ACTIVITY: &str = "{ activity(first: 5) { edges { node { kind inputTokens outputTokens
    cachedInputTokens cacheWriteTokens reasoningTokens } } } }";

async fn nodes(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.gql(Some(token), ACTIVITY, json!({})).await;
    r.data()["activity"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn the_activity_log_shows_the_kinds_of_tokens(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    app.wallet(&alice).await;
    let store = &app.app.store;
    let amount = "1".parse().unwrap();
    let Placement::Placed { hold, .. } = store.place_hold("alice", &HoldRequest::new(amount)).await.unwrap() else {
        panic!("no hold")
    };
    // The Anthropic cache-hit fixture's usage, with reasoning.
    let tokens = TokenUsage::plain(24 + 2051, 10)
        .with_cached_input(2051)
        .with_reasoning(3);
    store
        .settle_hold("alice", &hold.id, amount, UsageDetails::default().with_tokens(&tokens))
        .await
        .unwrap();
    let log = nodes(&app, &alice).await;
    assert_eq!(
        log[0],
        json!({"kind": "AI_USAGE", "inputTokens": 2075, "outputTokens": 10,
               "cachedInputTokens": 2051, "cacheWriteTokens": 0, "reasoningTokens": 3})
    );
    let allocation = log.iter().find(|n| n["kind"] == "MONTHLY_ALLOCATION").unwrap();
    assert_eq!(allocation["cachedInputTokens"], Value::Null);
    assert_eq!(allocation["reasoningTokens"], Value::Null);
}

on_both_databases!(the_activity_log_shows_the_kinds_of_tokens);
