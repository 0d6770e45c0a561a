"""Tests of the offline image builder: layers, images, layout and a real registry push.

    python3 -m unittest discover -s e2e/images/tests -t e2e/images

The registry test starts Debian's docker-registry through e2e/lib/registry.sh
(REGISTRY_ADDR, default 127.0.0.1:5000; an already running one is reused) and
is skipped when docker-registry is not installed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import unittest

from ocibuild.image import MEDIA_INDEX, RunConfig, build_image, build_index
from ocibuild.layer import EPOCH, Entry, build_layer, sha256_digest
from ocibuild.layout import REF_ANNOTATION, Layout
from ocibuild.registry import Registry

E2E = pathlib.Path(__file__).resolve().parents[2]


def members(layer) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.blob))) as tar:
        return tar.getmembers()


class LayerTest(unittest.TestCase):
    def test_same_entries_give_same_bytes_in_any_order(self):
        entries = [
            Entry.file("bin/busybox", b"\x7fELF fake", 0o755),
            Entry.hardlink("bin/ls", "bin/busybox"),
            Entry.dir("tmp", 0o1777),
        ]
        first = build_layer(entries)
        second = build_layer(list(reversed(entries)))
        self.assertEqual(first.blob, second.blob)
        self.assertEqual(first.digest, sha256_digest(first.blob))
        self.assertEqual(first.diff_id, sha256_digest(gzip.decompress(first.blob)))
        self.assertNotEqual(first.digest, first.diff_id)

    def test_parents_are_added_and_hard_links_follow_their_target(self):
        layer = build_layer([Entry.hardlink("a/link", "z/target"), Entry.file("z/target", b"x", 0o755)])
        names = [m.name for m in members(layer)]
        self.assertEqual(names, ["a", "z", "z/target", "a/link"])
        link = members(layer)[-1]
        self.assertTrue(link.islnk())
        self.assertEqual(link.linkname, "z/target")

    def test_metadata_is_normalised(self):
        layer = build_layer([Entry.file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), Entry.dir("tmp", 0o1777)])
        for member in members(layer):
            self.assertEqual((member.uid, member.gid, member.uname, member.gname), (0, 0, "", ""))
            self.assertEqual(member.mtime, EPOCH)
        modes = {m.name: m.mode for m in members(layer)}
        self.assertEqual(modes["tmp"], 0o1777)
        self.assertEqual(modes["etc/passwd"], 0o644)
        # gzip header: no file name, mtime 0
        self.assertEqual(layer.blob[4:8], b"\0\0\0\0")

    def test_setuid_mode_survives(self):
        layer = build_layer([Entry.file("usr/local/bin/nnp", b"x", 0o4755)])
        self.assertEqual(members(layer)[-1].mode, 0o4755)

    def test_bad_input_is_rejected(self):
        with self.assertRaisesRegex(ValueError, "relative"):
            build_layer([Entry.file("/abs", b"")])
        with self.assertRaisesRegex(ValueError, "two different entries"):
            build_layer([Entry.file("a", b"1"), Entry.file("a", b"2")])
        with self.assertRaisesRegex(ValueError, "target is not a file"):
            build_layer([Entry.hardlink("bin/ls", "bin/busybox")])
        with self.assertRaisesRegex(ValueError, "not a directory"):
            build_layer([Entry.file("a", b""), Entry.file("a/b", b"")])


class ImageTest(unittest.TestCase):
    def setUp(self):
        self.layer = build_layer([Entry.file("hello", b"hi\n")])

    def test_config_names_layers_by_diff_id_and_run_settings(self):
        run = RunConfig(cmd=("sh",), user="1003:1004", exposed_ports=("80/tcp",))
        image = build_image([self.layer], run, "amd64", "test image")
        config = json.loads(image.config.data)
        self.assertEqual(config["rootfs"]["diff_ids"], [self.layer.diff_id])
        self.assertEqual(config["config"]["User"], "1003:1004")
        self.assertEqual(config["config"]["Cmd"], ["sh"])
        self.assertEqual(config["config"]["ExposedPorts"], {"80/tcp": {}})
        self.assertEqual((config["architecture"], config["os"]), ("amd64", "linux"))
        manifest = json.loads(image.manifest.data)
        self.assertEqual(manifest["config"]["digest"], image.config.digest)
        self.assertEqual(manifest["layers"][0]["digest"], self.layer.digest)
        self.assertEqual(manifest["layers"][0]["size"], self.layer.size)

    def test_user_alone_changes_the_image_id(self):
        a = build_image([self.layer], RunConfig(user="1002"), "amd64", "x")
        b = build_image([self.layer], RunConfig(user="www-data"), "amd64", "x")
        self.assertNotEqual(a.config.digest, b.config.digest)
        self.assertEqual(a.layers, b.layers)

    def test_index_lists_platforms(self):
        amd = build_image([self.layer], RunConfig(), "amd64", "x")
        arm = build_image([self.layer], RunConfig(), "arm64", "x")
        index = json.loads(build_index([("linux", "amd64", amd), ("linux", "arm64", arm)]).index.data)
        self.assertEqual(index["mediaType"], MEDIA_INDEX)
        self.assertEqual([m["platform"]["architecture"] for m in index["manifests"]], ["amd64", "arm64"])
        self.assertEqual(index["manifests"][0]["digest"], amd.digest)


class LayoutTest(unittest.TestCase):
    def test_layout_holds_every_blob_and_ref(self):
        image = build_image([build_layer([Entry.file("f", b"1")])], RunConfig(), "amd64", "x")
        with tempfile.TemporaryDirectory() as tmp:
            layout = Layout(pathlib.Path(tmp))
            layout.add("busybox:latest", image)
            layout.finish()
            index = json.loads((pathlib.Path(tmp) / "index.json").read_text())
            self.assertEqual(index["manifests"][0]["annotations"][REF_ANNOTATION], "busybox:latest")
            for blob in [image.manifest, *image.blobs()]:
                path = pathlib.Path(tmp) / "blobs/sha256" / blob.digest.split(":")[1]
                self.assertEqual(path.read_bytes(), blob.data)
            if shutil.which("skopeo"):
                out = subprocess.run(
                    ["skopeo", "inspect", f"oci:{tmp}:busybox:latest"], check=True, capture_output=True, text=True
                )
                self.assertEqual(json.loads(out.stdout)["Digest"], image.digest)


@unittest.skipUnless(shutil.which("docker-registry"), "docker-registry not installed")
class RegistryPushTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.state = tempfile.mkdtemp(prefix="ocibuild-registry-")
        out = subprocess.run(
            [str(E2E / "lib/registry.sh"), "start", cls.state], check=True, capture_output=True, text=True
        )
        cls.address = out.stdout.strip()

    @classmethod
    def tearDownClass(cls):
        subprocess.run([str(E2E / "lib/registry.sh"), "stop", cls.state], check=False)
        shutil.rmtree(cls.state, ignore_errors=True)

    def test_push_then_tag_resolves_and_repush_uploads_nothing(self):
        layer = build_layer([Entry.file("pushed", os.urandom(16))])
        image = build_image([layer], RunConfig(cmd=("sh",)), "amd64", "push test")
        registry = Registry(self.address)
        repo = "corral-e2e-tests/push"
        registry.push_image(repo, "v1", image)
        self.assertEqual(registry.tag_digest(repo, "v1"), image.digest)
        self.assertEqual([registry.push_blob(repo, b) for b in image.blobs()], ["exists", "exists"])
        # A second repository gets the layer by cross-repository mount, not upload.
        self.assertEqual(registry.push_blob("corral-e2e-tests/other", image.blobs()[1]), "mounted")
        self.assertIsNone(registry.tag_digest(repo, "no-such-tag"))

    def test_index_push(self):
        layer = build_layer([Entry.file("index", os.urandom(16))])
        amd = build_image([layer], RunConfig(), "amd64", "x")
        arm = build_image([layer], RunConfig(), "arm64", "x")
        index = build_index([("linux", "amd64", amd), ("linux", "arm64", arm)])
        registry = Registry(self.address)
        registry.push_index("corral-e2e-tests/index", "multi", index)
        self.assertEqual(registry.tag_digest("corral-e2e-tests/index", "multi"), index.digest)
        self.assertEqual(registry.tag_digest("corral-e2e-tests/index", amd.digest), amd.digest)


if __name__ == "__main__":
    unittest.main()
