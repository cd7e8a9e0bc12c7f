//! The back office acts for a user: a SERVICE token names the user in
//! `AiRequestInput.userId`; that user's wallet pays, their keys and
//! settings route the request, and the entry records the service as its
//! actor. Any other role naming another user is FORBIDDEN.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_e2e::ws::WsClient;
use creditgate_e2e::{Backend, TestApp, on_both_databases};
use serde_json::json;

const RUN: &str =
    "mutation($i: AiRequestInput!) { runAi(input: $i) { creditsCharged billingMode wallet { available } } }";
const LAST: &str = "{ activity(first: 1) { edges { node { kind feature creditsConsumed actor balanceAfter } } } }";

fn input(user: Option<&str>) -> serde_json::Value {
    let mut i = json!({"feature": "STANDUP_SYNTHESIS", "messages": [{"role": "user", "content": "yesterday: shipped the wallet"}]});
    if let Some(u) = user {
        i["userId"] = json!(u);
    }
    i
}

async fn the_back_office_runs_requests_for_a_user(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    let bob = app.member("bob", "acme");
    let svc = app.service();
    app.wallet(&alice).await;
    app.wallet(&bob).await;

    // The estimate and the run are Alice's, made by the service.
    let est = app
        .gql(
            Some(&svc),
            "query($i: AiRequestInput!) { estimateCost(input: $i) { maxCredits billingMode } }",
            json!({"i": input(Some("alice"))}),
        )
        .await;
    assert_eq!(est.data()["estimateCost"]["billingMode"], "CREDITS");
    let r = app.gql(Some(&svc), RUN, json!({"i": input(Some("alice"))})).await;
    let charged: f64 = r.data()["runAi"]["creditsCharged"].as_str().unwrap().parse().unwrap();
    assert!(charged > 0.0);
    let entry = app.gql(Some(&alice), LAST, json!({})).await.data()["activity"]["edges"][0]["node"].clone();
    assert_eq!(entry["kind"], "AI_USAGE");
    assert_eq!(entry["actor"], "back-office", "{entry}");
    assert_eq!(entry["creditsConsumed"], r.data()["runAi"]["creditsCharged"]);
    assert_eq!(
        app.wallet(&alice).await["available"],
        r.data()["runAi"]["wallet"]["available"]
    );
    // Bob's wallet and the service's own are untouched.
    assert_eq!(app.wallet(&bob).await["available"], "100");
    // Alice's own requests have no actor.
    app.gql(Some(&alice), RUN, json!({"i": input(None)})).await.data();
    let own = app.gql(Some(&alice), LAST, json!({})).await.data()["activity"]["edges"][0]["node"].clone();
    assert!(own["actor"].is_null(), "{own}");

    // A member naming another user, or an unknown user, is refused; naming oneself is fine.
    assert_eq!(
        app.gql(Some(&bob), RUN, json!({"i": input(Some("alice"))}))
            .await
            .code(),
        "FORBIDDEN"
    );
    app.gql(Some(&bob), RUN, json!({"i": input(Some("bob"))})).await.data();
    assert_eq!(
        app.gql(Some(&svc), RUN, json!({"i": input(Some("nobody"))}))
            .await
            .code(),
        "NOT_FOUND"
    );
    let admin = app.token("carol", "acme", creditgate_domain::Role::Admin);
    assert_eq!(
        app.gql(Some(&admin), RUN, json!({"i": input(Some("alice"))}))
            .await
            .code(),
        "FORBIDDEN"
    );

    // A stream for Alice, over the WebSocket with the service's token.
    let before = app.wallet(&alice).await["available"].clone();
    let mut c = WsClient::connect(app.addr, &svc).await;
    let id = c
        .subscribe("subscription { aiStream(input: {feature: CHAT, userId: \"alice\", messages: [{role: \"user\", content: \"hi\"}]}) { delta result { creditsCharged wallet { available } } } }")
        .await;
    let result = loop {
        let m = c.message(&id).await;
        assert_eq!(m["type"], "next", "{m}");
        if !m["payload"]["data"]["aiStream"]["result"].is_null() {
            break m["payload"]["data"]["aiStream"]["result"].clone();
        }
    };
    assert_ne!(result["wallet"]["available"], before);
    assert_eq!(app.wallet(&alice).await["available"], result["wallet"]["available"]);
    assert_eq!(app.app.store.reconcile().await.unwrap(), vec![]);
}

on_both_databases!(the_back_office_runs_requests_for_a_user);
