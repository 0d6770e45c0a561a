//! Image references, normalized the way Docker and containerd do it
//! (github.com/distribution/reference `ParseNormalizedNamed`):
//!
//! | written | normalized |
//! |---|---|
//! | `busybox` | `docker.io/library/busybox:latest` |
//! | `user/app:v1` | `docker.io/user/app:v1` |
//! | `127.0.0.1:5000/busybox` | `127.0.0.1:5000/busybox:latest` |
//! | `busybox@sha256:…` | `docker.io/library/busybox@sha256:…` (no tag added) |
//! | `busybox:1.36@sha256:…` | tag kept for display, the digest decides what is pulled |
//!
//! The first path component is a registry host only if it has a `.` or `:`, is `localhost`,
//! or has upper-case letters; otherwise the name is on Docker Hub.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::digest::Digest;
use super::error::{ImageError, Result};

/// Docker Hub, as written in normalized names.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const MAX_NAME_LEN: usize = 255;

static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    let component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    Regex::new(&format!(r"^(?:{component}(?:\.{component})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")).expect("constant regex")
});
static PATH_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$").expect("constant regex"));
// ASCII word characters, as Go's `\w` in the distribution grammar. (A Unicode `\w` would
// accept tags no registry serves, and its NFA repeated 128 times costs megabytes of memory.)
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("constant regex"));

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host as written in names (`docker.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// Repository path inside the registry (`library/busybox`).
    pub path: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// The manifest digest, when pinned.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes `s` (see the module docs).
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |reason: &str| ImageError::InvalidReference { reference: s.into(), reason: reason.into() };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("a 64-character hex string is an image id, not a name"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (s, None),
        };
        // A ':' after the last '/' starts a tag; one before it belongs to a host:port.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag
            && !TAG.is_match(tag)
        {
            return Err(bad("invalid tag (letters, digits, '_', '.', '-'; at most 128)"));
        }
        let (domain, path) = split_domain(name);
        if !DOMAIN.is_match(&domain) {
            return Err(bad("invalid registry host"));
        }
        if path.is_empty() {
            return Err(bad("missing repository name"));
        }
        if path.to_lowercase() != path {
            return Err(bad("repository name must be lowercase"));
        }
        if let Some(component) = path.split('/').find(|c| !PATH_COMPONENT.is_match(c)) {
            return Err(bad(&format!("invalid path component {component:?}")));
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(bad("repository name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(Reference { domain, path, tag, digest })
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `repository:tag`, the form kept in an image's repo tags; `None` for digest-pinned
    /// references (their tag was never resolved, so it proves nothing).
    pub fn repo_tag(&self) -> Option<String> {
        match (&self.tag, &self.digest) {
            (Some(tag), None) => Some(format!("{}:{tag}", self.repository())),
            _ => None,
        }
    }

    /// `repository@digest` for a given manifest digest, the form kept in repo digests.
    pub fn repo_digest(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.repository())
    }

    /// What to ask the registry's `/manifests/` endpoint for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The host the registry API is reached on (`docker.io` is served by `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB { DOCKER_HUB_API } else { &self.domain }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first => {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    if domain == LEGACY_DOCKER_HUB {
        domain = DOCKER_HUB.to_owned();
    }
    if domain == DOCKER_HUB && !path.contains('/') {
        path = format!("library/{path}");
    }
    (domain, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn names_default_to_docker_hub_library_latest() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("a/b/c"), "docker.io/a/b/c:latest");
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repo_tag().unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(r.manifest_reference(), "latest");
    }

    #[test]
    fn hosts_are_recognized_by_dot_colon_or_localhost() {
        let r = Reference::parse("127.0.0.1:5000/busybox").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "busybox", Some("latest"))
        );
        assert_eq!(norm("localhost/x:1"), "localhost/x:1");
        assert_eq!(norm("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
        assert_eq!(norm("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(norm("[::1]:5000/a"), "[::1]:5000/a:latest");
        assert_eq!(Reference::parse("localhost:5000/a").unwrap().api_host(), "localhost:5000");
    }

    #[test]
    fn digests_pin_the_manifest() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().as_str(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.repo_tag(), None);

        let r = Reference::parse(&format!("127.0.0.1:5000/busybox:1.36@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert_eq!(r.manifest_reference(), D, "the digest wins over the tag");
        assert_eq!(r.repo_tag(), None);
        assert_eq!(r.repo_digest(r.digest.as_ref().unwrap()), format!("127.0.0.1:5000/busybox@{D}"));
    }

    #[test]
    fn bad_references_are_refused_with_a_reason() {
        for (input, reason) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("docker.io/Library/busybox", "lowercase"),
            ("busybox:", "invalid tag"),
            ("busybox:-x", "invalid tag"),
            ("busybox:l\u{e4}test", "invalid tag"),
            ("busybox@sha256:abc", "64 lowercase hex"),
            ("busybox@md5:abc", "only sha256"),
            ("a//b", "invalid path component"),
            ("a/b/", "invalid path component"),
            ("foo__-bar", "invalid path component"),
            ("-host.io/a", "invalid registry host"),
            ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "image id"),
        ] {
            let err = Reference::parse(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
        }
        let long = format!("example.com/{}", "a".repeat(250));
        assert!(Reference::parse(&long).unwrap_err().to_string().contains("255"));
    }
}
