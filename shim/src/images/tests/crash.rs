//! `kill -9` in the middle of a pull: the pull runs in a child process (this test binary,
//! re-executed for one ignored test) through a relay that stalls mid-download, so the kill
//! always lands with a half-written blob on disk and a layer unpacked but not recorded.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::registry::{Pusher, StallingProxy, TestLayer, TestRegistry};
use super::tarball::Tarball;
use super::*;

const CHILD_ENV: &str = "CORRAL_TEST_CRASH_PULL";

/// The victim: pulls until killed. Does nothing unless started by the test below.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "started as a child process by kill_9_mid_pull_leaves_nothing_half_done"]
async fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let (dir, reference) = spec.split_once('|').unwrap();
    let store = ImageStore::open(Path::new(dir), &test_config()).unwrap();
    let result = store.pull(reference, &anonymous()).await;
    panic!("the pull should have been killed, but ended: {result:?}");
}

fn partial_download(ingest: &Path) -> bool {
    std::fs::read_dir(ingest)
        .map(|entries| entries.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() > 1 << 20)))
        .unwrap_or(false)
}

fn has_layer_dir(snapshots: &Path) -> bool {
    std::fs::read_dir(snapshots).map(|mut entries| entries.next().is_some()).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_pull_leaves_nothing_half_done() {
    let registry = TestRegistry::start();
    let mut many = Tarball::new().dir("files", 0o755);
    for i in 0..500 {
        many = many.file(&format!("files/f{i}"), 0o644, format!("file {i}\n").as_bytes());
    }
    let noise: Vec<u8> = (0..6u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let layers =
        [TestLayer::gzip(many.finish()), TestLayer::plain(Tarball::new().file("noise", 0o644, &noise).finish())];
    let pushed = Pusher::new(&registry).image("crash", "latest", &layers, json!({}), "amd64", false).await;
    let proxy = StallingProxy::start(&registry.addr, 3 << 20).await;

    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "images::tests::crash::crash_child", "--ignored", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{}/crash:latest", images.display(), proxy.addr))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(partial_download(&images.join("ingest")) && has_layer_dir(&images.join("snapshots"))) {
        assert!(Instant::now() < deadline, "the child never got mid-pull");
        assert!(child.try_wait().unwrap().is_none(), "the child pull ended on its own");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(partial_download(&images.join("ingest")), "killed with a half-written blob on disk");

    let store = open_store(dir.path());
    assert!(store.list(None).is_empty(), "nothing of the killed pull counts as an image");
    assert_no_temporaries(&images);
    assert_blobs_verified(&images);
    assert_eq!(std::fs::read_dir(images.join("snapshots")).unwrap().count(), 0, "unrecorded layers are collected");

    // The next pull completes and the content is right.
    let id = store.pull(&format!("{}/crash:latest", registry.addr), &anonymous()).await.unwrap();
    assert_eq!(id, pushed.config);
    let layers = store.rootfs_layers(&id);
    assert_eq!(std::fs::read(layers[0].join("noise")).unwrap(), noise);
    assert_eq!(std::fs::read_dir(layers[1].join("files")).unwrap().count(), 500);
    assert_blobs_verified(&images);
    assert_no_temporaries(&images);
}
