//! The shared vocabulary of the ai-gateway layers.
//!
//! Every layer crate depends on `ai-core` and on no sibling, so any layer can be used
//! alone. This crate owns:
//!
//! - [`wire`]: the canonical wire types, which are the Anthropic Messages API
//!   ([`MessagesRequest`], [`ContentBlock`], [`MessagesResponse`], [`StreamEvent`],
//!   [`Usage`]); unknown fields and block types are kept and forwarded unchanged;
//! - [`AiBody`] (a whole message, or a stream of typed events) and [`AiError`];
//! - the extension types layers pass in `http::Extensions` ([`ext`]);
//! - the OpenAI Chat Completions mapping ([`openai`]), shared by OpenAI providers and
//!   the OpenAI surface;
//! - the [`classify::Classifier`] trait, so detectors plug into any inspecting layer;
//! - the completion hook ([`AiBody::on_complete`], [`CompletionFuture`]): one call when a
//!   response is over, for messages, streams that end or fail, and client drops;
//! - SSE framing ([`sse`]): an incremental parser and an encoder;
//! - a local token estimate ([`tokens`]);
//! - the edge codec [`MessagesCodecLayer`]: HTTP bytes to typed and back.
//!
//! # Example
//!
//! The edge codec in front of a typed service: the handler sees a parsed request and
//! returns a typed message; the client sees Anthropic's JSON.
//!
//! ```
//! use ai_core::{AiBody, AiError, ContentBlock, MessagesCodecLayer, MessagesRequest, MessagesResponse};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = ServiceBuilder::new()
//!     .layer(MessagesCodecLayer::new())
//!     .service(service_fn(|req: Request<MessagesRequest>| async move {
//!         let reply = MessagesResponse {
//!             id: "msg_1".into(),
//!             kind: "message".into(),
//!             model: req.body().model.clone(),
//!             content: vec![ContentBlock::text("hi")],
//!             stop_reason: Some("end_turn".into()),
//!             ..Default::default()
//!         };
//!         Ok::<_, AiError>(Response::new(AiBody::from(reply)))
//!     }));
//!
//! let req = Request::post("/v1/messages")
//!     .header("content-type", "application/json")
//!     .body(Full::new(bytes::Bytes::from_static(
//!         br#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}"#,
//!     )))?;
//! let resp = svc.oneshot(req).await?;
//! assert_eq!(resp.status(), 200);
//! let body = resp.into_body().collect().await?.to_bytes();
//! let v: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(v["content"][0]["text"], "hi");
//! assert_eq!(v["model"], "claude-sonnet-4-5");
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `test-util`: [`test_util::MockProvider`], a scripted provider for layer tests.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod classify;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod error;
pub mod ext;
pub mod openai;
pub mod sse;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod tokens;
pub mod wire;

pub use body::{AiBody, Completion, CompletionFuture, EventStream, Outcome};
pub use classify::{Classifier, Finding};
pub use clock::Clock;
pub use codec::{CodecBody, MessagesCodec, MessagesCodecLayer};
pub use error::{AiError, ErrorKind};
pub use ext::{
    AllowedModels, Attempt, AuthFailure, CallReport, ClientAddr, ComponentClass, Cost,
    CredentialId, DataCategories, DataCategory, DataClass, DataClassification, Endpoint, Principal,
    PromptTemplate, ReportData, RequestId, RequestedModel, Route, ServableModels, Served, Surface,
    Timings, Verdict, Verdicts, WithheldToolCall, Workload,
};
pub use wire::{
    Content, ContentBlock, Delta, Message, MessagesRequest, MessagesResponse, Role, StreamEvent,
    Usage,
};
