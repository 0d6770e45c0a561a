//! Entry points for the fuzz targets in `fuzz/`: every parser corral runs on input from
//! outside (registries, image layers, streaming clients, containers' output, CNI plugins).
//!
//! Each function takes arbitrary bytes, runs the parser, and checks what must hold for any
//! input besides "no panic" (a round trip gives the same value, nothing is written outside
//! the layer directory, no output byte is lost). A violated property panics, which is what
//! libFuzzer reports as a crash. Built for tests and with the `fuzzing` feature only.
//!
//! The seed corpora (`fuzz/corpus/<target>/`) and every crash found so far run as a plain
//! `cargo test` (see the tests below), so the CI checks them on stable Rust without
//! libFuzzer.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::images::digest::Digest;
use crate::images::oci::{ConfigFile, ManifestKind, media};
use crate::images::reference::Reference;
use crate::images::unpack::{paths, unpack_layer};
use crate::streaming::spdy::frame::{Frame, FrameDecoder, FrameEncoder};

/// A fuzz target: runs one parser on arbitrary bytes, panics when a property is violated.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`
/// call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("image_manifest", image_manifest),
    ("image_config", image_config),
    ("image_reference", image_reference),
    ("layer_tar", layer_tar),
    ("spdy_frames", spdy_frames),
    ("cri_log", cri_log),
    ("cni_config", cni_config),
    ("cni_result", cni_result),
];

/// A manifest or index from a registry, with and without each `Content-Type` a registry
/// may send; an index then picks the host's platform.
pub fn image_manifest(data: &[u8]) {
    for content_type in [None, Some(media::OCI_INDEX), Some(media::OCI_MANIFEST), Some(media::DOCKER_LIST)] {
        if let Ok(ManifestKind::Index(index)) = ManifestKind::parse(data, content_type, "fuzz") {
            let (os, arch) = crate::images::oci::host_platform();
            let _ = index.select(os, arch);
        }
    }
}

/// An image config blob: what to run and the diff ids of the layers.
pub fn image_config(data: &[u8]) {
    if let Ok(config) = serde_json::from_slice::<ConfigFile>(data) {
        let _ = Digest::chain_ids(&config.rootfs.diff_ids);
    }
}

/// An image reference as kubelet sends it: a parsed reference prints as a string that
/// parses to the same reference.
pub fn image_reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Digest::parse(text);
    if let Ok(reference) = Reference::parse(text) {
        let printed = reference.to_string();
        let again = Reference::parse(&printed).unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}: {e}"));
        assert_eq!(again.to_string(), printed, "reference of {text:?} is not stable");
    }
}

/// A layer blob (tar, gzip or zstd) unpacked into a scratch directory: whatever it holds,
/// nothing may be created, changed or linked outside the layer directory. Tar entry paths
/// also go through the path checker directly.
///
/// The layer sits two levels down, `<scratch>/nest/layer/`, next to a sentinel file
/// `<scratch>/outside/sentinel`, so the seeds' escapes (`../../outside/...`, symlinks and
/// hard links to there) have a real target to hit. Absolute escapes aim at
/// [`LAYER_CANARY`], which must never appear.
pub fn layer_tar(data: &[u8]) {
    let _ = paths::split(data);
    unpack_confined(data, |blob, layer| {
        // The diff id is that of the raw bytes: right for an uncompressed tar, wrong for a
        // compressed one, so both the success and the mismatch path run.
        let digest = Digest::of(data);
        let _ = unpack_layer(blob, layer, &digest, &digest);
    });
}

