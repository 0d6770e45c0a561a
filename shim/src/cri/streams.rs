//! Exec, Attach and PortForward: the RPCs hand out a URL of the streaming server
//! (`shim/src/streaming`); the session then runs through [`CorralStreams`], which connects
//! the client's streams to corral's containers.
//!
//! - exec: `corral exec` (the runtime's exec helper) on pipes, or on a pty the daemon holds;
//! - attach: the container monitor's `attach.sock` (frames of `corral_runtime::attach`);
//! - port-forward: a TCP connection made from inside the pod's network namespace, on a
//!   throw-away thread (namespaces are per thread), then handed to tokio.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Weak;

use async_trait::async_trait;
use corral_cri::v1;
use corral_runtime::attach::{Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Daemon;
use crate::error::{CriError, CriResult};
use crate::store::records::{ContainerState, SandboxState};
use crate::streaming::{AsyncReadWrite, Backend, BackendError, StreamIo, StreamingServer, stdio};

impl Daemon {
    pub(super) fn exec(&self, req: v1::ExecRequest) -> CriResult<v1::ExecResponse> {
        let id = self.running_container(&req.container_id)?;
        let url = self.streaming()?.exec_url(&v1::ExecRequest { container_id: id, ..req })?;
        Ok(v1::ExecResponse { url })
    }

    pub(super) fn attach(&self, req: v1::AttachRequest) -> CriResult<v1::AttachResponse> {
        let id = self.running_container(&req.container_id)?;
        let url = self.streaming()?.attach_url(&v1::AttachRequest { container_id: id, ..req })?;
        Ok(v1::AttachResponse { url })
    }

    pub(super) fn port_forward(&self, req: v1::PortForwardRequest) -> CriResult<v1::PortForwardResponse> {
        let id = self.resolve_sandbox(&req.pod_sandbox_id)?;
        let ready = self.sandboxes.get(&id).is_some_and(|s| s.state == SandboxState::Ready);
        if !ready {
            return Err(CriError::FailedPrecondition(format!("pod sandbox {id} is not ready")));
        }
        if let Some(bad) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(CriError::InvalidArgument(format!("port {bad} is outside 1-65535")));
        }
        let url = self.streaming()?.port_forward_url(&v1::PortForwardRequest { pod_sandbox_id: id, ..req })?;
        Ok(v1::PortForwardResponse { url })
    }

    fn streaming(&self) -> CriResult<&StreamingServer> {
        self.streaming.get().ok_or_else(|| CriError::Unavailable("the streaming server is not running".into()))
    }

    /// The full id of a running container (exec and attach need a live process).
    fn running_container(&self, prefix: &str) -> CriResult<String> {
        let id = self.resolve_container(prefix)?;
        match self.containers.get(&id).map(|c| c.state) {
            Some(ContainerState::Running) => Ok(id),
            Some(state) => Err(CriError::FailedPrecondition(format!("container {id} is not running ({state:?})"))),
            None => Err(CriError::NotFound(format!("container {id:?} not found"))),
        }
    }
}

/// The streaming server's view of corral.
pub struct CorralStreams {
    pub daemon: Weak<Daemon>,
}

impl CorralStreams {
    fn daemon(&self) -> Result<std::sync::Arc<Daemon>, BackendError> {
        self.daemon.upgrade().ok_or_else(|| BackendError::Failed("corral is shutting down".into()))
    }
}

#[async_trait]
impl Backend for CorralStreams {
    async fn exec(&self, container_id: &str, cmd: Vec<String>, tty: bool, io: StreamIo) -> Result<i32, BackendError> {
        let daemon = self.daemon()?;
        let opts = corral_runtime::ExecOptions { args: cmd, tty, env: Vec::new() };
        let command = daemon.runtime.exec_command(container_id, &opts).map_err(|e| runtime_error(container_id, e))?;
        let command = tokio::process::Command::from(command);
        if tty { stdio::run_in_pty(command, io).await } else { stdio::run_piped(command, io).await }
    }

    async fn attach(&self, container_id: &str, _tty: bool, io: StreamIo) -> Result<(), BackendError> {
        let daemon = self.daemon()?;
        let socket = daemon.runtime.attach(container_id).map_err(|e| runtime_error(container_id, e))?;
        socket.set_nonblocking(true).map_err(|e| BackendError::Failed(format!("attach socket: {e}")))?;
        let socket = tokio::net::UnixStream::from_std(socket)
            .map_err(|e| BackendError::Failed(format!("attach socket: {e}")))?;
        relay_attach(socket, io).await
    }

