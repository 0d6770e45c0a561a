//! End-to-end tests of the streaming server: real client-go clients (built from
//! `e2e/streaming-client`) against the server on 127.0.0.1, with a backend running real host
//! processes and real TCP connections (see `host_backend.rs`).

mod crictl;
mod go_client;
mod host_backend;
mod http;
mod leaks;
mod ws_portforward;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_cri::v1::{AttachRequest, ExecRequest, PortForwardRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use self::go_client::TRANSPORTS;
use self::host_backend::HostBackend;
use super::{StreamingOptions, StreamingServer};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn start() -> StreamingServer {
    StreamingServer::start(loopback(), Arc::new(HostBackend)).await.expect("start streaming server")
}

fn exec_req(cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_returns_stdout_stderr_and_exit_code() {
    let server = start().await;
    for transport in TRANSPORTS {
        let url = server.exec_url(&exec_req(&["sh", "-c", "echo out; echo err >&2; exit 3"])).unwrap();
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{}/exec/", server.local_addr().port())),
            "full URL with scheme: {url}"
        );
        let o = go_client::exec(transport, &url, &[], None).await;
        assert_eq!(o.stdout, "out\n", "{transport}: {o:?}");
        assert!(o.stderr.starts_with("err\n"), "{transport}: {o:?}");
        assert!(o.stderr.contains("exit-code: 3"), "{transport}: {o:?}");
        assert_eq!(o.code, 3, "{transport}: {o:?}");

        let url = server.exec_url(&exec_req(&["sh", "-c", "echo fine"])).unwrap();
        let o = go_client::exec(transport, &url, &[], None).await;
        assert_eq!((o.stdout.as_str(), o.code), ("fine\n", 0), "{transport}: {o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_older_subprotocols() {
    let server = start().await;
    // v4 (JSON status) over WebSocket behaves like v5.
    let url = server.exec_url(&exec_req(&["sh", "-c", "echo out; exit 3"])).unwrap();
    let o = go_client::exec("websocket", &url, &["-protocols", "v4.channel.k8s.io"], None).await;
    assert_eq!((o.stdout.as_str(), o.code), ("out\n", 3), "{o:?}");
    // v1: client-go's v1 handler returns on whichever comes first, the end of the output or
    // an error message (with kubelet too), so only a command that succeeds has reliable
    // output; a failure's status races its output.
    for transport in TRANSPORTS {
        let url = server.exec_url(&exec_req(&["sh", "-c", "echo out"])).unwrap();
        let o = go_client::exec(transport, &url, &["-protocols", "channel.k8s.io"], None).await;
        assert_eq!((o.stdout.as_str(), o.code), ("out\n", 0), "{transport}: {o:?}");
    }
    // v2/v3 carry the failure as text: client-go reports it as an error with our message.
    for (transport, protocol) in [("spdy", "v3.channel.k8s.io"), ("spdy", "v2.channel.k8s.io")] {
        let url = server.exec_url(&exec_req(&["sh", "-c", "echo out; exit 3"])).unwrap();
        let o = go_client::exec(transport, &url, &["-protocols", protocol], None).await;
        assert_eq!(o.stdout, "out\n", "{transport} {protocol}: {o:?}");
        assert!(o.stderr.contains("command terminated with non-zero exit code"), "{transport} {protocol}: {o:?}");
        assert!(o.stderr.contains("exit code 3"), "{transport} {protocol}: {o:?}");
        let url = server.exec_url(&exec_req(&["true"])).unwrap();
        let o = go_client::exec(transport, &url, &["-protocols", protocol], None).await;
        assert_eq!(o.code, 0, "{transport} {protocol}: {o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_forwards_stdin_until_eof() {
    let server = start().await;
    let input = b"hello\nworld\n".repeat(20_000); // 240 KB: several SPDY windows
    for transport in TRANSPORTS {
        let url = server.exec_url(&ExecRequest { stdin: true, ..exec_req(&["cat"]) }).unwrap();
        let o = go_client::exec(transport, &url, &[], Some(&input)).await;
        assert_eq!(o.code, 0, "{transport}: {}", o.stderr);
        assert_eq!(o.stdout.len(), input.len(), "{transport}");
        assert!(o.stdout.as_bytes() == input.as_slice(), "{transport}: output differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_tty_applies_resizes() {
    let server = start().await;
    for transport in TRANSPORTS {
        let req = ExecRequest {
            tty: true,
            stdin: true,
            stderr: false,
            ..exec_req(&["sh", "-c", "read a; stty size; read b; stty size; exit 7"])
        };
        let url = server.exec_url(&req).unwrap();
        let mut child = go_client::spawn(&["exec", "-transport", transport, "-url", &url, "-stdin", "-tty"]);
        let mut stdin = child.stdin.take().unwrap();
        // The resize and the line travel on different streams; a pause keeps them in order.
        for line in ["#resize 100x40\n", "go\n", "#resize 120x50\n", "go\n"] {
            stdin.write_all(line.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let o = go_client::finish(child).await;
        assert!(o.stdout.contains("40 100"), "{transport}: {o:?}");
        assert!(o.stdout.contains("50 120"), "{transport}: {o:?}");
        assert_eq!(o.code, 7, "{transport}: {o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_streams_stdin_and_stdout() {
    let server = start().await;
    for transport in TRANSPORTS {
        let req = AttachRequest { container_id: "c1".into(), stdin: true, stdout: true, stderr: true, tty: false };
        let url = server.attach_url(&req).unwrap();
        assert!(url.contains("/attach/"), "{url}");
        let o = go_client::exec(transport, &url, &[], Some(b"attached\n")).await;
        assert_eq!((o.stdout.as_str(), o.code), ("attached\n", 0), "{transport}: {o:?}");
    }
}

/// A TCP server answering each connection, after its client half-closed, with `tag:` + the
/// bytes it received.
async fn tagged_echo_server(tag: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(loopback()).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut got = Vec::new();
                if conn.read_to_end(&mut got).await.is_ok() {
                    let mut reply = format!("{tag}:").into_bytes();
                    reply.extend_from_slice(&got);
                    let _ = conn.write_all(&reply).await;
                }
            });
        }
    });
    (port, task)
}

/// Starts the port-forward client and returns it with its local ports.
async fn forward(transport: &str, url: &str, ports: &[u16]) -> (tokio::process::Child, Vec<u16>) {
    let list = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let mut child = go_client::spawn(&["portforward", "-transport", transport, "-url", url, "-ports", &list]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("port-forward client never became ready")
        .unwrap()
        .unwrap_or_default();
    let locals: Vec<u16> = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    (child, locals)
}

async fn round_trip(port: u16, payload: Vec<u8>) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(&payload).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut reply)).await.expect("reply").unwrap();
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_two_ports_with_concurrent_connections() {
    let server = start().await;
    let (port_a, _a) = tagged_echo_server("A").await;
    let (port_b, _b) = tagged_echo_server("B").await;
    for transport in TRANSPORTS {
        let req = PortForwardRequest { pod_sandbox_id: "pod1".into(), port: vec![port_a as i32, port_b as i32] };
        let url = server.port_forward_url(&req).unwrap();
        let (mut child, locals) = forward(transport, &url, &[port_a, port_b]).await;
        assert_eq!(locals.len(), 2);
        let mut conns = JoinSet::new();
        for i in 0..8 {
            for (tag, local) in [("A", locals[0]), ("B", locals[1])] {
                // Big enough to need several windows and frames.
                let payload = format!("{transport}-{i}-").repeat(20_000).into_bytes();
                conns.spawn(async move {
                    let reply = round_trip(local, payload.clone()).await;
                    let mut want = format!("{tag}:").into_bytes();
                    want.extend_from_slice(&payload);
                    assert!(reply == want, "connection {i} to {tag}: {} bytes back, want {}", reply.len(), want.len());
                });
            }
        }
        while let Some(done) = conns.join_next().await {
            done.unwrap();
        }
        drop(child.stdin.take());
        let o = go_client::finish(child).await;
        assert_eq!(o.code, 0, "{transport}: {o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_to_a_closed_port_reports_the_error() {
    let server = start().await;
    let closed_port = TcpListener::bind(loopback()).await.unwrap().local_addr().unwrap().port();
    for transport in TRANSPORTS {
        let req = PortForwardRequest { pod_sandbox_id: "pod1".into(), port: vec![closed_port as i32] };
        let url = server.port_forward_url(&req).unwrap();
        let (mut child, locals) = forward(transport, &url, &[closed_port]).await;
        // The local connection ends without data (EOF, or a reset as client-go closes it
        // with our bytes unread).
        let mut conn = TcpStream::connect(("127.0.0.1", locals[0])).await.unwrap();
        let _ = conn.write_all(b"hello").await;
        let mut reply = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut reply)).await.expect("no end");
        assert!(reply.is_empty(), "{transport}: {reply:?} {read:?}");
        drop(child.stdin.take());
        let o = go_client::finish(child).await;
        assert!(o.stderr.contains(&format!("error forwarding port {closed_port} to pod pod1")), "{transport}: {o:?}");
        assert!(o.stderr.contains("Connection refused") || o.stderr.contains("connection refused"), "{o:?}");
    }
}

/// Whether a process whose command line contains `needle` exists.
fn process_with_cmdline(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_ends_the_process() {
    let server = start().await;
    for transport in TRANSPORTS {
        // A sleep with a unique duration, so we can find exactly our process in /proc.
        let marker = format!("{}.{}", 900 + std::process::id() % 90, if transport == "spdy" { 111 } else { 222 });
        let script = format!("echo started; exec sleep {marker}");
        let url = server.exec_url(&exec_req(&["sh", "-c", &script])).unwrap();
        let mut child = go_client::spawn(&["exec", "-transport", transport, "-url", &url]);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap();
        assert_eq!(first.as_deref(), Some("started"));
        // (/proc/<pid>/cmdline reads empty while the shell is inside execve: poll.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while !process_with_cmdline(&format!("sleep {marker}")) {
            assert!(Instant::now() < deadline, "{transport}: the exec'd process is not running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_with_cmdline(&format!("sleep {marker}")) {
            assert!(Instant::now() < deadline, "{transport}: exec'd process still alive after the client vanished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_shutdown_ends_sessions() {
    for transport in TRANSPORTS {
        let server = start().await;
        let marker = if transport == "spdy" { "sleep 876.5" } else { "sleep 876.6" };
        let url = server.exec_url(&exec_req(&["sh", "-c", &format!("echo started; exec {marker}")])).unwrap();
        let mut child = go_client::spawn(&["exec", "-transport", transport, "-url", &url]);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap();
        assert_eq!(first.as_deref(), Some("started"));
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_with_cmdline(marker) {
            assert!(Instant::now() < deadline, "exec'd process survived the server");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let o = go_client::finish(child).await;
        assert_eq!(o.code, 125, "{transport}: {o:?}");
        assert!(o.stderr.contains("the streaming server is shutting down"), "{transport}: {o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_pending_urls() {
    let mut opts = StreamingOptions::new(loopback());
    opts.max_pending = 3;
    let server = StreamingServer::start_with(opts, Arc::new(HostBackend)).await.unwrap();
    for _ in 0..3 {
        server.exec_url(&exec_req(&["true"])).unwrap();
    }
    let err = server.exec_url(&exec_req(&["true"])).unwrap_err();
    assert!(err.to_string().contains("too many pending streaming requests"), "{err}");
    let status = tonic::Status::from(crate::error::CriError::from(err));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let err = server.exec_url(&ExecRequest { tty: true, ..exec_req(&["true"]) }).unwrap_err();
    let status = tonic::Status::from(crate::error::CriError::from(err));
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("tty and stderr cannot both be true"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_reach_the_client() {
    let server = start().await;
    for transport in TRANSPORTS {
        let url = server.exec_url(&ExecRequest { container_id: "missing".into(), ..exec_req(&["true"]) }).unwrap();
        let o = go_client::exec(transport, &url, &[], None).await;
        assert_eq!(o.code, 125, "{transport}: {o:?}");
        assert!(o.stderr.contains("Internal error occurred: container missing not found"), "{transport}: {o:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_client_disconnect_closes_the_target_connection() {
    let server = start().await;
    for transport in TRANSPORTS {
        // A target that greets, then reports when its connection ends.
        let listener = TcpListener::bind(loopback()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.write_all(b"hi\n").await.unwrap();
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink).await;
            let _ = closed_tx.send(());
        });
        let req = PortForwardRequest { pod_sandbox_id: "pod1".into(), port: vec![port as i32] };
        let url = server.port_forward_url(&req).unwrap();
        let (mut child, locals) = forward(transport, &url, &[port]).await;
        let mut local = TcpStream::connect(("127.0.0.1", locals[0])).await.unwrap();
        let mut greeting = [0u8; 3];
        tokio::time::timeout(Duration::from_secs(10), local.read_exact(&mut greeting)).await.unwrap().unwrap();
        assert_eq!(&greeting, b"hi\n");
        // The client dies with the connection open: the server must drop its target side.
        child.kill().await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), closed_rx)
            .await
            .unwrap_or_else(|_| panic!("{transport}: target connection still open after the client died"))
            .unwrap();
    }
}