/// Writes `data` as a blob into a fresh scratch dir, runs `unpack(blob, layer)` and panics
/// if anything outside the layer directory was created, removed, written, hard-linked,
/// chmod-ed or given an xattr, or if [`LAYER_CANARY`] appeared.
fn unpack_confined(data: &[u8], unpack: impl FnOnce(&Path, &Path)) {
    let scratch = tempfile::Builder::new().prefix("corral-fuzz-layer-").tempdir().expect("scratch dir");
    let scratch = scratch.path();
    let (blob, layer, sentinel) = (scratch.join("blob"), scratch.join("nest/layer"), scratch.join("outside/sentinel"));
    std::fs::create_dir_all(&layer).expect("creating the layer dir");
    std::fs::create_dir(scratch.join("outside")).expect("creating the outside dir");
    std::fs::write(&sentinel, SENTINEL).expect("writing the sentinel");
    std::fs::write(&blob, data).expect("writing the blob");
    let before = std::fs::symlink_metadata(&sentinel).expect("stat of the sentinel");
    let dirs_outside = [scratch.to_path_buf(), scratch.join("nest"), scratch.join("outside")];
    let xattrs_before: Vec<usize> = dirs_outside.iter().map(|d| xattr_count(d)).collect();

    unpack(&blob, &layer);

    assert_eq!(
        entries_outside(scratch, &layer),
        ["blob", "nest", "nest/layer", "outside", "outside/sentinel"],
        "the layer created or removed something outside its directory"
    );
    let after = std::fs::symlink_metadata(&sentinel).expect("stat of the sentinel");
    assert_eq!(std::fs::read(&sentinel).expect("reading the sentinel"), SENTINEL, "the layer wrote to a file outside");
    assert_eq!(after.nlink(), 1, "the layer hard-linked a file outside");
    assert_eq!(
        (after.mode(), after.uid(), after.gid(), after.mtime()),
        (before.mode(), before.uid(), before.gid(), before.mtime()),
        "the layer changed a file outside"
    );
    let xattrs_after: Vec<usize> = dirs_outside.iter().map(|d| xattr_count(d)).collect();
    assert_eq!(xattrs_after, xattrs_before, "the layer set an xattr on a directory outside");
    assert!(std::fs::symlink_metadata(LAYER_CANARY).is_err(), "the layer wrote {LAYER_CANARY}");
}

/// Where the seeds' absolute-path and absolute-symlink escapes point. Only ever checked,
/// never created: if it exists, a layer escaped to the host's `/`.
pub const LAYER_CANARY: &str = "/tmp/corral-fuzz-canary";
const SENTINEL: &[u8] = b"outside the layer";

/// Every path under `scratch` (relative, sorted), not descending into `layer`.
fn entries_outside(scratch: &Path, layer: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![scratch.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("listing scratch") {
            let path = entry.expect("scratch entry").path();
            found.push(path.strip_prefix(scratch).expect("below scratch").to_string_lossy().into_owned());
            let is_dir = std::fs::symlink_metadata(&path).expect("stat in scratch").is_dir();
            if is_dir && path != layer {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// How many xattrs `path` has (not following a symlink).
fn xattr_count(path: &Path) -> usize {
    let mut names = [0u8; 4096];
    let len = rustix::fs::llistxattr(path, &mut names[..]).expect("listing xattrs");
    names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()).count()
}

/// The SPDY/3.1 frames a `kubectl exec`/`port-forward` client sends. Reads of any size
/// decode to the same frames as the whole input at once, and every decoded frame
/// re-encodes into bytes that decode to the same frame.
pub fn spdy_frames(data: &[u8]) {
    let whole = decode_frames(std::iter::once(data));
    let read_size = 1 + data.first().map_or(0, |b| *b as usize);
    assert_eq!(decode_frames(data.chunks(read_size)), whole, "frames depend on how the input was read");

    let Ok(mut encoder) = FrameEncoder::new() else { return };
    let mut wire = BytesMut::new();
    let mut sent: Vec<Frame> = Vec::new();
    for frame in whole {
        if encoder.encode(frame.clone(), &mut wire).is_ok() {
            sent.push(frame);
        }
    }
    let mut decoder = FrameDecoder::new();
    for frame in sent {
        let again = decoder.decode(&mut wire).expect("re-encoded frame decodes").expect("a whole frame");
        assert_eq!(again, frame, "frame changed in a round trip");
    }
}

/// The frames decoded from `reads` arriving one after the other, up to the first error.
fn decode_frames<'a>(reads: impl Iterator<Item = &'a [u8]>) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new();
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for read in reads {
        buffer.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(frame)) if frames.len() < 10_000 => frames.push(frame),
                Ok(None) => break,
                Ok(Some(_)) | Err(_) => return frames,
            }
        }
    }
    frames
}

