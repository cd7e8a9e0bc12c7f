//! The web console, as a user drives it: Debian's Chromium, headless,
//! through chromedriver (WebDriver, with fantoccini), against a real server
//! with the demo provider and a mock OpenAI. The tests follow the help
//! page's own steps (sign in, buy credits, bring a key, run a streamed
//! request, read the activity, and as an admin the usage), assert that the
//! page logs no error at any point (the browser's own log: uncaught errors,
//! `console.error`, refused CSP loads, failed requests), and take a
//! screenshot of every view into `target/screenshots/console/`.
//!
//! Browser tests run on SQLite only: the console is a client of the public
//! API, whose behaviour on both databases the API tests cover. The HTTP
//! tests of the console's files and of the development sign-in need no
//! browser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;
mod files;

use std::time::{Duration, Instant};

use creditgate_e2e::openai::{OpenAiApp, mock_openai, openai_fixture};
use creditgate_e2e::{Backend, TestApp};
use fantoccini::Locator;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use browser::{Browser, WAIT, shown};

const PLATFORM_KEY: &str = "sk-platform-console-0000";
const ALICE_KEY: &str = "sk-alice-console-SECRET-7f3e";

/// The demo provider for credits; a mock OpenAI that accepts the platform
/// key and Alice's, answering plain and streamed requests.
async fn start_app(extra: &str) -> (OpenAiApp, MockServer) {
    let mock = mock_openai(&[PLATFORM_KEY, ALICE_KEY], None).await;
    for key in [PLATFORM_KEY, ALICE_KEY] {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(header("authorization", format!("Bearer {key}").as_str()))
            .and(body_partial_json(json!({"stream": true})))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(openai_fixture("chat-stream.sse"), "text/event-stream"),
            )
            .with_priority(1)
            .mount(&mock)
            .await;
    }
    let app = OpenAiApp::start(Backend::Sqlite, &mock, PLATFORM_KEY, extra).await;
    (app, mock)
}

async fn run_ai(app: &TestApp, token: &str, prompt: &str) -> Value {
    app.gql(
        Some(token),
        "mutation($i: AiRequestInput!) { runAi(input: $i) { id creditsCharged billingMode } }",
        json!({"i": {"feature": "CHAT", "messages": [{"role": "user", "content": prompt}]}}),
    )
    .await
    .data()["runAi"]
        .clone()
}

async fn last_entry(app: &TestApp, token: &str) -> Value {
    app.gql(
        Some(token),
        "{ activity(first: 1) { edges { node { id kind creditsConsumed balanceAfter billingMode } } } }",
        json!({}),
    )
    .await
    .data()["activity"]["edges"][0]["node"]
        .clone()
}

