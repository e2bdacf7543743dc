//! One poll loop for every upstream framing: an HTTP body read chunk by chunk, a
//! [`FrameDecoder`] turning its bytes into canonical events, an idle timeout between
//! chunks, the first token marked in [`Timings`], and a body that ends (or breaks) before
//! the answer is whole ending the stream with an error, never quietly.

use crate::anthropic::UpstreamBody;
use ai_core::{AiError, ErrorKind, StreamEvent, Timings};
use bytes::Buf;
use futures_core::Stream;
use http_body::Body;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Decoded items waiting to be handed out.
pub(crate) type Queue = VecDeque<Result<StreamEvent, AiError>>;

/// An upstream framing (OpenAI chunks, Bedrock event-stream frames) decoded into
/// canonical events.
pub(crate) trait FrameDecoder: Send + 'static {
    /// Takes the next bytes of the body and pushes the events they complete. After an
    /// `Err` is pushed nothing more is read. Returns `true` once the answer is finished.
    fn feed(&mut self, chunk: &[u8], out: &mut Queue) -> bool;

    /// The body ended (or broke) before `feed` said the answer is finished: pushes what
    /// can still be made of it and returns whether the answer is whole anyway.
    fn finish(&mut self, out: &mut Queue) -> bool;
}

/// An upstream body decoded by `D`, with an idle timeout between chunks.
pub(crate) struct FramedEvents<D> {
    body: Pin<Box<UpstreamBody>>,
    decoder: D,
    queue: Queue,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timings: Option<Timings>,
    done: bool,
}

impl<D: FrameDecoder> FramedEvents<D> {
    pub(crate) fn new(
        body: UpstreamBody,
        decoder: D,
        idle: Duration,
        timings: Option<Timings>,
    ) -> Self {
        FramedEvents {
            body: Box::pin(body),
            decoder,
            queue: VecDeque::new(),
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            timings,
            done: false,
        }
    }

    fn fail(&mut self, kind: ErrorKind, message: &'static str) {
        self.done = true;
        self.queue.push_back(Err(AiError::new(kind, message)));
    }

    /// The body stopped (`broke`: with an error) before the decoder finished.
    fn ended(&mut self, broke: bool) {
        self.done = true;
        if !self.decoder.finish(&mut self.queue) && !self.queue.iter().any(Result::is_err) {
            self.queue.push_back(Err(AiError::new(
                ErrorKind::UpstreamUnavailable,
                if broke {
                    "upstream connection broke during the stream"
                } else {
                    "upstream stream ended before the answer finished"
                },
            )));
        }
    }
}

impl<D: FrameDecoder + Unpin> Stream for FramedEvents<D> {
    type Item = Result<StreamEvent, AiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.queue.pop_front() {
                match &item {
                    Ok(StreamEvent::ContentBlockDelta(_)) => {
                        if let Some(t) = this.timings.take() {
                            t.mark_first_token();
                        }
                    }
                    Err(_) => {
                        // An error ends the stream: nothing after it is handed out.
                        this.done = true;
                        this.queue.clear();
                    }
                    Ok(_) => {}
                }
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() && !this.done {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            this.done = this.decoder.feed(chunk, &mut this.queue);
                            data.advance(n);
                        }
                    }
                    this.sleep
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.idle);
                }
                Poll::Ready(Some(Err(_))) => this.ended(true),
                Poll::Ready(None) => this.ended(false),
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.fail(
                            ErrorKind::UpstreamTimeout,
                            "upstream stream went silent past the idle timeout",
                        );
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
