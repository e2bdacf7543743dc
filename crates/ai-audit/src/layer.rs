//! [`AuditLayer`] (typed, one record per call) and [`AuditEdgeLayer`] (HTTP level, records
//! what never reached the typed layer: failed authentications, refused bodies).

use crate::metrics::Metrics;
use crate::record::{self, EdgeFacts, Finish, Observed, RequestFacts};
use crate::writer::{Ack, AuditWriter, FailurePolicy, Unavailable};
use ai_core::{
    AiBody, AiError, AuthFailure, CallReport, ClientAddr, Completion, CompletionFuture, ErrorKind,
    EventStream, MessagesRequest, Served, StreamEvent, Timings, Verdicts,
};
use bytes::Bytes;
use futures_core::Stream;
use futures_util::{FutureExt as _, StreamExt as _, TryFutureExt as _};
use http::{Request, Response, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing::field::Empty;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Writes one audit record per request that reaches it, when the response is over, and
/// counts the call in the metrics. See the crate docs.
#[derive(Clone)]
pub struct AuditLayer {
    shared: Arc<Shared>,
}

struct Shared {
    writer: AuditWriter,
    capture: bool,
    metrics: Metrics,
    limiter: Mutex<Limiter>,
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer")
            .field("writer", &self.shared.writer)
            .field("capture", &self.shared.capture)
            .finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// A layer writing through `writer`; no capture, no tenant label, 60 records per
    /// minute of refused unauthenticated traffic per source.
    pub fn new(writer: AuditWriter) -> Self {
        Self::build(writer, false, false, 60, Duration::from_secs(60))
    }

    fn build(
        writer: AuditWriter,
        capture: bool,
        tenant_label: bool,
        per_window: u32,
        window: Duration,
    ) -> Self {
        crate::metrics::describe();
        AuditLayer {
            shared: Arc::new(Shared {
                writer,
                capture,
                metrics: Metrics::new(tenant_label),
                limiter: Mutex::new(Limiter::new(per_window, window)),
            }),
        }
    }

    fn rebuild(self, f: impl FnOnce(&mut (bool, bool, u32, Duration))) -> Self {
        let s = &self.shared;
        let limiter = s
            .limiter
            .lock()
            .map(|l| (l.per_window, l.window))
            .unwrap_or((60, Duration::from_secs(60)));
        let mut p = (s.capture, s.metrics.has_tenant(), limiter.0, limiter.1);
        f(&mut p);
        Self::build(s.writer.clone(), p.0, p.1, p.2, p.3)
    }

    /// Keeps the request as the redaction layer left it in each record (`capture`).
    /// Without a redaction layer in the stack nothing is captured: raw prompts are never
    /// written.
    pub fn capture_redacted(self, on: bool) -> Self {
        self.rebuild(|p| p.0 = on)
    }

    /// Adds a `tenant` label to `gen_ai_gateway_requests_total` (at most 256 values).
    pub fn tenant_label(self, on: bool) -> Self {
        self.rebuild(|p| p.1 = on)
    }

    /// Refused unauthenticated requests recorded one by one per source address and
    /// `window`; beyond that they are counted into one aggregate record per source and
    /// window.
    pub fn unauthenticated_limit(self, per_window: u32, window: Duration) -> Self {
        self.rebuild(|p| {
            p.2 = per_window;
            p.3 = window.max(Duration::from_millis(1));
        })
    }

    /// The writer.
    pub fn writer(&self) -> &AuditWriter {
        &self.shared.writer
    }

    /// The HTTP-level part: place it outside authentication and the edge codec so
    /// requests they refuse are recorded too.
    pub fn edge(&self) -> AuditEdgeLayer {
        AuditEdgeLayer {
            shared: self.shared.clone(),
        }
    }

    /// Writes pending aggregate records of refused unauthenticated traffic (call before
    /// closing the writer).
    pub fn flush_aggregates(&self) {
        let records = self
            .shared
            .limiter
            .lock()
            .map(|mut l| l.drain(None))
            .unwrap_or_default();
        for r in records {
            self.shared.send_unreserved(&r);
        }
    }
}

impl Shared {
    fn send_unreserved(&self, rec: &record::AuditRecord) {
        if let Ok(bytes) = serde_json::to_vec(rec) {
            self.metrics.record(rec);
            self.writer.send_unreserved(Bytes::from(bytes));
        }
    }

    fn fail_closed(&self) -> bool {
        self.writer.config().failure == FailurePolicy::Closed
    }

    fn waits(&self) -> bool {
        self.writer.waits_for_durable()
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Audit<S> {
        Audit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`AuditLayer`] builds.
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The error a request gets when its record cannot be written: 503, `api_error`.
fn unavailable(e: Unavailable) -> AiError {
    metrics::counter!("gen_ai_gateway_audit_refused_total").increment(1);
    AiError::new(ErrorKind::Api, e.to_string()).with_status(StatusCode::SERVICE_UNAVAILABLE)
}

#[derive(Clone, Default)]
struct EdgeClaim(Arc<AtomicBool>);

type AckCell = Arc<Mutex<Option<Ack>>>;
type EventItem = Result<StreamEvent, AiError>;
type AckWait = BoxFuture<Result<(), AiError>>;

async fn wait_ack(cell: &AckCell, fail_closed: bool) -> Result<(), AiError> {
    let ack = cell.lock().ok().and_then(|mut a| a.take());
    match ack {
        None => Ok(()),
        Some(ack) => match ack.wait().await {
            Ok(()) => Ok(()),
            Err(e) if fail_closed => Err(unavailable(e)),
            Err(_) => Ok(()),
        },
    }
}

impl<S> Service<Request<MessagesRequest>> for Audit<S>
where
    S: Service<Request<MessagesRequest>, Response = Response<AiBody>, Error = AiError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<AiBody>;
    type Error = AiError;
    type Future = BoxFuture<Result<Response<AiBody>, AiError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<MessagesRequest>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        if let Some(claim) = req.extensions().get::<EdgeClaim>() {
            claim.0.store(true, Ordering::Relaxed);
        }
        let report = match req.extensions().get::<CallReport>() {
            Some(r) => r.clone(),
            None => {
                let r = CallReport::default();
                req.extensions_mut().insert(r.clone());
                r
            }
        };
        let verdicts = match req.extensions().get::<Verdicts>() {
            Some(v) => v.clone(),
            None => {
                let v = Verdicts::default();
                req.extensions_mut().insert(v.clone());
                v
            }
        };
        let timings = req.extensions().get::<Timings>().cloned();
        let span = tracing::info_span!(
            target: "ai_audit",
            "gen_ai",
            gen_ai.operation.name = "chat",
            gen_ai.system = Empty,
            gen_ai.provider.name = Empty,
            gen_ai.request.model = %req.body().model,
            gen_ai.request.max_tokens = req.body().max_tokens,
            gen_ai.request.stream = req.body().is_stream(),
            gen_ai.response.model = Empty,
            gen_ai.response.finish_reasons = Empty,
            gen_ai.usage.input_tokens = Empty,
            gen_ai.usage.output_tokens = Empty,
            gen_ai.usage.cache_read_input_tokens = Empty,
            gen_ai.usage.cache_creation_input_tokens = Empty,
            error.type = Empty,
            outcome = Empty,
        );
        let facts = RequestFacts::capture(&req);
        Box::pin(async move {
            let slot = match shared.writer.reserve().await {
                Ok(s) => s,
                Err(e) => return Err(unavailable(e)),
            };
            let observed = Arc::new(Mutex::new(Observed::default()));
            let ack: AckCell = Arc::default();
            let call = {
                let observed = observed.clone();
                inner
                    .call(req)
                    .map_ok(move |resp| observe(resp, observed, timings))
            };
            let on_done = {
                let shared = shared.clone();
                let ack = ack.clone();
                let span = span.clone();
                move |c: Completion| {
                    let mut obs = observed.lock().unwrap_or_else(|p| p.into_inner());
                    if obs.stream {
                        metrics::gauge!("gen_ai_gateway_streams_in_flight").decrement(1.0);
                    }
                    let rec = facts.finish(Finish {
                        completion: &c,
                        report: &report,
                        verdicts: &verdicts,
                        observed: &mut obs,
                        capture: shared.capture,
                    });
                    drop(obs);
                    record_span(&span, &rec, &c);
                    shared.metrics.record(&rec);
                    let bytes = serde_json::to_vec(&rec).unwrap_or_default();
                    let a = slot.send(Bytes::from(bytes));
                    if shared.waits() {
                        if let Ok(mut cell) = ack.lock() {
                            *cell = Some(a);
                        }
                    }
                }
            };
            let fail_closed = shared.fail_closed();
            let out = CompletionFuture::new(call, on_done).instrument(span).await;
            match out {
                Err(e) => {
                    wait_ack(&ack, fail_closed).await?;
                    Err(e)
                }
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = match body {
                        AiBody::Events(s) => AiBody::Events(Box::pin(Gate {
                            inner: s,
                            ack,
                            fail_closed,
                            waiting: None,
                            done: false,
                        })),
                        other => {
                            wait_ack(&ack, fail_closed).await?;
                            other
                        }
                    };
                    Ok(Response::from_parts(parts, body))
                }
            }
        })
    }
}

