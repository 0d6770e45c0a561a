//! Startup and shutdown of the daemon: directories, the single-instance lock, the unix
//! socket, the gRPC server, and a graceful stop on SIGTERM/SIGINT.
//!
//! Containers are not children of the daemon (see docs/design.md), so stopping the daemon
//! stops serving requests and nothing else: pods keep running until a new daemon takes over.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use corral_cri::v1::image_service_server::ImageServiceServer;
use corral_cri::v1::runtime_service_server::RuntimeServiceServer;
use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use crate::config::Config;
use crate::cri::{Daemon, ImageServer, RuntimeServer};

/// crictl and kubelet accept messages up to 16 MiB; so does corral.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    crate::fault::announce();
    prepare_dirs(&config)?;
    let _lock = lock_state_dir(&config.state_dir)?;
    let listener = bind_socket(&config.socket)?;
    let socket_ino = fs::metadata(&config.socket)?.ino();

    let daemon = Daemon::open(config.clone()).await?;
    tracing::info!(socket = %config.socket.display(), root = %config.root.display(),
        state_dir = %config.state_dir.display(), version = env!("CARGO_PKG_VERSION"), "corral serving");

    let routes = tonic::service::Routes::new(
        RuntimeServiceServer::new(RuntimeServer::new(daemon.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add_service(
        ImageServiceServer::new(ImageServer::new(daemon))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
    .prepare();
    let result = serve_grpc(listener, Traced(routes)).await;

    remove_own_socket(&config.socket, socket_ino);
    tracing::info!("corral stopped");
    result
}

/// Serves HTTP/2 gRPC connections on `listener` until SIGTERM/SIGINT, then lets open
/// requests finish for a few seconds.
///
/// corral runs its own accept loop instead of `tonic::transport::Server` because that server
/// answers a request whose `grpc-timeout` ran out with CANCELLED, while gRPC (and critest)
/// want DEADLINE_EXCEEDED, which the client reports by itself. Here handlers run to the end
/// and the client keeps the deadline: the operations are idempotent, so a client that gave
/// up and retries finds the work done.
async fn serve_grpc(listener: UnixListener, service: Traced<tonic::service::Routes>) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        continue;
                    }
                };
                let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still running after 5s; stopping anyway");
    }
    Ok(())
}

/// Runs every request in a `cri` span named after its RPC; handlers record the object id.
#[derive(Clone)]
struct Traced<S>(S);

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for Traced<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        use tracing::Instrument;
        let span = tracing::info_span!("cri", rpc = rpc_name(req.uri().path()), id = tracing::field::Empty);
        self.0.call(req).instrument(span)
    }
}

/// `/runtime.v1.RuntimeService/Version` -> `Version`.
fn rpc_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn prepare_dirs(config: &Config) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true).mode(0o711);
    for dir in [&config.root, &config.state_dir] {
        builder.create(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Some(parent) = config.socket.parent() {
        builder.create(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(())
}

/// One daemon per state directory: two daemons sharing records would corrupt each other.
fn lock_state_dir(state_dir: &Path) -> anyhow::Result<Flock<File>> {
    let path = state_dir.join("corral.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            bail!("another corral daemon (pid {}) is using state dir {}", holder.trim(), state_dir.display())
        }
        Err((_, errno)) => return Err(errno).with_context(|| format!("locking {}", path.display())),
    };
    lock.set_len(0)?;
    lock.rewind()?;
    write!(lock, "{}", std::process::id())?;
    Ok(lock)
}

/// Binds the CRI socket with mode 0660, replacing a stale socket but never a live one.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            bail!("{} exists and is not a socket; refusing to replace it", path.display())
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!("another daemon is already serving {}", path.display()),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing stale socket");
                fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
    // Bind under a private umask so the socket is never reachable with looser permissions.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    Ok(listener)
}

/// Removes the socket only if it is still the one this daemon created.
fn remove_own_socket(path: &PathBuf, ino: u64) {
    if fs::metadata(path).map(|m| m.ino() == ino).unwrap_or(false)
        && let Err(e) = fs::remove_file(path)
    {
        tracing::warn!(socket = %path.display(), "removing socket: {e}");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop corral with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names() {
        assert_eq!(rpc_name("/runtime.v1.RuntimeService/Version"), "Version");
        assert_eq!(rpc_name("Version"), "Version");
    }

    #[test]
    fn second_lock_on_a_state_dir_fails_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _first = lock_state_dir(dir.path()).unwrap();
        let err = lock_state_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    }

    #[tokio::test]
    async fn socket_is_0660_stale_replaced_live_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        // A stale socket: bound, then its listener dropped.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let live = bind_socket(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
        let err = bind_socket(&path).unwrap_err().to_string();
        assert!(err.contains("already serving"), "{err}");
        drop(live);
        let file = dir.path().join("plain");
        fs::write(&file, "x").unwrap();
        assert!(bind_socket(&file).unwrap_err().to_string().contains("not a socket"));
    }
}
