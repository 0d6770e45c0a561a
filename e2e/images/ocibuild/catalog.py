"""Every test image corral's e2e tests and critest use, and what each must do.

All images are built offline from Debian's busybox-static plus a few small
programs from e2e/images/src. Repository paths are the upstream ones without
the registry host, so a mirror that maps registry.k8s.io, gcr.io and
k8s.gcr.io to the local registry serves them under their original names.

Why each image looks the way it does is taken from critest v1.37.0's source
(sigs.k8s.io/cri-tools pkg/validate and pkg/framework); see the notes below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import subprocess

from .image import DEFAULT_PATH, Image, ImageIndex, RunConfig, build_image, build_index
from .layer import Entry, Layer, build_layer

CRI_TOOLS = "k8s-staging-cri-tools"  # gcr.io/k8s-staging-cri-tools/...
E2E = "e2e-test-images"  # registry.k8s.io/e2e-test-images/...


@dataclasses.dataclass(frozen=True)
class Sources:
    """Host files the images are made of."""

    busybox_static: pathlib.Path  # Debian busybox-static: every applet
    busybox_shell: pathlib.Path  # a busybox ash without FEATURE_SH_STANDALONE: /bin/sh
    shell_libs: tuple[pathlib.Path, ...]  # shared libraries busybox_shell needs
    helpers: pathlib.Path  # compiled e2e/images/src programs: pause, nginx, nnp, pgrep
    rootfs: pathlib.Path  # e2e/images/rootfs: static files per image


@dataclasses.dataclass(frozen=True)
class Target:
    """One image (or index) and every repo:tag it is pushed under."""

    refs: tuple[str, ...]
    item: Image | ImageIndex
    purpose: str


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An image critest needs that cannot be built offline, and why."""

    ref: str
    specs: tuple[str, ...]
    reason: str


SKIPPED = (
    Skipped(
        ref=f"gcr.io/{CRI_TOOLS}/test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf",
        specs=("[k8s.io] Image Manager public image with digest should be pulled and removed [Conformance]",),
        reason="critest pins this image by its published manifest digest; no offline build can produce those bytes",
    ),
)


def go_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _read(path: pathlib.Path) -> bytes:
    return path.read_bytes()


def _tree(root: pathlib.Path) -> list[Entry]:
    """Files below root, as layer entries; the executable bit is kept, nothing else."""
    entries = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            entries.append(Entry.dir(rel))
        else:
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            entries.append(Entry.file(rel, _read(path), mode))
    return entries


def _applet_paths(busybox: pathlib.Path) -> list[str]:
    listing = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True).stdout
    return sorted(line.strip() for line in listing.splitlines() if line.strip())


def base_layer(src: Sources) -> Layer:
    """The busybox root filesystem every image but pause starts from.

    - Applets are HARD links to /bin/busybox: critest masks /bin/ls, and a
      symlinked /bin/ls would mask (bind /dev/null over) busybox itself.
    - /bin/sh is a busybox ash built without FEATURE_SH_STANDALONE (Debian's
      `busybox` package, dynamically linked, with its libraries). Debian's
      busybox-static runs applets such as `ls` in-process without searching
      PATH, so critest's MaskedPaths spec (`/bin/sh -c ls` must fail with
      "/bin/sh: ls: Permission denied") could never see the masked /bin/ls.
    - pgrep and ipcs, which busybox-static lacks, are small stand-ins.
    - /etc/passwd and /etc/group follow the official busybox image (www-data
      is uid 33, nobody is 65534: critest's RunAsUserName spec uses nobody).
    """
    entries = [
        Entry.dir("root", 0o700),
        Entry.dir("tmp", 0o1777),
        *(Entry.dir(d) for d in ("dev", "proc", "sys", "run", "home", "var/run", "var/www", "var/spool/mail")),
        *(Entry.dir(d) for d in ("usr/local/bin", "usr/local/sbin")),
        Entry.file("bin/busybox", _read(src.busybox_static), 0o755),
        Entry.file("bin/sh", _read(src.busybox_shell), 0o755),
        Entry.hardlink("bin/ash", "bin/sh"),
        Entry.file("usr/bin/pgrep", _read(src.helpers / "pgrep"), 0o755),
    ]
    for lib in src.shell_libs:
        entries.append(Entry.file(str(lib).lstrip("/"), _read(lib.resolve()), 0o755))
    shell_paths = {"bin/sh", "bin/ash", "bin/busybox", "linuxrc"}
    for applet in _applet_paths(src.busybox_static):
        if applet not in shell_paths:
            entries.append(Entry.hardlink(applet, "bin/busybox"))
    entries += _tree(src.rootfs / "base")
    return build_layer(entries)


def marker_layer(path: str, data: bytes = b"") -> Layer:
    """A one-file layer: gives otherwise identical images distinct digests."""
    return build_layer([Entry.file(path, data)])


def bench_data_layer(index: int, size: int = 4 << 20) -> Layer:
    """Deterministic, incompressible data, so pulling it moves real bytes."""
    data = hashlib.shake_256(f"corral bench layer {index}".encode()).digest(size)
    return build_layer([Entry.file(f"bench/data-{index}.bin", data)])


