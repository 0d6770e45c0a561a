//! Port-forward over plain WebSocket channels (kubelet's `v4.channel.k8s.io` port-forward,
//! or no subprotocol at all): one TCP connection per requested port, for the life of the
//! WebSocket. Port number i has data channel 2i and error channel 2i+1; the first message we
//! send on each is the port as a little-endian u16. The client writes `[2i] + bytes`.
//! client-go does not use this (it tunnels SPDY); the Python client and kube-rs do.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::forward;
use crate::streaming::backend::Backend;
use crate::streaming::websocket::{ChannelWriter, WebSocket, pipe_reader, spawn_writer};

/// Subprotocols of this mode (a client offering none gets it too).
pub const PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];

/// Channel ids are one byte, two per port.
pub const MAX_PORTS: usize = 128;

/// How long we wait for the client's close handshake at the end.
const LINGER: Duration = Duration::from_secs(5);

/// Forwards `ports` until every connection ended or the client closed the WebSocket.
pub async fn serve(ws: WebSocket, ports: Vec<u16>, sandbox_id: String, backend: Arc<dyn Backend>) {
    let (sink, mut messages) = ws.split();
    let (out, finish, mut writer) = spawn_writer(sink);
    let mut inputs = Vec::with_capacity(ports.len());
    let mut forwards = JoinSet::new();
    for (i, port) in ports.into_iter().enumerate().take(MAX_PORTS) {
        let data_channel = (2 * i) as u8;
        for channel in [data_channel, data_channel + 1] {
            let mut hello = vec![channel];
            hello.extend_from_slice(&port.to_le_bytes());
            let _ = out.send(Message::Binary(Bytes::from(hello))).await;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        inputs.push(Some(tx));
        let data = tokio::io::join(pipe_reader(rx), ChannelWriter::new(data_channel, &out));
        let error = ChannelWriter::new(data_channel + 1, &out);
        forwards.spawn(forward(backend.clone(), sandbox_id.clone(), port, data, error));
    }
    drop(out);

    let client = async {
        while let Some(Ok(msg)) = messages.next().await {
            let data = match msg {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some(&channel) = data.first() else { continue };
            let slot = (channel % 2 == 0).then(|| inputs.get_mut(channel as usize / 2)).flatten();
            if let Some(input) = slot
                && let Some(tx) = input
                && data.len() > 1
                && tx.send(data.slice(1..)).await.is_err()
            {
                *input = None;
            }
        }
    };
    tokio::select! {
        // The client closed: dropping the forwards closes their target connections.
        _ = client => {}
        _ = async { while forwards.join_next().await.is_some() {} } => {}
    }
    forwards.shutdown().await;
    finish.cancel();
    let _ = tokio::time::timeout(LINGER, &mut writer).await;
    writer.abort();
}
