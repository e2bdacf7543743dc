//! Upstream providers: each is a `Service<Request<MessagesRequest>, Response =
//! Response<AiBody>, Error = AiError>`, the innermost service of a gateway stack.
//!
//! - [`AnthropicProvider`]: the Anthropic API over a pooled hyper-util client (rustls,
//!   HTTP/2 when offered, TCP_NODELAY), with connect / first-byte / idle timeouts.
//! - [`OpenAiProvider`]: OpenAI Chat Completions, or a self-hosted OpenAI-compatible
//!   server (vLLM, Ollama, llama.cpp), mapped to and from the canonical shape.
//! - [`DemoProvider`]: a built-in upstream that streams a canned answer, for trying the
//!   gateway without a vendor key.
//!
//! # Example
//!
//! ```
//! use ai_core::{AiBody, MessagesCodecLayer, MessagesRequest};
//! use ai_provider::DemoProvider;
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In production: AnthropicProvider::builder().api_key(key).build()?
//! let gateway = ServiceBuilder::new()
//!     .layer(MessagesCodecLayer::new())
//!     .service(DemoProvider::new());
//! let req = http::Request::post("/v1/messages")
//!     .header("content-type", "application/json")
//!     .body(Full::new(bytes::Bytes::from_static(
//!         br#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
//!     )))?;
//! let resp = gateway.oneshot(req).await?;
//! let v: serde_json::Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
//! assert_eq!(v["type"], "message");
//! # Ok(()) }
//! ```

pub mod anthropic;
pub mod demo;
pub mod openai;

pub use anthropic::{AnthropicBuilder, AnthropicProvider, ConfigError};
pub use demo::DemoProvider;
pub use openai::{OpenAiBuilder, OpenAiProvider};
