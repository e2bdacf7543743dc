//! The gateway's configuration file: TOML, read with serde, every key optional with a
//! documented default (`examples/gateway.toml` lists them all, `docs/gateway.md` has the
//! table). Each layer adds its own section.
//!
//! - Unknown keys are rejected; every error names the file, line, column and key.
//! - Durations are written `"30s"`, `"2m"`, `"1h 30m"`, `"500ms"`; sizes `"32MiB"` or a
//!   number of bytes.
//! - Secrets are never written in the file: only environment references,
//!   `api_key = "${ANTHROPIC_API_KEY}"`. A missing variable is an error naming it.
//!
//! ```
//! use ai_gateway::config::GatewayConfig;
//!
//! let text = r#"
//! [server]
//! listen = "0.0.0.0:9000"
//! body_limit = "8MiB"
//!
//! [upstream.anthropic]
//! api_key = "${VENDOR_KEY}"
//! idle_timeout = "20s"
//! "#;
//! let env = |name: &str| (name == "VENDOR_KEY").then(|| "sk-ant-test".to_owned());
//! let config = GatewayConfig::parse(text, "gateway.toml", env).unwrap();
//! assert_eq!(config.server.body_limit.as_u64(), 8 * 1024 * 1024);
//! let anthropic = config.upstream.anthropic.as_ref().unwrap();
//! assert_eq!(anthropic.idle_timeout, std::time::Duration::from_secs(20));
//! assert_eq!(anthropic.api_key.value(), Some("sk-ant-test"));
//!
//! let err = GatewayConfig::parse("[server]\nlisten_addr = \"x\"\n", "gateway.toml", env).unwrap_err();
//! assert!(err.to_string().starts_with("gateway.toml:2:1: [server] listen_addr: unknown field"));
//! ```

use crate::server::ServerConfig;
use ai_auth::{
    AuthLayer, ClaimMap, FileKeys, Jwks, JwtAlgorithm, JwtIssuer, KeyHasher, UserPseudonymLayer,
};
use ai_core::MessagesCodecLayer;
use ai_provider::{AnthropicProvider, anthropic};
use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file. Every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// `[server]`: the listening socket and its timeouts.
    pub server: ServerSection,
    /// `[log]`: log level and format.
    pub log: LogSection,
    /// `[upstream.*]`: where requests go.
    pub upstream: UpstreamSection,
    /// `[auth]`: who may call. Absent: everyone (only on loopback, unless `allow_open`).
    pub auth: Option<AuthSection>,
    /// `[audit]`: the audit log and metrics. On by default (`./audit/`).
    pub audit: AuditSection,
    /// `[ratelimit]`: rate limits per user, team, tenant, key or model. Off by default.
    pub ratelimit: RateLimitSection,
    /// `[budget]`: cost of every call and spending caps. Off by default.
    pub budget: BudgetSection,
    /// `[redact]`: personal data and secrets found, classified and removed or tokenized.
    /// Off by default.
    pub redact: RedactSection,
    /// `[inspect]`: the model's answer inspected as it streams. Off by default.
    pub inspect: InspectSection,
}

/// `[inspect]`: output inspection: the window, the classifiers and their actions, the
/// deny-list, and the tool-call policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectSection {
    /// Run the inspection layer. Default `false`.
    pub enabled: bool,
    /// Tokens held back per streamed block (4 bytes each): the longest finding caught
    /// before any of it is forwarded, and the latency inspection adds. Default 64.
    pub window: usize,
    /// Inspect thinking blocks too. Default `false`.
    pub thinking: bool,
    /// Run the personal-data and secret detectors (the built-in ones and
    /// `[[redact.detectors]]`) over the answer. Default `true`.
    pub detectors: bool,
    /// Findings of the detectors less sure than this are ignored. Default 0.5.
    pub min_confidence: f32,
    /// Detect answers that repeat the request's system prompt. Default `true`.
    pub system_prompt: bool,
    /// Share (0 to 1) of a run of 32 five-word shingles of the answer found in the system
    /// prompt that makes a leak. Default 0.5.
    pub leak_threshold: f32,
    /// The fewest shared shingles that make a leak (8 is about 12 copied words).
    /// Default 8.
    pub leak_min_shingles: usize,
    /// Phrases that must not appear in an answer (case-insensitive). Default none.
    pub deny: Vec<String>,
    /// Deny-list phrases match whole words only. Default `true`.
    pub deny_whole_words: bool,
    /// The action per finding kind (`pii`, `phi`, `pci`, `secret`, `credential`,
    /// `system_prompt`, `deny_list`, or `default` for the rest): `block`, `redact` or
    /// `flag`. Default `block` for every kind.
    pub actions: std::collections::BTreeMap<String, String>,
    /// `[inspect.tools]`: the tool-call policy.
    pub tools: InspectToolsSection,
}

impl Default for InspectSection {
    fn default() -> Self {
        InspectSection {
            enabled: false,
            window: 64,
            thinking: false,
            detectors: true,
            min_confidence: 0.5,
            system_prompt: true,
            leak_threshold: 0.5,
            leak_min_shingles: 8,
            deny: Vec::new(),
            deny_whole_words: true,
            actions: std::collections::BTreeMap::new(),
            tools: InspectToolsSection::default(),
        }
    }
}

/// `[inspect.tools]`: which tools the model may call and rules on their arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectToolsSection {
    /// Tools anyone may call (globs: `get_weather`, `lookup_*`, `*`). Default `["*"]`.
    pub allow: Vec<String>,
    /// A caller's scopes with this prefix allow tools too (`tool:lookup_customer`);
    /// empty: scopes allow nothing. Default `tool:`.
    pub scope_prefix: String,
    /// Largest tool-call arguments held for checking; a longer call is refused.
    /// Default 1 MiB.
    #[serde(deserialize_with = "size")]
    pub max_input_bytes: ByteSize,
    /// Run the classifiers over tool-call arguments too (a finding that is not `flag`
    /// refuses the call). Default `false`.
    pub scan_input: bool,
    /// Argument rules (`[[inspect.tools.rules]]`).
    pub rules: Vec<ToolRuleEntry>,
}

impl Default for InspectToolsSection {
    fn default() -> Self {
        InspectToolsSection {
            allow: vec!["*".to_owned()],
            scope_prefix: "tool:".to_owned(),
            max_input_bytes: ByteSize::mib(1),
            scan_input: false,
            rules: Vec::new(),
        }
    }
}

/// One argument rule (`[[inspect.tools.rules]]`): exactly one of `equals` and `domains`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRuleEntry {
    /// The tools it applies to (a glob).
    pub tool: String,
    /// The argument, as a JSON pointer (`/tenant_id`, `/target/url`).
    pub pointer: String,
    /// The argument must equal this field of the caller: `subject`, `tenant`, `team`
    /// or `agent`.
    #[serde(default)]
    pub equals: Option<String>,
    /// The argument must be a URL on these domains (`example.com` exactly,
    /// `*.example.com` any subdomain).
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    /// A call without the argument breaks the rule. Default `true`.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

impl InspectSection {
    /// The inspection layer this section describes, checked; the detectors are
    /// `redact`'s (built-in and custom).
    pub fn build(
        &self,
        redact: &RedactSection,
    ) -> Result<ai_sse_inspect::InspectLayer, ConfigError> {
        use ai_sse_inspect as i;
        let err = |m: String| ConfigError::plain(format!("[inspect] {m}"));
        if self.window == 0 || self.window > 16_384 {
            return Err(err(format!(
                "window = {} is not between 1 and 16384",
                self.window
            )));
        }
        let mut policy = i::InspectPolicy::default()
            .window(self.window)
            .thinking(self.thinking);
        for (kind, action) in &self.actions {
            let a = i::Action::from_name(action).ok_or_else(|| {
                err(format!(
                    "actions.{kind} = {action:?} is not one of block, redact, flag"
                ))
            })?;
            if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(err(format!("actions: {kind:?} is not a finding kind")));
            }
            policy = if kind == "default" {
                policy.default_action(a)
            } else {
                policy.action(kind, a)
            };
        }
        let mut layer = i::InspectLayer::new(policy);
        if self.detectors {
            if !(0.0..=1.0).contains(&self.min_confidence) {
                return Err(err(format!(
                    "min_confidence = {} is not between 0 and 1",
                    self.min_confidence
                )));
            }
            let d = redact.detectors()?.min_confidence(self.min_confidence);
            layer = layer.classifier(std::sync::Arc::new(ai_redact::DetectorClassifier::new(d)));
        }
        if self.system_prompt {
            if !(0.0..=1.0).contains(&self.leak_threshold) {
                return Err(err(format!(
                    "leak_threshold = {} is not between 0 and 1",
                    self.leak_threshold
                )));
            }
            if self.leak_min_shingles == 0 || self.leak_min_shingles > 32 {
                return Err(err(format!(
                    "leak_min_shingles = {} is not between 1 and 32",
                    self.leak_min_shingles
                )));
            }
            layer = layer.classifier(std::sync::Arc::new(
                i::SystemPromptLeak::default()
                    .threshold(self.leak_threshold)
                    .min_hits(self.leak_min_shingles),
            ));
        }
        if !self.deny.is_empty() {
            let d = i::DenyList::new(&self.deny)
                .map_err(err)?
                .whole_words(self.deny_whole_words);
            layer = layer.classifier(std::sync::Arc::new(d));
        }
        let t = &self.tools;
        let mut tools = i::ToolPolicy::default()
            .allow(t.allow.iter().cloned())
            .max_input_bytes(usize::try_from(t.max_input_bytes.as_u64()).unwrap_or(usize::MAX))
            .scan_input(t.scan_input);
        if !t.scope_prefix.is_empty() {
            tools = tools.scope_prefix(&t.scope_prefix);
        }
        for r in &t.rules {
            let rerr = |m: String| err(format!("tools.rules (tool {:?}): {m}", r.tool));
            if !(r.pointer.is_empty() || r.pointer.starts_with('/')) {
                return Err(rerr(format!(
                    "pointer = {:?} is not a JSON pointer (it starts with /)",
                    r.pointer
                )));
            }
            let rule = match (&r.equals, &r.domains) {
                (Some(field), None) => {
                    let f = i::PrincipalField::from_name(field).ok_or_else(|| {
                        rerr(format!(
                            "equals = {field:?} is not one of subject, tenant, team, agent"
                        ))
                    })?;
                    i::ToolRule::equals(&r.tool, &r.pointer, f)
                }
                (None, Some(domains)) if !domains.is_empty() => {
                    i::ToolRule::domains(&r.tool, &r.pointer, domains.iter().cloned())
                }
                _ => {
                    return Err(rerr(
                        "needs exactly one of equals or a non-empty domains".to_owned(),
                    ));
                }
            };
            tools = tools.rule(rule.required(r.required));
        }
        Ok(layer.tools(tools))
    }
}

/// `[redact]`: what to do with each category of sensitive data, custom detectors, and
/// the prompt-injection check of retrieved content.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactSection {
    /// Run the redaction layer. Default `false`.
    pub enabled: bool,
    /// Personal data: `allow`, `mask`, `redact`, `tokenize` (default) or `block`.
    pub pii: String,
    /// Health data. Default `tokenize`.
    pub phi: String,
    /// Card numbers. Default `mask`.
    pub pci: String,
    /// Private keys, connection-string passwords, keyword-gated secrets. Default `redact`.
    pub secret: String,
    /// API keys, tokens, passwords. Default `redact`.
    pub credential: String,
    /// Findings less sure than this are ignored. Default 0.5.
    pub min_confidence: f32,
    /// `transform` (default: tool results are redacted like the rest) or `no_escalation`
    /// (a tool result carrying a category the prompt side did not is refused).
    pub tool_results: String,
    /// Injection score (0 to 1) of retrieved content that triggers `injection_action`.
    /// Default 0.7.
    pub injection_threshold: f32,
    /// `flag` (default: recorded), `strip` (hidden text removed) or `block` (403).
    pub injection_action: String,
    /// Read the text in base64 images with Tesseract and scan it too (needs the gateway
    /// built with `--features ocr` and the `tesseract` binary). Default `false`.
    pub ocr: bool,
    /// Tesseract languages, e.g. `eng+hin`. Default `eng`.
    pub ocr_lang: String,
    /// Custom detectors, added to the built-in ones.
    pub detectors: Vec<DetectorEntry>,
}

/// One custom detector (`[[redact.detectors]]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorEntry {
    /// Its name in records and block messages.
    pub name: String,
    /// The label of redactions and tokens (`EMPLOYEE_ID` gives `[EMPLOYEE_ID]`).
    pub label: String,
    /// `pii`, `phi`, `pci`, `secret` or `credential`.
    pub category: String,
    /// The regex; a capture group, if any, is the value.
    pub pattern: String,
    /// A check: `luhn`, `card`, `iban`, `ssn`, `aadhaar`, `verhoeff`, `secret`, `email`,
    /// `ipv4`, `ipv6`, `phone`, `person` or `none` (default).
    #[serde(default)]
    pub validator: Option<String>,
    /// Words that raise confidence when found just before a value.
    #[serde(default)]
    pub context: Vec<String>,
    /// Whether a value needs one of the context words. Default `false`.
    #[serde(default)]
    pub context_required: bool,
    /// Confidence without context. Default 0.9.
    #[serde(default)]
    pub confidence: Option<f32>,
    /// Literals every match starts with: the pattern then runs only where one occurs
    /// (without them it runs over every byte, one more pass per string).
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Whether `prefixes` ignore ASCII case. Default `false`.
    #[serde(default)]
    pub case_insensitive: bool,
}

