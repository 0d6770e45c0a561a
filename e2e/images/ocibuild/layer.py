"""Deterministic OCI layers: a list of filesystem entries becomes a gzipped tar.

The same entries always produce the same bytes (sorted order, fixed mtime,
owner 0:0 unless set, gzip header without name or time), so the same images
get the same digests on every build and a registry that already holds them
is left alone.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile

# 2024-01-01T00:00:00Z: the mtime of every file and the "created" time of every
# image. Any fixed value works; a real date keeps tools that dislike 0 happy.
EPOCH = 1704067200
EPOCH_RFC3339 = "2024-01-01T00:00:00Z"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One path in a layer. `path` is relative to the root, without a leading slash."""

    path: str
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    mode: int = 0o755
    data: bytes = b""  # file content
    target: str = ""  # symlink target, or the layer path a hard link points to
    uid: int = 0
    gid: int = 0

    @staticmethod
    def dir(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
        return Entry(path, "dir", mode, uid=uid, gid=gid)

    @staticmethod
    def file(path: str, data: bytes, mode: int = 0o644) -> Entry:
        return Entry(path, "file", mode, data=data)

    @staticmethod
    def symlink(path: str, target: str) -> Entry:
        return Entry(path, "symlink", 0o777, target=target)

    @staticmethod
    def hardlink(path: str, target: str) -> Entry:
        return Entry(path, "hardlink", 0o755, target=target)


@dataclasses.dataclass(frozen=True)
class Layer:
    """A built layer: the compressed blob plus the digests an image needs."""

    blob: bytes  # tar+gzip
    digest: str  # sha256 of blob: the layer's descriptor digest
    diff_id: str  # sha256 of the uncompressed tar: the config's rootfs.diff_ids

    @property
    def size(self) -> int:
        return len(self.blob)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _order(entries: list[Entry]) -> list[Entry]:
    """Sort by path, add missing parent directories, put hard-link targets first.

    Extractors create a hard link by linking to an already extracted file, so
    every target must precede its links in the archive.
    """
    by_path: dict[str, Entry] = {}
    for entry in entries:
        if entry.path.startswith("/") or entry.path.endswith("/") or not entry.path:
            raise ValueError(f"layer path must be relative and non-empty: {entry.path!r}")
        if entry.path in by_path and by_path[entry.path] != entry:
            raise ValueError(f"two different entries for {entry.path!r}")
        by_path[entry.path] = entry
    for entry in list(by_path.values()):
        for parent in _parents(entry.path):
            by_path.setdefault(parent, Entry.dir(parent))
            if by_path[parent].kind != "dir":
                raise ValueError(f"{parent!r} is not a directory but {entry.path!r} is under it")
    for entry in by_path.values():
        if entry.kind == "hardlink":
            target = by_path.get(entry.target)
            if target is None or target.kind != "file":
                raise ValueError(f"hard link {entry.path!r} -> {entry.target!r}: target is not a file in this layer")
    plain = sorted((e for e in by_path.values() if e.kind != "hardlink"), key=lambda e: e.path)
    links = sorted((e for e in by_path.values() if e.kind == "hardlink"), key=lambda e: e.path)
    return plain + links


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = EPOCH
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "file":
        info.type = tarfile.REGTYPE
        info.size = len(entry.data)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    elif entry.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = entry.target
    else:
        raise ValueError(f"unknown entry kind {entry.kind!r} for {entry.path!r}")
    return info


def build_layer(entries: list[Entry]) -> Layer:
    """Pack entries into a deterministic tar+gzip layer."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in _order(entries):
            info = _tarinfo(entry)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    tar_bytes = raw.getvalue()

    compressed = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of build-time data.
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
        gz.write(tar_bytes)
    blob = compressed.getvalue()
    return Layer(blob=blob, digest=sha256_digest(blob), diff_id=sha256_digest(tar_bytes))
