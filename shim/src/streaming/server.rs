//! The HTTP side: the public [`StreamingServer`] the daemon holds, its listener, and the
//! routing of `/{exec,attach,portforward}/{token}` (GET and POST) to [`super::upgrade`].

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_cri::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use super::error::StreamingError;
use super::remotecommand::{Command, Options};
use super::request::{validate_attach, validate_exec, validate_port_forward};
use super::tokens::{PendingRequest, RequestCache};
use super::upgrade::{port_forward, remote_command};

pub type Body = Full<Bytes>;

/// Settings of the streaming server. `new` gives kubelet's defaults.
#[derive(Debug, Clone)]
pub struct StreamingOptions {
    /// Where to listen; port 0 picks a free port.
    pub addr: SocketAddr,
    /// How long a client has to open its streams after the upgrade.
    pub stream_creation_timeout: Duration,
    /// How long a URL stays valid.
    pub token_ttl: Duration,
    /// Most URLs handed out and not yet used.
    pub max_pending: usize,
}

impl StreamingOptions {
    pub fn new(addr: SocketAddr) -> Self {
        StreamingOptions {
            addr,
            stream_creation_timeout: Duration::from_secs(30),
            token_ttl: Duration::from_secs(60),
            max_pending: 1000,
        }
    }
}

/// The exec/attach/port-forward server. Dropping it (or [`shutdown`](Self::shutdown)) stops
/// listening and ends every session, which ends exec'd processes and forwarded connections.
pub struct StreamingServer {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
    base_url: String,
    accept_loop: JoinHandle<()>,
}

pub(super) struct Inner {
    cache: RequestCache,
    pub(super) backend: Arc<dyn Backend>,
    pub(super) opts: StreamingOptions,
    /// Cancelled on shutdown; every connection and session watches it.
    pub(super) shutdown: CancellationToken,
}

impl StreamingServer {
    /// Binds `addr` and starts serving with default options.
    #[cfg(test)]
    pub async fn start(addr: SocketAddr, backend: Arc<dyn Backend>) -> Result<StreamingServer, StreamingError> {
        Self::start_with(StreamingOptions::new(addr), backend).await
    }

    pub async fn start_with(
        opts: StreamingOptions,
        backend: Arc<dyn Backend>,
    ) -> Result<StreamingServer, StreamingError> {
        let listener =
            TcpListener::bind(opts.addr).await.map_err(|source| StreamingError::Bind { addr: opts.addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| StreamingError::Bind { addr: opts.addr, source })?;
        // URLs must name an address the client can dial; a wildcard bind is reached on loopback.
        let url_addr = match local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local_addr.port()),
            IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local_addr.port()),
            _ => local_addr,
        };
        let inner = Arc::new(Inner {
            cache: RequestCache::new(opts.token_ttl, opts.max_pending),
            backend,
            opts,
            shutdown: CancellationToken::new(),
        });
        let accept_loop = tokio::spawn(accept_loop(inner.clone(), listener));
        tracing::info!(addr = %local_addr, "streaming server listening");
        Ok(StreamingServer { inner, local_addr, base_url: format!("http://{url_addr}"), accept_loop })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Validates an `Exec` request and returns its single-use URL.
    pub fn exec_url(&self, req: &ExecRequest) -> Result<String, StreamingError> {
        validate_exec(req)?;
        self.url("exec", PendingRequest::Exec(req.clone()))
    }

    /// Validates an `Attach` request and returns its single-use URL.
    pub fn attach_url(&self, req: &AttachRequest) -> Result<String, StreamingError> {
        validate_attach(req)?;
        self.url("attach", PendingRequest::Attach(req.clone()))
    }

    /// Validates a `PortForward` request and returns its single-use URL.
    pub fn port_forward_url(&self, req: &PortForwardRequest) -> Result<String, StreamingError> {
        validate_port_forward(req)?;
        self.url("portforward", PendingRequest::PortForward(req.clone()))
    }

    fn url(&self, route: &str, req: PendingRequest) -> Result<String, StreamingError> {
        let token = self.inner.cache.insert(req)?;
        Ok(format!("{}/{route}/{token}", self.base_url))
    }

    /// Stops listening and ends all sessions.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.accept_loop.abort();
    }
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "streaming server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        enable_keepalive(&tcp);
        let inner = inner.clone();
        tokio::spawn(async move {
            let service = service_fn({
                let inner = inner.clone();
                move |req| {
                    let inner = inner.clone();
                    async move { Ok::<_, Infallible>(route(&inner, req)) }
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "streaming HTTP connection failed");
                },
                _ = inner.shutdown.cancelled() => {}
            }
        });
    }
}

/// Turns on TCP keepalive (idle 60 s, then 4 probes 15 s apart), so a client whose host
/// vanished without closing its connection is noticed within about two minutes and its
/// session (and exec'd process) ends. Quiet but live sessions are never cut, unlike
/// kubelet's 4-hour idle timeout.
fn enable_keepalive(tcp: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let result = setsockopt(tcp, sockopt::KeepAlive, &true)
        .and_then(|()| setsockopt(tcp, sockopt::TcpKeepIdle, &60))
        .and_then(|()| setsockopt(tcp, sockopt::TcpKeepInterval, &15))
        .and_then(|()| setsockopt(tcp, sockopt::TcpKeepCount, &4));
    if let Err(e) = result {
        tracing::debug!(error = %e, "streaming server: enabling TCP keepalive failed");
    }
}

/// A plain-text response (errors are read by people, through crictl/kubectl).
pub fn text_response(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn route(inner: &Arc<Inner>, mut req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::POST {
        let mut resp = text_response(StatusCode::METHOD_NOT_ALLOWED, "only GET and POST are served");
        resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, POST"));
        return resp;
    }
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').split('/');
    let (Some(kind), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return text_response(
            StatusCode::NOT_FOUND,
            "not found: expected /exec/<token>, /attach/<token> or /portforward/<token>",
        );
    };
    let not_found = || {
        text_response(
            StatusCode::NOT_FOUND,
            "streaming token not found: it is unknown, was already used, or expired (tokens are single-use and live 1 minute)",
        )
    };
    let Some(pending) = inner.cache.consume(token) else {
        return not_found();
    };
    match (kind, pending) {
        ("exec", PendingRequest::Exec(r)) => {
            let opts = Options { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
            remote_command(inner, &mut req, Command::Exec { container_id: r.container_id, cmd: r.cmd }, opts)
        }
        ("attach", PendingRequest::Attach(r)) => {
            let opts = Options { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
            remote_command(inner, &mut req, Command::Attach { container_id: r.container_id }, opts)
        }
        ("portforward", PendingRequest::PortForward(r)) => port_forward(inner, &mut req, r),
        _ => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_use_keepalive() {
        use nix::sys::socket::{getsockopt, sockopt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (conn, _) = listener.accept().await.unwrap();
        enable_keepalive(&conn);
        assert!(getsockopt(&conn, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&conn, sockopt::TcpKeepIdle).unwrap(), 60);
        assert_eq!(getsockopt(&conn, sockopt::TcpKeepCount).unwrap(), 4);
    }
}
