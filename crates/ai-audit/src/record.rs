//! The audit record: schema version 1, documented field by field in `docs/ai-audit.md`.
//!
//! A record holds no prompt or completion text: hashes (`sha256:<hex>`), counts, data
//! classes and decisions. The opt-in `capture` holds the request only as the redaction
//! layer left it, never the raw one.

use crate::hash::{Hasher, canonical_hash, sha256, tagged};
use ai_core::wire::{Content, ContentBlock, MessagesRequest, Role};
use ai_core::{
    CallReport, ClientAddr, Completion, DataClass, Endpoint, ErrorKind, Outcome, Principal,
    ReportData, RequestId, Surface, Timings, Verdicts, Workload,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// The hash records give tool arguments and results: `sha256:` of the JSON with object
/// keys sorted and no whitespace, so a call hashes the same whether the model streamed it
/// or a client sent it back reformatted. Text that is not JSON is hashed as it is.
pub fn json_hash(json: &str) -> String {
    canonical_hash(json)
}

/// The record schema version (`v`).
pub const SCHEMA_VERSION: u32 = 1;

/// One audit record (a `"kind":"record"` line; the log adds `seq` and `prev`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// Always `record`.
    pub kind: String,
    /// Schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    /// Unique id of this record.
    pub record_id: String,
    /// The gateway's request id (`x-request-id`).
    pub request_id: Option<String>,
    /// When the request arrived (RFC 3339, UTC, microseconds).
    pub started_at: String,
    /// When the response was over.
    pub ended_at: String,
    /// Who called.
    pub principal: Option<PrincipalRec>,
    /// The API surface the caller used (`anthropic`, `openai`).
    pub surface: String,
    /// The operation (`messages`, `count_tokens`, `list_models`, `get_model`), when known.
    pub endpoint: Option<String>,
    /// The model the caller asked for.
    pub requested_model: Option<String>,
    /// Who answered.
    pub served: Option<ServedRec>,
    /// Every upstream call, in order (retries and fallbacks are further attempts).
    pub attempts: Vec<AttemptRec>,
    /// The workload named by the caller.
    pub workload: Option<String>,
    /// The standard system prompt routing injected.
    pub system_prompt_template: Option<TemplateRec>,
    /// Whether the caller asked for a stream.
    pub stream: bool,
    /// Tokens, counted here and as the upstream reported them.
    pub tokens: TokensRec,
    /// The cost as billed, in billionths of a dollar (set by the budget layer).
    pub cost_nano_usd: Option<u64>,
    /// Time from arrival to the end of the response, milliseconds.
    pub latency_ms: f64,
    /// Time to the first output token, milliseconds.
    pub ttft_ms: Option<f64>,
    /// How the call ended (see [`outcome`]).
    pub outcome: String,
    /// The HTTP status the caller got.
    pub status: u16,
    /// The precise reason: an error type, an auth failure reason, a policy code.
    pub reason: Option<String>,
    /// The model's stop reason.
    pub stop_reason: Option<String>,
    /// SHA-256 of the canonical request (the request as parsed and forwarded).
    pub prompt_hash: Option<String>,
    /// SHA-256 of the cached prefix: tools, system and messages up to the last
    /// `cache_control` breakpoint.
    pub cache_prefix_hash: Option<String>,
    /// SHA-256 of what follows the last breakpoint.
    pub uncached_hash: Option<String>,
    /// The categories of sensitive data in the request (`phi`, `pii+pci`, `none`).
    pub data_class: Option<String>,
    /// The same per part of the request.
    pub data_class_components: Option<ComponentsRec>,
    /// The level of the request (`public`, `internal`, `confidential`, `restricted`).
    pub data_level: Option<String>,
    /// Redactions made, per category.
    pub redactions: BTreeMap<String, u32>,
    /// Every layer's policy decisions.
    pub verdicts: Vec<VerdictRec>,
    /// Tool calls the model made in this response, and tool results the caller sent in
    /// this request.
    pub tool_invocations: Vec<ToolRec>,
    /// The SHA-256 of each image or document block.
    pub attachments: Vec<AttachmentRec>,
    /// The client address (only on records of refused unauthenticated traffic).
    pub source: Option<String>,
    /// For an aggregate of refused unauthenticated traffic: how many and why.
    pub aggregate: Option<AggregateRec>,
    /// The request as the redaction layer left it (opt-in).
    pub capture: Option<serde_json::Value>,
}

