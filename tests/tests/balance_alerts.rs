//! Balance alerts end to end, on SQLite and PostgreSQL: thresholds set,
//! read and checked through the API; LOW, DEPLETED and RECOVERED raised once
//! per crossing (also under 50 concurrent runAi requests), written to the
//! alert log and delivered on the `balanceAlert` subscription, also to a
//! subscriber on another replica.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use creditgate_domain::Credits;
use creditgate_e2e::ws::{WsClient, live_subscriptions};
use creditgate_e2e::{Backend, TestApp, on_both_databases, providers_toml};
use creditgate_storage::{HoldRequest, Placement, Store, UsageDetails};
use serde_json::{Value, json};

const ALERT: &str = "subscription { balanceAlert { kind threshold available at } }";
const SET: &str = "mutation($t: [Credits!]!) { setBalanceAlerts(thresholds: $t) { id available alertThresholds } }";
const RUN: &str = "mutation($i: AiRequestInput!) { runAi(input: $i) { creditsCharged } }";

fn credits(v: &str) -> Credits {
    v.parse().unwrap()
}

/// Spends `amount` the way an AI request does: a hold, then its settle.
async fn spend(store: &Store, user: &str, amount: Credits) {
    let Placement::Placed { hold, .. } = store.place_hold(user, &HoldRequest::new(amount)).await.unwrap() else {
        panic!("a new hold")
    };
    store
        .settle_hold(user, &hold.id, amount, UsageDetails::default())
        .await
        .unwrap();
}

/// The user's alert log as (kind, threshold, available), oldest first,
/// with the log's ids.
async fn log(store: &Store, user: &str) -> Vec<(i64, (String, String, String))> {
    store
        .balance_alerts(user, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|a| {
            (
                a.id,
                (
                    a.kind.as_str().to_owned(),
                    a.threshold.to_string(),
                    a.available.to_string(),
                ),
            )
        })
        .collect()
}

fn triple(kind: &str, threshold: &str, available: &str) -> (String, String, String) {
    (kind.to_owned(), threshold.to_owned(), available.to_owned())
}

/// The next alert of subscription `id`, as (kind, threshold, available).
async fn next_alert(c: &mut WsClient, id: &str) -> (String, String, String) {
    let a = c.next(id, "balanceAlert").await;
    assert!(a["at"].is_string(), "{a}");
    triple(
        a["kind"].as_str().unwrap(),
        a["threshold"].as_str().unwrap(),
        a["available"].as_str().unwrap(),
    )
}

async fn thresholds_are_set_read_and_checked(backend: Backend) {
    let app = TestApp::new(backend).await;
    let alice = app.member("alice", "acme");
    // The shipped default: 10 (LOW) and 0 (DEPLETED).
    let r = app.gql(Some(&alice), "{ wallet { alertThresholds } }", json!({})).await;
    assert_eq!(r.data()["wallet"]["alertThresholds"], json!(["10", "0"]));

    // Any order in, highest first out; the wallet moves to a new version.
    let r = app.gql(Some(&alice), SET, json!({"t": ["5", "50.5", "0"]})).await;
    assert_eq!(
        r.data()["setBalanceAlerts"]["alertThresholds"],
        json!(["50.5", "5", "0"])
    );
    assert_eq!(r.data()["setBalanceAlerts"]["id"], "alice");
    let r = app.gql(Some(&alice), "{ wallet { alertThresholds } }", json!({})).await;
    assert_eq!(r.data()["wallet"]["alertThresholds"], json!(["50.5", "5", "0"]));

    // Refused, with a message that says why; nothing changes.
    for (t, why) in [
        (json!(["1", "2", "3", "4", "5", "6"]), "at most 5"),
        (json!(["10", "-1"]), "negative"),
        (json!(["7", "3", "7.000"]), "twice"),
    ] {
        let r = app.gql(Some(&alice), SET, json!({ "t": t })).await;
        assert_eq!(r.code(), "BAD_USER_INPUT", "{t}");
        assert!(r.message().contains(why), "{t}: {}", r.message());
    }
    let r = app.gql(Some(&alice), SET, json!({"t": ["1", "x"]})).await;
    assert_eq!(r.code(), "BAD_USER_INPUT");
    let r = app.gql(Some(&alice), "{ wallet { alertThresholds } }", json!({})).await;
    assert_eq!(r.data()["wallet"]["alertThresholds"], json!(["50.5", "5", "0"]));

    // A SERVICE identity has no wallet, hence no thresholds of its own.
    let r = app.gql(Some(&app.service()), SET, json!({"t": ["1"]})).await;
    assert_eq!(r.code(), "FORBIDDEN");

    // No thresholds: no alerts, even at 0.
    let r = app.gql(Some(&alice), SET, json!({"t": []})).await;
    assert_eq!(r.data()["setBalanceAlerts"]["alertThresholds"], json!([]));
    spend(&app.app.store, "alice", credits("100")).await;
    assert!(log(&app.app.store, "alice").await.is_empty());

    // The configured default applies to users without their own.
    let other = TestApp::builder(backend)
        .config("[alerts]\ndefault_thresholds = [\"0\", \"25\"]")
        .start()
        .await;
    let bob = other.member("bob", "acme");
    let r = other.gql(Some(&bob), "{ wallet { alertThresholds } }", json!({})).await;
    assert_eq!(r.data()["wallet"]["alertThresholds"], json!(["25", "0"]));
    // And a bad default stops the start, naming its key.
    let bad = creditgate_server::Config::from_toml("[alerts]\ndefault_thresholds = [\"3\", \"3\"]").unwrap_err();
    assert!(bad.to_string().contains("alerts.default_thresholds"), "{bad}");
}

