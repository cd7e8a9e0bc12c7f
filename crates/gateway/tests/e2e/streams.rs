//! Streams that go wrong on the wire: cut off midway, dropped by the
//! client, silent past the idle timeout. A raw HTTP server plays the
//! provider.

use super::*;

/// A raw HTTP/1.1 server for one connection: reads the request, writes
/// `head` and `events`, then either closes abruptly (`hold == false`) or
/// holds the connection open and reports when the client closes it.
async fn raw_sse_server(events: String, hold: bool) -> (String, tokio::sync::oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if request.len() >= end + 4 + len {
                    break;
                }
            }
            if n == 0 {
                return;
            }
        }
        let chunk = format!("{:x}\r\n{events}\r\n", events.len());
        let response =
            format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{chunk}");
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.flush().await.unwrap();
        if hold {
            // Wait until the client drops the connection.
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = closed_tx.send(());
        } else {
            // Cut off: close without the terminating chunk.
            drop(socket);
            let _ = closed_tx.send(());
        }
    });
    (format!("http://{addr}/v1"), closed_rx)
}

fn first_openai_events(n: usize) -> String {
    fixture("openai/chat-stream.sse")
        .split("\n\n")
        .take(n)
        .map(|e| format!("{e}\n\n"))
        .collect()
}

#[tokio::test]
async fn a_stream_cut_off_midway_reports_an_error_and_keeps_what_was_seen() {
    let (base, _closed) = raw_sse_server(first_openai_events(4), false).await;
    let s = setup_with(|c| {
        c.providers.insert("cut".into(), provider("openai", base));
    })
    .await;
    let stream = s
        .gateway
        .chat_stream("cut", openai_request(true), user("sk-good"))
        .await
        .unwrap();
    let meter = stream.meter();
    let (text, finished, error) = collect(stream).await;
    assert_eq!(text, "The capital of");
    assert!(finished.is_none());
    let error = error.unwrap();
    assert!(matches!(error, ProviderError::StreamInterrupted { .. }), "{error}");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    let snap = meter.snapshot();
    assert_eq!(snap.text, "The capital of");
    assert_eq!(snap.usage(), None);
    assert!(!snap.finished);
    assert!(snap.error.is_some());
}

#[tokio::test]
async fn dropping_a_stream_drops_the_upstream_connection() {
    let (base, closed) = raw_sse_server(first_openai_events(3), true).await;
    let s = setup_with(|c| {
        c.providers.insert("held".into(), provider("openai", base));
    })
    .await;
    let mut stream = s
        .gateway
        .chat_stream("held", openai_request(true), user("sk-good"))
        .await
        .unwrap();
    let meter = stream.meter();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, StreamEvent::TextDelta("The".into()));
    drop(stream);
    // The server sees the connection closed (a generous guard, not a timing
    // assertion: without cancellation this would hang until it fails).
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the upstream connection was not closed")
        .unwrap();
    assert_eq!(meter.snapshot().text, "The capital");
}

#[tokio::test]
async fn a_silent_stream_hits_the_idle_timeout() {
    let (base, _closed) = raw_sse_server(first_openai_events(2), true).await;
    let s = setup_with(|c| {
        c.providers.insert(
            "silent".into(),
            ProviderConfig {
                stream_idle_timeout_ms: Some(300),
                ..provider("openai", base)
            },
        );
    })
    .await;
    let stream = s
        .gateway
        .chat_stream("silent", openai_request(true), user("sk-good"))
        .await
        .unwrap();
    let (text, finished, error) = collect(stream).await;
    assert_eq!(text, "The");
    assert!(finished.is_none());
    assert!(matches!(error, Some(ProviderError::Timeout { .. })), "{error:?}");
}
