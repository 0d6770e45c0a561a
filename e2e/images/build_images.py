#!/usr/bin/env python3
"""Build corral's e2e test images and push them to the local registry.

Normally run through e2e/images/build.sh, which compiles the helper programs
and finds the busybox binaries. Standard library only.

    build_images.py --busybox-static /usr/bin/busybox --busybox-shell SH \
        --shell-lib /lib/x86_64-linux-gnu/libc.so.6 ... --helpers DIR \
        --registry 127.0.0.1:5000 [--layout DIR] [--list]

Images are deterministic: a tag whose digest already matches is not pushed again.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ocibuild.catalog import SKIPPED, Sources, catalog
from ocibuild.image import ImageIndex
from ocibuild.layout import Layout
from ocibuild.registry import Registry, RegistryError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busybox-static", type=pathlib.Path, required=True)
    parser.add_argument("--busybox-shell", type=pathlib.Path, required=True)
    parser.add_argument("--shell-lib", type=pathlib.Path, action="append", default=[])
    parser.add_argument("--helpers", type=pathlib.Path, required=True, help="dir with pause, nginx, nnp, pgrep")
    parser.add_argument("--rootfs", type=pathlib.Path, default=HERE / "rootfs")
    parser.add_argument("--registry", help="push to this plain-HTTP registry address, e.g. 127.0.0.1:5000")
    parser.add_argument("--layout", type=pathlib.Path, help="also write an OCI image layout here")
    parser.add_argument("--list", action="store_true", help="print the image table (markdown) and exit")
    return parser.parse_args()


def check_sources(src: Sources) -> None:
    missing = [
        str(p) for p in (src.busybox_static, src.busybox_shell, *src.shell_libs, src.rootfs) if not p.exists()
    ] + [str(src.helpers / name) for name in ("pause", "nginx", "nnp", "pgrep") if not (src.helpers / name).exists()]
    if missing:
        raise SystemExit("build_images: missing inputs: " + ", ".join(missing))


def main() -> int:
    args = parse_args()
    src = Sources(
        busybox_static=args.busybox_static,
        busybox_shell=args.busybox_shell,
        shell_libs=tuple(args.shell_lib),
        helpers=args.helpers,
        rootfs=args.rootfs,
    )
    check_sources(src)
    started = time.monotonic()
    targets = catalog(src)
    built = time.monotonic() - started

    if args.list:
        print("| image (under the local registry) | digest | purpose |")
        print("|---|---|---|")
        for target in targets:
            print(f"| {', '.join(target.refs)} | `{target.item.digest[:19]}` | {target.purpose} |")
        for skipped in SKIPPED:
            print(f"| {skipped.ref} | (not built) | {skipped.reason} |")
        return 0

    if args.layout:
        layout = Layout(args.layout)
        for target in targets:
            for ref in target.refs:
                layout.add(ref, target.item)
        layout.finish()

    pushed = unchanged = 0
    if args.registry:
        registry = Registry(args.registry)
        try:
            registry.ping()
            for target in targets:
                for ref in target.refs:
                    repo, tag = ref.rsplit(":", 1)
                    if registry.tag_digest(repo, tag) == target.item.digest:
                        unchanged += 1
                        continue
                    if isinstance(target.item, ImageIndex):
                        registry.push_index(repo, tag, target.item)
                    else:
                        registry.push_image(repo, tag, target.item)
                    pushed += 1
                    print(f"pushed {args.registry}/{ref} {target.item.digest}", file=sys.stderr)
        except RegistryError as err:
            print(f"build_images: registry {args.registry}: {err}", file=sys.stderr)
            print("build_images: is it running? e2e/lib/registry.sh start DIR starts one", file=sys.stderr)
            return 1
    total = time.monotonic() - started
    print(
        f"build_images: {len(targets)} images ({sum(len(t.refs) for t in targets)} tags) built in {built:.1f}s; "
        f"{pushed} tags pushed, {unchanged} already up to date; {total:.1f}s total",
        file=sys.stderr,
    )
    for skipped in SKIPPED:
        print(f"build_images: not built: {skipped.ref}: {skipped.reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