/// A container's output, split into reads by the first bytes of the input, through the
/// CRI log writer. Every record is well formed, no record text exceeds 16 KiB or holds a
/// newline, and joining the records gives back exactly what the container wrote.
pub fn cri_log(data: &[u8]) {
    use corral_runtime::logs::{CriLogWriter, MAX_LINE, Stream};
    let Some((&shape, rest)) = data.split_first() else { return };
    let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
    let mut writer = CriLogWriter::new(Vec::new());
    let mut written: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    // Long lines matter most: repeat the input so that some reads cross the 16 KiB limit.
    let repeat = 1 + (shape as usize % 4) * (MAX_LINE / rest.len().max(1));
    let input: Vec<u8> = rest.iter().copied().cycle().take(rest.len() * repeat).collect();
    let chunk = 1 + shape as usize * 97;
    for (i, piece) in input.chunks(chunk).enumerate() {
        let stream = if shape & 1 == 1 && i % 2 == 1 { Stream::Stderr } else { Stream::Stdout };
        written[stream as usize].extend_from_slice(piece);
        writer.write(stream, piece, at).expect("writing to a Vec");
    }
    writer.finish(Stream::Stdout, at).expect("writing to a Vec");
    writer.finish(Stream::Stderr, at).expect("writing to a Vec");

    let out = writer.output();
    assert!(out.is_empty() || out.ends_with(b"\n"), "the log ends mid-record");
    let mut joined: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut last_full: [bool; 2] = [true, true];
    for record in out.split(|b| *b == b'\n') {
        if record.is_empty() {
            continue;
        }
        let mut fields = record.splitn(4, |b| *b == b' ');
        let (Some(ts), Some(stream), Some(tag), Some(text)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            panic!("malformed record {:?}", String::from_utf8_lossy(record));
        };
        assert_eq!(ts, b"2023-11-14T22:13:20.000000123Z");
        let index = match stream {
            b"stdout" => 0,
            b"stderr" => 1,
            other => panic!("stream {:?}", String::from_utf8_lossy(other)),
        };
        assert!(text.len() <= MAX_LINE, "record of {} bytes", text.len());
        joined[index].extend_from_slice(text);
        match tag {
            b"F" => {
                joined[index].push(b'\n');
                last_full[index] = true;
            }
            b"P" => last_full[index] = false,
            other => panic!("tag {:?}", String::from_utf8_lossy(other)),
        }
    }
    for i in 0..2 {
        // The end of the stream closes an unfinished line with an F record: one '\n' more.
        let mut expected = written[i].clone();
        if !expected.is_empty() && !expected.ends_with(b"\n") && last_full[i] {
            expected.push(b'\n');
        }
        assert!(joined[i] == expected, "stream {i}: records do not join back to the output");
    }
}

/// A CNI network config list from the conf dir (written by a cluster's network add-on).
/// A parsed list survives the round trip through the result cache's JSON.
pub fn cni_config(data: &[u8]) {
    use corral_net::cni::NetworkConfigList;
    let source = Path::new("/etc/cni/net.d/10-fuzz.conflist");
    if let Ok(list) = NetworkConfigList::parse(source, data) {
        let json = serde_json::to_vec(&list.to_json()).expect("encoding a config list");
        let again = NetworkConfigList::parse(source, &json).expect("a re-encoded config list parses");
        assert_eq!(again, list, "config list changed in a round trip");
    }
}

