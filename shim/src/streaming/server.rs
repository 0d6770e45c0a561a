//! The HTTP side: the listener, routing `/{exec,attach,portforward}/{token}` (GET and POST),
//! protocol upgrades, and the public [`StreamingServer`] the daemon holds.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_cri::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backend::Backend;
use super::error::StreamingError;
use super::remotecommand::{self, Command, Options};
use super::request::{validate_attach, validate_exec, validate_port_forward};
use super::spdy::{Connection, SpdyConfig};
use super::tokens::{PendingRequest, RequestCache};
use super::{portforward, websocket};

pub type Body = Full<Bytes>;

/// Header carrying the SPDY subprotocol offer (client) and choice (server).
const STREAM_PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
/// Lists what we accept when negotiation fails.
const ACCEPTED_STREAM_PROTOCOL_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";
/// The WebSocket subprotocol that tunnels SPDY port-forward (client-go's websocket dialer).
const SPDY_TUNNEL_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

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

struct Inner {
    cache: RequestCache,
    backend: Arc<dyn Backend>,
    opts: StreamingOptions,
    /// Cancelled on shutdown; every connection and session watches it.
    shutdown: CancellationToken,
}

impl StreamingServer {
    /// Binds `addr` and starts serving with default options.
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

/// How long sessions get after shutdown to tell their clients, before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Runs `session` in the background until it ends, or shortly after the server shuts down.
fn spawn_session(inner: &Arc<Inner>, session: impl Future<Output = ()> + Send + 'static) {
    let shutdown = inner.shutdown.clone();
    tokio::spawn(async move {
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            _ = session => {}
            _ = deadline => tracing::debug!("streaming session dropped at server shutdown"),
        }
    });
}

fn remote_command(inner: &Arc<Inner>, req: &mut Request<Incoming>, command: Command, opts: Options) -> Response<Body> {
    let backend = inner.backend.clone();
    if websocket::is_upgrade(req.headers()) {
        let offered = websocket::client_protocols(req.headers());
        let Some(protocol) = websocket::negotiate(&offered, remotecommand::websocket::PROTOCOLS) else {
            return text_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "unable to upgrade: WebSocket subprotocols {offered:?} not supported; supported: {:?}",
                    remotecommand::websocket::PROTOCOLS
                ),
            );
        };
        let resp = match websocket::accept_response(req.headers(), protocol) {
            Ok(resp) => resp,
            Err(resp) => return *resp,
        };
        let on_upgrade = hyper::upgrade::on(req);
        let stop = inner.shutdown.clone();
        spawn_session(inner, async move {
            match websocket::upgrade(on_upgrade).await {
                Ok(ws) => remotecommand::websocket::serve(ws, protocol, opts, command, backend, stop).await,
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        return resp;
    }
    let (protocol, resp) = match spdy_handshake(req, remotecommand::spdy::PROTOCOLS) {
        Ok(ok) => ok,
        Err(resp) => return *resp,
    };
    let on_upgrade = hyper::upgrade::on(req);
    let timeout = inner.opts.stream_creation_timeout;
    let stop = inner.shutdown.clone();
    spawn_session(inner, async move {
        let Some(conn) = spdy_connection(on_upgrade).await else { return };
        remotecommand::spdy::serve(conn, protocol, opts, command, backend, timeout, stop).await;
    });
    resp
}

fn port_forward(inner: &Arc<Inner>, req: &mut Request<Incoming>, pf: PortForwardRequest) -> Response<Body> {
    let backend = inner.backend.clone();
    let timeout = inner.opts.stream_creation_timeout;
    let sandbox_id = pf.pod_sandbox_id.clone();
    if websocket::is_upgrade(req.headers()) {
        let offered = websocket::client_protocols(req.headers());
        if !offered.iter().any(|p| p == SPDY_TUNNEL_PORTFORWARD) {
            return port_forward_channels(inner, req, pf, &offered);
        }
        let resp = match websocket::accept_response(req.headers(), SPDY_TUNNEL_PORTFORWARD) {
            Ok(resp) => resp,
            Err(resp) => return *resp,
        };
        let on_upgrade = hyper::upgrade::on(req);
        spawn_session(inner, async move {
            let ws = match websocket::upgrade(on_upgrade).await {
                Ok(ws) => ws,
                Err(e) => return tracing::debug!(error = %e, "WebSocket upgrade failed"),
            };
            match Connection::server(websocket::byte_stream(ws), SpdyConfig::default()) {
                Ok(conn) => portforward::spdy::serve(conn, sandbox_id, backend, timeout).await,
                Err(e) => tracing::warn!(error = %e, "starting tunnelled SPDY connection"),
            }
        });
        return resp;
    }
    let resp = match spdy_handshake(req, portforward::spdy::PROTOCOLS) {
        Ok((_, resp)) => resp,
        Err(resp) => return *resp,
    };
    let on_upgrade = hyper::upgrade::on(req);
    spawn_session(inner, async move {
        let Some(conn) = spdy_connection(on_upgrade).await else { return };
        portforward::spdy::serve(conn, sandbox_id, backend, timeout).await;
    });
    resp
}

/// Legacy WebSocket port-forward: the ports come from the CRI request, else from the
/// `port` query parameters (as kubelet's own server reads them).
fn port_forward_channels(
    inner: &Arc<Inner>,
    req: &mut Request<Incoming>,
    pf: PortForwardRequest,
    offered: &[String],
) -> Response<Body> {
    let Some(protocol) = websocket::negotiate(offered, portforward::websocket::PROTOCOLS) else {
        return text_response(
            StatusCode::BAD_REQUEST,
            &format!(
                "unable to upgrade: WebSocket subprotocols {offered:?} not supported for port-forward; supported: {SPDY_TUNNEL_PORTFORWARD:?}, {:?}",
                portforward::websocket::PROTOCOLS
            ),
        );
    };
    let ports = if pf.port.is_empty() {
        match query_ports(req.uri().query().unwrap_or("")) {
            Ok(ports) => ports,
            Err(msg) => return text_response(StatusCode::BAD_REQUEST, &msg),
        }
    } else {
        // validate_port_forward already checked the range.
        pf.port.iter().map(|p| *p as u16).collect()
    };
    if ports.is_empty() || ports.len() > portforward::websocket::MAX_PORTS {
        return text_response(
            StatusCode::BAD_REQUEST,
            &format!(
                "port-forward over WebSocket channels needs 1 to {} ports (in the CRI request or ?port=), got {}",
                portforward::websocket::MAX_PORTS,
                ports.len()
            ),
        );
    }
    let resp = match websocket::accept_response(req.headers(), protocol) {
        Ok(resp) => resp,
        Err(resp) => return *resp,
    };
    let on_upgrade = hyper::upgrade::on(req);
    let backend = inner.backend.clone();
    spawn_session(inner, async move {
        match websocket::upgrade(on_upgrade).await {
            Ok(ws) => portforward::websocket::serve(ws, ports, pf.pod_sandbox_id, backend).await,
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    resp
}

/// Parses `port=80&port=443,8080` query parameters.
fn query_ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for value in query.split('&').filter_map(|kv| kv.strip_prefix("port=")) {
        for p in value.split(',') {
            match p.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(format!("invalid port {p:?} in query: ports must be between 1 and 65535")),
            }
        }
    }
    Ok(ports)
}

async fn spdy_connection(on_upgrade: hyper::upgrade::OnUpgrade) -> Option<Connection> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, "SPDY upgrade failed");
            return None;
        }
    };
    match Connection::server(TokioIo::new(upgraded), SpdyConfig::default()) {
        Ok(conn) => Some(conn),
        Err(e) => {
            tracing::warn!(error = %e, "starting SPDY connection");
            None
        }
    }
}

