//! [`AiBody`], the typed response body of the middle of the stack, and the completion
//! hook: "tell me once when this response is over, with its usage and outcome".
//!
//! Layers that reserve before and settle after (rate limits, budgets, audit, metrics) use
//! [`AiBody::on_complete`] on a response they hold, or [`CompletionFuture`] around an inner
//! service's future, which also covers errors and a caller that gives up before the
//! response. The hook runs exactly once in every case:
//!
//! | the response | outcome | usage |
//! |---|---|---|
//! | a whole message | `Complete` | the message's |
//! | a stream that reaches `message_stop` | `Complete` | `message_start` merged with every `message_delta` |
//! | a stream that ends without `message_stop` | `Incomplete` | what was seen |
//! | a stream that yields an error | `Failed(kind)` | what was seen before it |
//! | a stream dropped early (client went away) | `Cancelled` | what was sent |
//! | an error instead of a response | `Failed(kind)` | none |
//! | a future dropped before it resolved | `Cancelled` | none |
//!
//! ```
//! use ai_core::{AiBody, Completion, Outcome, StreamEvent};
//! use futures_util::StreamExt;
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (tx, rx) = std::sync::mpsc::channel::<Completion>();
//! let events = futures_util::stream::iter(vec![Ok(StreamEvent::text_delta(0, "hi"))]);
//! let body = AiBody::from_events(events).on_complete(move |c| { let _ = tx.send(c); });
//! let AiBody::Events(mut s) = body else { unreachable!() };
//! while s.next().await.is_some() {}
//! assert_eq!(rx.recv().unwrap().outcome, Outcome::Incomplete);
//! # }
//! ```

use crate::error::{AiError, ErrorKind};
use crate::wire::{Delta, MessagesResponse, StreamEvent, Usage};
use futures_core::Stream;
use http::Response;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// A boxed stream of typed events. An `Err` item is terminal: the stream yields nothing
/// after it, and the edge codec writes it as `event: error`.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, AiError>> + Send + 'static>>;

/// The body of a typed response.
#[non_exhaustive]
pub enum AiBody {
    /// A whole message (`stream` was not set).
    Message(Box<MessagesResponse>),
    /// Server-sent events, as the upstream produces them.
    Events(EventStream),
    /// Another JSON answer (`count_tokens`, `models`), passed through as it came.
    Json(serde_json::Value),
}

impl fmt::Debug for AiBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AiBody::Message(m) => f.debug_tuple("Message").field(m).finish(),
            AiBody::Events(_) => f.write_str("Events(..)"),
            AiBody::Json(v) => f.debug_tuple("Json").field(v).finish(),
        }
    }
}

impl From<MessagesResponse> for AiBody {
    fn from(m: MessagesResponse) -> Self {
        AiBody::Message(Box::new(m))
    }
}

impl AiBody {
    /// A stream body from any stream of events.
    pub fn from_events<S>(s: S) -> Self
    where
        S: Stream<Item = Result<StreamEvent, AiError>> + Send + 'static,
    {
        AiBody::Events(Box::pin(s))
    }

    /// A stream body for a stream request: a whole message becomes the equivalent events
    /// ([`MessagesResponse::into_stream_events`]); any other body is returned as it is.
    /// Providers use it when an upstream answers a stream request with a whole message.
    pub fn into_stream(self) -> AiBody {
        match self {
            AiBody::Message(m) => AiBody::from_events(futures_util::stream::iter(
                m.into_stream_events().into_iter().map(Ok),
            )),
            other => other,
        }
    }

    /// Calls `f` once when this response is over (see the module docs for every case).
    /// For a message or JSON body that is now; for a stream it is when the stream ends,
    /// fails, reaches `message_stop`, or is dropped.
    pub fn on_complete<F>(self, f: F) -> AiBody
    where
        F: FnOnce(Completion) + Send + 'static,
    {
        match self {
            AiBody::Message(m) => {
                f(Completion::of_message(&m));
                AiBody::Message(m)
            }
            AiBody::Json(v) => {
                f(Completion {
                    outcome: Outcome::Complete,
                    ..Completion::empty()
                });
                AiBody::Json(v)
            }
            AiBody::Events(inner) => AiBody::Events(Box::pin(CompletionStream {
                inner,
                guard: Guard {
                    f: Some(f),
                    tracker: Tracker::default(),
                },
            })),
        }
    }
}

/// How a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Whole message delivered, or the stream reached `message_stop`.
    Complete,
    /// The stream ended without `message_stop`.
    Incomplete,
    /// An error (before or during the response).
    Failed(ErrorKind),
    /// The consumer went away first (client disconnect, timeout of an outer layer).
    Cancelled,
}