def catalog(src: Sources) -> list[Target]:
    arch = go_arch()
    base = base_layer(src)
    shell = RunConfig(cmd=("sh",))

    def busybox_image(description: str, *extra: Layer, run: RunConfig = shell) -> Image:
        return build_image([base, *extra], run, arch, description)

    targets: list[Target] = []

    def add(refs: list[str], item: Image | ImageIndex, purpose: str) -> None:
        targets.append(Target(tuple(refs), item, purpose))

    # --- corral's own e2e tests and benchmark ---------------------------------
    busybox = busybox_image("busybox (Debian busybox-static)")
    add(["busybox:latest"], busybox, "general test image: busybox applets, sh, pgrep, ipcs")
    wrong_platform = build_image(
        [base, marker_layer("etc/corral-wrong-platform", b"this variant must never be selected on this host\n")],
        shell,
        "arm64" if arch != "arm64" else "amd64",
        "busybox, variant for the wrong platform",
    )
    add(
        ["busybox:multiarch"],
        build_index([("linux", arch, busybox), ("linux", "arm64" if arch != "arm64" else "amd64", wrong_platform)]),
        f"OCI index: linux/{arch} is busybox:latest, the other entry has /etc/corral-wrong-platform",
    )
    add(
        ["bench/three-layers:v1"],
        busybox_image("three-layer pull benchmark image", bench_data_layer(1), bench_data_layer(2)),
        "pull benchmark: busybox base + two 4 MiB incompressible layers",
    )

    # --- registry.k8s.io/e2e-test-images ----------------------------------------
    # Default container image of critest; its specs always pass a command
    # (`top`, `sh -c top`, ...), so this is just busybox.
    add([f"{E2E}/busybox:1.29-2"], busybox, "critest default image (runs top / sh)")

    # Web server: see src/nginx.c for exactly what critest checks.
    nginx_layer = build_layer(
        [Entry.file("usr/sbin/nginx", _read(src.helpers / "nginx"), 0o755), *_tree(src.rootfs / "nginx")]
    )

    def nginx_image(port: int, description: str) -> Image:
        run = RunConfig(
            cmd=("nginx", "-g", "daemon off;"),
            env=(DEFAULT_PATH, f"NGINX_PORT={port}"),
            exposed_ports=(f"{port}/tcp",),
            stop_signal="SIGTERM",
        )
        return busybox_image(description, nginx_layer, run=run)

    add(
        [f"{E2E}/nginx:1.14-2"],
        nginx_image(80, "nginx stand-in on :80"),
        "web server on :80 (nginx-like master + busybox httpd)",
    )
    add(
        [f"{E2E}/httpd:2.4.39-4"],
        busybox_image(
            "httpd stand-in on :80",
            build_layer(_tree(src.rootfs / "httpd")),
            run=RunConfig(cmd=("httpd-foreground",), exposed_ports=("80/tcp",)),
        ),
        "multi-container specs: busybox httpd on :80, logs 'httpd'",
    )
    add(
        [f"{E2E}/nonewprivs:1.3"],
        busybox_image(
            "set-uid root program printing its effective uid",
            build_layer([Entry.file("usr/local/bin/nnp", _read(src.helpers / "nnp"), 0o4755)]),
            run=RunConfig(entrypoint=("/usr/local/bin/nnp",)),
        ),
        "NoNewPrivs specs: set-uid nnp prints 'Effective uid: N'",
    )

    # --- gcr.io/k8s-staging-cri-tools -------------------------------------------
    # images/image-test/Dockerfile: FROM busybox; ADD ${TEST} ${TEST}: an empty
    # file named after the image makes each one distinct.
    for name in ("test-image-1", "test-image-2", "test-image-3", "test-image-latest"):
        add(
            [f"{CRI_TOOLS}/{name}:latest"],
            busybox_image(f"critest {name}", marker_layer(name)),
            "image list/pull specs: distinct image",
        )
    add(
        [f"{CRI_TOOLS}/test-image-tags:{tag}" for tag in ("1", "2", "3")],
        busybox_image("critest test-image-tags", marker_layer("same-image")),
        "one image under three tags",
    )
    for tag in ("test", "all"):
        add(
            [f"{CRI_TOOLS}/test-image-tag:{tag}"],
            busybox_image(f"critest test-image-tag:{tag}", marker_layer(tag)),
            "pull/status/remove by tag, by id, by digest; default command sh",
        )
    # images/image-user: USER ${USER}; critest reads uid/username from ImageStatus.
    for name, user in (
        ("test-image-user-uid", "1002"),
        ("test-image-user-username", "www-data"),
        ("test-image-user-uid-group", "1003:1004"),
        ("test-image-user-username-group", "www-data:1004"),
    ):
        add(
            [f"{CRI_TOOLS}/{name}:latest"],
            busybox_image(f"critest {name}", run=RunConfig(cmd=("sh",), user=user)),
            f"ImageStatus uid/username: USER {user}",
        )
    # images/image-predefined-group: adduser -u 1000 default-user, addgroup -g
    # 50000 group-defined-in-image, default-user in it; USER 1000.
    add(
        [f"{CRI_TOOLS}/test-image-predefined-group:latest"],
        busybox_image(
            "critest test-image-predefined-group",
            build_layer([*_tree(src.rootfs / "predefined-group"), Entry.dir("home/default-user", uid=1000, gid=1000)]),
            run=RunConfig(cmd=("sh",), user="1000"),
        ),
        "SupplementalGroupsPolicy/image volume specs: uid 1000 in group 50000",
    )
    add(
        [f"{CRI_TOOLS}/hostnet-nginx-{arch}:latest"],
        nginx_image(12003, "hostnet nginx stand-in on :12003"),
        "host-network port-forward spec: web server on :12003",
    )

    # --- pause -------------------------------------------------------------------
    # Its own single layer: it must not share a digest with any other image,
    # or critest's "remove from one registry" spec sees extra tags.
    add(
        ["pause:3.9"],
        build_image(
            [build_layer([Entry.file("pause", _read(src.helpers / "pause"), 0o755)])],
            RunConfig(entrypoint=("/pause",), user="65535:65535"),
            arch,
            "pause (sandbox container)",
        ),
        "sandbox image; also pulled as registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9",
    )
    return targets
