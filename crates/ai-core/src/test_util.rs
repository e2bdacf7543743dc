//! Test helpers for layer crates (feature `test-util`): a scripted mock provider and a
//! way to turn recorded streams into typed events.
//!
//! ```
//! use ai_core::test_util::{MockProvider, Script};
//! use ai_core::{AiBody, MessagesRequest};
//! use tower::ServiceExt;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mock = MockProvider::new();
//! mock.push(Script::text("hello"));
//! let resp = mock.clone().oneshot(http::Request::new(MessagesRequest::default())).await.unwrap();
//! assert!(matches!(resp.into_body(), AiBody::Message(_)));
//! assert_eq!(mock.requests().len(), 1);
//! # }
//! ```

use crate::body::AiBody;
use crate::error::AiError;
use crate::wire::{ContentBlock, MessagesRequest, MessagesResponse, Role, StreamEvent, Usage};
use http::{Extensions, HeaderMap, Method, Request, Response, Uri};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;

/// One scripted answer.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // test scripts: clarity over size
pub enum Script {
    /// A whole message.
    Message(MessagesResponse),
    /// A stream of events, optionally paced.
    Events {
        /// The items, in order; an `Err` ends the stream with that error.
        items: Vec<Result<StreamEvent, AiError>>,
        /// Pause before each item.
        delay: Duration,
    },
    /// A JSON body.
    Json(serde_json::Value),
    /// An error instead of a response.
    Error(AiError),
}

impl Script {
    /// A message with one text block and small usage.
    pub fn text(text: &str) -> Script {
        Script::Message(MessagesResponse {
            id: "msg_mock".into(),
            kind: "message".into(),
            role: Role::Assistant,
            content: vec![ContentBlock::text(text)],
            model: "mock-model".into(),
            stop_reason: Some("end_turn".into()),
            stop_sequence: None,
            usage: Usage {
                input_tokens: Some(10),
                output_tokens: Some(5),
                ..Default::default()
            },
            extra: Default::default(),
        })
    }

    /// A stream replaying a recorded SSE body (`event: error` becomes the final `Err`).
    pub fn sse(recorded: &[u8]) -> Script {
        Script::Events {
            items: crate::sse::parse_all(recorded),
            delay: Duration::ZERO,
        }
    }

    /// The same script with a pause before every event.
    pub fn paced(self, delay: Duration) -> Script {
        match self {
            Script::Events { items, .. } => Script::Events { items, delay },
            other => other,
        }
    }
}

/// A request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// URI.
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
    /// Extensions set by outer layers.
    pub extensions: Extensions,
    /// The typed body.
    pub body: MessagesRequest,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Script>,
    fallback: Option<Script>,
    seen: Vec<Recorded>,
    no_record: bool,
}

/// A provider that answers from a script and records what it was asked. Clones share the
/// script and the record.
#[derive(Debug, Clone, Default)]
pub struct MockProvider {
    state: Arc<Mutex<State>>,
}

impl MockProvider {
    /// An empty script: requests get an `api_error` until answers are pushed.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mock that gives `script` to every request not otherwise scripted.
    pub fn always(script: Script) -> Self {
        let m = Self::new();
        if let Ok(mut s) = m.state.lock() {
            s.fallback = Some(script);
        }
        m
    }

    /// Stops recording requests (benchmarks: the record would grow without bound).
    pub fn without_recording(self) -> Self {
        if let Ok(mut s) = self.state.lock() {
            s.no_record = true;
        }
        self
    }

    /// Queues one answer.
    pub fn push(&self, script: Script) {
        if let Ok(mut s) = self.state.lock() {
            s.queue.push_back(script);
        }
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .lock()
            .map(|s| s.seen.clone())
            .unwrap_or_default()
    }
}

type MockFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<AiBody>, AiError>> + Send>>;

impl Service<Request<MessagesRequest>> for MockProvider {
    type Response = Response<AiBody>;
    type Error = AiError;
    type Future = MockFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), AiError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<MessagesRequest>) -> MockFuture {
        let (parts, body) = req.into_parts();
        let script = match self.state.lock() {
            Ok(mut s) if s.no_record => s.queue.pop_front().or_else(|| s.fallback.clone()),
            Ok(mut s) => {
                s.seen.push(Recorded {
                    method: parts.method,
                    uri: parts.uri,
                    headers: parts.headers,
                    extensions: parts.extensions,
                    body,
                });
                s.queue.pop_front().or_else(|| s.fallback.clone())
            }
            Err(_) => None,
        };
        Box::pin(async move {
            match script {
                None => Err(AiError::api("mock provider has no scripted answer")),
                Some(Script::Error(e)) => Err(e),
                Some(Script::Message(m)) => Ok(Response::new(AiBody::from(m))),
                Some(Script::Json(v)) => Ok(Response::new(AiBody::Json(v))),
                Some(Script::Events { items, delay }) => {
                    let stream =
                        futures_util::stream::unfold(items.into_iter(), move |mut it| async move {
                            let item = it.next()?;
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            Some((item, it))
                        });
                    Ok(Response::new(AiBody::from_events(stream)))
                }
            }
        })
    }
}
