//! The image RPCs: PullImage, ListImages, ImageStatus, RemoveImage, ImageFsInfo.
//!
//! CRI rules kept here (see ../shared/cri-notes.md): `ImageStatus` of an unknown image is an
//! empty response, not an error; `RemoveImage` of an unknown image succeeds; removing by one
//! tag removes the image with all its tags; `PullImageResponse.image_ref` is the image id
//! (config digest), the same string `Image.id` reports (cri-api v0.37).

use std::collections::HashMap;

use corral_cri::v1;

use super::{Daemon, now_nanos};
use crate::error::{CriError, CriResult};
use crate::images::{AuthConfig, Image, ImageId};

impl Daemon {
    /// Pulls the image and answers its id.
    pub(super) async fn pull_image(&self, req: v1::PullImageRequest) -> CriResult<v1::PullImageResponse> {
        let name = image_name(req.image.as_ref())?;
        let auth = req.auth.map(auth_config).unwrap_or_default();
        let pulled = self.images.pull(&name, &auth).await;
        // A pull allocates megabytes of buffers (TLS, decompression, tar) that glibc keeps in
        // its arenas after they are freed: hand them back, so an idle node's daemon stays small.
        // SAFETY: plain libc call without pointers.
        unsafe { libc::malloc_trim(0) };
        Ok(v1::PullImageResponse { image_ref: pulled?.to_string() })
    }

    /// All images, or the one the filter names.
    pub(super) fn list_images(&self, req: v1::ListImagesRequest) -> CriResult<v1::ListImagesResponse> {
        let filter = req.filter.and_then(|f| f.image).map(|spec| spec.image);
        let images = self.images.list(filter.as_deref()).iter().map(to_cri).collect();
        Ok(v1::ListImagesResponse { images })
    }

    /// The image, or an empty response for an unknown one; `verbose` adds the config as JSON.
    pub(super) fn image_status(&self, req: v1::ImageStatusRequest) -> CriResult<v1::ImageStatusResponse> {
        let name = image_name(req.image.as_ref())?;
        let Some(image) = self.images.resolve(&name) else {
            return Ok(v1::ImageStatusResponse { image: None, info: HashMap::new() });
        };
        let mut info = HashMap::new();
        if req.verbose {
            info.insert("info".to_owned(), verbose_info(&image));
        }
        Ok(v1::ImageStatusResponse { image: Some(to_cri(&image)), info })
    }

    /// Removes the image and all its tags; succeeds if it is already gone.
    pub(super) async fn remove_image(&self, req: v1::RemoveImageRequest) -> CriResult<v1::RemoveImageResponse> {
        let name = image_name(req.image.as_ref())?;
        let images = self.images.clone();
        let daemon_in_use = |id: &ImageId| self.image_in_use(id);
        // Resolve and check use here; delete (slow for big images) on a blocking thread.
        let Some(image) = images.resolve(&name) else { return Ok(v1::RemoveImageResponse {}) };
        if daemon_in_use(&image.id) {
            return Err(crate::images::ImageError::InUse { image: name }.into());
        }
        let id = image.id.to_string();
        tokio::task::spawn_blocking(move || images.remove(&id, |_| false))
            .await
            .map_err(|e| CriError::Internal(format!("removing image {name}: {e}")))??;
        Ok(v1::RemoveImageResponse {})
    }

    /// Whether any container (in any state) was created from the image: removing it would
    /// pull the layers out from under the container's rootfs.
    fn image_in_use(&self, id: &ImageId) -> bool {
        let id = id.to_string();
        self.containers.list().iter().any(|c| c.image_id == id)
    }

