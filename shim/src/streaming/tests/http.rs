//! The HTTP surface seen with a raw socket: routing, single-use tokens, handshake errors and
//! the stream-creation timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use corral_cri::v1::{AttachRequest, PortForwardRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::host_backend::HostBackend;
use super::{exec_req, loopback, start};
use crate::streaming::spdy::frame::{Frame, FrameDecoder};
use crate::streaming::{StreamingOptions, StreamingServer};

/// Sends one request and returns the whole response (the server closes or upgrades).
async fn request(server: &StreamingServer, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut conn = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut resp)).await.unwrap().unwrap();
    String::from_utf8_lossy(&resp).into_owned()
}

fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

const SPDY_UPGRADE: [(&str, &str); 2] = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];

#[tokio::test]
async fn routing_and_single_use_tokens() {
    let server = start().await;
    let resp = request(&server, "GET", "/exec/0123456789abcdef", &[]).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(resp.contains("token not found"), "{resp}");
    let resp = request(&server, "GET", "/nope", &[]).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

    let path = path_of(&server.exec_url(&exec_req(&["true"])).unwrap());
    let resp = request(&server, "PUT", &path, &[]).await;
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    // A plain GET uses the token up and fails the upgrade...
    let resp = request(&server, "GET", &path, &[]).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("missing upgrade headers"), "{resp}");
    // ...so the URL is dead afterwards.
    let resp = request(&server, "POST", &path, &SPDY_UPGRADE).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

    // A token is bound to its route.
    let attach =
        server.attach_url(&AttachRequest { container_id: "c".into(), stdout: true, ..Default::default() }).unwrap();
    let resp = request(&server, "POST", &path_of(&attach).replace("/attach/", "/exec/"), &SPDY_UPGRADE).await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

#[tokio::test]
async fn spdy_protocol_negotiation_errors() {
    let server = start().await;
    let path = path_of(&server.exec_url(&exec_req(&["true"])).unwrap());
    let resp = request(&server, "POST", &path, &SPDY_UPGRADE).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("X-Stream-Protocol-Version is missing"), "{resp}");

    let path = path_of(&server.exec_url(&exec_req(&["true"])).unwrap());
    let mut headers = SPDY_UPGRADE.to_vec();
    headers.push(("X-Stream-Protocol-Version", "v9.channel.k8s.io"));
    let resp = request(&server, "POST", &path, &headers).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"), "{resp}");

    let pf = server.port_forward_url(&PortForwardRequest { pod_sandbox_id: "p".into(), port: vec![80] }).unwrap();
    let ws = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Protocol", "v4.channel.k8s.io"),
    ];
    // Remote command protocols are not port-forward protocols.
    let mut ws5 = ws.to_vec();
    ws5[4] = ("Sec-WebSocket-Protocol", "v5.channel.k8s.io");
    let resp = request(&server, "GET", &path_of(&pf), &ws5).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("SPDY/3.1+portforward.k8s.io"), "{resp}");
    // Channel port-forward needs ports.
    let pf = server.port_forward_url(&PortForwardRequest { pod_sandbox_id: "p".into(), port: vec![] }).unwrap();
    let resp = request(&server, "GET", &path_of(&pf), &ws).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("needs 1 to 128 ports"), "{resp}");

    let path = path_of(&server.exec_url(&exec_req(&["true"])).unwrap());
    let mut ws9 = ws.to_vec();
    ws9[4] = ("Sec-WebSocket-Protocol", "v9.channel.k8s.io");
    let resp = request(&server, "GET", &path, &ws9).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("not supported"), "{resp}");
}

#[tokio::test]
async fn client_that_opens_no_streams_is_dropped_after_the_creation_timeout() {
    let mut opts = StreamingOptions::new(loopback());
    opts.stream_creation_timeout = Duration::from_secs(1);
    let server = StreamingServer::start_with(opts, Arc::new(HostBackend)).await.unwrap();
    let path = path_of(&server.exec_url(&exec_req(&["true"])).unwrap());
    let mut conn = TcpStream::connect(server.local_addr()).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = BytesMut::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(conn.read_buf(&mut buf).await.unwrap() > 0, "closed before the 101");
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&buf.split_to(end)).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-stream-protocol-version: v4.channel.k8s.io"), "{head}");
    // Then: GOAWAY and EOF, about a second later.
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    loop {
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read_buf(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(frames.iter().any(|f| matches!(f, Frame::GoAway { .. })), "{frames:?}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5), "{elapsed:?}");
}
