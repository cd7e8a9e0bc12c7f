//! The console's files and its development sign-in, over HTTP: no
//! browser.

use creditgate_e2e::{Backend, TestApp};
use serde_json::{Value, json};

/// The console's files: content types, caching, a strict CSP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_policy() {
    let app = TestApp::new(Backend::Sqlite).await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let body = page.text().await.unwrap();
    assert!(body.contains("<meta name=\"creditgate-sign-in\" content=\"development\">"));
    assert!(!body.contains("<script>") && !body.contains("style="), "nothing inline");
    let etag = h["etag"].clone();
    let again = app
        .http
        .get(app.url("/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    for (file, kind) in [
        ("/console/main.js", "text/javascript; charset=utf-8"),
        ("/console/views/wallet.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let r = app.http.get(app.url(file)).send().await.unwrap();
        assert_eq!(
            (r.status().as_u16(), r.headers()["content-type"].to_str().unwrap()),
            (200, kind),
            "{file}"
        );
    }
    for missing in ["/console/nope.js", "/console/../Cargo.toml", "/console/index.html"] {
        assert_eq!(
            app.http.get(app.url(missing)).send().await.unwrap().status(),
            404,
            "{missing}"
        );
    }
}

/// Development sign-in mints a working token; bad bodies are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_sign_in_mints_a_token() {
    let app = TestApp::new(Backend::Sqlite).await;
    let mint = |body: Value| app.http.post(app.url("/dev/token")).json(&body).send();
    let r = mint(json!({"sub": "ada", "org": "acme", "role": "admin", "name": "Ada", "team": "core"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let me = app
        .gql(
            Some(&token),
            "{ me { id role name team organization { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        me.data()["me"],
        json!({"id": "ada", "role": "ADMIN", "name": "Ada", "team": "core", "organization": {"id": "acme"}})
    );
    for bad in [
        json!({"sub": "ada", "org": "acme", "role": "owner"}),
        json!({"sub": " ", "org": "acme", "role": "member"}),
        json!({"sub": "ada", "role": "member"}),
    ] {
        let r = mint(bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "BAD_USER_INPUT");
    }
    let plain = app
        .http
        .post(app.url("/dev/token"))
        .header("content-type", "text/plain")
        .body(r#"{"sub":"ada","org":"acme","role":"admin"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415, "a cross-site form cannot mint a token");
}

/// In production there is no development sign-in: the host application
/// hands the console its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_has_no_development_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("byok-identity.txt");
    creditgate_metering::KeyVault::load_or_create(&identity).unwrap();
    // The configuration starts at its root (TestApp's would not).
    let config = creditgate_server::Config::from_toml(&format!(
        r#"
environment = "production"
data_dir = {:?}
jwt_secret = {:?}
[sweep]
interval_secs = 0
[ai]
identity_file = {:?}
[payments]
provider = "stripe"
[payments.stripe]
secret_key = "sk_test_creditgate"
webhook_secret = "whsec_console_test_secret"
success_url = "https://app.example.com/credits?purchase={{PURCHASE_ID}}"
cancel_url = "https://app.example.com/credits"
[cors]
allowed_origins = ["https://app.example.com"]
"#,
        dir.path().display().to_string(),
        creditgate_e2e::TEST_SECRET,
        identity.display().to_string()
    ))
    .unwrap();
    let server = creditgate_server::App::build(config, std::sync::Arc::new(creditgate_domain::SystemClock))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    let serving = tokio::spawn(async move { server.serve(listener, async move { signal.cancelled().await }).await });
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    let r = http
        .post(url("/dev/token"))
        .json(&json!({"sub": "ada", "org": "acme", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let page = http.get(url("/")).send().await.unwrap();
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .ends_with("frame-ancestors 'self' https://app.example.com")
    );
    let body = page.text().await.unwrap();
    assert!(body.contains("<meta name=\"creditgate-sign-in\" content=\"host\">"));
    assert!(body.contains("<meta name=\"creditgate-host-origins\" content=\"https://app.example.com\">"));
    stop.cancel();
    serving.await.unwrap().unwrap();
}
