//! Unpacking rules on in-memory layers (the registry-level tests cover the same through pulls).

use std::os::unix::fs::MetadataExt;

use super::*;
use crate::images::tests::tarball::{Tarball, gzip};

fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<UnpackStats>) {
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob");
    std::fs::write(&blob, gzip(tar)).unwrap();
    let dest = dir.path().join("layer");
    std::fs::create_dir(&dest).unwrap();
    let result = unpack_layer(&blob, &dest, &Digest::of(b"layer"), &Digest::of(tar));
    (dir, result)
}

#[test]
fn later_entries_replace_earlier_ones_and_parents_are_created() {
    let tar = Tarball::new()
        .file("a/b/c", 0o644, b"implicit parents")
        .file("x", 0o644, b"file first")
        .dir("x", 0o700)
        .file("x/inner", 0o600, b"then a dir")
        .dir("y", 0o755)
        .file("y/z", 0o644, b"dir first")
        .file("y", 0o640, b"then a file")
        .finish();
    let (dir, result) = unpack(&tar);
    let stats = result.unwrap();
    assert_eq!(stats.compression, Some(Compression::Gzip));
    let layer = dir.path().join("layer");
    assert_eq!(std::fs::read(layer.join("a/b/c")).unwrap(), b"implicit parents");
    assert_eq!(std::fs::metadata(layer.join("a/b")).unwrap().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read(layer.join("x/inner")).unwrap(), b"then a dir");
    assert_eq!(std::fs::read(layer.join("y")).unwrap(), b"then a file");
    assert_eq!(std::fs::metadata(layer.join("y")).unwrap().mode() & 0o777, 0o640);
}

#[test]
fn overlay_xattrs_from_the_tar_are_dropped() {
    let tar = Tarball::new()
        .file_with("f", 0o644, 0, 1, &[("trusted.overlay.redirect", b"/etc"), ("user.ok", b"1")], b"x")
        .finish();
    let (dir, result) = unpack(&tar);
    result.unwrap();
    let f = dir.path().join("layer/f");
    let mut buf = [0u8; 64];
    assert!(rustix::fs::lgetxattr(&f, "trusted.overlay.redirect", &mut buf).is_err());
    assert_eq!(rustix::fs::lgetxattr(&f, "user.ok", &mut buf).unwrap(), 1);
}

#[test]
fn diff_id_mismatch_and_truncated_streams_fail() {
    let tar = Tarball::new().file("f", 0o644, &[1u8; 5000]).finish();
    let dir = tempfile::tempdir().unwrap();
    let (blob, dest) = (dir.path().join("blob"), dir.path().join("layer"));
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(&blob, &tar).unwrap();
    let err = unpack_layer(&blob, &dest, &Digest::of(b"l"), &Digest::of(b"other")).unwrap_err();
    assert!(err.to_string().contains("the image config says"), "{err}");

    let truncated = gzip(&tar[..2048]);
    std::fs::write(&blob, truncated).unwrap();
    let dest2 = dir.path().join("layer2");
    std::fs::create_dir(&dest2).unwrap();
    let err = unpack_layer(&blob, &dest2, &Digest::of(b"l"), &Digest::of(&tar)).unwrap_err();
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err}");
}

#[test]
fn pax_times_parse() {
    assert_eq!(parse_pax_time(b"1700000000.5").map(|t| (t.tv_sec, t.tv_nsec)), Some((1_700_000_000, 500_000_000)));
    assert_eq!(parse_pax_time(b"12").map(|t| (t.tv_sec, t.tv_nsec)), Some((12, 0)));
    assert!(parse_pax_time(b"x").is_none());
}
