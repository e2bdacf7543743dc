//! What is limited: [`Limit`]s keyed by parts of the request, grouped in [`Tier`]s, in a
//! [`Policy`].

use crate::rate::Rate;
use crate::store::Gauge;
use ai_core::{CredentialId, Principal};
use http::Extensions;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

/// What a limit is kept per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// The principal's subject (user, service account).
    Subject,
    /// The principal's tenant.
    Tenant,
    /// The principal's team.
    Team,
    /// The agent acting for the subject.
    Agent,
    /// The credential (gateway key id) the request came with.
    Key,
    /// The requested model.
    Model,
    /// The requested model's family: its name up to the first `-` followed by a digit
    /// (`claude-sonnet-4-5-20250929` is `claude-sonnet`, `gpt-4o` is `gpt`).
    ModelFamily,
}

impl KeyPart {
    /// The name used in configuration and messages.
    pub fn name(self) -> &'static str {
        match self {
            KeyPart::Subject => "subject",
            KeyPart::Tenant => "tenant",
            KeyPart::Team => "team",
            KeyPart::Agent => "agent",
            KeyPart::Key => "key",
            KeyPart::Model => "model",
            KeyPart::ModelFamily => "model_family",
        }
    }

    /// Parses a configuration name (`user` is accepted for `subject`).
    pub fn parse(s: &str) -> Option<KeyPart> {
        Some(match s {
            "subject" | "user" => KeyPart::Subject,
            "tenant" => KeyPart::Tenant,
            "team" => KeyPart::Team,
            "agent" => KeyPart::Agent,
            "key" | "key_id" => KeyPart::Key,
            "model" => KeyPart::Model,
            "model_family" | "family" => KeyPart::ModelFamily,
            _ => return None,
        })
    }

    /// Whether only an authenticated caller has this part (tenant, team, agent, key): an
    /// anonymous caller has a subject and a model only.
    pub fn needs_auth(self) -> bool {
        matches!(
            self,
            KeyPart::Tenant | KeyPart::Team | KeyPart::Agent | KeyPart::Key
        )
    }

    fn is_identity(self) -> bool {
        !matches!(self, KeyPart::Model | KeyPart::ModelFamily)
    }
}

/// The family of a model name (see [`KeyPart::ModelFamily`]).
pub fn model_family(model: &str) -> &str {
    let b = model.as_bytes();
    for i in 0..b.len().saturating_sub(1) {
        if b[i] == b'-' && b[i + 1].is_ascii_digit() {
            return &model[..i];
        }
    }
    model
}

/// A metered axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    /// Requests per period.
    Requests,
    /// Input tokens per period (uncached input plus cache writes).
    InputTokens,
    /// Output tokens per period.
    OutputTokens,
    /// Requests in flight at once.
    InFlight,
}

impl Axis {
    /// How it reads in messages, e.g. `input tokens per minute`.
    pub fn describe(self, rate: Option<&Rate>) -> String {
        let what = match self {
            Axis::Requests => "requests",
            Axis::InputTokens => "input tokens",
            Axis::OutputTokens => "output tokens",
            Axis::InFlight => return "requests in flight".to_owned(),
        };
        match rate.map(|r| r.period) {
            Some(p) if p == Duration::from_secs(60) => format!("{what} per minute"),
            Some(p) if p == Duration::from_secs(1) => format!("{what} per second"),
            Some(p) if p == Duration::from_secs(3600) => format!("{what} per hour"),
            Some(p) if p == Duration::from_secs(86_400) => format!("{what} per day"),
            Some(p) => format!("{what} per {}", humantime::format_duration(p)),
            None => what.to_owned(),
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Axis::Requests => "r",
            Axis::InputTokens => "i",
            Axis::OutputTokens => "o",
            Axis::InFlight => "f",
        }
    }

    /// The label used in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Axis::Requests => "requests",
            Axis::InputTokens => "input_tokens",
            Axis::OutputTokens => "output_tokens",
            Axis::InFlight => "in_flight",
        }
    }
}