fn record_span(span: &tracing::Span, rec: &record::AuditRecord, c: &Completion) {
    if span.is_disabled() {
        return;
    }
    if let Some(s) = &rec.served {
        span.record("gen_ai.system", s.provider.as_str());
        span.record("gen_ai.provider.name", s.provider.as_str());
        span.record(
            "gen_ai.response.model",
            c.model.as_deref().unwrap_or(&s.model),
        );
    }
    if let Some(r) = &c.stop_reason {
        span.record("gen_ai.response.finish_reasons", r.as_str());
    }
    if let Some(u) = &rec.tokens.upstream {
        span.record("gen_ai.usage.input_tokens", u.input);
        span.record("gen_ai.usage.output_tokens", u.output);
        span.record("gen_ai.usage.cache_read_input_tokens", u.cache_read_input);
        span.record(
            "gen_ai.usage.cache_creation_input_tokens",
            u.cache_creation_input,
        );
    }
    if let Some(r) = &rec.reason {
        span.record("error.type", r.as_str());
    }
    span.record("outcome", rec.outcome.as_str());
}

fn observe(
    resp: Response<AiBody>,
    observed: Arc<Mutex<Observed>>,
    timings: Option<Timings>,
) -> Response<AiBody> {
    if let Ok(mut o) = observed.lock() {
        o.status = Some(resp.status().as_u16());
        o.served = resp
            .extensions()
            .get::<Served>()
            .map(|s| record::ServedRec {
                provider: s.provider.to_string(),
                model: s.model.to_string(),
                request_id: s.request_id.as_deref().map(str::to_owned),
            });
    }
    resp.map(|body| match body {
        AiBody::Message(m) => {
            if let Ok(mut o) = observed.lock() {
                o.message(&m);
            }
            AiBody::Message(m)
        }
        AiBody::Events(s) => {
            if let Ok(mut o) = observed.lock() {
                o.stream = true;
            }
            metrics::gauge!("gen_ai_gateway_streams_in_flight").increment(1.0);
            let mut first = timings;
            AiBody::Events(Box::pin(s.inspect(move |item| {
                if let Ok(ev) = item {
                    if let (Some(t), StreamEvent::ContentBlockDelta(_)) = (&first, ev) {
                        t.mark_first_token();
                        first = None;
                    }
                    if let Ok(mut o) = observed.lock() {
                        o.event(ev);
                    }
                }
            })))
        }
        other => other,
    })
}