/// Wallet, Buy Credits, Try AI, Activity and BYOK as a member, following
/// the help page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_follows_the_help_page() {
    let (env, _mock) = start_app("").await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let b = Browser::open(app.url("")).await;

    // Sign in.
    b.goto("/").await;
    b.find("input[name=sub]").await;
    b.shot("sign-in").await;
    b.sign_in("alice", "acme", "member", "Alice").await;
    b.script("window.__sameDocument = 'yes'; return true").await;
    assert!(
        b.client.find(Locator::Css("nav a[data-route=usage]")).await.is_err(),
        "a member has no Usage view"
    );

    // Settings › AI › Wallet.
    b.wait_text("[data-field=monthlyBalance]", "the allocation", |t| t == "100")
        .await;
    b.wait_text("[data-field=permanentBalance]", "no permanent credits", |t| t == "0")
        .await;
    assert_eq!(
        b.find("[data-field=monthlyAllocation]").await.text().await.unwrap(),
        "100"
    );
    b.wait_text("[data-field=available]", "available", |t| t == "100").await;
    b.wait_text("[data-field=billingMode]", "credits", |t| t.contains("With credits"))
        .await;
    b.wait_text("[data-field=cycleEnd]", "the reset", |t| t.starts_with("Resets in"))
        .await;
    b.shot("wallet").await;
    b.phone_shot("wallet-360").await;
    b.assert_no_errors("wallet").await;

    // A grant made elsewhere shows up live.
    app.grant("alice", "25", "console-grant").await.data();
    b.wait_text("[data-field=permanentBalance]", "25 permanent credits", |t| t == "25")
        .await;

    // Click Buy Credits, select a pack, complete the purchase (dev payments).
    b.click("a.button[href=\"#/buy\"]").await;
    b.find("button[data-pack=starter]").await;
    b.wait_text("[data-table=purchases], .empty", "no purchases", |t| {
        t.contains("No purchases")
    })
    .await;
    b.shot("buy-credits").await;
    b.phone_shot("buy-credits-360").await;
    b.click("button[data-pack=starter]").await;
    b.wait_text("[data-purchase-result=COMPLETED]", "the purchase", |t| {
        t.contains("500 credits")
    })
    .await;
    b.wait_text(
        "[data-table=purchases] tbody tr [data-status]",
        "a completed row",
        |t| t == "Completed",
    )
    .await;
    b.shot("buy-credits-done").await;

    // Back to the wallet: the permanent balance grew, without a reload.
    b.open_view("wallet").await;
    b.wait_text("[data-field=permanentBalance]", "525 permanent credits", |t| t == "525")
        .await;
    assert_eq!(
        b.script("return window.__sameDocument === 'yes'").await,
        json!(true),
        "no reload"
    );
    b.shot("wallet-after-purchase").await;
    b.assert_no_errors("buying credits").await;

    // Try AI: a feature, a prompt, the estimate, a streamed run, its charge.
    b.open_view("try").await;
    b.select("select[name=feature]", "CHAT").await;
    b.type_into("textarea[name=prompt]", "summarize the sprint").await;
    b.wait_text("[data-field=estimate]", "the estimate", |t| t.starts_with("At most"))
        .await;
    b.shot("try-ai").await;
    b.click("form button[type=submit]").await;
    let charged_el = b.find("[data-field=charge] [data-charged]").await;
    let charged = charged_el.attr("data-charged").await.unwrap().unwrap();
    assert_eq!(charged_el.attr("data-mode").await.unwrap().as_deref(), Some("CREDITS"));
    assert_ne!(charged, "0");
    let answer = b
        .wait_text("[data-field=answer]", "the streamed answer", |t| !t.is_empty())
        .await;
    assert!(answer.contains("summarize the sprint"), "{answer}");
    let entry = last_entry(app, &alice).await;
    assert_eq!(entry["creditsConsumed"], charged.as_str());
    b.shot("try-ai-result").await;
    b.phone_shot_at("try-ai-360", Some("[data-field=charge]")).await;

    // Its row in Activity, with the running balance.
    b.open_view("activity").await;
    let first = format!(
        "[data-table=activity] tbody tr[data-entry=\"{}\"]",
        entry["id"].as_str().unwrap()
    );
    b.wait_text(&format!("{first} [data-field=creditsConsumed]"), "the charge", |t| {
        t == shown(&charged)
    })
    .await;
    let balance = shown(entry["balanceAfter"].as_str().unwrap());
    b.wait_text(&format!("{first} [data-field=balanceAfter]"), "the balance", |t| {
        t == balance
    })
    .await;
    // A request made elsewhere arrives live, on top.
    run_ai(app, &alice, "plan the next sprint").await;
    let other = last_entry(app, &alice).await;
    let live_row = b
        .wait_text("[data-table=activity] tbody tr:first-child", "the new row", |t| {
            !t.is_empty()
        })
        .await;
    b.assert_no_errors("before the live row").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let top = b.find("[data-table=activity] tbody tr:first-child").await;
        if top.attr("data-entry").await.ok().flatten().as_deref() == other["id"].as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "the new entry never arrived: {live_row}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.shot("activity").await;
    b.phone_shot("activity-360").await;
    // Filters: purchases only.
    b.select("select[name=kind]", "PURCHASE").await;
    b.click("form.filters button[type=submit]").await;
    b.wait_gone("[data-table=activity] tbody tr[data-kind=AI_USAGE]").await;
    b.wait_text(
        "[data-table=activity] tbody tr[data-kind=PURCHASE]",
        "the purchase",
        |t| t.contains("Credits bought"),
    )
    .await;
    b.assert_no_errors("activity").await;

    // BYOK: a refused key says why; a saved key shows only its hint.
    b.open_view("byok").await;
    b.select("select[name=provider]", "openai").await;
    b.type_into("input[name=apiKey]", "sk-wrong-key-000000000").await;
    b.click("form button.primary[type=submit]").await;
    b.wait_text("[data-code=BYOK_KEY_INVALID]", "the refusal", |t| t.contains("refused"))
        .await;
    assert_eq!(
        b.value_of("input[name=apiKey]").await,
        "",
        "a refused key is not kept either"
    );
    b.type_into("input[name=apiKey]", ALICE_KEY).await;
    b.click("form button.primary[type=submit]").await;
    let hint = b
        .wait_text("[data-key=openai] [data-field=hint]", "the hint", |t| {
            t.ends_with("7f3e")
        })
        .await;
    assert!(!hint.contains("SECRET"), "{hint}");
    assert_eq!(b.value_of("input[name=apiKey]").await, "");
    let kept = b
        .script(&format!(
            "const k = {ALICE_KEY:?}; return [document.documentElement.outerHTML.includes(k), JSON.stringify(sessionStorage).includes(k), JSON.stringify(localStorage).includes(k), Array.from(document.querySelectorAll('input')).some(i => i.value.includes(k))]"
        ))
        .await;
    assert_eq!(
        kept,
        json!([false, false, false, false]),
        "the key is gone from the page"
    );
    b.wait_text("[data-key=openai] [data-field=lastUsedAt]", "unused", |t| {
        t == "not used yet"
    })
    .await;
    b.shot("byok").await;
    b.phone_shot("byok-360").await;

    // The wallet says AI is paid through the key; a run costs no credits.
    b.open_view("wallet").await;
    b.wait_text("[data-field=billingMode]", "BYOK", |t| t.contains("With your own key"))
        .await;
    let before = app.wallet(&alice).await;
    b.open_view("try").await;
    b.type_into("textarea[name=prompt]", "hello through my key").await;
    b.wait_text("[data-field=estimate]", "the BYOK estimate", |t| {
        t.starts_with("Paid with your own key")
    })
    .await;
    b.click("form button[type=submit]").await;
    let result = b.find("[data-field=charge] [data-charged]").await;
    assert_eq!(result.attr("data-mode").await.unwrap().as_deref(), Some("BYOK"));
    assert_eq!(result.attr("data-charged").await.unwrap().as_deref(), Some("0"));
    b.wait_text("[data-field=charge]", "the provider", |t| t.contains("openai/"))
        .await;
    assert_eq!(
        app.wallet(&alice).await["available"],
        before["available"],
        "nothing charged"
    );
    b.open_view("byok").await;
    b.wait_text("[data-key=openai] [data-field=lastUsedAt]", "its last use", |t| {
        t.starts_with("last used")
    })
    .await;

    // Remove it: back to credits.
    b.click("[data-key=openai] button.danger").await;
    b.wait_gone("[data-key=openai]").await;
    b.open_view("wallet").await;
    b.wait_text("[data-field=billingMode]", "credits again", |t| {
        t.contains("With credits")
    })
    .await;
    assert_eq!(
        b.script("return window.__sameDocument === 'yes'").await,
        json!(true),
        "no reload"
    );
    b.assert_no_errors("byok").await;
}

