//! A thin CRI client over a unix socket: corral's own generated tonic client, one HTTP/2
//! connection shared by every call (as kubelet does), no crictl process per call.
//!
//! Each method is one RPC and turns a failed call into a [`BenchError::Rpc`] naming it.
//! Methods take `&self` (the tonic clients are cheap clones of one channel), so concurrent
//! scenarios can share a `Cri`.

use std::collections::HashMap;

use corral_cri::v1;
use corral_cri::v1::image_service_client::ImageServiceClient;
use corral_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint};

use super::error::{BenchError, Result};

/// A connection to one CRI endpoint (runtime and image service on the same socket).
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
}

/// What `ExecSync` returned.
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Cri {
    /// Connects to `unix:///path/to.sock` (a bare path is taken as a unix socket too).
    pub async fn connect(endpoint: &str) -> Result<Cri> {
        let uri = if endpoint.starts_with("unix:") { endpoint.to_owned() } else { format!("unix://{endpoint}") };
        let connect_err = |source| BenchError::Connect { endpoint: uri.clone(), source };
        let channel = Endpoint::from_shared(uri.clone()).map_err(connect_err)?.connect().await.map_err(connect_err)?;
        // The runtime answers with up to 16 MiB (kubelet's limit too): ListContainers at scale.
        const MAX_MESSAGE: usize = 16 * 1024 * 1024;
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            image: ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
        })
    }

    pub async fn version(&self) -> Result<v1::VersionResponse> {
        let req = v1::VersionRequest { version: "v1".into() };
        let resp = self.runtime.clone().version(req).await.map_err(|s| BenchError::rpc("Version", s))?;
        Ok(resp.into_inner())
    }

    pub async fn run_pod(&self, config: v1::PodSandboxConfig) -> Result<String> {
        let req = v1::RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
        let resp = self.runtime.clone().run_pod_sandbox(req).await.map_err(|s| BenchError::rpc("RunPodSandbox", s))?;
        Ok(resp.into_inner().pod_sandbox_id)
    }

    pub async fn stop_pod(&self, id: &str) -> Result<()> {
        let req = v1::StopPodSandboxRequest { pod_sandbox_id: id.to_owned() };
        self.runtime.clone().stop_pod_sandbox(req).await.map_err(|s| BenchError::rpc("StopPodSandbox", s))?;
        Ok(())
    }

    pub async fn remove_pod(&self, id: &str) -> Result<()> {
        let req = v1::RemovePodSandboxRequest { pod_sandbox_id: id.to_owned() };
        self.runtime.clone().remove_pod_sandbox(req).await.map_err(|s| BenchError::rpc("RemovePodSandbox", s))?;
        Ok(())
    }

    /// The `info` map of `PodSandboxStatus` with `verbose`: runtime-specific JSON strings.
    pub async fn pod_info(&self, id: &str) -> Result<HashMap<String, String>> {
        let req = v1::PodSandboxStatusRequest { pod_sandbox_id: id.to_owned(), verbose: true };
        let resp =
            self.runtime.clone().pod_sandbox_status(req).await.map_err(|s| BenchError::rpc("PodSandboxStatus", s))?;
        Ok(resp.into_inner().info)
    }

    /// Pods whose labels include every pair of `labels`.
    pub async fn list_pods(&self, labels: &HashMap<String, String>) -> Result<Vec<v1::PodSandbox>> {
        let filter = v1::PodSandboxFilter { label_selector: labels.clone(), ..Default::default() };
        let req = v1::ListPodSandboxRequest { filter: Some(filter) };
        let resp =
            self.runtime.clone().list_pod_sandbox(req).await.map_err(|s| BenchError::rpc("ListPodSandbox", s))?;
        Ok(resp.into_inner().items)
    }

    pub async fn create_container(
        &self,
        pod_id: &str,
        config: v1::ContainerConfig,
        pod_config: v1::PodSandboxConfig,
    ) -> Result<String> {
        let req = v1::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        };
        let resp =
            self.runtime.clone().create_container(req).await.map_err(|s| BenchError::rpc("CreateContainer", s))?;
        Ok(resp.into_inner().container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let req = v1::StartContainerRequest { container_id: id.to_owned() };
        self.runtime.clone().start_container(req).await.map_err(|s| BenchError::rpc("StartContainer", s))?;
        Ok(())
    }

    /// Stops with a grace period of `timeout_secs` (0: SIGKILL at once).
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let req = v1::StopContainerRequest { container_id: id.to_owned(), timeout: timeout_secs };
        self.runtime.clone().stop_container(req).await.map_err(|s| BenchError::rpc("StopContainer", s))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let req = v1::RemoveContainerRequest { container_id: id.to_owned() };
        self.runtime.clone().remove_container(req).await.map_err(|s| BenchError::rpc("RemoveContainer", s))?;
        Ok(())
    }

    /// Every container the runtime knows (no filter: the cost kubelet's relist pays).
    pub async fn list_containers(&self) -> Result<Vec<v1::Container>> {
        let req = v1::ListContainersRequest { filter: None };
        let resp = self.runtime.clone().list_containers(req).await.map_err(|s| BenchError::rpc("ListContainers", s))?;
        Ok(resp.into_inner().containers)
    }

    pub async fn exec_sync(&self, id: &str, cmd: &[&str], timeout_secs: i64) -> Result<ExecOutput> {
        let req = v1::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout: timeout_secs,
        };
        let resp = self.runtime.clone().exec_sync(req).await.map_err(|s| BenchError::rpc("ExecSync", s))?.into_inner();
        Ok(ExecOutput { exit_code: resp.exit_code, stdout: resp.stdout, stderr: resp.stderr })
    }

    /// Pulls `image`; returns the image reference the runtime resolved it to.
    pub async fn pull_image(&self, image: &str) -> Result<String> {
        let req = v1::PullImageRequest { image: Some(image_spec(image)), auth: None, sandbox_config: None };
        let resp = self.image.clone().pull_image(req).await.map_err(|s| BenchError::rpc("PullImage", s))?;
        Ok(resp.into_inner().image_ref)
    }

    /// Whether the runtime has `image`.
    pub async fn has_image(&self, image: &str) -> Result<bool> {
        let req = v1::ImageStatusRequest { image: Some(image_spec(image)), verbose: false };
        let resp = self.image.clone().image_status(req).await.map_err(|s| BenchError::rpc("ImageStatus", s))?;
        Ok(resp.into_inner().image.is_some())
    }

    /// Removes `image`; removing an image that is not there is not an error (CRI says so).
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let req = v1::RemoveImageRequest { image: Some(image_spec(image)) };
        self.image.clone().remove_image(req).await.map_err(|s| BenchError::rpc("RemoveImage", s))?;
        Ok(())
    }
}

fn image_spec(image: &str) -> v1::ImageSpec {
    v1::ImageSpec { image: image.to_owned(), ..Default::default() }
}