/// The caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrincipalRec {
    /// Stable id of the caller.
    pub subject: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Team.
    pub team: Option<String>,
    /// Agent acting for the subject.
    pub agent: Option<String>,
}

/// Who answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServedRec {
    /// Provider name.
    pub provider: String,
    /// Model that answered.
    pub model: String,
    /// The upstream's id for the call, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One upstream call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttemptRec {
    /// Provider.
    pub provider: String,
    /// Model asked.
    pub model: String,
    /// The upstream's status, when one came back.
    pub status: Option<u16>,
}

/// An injected system-prompt template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateRec {
    /// Template id.
    pub id: String,
    /// Template version.
    pub version: String,
}

/// Token counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokensRec {
    /// Estimated here ([`ai_core::tokens`]): input from the request, output from the
    /// text the model produced.
    pub local: LocalTokens,
    /// As the upstream reported them, when it did.
    pub upstream: Option<UpstreamTokens>,
}

/// Locally estimated tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalTokens {
    /// Input.
    pub input: u64,
    /// Output.
    pub output: u64,
}

/// Tokens as the upstream reported them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpstreamTokens {
    /// Uncached input.
    pub input: u64,
    /// Output.
    pub output: u64,
    /// Input written to the prompt cache.
    pub cache_creation_input: u64,
    /// Input read from the prompt cache.
    pub cache_read_input: u64,
    /// The counts are the gateway's estimate: the upstream reported none (a self-hosted
    /// server that sends no usage).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

/// Data categories per part of the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentsRec {
    /// The system prompt.
    pub system: String,
    /// The messages.
    pub messages: String,
    /// Tool definitions.
    pub tools: String,
    /// Tool results sent back by the caller.
    #[serde(default)]
    pub tool_results: String,
}

/// A policy decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerdictRec {
    /// The deciding layer.
    pub layer: String,
    /// The decision.
    pub decision: String,
}

/// A tool call or a tool result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolRec {
    /// The `tool_use` id that ties a call to its result.
    pub tool_use_id: String,
    /// The tool.
    pub tool_name: Option<String>,
    /// SHA-256 of the canonical arguments (keys sorted, no whitespace).
    pub arguments_hash: Option<String>,
    /// The policy decision (`pass` when no layer objected).
    pub decision: String,
    /// SHA-256 of the canonical result, on the record of the request that returned it.
    pub result_hash: Option<String>,
}

/// An image or document block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRec {
    /// `image` or `document`.
    pub block: String,
    /// The source type: `base64` (hash of the decoded bytes), `url`, `file`, `text`.
    pub source: String,
    /// The media type, when given.
    pub media_type: Option<String>,
    /// SHA-256 of the data (or of the URL, file id or text).
    pub sha256: String,
}

/// Refused unauthenticated traffic from one source beyond the configured rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregateRec {
    /// Refusals in the window not recorded one by one.
    pub count: u64,
    /// Window start.
    pub window_start: String,
    /// Window end.
    pub window_end: String,
    /// Count per reason.
    pub reasons: BTreeMap<String, u64>,
}

