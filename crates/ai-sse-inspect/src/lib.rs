//! ai-sse-inspect: inspect the model's answer as it streams, cut it cleanly on a
//! violation, and police tool calls.
//!
//! - [`InspectLayer`]: the tower layer over `Response<AiBody>`. For streams, each text
//!   block passes through a sliding window of the last N tokens (default 64; a token is
//!   [`BYTES_PER_TOKEN`] bytes): classifiers run over the window on every delta, so a
//!   finding split across deltas is caught, and text is released once it is older than
//!   the window. Whole messages get the same classifiers over their whole text.
//! - Classifiers implement [`ai_core::Classifier`]: `ai-redact`'s detectors
//!   (`ai_redact::DetectorClassifier`), the [`SystemPromptLeak`] detector, a phrase
//!   [`DenyList`], or your own.
//! - [`InspectPolicy`]: the window and an [`Action`] per finding kind: `block` ends the
//!   answer with `stop_reason: "policy_block"` and a `policy_reason_code`
//!   (`completion.pii.detected`) and drops the upstream request; `redact` replaces the
//!   finding in flight; `flag` records it.
//! - [`ToolPolicy`]: `tool_use` blocks are held until complete, then their name and
//!   arguments are checked (allow-list, principal scopes, tenant and URL-domain rules).
//!
//! ```
//! use ai_core::test_util::{MockProvider, Script};
//! use ai_core::{AiBody, StreamEvent};
//! use ai_sse_inspect::{DenyList, InspectLayer, InspectPolicy};
//! use futures_util::StreamExt;
//! use std::sync::Arc;
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // The model says the codename across two deltas.
//! let sse = concat!(
//!     "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
//!     "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
//!     "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"The plan is Project Fal\"}}\n\n",
//!     "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"con, launching soon.\"}}\n\n",
//!     "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
//!     "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}\n\n",
//!     "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
//! );
//! let upstream = MockProvider::always(Script::sse(sse.as_bytes()));
//! let layer = InspectLayer::new(InspectPolicy::default())
//!     .classifier(Arc::new(DenyList::new(["Project Falcon"]).unwrap()));
//! let svc = layer.layer(upstream);
//! let req: ai_core::MessagesRequest = serde_json::from_str(
//!     r#"{"model":"m","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"plans?"}]}"#,
//! ).unwrap();
//! let AiBody::Events(mut events) = svc.oneshot(http::Request::new(req)).await.unwrap().into_body()
//! else { panic!() };
//! let mut text = String::new();
//! let mut last = None;
//! while let Some(ev) = events.next().await {
//!     let ev = ev.unwrap();
//!     if let StreamEvent::ContentBlockDelta(d) = &ev {
//!         if let ai_core::wire::Delta::Text(t) = &d.delta { text.push_str(&t.text); }
//!     }
//!     last = Some(serde_json::to_value(&ev).unwrap());
//! }
//! assert_eq!(text, "The plan is "); // nothing of the codename got out
//! assert_eq!(last.unwrap()["policy_reason_code"], "completion.deny_list.detected");
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod classifiers;
mod layer;
mod policy;
pub mod tools;
mod window;

pub use classifiers::{DenyList, SystemPromptLeak};
pub use layer::{InspectLayer, InspectService};
pub use policy::{Action, BYTES_PER_TOKEN, CONTEXT_BYTES, InspectPolicy, reason_code};
pub use tools::{ArgCheck, PrincipalField, ToolPolicy, ToolRule, ToolViolation};

/// Describes the metrics this crate records (call once after installing a recorder).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "gateway_inspect_findings_total",
        "Findings in model answers, by kind and action"
    );
    metrics::describe_counter!(
        "gateway_inspect_blocks_total",
        "Answers cut short with policy_block, by reason code"
    );
    metrics::describe_counter!(
        "gateway_inspect_tool_calls_total",
        "Tool calls checked, by decision"
    );
}