    async fn port_forward(&self, pod_sandbox_id: &str, port: u16) -> Result<Box<dyn AsyncReadWrite>, BackendError> {
        let daemon = self.daemon()?;
        let sandbox =
            daemon.sandboxes.get(pod_sandbox_id).ok_or_else(|| BackendError::SandboxNotFound(pod_sandbox_id.into()))?;
        let stream = match sandbox.netns.clone() {
            None => tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| BackendError::Failed(format!("connecting to 127.0.0.1:{port}: {e}")))?,
            Some(netns) => connect_in_netns(netns, port).await?,
        };
        Ok(Box::new(stream))
    }
}

/// Relays one attach session: container output to the client until the container's
/// monitor closes the socket (the container exited); client stdin, EOF and resizes to it.
/// Dropping the future only detaches.
async fn relay_attach(socket: tokio::net::UnixStream, io: StreamIo) -> Result<(), BackendError> {
    let (mut from_monitor, mut to_monitor) = socket.into_split();
    let StreamIo { stdin, mut stdout, mut stderr, resize } = io;
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel::<Frame>(16);
    let mut feeders = Vec::new();
    if let Some(mut stdin) = stdin {
        let tx = frames_tx.clone();
        feeders.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Frame::CloseStdin).await;
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Frame::Stdin(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    if let Some(mut sizes) = resize {
        let tx = frames_tx.clone();
        feeders.push(tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                if tx.send(Frame::Resize { rows: size.height, cols: size.width }).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(frames_tx);
    let _abort = stdio::AbortOnDrop::all(feeders);
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            if to_monitor.write_all(&frame.encode()).await.is_err() {
                return;
            }
        }
    });
    let _abort_writer = stdio::AbortOnDrop::all(vec![writer]);

    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from_monitor.read(&mut buf).await.map_err(|e| BackendError::Failed(format!("attach: {e}")))?;
        if n == 0 {
            break;
        }
        let frames = decoder.push(&buf[..n]).map_err(|e| BackendError::Failed(format!("attach: {e}")))?;
        for frame in frames {
            let target = match frame {
                Frame::Stdout(data) => stdout.as_mut().map(|w| (w, data)),
                Frame::Stderr(data) => stderr.as_mut().or(stdout.as_mut()).map(|w| (w, data)),
                _ => None,
            };
            if let Some((w, data)) = target
                && w.write_all(&data).await.is_err()
            {
                return Ok(()); // the client went away
            }
        }
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
    Ok(())
}

/// Connects to `localhost:port` inside a pod's network namespace, as kubelet's port-forward
/// does: on a fresh thread that joins the namespace and then ends, so no daemon thread
/// ever changes namespace.
async fn connect_in_netns(netns: PathBuf, port: u16) -> Result<tokio::net::TcpStream, BackendError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("corral-portfwd".into()).spawn(move || {
        let result = (|| -> Result<std::net::TcpStream, String> {
            let ns = std::fs::File::open(&netns).map_err(|e| format!("opening {}: {e}", netns.display()))?;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("joining {}: {e}", netns.display()))?;
            let timeout = std::time::Duration::from_secs(10);
            let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v4, timeout)
                .or_else(|_| std::net::TcpStream::connect_timeout(&v6, timeout))
                .map_err(|e| format!("connecting to localhost:{port} in the pod: {e}"))
        })();
        let _ = tx.send(result);
    });
    spawned.map_err(|e| BackendError::Failed(format!("port-forward thread: {e}")))?;
    let stream = rx
        .await
        .map_err(|_| BackendError::Failed("port-forward thread ended early".into()))?
        .map_err(BackendError::Failed)?;
    stream.set_nonblocking(true).map_err(|e| BackendError::Failed(format!("port-forward socket: {e}")))?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| BackendError::Failed(format!("port-forward socket: {e}")))
}

fn runtime_error(container_id: &str, e: corral_runtime::Error) -> BackendError {
    if e.is_not_found() {
        BackendError::ContainerNotFound(container_id.to_string())
    } else {
        BackendError::Failed(e.to_string())
    }
}
