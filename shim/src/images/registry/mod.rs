//! A client for the OCI distribution API (`/v2/<name>/manifests/…`, `/v2/<name>/blobs/…`),
//! with the endpoint rules of containerd's hosts configuration.
//!
//! Why not the `oci-client` crate: it keeps the first credentials it sees per registry for
//! the client's lifetime (CRI sends credentials per pull, so a later pull with other or
//! corrected credentials would silently reuse the first), turns token-server failures into
//! anonymous requests (hiding the real error), cannot do the identity-token (OAuth2 refresh
//! token) flow, and models mirrors as a host name only. The protocol part corral needs is
//! small, so it is written here on `reqwest`, which does TLS (rustls, system roots),
//! HTTP/2, connection pooling and redirects (dropping `Authorization` on a cross-host
//! redirect, as registries' blob redirects to object storage need).
//!
//! Endpoints of a reference, tried in order: the mirrors configured for its registry, then
//! the registry itself unless a mirror says `no_fallback`. A registry is reached over HTTPS
//! unless it is listed in `insecure_registries` or is a loopback address; a mirror URL says
//! its scheme, and plain `http://` is accepted only for such hosts.

pub mod auth;

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

pub use self::auth::{AuthConfig, Credentials};
use self::auth::{Challenge, TokenResponse, parse_challenge};
use super::digest::Digest;
use super::error::{ImageError, Result};
use super::oci::media;
use super::reference::{DOCKER_HUB, DOCKER_HUB_API, Reference};
use crate::config::ImagesConfig;

/// Manifests larger than this are refused (containerd uses the same 4 MiB limit).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared HTTP client and the endpoint configuration.
pub struct Registry {
    http: reqwest::Client,
    config: ImagesConfig,
    progress_timeout: Duration,
}

/// One place to pull a repository from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`, no trailing slash.
    pub base: String,
    /// `host[:port]`, what credentials are matched against.
    pub host: String,
    /// For a mirror: the registry it mirrors (sent as the `ns` query parameter, as containerd does).
    pub mirror_of: Option<String>,
}

/// Whether `host[:port]` is a loopback name or address (always allowed over plain HTTP).
pub fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Registry {
    /// A client for `config`; fails on an invalid mirror URL.
    pub fn new(config: &ImagesConfig) -> Result<Registry> {
        check_config(config).map_err(ImageError::Unsupported)?;
        // reqwest is built without a bundled crypto provider; ring is the one corral ships.
        // Installing twice (another component did) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImageError::Registry {
                registry: "-".into(),
                step: "creating the HTTP client".into(),
                message: describe(&e),
            })?;
        Ok(Registry {
            http,
            config: config.clone(),
            progress_timeout: Duration::from_secs(config.pull_progress_timeout_secs.max(1)),
        })
    }

    fn insecure(&self, host: &str) -> bool {
        is_insecure(&self.config, host)
    }

    /// Where to pull `reference` from, in order.
    pub fn endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mut fallback = true;
        let registry = &reference.domain;
        for mirror in self.config.mirrors.iter().filter(|m| mirror_matches(&m.registry, registry)) {
            for url in &mirror.endpoints {
                // URLs were checked by check_config at construction.
                if let Ok((scheme, host)) = split_url(url, &self.config) {
                    out.push(Endpoint { base: format!("{scheme}://{host}"), host, mirror_of: Some(registry.clone()) });
                }
            }
            fallback &= !mirror.no_fallback;
        }
        if fallback {
            let host = reference.api_host().to_owned();
            let scheme = if self.insecure(&host) || self.insecure(registry) { "http" } else { "https" };
            out.push(Endpoint { base: format!("{scheme}://{host}"), host, mirror_of: None });
        }
        out
    }

    /// A pull session for `reference`: endpoints with their credentials and token caches.
    pub fn session(&self, reference: &Reference, auth: &AuthConfig) -> Result<Session<'_>> {
        let mut endpoints = Vec::new();
        for endpoint in self.endpoints(reference) {
            let credentials = auth.credentials_for(&endpoint.host)?;
            let header = match &credentials {
                Credentials::RegistryToken(t) => Some(format!("Bearer {t}")),
                _ => None,
            };
            endpoints.push(EndpointState { endpoint, credentials, authorization: Mutex::new(header) });
        }
        if endpoints.is_empty() {
            return Err(ImageError::Unsupported(format!("no endpoint configured for registry {}", reference.domain)));
        }
        Ok(Session { registry: self, reference: reference.clone(), endpoints, preferred: AtomicUsize::new(0) })
    }
}

fn mirror_matches(configured: &str, registry: &str) -> bool {
    configured == registry || (configured == DOCKER_HUB_API && registry == DOCKER_HUB)
}

