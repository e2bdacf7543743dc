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

/// The id of the credential that authenticated the request (a gateway key's id, never its
/// secret), set by the authentication layer: rate limits and budgets can be kept per key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialId(pub Arc<str>);

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

/// A kind of sensitive data, as the seeds' policies and audit records name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataCategory {
    /// Personal data (names, emails, phone numbers, addresses, national ids).
    Pii,
    /// Protected health information.
    Phi,
    /// Payment card data.
    Pci,
    /// Secrets in general (private keys, connection strings).
    Secret,
    /// Credentials (API keys, passwords, tokens).
    Credential,
}

impl DataCategory {
    /// Every category, in the order [`DataCategories`] prints them.
    pub const ALL: [DataCategory; 5] = [
        DataCategory::Pii,
        DataCategory::Phi,
        DataCategory::Pci,
        DataCategory::Secret,
        DataCategory::Credential,
    ];

    /// The lower-case name used in records and configuration (`pii`, `phi`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DataCategory::Pii => "pii",
            DataCategory::Phi => "phi",
            DataCategory::Pci => "pci",
            DataCategory::Secret => "secret",
            DataCategory::Credential => "credential",
        }
    }

    /// The category a name denotes.
    pub fn from_name(name: &str) -> Option<Self> {
        DataCategory::ALL.into_iter().find(|c| c.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`DataCategory`]s. Prints as the names joined by `+` in a fixed order, or
/// `none` (the form audit records use: `"phi"`, `"pii+pci"`, `"none"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DataCategories(u8);

impl DataCategories {
    /// The empty set.
    pub const NONE: DataCategories = DataCategories(0);

    /// Adds a category.
    pub fn insert(&mut self, c: DataCategory) {
        self.0 |= c.bit();
    }

    /// This set with `c` added.
    pub fn with(mut self, c: DataCategory) -> Self {
        self.insert(c);
        self
    }

    /// Whether `c` is in the set.
    pub fn contains(self, c: DataCategory) -> bool {
        self.0 & c.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Both sets together.
    pub fn union(self, other: DataCategories) -> Self {
        DataCategories(self.0 | other.0)
    }

    /// Whether every category of `self` is also in `other`.
    pub fn is_subset(self, other: DataCategories) -> bool {
        self.0 & !other.0 == 0
    }

    /// The level these categories put content at: health, card data, secrets and
    /// credentials are [`DataClass::Restricted`], other personal data
    /// [`DataClass::Confidential`], nothing found [`DataClass::Public`].
    pub fn level(self) -> DataClass {
        let restricted = DataCategories::NONE
            .with(DataCategory::Phi)
            .with(DataCategory::Pci)
            .with(DataCategory::Secret)
            .with(DataCategory::Credential);
        if self.0 & restricted.0 != 0 {
            DataClass::Restricted
        } else if self.contains(DataCategory::Pii) {
            DataClass::Confidential
        } else {
            DataClass::Public
        }
    }

    /// The categories, in [`DataCategory::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = DataCategory> {
        DataCategory::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<DataCategory> for DataCategories {
    fn from_iter<I: IntoIterator<Item = DataCategory>>(iter: I) -> Self {
        let mut s = DataCategories::NONE;
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl fmt::Display for DataCategories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            f.write_str(c.as_str())?;
        }
        Ok(())
    }
}

/// What one part of a request carries: its level and the categories found in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComponentClass {
    /// The level (drives destination policy).
    pub level: DataClass,
    /// The categories found.
    pub categories: DataCategories,
}

impl ComponentClass {
    /// The class of content where `categories` were found, its level derived from them
    /// ([`DataCategories::level`]).
    pub fn of(categories: DataCategories) -> Self {
        ComponentClass {
            level: categories.level(),
            categories,
        }
    }

    /// Both together: the higher level, every category.
    pub fn join(self, other: ComponentClass) -> Self {
        ComponentClass {
            level: self.level.max(other.level),
            categories: self.categories.union(other.categories),
        }
    }
}

/// The data class of each part of a request, set by the redaction layer and read by
/// routing (destination policy) and audit. The system prompt is kept apart from the
/// messages: a leaky system prompt and a user pasting data need different remedies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataClassification {
    /// The system prompt.
    pub system: ComponentClass,
    /// The messages.
    pub messages: ComponentClass,
    /// Tool definitions.
    pub tools: ComponentClass,
    /// Tool results the caller sent back (content that came from outside: files, web
    /// pages, database rows), kept apart from what the caller typed.
    pub tool_results: ComponentClass,
}

impl DataClassification {
    /// The class of the whole request: the highest level of its parts and all their
    /// categories.
    pub fn overall(&self) -> ComponentClass {
        self.system
            .join(self.messages)
            .join(self.tools)
            .join(self.tool_results)
    }
}

/// The API surface a request came in on (request extension, set by the edge codec of a
/// surface other than Anthropic's; absent means `anthropic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Surface(pub &'static str);

