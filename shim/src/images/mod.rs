//! The image store: pulls from OCI registries, a content-addressed blob store, one overlayfs
//! lower directory per layer, and the image records CRI reports.
//!
//! | file | what |
//! |---|---|
//! | `reference.rs` | image names: parsing and Docker-style normalization |
//! | `digest.rs` | `sha256:` digests, chain ids |
//! | `oci.rs` | manifest / index / config documents |
//! | `registry/` | the distribution-API client: endpoints, mirrors, auth |
//! | `content.rs` | verified blobs by digest |
//! | `unpack/` | hostile-input-safe layer unpacking into overlayfs form |
//! | `snapshots.rs` | unpacked layers by chain id |
//! | `image.rs` | image records (persisted) |
//! | `store.rs` | the store: resolve, list, remove, garbage collection |
//! | `pull.rs` | the pull pipeline |
//! | `fs_usage.rs` | bytes/inodes for `ImageFsInfo` |

mod content;
pub(crate) mod digest;
mod error;
pub mod fs_usage;
mod fsutil;
mod image;
pub(crate) mod oci;
mod pull;
pub(crate) mod reference;
pub mod registry;
mod snapshots;
mod store;
pub(crate) mod unpack;

pub use digest::ImageId;
pub use error::ImageError;
pub use image::Image;
#[allow(unused_imports, reason = "the image config CreateContainer reads (containers issue)")]
pub use image::{ImageConfig, Layer};
pub use registry::AuthConfig;
pub use store::ImageStore;

#[cfg(test)]
pub(crate) mod tests;