/// What a finished response tells the layers that settle on it.
#[derive(Clone, Debug)]
pub struct Completion {
    /// How it ended.
    pub outcome: Outcome,
    /// Token usage seen (merged across stream events).
    pub usage: Usage,
    /// The stop reason, when one was seen.
    pub stop_reason: Option<String>,
    /// The model that answered, when known.
    pub model: Option<String>,
    /// Stream events delivered (0 for a whole message).
    pub events: u64,
    /// The error, for `Outcome::Failed`.
    pub error: Option<AiError>,
    /// Bytes of generated content streamed (text, thinking and tool-input deltas); 0 for
    /// a whole message. What a stream cut short has cost when its final usage never came.
    pub streamed_bytes: u64,
}

impl Completion {
    /// Output tokens this response cost: the upstream's count, or for a stream that did
    /// not finish, at least the local estimate of what was streamed (a cancelled stream
    /// reports only the `message_start` figure, usually 1).
    pub fn output_tokens(&self) -> u64 {
        let reported = self.usage.output_tokens.unwrap_or(0);
        match self.outcome {
            Outcome::Complete => reported,
            _ => reported.max(self.streamed_bytes.div_ceil(4)),
        }
    }

    /// Input tokens that count against input limits: uncached input plus cache writes
    /// (cache reads are excluded, as Anthropic's own input-tokens-per-minute limits do).
    pub fn input_tokens(&self) -> u64 {
        self.usage.input_tokens.unwrap_or(0) + self.usage.cache_creation_input_tokens.unwrap_or(0)
    }

    fn empty() -> Self {
        Completion {
            outcome: Outcome::Complete,
            usage: Usage::default(),
            stop_reason: None,
            model: None,
            events: 0,
            error: None,
            streamed_bytes: 0,
        }
    }

    /// The completion of a whole message.
    pub fn of_message(m: &MessagesResponse) -> Self {
        Completion {
            outcome: Outcome::Complete,
            usage: m.usage.clone(),
            stop_reason: m.stop_reason.clone(),
            model: Some(m.model.clone()),
            ..Completion::empty()
        }
    }

    /// The completion of an error returned instead of a response.
    pub fn of_error(e: &AiError) -> Self {
        Completion {
            outcome: Outcome::Failed(e.kind()),
            error: Some(e.clone()),
            ..Completion::empty()
        }
    }

    /// The completion of a request whose future was dropped before a response.
    pub fn cancelled() -> Self {
        Completion {
            outcome: Outcome::Cancelled,
            ..Completion::empty()
        }
    }
}

#[derive(Debug, Default)]
struct Tracker {
    usage: Usage,
    stop_reason: Option<String>,
    model: Option<String>,
    events: u64,
    streamed_bytes: u64,
    saw_stop: bool,
}

impl Tracker {
    fn observe(&mut self, ev: &StreamEvent) {
        self.events += 1;
        match ev {
            StreamEvent::MessageStart(s) => {
                self.usage.merge(&s.message.usage);
                self.model = Some(s.message.model.clone());
            }
            StreamEvent::MessageDelta(d) => {
                if let Some(u) = &d.usage {
                    self.usage.merge(u);
                }
                if d.delta.stop_reason.is_some() {
                    self.stop_reason = d.delta.stop_reason.clone();
                }
            }
            StreamEvent::ContentBlockDelta(d) => {
                self.streamed_bytes += match &d.delta {
                    Delta::Text(t) => t.text.len(),
                    Delta::Thinking(t) => t.thinking.len(),
                    Delta::InputJson(j) => j.partial_json.len(),
                    _ => 0,
                } as u64;
            }
            StreamEvent::MessageStop(_) => self.saw_stop = true,
            _ => {}
        }
    }

    fn finish(&mut self, outcome: Outcome, error: Option<AiError>) -> Completion {
        Completion {
            outcome,
            usage: std::mem::take(&mut self.usage),
            stop_reason: self.stop_reason.take(),
            model: self.model.take(),
            events: self.events,
            error,
            streamed_bytes: self.streamed_bytes,
        }
    }
}

/// Holds the hook; runs it with `Cancelled` if dropped before completion.
struct Guard<F: FnOnce(Completion)> {
    f: Option<F>,
    tracker: Tracker,
}

impl<F: FnOnce(Completion)> Guard<F> {
    fn complete(&mut self, outcome: Outcome, error: Option<AiError>) {
        if let Some(f) = self.f.take() {
            f(self.tracker.finish(outcome, error));
        }
    }
}

impl<F: FnOnce(Completion)> Drop for Guard<F> {
    fn drop(&mut self) {
        self.complete(Outcome::Cancelled, None);
    }
}

