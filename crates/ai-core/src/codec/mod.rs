//! The edge codec: HTTP bytes in, typed [`MessagesRequest`] to the inner service, typed
//! [`AiBody`] back to bytes, and every [`AiError`] rendered as Anthropic's JSON error with
//! its status and `retry-after`.
//!
//! | path | method | endpoint |
//! |---|---|---|
//! | `/v1/messages` | POST | [`Endpoint::Messages`] |
//! | `/v1/messages/count_tokens` | POST | [`Endpoint::CountTokens`] |
//! | `/v1/models` | GET | [`Endpoint::ListModels`] (query string kept on the URI) |
//! | `/v1/models/{id}` | GET | [`Endpoint::GetModel`] |
//! | `/v1/chat/completions` | POST | [`Endpoint::Messages`], OpenAI's shape |
//!
//! **The OpenAI surface.** `POST /v1/chat/completions` takes OpenAI's request
//! ([`openai::from_chat_request`](crate::openai::from_chat_request); no cap means
//! [`OPENAI_DEFAULT_MAX_TOKENS`]), marks it [`Surface::OPENAI`](crate::ext::Surface), and
//! answers in OpenAI's shapes: a `chat.completion`, `chat.completion.chunk`s ending in
//! `data: [DONE]` (a usage chunk first when `stream_options.include_usage` is set), and
//! errors as `{"error": {"message", "type", "param", "code"}}` with the same status and
//! `retry-after`. `GET /v1/models` is shared: a caller that sends neither
//! `anthropic-version` nor `x-api-key` (the OpenAI SDKs) gets OpenAI's list shape.
//!
//! Input errors, each a typed 4xx with Anthropic's error body: unknown path (404), wrong
//! method (405), body not `application/json` (415), body over the limit (413, checked on
//! `content-length` before reading and while reading), body sent too slowly (408),
//! invalid UTF-8 or JSON or a missing required field (400). Error messages never quote
//! request content.
//!
//! The codec also refuses what the Messages API refuses before generating: no
//! `max_tokens`, `max_tokens` below 1, an empty `messages` list (400).
//!
//! Headers stay on the request: `anthropic-version` and `anthropic-beta` reach the
//! provider as the caller sent them. The codec inserts [`Endpoint`], [`RequestId`] (from
//! `x-request-id` when present) and [`Timings`] unless an outer layer already did, and
//! puts [`RequestedModel`] on the response (for access logs of outer layers).
//!
//! A stream request always gets a stream, and never a cut stream that looks finished: a
//! whole message answered to a `stream: true` request is written as the equivalent events,
//! and a stream that ends without `message_stop` (and without an error) gets a closing
//! `event: error` ([`sse::ended_early`](crate::sse::ended_early)).

mod body;

pub use body::CodecBody;

use crate::body::AiBody;
use crate::error::{AiError, ErrorKind};
use crate::ext::{Endpoint, RequestId, RequestedModel, Timings};
use crate::wire::MessagesRequest;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// Boxed error of a request body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Default request body limit: 32 MiB, Anthropic's own limit for the Messages API.
pub const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Default time allowed to receive the whole request body: 60 seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Config {
    body_limit: usize,
    body_timeout: Duration,
}

/// Builds [`MessagesCodec`]. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct MessagesCodecLayer {
    config: Arc<Config>,
}

impl Default for MessagesCodecLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MessagesCodecLayer {
    /// A codec with the default body limit ([`DEFAULT_BODY_LIMIT`]) and body timeout
    /// ([`DEFAULT_BODY_TIMEOUT`]).
    pub fn new() -> Self {
        MessagesCodecLayer {
            config: Arc::new(Config {
                body_limit: DEFAULT_BODY_LIMIT,
                body_timeout: DEFAULT_BODY_TIMEOUT,
            }),
        }
    }

    /// Largest accepted request body in bytes; larger gets 413. Default 32 MiB.
    pub fn body_limit(self, bytes: usize) -> Self {
        MessagesCodecLayer {
            config: Arc::new(Config {
                body_limit: bytes,
                body_timeout: self.config.body_timeout,
            }),
        }
    }

