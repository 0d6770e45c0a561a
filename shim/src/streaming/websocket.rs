//! WebSocket plumbing shared by exec/attach and port-forward: the RFC 6455 handshake on a
//! hyper request, subprotocol negotiation, and a byte-stream view of a WebSocket for the
//! SPDY tunnel (`SPDY/3.1+portforward.k8s.io`: SPDY frames carried in binary messages).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_util::io::StreamReader;
use tokio_util::sync::{CancellationToken, PollSender};

use super::server::{Body, text_response};

pub type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// Whether the request asks for a WebSocket (`Upgrade: websocket`, `Connection: upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let has = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has(UPGRADE, "websocket") && has(CONNECTION, "upgrade")
}

/// The subprotocols the client offers, in its order of preference.
pub fn client_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Picks the client's most preferred protocol we support. A client that offers none gets
/// `Some("")`, the legacy unnamed channel protocol, as with kubelet.
pub fn negotiate<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    if offered.is_empty() {
        return Some("");
    }
    offered.iter().find_map(|o| supported.iter().find(|s| **s == o.as_str()).copied())
}

/// The 101 response accepting the WebSocket with `protocol` ("" for none), or the error
/// response for a malformed handshake.
pub fn accept_response(headers: &HeaderMap, protocol: &str) -> Result<Response<Body>, Box<Response<Body>>> {
    let version_ok = headers.get(SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) == Some("13");
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY).filter(|_| version_ok) else {
        return Err(Box::new(text_response(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: WebSocket handshake needs Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key",
        )));
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(key.as_bytes());
    h.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).map_err(|_| internal())?);
    if !protocol.is_empty() {
        h.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(protocol).map_err(|_| internal())?);
    }
    Ok(resp)
}

fn internal() -> Box<Response<Body>> {
    Box::new(text_response(StatusCode::INTERNAL_SERVER_ERROR, "building the WebSocket handshake response failed"))
}

/// Waits for hyper to hand over the upgraded connection and wraps it as a server WebSocket.
pub async fn upgrade(on_upgrade: OnUpgrade) -> Result<WebSocket, hyper::Error> {
    let io = TokioIo::new(on_upgrade.await?);
    Ok(WebSocketStream::from_raw_socket(io, Role::Server, None).await)
}

/// A normal-closure close frame.
pub fn close_message() -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

/// Starts the single writer of a channel-multiplexed WebSocket: messages queued on the
/// returned sender go out in order; cancelling the returned token sends what is queued, then
/// a normal close.
pub fn spawn_writer(
    mut sink: SplitSink<WebSocket, Message>,
) -> (mpsc::Sender<Message>, CancellationToken, JoinHandle<()>) {
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let finish = CancellationToken::new();
    let finishing = finish.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                msg = out_rx.recv() => match msg {
                    Some(msg) => if sink.send(msg).await.is_err() { return },
                    None => break,
                },
                _ = finishing.cancelled() => {
                    while let Ok(msg) = out_rx.try_recv() {
                        if sink.send(msg).await.is_err() {
                            return;
                        }
                    }
                    break;
                }
            }
        }
        let _ = sink.send(close_message()).await;
        let _ = sink.close().await;
    });
    (out_tx, finish, writer)
}

/// Largest payload per message we send.
const MAX_MESSAGE: usize = 32 * 1024;

/// Writes one channel of a multiplexed WebSocket: each write becomes `[channel] + data`.
pub struct ChannelWriter {
    channel: u8,
    out: PollSender<Message>,
}

impl ChannelWriter {
    pub fn new(channel: u8, out: &mpsc::Sender<Message>) -> Self {
        ChannelWriter { channel, out: PollSender::new(out.clone()) }
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed");
        ready!(this.out.poll_reserve(cx)).map_err(|_| closed())?;
        let n = buf.len().min(MAX_MESSAGE);
        let mut msg = BytesMut::with_capacity(n + 1);
        msg.extend_from_slice(&[this.channel]);
        msg.extend_from_slice(&buf[..n]);
        this.out.send_item(Message::Binary(msg.freeze())).map_err(|_| closed())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Servers do not half-close channels; the final WebSocket close ends them all.
        self.get_mut().out.close();
        Poll::Ready(Ok(()))
    }
}

/// The reading end of a channel: payloads routed into `rx`, EOF when its sender is dropped.
pub fn pipe_reader(rx: mpsc::Receiver<Bytes>) -> impl AsyncRead + Send + Unpin + 'static {
    StreamReader::new(ReceiverStream::new(rx).map(Ok::<Bytes, io::Error>))
}

/// How long a finished tunnel waits for the client's close handshake.
const TUNNEL_LINGER: Duration = Duration::from_secs(10);

/// Turns a WebSocket into a plain byte stream: binary messages in, one message per write
/// out. The pump task ends when the client closes, or when the returned stream is dropped
/// (then after a short wait for the close handshake).
pub fn byte_stream(ws: WebSocket) -> DuplexStream {
    let (local, remote) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (mut from_local, mut to_local) = tokio::io::split(remote);
        let (mut sink, mut messages) = ws.split();
        let inbound = async {
            while let Some(Ok(msg)) = messages.next().await {
                let keep_going = match msg {
                    Message::Binary(data) => to_local.write_all(&data).await.is_ok(),
                    Message::Close(_) => false,
                    // Pings are answered by tungstenite; text is not part of the protocol.
                    _ => true,
                };
                if !keep_going {
                    break;
                }
            }
            let _ = to_local.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_local.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink.send(close_message()).await;
            let _ = sink.close().await;
            tokio::time::sleep(TUNNEL_LINGER).await;
        };
        // The client closing ends everything; our side finishing waits briefly for its close.
        tokio::select! {
            _ = inbound => {}
            _ = outbound => {}
        }
    });
    local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_client_preference() {
        let offered = vec!["v5.channel.k8s.io".to_string(), "v4.channel.k8s.io".to_string()];
        assert_eq!(negotiate(&offered, &["v4.channel.k8s.io", "v5.channel.k8s.io"]), Some("v5.channel.k8s.io"));
        assert_eq!(negotiate(&offered, &["v4.channel.k8s.io"]), Some("v4.channel.k8s.io"));
        assert_eq!(negotiate(&offered, &["channel.k8s.io"]), None);
        assert_eq!(negotiate(&[], &["channel.k8s.io"]), Some(""));
    }

    #[test]
    fn handshake_headers() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        h.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        h.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v5.channel.k8s.io, v4.channel.k8s.io"));
        assert!(is_upgrade(&h));
        assert_eq!(client_protocols(&h), ["v5.channel.k8s.io", "v4.channel.k8s.io"]);
        let resp = accept_response(&h, "v5.channel.k8s.io").unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        // The RFC 6455 example key.
        assert_eq!(resp.headers()[SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(resp.headers()[SEC_WEBSOCKET_PROTOCOL], "v5.channel.k8s.io");
        h.remove(SEC_WEBSOCKET_KEY);
        assert_eq!(accept_response(&h, "").unwrap_err().status(), StatusCode::BAD_REQUEST);
    }
}