/// An admin sees the organization's totals, the trend chart and the
/// per-user table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_the_usage_chart_and_per_user_table() {
    let (env, _mock) = start_app("").await;
    let app = &env.app;
    let alice = app.member("alice", "acme");
    let bob = app.member("bob", "acme");
    run_ai(app, &alice, "first").await;
    run_ai(app, &alice, "second, a little longer than the first").await;
    run_ai(app, &bob, "third").await;
    let b = Browser::open(app.url("")).await;
    b.sign_in("ada", "acme", "admin", "Ada").await;
    b.open_view("usage").await;
    b.find("svg[data-chart=trend] rect.bar-rect").await;
    b.wait_text("[data-totals] [data-field=requests]", "three requests", |t| t == "3")
        .await;
    let rows = b
        .client
        .find_all(Locator::Css("[data-table=per-user] tbody tr"))
        .await
        .unwrap();
    let mut users = Vec::new();
    for r in &rows {
        users.push(r.attr("data-user").await.unwrap().unwrap_or_default());
    }
    assert_eq!(users, ["alice", "bob"], "most credits first");
    b.wait_text("[data-table=per-user] tr[data-user=alice]", "Alice's requests", |t| {
        t.contains("alice name")
    })
    .await;
    b.wait_text("[data-table=by-feature] tr[data-feature=CHAT]", "chat", |t| {
        t.contains("Chat")
    })
    .await;
    let bars = b
        .script("return Array.from(document.querySelectorAll('svg[data-chart=trend] rect.bar-rect')).map(r => r.getAttribute('data-credits'))")
        .await;
    let bars: Vec<String> = serde_json::from_value(bars).unwrap();
    assert_eq!(bars.len(), 30, "one bar per day of the last 30 days");
    assert!(bars.iter().any(|c| c != "0"), "today's bar shows the usage: {bars:?}");
    b.shot("usage").await;
    b.script("document.querySelector('svg[data-chart=trend]').scrollIntoView({block: 'center'}); return true")
        .await;
    b.shot("usage-chart").await;
    b.script("window.scrollTo(0, 0); return true").await;
    b.phone_shot("usage-360").await;
    b.select("select[name=granularity]", "MONTH").await;
    b.wait_until(
        "the chart by month",
        "const t = document.querySelector('svg[data-chart=trend] title'); return !!t && t.textContent.includes('per month')",
    )
    .await;
    b.assert_no_errors("usage").await;
    // A member who opens the address sees why there is nothing.
    let m = Browser::open(app.url("")).await;
    m.sign_in("carl", "acme", "member", "Carl").await;
    m.goto("/#/usage").await;
    m.wait_text("section[data-view=usage] .empty", "the refusal", |t| {
        t.contains("Only administrators")
    })
    .await;
    m.assert_no_errors("member usage").await;
}

