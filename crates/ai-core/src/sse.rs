//! Server-sent events: an incremental parser (bytes in any chunking -> events) and an
//! encoder, used by the edge codec and by every provider.
//!
//! The parser follows the WHATWG event-stream rules: lines end in `\n`, `\r\n` or `\r`
//! (a `\r` at the end of one chunk and a `\n` at the start of the next are one line end);
//! `data` lines join with `\n`; a blank line dispatches; `:` starts a comment; a leading
//! BOM is skipped; an unterminated event at end of input is dropped. Only complete lines
//! are decoded as UTF-8, so a chunk may split a multi-byte character anywhere.
//!
//! ```
//! use ai_core::sse::SseParser;
//!
//! let mut p = SseParser::new();
//! p.feed(b"event: ping\nda");
//! assert!(p.next_event().is_none());
//! p.feed(b"ta: {\"type\":\"ping\"}\n\n");
//! let ev = p.next_event().unwrap().unwrap();
//! assert_eq!(ev.event.as_deref(), Some("ping"));
//! assert_eq!(ev.data, r#"{"type":"ping"}"#);
//! ```

use crate::error::AiError;
use crate::wire::StreamEvent;
use bytes::{Buf, BufMut, BytesMut};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (the spec's default is `message`).
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `retry:` field, if any.
    pub retry: Option<u64>,
}

/// Why the byte stream is not a valid event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// A line is not valid UTF-8.
    InvalidUtf8,
    /// A line or event exceeded the parser's size limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::InvalidUtf8 => f.write_str("event stream line is not valid utf-8"),
            SseError::TooLarge { limit } => write!(f, "event stream event exceeds {limit} bytes"),
        }
    }
}

impl std::error::Error for SseError {}

/// Incremental event-stream parser. Feed it chunks with [`feed`](Self::feed), take events
/// with [`next_event`](Self::next_event) until it returns `None`, repeat.
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    /// Bytes of `buf` already consumed.
    pos: usize,
    /// Bytes after `pos` already searched for a line end (so a long line arriving in many
    /// chunks is scanned once, not once per chunk).
    scanned: usize,
    /// The previous line ended in `\r`: skip a `\n` that starts the next chunk.
    skip_lf: bool,
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
    max_event_bytes: usize,
    failed: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

/// Default cap on one event (its pending line plus accumulated data): 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

impl SseParser {
    /// A parser with the default event size limit ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that fails with [`SseError::TooLarge`] on an event over `limit` bytes,
    /// so a broken upstream cannot make it buffer without bound.
    pub fn with_max_event_bytes(limit: usize) -> Self {
        SseParser {
            buf: BytesMut::new(),
            pos: 0,
            scanned: 0,
            skip_lf: false,
            started: false,
            event: None,
            data: String::new(),
            has_data: false,
            id: None,
            retry: None,
            max_event_bytes: limit,
            failed: false,
        }
    }

    /// Appends a chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes held that do not yet form a complete line.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether complete lines of an event not yet dispatched (no blank line seen) are held.
    pub fn has_partial_event(&self) -> bool {
        self.has_data || self.event.is_some()
    }

