//! `inline_plugin_calls`: a trusted provider's plugin calls run on the
//! worker serving the request, with panics still caught and the time limit
//! still failing the request; other providers' calls stay on the blocking
//! pool. In-process providers, no network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use creditgate_gateway::{ErrorKind, Gateway, ProviderConfig, ProviderError, ProvidersConfig};
use creditgate_provider_sdk::Provider;

mod offline;
use offline::{Offline, key, request};

/// The threads a provider's calls ran on, in order.
type Threads = Arc<Mutex<Vec<ThreadId>>>;

/// What `build_chat_request` does after noting the thread it ran on.
#[derive(Clone, Copy)]
enum Behaviour {
    Refuse,
    Sleep(Duration),
    Panic,
}

/// A gateway serving `trusted` (inline calls) and `pooled` (the default),
/// both behaving as `behaviour`, with a plugin time limit of `limit_ms`;
/// and the threads each one's calls ran on.
fn gateway(behaviour: Behaviour, limit_ms: u64) -> (Gateway, Threads, Threads) {
    let trusted = ProviderConfig {
        inline_plugin_calls: true,
        plugin_call_timeout_ms: Some(limit_ms),
        // No blocking thread is held, so the cap does not apply.
        max_concurrent_plugin_calls: Some(1),
        ..ProviderConfig::default()
    };
    let pooled = ProviderConfig {
        plugin_call_timeout_ms: Some(limit_ms),
        ..ProviderConfig::default()
    };
    let config = ProvidersConfig {
        providers: BTreeMap::from([("trusted".to_owned(), trusted), ("pooled".to_owned(), pooled)]),
        ..ProvidersConfig::default()
    };
    let inline_threads = Arc::new(Mutex::new(Vec::new()));
    let pooled_threads = Arc::new(Mutex::new(Vec::new()));
    let noting = |id: &'static str, threads: &Threads| {
        let threads = Arc::clone(threads);
        Offline::with_hook(id, move || {
            threads.lock().unwrap().push(std::thread::current().id());
            match behaviour {
                Behaviour::Refuse => {}
                Behaviour::Sleep(d) => std::thread::sleep(d),
                Behaviour::Panic => panic!("the plugin fell over"),
            }
        })
    };
    let plugins: Vec<Arc<dyn Provider>> = vec![noting("trusted", &inline_threads), noting("pooled", &pooled_threads)];
    (
        Gateway::with_providers(&config, plugins).unwrap(),
        inline_threads,
        pooled_threads,
    )
}

#[tokio::test(flavor = "current_thread")]
async fn inline_calls_run_on_the_worker_serving_the_request_and_others_on_the_pool() {
    let (gateway, inline_threads, pooled_threads) = gateway(Behaviour::Refuse, 5_000);
    let worker = std::thread::current().id();
    for _ in 0..3 {
        for provider in ["trusted", "pooled"] {
            let err = gateway.chat(provider, request(), key()).await.unwrap_err();
            assert!(err.to_string().contains("the plugin answered"), "{provider}: {err}");
            assert_eq!(err.kind(), ErrorKind::ProviderError);
        }
    }
    assert_eq!(*inline_threads.lock().unwrap(), vec![worker; 3]);
    let pooled = pooled_threads.lock().unwrap();
    assert_eq!(pooled.len(), 3);
    assert!(pooled.iter().all(|t| *t != worker), "{pooled:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn an_inline_call_over_its_time_limit_fails_its_request_once_it_returns() {
    let (gateway, inline_threads, _) = gateway(Behaviour::Sleep(Duration::from_millis(60)), 20);
    let err = gateway.chat("trusted", request(), key()).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::PluginTimeout { operation: "build_chat_request", after, .. } if *after == Duration::from_millis(20)),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::ProviderError);
    // Nothing is left running: the call returned before the request failed.
    assert_eq!(gateway.stuck_plugin_calls("trusted"), Some(0));
    assert_eq!(inline_threads.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn an_inline_call_that_panics_fails_its_request_and_the_server_goes_on() {
    let (gateway, inline_threads, _) = gateway(Behaviour::Panic, 5_000);
    for _ in 0..2 {
        let err = gateway.chat("trusted", request(), key()).await.unwrap_err();
        assert!(matches!(err, ProviderError::PluginPanic { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::ProviderError);
    }
    assert_eq!(inline_threads.lock().unwrap().len(), 2);
}

#[test]
fn inline_plugin_calls_is_read_from_the_configuration_file() {
    let config: ProvidersConfig =
        toml::from_str("[providers.openai]\ninline_plugin_calls = true\n[providers.anthropic]\n").unwrap();
    assert!(config.providers["openai"].inline_plugin_calls);
    assert!(!config.providers["anthropic"].inline_plugin_calls);
}
