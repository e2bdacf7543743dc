use super::raw::RawJson;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

wire_struct! {
    /// `{"type": "text"}`: plain text, with optional citations and cache control.
    pub struct TextBlock {
        /// The text.
        req text: String,
        /// Citations attached by the model (responses) or kept from a previous turn.
        raw citations: RawJson,
        /// Prompt-caching breakpoint, e.g. `{"type": "ephemeral"}`.
        raw cache_control: RawJson,
    }
}

wire_struct! {
    /// `{"type": "image"}`: an image given by base64 data, URL or file id.
    pub struct ImageBlock {
        /// The image source object (`base64`, `url`, `file`).
        req source: RawJson,
        /// Prompt-caching breakpoint.
        raw cache_control: RawJson,
    }
}

wire_struct! {
    /// `{"type": "document"}`: a PDF or text document.
    pub struct DocumentBlock {
        /// The document source object.
        req source: RawJson,
        /// Optional title.
        opt title: String,
        /// Optional context about the document.
        opt context: String,
        /// Citation settings, e.g. `{"enabled": true}`.
        raw citations: RawJson,
        /// Prompt-caching breakpoint.
        raw cache_control: RawJson,
    }
}

wire_struct! {
    /// `{"type": "tool_use"}`: the model calls a tool.
    pub struct ToolUseBlock {
        /// Tool call id, echoed by the matching `tool_result`.
        req id: String,
        /// Tool name.
        req name: String,
        /// The arguments, a JSON object.
        req input: RawJson,
        /// Prompt-caching breakpoint.
        raw cache_control: RawJson,
    }
}

wire_struct! {
    /// `{"type": "tool_result"}`: the caller returns a tool's output.
    pub struct ToolResultBlock {
        /// The `id` of the `tool_use` this answers.
        req tool_use_id: String,
        /// The output: a string or content blocks.
        opt content: Content,
        /// Whether the tool failed.
        opt is_error: bool,
        /// Prompt-caching breakpoint.
        raw cache_control: RawJson,
    }
}

wire_struct! {
    /// `{"type": "thinking"}`: extended-thinking output, signed by the API.
    pub struct ThinkingBlock {
        /// The thinking text.
        req thinking: String,
        /// Signature that lets the block be sent back in a later turn.
        opt signature: String,
    }
}

wire_struct! {
    /// `{"type": "redacted_thinking"}`: thinking the API returned encrypted.
    pub struct RedactedThinkingBlock {
        /// Opaque encrypted data.
        req data: String,
    }
}

wire_tagged_enum! {
    /// One content block of a message, request or response.
    pub enum ContentBlock ("type") {
        /// Text.
        Text(TextBlock) = "text",
        /// Image.
        Image(ImageBlock) = "image",
        /// Document.
        Document(DocumentBlock) = "document",
        /// Tool call by the model.
        ToolUse(ToolUseBlock) = "tool_use",
        /// Tool output from the caller.
        ToolResult(ToolResultBlock) = "tool_result",
        /// Extended thinking.
        Thinking(ThinkingBlock) = "thinking",
        /// Encrypted thinking.
        RedactedThinking(RedactedThinkingBlock) = "redacted_thinking",
    }
}

impl Default for ContentBlock {
    fn default() -> Self {
        ContentBlock::text("")
    }
}

impl ContentBlock {
    /// A text block with no citations or cache control.
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text(TextBlock {
            text: text.into(),
            ..TextBlock::default()
        })
    }
}

/// A string or a list of content blocks: the shape of `message.content`, `system` and
/// `tool_result.content`. The form the caller used is kept.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// The string shorthand.
    Text(String),
    /// Content blocks.
    Blocks(Vec<ContentBlock>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Blocks(Vec::new())
    }
}

impl Content {
    /// Calls `f` on every text this content carries (the string, text blocks, and the text
    /// inside tool results), in order.
    pub fn for_each_text<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Content::Text(t) => f(t),
            Content::Blocks(blocks) => {
                for b in blocks {
                    match b {
                        ContentBlock::Text(t) => f(&t.text),
                        ContentBlock::ToolResult(r) => {
                            if let Some(c) = &r.content {
                                c.for_each_text(f);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(t) => s.serialize_str(t),
            Content::Blocks(b) => b.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of content blocks")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
                Ok(Content::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
                Ok(Content::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut blocks = Vec::with_capacity(seq.size_hint().unwrap_or(2).min(64));
                while let Some(b) = seq.next_element::<ContentBlock>()? {
                    blocks.push(b);
                }
                Ok(Content::Blocks(blocks))
            }
        }
        d.deserialize_any(V)
    }
}