/// Outcome codes (`outcome`).
pub mod outcome {
    /// The whole answer was delivered.
    pub const COMPLETE: &str = "complete";
    /// A stream ended without `message_stop`.
    pub const INCOMPLETE: &str = "incomplete";
    /// A policy cut the answer (`stop_reason: policy_block`, or a policy error mid-stream).
    pub const POLICY_CUT: &str = "policy_cut";
    /// The client went away before the end.
    pub const CANCELLED: &str = "cancelled";
    /// The upstream was overloaded (Anthropic's 529).
    pub const UPSTREAM_OVERLOADED: &str = "upstream_overloaded";
    /// The upstream failed or refused.
    pub const UPSTREAM_ERROR: &str = "upstream_error";
    /// The upstream (or the client) was too slow.
    pub const TIMEOUT: &str = "timeout";
    /// A gateway layer refused the request before any upstream call (rate limit, budget,
    /// policy, permission, invalid input); `reason` says which.
    pub const REJECTED: &str = "rejected";
    /// Authentication failed; `reason` is the precise cause.
    pub const AUTH_FAILED: &str = "auth_failed";
    /// Refused unauthenticated requests from one source, aggregated.
    pub const AUTH_FAILED_AGGREGATE: &str = "auth_failed_aggregate";
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Longest a caller-chosen string (model, tool name, media type, request id) is kept in a
/// record: names, not text, belong there.
pub(crate) const MAX_NAME: usize = 256;

/// `s`, cut to [`MAX_NAME`] bytes (at a character boundary).
pub(crate) fn bounded(s: &str) -> String {
    if s.len() <= MAX_NAME {
        return s.to_owned();
    }
    let mut end = MAX_NAME;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A fresh record id: `ar_` and 24 hex digits.
pub(crate) fn record_id() -> String {
    let id = RequestId::generate();
    format!("ar_{}", id.as_str().trim_start_matches("gw_"))
}

/// What the layer knows when the request arrives; hashes are taken here, before the
/// request moves on.
#[derive(Debug)]
pub(crate) struct RequestFacts {
    pub(crate) request_id: Option<String>,
    pub(crate) started: SystemTime,
    pub(crate) start: Instant,
    pub(crate) timings: Option<Timings>,
    pub(crate) principal: Option<Principal>,
    pub(crate) surface: &'static str,
    pub(crate) endpoint: Option<&'static str>,
    pub(crate) model: String,
    pub(crate) workload: Option<String>,
    pub(crate) stream: bool,
    pub(crate) local_input: u64,
    pub(crate) prompt_hash: String,
    pub(crate) cache_prefix_hash: Option<String>,
    pub(crate) uncached_hash: Option<String>,
    pub(crate) tool_results: Vec<ToolRec>,
    pub(crate) attachments: Vec<AttachmentRec>,
}

pub(crate) fn endpoint_name(e: &Endpoint) -> &'static str {
    match e {
        Endpoint::Messages => "messages",
        Endpoint::CountTokens => "count_tokens",
        Endpoint::ListModels => "list_models",
        Endpoint::GetModel(_) => "get_model",
        _ => "other",
    }
}

impl RequestFacts {
    pub(crate) fn capture(req: &http::Request<MessagesRequest>) -> Self {
        let ext = req.extensions();
        let body = req.body();
        let timings = ext.get::<Timings>().cloned();
        let start = timings.as_ref().map_or_else(Instant::now, Timings::start);
        let started = SystemTime::now()
            .checked_sub(start.elapsed())
            .unwrap_or_else(SystemTime::now);
        let endpoint = ext.get::<Endpoint>();
        let is_messages = matches!(
            endpoint,
            None | Some(Endpoint::Messages | Endpoint::CountTokens)
        );
        let (prompt_hash, prefix) = if is_messages {
            prompt_hashes(body)
        } else {
            (tagged(&sha256(req.uri().path().as_bytes())), None)
        };
        let (cache_prefix_hash, uncached_hash) = prefix.unzip();
        RequestFacts {
            request_id: ext.get::<RequestId>().map(|r| bounded(r.as_str())),
            started,
            start,
            timings,
            principal: ext.get::<Principal>().cloned(),
            surface: ext.get::<Surface>().map_or("anthropic", |s| s.0),
            endpoint: endpoint.map(endpoint_name),
            model: bounded(&body.model),
            workload: ext.get::<Workload>().map(|w| bounded(&w.0)),
            stream: body.is_stream(),
            local_input: if is_messages {
                ai_core::tokens::estimate_request(body)
            } else {
                0
            },
            prompt_hash,
            cache_prefix_hash,
            uncached_hash,
            tool_results: tool_results(body),
            attachments: attachments(body),
        }
    }
}

/// The request's parameters: every member but `tools`, `system` and `messages`.
struct Params<'a>(&'a MessagesRequest);

impl Serialize for Params<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", &r.model)?;
        if let Some(v) = &r.max_tokens {
            m.serialize_entry("max_tokens", v)?;
        }
        if let Some(v) = &r.stream {
            m.serialize_entry("stream", v)?;
        }
        if let Some(v) = &r.temperature {
            m.serialize_entry("temperature", v)?;
        }
        if let Some(v) = &r.top_p {
            m.serialize_entry("top_p", v)?;
        }
        if let Some(v) = &r.top_k {
            m.serialize_entry("top_k", v)?;
        }
        if let Some(v) = &r.stop_sequences {
            m.serialize_entry("stop_sequences", v)?;
        }
        if let Some(v) = &r.tool_choice {
            m.serialize_entry("tool_choice", v)?;
        }
        if let Some(v) = &r.thinking {
            m.serialize_entry("thinking", v)?;
        }
        if let Some(v) = &r.metadata {
            m.serialize_entry("metadata", v)?;
        }
        if let Some(v) = &r.service_tier {
            m.serialize_entry("service_tier", v)?;
        }
        for (k, v) in r.extra.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One element of the prompt, in the order the API caches it.
