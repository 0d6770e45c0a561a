//! Removal, garbage collection and reload after a restart.

use serde_json::json;

use super::registry::{Pusher, TestLayer, TestRegistry};
use super::tarball::Tarball;
use super::*;
use crate::images::ImageError;

#[tokio::test(flavor = "multi_thread")]
async fn removal_by_one_tag_removes_the_image_and_only_its_own_content() {
    let registry = TestRegistry::start();
    let pusher = Pusher::new(&registry);
    let base = Tarball::new().dir("bin", 0o755).file("bin/busybox", 0o755, &busybox()).finish();
    let a_layers = || [TestLayer::gzip(base.clone()), TestLayer::gzip(Tarball::new().file("a", 0o644, b"a").finish())];
    let a = pusher.image("a", "v1", &a_layers(), json!({}), "amd64", false).await;
    // The same image (same bytes, same id) as a second name in another repository.
    let a2 = pusher.image("a2", "v2", &a_layers(), json!({}), "amd64", false).await;
    assert_eq!(a2.config, a.config);
    let b = pusher.image("b", "v1", &[TestLayer::gzip(base.clone())], json!({"Cmd": ["b"]}), "amd64", false).await;

    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let store = open_store(dir.path());
    let anon = anonymous();
    let (tag_a, tag_a2, tag_b) =
        (format!("{}/a:v1", registry.addr), format!("{}/a2:v2", registry.addr), format!("{}/b:v1", registry.addr));
    store.pull(&tag_a, &anon).await.unwrap();
    assert_eq!(store.pull(&tag_a2, &anon).await.unwrap(), a.config);
    store.pull(&tag_b, &anon).await.unwrap();
    let image_a = store.resolve(&tag_a).unwrap();
    assert_eq!(image_a.repo_tags, [tag_a2.clone(), tag_a.clone()]);
    assert_eq!(store.list(None).len(), 2);
    assert_eq!(store.list(Some(&tag_b)).len(), 1);
    assert_eq!(store.list(Some(&tag_b))[0].id, b.config);

    // In use: refused, nothing changes.
    let err = store.remove(&tag_a2, |id| *id == a.config).unwrap_err();
    assert!(matches!(err, ImageError::InUse { .. }), "{err}");
    assert!(store.resolve(&tag_a).is_some());

    // Removing one tag removes the image with both tags; the shared base layer stays for b.
    let a_only_layer = store.rootfs_layers(&a.config)[0].clone();
    let shared_layer = store.rootfs_layers(&a.config)[1].clone();
    assert_eq!(store.remove(&tag_a2, |_| false).unwrap(), Some(a.config.clone()));
    assert!(store.resolve(&tag_a).is_none() && store.resolve(&tag_a2).is_none());
    assert!(!a_only_layer.exists(), "a's own layer is deleted");
    assert!(shared_layer.join("bin/busybox").is_file(), "the layer b uses stays");
    assert!(!images.join("blobs/sha256").join(a.layers[1].hex()).exists());
    assert!(images.join("blobs/sha256").join(a.layers[0].hex()).exists());
    assert!(!images.join("records").join(format!("{}.json", a.config.hex())).exists());
    // Idempotent.
    assert_eq!(store.remove(&tag_a, |_| false).unwrap(), None);

    // By short id prefix, then the store is empty.
    let short = &b.config.hex()[..12];
    assert_eq!(store.resolve(short).unwrap().id, b.config);
    store.remove(short, |_| false).unwrap();
    assert!(store.list(None).is_empty());
    for sub in ["blobs/sha256", "snapshots", "records", "trash"] {
        assert_eq!(std::fs::read_dir(images.join(sub)).unwrap().count(), 0, "{sub} is empty");
    }
    let usage = store.fs_usage().unwrap();
    assert!(usage.inodes < 20 && usage.bytes < 200 * 1024, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_moves_to_the_newly_pulled_image() {
    let registry = TestRegistry::start();
    let pusher = Pusher::new(&registry);
    let old = pusher
        .image(
            "app",
            "latest",
            &[TestLayer::gzip(Tarball::new().file("v", 0o644, b"1").finish())],
            json!({}),
            "amd64",
            false,
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let tag = format!("{}/app:latest", registry.addr);
    store.pull(&tag, &anonymous()).await.unwrap();
    let new = pusher
        .image(
            "app",
            "latest",
            &[TestLayer::gzip(Tarball::new().file("v", 0o644, b"2").finish())],
            json!({}),
            "amd64",
            false,
        )
        .await;
    store.pull(&tag, &anonymous()).await.unwrap();
    assert_eq!(store.resolve(&tag).unwrap().id, new.config);
    let dangling = store.resolve(old.config.as_str()).unwrap();
    assert!(dangling.repo_tags.is_empty(), "the old image keeps only its digest");
    assert_eq!(dangling.repo_digests.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_survive_a_restart_and_incomplete_images_are_dropped() {
    let registry = TestRegistry::start();
    let one = push_busybox(&registry, "one", "latest").await;
    let two = Pusher::new(&registry)
        .image(
            "two",
            "latest",
            &[TestLayer::gzip(Tarball::new().file("t", 0o644, b"two").finish())],
            json!({"User": "1000"}),
            "amd64",
            false,
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (one_ref, two_ref) = (format!("{}/one", registry.addr), format!("{}/two", registry.addr));
    let before = {
        let store = open_store(dir.path());
        store.pull(&one_ref, &anonymous()).await.unwrap();
        store.pull(&two_ref, &anonymous()).await.unwrap();
        store.list(None)
    };
    let store = open_store(dir.path());
    assert_eq!(store.list(None), before, "same records after a restart");
    assert_eq!(store.resolve(&format!("{}/one@{}", registry.addr, one.manifest)).unwrap().id, one.config);
    assert!(store.rootfs_layers(&one.config)[0].join("bin/busybox").is_file());
    drop(store);

    // An image whose layer vanished is forgotten at start, not served half.
    let two_layer = open_store(dir.path()).rootfs_layers(&two.config)[0].clone();
    std::fs::remove_dir_all(&two_layer).unwrap();
    let store = open_store(dir.path());
    assert!(store.resolve(&two_ref).is_none());
    assert!(store.resolve(&one_ref).is_some());
    // ... and pulls again fine.
    store.pull(&two_ref, &anonymous()).await.unwrap();
    assert!(store.rootfs_layers(&two.config)[0].join("t").is_file());
}
