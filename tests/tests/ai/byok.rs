//! Requests through a user's own key: only its owner's requests use it, it
//! is never stored, logged or returned in clear, and a key the provider
//! refuses fails the request without falling back to the platform's.

use super::*;

async fn byok_requests_use_only_their_owners_key(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let bob = app.member("bob", "acme");
    // A refused key is not stored.
    let bad = app
        .gql(
            Some(&alice),
            "mutation { setByokKey(provider: \"openai\", apiKey: \"sk-wrong-key-000000000\") { hint } }",
            json!({}),
        )
        .await;
    assert_eq!(bad.code(), "BYOK_KEY_INVALID");
    let set = app
        .gql(Some(&alice), "mutation($k: String!) { setByokKey(provider: \"openai\", apiKey: $k) { provider hint createdAt lastUsedAt } }", json!({"k": ALICE_KEY}))
        .await;
    assert_eq!(set.data()["setByokKey"]["hint"], "sk-…5b4a");
    assert_eq!(app.wallet(&alice).await["billingMode"], "BYOK");

    let r = app.gql(Some(&alice), RUN, json!({"i": openai_input(json!({}))})).await;
    assert_eq!(
        (
            r.data()["runAi"]["billingMode"].as_str(),
            r.data()["runAi"]["creditsCharged"].as_str()
        ),
        (Some("BYOK"), Some("0"))
    );
    assert_eq!(r.data()["runAi"]["wallet"]["available"], "100");
    let e = last_entry(app, &alice).await;
    assert_eq!(
        (e["billingMode"].as_str(), e["creditsConsumed"].as_str()),
        (Some("BYOK"), Some("0"))
    );
    // Without `provider`, the feature's default (demo) has no key of Alice's,
    // so her only key's provider serves it, with its default model.
    let r = app
        .gql(
            Some(&alice),
            RUN,
            json!({"i": {"feature": "STANDUP_SYNTHESIS", "messages": [{"role": "user", "content": "notes"}]}}),
        )
        .await;
    assert_eq!(
        (
            r.data()["runAi"]["provider"].as_str(),
            r.data()["runAi"]["model"].as_str()
        ),
        (Some("openai"), Some("gpt-4o-mini"))
    );

    // Bob has no key: his request goes through the platform's key.
    let r = app.gql(Some(&bob), RUN, json!({"i": openai_input(json!({}))})).await;
    assert_eq!(r.data()["runAi"]["billingMode"], "CREDITS");
    assert_eq!(
        keys_seen(&env.mock).await,
        vec![
            format!("Bearer {ALICE_KEY}"),
            format!("Bearer {ALICE_KEY}"),
            format!("Bearer {PLATFORM_KEY}")
        ]
    );

    // The key is nowhere: not in the API, not in the database, not in the logs.
    let keys = app
        .gql(Some(&alice), "{ byokKeys { provider hint lastUsedAt } }", json!({}))
        .await;
    let shown = keys.0.to_string();
    assert!(!shown.contains("SECRET-9f8e"), "{shown}");
    assert!(keys.data()["byokKeys"][0]["lastUsedAt"].is_string());
    let dump = raw_rows(app).await;
    assert!(
        !dump.contains("SECRET-9f8e7d6c5b4a") && !dump.contains(ALICE_KEY),
        "plaintext key in the database"
    );
    let logs = logged();
    assert!(
        !logs.contains("SECRET-9f8e") && !logs.contains(PLATFORM_KEY),
        "a key reached the logs"
    );

    // Removing the key returns Alice to credits.
    let rm = app
        .gql(
            Some(&alice),
            "mutation { removeByokKey(provider: \"openai\") }",
            json!({}),
        )
        .await;
    assert_eq!(rm.data()["removeByokKey"], true);
    let r = app.gql(Some(&alice), RUN, json!({"i": openai_input(json!({}))})).await;
    assert_eq!(r.data()["runAi"]["billingMode"], "CREDITS");
    assert_eq!(
        keys_seen(&env.mock).await.last().unwrap(),
        &format!("Bearer {PLATFORM_KEY}")
    );
    assert_eq!(app.wallet(&alice).await["billingMode"], "CREDITS");
}

/// Every text column of the key table, as stored.
async fn raw_rows(app: &TestApp) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.app.store.connection();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT user_id, provider, ciphertext, hint FROM byok_keys",
        ))
        .await
        .unwrap();
    let mut out = String::new();
    for r in rows {
        for col in ["user_id", "provider", "ciphertext", "hint"] {
            out.push_str(&r.try_get::<String>("", col).unwrap());
            out.push('\n');
        }
    }
    assert!(!out.is_empty());
    out
}

async fn a_refused_byok_key_fails_without_falling_back(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    app.gql(
        Some(&alice),
        "mutation($k: String!) { setByokKey(provider: \"openai\", apiKey: $k) { hint } }",
        json!({"k": ALICE_KEY}),
    )
    .await
    .data();
    // The provider revokes Alice's key.
    env.mock.reset().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {PLATFORM_KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(fixture("chat-response.json"), "application/json"))
        .mount(&env.mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_raw(fixture("error-401.json"), "application/json"))
        .mount(&env.mock)
        .await;
    let r = app.gql(Some(&alice), RUN, json!({"i": openai_input(json!({}))})).await;
    assert_eq!(r.code(), "BYOK_KEY_INVALID");
    assert_eq!(
        app.wallet(&alice).await["available"],
        "100",
        "no fallback to credits by default"
    );
    // Once Alice opts in, the failing key falls back to credits.
    app.gql(
        Some(&alice),
        "mutation { setAiSettings(fallbackToCredits: true) { fallbackToCredits } }",
        json!({}),
    )
    .await
    .data();
    let r = app.gql(Some(&alice), RUN, json!({"i": openai_input(json!({}))})).await;
    assert_eq!(
        (
            r.data()["runAi"]["billingMode"].as_str(),
            r.data()["runAi"]["creditsCharged"].as_str()
        ),
        (Some("CREDITS"), Some("0.109"))
    );
}

on_both_databases!(
    byok_requests_use_only_their_owners_key,
    a_refused_byok_key_fails_without_falling_back,
);