enum Part<'a> {
    Tool(&'a ai_core::wire::Tool),
    Text(&'static [u8], &'a str),
    Block(&'static [u8], &'a ContentBlock),
}

fn prompt_parts(req: &MessagesRequest) -> Vec<Part<'_>> {
    let mut parts = Vec::with_capacity(16);
    for t in req.tools.iter().flatten() {
        parts.push(Part::Tool(t));
    }
    fn push<'a>(c: &'a Content, role: &'static [u8], parts: &mut Vec<Part<'a>>) {
        match c {
            Content::Text(t) => parts.push(Part::Text(role, t)),
            Content::Blocks(bs) => parts.extend(bs.iter().map(|b| Part::Block(role, b))),
        }
    }
    if let Some(s) = &req.system {
        push(s, b"system", &mut parts);
    }
    for m in &req.messages {
        let role: &'static [u8] = match m.role {
            Role::User => b"user",
            Role::Assistant => b"assistant",
        };
        push(&m.content, role, &mut parts);
    }
    parts
}

/// The prompt hashes, from one serialization of the request. The prompt elements, in the
/// order the API caches them (each tool; each system block; each message's blocks), are
/// hashed as length-prefixed items (role: `tool`, `system`, `user`, `assistant`; then the
/// element's JSON) in two runs: up to and including the last `cache_control` breakpoint
/// (`P`, the `cache_prefix_hash`) and after it (`U`, the `uncached_hash`; everything when
/// there is no breakpoint). `prompt_hash` is SHA-256 of the length-prefixed items
/// `SHA-256(parameters)`, `P`, `U`, the parameters being every member but `tools`,
/// `system` and `messages` as a JSON object. JSON is the gateway's canonical serialization
/// (the bytes it forwards), so each element is hashed once.
fn prompt_hashes(req: &MessagesRequest) -> (String, Option<(String, String)>) {
    let parts = prompt_parts(req);
    let last_breakpoint = parts.iter().rposition(|p| match p {
        Part::Tool(t) => t.cache_control.is_some(),
        Part::Text(..) => false,
        Part::Block(_, b) => has_breakpoint(b),
    });
    let mut prefix = Hasher::new();
    let mut rest = Hasher::new();
    let mut buf = Vec::with_capacity(1024);
    let _ = serde_json::to_writer(&mut buf, &Params(req));
    let params = sha256(&buf);
    for (i, part) in parts.iter().enumerate() {
        buf.clear();
        let role: &[u8] = match part {
            Part::Tool(t) => {
                let _ = serde_json::to_writer(&mut buf, t);
                b"tool"
            }
            Part::Text(role, t) => {
                let _ = serde_json::to_writer(&mut buf, t);
                role
            }
            Part::Block(role, b) => {
                let _ = serde_json::to_writer(&mut buf, b);
                role
            }
        };
        let h = match last_breakpoint {
            Some(last) if i <= last => &mut prefix,
            _ => &mut rest,
        };
        h.item(role);
        h.item(&buf);
    }
    let (prefix, rest) = (prefix.finish(), rest.finish());
    let mut whole = Hasher::new();
    whole.item(&params);
    whole.item(&prefix);
    whole.item(&rest);
    let split = last_breakpoint.map(|_| (tagged(&prefix), tagged(&rest)));
    (tagged(&whole.finish()), split)
}

fn has_breakpoint(b: &ContentBlock) -> bool {
    match b {
        ContentBlock::Text(t) => t.cache_control.is_some(),
        ContentBlock::Image(i) => i.cache_control.is_some(),
        ContentBlock::Document(d) => d.cache_control.is_some(),
        ContentBlock::ToolUse(u) => u.cache_control.is_some(),
        ContentBlock::ToolResult(r) => r.cache_control.is_some(),
        ContentBlock::Other(o) => o.json().get().contains("\"cache_control\""),
        _ => false,
    }
}

