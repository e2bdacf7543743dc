//! The OpenAI Chat Completions mapping: canonical (Anthropic Messages) requests to
//! OpenAI requests and back, OpenAI answers to canonical messages, and OpenAI stream
//! chunks to canonical events.
//!
//! Providers for OpenAI and OpenAI-compatible servers (vLLM, Ollama, llama.cpp) send
//! [`to_chat_request`] and read answers with [`from_chat_completion`] and
//! [`ChunkDecoder`]; an OpenAI-surface codec reads callers' requests with
//! [`from_chat_request`]. The mapping lives here so both sides share one definition.
//!
//! What does not survive the trip (thinking, top_k, documents, `is_error`, server tools,
//! which stop sequence matched) is listed in `docs/ai-provider.md`.
//!
//! ```
//! use ai_core::openai::{ChunkDecoder, to_chat_request, MaxTokensField};
//! use ai_core::{MessagesRequest, StreamEvent};
//!
//! let req: MessagesRequest = serde_json::from_str(
//!     r#"{"model":"gpt-4o","max_tokens":64,"system":"Be brief.","stream":true,
//!         "messages":[{"role":"user","content":"hi"}]}"#,
//! ).unwrap();
//! let body = to_chat_request(&req, MaxTokensField::MaxCompletionTokens);
//! assert_eq!(body["messages"][0]["role"], "system");
//! assert_eq!(body["stream_options"]["include_usage"], true);
//!
//! let mut d = ChunkDecoder::new();
//! let mut events = Vec::new();
//! d.chunk(r#"{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello"}}]}"#, &mut events).unwrap();
//! d.chunk(r#"{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#, &mut events).unwrap();
//! d.chunk("[DONE]", &mut events).unwrap();
//! assert!(matches!(events.last(), Some(StreamEvent::MessageStop(_))));
//! ```

use crate::error::{AiError, ErrorKind};
use crate::wire::{
    Content, ContentBlock, ContentBlockDeltaEvent, ContentBlockStartEvent, ContentBlockStopEvent,
    Delta, InputJsonDelta, Message, MessageDeltaBody, MessageDeltaEvent, MessageStartEvent,
    MessageStopEvent, MessagesRequest, MessagesResponse, RawJson, Role, StreamEvent, TextBlock,
    TextDelta, Tool, ToolResultBlock, ToolUseBlock, Usage,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Which field carries the output cap: OpenAI's current `max_completion_tokens` (needed
/// by its reasoning models), or the older `max_tokens` most self-hosted servers read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_completion_tokens`.
    MaxCompletionTokens,
    /// `max_tokens`.
    MaxTokens,
}

fn text_of(c: &Content) -> String {
    match c {
        Content::Text(s) => s.clone(),
        Content::Blocks(bs) => {
            let mut s = String::new();
            for b in bs {
                if let ContentBlock::Text(t) = b {
                    if !s.is_empty() {
                        s.push('\n');
                    }
                    s.push_str(&t.text);
                }
            }
            s
        }
    }
}

