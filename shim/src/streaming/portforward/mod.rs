//! Port-forward: TCP connections into a pod, carried over SPDY ([`spdy`], what client-go
//! speaks, directly or tunnelled in a WebSocket) or over plain WebSocket channels
//! ([`websocket`], kubelet's older protocol, used by e.g. the Python client and kube-rs).

pub mod spdy;
pub mod websocket;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::backend::Backend;

/// Forwards one connection: dial `port` through the backend, copy both ways (half-closes
/// pass through), and on failure write kubelet's message on `error`.
pub async fn forward<D, E>(backend: Arc<dyn Backend>, sandbox_id: String, port: u16, mut data: D, mut error: E)
where
    D: AsyncRead + AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    match backend.port_forward(&sandbox_id, port).await {
        Ok(mut target) => match tokio::io::copy_bidirectional(&mut data, &mut target).await {
            Ok((up, down)) => tracing::debug!(port, up, down, "port-forward connection finished"),
            // Client-go resets the data stream once it has read our FIN; that ends us here.
            Err(e) => tracing::debug!(port, error = %e, "port-forward connection ended"),
        },
        Err(e) => {
            tracing::info!(port, sandbox_id, error = %e, "port-forward failed");
            let msg = format!("error forwarding port {port} to pod {sandbox_id}, uid : {e}");
            let _ = error.write_all(msg.as_bytes()).await;
        }
    }
    let _ = data.shutdown().await;
    let _ = error.shutdown().await;
}