struct CompletionStream<F: FnOnce(Completion)> {
    inner: EventStream,
    guard: Guard<F>,
}

// The hook is never pinned (no `Pin<&mut F>` is ever made), so the wrapper is `Unpin`
// whatever `F` is.
impl<F: FnOnce(Completion)> Unpin for CompletionStream<F> {}

impl<F: FnOnce(Completion)> Stream for CompletionStream<F> {
    type Item = Result<StreamEvent, AiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = ready!(this.inner.as_mut().poll_next(cx));
        if this.guard.f.is_some() {
            match &item {
                Some(Ok(ev)) => {
                    this.guard.tracker.observe(ev);
                    if this.guard.tracker.saw_stop {
                        this.guard.complete(Outcome::Complete, None);
                    }
                }
                Some(Err(e)) => this
                    .guard
                    .complete(Outcome::Failed(e.kind()), Some(e.clone())),
                None => {
                    let outcome = if this.guard.tracker.saw_stop {
                        Outcome::Complete
                    } else {
                        Outcome::Incomplete
                    };
                    this.guard.complete(outcome, None);
                }
            }
        }
        Poll::Ready(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Wraps a typed service future so `f` runs exactly once: on the response's completion
    /// (via [`AiBody::on_complete`]), on an error, or with `Cancelled` if the future is
    /// dropped before it resolves.
    #[must_use = "futures do nothing unless polled"]
    pub struct CompletionFuture<Fut, F: FnOnce(Completion)> {
        #[pin]
        fut: Fut,
        guard: FutureGuard<F>,
    }
}

impl<Fut, F: FnOnce(Completion)> CompletionFuture<Fut, F> {
    /// Wraps `fut`.
    pub fn new(fut: Fut, f: F) -> Self {
        CompletionFuture {
            fut,
            guard: FutureGuard(Some(f)),
        }
    }
}

impl<Fut, F: FnOnce(Completion)> fmt::Debug for CompletionFuture<Fut, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CompletionFuture { .. }")
    }
}

struct FutureGuard<F: FnOnce(Completion)>(Option<F>);

impl<F: FnOnce(Completion)> Drop for FutureGuard<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Completion::cancelled());
        }
    }
}

