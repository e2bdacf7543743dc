use super::content::ContentBlock;
use super::event::{
    CitationsDelta, ContentBlockDeltaEvent, ContentBlockStartEvent, ContentBlockStopEvent, Delta,
    InputJsonDelta, MessageDeltaBody, MessageDeltaEvent, MessageStartEvent, MessageStopEvent,
    SignatureDelta, StreamEvent, TextDelta, ThinkingDelta,
};
use super::raw::{Extra, RawJson};
use super::request::Role;

wire_struct! {
    /// Token counts. Every field is optional because `message_delta` events carry only
    /// some of them; absent fields stay absent on the way out.
    pub struct Usage {
        /// Input tokens not read from or written to the cache.
        opt input_tokens: u64,
        /// Output tokens (cumulative in stream events).
        opt output_tokens: u64,
        /// Input tokens written to the prompt cache.
        opt cache_creation_input_tokens: u64,
        /// Input tokens read from the prompt cache.
        opt cache_read_input_tokens: u64,
    }
}

/// The usage field that marks estimated counts.
const ESTIMATED: &str = "estimated";

impl Usage {
    /// Folds a later report into this one: present fields overwrite, as the SDKs do with
    /// `message_delta` usage (its counts are cumulative).
    pub fn merge(&mut self, later: &Usage) {
        fn set(slot: &mut Option<u64>, v: Option<u64>) {
            if v.is_some() {
                *slot = v;
            }
        }
        set(&mut self.input_tokens, later.input_tokens);
        set(&mut self.output_tokens, later.output_tokens);
        set(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        set(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        for (k, v) in later.extra.iter() {
            self.extra.insert(k, v.clone());
        }
    }

    /// All input tokens: uncached + cache writes + cache reads.
    pub fn total_input(&self) -> u64 {
        self.input_tokens.unwrap_or(0)
            + self.cache_creation_input_tokens.unwrap_or(0)
            + self.cache_read_input_tokens.unwrap_or(0)
    }

    /// Output tokens, 0 when unknown.
    pub fn output(&self) -> u64 {
        self.output_tokens.unwrap_or(0)
    }

    /// Marks these counts as the gateway's estimate (an upstream that reported none, like
    /// a self-hosted server without usage): `"estimated": true` travels with the usage to
    /// the client and into the audit record.
    pub fn mark_estimated(&mut self) {
        self.extra
            .insert(ESTIMATED, RawJson::from_value(&true.into()));
    }

    /// Whether these counts are the gateway's estimate ([`Usage::mark_estimated`]).
    pub fn is_estimated(&self) -> bool {
        self.extra.get(ESTIMATED).is_some_and(|v| v.get() == "true")
    }
}

wire_struct! {
    /// A whole message: the non-streaming response, and the `message` of `message_start`.
    pub struct MessagesResponse {
        /// Message id, `msg_...`.
        req id: String,
        /// Always `"message"`.
        req kind: String = "type",
        /// Always `assistant`.
        req role: Role,
        /// Content blocks.
        req content: Vec<ContentBlock>,
        /// The model that answered.
        req model: String,
        /// Why generation stopped (`end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, ...).
        req stop_reason: Option<String>,
        /// The stop sequence that matched, if any.
        req stop_sequence: Option<String>,
        /// Token counts.
        req usage: Usage,
    }
}

impl MessagesResponse {
    /// The events a streamed answer with this content would have carried, in order:
    /// `message_start` (the shell, with the usage), for each block `content_block_start`,
    /// its deltas and `content_block_stop`, then `message_delta` (stop reason and usage)
    /// and `message_stop`. Accumulating them, as the SDKs do, gives this message back:
    /// text as one `text_delta` plus a `citations_delta` per citation, a tool's input as
    /// one `input_json_delta` (its raw JSON, unchanged), thinking as a `thinking_delta`
    /// and a `signature_delta`; other blocks arrive whole in their `content_block_start`.
    pub fn into_stream_events(self) -> Vec<StreamEvent> {
        let MessagesResponse {
            id,
            kind,
            role,
            content,
            model,
            stop_reason,
            stop_sequence,
            usage,
            extra,
        } = self;
        let mut out = Vec::with_capacity(3 + content.len() * 3);
        out.push(StreamEvent::MessageStart(MessageStartEvent {
            message: Box::new(MessagesResponse {
                id,
                kind,
                role,
                content: Vec::new(),
                model,
                stop_reason: None,
                stop_sequence: None,
                usage: usage.clone(),
                extra,
            }),
            extra: Extra::new(),
        }));
        for (index, block) in (0u32..).zip(content) {
            let (start, deltas) = split_block(block);
            out.push(StreamEvent::ContentBlockStart(ContentBlockStartEvent {
                index,
                content_block: Box::new(start),
                extra: Extra::new(),
            }));
            out.extend(deltas.into_iter().map(|delta| {
                StreamEvent::ContentBlockDelta(ContentBlockDeltaEvent {
                    index,
                    delta,
                    extra: Extra::new(),
                })
            }));
            out.push(StreamEvent::ContentBlockStop(ContentBlockStopEvent {
                index,
                extra: Extra::new(),
            }));
        }
        out.push(StreamEvent::MessageDelta(MessageDeltaEvent {
            delta: MessageDeltaBody {
                stop_reason,
                stop_sequence,
                extra: Extra::new(),
            },
            usage: Some(usage),
            extra: Extra::new(),
        }));
        out.push(StreamEvent::MessageStop(MessageStopEvent::default()));
        out
    }
}

/// A block as its `content_block_start` shows it, and the deltas that complete it.
fn split_block(block: ContentBlock) -> (ContentBlock, Vec<Delta>) {
    match block {
        ContentBlock::Text(mut t) => {
            let mut deltas = Vec::new();
            let text = std::mem::take(&mut t.text);
            if !text.is_empty() {
                deltas.push(Delta::Text(TextDelta {
                    text,
                    extra: Extra::new(),
                }));
            }
            if let Some(citations) = t.citations.take() {
                match citations.parse::<Vec<RawJson>>() {
                    Ok(list) => deltas.extend(list.into_iter().map(|citation| {
                        Delta::Citations(CitationsDelta {
                            citation,
                            extra: Extra::new(),
                        })
                    })),
                    // `null` or another shape: keep it on the block as it came.
                    Err(_) => t.citations = Some(citations),
                }
            }
            (ContentBlock::Text(t), deltas)
        }
        ContentBlock::ToolUse(mut u) => {
            let input = std::mem::replace(&mut u.input, RawJson::empty_object());
            let deltas = if input.get() == "{}" {
                Vec::new()
            } else {
                vec![Delta::InputJson(InputJsonDelta {
                    partial_json: input.get().to_owned(),
                    extra: Extra::new(),
                })]
            };
            (ContentBlock::ToolUse(u), deltas)
        }
        ContentBlock::Thinking(mut th) => {
            let mut deltas = Vec::new();
            let thinking = std::mem::take(&mut th.thinking);
            if !thinking.is_empty() {
                deltas.push(Delta::Thinking(ThinkingDelta {
                    thinking,
                    extra: Extra::new(),
                }));
            }
            if let Some(signature) = th.signature.replace(String::new()) {
                deltas.push(Delta::Signature(SignatureDelta {
                    signature,
                    extra: Extra::new(),
                }));
            }
            (ContentBlock::Thinking(th), deltas)
        }
        other => (other, Vec::new()),
    }
}
