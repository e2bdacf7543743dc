//! Facts passed between layers in `http::Extensions`: one newtype per fact, cheap to clone.
//!
//! Request extensions do not reach the response by themselves: a layer that must tell an
//! outer layer something about the answer (e.g. [`Served`]) puts it on the response.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The gateway's id for one request (from `x-request-id` when the caller or an outer layer
/// set one, generated otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// Wraps an id.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        RequestId(id.into())
    }

    /// Generates a fresh id, `gw_` + 24 hex digits (unique within a process, unlikely to
    /// collide across processes).
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ (u64::from(std::process::id()) << 32)
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // splitmix64 of seed + n: distinct for distinct n.
        let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        RequestId(format!("gw_{:016x}{:08x}", z, n as u32).into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which API operation a request is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// `GET /v1/models` (the query string stays on the request URI).
    ListModels,
    /// `GET /v1/models/{id}`.
    GetModel(Arc<str>),
}

/// Who is calling, set by the auth layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// Stable id of the caller (user, service account, key id).
    pub subject: Arc<str>,
    /// Tenant / organisation.
    pub tenant: Option<Arc<str>>,
    /// Team within the tenant.
    pub team: Option<Arc<str>>,
    /// Agent or application acting for the subject.
    pub agent: Option<Arc<str>>,
    /// Service tier (drives limits and routing), e.g. `free`, `pro`.
    pub tier: Option<Arc<str>>,
    /// Granted scopes, e.g. `messages:write`, `models:read`.
    pub scopes: Arc<[Arc<str>]>,
}

impl Principal {
    /// A principal with only a subject.
    pub fn new(subject: impl Into<Arc<str>>) -> Self {
        Principal {
            subject: subject.into(),
            scopes: Arc::from(Vec::new()),
            ..Default::default()
        }
    }

    /// Whether the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }
}

/// The models a principal may use, set by the authentication layer next to the
/// [`Principal`]: exact names, or a prefix ending in `*` (`claude-sonnet-4-*`). An empty
/// list allows every model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedModels(pub Arc<[Arc<str>]>);

impl AllowedModels {
    /// Whether `model` is allowed.
    pub fn allows(&self, model: &str) -> bool {
        self.0.is_empty()
            || self.0.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => **p == *model,
            })
    }
}

/// Why a request was refused by the authentication layer (response extension), for the
/// audit record and logs; the caller only ever sees one generic message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFailure(pub &'static str);

/// A named workload ("summarize", "code-review") that routing maps to a model and a system
/// prompt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload(pub Arc<str>);

/// How sensitive content is, lowest first. Ordered, so the class of a request is the max
/// of its parts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataClass {
    /// Fine to send anywhere.
    #[default]
    Public,
    /// Internal business data.
    Internal,
    /// Personal or confidential data (PII found).
    Confidential,
    /// Regulated data (secrets, health, card numbers): only to approved destinations.
    Restricted,
}

/// The data class of each part of a request, set by the redaction layer and read by
/// routing (destination policy) and audit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataClassification {
    /// The system prompt.
    pub system: DataClass,
    /// The messages.
    pub messages: DataClass,
    /// Tool definitions.
    pub tools: DataClass,
}

impl DataClassification {
    /// The class of the whole request: the highest of its parts.
    pub fn overall(&self) -> DataClass {
        self.system.max(self.messages).max(self.tools)
    }
}

/// Where the router decided to send a request (request extension, one per attempt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Provider name, e.g. `anthropic`, `bedrock`.
    pub provider: Arc<str>,
    /// Model name at that provider.
    pub model: Arc<str>,
    /// 0 for the first try, then 1, 2, ... for retries and fallbacks.
    pub attempt: u32,
}

/// Who actually answered (response extension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Provider name.
    pub provider: Arc<str>,
    /// Model that answered.
    pub model: Arc<str>,
}

/// The model the caller asked for, put on the response by the edge codec for outer
/// layers that log or count per model (the model that answered is in [`Served`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedModel(pub Arc<str>);

/// When things happened for one request: shared by every clone, written once each.
#[derive(Clone, Debug)]
pub struct Timings(Arc<TimingsInner>);