impl<Fut, F> Future for CompletionFuture<Fut, F>
where
    Fut: Future<Output = Result<Response<AiBody>, AiError>>,
    F: FnOnce(Completion) + Send + 'static,
{
    type Output = Result<Response<AiBody>, AiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.fut.poll(cx));
        let Some(f) = this.guard.0.take() else {
            return Poll::Ready(out);
        };
        Poll::Ready(match out {
            Ok(resp) => Ok(resp.map(|b| b.on_complete(f))),
            Err(e) => {
                f(Completion::of_error(&e));
                Err(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::*;
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (
        Arc<Mutex<Vec<Completion>>>,
        impl FnOnce(Completion) + Send + 'static,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (seen, move |c| s.lock().expect("lock").push(c))
    }

    fn start(input: u64) -> StreamEvent {
        StreamEvent::MessageStart(MessageStartEvent {
            message: Box::new(MessagesResponse {
                id: "msg_1".into(),
                kind: "message".into(),
                model: "claude-test".into(),
                usage: Usage {
                    input_tokens: Some(input),
                    output_tokens: Some(1),
                    cache_read_input_tokens: Some(7),
                    ..Default::default()
                },
                ..Default::default()
            }),
            extra: Default::default(),
        })
    }

    fn delta(out: u64) -> StreamEvent {
        StreamEvent::MessageDelta(MessageDeltaEvent {
            delta: MessageDeltaBody {
                stop_reason: Some("end_turn".into()),
                ..Default::default()
            },
            usage: Some(Usage {
                output_tokens: Some(out),
                ..Default::default()
            }),
            extra: Default::default(),
        })
    }

    fn stop() -> StreamEvent {
        StreamEvent::MessageStop(MessageStopEvent::default())
    }

    async fn drain(body: AiBody) {
        let AiBody::Events(mut s) = body else {
            panic!("not a stream")
        };
        while s.next().await.is_some() {}
    }

    #[tokio::test]
    async fn whole_message_completes_at_once() {
        let (seen, f) = recorder();
        let msg = MessagesResponse {
            model: "m".into(),
            stop_reason: Some("end_turn".into()),
            usage: Usage {
                input_tokens: Some(3),
                output_tokens: Some(4),
                ..Default::default()
            },
            ..Default::default()
        };
        let _ = AiBody::from(msg).on_complete(f);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].outcome, Outcome::Complete);
        assert_eq!(seen[0].usage.output(), 4);
        assert_eq!(seen[0].stop_reason.as_deref(), Some("end_turn"));
    }

    #[tokio::test]
    async fn stream_end_merges_usage_once() {
        let (seen, f) = recorder();
        let evs = vec![
            Ok(start(10)),
            Ok(StreamEvent::text_delta(0, "a")),
            Ok(delta(42)),
            Ok(stop()),
        ];
        drain(AiBody::from_events(futures_util::stream::iter(evs)).on_complete(f)).await;
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        let c = &seen[0];
        assert_eq!(c.outcome, Outcome::Complete);
        assert_eq!(c.usage.input_tokens, Some(10));
        assert_eq!(c.usage.cache_read_input_tokens, Some(7));
        assert_eq!(c.usage.total_input(), 17);
        assert_eq!(c.usage.output(), 42);
        assert_eq!(c.events, 4);
        assert_eq!(c.model.as_deref(), Some("claude-test"));
    }

    #[tokio::test]
    async fn stream_error_fails_with_usage_so_far() {
        let (seen, f) = recorder();
        let evs = vec![
            Ok(start(5)),
            Err(AiError::new(ErrorKind::Overloaded, "Overloaded")),
        ];
        drain(AiBody::from_events(futures_util::stream::iter(evs)).on_complete(f)).await;
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].outcome, Outcome::Failed(ErrorKind::Overloaded));
        assert_eq!(seen[0].usage.input_tokens, Some(5));
        assert!(seen[0].error.is_some());
    }

    #[tokio::test]
    async fn dropped_stream_is_cancelled_with_what_was_sent() {
        let (seen, f) = recorder();
        let evs = vec![
            Ok(start(9)),
            Ok(delta(3)),
            Ok(StreamEvent::text_delta(0, "never")),
        ];
        let body = AiBody::from_events(futures_util::stream::iter(evs)).on_complete(f);
        let AiBody::Events(mut s) = body else {
            panic!()
        };
        s.next().await;
        s.next().await;
        assert!(seen.lock().expect("lock").is_empty());
        drop(s);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].outcome, Outcome::Cancelled);
        assert_eq!(seen[0].usage.output(), 3);
        assert_eq!(seen[0].events, 2);
    }

    #[tokio::test]
    async fn cancelled_stream_counts_what_was_streamed() {
        let (seen, f) = recorder();
        let evs = vec![
            Ok(start(9)),
            Ok(StreamEvent::text_delta(0, "x".repeat(400))),
            Ok(StreamEvent::text_delta(0, "never")),
        ];
        let body = AiBody::from_events(futures_util::stream::iter(evs)).on_complete(f);
        let AiBody::Events(mut s) = body else {
            panic!()
        };
        s.next().await;
        s.next().await;
        drop(s);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen[0].streamed_bytes, 400);
        // The start reported 1 output token; 400 streamed bytes are about 100.
        assert_eq!(seen[0].output_tokens(), 100);
        assert_eq!(seen[0].input_tokens(), 9);
    }

    #[tokio::test]
    async fn stream_without_stop_is_incomplete() {
        let (seen, f) = recorder();
        drain(AiBody::from_events(futures_util::stream::iter(vec![Ok(start(1))])).on_complete(f))
            .await;
        assert_eq!(seen.lock().expect("lock")[0].outcome, Outcome::Incomplete);
    }

    #[tokio::test]
    async fn future_covers_error_and_cancel() {
        let (seen, f) = recorder();
        let fut = CompletionFuture::new(
            async { Err::<Response<AiBody>, _>(AiError::new(ErrorKind::RateLimit, "x")) },
            f,
        );
        assert!(fut.await.is_err());
        assert_eq!(
            seen.lock().expect("lock")[0].outcome,
            Outcome::Failed(ErrorKind::RateLimit)
        );

        let (seen, f) = recorder();
        let fut = CompletionFuture::new(
            std::future::pending::<Result<Response<AiBody>, AiError>>(),
            f,
        );
        drop(fut);
        assert_eq!(seen.lock().expect("lock")[0].outcome, Outcome::Cancelled);

        let (seen, f) = recorder();
        let fut = CompletionFuture::new(
            async {
                Ok(Response::new(AiBody::from_events(
                    futures_util::stream::iter(vec![Ok(start(2)), Ok(stop())]),
                )))
            },
            f,
        );
        let resp = fut.await.expect("ok");
        assert!(
            seen.lock().expect("lock").is_empty(),
            "not before the stream is over"
        );
        drain(resp.into_body()).await;
        assert_eq!(seen.lock().expect("lock")[0].outcome, Outcome::Complete);
    }
}