/// An image block's source as an OpenAI `image_url` part, when it has one.
fn image_part(source: &RawJson) -> Option<Value> {
    let v = source.to_value().ok()?;
    let url = match v["type"].as_str()? {
        "base64" => format!(
            "data:{};base64,{}",
            v["media_type"].as_str()?,
            v["data"].as_str()?
        ),
        "url" => v["url"].as_str()?.to_owned(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// The OpenAI Chat Completions request for `req`.
pub fn to_chat_request(req: &MessagesRequest, max: MaxTokensField) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(s) = &req.system {
        messages.push(json!({"role": "system", "content": text_of(s)}));
    }
    for m in &req.messages {
        match m.role {
            Role::User => user_messages(&m.content, &mut messages),
            Role::Assistant => messages.push(assistant_message(&m.content)),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(n) = req.max_tokens {
        let key = match max {
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
            MaxTokensField::MaxTokens => "max_tokens",
        };
        body.insert(key.into(), json!(n));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(stop) = &req.stop_sequences {
        if !stop.is_empty() {
            body.insert("stop".into(), json!(stop));
        }
    }
    let tools: Vec<Value> = req
        .tools
        .iter()
        .flatten()
        .filter_map(|t| {
            let name = t.name.as_ref()?;
            let schema = t.input_schema.as_ref()?.to_value().ok()?;
            let mut f = json!({"name": name, "parameters": schema});
            if let Some(d) = &t.description {
                f["description"] = json!(d);
            }
            Some(json!({"type": "function", "function": f}))
        })
        .collect();
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = req.tool_choice.as_ref().and_then(|c| c.to_value().ok()) {
        let mapped = match choice["type"].as_str() {
            Some("auto") => Some(json!("auto")),
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => choice["name"]
                .as_str()
                .map(|n| json!({"type": "function", "function": {"name": n}})),
            _ => None,
        };
        if let Some(c) = mapped {
            body.insert("tool_choice".into(), c);
        }
        if choice["disable_parallel_tool_use"] == json!(true) {
            body.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if let Some(user) = req
        .metadata
        .as_ref()
        .and_then(|m| m.to_value().ok())
        .and_then(|m| m["user_id"].as_str().map(str::to_owned))
    {
        body.insert("user".into(), json!(user));
    }
    if req.is_stream() {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(body)
}

/// A user turn: its tool results as `role: tool` messages first (OpenAI wants them right
/// after the assistant's `tool_calls`), then the rest as one user message.
fn user_messages(content: &Content, out: &mut Vec<Value>) {
    let blocks = match content {
        Content::Text(s) => {
            out.push(json!({"role": "user", "content": s}));
            return;
        }
        Content::Blocks(bs) => bs,
    };
    let mut parts = Vec::new();
    for b in blocks {
        match b {
            ContentBlock::ToolResult(r) => out.push(json!({
                "role": "tool",
                "tool_call_id": r.tool_use_id,
                "content": r.content.as_ref().map(text_of).unwrap_or_default(),
            })),
            ContentBlock::Text(t) => parts.push(json!({"type": "text", "text": t.text})),
            ContentBlock::Image(i) => parts.extend(image_part(&i.source)),
            _ => {}
        }
    }
    match parts.len() {
        0 => {}
        1 if parts[0]["type"] == "text" => {
            out.push(json!({"role": "user", "content": parts[0]["text"]}));
        }
        _ => out.push(json!({"role": "user", "content": parts})),
    }
}

fn assistant_message(content: &Content) -> Value {
    let blocks = match content {
        Content::Text(s) => return json!({"role": "assistant", "content": s}),
        Content::Blocks(bs) => bs,
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b {
            ContentBlock::Text(t) => text.push_str(&t.text),
            ContentBlock::ToolUse(u) => calls.push(json!({
                "id": u.id,
                "type": "function",
                "function": {"name": u.name, "arguments": u.input.get()},
            })),
            _ => {}
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    m
}

fn bad(msg: impl Into<String>) -> AiError {
    AiError::invalid_request(msg.into())
}

/// The canonical request for an OpenAI Chat Completions request (the OpenAI surface).
pub fn from_chat_request(v: &Value) -> Result<MessagesRequest, AiError> {
    let model = v["model"]
        .as_str()
        .ok_or_else(|| bad("model: a string is required"))?;
    let list = v["messages"]
        .as_array()
        .ok_or_else(|| bad("messages: an array is required"))?;
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let role = m["role"]
            .as_str()
            .ok_or_else(|| bad(format!("messages[{i}].role: a string is required")))?;
        match role {
            "system" | "developer" => system.push(openai_text(&m["content"])),
            "user" => push_blocks(&mut messages, Role::User, user_blocks(&m["content"], i)?),
            "assistant" => {
                let mut blocks = Vec::new();
                let text = openai_text(&m["content"]);
                if !text.is_empty() {
                    blocks.push(ContentBlock::text(text));
                }
                for (j, c) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
                    let f = &c["function"];
                    let args = f["arguments"].as_str().unwrap_or("{}");
                    let args = if args.trim().is_empty() { "{}" } else { args };
                    let input = RawJson::from_string(args.to_owned()).map_err(|_| {
                        bad(format!(
                            "messages[{i}].tool_calls[{j}].function.arguments: not JSON"
                        ))
                    })?;
                    blocks.push(ContentBlock::ToolUse(ToolUseBlock {
                        id: c["id"].as_str().unwrap_or_default().to_owned(),
                        name: f["name"].as_str().unwrap_or_default().to_owned(),
                        input,
                        ..Default::default()
                    }));
                }
                push_blocks(&mut messages, Role::Assistant, blocks);
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().ok_or_else(|| {
                    bad(format!("messages[{i}].tool_call_id: a string is required"))
                })?;
                let block = ContentBlock::ToolResult(ToolResultBlock {
                    tool_use_id: id.to_owned(),
                    content: Some(Content::Text(openai_text(&m["content"]))),
                    ..Default::default()
                });
                push_blocks(&mut messages, Role::User, vec![block]);
            }
            other => {
                return Err(bad(format!(
                    "messages[{i}].role: {other:?} is not system, developer, user, assistant or tool"
                )));
            }
        }
    }
    let max = v["max_completion_tokens"]
        .as_u64()
        .or_else(|| v["max_tokens"].as_u64())
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let tools: Vec<Tool> = v["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "function")
        .map(|t| {
            let f = &t["function"];
            Tool {
                name: f["name"].as_str().map(str::to_owned),
                description: f["description"].as_str().map(str::to_owned),
                input_schema: Some(RawJson::from_value(
                    f.get("parameters")
                        .unwrap_or(&json!({"type": "object", "properties": {}})),
                )),
                ..Default::default()
            }
        })
        .collect();
    let tool_choice = match &v["tool_choice"] {
        Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
        Value::String(s) if s == "required" => Some(json!({"type": "any"})),
        Value::String(s) if s == "none" => Some(json!({"type": "none"})),
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f["name"].as_str())
            .map(|n| json!({"type": "tool", "name": n})),
        _ => None,
    };
    let tool_choice = match (tool_choice, v["parallel_tool_calls"].as_bool()) {
        (Some(mut c), Some(false)) => {
            c["disable_parallel_tool_use"] = json!(true);
            Some(c)
        }
        (None, Some(false)) if !tools.is_empty() => {
            Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
        }
        (c, _) => c,
    };
    let stop = match &v["stop"] {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    };
    Ok(MessagesRequest {
        model: model.to_owned(),
        max_tokens: max,
        messages,
        system: (!system.is_empty()).then(|| Content::Text(system.join("\n"))),
        stream: v["stream"].as_bool(),
        temperature: v["temperature"].as_f64(),
        top_p: v["top_p"].as_f64(),
        stop_sequences: stop,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice: tool_choice.map(|c| RawJson::from_value(&c)),
        metadata: v["user"]
            .as_str()
            .map(|u| RawJson::from_value(&json!({"user_id": u}))),
        ..Default::default()
    })
}

/// The text of an OpenAI `content`: a string, or the text parts of an array.
fn openai_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn user_blocks(v: &Value, i: usize) -> Result<Vec<ContentBlock>, AiError> {
    match v {
        Value::String(s) => Ok(vec![ContentBlock::text(s.clone())]),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match p["type"].as_str() {
                    Some("text") => out.push(ContentBlock::text(
                        p["text"].as_str().unwrap_or_default().to_owned(),
                    )),
                    Some("image_url") => {
                        let url = p["image_url"]["url"].as_str().unwrap_or_default();
                        let source = match url
                            .strip_prefix("data:")
                            .and_then(|r| r.split_once(";base64,"))
                        {
                            Some((media, data)) => {
                                json!({"type": "base64", "media_type": media, "data": data})
                            }
                            None => json!({"type": "url", "url": url}),
                        };
                        out.push(ContentBlock::Image(crate::wire::ImageBlock {
                            source: RawJson::from_value(&source),
                            ..Default::default()
                        }));
                    }
                    other => {
                        return Err(bad(format!(
                            "messages[{i}].content[{j}].type: {other:?} is not supported"
                        )));
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Ok(Vec::new()),
        _ => Err(bad(format!(
            "messages[{i}].content: a string or an array is required"
        ))),
    }
}

/// Appends `blocks` as a turn of `role`, merging with the previous turn of the same role
/// (consecutive OpenAI `tool` messages become one user turn of tool results).
fn push_blocks(messages: &mut Vec<Message>, role: Role, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut() {
        if last.role == role {
            if let Content::Blocks(bs) = &mut last.content {
                bs.extend(blocks);
                return;
            }
        }
    }
    messages.push(Message {
        role,
        content: Content::Blocks(blocks),
        ..Default::default()
    });
}

/// The canonical stop reason of an OpenAI `finish_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

#[derive(Deserialize, Default)]
struct OaUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

fn usage_of(u: &OaUsage) -> Usage {
    let cached = u
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0);
    Usage {
        input_tokens: u.prompt_tokens.map(|p| p.saturating_sub(cached)),
        output_tokens: u.completion_tokens,
        cache_read_input_tokens: (cached > 0).then_some(cached),
        ..Default::default()
    }
}

fn error_of(v: &Value) -> AiError {
    let e = &v["error"];
    let message = e["message"].as_str().unwrap_or("upstream error").to_owned();
    let kind = match (e["type"].as_str(), e["code"].as_str()) {
        (_, Some("rate_limit_exceeded")) | (Some("tokens" | "requests"), _) => ErrorKind::RateLimit,
        (Some("invalid_request_error"), _) => ErrorKind::InvalidRequest,
        (Some("authentication_error"), _) | (_, Some("invalid_api_key")) => {
            ErrorKind::Authentication
        }
        (Some("server_error"), _) => ErrorKind::Api,
        _ => ErrorKind::Api,
    };
    AiError::new(kind, message)
}

/// The error an OpenAI-compatible upstream answered with `status` and `body` (`{"error":
/// {"message", "type", "code"}}`, or anything else). The kind follows the status (a 429
/// is a rate limit whatever its `type` says; OpenAI's 429 `type` is `tokens` or
/// `requests`), the message is the upstream's; the status is kept.
pub fn error_from_body(status: http::StatusCode, body: &[u8]) -> AiError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("upstream returned http {}", status.as_u16()));
    let kind = match status.as_u16() {
        400 | 422 => ErrorKind::InvalidRequest,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::RequestTooLarge,
        429 => ErrorKind::RateLimit,
        503 => ErrorKind::Overloaded,
        _ if status.is_server_error() => ErrorKind::Api,
        _ => error_of(&v).kind(),
    };
    AiError::upstream(status, kind.error_type(), message)
}

/// The canonical message for an OpenAI `chat.completion` (the first choice).
pub fn from_chat_completion(v: &Value) -> Result<MessagesResponse, AiError> {
    if v.get("error").is_some() {
        return Err(error_of(v));
    }
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(t) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(ContentBlock::text(t));
    }
    if let Some(r) = msg["refusal"].as_str().filter(|r| !r.is_empty()) {
        content.push(ContentBlock::text(r));
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        let args = c["function"]["arguments"].as_str().unwrap_or("{}");
        let input = RawJson::from_string(if args.trim().is_empty() {
            "{}".to_owned()
        } else {
            args.to_owned()
        })
        .unwrap_or_else(|_| RawJson::from_value(&json!({"_arguments": args})));
        content.push(ContentBlock::ToolUse(ToolUseBlock {
            id: c["id"].as_str().unwrap_or_default().to_owned(),
            name: c["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            input,
            ..Default::default()
        }));
    }
    let usage = v
        .get("usage")
        .and_then(|u| OaUsage::deserialize(u).ok())
        .map(|u| usage_of(&u))
        .unwrap_or_default();
    let refused = msg["refusal"].as_str().is_some_and(|r| !r.is_empty());
    Ok(MessagesResponse {
        id: v["id"].as_str().unwrap_or_default().to_owned(),
        kind: "message".to_owned(),
        role: Role::Assistant,
        content,
        model: v["model"].as_str().unwrap_or_default().to_owned(),
        stop_reason: if refused {
            Some("refusal".to_owned())
        } else {
            choice["finish_reason"]
                .as_str()
                .map(|f| stop_reason(f).to_owned())
        },
        stop_sequence: None,
        usage,
        ..Default::default()
    })
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Vec<ChunkChoice<'a>>,
    #[serde(default)]
    usage: Option<OaUsage>,
    /// `{"error": {...}}` mid-stream.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default, borrow)]
    delta: ChunkDelta<'a>,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct ChunkDelta<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Vec<ChunkToolCall<'a>>,
}

#[derive(Deserialize)]
struct ChunkToolCall<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<ChunkFunction<'a>>,
}

#[derive(Deserialize)]
struct ChunkFunction<'a> {
    #[serde(default, borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<std::borrow::Cow<'a, str>>,
}

/// Turns OpenAI `chat.completion.chunk`s into canonical events: `message_start` on the
/// first chunk, a text block for `content` (and `refusal`), a `tool_use` block per tool
/// call with its argument fragments as `input_json_delta`, and `message_delta` +
/// `message_stop` at `[DONE]` (or [`finish`](Self::finish)), carrying the usage chunk's
/// counts when the server sent one.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    started: bool,
    done: bool,
    next_index: u32,
    /// The open block: (canonical index, OpenAI tool-call index or `None` for text).
    open: Option<(u32, Option<u32>)>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
    /// Bytes of generated text and arguments, for an estimate when no usage came.
    streamed: u64,
}

impl ChunkDecoder {
    /// A decoder for one stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the server reported usage (OpenAI does with `include_usage`; some
    /// self-hosted servers never do).
    pub fn usage_reported(&self) -> bool {
        self.usage.is_some()
    }

    /// Whether the stream is over (`[DONE]` seen or [`finish`](Self::finish) called).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether a `finish_reason` came: the answer is whole even if `[DONE]` does not.
    pub fn saw_finish(&self) -> bool {
        self.stop_reason.is_some()
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some((index, _)) = self.open.take() {
            out.push(StreamEvent::ContentBlockStop(ContentBlockStopEvent {
                index,
                ..Default::default()
            }));
        }
    }

    fn open_block(
        &mut self,
        block: ContentBlock,
        tool: Option<u32>,
        out: &mut Vec<StreamEvent>,
    ) -> u32 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        out.push(StreamEvent::ContentBlockStart(ContentBlockStartEvent {
            index,
            content_block: Box::new(block),
            ..Default::default()
        }));
        self.open = Some((index, tool));
        index
    }

    fn text(&mut self, text: &str, out: &mut Vec<StreamEvent>) {
        if text.is_empty() {
            return;
        }
        self.streamed += text.len() as u64;
        let index = match self.open {
            Some((i, None)) => i,
            _ => self.open_block(ContentBlock::Text(TextBlock::default()), None, out),
        };
        out.push(StreamEvent::ContentBlockDelta(ContentBlockDeltaEvent {
            index,
            delta: Delta::Text(TextDelta {
                text: text.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }

    /// Decodes one `data:` payload (a chunk, an `{"error": ...}` object, or `[DONE]`)
    /// into `out`.
    pub fn chunk(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), AiError> {
        if self.done {
            return Ok(());
        }
        if data.trim() == "[DONE]" {
            self.finish(out);
            return Ok(());
        }
        let c: Chunk<'_> = serde_json::from_str(data).map_err(|e| {
            if let Ok(v) = serde_json::from_str::<Value>(data) {
                if v.get("error").is_some() {
                    return error_of(&v);
                }
            }
            AiError::new(
                ErrorKind::Api,
                format!("upstream sent an invalid chunk: {e}"),
            )
        })?;
        if let Some(e) = c.error {
            return Err(error_of(&json!({ "error": e })));
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::MessageStart(MessageStartEvent {
                message: Box::new(MessagesResponse {
                    id: c.id.as_deref().unwrap_or_default().to_owned(),
                    kind: "message".to_owned(),
                    role: Role::Assistant,
                    model: c.model.as_deref().unwrap_or_default().to_owned(),
                    usage: Usage {
                        input_tokens: Some(0),
                        output_tokens: Some(0),
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                ..Default::default()
            }));
        }
        if let Some(u) = &c.usage {
            self.usage = Some(usage_of(u));
        }
        for choice in &c.choices {
            if let Some(t) = &choice.delta.content {
                self.text(t, out);
            }
            if let Some(r) = &choice.delta.refusal {
                if !r.is_empty() {
                    self.stop_reason = Some("refusal".to_owned());
                }
                self.text(r, out);
            }
            for call in &choice.delta.tool_calls {
                let f = call.function.as_ref();
                let index = match self.open {
                    Some((i, Some(t))) if t == call.index && call.id.is_none() => i,
                    _ => self.open_block(
                        ContentBlock::ToolUse(ToolUseBlock {
                            id: call.id.as_deref().unwrap_or_default().to_owned(),
                            name: f
                                .and_then(|f| f.name.as_deref())
                                .unwrap_or_default()
                                .to_owned(),
                            input: RawJson::empty_object(),
                            ..Default::default()
                        }),
                        Some(call.index),
                        out,
                    ),
                };
                if let Some(args) = f.and_then(|f| f.arguments.as_deref()) {
                    if !args.is_empty() {
                        self.streamed += args.len() as u64;
                        out.push(StreamEvent::ContentBlockDelta(ContentBlockDeltaEvent {
                            index,
                            delta: Delta::InputJson(InputJsonDelta {
                                partial_json: args.to_owned(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }));
                    }
                }
            }
            if let Some(f) = &choice.finish_reason {
                self.close(out);
                if self.stop_reason.is_none() {
                    self.stop_reason = Some(stop_reason(f).to_owned());
                }
            }
        }
        Ok(())
    }

    /// Ends the message (at `[DONE]`, or when the body ends without it): closes the open
    /// block and sends `message_delta` (stop reason, usage: the server's, or an estimate
    /// of the output at four bytes a token) and `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done || !self.started {
            self.done = true;
            return;
        }
        self.done = true;
        self.close(out);
        let usage = self.usage.clone().unwrap_or_else(|| {
            let mut u = Usage {
                output_tokens: Some(self.streamed.div_ceil(4)),
                ..Default::default()
            };
            u.mark_estimated();
            u
        });
        out.push(StreamEvent::MessageDelta(MessageDeltaEvent {
            delta: MessageDeltaBody {
                stop_reason: Some(
                    self.stop_reason
                        .clone()
                        .unwrap_or_else(|| "end_turn".to_owned()),
                ),
                stop_sequence: None,
                ..Default::default()
            },
            usage: Some(usage),
            ..Default::default()
        }));
        out.push(StreamEvent::MessageStop(MessageStopEvent::default()));
    }
}

/// The OpenAI `finish_reason` of a canonical stop reason.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "budget_exceeded" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" | "policy_block" => "content_filter",
        _ => "stop",
    }
}

fn openai_usage(u: &Usage) -> Value {
    let cached = u.cache_read_input_tokens.unwrap_or(0);
    let prompt = u.input_tokens.unwrap_or(0) + u.cache_creation_input_tokens.unwrap_or(0) + cached;
    let completion = u.output_tokens.unwrap_or(0);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// The OpenAI `chat.completion` for a canonical message (the OpenAI surface). Thinking
/// is left out; text blocks are joined.
pub fn to_chat_completion(m: &MessagesResponse, created: u64) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in &m.content {
        match b {
            ContentBlock::Text(t) => text.push_str(&t.text),
            ContentBlock::ToolUse(u) => calls.push(json!({
                "id": u.id, "type": "function",
                "function": {"name": u.name, "arguments": u.input.get()},
            })),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": Value::Null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": m.id,
        "object": "chat.completion",
        "created": created,
        "model": m.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": Value::Null,
            "finish_reason": m.stop_reason.as_deref().map(finish_reason),
        }],
        "usage": openai_usage(&m.usage),
    })
}

/// Whether a request comes from an OpenAI client, and so gets OpenAI-shaped answers and
/// errors: `/v1/chat/completions` is OpenAI's; `/v1/models` is shared, and the Anthropic
/// SDKs send `anthropic-version` (and an `x-api-key`), the OpenAI SDKs neither.
pub fn is_openai_caller<B>(req: &http::Request<B>) -> bool {
    let path = req.uri().path();
    path == "/v1/chat/completions"
        || ((path == "/v1/models" || path.starts_with("/v1/models/"))
            && !req.headers().contains_key("anthropic-version")
            && !req.headers().contains_key("x-api-key"))
}

/// The OpenAI error body and `type` for an [`AiError`] (the status stays the error's).
pub fn error_body(e: &AiError) -> Value {
    let (kind, code) = match e.kind() {
        ErrorKind::RateLimit => ("requests", Some("rate_limit_exceeded")),
        ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
        ErrorKind::Permission => ("invalid_request_error", Some("permission_denied")),
        ErrorKind::NotFound => ("invalid_request_error", Some("not_found")),
        ErrorKind::BudgetExceeded => ("insufficient_quota", Some("insufficient_quota")),
        ErrorKind::PolicyBlock => ("invalid_request_error", Some("content_policy_violation")),
        ErrorKind::InvalidRequest
        | ErrorKind::MethodNotAllowed
        | ErrorKind::RequestTooLarge
        | ErrorKind::UnsupportedMediaType
        | ErrorKind::RequestTimeout => ("invalid_request_error", None),
        ErrorKind::Overloaded
        | ErrorKind::Api
        | ErrorKind::UpstreamTimeout
        | ErrorKind::UpstreamUnavailable => ("server_error", None),
    };
    json!({"error": {"message": e.message(), "type": kind, "param": Value::Null, "code": code}})
}

/// Turns canonical events into OpenAI `chat.completion.chunk`s (the OpenAI surface):
/// text deltas as `delta.content`, each `tool_use` block as a `tool_calls` entry with
/// its argument fragments, the stop reason as `finish_reason`, and, when the caller asked
/// with `stream_options.include_usage`, a last chunk with usage. `[DONE]` follows
/// `message_stop`.
#[derive(Debug)]
pub struct ChunkEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Usage,
    /// (canonical block index, tool-call index)
    tools: Vec<(u32, u32)>,
    done: bool,
}

impl ChunkEncoder {
    /// An encoder for one stream, `created` in Unix seconds.
    pub fn new(created: u64, include_usage: bool) -> Self {
        ChunkEncoder {
            id: String::new(),
            model: String::new(),
            created,
            include_usage,
            usage: Usage::default(),
            tools: Vec::new(),
            done: false,
        }
    }

    /// Whether `[DONE]` was written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": Value::Null, "finish_reason": finish}],
        });
        data_line(&c, out);
    }

    /// Appends the SSE lines (`data: ...\n\n`) for `ev` to `out` (possibly none).
    pub fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::MessageStart(s) => {
                self.id = s.message.id.clone();
                self.model = s.message.model.clone();
                self.usage.merge(&s.message.usage);
                self.chunk(json!({"role": "assistant", "content": ""}), None, out);
            }
            StreamEvent::ContentBlockStart(s) => {
                if let ContentBlock::ToolUse(u) = &*s.content_block {
                    let k = self.tools.len() as u32;
                    self.tools.push((s.index, k));
                    self.chunk(
                        json!({"tool_calls": [{"index": k, "id": u.id, "type": "function",
                            "function": {"name": u.name, "arguments": ""}}]}),
                        None,
                        out,
                    );
                }
            }
            StreamEvent::ContentBlockDelta(d) => match &d.delta {
                Delta::Text(t) if !t.text.is_empty() => {
                    self.chunk(json!({"content": t.text}), None, out);
                }
                Delta::InputJson(j) if !j.partial_json.is_empty() => {
                    if let Some((_, k)) = self.tools.iter().find(|(i, _)| *i == d.index) {
                        self.chunk(
                            json!({"tool_calls": [{"index": k, "function": {"arguments": j.partial_json}}]}),
                            None,
                            out,
                        );
                    }
                }
                _ => {}
            },
            StreamEvent::MessageDelta(d) => {
                if let Some(u) = &d.usage {
                    self.usage.merge(u);
                }
                if let Some(stop) = &d.delta.stop_reason {
                    self.chunk(json!({}), Some(finish_reason(stop)), out);
                }
            }
            StreamEvent::MessageStop(_) => {
                if self.include_usage {
                    let c = json!({
                        "id": self.id, "object": "chat.completion.chunk",
                        "created": self.created, "model": self.model,
                        "choices": [], "usage": openai_usage(&self.usage),
                    });
                    data_line(&c, out);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
            StreamEvent::Error(e) => {
                let err = AiError::from_detail(&e.error);
                data_line(&error_body(&err), out);
                self.done = true;
            }
            _ => {}
        }
    }

    /// Appends the line an error ends the stream with.
    pub fn error(&mut self, e: &AiError, out: &mut Vec<u8>) {
        if !self.done {
            data_line(&error_body(e), out);
            self.done = true;
        }
    }
}

fn data_line(v: &Value, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    // Serializing a Value to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

/// The OpenAI model list for an Anthropic one (`GET /v1/models` from an OpenAI SDK).
pub fn model_list(anthropic: &Value) -> Value {
    let data: Vec<Value> = anthropic["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(model_object)
        .collect();
    json!({"object": "list", "data": data})
}

/// The OpenAI model object for an Anthropic one.
pub fn model_object(m: &Value) -> Value {
    let created = m["created_at"].as_str().and_then(unix_seconds).unwrap_or(0);
    json!({"id": m["id"], "object": "model", "created": created, "owned_by": "anthropic"})
}

/// Unix seconds of an RFC 3339 UTC time (`2025-09-29T00:00:00Z`).
fn unix_seconds(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, s) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/openai")
            .join(name);
        std::fs::read(path).expect("fixture")
    }

    fn decode(raw: &[u8]) -> (Vec<Value>, ChunkDecoder) {
        let mut p = crate::sse::SseParser::new();
        p.feed(raw);
        let mut d = ChunkDecoder::new();
        let mut out = Vec::new();
        while let Some(ev) = p.next_event() {
            let ev = ev.expect("sse");
            d.chunk(&ev.data, &mut out).expect("chunk");
        }
        d.finish(&mut out);
        let v = out
            .iter()
            .map(|e| serde_json::to_value(e).expect("json"))
            .collect();
        (v, d)
    }

    #[test]
    fn a_recorded_text_stream_becomes_one_text_block() {
        let (ev, d) = decode(&fixture("stream_text.sse"));
        let kinds: Vec<&str> = ev
            .iter()
            .map(|e| e["type"].as_str().expect("type"))
            .collect();
        assert_eq!(kinds[0], "message_start");
        assert_eq!(kinds[1], "content_block_start");
        assert_eq!(
            &kinds[kinds.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        assert!(
            kinds[2..kinds.len() - 3]
                .iter()
                .all(|k| *k == "content_block_delta")
        );
        let text: String = ev
            .iter()
            .filter_map(|e| e["delta"]["text"].as_str())
            .collect();
        assert!(
            text.starts_with("I'm unable to provide real-time weather"),
            "{text}"
        );
        let md = &ev[ev.len() - 2];
        assert_eq!(md["delta"]["stop_reason"], "end_turn");
        assert!(d.usage_reported());
        assert!(md["usage"]["output_tokens"].as_u64().expect("usage") > 0);
        assert!(md["usage"]["input_tokens"].as_u64().expect("usage") > 0);
    }

    #[test]
    fn a_recorded_tool_call_stream_becomes_a_tool_use_block() {
        let (ev, _) = decode(&fixture("stream_tool_use.sse"));
        let start = ev
            .iter()
            .find(|e| e["type"] == "content_block_start")
            .expect("start");
        assert_eq!(start["content_block"]["type"], "tool_use");
        assert_eq!(start["content_block"]["name"], "get_weather");
        assert_eq!(
            start["content_block"]["id"],
            "call_CTf1nWJLqSeRgDqaCG27xZ74"
        );
        let args: String = ev
            .iter()
            .filter_map(|e| e["delta"]["partial_json"].as_str())
            .collect();
        let args: Value = serde_json::from_str(&args).expect("arguments are JSON");
        assert!(args["city"].is_string(), "{args}");
        let md = &ev[ev.len() - 2];
        assert_eq!(md["delta"]["stop_reason"], "tool_use");
        assert_eq!(md["usage"]["output_tokens"], 19);
        assert_eq!(md["usage"]["input_tokens"], 48);
    }

    fn selfhosted(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/selfhosted")
            .join(name);
        std::fs::read(path).expect("fixture")
    }

    #[test]
    fn self_hosted_streams_without_usage_get_an_estimate() {
        for (name, stop) in [
            ("vllm_stream_no_usage.sse", "max_tokens"),
            ("ollama_stream_text.sse", "end_turn"),
        ] {
            let raw = selfhosted(name);
            let (ev, d) = decode(&raw);
            assert!(!d.usage_reported(), "{name}");
            let text: String = ev
                .iter()
                .filter_map(|e| e["delta"]["text"].as_str())
                .collect();
            // Every content piece of the recording, in order.
            let mut want = String::new();
            let mut p = crate::sse::SseParser::new();
            p.feed(&raw);
            while let Some(e) = p.next_event() {
                let e = e.expect("sse");
                if let Ok(v) = serde_json::from_str::<Value>(&e.data) {
                    want.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
                }
            }
            assert_eq!(text, want, "{name}");
            assert!(!text.is_empty());
            let md = &ev[ev.len() - 2];
            assert_eq!(md["delta"]["stop_reason"], stop, "{name}");
            assert_eq!(
                md["usage"]["output_tokens"],
                text.len().div_ceil(4) as u64,
                "{name}"
            );
            let kinds: Vec<&str> = ev
                .iter()
                .map(|e| e["type"].as_str().expect("type"))
                .collect();
            assert_eq!(
                kinds
                    .iter()
                    .filter(|k| **k == "content_block_start")
                    .count(),
                1,
                "{name}"
            );
        }
        for name in ["vllm_message.json", "ollama_message.json"] {
            let v: Value = serde_json::from_slice(&selfhosted(name)).expect("json");
            let m = from_chat_completion(&v).expect("message");
            assert!(
                matches!(&m.content[0], ContentBlock::Text(t) if !t.text.is_empty()),
                "{name}"
            );
            assert!(m.stop_reason.is_some(), "{name}");
        }
    }

    #[test]
    fn a_recorded_message_maps_with_usage() {
        let v: Value = serde_json::from_slice(&fixture("message_basic.json")).expect("json");
        let m = from_chat_completion(&v).expect("message");
        assert_eq!(m.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(m.usage.input_tokens, Some(14));
        assert_eq!(m.usage.output_tokens, Some(37));
        let ContentBlock::Text(t) = &m.content[0] else {
            panic!("text")
        };
        assert!(t.text.starts_with("I'm unable"));
        let err: Value = serde_json::from_slice(&fixture("errors/error_429.json")).expect("json");
        assert_eq!(
            from_chat_completion(&err).expect_err("error").kind(),
            ErrorKind::RateLimit
        );
    }

    #[test]
    fn cached_prompt_tokens_are_cache_reads() {
        let u: OaUsage =
            serde_json::from_value(json!({"prompt_tokens": 1000, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 768}}))
            .expect("usage");
        let u = usage_of(&u);
        assert_eq!(
            (u.input_tokens, u.cache_read_input_tokens, u.output_tokens),
            (Some(232), Some(768), Some(5))
        );
    }

    #[test]
    fn an_error_chunk_mid_stream_is_an_error() {
        let mut d = ChunkDecoder::new();
        let mut out = Vec::new();
        d.chunk(
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            &mut out,
        )
        .expect("chunk");
        let e = d
            .chunk(r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#, &mut out)
            .expect_err("error");
        assert_eq!(e.kind(), ErrorKind::Api);
        assert!(e.message().contains("server had an error"));
    }

    #[test]
    fn without_usage_the_output_is_estimated() {
        let mut d = ChunkDecoder::new();
        let mut out = Vec::new();
        d.chunk(
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"twelve bytes"}}]}"#,
            &mut out,
        )
        .expect("chunk");
        d.chunk(
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            &mut out,
        )
        .expect("chunk");
        d.finish(&mut out);
        assert!(!d.usage_reported());
        let md = serde_json::to_value(&out[out.len() - 2]).expect("json");
        assert_eq!(md["delta"]["stop_reason"], "max_tokens");
        assert_eq!(md["usage"]["output_tokens"], 3);
        // Marked, for the client and the audit record.
        assert_eq!(md["usage"]["estimated"], true);
        let StreamEvent::MessageDelta(m) = &out[out.len() - 2] else {
            panic!("message_delta")
        };
        assert!(m.usage.as_ref().is_some_and(Usage::is_estimated));
        // Reported usage is not marked.
        assert!(!Usage::default().is_estimated());
    }

    #[test]
    fn requests_map_with_tools_results_and_images() {
        let req: MessagesRequest = serde_json::from_value(json!({
            "model": "gpt-4o", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}],
            "temperature": 0.2, "stop_sequences": ["END"], "top_k": 5,
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "metadata": {"user_id": "u-1"},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "text", "text": "Thanks"}]}
            ]
        }))
        .expect("request");
        let v = to_chat_request(&req, MaxTokensField::MaxCompletionTokens);
        assert_eq!(v["max_completion_tokens"], 100);
        assert_eq!(v["stop"], json!(["END"]));
        assert_eq!(v["tool_choice"], "required");
        assert_eq!(v["parallel_tool_calls"], false);
        assert_eq!(v["user"], "u-1");
        assert!(v.get("top_k").is_none());
        let m = v["messages"].as_array().expect("messages");
        let roles: Vec<&str> = m
            .iter()
            .map(|x| x["role"].as_str().expect("role"))
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBOR"
        );
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(m[3]["tool_call_id"], "toolu_1");
        assert_eq!(
            v["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
            "string"
        );
        let back = from_chat_request(&v).expect("back");
        assert_eq!(back.messages.len(), 3);
        assert_eq!(back.max_tokens, Some(100));
        assert_eq!(
            back.tool_choice
                .as_ref()
                .map(|c| c.to_value().expect("json")),
            Some(json!({"type": "any", "disable_parallel_tool_use": true}))
        );
        assert!(
            from_chat_request(
                &json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]})
            )
            .is_err()
        );
        assert!(from_chat_request(&json!({"messages": []})).is_err());
    }

    /// What the mapping must keep: per turn, the text, the tool calls (id, name,
    /// arguments) and the tool results (id, text).
    /// One turn's role, text, tool calls (id, name, arguments) and results (id, text).
    type Turn = (
        Role,
        String,
        Vec<(String, String, Value)>,
        Vec<(String, String)>,
    );

    fn essence(r: &MessagesRequest) -> Vec<Turn> {
        r.messages
            .iter()
            .map(|m| {
                let mut text = String::new();
                let mut calls = Vec::new();
                let mut results = Vec::new();
                match &m.content {
                    Content::Text(s) => text.push_str(s),
                    Content::Blocks(bs) => {
                        for b in bs {
                            match b {
                                ContentBlock::Text(t) => text.push_str(&t.text),
                                ContentBlock::ToolUse(u) => calls.push((
                                    u.id.clone(),
                                    u.name.clone(),
                                    u.input.to_value().expect("json"),
                                )),
                                ContentBlock::ToolResult(r) => results.push((
                                    r.tool_use_id.clone(),
                                    r.content.as_ref().map(text_of).unwrap_or_default(),
                                )),
                                _ => {}
                            }
                        }
                    }
                }
                (m.role, text, calls, results)
            })
            .collect()
    }

    #[test]
    fn canonical_streams_encode_as_openai_chunks_and_decode_back() {
        // The recorded Anthropic tool-use stream, as OpenAI chunks, decoded again.
        let raw = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/anthropic/stream_tool_use.sse"),
        )
        .expect("fixture");
        let events: Vec<StreamEvent> = crate::sse::parse_all(&raw)
            .into_iter()
            .map(|e| e.expect("event"))
            .collect();
        let mut enc = ChunkEncoder::new(1_700_000_000, true);
        let mut out = Vec::new();
        for e in &events {
            enc.event(e, &mut out);
        }
        assert!(enc.is_done());
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.ends_with("data: [DONE]\n\n"));
        let (ev, d) = decode(text.as_bytes());
        assert!(d.usage_reported());
        let kinds: Vec<&str> = ev
            .iter()
            .map(|e| e["type"].as_str().expect("type"))
            .collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| **k == "content_block_start")
                .count(),
            2
        );
        let tool = ev
            .iter()
            .find(|e| e["content_block"]["type"] == "tool_use")
            .expect("tool");
        assert_eq!(tool["content_block"]["name"], "get_weather");
        let md = &ev[ev.len() - 2];
        assert_eq!(md["delta"]["stop_reason"], "tool_use");
        // The recording's usage: 377 in, the final output count.
        assert_eq!(md["usage"]["input_tokens"], 377);
    }

    #[test]
    fn messages_errors_and_models_take_openai_shapes() {
        let m: MessagesResponse = serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "Hi"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90}
        }))
        .expect("message");
        let c = to_chat_completion(&m, 5);
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            r#"{"a":1}"#
        );
        assert_eq!(c["usage"]["prompt_tokens"], 100);
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 90);
        let back = from_chat_completion(&c).expect("back");
        assert_eq!(back.usage.input_tokens, Some(10));
        let e = error_body(&AiError::new(ErrorKind::RateLimit, "slow down"));
        assert_eq!(e["error"]["code"], "rate_limit_exceeded");
        let list = model_list(
            &json!({"data": [{"type": "model", "id": "claude-sonnet-4-5-20250929",
            "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"}]}),
        );
        assert_eq!(list["data"][0]["created"], 1_759_104_000);
        assert_eq!(list["data"][0]["object"], "model");
        assert_eq!(list["data"][0]["owned_by"], "anthropic");
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2000-03-01T12:00:00Z"), Some(951_912_000));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// canonical -> OpenAI -> canonical keeps text, tool calls and tool results.
        #[test]
        fn the_round_trip_keeps_text_tools_and_results(
            turns in proptest::collection::vec(
                (
                    "[a-zA-Z0-9 ,.!?é\n]{1,40}",
                    proptest::collection::vec(("[a-z_]{1,12}", "[a-zA-Z0-9 ]{0,16}"), 0..3),
                ),
                1..6,
            ),
        ) {
            // user text; assistant text + calls; user results for those calls + text.
            let mut messages = Vec::new();
            let mut pending: Vec<String> = Vec::new();
            for (i, (text, calls)) in turns.iter().enumerate() {
                let mut user = Vec::new();
                for (k, id) in pending.drain(..).enumerate() {
                    user.push(json!({"type": "tool_result", "tool_use_id": id, "content": format!("result {k}")}));
                }
                user.push(json!({"type": "text", "text": text}));
                messages.push(json!({"role": "user", "content": user}));
                let mut asst = vec![json!({"type": "text", "text": format!("ok {i}")})];
                for (j, (name, arg)) in calls.iter().enumerate() {
                    let id = format!("toolu_{i}_{j}");
                    asst.push(json!({"type": "tool_use", "id": id, "name": name, "input": {"q": arg, "n": j}}));
                    pending.push(id);
                }
                messages.push(json!({"role": "assistant", "content": asst}));
            }
            let req: MessagesRequest = serde_json::from_value(json!({"model": "m", "max_tokens": 10, "messages": messages})).expect("req");
            let back = from_chat_request(&to_chat_request(&req, MaxTokensField::MaxTokens)).expect("back");
            prop_assert_eq!(essence(&back), essence(&req));
        }
    }
}
