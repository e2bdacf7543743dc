use super::content::Content;
use super::raw::RawJson;
use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The caller.
    #[default]
    User,
    /// The model.
    Assistant,
}

wire_struct! {
    /// One turn of the conversation.
    pub struct Message {
        /// `user` or `assistant`.
        req role: Role,
        /// A string or content blocks.
        req content: Content,
    }
}

wire_struct! {
    /// A tool the model may call. Server tools (`{"type": "web_search_20250305", ...}`) keep
    /// their `type` and other fields in `extra`.
    pub struct Tool {
        /// Tool name.
        opt name: String,
        /// What the tool does.
        opt description: String,
        /// JSON Schema of the input.
        raw input_schema: RawJson,
        /// Prompt-caching breakpoint.
        raw cache_control: RawJson,
    }
}

wire_struct! {
    /// `POST /v1/messages` (and `/v1/messages/count_tokens`) request body.
    pub struct MessagesRequest {
        /// Model name or alias.
        req model: String,
        /// Output cap. Required by `/v1/messages` (the edge codec checks it), absent on
        /// `count_tokens`.
        opt max_tokens: u32,
        /// The conversation.
        req messages: Vec<Message>,
        /// System prompt: a string or text blocks.
        opt system: Content,
        /// Stream the answer as server-sent events.
        opt stream: bool,
        /// Sampling temperature.
        opt temperature: f64,
        /// Nucleus sampling.
        opt top_p: f64,
        /// Top-k sampling.
        opt top_k: u32,
        /// Custom stop sequences.
        opt stop_sequences: Vec<String>,
        /// Tools the model may call.
        opt tools: Vec<Tool>,
        /// How the model picks tools.
        raw tool_choice: RawJson,
        /// Extended thinking settings.
        raw thinking: RawJson,
        /// Request metadata, e.g. `{"user_id": "..."}`.
        raw metadata: RawJson,
        /// Service tier preference.
        opt service_tier: String,
    }
}

impl MessagesRequest {
    /// Whether the caller asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
}