impl Surface {
    /// The Anthropic Messages API.
    pub const ANTHROPIC: Surface = Surface("anthropic");
    /// The OpenAI Chat Completions API.
    pub const OPENAI: Surface = Surface("openai");
}

/// The address of the client that opened the connection (request extension, set by the
/// server). Used to aggregate unauthenticated traffic per source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub std::net::SocketAddr);

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
    /// The upstream's own id for the call (`request-id`, `x-request-id`,
    /// `x-amzn-RequestId`), for matching a record with the vendor's logs.
    pub request_id: Option<Arc<str>>,
}

/// Every model a request may end up served by (request extension), set by a router in
/// front of the layers that price a request before it is sent: a budget reserves for the
/// most expensive of them. Without it, the requested model is the only candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServableModels(pub Arc<[Arc<str>]>);

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

/// One upstream call made for a request (a retry or a fallback is another attempt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Provider name, e.g. `anthropic`.
    pub provider: Arc<str>,
    /// Model asked of that provider.
    pub model: Arc<str>,
    /// The upstream's HTTP status, when one came back.
    pub status: Option<u16>,
}

/// The standard system prompt routing put in front of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptTemplate {
    /// Template id.
    pub id: Arc<str>,
    /// Template version.
    pub version: Arc<str>,
}

/// An amount of money in billionths of a US dollar (token prices are fractions of a
/// micro-dollar, so integers of a coarser unit would round them away).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    /// Nano-dollars.
    pub nano_usd: u64,
}

impl Cost {
    /// The amount in dollars (for display and metrics, not for sums).
    pub fn usd(self) -> f64 {
        self.nano_usd as f64 / 1e9
    }
}

/// What the inner layers found out about one request, for an outer layer that reports on
/// it after the response (audit, metrics). The outer layer inserts it into the request
/// extensions and keeps a clone; inner layers that find it add to it. Request extensions
/// do not travel back on the response, and an error has no extensions at all: this shared
/// report is how those facts reach the outside in every case.
///
/// Inner layers only add; nothing here is a policy decision.
#[derive(Clone, Debug, Default)]
pub struct CallReport(Arc<Mutex<ReportData>>);

/// The facts in a [`CallReport`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ReportData {
    /// The data class of each part of the request.
    pub classification: Option<DataClassification>,
    /// Redactions made, per category.
    pub redactions: Vec<(DataCategory, u32)>,
    /// Upstream calls, in order.
    pub attempts: Vec<Attempt>,
    /// The system-prompt template routing injected.
    pub template: Option<PromptTemplate>,
    /// The cost of the call as billed.
    pub cost: Option<Cost>,
    /// Policy decisions about tool calls, by `tool_use` id.
    pub tool_decisions: Vec<(Arc<str>, Arc<str>)>,
    /// The request as it left the redaction layer (for an opt-in capture that must never
    /// hold unredacted text).
    pub redacted_request: Option<Arc<crate::MessagesRequest>>,
    /// The policy reason code of a response an inspecting layer cut short, e.g.
    /// `completion.pii.detected`.
    pub policy_reason: Option<Arc<str>>,
    /// Tool calls the model made that a layer withheld from the caller (the audit layer,
    /// outside, never sees them in the response).
    pub withheld_tool_calls: Vec<WithheldToolCall>,
}

/// A tool call the model made that a layer did not pass on (see
/// [`CallReport::add_withheld_tool_call`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithheldToolCall {
    /// The `tool_use` id.
    pub id: Arc<str>,
    /// The tool's name.
    pub name: Arc<str>,
    /// The arguments as the model streamed them (the audit layer keeps only their hash).
    pub arguments: Arc<str>,
}

