//! The image RPCs: PullImage, ListImages, ImageStatus, RemoveImage, ImageFsInfo.

use corral_cri::v1;

use super::{Daemon, now_nanos};
use crate::error::{CriError, CriResult};
use crate::images::fs_usage;

impl Daemon {
    /// Real bytes and inodes under the image store; kubelet's image GC and eviction act on them.
    pub(super) async fn image_fs_info(&self, _req: v1::ImageFsInfoRequest) -> CriResult<v1::ImageFsInfoResponse> {
        let dir = self.config.image_dir();
        let measured = dir.clone();
        let usage = tokio::task::spawn_blocking(move || fs_usage::measure(&measured))
            .await
            .map_err(|e| CriError::Internal(format!("measuring {}: {e}", dir.display())))?
            .map_err(|e| CriError::Internal(format!("measuring {}: {e}", dir.display())))?;
        Ok(v1::ImageFsInfoResponse {
            image_filesystems: vec![v1::FilesystemUsage {
                timestamp: now_nanos(),
                fs_id: Some(v1::FilesystemIdentifier { mountpoint: dir.display().to_string() }),
                used_bytes: Some(v1::UInt64Value { value: usage.bytes }),
                inodes_used: Some(v1::UInt64Value { value: usage.inodes }),
            }],
            container_filesystems: Vec::new(),
        })
    }
}
