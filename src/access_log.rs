//! [`AccessLogLayer`]: one `info` line per request, written when its response is over
//! (for a stream, when the last event went out or the client left), under the target
//! `ai_gateway::access`. Fields: method, path, status, model (the requested one, from
//! [`RequestedModel`], at most 128 characters), request id (`x-request-id`), `latency_ms`
//! (to the response headers), `duration_ms` (to the end of the body), `auth_failure` (why
//! authentication refused it, from [`AuthFailure`]) and `completed`
//! (false when the client went away first; a request dropped before its response has
//! no status and no latency). Never content: no body, no query string, no header values
//! besides the request id.
//!
//! Filter it like any target: `RUST_LOG=info,ai_gateway::access=off` turns it off.

use ai_core::{AuthFailure, RequestedModel};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tower::{Layer, Service};

/// The log target of access lines.
pub const TARGET: &str = "ai_gateway::access";

/// Builds [`AccessLog`]. See the [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLogLayer;

impl AccessLogLayer {
    /// The layer.
    pub const fn new() -> Self {
        AccessLogLayer
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

/// Logs one line per request. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
}

/// What is known of a request before its response.
struct Entry {
    start: Instant,
    method: Method,
    path: http::Uri,
    request_id: Option<http::HeaderValue>,
}

/// Holds the entry while the response is awaited: a request whose future is dropped
/// first (the client left, or shutdown) still gets its line, with no status.
struct Pending(Option<Entry>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(entry) = self.0.take() {
            drop(Line {
                entry,
                latency: None,
                status: None,
                model: None,
                auth_failure: None,
                completed: false,
            });
        }
    }
}

impl<S, B, RB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Body<Data = Bytes>,
{
    type Response = Response<AccessLogBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Nothing is gathered when nobody listens (benchmarks, embedders without logs).
        let entry = tracing::enabled!(target: TARGET, tracing::Level::INFO).then(|| Entry {
            start: Instant::now(),
            method: req.method().clone(),
            path: req.uri().clone(),
            request_id: req.headers().get("x-request-id").cloned(),
        });
        ResponseFuture {
            inner: self.inner.call(req),
            pending: Pending(entry),
        }
    }
}

pin_project! {
    /// The response future of [`AccessLog`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Pending,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture { .. }")
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Body,
{
    type Output = Result<Response<AccessLogBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx))?;
        let line = this.pending.0.take().map(|e| Line {
            latency: Some(e.start.elapsed()),
            status: Some(resp.status()),
            model: resp.extensions().get::<RequestedModel>().cloned(),
            auth_failure: resp.extensions().get::<AuthFailure>().map(|f| f.0),
            entry: e,
            // An empty body may never be polled.
            completed: resp.body().is_end_stream(),
        });
        Poll::Ready(Ok(resp.map(|inner| AccessLogBody { inner, line })))
    }
}

/// A line waiting for the end of its body; written on drop.
struct Line {
    entry: Entry,
    latency: Option<std::time::Duration>,
    status: Option<StatusCode>,
    model: Option<RequestedModel>,
    auth_failure: Option<&'static str>,
    completed: bool,
}

/// Longest model name written (the field is the caller's).
const MAX_MODEL_CHARS: usize = 128;

impl Drop for Line {
    fn drop(&mut self) {
        let e = &self.entry;
        let request_id = e.request_id.as_ref().and_then(|v| v.to_str().ok());
        let model = self
            .model
            .as_ref()
            .map(|m| match m.0.char_indices().nth(MAX_MODEL_CHARS) {
                Some((cut, _)) => &m.0[..cut],
                None => &m.0,
            });
        tracing::info!(
            target: TARGET,
            method = %e.method,
            path = e.path.path(),
            status = self.status.map(|s| s.as_u16()),
            model,
            request_id,
            auth_failure = self.auth_failure,
            latency_ms = self.latency.map(millis),
            duration_ms = millis(e.start.elapsed()),
            completed = self.completed,
            "request"
        );
    }
}

/// Milliseconds with microsecond resolution (`0.361`, not `0.36154200000000003`).
fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

pin_project! {
    /// The response body of [`AccessLog`]: the inner body, unchanged.
    pub struct AccessLogBody<B> {
        #[pin]
        inner: B,
        line: Option<Line>,
    }
}

impl<B> fmt::Debug for AccessLogBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessLogBody { .. }")
    }
}

impl<B: Body<Data = Bytes>> Body for AccessLogBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let out = ready!(this.inner.as_mut().poll_frame(cx));
        if out.is_none() || this.inner.is_end_stream() {
            if let Some(mut line) = this.line.take() {
                line.completed = true;
            }
        }
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf8")
        }
    }

    fn subscriber(out: &Captured) -> impl tracing::Subscriber + Send + Sync {
        let out = out.clone();
        tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish()
    }

    fn request() -> Request<()> {
        Request::post("/v1/messages?secret=1")
            .header("x-request-id", "rid-7")
            .body(())
            .expect("request")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_line_when_the_body_ends_never_with_content() {
        let out = Captured::default();
        let _guard = tracing::subscriber::set_default(subscriber(&out));
        let long_model: String = "m".repeat(300);
        let model = long_model.clone();
        let svc = AccessLogLayer::new().layer(tower::service_fn(move |_req: Request<()>| {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"text\":\"private\"}")));
            resp.extensions_mut()
                .insert(RequestedModel(std::sync::Arc::from(model.as_str())));
            async move { Ok::<_, std::convert::Infallible>(resp) }
        }));
        let resp = svc.oneshot(request()).await.expect("infallible");
        assert!(out.text().is_empty(), "not before the body is over");
        let _ = resp.into_body().collect().await.expect("body");
        let text = out.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("method=POST path=\"/v1/messages\" status=200"),
            "{text}"
        );
        assert!(text.contains("request_id=\"rid-7\""), "{text}");
        assert!(text.contains("completed=true"), "{text}");
        assert!(
            text.contains(&format!("model=\"{}\"", &long_model[..128])),
            "{text}"
        );
        assert!(!text.contains(&long_model[..129]), "model cut to 128 chars");
        assert!(
            !text.contains("private") && !text.contains("secret"),
            "{text}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_dropped_before_its_response_still_gets_a_line() {
        let out = Captured::default();
        let _guard = tracing::subscriber::set_default(subscriber(&out));
        let mut svc = AccessLogLayer::new().layer(tower::service_fn(|_req: Request<()>| {
            std::future::pending::<Result<Response<Full<Bytes>>, std::convert::Infallible>>()
        }));
        let fut = svc.ready().await.expect("ready").call(request());
        drop(fut);
        let text = out.text();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("completed=false"), "{text}");
        assert!(!text.contains("status="), "no status: {text}");
    }
}
