//! Registry authentication against the real registry: htpasswd (Basic) and token auth
//! (Bearer, with a token server run here that signs RS256 JWTs the registry verifies against
//! its root certificate bundle, as docker_auth or Harbor do).

use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::registry::{Pusher, TestRegistry};
use super::*;
use crate::images::ImageError;

const USER: &str = "tester";
const PASSWORD: &str = "s3cret";
const REFRESH: &str = "refresh-token-for-tester";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token server: answers `GET /token` (Basic credentials) and `POST /token`
/// (`grant_type=refresh_token`) with signed registry tokens.
struct TokenServer {
    addr: String,
    key: Arc<ring::signature::RsaKeyPair>,
    cert_der: Arc<Vec<u8>>,
    cert_pem: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    async fn start() -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let (pem, key, cert_pem, cert_der) = (
            dir.path().join("key.pem"),
            dir.path().join("key.der"),
            dir.path().join("cert.pem"),
            dir.path().join("cert.der"),
        );
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let (kp, k, p, d) =
            (pem.to_str().unwrap(), key.to_str().unwrap(), cert_pem.to_str().unwrap(), cert_der.to_str().unwrap());
        run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", kp]);
        run(&["pkcs8", "-topk8", "-nocrypt", "-in", kp, "-outform", "DER", "-out", k]);
        run(&["req", "-x509", "-new", "-key", kp, "-subj", "/CN=corral-test-token", "-days", "2", "-out", p]);
        run(&["x509", "-in", p, "-outform", "DER", "-out", d]);
        let key = Arc::new(ring::signature::RsaKeyPair::from_pkcs8(&std::fs::read(&key).unwrap()).unwrap());
        let cert_der = Arc::new(std::fs::read(&cert_der).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (k, c) = (key.clone(), cert_der.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_token(conn, k.clone(), c.clone()));
            }
        });
        TokenServer { addr, key, cert_der, cert_pem, task, _dir: dir }
    }

    fn auth_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: corral-test\n    issuer: corral-test-issuer\n    rootcertbundle: {}\n",
            self.addr,
            self.cert_pem.display()
        )
    }

    fn mint(&self, repository: &str, actions: &[&str]) -> String {
        mint(&self.key, &self.cert_der, repository, actions)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mint(key: &ring::signature::RsaKeyPair, cert_der: &[u8], repository: &str, actions: &[&str]) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header =
        json!({"typ": "JWT", "alg": "RS256", "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)]});
    let claims = json!({
        "iss": "corral-test-issuer", "sub": USER, "aud": "corral-test",
        "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{repository}"),
        "access": [{"type": "repository", "name": repository, "actions": actions}],
    });
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig)
        .unwrap();
    format!("{signing_input}.{}", b64url(&sig))
}

/// One HTTP/1.1 request per connection is all a token fetch needs.
async fn serve_token(mut conn: tokio::net::TcpStream, key: Arc<ring::signature::RsaKeyPair>, cert: Arc<Vec<u8>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = conn.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let Ok(n) = conn.read(&mut chunk).await else { return };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let request_line = head.lines().next().unwrap_or("");
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let params_text = if request_line.starts_with("POST") {
        body
    } else {
        target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default()
    };
    let params: Vec<(String, String)> = url_pairs(&params_text);
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let authorized = if request_line.starts_with("POST") {
        get("grant_type").as_deref() == Some("refresh_token") && get("refresh_token").as_deref() == Some(REFRESH)
    } else {
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")));
        header("authorization").as_deref() == Some(expected.as_str())
    };
    let response = if authorized {
        let scope = get("scope").unwrap_or_default();
        let mut parts = scope.splitn(3, ':');
        let (_, name, actions) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let token = mint(&key, &cert, name, &actions.split(',').collect::<Vec<_>>());
        let field = if request_line.starts_with("POST") { "access_token" } else { "token" };
        let body = json!({ field: token, "expires_in": 600 }).to_string();
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        let body = r#"{"details":"bad credentials"}"#;
        format!("HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    };
    let _ = conn.write_all(response.as_bytes()).await;
}

fn url_pairs(s: &str) -> Vec<(String, String)> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        let mut out = Vec::new();
        let bytes = v.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn basic(username: &str, password: &str) -> AuthConfig {
    AuthConfig { username: username.into(), password: password.into(), ..AuthConfig::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_needs_basic_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
    let registry = TestRegistry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: corral-test\n    path: {}\n",
        htpasswd.display()
    ));
    let mut pusher = Pusher::new(&registry);
    pusher.authorization =
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))));
    let pushed = push_with(&pusher).await;

    let store = open_store(dir.path());
    let reference = format!("{}/private:latest", registry.addr);
    let err = store.pull(&reference, &anonymous()).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("username and password"), "{err}");
    let err = store.pull(&reference, &basic(USER, "wrong")).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");
    let for_other_host = AuthConfig { server_address: "https://other.example.com".into(), ..basic(USER, PASSWORD) };
    assert!(store.pull(&reference, &for_other_host).await.is_err(), "credentials for another registry are not sent");

    assert_eq!(store.pull(&reference, &basic(USER, PASSWORD)).await.unwrap(), pushed.config);
    store.remove(&reference, |_| false).unwrap();
    let encoded = AuthConfig {
        auth: base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")),
        server_address: registry.addr.clone(),
        ..AuthConfig::default()
    };
    assert_eq!(store.pull(&reference, &encoded).await.unwrap(), pushed.config);
}

async fn push_with(pusher: &Pusher) -> super::registry::Pushed {
    let layer = super::registry::TestLayer::gzip(super::tarball::Tarball::new().file("secret", 0o600, b"s").finish());
    pusher.image("private", "latest", &[layer], json!({}), "amd64", false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_with_basic_identity_and_registry_tokens() {
    let tokens = TokenServer::start().await;
    let registry = TestRegistry::start_with(&tokens.auth_yaml());
    let mut pusher = Pusher::new(&registry);
    pusher.authorization = Some(format!("Bearer {}", tokens.mint("private", &["pull", "push"])));
    let pushed = push_with(&pusher).await;

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let reference = format!("{}/private:latest", registry.addr);
    let err = store.pull(&reference, &anonymous()).await.unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }) && err.to_string().contains("token server"), "{err}");
    let err = store.pull(&reference, &basic(USER, "wrong")).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    for (what, auth) in [
        ("basic", basic(USER, PASSWORD)),
        ("identity token", AuthConfig { identity_token: REFRESH.into(), ..AuthConfig::default() }),
        ("registry token", AuthConfig { registry_token: tokens.mint("private", &["pull"]), ..AuthConfig::default() }),
    ] {
        let id = store.pull(&reference, &auth).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(id, pushed.config, "{what}");
        store.remove(&reference, |_| false).unwrap();
    }
    let wrong_scope = AuthConfig { registry_token: tokens.mint("other", &["pull"]), ..AuthConfig::default() };
    assert!(matches!(store.pull(&reference, &wrong_scope).await.unwrap_err(), ImageError::Unauthorized { .. }));
}