impl CallReport {
    fn with<R>(&self, f: impl FnOnce(&mut ReportData) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut d| f(&mut d))
    }

    /// Sets the data classification.
    pub fn set_classification(&self, c: DataClassification) {
        self.with(|d| d.classification = Some(c));
    }

    /// Adds `n` redactions of category `c`.
    pub fn add_redactions(&self, c: DataCategory, n: u32) {
        self.with(|d| match d.redactions.iter_mut().find(|(k, _)| *k == c) {
            Some((_, m)) => *m = m.saturating_add(n),
            None => d.redactions.push((c, n)),
        });
    }

    /// Records an upstream call.
    pub fn push_attempt(&self, a: Attempt) {
        self.with(|d| d.attempts.push(a));
    }

    /// Sets the injected system-prompt template.
    pub fn set_template(&self, t: PromptTemplate) {
        self.with(|d| d.template = Some(t));
    }

    /// Adds to the cost of the call.
    pub fn add_cost(&self, c: Cost) {
        self.with(|d| {
            let prev = d.cost.unwrap_or_default();
            d.cost = Some(Cost {
                nano_usd: prev.nano_usd.saturating_add(c.nano_usd),
            });
        });
    }

    /// Records the decision about one tool call (`pass`, `block`, `redact`, ...).
    pub fn set_tool_decision(
        &self,
        tool_use_id: impl Into<Arc<str>>,
        decision: impl Into<Arc<str>>,
    ) {
        let (id, decision) = (tool_use_id.into(), decision.into());
        self.with(
            |d| match d.tool_decisions.iter_mut().find(|(k, _)| *k == id) {
                Some((_, v)) => *v = decision,
                None => d.tool_decisions.push((id, decision)),
            },
        );
    }

    /// Sets the policy reason code of a response cut short.
    pub fn set_policy_reason(&self, code: impl Into<Arc<str>>) {
        let code = code.into();
        self.with(|d| d.policy_reason = Some(code));
    }

    /// Records a tool call that was not passed on to the caller; set its decision with
    /// [`set_tool_decision`](Self::set_tool_decision).
    pub fn add_withheld_tool_call(&self, call: WithheldToolCall) {
        self.with(|d| d.withheld_tool_calls.push(call));
    }

    /// Keeps the redacted request.
    pub fn set_redacted_request(&self, r: Arc<crate::MessagesRequest>) {
        self.with(|d| d.redacted_request = Some(r));
    }

    /// A copy of the facts so far.
    pub fn snapshot(&self) -> ReportData {
        self.with(|d| d.clone()).unwrap_or_default()
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
    fn levels_derive_from_categories() {
        let none = DataCategories::NONE;
        assert_eq!(none.level(), DataClass::Public);
        assert_eq!(
            none.with(DataCategory::Pii).level(),
            DataClass::Confidential
        );
        for c in [
            DataCategory::Phi,
            DataCategory::Pci,
            DataCategory::Secret,
            DataCategory::Credential,
        ] {
            assert_eq!(none.with(c).level(), DataClass::Restricted, "{c:?}");
            assert_eq!(
                none.with(c).with(DataCategory::Pii).level(),
                DataClass::Restricted
            );
        }
        let c = ComponentClass::of(none.with(DataCategory::Phi));
        assert_eq!(c.level, DataClass::Restricted);
        assert_eq!(c.categories.to_string(), "phi");
        let both = DataClassification {
            messages: ComponentClass::of(none.with(DataCategory::Pii)),
            tool_results: ComponentClass::of(none.with(DataCategory::Pci)),
            ..Default::default()
        };
        assert_eq!(both.overall().categories.to_string(), "pii+pci");
        assert_eq!(both.overall().level, DataClass::Restricted);
        assert!(
            none.with(DataCategory::Pii)
                .is_subset(both.overall().categories)
        );
        assert!(
            !none
                .with(DataCategory::Phi)
                .is_subset(both.overall().categories)
        );
        assert!(none.is_subset(none));
    }

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
        let phi = DataCategories::NONE.with(DataCategory::Phi);
        let c = DataClassification {
            system: ComponentClass {
                level: DataClass::Internal,
                categories: phi,
            },
            messages: ComponentClass {
                level: DataClass::Restricted,
                categories: DataCategories::NONE.with(DataCategory::Pii),
            },
            tools: ComponentClass::default(),
            tool_results: ComponentClass::default(),
        };
        assert_eq!(c.overall().level, DataClass::Restricted);
        assert_eq!(c.overall().categories.to_string(), "pii+phi");
        assert_eq!(c.system.categories.to_string(), "phi");
        assert_eq!(c.tools.categories.to_string(), "none");
    }

    #[test]
    fn category_names_round_trip() {
        for c in DataCategory::ALL {
            assert_eq!(DataCategory::from_name(c.as_str()), Some(c));
        }
        assert_eq!(DataCategory::from_name("PHI"), None);
        let all: DataCategories = DataCategory::ALL.into_iter().collect();
        assert_eq!(all.to_string(), "pii+phi+pci+secret+credential");
    }

    #[test]
    fn call_report_collects_facts_from_clones() {
        let r = CallReport::default();
        let inner = r.clone();
        inner.add_redactions(DataCategory::Pii, 2);
        inner.add_redactions(DataCategory::Pii, 3);
        inner.add_cost(Cost { nano_usd: 5 });
        inner.add_cost(Cost { nano_usd: 7 });
        inner.set_tool_decision("toolu_1", "pass");
        inner.set_tool_decision("toolu_1", "block");
        inner.push_attempt(Attempt {
            provider: "anthropic".into(),
            model: "m".into(),
            status: Some(529),
        });
        let d = r.snapshot();
        assert_eq!(d.redactions, vec![(DataCategory::Pii, 5)]);
        assert_eq!(d.cost, Some(Cost { nano_usd: 12 }));
        assert_eq!(d.tool_decisions.len(), 1);
        assert_eq!(&*d.tool_decisions[0].1, "block");
        assert_eq!(d.attempts[0].status, Some(529));
        assert_eq!(d.policy_reason, None);
        inner.set_policy_reason("completion.tool.not_allowed");
        inner.add_withheld_tool_call(WithheldToolCall {
            id: "toolu_2".into(),
            name: "shell".into(),
            arguments: "{}".into(),
        });
        let d = r.snapshot();
        assert_eq!(
            d.policy_reason.as_deref(),
            Some("completion.tool.not_allowed")
        );
        assert_eq!(&*d.withheld_tool_calls[0].name, "shell");
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
