//! What every provider does around one upstream call: the first-byte timeout, the attempt
//! recorded in the [`CallReport`], connection failures and refused gateway credentials
//! turned into the same errors, `retry-after` read the same way.

use crate::anthropic::{HttpsClient, UpstreamBody};
use ai_core::{AiError, Attempt, CallReport, ErrorKind};
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

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
