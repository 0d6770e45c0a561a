"""Push images to a plain-HTTP OCI distribution registry (the local test registry).

Only what the test registry needs: monolithic blob uploads, cross-repository
blob mounts (the shared busybox base layer is uploaded once), manifests by
digest and by tag. A tag that already points at the same digest is skipped,
which makes a rebuild with unchanged content a few HEAD requests.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

from .image import MEDIA_INDEX, MEDIA_MANIFEST, Blob, Image, ImageIndex

ACCEPT_MANIFESTS = f"{MEDIA_MANIFEST}, {MEDIA_INDEX}"


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self, address: str, timeout: float = 60.0):
        self.base = f"http://{address}"
        self.timeout = timeout
        # digest -> a repository known to hold it, for cross-repository mounts.
        self._known_blobs: dict[str, str] = {}

    def _request(self, method: str, url: str, data: bytes | None = None, headers: dict | None = None):
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            return err  # callers look at .status / .code themselves
        except OSError as err:
            raise RegistryError(f"{method} {url}: {err}") from err

    @staticmethod
    def _status(response) -> int:
        return getattr(response, "status", None) or response.code

    def _expect(self, response, method: str, url: str, *ok: int):
        status = self._status(response)
        if status not in ok:
            body = response.read(500).decode(errors="replace")
            raise RegistryError(f"{method} {url}: HTTP {status}: {body}")
        return response

    def ping(self) -> None:
        url = f"{self.base}/v2/"
        self._expect(self._request("GET", url), "GET", url, 200)

    def tag_digest(self, repo: str, tag: str) -> str | None:
        """The digest a tag points at, or None when the tag does not exist."""
        url = f"{self.base}/v2/{repo}/manifests/{tag}"
        response = self._request("HEAD", url, headers={"Accept": ACCEPT_MANIFESTS})
        if self._status(response) == 404:
            return None
        self._expect(response, "HEAD", url, 200)
        return response.headers.get("Docker-Content-Digest")

    def _has_blob(self, repo: str, digest: str) -> bool:
        url = f"{self.base}/v2/{repo}/blobs/{digest}"
        response = self._request("HEAD", url)
        if self._status(response) == 404:
            return False
        self._expect(response, "HEAD", url, 200)
        return True

    def push_blob(self, repo: str, blob: Blob) -> str:
        """Make `blob` present in `repo`. Returns how: exists, mounted or uploaded."""
        digest = blob.digest
        if self._has_blob(repo, digest):
            self._known_blobs.setdefault(digest, repo)
            return "exists"
        source = self._known_blobs.get(digest)
        query = {"mount": digest, "from": source} if source else {}
        url = f"{self.base}/v2/{repo}/blobs/uploads/?{urllib.parse.urlencode(query)}"
        response = self._expect(self._request("POST", url), "POST", url, 201, 202)
        if self._status(response) == 201:
            return "mounted"
        location = urllib.parse.urljoin(self.base, response.headers["Location"])
        separator = "&" if "?" in location else "?"
        put_url = f"{location}{separator}digest={urllib.parse.quote(digest)}"
        self._expect(
            self._request("PUT", put_url, blob.data, {"Content-Type": "application/octet-stream"}),
            "PUT",
            put_url,
            201,
        )
        self._known_blobs[digest] = repo
        return "uploaded"

    def put_manifest(self, repo: str, reference: str, manifest: Blob) -> None:
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        response = self._request("PUT", url, manifest.data, {"Content-Type": manifest.media_type})
        self._expect(response, "PUT", url, 201)
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned != manifest.digest:
            raise RegistryError(f"PUT {url}: registry stored {returned}, expected {manifest.digest}")

    def push_image(self, repo: str, tag: str, image: Image) -> None:
        for blob in image.blobs():
            self.push_blob(repo, blob)
        self.put_manifest(repo, tag, image.manifest)

    def push_index(self, repo: str, tag: str, index: ImageIndex) -> None:
        for image in index.images:
            for blob in image.blobs():
                self.push_blob(repo, blob)
            self.put_manifest(repo, image.digest, image.manifest)
        self.put_manifest(repo, tag, index.index)