async fn crossings_raise_low_depleted_and_recovered_once(backend: Backend) {
    let app = TestApp::new(backend).await;
    let store = &app.app.store;
    let alice = app.member("alice", "acme");
    let mut c = WsClient::connect(app.addr, &alice).await;
    let sub = c.subscribe(ALERT).await;
    live_subscriptions(&app.app, 1).await;

    // 100 -> 15: above both thresholds, nothing.
    spend(store, "alice", credits("85")).await;
    assert!(log(store, "alice").await.is_empty());
    // 15 -> 9: LOW at 10, once (the hold takes it there; the settle keeps it).
    spend(store, "alice", credits("6")).await;
    // 9 -> 4: still below 10, nothing new.
    spend(store, "alice", credits("5")).await;
    // 4 -> 0: DEPLETED.
    spend(store, "alice", credits("4")).await;
    // A grant of 50: RECOVERED above 0, then above 10, in one change.
    app.grant("alice", "50", "g1").await.data();
    // A hold that takes it all and is released: DEPLETED, then RECOVERED.
    let Placement::Placed { hold, .. } = store
        .place_hold("alice", &HoldRequest::new(credits("50")))
        .await
        .unwrap()
    else {
        panic!("a new hold")
    };
    store.release_hold("alice", &hold.id, None).await.unwrap();

    let expected = vec![
        triple("LOW", "10", "9"),
        triple("DEPLETED", "0", "0"),
        triple("RECOVERED", "0", "50"),
        triple("RECOVERED", "10", "50"),
        triple("LOW", "10", "0"),
        triple("DEPLETED", "0", "0"),
        triple("RECOVERED", "0", "50"),
        triple("RECOVERED", "10", "50"),
    ];
    let logged: Vec<_> = log(store, "alice").await.into_iter().map(|(_, a)| a).collect();
    assert_eq!(logged, expected);
    for e in &expected {
        assert_eq!(&next_alert(&mut c, &sub).await, e);
    }
    // A purchase-like grant that crosses nothing raises nothing; the next
    // alert the subscriber gets is the next crossing, not a repeat.
    app.grant("alice", "1", "g2").await.data();
    spend(store, "alice", credits("45")).await;
    assert_eq!(next_alert(&mut c, &sub).await, triple("LOW", "10", "6"));
    assert_eq!(log(store, "alice").await.len(), expected.len() + 1);
}