/// The tool results in the last user message, each tied to the `tool_use` it answers
/// (found in the assistant turns before it).
fn tool_results(req: &MessagesRequest) -> Vec<ToolRec> {
    let Some(last) = req.messages.last().filter(|m| m.role == Role::User) else {
        return Vec::new();
    };
    let Content::Blocks(blocks) = &last.content else {
        return Vec::new();
    };
    if !blocks
        .iter()
        .any(|b| matches!(b, ContentBlock::ToolResult(_)))
    {
        return Vec::new();
    }
    // The calls of the conversation by id, built once (a request can carry many).
    let mut calls = std::collections::HashMap::new();
    for m in req.messages.iter().filter(|m| m.role == Role::Assistant) {
        if let Content::Blocks(bs) = &m.content {
            for b in bs {
                if let ContentBlock::ToolUse(u) = b {
                    calls.insert(u.id.as_str(), u);
                }
            }
        }
    }
    let mut out = Vec::new();
    for b in blocks {
        let ContentBlock::ToolResult(r) = b else {
            continue;
        };
        let call = calls.get(r.tool_use_id.as_str()).copied();
        // The result as the gateway forwards it (its canonical serialization).
        let result = r
            .content
            .as_ref()
            .and_then(|c| serde_json::to_vec(c).ok())
            .unwrap_or_else(|| b"null".to_vec());
        out.push(ToolRec {
            tool_use_id: bounded(&r.tool_use_id),
            tool_name: call.map(|u| bounded(&u.name)),
            arguments_hash: call.map(|u| canonical_hash(u.input.get())),
            decision: String::new(),
            result_hash: Some(tagged(&sha256(&result))),
        });
    }
    out
}

#[derive(Deserialize)]
struct Source<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    media_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    url: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    file_id: Option<std::borrow::Cow<'a, str>>,
}

fn attachment(block: &str, source: &ai_core::wire::RawJson) -> AttachmentRec {
    let parsed: Option<Source<'_>> = source.parse().ok();
    let (kind, media_type, digest) = match parsed {
        Some(s) => {
            let kind = bounded(s.kind.as_deref().unwrap_or("unknown"));
            let digest = if let (Some(data), "base64") = (&s.data, kind.as_str()) {
                match base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) {
                    Ok(bytes) => sha256(&bytes),
                    Err(_) => sha256(data.as_bytes()),
                }
            } else if let Some(d) = s
                .data
                .as_deref()
                .or(s.url.as_deref())
                .or(s.file_id.as_deref())
            {
                sha256(d.as_bytes())
            } else {
                sha256(source.get().as_bytes())
            };
            (kind, s.media_type.map(|m| bounded(&m)), digest)
        }
        None => ("unknown".to_owned(), None, sha256(source.get().as_bytes())),
    };
    AttachmentRec {
        block: block.to_owned(),
        source: kind,
        media_type,
        sha256: tagged(&digest),
    }
}

fn attachments(req: &MessagesRequest) -> Vec<AttachmentRec> {
    let mut out = Vec::new();
    let mut visit = |c: &Content| {
        if let Content::Blocks(bs) = c {
            for b in bs {
                match b {
                    ContentBlock::Image(i) => out.push(attachment("image", &i.source)),
                    ContentBlock::Document(d) => out.push(attachment("document", &d.source)),
                    _ => {}
                }
            }
        }
    };
    if let Some(s) = &req.system {
        visit(s);
    }
    for m in &req.messages {
        visit(&m.content);
    }
    out
}

/// What the layer saw of the response.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub(crate) stream: bool,
    pub(crate) status: Option<u16>,
    pub(crate) served: Option<ServedRec>,
    pub(crate) output_bytes: u64,
    pub(crate) tool_calls: Vec<ToolRec>,
    /// Arguments of tool calls still streaming: (block index, partial JSON).
    pub(crate) partial: Vec<(u32, String)>,
}

/// Most bytes of streamed tool arguments kept per call for hashing.
const MAX_TOOL_ARGS: usize = 1 << 20;