/// INSUFFICIENT_CREDITS in Try AI is said in words and offers Buy Credits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_credits_offers_buy_credits() {
    // An organization whose plan grants no monthly credits.
    let (env, _mock) = start_app("[[plans]]\nid = \"free\"\nname = \"Free\"\nmonthly_credits_per_user = \"0\"\n").await;
    let app = &env.app;
    let b = Browser::open(app.url("")).await;
    b.sign_in("dora", "acme", "member", "Dora").await;
    b.wait_text("[data-field=available]", "nothing", |t| t == "0").await;
    b.open_view("try").await;
    b.type_into("textarea[name=prompt]", "one more").await;
    b.click("form button[type=submit]").await;
    b.wait_text(
        "[data-field=charge] [data-code=INSUFFICIENT_CREDITS]",
        "the words",
        |t| t.contains("not have enough credits"),
    )
    .await;
    b.click("[data-field=charge] a.button[href=\"#/buy\"]").await;
    b.find("button[data-pack=starter]").await;
    b.assert_no_errors("insufficient credits").await;
}

/// A token handed over in the URL fragment signs the console in and is
/// removed from the address at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_fragment_signs_in_and_leaves_the_address() {
    let (env, _mock) = start_app("").await;
    let app = &env.app;
    let token = app.member("erin", "acme");
    let b = Browser::open(app.url("")).await;
    b.goto(&format!("/#token={token}")).await;
    b.find("section[data-view=wallet]").await;
    b.wait_text("#who", "Erin", |t| t.contains("erin name")).await;
    let href = b.script("return location.href").await;
    assert!(!href.as_str().unwrap().contains("token"), "{href}");
    b.assert_no_errors("fragment sign-in").await;
}

