//! Streamed requests: a stream the client cancels charges what it produced,
//! and `aiStream` over the GraphQL WebSocket.

use super::*;

async fn a_cancelled_stream_charges_what_it_produced(backend: Backend) {
    use creditgate_metering::{AiMessage, AiRequest, StreamItem};
    use futures::StreamExt;
    let env = env_with(backend, "").await;
    let app = &env.app;
    let hal = app.member("hal", "acme");
    app.wallet(&hal).await;
    let req = AiRequest {
        feature: creditgate_domain::AiFeature::Chat,
        messages: vec![AiMessage {
            role: "user".into(),
            content: "tell me about the roadmap in detail".into(),
        }],
        provider: None,
        model: None,
        max_output_tokens: None,
        idempotency_key: None,
        actor: None,
    };
    let mut stream = app.app.ai.run_stream("hal", &req).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamItem::Delta(_)));
    drop(stream); // the subscriber goes away
    let mut entry = Value::Null;
    for _ in 0..100 {
        entry = last_entry(app, &hal).await;
        if entry["kind"] == "AI_USAGE" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(entry["status"], "CANCELLED", "{entry}");
    let consumed: creditgate_domain::Credits = entry["creditsConsumed"].as_str().unwrap().parse().unwrap();
    assert!(consumed.is_positive(), "what was produced is charged");
    let w = app.wallet(&hal).await;
    assert_eq!(w["held"], "0");
    assert!(app.app.store.reconcile().await.unwrap().is_empty());
}

async fn ai_stream_over_websocket(backend: Backend) {
    let env = env_with(backend, "").await;
    let app = &env.app;
    let ken = app.member("ken", "acme");
    let mut ws = creditgate_e2e::ws::WsClient::connect(app.addr, &ken).await;
    let id = ws
        .subscribe("subscription { aiStream(input: {feature: CHAT, messages: [{role: \"user\", content: \"summarize the sprint\"}]}) { delta result { content creditsCharged billingMode provider outputTokens wallet { available held } } } }")
        .await;
    let mut text = String::new();
    let result = loop {
        let event = ws.next(&id, "aiStream").await;
        if let Some(delta) = event["delta"].as_str() {
            text.push_str(delta);
        }
        if event["result"].is_object() {
            break event["result"].clone();
        }
    };
    assert_eq!(ws.message(&id).await["type"], "complete");
    assert_eq!(result["content"].as_str().unwrap(), text, "the deltas make the answer");
    assert!(text.contains("summarize the sprint"));
    assert_eq!(
        (result["billingMode"].as_str(), result["provider"].as_str()),
        (Some("CREDITS"), Some("demo"))
    );
    let charged: f64 = result["creditsCharged"].as_str().unwrap().parse().unwrap();
    assert!(charged > 0.0);
    assert_eq!(result["wallet"]["held"], "0");
    let e = last_entry(app, &ken).await;
    assert_eq!(
        (e["status"].as_str(), e["creditsConsumed"].as_str()),
        (Some("SUCCEEDED"), result["creditsCharged"].as_str())
    );
    // A stream the wallet cannot afford fails with the code, over the socket too.
    let broke = app.member("broke", "acme");
    let w = app.wallet(&broke).await;
    spend(app, "broke", w["monthlyBalance"].as_str().unwrap().parse().unwrap()).await;
    let mut ws = creditgate_e2e::ws::WsClient::connect(app.addr, &broke).await;
    let id = ws.subscribe("subscription { aiStream(input: {feature: CHAT, messages: [{role: \"user\", content: \"hi\"}]}) { delta } }").await;
    let m = ws.message(&id).await;
    // A resolver error arrives as a `next` whose payload carries the error.
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "INSUFFICIENT_CREDITS",
        "{m}"
    );
    assert!(m["payload"]["data"].is_null());
}

on_both_databases!(a_cancelled_stream_charges_what_it_produced, ai_stream_over_websocket,);
