"""Write built images as an OCI image layout directory.

One layout holds every image; index.json names each one with the standard
`org.opencontainers.image.ref.name` annotation ("repo:tag"), so tools like
`skopeo inspect oci:DIR:REPO:TAG` or `umoci` can read them without a registry.
"""

from __future__ import annotations

import json
import os
import pathlib

from .image import Blob, Image, ImageIndex, canonical_json

REF_ANNOTATION = "org.opencontainers.image.ref.name"


class Layout:
    def __init__(self, root: pathlib.Path):
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        self._refs: list[dict] = []

    def _write_blob(self, blob: Blob) -> None:
        path = self.blob_dir / blob.digest.split(":", 1)[1]
        if path.exists() and path.stat().st_size == len(blob.data):
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob.data)
        os.replace(tmp, path)

    def _write_image(self, image: Image) -> None:
        for blob in image.blobs():
            self._write_blob(blob)
        self._write_blob(image.manifest)

    def add(self, ref: str, item: Image | ImageIndex) -> None:
        if isinstance(item, ImageIndex):
            for image in item.images:
                self._write_image(image)
            top = item.index
        else:
            self._write_image(item)
            top = item.manifest
        self._write_blob(top)
        self._refs.append(top.descriptor(annotations={REF_ANNOTATION: ref}))

    def finish(self) -> None:
        index = {"schemaVersion": 2, "manifests": sorted(self._refs, key=lambda d: d["annotations"][REF_ANNOTATION])}
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.root / "index.json")