impl Default for RedactSection {
    fn default() -> Self {
        RedactSection {
            enabled: false,
            pii: "tokenize".to_owned(),
            phi: "tokenize".to_owned(),
            pci: "mask".to_owned(),
            secret: "redact".to_owned(),
            credential: "redact".to_owned(),
            min_confidence: 0.5,
            tool_results: "transform".to_owned(),
            injection_threshold: 0.7,
            injection_action: "flag".to_owned(),
            ocr: false,
            ocr_lang: "eng".to_owned(),
            detectors: Vec::new(),
        }
    }
}

impl RedactSection {
    /// The redaction layer this section describes, checked.
    pub fn build(&self) -> Result<ai_redact::RedactLayer, ConfigError> {
        use ai_core::DataCategory as C;
        let err = |m: String| ConfigError::plain(format!("[redact] {m}"));
        let action = |key: &str, v: &str| {
            ai_redact::Action::from_name(v).ok_or_else(|| {
                err(format!(
                    "{key} = {v:?} is not one of allow, mask, redact, tokenize, block"
                ))
            })
        };
        let mut policy = ai_redact::RedactPolicy::default()
            .set(C::Pii, action("pii", &self.pii)?)
            .set(C::Phi, action("phi", &self.phi)?)
            .set(C::Pci, action("pci", &self.pci)?)
            .set(C::Secret, action("secret", &self.secret)?)
            .set(C::Credential, action("credential", &self.credential)?);
        policy = policy.tool_results(match self.tool_results.as_str() {
            "transform" => ai_redact::ToolResultRule::Transform,
            "no_escalation" => ai_redact::ToolResultRule::NoEscalation,
            other => {
                return Err(err(format!(
                    "tool_results = {other:?} is not one of transform, no_escalation"
                )));
            }
        });
        let inj =
            ai_redact::InjectionAction::from_name(&self.injection_action).ok_or_else(|| {
                err(format!(
                    "injection_action = {:?} is not one of flag, strip, block",
                    self.injection_action
                ))
            })?;
        if !(0.0..=1.0).contains(&self.injection_threshold) {
            return Err(err(format!(
                "injection_threshold = {} is not between 0 and 1",
                self.injection_threshold
            )));
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(err(format!(
                "min_confidence = {} is not between 0 and 1",
                self.min_confidence
            )));
        }
        policy = policy.injection(self.injection_threshold, inj);
        let detectors = self.detectors()?.min_confidence(self.min_confidence);
        let layer =
            ai_redact::RedactLayer::new(ai_redact::Redactor::with_detectors(detectors, policy));
        if !self.ocr {
            return Ok(layer);
        }
        #[cfg(feature = "ocr")]
        {
            Ok(layer.ocr(ai_redact::ocr::Ocr::new().lang(self.ocr_lang.clone())))
        }
        #[cfg(not(feature = "ocr"))]
        {
            Err(err(OCR_NEEDS_FEATURE.to_owned()))
        }
    }

    /// The built-in detectors and the custom ones, checked.
    pub fn detectors(&self) -> Result<ai_redact::Detectors, ConfigError> {
        use ai_core::DataCategory as C;
        let err = |m: String| ConfigError::plain(format!("[redact] {m}"));
        let mut specs = ai_redact::detect::builtin();
        for d in &self.detectors {
            let derr = |m: String| err(format!("detector {:?}: {m}", d.name));
            let category = C::from_name(&d.category).ok_or_else(|| {
                derr(format!(
                    "category = {:?} is not one of pii, phi, pci, secret, credential",
                    d.category
                ))
            })?;
            let mut spec =
                ai_redact::DetectorSpec::new(&d.name, &d.label, category, d.pattern.clone());
            if let Some(v) = &d.validator {
                spec = spec.validator(
                    ai_redact::Validator::from_name(v)
                        .ok_or_else(|| derr(format!("validator = {v:?} is not known")))?,
                );
            }
            let words: Vec<&str> = d.context.iter().map(String::as_str).collect();
            spec = if d.context_required {
                if words.is_empty() {
                    return Err(derr(
                        "context_required = true needs context words".to_owned(),
                    ));
                }
                spec.requires_context(&words)
            } else {
                spec.context(&words)
            };
            if let Some(c) = d.confidence {
                if !(0.0..=1.0).contains(&c) {
                    return Err(derr(format!("confidence = {c} is not between 0 and 1")));
                }
                spec = spec.confidence(c);
            }
            if !d.prefixes.is_empty() {
                let p: Vec<&str> = d.prefixes.iter().map(String::as_str).collect();
                spec = spec.prefixes(&p, d.case_insensitive);
            }
            specs.push(spec);
        }
        ai_redact::Detectors::new(specs).map_err(|e| err(e.to_string()))
    }
}

#[cfg(not(feature = "ocr"))]
const OCR_NEEDS_FEATURE: &str =
    "ocr = true needs the gateway built with --features ocr (and the tesseract binary)";

/// Where rate-limit meters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitStoreKind {
    /// In this process (one gateway).
    #[default]
    Memory,
    /// In Redis, shared by every replica.
    Redis,
}

/// What a rate limiter whose store is unreachable does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreFailure {
    /// 503 until the store is back.
    #[default]
    Closed,
    /// Limit in this process alone until the store is back.
    Open,
}

/// `[ratelimit]`: requests, input tokens and output tokens per minute and requests in
/// flight, per what each limit names; tiers select extra limits by `Principal.tier`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RateLimitSection {
    /// Enforce the limits. Default `false`.
    pub enabled: bool,
    /// `memory` (default) or `redis`.
    pub store: RateLimitStoreKind,
    /// The Redis URL by environment reference (`redis://` or `rediss://`); read only with
    /// `store = "redis"`.
    pub redis_url: Option<EnvSecret>,
    /// `redis_url` names the seed nodes of a Redis Cluster (comma-separated URLs); each
    /// check goes to the node owning its keys' hash slot. Default `false`.
    pub redis_cluster: bool,
    /// Longest a Redis command may take before it counts as a store failure. Default 250 ms.
    #[serde(deserialize_with = "duration")]
    pub redis_timeout: Duration,
    /// `closed` (default: 503 while the store is unreachable) or `open` (limit in this
    /// process alone meanwhile).
    pub on_store_error: StoreFailure,
    /// The tier of callers without one (or with one not listed). Default: none.
    pub default_tier: Option<String>,
    /// How long Redis keeps the in-flight slot of a replica that died. Default 10 min.
    #[serde(deserialize_with = "duration")]
    pub in_flight_lease: Duration,
    /// `[[ratelimit.limits]]`: limits for every caller.
    pub limits: Vec<LimitSection>,
    /// `[ratelimit.tiers.<name>]`: named tiers.
    pub tiers: std::collections::BTreeMap<String, TierSection>,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        RateLimitSection {
            enabled: false,
            store: RateLimitStoreKind::Memory,
            redis_url: None,
            redis_cluster: false,
            redis_timeout: Duration::from_millis(250),
            on_store_error: StoreFailure::Closed,
            default_tier: None,
            in_flight_lease: Duration::from_secs(600),
            limits: Vec::new(),
            tiers: std::collections::BTreeMap::new(),
        }
    }
}

/// One limit: `[[ratelimit.limits]]` or `[[ratelimit.tiers.<name>.limits]]`. Each rate
/// refills continuously; its burst is one minute's worth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSection {
    /// Its name (in keys, messages, metrics).
    pub name: String,
    /// Kept per: any of `subject` (or `user`), `tenant`, `team`, `agent`, `key`, `model`,
    /// `model_family`. Empty: one meter for everyone.
    #[serde(default, deserialize_with = "key_parts")]
    pub by: Vec<ai_ratelimit::KeyPart>,
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Input tokens per minute (uncached input plus cache writes).
    pub input_tokens_per_minute: Option<u64>,
    /// Output tokens per minute.
    pub output_tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    pub in_flight: Option<u64>,
}

/// `[ratelimit.tiers.<name>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierSection {
    /// Queue priority: a higher tier waiting for capacity is served first. Default 0.
    pub priority: u8,
    /// How long a request over its limits may wait for capacity ("0s": refused at once,
    /// the default).
    #[serde(deserialize_with = "duration_or_zero")]
    pub queue_wait: Duration,
    /// The tier's limits, on top of the common ones.
    pub limits: Vec<LimitSection>,
}

fn key_parts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ai_ratelimit::KeyPart>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|p| {
            ai_ratelimit::KeyPart::parse(p).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown part \"{p}\": use subject, tenant, team, agent, key, model or model_family"
                ))
            })
        })
        .collect()
}

fn duration_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "0" || text.trim() == "0s" {
        return Ok(Duration::ZERO);
    }
    duration(serde::de::value::StringDeserializer::<D::Error>::new(text))
}

impl LimitSection {
    fn limit(&self) -> ai_ratelimit::Limit {
        use ai_ratelimit::{Limit, Rate};
        let mut l = Limit::new(self.name.as_str()).by(self.by.iter().copied());
        l.requests = self.requests_per_minute.map(Rate::per_minute);
        l.input_tokens = self.input_tokens_per_minute.map(Rate::per_minute);
        l.output_tokens = self.output_tokens_per_minute.map(Rate::per_minute);
        l.in_flight = self.in_flight;
        l
    }
}

impl RateLimitSection {
    /// The policy these limits describe, checked.
    pub fn policy(&self) -> Result<ai_ratelimit::Policy, ConfigError> {
        let mut p = ai_ratelimit::Policy::new();
        p.limits = self.limits.iter().map(LimitSection::limit).collect();
        for (name, t) in &self.tiers {
            let tier = ai_ratelimit::Tier::new(t.limits.iter().map(LimitSection::limit))
                .priority(t.priority)
                .queue_wait(t.queue_wait);
            p = p.tier(name.as_str(), tier);
        }
        p.default_tier = self.default_tier.clone();
        p.in_flight_lease = Some(self.in_flight_lease);
        p.validate()
            .map_err(|e| ConfigError::plain(format!("[ratelimit] {e}")))?;
        Ok(p)
    }

    /// The layer, when enabled, and a line saying what it enforces. Must be called inside
    /// a tokio runtime (the Redis client connects lazily on it).
    pub fn build(&self) -> Result<Option<(ai_ratelimit::RateLimitLayer, String)>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let policy = self.policy()?;
        let count =
            policy.limits.len() + policy.tiers.values().map(|t| t.limits.len()).sum::<usize>();
        let tiers = policy.tiers.len();
        let (layer, store) = match self.store {
            RateLimitStoreKind::Memory => (
                ai_ratelimit::RateLimitLayer::new(policy),
                "in memory".to_owned(),
            ),
            RateLimitStoreKind::Redis => {
                let t = RedisTarget::of("ratelimit", self.redis_url.as_ref(), self.redis_cluster)?;
                let store = if self.redis_cluster {
                    ai_ratelimit::RedisStore::connect_cluster(&t.nodes, self.redis_timeout)
                } else {
                    ai_ratelimit::RedisStore::connect(t.nodes[0], self.redis_timeout)
                }
                .map_err(|e| ConfigError::plain(format!("[ratelimit] redis_url: {e}")))?;
                (
                    ai_ratelimit::RateLimitLayer::with_store(policy, store),
                    t.shown,
                )
            }
        };
        let layer = layer.on_store_error(match self.on_store_error {
            StoreFailure::Closed => ai_ratelimit::OnStoreError::Closed,
            StoreFailure::Open => ai_ratelimit::OnStoreError::Open,
        });
        Ok(Some((
            layer,
            format!("rate limits: {count} limits, {tiers} tiers, {store}"),
        )))
    }
}

/// The Redis a section names: one URL, or a Cluster's seed nodes (comma-separated), and
/// how to name it in logs (the variable, never the URL: it may hold a password).
struct RedisTarget<'a> {
    nodes: Vec<&'a str>,
    shown: String,
}

impl<'a> RedisTarget<'a> {
    fn of(section: &str, url: Option<&'a EnvSecret>, cluster: bool) -> Result<Self, ConfigError> {
        let value = url.and_then(EnvSecret::value).ok_or_else(|| {
            ConfigError::plain(format!(
                "[{section}] store = \"redis\" needs redis_url = \"${{VAR}}\""
            ))
        })?;
        let nodes: Vec<&str> = if cluster {
            value
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        } else {
            vec![value]
        };
        if nodes.is_empty() {
            return Err(ConfigError::plain(format!(
                "[{section}] redis_url names no node"
            )));
        }
        let what = if cluster { "Redis Cluster" } else { "Redis" };
        let name = url.map_or("", EnvSecret::name);
        Ok(RedisTarget {
            nodes,
            shown: format!("on {what} (${{{name}}})"),
        })
    }
}

