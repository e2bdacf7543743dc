//! Canonical wire types: the Anthropic Messages API.
//!
//! Every object keeps the fields this version does not model in an [`Extra`] list and
//! writes them back, and every tagged union has an `Other(`[`OtherObject`]`)` variant for
//! tags it does not know, so a field or block type the API adds tomorrow passes through
//! the gateway as sent. What is not modelled is held as [`RawJson`], the exact text the
//! sender wrote: big integers, long decimals, escapes and key order are not touched.

#[macro_use]
mod macros;
mod content;
pub(crate) mod de;
mod event;
pub(crate) mod raw;
mod request;
mod response;

pub use content::{
    Content, ContentBlock, DocumentBlock, ImageBlock, RedactedThinkingBlock, TextBlock,
    ThinkingBlock, ToolResultBlock, ToolUseBlock,
};
pub use event::{
    CitationsDelta, ContentBlockDeltaEvent, ContentBlockStartEvent, ContentBlockStopEvent, Delta,
    ErrorDetail, ErrorEvent, InputJsonDelta, MessageDeltaBody, MessageDeltaEvent,
    MessageStartEvent, MessageStopEvent, PingEvent, SignatureDelta, StreamEvent, TextDelta,
    ThinkingDelta,
};
pub use raw::{Extra, OtherObject, RawJson};
pub use request::{Message, MessagesRequest, Role, Tool};
pub use response::{MessagesResponse, Usage};