    /// Time allowed to receive the whole body; slower gets 408. Default 60 seconds.
    pub fn body_timeout(self, timeout: Duration) -> Self {
        MessagesCodecLayer {
            config: Arc::new(Config {
                body_limit: self.config.body_limit,
                body_timeout: timeout,
            }),
        }
    }
}

impl<S> Layer<S> for MessagesCodecLayer {
    type Service = MessagesCodec<S>;

    fn layer(&self, inner: S) -> MessagesCodec<S> {
        MessagesCodec {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The edge codec service. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct MessagesCodec<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> MessagesCodec<S> {
    /// Wraps `inner` with default settings.
    pub fn new(inner: S) -> Self {
        MessagesCodecLayer::new().layer(inner)
    }

    /// A layer with default settings.
    pub fn layer() -> MessagesCodecLayer {
        MessagesCodecLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The codec's response future.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Response<CodecBody>, Infallible>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture { .. }")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<CodecBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, B> Service<Request<B>> for MessagesCodec<S>
where
    S: Service<Request<MessagesRequest>, Response = Response<AiBody>> + Clone + Send + 'static,
    S::Error: Into<AiError> + Send,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<CodecBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness of the inner service is awaited in `call` (after the body is read),
        // so a slow body never holds a slot of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        ResponseFuture {
            inner: Box::pin(handle(inner, config, req)),
        }
    }
}

async fn handle<S, B>(
    mut inner: S,
    config: Arc<Config>,
    req: Request<B>,
) -> Result<Response<CodecBody>, Infallible>
where
    S: Service<Request<MessagesRequest>, Response = Response<AiBody>>,
    S::Error: Into<AiError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .cloned()
        .or_else(|| {
            req.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 128)
                .map(RequestId::new)
        })
        .unwrap_or_else(RequestId::generate);

    let mut shape = Shape::of(&req);
    let typed = match decode(&config, req, &request_id, &mut shape).await {
        Ok(r) => r,
        Err(e) => return Ok(shape.error(e, &request_id)),
    };
    let stream = typed.body().is_stream();
    let endpoint = typed.extensions().get::<Endpoint>().cloned();
    let model = RequestedModel(Arc::from(typed.body().model.as_str()));
    let checked = if typed.extensions().get::<Endpoint>() == Some(&Endpoint::Messages) {
        validate_messages(typed.body())
    } else {
        Ok(())
    };
    let result = match checked {
        Err(e) => Err(e),
        Ok(()) => match tower::ServiceExt::ready(&mut inner).await {
            Ok(svc) => svc.call(typed).await.map_err(Into::into),
            Err(e) => Err(e.into()),
        },
    };
    let mut resp = match (result, shape) {
        (Ok(resp), Shape::Anthropic) => encode(resp, stream, &request_id),
        (Ok(resp), Shape::OpenAi { include_usage }) => {
            encode_openai(resp, stream, include_usage, endpoint.as_ref(), &request_id)
        }
        (Err(e), shape) => shape.error(e, &request_id),
    };
    if !model.0.is_empty() {
        resp.extensions_mut().insert(model);
    }
    Ok(resp)
}

fn route(method: &Method, path: &str) -> Result<Endpoint, AiError> {
    let (endpoint, allowed) = match path {
        "/v1/messages" => (Endpoint::Messages, Method::POST),
        "/v1/messages/count_tokens" => (Endpoint::CountTokens, Method::POST),
        "/v1/chat/completions" => (Endpoint::Messages, Method::POST),
        "/v1/models" => (Endpoint::ListModels, Method::GET),
        p => match p.strip_prefix("/v1/models/") {
            Some(id) if is_model_id(id) => (Endpoint::GetModel(Arc::from(id)), Method::GET),
            _ => {
                return Err(AiError::new(ErrorKind::NotFound, "no such endpoint"));
            }
        },
    };
    if *method != allowed {
        return Err(AiError::new(
            ErrorKind::MethodNotAllowed,
            format!("method not allowed; use {allowed}"),
        )
        .with_header(
            header::ALLOW,
            HeaderValue::from_static(if allowed == Method::GET {
                "GET"
            } else {
                "POST"
            }),
        ));
    }
    Ok(endpoint)
}

/// Model ids are `[A-Za-z0-9._:@-]+` and not `.`/`..`: nothing that could change the
/// upstream path (no `/`, no `%`-escapes).
fn is_model_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

