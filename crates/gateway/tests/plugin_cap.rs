//! A plugin whose calls hang holds no more blocking threads than its
//! provider's `max_concurrent_plugin_calls`: calls past the cap fail at once
//! without reaching the plugin, calls past their time limit keep their slot
//! (and are counted stuck) until the plugin returns, and another provider is
//! not affected. In-process providers, no network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use creditgate_gateway::{Gateway, ProviderConfig, ProviderError, ProvidersConfig};
use creditgate_provider_sdk::Provider;

mod offline;
use offline::{Offline, key, request};

/// A gate the plugin's calls wait at until it opens.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicUsize,
}

impl Gate {
    fn pass(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..3_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_plugin_holds_at_most_its_cap_of_calls() {
    let gate = Arc::new(Gate::default());
    let hanging = ProviderConfig {
        plugin_call_timeout_ms: Some(100),
        max_concurrent_plugin_calls: Some(2),
        ..ProviderConfig::default()
    };
    let other = ProviderConfig {
        max_concurrent_plugin_calls: Some(1),
        ..ProviderConfig::default()
    };
    let config = ProvidersConfig {
        providers: BTreeMap::from([("hanging".to_owned(), hanging), ("other".to_owned(), other)]),
        ..ProvidersConfig::default()
    };
    let plugins: Vec<Arc<dyn Provider>> = vec![
        Offline::with_hook("hanging", {
            let gate = Arc::clone(&gate);
            move || gate.pass()
        }),
        Offline::with_hook("other", || {}),
    ];
    let gateway = Arc::new(Gateway::with_providers(&config, plugins).unwrap());
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move { gateway.chat("hanging", request(), key()).await })
        })
        .collect();
    until("two calls in the plugin", || gate.entered() == 2).await;

    // The cap is reached: the next call fails at once, without the plugin.
    let refused = gateway.chat("hanging", request(), key()).await.unwrap_err();
    assert!(
        matches!(refused, ProviderError::PluginBusy { max: 2, .. }),
        "{refused:?}"
    );
    assert_eq!(refused.kind(), creditgate_gateway::ErrorKind::ProviderError);
    assert_eq!(gate.entered(), 2);
    // Another provider's calls (its cap is 1) still reach its plugin, one
    // after the other.
    for _ in 0..3 {
        let err = gateway.chat("other", request(), key()).await.unwrap_err();
        assert!(err.to_string().contains("the plugin answered"), "{err}");
    }

    // The hanging calls fail at their time limit, and keep their slots.
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, ProviderError::PluginTimeout { .. }), "{err:?}");
    }
    assert_eq!(gateway.stuck_plugin_calls("hanging"), Some(2));
    assert_eq!(gateway.stuck_plugin_calls("other"), Some(0));
    let refused = gateway.chat("hanging", request(), key()).await.unwrap_err();
    assert!(
        matches!(refused, ProviderError::PluginBusy { max: 2, stuck: 2, .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("2 of them stuck"), "{refused}");
    assert_eq!(gate.entered(), 2);

    // Once the plugin returns, the slots are free again.
    gate.open();
    until("the stuck calls returned", || {
        gateway.stuck_plugin_calls("hanging") == Some(0)
    })
    .await;
    let err = gateway.chat("hanging", request(), key()).await.unwrap_err();
    assert!(err.to_string().contains("the plugin answered"), "{err}");
    assert_eq!(gate.entered(), 3);
}

#[test]
fn a_cap_of_zero_is_refused() {
    let config = ProvidersConfig {
        providers: BTreeMap::from([(
            "other".to_owned(),
            ProviderConfig {
                max_concurrent_plugin_calls: Some(0),
                ..ProviderConfig::default()
            },
        )]),
        ..ProvidersConfig::default()
    };
    let plugins: Vec<Arc<dyn Provider>> = vec![Offline::with_hook("other", || {})];
    let err = Gateway::with_providers(&config, plugins).unwrap_err();
    assert!(err.to_string().contains("max_concurrent_plugin_calls"), "{err}");
}
