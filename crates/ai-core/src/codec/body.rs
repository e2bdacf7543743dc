use crate::body::EventStream;
use crate::sse;
use crate::wire::StreamEvent;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Frames are flushed at this size even when more events are ready.
const MAX_BATCH: usize = 16 * 1024;

/// The HTTP body the edge codec writes: a whole JSON document, or server-sent events
/// encoded one frame per batch of ready events (an event is never held back waiting for
/// the next one). A stream that ends without `message_stop` or an error gets a closing
/// `event: error` ([`sse::ended_early`]).
pub struct CodecBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Events {
        stream: EventStream,
        buf: BytesMut,
        saw_stop: bool,
        done: bool,
    },
    OpenAi {
        stream: EventStream,
        encoder: crate::openai::ChunkEncoder,
        buf: Vec<u8>,
        done: bool,
    },
}

impl fmt::Debug for CodecBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_struct("CodecBody::Full")
                .field("len", &b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Events { done, .. } | Kind::OpenAi { done, .. } => f
                .debug_struct("CodecBody::Events")
                .field("done", done)
                .finish(),
        }
    }
}

impl Default for CodecBody {
    fn default() -> Self {
        CodecBody::full(Bytes::new())
    }
}

impl CodecBody {
    /// A body of these bytes.
    pub fn full(bytes: Bytes) -> Self {
        CodecBody {
            kind: Kind::Full(if bytes.is_empty() { None } else { Some(bytes) }),
        }
    }

    /// A body that encodes `stream` as server-sent events.
    pub fn events(stream: EventStream) -> Self {
        CodecBody {
            kind: Kind::Events {
                stream,
                buf: BytesMut::with_capacity(1024),
                saw_stop: false,
                done: false,
            },
        }
    }
}

impl CodecBody {
    /// A body that encodes `stream` as OpenAI `chat.completion.chunk`s ending in
    /// `data: [DONE]` (see [`ChunkEncoder`](crate::openai::ChunkEncoder)).
    pub fn openai_events(stream: EventStream, created: u64, include_usage: bool) -> Self {
        CodecBody {
            kind: Kind::OpenAi {
                stream,
                encoder: crate::openai::ChunkEncoder::new(created, include_usage),
                buf: Vec::with_capacity(1024),
                done: false,
            },
        }
    }
}

impl Body for CodecBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Events {
                stream,
                buf,
                saw_stop,
                done,
            } => {
                if *done {
                    return Poll::Ready(None);
                }
                loop {
                    match stream.as_mut().poll_next(cx) {
                        Poll::Ready(Some(Ok(ev))) => {
                            // An error event written as an item also ends the stream.
                            *saw_stop |=
                                matches!(ev, StreamEvent::MessageStop(_) | StreamEvent::Error(_));
                            sse::encode_event(&ev, buf);
                            if buf.len() >= MAX_BATCH {
                                break;
                            }
                        }
                        Poll::Ready(Some(Err(e))) => {
                            tracing::debug!(error = %e, "stream ended with an error event");
                            sse::encode_error(&e, buf);
                            *done = true;
                            break;
                        }
                        Poll::Ready(None) => {
                            if !*saw_stop {
                                // Whatever produced the stream, a cut one must not look
                                // finished to the client.
                                sse::encode_error(&sse::ended_early(false), buf);
                            }
                            *done = true;
                            break;
                        }
                        Poll::Pending => {
                            if buf.is_empty() {
                                return Poll::Pending;
                            }
                            break;
                        }
                    }
                }
                if buf.is_empty() {
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))))
            }
            Kind::OpenAi {
                stream,
                encoder,
                buf,
                done,
            } => {
                if *done {
                    return Poll::Ready(None);
                }
                loop {
                    match stream.as_mut().poll_next(cx) {
                        Poll::Ready(Some(Ok(ev))) => {
                            encoder.event(&ev, buf);
                            if encoder.is_done() {
                                *done = true;
                                break;
                            }
                            if buf.len() >= MAX_BATCH {
                                break;
                            }
                        }
                        Poll::Ready(Some(Err(e))) => {
                            encoder.error(&e, buf);
                            *done = true;
                            break;
                        }
                        Poll::Ready(None) => {
                            // A cut stream must not look finished: no [DONE] without
                            // message_stop.
                            encoder.error(&sse::ended_early(false), buf);
                            *done = true;
                            break;
                        }
                        Poll::Pending => {
                            if buf.is_empty() {
                                return Poll::Pending;
                            }
                            break;
                        }
                    }
                }
                if buf.is_empty() {
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(std::mem::take(buf))))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Events { done, buf, .. } => *done && buf.is_empty(),
            Kind::OpenAi { done, buf, .. } => *done && buf.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Events { .. } | Kind::OpenAi { .. } => SizeHint::default(),
        }
    }
}
