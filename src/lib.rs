//! ai-gateway: an enterprise AI inference gateway built from composable tower layers.
//!
//! This facade re-exports the layer crates behind features and, with `server`, serves
//! the assembled stack over hyper (see [`server`]). Each crate is usable alone.
//!
//! ```no_run
//! # #[cfg(feature = "server")]
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! use ai_gateway::provider::DemoProvider;
//! use ai_gateway::server::{serve, ServerConfig};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, DemoProvider::new(), ServerConfig::default(), std::future::pending()).await
//! # }
//! # #[cfg(not(feature = "server"))] fn main() {}
//! ```
//!
//! # Feature flags
//!
//! - `provider` (default): [`provider`], the Anthropic provider and the demo upstream.
//! - `server` (default): [`server`], the HTTP server and the default stack.
//! - `auth` (default): [`auth`], caller authentication by gateway key and model access.
//! - `audit` (default): [`audit`], tamper-evident audit records, metrics and GenAI spans.
//! - `ratelimit` (in `server`): [`ratelimit`], token-aware rate limits (memory or Redis).
//! - `budget` (in `server`): [`budget`], the cost of every call and spending caps.
//! - `redact` (in `server`): [`redact`], personal data and secrets found, classified,
//!   redacted or tokenized, and put back in answers.
//! - `inspect` (in `server`): [`inspect`], the model's answer inspected as it streams
//!   and cut with `policy_block` on a violation; tool calls checked.
//! - `otlp`: `otlp`, export of the GenAI spans to an OpenTelemetry collector (OTLP/HTTP).
//! - `config` (default): [`config`], the gateway's TOML configuration file.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use ai_core as core;

#[cfg(feature = "provider")]
pub use ai_provider as provider;

#[cfg(feature = "auth")]
pub use ai_auth as auth;

#[cfg(feature = "audit")]
pub use ai_audit as audit;

#[cfg(feature = "budget")]
pub use ai_budget as budget;
#[cfg(feature = "ratelimit")]
pub use ai_ratelimit as ratelimit;
#[cfg(feature = "redact")]
pub use ai_redact as redact;
#[cfg(feature = "inspect")]
pub use ai_sse_inspect as inspect;

#[cfg(feature = "server")]
pub mod access_log;
#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "config")]
pub mod config;

#[cfg(feature = "otlp")]
pub mod otlp;
