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
#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod demo;
pub mod openai;
mod stream;
mod upstream;
#[cfg(feature = "vertex")]
pub mod vertex;

pub use anthropic::{AnthropicBuilder, AnthropicProvider, ConfigError};
#[cfg(feature = "bedrock")]
pub use bedrock::{BedrockBuilder, BedrockProvider};
pub use demo::DemoProvider;
pub use openai::{OpenAiBuilder, OpenAiProvider};
#[cfg(feature = "vertex")]
pub use vertex::{VertexBuilder, VertexProvider};

use ai_core::{AiError, MessagesRequest};
use std::collections::HashMap;

/// The names a vendor knows the canonical models by (Bedrock's
/// `us.anthropic.claude-sonnet-4-5-20250929-v1:0`, Vertex's `claude-sonnet-4-5@20250929`);
/// a model without an entry goes as it is named.
#[derive(Clone, Debug, Default)]
#[cfg_attr(not(any(feature = "bedrock", feature = "vertex")), allow(dead_code))]
pub(crate) struct ModelMap(HashMap<String, String>);

#[cfg_attr(not(any(feature = "bedrock", feature = "vertex")), allow(dead_code))]
impl ModelMap {
    pub(crate) fn insert(&mut self, model: String, id: String) {
        self.0.insert(model, id);
    }

    pub(crate) fn get<'a>(&'a self, model: &'a str) -> &'a str {
        self.0.get(model).map_or(model, String::as_str)
    }
}

/// The Messages body as the cloud platforms take it (Bedrock, Vertex): without `model`
/// (it goes in the path), with their `anthropic_version`, the caller's `anthropic-beta`
/// headers as an `anthropic_beta` list, and `stream` kept only where the platform reads
/// it from the body.
#[cfg_attr(not(any(feature = "bedrock", feature = "vertex")), allow(dead_code))]
pub(crate) fn vendor_body(
    req: &http::Request<MessagesRequest>,
    version: &str,
    keep_stream: bool,
) -> Result<bytes::Bytes, AiError> {
    let encode_failed = || AiError::api("failed to encode the upstream request");
    let mut v = serde_json::to_value(req.body()).map_err(|_| encode_failed())?;
    let obj = v.as_object_mut().ok_or_else(encode_failed)?;
    obj.remove("model");
    if !keep_stream {
        obj.remove("stream");
    }
    obj.insert("anthropic_version".to_owned(), version.into());
    let betas: Vec<serde_json::Value> = req
        .headers()
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| b.into())
        .collect();
    if !betas.is_empty() {
        obj.insert("anthropic_beta".to_owned(), betas.into());
    }
    serde_json::to_vec(&v)
        .map(bytes::Bytes::from)
        .map_err(|_| encode_failed())
}