    /// The next complete event, `None` when more input is needed. After an error the
    /// parser stays failed and returns `None`.
    pub fn next_event(&mut self) -> Option<Result<SseEvent, SseError>> {
        if self.failed {
            return None;
        }
        loop {
            if !self.started {
                let rest = &self.buf[self.pos..];
                if rest.len() < 3 && b"\xEF\xBB\xBF".starts_with(rest) {
                    // Could still be a BOM: wait for more (or nothing at all).
                    if rest.is_empty() {
                        return None;
                    }
                    return None;
                }
                if rest.starts_with(b"\xEF\xBB\xBF") {
                    self.pos += 3;
                }
                self.started = true;
            }
            if self.skip_lf && self.pos < self.buf.len() {
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
                self.skip_lf = false;
            }
            let rest = &self.buf[self.pos..];
            let Some(i) = memchr::memchr2(b'\n', b'\r', &rest[self.scanned..]) else {
                if rest.len() + self.data.len() > self.max_event_bytes {
                    return Some(Err(self.fail_too_large()));
                }
                self.scanned = rest.len();
                self.compact();
                return None;
            };
            let end = self.pos + self.scanned + i;
            self.scanned = 0;
            let terminator = self.buf[end];
            let mut next = end + 1;
            if terminator == b'\r' {
                if next < self.buf.len() {
                    if self.buf[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            let start = self.pos;
            self.pos = next;
            if end == start {
                if let Some(ev) = self.dispatch() {
                    return Some(Ok(ev));
                }
                continue;
            }
            if let Err(e) = self.process_line(start, end) {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }

    fn fail_too_large(&mut self) -> SseError {
        self.failed = true;
        SseError::TooLarge {
            limit: self.max_event_bytes,
        }
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            let _ = self.buf.split_to(self.pos);
            self.pos = 0;
        }
    }

    fn process_line(&mut self, start: usize, end: usize) -> Result<(), SseError> {
        let line = std::str::from_utf8(&self.buf[start..end]).map_err(|_| SseError::InvalidUtf8)?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.find(':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    return Err(SseError::TooLarge {
                        limit: self.max_event_bytes,
                    });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            // Per spec: no data, no event (the type and buffers reset).
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
            id: self.id.clone(),
            retry: self.retry.take(),
        })
    }
}

/// An event name safe to write after `event: `: a name with a line break (which would
/// let an upstream forge events) becomes `message`, the spec's default.
fn event_name(name: &str) -> &str {
    if name.contains(['\r', '\n']) {
        "message"
    } else {
        name
    }
}

/// Writes one event: `event: NAME` (when given), one `data:` line per line of `data` (any
/// of `\r\n`, `\r`, `\n` ends a line), and the blank line that dispatches it.
pub fn encode(event: Option<&str>, data: &str, out: &mut BytesMut) {
    out.reserve(data.len() + 24);
    if let Some(name) = event {
        out.put_slice(b"event: ");
        out.put_slice(event_name(name).as_bytes());
        out.put_u8(b'\n');
    }
    let mut rest = data;
    loop {
        let (line, next) = match rest.find(['\r', '\n']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], Some(&rest[i + skip..]))
            }
            None => (rest, None),
        };
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    out.put_u8(b'\n');
}

/// Writes a typed stream event as `event: <type>` + JSON `data:`. The JSON is one `data:`
/// line unless a value kept raw (as the upstream sent it) holds a line break in its
/// whitespace; then it is split over several `data:` lines, which a client joins back.
pub fn encode_event(ev: &StreamEvent, out: &mut BytesMut) {
    out.reserve(128);
    let start = out.len();
    out.put_slice(b"event: ");
    out.put_slice(event_name(ev.type_name()).as_bytes());
    out.put_slice(b"\ndata: ");
    let json_start = out.len();
    // Serializing our own types into memory cannot fail; a failure would only truncate
    // the line, and the frame still ends in a blank line.
    let _ = serde_json::to_writer(out.writer(), ev);
    if memchr::memchr2(b'\n', b'\r', &out[json_start..]).is_some() {
        let json = out.split_off(json_start);
        out.truncate(start);
        encode(Some(ev.type_name()), &String::from_utf8_lossy(&json), out);
        return;
    }
    out.put_slice(b"\n\n");
}

/// Writes an error as `event: error` with the Anthropic error object.
pub fn encode_error(err: &AiError, out: &mut BytesMut) {
    out.put_slice(b"event: error\ndata: ");
    let _ = err.write_json(&mut serde_json::Serializer::new(out.writer()));
    out.put_slice(b"\n\n");
}

/// Parses the data of one event into a typed [`StreamEvent`].
pub fn decode_event(ev: &SseEvent) -> Result<StreamEvent, serde_json::Error> {
    serde_json::from_str(&ev.data)
}

/// Turns one parsed event into a typed item: `event: error` becomes `Err` (the stream's
/// terminal error), data that is not a valid event becomes an `api_error`.
pub fn typed_event(ev: &SseEvent) -> Result<StreamEvent, AiError> {
    match decode_event(ev) {
        Ok(StreamEvent::Error(e)) => Err(AiError::from_detail(&e.error)),
        Ok(ev) => Ok(ev),
        Err(_) => Err(AiError::new(
            crate::error::ErrorKind::UpstreamUnavailable,
            "upstream sent an event that is not valid json",
        )),
    }
}