/// `[budget]`: the cost of every call and spending caps per user, team, tenant,
/// project header, key or for the whole gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BudgetSection {
    /// Price calls and enforce the budgets. Default `false`.
    pub enabled: bool,
    /// `memory` (default: saved to `state_file`) or `redis`.
    pub store: RateLimitStoreKind,
    /// Where the memory store saves spend (at shutdown and every `save_interval`), and
    /// reads it back at start. Default `./budget-spend.json`.
    pub state_file: PathBuf,
    /// How often the memory store saves. Default 30 s.
    #[serde(deserialize_with = "duration")]
    pub save_interval: Duration,
    /// The Redis URL by environment reference; read only with `store = "redis"`.
    pub redis_url: Option<EnvSecret>,
    /// `redis_url` names the seed nodes of a Redis Cluster (comma-separated). Default
    /// `false`.
    pub redis_cluster: bool,
    /// Longest a Redis command may take. Default 250 ms.
    #[serde(deserialize_with = "duration")]
    pub redis_timeout: Duration,
    /// `closed` (default: 503 while the store is unreachable) or `open` (calls go
    /// through unbudgeted meanwhile, still priced).
    pub on_store_error: StoreFailure,
    /// The IANA time zone daily and monthly windows are cut in. Default `UTC`.
    pub time_zone: String,
    /// The header naming a request's project or cost centre. Default `x-gateway-project`.
    pub project_header: String,
    /// `reject` (default: 400 for a model without a price) or a listed model to price
    /// unlisted ones as.
    pub unknown_model: String,
    /// Alert thresholds in percent of each cap. Default `[80, 100]`.
    pub alert_thresholds: Vec<u8>,
    /// A URL (by environment reference: it often carries a token) that alerts are also
    /// POSTed to as JSON. Default: log and counter only.
    pub webhook_url: Option<EnvSecret>,
    /// Time per webhook attempt. Default 5 s.
    #[serde(deserialize_with = "duration")]
    pub webhook_timeout: Duration,
    /// Webhook retries after the first attempt. Default 3.
    pub webhook_retries: u32,
    /// The bearer token of `GET /admin/budgets/{scope}:{owner}`, by environment
    /// reference. Without it the admin route is off.
    pub admin_token: Option<EnvSecret>,
    /// `[[budget.budgets]]`: the caps.
    pub budgets: Vec<BudgetEntry>,
    /// `[budget.prices."<model>"]`: prices that replace or extend the shipped table
    /// (same keys as `crates/ai-budget/data/prices.toml`).
    pub prices: std::collections::BTreeMap<String, ai_budget::ModelPrice>,
}

impl Default for BudgetSection {
    fn default() -> Self {
        BudgetSection {
            enabled: false,
            store: RateLimitStoreKind::Memory,
            state_file: PathBuf::from("./budget-spend.json"),
            save_interval: Duration::from_secs(30),
            redis_url: None,
            redis_cluster: false,
            redis_timeout: Duration::from_millis(250),
            on_store_error: StoreFailure::Closed,
            time_zone: "UTC".to_owned(),
            project_header: "x-gateway-project".to_owned(),
            unknown_model: "reject".to_owned(),
            alert_thresholds: vec![80, 100],
            webhook_url: None,
            webhook_timeout: Duration::from_secs(5),
            webhook_retries: 3,
            admin_token: None,
            budgets: Vec::new(),
            prices: std::collections::BTreeMap::new(),
        }
    }
}

/// One cap: `[[budget.budgets]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BudgetEntry {
    /// A unique name (in refusals, alerts and store keys).
    pub name: String,
    /// `subject` (or `user`), `team`, `tenant`, `project`, `key` or `global`.
    pub by: String,
    /// The cap in dollars per window, e.g. `"250.00"`.
    pub usd: ai_budget::Usd,
    /// `daily`, `monthly` or `lifetime`.
    pub window: String,
    /// End streams cleanly at the cap instead of refusing what may not fit. Default
    /// `false`.
    #[serde(default)]
    pub cut_off: bool,
    /// Thresholds for this budget (default: the section's).
    #[serde(default)]
    pub alert_thresholds: Option<Vec<u8>>,
}

impl BudgetSection {
    /// The policy these budgets describe, checked.
    pub fn policy(&self) -> Result<ai_budget::BudgetPolicy, ConfigError> {
        let err = |m: String| ConfigError::plain(format!("[budget] {m}"));
        let mut budgets = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for b in &self.budgets {
            let scope = ai_budget::Scope::from_name(&b.by).ok_or_else(|| {
                err(format!(
                    "budget {:?}: by = {:?} is not one of subject, team, tenant, project, key, global",
                    b.name, b.by
                ))
            })?;
            let period = ai_budget::Period::from_name(&b.window).ok_or_else(|| {
                err(format!(
                    "budget {:?}: window = {:?} is not one of daily, monthly, lifetime",
                    b.name, b.window
                ))
            })?;
            if b.name.is_empty() || !names.insert(b.name.as_str()) {
                return Err(err(format!(
                    "budget names must be unique and not empty ({:?})",
                    b.name
                )));
            }
            let mut budget =
                ai_budget::Budget::new(&b.name, scope, b.usd, period).cut_off(b.cut_off);
            if let Some(t) = &b.alert_thresholds {
                budget = budget.thresholds(t.clone());
            }
            budgets.push(budget);
        }
        let calendar = ai_budget::Calendar::zone(&self.time_zone)
            .map_err(|e| err(format!("time_zone: {e}")))?;
        let mut policy = ai_budget::BudgetPolicy::new(budgets).calendar(calendar);
        policy.project_header = http::HeaderName::from_bytes(self.project_header.as_bytes())
            .map_err(|_| {
                err(format!(
                    "project_header {:?} is not a header name",
                    self.project_header
                ))
            })?;
        policy.thresholds = self.alert_thresholds.clone();
        for t in policy
            .budgets
            .iter()
            .flat_map(|b| b.thresholds.iter().flatten())
            .chain(&policy.thresholds)
        {
            if *t == 0 || *t > 100 {
                return Err(err(format!(
                    "alert threshold {t} is not a percent between 1 and 100"
                )));
            }
        }
        Ok(policy)
    }

    /// The shipped prices with this section's overrides and unknown-model rule.
    pub fn prices(&self) -> Result<ai_budget::PriceTable, ConfigError> {
        let mut table = ai_budget::PriceTable::defaults();
        for (id, p) in &self.prices {
            table.insert(id.clone(), p.clone());
        }
        let unknown = match self.unknown_model.as_str() {
            "reject" => ai_budget::UnknownModel::Reject,
            m => ai_budget::UnknownModel::PriceAs(m.to_owned()),
        };
        table
            .set_unknown(unknown)
            .map_err(|e| ConfigError::plain(format!("[budget] unknown_model: {e}")))?;
        Ok(table)
    }

    /// The layer, when enabled, and a line saying what it enforces. Must be called inside
    /// a tokio runtime (the memory store's saver and the Redis client run on it).
    pub fn build(&self) -> Result<Option<(ai_budget::BudgetLayer, String)>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let policy = self.policy()?;
        let prices = self.prices()?;
        let count = policy.budgets.len();
        let (layer, store) = match self.store {
            RateLimitStoreKind::Memory => {
                let store = ai_budget::MemoryStore::open(&self.state_file)
                    .map_err(|e| ConfigError::plain(format!("[budget] state_file: {e}")))?;
                store.save_every(self.save_interval, ai_core::Clock::system());
                (
                    ai_budget::BudgetLayer::with_store(policy, prices, store),
                    format!("in memory, saved to {}", self.state_file.display()),
                )
            }
            RateLimitStoreKind::Redis => {
                let t = RedisTarget::of("budget", self.redis_url.as_ref(), self.redis_cluster)?;
                let store = if self.redis_cluster {
                    ai_budget::RedisStore::connect_cluster(&t.nodes, self.redis_timeout)
                } else {
                    ai_budget::RedisStore::connect(t.nodes[0], self.redis_timeout)
                }
                .map_err(|e| ConfigError::plain(format!("[budget] redis_url: {e}")))?;
                (
                    ai_budget::BudgetLayer::with_store(policy, prices, store),
                    t.shown,
                )
            }
        };
        let mut sinks: Vec<std::sync::Arc<dyn ai_budget::AlertSink>> =
            vec![std::sync::Arc::new(ai_budget::LogSink)];
        if let Some(url) = self.webhook_url.as_ref().and_then(EnvSecret::value) {
            let hook = ai_budget::WebhookSink::new(url)
                .map_err(|e| ConfigError::plain(format!("[budget] webhook_url: {e}")))?
                .timeout(self.webhook_timeout)
                .retries(self.webhook_retries, Duration::from_millis(500));
            sinks.push(std::sync::Arc::new(hook));
        }
        let layer =
            layer
                .alerts(ai_budget::Fanout(sinks))
                .on_store_error(match self.on_store_error {
                    StoreFailure::Closed => ai_budget::OnStoreError::Closed,
                    StoreFailure::Open => ai_budget::OnStoreError::Open,
                });
        Ok(Some((
            layer,
            format!(
                "budgets: {count} caps, windows in {}, {store}",
                self.time_zone
            ),
        )))
    }
}

/// Where audit records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuditSinkKind {
    /// Hash-chained, signed JSONL segments in `dir`.
    File,
    /// JSON lines on standard output, for a log shipper.
    Stdout,
}

/// What a failing audit sink does to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuditFailure {
    /// Refuse new requests with 503 until the log is writable again.
    Closed,
    /// Serve on, counting the records that could not be written.
    Open,
}

/// `[audit]`: one tamper-evident record per call, and the metrics endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuditSection {
    /// Write audit records. Default `true`.
    pub enabled: bool,
    /// `file` (default) or `stdout`.
    pub sink: AuditSinkKind,
    /// The directory of the segments (relative to the working directory). Default `./audit`.
    pub dir: PathBuf,
    /// `"always"` (fsync every batch before its responses end; default) or a duration:
    /// at most that long between fsyncs; responses do not wait for their record, and a
    /// crash can lose the records of that last interval.
    #[serde(deserialize_with = "fsync")]
    pub fsync: ai_audit::Fsync,
    /// A new segment when the current one reaches this size. Default 64 MiB.
    #[serde(deserialize_with = "size")]
    pub rotate_size: ByteSize,
    /// A new segment when the current one is this old. Default 24 h.
    #[serde(deserialize_with = "duration")]
    pub rotate_interval: Duration,
    /// A signed checkpoint after this many records. Default 1000.
    pub checkpoint_every: u64,
    /// A signed checkpoint this long after the last one when records came since. Default 10 s.
    #[serde(deserialize_with = "duration")]
    pub checkpoint_interval: Duration,
    /// The Ed25519 signing key (32 bytes, base64), as an environment reference. Absent:
    /// a key is generated on first start and kept in `<dir>/signing.key` (a warning says
    /// to move it: whoever can write the log should not hold the key).
    pub signing_key: Option<EnvSecret>,
    /// `closed` (default: 503 while the log cannot be written) or `open`.
    pub failure: AuditFailure,
    /// Records queued or in flight at most. Default 8192.
    pub queue: usize,
    /// Longest a request waits for room in the queue. Default 5 s.
    #[serde(deserialize_with = "duration")]
    pub enqueue_timeout: Duration,
    /// Longest a response waits for its record to be durable. Default 10 s.
    #[serde(deserialize_with = "duration")]
    pub ack_timeout: Duration,
    /// Keep the request as the redaction layer left it in each record. Default `false`.
    pub capture_redacted: bool,
    /// Refused unauthenticated requests recorded one by one per source and minute;
    /// beyond, aggregated. Default 60.
    pub unauthenticated_per_minute: u32,
    /// Serve `GET /metrics` (Prometheus text format, no authentication). Default `true`.
    pub metrics: bool,
    /// Add a `tenant` label to the request counter. Default `false`.
    pub metrics_tenant_label: bool,
}

impl Default for AuditSection {
    fn default() -> Self {
        let w = ai_audit::WriterConfig::default();
        AuditSection {
            enabled: true,
            sink: AuditSinkKind::File,
            dir: PathBuf::from("./audit"),
            fsync: w.fsync,
            rotate_size: ByteSize::mib(64),
            rotate_interval: Duration::from_secs(24 * 3600),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            signing_key: None,
            failure: AuditFailure::Closed,
            queue: w.queue,
            enqueue_timeout: w.enqueue_timeout,
            ack_timeout: w.ack_timeout,
            capture_redacted: false,
            unauthenticated_per_minute: 60,
            metrics: true,
            metrics_tenant_label: false,
        }
    }
}

