//! Slow clients: connections that dribble, stall or stay silent are let go,
//! so that they cannot starve valid alerts.

use std::sync::Arc;
use std::time::Duration;

use rollback_core::TriggerSink;
use rollback_prometheus::AlertmanagerReceiver;

use crate::common::{TOKEN, firing, send};
use crate::support::{RecordingSink, webhook_payload};

/// How a raw connection ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The server closed it without answering.
    Closed,
    /// The server answered with this status line, e.g. `HTTP/1.1 408 Request Timeout`.
    Answered(String),
    /// The client sent everything and the server never closed it.
    Held,
}

/// Wait up to `wait` for the server to answer or close; `None` if it did neither.
async fn answer_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<Ending> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; 4096];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(0)) | Ok(Err(_)) => Some(Ending::Closed),
        Ok(Ok(n)) => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            Some(Ending::Answered(
                text.lines().next().unwrap_or("").to_owned(),
            ))
        }
    }
}

/// A request head sent one byte every 500 ms.
async fn dribble_head(addr: std::net::SocketAddr) -> Ending {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhook/alertmanager HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
    );
    for byte in head.bytes() {
        if stream.write_all(&[byte]).await.is_err() {
            return Ending::Closed;
        }
        if let Some(ending) = answer_within(&mut stream, Duration::from_millis(500)).await {
            return ending;
        }
    }
    Ending::Held
}

/// A complete request head, then 10 of the 1000 body bytes it announces.
async fn stall_body(addr: std::net::SocketAddr) -> Ending {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /webhook/alertmanager HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"version\""
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Ending::Closed;
    }
    answer_within(&mut stream, Duration::from_secs(60))
        .await
        .unwrap_or(Ending::Held)
}

/// A connection that never sends a byte.
async fn stay_silent(addr: std::net::SocketAddr) -> Ending {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    answer_within(&mut stream, Duration::from_secs(60))
        .await
        .unwrap_or(Ending::Held)
}

#[tokio::test]
async fn slow_clients_cannot_starve_valid_alerts() {
    const MAX_CONNECTIONS: usize = 4;
    let sink = RecordingSink::new();
    let r = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(&[r#"severity!="info""#], "k8s:{namespace}/{deployment}")
        .max_connections(MAX_CONNECTIONS)
        .header_read_timeout(Duration::from_secs(1))
        .body_read_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();

    // Over three times as many slow clients as connections, connected first.
    let mut dribblers = Vec::new();
    let mut stallers = Vec::new();
    for _ in 0..MAX_CONNECTIONS * 3 / 2 {
        dribblers.push(tokio::spawn(dribble_head(addr)));
        stallers.push(tokio::spawn(stall_body(addr)));
    }
    let silent: Vec<_> = (0..2).map(|_| tokio::spawn(stay_silent(addr))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A valid alert waits its turn and gets through: each slow client holds
    // a connection for about a second (the timeouts), four at a time.
    let payload = webhook_payload(&[firing("a1b2", "2026-11-27T12:00:00Z")]);
    let (s, b) = tokio::time::timeout(Duration::from_secs(30), send(&server, &payload))
        .await
        .expect("a valid alert answered while slow clients come and go");
    assert_eq!(s, 200, "{b}");
    assert_eq!(sink.calls().len(), 1);
    assert_eq!(sink.calls()[0].0.as_str(), "k8s:shop/checkout");

    // Every slow client was let go: a head that never completes (or never
    // starts) is cut off, a body that never arrives is answered 408.
    for d in dribblers.into_iter().chain(silent) {
        assert_eq!(d.await.unwrap(), Ending::Closed);
    }
    for s in stallers {
        assert_eq!(
            s.await.unwrap(),
            Ending::Answered("HTTP/1.1 408 Request Timeout".into())
        );
    }
    assert_eq!(r.stats().rejected, (MAX_CONNECTIONS * 3 / 2) as u64);
    assert_eq!(r.stats().requests, 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let sink = RecordingSink::new();
    let r = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route(&[r#"severity!="info""#], "k8s:{namespace}/{deployment}")
        .idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Two requests on one connection: it is kept alive between them.
    for fingerprint in ["a1", "b2"] {
        let body = webhook_payload(&[firing(fingerprint, "2026-11-27T12:00:00Z")]).to_string();
        let request = format!(
            "POST /webhook/alertmanager HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(
            answer_within(&mut stream, Duration::from_secs(10)).await,
            Some(Ending::Answered("HTTP/1.1 200 OK".into()))
        );
    }
    assert_eq!(sink.calls().len(), 2);
    // Then nothing: the server closes it.
    assert_eq!(
        answer_within(&mut stream, Duration::from_secs(20)).await,
        Some(Ending::Closed)
    );
}

#[tokio::test]
async fn shutdown_waits_for_a_stalled_request_only_as_long_as_its_timeout() {
    let sink = RecordingSink::new();
    let r = AlertmanagerReceiver::builder(sink.clone() as Arc<dyn TriggerSink>)
        .bearer_token(TOKEN)
        .route::<&str>(&[], "t")
        .body_read_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = r.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    // A request in progress: shutdown waits for it, and its body timeout ends it.
    let staller = tokio::spawn(stall_body(addr));
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("shutdown returns once the stalled body timed out");
    assert_eq!(
        staller.await.unwrap(),
        Ending::Answered("HTTP/1.1 408 Request Timeout".into())
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
