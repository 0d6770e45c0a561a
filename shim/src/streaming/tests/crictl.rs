//! The real crictl (v1.37) against the streaming server: a minimal CRI service answers
//! `Version`, `Exec`, `Attach` and `PortForward` with our URLs (everything else is
//! unimplemented), and crictl does the rest exactly as it would against the daemon,
//! including `exec -it` in a real terminal (tmux) with window resizes.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use corral_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use corral_cri::v1::{self};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use super::start;
use crate::streaming::StreamingServer;

type ResponseStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Implements the given RPCs as `Unimplemented`, in the shape `#[tonic::async_trait]`
/// gives trait methods.
macro_rules! unimplemented_rpcs {
    ($($name:ident($req:ident) -> $resp:ty;)*) => {$(
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            _request: Request<v1::$req>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(Status::unimplemented(stringify!($name))) })
        }
    )*};
}

#[derive(Clone)]
struct TestCri {
    streaming: Arc<StreamingServer>,
}

#[tonic::async_trait]
impl RuntimeService for TestCri {
    type StreamPodSandboxesStream = ResponseStream<v1::StreamPodSandboxesResponse>;
    type StreamContainersStream = ResponseStream<v1::StreamContainersResponse>;
    type StreamContainerStatsStream = ResponseStream<v1::StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = ResponseStream<v1::StreamPodSandboxStatsResponse>;
    type GetContainerEventsStream = ResponseStream<v1::ContainerEventResponse>;
    type StreamPodSandboxMetricsStream = ResponseStream<v1::StreamPodSandboxMetricsResponse>;