pin_project_lite::pin_project! {
    /// Decodes an HTTP body of server-sent events into typed events, one pass, in any
    /// chunking. With an idle timeout, a body that sends nothing (not even a `ping`) for
    /// that long ends the stream with an `upstream_timeout` error. A body that ends before
    /// `message_stop` (cleanly, or in the middle of an event) ends the stream with an
    /// `api_error` ([`ended_early`]): a cut stream never looks like a finished answer.
    #[must_use = "streams do nothing unless polled"]
    pub struct BodyEvents<B> {
        #[pin]
        body: B,
        parser: SseParser,
        idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
        timings: Option<crate::ext::Timings>,
        saw_stop: bool,
        done: bool,
    }
}

impl<B> fmt::Debug for BodyEvents<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyEvents")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<B> BodyEvents<B> {
    /// Decodes `body`; `idle_timeout` of `None` waits forever between chunks.
    pub fn new(body: B, idle_timeout: impl Into<Option<Duration>>) -> Self {
        let idle = idle_timeout
            .into()
            .map(|d| (d, Box::pin(tokio::time::sleep_until(deadline(d)))));
        BodyEvents {
            body,
            parser: SseParser::new(),
            idle,
            timings: None,
            saw_stop: false,
            done: false,
        }
    }

    /// Records the first content delta (time to first token) in `timings`.
    pub fn with_timings(mut self, timings: Option<crate::ext::Timings>) -> Self {
        self.timings = timings;
        self
    }
}