impl Observed {
    pub(crate) fn message(&mut self, m: &ai_core::MessagesResponse) {
        for b in &m.content {
            match b {
                ContentBlock::Text(t) => self.output_bytes += t.text.len() as u64,
                ContentBlock::Thinking(t) => self.output_bytes += t.thinking.len() as u64,
                ContentBlock::ToolUse(u) => self.tool_calls.push(ToolRec {
                    tool_use_id: bounded(&u.id),
                    tool_name: Some(bounded(&u.name)),
                    arguments_hash: Some(canonical_hash(u.input.get())),
                    decision: String::new(),
                    result_hash: None,
                }),
                _ => {}
            }
        }
    }

    pub(crate) fn event(&mut self, ev: &ai_core::StreamEvent) {
        use ai_core::StreamEvent as E;
        use ai_core::wire::Delta;
        match ev {
            E::ContentBlockStart(s) => {
                if let ContentBlock::ToolUse(u) = &*s.content_block {
                    self.tool_calls.push(ToolRec {
                        tool_use_id: bounded(&u.id),
                        tool_name: Some(bounded(&u.name)),
                        arguments_hash: None,
                        decision: String::new(),
                        result_hash: None,
                    });
                    self.partial.push((s.index, String::new()));
                }
            }
            E::ContentBlockDelta(d) => match &d.delta {
                Delta::Text(t) => self.output_bytes += t.text.len() as u64,
                Delta::Thinking(t) => self.output_bytes += t.thinking.len() as u64,
                Delta::InputJson(j) => {
                    self.output_bytes += j.partial_json.len() as u64;
                    if let Some((_, buf)) = self.partial.iter_mut().find(|(i, _)| *i == d.index) {
                        if buf.len() + j.partial_json.len() <= MAX_TOOL_ARGS {
                            buf.push_str(&j.partial_json);
                        }
                    }
                }
                _ => {}
            },
            E::ContentBlockStop(s) => {
                if let Some(pos) = self.partial.iter().position(|(i, _)| *i == s.index) {
                    let (_, args) = self.partial.swap_remove(pos);
                    self.close_call(&args);
                }
            }
            _ => {}
        }
    }

    fn close_call(&mut self, args: &str) {
        let args = if args.trim().is_empty() { "{}" } else { args };
        if let Some(call) = self
            .tool_calls
            .iter_mut()
            .rev()
            .find(|c| c.arguments_hash.is_none())
        {
            call.arguments_hash = Some(canonical_hash(args));
        }
    }

    /// Arguments of calls cut mid-stream are hashed as far as they came.
    fn finish_partial(&mut self) {
        for (_, args) in std::mem::take(&mut self.partial) {
            self.close_call(&args);
        }
    }
}

/// The outcome and reason of a finished call.
pub(crate) fn classify(c: &Completion, report: &ReportData) -> (&'static str, Option<String>) {
    match c.outcome {
        Outcome::Complete if c.stop_reason.as_deref() == Some("policy_block") => (
            outcome::POLICY_CUT,
            Some(
                report
                    .policy_reason
                    .as_deref()
                    .map_or_else(|| "stop:policy_block".to_owned(), bounded),
            ),
        ),
        Outcome::Complete => (outcome::COMPLETE, None),
        Outcome::Incomplete => (outcome::INCOMPLETE, None),
        Outcome::Cancelled => (outcome::CANCELLED, None),
        Outcome::Failed(kind) => {
            let reason = c
                .error
                .as_ref()
                .map(|e| e.error_type().to_owned())
                .unwrap_or_else(|| kind.error_type().to_owned());
            let o = match kind {
                ErrorKind::Overloaded => outcome::UPSTREAM_OVERLOADED,
                ErrorKind::UpstreamTimeout | ErrorKind::RequestTimeout => outcome::TIMEOUT,
                ErrorKind::PolicyBlock if c.events > 0 => outcome::POLICY_CUT,
                ErrorKind::Authentication => outcome::AUTH_FAILED,
                _ if report.attempts.is_empty() || kind == ErrorKind::PolicyBlock => {
                    outcome::REJECTED
                }
                _ => outcome::UPSTREAM_ERROR,
            };
            (o, Some(reason))
        }
        _ => (outcome::UPSTREAM_ERROR, None),
    }
}

fn level_name(l: DataClass) -> &'static str {
    match l {
        DataClass::Public => "public",
        DataClass::Internal => "internal",
        DataClass::Confidential => "confidential",
        DataClass::Restricted => "restricted",
    }
}

