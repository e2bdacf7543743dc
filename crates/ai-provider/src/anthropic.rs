//! [`AnthropicProvider`]: the canonical request to `api.anthropic.com` (or any base URL)
//! over one pooled hyper-util client.

use crate::upstream::{
    Call, Connection, connection_setters, provider_service, retry_after, whole_answer,
};
use ai_core::sse::BodyEvents;
use ai_core::wire::ErrorEvent;
use ai_core::{AiBody, AiError, CallReport, Endpoint, ErrorKind, MessagesRequest, Served, Timings};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_http::decompression::{Decompression, DecompressionBody};

/// Default `anthropic-version`, sent when the caller sent none.
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// Default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// Default TCP connect timeout: 10 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to the response headers: 600 seconds (the SDKs' own default).
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default longest silence between stream chunks: 120 seconds.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default lifetime of an idle pooled connection: 90 seconds.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Default largest (decoded) non-streaming answer: 64 MiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// A provider could not be built from its settings.
#[derive(Debug)]
pub struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Settings of an [`AnthropicProvider`]; every setter documents its default.
#[must_use]
pub struct AnthropicBuilder {
    base_url: String,
    api_key: Option<String>,
    version: String,
    conn: Connection,
}

impl fmt::Debug for AnthropicBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("version", &self.version)
            .field("connection", &self.conn)
            .finish_non_exhaustive()
    }
}

impl AnthropicBuilder {
    connection_setters!();

    /// Base URL, with or without a path prefix. Default `https://api.anthropic.com`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The vendor key sent as `x-api-key`. Required.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// `anthropic-version` sent when the caller sent none. Default `2023-06-01`.
    pub fn default_version(mut self, v: impl Into<String>) -> Self {
        self.version = v.into();
        self
    }

    /// Builds the provider and its connection pool (TLS with the webpki roots, HTTP/2 when
    /// the server offers it by ALPN, TCP_NODELAY on).
    pub fn build(self) -> Result<AnthropicProvider, ConfigError> {
        let key = self
            .api_key
            .ok_or_else(|| ConfigError("an api key is required".into()))?;
        let mut api_key = HeaderValue::from_str(&key)
            .map_err(|_| ConfigError("the api key is not a valid header value".into()))?;
        api_key.set_sensitive(true);
        let version = HeaderValue::from_str(&self.version)
            .map_err(|_| ConfigError("the default version is not a valid header value".into()))?;
        let base: Uri = self
            .base_url
            .parse()
            .map_err(|_| ConfigError(format!("invalid base url: {}", self.base_url)))?;
        let scheme = base
            .scheme()
            .cloned()
            .ok_or_else(|| ConfigError("the base url needs a scheme".into()))?;
        let authority = base
            .authority()
            .cloned()
            .ok_or_else(|| ConfigError("the base url needs a host".into()))?;
        let prefix = base.path().trim_end_matches('/').to_owned();
        let client = self.conn.client()?;
        Ok(AnthropicProvider {
            shared: Arc::new(Shared {
                name: Arc::from("anthropic"),
                scheme,
                authority,
                prefix,
                api_key,
                version,
                first_byte_timeout: self.conn.first_byte_timeout,
                idle_timeout: self.conn.idle_timeout,
                max_body: self.conn.max_body,
            }),
            client,
        })
    }
}

