//! The assembled gateway served over hyper: what `examples/gateway.rs` runs and what the
//! integration tests drive over real sockets.
//!
//! Stack, outermost first: `x-request-id` (set, then echoed on the response), the access
//! log ([`AccessLogLayer`]), tracing, `/metrics` (when configured), the audit edge (records
//! what authentication and the codec refuse), authentication, panic catching (a panic
//! becomes an Anthropic-shaped 500, never a dropped connection), the edge codec, the audit
//! layer, model access, rate limits, budgets, redaction and output inspection (each when
//! configured), user pseudonyms, then the provider.

use crate::access_log::AccessLogLayer;
use ai_audit::AuditLayer;
use ai_auth::{AuthLayer, ModelAccessLayer, UserPseudonymLayer};
use ai_core::{AiBody, AiError, ClientAddr, MessagesCodecLayer, MessagesRequest};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::add_extension::AddExtensionLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId as HeaderRequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Settings of the HTTP server around the stack.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time a client has to send the request headers; a slower client is disconnected
    /// (no request was read, so there is nothing to answer). Default 30 seconds.
    pub header_read_timeout: Duration,
    /// Longest a write to a client may stay blocked: a client that stops reading a
    /// stream (its socket buffers full) is disconnected after this, which drops the
    /// upstream request. `None` waits forever. Default 60 seconds.
    pub write_timeout: Option<Duration>,
    /// How long shutdown waits for open requests (streams) to finish. Default 30 seconds.
    pub shutdown_timeout: Duration,
    /// The edge codec (body limit 32 MiB, body timeout 60 s by default).
    pub codec: MessagesCodecLayer,
    /// Caller authentication; `None` serves everyone (keep such a gateway on loopback).
    /// Default `None`.
    pub auth: Option<AuthLayer>,
    /// `metadata.user_id` pseudonyms for the vendor. Default: disabled.
    pub pseudonym: UserPseudonymLayer,
    /// The audit layer (its edge part goes outside authentication). On shutdown its
    /// aggregates are flushed and its log sealed. Default `None`.
    pub audit: Option<AuditLayer>,
    /// Rate limits, after model access (a refused model costs nothing) and inside the
    /// audit layer (refusals are recorded). Default `None`.
    pub ratelimit: Option<ai_ratelimit::RateLimitLayer>,
    /// Budgets, after rate limits (a call the limiter refuses holds no money). At
    /// shutdown a memory store saves its spend. Default `None`.
    pub budget: Option<ai_budget::BudgetLayer>,
    /// Redaction of personal data and secrets, after budgets (a refused call is never
    /// scanned) and before the provider; tokens in answers are put back. Default `None`.
    pub redact: Option<ai_redact::RedactLayer>,
    /// Inspection of the answer as it streams, inside redaction (it sees what the
    /// provider returns, before tokens are put back, so a caller's own data echoed back
    /// is not a finding) and before the provider. Default `None`.
    pub inspect: Option<ai_sse_inspect::InspectLayer>,
    /// The bearer token of the admin routes (`GET /admin/budgets/{scope}:{owner}`),
    /// answered before caller authentication. `None` (default): no admin routes.
    pub admin_token: Option<Arc<str>>,
    /// `GET <path>` answered with the metrics text (Prometheus exposition format),
    /// before authentication. Default `None`.
    pub metrics: Option<MetricsEndpoint>,
}

/// Where and how the server answers metrics scrapes.
#[derive(Clone)]
pub struct MetricsEndpoint {
    /// The path, e.g. `/metrics`.
    pub path: String,
    /// Renders the current metrics.
    pub render: Arc<dyn Fn() -> String + Send + Sync>,
}

impl MetricsEndpoint {
    /// Installs a Prometheus recorder as the process's `metrics` recorder (latency
    /// histograms with [`ai_audit::metrics::LATENCY_BUCKETS`]) and returns the endpoint that
    /// renders it at `path`. Call once, inside a Tokio runtime (a task runs the exporter's
    /// upkeep every 5 seconds).
    pub fn prometheus(path: &str) -> Result<MetricsEndpoint, String> {
        use ai_audit::metrics::{HISTOGRAMS, LATENCY_BUCKETS};
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        let mut builder = PrometheusBuilder::new();
        for name in HISTOGRAMS {
            builder = builder
                .set_buckets_for_metric(Matcher::Full((*name).to_owned()), LATENCY_BUCKETS)
                .map_err(|e| format!("metrics: {e}"))?;
        }
        let handle = builder
            .install_recorder()
            .map_err(|e| format!("metrics: cannot install the recorder: {e}"))?;
        ai_audit::metrics::describe();
        ai_ratelimit::describe_metrics();
        ai_budget::describe_metrics();
        ai_redact::describe_metrics();
        ai_sse_inspect::describe_metrics();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Ok(MetricsEndpoint {
            path: path.to_owned(),
            render: Arc::new(move || handle.render()),
        })
    }
}