fn fsync<'de, D: Deserializer<'de>>(d: D) -> Result<ai_audit::Fsync, D::Error> {
    let text = String::deserialize(d)?;
    if text == "always" {
        return Ok(ai_audit::Fsync::Always);
    }
    let every = humantime::parse_duration(&text).map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid fsync \"{text}\": write \"always\" or a duration like \"50ms\""
        ))
    })?;
    if every.is_zero() || every > Duration::from_secs(60) {
        return Err(serde::de::Error::custom(
            "fsync interval must be between 1ms and 60s",
        ));
    }
    Ok(ai_audit::Fsync::Every(every))
}

impl AuditSection {
    /// The signing key: from `signing_key`, else the one kept in `<dir>/signing.key`
    /// (created on first use, mode 0600). Returns the key and where it came from.
    pub fn signing_key(&self) -> Result<(ai_audit::SigningKey, String), ConfigError> {
        if let Some(secret) = &self.signing_key {
            let value = secret
                .value()
                .ok_or_else(|| ConfigError::plain("[audit] signing_key is not resolved"))?;
            let key = ai_audit::SigningKey::from_base64(value).map_err(|e| {
                ConfigError::plain(format!(
                    "[audit] signing_key (environment variable {}): {e}",
                    secret.name()
                ))
            })?;
            return Ok((key, format!("environment variable {}", secret.name())));
        }
        let path = self.dir.join("signing.key");
        let io = |e: std::io::Error| ConfigError::plain(format!("[audit] {}: {e}", path.display()));
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let key = ai_audit::SigningKey::from_base64(&text)
                .map_err(|e| ConfigError::plain(format!("[audit] {}: {e}", path.display())))?;
            return Ok((key, path.display().to_string()));
        }
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let (key, seed) = ai_audit::SigningKey::generate()
            .map_err(|e| ConfigError::plain(format!("[audit] {e}")))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&path).map_err(io)?;
        std::io::Write::write_all(&mut f, seed.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::write(
            self.dir.join("signing.pub"),
            format!("{}\n", key.public_key().to_base64()),
        )
        .map_err(io)?;
        Ok((key, format!("{} (generated)", path.display())))
    }

    /// Opens the sink and starts the writer: the layer, or `None` when `enabled = false`.
    pub fn build(&self) -> Result<Option<(ai_audit::AuditLayer, String)>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        if self.queue == 0 || self.checkpoint_every == 0 {
            return Err(ConfigError::plain(
                "[audit] queue and checkpoint_every must be at least 1",
            ));
        }
        let writer_cfg = ai_audit::WriterConfig {
            queue: self.queue,
            enqueue_timeout: self.enqueue_timeout,
            ack_timeout: self.ack_timeout,
            fsync: self.fsync,
            failure: match self.failure {
                AuditFailure::Closed => ai_audit::FailurePolicy::Closed,
                AuditFailure::Open => ai_audit::FailurePolicy::Open,
            },
            ..ai_audit::WriterConfig::default()
        };
        let (writer, what) = match self.sink {
            AuditSinkKind::File => {
                let (key, origin) = self.signing_key()?;
                let public = key.public_key().to_base64();
                let mut cfg = ai_audit::FileSinkConfig::new(&self.dir, key);
                cfg.rotate_size = self.rotate_size.as_u64();
                cfg.rotate_interval = self.rotate_interval;
                cfg.checkpoint_every = self.checkpoint_every;
                cfg.checkpoint_interval = self.checkpoint_interval;
                let sink = ai_audit::FileSink::open(cfg).map_err(|e| {
                    ConfigError::plain(format!("[audit] dir {}: {e}", self.dir.display()))
                })?;
                let segment = sink.segment();
                let writer = ai_audit::AuditWriter::spawn(sink, writer_cfg)
                    .map_err(|e| ConfigError::plain(format!("[audit] writer thread: {e}")))?;
                (
                    writer,
                    format!(
                        "audit log in {} (segment {segment}), signing key from {origin}, public key {public}",
                        self.dir.display()
                    ),
                )
            }
            AuditSinkKind::Stdout => (
                ai_audit::AuditWriter::spawn(ai_audit::StdoutSink::new(), writer_cfg)
                    .map_err(|e| ConfigError::plain(format!("[audit] writer thread: {e}")))?,
                "audit records on stdout".to_owned(),
            ),
        };
        let layer = ai_audit::AuditLayer::new(writer)
            .capture_redacted(self.capture_redacted)
            .tenant_label(self.metrics_tenant_label)
            .unauthenticated_limit(self.unauthenticated_per_minute, Duration::from_secs(60));
        Ok(Some((layer, what)))
    }
}

/// `[auth]`: caller authentication by gateway key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthSection {
    /// The key file (TOML `[[keys]]` records, or JSON for a `.json` name), relative to the
    /// configuration file. Required. Reloaded when it changes.
    pub keys_file: PathBuf,
    /// The pepper key hashes are keyed with (16 bytes or more), as an environment
    /// reference. Required.
    pub key_pepper: EnvSecret,
    /// How often the key file is checked for changes. Default 2 s.
    #[serde(default = "default_reload", deserialize_with = "duration")]
    pub reload_interval: Duration,
    /// `[[auth.issuers]]`: identity providers whose JWT bearer tokens are accepted.
    #[serde(default)]
    pub issuers: Vec<IssuerSection>,
    /// With a key (16 bytes or more, as an environment reference), every request's
    /// `metadata.user_id` becomes a keyed pseudonym of tenant + subject, so the vendor's
    /// abuse signals are per user without naming the user. Default: off.
    #[serde(default)]
    pub user_pseudonym_key: Option<EnvSecret>,
}

fn default_reload() -> Duration {
    Duration::from_secs(2)
}

/// `[[auth.issuers]]`: one identity provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerSection {
    /// The `iss` its tokens carry. Required.
    pub issuer: String,
    /// The `aud` values accepted (one must match). Required.
    pub audiences: Vec<String>,
    /// Algorithms accepted for its published keys, e.g. `["RS256", "ES256"]`. Default
    /// `["RS256"]`. HMAC is never accepted from a URL.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Where it publishes its keys (JWKS). Optional when `keys` are given.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Static public keys: `{ kid = "k1", algorithm = "ES256", pem_file = "idp.pem" }`
    /// (relative to the configuration file).
    #[serde(default)]
    pub keys: Vec<StaticKeySection>,
    /// Clock skew allowed on `exp` and `nbf`. Default 30 s.
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    pub leeway: Duration,
    /// How long published keys are used before they are fetched again. Default 5 min.
    #[serde(default = "default_jwks_ttl", deserialize_with = "duration")]
    pub jwks_ttl: Duration,
    /// Least time between two fetches of the published keys. Default 30 s.
    #[serde(default = "default_jwks_interval", deserialize_with = "duration")]
    pub jwks_min_refresh_interval: Duration,
    /// Claim names for the principal (`subject`, `tenant`, `team`, `tier`, `scopes`,
    /// `models`). Defaults: `sub`, `tenant_id`, none, none, `scope`, none.
    #[serde(default)]
    pub claims: ClaimMap,
}

/// A static public key of an issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StaticKeySection {
    /// The key id tokens name (optional).
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm this key is for: RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    pub algorithm: String,
    /// The PEM file of the public key, relative to the configuration file.
    pub pem_file: PathBuf,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned()]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_jwks_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_jwks_interval() -> Duration {
    Duration::from_secs(30)
}

fn algorithm(name: &str) -> Result<JwtAlgorithm, ConfigError> {
    name.parse::<JwtAlgorithm>().map_err(|_| {
        ConfigError::plain(format!(
            "[[auth.issuers]] algorithm \"{name}\" is not one of RS256, RS384, RS512, PS256, \
             PS384, PS512, ES256, ES384, EdDSA"
        ))
    })
}

impl IssuerSection {
    /// Builds the issuer (reads its static key files; published keys are fetched on first use).
    pub fn build(&self) -> Result<JwtIssuer, ConfigError> {
        let at = |e: ai_auth::KeyError| {
            ConfigError::plain(format!("[[auth.issuers]] {}: {e}", self.issuer))
        };
        if self.leeway > Duration::from_secs(3600) {
            return Err(ConfigError::plain(format!(
                "[[auth.issuers]] {}: a leeway over 1h would make exp meaningless",
                self.issuer
            )));
        }
        if self.jwks_url.is_some()
            && (self.algorithms.is_empty() || self.jwks_ttl <= self.jwks_min_refresh_interval)
        {
            return Err(ConfigError::plain(format!(
                "[[auth.issuers]] {}: give at least one algorithm, and a jwks_ttl longer than \
                 jwks_min_refresh_interval",
                self.issuer
            )));
        }
        let audiences: Vec<&str> = self.audiences.iter().map(String::as_str).collect();
        if audiences.is_empty() {
            return Err(ConfigError::plain(format!(
                "[[auth.issuers]] {}: audiences must name at least one audience",
                self.issuer
            )));
        }
        let mut issuer = JwtIssuer::new(self.issuer.clone(), &audiences)
            .leeway(self.leeway)
            .claims(self.claims.clone());
        for k in &self.keys {
            let alg = algorithm(&k.algorithm)?;
            let pem = std::fs::read(&k.pem_file).map_err(|e| {
                ConfigError::plain(format!(
                    "[[auth.issuers]] {}: cannot read {}: {e}",
                    self.issuer,
                    k.pem_file.display()
                ))
            })?;
            let kid = k.kid.as_deref();
            issuer = match alg {
                JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => issuer.ec_key(kid, alg, &pem),
                JwtAlgorithm::EdDSA => issuer.ed_key(kid, &pem),
                _ => issuer.rsa_key(kid, alg, &pem),
            }
            .map_err(at)?;
        }
        if let Some(url) = &self.jwks_url {
            let algs = self
                .algorithms
                .iter()
                .map(|a| algorithm(a))
                .collect::<Result<Vec<_>, _>>()?;
            let jwks = Jwks::new(url, &algs)
                .map_err(at)?
                .ttl(self.jwks_ttl)
                .min_refresh_interval(self.jwks_min_refresh_interval);
            issuer = issuer.jwks(jwks);
        } else if self.keys.is_empty() {
            return Err(ConfigError::plain(format!(
                "[[auth.issuers]] {}: give a jwks_url or static keys",
                self.issuer
            )));
        }
        Ok(issuer)
    }
}

impl AuthSection {
    /// The hasher of the pepper.
    pub fn hasher(&self) -> Result<KeyHasher, ConfigError> {
        let pepper = self
            .key_pepper
            .value()
            .ok_or_else(|| ConfigError::plain("[auth] key_pepper is not resolved"))?;
        KeyHasher::new(pepper.as_bytes()).map_err(|e| {
            ConfigError::plain(format!(
                "[auth] key_pepper (environment variable {}): {e}",
                self.key_pepper.name()
            ))
        })
    }

    /// The pseudonym layer (a no-op without `user_pseudonym_key`).
    pub fn pseudonym(&self) -> Result<UserPseudonymLayer, ConfigError> {
        let Some(secret) = &self.user_pseudonym_key else {
            return Ok(UserPseudonymLayer::disabled());
        };
        let value = secret
            .value()
            .ok_or_else(|| ConfigError::plain("[auth] user_pseudonym_key is not resolved"))?;
        UserPseudonymLayer::new(value.as_bytes()).map_err(|e| {
            ConfigError::plain(format!(
                "[auth] user_pseudonym_key (environment variable {}): {e}",
                secret.name()
            ))
        })
    }

    /// Reads the key file and builds the layer (call [`FileKeys::watch`] on the returned
    /// store inside a runtime to reload it on change).
    pub fn build(&self) -> Result<(AuthLayer, FileKeys), ConfigError> {
        let hasher = self.hasher()?;
        let keys = FileKeys::open(&self.keys_file)
            .map_err(|e| ConfigError::plain(format!("[auth] keys_file: {e}")))?;
        let mut layer = AuthLayer::keys(keys.clone(), hasher);
        let mut names: Vec<&str> = self.issuers.iter().map(|i| i.issuer.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::plain(format!(
                "[[auth.issuers]] {} appears twice",
                w[0]
            )));
        }
        if !self.issuers.is_empty() {
            let issuers = self
                .issuers
                .iter()
                .map(IssuerSection::build)
                .collect::<Result<Vec<_>, _>>()?;
            layer = layer.with_jwt(issuers);
        }
        Ok((layer, keys))
    }
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerSection {
    /// Listen address. Default `127.0.0.1:8080` (`--listen` and `GATEWAY_LISTEN` win).
    pub listen: String,
    /// Time a client has to send its request headers. Default 30 s.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// Longest a write to a client may stay blocked (a client that stops reading). Default 60 s.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
    /// Time allowed to receive a whole request body (slower gets 408). Default 60 s.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// Largest request body (larger gets 413). Default 32 MiB.
    #[serde(deserialize_with = "size")]
    pub body_limit: ByteSize,
    /// How long shutdown waits for open requests to finish. Default 30 s.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Serve a non-loopback address without `[auth]` (only behind something else that
    /// authenticates callers). Default `false`: the gateway refuses to start that way.
    pub allow_open: bool,
}

