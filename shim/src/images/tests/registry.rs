//! A real registry for tests: Debian's `docker-registry`, on 127.0.0.1 and a free port, with
//! its storage in a temp dir; killed when the guard drops. Plus a helper that pushes images
//! through the distribution API, and a TCP relay that stalls.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::images::digest::Digest;
use crate::images::oci::media;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry.
pub struct TestRegistry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestRegistry {
    /// An open registry.
    pub fn start() -> TestRegistry {
        TestRegistry::start_with("")
    }

    /// A registry with an extra `auth:` YAML section (htpasswd or token).
    pub fn start_with(auth_yaml: &str) -> TestRegistry {
        let mut last_error = String::new();
        for _ in 0..3 {
            match TestRegistry::try_start(auth_yaml) {
                Ok(r) => return r,
                Err(e) => last_error = e,
            }
        }
        panic!("docker-registry did not start: {last_error}");
    }

    fn try_start(auth_yaml: &str) -> Result<TestRegistry, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  secret: corral-test\n{auth_yaml}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve").arg(&config).stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
        // SAFETY: prctl is async-signal-safe; it makes the kernel kill the registry if the
        // test process dies without running the guard's Drop.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{REGISTRY_BIN}: {e} (apt-get install docker-registry)"));
        let mut registry = TestRegistry { child, addr, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = registry.child.try_wait() {
                return Err(format!("exited with {status}: {}", registry.log_text()));
            }
            if std::net::TcpStream::connect(&registry.addr).is_ok() {
                return Ok(registry);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not listening after 15s: {}", registry.log_text()))
    }

    /// The registry's log (access log included).
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// How many times blob `digest` was served in full (`GET … 200`).
    pub fn blob_downloads(&self, digest: &Digest) -> usize {
        let needle = format!("/blobs/{digest}");
        self.log_text()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&needle) && l.contains("\" 200 "))
            .count()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A layer to push: uncompressed tar plus how to compress it.
pub struct TestLayer {
    pub tar: Vec<u8>,
    pub compression: Compress,
}

#[derive(Clone, Copy)]
pub enum Compress {
    Gzip,
    Zstd,
    None,
}

impl TestLayer {
    pub fn gzip(tar: Vec<u8>) -> TestLayer {
        TestLayer { tar, compression: Compress::Gzip }
    }
    pub fn zstd(tar: Vec<u8>) -> TestLayer {
        TestLayer { tar, compression: Compress::Zstd }
    }
    pub fn plain(tar: Vec<u8>) -> TestLayer {
        TestLayer { tar, compression: Compress::None }
    }
}

/// What was pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The config digest: the image id corral must report.
    pub config: Digest,
    pub manifest: Digest,
    pub manifest_size: u64,
    pub layers: Vec<Digest>,
}

/// Pushes blobs and manifests through the distribution API.
pub struct Pusher {
    http: reqwest::Client,
    base: String,
    /// `Authorization` header value for registries with auth.
    pub authorization: Option<String>,
}

impl Pusher {
    pub fn new(registry: &TestRegistry) -> Pusher {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Pusher { http: reqwest::Client::new(), base: format!("http://{}", registry.addr), authorization: None }
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(a) => req.header("authorization", a),
            None => req,
        }
    }

    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let resp = self.auth(self.http.post(format!("{}/v2/{repo}/blobs/uploads/", self.base))).send().await.unwrap();
        assert_eq!(resp.status(), 202, "start upload: {}", resp.text().await.unwrap());
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let url = if location.starts_with("http") { location } else { format!("{}{location}", self.base) };
        let sep = if url.contains('?') { '&' } else { '?' };
        let resp = self
            .auth(self.http.put(format!("{url}{sep}digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "finish upload: {}", resp.text().await.unwrap());
        digest
    }

    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Digest {
        let resp = self
            .auth(self.http.put(format!("{}/v2/{repo}/manifests/{reference}", self.base)))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "put manifest: {}", resp.text().await.unwrap());
        Digest::of(bytes)
    }

    /// Pushes an image (OCI media types unless `docker`) and tags it `tag` (if not empty).
    pub async fn image(
        &self,
        repo: &str,
        tag: &str,
        layers: &[TestLayer],
        run_config: serde_json::Value,
        arch: &str,
        docker: bool,
    ) -> Pushed {
        let mut descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        let mut digests = Vec::new();
        for layer in layers {
            let (blob, media_type) = match (layer.compression, docker) {
                (Compress::Gzip, false) => {
                    (super::tarball::gzip(&layer.tar), "application/vnd.oci.image.layer.v1.tar+gzip")
                }
                (Compress::Gzip, true) => {
                    (super::tarball::gzip(&layer.tar), "application/vnd.docker.image.rootfs.diff.tar.gzip")
                }
                (Compress::Zstd, _) => {
                    (super::tarball::zstd(&layer.tar), "application/vnd.oci.image.layer.v1.tar+zstd")
                }
                (Compress::None, _) => (layer.tar.clone(), "application/vnd.oci.image.layer.v1.tar"),
            };
            let digest = self.blob(repo, &blob).await;
            descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": blob.len()}));
            diff_ids.push(Digest::of(&layer.tar));
            digests.push(digest);
        }
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_digest = self.blob(repo, &config_bytes).await;
        let (manifest_type, config_type) = if docker {
            (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
        } else {
            (media::OCI_MANIFEST, media::OCI_CONFIG)
        };
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest, "size": config_bytes.len()},
            "layers": descriptors,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
        let manifest_digest = Digest::of(&manifest_bytes);
        let reference = if tag.is_empty() { manifest_digest.to_string() } else { tag.to_owned() };
        self.manifest(repo, &reference, manifest_type, &manifest_bytes).await;
        Pushed {
            config: config_digest,
            manifest: manifest_digest,
            manifest_size: manifest_bytes.len() as u64,
            layers: digests,
        }
    }

    /// Pushes an OCI index over already pushed images, one `(image, arch)` per entry.
    pub async fn index(&self, repo: &str, tag: &str, entries: &[(&Pushed, &str)]) -> Digest {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(p, arch)| {
                json!({"mediaType": media::OCI_MANIFEST, "digest": p.manifest, "size": p.manifest_size,
                       "platform": {"architecture": arch, "os": "linux"}})
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests});
        self.manifest(repo, tag, media::OCI_INDEX, &serde_json::to_vec(&index).unwrap()).await
    }
}

/// A TCP relay to `upstream` that forwards faithfully until `stall_after` bytes went back to
/// the client on one connection, then goes silent (connection kept open): a registry that
/// stops sending mid-download.
pub struct StallingProxy {
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    pub async fn start(upstream: &str, stall_after: usize) -> StallingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    });
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let want = buf.len().min(stall_after.saturating_sub(sent));
                        if want == 0 {
                            std::future::pending::<()>().await; // stall, holding the sockets
                        }
                        match sr.read(&mut buf[..want]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                                sent += n;
                            }
                        }
                    }
                    up.abort();
                });
            }
        });
        StallingProxy { addr, task }
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