/// A CNI plugin's ADD result (stdout of a plugin binary). A parsed result survives the
/// round trip through the result cache, and its pod IPs are among its addresses.
pub fn cni_result(data: &[u8]) {
    use corral_net::AddResult;
    if let Ok(result) = serde_json::from_slice::<AddResult>(data) {
        let ips = result.pod_ips();
        assert!(ips.iter().all(|ip| result.ips.iter().any(|c| c.address.addr() == *ip)));
        let json = serde_json::to_vec(&result).expect("encoding a result");
        let again: AddResult = serde_json::from_slice(&json).expect("a re-encoded result parses");
        assert_eq!(again, result, "result changed in a round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fuzz/corpus/<target>/`: the committed seeds plus every crash ever found.
    fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap())).collect()
    }

    /// Small deterministic mutations of a seed (bit flips, truncations, duplications), so
    /// that the stable test run reaches a little beyond the seeds themselves.
    fn mutations(seed: &[u8], rounds: u64) -> Vec<Vec<u8>> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ seed.len() as u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..rounds)
            .map(|_| {
                let mut m = seed.to_vec();
                let len = m.len().max(1) as u64;
                match next() % 4 {
                    0 if !m.is_empty() => {
                        let i = (next() % len) as usize;
                        m[i] ^= 1 << (next() % 8);
                    }
                    1 => m.truncate((next() % len) as usize),
                    2 if !m.is_empty() => {
                        let i = (next() % len) as usize;
                        let piece = m[i..].to_vec();
                        m.extend_from_slice(&piece);
                    }
                    _ => m.insert((next() % len) as usize % (m.len() + 1), next() as u8),
                }
                m
            })
            .collect()
    }

    #[test]
    fn every_target_has_seeds_and_they_pass() {
        for (name, target) in TARGETS {
            let seeds = corpus(name);
            assert!(!seeds.is_empty(), "no seeds for {name}");
            for (path, seed) in seeds {
                let outcome = std::panic::catch_unwind(|| target(&seed));
                assert!(outcome.is_ok(), "{name}: seed {path} fails");
            }
        }
    }

    /// An unpacker that trusts the tar, as `open()` and friends would: paths are joined to
    /// the layer directory and symlinks followed. It only skips absolute paths and link
    /// targets, which would reach the host's `/`.
    fn naive_unpack(blob: &Path, layer: &Path) -> std::io::Result<()> {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let mut archive = tar::Archive::new(std::fs::File::open(blob)?);
        for entry in archive.entries()? {
            let entry = entry?;
            let raw = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
            if raw.starts_with(b"/") || link.starts_with(b"/") {
                continue;
            }
            let path = layer.join(OsStr::from_bytes(&raw));
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { continue };
            std::fs::create_dir_all(parent)?;
            if name.as_bytes() == b".wh..wh..opq" {
                rustix::fs::setxattr(parent, "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty())?;
            } else if let Some(hidden) = name.as_bytes().strip_prefix(b".wh.") {
                std::fs::remove_file(parent.join(OsStr::from_bytes(hidden)))?;
            } else {
                match entry.header().entry_type() {
                    tar::EntryType::Directory => std::fs::create_dir_all(&path)?,
                    tar::EntryType::Symlink => std::os::unix::fs::symlink(OsStr::from_bytes(&link), &path)?,
                    tar::EntryType::Link => std::fs::hard_link(layer.join(OsStr::from_bytes(&link)), &path)?,
                    _ => std::fs::write(&path, b"naive")?,
                }
            }
        }
        Ok(())
    }

    /// The confinement check has teeth: every `escape-*` seed, unpacked naively, trips it.
    #[test]
    fn confinement_check_catches_every_escape_seed_unpacked_naively() {
        let escapes: Vec<_> = corpus("layer_tar").into_iter().filter(|(path, _)| path.contains("/escape-")).collect();
        assert!(escapes.len() >= 10, "escape seeds missing");
        for (path, seed) in escapes {
            let outcome = std::panic::catch_unwind(|| {
                unpack_confined(&seed, |blob, layer| {
                    // An error only stops the naive unpack early; only the check may panic.
                    let _ = naive_unpack(blob, layer);
                })
            });
            assert!(outcome.is_err(), "{path}: a naive unpack of it escapes, yet the check did not notice");
        }
    }

    #[test]
    fn mutated_seeds_pass() {
        for (name, target) in TARGETS {
            // Unpacking touches the filesystem: fewer rounds for it.
            let rounds = if *name == "layer_tar" { 20 } else { 200 };
            for (path, seed) in corpus(name) {
                for (i, input) in mutations(&seed, rounds).into_iter().enumerate() {
                    let outcome = std::panic::catch_unwind(|| target(&input));
                    assert!(outcome.is_ok(), "{name}: mutation {i} of {path} fails: {input:?}");
                }
            }
        }
    }
}
