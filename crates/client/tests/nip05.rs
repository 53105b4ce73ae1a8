//! NIP-05 lookups against a real HTTP server on loopback (a few lines of
//! tokio: it answers each connection with one canned response and records
//! the request line).

// Test code: a failed unwrap is a failed test (clippy.toml allows them in
// #[test] functions; this covers the helpers beside them too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rampart_client::nip05::{self, Nip05Address, Nip05Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const PK: &str = "fa984bd7dbb282f07e16e7ae87b26a2a7b9b90b7246a44771f0cf5ae58018f52";
const WAIT: Duration = Duration::from_secs(10);

/// Serves `response` (status line onwards) to every connection; sends each
/// request's first line on the returned channel.
async fn serve(response: String) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..read]).to_string();
                let _ = tx.send(head.lines().next().unwrap_or_default().to_owned());
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr.to_string(), rx)
}

fn ok_json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn reads_names_and_nip46_relays() {
    let body = format!(
        r#"{{"names":{{"alice":"{PK}","_":"{PK}"}},"nip46":{{"relays":["wss://relay.example.com","ws://127.0.0.1:7447"],"nostrconnect_url":"https://x.example/<nostrconnect>"}}}}"#
    );
    let (addr, mut requests) = serve(ok_json(&body)).await;
    let address: Nip05Address = format!("Alice@{addr}").parse().unwrap();
    let uri = nip05::resolve(&address, WAIT).await.unwrap();
    assert_eq!(uri.signer.to_hex(), PK);
    assert_eq!(uri.relays.len(), 2);
    assert!(uri.secret.is_none());
    assert_eq!(
        requests.recv().await.unwrap(),
        "GET /.well-known/nostr.json?name=alice HTTP/1.1"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (addr, _requests) =
        serve("HTTP/1.1 301 Moved Permanently\r\nlocation: https://elsewhere.example/.well-known/nostr.json\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into())
            .await;
    let address: Nip05Address = format!("bob@{addr}").parse().unwrap();
    let err = nip05::resolve(&address, WAIT).await.unwrap_err();
    assert!(
        matches!(err, Nip05Error::Status { status: 301, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_names_and_bad_documents_are_reported() {
    let (addr, _r) = serve(ok_json(&format!(r#"{{"names":{{"carol":"{PK}"}}}}"#))).await;
    let address: Nip05Address = format!("bob@{addr}").parse().unwrap();
    assert!(matches!(
        nip05::resolve(&address, WAIT).await,
        Err(Nip05Error::UnknownName { .. })
    ));

    let (addr, _r) = serve(ok_json("<html>not json</html>")).await;
    let address: Nip05Address = format!("bob@{addr}").parse().unwrap();
    assert!(matches!(
        nip05::resolve(&address, WAIT).await,
        Err(Nip05Error::Document { .. })
    ));

    let (addr, _r) =
        serve("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into())
            .await;
    let address: Nip05Address = format!("bob@{addr}").parse().unwrap();
    assert!(matches!(
        nip05::resolve(&address, WAIT).await,
        Err(Nip05Error::Status { status: 404, .. })
    ));
}

#[tokio::test]
async fn oversized_documents_are_refused() {
    let big = format!(
        r#"{{"names":{{"bob":"{PK}"}},"pad":"{}"}}"#,
        "x".repeat(nip05::MAX_DOCUMENT_LEN)
    );
    let (addr, _r) = serve(ok_json(&big)).await;
    let address: Nip05Address = format!("bob@{addr}").parse().unwrap();
    let err = nip05::resolve(&address, WAIT).await.unwrap_err();
    assert!(matches!(err, Nip05Error::Document { .. }), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let address: Nip05Address = format!("bob@{addr}").parse().unwrap();
    let started = std::time::Instant::now();
    let err = nip05::resolve(&address, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, Nip05Error::Http { .. }), "{err}");
    assert!(started.elapsed() < WAIT);
}

#[tokio::test]
async fn nothing_listening_is_an_http_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let address: Nip05Address = format!("bob@{addr}").parse().unwrap();
    assert!(matches!(
        nip05::resolve(&address, WAIT).await,
        Err(Nip05Error::Http { .. })
    ));
}