#[derive(Debug)]
struct TimingsInner {
    start: Instant,
    /// Nanoseconds after `start`, +1 (0 = not yet).
    first_byte: AtomicU64,
    first_token: AtomicU64,
}

impl Timings {
    /// Starts the clock now.
    pub fn start_now() -> Self {
        Timings(Arc::new(TimingsInner {
            start: Instant::now(),
            first_byte: AtomicU64::new(0),
            first_token: AtomicU64::new(0),
        }))
    }

    /// When the request arrived.
    pub fn start(&self) -> Instant {
        self.0.start
    }

    /// Time since the request arrived.
    pub fn elapsed(&self) -> Duration {
        self.0.start.elapsed()
    }

    fn mark(slot: &AtomicU64, start: Instant) {
        let ns = start.elapsed().as_nanos().min(u128::from(u64::MAX - 1)) as u64 + 1;
        let _ = slot.compare_exchange(0, ns, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn read(slot: &AtomicU64) -> Option<Duration> {
        match slot.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns - 1)),
        }
    }

    /// Records the first upstream byte (response headers); later calls do nothing.
    pub fn mark_first_byte(&self) {
        Self::mark(&self.0.first_byte, self.0.start);
    }

    /// Records the first output token; later calls do nothing.
    pub fn mark_first_token(&self) {
        Self::mark(&self.0.first_token, self.0.start);
    }

    /// Time to the first upstream byte.
    pub fn first_byte(&self) -> Option<Duration> {
        Self::read(&self.0.first_byte)
    }

    /// Time to the first output token.
    pub fn first_token(&self) -> Option<Duration> {
        Self::read(&self.0.first_token)
    }
}

/// A policy decision, kept for the audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The layer that decided, e.g. `ai-redact`.
    pub layer: &'static str,
    /// What it decided, e.g. `allow`, `redacted:3`, `block:credit_card`.
    pub decision: Arc<str>,
}

/// The verdicts of every layer for one request. The audit layer inserts it, keeps a clone
/// and reads it when the response is over; inner layers push to it.
#[derive(Clone, Debug, Default)]
pub struct Verdicts(Arc<Mutex<Vec<Verdict>>>);

impl Verdicts {
    /// Records a verdict.
    pub fn push(&self, layer: &'static str, decision: impl Into<Arc<str>>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(Verdict {
                layer,
                decision: decision.into(),
            });
        }
    }

    /// A copy of the verdicts so far.
    pub fn snapshot(&self) -> Vec<Verdict> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn allowed_models_take_exact_names_and_prefixes() {
        use super::AllowedModels;
        use std::sync::Arc;
        let any = AllowedModels::default();
        assert!(any.allows("anything"));
        let some = AllowedModels(Arc::from(vec![
            Arc::from("claude-sonnet-4-*"),
            Arc::from("claude-haiku-4-5"),
        ]));
        assert!(some.allows("claude-sonnet-4-5"));
        assert!(some.allows("claude-haiku-4-5"));
        assert!(!some.allows("claude-haiku-4-5-20251001"));
        assert!(!some.allows("claude-opus-4-1"));
    }

    use super::*;

    #[test]
    fn request_ids_are_distinct() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("gw_"));
        assert_eq!(a.as_str().len(), 3 + 24);
    }

    #[test]
    fn data_class_of_request_is_max_of_parts() {
        let c = DataClassification {
            system: DataClass::Internal,
            messages: DataClass::Restricted,
            tools: DataClass::Public,
        };
        assert_eq!(c.overall(), DataClass::Restricted);
    }

    #[test]
    fn timings_mark_once() {
        let t = Timings::start_now();
        assert!(t.first_byte().is_none());
        t.mark_first_byte();
        let first = t.first_byte().expect("marked");
        std::thread::sleep(Duration::from_millis(2));
        t.clone().mark_first_byte();
        assert_eq!(t.first_byte(), Some(first));
    }

    #[test]
    fn verdicts_are_shared_by_clones() {
        let v = Verdicts::default();
        v.clone().push("ai-redact", "allow");
        assert_eq!(v.snapshot()[0].decision.as_ref(), "allow");
    }
}
