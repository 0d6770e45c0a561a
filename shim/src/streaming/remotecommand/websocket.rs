//! Exec/attach over WebSocket: every binary message is one channel byte plus payload.
//!
//! Channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. `v5.channel.k8s.io` adds
//! `[255, channel]`, the client's half-close of a channel (how stdin EOF reaches us); v4 and
//! the unnamed legacy protocol cannot signal stdin EOF. The server ends the session with a
//! normal WebSocket close after the status, which client-go reads as EOF on every channel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{Command, Options, StatusEncoding, Streams};
use crate::streaming::backend::{Backend, BoxedReader, BoxedWriter};
use crate::streaming::websocket::{ChannelWriter, WebSocket, pipe_reader, spawn_writer};

/// Remote command subprotocols over WebSocket, our order of preference.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` half-closes a channel.
const CLOSE: u8 = 255;

/// How long we wait for the client's close handshake at the end.
const LINGER: Duration = Duration::from_secs(10);

/// Serves one session on an accepted WebSocket.
pub async fn serve(
    ws: WebSocket,
    protocol: &str,
    opts: Options,
    command: Command,
    backend: Arc<dyn Backend>,
    stop: CancellationToken,
) {
    let v5 = protocol == "v5.channel.k8s.io";
    let encoding = if protocol.starts_with("v4.") || v5 { StatusEncoding::Json } else { StatusEncoding::Text };

    let (sink, mut messages) = ws.split();
    let (out_tx, finish, mut writer) = spawn_writer(sink);

    // Reader: routes stdin and resize payloads to their pipes until the client closes.
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<Bytes>(4);
    let peer_gone = CancellationToken::new();
    let reader_gone = peer_gone.clone();
    let mut reader = tokio::spawn(async move {
        let mut stdin_tx = opts.stdin.then_some(stdin_tx);
        let mut resize_tx = opts.tty.then_some(resize_tx);
        while let Some(msg) = messages.next().await {
            let data = match msg {
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket read failed");
                    break;
                }
            };
            let Some(&channel) = data.first() else { continue };
            if v5 && channel == CLOSE {
                match data.get(1) {
                    Some(&STDIN) => stdin_tx = None,
                    Some(&RESIZE) => resize_tx = None,
                    _ => {}
                }
                continue;
            }
            let target = match channel {
                STDIN => &mut stdin_tx,
                RESIZE => &mut resize_tx,
                _ => continue,
            };
            if let Some(tx) = target
                && data.len() > 1
                && tx.send(data.slice(1..)).await.is_err()
            {
                // The backend stopped reading this channel.
                *target = None;
            }
        }
        reader_gone.cancel();
    });

    // Tell the client the session is up: an empty message on the lowest writable channel.
    let hello = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = out_tx.send(Message::Binary(Bytes::from(vec![hello]))).await;

    let pipe = |rx: mpsc::Receiver<Bytes>| -> BoxedReader { Box::new(pipe_reader(rx)) };
    let channel = |id: u8| -> BoxedWriter { Box::new(ChannelWriter::new(id, &out_tx)) };
    let streams = Streams {
        stdin: opts.stdin.then(|| pipe(stdin_rx)),
        resize: opts.tty.then(|| pipe(resize_rx)),
        stdout: opts.stdout.then(|| channel(STDOUT)),
        stderr: opts.stderr.then(|| channel(STDERR)),
        error: channel(ERROR),
    };
    drop(out_tx);
    super::run(backend.as_ref(), &command, opts.tty, streams, encoding, peer_gone.clone(), stop).await;

    finish.cancel();
    let _ = tokio::time::timeout(LINGER, &mut writer).await;
    let _ = tokio::time::timeout(LINGER, &mut reader).await;
    writer.abort();
    reader.abort();
}
