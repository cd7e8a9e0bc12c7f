//! The cost of the plugin boundary: one request translation and one stream
//! event through the C ABI (JSON both ways, plugin-side allocation) against
//! calling the same plugin code directly.
//!
//! Needs the OpenAI plugin library built with the same profile:
//! `cargo build --release -p creditgate-plugin-openai && cargo bench -p creditgate-plugin-host --bench boundary`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use creditgate_plugin_openai::OpenAiProvider;
use creditgate_provider_sdk::{ChatRequest, Message, Provider, RequestContext, SseEvent};
use hdrhistogram::Histogram;

const WARMUP: usize = 2_000;
const ITERATIONS: usize = 50_000;

fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let file = format!(
        "{}creditgate_plugin_openai{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = profile_dir.join(file);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --release -p creditgate-plugin-openai` first",
        path.display()
    );
    path
}

fn measure(name: &str, mut f: impl FnMut()) -> (String, f64, u64, u64) {
    for _ in 0..WARMUP {
        f();
    }
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let start = Instant::now();
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        f();
        hist.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    let mean = start.elapsed().as_nanos() as f64 / ITERATIONS as f64;
    (
        name.to_owned(),
        mean,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
    )
}

fn main() {
    let path = plugin_path();
    let loaded = creditgate_plugin_host::load_file(&path, "openai", None).unwrap();
    let direct = OpenAiProvider;
    let ctx = RequestContext::new("https://api.openai.com/v1");
    let request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::system("You are a concise assistant. Answer in one sentence."),
            Message::user("What is the capital of France?"),
        ],
        max_output_tokens: 256,
        stream: true,
    };
    let event = SseEvent {
        event: None,
        data: r#"{"id":"chatcmpl-WUfdCmUlDScqXU7SzD9jYQr2qG8ri","object":"chat.completion.chunk","created":1758000001,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_177fc74006","choices":[{"index":0,"delta":{"content":" capital"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"yi59OHjOE"}"#.into(),
    };
    assert_eq!(
        direct.build_chat_request(&ctx, &request).unwrap(),
        loaded.build_chat_request(&ctx, &request).unwrap()
    );
    assert_eq!(
        direct.parse_stream_event(&event).unwrap(),
        loaded.parse_stream_event(&event).unwrap()
    );
    let rows = [
        measure("request translation, direct", || {
            black_box(direct.build_chat_request(black_box(&ctx), black_box(&request)).unwrap());
        }),
        measure("request translation, C ABI", || {
            black_box(loaded.build_chat_request(black_box(&ctx), black_box(&request)).unwrap());
        }),
        measure("stream event, direct", || {
            black_box(direct.parse_stream_event(black_box(&event)).unwrap());
        }),
        measure("stream event, C ABI", || {
            black_box(loaded.parse_stream_event(black_box(&event)).unwrap());
        }),
    ];
    println!("plugin boundary ({ITERATIONS} iterations each, after {WARMUP} warm-up)");
    println!("{:<32} {:>12} {:>12} {:>12}", "operation", "mean", "p50", "p99");
    for (name, mean, p50, p99) in rows {
        println!(
            "{name:<32} {:>9.2} µs {:>9.2} µs {:>9.2} µs",
            mean / 1000.0,
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        );
    }
}