/// Holds the last event of a stream (`message_stop`, an error, or the end) until the
/// record of the call is durable: a client that saw the end of its answer has a record.
struct Gate {
    inner: EventStream,
    ack: AckCell,
    fail_closed: bool,
    /// The acknowledgement being awaited, and the item held back until it comes.
    waiting: Option<(AckWait, Option<EventItem>)>,
    done: bool,
}

impl Stream for Gate {
    type Item = Result<StreamEvent, AiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some((fut, _)) = &mut this.waiting {
                let r = ready!(fut.as_mut().poll(cx));
                let item = this.waiting.take().and_then(|(_, item)| item);
                return Poll::Ready(match r {
                    Ok(()) => item,
                    Err(e) => {
                        this.done = true;
                        Some(Err(e))
                    }
                });
            }
            if this.done {
                return Poll::Ready(None);
            }
            let item = ready!(this.inner.as_mut().poll_next(cx));
            let terminal = matches!(
                item,
                None | Some(Err(_)) | Some(Ok(StreamEvent::MessageStop(_)))
            );
            if terminal {
                if matches!(item, None | Some(Err(_))) {
                    this.done = true;
                }
                let has_ack = this.ack.lock().map(|a| a.is_some()).unwrap_or(false);
                if has_ack {
                    let ack = this.ack.clone();
                    let fail_closed = this.fail_closed;
                    this.waiting = Some((
                        async move { wait_ack(&ack, fail_closed).await }.boxed(),
                        item,
                    ));
                    continue;
                }
            }
            return Poll::Ready(item);
        }
    }
}

/// Built by [`AuditLayer::edge`]: records requests refused before the typed
/// [`AuditLayer`] saw them (authentication failures, with the precise reason from
/// [`AuthFailure`]; bodies the edge codec refused). Refused unauthenticated traffic
/// beyond the configured rate per source is aggregated.
#[derive(Clone)]
pub struct AuditEdgeLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for AuditEdgeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditEdgeLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuditEdgeLayer {
    type Service = AuditEdge<S>;

