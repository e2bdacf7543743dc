//! ai-redact: find personal data, health data, card numbers and secrets in model
//! requests, classify each part of the request, and redact, mask, tokenize or block them
//! before they leave; tokens in the answer are turned back into the real values.
//!
//! - [`Detectors`]: the built-in detectors (e-mail, phones, cards with Luhn, IBAN, SSN,
//!   Aadhaar with Verhoeff, PAN, IP addresses, dates of birth, medical record numbers,
//!   names with a cheap signal, API keys and tokens, private keys, JWTs, connection
//!   strings, passwords and keyword-gated high-entropy secrets) plus custom ones, all
//!   compiled into one multi-pattern regex run once over each string.
//! - [`RedactPolicy`]: an [`Action`] per [`DataCategory`](ai_core::DataCategory), the
//!   tool-result rule and the injection threshold.
//! - [`Redactor`]: classifies and rewrites a [`MessagesRequest`](ai_core::MessagesRequest).
//! - [`RedactLayer`]: the tower layer; [`Vault`] and [`StreamRehydrator`] put values back.
//! - [`inject`]: the prompt-injection heuristic for tool results and documents.
//! - `ocr` (feature `ocr`): text in images read with Tesseract and scanned too.
//!
//! ```
//! use ai_core::test_util::{MockProvider, Script};
//! use ai_core::{AiBody, DataCategory, DataClassification, MessagesRequest};
//! use ai_redact::{Action, RedactLayer, RedactPolicy, Redactor};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // The model answers with the token it was given.
//! let upstream = MockProvider::always(Script::text("I will write to <EMAIL_1>."));
//! let policy = RedactPolicy::default().set(DataCategory::Pii, Action::Tokenize);
//! let svc = RedactLayer::new(Redactor::new(policy)).layer(upstream.clone());
//!
//! let body: MessagesRequest = serde_json::from_str(
//!     r#"{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"Mail jane.doe@acme.io"}]}"#,
//! ).unwrap();
//! let resp = svc.oneshot(http::Request::new(body)).await.unwrap();
//!
//! // The upstream saw a token, never the address...
//! let sent = upstream.requests()[0].body.messages[0].content.clone();
//! assert_eq!(serde_json::to_string(&sent).unwrap(), r#""Mail <EMAIL_1>""#);
//! // ...and the caller gets the address back.
//! let AiBody::Message(m) = resp.into_body() else { panic!() };
//! let text = serde_json::to_string(&m.content).unwrap();
//! assert!(text.contains("I will write to jane.doe@acme.io."));
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classifier;
pub mod detect;
pub mod engine;
pub mod inject;
pub mod layer;
#[cfg(feature = "ocr")]
pub mod ocr;
pub mod policy;
pub mod validate;
pub mod vault;

pub use classifier::DetectorClassifier;
pub use detect::{DetectorSpec, Detectors, Finding, NaiveDetectors, Validator};
pub use engine::{Blocked, Component, ImageData, ImageTexts, Outcome, Redactor, Refused};
pub use inject::InjectionAction;
pub use layer::{RedactLayer, RedactService};
pub use policy::{Action, RedactPolicy, ToolResultRule};
pub use vault::{StreamRehydrator, Vault};

/// Describes the metrics this crate records (call once after installing a recorder).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "gateway_redactions_total",
        "Values redacted, masked or tokenized in requests"
    );
    metrics::describe_counter!(
        "gateway_redact_blocks_total",
        "Requests refused by the data or content policy"
    );
}
