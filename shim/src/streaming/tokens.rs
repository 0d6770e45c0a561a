//! Single-use URL tokens for pending streaming requests.
//!
//! `Exec`/`Attach`/`PortForward` RPCs park the CRI request here and return a URL holding a
//! random token; the client's HTTP request consumes it. Tokens expire after a TTL (1 minute,
//! as kubelet's) and at most `capacity` may be pending, so a client that asks for URLs and
//! never uses them cannot grow the daemon's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corral_cri::v1::{AttachRequest, ExecRequest, PortForwardRequest};

use super::error::StreamingError;

/// A CRI request waiting for its client.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingRequest {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

/// Bytes of randomness per token: 128 bits, unguessable.
const TOKEN_BYTES: usize = 16;

pub struct RequestCache {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    pending: HashMap<String, (Instant, PendingRequest)>,
    /// Tokens by insertion time; all share one TTL, so the front expires first. Consumed
    /// tokens stay here until they reach the front and are skipped.
    by_age: VecDeque<(Instant, String)>,
}

impl RequestCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        RequestCache { ttl, capacity, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks `request` and returns its token.
    pub fn insert(&self, request: PendingRequest) -> Result<String, StreamingError> {
        self.insert_at(request, Instant::now())
    }

    /// Takes the request of `token` if it is known and not expired; a token works once.
    pub fn consume(&self, token: &str) -> Option<PendingRequest> {
        self.consume_at(token, Instant::now())
    }

    pub(crate) fn insert_at(&self, request: PendingRequest, now: Instant) -> Result<String, StreamingError> {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        if inner.pending.len() >= self.capacity {
            return Err(StreamingError::TooManyPending { limit: self.capacity, ttl_secs: self.ttl.as_secs() });
        }
        let token = new_token()?;
        inner.pending.insert(token.clone(), (now, request));
        inner.by_age.push_back((now, token.clone()));
        Ok(token)
    }

    pub(crate) fn consume_at(&self, token: &str, now: Instant) -> Option<PendingRequest> {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        inner.pending.remove(token).map(|(_, request)| request)
    }

    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((created, _)) = inner.by_age.front() {
            if now.duration_since(*created) < self.ttl {
                break;
            }
            if let Some((_, token)) = inner.by_age.pop_front() {
                inner.pending.remove(&token);
            }
        }
        // Consumed tokens can pile up behind a young one; compact when mostly stale.
        if inner.by_age.len() > 2 * inner.pending.len() + 64 {
            let pending = &inner.pending;
            let kept: VecDeque<_> = inner.by_age.drain(..).filter(|(_, t)| pending.contains_key(t)).collect();
            inner.by_age = kept;
        }
    }
}

/// A random URL-safe token (hex of 16 bytes from the kernel's CSPRNG). There is no
/// fallback: a token derived from anything weaker would be guessable.
fn new_token() -> Result<String, StreamingError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(StreamingError::Token)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(id: &str) -> PendingRequest {
        PendingRequest::Exec(ExecRequest { container_id: id.into(), ..Default::default() })
    }

    #[test]
    fn tokens_are_single_use() {
        let cache = RequestCache::new(Duration::from_secs(60), 10);
        let token = cache.insert(exec("c1")).unwrap();
        assert_eq!(cache.consume(&token), Some(exec("c1")));
        assert_eq!(cache.consume(&token), None);
        assert_eq!(cache.consume("not-a-token"), None);
    }

    #[test]
    fn tokens_expire_after_the_ttl() {
        let cache = RequestCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        let old = cache.insert_at(exec("old"), t0).unwrap();
        let young = cache.insert_at(exec("young"), t0 + Duration::from_secs(30)).unwrap();
        assert_eq!(cache.consume_at(&old, t0 + Duration::from_secs(60)), None, "expired at exactly the TTL");
        assert_eq!(cache.consume_at(&young, t0 + Duration::from_secs(89)), Some(exec("young")));
    }

    #[test]
    fn at_most_capacity_pending_then_a_clear_error() {
        let cache = RequestCache::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        for i in 0..1000 {
            cache.insert_at(exec(&i.to_string()), t0).unwrap();
        }
        let err = cache.insert_at(exec("one too many"), t0).unwrap_err();
        assert!(err.to_string().contains("too many pending streaming requests"), "{err}");
        // Once they expire there is room again.
        assert!(cache.insert_at(exec("later"), t0 + Duration::from_secs(61)).is_ok());
        assert_eq!(cache.pending(), 1);
    }

    #[test]
    fn consuming_frees_a_slot() {
        let cache = RequestCache::new(Duration::from_secs(60), 1);
        let t = cache.insert(exec("a")).unwrap();
        assert!(cache.insert(exec("b")).is_err());
        cache.consume(&t);
        assert!(cache.insert(exec("b")).is_ok());
    }

    #[test]
    fn tokens_are_random_and_url_safe() {
        let cache = RequestCache::new(Duration::from_secs(60), 100);
        let a = cache.insert(exec("a")).unwrap();
        let b = cache.insert(exec("b")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn stale_bookkeeping_is_compacted() {
        let cache = RequestCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            let t = cache.insert_at(exec("x"), t0).unwrap();
            cache.consume_at(&t, t0);
        }
        assert!(cache.lock().by_age.len() < 200);
    }
}