/// Everything the record needs at the end.
pub(crate) struct Finish<'a> {
    pub(crate) completion: &'a Completion,
    pub(crate) report: &'a CallReport,
    pub(crate) verdicts: &'a Verdicts,
    pub(crate) observed: &'a mut Observed,
    pub(crate) capture: bool,
}

impl RequestFacts {
    pub(crate) fn finish(self, f: Finish<'_>) -> AuditRecord {
        let c = f.completion;
        let report = f.report.snapshot();
        f.observed.finish_partial();
        let (outcome, reason) = classify(c, &report);
        let status = match c.outcome {
            Outcome::Failed(_) => c.error.as_ref().map_or(500, |e| e.status().as_u16()),
            Outcome::Cancelled => f.observed.status.unwrap_or(499),
            _ => f.observed.status.unwrap_or(200),
        };
        let decision = |id: &str| {
            report
                .tool_decisions
                .iter()
                .find(|(k, _)| &**k == id)
                .map_or_else(|| "pass".to_owned(), |(_, d)| d.to_string())
        };
        let mut tools = self.tool_results;
        tools.append(&mut f.observed.tool_calls);
        for w in &report.withheld_tool_calls {
            if !tools.iter().any(|t| t.tool_use_id == *w.id) {
                tools.push(ToolRec {
                    tool_use_id: bounded(&w.id),
                    tool_name: Some(bounded(&w.name)),
                    arguments_hash: Some(canonical_hash(&w.arguments)),
                    decision: String::new(),
                    result_hash: None,
                });
            }
        }
        for t in &mut tools {
            t.decision = decision(&t.tool_use_id);
        }
        let u = &c.usage;
        let upstream =
            (u.input_tokens.is_some() || u.output_tokens.is_some()).then(|| UpstreamTokens {
                input: u.input_tokens.unwrap_or(0),
                output: u.output_tokens.unwrap_or(0),
                cache_creation_input: u.cache_creation_input_tokens.unwrap_or(0),
                cache_read_input: u.cache_read_input_tokens.unwrap_or(0),
                estimated: u.is_estimated(),
            });
        let served = f.observed.served.take().or_else(|| {
            report
                .attempts
                .last()
                .filter(|a| a.status.is_some_and(|s| s < 400))
                .map(|a| ServedRec {
                    provider: a.provider.to_string(),
                    model: c.model.clone().unwrap_or_else(|| a.model.to_string()),
                    request_id: None,
                })
        });
        let ttft = self
            .timings
            .as_ref()
            .and_then(Timings::first_token)
            .map(|d| d.as_secs_f64() * 1e3);
        let class = report.classification;
        let capture = if f.capture {
            report
                .redacted_request
                .as_ref()
                .and_then(|r| serde_json::to_value(&**r).ok())
        } else {
            None
        };
        AuditRecord {
            kind: "record".to_owned(),
            v: SCHEMA_VERSION,
            record_id: record_id(),
            request_id: self.request_id,
            started_at: rfc3339(self.started),
            ended_at: rfc3339(SystemTime::now()),
            principal: self.principal.map(|p| PrincipalRec {
                subject: p.subject.to_string(),
                tenant: p.tenant.map(|s| s.to_string()),
                team: p.team.map(|s| s.to_string()),
                agent: p.agent.map(|s| s.to_string()),
            }),
            surface: self.surface.to_owned(),
            endpoint: self.endpoint.map(str::to_owned),
            requested_model: Some(self.model),
            served,
            attempts: report
                .attempts
                .iter()
                .map(|a| AttemptRec {
                    provider: a.provider.to_string(),
                    model: a.model.to_string(),
                    status: a.status,
                })
                .collect(),
            workload: self.workload,
            system_prompt_template: report.template.as_ref().map(|t| TemplateRec {
                id: t.id.to_string(),
                version: t.version.to_string(),
            }),
            stream: self.stream,
            tokens: TokensRec {
                local: LocalTokens {
                    input: self.local_input,
                    output: f.observed.output_bytes.div_ceil(4),
                },
                upstream,
            },
            cost_nano_usd: report.cost.map(|c| c.nano_usd),
            latency_ms: self.start.elapsed().as_secs_f64() * 1e3,
            ttft_ms: ttft,
            outcome: outcome.to_owned(),
            status,
            reason,
            stop_reason: c.stop_reason.clone(),
            prompt_hash: Some(self.prompt_hash),
            cache_prefix_hash: self.cache_prefix_hash,
            uncached_hash: self.uncached_hash,
            data_class: class.map(|c| c.overall().categories.to_string()),
            data_class_components: class.map(|c| ComponentsRec {
                system: c.system.categories.to_string(),
                messages: c.messages.categories.to_string(),
                tools: c.tools.categories.to_string(),
                tool_results: c.tool_results.categories.to_string(),
            }),
            data_level: class.map(|c| level_name(c.overall().level).to_owned()),
            redactions: report
                .redactions
                .iter()
                .map(|(k, n)| (k.as_str().to_owned(), *n))
                .collect(),
            verdicts: f
                .verdicts
                .snapshot()
                .into_iter()
                .map(|v| VerdictRec {
                    layer: v.layer.to_owned(),
                    decision: v.decision.to_string(),
                })
                .collect(),
            tool_invocations: tools,
            attachments: self.attachments,
            source: None,
            aggregate: None,
            capture,
        }
    }
}

