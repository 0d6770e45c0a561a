//! Exec/attach over SPDY: the client opens one stream per channel, named by its `streamtype`
//! header (error, stdin, stdout, stderr, resize), after the `X-Stream-Protocol-Version`
//! handshake chose one of [`PROTOCOLS`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Command, Options, StatusEncoding, Streams};
use crate::streaming::backend::{Backend, BoxedReader, BoxedWriter};
use crate::streaming::spdy::{Connection, SendHalf, SpdyStream};

/// Remote command subprotocols, in our order of preference (kubelet's list). v5 is
/// WebSocket-only, as with kubelet; client-go falls back to v4 over SPDY.
pub const PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/// How long we wait for the client to close after our GOAWAY.
const LINGER: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Collected {
    error: Option<SpdyStream>,
    stdin: Option<SpdyStream>,
    stdout: Option<SpdyStream>,
    stderr: Option<SpdyStream>,
    resize: Option<SpdyStream>,
    /// Streams of unknown or unrequested type: accepted (as kubelet does) and ignored. Only
    /// the write side is kept (no early FIN); what the client sends on them is discarded, so
    /// it cannot fill a queue nobody reads and stall the connection.
    other: Vec<SendHalf>,
}

/// Serves one session on an upgraded connection.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    mut conn: Connection,
    protocol: &str,
    opts: Options,
    command: Command,
    backend: Arc<dyn Backend>,
    creation_timeout: Duration,
    stop: CancellationToken,
) {
    // v1 and v2 have no resize stream.
    let resizes = matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let encoding = if protocol == "v4.channel.k8s.io" { StatusEncoding::Json } else { StatusEncoding::Text };
    tracing::trace!(protocol, "SPDY remote command session upgraded");
    let Some(collected) = collect_streams(&mut conn, opts, resizes, creation_timeout).await else {
        conn.close(LINGER).await;
        return;
    };
    let Collected { error: Some(error), stdin, stdout, stderr, resize, other } = collected else {
        conn.close(LINGER).await;
        return;
    };

    // The write sides of stdin/resize stay open until the end: a FIN from us on stdin makes
    // client-go close its stdin too.
    let mut held: Vec<SendHalf> = Vec::new();
    let mut read_side = |s: SpdyStream| -> BoxedReader {
        let (recv, send) = s.into_split();
        held.push(send);
        Box::new(recv)
    };
    let write_side = |s: SpdyStream| -> BoxedWriter { Box::new(s.into_split().1) };
    let streams = Streams {
        stdin: stdin.map(&mut read_side),
        resize: resize.map(&mut read_side),
        stdout: stdout.map(write_side),
        stderr: stderr.map(write_side),
        error: write_side(error),
    };
    tracing::trace!("client streams ready");
    super::run(backend.as_ref(), &command, opts.tty, streams, encoding, conn.closed(), stop).await;
    tracing::trace!("remote command done, closing");
    drop(held);
    drop(other);
    conn.close(LINGER).await;
}

/// Accepts streams until the expected ones are there; `None` on timeout or disconnect.
async fn collect_streams(conn: &mut Connection, opts: Options, resizes: bool, timeout: Duration) -> Option<Collected> {
    let resize_expected = opts.tty && resizes;
    let expected = 1 + [opts.stdin, opts.stdout, opts.stderr, resize_expected].iter().filter(|b| **b).count();
    let mut c = Collected::default();
    let mut received = 0;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    while received < expected {
        let incoming = tokio::select! {
            incoming = conn.accept() => match incoming {
                Some(incoming) => incoming,
                None => {
                    tracing::debug!("streaming client went away before creating its streams");
                    return None;
                }
            },
            _ = &mut deadline => {
                tracing::warn!(?timeout, received, expected, "timed out waiting for client to create streams");
                return None;
            }
        };
        let kind = incoming.headers().get("streamtype").unwrap_or_default().to_string();
        let stream = incoming.accept();
        let slot = match kind.as_str() {
            "error" => &mut c.error,
            "stdin" if opts.stdin => &mut c.stdin,
            "stdout" if opts.stdout => &mut c.stdout,
            "stderr" if opts.stderr => &mut c.stderr,
            "resize" if resize_expected => &mut c.resize,
            _ => {
                tracing::debug!(stream_type = kind, "ignoring unexpected stream");
                c.other.push(stream.into_split().1);
                continue;
            }
        };
        if slot.replace(stream).is_none() {
            received += 1;
        } else {
            tracing::debug!(stream_type = kind, "client opened a stream type twice, using the last one");
        }
    }
    Some(c)
}
