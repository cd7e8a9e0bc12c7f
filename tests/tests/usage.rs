//! orgUsage end to end: ADMIN sees their organization's AI usage, per user,
//! per feature and over time; nobody else does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_domain::Role;
use creditgate_e2e::{Backend, TestApp, on_both_databases, providers_toml};
use serde_json::json;

const RUN: &str = "mutation($i: AiRequestInput!) { runAi(input: $i) { creditsCharged } }";
const USAGE: &str =
    "query($f: DateTime!, $t: DateTime!, $g: Granularity) { orgUsage(from: $f, to: $t, granularity: $g) {
    totals { credits requests byokRequests inputTokens outputTokens }
    perUser(first: 10) { user { id } totals { credits requests } }
    byFeature { feature totals { requests } }
    trend { bucketStart totals { requests credits } } } }";

async fn admins_see_their_organizations_usage(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "sk-unused-000000000000").unwrap();
    let toml = format!(
        "{}\n[ai]\nrequests_per_minute = 0\n",
        providers_toml("http://127.0.0.1:9/v1", &key, 1000)
    );
    let app = TestApp::builder(backend)
        .at("2026-11-02T10:00:00Z")
        .config(&toml)
        .start()
        .await;
    let chat = |text: &str| json!({"i": {"feature": "CHAT", "messages": [{"role": "user", "content": text}]}});
    let alice = app.member("alice", "acme");
    let bob = app.member("bob", "acme");
    let carol = app.member("carol", "other");
    for t in ["one", "two"] {
        app.gql(Some(&alice), RUN, chat(t)).await.data();
    }
    app.clock.advance(chrono::Duration::days(1));
    app.gql(Some(&alice), RUN, chat("three")).await.data();
    app.gql(
        Some(&bob),
        RUN,
        json!({"i": {"feature": "STANDUP_SYNTHESIS", "messages": [{"role": "user", "content": "notes"}]}}),
    )
    .await
    .data();
    app.gql(Some(&carol), RUN, chat("elsewhere")).await.data();

    let admin = app.token("ada", "acme", Role::Admin);
    let vars = json!({"f": "2026-11-01T00:00:00Z", "t": "2026-11-05T00:00:00Z", "g": "DAY"});
    let u = app.gql(Some(&admin), USAGE, vars.clone()).await;
    let u = &u.data()["orgUsage"];
    assert_eq!(u["totals"]["requests"], 4, "{u}");
    assert_eq!(u["totals"]["byokRequests"], 0);
    let per_user = u["perUser"].as_array().unwrap();
    assert_eq!(per_user.len(), 2, "carol is in another organization");
    let credits = |p: &serde_json::Value| p["totals"]["credits"].as_str().unwrap().parse::<f64>().unwrap();
    assert!(
        credits(&per_user[0]) >= credits(&per_user[1]),
        "most credits first: {per_user:?}"
    );
    let alice_row = per_user.iter().find(|p| p["user"]["id"] == "alice").unwrap();
    assert_eq!(alice_row["totals"]["requests"], 3);
    let features: Vec<(String, i64)> = u["byFeature"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["feature"].as_str().unwrap().to_owned(),
                f["totals"]["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(features.contains(&("CHAT".into(), 3)) && features.contains(&("STANDUP_SYNTHESIS".into(), 1)));
    let trend: Vec<i64> = u["trend"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["totals"]["requests"].as_i64().unwrap())
        .collect();
    assert_eq!(trend, vec![0, 2, 2, 0], "Nov 1 to 4, a point per day");
    // The totals' credits are the sum of the users'.
    let sum: f64 = u["perUser"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["totals"]["credits"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    let total: f64 = u["totals"]["credits"].as_str().unwrap().parse().unwrap();
    assert!((sum - total).abs() < 1e-9);

    assert_eq!(app.gql(Some(&alice), USAGE, vars.clone()).await.code(), "FORBIDDEN");
    assert_eq!(app.gql(Some(&app.service()), USAGE, vars).await.code(), "FORBIDDEN");
    let backwards = json!({"f": "2026-11-05T00:00:00Z", "t": "2026-11-01T00:00:00Z"});
    assert_eq!(app.gql(Some(&admin), USAGE, backwards).await.code(), "BAD_USER_INPUT");
    let huge = json!({"f": "2000-01-01T00:00:00Z", "t": "2026-11-05T00:00:00Z", "g": "DAY"});
    assert_eq!(app.gql(Some(&admin), USAGE, huge).await.code(), "BAD_USER_INPUT");
}

on_both_databases!(admins_see_their_organizations_usage);
