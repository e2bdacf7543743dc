//! What every provider does around one upstream call: the first-byte timeout, the attempt
//! recorded in the [`CallReport`], connection failures and refused gateway credentials
//! turned into the same errors, `retry-after` read the same way.

use crate::anthropic::{
    ConfigError, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FIRST_BYTE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BODY, DEFAULT_POOL_IDLE_TIMEOUT, HttpsClient, UpstreamBody, https_client,
};
use ai_core::{AiBody, AiError, Attempt, CallReport, Endpoint, ErrorKind, MessagesResponse};
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// The connection settings every provider's builder has, with the same defaults.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) connect_timeout: Duration,
    pub(crate) first_byte_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) extra_roots: Vec<Vec<u8>>,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            extra_roots: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("max_body", &self.max_body)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

impl Connection {
    /// The pooled client these settings describe.
    pub(crate) fn client(&self) -> Result<HttpsClient, ConfigError> {
        https_client(
            self.connect_timeout,
            self.pool_idle_timeout,
            self.extra_roots.clone(),
        )
    }
}

/// The setters of [`Connection`] on a builder with a `conn` field.
macro_rules! connection_setters {
    () => {
        /// Time to establish the TCP connection. Default 10 seconds. (The TLS handshake
        /// that follows counts against the first-byte timeout.)
        pub fn connect_timeout(mut self, d: std::time::Duration) -> Self {
            self.conn.connect_timeout = d;
            self
        }

        /// Time from sending the request to the response headers. A non-streaming
        /// request only gets headers once the whole answer is generated, so this is long
        /// by default: 600 seconds (the SDKs' own default).
        pub fn first_byte_timeout(mut self, d: std::time::Duration) -> Self {
            self.conn.first_byte_timeout = d;
            self
        }

        /// Longest silence allowed between chunks of a streamed response; a
        /// non-streaming body, which follows its headers at once, must arrive whole
        /// within it. Default 120 seconds.
        pub fn idle_timeout(mut self, d: std::time::Duration) -> Self {
            self.conn.idle_timeout = d;
            self
        }

        /// How long an idle pooled connection is kept. Default 90 seconds.
        pub fn pool_idle_timeout(mut self, d: std::time::Duration) -> Self {
            self.conn.pool_idle_timeout = d;
            self
        }

        /// Largest (decoded) non-streaming response body read from the upstream. Default
        /// 64 MiB.
        pub fn max_body(mut self, bytes: usize) -> Self {
            self.conn.max_body = bytes;
            self
        }

        /// Trusts one more root certificate (DER), besides the bundled webpki roots: for
        /// a corporate TLS proxy or a private endpoint. May be called several times.
        pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
            self.conn.extra_roots.push(der.into());
            self
        }
    };
}

pub(crate) use connection_setters;

/// One call to an upstream: who it is for the [`CallReport`], and its first-byte timeout.
pub(crate) struct Call<'a> {
    pub(crate) provider: &'a Arc<str>,
    pub(crate) model: &'a str,
    pub(crate) report: Option<&'a CallReport>,
    pub(crate) first_byte_timeout: Duration,
}

impl Call<'_> {
    fn attempt(&self, status: Option<u16>) {
        if let Some(r) = self.report {
            r.push_attempt(Attempt {
                provider: self.provider.clone(),
                model: Arc::from(self.model),
                status,
            });
        }
    }

    /// Sends `req` and waits for the response head: no head within the first-byte
    /// timeout is `upstream_timeout` (504), a refused or broken connection `api_error`
    /// (502). The attempt is recorded either way.
    pub(crate) async fn send(
        &self,
        client: &HttpsClient,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, AiError> {
        let call = client.clone().oneshot(req);
        match tokio::time::timeout(self.first_byte_timeout, call).await {
            Err(_) => {
                self.attempt(None);
                Err(AiError::new(
                    ErrorKind::UpstreamTimeout,
                    format!(
                        "upstream sent no response within {} ms",
                        self.first_byte_timeout.as_millis()
                    ),
                ))
            }
            Ok(Err(e)) => {
                tracing::warn!(provider = %self.provider, error = %e, connect = e.is_connect(), "upstream request failed");
                self.attempt(None);
                Err(AiError::new(
                    ErrorKind::UpstreamUnavailable,
                    if e.is_connect() {
                        "could not connect to the upstream"
                    } else {
                        "the upstream connection failed"
                    },
                ))
            }
            Ok(Ok(r)) => {
                self.attempt(Some(r.status().as_u16()));
                Ok(r)
            }
        }
    }

    /// The upstream refused the gateway's own credentials (its key, signature or token):
    /// not the caller's fault, whose credential never reaches the vendor, so a 502 that
    /// says so. What the upstream said goes to the log only.
    pub(crate) fn credentials_refused(&self, status: StatusCode, detail: &str) -> AiError {
        tracing::warn!(
            provider = %self.provider,
            status = status.as_u16(),
            upstream_message = detail,
            "the upstream refused the gateway's credentials"
        );
        AiError::new(
            ErrorKind::UpstreamUnavailable,
            format!(
                "the upstream refused the gateway's own credentials (http {}); \
                 the gateway's operator must fix them",
                status.as_u16()
            ),
        )
    }
}

/// `retry-after` in seconds (fractions allowed), capped at a day.
pub(crate) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    h.get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// A header's value as text.
pub(crate) fn header_str<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A whole (non-streamed) answer in Anthropic's format: a message for `Messages` (turned
/// into events when the caller asked for a stream), the JSON as is for the other
/// endpoints.
pub(crate) fn whole_answer(
    bytes: &[u8],
    endpoint: &Endpoint,
    stream: bool,
) -> Result<AiBody, AiError> {
    if *endpoint != Endpoint::Messages {
        return serde_json::from_slice(bytes)
            .map(AiBody::Json)
            .map_err(|_| {
                AiError::new(
                    ErrorKind::UpstreamUnavailable,
                    "upstream returned invalid json",
                )
            });
    }
    let message = AiBody::from(serde_json::from_slice::<MessagesResponse>(bytes).map_err(
        |_| {
            AiError::new(
                ErrorKind::UpstreamUnavailable,
                "upstream returned an invalid message",
            )
        },
    )?);
    // A whole message answered to a stream request: the caller gets the events it asked
    // for.
    Ok(if stream {
        message.into_stream()
    } else {
        message
    })
}

/// `Service<Request<MessagesRequest>>` for a provider with an
/// `async fn send(self, Request<MessagesRequest>)`.
macro_rules! provider_service {
    ($t:ty) => {
        impl tower::Service<http::Request<ai_core::MessagesRequest>> for $t {
            type Response = http::Response<ai_core::AiBody>;
            type Error = ai_core::AiError;
            type Future = crate::anthropic::ResponseFuture;

            #[inline]
            fn poll_ready(
                &mut self,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), ai_core::AiError>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(
                &mut self,
                req: http::Request<ai_core::MessagesRequest>,
            ) -> crate::anthropic::ResponseFuture {
                crate::anthropic::ResponseFuture {
                    inner: Box::pin(self.clone().send(req)),
                }
            }
        }
    };
}

pub(crate) use provider_service;
