//! Pulling: layer formats, whiteouts, platforms, sharing, concurrency, mirrors, stalls.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::registry::{Pusher, StallingProxy, TestLayer, TestRegistry};
use super::tarball::Tarball;
use super::*;
use crate::config::MirrorConfig;
use crate::images::ImageError;

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Mounts the overlay `lowers` (top first) + a fresh upper dir in a private mount namespace
/// on a throw-away thread, runs `check` on the merged dir, and lets the namespace (and the
/// mount) die with the thread: nothing is ever mounted on the host.
fn with_overlay<T: Send + 'static>(lowers: Vec<PathBuf>, check: impl FnOnce(&Path) -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        use nix::mount::{MsFlags, mount};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let (upper, work, merged) =
            (scratch.path().join("upper"), scratch.path().join("work"), scratch.path().join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let opts = format!("lowerdir={lower},upperdir={},workdir={}", upper.display(), work.display());
        mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(opts.as_str())).unwrap();
        check(&merged)
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_layer_image_becomes_overlay_layers_with_whiteouts() {
    let registry = TestRegistry::start();
    let base = Tarball::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox())
        .dir("etc", 0o755)
        .file("etc/removed.conf", 0o644, b"gone in layer 2\n")
        .file("etc/kept.conf", 0o644, b"kept\n")
        .dir("data", 0o750)
        .dir("data/old", 0o755)
        .file("data/old/a.txt", 0o644, b"hidden by the opaque dir\n")
        .finish();
    let delete = Tarball::new()
        .dir("etc", 0o755)
        .file("etc/.wh.removed.conf", 0o644, b"")
        .dir("data", 0o750)
        .file("data/.wh..wh..opq", 0o644, b"")
        .file("data/new.txt", 0o644, b"new\n")
        .finish();
    let meta = Tarball::new()
        .dir("usr", 0o755)
        .file_with("usr/suid", 0o4755, 1000, 1_234_567_890, &[("user.origin", b"corral-test")], b"#!/bin/sh\n")
        .symlink("usr/sh", "/bin/busybox")
        .hardlink("usr/suid-link", "usr/suid")
        .node("usr/fifo", tar::EntryType::Fifo, 0, 0)
        .dir("dev", 0o755)
        .node("dev/null", tar::EntryType::Char, 1, 3)
        .finish();
    let pushed = Pusher::new(&registry)
        .image(
            "multi",
            "v1",
            &[TestLayer::gzip(base), TestLayer::gzip(delete), TestLayer::gzip(meta)],
            json!({"Entrypoint": ["/bin/busybox"], "Cmd": ["sh"], "Env": ["A=1"], "WorkingDir": "/data",
                   "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT", "User": "0"}),
            "amd64",
            false,
        )
        .await;

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let reference = format!("{}/multi:v1", registry.addr);
    let id = store.pull(&reference, &anonymous()).await.unwrap();
    assert_eq!(id, pushed.config, "the image id is the config digest");

    let image = store.resolve(&reference).unwrap();
    assert_eq!(image.repo_tags, std::slice::from_ref(&reference));
    assert_eq!(image.repo_digests, [format!("{}/multi@{}", registry.addr, pushed.manifest)]);
    let c = &image.config;
    assert_eq!(
        (c.entrypoint.clone(), c.cmd.clone(), c.env.clone()),
        (vec!["/bin/busybox".into()], vec!["sh".into()], vec!["A=1".into()])
    );
    assert_eq!((c.working_dir.as_str(), c.stop_signal.as_str(), c.user.as_str()), ("/data", "SIGQUIT", "0"));
    assert_eq!((c.exposed_ports.clone(), c.volumes.clone()), (vec!["80/tcp".into()], vec!["/data".into()]));
    assert_eq!(store.config(&id).unwrap(), *c);

    let lowers = store.rootfs_layers(&id);
    assert_eq!(lowers.len(), 3);
    let (top, middle, bottom) = (&lowers[0], &lowers[1], &lowers[2]);
    assert!(bottom.join("bin/busybox").is_file() && top.join("usr/suid").is_file(), "top layer first");

    // Whiteouts in overlayfs form.
    let wh = std::fs::symlink_metadata(middle.join("etc/removed.conf")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout is char 0/0");
    assert_eq!(xattr(&middle.join("data"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert!(!middle.join("etc/.wh.removed.conf").exists() && !middle.join("data/.wh..wh..opq").exists());

    // Metadata preserved.
    let suid = std::fs::metadata(top.join("usr/suid")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid(), suid.mtime()), (1000, 1000, 1_234_567_890));
    assert_eq!(xattr(&top.join("usr/suid"), "user.origin").as_deref(), Some(&b"corral-test"[..]));
    assert_eq!(inode(&top.join("usr/suid-link")), inode(&top.join("usr/suid")), "hard link");
    assert_eq!(std::fs::read_link(top.join("usr/sh")).unwrap(), Path::new("/bin/busybox"));
    assert!(std::fs::symlink_metadata(top.join("usr/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(std::fs::symlink_metadata(top.join("dev/null")).unwrap().rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(std::fs::metadata(bottom.join("data")).unwrap().permissions().mode() & 0o777, 0o750);
    assert_eq!(std::fs::metadata(bottom.join("etc")).unwrap().mtime(), 1_600_000_000, "dir mtimes set last");

    // The real thing: overlayfs shows the image as the layers say.
    let merged = with_overlay(lowers.clone(), |m| {
        (
            m.join("etc/removed.conf").exists(),
            m.join("etc/kept.conf").exists(),
            m.join("data/old").exists(),
            std::fs::read(m.join("data/new.txt")).ok(),
            std::fs::metadata(m.join("bin/busybox")).map(|x| x.len()).unwrap_or(0),
        )
    });
    assert_eq!(merged, (false, true, false, Some(b"new\n".to_vec()), busybox().len() as u64));
    let snapshots_mode = std::fs::metadata(dir.path().join("images/snapshots")).unwrap().permissions().mode();
    assert_eq!(snapshots_mode & 0o777, 0o700, "host users cannot reach setuid files in layers");
    assert_no_temporaries(&dir.path().join("images"));
    assert_blobs_verified(&dir.path().join("images"));
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_uncompressed_and_docker_media_types() {
    let registry = TestRegistry::start();
    let pusher = Pusher::new(&registry);
    let layers = [
        TestLayer::zstd(Tarball::new().file("zstd.txt", 0o644, b"zstd").finish()),
        TestLayer::plain(Tarball::new().file("plain.txt", 0o644, b"plain").finish()),
        TestLayer::gzip(Tarball::new().file("gzip.txt", 0o644, b"gzip").finish()),
    ];
    pusher.image("formats", "oci", &layers, json!({}), "amd64", false).await;
    let docker_layers = [TestLayer::gzip(Tarball::new().file("docker.txt", 0o644, b"docker").finish())];
    pusher.image("formats", "docker", &docker_layers, json!({"User": "nobody"}), "amd64", true).await;

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let id = store.pull(&format!("{}/formats:oci", registry.addr), &anonymous()).await.unwrap();
    let files: Vec<String> = store
        .rootfs_layers(&id)
        .iter()
        .map(|l| std::fs::read_to_string(std::fs::read_dir(l).unwrap().next().unwrap().unwrap().path()).unwrap())
        .collect();
    assert_eq!(files, ["gzip", "plain", "zstd"]);
    let docker = store.pull(&format!("{}/formats:docker", registry.addr), &anonymous()).await.unwrap();
    let image = store.resolve(docker.as_str()).unwrap();
    assert_eq!(image.uid_and_username(), (None, "nobody".to_owned()));
    assert!(store.rootfs_layers(&docker)[0].join("docker.txt").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn user_image_reports_uid() {
    let registry = TestRegistry::start();
    let layer = TestLayer::gzip(Tarball::new().file("f", 0o644, b"x").finish());
    Pusher::new(&registry).image("user", "latest", &[layer], json!({"User": "1000"}), "amd64", false).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let id = store.pull(&format!("{}/user", registry.addr), &anonymous()).await.unwrap();
    assert_eq!(store.resolve(id.as_str()).unwrap().uid_and_username(), (Some(1000), String::new()));
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_arch_index_selects_linux_amd64() {
    let registry = TestRegistry::start();
    let pusher = Pusher::new(&registry);
    let arm = pusher
        .image(
            "multiarch",
            "",
            &[TestLayer::gzip(Tarball::new().file("arch", 0o644, b"arm64").finish())],
            json!({}),
            "arm64",
            false,
        )
        .await;
    let amd = pusher
        .image(
            "multiarch",
            "",
            &[TestLayer::gzip(Tarball::new().file("arch", 0o644, b"amd64").finish())],
            json!({}),
            "amd64",
            false,
        )
        .await;
    let index = pusher.index("multiarch", "latest", &[(&arm, "arm64"), (&amd, "amd64")]).await;

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let id = store.pull(&format!("{}/multiarch", registry.addr), &anonymous()).await.unwrap();
    assert_eq!(id, amd.config);
    assert_eq!(std::fs::read(store.rootfs_layers(&id)[0].join("arch")).unwrap(), b"amd64");
    let image = store.resolve(&format!("{}/multiarch:latest", registry.addr)).unwrap();
    assert_eq!(image.repo_digests, [format!("{}/multiarch@{index}", registry.addr)], "repo digest is the index's");
    assert_eq!(registry.blob_downloads(&arm.layers[0]), 0, "the arm64 layer is never fetched");
    // ... and it resolves by that digest.
    assert_eq!(store.resolve(&format!("{}/multiarch@{index}", registry.addr)).unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_by_digest_and_by_tag_at_digest() {
    let registry = TestRegistry::start();
    let pushed = push_busybox(&registry, "pinned", "1.0").await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let by_digest = format!("{}/pinned@{}", registry.addr, pushed.manifest);
    assert_eq!(store.pull(&by_digest, &anonymous()).await.unwrap(), pushed.config);
    let image = store.resolve(&by_digest).unwrap();
    assert!(image.repo_tags.is_empty(), "a digest pull adds no tag");
    let both = format!("{}/pinned:1.0@{}", registry.addr, pushed.manifest);
    assert_eq!(store.pull(&both, &anonymous()).await.unwrap(), pushed.config);

    let missing = format!("{}/pinned@sha256:{}", registry.addr, "0".repeat(64));
    let err = store.pull(&missing, &anonymous()).await.unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    let err = store.pull(&format!("{}/nosuchrepo:latest", registry.addr), &anonymous()).await.unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(matches!(store.pull("Bad/Name", &anonymous()).await.unwrap_err(), ImageError::InvalidReference { .. }));
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_layers_are_downloaded_and_unpacked_once() {
    let registry = TestRegistry::start();
    let pusher = Pusher::new(&registry);
    let base = Tarball::new().dir("bin", 0o755).file("bin/busybox", 0o755, &busybox()).finish();
    let a = pusher
        .image(
            "app-a",
            "latest",
            &[TestLayer::gzip(base.clone()), TestLayer::gzip(Tarball::new().file("a", 0o644, b"a").finish())],
            json!({}),
            "amd64",
            false,
        )
        .await;
    let b = pusher
        .image(
            "app-b",
            "latest",
            &[TestLayer::gzip(base), TestLayer::gzip(Tarball::new().file("b", 0o644, b"b").finish())],
            json!({}),
            "amd64",
            false,
        )
        .await;
    assert_eq!(a.layers[0], b.layers[0]);

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let ida = store.pull(&format!("{}/app-a", registry.addr), &anonymous()).await.unwrap();
    let idb = store.pull(&format!("{}/app-b", registry.addr), &anonymous()).await.unwrap();
    let (la, lb) = (store.rootfs_layers(&ida), store.rootfs_layers(&idb));
    assert_eq!(la[1], lb[1], "the base layer is one directory");
    assert_eq!(inode(&la[1].join("bin/busybox")), inode(&lb[1].join("bin/busybox")));
    assert_eq!(std::fs::read_dir(dir.path().join("images/snapshots")).unwrap().count(), 3);
    // The registry saw one download of the shared blob (app-b's pull found it in the store).
    assert_eq!(registry.blob_downloads(&a.layers[0]), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_share_one_download() {
    let registry = TestRegistry::start();
    let big = Tarball::new().file("big", 0o644, &vec![7u8; 8 << 20]).file("bb", 0o755, &busybox()).finish();
    let pushed = Pusher::new(&registry)
        .image(
            "shared",
            "latest",
            &[TestLayer::gzip(big), TestLayer::zstd(Tarball::new().file("x", 0o644, b"x").finish())],
            json!({}),
            "amd64",
            false,
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open_store(dir.path()));
    let reference = format!("{}/shared:latest", registry.addr);
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let (store, reference) = (store.clone(), reference.clone());
            tokio::spawn(async move { store.pull(&reference, &AuthConfig::default()).await })
        })
        .collect();
    for pull in pulls {
        assert_eq!(pull.await.unwrap().unwrap(), pushed.config);
    }
    for layer in &pushed.layers {
        assert_eq!(registry.blob_downloads(layer), 1, "layer {layer} downloaded once for 4 pulls");
    }
    assert_eq!(registry.blob_downloads(&pushed.config), 1);
    assert_eq!(store.list(None).len(), 1);
    assert_no_temporaries(&dir.path().join("images"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrors_serve_other_registries_without_fallback() {
    let registry = TestRegistry::start();
    let pushed = push_busybox(&registry, "pause", "3.10").await;
    let dir = tempfile::tempdir().unwrap();
    let config = ImagesConfig {
        mirrors: vec![MirrorConfig {
            registry: "registry.k8s.io".into(),
            // A dead mirror first: the next one must be tried.
            endpoints: vec!["http://127.0.0.1:1".into(), format!("http://{}", registry.addr)],
            no_fallback: true,
        }],
        ..test_config()
    };
    let store = ImageStore::open(&dir.path().join("images"), &config).unwrap();
    let id = store.pull("registry.k8s.io/pause:3.10", &anonymous()).await.unwrap();
    assert_eq!(id, pushed.config);
    let image = store.resolve("registry.k8s.io/pause:3.10").unwrap();
    assert_eq!(image.repo_tags, ["registry.k8s.io/pause:3.10"]);
    assert!(image.pinned, "pause:3.10 is pinned by default");
    assert!(registry.log_text().contains("ns=registry.k8s.io"), "mirrors get the ns parameter");
    // Not on the mirror: the error names the mirror endpoints, and registry.k8s.io is never asked.
    let err = store.pull("registry.k8s.io/nothere:1", &anonymous()).await.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1:1") && !err.contains("https://registry.k8s.io"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_download_is_cancelled_with_a_clear_error() {
    let registry = TestRegistry::start();
    let noise: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    Pusher::new(&registry)
        .image(
            "stall",
            "latest",
            &[TestLayer::plain(Tarball::new().file("noise", 0o644, &noise).finish())],
            json!({}),
            "amd64",
            false,
        )
        .await;
    // Manifest and config go through (a few KiB); the layer stops after 1 MiB.
    let proxy = StallingProxy::start(&registry.addr, 1 << 20).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ImagesConfig { pull_progress_timeout_secs: 1, ..test_config() };
    let store = ImageStore::open(&dir.path().join("images"), &config).unwrap();
    let started = std::time::Instant::now();
    let err = store.pull(&format!("{}/stall", proxy.addr), &anonymous()).await.unwrap_err();
    assert!(matches!(err, ImageError::Stalled { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("no progress for 1s") && text.contains("downloading layer"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_no_temporaries(&dir.path().join("images"));
    assert!(store.list(None).is_empty());
}