/// A pooled client as every provider uses: TLS with the webpki roots (and `extra_roots`),
/// HTTP/2 when the server offers it by ALPN, TCP_NODELAY, and answers decoded as they
/// stream (gzip, deflate, br, zstd; every limit counts decoded bytes).
pub(crate) fn https_client(
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    extra_roots: Vec<Vec<u8>>,
) -> Result<HttpsClient, ConfigError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        roots
            .add(rustls::pki_types::CertificateDer::from(der))
            .map_err(|e| ConfigError(format!("invalid root certificate: {e}")))?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConfigError(format!("tls setup failed: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(pool_idle_timeout)
        .build(https);
    // Upstreams and the proxies in front of them may compress (gzip, deflate, br,
    // zstd); the answer is decoded as it streams, and every limit below counts
    // decoded bytes.
    let client = Decompression::new(client);
    Ok(client)
}

/// The client type of [`https_client`].
pub(crate) type HttpsClient = Decompression<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>;

struct Shared {
    name: Arc<str>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    prefix: String,
    api_key: HeaderValue,
    version: HeaderValue,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_body: usize,
}

/// Sends canonical requests to the Anthropic API and decodes its answers into
/// [`AiBody`]. Clones share the connection pool.
///
/// - The vendor key is injected as `x-api-key`; no caller header reaches the upstream
///   except `anthropic-version` (a default when absent) and `anthropic-beta`, as sent.
/// - Response headers that SDKs act on pass back: `request-id`, `retry-after`,
///   `x-should-retry`, `anthropic-ratelimit-*` and the other `anthropic-*` headers
///   (except `anthropic-organization-id`, which names the gateway's vendor account).
/// - Upstream errors become [`AiError`]s with the upstream's status, `type`, message,
///   `request_id` and `retry-after`, except 401 and 403: the vendor refused the
///   gateway's own key (the caller's credential never reaches it), so they become 502
///   `api_error` saying so (the upstream's answer goes to the log, its `request_id` is
///   kept); an `event: error` in a stream ends it with that
///   error; no answer within the first-byte timeout is `upstream_timeout` (504); a
///   stream silent for the idle timeout ends with `upstream_timeout`; a refused or
///   broken connection is `api_error` (502).
#[derive(Clone)]
pub struct AnthropicProvider {
    shared: Arc<Shared>,
    client: HttpsClient,
}

/// The body of an upstream answer, decoded when it came compressed.
pub(crate) type UpstreamBody = DecompressionBody<hyper::body::Incoming>;

impl fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("authority", &self.shared.authority)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// A builder with the defaults.
    pub fn builder() -> AnthropicBuilder {
        AnthropicBuilder {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            version: DEFAULT_VERSION.to_owned(),
            conn: Connection::default(),
        }
    }

    fn upstream_request(
        &self,
        req: &Request<MessagesRequest>,
        endpoint: &Endpoint,
    ) -> Result<Request<Full<Bytes>>, AiError> {
        let s = &self.shared;
        let (method, path) = match endpoint {
            Endpoint::Messages => (Method::POST, "/v1/messages".to_owned()),
            Endpoint::CountTokens => (Method::POST, "/v1/messages/count_tokens".to_owned()),
            Endpoint::ListModels => (Method::GET, "/v1/models".to_owned()),
            Endpoint::GetModel(id) => (Method::GET, format!("/v1/models/{id}")),
            _ => {
                return Err(AiError::new(
                    ErrorKind::NotFound,
                    "endpoint not supported by this provider",
                ));
            }
        };
        // The caller's query parameters the API knows (`?beta=true` from the SDKs' beta
        // resources, paging on models) go along as sent; nothing else does (a credential
        // a caller put in the URL must not reach the vendor).
        let query = forwarded_query(req.uri().query());
        let uri = Uri::builder()
            .scheme(s.scheme.clone())
            .authority(s.authority.clone())
            .path_and_query(format!("{}{}{}", s.prefix, path, query))
            .build()
            .map_err(|_| AiError::invalid_request("request path is invalid"))?;
        let body = if method == Method::POST {
            serde_json::to_vec(req.body())
                .map_err(|_| AiError::api("failed to encode the upstream request"))?
        } else {
            Vec::new()
        };
        let mut up = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| AiError::api("failed to build the upstream request"))?;
        let h = up.headers_mut();
        h.insert("x-api-key", s.api_key.clone());
        h.insert(
            "anthropic-version",
            req.headers()
                .get("anthropic-version")
                .cloned()
                .unwrap_or_else(|| s.version.clone()),
        );
        for v in req.headers().get_all("anthropic-beta") {
            h.append("anthropic-beta", v.clone());
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("ai-gateway/", env!("CARGO_PKG_VERSION"))),
        );
        // Whole answers may come compressed (decoded on the way in). A stream asks for
        // none: a compressor that does not flush per event would hold tokens back. One
        // that compresses anyway is still decoded, event by event.
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(if req.body().is_stream() {
                "identity"
            } else {
                "gzip, deflate, br, zstd"
            }),
        );
        Ok(up)
    }

    async fn send(self, req: Request<MessagesRequest>) -> Result<Response<AiBody>, AiError> {
        let endpoint = req
            .extensions()
            .get::<Endpoint>()
            .cloned()
            .unwrap_or(Endpoint::Messages);
        let timings = req.extensions().get::<Timings>().cloned();
        let call = Call {
            provider: &self.shared.name,
            model: &req.body().model,
            report: req.extensions().get::<CallReport>(),
            first_byte_timeout: self.shared.first_byte_timeout,
        };
        let up = self.upstream_request(&req, &endpoint)?;
        let s = &self.shared;
        let resp = call.send(&self.client, up).await?;
        if let Some(t) = &timings {
            t.mark_first_byte();
        }
        let (parts, body) = resp.into_parts();
        let headers = pass_through(&parts.headers);
        let request_id: Option<Arc<str>> = parts
            .headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(Arc::from);
        if !parts.status.is_success() {
            return Err(self
                .upstream_error(&call, parts.status, &parts.headers, headers, body)
                .await);
        }
        if let Some(enc) = parts.headers.get(header::CONTENT_ENCODING) {
            // Left in place only when it is not one the client decodes.
            if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
                tracing::warn!(encoding = ?enc, "upstream answered with an unsupported content-encoding");
                return Err(AiError::new(
                    ErrorKind::UpstreamUnavailable,
                    "upstream answered with an unsupported content-encoding",
                ));
            }
        }
        let is_sse = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let model = req.body().model.clone();
        let mut out = if is_sse {
            let events = BodyEvents::new(body, s.idle_timeout).with_timings(timings);
            Response::new(AiBody::from_events(events))
        } else {
            let bytes = read_limited(body, s.max_body, s.idle_timeout).await?;
            let body = whole_answer(&bytes, &endpoint, req.body().is_stream())?;
            Response::new(body)
        };
        *out.status_mut() = parts.status;
        *out.headers_mut() = headers;
        out.extensions_mut().insert(Served {
            provider: s.name.clone(),
            model: Arc::from(model),
            request_id,
        });
        Ok(out)
    }

    async fn upstream_error(
        &self,
        call: &Call<'_>,
        status: StatusCode,
        raw: &HeaderMap,
        headers: HeaderMap,
        body: UpstreamBody,
    ) -> AiError {
        let bytes = read_limited(body, 256 * 1024, self.shared.idle_timeout)
            .await
            .unwrap_or_default();
        // The error envelope is an `ErrorEvent` (`{"type":"error","error":{..}}`) whose
        // `request_id` lands in `extra`.
        let parsed = serde_json::from_slice::<ErrorEvent>(&bytes).ok();
        if matches!(status.as_u16(), 401 | 403) {
            let request_id = parsed
                .as_ref()
                .and_then(|e| e.extra.get("request_id"))
                .and_then(ai_core::wire::RawJson::as_string);
            let detail = parsed.as_ref().map_or("", |e| e.error.message.as_str());
            return call
                .credentials_refused(status, detail)
                .with_request_id(request_id);
        }
        let mut err = match &parsed {
            Some(e) => AiError::upstream(status, e.error.kind.clone(), e.error.message.clone()),
            None => {
                let kind = ErrorKind::from_status(status);
                AiError::upstream(
                    status,
                    kind.error_type(),
                    format!("upstream returned http {}", status.as_u16()),
                )
            }
        };
        let request_id = parsed
            .as_ref()
            .and_then(|e| e.extra.get("request_id"))
            .and_then(ai_core::wire::RawJson::as_string)
            .or_else(|| {
                raw.get("request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        err = err.with_request_id(request_id);
        err = err.with_retry_after(retry_after(raw));
        *err.headers_mut() = headers;
        err
    }
}

/// Query parameters forwarded to the upstream, as sent.
const FORWARDED_QUERY: &[&str] = &["beta", "limit", "after_id", "before_id"];

fn forwarded_query(query: Option<&str>) -> String {
    let Some(q) = query else {
        return String::new();
    };
    let kept: Vec<&str> = q
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            FORWARDED_QUERY.contains(&name)
        })
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

/// Response headers that reach the client.
pub(crate) fn pass_through(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in h {
        let n = name.as_str();
        let keep = matches!(n, "request-id" | "retry-after" | "x-should-retry")
            || (n.starts_with("anthropic-") && n != "anthropic-organization-id");
        if keep {
            out.append(HeaderName::clone(name), value.clone());
        }
    }
    out
}

/// Reads a whole (decoded) body, at most `limit` bytes of it, within `timeout`.
pub(crate) async fn read_limited(
    body: UpstreamBody,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, AiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(AiError::new(
            ErrorKind::UpstreamTimeout,
            "upstream response body timed out",
        )),
        Ok(Err(e)) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            tracing::debug!(error = %e, too_large, "failed to read the upstream response");
            Err(AiError::new(
                ErrorKind::UpstreamUnavailable,
                if too_large {
                    "upstream response exceeds the size limit"
                } else {
                    "failed to read the upstream response"
                },
            ))
        }
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// The provider's response future.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    pub(crate) inner: Pin<Box<dyn Future<Output = Result<Response<AiBody>, AiError>> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture { .. }")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<AiBody>, AiError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

provider_service!(AnthropicProvider);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_requires_a_key_and_a_valid_url() {
        assert!(AnthropicProvider::builder().build().is_err());
        assert!(
            AnthropicProvider::builder()
                .api_key("k")
                .base_url("not a url")
                .build()
                .is_err()
        );
        assert!(AnthropicProvider::builder().api_key("k\n").build().is_err());
        let p = AnthropicProvider::builder()
            .api_key("sk-test")
            .base_url("http://127.0.0.1:1/prefix/")
            .build();
        let p = p.expect("valid");
        assert_eq!(p.shared.prefix, "/prefix");
        assert!(!format!("{p:?}").contains("sk-test"));
    }

    #[test]
    fn only_known_query_parameters_reach_the_upstream() {
        assert_eq!(forwarded_query(None), "");
        assert_eq!(forwarded_query(Some("beta=true")), "?beta=true");
        assert_eq!(
            forwarded_query(Some("limit=5&api_key=gwk_x&after_id=m1&key=k")),
            "?limit=5&after_id=m1"
        );
        assert_eq!(forwarded_query(Some("x=1;beta=true")), "");
    }

    #[test]
    fn only_sdk_relevant_headers_pass() {
        let mut h = HeaderMap::new();
        h.insert("request-id", HeaderValue::from_static("req_1"));
        h.insert(
            "anthropic-ratelimit-requests-limit",
            HeaderValue::from_static("5"),
        );
        h.insert("anthropic-organization-id", HeaderValue::from_static("org"));
        h.insert("x-should-retry", HeaderValue::from_static("true"));
        h.insert("retry-after", HeaderValue::from_static("1"));
        h.insert("set-cookie", HeaderValue::from_static("x=y"));
        h.insert("content-length", HeaderValue::from_static("10"));
        let out = pass_through(&h);
        assert_eq!(out.len(), 4);
        assert!(out.get("anthropic-organization-id").is_none());
        assert!(out.get("set-cookie").is_none());
    }
}