/// One limit: up to four axes kept per the same key.
///
/// ```
/// use ai_ratelimit::{KeyPart, Limit, Rate};
/// let per_user = Limit::new("user")
///     .by([KeyPart::Tenant, KeyPart::Subject])
///     .requests(Rate::per_minute(50))
///     .input_tokens(Rate::per_minute(30_000))
///     .output_tokens(Rate::per_minute(8_000))
///     .in_flight(4);
/// assert_eq!(per_user.scope(), "per tenant and subject");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Its name: in keys, messages and metrics. Renaming a limit starts fresh meters.
    pub name: Arc<str>,
    /// What it is kept per; empty: one meter for everyone.
    pub by: Vec<KeyPart>,
    /// Requests per period.
    pub requests: Option<Rate>,
    /// Input tokens per period.
    pub input_tokens: Option<Rate>,
    /// Output tokens per period.
    pub output_tokens: Option<Rate>,
    /// Requests in flight at once.
    pub in_flight: Option<u64>,
}

impl Limit {
    /// A limit named `name` with no axis yet, kept for everyone as one.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Limit {
            name: name.into(),
            by: Vec::new(),
            requests: None,
            input_tokens: None,
            output_tokens: None,
            in_flight: None,
        }
    }

    /// Kept per these parts.
    pub fn by(mut self, parts: impl IntoIterator<Item = KeyPart>) -> Self {
        self.by = parts.into_iter().collect();
        self
    }

    /// Limits requests.
    pub fn requests(mut self, rate: Rate) -> Self {
        self.requests = Some(rate);
        self
    }

    /// Limits input tokens.
    pub fn input_tokens(mut self, rate: Rate) -> Self {
        self.input_tokens = Some(rate);
        self
    }

    /// Limits output tokens.
    pub fn output_tokens(mut self, rate: Rate) -> Self {
        self.output_tokens = Some(rate);
        self
    }

    /// Limits requests in flight.
    pub fn in_flight(mut self, max: u64) -> Self {
        self.in_flight = Some(max);
        self
    }

    /// How its scope reads, e.g. `per tenant and model`, `for everyone`.
    pub fn scope(&self) -> String {
        if self.by.is_empty() {
            return "for everyone".to_owned();
        }
        let names: Vec<&str> = self.by.iter().map(|p| p.name()).collect();
        format!("per {}", names.join(" and "))
    }

    pub(crate) fn gauges(&self, lease: Duration) -> impl Iterator<Item = (Axis, Gauge)> + '_ {
        let rate = |axis, r: &Option<Rate>| r.map(|r| (axis, Gauge::Rate(r)));
        [
            rate(Axis::Requests, &self.requests),
            rate(Axis::InputTokens, &self.input_tokens),
            rate(Axis::OutputTokens, &self.output_tokens),
            self.in_flight
                .map(|max| (Axis::InFlight, Gauge::InFlight { max, lease })),
        ]
        .into_iter()
        .flatten()
    }

    /// The key of this limit's meter on `axis` for a request, or `None` when the request
    /// lacks a part the limit is kept per (a limit per team does not apply to a caller
    /// without a team).
    ///
    /// Layout: `rl:{<tag>}:<limit>:<axis>:<part>=<value>|...`, where the hash tag is the
    /// tenant (`{t=acme}`, `{t=-}` without one) for limits kept per anything about the
    /// caller, so every key of one request lands in one Redis Cluster slot, and the model
    /// parts (`{g=model=...}`) for limits kept only per model or for everyone.
    pub fn key(&self, axis: Axis, cx: &KeyContext<'_>) -> Option<String> {
        let (mut key, at) = self.key_template(cx)?;
        key.replace_range(at..at + 1, axis.code());
        Some(key)
    }

    /// The key with a placeholder axis, and the byte position of the axis: the keys of a
    /// limit's axes differ in that one byte, so they are built once and patched.
    pub(crate) fn key_template(&self, cx: &KeyContext<'_>) -> Option<(String, usize)> {
        let mut values: [&str; 8] = [""; 8];
        let mut len = 0;
        for (i, p) in self.by.iter().enumerate() {
            let v = cx.part(*p)?;
            if let Some(slot) = values.get_mut(i) {
                *slot = v;
            }
            len += p.name().len() + v.len() + 2;
        }
        let write_parts = |out: &mut String| {
            for (i, p) in self.by.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                out.push_str(p.name());
                out.push('=');
                match values.get(i) {
                    Some(v) => escape(out, v),
                    // More than 8 parts: look the value up again.
                    None => escape(out, cx.part(*p).unwrap_or("")),
                }
            }
        };
        let tenant = cx.principal.tenant.as_deref().unwrap_or("-");
        let mut key = String::with_capacity(16 + self.name.len() + 2 * len + tenant.len());
        key.push_str("rl:{");
        if self.by.iter().any(|p| p.is_identity()) {
            key.push_str("t=");
            escape(&mut key, tenant);
        } else {
            key.push_str("g=");
            write_parts(&mut key);
        }
        key.push_str("}:");
        escape(&mut key, &self.name);
        key.push(':');
        let at = key.len();
        key.push_str("_:");
        write_parts(&mut key);
        Some((key, at))
    }
}

