//! Turning a routed request into a session: the SPDY or WebSocket handshake (kubelet's rules
//! and error messages), the 101 response, and the background task that serves the upgraded
//! connection with [`remotecommand`] or [`portforward`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corral_cri::v1::PortForwardRequest;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::remotecommand::{self, Command, Options};
use super::server::{Body, Inner, text_response};
use super::spdy::{Connection, SpdyConfig};
use super::{portforward, websocket};

/// Header carrying the SPDY subprotocol offer (client) and choice (server).
const STREAM_PROTOCOL_VERSION: &str = "X-Stream-Protocol-Version";
/// Lists what we accept when negotiation fails.
const ACCEPTED_STREAM_PROTOCOL_VERSIONS: &str = "X-Accepted-Stream-Protocol-Versions";
/// The WebSocket subprotocol that tunnels SPDY port-forward (client-go's websocket dialer).
const SPDY_TUNNEL_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

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

pub(super) fn remote_command(
    inner: &Arc<Inner>,
    req: &mut Request<Incoming>,
    command: Command,
    opts: Options,
) -> Response<Body> {
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

pub(super) fn port_forward(inner: &Arc<Inner>, req: &mut Request<Incoming>, pf: PortForwardRequest) -> Response<Body> {
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

    #[test]
    fn ports_from_the_query() {
        assert_eq!(query_ports("port=80&port=443,8080&other=1"), Ok(vec![80, 443, 8080]));
        assert_eq!(query_ports(""), Ok(vec![]));
        assert!(query_ports("port=0").is_err());
        assert!(query_ports("port=http").is_err());
    }
}
