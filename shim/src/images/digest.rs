//! Content digests (`sha256:<64 hex>`) and layer chain ids.
//!
//! Only sha256 is accepted: it is what every registry and image builder produces, and refusing
//! the rest keeps "verified" meaning one thing.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::{ImageError, Result};

/// A validated `sha256:` digest. Image ids, layer digests, diff ids and chain ids are all digests.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// An image's id: the digest of its config blob, as containerd and Docker report it.
pub type ImageId = Digest;

const PREFIX: &str = "sha256:";

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Digest> {
        let bad = |reason: &str| ImageError::InvalidDigest { digest: s.into(), reason: reason.into() };
        let Some(hex) = s.strip_prefix(PREFIX) else {
            return Err(bad(if s.contains(':') { "only sha256 digests are supported" } else { "missing \"sha256:\"" }));
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("expected 64 lowercase hex characters"));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher holds.
    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("{PREFIX}{}", hex::encode(hasher.finalize())))
    }

    /// The 64 hex characters, used as file names in the store.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The chain ids of a layer stack, bottom first: `chain(0) = diff(0)`,
    /// `chain(n) = sha256(chain(n-1) + " " + diff(n))` (OCI image spec, config.md).
    pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
        let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
        for diff in diff_ids {
            let next = match chain.last() {
                None => diff.clone(),
                Some(parent) => Digest::of(format!("{parent} {diff}").as_bytes()),
            };
            chain.push(next);
        }
        chain
    }
}

impl TryFrom<String> for Digest {
    type Error = ImageError;
    fn try_from(s: String) -> Result<Digest> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_sha256() {
        let d = Digest::of(b"");
        assert_eq!(d.as_str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha512:abcd").unwrap_err().to_string().contains("only sha256"));
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
        assert!(Digest::parse(d.hex()).is_err());
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chain = Digest::chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