const WEBHOOK_SECRET: &str = "whsec_console_0123456789abcdef";

/// With Stripe, Buy Credits sends the user to the checkout; back in the
/// console (the success URL), the purchase is shown, waiting for the
/// payment, then completed when Stripe's webhook arrives, without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buying_with_stripe_goes_to_the_checkout_and_shows_the_purchase_on_return() {
    use creditgate_domain::Clock;
    use hmac::{Hmac, Mac};

    let stripe = MockServer::start().await;
    let checkout_base = stripe.uri();
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(move |req: &wiremock::Request| {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let purchase = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("client_reference_id="))
                .unwrap_or_default()
                .to_owned();
            ResponseTemplate::new(200).set_body_json(json!({
                "id": format!("cs_{purchase}"),
                "object": "checkout.session",
                "url": format!("{checkout_base}/checkout/cs_{purchase}"),
                "payment_intent": null,
            }))
        })
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex("^/checkout/"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "<!doctype html><html><head><link rel=\"icon\" href=\"data:,\"><title>Checkout</title></head><body><h1>Pay with Stripe (test)</h1></body></html>",
            "text/html",
        ))
        .mount(&stripe)
        .await;
    let (env, _mock) = start_app(&format!(
        r#"
[payments]
provider = "stripe"
[payments.stripe]
api_base = "{}"
secret_key = "sk_test_creditgate"
webhook_secret = "{WEBHOOK_SECRET}"
success_url = "https://console.example.com/#/buy?purchase={{PURCHASE_ID}}"
cancel_url = "https://console.example.com/#/buy"
"#,
        stripe.uri()
    ))
    .await;
    let app = &env.app;
    let b = Browser::open(app.url("")).await;
    b.sign_in("fay", "acme", "member", "Fay").await;
    b.open_view("buy").await;
    b.click("button[data-pack=starter]").await;
    b.wait_text("h1", "the checkout", |t| t.contains("Pay with Stripe"))
        .await;
    let fay = app.member("fay", "acme");
    let purchases = app
        .gql(Some(&fay), "{ purchases { id status } }", json!({}))
        .await
        .data()["purchases"]
        .clone();
    assert_eq!(purchases[0]["status"], "PENDING");
    let id = purchases[0]["id"].as_str().unwrap().to_owned();

    // Stripe sends the user back: the tab still holds the session.
    b.goto(&format!("/#/buy?purchase={id}")).await;
    b.wait_text("[data-purchase-result=PENDING]", "waiting", |t| {
        t.contains("waiting for the payment")
    })
    .await;
    b.shot("buy-credits-stripe-pending").await;
    let event = json!({
        "id": "evt_console_1", "object": "event", "type": "checkout.session.completed", "livemode": false,
        "data": {"object": {
            "id": format!("cs_{id}"), "object": "checkout.session", "client_reference_id": id,
            "metadata": {"purchase_id": id}, "payment_status": "paid", "payment_intent": format!("pi_{id}"),
            "amount_total": 500, "currency": "usd",
        }}
    })
    .to_string();
    let t = app.clock.now().timestamp();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{event}").as_bytes());
    let signature = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    let delivered = app
        .http
        .post(app.url("/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("Stripe-Signature", signature)
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 200);
    b.wait_text("[data-purchase-result=COMPLETED]", "the completed purchase", |t| {
        t.contains("500 credits")
    })
    .await;
    b.wait_text("[data-table=purchases] tbody tr [data-status]", "completed", |t| {
        t == "Completed"
    })
    .await;
    b.open_view("wallet").await;
    b.wait_text("[data-field=permanentBalance]", "500 permanent credits", |t| t == "500")
        .await;
    b.assert_no_errors("stripe").await;
}