/// Checks the SPDY upgrade request and negotiates the subprotocol (kubelet's rules and
/// messages): 400 without upgrade headers or protocol offer, 403 if nothing matches.
fn spdy_handshake(
    req: &Request<Incoming>,
    supported: &[&'static str],
) -> Result<(&'static str, Response<Body>), Box<Response<Body>>> {
    let header_has = |name, token: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(token))
    };
    if !header_has(CONNECTION, "upgrade") || !header_has(UPGRADE, "spdy/3.1") {
        return Err(Box::new(text_response(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request (want Connection: Upgrade and Upgrade: SPDY/3.1, or a WebSocket)",
        )));
    }
    let offered: Vec<String> = req
        .headers()
        .get_all(STREAM_PROTOCOL_VERSION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Err(Box::new(text_response(
            StatusCode::BAD_REQUEST,
            &format!("unable to upgrade: header {STREAM_PROTOCOL_VERSION} is missing or empty"),
        )));
    }
    let Some(protocol) = offered.iter().find_map(|o| supported.iter().find(|s| **s == o.as_str()).copied()) else {
        let mut resp = text_response(
            StatusCode::FORBIDDEN,
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
            ),
        );
        for p in supported {
            resp.headers_mut().append(ACCEPTED_STREAM_PROTOCOL_VERSIONS, HeaderValue::from_static(p));
        }
        return Err(Box::new(resp));
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(STREAM_PROTOCOL_VERSION, HeaderValue::from_static(protocol));
    Ok((protocol, resp))
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

    #[test]
    fn ports_from_the_query() {
        assert_eq!(query_ports("port=80&port=443,8080&other=1"), Ok(vec![80, 443, 8080]));
        assert_eq!(query_ports(""), Ok(vec![]));
        assert!(query_ports("port=0").is_err());
        assert!(query_ports("port=http").is_err());
    }
}
