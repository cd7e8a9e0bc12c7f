//! The wallet API end to end, against a running server, on SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_domain::Role;
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use serde_json::json;

const ME: &str = "{ me { id name email role team organization { id name plan { id name monthlyCreditsPerUser } } wallet { monthlyBalance monthlyAllocation permanentBalance held available cycleStart cycleEnd billingMode } } }";

async fn token_to_me(backend: Backend) {
    let app = TestApp::builder(backend).at("2026-03-31T10:00:00Z").start().await;
    let alice = app.member("alice", "acme");
    let me = app.gql(Some(&alice), ME, json!({})).await;
    insta::assert_json_snapshot!("me", me.data());
}

async fn a_grant_shows_in_wallet_and_activity(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    assert_eq!(app.wallet(&alice).await["available"], "100");
    let g = app.grant("alice", "12.345", "welcome-bonus").await;
    assert_eq!(g.data()["grantCredits"]["kind"], "GRANT");
    assert_eq!(g.data()["grantCredits"]["balanceAfter"], "112.345");
    let w = app.wallet(&alice).await;
    assert_eq!(
        (w["permanentBalance"].as_str(), w["available"].as_str()),
        (Some("12.345"), Some("112.345"))
    );
    let act = app
        .gql(
            Some(&alice),
            "{ activity { edges { node { kind creditsConsumed monthlyDelta permanentDelta balanceAfter description } } } }",
            json!({}),
        )
        .await;
    let nodes: Vec<_> = act.data()["activity"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    assert_eq!(
        nodes,
        vec![
            json!({"kind": "GRANT", "creditsConsumed": "0", "monthlyDelta": "0", "permanentDelta": "12.345", "balanceAfter": "112.345", "description": "test"}),
            json!({"kind": "MONTHLY_ALLOCATION", "creditsConsumed": "0", "monthlyDelta": "100", "permanentDelta": "0", "balanceAfter": "100", "description": nodes[1]["description"]}),
        ]
    );
    // The same key again returns the same entry and adds nothing.
    let again = app.grant("alice", "12.345", "welcome-bonus").await;
    assert_eq!(again.data()["grantCredits"]["id"], g.data()["grantCredits"]["id"]);
    assert_eq!(app.wallet(&alice).await["permanentBalance"], "12.345");
}

async fn pagination_walks_every_entry_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    let bob = app.member("bob", "acme");
    app.wallet(&bob).await;
    for i in 0..23 {
        app.grant("bob", &format!("{}.5", i + 1), &format!("k{i}")).await.data();
    }
    let q = "query($after: String, $f: ActivityFilter) { activity(first: 10, after: $after, filter: $f) { edges { cursor node { id kind permanentDelta } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = app
            .gql(Some(&bob), q, json!({"after": after, "f": {"kinds": ["GRANT"]}}))
            .await;
        let conn = &page.data()["activity"];
        let edges = conn["edges"].as_array().unwrap();
        pages += 1;
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], json!(after.is_some()));
        assert_eq!(conn["pageInfo"]["endCursor"], edges.last().unwrap()["cursor"]);
        for e in edges {
            assert_eq!(e["node"]["kind"], "GRANT");
            seen.push(e["node"]["permanentDelta"].as_str().unwrap().to_owned());
        }
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (1..=23).rev().map(|i| format!("{i}.5")).collect();
    assert_eq!(seen, expected, "newest first, each once");
    // `first` is capped.
    let big = app
        .gql(
            Some(&bob),
            "{ activity(first: 100000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(big.data()["activity"]["edges"].as_array().unwrap().len(), 24);
    // Filters by feature and time.
    let none = app
        .gql(
            Some(&bob),
            "{ activity(filter: {features: [CHAT]}) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(none.data()["activity"]["edges"].as_array().unwrap().len(), 0);
    let future = app
        .gql(
            Some(&bob),
            "{ activity(filter: {from: \"2999-01-01T00:00:00Z\"}) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(future.data()["activity"]["edges"].as_array().unwrap().len(), 0);
}

async fn plan_change_reaches_members(backend: Backend) {
    let app = TestApp::new(backend).await;
    let carol = app.member("carol", "acme");
    app.wallet(&carol).await;
    let svc = app.service();
    let r = app
        .gql(Some(&svc), "mutation { setOrganizationPlan(organizationId: \"acme\", planId: \"team\") { id plan { id monthlyCreditsPerUser } } }", json!({}))
        .await;
    assert_eq!(r.data()["setOrganizationPlan"]["plan"]["id"], "team");
    let w = app.wallet(&carol).await;
    assert_eq!(
        (w["monthlyBalance"].as_str(), w["monthlyAllocation"].as_str()),
        (Some("1000"), Some("1000"))
    );
    let plans = app
        .gql(Some(&carol), "{ plans { id name monthlyCreditsPerUser } }", json!({}))
        .await;
    assert_eq!(plans.data()["plans"].as_array().unwrap().len(), 3);
}

async fn every_error_code(backend: Backend) {
    let app = TestApp::new(backend).await;
    let dave = app.member("dave", "acme");
    let before = app.wallet(&dave).await;
    let svc = app.service();

    // UNAUTHENTICATED: no token, a bad signature, an expired token, an unknown role, garbage.
    assert_eq!(
        app.gql(None, "{ me { id } }", json!({})).await.code(),
        "UNAUTHENTICATED"
    );
    let forged = format!("{}x", &dave[..dave.len() - 1]);
    assert_eq!(
        app.gql(Some(&forged), "{ me { id } }", json!({})).await.code(),
        "UNAUTHENTICATED"
    );
    let expired = sign(json!({"sub": "dave", "org": "acme", "role": "member", "exp": 1_000_000}));
    let r = app.gql(Some(&expired), "{ me { id } }", json!({})).await;
    assert_eq!(
        (r.code().as_str(), r.message().as_str()),
        ("UNAUTHENTICATED", "the token has expired")
    );
    let odd_role = sign(json!({"sub": "dave", "org": "acme", "role": "owner", "exp": 4_000_000_000u64}));
    assert_eq!(
        app.gql(Some(&odd_role), "{ me { id } }", json!({})).await.code(),
        "UNAUTHENTICATED"
    );
    let no_exp = sign(json!({"sub": "dave", "org": "acme", "role": "member"}));
    assert_eq!(
        app.gql(Some(&no_exp), "{ me { id } }", json!({})).await.code(),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.gql(Some("not-a-jwt"), "{ me { id } }", json!({})).await.code(),
        "UNAUTHENTICATED"
    );

    // FORBIDDEN: a member granting, a member changing plans, a token naming another org.
    let grant = "mutation($a: Credits!) { grantCredits(userId: \"dave\", amount: $a, reason: \"x\", idempotencyKey: \"e1\") { id } }";
    assert_eq!(app.gql(Some(&dave), grant, json!({"a": "5"})).await.code(), "FORBIDDEN");
    let admin = app.token("dave", "acme", Role::Admin);
    assert_eq!(
        app.gql(Some(&admin), grant, json!({"a": "5"})).await.code(),
        "FORBIDDEN"
    );
    let plan = "mutation { setOrganizationPlan(organizationId: \"acme\", planId: \"business\") { id } }";
    assert_eq!(app.gql(Some(&dave), plan, json!({})).await.code(), "FORBIDDEN");
    let elsewhere = app.member("dave", "other-org");
    assert_eq!(
        app.gql(Some(&elsewhere), "{ wallet { available } }", json!({}))
            .await
            .code(),
        "FORBIDDEN"
    );
    assert_eq!(
        app.gql(Some(&svc), "{ wallet { available } }", json!({})).await.code(),
        "FORBIDDEN"
    );

    // BAD_USER_INPUT: amounts that are not exact positive credits, bad cursors and pages.
    for bad in [
        json!("1.2345"),
        json!(1.5),
        json!(3),
        json!("1e3"),
        json!("0"),
        json!("-5"),
        json!("+5"),
        json!(" 5"),
        json!("9223372036854775.808"),
        json!("99999999999999999999"),
        json!(""),
    ] {
        let r = app.gql(Some(&svc), grant, json!({"a": bad})).await;
        assert_eq!(r.code(), "BAD_USER_INPUT", "amount {bad}: {}", r.0);
    }
    let inline_float =
        "mutation { grantCredits(userId: \"dave\", amount: 2.5, reason: \"x\", idempotencyKey: \"e2\") { id } }";
    assert_eq!(
        app.gql(Some(&svc), inline_float, json!({})).await.code(),
        "BAD_USER_INPUT"
    );
    let blank_reason =
        "mutation { grantCredits(userId: \"dave\", amount: \"1\", reason: \"  \", idempotencyKey: \"e3\") { id } }";
    assert_eq!(
        app.gql(Some(&svc), blank_reason, json!({})).await.code(),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        app.gql(
            Some(&dave),
            "{ activity(after: \"nonsense\") { edges { cursor } } }",
            json!({})
        )
        .await
        .code(),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        app.gql(Some(&dave), "{ activity(first: -1) { edges { cursor } } }", json!({}))
            .await
            .code(),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        app.gql(Some(&dave), "{ nosuchfield }", json!({})).await.code(),
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert_eq!(
        app.gql(Some(&dave), "{ me { ", json!({})).await.code(),
        "GRAPHQL_PARSE_FAILED"
    );

    // NOT_FOUND: unknown user, organization, plan.
    let ghost =
        "mutation { grantCredits(userId: \"ghost\", amount: \"1\", reason: \"x\", idempotencyKey: \"e4\") { id } }";
    assert_eq!(app.gql(Some(&svc), ghost, json!({})).await.code(), "NOT_FOUND");
    let no_org = "mutation { setOrganizationPlan(organizationId: \"nope\", planId: \"team\") { id } }";
    assert_eq!(app.gql(Some(&svc), no_org, json!({})).await.code(), "NOT_FOUND");
    let no_plan = "mutation { setOrganizationPlan(organizationId: \"acme\", planId: \"platinum\") { id } }";
    assert_eq!(app.gql(Some(&svc), no_plan, json!({})).await.code(), "NOT_FOUND");

    // IDEMPOTENCY_CONFLICT: one key, two different grants.
    app.grant("dave", "2", "same").await.data();
    let conflict = app.grant("dave", "3", "same").await;
    assert_eq!(conflict.code(), "IDEMPOTENCY_CONFLICT");

    // None of the refused requests changed anything.
    let after = app.wallet(&dave).await;
    assert_eq!(after["permanentBalance"], "2");
    assert_eq!(after["monthlyBalance"], before["monthlyBalance"]);
    let entries = app
        .gql(Some(&dave), "{ activity { edges { node { kind } } } }", json!({}))
        .await;
    assert_eq!(entries.data()["activity"]["edges"].as_array().unwrap().len(), 2);
    let reconcile = app.app.store.reconcile().await.unwrap();
    assert!(reconcile.is_empty(), "{reconcile:?}");
}

fn sign(claims: serde_json::Value) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(creditgate_e2e::TEST_SECRET.as_bytes()),
    )
    .unwrap()
}

async fn health_and_readiness(backend: Backend) {
    let app = TestApp::new(backend).await;
    let ok = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let page = app
        .http
        .get(app.url("/graphql"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("graphiql"), "GraphiQL is served");
    let huge = "x".repeat(2 * 1024 * 1024);
    let refused = app
        .http
        .post(app.url("/graphql"))
        .body(huge)
        .header("content-type", "application/json")
        .send()
        .await;
    // The server answers 413 from the Content-Length alone; it may close the
    // connection before the client has finished sending, which the client
    // sees as an error instead of the response. Either way it was refused.
    match refused {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request() || e.is_body() || e.is_connect(), "{e}"),
    }
}

on_both_databases!(
    token_to_me,
    a_grant_shows_in_wallet_and_activity,
    pagination_walks_every_entry_once,
    plan_change_reaches_members,
    every_error_code,
    health_and_readiness,
);
