//! The tonic `ImageService` implementation: dispatch only.
//!
//! Each RPC calls the matching method of [`Daemon`] in `image.rs`; RPCs whose issue has not
//! landed yet answer `UNIMPLEMENTED` with the RPC's name.

use corral_cri::v1;
use corral_cri::v1::image_service_server::ImageService;
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::{BoxStream, Daemon, in_pages, reply};

/// Serves `runtime.v1.ImageService` from the shared [`Daemon`].
pub struct ImageServer {
    daemon: Arc<Daemon>,
}

impl ImageServer {
    /// The service over `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageServer { daemon }
    }
}

#[tonic::async_trait]
impl ImageService for ImageServer {
    async fn list_images(
        &self,
        req: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        reply(self.daemon.list_images(req.into_inner()))
    }

    type StreamImagesStream = BoxStream<v1::StreamImagesResponse>;

    async fn stream_images(
        &self,
        req: Request<v1::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let filter = req.into_inner().filter;
        let listed = self.daemon.list_images(v1::ListImagesRequest { filter });
        reply(listed.map(|list| in_pages(list.images, |images| v1::StreamImagesResponse { images })))
    }

    async fn image_status(
        &self,
        req: Request<v1::ImageStatusRequest>,
    ) -> Result<Response<v1::ImageStatusResponse>, Status> {
        reply(self.daemon.image_status(req.into_inner()))
    }

    async fn pull_image(&self, req: Request<v1::PullImageRequest>) -> Result<Response<v1::PullImageResponse>, Status> {
        reply(self.daemon.pull_image(req.into_inner()).await)
    }

    async fn remove_image(
        &self,
        req: Request<v1::RemoveImageRequest>,
    ) -> Result<Response<v1::RemoveImageResponse>, Status> {
        reply(self.daemon.remove_image(req.into_inner()).await)
    }

    async fn image_fs_info(
        &self,
        req: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        reply(self.daemon.image_fs_info(req.into_inner()).await)
    }
}