impl fmt::Debug for MetricsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsEndpoint")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Answers `GET` on the metrics path; everything else goes to the inner service.
#[derive(Clone, Debug)]
struct MetricsRoute<S> {
    inner: S,
    endpoint: Option<MetricsEndpoint>,
}

type RouteBody<B> = http_body_util::Either<B, Full<Bytes>>;

impl<S, B, RB> Service<Request<B>> for MetricsRoute<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<RouteBody<RB>>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response<RouteBody<RB>>, S::Error>>,
        futures_util::future::MapOk<S::Future, fn(Response<RB>) -> Response<RouteBody<RB>>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures_util::TryFutureExt as _;
        if let Some(m) = &self.endpoint {
            if req.uri().path() == m.path && req.method() == http::Method::GET {
                let mut resp =
                    Response::new(http_body_util::Either::Right(Full::new(Bytes::from((m
                        .render)(
                    )))));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                return futures_util::future::Either::Left(std::future::ready(Ok(resp)));
            }
        }
        let left: fn(Response<RB>) -> Response<RouteBody<RB>> =
            |r| r.map(http_body_util::Either::Left);
        futures_util::future::Either::Right(self.inner.call(req).map_ok(left))
    }
}

/// Answers `GET /admin/...` when an admin token is configured; everything else goes to
/// the inner service.
#[derive(Clone)]
struct AdminRoute<S> {
    inner: S,
    token: Option<Arc<str>>,
    budget: Option<ai_budget::BudgetLayer>,
}

type AdminFuture<F, RB, E> = futures_util::future::Either<
    futures_util::future::BoxFuture<'static, Result<Response<RouteBody<RB>>, E>>,
    futures_util::future::MapOk<F, fn(Response<RB>) -> Response<RouteBody<RB>>>,
>;

impl<S, B, RB> Service<Request<B>> for AdminRoute<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RouteBody<RB>>;
    type Error = S::Error;
    type Future = AdminFuture<S::Future, RB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures_util::TryFutureExt as _;
        if let Some(token) = &self.token {
            if req.uri().path().starts_with("/admin/") {
                let answer = admin(req, token.clone(), self.budget.clone());
                return futures_util::future::Either::Left(Box::pin(async move {
                    Ok(answer.await.map(http_body_util::Either::Right))
                }));
            }
        }
        let left: fn(Response<RB>) -> Response<RouteBody<RB>> =
            |r| r.map(http_body_util::Either::Left);
        futures_util::future::Either::Right(self.inner.call(req).map_ok(left))
    }
}

/// Compares in time that depends on neither where the first difference is nor whether
/// the lengths match.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    for i in 0..given.len().max(secret.len()) {
        diff |= given.get(i).copied().unwrap_or(0) ^ secret.get(i).copied().unwrap_or(0);
    }
    diff == 0 && !secret.is_empty()
}

fn json_response(status: http::StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn admin_error(e: AiError) -> Response<Full<Bytes>> {
    let status = e.status();
    let mut resp = json_response(status, e.to_json().to_vec());
    for (k, v) in e.headers() {
        resp.headers_mut().insert(k, v.clone());
    }
    resp
}

/// The admin API: `GET /admin/budgets/{scope}:{owner}` with `authorization: Bearer
/// <token>` answers the current window of every budget of that owner.
fn admin<B>(
    req: Request<B>,
    token: Arc<str>,
    budget: Option<ai_budget::BudgetLayer>,
) -> impl Future<Output = Response<Full<Bytes>>> + Send + 'static {
    use ai_core::ErrorKind;
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        })
        .unwrap_or("");
    let authorized = same_secret(given.trim().as_bytes(), token.as_bytes());
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    async move {
        if !authorized {
            return admin_error(AiError::new(
                ErrorKind::Authentication,
                "the admin API needs `authorization: Bearer <admin token>`",
            ));
        }
        let Some(rest) = path.strip_prefix("/admin/budgets/") else {
            return admin_error(AiError::new(
                ErrorKind::NotFound,
                format!("no admin route {path}; try GET /admin/budgets/{{scope}}:{{owner}}"),
            ));
        };
        if method != http::Method::GET {
            return admin_error(AiError::new(
                ErrorKind::MethodNotAllowed,
                "the budget admin route only answers GET",
            ));
        }
        let Some(budget) = budget else {
            return admin_error(AiError::new(
                ErrorKind::NotFound,
                "budgets are off ([budget] enabled = false)",
            ));
        };
        // Owners may hold `@`, spaces, ...: `%XX` escapes are decoded.
        let decoded = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
        let parsed = decoded
            .split_once(':')
            .and_then(|(s, o)| Some((ai_budget::Scope::from_name(s)?, o)))
            .filter(|(_, o)| !o.is_empty());
        let Some((scope, owner)) = parsed else {
            return admin_error(AiError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "{rest:?} is not scope:owner, e.g. team:eng or subject:alice (scopes: subject, team, tenant, project, key, global)"
                ),
            ));
        };
        match budget.standing(scope, owner).await {
            Ok(standings) => {
                let body = serde_json::json!({
                    "scope": scope.as_str(),
                    "owner": owner,
                    "budgets": standings,
                });
                json_response(http::StatusCode::OK, body.to_string().into_bytes())
            }
            Err(e) => admin_error(
                AiError::new(ErrorKind::Api, format!("cannot read budgets: {e}"))
                    .with_status(http::StatusCode::SERVICE_UNAVAILABLE),
            ),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(30),
            write_timeout: Some(Duration::from_secs(60)),
            shutdown_timeout: Duration::from_secs(30),
            codec: MessagesCodecLayer::new(),
            auth: None,
            pseudonym: UserPseudonymLayer::disabled(),
            audit: None,
            ratelimit: None,
            budget: None,
            redact: None,
            inspect: None,
            admin_token: None,
            metrics: None,
        }
    }
}

