//! The CRI gRPC services, one file per RPC family (as containerd's CRI plugin does).
//!
//! `runtime_service.rs` and `image_service.rs` hold the tonic trait impls and only
//! dispatch; the work is in the family files (`runtime_info.rs`, ...). Every handler
//! returns [`CriResult`], turned into a gRPC status by [`reply`].

mod image;
mod image_service;
mod runtime_info;
mod runtime_service;

use std::pin::Pin;
use std::sync::{Arc, RwLock};

use tokio_stream::Stream;
use tonic::{Response, Status};

use crate::config::Config;
use crate::error::CriResult;
use crate::images::ImageStore;

pub use image_service::ImageServer;
pub use runtime_service::RuntimeServer;

/// State shared by both services.
pub struct Daemon {
    /// The effective configuration.
    pub config: Config,
    /// Pod CIDR last given by `UpdateRuntimeConfig` (kubelet in cluster mode sends it).
    pub runtime_pod_cidr: RwLock<Option<String>>,
    /// The image store (pulls, records, layer directories).
    pub images: Arc<ImageStore>,
}

impl Daemon {
    /// A daemon with this configuration and nothing running yet; opens the image store.
    pub fn new(config: Config) -> anyhow::Result<Arc<Daemon>> {
        let images = Arc::new(ImageStore::open(&config.image_dir(), &config.images)?);
        Ok(Arc::new(Daemon { config, runtime_pod_cidr: RwLock::new(None), images }))
    }
}

/// A server-streaming response body.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Turns a handler result into a gRPC reply, logging failures in the request's span.
fn reply<T>(result: CriResult<T>) -> Result<Response<T>, Status> {
    match result {
        Ok(value) => Ok(Response::new(value)),
        Err(err) => {
            tracing::warn!(code = ?err.code(), "{err}");
            Err(err.into())
        }
    }
}

/// Nanoseconds since the Unix epoch, the CRI's timestamp unit.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}