async fn fifty_concurrent_requests_raise_one_alert_per_crossing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("openai-key");
    std::fs::write(&key_file, "sk-unused").unwrap();
    let toml = format!(
        "{}\n[ai]\nrequests_per_minute = 0\n",
        providers_toml("http://127.0.0.1:9/v1", &key_file, 1_500)
    );
    let app = TestApp::builder(backend).config(&toml).start().await;
    let store = &app.app.store;
    let input =
        json!({"feature": "CHAT", "maxOutputTokens": 64, "messages": [{"role": "user", "content": "plan the sprint"}]});
    // What one such request costs (the demo answers deterministically).
    let probe = app.member("probe", "acme");
    let one = app.gql(Some(&probe), RUN, json!({"i": input})).await;
    let cost: Credits = one.data()["runAi"]["creditsCharged"].as_str().unwrap().parse().unwrap();

    // Gina: thresholds at 30 requests' worth and at 0; her wallet holds 30.5
    // requests' worth, so the first request that runs takes her below the
    // first threshold for good (its charge alone does), and holds may take
    // all that is left for a moment.
    let gina = app.member("gina", "acme");
    let low = Credits::from_millis(cost.millis() * 30);
    let r = app.gql(Some(&gina), SET, json!({"t": [low.to_string(), "0"]})).await;
    r.data();
    spend(store, "gina", credits("100")).await;
    let start = Credits::from_millis(cost.millis() * 30 + cost.millis() / 2);
    app.grant("gina", &start.to_string(), "start").await.data();
    let before: Vec<i64> = log(store, "gina").await.into_iter().map(|(id, _)| id).collect();
    let last_before = before.last().copied().unwrap_or(0);

    let mut c = WsClient::connect(app.addr, &gina).await;
    let sub = c.subscribe(ALERT).await;
    live_subscriptions(&app.app, 1).await;

    let tasks = (0..50).map(|_| {
        let http = app.http.clone();
        let url = app.url("/graphql");
        let token = gina.clone();
        let body = json!({"query": RUN, "variables": {"i": input}});
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    });
    let results: Vec<Value> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let ok = results.iter().filter(|r| r["data"]["runAi"].is_object()).count();
    let refused = results
        .iter()
        .filter(|r| r["errors"][0]["extensions"]["code"] == "INSUFFICIENT_CREDITS")
        .count();
    assert_eq!(ok + refused, 50, "{results:?}");
    assert!(ok >= 1);

    let raised: Vec<(String, String, String)> = log(store, "gina")
        .await
        .into_iter()
        .filter(|(id, _)| *id > last_before)
        .map(|(_, a)| a)
        .collect();
    // The threshold at 30 requests' worth was crossed once, downwards.
    let at_low: Vec<_> = raised.iter().filter(|a| a.1 == low.to_string()).collect();
    assert_eq!(at_low.len(), 1, "{raised:?}");
    assert_eq!(at_low[0].0, "LOW");
    // 0 may be reached (and left) any number of times while holds come and
    // go: DEPLETED and RECOVERED alternate, each true of its `available`,
    // and the last one says where the wallet ended.
    let at_zero: Vec<_> = raised.iter().filter(|a| a.1 == "0").collect();
    for (i, a) in at_zero.iter().enumerate() {
        let expected = if i % 2 == 0 { "DEPLETED" } else { "RECOVERED" };
        assert_eq!(a.0, expected, "{raised:?}");
        assert_eq!(a.2 == "0", expected == "DEPLETED", "{raised:?}");
    }
    let w = app.wallet(&gina).await;
    assert_eq!(w["held"], "0");
    let depleted_now = w["available"] == "0";
    assert_eq!(at_zero.len() % 2 == 1, depleted_now, "{raised:?} {w}");

    // The subscriber got exactly the log, in order; then the next crossing
    // (a grant back above both), with nothing repeated in between.
    for a in &raised {
        assert_eq!(&next_alert(&mut c, &sub).await, a);
    }
    app.grant("gina", &start.to_string(), "again").await.data();
    let after: Credits = app.wallet(&gina).await["available"].as_str().unwrap().parse().unwrap();
    if depleted_now {
        assert_eq!(
            next_alert(&mut c, &sub).await,
            triple("RECOVERED", "0", &after.to_string())
        );
    }
    assert_eq!(
        next_alert(&mut c, &sub).await,
        triple("RECOVERED", &low.to_string(), &after.to_string())
    );
}

on_both_databases!(
    thresholds_are_set_read_and_checked,
    crossings_raise_low_depleted_and_recovered_once,
    fifty_concurrent_requests_raise_one_alert_per_crossing,
);

/// Two replicas on one PostgreSQL database: alerts raised by changes made
/// on A reach a subscriber on B, each once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_on_one_replica_reaches_a_subscriber_on_another() {
    let a = TestApp::new(Backend::Postgres).await;
    let b = a.replica("").await;
    let alice = a.member("alice", "acme");
    // Created on A (100 credits), subscribed on B.
    a.wallet(&alice).await;
    let mut c = WsClient::connect(b.addr, &alice).await;
    let sub = c.subscribe(ALERT).await;
    live_subscriptions(&b.app, 1).await;

    let store = &a.app.store;
    let mut expected = Vec::new();
    for round in 0..5 {
        // Down to 5: LOW at 10. Up to 100 again: RECOVERED.
        spend(store, "alice", credits("95")).await;
        expected.push(triple("LOW", "10", "5"));
        a.grant("alice", "95", &format!("r{round}")).await.data();
        expected.push(triple("RECOVERED", "10", "100"));
    }
    for e in &expected {
        assert_eq!(&next_alert(&mut c, &sub).await, e);
    }
    let logged: Vec<_> = log(store, "alice").await.into_iter().map(|(_, a)| a).collect();
    assert_eq!(logged, expected);
    // And one raised on B reaches a subscriber on A.
    let mut on_a = WsClient::connect(a.addr, &alice).await;
    let sub_a = on_a.subscribe(ALERT).await;
    live_subscriptions(&a.app, 1).await;
    spend(&b.app.store, "alice", credits("100")).await;
    assert_eq!(next_alert(&mut on_a, &sub_a).await, triple("LOW", "10", "0"));
    assert_eq!(next_alert(&mut on_a, &sub_a).await, triple("DEPLETED", "0", "0"));
    assert_eq!(next_alert(&mut c, &sub).await, triple("LOW", "10", "0"));
    assert_eq!(next_alert(&mut c, &sub).await, triple("DEPLETED", "0", "0"));
}
