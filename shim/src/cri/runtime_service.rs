//! The tonic `RuntimeService` implementation: dispatch only.
//!
//! Each RPC calls the matching method of [`Daemon`] in its family file; RPCs whose issue has
//! not landed yet answer `UNIMPLEMENTED` with the RPC's name.

use corral_cri::v1;
use corral_cri::v1::runtime_service_server::RuntimeService;
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::{BoxStream, Daemon, in_pages, reply};
use crate::error::{CriError, CriResult};

/// Serves `runtime.v1.RuntimeService` from the shared [`Daemon`].
pub struct RuntimeServer {
    daemon: Arc<Daemon>,
}

impl RuntimeServer {
    /// The service over `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        RuntimeServer { daemon }
    }

    /// Metrics walk /proc and every writable layer: off the async workers.
    async fn pod_sandbox_metrics(&self) -> CriResult<v1::ListPodSandboxMetricsResponse> {
        let daemon = self.daemon.clone();
        tokio::task::spawn_blocking(move || daemon.list_pod_sandbox_metrics())
            .await
            .map_err(|e| CriError::Internal(format!("reading pod metrics: {e}")))
    }
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServer {
    async fn version(&self, req: Request<v1::VersionRequest>) -> Result<Response<v1::VersionResponse>, Status> {
        reply(self.daemon.version(req.into_inner()))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<v1::RunPodSandboxRequest>,
    ) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        reply(self.daemon.run_pod_sandbox(req.into_inner()).await)
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<v1::StopPodSandboxRequest>,
    ) -> Result<Response<v1::StopPodSandboxResponse>, Status> {
        reply(self.daemon.stop_pod_sandbox(req.into_inner()).await)
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<v1::RemovePodSandboxRequest>,
    ) -> Result<Response<v1::RemovePodSandboxResponse>, Status> {
        reply(self.daemon.remove_pod_sandbox(req.into_inner()).await)
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<v1::PodSandboxStatusRequest>,
    ) -> Result<Response<v1::PodSandboxStatusResponse>, Status> {
        reply(self.daemon.pod_sandbox_status(req.into_inner()))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<v1::ListPodSandboxRequest>,
    ) -> Result<Response<v1::ListPodSandboxResponse>, Status> {
        reply(self.daemon.list_pod_sandbox(req.into_inner()))
    }

    type StreamPodSandboxesStream = BoxStream<v1::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        req: Request<v1::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let listed = self.daemon.list_pod_sandbox(v1::ListPodSandboxRequest { filter: req.into_inner().filter });
        reply(listed.map(|list| in_pages(list.items, |pod_sandboxes| v1::StreamPodSandboxesResponse { pod_sandboxes })))
    }

    async fn create_container(
        &self,
        req: Request<v1::CreateContainerRequest>,
    ) -> Result<Response<v1::CreateContainerResponse>, Status> {
        reply(self.daemon.create_container(req.into_inner()).await)
    }

    async fn start_container(
        &self,
        req: Request<v1::StartContainerRequest>,
    ) -> Result<Response<v1::StartContainerResponse>, Status> {
        reply(self.daemon.start_container(req.into_inner()).await)
    }

    async fn stop_container(
        &self,
        req: Request<v1::StopContainerRequest>,
    ) -> Result<Response<v1::StopContainerResponse>, Status> {
        reply(self.daemon.stop_container(req.into_inner()).await)
    }

    async fn remove_container(
        &self,
        req: Request<v1::RemoveContainerRequest>,
    ) -> Result<Response<v1::RemoveContainerResponse>, Status> {
        reply(self.daemon.remove_container(req.into_inner()).await)
    }

    async fn list_containers(
        &self,
        req: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        reply(self.daemon.list_containers(req.into_inner()))
    }

    type StreamContainersStream = BoxStream<v1::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        req: Request<v1::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let listed = self.daemon.list_containers(v1::ListContainersRequest { filter: req.into_inner().filter });
        reply(listed.map(|list| in_pages(list.containers, |containers| v1::StreamContainersResponse { containers })))
    }

    async fn container_status(
        &self,
        req: Request<v1::ContainerStatusRequest>,
    ) -> Result<Response<v1::ContainerStatusResponse>, Status> {
        reply(self.daemon.container_status(req.into_inner()))
    }

    async fn update_container_resources(
        &self,
        req: Request<v1::UpdateContainerResourcesRequest>,
    ) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        reply(self.daemon.update_container_resources(req.into_inner()).await)
    }

    async fn reopen_container_log(
        &self,
        req: Request<v1::ReopenContainerLogRequest>,
    ) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        reply(self.daemon.reopen_container_log(req.into_inner()).await)
    }

    async fn exec_sync(&self, req: Request<v1::ExecSyncRequest>) -> Result<Response<v1::ExecSyncResponse>, Status> {
        reply(self.daemon.exec_sync(req.into_inner()).await)
    }

    async fn exec(&self, req: Request<v1::ExecRequest>) -> Result<Response<v1::ExecResponse>, Status> {
        reply(self.daemon.exec(req.into_inner()))
    }

    async fn attach(&self, req: Request<v1::AttachRequest>) -> Result<Response<v1::AttachResponse>, Status> {
        reply(self.daemon.attach(req.into_inner()))
    }

    async fn port_forward(
        &self,
        req: Request<v1::PortForwardRequest>,
    ) -> Result<Response<v1::PortForwardResponse>, Status> {
        reply(self.daemon.port_forward(req.into_inner()))
    }

    async fn container_stats(
        &self,
        req: Request<v1::ContainerStatsRequest>,
    ) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        reply(self.daemon.container_stats(req.into_inner()))
    }

    async fn list_container_stats(
        &self,
        req: Request<v1::ListContainerStatsRequest>,
    ) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        reply(self.daemon.list_container_stats(req.into_inner()))
    }

    type StreamContainerStatsStream = BoxStream<v1::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        req: Request<v1::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let listed =
            self.daemon.list_container_stats(v1::ListContainerStatsRequest { filter: req.into_inner().filter });
        reply(
            listed.map(|list| {
                in_pages(list.stats, |container_stats| v1::StreamContainerStatsResponse { container_stats })
            }),
        )
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<v1::PodSandboxStatsRequest>,
    ) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        reply(self.daemon.pod_sandbox_stats(req.into_inner()))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<v1::ListPodSandboxStatsRequest>,
    ) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        reply(self.daemon.list_pod_sandbox_stats(req.into_inner()))
    }

    type StreamPodSandboxStatsStream = BoxStream<v1::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        req: Request<v1::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let listed =
            self.daemon.list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest { filter: req.into_inner().filter });
        reply(listed.map(|list| {
            in_pages(list.stats, |pod_sandbox_stats| v1::StreamPodSandboxStatsResponse { pod_sandbox_stats })
        }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<v1::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<v1::UpdateRuntimeConfigResponse>, Status> {
        reply(self.daemon.update_runtime_config(req.into_inner()))
    }

    async fn status(&self, req: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        reply(self.daemon.status(req.into_inner()).await)
    }

    async fn checkpoint_container(
        &self,
        _req: Request<v1::CheckpointContainerRequest>,
    ) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        reply(Err(CriError::Unimplemented("CheckpointContainer")))
    }

    async fn checkpoint_pod(
        &self,
        _req: Request<v1::CheckpointPodRequest>,
    ) -> Result<Response<v1::CheckpointPodResponse>, Status> {
        reply(Err(CriError::Unimplemented("CheckpointPod")))
    }

    async fn restore_pod(
        &self,
        _req: Request<v1::RestorePodRequest>,
    ) -> Result<Response<v1::RestorePodResponse>, Status> {
        reply(Err(CriError::Unimplemented("RestorePod")))
    }

    type GetContainerEventsStream = BoxStream<v1::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _req: Request<v1::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Ok(Response::new(self.daemon.events.subscribe()))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<v1::ListMetricDescriptorsRequest>,
    ) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        reply(Ok(super::metrics::list_metric_descriptors()))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<v1::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        reply(self.pod_sandbox_metrics().await)
    }

    type StreamPodSandboxMetricsStream = BoxStream<v1::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<v1::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let list = self.daemon.list_pod_sandbox_metrics();
        reply(Ok(in_pages(list.pod_metrics, |pod_sandbox_metrics| v1::StreamPodSandboxMetricsResponse {
            pod_sandbox_metrics,
        })))
    }

    async fn runtime_config(
        &self,
        req: Request<v1::RuntimeConfigRequest>,
    ) -> Result<Response<v1::RuntimeConfigResponse>, Status> {
        reply(self.daemon.runtime_config(req.into_inner()))
    }

    async fn update_pod_sandbox_resources(
        &self,
        req: Request<v1::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<v1::UpdatePodSandboxResourcesResponse>, Status> {
        reply(self.daemon.update_pod_sandbox_resources(req.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    /// A pod that needs no network, no pause process and pins nothing: cheap to make.
    fn host_pod(name: &str, tier: &str) -> v1::RunPodSandboxRequest {
        let (node, container) = (v1::NamespaceMode::Node as i32, v1::NamespaceMode::Container as i32);
        v1::RunPodSandboxRequest {
            config: Some(v1::PodSandboxConfig {
                metadata: Some(v1::PodSandboxMetadata {
                    name: name.into(),
                    uid: format!("uid-{name}"),
                    namespace: "stream".into(),
                    attempt: 0,
                }),
                labels: [("tier".to_string(), tier.to_string())].into(),
                linux: Some(v1::LinuxPodSandboxConfig {
                    security_context: Some(v1::LinuxSandboxSecurityContext {
                        namespace_options: Some(v1::NamespaceOption {
                            network: node,
                            ipc: node,
                            pid: container,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    #[tokio::test]
    async fn streaming_lists_answer_like_the_plain_lists_with_their_filters() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = crate::cri::test_daemon(dir.path()).await;
        let server = RuntimeServer::new(Arc::clone(&daemon));
        let mut ids = Vec::new();
        for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
            ids.push(daemon.run_pod_sandbox(host_pod(name, tier)).await.unwrap().pod_sandbox_id);
        }

        let filter =
            v1::PodSandboxFilter { label_selector: [("tier".into(), "web".into())].into(), ..Default::default() };
        let req = Request::new(v1::StreamPodSandboxesRequest { filter: Some(filter) });
        let pages: Vec<_> = server.stream_pod_sandboxes(req).await.unwrap().into_inner().collect().await;
        let mut streamed: Vec<String> =
            pages.into_iter().flat_map(|p| p.unwrap().pod_sandboxes).map(|p| p.id).collect();
        streamed.sort();
        let mut web = ids[..2].to_vec();
        web.sort();
        assert_eq!(streamed, web);

        // No containers: one empty page, not an empty stream.
        let req = Request::new(v1::StreamContainersRequest { filter: None });
        let pages: Vec<_> = server.stream_containers(req).await.unwrap().into_inner().collect().await;
        assert_eq!(pages.len(), 1);
        assert!(pages[0].as_ref().unwrap().containers.is_empty());

        for id in ids {
            daemon.stop_pod_sandbox(v1::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await.unwrap();
            daemon.remove_pod_sandbox(v1::RemovePodSandboxRequest { pod_sandbox_id: id }).await.unwrap();
        }
    }

    #[tokio::test]
    async fn long_lists_are_split_into_pages_in_order() {
        let pages: Vec<_> = super::in_pages((0..600).collect(), |n: Vec<i32>| n).collect::<Vec<_>>().await;
        let sizes: Vec<usize> = pages.iter().map(|p| p.as_ref().unwrap().len()).collect();
        assert_eq!(sizes, [256, 256, 88]);
        let all: Vec<i32> = pages.into_iter().flat_map(|p| p.unwrap()).collect();
        assert_eq!(all, (0..600).collect::<Vec<_>>());
        let exact: Vec<_> = super::in_pages((0..256).collect(), |n: Vec<i32>| n).collect::<Vec<_>>().await;
        assert_eq!(exact.len(), 1);
    }
}