    fn layer(&self, inner: S) -> AuditEdge<S> {
        AuditEdge {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`AuditEdgeLayer`] builds.
#[derive(Clone)]
pub struct AuditEdge<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for AuditEdge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditEdge")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn endpoint_of(path: &str) -> Option<&'static str> {
    Some(match path {
        "/v1/messages" => "messages",
        "/v1/messages/count_tokens" => "count_tokens",
        "/v1/models" => "list_models",
        p if p.starts_with("/v1/models/") => "get_model",
        _ => return None,
    })
}

impl<S, B, RB> Service<Request<B>> for AuditEdge<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<RB>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let claim = EdgeClaim::default();
        req.extensions_mut().insert(claim.clone());
        let facts = EdgeFacts {
            request_id: req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(record::bounded),
            started: SystemTime::now(),
            start: Instant::now(),
            endpoint: endpoint_of(req.uri().path()),
            source: req.extensions().get::<ClientAddr>().copied(),
        };
        let shared = self.shared.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            if !claim.0.load(Ordering::Relaxed) {
                let failure = resp.extensions().get::<AuthFailure>().map(|f| f.0);
                edge_record(&shared, facts, resp.status().as_u16(), failure);
            }
            Ok(resp)
        })
    }
}

fn edge_record(shared: &Shared, facts: EdgeFacts, status: u16, failure: Option<&str>) {
    let source = facts.source.map(|a| a.0.ip());
    let (write, aggregates) = match failure {
        Some(reason) => shared
            .limiter
            .lock()
            .map(|mut l| l.admit(source, reason))
            .unwrap_or((true, Vec::new())),
        None => (true, Vec::new()),
    };
    for a in &aggregates {
        shared.send_unreserved(a);
    }
    if !write {
        metrics::counter!("gen_ai_gateway_audit_suppressed_total").increment(1);
        return;
    }
    let rec = facts.finish(status, failure);
    shared.metrics.record(&rec);
    // A refusal has no answer to hold back, and must not hold up the requests that got
    // in: its record is queued if there is room now, and counted otherwise.
    match shared.writer.try_reserve() {
        Some(slot) => {
            let _ = slot.send(Bytes::from(serde_json::to_vec(&rec).unwrap_or_default()));
        }
        None => {
            metrics::counter!("gen_ai_gateway_audit_suppressed_total").increment(1);
            tracing::debug!("audit: no room to queue the record of a refused request");
        }
    }
}

/// Per-source windows of refused unauthenticated requests.
#[derive(Debug)]
struct Limiter {
    per_window: u32,
    window: Duration,
    sources: HashMap<Option<IpAddr>, Window>,
    last_sweep: Instant,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    started: SystemTime,
    full: u32,
    suppressed: u64,
    reasons: BTreeMap<String, u64>,
}

/// Most sources tracked at once; more are counted together under source `other`.
const MAX_SOURCES: usize = 10_000;

impl Limiter {
    fn new(per_window: u32, window: Duration) -> Self {
        Limiter {
            per_window,
            window,
            sources: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    fn aggregate_of(source: Option<IpAddr>, w: &Window) -> record::AuditRecord {
        let name = source.map_or_else(|| "other".to_owned(), |ip| ip.to_string());
        record::aggregate(
            &name,
            w.suppressed,
            w.started,
            SystemTime::now(),
            w.reasons.clone(),
        )
    }

    /// Ends windows that are over (all of them with `None`), returning their aggregates.
    fn drain(&mut self, older_than: Option<Duration>) -> Vec<record::AuditRecord> {
        let mut out = Vec::new();
        self.sources.retain(|src, w| {
            let over = older_than.is_none_or(|d| w.start.elapsed() >= d);
            if over && w.suppressed > 0 {
                out.push(Limiter::aggregate_of(*src, w));
            }
            !over
        });
        out
    }

    /// Whether a refusal from `source` gets its own record; aggregates of windows that
    /// ended.
    fn admit(&mut self, source: Option<IpAddr>, reason: &str) -> (bool, Vec<record::AuditRecord>) {
        let mut out = Vec::new();
        if self.last_sweep.elapsed() >= Duration::from_secs(1) {
            self.last_sweep = Instant::now();
            out = self.drain(Some(self.window));
        }
        let key = if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
            None
        } else {
            source
        };
        let w = self.sources.entry(key).or_insert_with(|| Window {
            start: Instant::now(),
            started: SystemTime::now(),
            full: 0,
            suppressed: 0,
            reasons: BTreeMap::new(),
        });
        if w.start.elapsed() >= self.window {
            if w.suppressed > 0 {
                out.push(Limiter::aggregate_of(key, w));
            }
            *w = Window {
                start: Instant::now(),
                started: SystemTime::now(),
                full: 0,
                suppressed: 0,
                reasons: BTreeMap::new(),
            };
        }
        if w.full < self.per_window {
            w.full += 1;
            (true, out)
        } else {
            w.suppressed += 1;
            *w.reasons.entry(reason.to_owned()).or_insert(0) += 1;
            (false, out)
        }
    }
}
