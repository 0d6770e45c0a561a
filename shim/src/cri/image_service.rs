//! The tonic `ImageService` implementation: dispatch only.
//!
//! Each RPC calls the matching method of [`Daemon`] in `image.rs`; RPCs whose issue has not
//! landed yet answer `UNIMPLEMENTED` with the RPC's name.

use corral_cri::v1;
use corral_cri::v1::image_service_server::ImageService;
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::{BoxStream, Daemon, reply};
use crate::error::CriError;

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
        _req: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        reply(Err(CriError::Unimplemented("ListImages")))
    }

    type StreamImagesStream = BoxStream<v1::StreamImagesResponse>;

    async fn stream_images(
        &self,
        _req: Request<v1::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        reply(Err(CriError::Unimplemented("StreamImages")))
    }

    async fn image_status(
        &self,
        _req: Request<v1::ImageStatusRequest>,
    ) -> Result<Response<v1::ImageStatusResponse>, Status> {
        reply(Err(CriError::Unimplemented("ImageStatus")))
    }

    async fn pull_image(&self, _req: Request<v1::PullImageRequest>) -> Result<Response<v1::PullImageResponse>, Status> {
        reply(Err(CriError::Unimplemented("PullImage")))
    }

    async fn remove_image(
        &self,
        _req: Request<v1::RemoveImageRequest>,
    ) -> Result<Response<v1::RemoveImageResponse>, Status> {
        reply(Err(CriError::Unimplemented("RemoveImage")))
    }

    async fn image_fs_info(
        &self,
        req: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        reply(self.daemon.image_fs_info(req.into_inner()).await)
    }
}
