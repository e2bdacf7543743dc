//! A local token estimate: what the gateway counts before the upstream reports usage
//! (rate limits reserve on it; the audit record keeps it next to the upstream's figure so
//! the drift can be reconciled at billing time).
//!
//! No tokenizer is shipped for Claude, so this is an estimate by size: about four bytes
//! of text per token, a fixed overhead per message and per tool, a fixed charge for an
//! image and for a document page. It errs high on ASCII prose and low on dense code in
//! some scripts; it is an estimate, never a bill.
//!
//! ```
//! use ai_core::{tokens, MessagesRequest, Message, Content, Role};
//! let req = MessagesRequest {
//!     model: "m".into(),
//!     messages: vec![Message { role: Role::User, content: Content::Text("hello there, model".into()), ..Default::default() }],
//!     ..Default::default()
//! };
//! assert!(tokens::estimate_request(&req) > 4);
//! ```

use crate::wire::{Content, ContentBlock, MessagesRequest};

/// Tokens charged for an image whose size is unknown (about a 1.2 megapixel image,
/// `width * height / 750`).
pub const IMAGE_TOKENS: u64 = 1_600;
/// Tokens charged per message for role and framing.
pub const MESSAGE_OVERHEAD: u64 = 4;
/// Tokens of the system prompt the API adds when a request carries tools. Anthropic
/// documents 159 to 530 by model and `tool_choice`; recorded calls of current models show
/// about 300 (see docs/ai-ratelimit.md, "The estimator").
pub const TOOLS_OVERHEAD: u64 = 300;

/// Estimated tokens of a text.
pub fn estimate_text(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

fn estimate_content(c: &Content) -> u64 {
    match c {
        Content::Text(t) => estimate_text(t),
        Content::Blocks(blocks) => blocks.iter().map(estimate_block).sum(),
    }
}

fn estimate_block(b: &ContentBlock) -> u64 {
    match b {
        ContentBlock::Text(t) => estimate_text(&t.text),
        ContentBlock::Image(_) => IMAGE_TOKENS,
        // A document's size is its source's size (base64 data, or text).
        ContentBlock::Document(d) => (d.source.get().len() as u64).div_ceil(4),
        ContentBlock::ToolUse(u) => estimate_text(&u.name) + estimate_text(u.input.get()),
        ContentBlock::ToolResult(r) => r.content.as_ref().map_or(1, estimate_content),
        ContentBlock::Thinking(t) => estimate_text(&t.thinking),
        ContentBlock::RedactedThinking(t) => estimate_text(&t.data),
        ContentBlock::Other(o) => (o.json().get().len() as u64).div_ceil(4),
    }
}

/// Estimated input tokens of a request: system prompt, messages, tool definitions.
pub fn estimate_request(req: &MessagesRequest) -> u64 {
    let system = req.system.as_ref().map_or(0, estimate_content);
    let messages: u64 = req
        .messages
        .iter()
        .map(|m| MESSAGE_OVERHEAD + estimate_content(&m.content))
        .sum();
    let tools: u64 = req
        .tools
        .as_ref()
        .filter(|ts| !ts.is_empty())
        .map_or(0, |ts| {
            TOOLS_OVERHEAD
                + ts.iter()
                    .map(|t| {
                        MESSAGE_OVERHEAD
                            + t.name.as_deref().map_or(0, estimate_text)
                            + t.description.as_deref().map_or(0, estimate_text)
                            + t.input_schema
                                .as_ref()
                                .map_or(0, |s| (s.get().len() as u64).div_ceil(4))
                    })
                    .sum::<u64>()
        });
    system + messages + tools
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Message, Role};

    #[test]
    fn grows_with_text_and_charges_images() {
        let text = |t: &str| MessagesRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::User,
                content: Content::Text(t.into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let short = estimate_request(&text("hi"));
        let long = estimate_request(&text(&"word ".repeat(400)));
        assert_eq!(short, MESSAGE_OVERHEAD + 1);
        assert_eq!(long, MESSAGE_OVERHEAD + 500);
        let img: MessagesRequest = serde_json::from_str(
            r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}]}"#,
        )
        .expect("parse");
        assert_eq!(estimate_request(&img), MESSAGE_OVERHEAD + IMAGE_TOKENS);
    }
}
