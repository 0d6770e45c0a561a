//! Registry credentials and the token dance of the distribution spec.
//!
//! CRI hands one `AuthConfig` per pull. It becomes [`Credentials`] for a given endpoint host
//! (only if `server_address` is empty or names that host, as containerd does, so credentials
//! for one registry never leak to a mirror on another host). On a `401` the registry's
//! `WWW-Authenticate` challenge says what to do:
//! - `Basic`: resend with the username/password;
//! - `Bearer realm=…,service=…,scope=…`: get a token from the realm (GET with Basic credentials,
//!   or anonymously; POST `grant_type=refresh_token` for an identity token) and resend with it.
//!
//! A `registry_token` is a ready bearer token and is sent from the first request on.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use crate::images::error::{ImageError, Result};

/// The credentials of a pull, as CRI's `AuthConfig` carries them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
    /// base64 of `username:password`.
    pub auth: String,
    /// The registry these credentials are for (`https://index.docker.io/v1/`, `registry.example.com`).
    pub server_address: String,
    /// An OAuth2 refresh token for the registry's token server.
    pub identity_token: String,
    /// A bearer token to send as is.
    pub registry_token: String,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// What to authenticate with on one endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic { username: String, password: String },
    IdentityToken(String),
    RegistryToken(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username})"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken"),
        }
    }
}

const DOCKER_HUB_NAMES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// `https://host:port/v1/` → `host:port`.
fn host_of(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn same_registry(a: &str, b: &str) -> bool {
    a == b || (DOCKER_HUB_NAMES.contains(&a) && DOCKER_HUB_NAMES.contains(&b))
}

impl AuthConfig {
    /// The credentials to present to `host` (`host[:port]` of the endpoint being contacted).
    pub fn credentials_for(&self, host: &str) -> Result<Credentials> {
        if !self.server_address.is_empty() && !same_registry(host_of(&self.server_address), host) {
            return Ok(Credentials::Anonymous);
        }
        if !self.registry_token.is_empty() {
            return Ok(Credentials::RegistryToken(self.registry_token.clone()));
        }
        if !self.identity_token.is_empty() {
            return Ok(Credentials::IdentityToken(self.identity_token.clone()));
        }
        if !self.username.is_empty() {
            return Ok(Credentials::Basic { username: self.username.clone(), password: self.password.clone() });
        }
        if !self.auth.is_empty() {
            let invalid = |why: &str| ImageError::InvalidAuth(format!("auth field: {why}"));
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .map_err(|_| invalid("not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| invalid("not UTF-8"))?;
            let (username, password) =
                text.split_once(':').ok_or_else(|| invalid("expected base64 of user:password"))?;
            return Ok(Credentials::Basic { username: username.into(), password: password.into() });
        }
        Ok(Credentials::Anonymous)
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Bearer realm="…",service="…"` / `Basic realm="…"`; `None` for other schemes.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let params = parse_params(params);
    let get = |k: &str| params.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
    } else {
        None
    }
}

/// `k1="v1",k2=v2` with backslash escapes inside quotes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

/// A token server's answer (`token` per the distribution spec, `access_token` per OAuth2).
#[derive(Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        self.token.filter(|t| !t.is_empty()).or(self.access_token.filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(r#"Bearer realm=http://127.0.0.1:1/t, service="a\"b""#),
            Some(Challenge::Bearer { realm: "http://127.0.0.1:1/t".into(), service: Some("a\"b".into()), scope: None })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None, "a bearer challenge needs a realm");
    }

    #[test]
    fn credentials_follow_cri_fields_and_server_address() {
        let basic = Credentials::Basic { username: "u".into(), password: "p:w".into() };
        let user_pass = AuthConfig { username: "u".into(), password: "p:w".into(), ..Default::default() };
        assert_eq!(user_pass.credentials_for("r.io").unwrap(), basic);
        let encoded = AuthConfig { auth: "dTpwOnc=".into(), ..Default::default() }; // u:p:w
        assert_eq!(encoded.credentials_for("r.io").unwrap(), basic);
        let bad = AuthConfig { auth: "!!".into(), ..Default::default() };
        assert!(bad.credentials_for("r.io").unwrap_err().to_string().contains("base64"));
        let token = AuthConfig { registry_token: "t".into(), username: "u".into(), ..Default::default() };
        assert_eq!(token.credentials_for("r.io").unwrap(), Credentials::RegistryToken("t".into()));
        let identity = AuthConfig { identity_token: "i".into(), ..Default::default() };
        assert_eq!(identity.credentials_for("r.io").unwrap(), Credentials::IdentityToken("i".into()));
        assert_eq!(AuthConfig::default().credentials_for("r.io").unwrap(), Credentials::Anonymous);

        let scoped = AuthConfig { server_address: "https://r.io/v2/".into(), ..user_pass.clone() };
        assert_eq!(scoped.credentials_for("r.io").unwrap(), basic);
        assert_eq!(scoped.credentials_for("mirror.local:5000").unwrap(), Credentials::Anonymous);
        let hub = AuthConfig { server_address: "https://index.docker.io/v1/".into(), ..user_pass };
        assert_eq!(hub.credentials_for("registry-1.docker.io").unwrap(), basic);
        assert!(!format!("{hub:?}").contains("p:w"), "secrets are not logged");
    }
}