    /// Real bytes and inodes under the image store; kubelet's image GC and eviction act on them.
    pub(super) async fn image_fs_info(&self, _req: v1::ImageFsInfoRequest) -> CriResult<v1::ImageFsInfoResponse> {
        let images = self.images.clone();
        let dir = images.dir().to_owned();
        let usage = tokio::task::spawn_blocking(move || images.fs_usage())
            .await
            .map_err(|e| CriError::Internal(format!("measuring {}: {e}", dir.display())))??;
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

fn image_name(spec: Option<&v1::ImageSpec>) -> CriResult<String> {
    match spec.map(|s| s.image.trim()) {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(CriError::InvalidArgument("image name is required (ImageSpec.image is empty)".into())),
    }
}

fn auth_config(a: v1::AuthConfig) -> AuthConfig {
    AuthConfig {
        username: a.username,
        password: a.password,
        auth: a.auth,
        server_address: a.server_address,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
    }
}

fn to_cri(image: &Image) -> v1::Image {
    let (uid, username) = image.uid_and_username();
    v1::Image {
        id: image.id.to_string(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid: uid.map(|value| v1::Int64Value { value }),
        username,
        spec: Some(v1::ImageSpec { image: image.id.to_string(), ..Default::default() }),
        pinned: image.pinned,
    }
}

/// `crictl inspecti` shows this: the run config, layers and chain ids, as containerd's
/// verbose `info` does.
fn verbose_info(image: &Image) -> String {
    let info = serde_json::json!({
        "imageSpec": {
            "config": {
                "User": image.config.user,
                "Env": image.config.env,
                "Entrypoint": image.config.entrypoint,
                "Cmd": image.config.cmd,
                "WorkingDir": image.config.working_dir,
                "ExposedPorts": image.config.exposed_ports,
                "Volumes": image.config.volumes,
                "StopSignal": image.config.stop_signal,
                "Labels": image.config.labels,
            },
            "rootfs": { "type": "layers", "diff_ids": image.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>() },
        },
        "layers": image.layers,
        "manifests": image.manifests,
        "pulledAt": image.pulled_at,
    });
    info.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::tests::registry::TestRegistry;

    fn spec(image: &str) -> Option<v1::ImageSpec> {
        Some(v1::ImageSpec { image: image.into(), ..Default::default() })
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn image_rpcs_follow_the_cri_rules() {
        let registry = TestRegistry::start();
        let pushed = crate::images::tests::push_busybox(&registry, "busybox", "latest").await;
        let dir = tempfile::tempdir().unwrap();
        let daemon = crate::cri::test_daemon(dir.path()).await;
        let name = format!("{}/busybox:latest", registry.addr);

        // Unknown image: empty status, no error; removal succeeds.
        let status = daemon.image_status(v1::ImageStatusRequest { image: spec(&name), verbose: false }).unwrap();
        assert!(status.image.is_none());
        daemon.remove_image(v1::RemoveImageRequest { image: spec(&name) }).await.unwrap();

        let pulled = daemon
            .pull_image(v1::PullImageRequest { image: spec(&name), auth: None, sandbox_config: None })
            .await
            .unwrap();
        assert_eq!(pulled.image_ref, pushed.config.to_string());
        let status = daemon.image_status(v1::ImageStatusRequest { image: spec(&name), verbose: true }).unwrap();
        let image = status.image.unwrap();
        assert_eq!(image.id, pulled.image_ref, "PullImageResponse.image_ref equals Image.id");
        assert_eq!(image.repo_tags, std::slice::from_ref(&name));
        assert_eq!(image.repo_digests, [format!("{}/busybox@{}", registry.addr, pushed.manifest)]);
        assert!(image.size > 1_000_000 && image.uid.is_none() && image.username.is_empty());
        let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
        assert_eq!(info["imageSpec"]["config"]["Cmd"], serde_json::json!(["sh"]));

        let all = daemon.list_images(v1::ListImagesRequest { filter: None }).unwrap();
        assert_eq!(all.images.len(), 1);
        let filter = Some(v1::ImageFilter { image: spec("nothere") });
        assert!(daemon.list_images(v1::ListImagesRequest { filter }).unwrap().images.is_empty());

        let fs = daemon.image_fs_info(v1::ImageFsInfoRequest {}).await.unwrap();
        let used = fs.image_filesystems[0].used_bytes.as_ref().unwrap().value;
        assert!(used > 1_000_000, "{used}");

        let err = daemon.image_status(v1::ImageStatusRequest { image: spec(""), verbose: false }).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = daemon
            .pull_image(v1::PullImageRequest { image: spec(&format!("{}/nope", registry.addr)), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{err}");

        daemon.remove_image(v1::RemoveImageRequest { image: spec(&pulled.image_ref) }).await.unwrap();
        assert!(daemon.list_images(v1::ListImagesRequest { filter: None }).unwrap().images.is_empty());
        daemon.remove_image(v1::RemoveImageRequest { image: spec(&pulled.image_ref) }).await.unwrap();
    }

    #[test]
    fn image_errors_map_to_grpc_codes() {
        use crate::images::ImageError as E;
        let code = |e: E| CriError::from(e).code();
        assert_eq!(code(E::InUse { image: "x".into() }), tonic::Code::FailedPrecondition);
        assert_eq!(
            code(E::Stalled { reference: "r".into(), secs: 1, step: "s".into() }),
            tonic::Code::DeadlineExceeded
        );
        assert_eq!(
            code(E::InvalidReference { reference: "R".into(), reason: "x".into() }),
            tonic::Code::InvalidArgument
        );
        assert_eq!(code(E::NotFound { what: "m".into(), registry: "r".into() }), tonic::Code::NotFound);
    }
}