fn is_json(req_headers: &http::HeaderMap) -> bool {
    req_headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn decode<B>(
    config: &Config,
    req: Request<B>,
    request_id: &RequestId,
    shape: &mut Shape,
) -> Result<Request<MessagesRequest>, AiError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let endpoint = route(req.method(), req.uri().path())?;
    let (mut parts, body) = req.into_parts();
    let typed = if parts.method == Method::GET {
        MessagesRequest::default()
    } else {
        if !is_json(&parts.headers) {
            return Err(AiError::new(
                ErrorKind::UnsupportedMediaType,
                "content-type must be application/json",
            ));
        }
        if let Some(len) = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > config.body_limit as u64 {
                return Err(too_large(config.body_limit));
            }
        }
        let bytes = read_body(body, config).await?;
        match shape {
            Shape::Anthropic => parse_json(&bytes)?,
            Shape::OpenAi { include_usage } => {
                let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    AiError::invalid_request(format!(
                        "request body is not valid json: line {} column {}",
                        e.line(),
                        e.column()
                    ))
                })?;
                *include_usage = v["stream_options"]["include_usage"] == true;
                let mut typed = crate::openai::from_chat_request(&v)?;
                // OpenAI makes the cap optional; the Messages API does not.
                typed.max_tokens.get_or_insert(OPENAI_DEFAULT_MAX_TOKENS);
                parts.extensions.insert(crate::ext::Surface::OPENAI);
                typed
            }
        }
    };
    if matches!(shape, Shape::OpenAi { .. }) && parts.method == Method::GET {
        parts.extensions.insert(crate::ext::Surface::OPENAI);
    }
    if parts.extensions.get::<RequestId>().is_none() {
        parts.extensions.insert(request_id.clone());
    }
    if parts.extensions.get::<Timings>().is_none() {
        parts.extensions.insert(Timings::start_now());
    }
    parts.extensions.insert(endpoint);
    Ok(Request::from_parts(parts, typed))
}

/// What the Messages API itself refuses before generating, refused here with the same
/// 400 so a bad request never costs an upstream round trip.
fn validate_messages(req: &MessagesRequest) -> Result<(), AiError> {
    match req.max_tokens {
        None => return Err(AiError::invalid_request("max_tokens: field required")),
        Some(0) => {
            return Err(AiError::invalid_request(
                "max_tokens: must be greater than or equal to 1",
            ));
        }
        Some(_) => {}
    }
    if req.messages.is_empty() {
        return Err(AiError::invalid_request(
            "messages: at least one message is required",
        ));
    }
    Ok(())
}

fn too_large(limit: usize) -> AiError {
    AiError::new(
        ErrorKind::RequestTooLarge,
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

async fn read_body<B>(body: B, config: &Config) -> Result<Bytes, AiError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let limited = http_body_util::Limited::new(body, config.body_limit);
    match tokio::time::timeout(config.body_timeout, limited.collect()).await {
        Err(_) => Err(AiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "request body not received within {} ms",
                config.body_timeout.as_millis()
            ),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => {
            if e.is::<http_body_util::LengthLimitError>() {
                Err(too_large(config.body_limit))
            } else {
                tracing::debug!(error = %e, "failed to read request body");
                Err(AiError::invalid_request("failed to read the request body"))
            }
        }
    }
}

/// Parses a request body, with errors that describe the problem without quoting content.
pub fn parse_json(bytes: &[u8]) -> Result<MessagesRequest, AiError> {
    if bytes.is_empty() {
        return Err(AiError::invalid_request("request body is empty"));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        AiError::invalid_request(format!(
            "request body is not valid utf-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    serde_json::from_str(text).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "request body is not valid json"
            }
            _ => "request body is invalid",
        };
        AiError::invalid_request(format!(
            "{what}: {} at line {} column {}",
            redact_quotes(&e.to_string()),
            e.line(),
            e.column()
        ))
    })
}