/// Writes `v` with the characters that would break the key layout (`{`, `}`, `|`, `%`,
/// `:`, `=`) percent-encoded.
fn escape(out: &mut String, v: &str) {
    let special = |b: u8| matches!(b, b'{' | b'}' | b'|' | b'%' | b':' | b'=');
    if !v.bytes().any(special) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '{' | '}' | '|' | '%' | ':' | '=' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// What keys are built from.
#[derive(Clone, Copy, Debug)]
pub struct KeyContext<'a> {
    /// The caller.
    pub principal: &'a Principal,
    /// The credential id, when known.
    pub credential: Option<&'a CredentialId>,
    /// The requested model, for model-keyed limits.
    pub model: Option<&'a str>,
}

impl<'a> KeyContext<'a> {
    /// From a request's extensions (`Principal`, `CredentialId`) and its model.
    pub fn from_extensions(
        ext: &'a Extensions,
        anonymous: &'a Principal,
        model: Option<&'a str>,
    ) -> Self {
        KeyContext {
            principal: ext.get::<Principal>().unwrap_or(anonymous),
            credential: ext.get::<CredentialId>(),
            model,
        }
    }

    fn part(&self, p: KeyPart) -> Option<&'a str> {
        let pr = self.principal;
        match p {
            KeyPart::Subject => Some(&pr.subject),
            KeyPart::Tenant => pr.tenant.as_deref(),
            KeyPart::Team => pr.team.as_deref(),
            KeyPart::Agent => pr.agent.as_deref(),
            KeyPart::Key => self.credential.map(|c| &*c.0),
            KeyPart::Model => self.model,
            KeyPart::ModelFamily => self.model.map(model_family),
        }
    }
}

/// A named set of limits, with its place in the overflow queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Limits for principals of this tier (on top of the policy's common limits).
    pub limits: Vec<Limit>,
    /// Queue priority: a higher tier waiting for capacity is served first.
    pub priority: u8,
    /// How long a request over its limit may wait for capacity before the 429; zero: it
    /// is refused at once.
    pub queue_wait: Duration,
}

impl Tier {
    /// A tier with these limits, priority 0 and no queueing.
    pub fn new(limits: impl IntoIterator<Item = Limit>) -> Self {
        Tier {
            limits: limits.into_iter().collect(),
            priority: 0,
            queue_wait: Duration::ZERO,
        }
    }

    /// Sets the queue priority.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Lets requests wait up to `wait` for capacity.
    pub fn queue_wait(mut self, wait: Duration) -> Self {
        self.queue_wait = wait;
        self
    }
}

/// Every limit: common ones for all callers, and per tier (`Principal.tier`). A principal
/// without a tier, or with a tier not configured here, gets the default tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Limits for every caller.
    pub limits: Vec<Limit>,
    /// Named tiers.
    pub tiers: HashMap<String, Tier>,
    /// The tier of callers without a known one.
    pub default_tier: Option<String>,
    /// How long a shared store keeps an in-flight lease of a replica that died (default
    /// 10 minutes: longer than any stream should last).
    pub in_flight_lease: Option<Duration>,
}

impl Policy {
    /// An empty policy (nothing limited).
    pub fn new() -> Self {
        Policy::default()
    }