impl<B> futures_core::Stream for BodyEvents<B>
where
    B: http_body::Body,
    B::Error: fmt::Display,
{
    type Item = Result<StreamEvent, AiError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            match this.parser.next_event() {
                Some(Ok(ev)) => {
                    let item = typed_event(&ev);
                    match &item {
                        Err(_) => *this.done = true,
                        Ok(StreamEvent::ContentBlockDelta(_)) => {
                            if let Some(t) = this.timings.take() {
                                t.mark_first_token();
                            }
                        }
                        Ok(StreamEvent::MessageStop(_)) => *this.saw_stop = true,
                        Ok(_) => {}
                    }
                    return Poll::Ready(Some(item));
                }
                Some(Err(e)) => {
                    *this.done = true;
                    tracing::debug!(error = %e, "upstream event stream is invalid");
                    if *this.saw_stop {
                        // The answer is whole; what follows it does not matter.
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(AiError::new(
                        crate::error::ErrorKind::UpstreamUnavailable,
                        "upstream event stream is invalid",
                    ))));
                }
                None => {}
            }
            match this.body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            this.parser.feed(chunk);
                            data.advance(n);
                        }
                    }
                    if let Some((d, sleep)) = this.idle.as_mut() {
                        sleep.as_mut().reset(deadline(*d));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    tracing::debug!(error = %e, after_stop = *this.saw_stop, "upstream stream broke");
                    if *this.saw_stop {
                        // E.g. a compressed body cut after its last event (no trailer):
                        // the answer is whole.
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(AiError::new(
                        crate::error::ErrorKind::UpstreamUnavailable,
                        "upstream connection broke during the stream",
                    ))));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    if *this.saw_stop {
                        return Poll::Ready(None);
                    }
                    let mid_event =
                        this.parser.pending_bytes() > 0 || this.parser.has_partial_event();
                    tracing::debug!(mid_event, "upstream ended the stream before message_stop");
                    return Poll::Ready(Some(Err(ended_early(mid_event))));
                }
                Poll::Pending => {
                    if let Some((d, sleep)) = this.idle.as_mut() {
                        if sleep.as_mut().poll(cx).is_ready() {
                            *this.done = true;
                            return Poll::Ready(Some(Err(AiError::new(
                                crate::error::ErrorKind::UpstreamTimeout,
                                format!(
                                    "upstream sent nothing for {} ms during the stream",
                                    d.as_millis()
                                ),
                            ))));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// The error that ends a stream whose upstream body ended before `message_stop`:
/// `api_error` (502), saying so, so a client (and the completion hook) cannot take the
/// cut answer for a finished one.
pub fn ended_early(mid_event: bool) -> AiError {
    AiError::new(
        crate::error::ErrorKind::UpstreamUnavailable,
        if mid_event {
            "upstream ended the stream early, in the middle of an event (no message_stop)"
        } else {
            "upstream ended the stream early (no message_stop)"
        },
    )
}

/// `now + d`, saturating (a huge timeout means "effectively never", not a panic).
fn deadline(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Parses a whole recorded stream (tests, fixtures, the demo upstream) into typed items.
pub fn parse_all(text: &[u8]) -> Vec<Result<StreamEvent, AiError>> {
    let mut p = SseParser::new();
    p.feed(text);
    let mut out = Vec::new();
    while let Some(ev) = p.next_event() {
        match ev {
            Ok(ev) => {
                let item = typed_event(&ev);
                let stop = item.is_err();
                out.push(item);
                if stop {
                    break;
                }
            }
            Err(_) => {
                out.push(Err(AiError::api("recorded stream is invalid")));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        p.feed(input);
        let mut out = vec![];
        while let Some(ev) = p.next_event() {
            out.push(ev.expect("valid"));
        }
        out
    }

    #[test]
    fn line_endings_are_equivalent() {
        let a = all(b"event: a\ndata: 1\ndata: 2\n\n");
        let b = all(b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\n");
        let c = all(b"event: a\rdata: 1\rdata: 2\r\r");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a[0].data, "1\n2");
    }

    #[test]
    fn cr_lf_split_across_chunks_is_one_line_end() {
        let mut p = SseParser::new();
        p.feed(b"data: x\r");
        assert!(p.next_event().is_none());
        p.feed(b"\n\r\n");
        assert_eq!(p.next_event().expect("event").expect("ok").data, "x");
        assert!(p.next_event().is_none());
    }

    #[test]
    fn comments_bom_and_field_without_colon() {
        let evs = all(b"\xEF\xBB\xBF: keep-alive\ndata\n\ndata:no-space\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, "");
        assert_eq!(evs[1].data, "no-space");
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let text = "data: h\u{e9}llo \u{1F600}\n\n".as_bytes();
        for split in 0..text.len() {
            let mut p = SseParser::new();
            p.feed(&text[..split]);
            let mut got = vec![];
            while let Some(e) = p.next_event() {
                got.push(e.expect("ok"));
            }
            p.feed(&text[split..]);
            while let Some(e) = p.next_event() {
                got.push(e.expect("ok"));
            }
            assert_eq!(got.len(), 1, "split {split}");
            assert_eq!(got[0].data, "h\u{e9}llo \u{1F600}");
        }
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut p = SseParser::new();
        p.feed(b"data: \xff\xfe\n\n");
        assert_eq!(p.next_event(), Some(Err(SseError::InvalidUtf8)));
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn oversized_event_is_an_error_not_a_buffer() {
        let mut p = SseParser::with_max_event_bytes(64);
        p.feed(&[b'a'; 100]);
        assert_eq!(p.next_event(), Some(Err(SseError::TooLarge { limit: 64 })));
        let mut p = SseParser::with_max_event_bytes(64);
        for _ in 0..10 {
            p.feed(b"data: 0123456789\n");
        }
        assert!(matches!(
            p.next_event(),
            Some(Err(SseError::TooLarge { .. }))
        ));
    }

    #[test]
    fn an_event_with_a_raw_line_break_is_split_over_data_lines() {
        // An upstream may spread one event's JSON over several data lines; the unknown
        // object keeps that whitespace, and the encoder must not write a bare line break.
        let mut p = SseParser::new();
        p.feed(
            b"event: new_event\ndata: {\"type\":\"new_event\",\ndata:  \"v\": [1,\r\ndata: 2]}\n\n",
        );
        let ev = p.next_event().expect("event").expect("ok");
        let typed = typed_event(&ev).expect("typed");
        assert!(matches!(typed, StreamEvent::Other(_)));
        let mut out = BytesMut::new();
        encode_event(&typed, &mut out);
        let mut back = SseParser::new();
        back.feed(&out);
        let again = back.next_event().expect("event").expect("ok");
        assert_eq!(again.event.as_deref(), Some("new_event"));
        // Member values are kept as sent (the array still holds its line break); the
        // object around them is rebuilt (see `wire::OtherObject`).
        assert_eq!(again.data, "{\"type\":\"new_event\",\"v\":[1,\n2]}");
        assert!(back.next_event().is_none());
        let same = |t: &str| serde_json::from_str::<serde_json::Value>(t).expect("json");
        assert_eq!(same(&again.data), same(&ev.data));
    }

    #[test]
    fn unterminated_event_is_dropped() {
        assert!(all(b"data: never dispatched\n").is_empty());
    }

    #[tokio::test]
    async fn body_events_decode_a_body_and_mark_the_first_token() {
        use futures_util::StreamExt;
        let text = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"x\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1}}}\n\n\
                    event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n";
        let timings = crate::ext::Timings::start_now();
        let body = http_body_util::Full::new(bytes::Bytes::from_static(text.as_bytes()));
        let mut s = Box::pin(
            BodyEvents::new(body, Duration::from_secs(5)).with_timings(Some(timings.clone())),
        );
        let first = s.next().await.expect("event").expect("ok");
        assert_eq!(first.type_name(), "message_start");
        assert!(
            timings.first_token().is_none(),
            "message_start is not a token"
        );
        let second = s.next().await.expect("event").expect("ok");
        assert_eq!(second.type_name(), "content_block_delta");
        assert!(timings.first_token().is_some());
        let end = s.next().await.expect("an error closes the cut stream");
        assert_eq!(
            end.expect_err("no message_stop").kind(),
            crate::ErrorKind::UpstreamUnavailable
        );
        assert!(s.next().await.is_none());
    }

    async fn body_events_of(text: String) -> Vec<Result<StreamEvent, AiError>> {
        use futures_util::StreamExt;
        let body = http_body_util::Full::new(bytes::Bytes::from(text));
        BodyEvents::new(body, None).collect().await
    }

    const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"x\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":1}}}\n\n";

    #[tokio::test]
    async fn body_events_end_cleanly_after_message_stop() {
        let text = format!("{START}event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n");
        let items = body_events_of(text).await;
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_body_error_after_message_stop_is_a_clean_end() {
        use futures_util::StreamExt;
        // E.g. a gzip body cut after its last event: the decoder fails on the missing
        // trailer, but the answer is whole.
        let frames: Vec<Result<http_body::Frame<bytes::Bytes>, std::io::Error>> = vec![
            Ok(http_body::Frame::data(bytes::Bytes::from(format!(
                "{START}event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
            )))),
            Err(std::io::Error::other("unexpected end of gzip stream")),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let items: Vec<_> = BodyEvents::new(body, None).collect().await;
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn body_events_report_a_stream_cut_between_or_inside_events() {
        for (tail, mid) in [
            ("", false),
            ("event: content_block_delta\n", true),
            (
                "event: content_block_delta\ndata: {\"type\":\"content_blo",
                true,
            ),
        ] {
            let text = format!("{START}{tail}");
            let items = body_events_of(text).await;
            assert_eq!(items.len(), 2, "{tail:?}");
            let err = items[1].as_ref().expect_err("cut");
            assert_eq!(err.kind(), crate::ErrorKind::UpstreamUnavailable);
            assert_eq!(
                err.message().contains("middle of an event"),
                mid,
                "{tail:?}"
            );
            assert!(err.message().contains("ended the stream early"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn body_events_end_with_upstream_timeout_when_the_body_goes_quiet() {
        use futures_util::StreamExt;
        let pending = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
        >());
        let mut s = Box::pin(BodyEvents::new(pending, Duration::from_secs(30)));
        let err = s.next().await.expect("item").expect_err("timeout");
        assert_eq!(err.kind(), crate::error::ErrorKind::UpstreamTimeout);
        assert!(s.next().await.is_none());
    }

    #[test]
    fn encoder_cannot_be_made_to_forge_events() {
        let mut out = BytesMut::new();
        encode(Some("x\ndata: forged"), "a\rb\r\nc", &mut out);
        assert_eq!(&out[..], b"event: message\ndata: a\ndata: b\ndata: c\n\n");
        let ev: StreamEvent =
            serde_json::from_str(r#"{"type":"evil\nevent: error"}"#).expect("other");
        let mut out = BytesMut::new();
        encode_event(&ev, &mut out);
        let evs = all(&out);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event.as_deref(), Some("message"));
    }

    #[test]
    fn a_huge_idle_timeout_does_not_overflow() {
        let _ = deadline(Duration::MAX);
    }

    #[test]
    fn encode_multiline_data() {
        let mut out = BytesMut::new();
        encode(Some("x"), "a\nb", &mut out);
        assert_eq!(&out[..], b"event: x\ndata: a\ndata: b\n\n");
        assert_eq!(all(&out)[0].data, "a\nb");
    }
}
