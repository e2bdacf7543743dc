//! Tamper-evident audit records, metrics and GenAI tracing for the ai-gateway layers.
//!
//! [`AuditLayer`] writes exactly one [`AuditRecord`] per request that reaches it, when
//! the response is over (a whole message, a stream that ends, is cut, fails or is dropped
//! by the client, an inner layer's refusal, an upstream error, a timeout), counts the call
//! in the `metrics` facade and opens one tracing span per call with the OpenTelemetry
//! GenAI attribute names. Its [`edge`](AuditLayer::edge) part, placed outside
//! authentication, records the requests refused before the typed layer saw them.
//!
//! Records go through a bounded queue to one writer thread ([`AuditWriter`]) and a
//! [`Sink`]: the embedded default [`FileSink`] writes append-only JSONL segments where each
//! line carries the SHA-256 of the line before it, with Ed25519-signed checkpoints and
//! seals; [`verify_dir`] (and the `audit-verify` binary) checks a log offline and names
//! the first break. A response ends only once its record is durable; when the log cannot
//! be written the [`FailurePolicy`] decides (fail-closed by default: 503).
//!
//! # Example
//!
//! ```
//! use ai_audit::{AuditLayer, AuditWriter, FileSink, FileSinkConfig, SigningKey, WriterConfig, verify_dir};
//! use ai_core::{AiBody, AiError, MessagesRequest, MessagesResponse};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let (key, _secret) = SigningKey::generate()?;
//! let public = key.public_key().clone();
//! let sink = FileSink::open(FileSinkConfig::new(dir.path(), key))?;
//! let audit = AuditLayer::new(AuditWriter::spawn(sink, WriterConfig::default())?);
//!
//! let svc = ServiceBuilder::new()
//!     .layer(audit.clone())
//!     .service(service_fn(|req: Request<MessagesRequest>| async move {
//!         let reply = MessagesResponse { model: req.body().model.clone(), ..Default::default() };
//!         Ok::<_, AiError>(Response::new(AiBody::from(reply)))
//!     }));
//! let req = Request::new(serde_json::from_str::<MessagesRequest>(
//!     r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
//! )?);
//! svc.oneshot(req).await?; // returns once the record is on disk
//!
//! audit.writer().close_async(std::time::Duration::from_secs(5)).await; // seals the segment
//! let report = verify_dir(dir.path(), &[public])?;
//! assert!(report.is_ok(), "{:?}", report.problem);
//! assert_eq!(report.records, 1);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod chain;
mod file;
mod hash;
mod layer;
pub mod metrics;
pub mod record;
mod sink;
pub mod verify;
mod writer;

pub use chain::{FORMAT, GENESIS, KeyError, PublicKey, SigningKey, signed_message};
pub use file::{FileSink, FileSinkConfig, list_segments, parse_segment_name, segment_name};
pub use layer::{Audit, AuditEdge, AuditEdgeLayer, AuditLayer};
pub use record::{AuditRecord, SCHEMA_VERSION, outcome};
pub use sink::{Sink, StdoutSink};
pub use verify::{Problem, ProblemKind, Report, verify_dir, verify_dir_expecting};
pub use writer::{Ack, AuditWriter, FailurePolicy, Fsync, Slot, Unavailable, WriterConfig};
