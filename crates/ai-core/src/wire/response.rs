use super::content::ContentBlock;
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
        for (k, v) in &later.extra {
            self.extra.insert(k.clone(), v.clone());
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