fn is_insecure(config: &ImagesConfig, host: &str) -> bool {
    let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
    is_loopback(host) || config.insecure_registries.iter().any(|r| r == host || r == bare)
}

/// `http://127.0.0.1:5000/` → (`http`, `127.0.0.1:5000`); a bare `host:port` is HTTPS (or
/// HTTP for an insecure host).
fn split_url(url: &str, config: &ImagesConfig) -> std::result::Result<(&'static str, String), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => ("http", rest),
        Some(("https", rest)) => ("https", rest),
        Some((other, _)) => return Err(format!("mirror endpoint {url:?}: unsupported scheme {other:?}")),
        None if is_insecure(config, url.trim_end_matches('/')) => ("http", url),
        None => ("https", url),
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("mirror endpoint {url:?}: expected scheme://host[:port] without a path"));
    }
    if scheme == "http" && !is_insecure(config, host) {
        return Err(format!(
            "mirror endpoint {url:?} uses plain HTTP; add {host:?} to images.insecure_registries to allow it"
        ));
    }
    Ok((scheme, host.to_owned()))
}

/// Checks the mirror URLs of `config` (used by config validation at start-up).
pub fn check_config(config: &ImagesConfig) -> std::result::Result<(), String> {
    for mirror in &config.mirrors {
        if mirror.endpoints.is_empty() && mirror.no_fallback {
            return Err(format!(
                "images.mirrors for {:?}: no endpoints and no_fallback leaves nothing to pull from",
                mirror.registry
            ));
        }
        for url in &mirror.endpoints {
            split_url(url, config)?;
        }
    }
    Ok(())
}

struct EndpointState {
    endpoint: Endpoint,
    credentials: Credentials,
    /// The `Authorization` value that worked (or is about to be tried) on this endpoint.
    authorization: Mutex<Option<String>>,
}

/// Why one endpoint could not serve a request.
enum Failure {
    NotFound,
    Unauthorized(String),
    Stalled,
    Other(String),
}

/// A manifest as served.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// The registry's `Docker-Content-Digest` header, if any.
    pub digest_header: Option<String>,
}

/// Requests for one reference with one set of credentials.
pub struct Session<'a> {
    registry: &'a Registry,
    reference: Reference,
    endpoints: Vec<EndpointState>,
    /// The endpoint that served the manifest; blobs are asked there first.
    preferred: AtomicUsize,
}