impl Default for ServerSection {
    /// [`ServerConfig::default`]'s values, and the codec's.
    fn default() -> Self {
        let d = ServerConfig::default();
        ServerSection {
            listen: "127.0.0.1:8080".to_owned(),
            header_read_timeout: d.header_read_timeout,
            write_timeout: d.write_timeout.unwrap_or(Duration::from_secs(60)),
            body_timeout: ai_core::codec::DEFAULT_BODY_TIMEOUT,
            body_limit: ByteSize::b(ai_core::codec::DEFAULT_BODY_LIMIT as u64),
            shutdown_grace: d.shutdown_timeout,
            allow_open: false,
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LogSection {
    /// Log filter, e.g. `info` or `info,ai_provider=debug` (`RUST_LOG` wins). Default `info`.
    pub level: String,
    /// `text` (plain, colours only on a terminal) or `json` (one object a line). Default `text`.
    pub format: LogFormat,
    /// One `info` line per request (method, path, status, latency, request id, model;
    /// never content). Default `true`.
    pub access_log: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".to_owned(),
            format: LogFormat::Text,
            access_log: true,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// `[upstream]`: one subsection per provider. With none, the built-in demo upstream answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct UpstreamSection {
    /// `[upstream.anthropic]`.
    pub anthropic: Option<AnthropicSection>,
    /// `[upstream.openai]`: OpenAI, or a self-hosted OpenAI-compatible server, for the
    /// requests of the OpenAI surface (`/v1/chat/completions`). Without it they go to the
    /// Anthropic upstream (or the demo) through the mapping.
    pub openai: Option<OpenAiSection>,
    /// `[upstream.bedrock]`: Anthropic models on AWS Bedrock.
    pub bedrock: Option<BedrockSection>,
    /// `[upstream.vertex]`: Anthropic models on Google Vertex AI.
    pub vertex: Option<VertexSection>,
    /// Which of `anthropic`, `bedrock` and `vertex` serves the Anthropic surface (and the
    /// OpenAI surface without `[upstream.openai]`) when more than one is configured.
    /// With one, that one; with none, the built-in demo upstream.
    pub default: Option<String>,
}

impl UpstreamSection {
    /// The upstream that serves Anthropic-model requests: `anthropic`, `bedrock`,
    /// `vertex`, or `None` for the demo. Several configured without `default` is an error.
    pub fn primary(&self) -> Result<Option<&'static str>, ConfigError> {
        let configured: Vec<&'static str> = [
            ("anthropic", self.anthropic.is_some()),
            ("bedrock", self.bedrock.is_some()),
            ("vertex", self.vertex.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, on)| on.then_some(n))
        .collect();
        match (&self.default, configured.as_slice()) {
            (None, []) => Ok(None),
            (None, [one]) => Ok(Some(one)),
            (None, _) => Err(ConfigError::plain(format!(
                "[upstream] configures {}: say which serves requests with \
                 [upstream] default = \"{}\"",
                configured.join(", "),
                configured[0]
            ))),
            (Some(d), _) => configured
                .iter()
                .find(|n| **n == d.as_str())
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    ConfigError::plain(format!(
                        "[upstream] default = \"{d}\" names no configured upstream \
                         (anthropic, bedrock or vertex)"
                    ))
                }),
        }
    }
}

/// `[upstream.bedrock]`: Anthropic models on AWS Bedrock, signed with SigV4.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BedrockSection {
    /// The AWS region. Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's.
    #[serde(default)]
    pub region: Option<String>,
    /// Another endpoint than `https://bedrock-runtime.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The access key id, as an environment reference. With `secret_access_key`; without
    /// both, the credentials come from the environment and the shared AWS files.
    #[serde(default)]
    pub access_key_id: Option<EnvSecret>,
    /// The secret access key, as an environment reference.
    #[serde(default)]
    pub secret_access_key: Option<EnvSecret>,
    /// A session token, as an environment reference.
    #[serde(default)]
    pub session_token: Option<EnvSecret>,
    /// The profile of the shared AWS files. Default: `AWS_PROFILE`, then `default`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Model names as Bedrock knows them: `claude-sonnet-4-5 =
    /// "us.anthropic.claude-sonnet-4-5-20250929-v1:0"`. Others go as named.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
    /// Time to establish the TCP connection. Default 10 s.
    #[serde(default = "default_connect", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time from sending the request to the response headers. Default 10 min.
    #[serde(default = "default_first_byte", deserialize_with = "duration")]
    pub first_byte_timeout: Duration,
    /// Longest silence between frames of a stream. Default 2 min.
    #[serde(default = "default_idle", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl BedrockSection {
    /// Builds the provider (its connection pool; nothing is sent). Credentials not given
    /// in the section are read from the environment and the shared AWS files now.
    pub fn build(&self) -> Result<ai_provider::BedrockProvider, ConfigError> {
        let err = |m: String| ConfigError::plain(format!("[upstream.bedrock] {m}"));
        let profile = self.profile.clone();
        let env = move |k: &str| match (k, &profile) {
            ("AWS_PROFILE", Some(p)) => Some(p.clone()),
            _ => std::env::var(k).ok().filter(|v| !v.is_empty()),
        };
        let mut b = ai_provider::BedrockProvider::builder()
            .connect_timeout(self.connect_timeout)
            .first_byte_timeout(self.first_byte_timeout)
            .idle_timeout(self.idle_timeout);
        match self
            .region
            .clone()
            .or_else(|| ai_provider::bedrock::region_from_env(&env))
        {
            Some(r) => b = b.region(r),
            None => {
                return Err(err(
                    "no region: set region, or AWS_REGION, or a region in the AWS profile".into(),
                ));
            }
        }
        if let Some(e) = &self.endpoint {
            b = b.endpoint(e.clone());
        }
        let secret =
            |s: &Option<EnvSecret>| s.as_ref().and_then(EnvSecret::value).map(str::to_owned);
        let credentials = match (secret(&self.access_key_id), secret(&self.secret_access_key)) {
            (Some(id), Some(key)) => ai_provider::bedrock::Credentials::new(
                id,
                key,
                secret(&self.session_token),
                None,
                "gateway-config",
            ),
            (None, None) => {
                ai_provider::bedrock::credentials_from_env(&env).map_err(|e| err(e.to_string()))?
            }
            _ => {
                return Err(err("access_key_id and secret_access_key go together".into()));
            }
        };
        b = b.credentials(credentials);
        for (m, id) in &self.models {
            b = b.model(m.clone(), id.clone());
        }
        b.build().map_err(|e| err(e.to_string()))
    }
}

/// `[upstream.vertex]`: Anthropic models on Google Vertex AI, with a service-account key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VertexSection {
    /// The Google Cloud project. Default: the key's `project_id`,
    /// `ANTHROPIC_VERTEX_PROJECT_ID`, `GOOGLE_CLOUD_PROJECT`.
    #[serde(default)]
    pub project: Option<String>,
    /// The region (`us-east5`, `europe-west1`, `global`). Default `CLOUD_ML_REGION`.
    #[serde(default)]
    pub region: Option<String>,
    /// Another base URL than `https://<region>-aiplatform.googleapis.com/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The service-account key file. Default `GOOGLE_APPLICATION_CREDENTIALS`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Another token endpoint than the key's `token_uri`.
    #[serde(default)]
    pub token_uri: Option<String>,
    /// Model names as Vertex knows them: `claude-sonnet-4-5 = "claude-sonnet-4-5@20250929"`.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
    /// Time to establish the TCP connection. Default 10 s.
    #[serde(default = "default_connect", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time from sending the request to the response headers. Default 10 min.
    #[serde(default = "default_first_byte", deserialize_with = "duration")]
    pub first_byte_timeout: Duration,
    /// Longest silence between chunks of a stream. Default 2 min.
    #[serde(default = "default_idle", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl VertexSection {
    /// Builds the provider (reads the key; no token is fetched yet).
    pub fn build(&self) -> Result<ai_provider::VertexProvider, ConfigError> {
        let err = |m: String| ConfigError::plain(format!("[upstream.vertex] {m}"));
        let mut b = ai_provider::VertexProvider::builder()
            .connect_timeout(self.connect_timeout)
            .first_byte_timeout(self.first_byte_timeout)
            .idle_timeout(self.idle_timeout);
        if let Some(f) = &self.credentials_file {
            b = b.service_account(
                ai_provider::vertex::ServiceAccount::from_file(f)
                    .map_err(|e| err(e.to_string()))?,
            );
        }
        if let Some(p) = &self.project {
            b = b.project(p.clone());
        }
        if let Some(r) = &self.region {
            b = b.region(r.clone());
        }
        if let Some(u) = &self.base_url {
            b = b.base_url(u.clone());
        }
        if let Some(u) = &self.token_uri {
            b = b.token_uri(u.clone());
        }
        for (m, id) in &self.models {
            b = b.model(m.clone(), id.clone());
        }
        b.build().map_err(|e| err(e.to_string()))
    }
}

/// `[upstream.openai]`: OpenAI Chat Completions, or a self-hosted OpenAI-compatible server
/// (vLLM, Ollama, llama.cpp).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OpenAiSection {
    /// Base URL up to `/v1`. Default `https://api.openai.com/v1`.
    #[serde(default = "default_openai_url")]
    pub base_url: String,
    /// The key, as an environment reference: `"${OPENAI_API_KEY}"`. Required for
    /// `api.openai.com`; optional for a self-hosted server.
    #[serde(default)]
    pub api_key: Option<EnvSecret>,
    /// `max_completion_tokens` or `max_tokens`. Default: the first for api.openai.com,
    /// the second (what self-hosted servers read) otherwise.
    #[serde(default)]
    pub max_tokens_field: Option<String>,
    /// Time to establish the TCP connection. Default 10 s.
    #[serde(default = "default_connect", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time from sending the request to the response headers. Default 10 min.
    #[serde(default = "default_first_byte", deserialize_with = "duration")]
    pub first_byte_timeout: Duration,
    /// Longest silence between chunks of a stream. Default 2 min.
    #[serde(default = "default_idle", deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

fn default_openai_url() -> String {
    ai_provider::openai::OPENAI_BASE_URL.to_owned()
}

impl OpenAiSection {
    /// The section for `base_url` with this key (what the binary builds from
    /// `OPENAI_API_KEY` / `OPENAI_BASE_URL` when it runs without a file).
    pub fn from_env(base_url: Option<String>, key: Option<(&str, String)>) -> Self {
        OpenAiSection {
            base_url: base_url.unwrap_or_else(default_openai_url),
            api_key: key.map(|(name, value)| EnvSecret {
                name: name.to_owned(),
                value: Some(value),
                span: 0..0,
            }),
            max_tokens_field: None,
            connect_timeout: default_connect(),
            first_byte_timeout: default_first_byte(),
            idle_timeout: default_idle(),
        }
    }

    /// Builds the provider (its connection pool; nothing is sent).
    pub fn build(&self) -> Result<ai_provider::OpenAiProvider, ConfigError> {
        use ai_core::openai::MaxTokensField;
        let err = |m: String| ConfigError::plain(format!("[upstream.openai] {m}"));
        let official = self.base_url.contains("api.openai.com");
        let field = match self.max_tokens_field.as_deref() {
            None if official => MaxTokensField::MaxCompletionTokens,
            None => MaxTokensField::MaxTokens,
            Some("max_completion_tokens") => MaxTokensField::MaxCompletionTokens,
            Some("max_tokens") => MaxTokensField::MaxTokens,
            Some(other) => {
                return Err(err(format!(
                    "max_tokens_field = {other:?} is not max_completion_tokens or max_tokens"
                )));
            }
        };
        let mut b = if official {
            ai_provider::OpenAiProvider::builder()
        } else {
            ai_provider::OpenAiProvider::self_hosted(self.base_url.clone())
        };
        b = b
            .base_url(self.base_url.clone())
            .max_tokens_field(field)
            .connect_timeout(self.connect_timeout)
            .first_byte_timeout(self.first_byte_timeout)
            .idle_timeout(self.idle_timeout);
        if let Some(k) = self.api_key.as_ref().and_then(EnvSecret::value) {
            b = b.api_key(k);
        }
        b.build().map_err(|e| err(e.to_string()))
    }
}

/// `[upstream.anthropic]`: the Anthropic API (or anything that speaks it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AnthropicSection {
    /// Base URL. Default `https://api.anthropic.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The vendor key, as an environment reference: `"${ANTHROPIC_API_KEY}"`. Required.
    pub api_key: EnvSecret,
    /// `anthropic-version` sent when the caller sent none. Default `2023-06-01`.
    #[serde(default = "default_version")]
    pub version: String,
    /// Time to establish the TCP connection. Default 10 s.
    #[serde(default = "default_connect", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time from sending the request to the response headers (TLS included). Default 10 min.
    #[serde(default = "default_first_byte", deserialize_with = "duration")]
    pub first_byte_timeout: Duration,
    /// Longest silence between chunks of a stream; whole bodies must arrive within it.
    /// Default 2 min.
    #[serde(default = "default_idle", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// How long an idle pooled connection is kept. Default 90 s.
    #[serde(default = "default_pool_idle", deserialize_with = "duration")]
    pub pool_idle_timeout: Duration,
    /// Largest (decoded) non-streaming answer read from the upstream. Default 64 MiB.
    #[serde(default = "default_max_body", deserialize_with = "size")]
    pub max_body: ByteSize,
}