    async fn version(&self, _request: Request<v1::VersionRequest>) -> Result<Response<v1::VersionResponse>, Status> {
        Ok(Response::new(v1::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "corral-streaming-test".into(),
            runtime_version: "0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn exec(&self, request: Request<v1::ExecRequest>) -> Result<Response<v1::ExecResponse>, Status> {
        let url = self.streaming.exec_url(request.get_ref()).map_err(crate::error::CriError::from)?;
        Ok(Response::new(v1::ExecResponse { url }))
    }

    async fn attach(&self, request: Request<v1::AttachRequest>) -> Result<Response<v1::AttachResponse>, Status> {
        let url = self.streaming.attach_url(request.get_ref()).map_err(crate::error::CriError::from)?;
        Ok(Response::new(v1::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<v1::PortForwardRequest>,
    ) -> Result<Response<v1::PortForwardResponse>, Status> {
        let url = self.streaming.port_forward_url(request.get_ref()).map_err(crate::error::CriError::from)?;
        Ok(Response::new(v1::PortForwardResponse { url }))
    }

    unimplemented_rpcs! {
        run_pod_sandbox(RunPodSandboxRequest) -> v1::RunPodSandboxResponse;
        stop_pod_sandbox(StopPodSandboxRequest) -> v1::StopPodSandboxResponse;
        remove_pod_sandbox(RemovePodSandboxRequest) -> v1::RemovePodSandboxResponse;
        pod_sandbox_status(PodSandboxStatusRequest) -> v1::PodSandboxStatusResponse;
        list_pod_sandbox(ListPodSandboxRequest) -> v1::ListPodSandboxResponse;
        stream_pod_sandboxes(StreamPodSandboxesRequest) -> Self::StreamPodSandboxesStream;
        create_container(CreateContainerRequest) -> v1::CreateContainerResponse;
        start_container(StartContainerRequest) -> v1::StartContainerResponse;
        stop_container(StopContainerRequest) -> v1::StopContainerResponse;
        remove_container(RemoveContainerRequest) -> v1::RemoveContainerResponse;
        list_containers(ListContainersRequest) -> v1::ListContainersResponse;
        stream_containers(StreamContainersRequest) -> Self::StreamContainersStream;
        container_status(ContainerStatusRequest) -> v1::ContainerStatusResponse;
        update_container_resources(UpdateContainerResourcesRequest) -> v1::UpdateContainerResourcesResponse;
        reopen_container_log(ReopenContainerLogRequest) -> v1::ReopenContainerLogResponse;
        exec_sync(ExecSyncRequest) -> v1::ExecSyncResponse;
        container_stats(ContainerStatsRequest) -> v1::ContainerStatsResponse;
        list_container_stats(ListContainerStatsRequest) -> v1::ListContainerStatsResponse;
        stream_container_stats(StreamContainerStatsRequest) -> Self::StreamContainerStatsStream;
        pod_sandbox_stats(PodSandboxStatsRequest) -> v1::PodSandboxStatsResponse;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> v1::ListPodSandboxStatsResponse;
        stream_pod_sandbox_stats(StreamPodSandboxStatsRequest) -> Self::StreamPodSandboxStatsStream;
        update_runtime_config(UpdateRuntimeConfigRequest) -> v1::UpdateRuntimeConfigResponse;
        status(StatusRequest) -> v1::StatusResponse;
        checkpoint_container(CheckpointContainerRequest) -> v1::CheckpointContainerResponse;
        checkpoint_pod(CheckpointPodRequest) -> v1::CheckpointPodResponse;
        restore_pod(RestorePodRequest) -> v1::RestorePodResponse;
        get_container_events(GetEventsRequest) -> Self::GetContainerEventsStream;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> v1::ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> v1::ListPodSandboxMetricsResponse;
        stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest) -> Self::StreamPodSandboxMetricsStream;
        runtime_config(RuntimeConfigRequest) -> v1::RuntimeConfigResponse;
        update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> v1::UpdatePodSandboxResourcesResponse;
    }
}

/// crictl checks the image service answers `ImageFsInfo` before anything else.
#[tonic::async_trait]
impl ImageService for TestCri {
    type StreamImagesStream = ResponseStream<v1::StreamImagesResponse>;

    async fn image_fs_info(
        &self,
        _request: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        Ok(Response::new(v1::ImageFsInfoResponse::default()))
    }

    unimplemented_rpcs! {
        list_images(ListImagesRequest) -> v1::ListImagesResponse;
        stream_images(StreamImagesRequest) -> Self::StreamImagesStream;
        image_status(ImageStatusRequest) -> v1::ImageStatusResponse;
        pull_image(PullImageRequest) -> v1::PullImageResponse;
        remove_image(RemoveImageRequest) -> v1::RemoveImageResponse;
    }
}

/// crictl, as e2e/setup.sh installs it (or `CRICTL_BIN`).
fn crictl_bin() -> PathBuf {
    let tools = std::env::var("CORRAL_TOOLS").unwrap_or_else(|_| "/var/cache/corral-tools".into());
    let candidates = [
        std::env::var("CRICTL_BIN").ok(),
        Some(format!("{tools}/bin/crictl")),
        Some("/work/gotools-cache/bin/crictl".into()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("crictl not found: run e2e/setup.sh (or set CRICTL_BIN)")
}

/// A CRI endpoint backed by a streaming server with the host-process backend.
struct Cri {
    dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Cri {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Cri {
    async fn start() -> Cri {
        let streaming = Arc::new(start().await);
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("cri.sock")).unwrap();
        let cri = TestCri { streaming };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(RuntimeServiceServer::new(cri.clone()))
                .add_service(ImageServiceServer::new(cri))
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await;
        });
        Cri { dir, server }
    }

    /// crictl's arguments up to the subcommand.
    fn args(&self) -> Vec<String> {
        let endpoint = format!("unix://{}", self.dir.path().join("cri.sock").display());
        vec![
            "--runtime-endpoint".into(),
            endpoint.clone(),
            "--image-endpoint".into(),
            endpoint,
            "--timeout".into(),
            "30s".into(),
        ]
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(crictl_bin());
        cmd.args(self.args()).args(args).kill_on_drop(true);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    async fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self.command(args).spawn().expect("spawn crictl");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("crictl timed out")
            .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_exec_returns_streams_and_exit_status() {
    let cri = Cri::start().await;
    for transport in ["spdy", "websocket"] {
        let out =
            cri.run(&["exec", "--transport", transport, "c1", "sh", "-c", "echo out; echo err >&2; exit 3"], b"").await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(stdout, "out\n", "{transport}: {stderr}");
        assert!(stderr.contains("\nerr\n") || stderr.starts_with("err\n"), "{transport}: {stderr}");
        assert!(stderr.contains("command terminated with exit code 3"), "{transport}: {stderr}");
        // crictl reports the remote exit code in its message and exits 1 itself.
        assert_eq!(out.status.code(), Some(1), "{transport}: {stderr}");

        let out = cri.run(&["exec", "-i", "--transport", transport, "c1", "cat"], b"piped input\n").await;
        assert_eq!((text(&out.stdout).as_str(), out.status.code()), ("piped input\n", Some(0)), "{transport}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_attach_reads_stdin() {
    let cri = Cri::start().await;
    for transport in ["spdy", "websocket"] {
        let out = cri.run(&["attach", "-i", "--transport", transport, "c1"], b"attached\n").await;
        assert_eq!(text(&out.stdout), "attached\n", "{transport}: {}", text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{transport}: {}", text(&out.stderr));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_port_forward_reaches_the_target() {
    let cri = Cri::start().await;
    let (port, _server) = super::tagged_echo_server("T").await;
    for transport in ["spdy", "websocket"] {
        let mut child =
            cri.command(&["port-forward", "--transport", transport, "pod1", &format!("0:{port}")]).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        // "Forwarding from 127.0.0.1:41235 -> 8080"
        let local: u16 = line
            .split_once("127.0.0.1:")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected crictl output: {line}"));
        for i in 0..3 {
            let reply = super::round_trip(local, format!("{transport} {i}").into_bytes()).await;
            assert_eq!(text(&reply), format!("T:{transport} {i}"));
        }
        child.kill().await.unwrap();
    }
}

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux")
    }

    /// Polls the pane until it shows `needle`.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = text(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout);
            if screen.contains(needle) {
                return screen;
            }
            assert!(Instant::now() < deadline, "terminal never showed {needle:?}:\n{screen}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
        // A server that exited on its own leaves its socket behind.
        let dir = std::env::var("TMUX_TMPDIR").unwrap_or_else(|_| "/tmp".into());
        let _ = std::fs::remove_file(format!("{dir}/tmux-{}/{}", nix::unistd::getuid(), self.socket));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_exec_it_in_a_terminal_follows_resizes() {
    let cri = Cri::start().await;
    for transport in ["spdy", "websocket"] {
        let tmux = Tmux { socket: format!("corral-streaming-{}-{transport}", std::process::id()) };
        let mut command = vec![crictl_bin().display().to_string()];
        command.extend(cri.args());
        command.extend(["exec", "-it", "--transport", transport, "c1", "sh"].map(String::from));
        let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "100", "-y", "40", &command.join(" ")]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        tmux.wait_for("#").await; // the shell's prompt
        tmux.cmd(&["send-keys", "-t", "t", "stty size", "Enter"]);
        tmux.wait_for("40 100").await;
        tmux.cmd(&["resize-window", "-t", "t", "-x", "120", "-y", "50"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        tmux.cmd(&["send-keys", "-t", "t", "clear; stty size", "Enter"]);
        tmux.wait_for("50 120").await;
        tmux.cmd(&["send-keys", "-t", "t", "exit", "Enter"]);
        // crictl exits with the shell, and tmux with it.
        let deadline = Instant::now() + Duration::from_secs(15);
        while tmux.cmd(&["has-session", "-t", "t"]).status.success() {
            assert!(Instant::now() < deadline, "{transport}: crictl exec -it did not end after `exit`");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
