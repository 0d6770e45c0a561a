//! The CRI streaming server: what the URLs returned by `Exec`, `Attach` and `PortForward`
//! point at. The Rust counterpart of kubelet's `pkg/kubelet/cri/streaming`, which containerd
//! and CRI-O embed.
//!
//! ```text
//! CRI Exec RPC ─▶ StreamingServer::exec_url ─▶ token cache ─▶ "http://127.0.0.1:P/exec/<token>"
//! client (crictl, kubelet) ─▶ GET/POST that URL with an upgrade:
//!    SPDY/3.1   (X-Stream-Protocol-Version: v4.channel.k8s.io … / portforward.k8s.io)
//!    WebSocket  (v5.channel.k8s.io, v4.channel.k8s.io / SPDY/3.1+portforward.k8s.io)
//!        └▶ remotecommand (exec, attach) or portforward ─▶ Backend (the container runtime)
//! ```
//!
//! Layout: [`server`] (listener, routing), [`upgrade`] (handshakes, session tasks), [`tokens`], [`request`] (validation),
//! [`spdy`] (the SPDY/3.1 implementation), [`websocket`], [`remotecommand`] and
//! [`portforward`] (each with a SPDY and a WebSocket flavour),
//! [`status`] (exit status encoding), [`resize`], and [`backend`], the trait the daemon
//! implements on top of corral's runtime.

// The daemon's CRI handlers call into this module once the runtime is wired (issue 7).

mod backend;
mod error;
mod portforward;
mod remotecommand;
mod request;
mod resize;
mod server;
pub(crate) mod spdy;
mod status;
pub mod stdio;
mod tokens;
mod upgrade;
mod websocket;

// The seam the daemon implements and calls; not every name is used inside this module.
#[allow(unused_imports)]
pub use backend::{AsyncReadWrite, Backend, BackendError, BoxedReader, BoxedWriter, StreamIo, TermSize};
#[allow(unused_imports)]
pub use error::StreamingError;
pub use server::{StreamingOptions, StreamingServer};

#[cfg(test)]
mod tests;