    /// Adds a limit for every caller.
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limits.push(limit);
        self
    }

    /// Adds a tier.
    pub fn tier(mut self, name: impl Into<String>, tier: Tier) -> Self {
        self.tiers.insert(name.into(), tier);
        self
    }

    /// Sets the default tier.
    pub fn default_tier(mut self, name: impl Into<String>) -> Self {
        self.default_tier = Some(name.into());
        self
    }

    /// The tier that applies to `principal`, if any.
    pub fn tier_of(&self, principal: &Principal) -> Option<&Tier> {
        principal
            .tier
            .as_deref()
            .and_then(|t| self.tiers.get(t))
            .or_else(|| self.default_tier.as_deref().and_then(|t| self.tiers.get(t)))
    }

    /// Checks the policy: names unique, rates non-zero, the default tier defined.
    pub fn validate(&self) -> Result<(), String> {
        let all = self
            .limits
            .iter()
            .chain(self.tiers.values().flat_map(|t| &t.limits));
        for l in all {
            for r in [&l.requests, &l.input_tokens, &l.output_tokens]
                .into_iter()
                .flatten()
            {
                if r.amount == 0 || r.burst == 0 || r.period.is_zero() {
                    return Err(format!(
                        "limit {:?}: a rate needs an amount, a burst and a period above zero",
                        l.name
                    ));
                }
            }
            if l.in_flight == Some(0) {
                return Err(format!("limit {:?}: in_flight must be at least 1", l.name));
            }
        }
        for (name, t) in &self.tiers {
            let mut seen: Vec<&str> = self.limits.iter().map(|l| &*l.name).collect();
            for l in &t.limits {
                if seen.contains(&&*l.name) {
                    return Err(format!("tier {name:?}: limit name {:?} used twice", l.name));
                }
                seen.push(&l.name);
            }
        }
        let mut common: Vec<&str> = self.limits.iter().map(|l| &*l.name).collect();
        common.sort_unstable();
        if common.windows(2).any(|w| w[0] == w[1]) {
            return Err("a limit name is used twice".to_owned());
        }
        if let Some(d) = &self.default_tier {
            if !self.tiers.contains_key(d) {
                return Err(format!("default tier {d:?} is not defined"));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", &*self.name, self.scope())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(model_family("claude-sonnet-4-5-20250929"), "claude-sonnet");
        assert_eq!(model_family("claude-3-5-haiku-latest"), "claude");
        assert_eq!(model_family("gpt-4o"), "gpt");
        assert_eq!(model_family("mistral"), "mistral");
    }

    #[test]
    fn keys_share_the_tenant_tag_and_escape_values() {
        let p = Principal {
            tenant: Some("ac{me}".into()),
            ..Principal::new("bob|x")
        };
        let cx = KeyContext {
            principal: &p,
            credential: None,
            model: Some("claude-x"),
        };
        let user = Limit::new("user").by([KeyPart::Subject]);
        let tenant = Limit::new("tenant").by([KeyPart::Tenant, KeyPart::Model]);
        let model = Limit::new("model").by([KeyPart::Model]);
        let all = Limit::new("all");
        assert_eq!(
            user.key(Axis::Requests, &cx).expect("key"),
            "rl:{t=ac%7Bme%7D}:user:r:subject=bob%7Cx"
        );
        assert_eq!(
            tenant.key(Axis::InputTokens, &cx).expect("key"),
            "rl:{t=ac%7Bme%7D}:tenant:i:tenant=ac%7Bme%7D|model=claude-x"
        );
        assert_eq!(
            model.key(Axis::OutputTokens, &cx).expect("key"),
            "rl:{g=model=claude-x}:model:o:model=claude-x"
        );
        assert_eq!(all.key(Axis::InFlight, &cx).expect("key"), "rl:{g=}:all:f:");
        // A part the caller lacks: the limit does not apply.
        assert_eq!(
            Limit::new("team")
                .by([KeyPart::Team])
                .key(Axis::Requests, &cx),
            None
        );
    }

    #[test]
    fn tiers_and_validation() {
        let p = Policy::new()
            .limit(
                Limit::new("tenant")
                    .by([KeyPart::Tenant])
                    .requests(Rate::per_minute(10)),
            )
            .tier(
                "pilot",
                Tier::new([Limit::new("user").requests(Rate::per_minute(1))]),
            )
            .tier("enterprise", Tier::new([]).priority(2))
            .default_tier("pilot");
        assert!(p.validate().is_ok());
        let mut who = Principal::new("a");
        assert_eq!(p.tier_of(&who).map(|t| t.priority), Some(0));
        who.tier = Some("enterprise".into());
        assert_eq!(p.tier_of(&who).map(|t| t.priority), Some(2));
        who.tier = Some("unknown".into());
        assert_eq!(p.tier_of(&who).map(|t| t.priority), Some(0));
        let bad = p.clone().default_tier("nope");
        assert!(bad.validate().is_err());
        let dup = p.limit(Limit::new("tenant").requests(Rate::per_minute(1)));
        assert!(dup.validate().is_err());
    }
}