/// serde_json messages quote input values (`invalid type: string "…"`, ``unknown variant
/// `…` ``); cut the quoted parts and the trailing position so no request content reaches
/// logs or clients. Field names (``missing field `x` ``) and the expected values of
/// ``unknown variant`` are the schema's and stay.
fn redact_quotes(msg: &str) -> String {
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    if msg.starts_with("missing field") || msg.starts_with("duplicate field") {
        return msg.to_owned();
    }
    let unknown_variant = msg.starts_with("unknown variant");
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    let mut backticks = 0;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push_str("\"…\"");
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            '`' => {
                backticks += 1;
                let segment: String = chars.by_ref().take_while(|&c| c != '`').collect();
                if unknown_variant && backticks > 1 {
                    out.push('`');
                    out.push_str(&segment);
                    out.push('`');
                } else {
                    out.push_str("`…`");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `max_tokens` given to an OpenAI-surface request that sets no cap (the Messages API
/// needs one).
pub const OPENAI_DEFAULT_MAX_TOKENS: u32 = 4096;

/// Which API shape the caller speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Anthropic,
    /// `POST /v1/chat/completions`, or `GET /v1/models` from an OpenAI SDK.
    OpenAi {
        include_usage: bool,
    },
}

impl Shape {
    /// OpenAI's for [`is_openai_caller`](crate::openai::is_openai_caller).
    fn of<B>(req: &Request<B>) -> Shape {
        if crate::openai::is_openai_caller(req) {
            Shape::OpenAi {
                include_usage: false,
            }
        } else {
            Shape::Anthropic
        }
    }

    fn error(self, e: AiError, request_id: &RequestId) -> Response<CodecBody> {
        match self {
            Shape::Anthropic => error_response(e, request_id),
            Shape::OpenAi { .. } => openai_error_response(e, request_id),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An answer in OpenAI's shapes: a `chat.completion`, chunks ending in `[DONE]`, or the
/// model list and model objects.
fn encode_openai(
    resp: Response<AiBody>,
    stream: bool,
    include_usage: bool,
    endpoint: Option<&Endpoint>,
    request_id: &RequestId,
) -> Response<CodecBody> {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    let rid = parts
        .headers
        .get("request-id")
        .cloned()
        .or_else(|| HeaderValue::from_str(request_id.as_str()).ok());
    if let Some(v) = rid {
        parts.headers.insert("x-request-id", v.clone());
        parts.headers.insert("request-id", v);
    }
    let body = if stream { body.into_stream() } else { body };
    let body = match body {
        AiBody::Message(m) => json_body(
            &mut parts.headers,
            serde_json::to_vec(&crate::openai::to_chat_completion(&m, unix_now())),
        ),
        AiBody::Json(v) => {
            let v = match endpoint {
                Some(Endpoint::ListModels) => crate::openai::model_list(&v),
                Some(Endpoint::GetModel(_)) => crate::openai::model_object(&v),
                _ => v,
            };
            json_body(&mut parts.headers, serde_json::to_vec(&v))
        }
        AiBody::Events(stream) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            parts
                .headers
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            CodecBody::openai_events(stream, unix_now(), include_usage)
        }
    };
    Response::from_parts(parts, body)
}

/// Renders an error as OpenAI does: the error's status, `{"error": {"message", "type",
/// "param", "code"}}`, `retry-after`, `x-request-id`.
pub fn openai_error_response(e: AiError, request_id: &RequestId) -> Response<CodecBody> {
    let mut resp = error_response(e.clone(), request_id);
    let body = serde_json::to_vec(&crate::openai::error_body(&e)).unwrap_or_default();
    *resp.body_mut() = CodecBody::full(Bytes::from(body));
    if let Some(v) = resp.headers().get("request-id").cloned() {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// `stream` is whether the caller asked for a stream: a whole message answered to a
/// stream request is sent as the equivalent events ([`AiBody::into_stream`]), so the
/// caller gets a stream whatever the inner service returned.
fn encode(resp: Response<AiBody>, stream: bool, request_id: &RequestId) -> Response<CodecBody> {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    if !parts.headers.contains_key("request-id") {
        if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
            parts.headers.insert("request-id", v);
        }
    }
    let body = if stream { body.into_stream() } else { body };
    let body = match body {
        AiBody::Message(m) => json_body(&mut parts.headers, serde_json::to_vec(&*m)),
        AiBody::Json(v) => json_body(&mut parts.headers, serde_json::to_vec(&v)),
        AiBody::Events(stream) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            parts
                .headers
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            CodecBody::events(stream)
        }
    };
    Response::from_parts(parts, body)
}

fn json_body(
    headers: &mut http::HeaderMap,
    bytes: Result<Vec<u8>, serde_json::Error>,
) -> CodecBody {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Our own types always serialize; an empty body would be the visible symptom.
    CodecBody::full(Bytes::from(bytes.unwrap_or_default()))
}

/// Renders an error as Anthropic does: status, `{"type":"error",...}` body, `retry-after`
/// (whole seconds, rounded up), `request-id`, and the error's own headers.
pub fn error_response(e: AiError, request_id: &RequestId) -> Response<CodecBody> {
    let e = if e.request_id().is_none() {
        e.with_request_id(request_id.as_str().to_owned())
    } else {
        e
    };
    tracing::debug!(status = e.status().as_u16(), error = %e, "error response");
    let mut resp = Response::new(CodecBody::full(e.to_json()));
    *resp.status_mut() = e.status();
    let headers = resp.headers_mut();
    for (k, v) in e.headers() {
        headers.append(k, v.clone());
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(after) = e.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    if let Some(Ok(v)) = e.request_id().map(HeaderValue::from_str) {
        headers.insert("request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{MockProvider, Script};
    use http_body_util::Full;
    use tower::ServiceExt;

    fn req(body: &'static str) -> Request<Full<Bytes>> {
        Request::post("/v1/messages")
            .header("content-type", "application/json")
            .header("x-request-id", "rid-1")
            .header("anthropic-beta", "b1")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request")
    }

    const OK: &str = r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#;

    async fn body_json(resp: Response<CodecBody>) -> serde_json::Value {
        let b = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&b).expect("json")
    }

    #[tokio::test]
    async fn inner_sees_typed_request_with_extensions_and_headers() {
        let mock = MockProvider::always(Script::text("ok"));
        let resp = MessagesCodec::new(mock.clone())
            .oneshot(req(OK))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["request-id"], "rid-1");
        let seen = &mock.requests()[0];
        assert_eq!(seen.body.max_tokens, Some(9));
        assert_eq!(seen.headers["anthropic-beta"], "b1");
        assert_eq!(seen.extensions.get::<Endpoint>(), Some(&Endpoint::Messages));
        assert_eq!(
            seen.extensions.get::<RequestId>().map(RequestId::as_str),
            Some("rid-1")
        );
        assert!(seen.extensions.get::<Timings>().is_some());
    }

    #[tokio::test]
    async fn errors_render_with_status_type_and_retry_after() {
        let e = AiError::new(ErrorKind::RateLimit, "slow down")
            .with_retry_after(Duration::from_millis(1500));
        let mock = MockProvider::always(Script::Error(e));
        let resp = MessagesCodec::new(mock)
            .oneshot(req(OK))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), 429);
        assert_eq!(
            resp.headers()["retry-after"],
            "2",
            "rounded up to whole seconds"
        );
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v = body_json(resp).await;
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "slow down");
        assert_eq!(v["request_id"], "rid-1");
    }

    #[tokio::test]
    async fn stream_error_after_events_becomes_an_error_event() {
        let mock = MockProvider::always(Script::Events {
            items: vec![
                Ok(crate::StreamEvent::text_delta(0, "a")),
                Err(AiError::new(ErrorKind::Overloaded, "Overloaded")),
            ],
            delay: Duration::ZERO,
        });
        let resp = MessagesCodec::new(mock)
            .oneshot(req(OK))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
        let b = resp.into_body().collect().await.expect("body").to_bytes();
        let text = std::str::from_utf8(&b).expect("utf8");
        let mut p = crate::sse::SseParser::new();
        p.feed(text.as_bytes());
        let first = p.next_event().expect("event").expect("ok");
        assert_eq!(first.event.as_deref(), Some("content_block_delta"));
        let last = p.next_event().expect("event").expect("ok");
        assert_eq!(last.event.as_deref(), Some("error"));
        let v: serde_json::Value = serde_json::from_str(&last.data).expect("json");
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(v["error"]["message"], "Overloaded");
        assert!(p.next_event().is_none(), "nothing after the error");
    }

    #[tokio::test]
    async fn content_length_over_limit_is_rejected_before_reading() {
        let mock = MockProvider::always(Script::text("never"));
        let codec = MessagesCodecLayer::new().body_limit(10).layer(mock.clone());
        let resp = codec.oneshot(req(OK)).await.expect("infallible");
        assert_eq!(resp.status(), 413);
        assert_eq!(body_json(resp).await["error"]["type"], "request_too_large");
        assert!(mock.requests().is_empty());
    }

    #[tokio::test]
    async fn refuses_what_the_api_refuses_before_calling_inner() {
        for (body, needle) in [
            (
                r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}"#,
                "max_tokens",
            ),
            (r#"{"model":"m","max_tokens":5,"messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
                "max_tokens",
            ),
        ] {
            let mock = MockProvider::always(Script::text("never"));
            let resp = MessagesCodec::new(mock.clone())
                .oneshot(req(body))
                .await
                .expect("infallible");
            assert_eq!(resp.status(), 400, "{body}");
            let v = body_json(resp).await;
            assert_eq!(v["error"]["type"], "invalid_request_error");
            let msg = v["error"]["message"].as_str().expect("message");
            assert!(msg.starts_with(needle), "{msg}");
            assert!(mock.requests().is_empty(), "{body}");
        }
        // The refused request still names its model for the access log.
        let resp = MessagesCodec::new(MockProvider::always(Script::text("never")))
            .oneshot(req(
                r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .await
            .expect("infallible");
        assert_eq!(
            resp.extensions().get::<RequestedModel>(),
            Some(&RequestedModel(Arc::from("m")))
        );
    }

    async fn sse_of(resp: Response<CodecBody>) -> Vec<(String, serde_json::Value)> {
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/event-stream; charset=utf-8"
        );
        let b = resp.into_body().collect().await.expect("body").to_bytes();
        let mut p = crate::sse::SseParser::new();
        p.feed(&b);
        let mut out = vec![];
        while let Some(ev) = p.next_event() {
            let ev = ev.expect("valid");
            out.push((
                ev.event.unwrap_or_default(),
                serde_json::from_str(&ev.data).expect("json"),
            ));
        }
        out
    }

    const STREAM: &str =
        r#"{"model":"m","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

    #[tokio::test]
    async fn a_message_answered_to_a_stream_request_is_sent_as_events() {
        let mock = MockProvider::always(Script::text("whole"));
        let resp = MessagesCodec::new(mock)
            .oneshot(req(STREAM))
            .await
            .expect("infallible");
        let events = sse_of(resp).await;
        let names: Vec<_> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[2].1["delta"]["text"], "whole");
    }

    #[tokio::test]
    async fn a_stream_that_ends_without_message_stop_gets_an_error_event() {
        let mock = MockProvider::always(Script::Events {
            items: vec![Ok(crate::StreamEvent::text_delta(0, "a"))],
            delay: Duration::ZERO,
        });
        let resp = MessagesCodec::new(mock)
            .oneshot(req(STREAM))
            .await
            .expect("infallible");
        let events = sse_of(resp).await;
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].0, "error");
        assert_eq!(events[1].1["error"]["type"], "api_error");
        assert!(
            events[1].1["error"]["message"]
                .as_str()
                .expect("message")
                .contains("ended the stream early")
        );
    }

    #[tokio::test]
    async fn the_requested_model_is_on_the_response() {
        let mock = MockProvider::always(Script::Error(AiError::new(ErrorKind::NotFound, "no")));
        let resp = MessagesCodec::new(mock)
            .oneshot(req(OK))
            .await
            .expect("infallible");
        assert_eq!(
            resp.extensions().get::<RequestedModel>(),
            Some(&RequestedModel(Arc::from("m")))
        );
    }

    #[test]
    fn redaction_handles_escapes_and_backticks() {
        assert_eq!(
            redact_quotes(r#"invalid type: string "a \"secret\" b", expected u32"#),
            "invalid type: string \"…\", expected u32"
        );
        assert_eq!(
            redact_quotes("unknown variant `my-secret`, expected `user` or `assistant`"),
            "unknown variant `…`, expected `user` or `assistant`"
        );
        assert_eq!(
            redact_quotes("missing field `model`"),
            "missing field `model`"
        );
        assert_eq!(redact_quotes("invalid value: `x`"), "invalid value: `…`");
    }

    #[test]
    fn redaction_removes_quoted_values() {
        assert_eq!(
            redact_quotes("invalid type: string \"my secret\", expected u32 at line 1 column 9"),
            "invalid type: string \"…\", expected u32"
        );
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(&Method::POST, "/v1/messages").expect("ok"),
            Endpoint::Messages
        );
        assert_eq!(
            route(&Method::GET, "/v1/models/claude-x").expect("ok"),
            Endpoint::GetModel(Arc::from("claude-x"))
        );
        assert_eq!(
            route(&Method::GET, "/v1/models/a/b")
                .expect_err("nested")
                .kind(),
            ErrorKind::NotFound
        );
        for bad in ["..", ".", "a%2Fb", "a%2e%2e", "x y", "a?b"] {
            assert!(
                route(&Method::GET, &format!("/v1/models/{bad}")).is_err(),
                "{bad}"
            );
        }
        assert!(route(&Method::GET, "/v1/models/claude-sonnet-4-5@20250929").is_ok());
        assert_eq!(
            route(&Method::PUT, "/v1/models")
                .expect_err("method")
                .kind(),
            ErrorKind::MethodNotAllowed
        );
    }

    fn openai_req(body: &'static str) -> Request<Full<Bytes>> {
        Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", "Bearer caller")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request")
    }

    #[tokio::test]
    async fn the_openai_surface_maps_requests_answers_and_errors() {
        let mock = MockProvider::always(Script::text("Paris."));
        let resp = MessagesCodec::new(mock.clone())
            .oneshot(openai_req(
                r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Capital of France?"}]}"#,
            ))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("x-request-id"));
        let v = body_json(resp).await;
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Paris.");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 5);
        let seen = &mock.requests()[0];
        assert_eq!(seen.body.max_tokens, Some(OPENAI_DEFAULT_MAX_TOKENS));
        assert_eq!(
            seen.extensions.get::<crate::ext::Surface>(),
            Some(&crate::ext::Surface::OPENAI)
        );
        assert!(
            matches!(&seen.body.system, Some(crate::wire::Content::Text(s)) if s == "Be brief.")
        );

        let e = AiError::new(ErrorKind::RateLimit, "slow down")
            .with_retry_after(Duration::from_secs(2));
        let resp = MessagesCodec::new(MockProvider::always(Script::Error(e)))
            .oneshot(openai_req(
                r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "2");
        let v = body_json(resp).await;
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["message"], "slow down");

        let resp = MessagesCodec::new(MockProvider::always(Script::text("x")))
            .oneshot(openai_req(
                r#"{"model":"m","messages":[{"role":"robot","content":"hi"}]}"#,
            ))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), 400);
        let v = body_json(resp).await;
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .expect("message")
                .contains("robot")
        );
    }

    #[tokio::test]
    async fn an_openai_stream_is_chunks_then_done() {
        let mock = MockProvider::always(Script::text("Hello there!"));
        let resp = MessagesCodec::new(mock)
            .oneshot(openai_req(
                r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#,
            ))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), 200);
        let b = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8(b.to_vec()).expect("utf-8");
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        let mut d = crate::openai::ChunkDecoder::new();
        let mut out = Vec::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            d.chunk(line, &mut out).expect("chunk");
        }
        let got: String = out
            .iter()
            .filter_map(|e| match e {
                crate::wire::StreamEvent::ContentBlockDelta(d) => match &d.delta {
                    crate::wire::Delta::Text(t) => Some(t.text.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(got, "Hello there!");
        assert!(d.usage_reported());
    }

    #[tokio::test]
    async fn models_take_the_shape_of_the_sdk_that_asks() {
        let list = serde_json::json!({"data": [{"type": "model", "id": "claude-sonnet-4-5",
            "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"}],
            "has_more": false});
        let get = |anthropic: bool| {
            let mut r = Request::get("/v1/models");
            if anthropic {
                r = r.header("anthropic-version", "2023-06-01");
            }
            r.body(Full::new(Bytes::new())).expect("request")
        };
        let svc = MessagesCodec::new(MockProvider::always(Script::Json(list)));
        let v = body_json(svc.clone().oneshot(get(false)).await.expect("infallible")).await;
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][0]["owned_by"], "anthropic");
        let v = body_json(svc.oneshot(get(true)).await.expect("infallible")).await;
        assert_eq!(v["data"][0]["display_name"], "Claude Sonnet 4.5");
    }
}