impl Session<'_> {
    /// The reference this session pulls.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Fetches the manifest or index `tag_or_digest` of the session's repository.
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<FetchedManifest> {
        let what = format!("manifest {}:{tag_or_digest}", self.reference.repository());
        let mut resp = self.get(&format!("manifests/{tag_or_digest}"), Some(media::ACCEPT_MANIFESTS), &what).await?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = header(CONTENT_TYPE.as_str());
        let digest_header = header("docker-content-digest");
        let mut bytes = Vec::new();
        while let Some(chunk) = self.chunk(&mut resp, &format!("reading {what}")).await? {
            if bytes.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(ImageError::Verification { what, reason: "manifest larger than 4 MiB".into() });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(FetchedManifest { bytes, content_type, digest_header })
    }

    /// Starts fetching blob `digest`; read the body with [`Session::chunk`].
    pub async fn blob(&self, digest: &Digest) -> Result<reqwest::Response> {
        self.get(&format!("blobs/{digest}"), None, &format!("blob {digest}")).await
    }

    /// The next piece of a response body, or a [`ImageError::Stalled`] when none arrives in time.
    pub async fn chunk(&self, resp: &mut reqwest::Response, step: &str) -> Result<Option<bytes::Bytes>> {
        match tokio::time::timeout(self.registry.progress_timeout, resp.chunk()).await {
            Err(_) => Err(self.stalled(step)),
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(e)) => Err(ImageError::Registry {
                registry: resp.url().host_str().unwrap_or("?").to_owned(),
                step: step.to_owned(),
                message: describe(&e),
            }),
        }
    }

    fn stalled(&self, step: &str) -> ImageError {
        ImageError::Stalled {
            reference: self.reference.to_string(),
            secs: self.registry.progress_timeout.as_secs(),
            step: step.to_owned(),
        }
    }

    /// GET `/v2/<repo>/<path>` from the first endpoint that has it.
    async fn get(&self, path: &str, accept: Option<&str>, what: &str) -> Result<reqwest::Response> {
        let first = self.preferred.load(Ordering::Relaxed);
        let order = std::iter::once(first).chain((0..self.endpoints.len()).filter(|i| *i != first));
        let mut failures = Vec::new();
        for i in order {
            let ep = &self.endpoints[i];
            match self.get_from(ep, path, accept).await {
                Ok(resp) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(f) => {
                    tracing::debug!(endpoint = %ep.endpoint.base, what, "endpoint failed; trying the next one");
                    failures.push((ep.endpoint.base.clone(), f));
                }
            }
        }
        Err(self.summarize(what, failures))
    }

    fn summarize(&self, what: &str, failures: Vec<(String, Failure)>) -> ImageError {
        let registry = self.reference.domain.clone();
        if failures.iter().all(|(_, f)| matches!(f, Failure::NotFound)) {
            return ImageError::NotFound { what: what.to_owned(), registry };
        }
        if matches!(failures.last(), Some((_, Failure::Stalled))) {
            return self.stalled(&format!("requesting {what}"));
        }
        let text = |f: &Failure| match f {
            Failure::NotFound => "not found".to_owned(),
            Failure::Unauthorized(m) | Failure::Other(m) => m.clone(),
            Failure::Stalled => format!("no response for {}s", self.registry.progress_timeout.as_secs()),
        };
        let message = failures.iter().map(|(base, f)| format!("{base}: {}", text(f))).collect::<Vec<_>>().join("; ");
        if failures.iter().any(|(_, f)| matches!(f, Failure::Unauthorized(_)))
            && failures.iter().all(|(_, f)| matches!(f, Failure::Unauthorized(_) | Failure::NotFound))
        {
            return ImageError::Unauthorized { registry, repository: self.reference.path.clone(), message };
        }
        ImageError::Registry { registry, step: format!("fetching {what}"), message }
    }

    async fn get_from(
        &self,
        ep: &EndpointState,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let url = format!("{}/v2/{}/{path}", ep.endpoint.base, self.reference.path);
        for attempt in 0..2 {
            let mut req = self.registry.http.get(&url);
            if let Some(ns) = &ep.endpoint.mirror_of {
                req = req.query(&[("ns", ns)]);
            }
            if let Some(accept) = accept {
                req = req.header(ACCEPT, accept);
            }
            let authorization = ep.authorization.lock().ok().and_then(|a| a.clone());
            if let Some(value) = authorization {
                req = req.header(AUTHORIZATION, value);
            }
            let resp = match tokio::time::timeout(self.registry.progress_timeout, req.send()).await {
                Err(_) => return Err(Failure::Stalled),
                Ok(Err(e)) => return Err(Failure::Other(describe(&e))),
                Ok(Ok(resp)) => resp,
            };
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge =
                    resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
                let value = self.authorize(ep, challenge).await?;
                if let Ok(mut slot) = ep.authorization.lock() {
                    *slot = Some(value);
                }
                continue;
            }
            let body = error_body(resp).await;
            return Err(match status {
                StatusCode::NOT_FOUND => Failure::NotFound,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    Failure::Unauthorized(format!("HTTP {status}: {body}"))
                }
                _ => Failure::Other(format!("HTTP {status}: {body}")),
            });
        }
        Err(Failure::Unauthorized("credentials rejected after authenticating".into()))
    }

    /// The `Authorization` value answering `challenge` with the endpoint's credentials.
    async fn authorize(&self, ep: &EndpointState, challenge: Option<Challenge>) -> Result<String, Failure> {
        match (challenge, &ep.credentials) {
            (_, Credentials::RegistryToken(_)) => Err(Failure::Unauthorized("the registry token was rejected".into())),
            (None, _) => {
                Err(Failure::Unauthorized("authentication required (no usable WWW-Authenticate challenge)".into()))
            }
            (Some(Challenge::Basic), Credentials::Basic { username, password }) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                Ok(format!("Basic {encoded}"))
            }
            (Some(Challenge::Basic), _) => {
                Err(Failure::Unauthorized("the registry requires a username and password".into()))
            }
            (Some(Challenge::Bearer { realm, service, scope }), credentials) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.reference.path));
                let token = self.fetch_token(&realm, service.as_deref(), &scope, credentials).await?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        credentials: &Credentials,
    ) -> Result<String, Failure> {
        let http = &self.registry.http;
        let req = match credentials {
            Credentials::IdentityToken(refresh) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("scope", scope),
                    ("client_id", "corral"),
                ];
                if let Some(service) = service {
                    form.push(("service", service));
                }
                http.post(realm).form(&form)
            }
            other => {
                let mut query = vec![("scope", scope)];
                if let Some(service) = service {
                    query.push(("service", service));
                }
                let req = http.get(realm).query(&query);
                match other {
                    Credentials::Basic { username, password } => req.basic_auth(username, Some(password)),
                    _ => req,
                }
            }
        };
        let resp = match tokio::time::timeout(self.registry.progress_timeout, req.send()).await {
            Err(_) => return Err(Failure::Stalled),
            Ok(Err(e)) => return Err(Failure::Other(format!("token server {realm}: {}", describe(&e)))),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if !status.is_success() {
            let body = error_body(resp).await;
            return Err(Failure::Unauthorized(format!("token server {realm}: HTTP {status}: {body}")));
        }
        let body = match tokio::time::timeout(self.registry.progress_timeout, resp.bytes()).await {
            Err(_) => return Err(Failure::Stalled),
            Ok(Err(e)) => return Err(Failure::Other(format!("token server {realm}: {}", describe(&e)))),
            Ok(Ok(body)) => body,
        };
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| Failure::Unauthorized(format!("token server {realm}: answer has no token")))
    }
}

