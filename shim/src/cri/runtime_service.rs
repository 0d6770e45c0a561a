//! The tonic `RuntimeService` implementation: dispatch only.
//!
//! Each RPC calls the matching method of [`Daemon`] in its family file; RPCs whose issue has
//! not landed yet answer `UNIMPLEMENTED` with the RPC's name.

use corral_cri::v1;
use corral_cri::v1::runtime_service_server::RuntimeService;
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::{BoxStream, Daemon, reply};
use crate::error::CriError;

/// Serves `runtime.v1.RuntimeService` from the shared [`Daemon`].
pub struct RuntimeServer {
    daemon: Arc<Daemon>,
}

impl RuntimeServer {
    /// The service over `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        RuntimeServer { daemon }
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
        _req: Request<v1::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        reply(Err(CriError::Unimplemented("StreamPodSandboxes")))
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
        _req: Request<v1::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        reply(Err(CriError::Unimplemented("StreamContainers")))
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
        _req: Request<v1::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        reply(Err(CriError::Unimplemented("StreamContainerStats")))
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
        _req: Request<v1::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        reply(Err(CriError::Unimplemented("StreamPodSandboxStats")))
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
        reply(Err(CriError::Unimplemented("ListMetricDescriptors")))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<v1::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        reply(Err(CriError::Unimplemented("ListPodSandboxMetrics")))
    }

    type StreamPodSandboxMetricsStream = BoxStream<v1::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<v1::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        reply(Err(CriError::Unimplemented("StreamPodSandboxMetrics")))
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