// The defaults are the provider builder's own.
fn default_base_url() -> String {
    anthropic::DEFAULT_BASE_URL.to_owned()
}
fn default_version() -> String {
    anthropic::DEFAULT_VERSION.to_owned()
}
fn default_connect() -> Duration {
    anthropic::DEFAULT_CONNECT_TIMEOUT
}
fn default_first_byte() -> Duration {
    anthropic::DEFAULT_FIRST_BYTE_TIMEOUT
}
fn default_idle() -> Duration {
    anthropic::DEFAULT_IDLE_TIMEOUT
}
fn default_pool_idle() -> Duration {
    anthropic::DEFAULT_POOL_IDLE_TIMEOUT
}
fn default_max_body() -> ByteSize {
    ByteSize::b(anthropic::DEFAULT_MAX_BODY as u64)
}

impl AnthropicSection {
    /// The section with its defaults and this key (what the binary builds from
    /// `ANTHROPIC_API_KEY` when it runs without a file).
    pub fn with_key(name: &str, key: String) -> Self {
        AnthropicSection {
            base_url: default_base_url(),
            api_key: EnvSecret {
                name: name.to_owned(),
                value: Some(key),
                span: 0..0,
            },
            version: default_version(),
            connect_timeout: default_connect(),
            first_byte_timeout: default_first_byte(),
            idle_timeout: default_idle(),
            pool_idle_timeout: default_pool_idle(),
            max_body: default_max_body(),
        }
    }

    /// Builds the provider (its connection pool; nothing is sent).
    pub fn build(&self) -> Result<AnthropicProvider, ConfigError> {
        let key = self
            .api_key
            .value()
            .ok_or_else(|| ConfigError::plain("[upstream.anthropic] api_key is not resolved"))?;
        AnthropicProvider::builder()
            .base_url(self.base_url.clone())
            .api_key(key)
            .default_version(self.version.clone())
            .connect_timeout(self.connect_timeout)
            .first_byte_timeout(self.first_byte_timeout)
            .idle_timeout(self.idle_timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .max_body(usize::try_from(self.max_body.as_u64()).unwrap_or(usize::MAX))
            .build()
            .map_err(|e| ConfigError::plain(format!("[upstream.anthropic] {e}")))
    }
}

/// A secret given as an environment reference (`"${NAME}"`), resolved when the file is
/// read. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct EnvSecret {
    name: String,
    value: Option<String>,
    span: Range<usize>,
}

impl EnvSecret {
    /// The variable it names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value, once resolved.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl fmt::Debug for EnvSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvSecret(${{{}}})", self.name)
    }
}

impl<'de> Deserialize<'de> for EnvSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<toml::Value>::deserialize(d)?;
        let span = spanned.span();
        let text = match spanned.into_inner() {
            toml::Value::String(t) => t,
            // Not `invalid type: integer 1234…`: the value is never quoted.
            _ => String::new(),
        };
        let name = text
            .strip_prefix("${")
            .and_then(|t| t.strip_suffix('}'))
            .filter(|n| {
                !n.is_empty()
                    && !n.starts_with(|c: char| c.is_ascii_digit())
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
            .ok_or_else(|| {
                // Never quote the value: it may be a pasted key.
                serde::de::Error::custom(
                    "secrets are not written in the config file: use an environment \
                     reference such as \"${ANTHROPIC_API_KEY}\"",
                )
            })?;
        Ok(EnvSecret {
            name: name.to_owned(),
            value: None,
            span,
        })
    }
}

/// Longest accepted duration (a deadline far beyond it would overflow a clock).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration in quotes, like \"30s\" or \"2m\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
    }
    let text = d.deserialize_str(Text)?;
    let value = humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration \"{text}\" ({e}): write a number and a unit, like \"30s\", \"2m\" or \"500ms\""
        ))
    })?;
    if value.is_zero() {
        return Err(serde::de::Error::custom(
            "a duration of zero would cut every request off: give a positive duration",
        ));
    }
    if value > MAX_DURATION {
        return Err(serde::de::Error::custom(
            "durations are capped at 365 days: give a shorter one",
        ));
    }
    Ok(value)
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    let value = match Raw::deserialize(d)? {
        Raw::Bytes(n) => ByteSize::b(n),
        Raw::Text(t) => t.parse::<ByteSize>().map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid size \"{t}\": write a number of bytes or a number and a unit, like \"32MiB\""
            ))
        })?,
    };
    if value.as_u64() == 0 {
        return Err(serde::de::Error::custom(
            "a size of zero would refuse everything",
        ));
    }
    Ok(value)
}

impl GatewayConfig {
    /// Reads and checks a file; environment references are resolved from the process
    /// environment.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::plain(format!("{origin}: cannot read the file: {e}")))?;
        let mut config = Self::parse(&text, &origin, |name| std::env::var(name).ok())?;
        // Files named in the file are relative to it.
        if let (Some(auth), Some(dir)) = (&mut config.auth, path.parent()) {
            if auth.keys_file.is_relative() {
                auth.keys_file = dir.join(&auth.keys_file);
            }
            for key in auth.issuers.iter_mut().flat_map(|i| i.keys.iter_mut()) {
                if key.pem_file.is_relative() {
                    key.pem_file = dir.join(&key.pem_file);
                }
            }
        }
        Ok(config)
    }

    /// Parses `text` (named `origin` in errors), resolving environment references with
    /// `env`.
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config: GatewayConfig = toml::from_str(text).map_err(|e| {
            ConfigError::at(origin, text, e.span(), e.message().trim_end().to_owned())
        })?;
        if let Some(k) = config
            .upstream
            .openai
            .as_mut()
            .and_then(|o| o.api_key.as_mut())
        {
            resolve(k, origin, text, &env)?;
        }
        if let Some(a) = &mut config.upstream.anthropic {
            resolve(&mut a.api_key, origin, text, &env)?;
        }
        if let Some(b) = &mut config.upstream.bedrock {
            for k in [
                &mut b.access_key_id,
                &mut b.secret_access_key,
                &mut b.session_token,
            ]
            .into_iter()
            .flatten()
            {
                resolve(k, origin, text, &env)?;
            }
        }
        if let Some(k) = &mut config.audit.signing_key {
            resolve(k, origin, text, &env)?;
        }
        let rl = &mut config.ratelimit;
        if rl.enabled && rl.store == RateLimitStoreKind::Redis {
            if let Some(u) = &mut rl.redis_url {
                resolve(u, origin, text, &env)?;
            }
        }
        let b = &mut config.budget;
        if b.enabled {
            if b.store == RateLimitStoreKind::Redis {
                if let Some(u) = &mut b.redis_url {
                    resolve(u, origin, text, &env)?;
                }
            }
            for s in [&mut b.webhook_url, &mut b.admin_token]
                .into_iter()
                .flatten()
            {
                resolve(s, origin, text, &env)?;
            }
        }
        if let Some(a) = &mut config.auth {
            resolve(&mut a.key_pepper, origin, text, &env)?;
            if let Some(p) = &mut a.user_pseudonym_key {
                resolve(p, origin, text, &env)?;
            }
        }
        Ok(config)
    }

    /// The server settings this file describes.
    pub fn server_config(&self) -> ServerConfig {
        let s = &self.server;
        ServerConfig {
            header_read_timeout: s.header_read_timeout,
            write_timeout: Some(s.write_timeout),
            shutdown_timeout: s.shutdown_grace,
            codec: MessagesCodecLayer::new()
                .body_limit(usize::try_from(s.body_limit.as_u64()).unwrap_or(usize::MAX))
                .body_timeout(s.body_timeout),
            auth: None,
            pseudonym: UserPseudonymLayer::disabled(),
            audit: None,
            ratelimit: None,
            budget: None,
            redact: None,
            inspect: None,
            admin_token: None,
            metrics: None,
        }
    }
}

fn resolve(
    secret: &mut EnvSecret,
    origin: &str,
    text: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match env(&secret.name).filter(|v| !v.is_empty()) {
        Some(v) => {
            secret.value = Some(v);
            Ok(())
        }
        None => Err(ConfigError::at(
            origin,
            text,
            Some(secret.span.clone()),
            format!(
                "environment variable {} is not set (or is empty); set it, or change the reference",
                secret.name
            ),
        )),
    }
}

