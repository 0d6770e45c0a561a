//! Port-forward over plain WebSocket channels (kubelet's legacy protocol, used by the Python
//! client and kube-rs; client-go has no client for it, so tungstenite plays the client).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use corral_cri::v1::PortForwardRequest;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{loopback, start};

/// Answers every line with `tag:` + the line.
async fn line_echo_server(tag: &'static str) -> u16 {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (rd, mut wr) = conn.into_split();
                let mut lines = BufReader::new(rd).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if wr.write_all(format!("{tag}:{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_websocket_port_forward_uses_channel_pairs() {
    let server = start().await;
    let port_a = line_echo_server("A").await;
    let port_b = line_echo_server("B").await;
    let closed = TcpListener::bind(loopback()).await.unwrap().local_addr().unwrap().port();
    let req =
        PortForwardRequest { pod_sandbox_id: "pod1".into(), port: vec![port_a as i32, port_b as i32, closed as i32] };
    let url = server.port_forward_url(&req).unwrap().replace("http://", "ws://");
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "v4.channel.k8s.io".parse().unwrap());
    let tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "v4.channel.k8s.io");

    // First, every channel announces its port (little endian).
    let mut hello = Vec::new();
    while hello.len() < 6 {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Binary(data) = msg {
            hello.push(data.to_vec());
        }
    }
    for (i, port) in [port_a, port_b, closed].into_iter().enumerate() {
        let [lo, hi] = port.to_le_bytes();
        assert!(hello.contains(&vec![2 * i as u8, lo, hi]), "{hello:?}");
        assert!(hello.contains(&vec![2 * i as u8 + 1, lo, hi]), "{hello:?}");
    }

    ws.send(Message::Binary(Bytes::from_static(b"\x00hello\n"))).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"\x02world\n"))).await.unwrap();
    let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
    let done = |got: &HashMap<u8, Vec<u8>>| {
        got.get(&0).is_some_and(|v| v.ends_with(b"\n"))
            && got.get(&2).is_some_and(|v| v.ends_with(b"\n"))
            // The error message is one write, so one message.
            && got.contains_key(&5)
    };
    while !done(&got) {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        if let Message::Binary(data) = msg {
            got.entry(data[0]).or_default().extend_from_slice(&data[1..]);
        }
    }
    assert_eq!(got[&0], b"A:hello\n");
    assert_eq!(got[&2], b"B:world\n");
    let error = String::from_utf8_lossy(&got[&5]).into_owned();
    assert!(error.contains(&format!("error forwarding port {closed} to pod pod1")), "{error}");
    ws.close(None).await.unwrap();
}
