"""OCI image configs, manifests and indexes as canonical JSON blobs.

Every JSON document is serialised with sorted keys and no whitespace, so its
digest depends only on its content.
"""

from __future__ import annotations

import dataclasses
import json

from .layer import EPOCH_RFC3339, Layer, sha256_digest

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def canonical_json(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True)
class Blob:
    """A content-addressed blob together with its OCI descriptor."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The `config` object of an image config: what a runtime runs by default."""

    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = (DEFAULT_PATH,)
    user: str = ""
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    stop_signal: str = ""

    def to_json(self) -> dict:
        out: dict = {"Env": list(self.env)}
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.user:
            out["User"] = self.user
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


@dataclasses.dataclass(frozen=True)
class Image:
    """A single-platform image: its manifest, config and layer blobs."""

    manifest: Blob
    config: Blob
    layers: tuple[Layer, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> list[Blob]:
        """Every blob the manifest references, config first."""
        return [self.config] + [Blob(MEDIA_LAYER, layer.blob) for layer in self.layers]


def build_image(
    layers: list[Layer], run: RunConfig, architecture: str, description: str, os_name: str = "linux"
) -> Image:
    history = [
        {"created": EPOCH_RFC3339, "created_by": f"corral e2e/images: {description} (layer {i + 1}/{len(layers)})"}
        for i in range(len(layers))
    ]
    config = Blob(
        MEDIA_CONFIG,
        canonical_json(
            {
                "architecture": architecture,
                "os": os_name,
                "created": EPOCH_RFC3339,
                "config": run.to_json(),
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
                "history": history,
            }
        ),
    )
    manifest = Blob(
        MEDIA_MANIFEST,
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_MANIFEST,
                "config": config.descriptor(),
                "layers": [{"mediaType": MEDIA_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers],
                "annotations": {"org.opencontainers.image.description": description},
            }
        ),
    )
    return Image(manifest=manifest, config=config, layers=tuple(layers))


@dataclasses.dataclass(frozen=True)
class ImageIndex:
    """A multi-platform index over single-platform images."""

    index: Blob
    images: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return self.index.digest


def build_index(platform_images: list[tuple[str, str, Image]]) -> ImageIndex:
    """platform_images: (os, architecture, image) triples."""
    index = Blob(
        MEDIA_INDEX,
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_INDEX,
                "manifests": [
                    image.manifest.descriptor(platform={"os": os_name, "architecture": arch})
                    for os_name, arch, image in platform_images
                ],
            }
        ),
    )
    return ImageIndex(index=index, images=tuple(image for _, _, image in platform_images))
