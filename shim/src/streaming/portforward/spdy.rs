//! Port-forward over SPDY (`portforward.k8s.io`), whether on an upgraded HTTP connection or
//! tunnelled in a WebSocket (client-go's dialers, so crictl, kubectl and kubelet).
//!
//! Each forwarded TCP connection is a pair of streams with the same `requestid` header: a
//! `data` stream carrying the bytes and an `error` stream on which we write a message if the
//! forward fails. Both carry the target `port`. Pairs arrive in any order, concurrently, for
//! several ports, on one connection; each complete pair is forwarded in its own task. A pair
//! that stays incomplete for the stream-creation timeout is dropped with an error message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::forward;
use crate::streaming::backend::Backend;
use crate::streaming::spdy::{Connection, IncomingStream, SpdyStream};

/// The only port-forward subprotocol there is.
pub const PROTOCOLS: &[&str] = &["portforward.k8s.io"];

/// How long we wait for the client to close after our GOAWAY.
const LINGER: Duration = Duration::from_secs(5);

struct PendingPair {
    port: u16,
    data: Option<SpdyStream>,
    error: Option<SpdyStream>,
    since: Instant,
}

/// Serves port-forward streams until the client goes away.
pub async fn serve(mut conn: Connection, sandbox_id: String, backend: Arc<dyn Backend>, creation_timeout: Duration) {
    let mut pending: HashMap<String, PendingPair> = HashMap::new();
    // Dropping the set (connection gone) aborts every forward and closes its target socket.
    let mut forwards = JoinSet::new();
    let mut sweep = tokio::time::interval(creation_timeout.min(Duration::from_secs(5)));
    loop {
        tokio::select! {
            incoming = conn.accept() => {
                let Some(incoming) = incoming else { break };
                let Some((request_id, port, is_data)) = classify(&incoming) else { continue };
                let stream = incoming.accept();
                let pair = pending.entry(request_id.clone()).or_insert_with(|| PendingPair {
                    port, data: None, error: None, since: Instant::now(),
                });
                let slot = if is_data { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    tracing::debug!(request_id, "duplicate port-forward stream, resetting it");
                    stream.reset();
                    continue;
                }
                *slot = Some(stream);
                if pair.data.is_some()
                    && pair.error.is_some()
                    && let Some(PendingPair { port, data: Some(data), error: Some(error), .. }) = pending.remove(&request_id)
                {
                    forwards.spawn(forward(backend.clone(), sandbox_id.clone(), port, data, error));
                }
            }
            _ = sweep.tick() => {
                let expired: Vec<String> = pending.iter()
                    .filter(|(_, p)| p.since.elapsed() >= creation_timeout)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in expired {
                    if let Some(PendingPair { error: Some(mut error), .. }) = pending.remove(&id) {
                        tracing::warn!(request_id = id, "timed out waiting for the port-forward stream pair");
                        let _ = error.write_all(format!("timed out waiting for streams of request {id}").as_bytes()).await;
                    }
                }
            }
            Some(_) = forwards.join_next() => {}
        }
    }
    drop(pending);
    forwards.shutdown().await;
    conn.close(LINGER).await;
}

/// Reads (request id, port, is-data) off a new stream; refuses streams without a valid
/// `port` or `streamtype` (the client's CreateStream then fails with a reset).
fn classify(incoming: &IncomingStream) -> Option<(String, u16, bool)> {
    let h = incoming.headers();
    let port = h.get("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
    let is_data = match h.get("streamtype") {
        Some("data") => Some(true),
        Some("error") => Some(false),
        _ => None,
    };
    let (Some(port), Some(is_data)) = (port, is_data) else {
        tracing::debug!(port = ?h.get("port"), stream_type = ?h.get("streamtype"), "refusing malformed port-forward stream");
        return None;
    };
    // Clients older than request ids sent pairs on consecutive odd ids (kubelet's fallback).
    let request_id = match h.get("requestid") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => (if is_data { incoming.id().saturating_sub(2) } else { incoming.id() }).to_string(),
    };
    Some((request_id, port, is_data))
}
