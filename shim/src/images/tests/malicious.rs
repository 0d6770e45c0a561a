//! Hostile layers pushed to the real registry: every one is refused, nothing is written
//! outside the store, and nothing of the failed pull counts as present.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::json;

use super::registry::{Pusher, TestLayer, TestRegistry};
use super::tarball::Tarball;
use super::*;
use crate::images::ImageError;

/// Everything under `victim`, with sizes and link counts, to compare before/after.
fn snapshot(victim: &Path) -> Vec<(String, u64, u64)> {
    let mut out: Vec<_> = walk(victim)
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            (p.display().to_string(), m.len(), m.nlink())
        })
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn malicious_layers_are_refused_and_write_nothing_outside() {
    let registry = TestRegistry::start();
    let pusher = Pusher::new(&registry);
    let dir = tempfile::tempdir().unwrap();
    // The store is <dir>/images; an unpacking layer is <dir>/images/snapshots/.tmp-…, so
    // "../../../victim" from a layer root is <dir>/victim.
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("target"), b"do not touch").unwrap();
    let v = victim.display().to_string();
    let etc_passwd_links = std::fs::metadata("/etc/passwd").unwrap().nlink();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("traversal", Tarball::new().file("../../../victim/pwned", 0o644, b"x").finish(), "'..' component"),
        (
            "traversal-deep",
            Tarball::new().dir("a", 0o755).file("a/../../../../victim/pwned", 0o644, b"x").finish(),
            "'..' component",
        ),
        ("absolute", Tarball::new().file(&format!("{v}/pwned"), 0o644, b"x").finish(), "absolute path"),
        (
            "symlink-escape",
            Tarball::new().symlink("evil", &v).file("evil/pwned", 0o644, b"x").finish(),
            "goes through a symlink",
        ),
        (
            "symlink-relative-escape",
            Tarball::new().symlink("up", "../../../victim").file("up/pwned", 0o644, b"x").finish(),
            "goes through a symlink",
        ),
        (
            "symlink-dir-then-mkdir",
            Tarball::new().symlink("d", &v).dir("d/sub", 0o755).finish(),
            "goes through a symlink",
        ),
        ("hardlink-escape", Tarball::new().hardlink("stolen", "../../../victim/target").finish(), "'..' component"),
        ("hardlink-absolute", Tarball::new().hardlink("passwd", "/etc/passwd").finish(), "absolute path"),
        (
            "hardlink-through-symlink",
            Tarball::new().symlink("etc", "/etc").hardlink("passwd", "etc/passwd").finish(),
            "goes through a symlink",
        ),
        (
            "block-device",
            Tarball::new().node("disk", tar::EntryType::Block, 8, 0).finish(),
            "device node 8:0 outside /dev",
        ),
        (
            "char-device",
            Tarball::new().dir("x", 0o755).node("x/mem", tar::EntryType::Char, 1, 1).finish(),
            "outside /dev",
        ),
        ("oversize-header", Tarball::new().long_name(2 << 20).file("f", 0o644, b"x").finish(), "exceed the size limit"),
    ];
    for (name, tar, _) in &cases {
        pusher
            .image(&format!("evil/{name}"), "latest", &[TestLayer::gzip(tar.clone())], json!({}), "amd64", false)
            .await;
    }

    let store = open_store(dir.path());
    let before = snapshot(&victim);
    for (name, _, reason) in &cases {
        let reference = format!("{}/evil/{name}:latest", registry.addr);
        let err = store.pull(&reference, &anonymous()).await.expect_err(name);
        assert!(matches!(err, ImageError::UnsafeLayer { .. } | ImageError::BadLayer { .. }), "{name}: {err}");
        assert!(err.to_string().contains(reason), "{name}: {err}");
        assert_eq!(snapshot(&victim), before, "{name} wrote outside the store");
        assert!(store.resolve(&reference).is_none(), "{name} counts as present");
    }
    assert_eq!(std::fs::metadata("/etc/passwd").unwrap().nlink(), etc_passwd_links);
    let images = dir.path().join("images");
    assert_no_temporaries(&images);
    assert_eq!(std::fs::read_dir(images.join("snapshots")).unwrap().count(), 0, "no layer of a refused image is kept");
    assert_eq!(std::fs::read_dir(images.join("records")).unwrap().count(), 0);
    assert!(store.list(None).is_empty());
    // Nothing escaped to the store's parent either.
    let mut top: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    top.sort();
    assert_eq!(top, ["images", "victim"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_not_matching_its_diff_id_is_refused() {
    let registry = TestRegistry::start();
    let pusher = Pusher::new(&registry);
    // Push a real image, then a manifest whose config claims another diff id for the layer.
    let tar = Tarball::new().file("f", 0o644, b"real").finish();
    let layer = super::tarball::gzip(&tar);
    let layer_digest = pusher.blob("liar", &layer).await;
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [crate::images::digest::Digest::of(b"something else")]}}))
    .unwrap();
    let config_digest = pusher.blob("liar", &config).await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": crate::images::oci::media::OCI_MANIFEST,
        "config": {"mediaType": crate::images::oci::media::OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}]}))
    .unwrap();
    pusher.manifest("liar", "latest", crate::images::oci::media::OCI_MANIFEST, &manifest).await;

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let err = store.pull(&format!("{}/liar", registry.addr), &anonymous()).await.unwrap_err();
    assert!(err.to_string().contains("the image config says"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path().join("images/snapshots")).unwrap().count(), 0);
}
