use super::content::ContentBlock;
use super::raw::RawJson;
use super::response::{MessagesResponse, Usage};

wire_struct! {
    /// `message_start`: the message shell with input usage.
    pub struct MessageStartEvent {
        /// The message, with empty content (boxed: it is the one large event, and every
        /// event is moved through each layer's stream).
        req message: Box<MessagesResponse>,
    }
}

wire_struct! {
    /// `content_block_start`.
    pub struct ContentBlockStartEvent {
        /// Block index.
        req index: u32,
        /// The block, with empty text/input (boxed, like `message_start`'s message).
        req content_block: Box<ContentBlock>,
    }
}

wire_struct! {
    /// `content_block_delta`.
    pub struct ContentBlockDeltaEvent {
        /// Block index.
        req index: u32,
        /// The increment.
        req delta: Delta,
    }
}

wire_struct! {
    /// `content_block_stop`.
    pub struct ContentBlockStopEvent {
        /// Block index.
        req index: u32,
    }
}

wire_struct! {
    /// The `delta` of `message_delta`.
    pub struct MessageDeltaBody {
        /// Why generation stopped.
        req stop_reason: Option<String>,
        /// The stop sequence that matched.
        req stop_sequence: Option<String>,
    }
}

wire_struct! {
    /// `message_delta`: stop reason and cumulative usage.
    pub struct MessageDeltaEvent {
        /// Top-level changes to the message.
        req delta: MessageDeltaBody,
        /// Cumulative usage.
        opt usage: Usage,
    }
}

wire_struct! {
    /// `message_stop`.
    pub struct MessageStopEvent {}
}

wire_struct! {
    /// `ping`.
    pub struct PingEvent {}
}

wire_struct! {
    /// The `error` object of an error body or `event: error`.
    pub struct ErrorDetail {
        /// Error type, e.g. `overloaded_error`.
        req kind: String = "type",
        /// Human-readable message.
        req message: String,
    }
}

wire_struct! {
    /// `error`: the stream failed after it started.
    pub struct ErrorEvent {
        /// What went wrong.
        req error: ErrorDetail,
    }
}

wire_tagged_enum! {
    /// One server-sent event of a streamed Messages response.
    pub enum StreamEvent ("type") {
        /// `message_start`.
        MessageStart(MessageStartEvent) = "message_start",
        /// `content_block_start`.
        ContentBlockStart(ContentBlockStartEvent) = "content_block_start",
        /// `content_block_delta`.
        ContentBlockDelta(ContentBlockDeltaEvent) = "content_block_delta",
        /// `content_block_stop`.
        ContentBlockStop(ContentBlockStopEvent) = "content_block_stop",
        /// `message_delta`.
        MessageDelta(MessageDeltaEvent) = "message_delta",
        /// `message_stop`.
        MessageStop(MessageStopEvent) = "message_stop",
        /// `ping`.
        Ping(PingEvent) = "ping",
        /// `error`.
        Error(ErrorEvent) = "error",
    }
}

wire_struct! {
    /// `text_delta`.
    pub struct TextDelta {
        /// Text to append.
        req text: String,
    }
}

wire_struct! {
    /// `input_json_delta`: a fragment of a tool call's JSON input.
    pub struct InputJsonDelta {
        /// JSON text to append (not valid JSON on its own).
        req partial_json: String,
    }
}

wire_struct! {
    /// `thinking_delta`.
    pub struct ThinkingDelta {
        /// Thinking text to append.
        req thinking: String,
    }
}

wire_struct! {
    /// `signature_delta`: the signature of a thinking block.
    pub struct SignatureDelta {
        /// The signature.
        req signature: String,
    }
}

wire_struct! {
    /// `citations_delta`.
    pub struct CitationsDelta {
        /// One citation to add to the current text block.
        req citation: RawJson,
    }
}

wire_tagged_enum! {
    /// The increment of a `content_block_delta`.
    pub enum Delta ("type") {
        /// `text_delta`.
        Text(TextDelta) = "text_delta",
        /// `input_json_delta`.
        InputJson(InputJsonDelta) = "input_json_delta",
        /// `thinking_delta`.
        Thinking(ThinkingDelta) = "thinking_delta",
        /// `signature_delta`.
        Signature(SignatureDelta) = "signature_delta",
        /// `citations_delta`.
        Citations(CitationsDelta) = "citations_delta",
    }
}

impl StreamEvent {
    /// A text delta event for block `index`.
    pub fn text_delta(index: u32, text: impl Into<String>) -> Self {
        StreamEvent::ContentBlockDelta(ContentBlockDeltaEvent {
            index,
            delta: Delta::Text(TextDelta {
                text: text.into(),
                extra: Default::default(),
            }),
            extra: Default::default(),
        })
    }
}

impl Default for Delta {
    fn default() -> Self {
        Delta::Text(TextDelta::default())
    }
}

impl Default for StreamEvent {
    fn default() -> Self {
        StreamEvent::Ping(PingEvent::default())
    }
}