/// Makes `x-request-id` values with [`ai_core::RequestId::generate`]: unique per process,
/// no system call per request (a v4 UUID reads the OS random source every time).
#[derive(Debug, Clone, Copy)]
struct MakeGatewayId;

impl MakeRequestId for MakeGatewayId {
    fn make_request_id<B>(&mut self, _req: &Request<B>) -> Option<HeaderRequestId> {
        let id = ai_core::RequestId::generate();
        http::HeaderValue::from_str(id.as_str())
            .ok()
            .map(HeaderRequestId::new)
    }
}

fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response<Full<Bytes>> {
    tracing::error!("a request handler panicked");
    let e = AiError::api("internal error");
    let mut resp = Response::new(Full::new(e.to_json()));
    *resp.status_mut() = e.status();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves the gateway on `listener` until `shutdown` resolves, then waits for open
/// connections to finish. Sets TCP_NODELAY on every accepted socket (small SSE writes
/// must not wait for a delayed ACK) and applies the header-read and write timeouts.
pub async fn serve<P>(
    listener: TcpListener,
    provider: P,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    P: Service<Request<MessagesRequest>, Response = Response<AiBody>, Error = AiError>
        + Clone
        + Send
        + 'static,
    P::Future: Send + 'static,
{
    let typed = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(config.codec.clone())
        .option_layer(config.audit.clone())
        .layer(ModelAccessLayer::new())
        .option_layer(config.ratelimit.clone())
        .option_layer(config.budget.clone())
        .option_layer(config.redact.clone())
        .option_layer(config.inspect.clone())
        .layer(config.pseudonym.clone())
        .service(provider);
    let edge = config.audit.as_ref().map(AuditLayer::edge);
    // Authentication changes the body type, so the two stacks are two types.
    let served = match config.auth.clone() {
        Some(auth) => {
            let svc = ServiceBuilder::new()
                .option_layer(edge)
                .service(auth.layer(typed));
            run(listener, svc, &config, shutdown).await
        }
        None => {
            let svc = ServiceBuilder::new().option_layer(edge).service(typed);
            run(listener, svc, &config, shutdown).await
        }
    };
    if let Some(budget) = &config.budget {
        match budget.save() {
            Ok(()) => tracing::debug!("budget spend saved"),
            Err(e) => tracing::error!(error = %e, "could not save budget spend at shutdown"),
        }
    }
    if let Some(audit) = &config.audit {
        audit.flush_aggregates();
        audit
            .writer()
            .close_async(std::time::Duration::from_secs(5))
            .await;
    }
    served
}

/// Serves `inner` behind the HTTP-level layers every request passes first.
async fn run<S, B>(
    listener: TcpListener,
    inner: S,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<
            Request<hyper::body::Incoming>,
            Response = Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + std::fmt::Display,
{
    let svc = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeGatewayId))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(AccessLogLayer::new())
        // The span names the path only: a query string may carry what a caller should
        // not have put there.
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &Request<hyper::body::Incoming>| {
                tracing::debug_span!("request", method = %req.method(), path = req.uri().path())
            },
        ))
        .service(MetricsRoute {
            inner: AdminRoute {
                inner,
                token: config.admin_token.clone(),
                budget: config.budget.clone(),
            },
            endpoint: config.metrics.clone(),
        });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    // HTTP/2 (h2c) has no idle timeout in hyper: pings find dead peers.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(config.write_timeout);
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(Box::pin(stream)),
            TowerToHyperService::new(AddExtensionLayer::new(ClientAddr(peer)).layer(svc.clone())),
        );
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(config.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown timeout; closing them");
    }
    Ok(())
}