/// The record [`AuditLayer`](crate::AuditLayer) would write for `req` and `completion`,
/// from the request and the facts in its extensions alone (what the layer learns from
/// the response body itself, tool calls and output size, is not in it). For custom
/// pipelines that write records of their own, and for benchmarks.
pub fn build(req: &http::Request<MessagesRequest>, completion: &Completion) -> AuditRecord {
    let facts = RequestFacts::capture(req);
    let report = req
        .extensions()
        .get::<CallReport>()
        .cloned()
        .unwrap_or_default();
    let verdicts = req
        .extensions()
        .get::<Verdicts>()
        .cloned()
        .unwrap_or_default();
    facts.finish(Finish {
        completion,
        report: &report,
        verdicts: &verdicts,
        observed: &mut Observed::default(),
        capture: false,
    })
}

/// A record of a request the typed layer never saw (refused by authentication or by the
/// edge codec), written by the edge layer.
pub(crate) struct EdgeFacts {
    pub(crate) request_id: Option<String>,
    pub(crate) started: SystemTime,
    pub(crate) start: Instant,
    pub(crate) endpoint: Option<&'static str>,
    pub(crate) source: Option<ClientAddr>,
}

impl EdgeFacts {
    pub(crate) fn finish(self, status: u16, auth_failure: Option<&str>) -> AuditRecord {
        let (outcome, reason) = match auth_failure {
            Some(r) => (outcome::AUTH_FAILED, Some(r.to_owned())),
            None => (
                outcome::REJECTED,
                Some(
                    ErrorKind::from_status(
                        http::StatusCode::from_u16(status)
                            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
                    )
                    .error_type()
                    .to_owned(),
                ),
            ),
        };
        AuditRecord {
            kind: "record".to_owned(),
            v: SCHEMA_VERSION,
            record_id: record_id(),
            request_id: self.request_id,
            started_at: rfc3339(self.started),
            ended_at: rfc3339(SystemTime::now()),
            surface: "anthropic".to_owned(),
            endpoint: self.endpoint.map(str::to_owned),
            latency_ms: self.start.elapsed().as_secs_f64() * 1e3,
            outcome: outcome.to_owned(),
            status,
            reason,
            source: auth_failure.and(self.source).map(|a| a.0.ip().to_string()),
            ..AuditRecord::default()
        }
    }
}

/// An aggregate record for refused traffic from `source`.
pub(crate) fn aggregate(
    source: &str,
    count: u64,
    window_start: SystemTime,
    window_end: SystemTime,
    reasons: BTreeMap<String, u64>,
) -> AuditRecord {
    AuditRecord {
        kind: "record".to_owned(),
        v: SCHEMA_VERSION,
        record_id: record_id(),
        started_at: rfc3339(window_start),
        ended_at: rfc3339(window_end),
        surface: "anthropic".to_owned(),
        outcome: outcome::AUTH_FAILED_AGGREGATE.to_owned(),
        status: 401,
        source: Some(source.to_owned()),
        aggregate: Some(AggregateRec {
            count,
            window_start: rfc3339(window_start),
            window_end: rfc3339(window_end),
            reasons,
        }),
        ..AuditRecord::default()
    }
}