/// Why a configuration was refused: where (file, line, column, key) and what to do.
#[derive(Debug, Clone)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    fn plain(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }

    /// `origin:line:column: [section] key: message`, from a byte span of `text`.
    fn at(origin: &str, text: &str, span: Option<Range<usize>>, message: String) -> Self {
        let Some(span) = span else {
            return ConfigError::plain(format!("{origin}: {message}"));
        };
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_no = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let line = text[line_start..].lines().next().unwrap_or("");
        // The table the line is in (or the table header the error points at).
        let section = std::iter::once(line)
            .chain(text[..line_start].lines().rev())
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| match l.rfind(']') {
                Some(end) => l[..=end].to_owned(),
                None => l.to_owned(),
            });
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        let mut out = format!("{origin}:{line_no}:{column}: ");
        match (section.as_deref(), key) {
            (Some(s), Some(k)) => out.push_str(&format!("{s} {k}: ")),
            (None, Some(k)) => out.push_str(&format!("{k}: ")),
            (Some(s), None) => out.push_str(&format!("{s}: ")),
            (None, None) => {}
        }
        out.push_str(&message);
        ConfigError { message: out }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "ANTHROPIC_API_KEY" => Some("sk-ant-from-env".to_owned()),
            "OPENAI_API_KEY" => Some("sk-openai-from-env".to_owned()),
            "TEST_AWS_KEY_ID" => Some("AKIDEXAMPLE".to_owned()),
            "TEST_AWS_SECRET" => Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
            "GATEWAY_KEY_PEPPER" => Some("a pepper for the tests".to_owned()),
            "GATEWAY_USER_PSEUDONYM_KEY" => Some("a pseudonym key for the tests".to_owned()),
            "AUDIT_SIGNING_KEY" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned()),
            _ => None,
        }
    }

    fn err(text: &str) -> String {
        GatewayConfig::parse(text, "g.toml", env)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn an_empty_file_is_every_default() {
        let c = GatewayConfig::parse("", "g.toml", env).expect("ok");
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.body_limit.as_u64(), 32 * 1024 * 1024);
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.upstream.anthropic.is_none());
    }

    #[test]
    fn the_sample_file_sets_every_key_to_its_documented_default() {
        let text = include_str!("../examples/gateway.toml");
        let c = GatewayConfig::parse(text, "gateway.toml", env).expect("sample parses");
        let d = ServerSection::default();
        assert_eq!(c.server.listen, d.listen);
        assert_eq!(c.server.header_read_timeout, d.header_read_timeout);
        assert_eq!(c.server.write_timeout, d.write_timeout);
        assert_eq!(c.server.body_timeout, d.body_timeout);
        assert_eq!(c.server.body_limit, d.body_limit);
        assert_eq!(c.server.shutdown_grace, d.shutdown_grace);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.log.access_log);
        let a = c.upstream.anthropic.expect("[upstream.anthropic]");
        let d = AnthropicSection::with_key("X", String::new());
        assert_eq!(a.api_key.value(), Some("sk-ant-from-env"));
        assert_eq!(a.api_key.name(), "ANTHROPIC_API_KEY");
        assert_eq!(a.base_url, d.base_url);
        assert_eq!(a.version, d.version);
        assert_eq!(a.connect_timeout, d.connect_timeout);
        assert_eq!(a.first_byte_timeout, d.first_byte_timeout);
        assert_eq!(a.idle_timeout, d.idle_timeout);
        assert_eq!(a.pool_idle_timeout, d.pool_idle_timeout);
        assert_eq!(a.max_body, d.max_body);
        // Every key of the sample is set, not left to its default: nothing commented out.
        for key in [
            "listen",
            "header_read_timeout",
            "write_timeout",
            "body_timeout",
            "body_limit",
            "shutdown_grace",
            "allow_open",
            "keys_file",
            "key_pepper",
            "reload_interval",
            "user_pseudonym_key",
            "issuer",
            "audiences",
            "algorithms",
            "jwks_url",
            "leeway",
            "jwks_ttl",
            "jwks_min_refresh_interval",
            "subject",
            "tenant",
            "scopes",
            "level",
            "format",
            "access_log",
            "base_url",
            "api_key",
            "version",
            "connect_timeout",
            "first_byte_timeout",
            "idle_timeout",
            "pool_idle_timeout",
            "max_body",
            "enabled",
            "sink",
            "dir",
            "fsync",
            "rotate_size",
            "rotate_interval",
            "checkpoint_every",
            "checkpoint_interval",
            "signing_key",
            "failure",
            "queue",
            "enqueue_timeout",
            "ack_timeout",
            "capture_redacted",
            "unauthenticated_per_minute",
            "metrics",
            "metrics_tenant_label",
            "store",
            "redis_url",
            "redis_cluster",
            "redis_timeout",
            "on_store_error",
            "in_flight_lease",
            "default_tier",
            "name",
            "by",
            "requests_per_minute",
            "input_tokens_per_minute",
            "output_tokens_per_minute",
            "in_flight",
            "priority",
            "queue_wait",
            "state_file",
            "save_interval",
            "time_zone",
            "project_header",
            "unknown_model",
            "alert_thresholds",
            "webhook_url",
            "webhook_timeout",
            "webhook_retries",
            "admin_token",
            "usd",
            "window",
            "cut_off",
            "input",
            "output",
            "source",
            "as_of",
            "pii",
            "phi",
            "pci",
            "secret",
            "credential",
            "min_confidence",
            "tool_results",
            "injection_threshold",
            "injection_action",
            "ocr",
            "ocr_lang",
            "label",
            "category",
            "pattern",
            "validator",
            "context",
            "context_required",
            "confidence",
            "prefixes",
            "case_insensitive",
            "thinking",
            "detectors",
            "system_prompt",
            "leak_threshold",
            "leak_min_shingles",
            "deny",
            "deny_whole_words",
            "deny_list",
            "default",
            "allow",
            "scope_prefix",
            "max_input_bytes",
            "scan_input",
            "tool",
            "pointer",
            "equals",
            "domains",
            "required",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "the sample sets {key}"
            );
        }
        assert!(a.build().is_ok());
        assert!(!c.server.allow_open);
        let auth = c.auth.expect("[auth]");
        assert_eq!(auth.keys_file, PathBuf::from("keys.toml"));
        assert_eq!(auth.key_pepper.name(), "GATEWAY_KEY_PEPPER");
        assert_eq!(auth.reload_interval, default_reload());
        assert!(auth.hasher().is_ok());
        assert!(auth.pseudonym().is_ok());
        let iss = &auth.issuers[0];
        assert_eq!(iss.algorithms, ["RS256", "ES256"]);
        assert_eq!(iss.leeway, default_leeway());
        assert_eq!(iss.jwks_ttl, default_jwks_ttl());
        assert_eq!(iss.jwks_min_refresh_interval, default_jwks_interval());
        assert_eq!(iss.claims.subject, "sub");
        assert!(iss.build().is_ok());
        assert_eq!(
            auth.user_pseudonym_key.as_ref().map(EnvSecret::name),
            Some("GATEWAY_USER_PSEUDONYM_KEY")
        );
        let r = &c.ratelimit;
        let d = RateLimitSection::default();
        assert_eq!(r.enabled, d.enabled);
        assert_eq!(r.store, d.store);
        assert_eq!(r.redis_timeout, d.redis_timeout);
        assert_eq!(r.redis_cluster, d.redis_cluster);
        assert_eq!(r.on_store_error, d.on_store_error);
        assert_eq!(r.in_flight_lease, d.in_flight_lease);
        assert_eq!(r.redis_url.as_ref().map(EnvSecret::name), Some("REDIS_URL"));
        let policy = r.policy().expect("the sample's limits are valid");
        assert_eq!(policy.tiers.len(), 2);
        assert_eq!(
            policy.tiers["enterprise"].queue_wait,
            Duration::from_secs(10)
        );
        assert_eq!(policy.tiers["pilot"].queue_wait, Duration::ZERO);
        let b = &c.budget;
        let d = BudgetSection::default();
        assert_eq!(b.enabled, d.enabled);
        assert_eq!(b.store, d.store);
        assert_eq!(b.state_file, d.state_file);
        assert_eq!(b.save_interval, d.save_interval);
        assert_eq!(b.redis_cluster, d.redis_cluster);
        assert_eq!(b.redis_timeout, d.redis_timeout);
        assert_eq!(b.on_store_error, d.on_store_error);
        assert_eq!(b.time_zone, d.time_zone);
        assert_eq!(b.project_header, d.project_header);
        assert_eq!(b.unknown_model, d.unknown_model);
        assert_eq!(b.alert_thresholds, d.alert_thresholds);
        assert_eq!(b.webhook_timeout, d.webhook_timeout);
        assert_eq!(b.webhook_retries, d.webhook_retries);
        assert_eq!(
            b.webhook_url.as_ref().map(EnvSecret::name),
            Some("BUDGET_WEBHOOK_URL")
        );
        assert_eq!(
            b.admin_token.as_ref().map(EnvSecret::name),
            Some("GATEWAY_ADMIN_TOKEN")
        );
        let policy = b.policy().expect("the sample's budgets are valid");
        assert_eq!(policy.budgets.len(), 2);
        assert!(policy.budgets[0].cut_off);
        let prices = b.prices().expect("the sample's prices are valid");
        assert!(prices.get("llama-3.3-70b-instruct").is_some());
        assert!(
            prices.get("claude-sonnet-4-5").is_some(),
            "the shipped table stays"
        );
        let a = &c.audit;
        let d = AuditSection::default();
        assert!(a.enabled && d.enabled);
        assert_eq!(a.sink, d.sink);
        assert_eq!(a.dir, d.dir);
        assert_eq!(a.fsync, d.fsync);
        assert_eq!(a.rotate_size, d.rotate_size);
        assert_eq!(a.rotate_interval, d.rotate_interval);
        assert_eq!(a.checkpoint_every, d.checkpoint_every);
        assert_eq!(a.checkpoint_interval, d.checkpoint_interval);
        assert_eq!(a.failure, d.failure);
        assert_eq!(a.queue, d.queue);
        assert_eq!(a.enqueue_timeout, d.enqueue_timeout);
        assert_eq!(a.ack_timeout, d.ack_timeout);
        assert_eq!(a.capture_redacted, d.capture_redacted);
        assert_eq!(a.unauthenticated_per_minute, d.unauthenticated_per_minute);
        assert_eq!(a.metrics, d.metrics);
        assert_eq!(a.metrics_tenant_label, d.metrics_tenant_label);
        assert_eq!(
            a.signing_key.as_ref().map(EnvSecret::name),
            Some("AUDIT_SIGNING_KEY")
        );
        assert!(a.signing_key().is_ok());
    }

    #[test]
    fn budget_section_is_checked() {
        let c = GatewayConfig::parse(
            "[budget]\nenabled = true\ntime_zone = \"Europe/Paris\"\n[[budget.budgets]]\nname = \"t\"\nby = \"team\"\nusd = 12.5\nwindow = \"monthly\"\n",
            "g.toml",
            env,
        )
        .expect("parses");
        let p = c.budget.policy().expect("policy");
        assert_eq!(p.budgets[0].cap, "12.50".parse().expect("usd"));
        assert_eq!(p.calendar.name(), "Europe/Paris");
        let bad = |text: &str| {
            GatewayConfig::parse(text, "g.toml", env)
                .and_then(|c| {
                    c.budget
                        .policy()
                        .map(|_| ())
                        .and(c.budget.prices().map(|_| ()))
                })
                .expect_err("refused")
                .to_string()
        };
        assert!(
            bad("[[budget.budgets]]\nname = \"t\"\nby = \"org\"\nusd = 1\nwindow = \"daily\"\n")
                .contains("by = \"org\"")
        );
        assert!(
            bad("[[budget.budgets]]\nname = \"t\"\nby = \"team\"\nusd = 1\nwindow = \"weekly\"\n")
                .contains("weekly")
        );
        assert!(bad("[[budget.budgets]]\nname = \"t\"\nby = \"team\"\nusd = \"1.2.3\"\nwindow = \"daily\"\n").contains("usd"));
        assert!(bad("[budget]\ntime_zone = \"Mars/Base\"\n").contains("time_zone"));
        assert!(bad("[budget]\nunknown_model = \"no-such-model\"\n").contains("unknown_model"));
        assert!(bad("[budget]\nalert_thresholds = [0]\n").contains("threshold"));
        assert!(bad("[budget.prices.m]\ninput = 1\n").contains("output"));
        let two = "[[budget.budgets]]\nname = \"t\"\nby = \"team\"\nusd = 1\nwindow = \"daily\"\n";
        assert!(bad(&format!("{two}{two}")).contains("unique"));
    }

    #[test]
    fn openai_upstream_section() {
        let c = GatewayConfig::parse(
            "[upstream.openai]\napi_key = \"${OPENAI_API_KEY}\"\n",
            "g.toml",
            env,
        )
        .expect("parses");
        let o = c.upstream.openai.expect("[upstream.openai]");
        assert_eq!(o.base_url, "https://api.openai.com/v1");
        assert_eq!(
            o.api_key.as_ref().and_then(EnvSecret::value),
            Some("sk-openai-from-env")
        );
        assert!(o.build().is_ok());
        // api.openai.com needs a key; a self-hosted server does not.
        let no_key = GatewayConfig::parse("[upstream.openai]\n", "g.toml", env).expect("parses");
        assert!(no_key.upstream.openai.expect("section").build().is_err());
        let local = GatewayConfig::parse(
            "[upstream.openai]\nbase_url = \"http://127.0.0.1:8000/v1\"\nmax_tokens_field = \"max_tokens\"\n",
            "g.toml",
            env,
        )
        .expect("parses");
        assert!(local.upstream.openai.expect("section").build().is_ok());
        let bad = GatewayConfig::parse(
            "[upstream.openai]\nbase_url = \"http://x/v1\"\nmax_tokens_field = \"cap\"\n",
            "g.toml",
            env,
        )
        .expect("parses");
        let e = bad
            .upstream
            .openai
            .expect("section")
            .build()
            .expect_err("refused");
        assert!(e.to_string().contains("max_tokens_field"), "{e}");
        assert!(
            err("[upstream.openai]\napi_key = \"sk-pasted\"\n").contains("secrets are not written")
        );
        assert!(err("[upstream.openai]\ntimeout = \"1s\"\n").contains("unknown field"));
    }

    #[test]
    fn bedrock_and_vertex_sections_and_the_default_upstream() {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vertex/test_service_account.json"
        );
        let text = format!(
            "[upstream.bedrock]\nregion = \"us-west-2\"\naccess_key_id = \"${{TEST_AWS_KEY_ID}}\"\n\
             secret_access_key = \"${{TEST_AWS_SECRET}}\"\n\
             models = {{ claude-sonnet-4-5 = \"us.anthropic.claude-sonnet-4-5-20250929-v1:0\" }}\n\
             [upstream.vertex]\nregion = \"us-east5\"\ncredentials_file = \"{key}\"\n\
             models = {{ claude-sonnet-4-5 = \"claude-sonnet-4-5@20250929\" }}\n"
        );
        let c = GatewayConfig::parse(&text, "g.toml", env).expect("parses");
        let b = c.upstream.bedrock.as_ref().expect("bedrock");
        assert_eq!(
            b.access_key_id.as_ref().and_then(EnvSecret::value),
            Some("AKIDEXAMPLE")
        );
        assert_eq!(b.build().expect("builds").region(), "us-west-2");
        let v = c
            .upstream
            .vertex
            .as_ref()
            .expect("vertex")
            .build()
            .expect("builds");
        assert_eq!(
            v.models_url(),
            "us-east5-aiplatform.googleapis.com/v1/projects/gateway-test-project/locations/us-east5/publishers/anthropic/models"
        );
        // Two upstreams for Anthropic models: which one serves must be said.
        let e = c.upstream.primary().expect_err("ambiguous");
        assert!(e.to_string().contains("default = \"bedrock\""), "{e}");
        let c = GatewayConfig::parse(
            &format!("[upstream]\ndefault = \"vertex\"\n{text}"),
            "g.toml",
            env,
        )
        .expect("parses");
        assert_eq!(c.upstream.primary().expect("one"), Some("vertex"));
        let c = GatewayConfig::parse(
            &format!("[upstream]\ndefault = \"openai\"\n{text}"),
            "g.toml",
            env,
        )
        .expect("parses");
        assert!(c.upstream.primary().is_err());
        assert_eq!(
            GatewayConfig::default().upstream.primary().expect("none"),
            None
        );
        // Half a key pair, a pasted secret, a missing key file: refused, saying which.
        let half = GatewayConfig::parse(
            "[upstream.bedrock]\nregion = \"us-east-1\"\naccess_key_id = \"${TEST_AWS_KEY_ID}\"\n",
            "g.toml",
            env,
        )
        .expect("parses");
        let e = half.upstream.bedrock.expect("b").build().expect_err("half");
        assert!(e.to_string().contains("go together"), "{e}");
        assert!(
            err("[upstream.bedrock]\nsecret_access_key = \"wJalrXUtnFEMI\"\n")
                .contains("secrets are not written")
        );
        let missing = GatewayConfig::parse(
            "[upstream.vertex]\nregion = \"us-east5\"\ncredentials_file = \"/nonexistent/key.json\"\n",
            "g.toml",
            env,
        )
        .expect("parses");
        let e = missing
            .upstream
            .vertex
            .expect("v")
            .build()
            .expect_err("no file");
        assert!(
            e.to_string()
                .starts_with("[upstream.vertex] cannot read /nonexistent/key.json"),
            "{e}"
        );
    }

    #[test]
    fn inspect_section_is_checked() {
        let text = include_str!("../examples/gateway.toml");
        let c = GatewayConfig::parse(text, "gateway.toml", env).expect("sample parses");
        let (i, d) = (&c.inspect, InspectSection::default());
        assert!(!i.enabled);
        assert_eq!(
            (i.window, i.thinking, i.detectors, i.system_prompt),
            (d.window, d.thinking, d.detectors, d.system_prompt)
        );
        assert_eq!(
            (i.leak_threshold, i.leak_min_shingles),
            (d.leak_threshold, d.leak_min_shingles)
        );
        assert_eq!((&i.deny, i.deny_whole_words), (&d.deny, d.deny_whole_words));
        assert!(i.actions.values().all(|a| a == "block"));
        assert_eq!(i.actions.len(), 8);
        let (t, dt) = (&i.tools, InspectToolsSection::default());
        assert_eq!((&t.allow, &t.scope_prefix), (&dt.allow, &dt.scope_prefix));
        assert_eq!(
            (t.max_input_bytes, t.scan_input),
            (dt.max_input_bytes, dt.scan_input)
        );
        assert_eq!(t.rules.len(), 2);
        let layer = i.build(&c.redact).expect("sample builds");
        assert_eq!(layer.policy().window_tokens(), 64);
        let bad = |text: &str| {
            GatewayConfig::parse(text, "t.toml", env)
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    c.inspect
                        .build(&c.redact)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .expect_err("refused")
        };
        assert!(bad("[inspect]\nwindow = 0\n").contains("window = 0"));
        assert!(bad("[inspect]\nleak_threshold = 1.5\n").contains("leak_threshold"));
        assert!(bad("[inspect]\nleak_min_shingles = 0\n").contains("leak_min_shingles"));
        assert!(bad("[inspect]\ndeny = [\"ok\", \" \"]\n").contains("empty"));
        assert!(bad("[inspect.actions]\npii = \"hide\"\n").contains("pii = \"hide\""));
        assert!(bad("[inspect.actions]\n\"a-b\" = \"flag\"\n").contains("not a finding kind"));
        let rule = "[[inspect.tools.rules]]\ntool = \"t\"\npointer = \"/x\"\n";
        assert!(bad(rule).contains("exactly one of"));
        assert!(bad(&format!("{rule}equals = \"boss\"\n")).contains("equals = \"boss\""));
        assert!(
            bad(&format!(
                "{rule}equals = \"tenant\"\ndomains = [\"a.com\"]\n"
            ))
            .contains("exactly one of")
        );
        assert!(
            bad("[[inspect.tools.rules]]\ntool = \"t\"\npointer = \"x\"\nequals = \"tenant\"\n")
                .contains("JSON pointer")
        );
        assert!(bad("[inspect.tools]\nallowed = []\n").contains("unknown field"));
    }

    #[test]
    fn redact_section_is_checked() {
        let text = include_str!("../examples/gateway.toml");
        let c = GatewayConfig::parse(text, "gateway.toml", env).expect("sample parses");
        let d = RedactSection::default();
        assert!(!c.redact.enabled);
        assert_eq!(
            (&c.redact.pii, &c.redact.phi, &c.redact.pci),
            (&d.pii, &d.phi, &d.pci)
        );
        assert_eq!(
            (&c.redact.secret, &c.redact.credential),
            (&d.secret, &d.credential)
        );
        assert_eq!(c.redact.min_confidence, d.min_confidence);
        assert_eq!(c.redact.tool_results, d.tool_results);
        assert_eq!(c.redact.injection_threshold, d.injection_threshold);
        assert_eq!(c.redact.injection_action, d.injection_action);
        let layer = c.redact.build().expect("sample builds");
        let custom = layer
            .redactor()
            .findings("staff badge EMP-004211 at the desk");
        assert_eq!(custom.len(), 1);
        assert_eq!(
            &*layer.redactor().detectors().specs()[custom[0].detector].name,
            "employee_id"
        );
        let bad = |text: &str| {
            GatewayConfig::parse(text, "g.toml", env)
                .and_then(|c| c.redact.build().map(|_| ()))
                .expect_err("refused")
                .to_string()
        };
        assert!(bad("[redact]\npii = \"hide\"\n").contains("pii = \"hide\""));
        assert!(bad("[redact]\ntool_results = \"x\"\n").contains("tool_results"));
        assert!(bad("[redact]\ninjection_action = \"x\"\n").contains("injection_action"));
        assert!(bad("[redact]\ninjection_threshold = 2.0\n").contains("injection_threshold"));
        let det = |extra: &str| {
            format!(
                "[[redact.detectors]]\nname = \"d\"\nlabel = \"D\"\ncategory = \"pii\"\npattern = \"x[0-9]+\"\n{extra}"
            )
        };
        assert!(bad(&det("validator = \"nope\"\n")).contains("validator"));
        assert!(bad(&det("context_required = true\n")).contains("context"));
        assert!(bad(&det("confidence = 3.0\n")).contains("confidence"));
        assert!(
            bad("[[redact.detectors]]\nname = \"d\"\nlabel = \"D\"\ncategory = \"gdpr\"\npattern = \"x\"\n")
                .contains("category")
        );
        assert!(
            bad("[[redact.detectors]]\nname = \"d\"\nlabel = \"lower\"\ncategory = \"pii\"\npattern = \"x\"\n")
                .contains("label")
        );
        assert!(
            bad("[[redact.detectors]]\nname = \"d\"\nlabel = \"D\"\ncategory = \"pii\"\npattern = \"(\"\n")
                .contains("detector d")
        );
    }

    #[test]
    fn redact_ocr() {
        let c = GatewayConfig::parse("[redact]\nenabled = true\nocr = true\n", "g.toml", env)
            .expect("parses");
        let built = c.redact.build();
        if cfg!(feature = "ocr") {
            assert!(built.is_ok());
        } else {
            let e = built.expect_err("needs the feature").to_string();
            assert!(e.contains("--features ocr"), "{e}");
        }
    }

    #[test]
    fn ratelimit_section_is_checked() {
        let c = GatewayConfig::parse(
            "[ratelimit]\nenabled = true\n[[ratelimit.limits]]\nname = \"u\"\nby = [\"user\", \"model_family\"]\nrequests_per_minute = 5\n",
            "g.toml",
            env,
        )
        .expect("ok");
        let p = c.ratelimit.policy().expect("policy");
        assert_eq!(
            p.limits[0].by,
            [
                ai_ratelimit::KeyPart::Subject,
                ai_ratelimit::KeyPart::ModelFamily
            ]
        );
        assert!(
            err("[[ratelimit.limits]]\nname = \"u\"\nby = [\"usr\"]\n")
                .contains("unknown part \"usr\"")
        );
        assert!(err("[ratelimit.tiers.x]\nqueue_wait = \"soon\"\n").contains("queue_wait"));
        // The Redis URL is read only when it is used, and then it must be set.
        let redis = "[ratelimit]\nenabled = true\nstore = \"redis\"\nredis_url = \"${NOT_SET}\"\n";
        assert!(err(redis).contains("NOT_SET"));
        let off = "[ratelimit]\nstore = \"redis\"\nredis_url = \"${NOT_SET}\"\n";
        assert!(GatewayConfig::parse(off, "g.toml", env).is_ok());
        let c = GatewayConfig::parse(
            "[ratelimit]\nenabled = true\ndefault_tier = \"gold\"\n",
            "g.toml",
            env,
        )
        .expect("parses");
        assert!(
            c.ratelimit
                .policy()
                .expect_err("undefined tier")
                .to_string()
                .contains("default tier")
        );
        let c = GatewayConfig::parse(
            "[[ratelimit.limits]]\nname = \"z\"\nin_flight = 0\n",
            "g.toml",
            env,
        )
        .expect("parses");
        assert!(c.ratelimit.policy().is_err());
    }

    #[test]
    fn audit_fsync_takes_always_or_a_duration() {
        let c = GatewayConfig::parse("[audit]\nfsync = \"20ms\"\n", "g.toml", env).expect("ok");
        assert_eq!(
            c.audit.fsync,
            ai_audit::Fsync::Every(Duration::from_millis(20))
        );
        assert!(err("[audit]\nfsync = \"sometimes\"\n").contains("[audit] fsync: invalid fsync"));
        assert!(err("[audit]\nfailure = \"maybe\"\n").contains("[audit] failure"));
        assert!(err("[audit]\nsigning_key = \"AAAA\"\n").contains("environment reference"));
        let c = GatewayConfig::parse(
            "[audit]\nsigning_key = \"${AUDIT_SIGNING_KEY}\"\n",
            "g.toml",
            env,
        )
        .expect("ok");
        assert!(c.audit.signing_key().is_ok());
    }

    #[test]
    fn unknown_keys_are_refused_with_line_and_key() {
        assert_eq!(
            err("[server]\nlisten = \"127.0.0.1:1\"\nread_timeout = \"5s\"\n"),
            "g.toml:3:1: [server] read_timeout: unknown field `read_timeout`, expected one of \
             `listen`, `header_read_timeout`, `write_timeout`, `body_timeout`, `body_limit`, \
             `shutdown_grace`, `allow_open`"
        );
        assert!(err("[sever]\n").starts_with("g.toml:1:2: [sever]: unknown field `sever`"));
    }

    #[test]
    fn wrong_types_and_bad_values_name_the_key() {
        let e = err("[log]\naccess_log = \"yes\"\n");
        assert!(
            e.starts_with("g.toml:2:14: [log] access_log: invalid type"),
            "{e}"
        );
        let e = err(
            "[upstream.anthropic]\napi_key = \"${ANTHROPIC_API_KEY}\"\nidle_timeout = \"20 parsecs\"\n",
        );
        assert!(
            e.starts_with(
                "g.toml:3:16: [upstream.anthropic] idle_timeout: invalid duration \"20 parsecs\""
            ),
            "{e}"
        );
        let e = err("[server]\nbody_timeout = 30\n");
        assert_eq!(
            e,
            "g.toml:2:16: [server] body_timeout: invalid type: integer `30`, expected a duration \
             in quotes, like \"30s\" or \"2m\""
        );
        let e = err("[server]\nwrite_timeout = \"300000000000y\"\n");
        assert!(
            e.contains("[server] write_timeout: durations are capped"),
            "{e}"
        );
        let e = err("[upstream.anthropic]\napi_key = 12345678\n");
        assert!(e.contains("api_key: secrets are not written"), "{e}");
        assert!(!e.contains("12345678"), "{e}");
        let e = err("[server]\nwrite_timeout = \"0s\"\n");
        assert!(
            e.contains("[server] write_timeout: a duration of zero"),
            "{e}"
        );
        let e = err("[server]\nbody_limit = \"lots\"\n");
        assert!(
            e.contains("[server] body_limit: invalid size \"lots\""),
            "{e}"
        );
        let e = err("[log]\nformat = \"xml\"\n");
        assert!(e.contains("[log] format: unknown variant `xml`"), "{e}");
    }

    #[test]
    fn secrets_are_environment_references_only() {
        let e = err("[upstream.anthropic]\napi_key = \"sk-ant-pasted-secret\"\n");
        assert!(
            e.starts_with("g.toml:2:11: [upstream.anthropic] api_key: secrets are not written"),
            "{e}"
        );
        assert!(!e.contains("pasted"), "the value is never quoted: {e}");
        let e = err("[upstream.anthropic]\napi_key = \"${NOT_SET_ANYWHERE}\"\n");
        assert_eq!(
            e,
            "g.toml:2:11: [upstream.anthropic] api_key: environment variable NOT_SET_ANYWHERE is \
             not set (or is empty); set it, or change the reference"
        );
        let e = err("[upstream.anthropic]\nbase_url = \"http://x\"\n");
        assert_eq!(
            e,
            "g.toml:1:1: [upstream.anthropic]: missing field `api_key`"
        );
        let c = GatewayConfig::parse(
            "[upstream.anthropic]\napi_key = \"${ANTHROPIC_API_KEY}\"\n",
            "g.toml",
            env,
        )
        .expect("ok");
        let a = c.upstream.anthropic.expect("section");
        assert!(!format!("{a:?}").contains("sk-ant-from-env"));
    }

    #[test]
    fn sizes_take_units_or_bytes() {
        let c = GatewayConfig::parse("[server]\nbody_limit = 1024\n", "g.toml", env).expect("ok");
        assert_eq!(c.server.body_limit.as_u64(), 1024);
        let c =
            GatewayConfig::parse("[server]\nbody_limit = \"2 MiB\"\n", "g.toml", env).expect("ok");
        assert_eq!(c.server.body_limit.as_u64(), 2 * 1024 * 1024);
    }
}