/// The registry's error message: `CODE: message` from a distribution error body, else the
/// start of the body.
async fn error_body(resp: reqwest::Response) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let body =
        tokio::time::timeout(Duration::from_secs(5), resp.bytes()).await.ok().and_then(|b| b.ok()).unwrap_or_default();
    if let Ok(parsed) = serde_json::from_slice::<Errors>(&body)
        && !parsed.errors.is_empty()
    {
        return parsed.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; ");
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() { "(empty body)".into() } else { text.chars().take(200).collect() }
}

/// A reqwest error with its causes ("error sending request: … Connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MirrorConfig;

    fn config(mirrors: Vec<MirrorConfig>) -> ImagesConfig {
        ImagesConfig { insecure_registries: vec!["insecure.local".into()], mirrors, ..ImagesConfig::default() }
    }

    fn bases(registry: &Registry, reference: &str) -> Vec<String> {
        registry.endpoints(&Reference::parse(reference).unwrap()).into_iter().map(|e| e.base).collect()
    }

    #[test]
    fn https_by_default_http_for_loopback_and_insecure() {
        let r = Registry::new(&config(vec![])).unwrap();
        assert_eq!(bases(&r, "busybox"), ["https://registry-1.docker.io"]);
        assert_eq!(bases(&r, "registry.k8s.io/pause:3.10"), ["https://registry.k8s.io"]);
        assert_eq!(bases(&r, "127.0.0.1:5000/busybox"), ["http://127.0.0.1:5000"]);
        assert_eq!(bases(&r, "localhost:5000/busybox"), ["http://localhost:5000"]);
        assert_eq!(bases(&r, "[::1]:5000/busybox"), ["http://[::1]:5000"]);
        assert_eq!(bases(&r, "insecure.local:8080/x"), ["http://insecure.local:8080"]);
        assert!(is_loopback("127.9.9.9:1") && !is_loopback("10.0.0.1:5000") && !is_loopback("localhost.evil.com"));
    }

    #[test]
    fn mirrors_come_first_and_can_forbid_fallback() {
        let mirrors = vec![
            MirrorConfig {
                registry: "registry.k8s.io".into(),
                endpoints: vec!["http://127.0.0.1:5000/".into(), "https://mirror.example.com".into()],
                no_fallback: false,
            },
            MirrorConfig {
                registry: "docker.io".into(),
                endpoints: vec!["insecure.local:5000".into()],
                no_fallback: true,
            },
        ];
        let r = Registry::new(&config(mirrors)).unwrap();
        assert_eq!(
            bases(&r, "registry.k8s.io/pause:3.10"),
            ["http://127.0.0.1:5000", "https://mirror.example.com", "https://registry.k8s.io"]
        );
        assert_eq!(bases(&r, "busybox"), ["http://insecure.local:5000"]);
        let ep = &r.endpoints(&Reference::parse("busybox").unwrap())[0];
        assert_eq!(ep.mirror_of.as_deref(), Some("docker.io"));
    }

    #[test]
    fn plain_http_mirrors_need_an_insecure_host() {
        let bad = MirrorConfig {
            registry: "r.io".into(),
            endpoints: vec!["http://10.1.2.3:5000".into()],
            no_fallback: false,
        };
        let err = check_config(&config(vec![bad])).unwrap_err();
        assert!(err.contains("insecure_registries"), "{err}");
        let path =
            MirrorConfig { registry: "r.io".into(), endpoints: vec!["https://m.io/v2/x".into()], no_fallback: false };
        assert!(check_config(&config(vec![path])).unwrap_err().contains("without a path"));
        let ftp = MirrorConfig { registry: "r.io".into(), endpoints: vec!["ftp://m.io".into()], no_fallback: false };
        assert!(Registry::new(&config(vec![ftp])).is_err());
    }
}
