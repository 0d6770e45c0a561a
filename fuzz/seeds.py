#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

The seeds are committed; this script documents where each one comes from and rebuilds them
(deterministically) when a parser learns a new input shape. Crash inputs that libFuzzer
finds are added to the corpus directories by hand (as `crash-<what>`), not here.

    python3 fuzz/seeds.py
"""

import gzip
import io
import json
import pathlib
import re
import struct
import tarfile
import zlib

FUZZ = pathlib.Path(__file__).resolve().parent
REPO = FUZZ.parent
CORPUS = FUZZ / "corpus"
DIGEST = "sha256:" + "ab" * 32


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def js(value):
    return json.dumps(value, indent=1)


def image_docs():
    descriptor = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": DIGEST, "size": 1024}
    write("image_manifest", "oci-manifest.json", js({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST, "size": 10},
        "layers": [descriptor, descriptor]}))
    write("image_manifest", "docker-manifest-no-media-type.json", js({
        "schemaVersion": 2, "config": {"digest": DIGEST, "size": 10}, "layers": [descriptor]}))
    write("image_manifest", "oci-index.json", js({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST, "size": 5,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"digest": DIGEST, "size": 6, "platform": {"architecture": "amd64", "os": "linux"}}]}))
    write("image_manifest", "schema1.json", js({"schemaVersion": 1, "fsLayers": [{"blobSum": DIGEST}]}))
    write("image_manifest", "bad-digest.json", js({"schemaVersion": 2, "config": {"digest": "md5:00", "size": 1},
                                                   "layers": []}))
    write("image_config", "busybox.json", js({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"],
                   "User": "1000:1000", "WorkingDir": "/", "ExposedPorts": {"80/tcp": {}},
                   "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT", "Labels": {"a": "b"}},
        "rootfs": {"type": "layers", "diff_ids": [DIGEST, "sha256:" + "cd" * 32]}}))
    write("image_config", "nulls.json", js({"config": {"Env": None, "Cmd": None, "Entrypoint": None},
                                           "rootfs": {"type": "layers", "diff_ids": []}}))
    for i, ref in enumerate(["busybox", "docker.io/library/busybox:latest", "127.0.0.1:5000/busybox:1.36",
                             "registry.k8s.io/pause:3.10", f"localhost/a/b/c@{DIGEST}",
                             f"quay.io/x/y:v1@{DIGEST}", "[::1]:5000/img", "UPPER/case", "ab" * 32]):
        write("image_reference", f"ref-{i}", ref)


def tar_bytes(build, compress=None, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        build(tar)
    data = buf.getvalue()
    return gzip.compress(data, mtime=0) if compress == "gz" else data


def add(tar, name, kind=tarfile.REGTYPE, data=b"", **attrs):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 1_700_000_000
    info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for k, v in attrs.items():
        setattr(info, k, v)
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def layers():
    def normal(tar):
        add(tar, "./", tarfile.DIRTYPE)
        add(tar, "bin/", tarfile.DIRTYPE)
        add(tar, "bin/busybox", data=b"\x7fELF...", mode=0o4755)
        add(tar, "bin/sh", tarfile.SYMTYPE, linkname="busybox")
        add(tar, "bin/ls", tarfile.LNKTYPE, linkname="bin/busybox")
        add(tar, "etc/", tarfile.DIRTYPE)
        add(tar, "etc/.wh.removed", data=b"")
        add(tar, "var/", tarfile.DIRTYPE)
        add(tar, "var/.wh..wh..opq", data=b"")
        add(tar, "dev/", tarfile.DIRTYPE)
        add(tar, "dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add(tar, "tmp/", tarfile.DIRTYPE, mode=0o1777)
        add(tar, "tmp/fifo", tarfile.FIFOTYPE)
        add(tar, "home/user/", tarfile.DIRTYPE, uid=1000, gid=1000)
        add(tar, "home/user/" + "n" * 200, data=b"long name")

    write("layer_tar", "normal.tar", tar_bytes(normal))
    write("layer_tar", "normal.tar.gz", tar_bytes(normal, "gz"))
    write("layer_tar", "empty.tar", b"\0" * 1024)

    # Hostile layers, one trick each: the unpacker stops at the first refused entry, so a tar
    # holding them all would only ever test the first. The fuzz target unpacks into
    # <scratch>/nest/layer/ next to <scratch>/outside/sentinel, so "../../outside" is a real
    # place; absolute escapes aim at the canary /tmp/corral-fuzz-canary, which the target
    # checks never appears. `escape-*` seeds get out of the layer when unpacked naively
    # (relative paths joined and followed, as `open()` does): the stable test proves the
    # target's check catches each of them that way. `hostile-*` seeds are the other tricks
    # (absolute paths, odd whiteouts, devices, overlay xattrs, symlinks that stay inside).
    up = "../../outside"
    canary = "/tmp/corral-fuzz-canary"
    sym = tarfile.SYMTYPE
    escapes = {
        # Paths that leave the layer by themselves.
        "dotdot": lambda t: add(t, f"{up}/dotdot", data=b"x"),
        "dotdot-inside-path": lambda t: add(t, f"a/b/../../{up}/inner", data=b"x"),
        "dotdot-dir": lambda t: add(t, f"{up}/newdir/", tarfile.DIRTYPE),
        "pax-path-dotdot": lambda t: add(t, "innocent", data=b"x", pax_headers={"path": f"{up}/pax"}),
        # A symlink out of the layer, then something through it.
        "symlink-then-file": lambda t: (add(t, "esc", sym, linkname=up), add(t, "esc/through", data=b"x")),
        "symlink-then-dir": lambda t: (add(t, "esc", sym, linkname=up), add(t, "esc/sub/", tarfile.DIRTYPE)),
        "symlink-then-fifo": lambda t: (add(t, "esc", sym, linkname=up), add(t, "esc/fifo", tarfile.FIFOTYPE)),
        "symlink-then-whiteout": lambda t: (add(t, "esc", sym, linkname=up), add(t, "esc/.wh.sentinel")),
        "symlink-then-opaque": lambda t: (add(t, "esc", sym, linkname=up), add(t, "esc/.wh..wh..opq")),
        "symlink-to-file-then-overwrite": lambda t: (add(t, "f", sym, linkname=f"{up}/sentinel"),
                                                     add(t, "f", data=b"overwritten")),
        # Hard links to the file outside, directly or through a symlink.
        "hardlink-dotdot": lambda t: add(t, "hard", tarfile.LNKTYPE, linkname=f"{up}/sentinel"),
        "hardlink-then-write": lambda t: (add(t, "hard", tarfile.LNKTYPE, linkname=f"{up}/sentinel"),
                                          add(t, "hard", data=b"overwritten")),
        "hardlink-through-symlink": lambda t: (add(t, "esc", sym, linkname=up),
                                               add(t, "hard", tarfile.LNKTYPE, linkname="esc/sentinel")),
        "hardlink-to-escaping-symlink": lambda t: (add(t, "esc", sym, linkname=f"{up}/sentinel"),
                                                   add(t, "hard", tarfile.LNKTYPE, linkname="esc"),
                                                   add(t, "hard", data=b"overwritten")),
        # Whiteouts of something outside.
        "whiteout-dotdot": lambda t: add(t, f"{up}/.wh.sentinel"),
        "opaque-dotdot": lambda t: add(t, f"{up}/.wh..wh..opq"),
    }
    hostile = {
        "absolute": lambda t: add(t, f"{canary}/abs", data=b"x"),
        "absolute-dir": lambda t: add(t, f"{canary}/", tarfile.DIRTYPE),
        "symlink-absolute-then-file": lambda t: (add(t, "esc", sym, linkname="/tmp"),
                                                 add(t, "esc/corral-fuzz-canary", data=b"x")),
        "hardlink-absolute": lambda t: add(t, "hard", tarfile.LNKTYPE, linkname="/etc/hostname"),
        # Even a symlink that stays inside may not be written through.
        "symlink-inside-then-file": lambda t: (add(t, "d/", tarfile.DIRTYPE), add(t, "ln", sym, linkname="d"),
                                               add(t, "ln/f", data=b"x")),
        "whiteout-of-dotdot": lambda t: add(t, ".wh..."),
        "whiteout-of-dot": lambda t: add(t, "a/.wh.."),
        "whiteout-of-a-symlink": lambda t: (add(t, "esc", sym, linkname=up), add(t, ".wh.esc")),
        "opaque-at-root": lambda t: add(t, ".wh..wh..opq"),
        "block-device-outside-dev": lambda t: add(t, "sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        "char-whiteout-form": lambda t: add(t, "gone", tarfile.CHRTYPE, devmajor=0, devminor=0),
        # Overlayfs control xattrs smuggled in through PAX.
        "overlay-xattr": lambda t: add(t, "redir/", tarfile.DIRTYPE,
                                       pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                                                    "SCHILY.xattr.user.ok": "1"}),
    }
    for name, build in escapes.items():
        write("layer_tar", f"escape-{name}.tar", tar_bytes(build))
    # A GNU long name (the ././@LongLink entry) rather than a PAX path.
    write("layer_tar", "escape-gnu-longname-dotdot.tar",
          tar_bytes(lambda t: add(t, "d" * 120 + f"/../{up}/gnu", data=b"x"), fmt=tarfile.GNU_FORMAT))
    for name, build in hostile.items():
        write("layer_tar", f"hostile-{name}.tar", tar_bytes(build))


def spdy_dictionary():
    text = (REPO / "shim/src/streaming/spdy/dictionary.rs").read_text()
    literal = re.search(r'b"(.*?)";', text, re.S).group(1)
    literal = re.sub(r"\\\n\s*", "", literal)
    return eval('b"' + literal + '"')  # a Rust byte string of plain escapes


def spdy_session(level):
    """A kubectl-exec-like session holding every frame type, its header blocks compressed
    at zlib `level` (0: stored blocks, whose header bytes mutate directly; the SPDY zlib
    stream is only ever sync-flushed, so no checksum guards them)."""
    deflate = zlib.compressobj(level, zdict=spdy_dictionary())

    def headers(pairs):
        raw = struct.pack(">I", len(pairs))
        for k, v in pairs:
            raw += struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
        return deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)

    def control(kind, flags, payload):
        return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(payload)) + payload

    def data(stream, flags, payload):
        return struct.pack(">II", stream, (flags << 24) | len(payload)) + payload

    syn = control(1, 0, struct.pack(">IIH", 1, 0, 0) + headers([("streamtype", "error")]))
    syn3 = control(1, 1, struct.pack(">IIH", 3, 0, 0) + headers([("streamtype", "stdout"), ("port", "80")]))
    return (syn + syn3 + data(1, 0, b"hello") + data(3, 1, b"") + control(9, 0, struct.pack(">II", 1, 1024))
            + control(6, 0, struct.pack(">I", 7)) + control(4, 0, struct.pack(">II", 1, 4) + struct.pack(">II", 7, 65536))
            + control(8, 0, struct.pack(">I", 1) + headers([("x", "y"), ("multi", "a\0b")]))
            + control(2, 0, struct.pack(">I", 1) + headers([]))
            + control(3, 0, struct.pack(">II", 1, 5)) + control(7, 0, struct.pack(">II", 3, 0)))


def spdy():
    session = spdy_session(zlib.Z_DEFAULT_COMPRESSION)
    write("spdy_frames", "session", session)
    write("spdy_frames", "session-stored-headers", spdy_session(0))
    write("spdy_frames", "bad-version", struct.pack(">HHI", 0x8002, 1, 0))
    write("spdy_frames", "data-stream-0", struct.pack(">II", 0, 1) + b"x")
    write("spdy_frames", "truncated", session[: len(session) // 2])


def logs():
    write("cri_log", "lines", b"\x00hello\nworld\n")
    write("cri_log", "no-newline", b"\x03partial line without newline")
    write("cri_log", "interleaved", b"\x01out\nerr\nout\n")
    write("cri_log", "binary", bytes(range(256)))
    write("cri_log", "long", b"\xff" + b"a" * 20000 + b"\n")


def cni():
    write("cni_config", "bridge.conflist", js({
        "cniVersion": "1.0.0", "name": "mynet", "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.22.0.0/16"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"}, {"type": "tuning"}]}))
    write("cni_config", "single.conf", js({"cniVersion": "0.4.0", "name": "single", "type": "ptp",
                                          "ipam": {"type": "dhcp"}}))
    write("cni_config", "no-type.conflist", js({"name": "x", "plugins": [{"bridge": "b"}]}))
    write("cni_config", "empty-plugins.conflist", js({"name": "x", "plugins": []}))
    write("cni_result", "bridge.json", js({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"}, {"name": "veth1", "mac": "aa:aa:aa:aa:aa:aa"},
                       {"name": "eth0", "mac": "0a:58:0a:16:00:05", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 2},
                {"address": "fd00::5/64", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}}))
    write("cni_result", "host-interface-first.json", js({
        "cniVersion": "0.4.0", "interfaces": [{"name": "host"}],
        "ips": [{"address": "192.168.1.2/24", "interface": 0}, {"address": "10.0.0.2/8", "interface": 7}]}))
    write("cni_result", "bad-address.json", js({"ips": [{"address": "10.0.0.300/8"}]}))


if __name__ == "__main__":
    image_docs()
    layers()
    spdy()
    logs()
    cni()
    print(f"seeds written to {CORPUS}")
