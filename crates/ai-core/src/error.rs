//! [`AiError`]: the one error type of the typed middle, rendered by the edge codec as an
//! Anthropic-shaped JSON error (or `event: error` once a stream has started).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::ser::{SerializeMap, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// What went wrong, mapped to an HTTP status and an Anthropic error `type`.
///
/// | kind | status | `type` |
/// |---|---|---|
/// | `InvalidRequest` | 400 | `invalid_request_error` |
/// | `Authentication` | 401 | `authentication_error` |
/// | `BudgetExceeded` | 402 | `budget_exceeded` |
/// | `Permission` | 403 | `permission_error` |
/// | `PolicyBlock` | 403 | `policy_block` |
/// | `NotFound` | 404 | `not_found_error` |
/// | `MethodNotAllowed` | 405 | `invalid_request_error` |
/// | `RequestTimeout` | 408 | `request_timeout` |
/// | `RequestTooLarge` | 413 | `request_too_large` |
/// | `UnsupportedMediaType` | 415 | `invalid_request_error` |
/// | `RateLimit` | 429 | `rate_limit_error` |
/// | `Api` | 500 | `api_error` |
/// | `UpstreamUnavailable` | 502 | `api_error` |
/// | `UpstreamTimeout` | 504 | `upstream_timeout` |
/// | `Overloaded` | 529 | `overloaded_error` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Malformed or invalid request.
    InvalidRequest,
    /// Missing or bad credential.
    Authentication,
    /// The principal may not do this.
    Permission,
    /// Unknown path, model or resource.
    NotFound,
    /// Wrong HTTP method for the path.
    MethodNotAllowed,
    /// The client sent its request too slowly.
    RequestTimeout,
    /// Request body over the limit.
    RequestTooLarge,
    /// Body is not `application/json`.
    UnsupportedMediaType,
    /// Rate limited, here or upstream.
    RateLimit,
    /// Internal or upstream API error.
    Api,
    /// Upstream overloaded (Anthropic's 529).
    Overloaded,
    /// A spending cap was reached.
    BudgetExceeded,
    /// A content policy stopped the request or the response.
    PolicyBlock,
    /// The upstream did not answer in time (connect, first byte or between events).
    UpstreamTimeout,
    /// The upstream could not be reached or broke the connection.
    UpstreamUnavailable,
}

impl ErrorKind {
    /// The HTTP status for this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::BudgetExceeded => StatusCode::PAYMENT_REQUIRED,
            ErrorKind::Permission | ErrorKind::PolicyBlock => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::RateLimit => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Api => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Overloaded => OVERLOADED,
        }
    }

    /// The Anthropic error `type` string for this kind.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::MethodNotAllowed
            | ErrorKind::UnsupportedMediaType => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::RateLimit => "rate_limit_error",
            ErrorKind::Api | ErrorKind::UpstreamUnavailable => "api_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::PolicyBlock => "policy_block",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The kind an Anthropic error `type` names, if it is one we know.
    pub fn from_error_type(t: &str) -> Option<Self> {
        Some(match t {
            "invalid_request_error" => ErrorKind::InvalidRequest,
            "authentication_error" => ErrorKind::Authentication,
            "permission_error" => ErrorKind::Permission,
            "not_found_error" => ErrorKind::NotFound,
            "request_too_large" => ErrorKind::RequestTooLarge,
            "rate_limit_error" => ErrorKind::RateLimit,
            "api_error" => ErrorKind::Api,
            "overloaded_error" => ErrorKind::Overloaded,
            "budget_exceeded" => ErrorKind::BudgetExceeded,
            "policy_block" => ErrorKind::PolicyBlock,
            "upstream_timeout" | "timeout_error" => ErrorKind::UpstreamTimeout,
            "request_timeout" => ErrorKind::RequestTimeout,
            _ => return None,
        })
    }

    /// The kind that best describes an HTTP status.
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            402 => ErrorKind::BudgetExceeded,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            405 => ErrorKind::MethodNotAllowed,
            408 => ErrorKind::RequestTimeout,
            413 => ErrorKind::RequestTooLarge,
            415 => ErrorKind::UnsupportedMediaType,
            429 => ErrorKind::RateLimit,
            502 | 503 => ErrorKind::UpstreamUnavailable,
            504 => ErrorKind::UpstreamTimeout,
            529 => ErrorKind::Overloaded,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Api,
        }
    }

    /// Whether a retry of the same request may succeed (rate limits, overload, upstream
    /// timeouts and outages, 5xx).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimit
                | ErrorKind::Overloaded
                | ErrorKind::Api
                | ErrorKind::UpstreamTimeout
                | ErrorKind::UpstreamUnavailable
        )
    }
}

/// Anthropic's "overloaded" status.
pub const OVERLOADED: StatusCode = match StatusCode::from_u16(529) {
    Ok(s) => s,
    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
};

/// The error of the typed middle: a kind, the status and `type` it renders with, a message
/// (lower case, never prompt text or secrets), and what the client should see besides:
/// `retry-after`, the upstream `request_id`, pass-through headers.
///
/// Cheap to move (one pointer) and `Clone`.
#[derive(Clone)]
pub struct AiError(Box<Inner>);

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    status: StatusCode,
    error_type: Cow<'static, str>,
    message: Cow<'static, str>,
    retry_after: Option<Duration>,
    request_id: Option<String>,
    headers: HeaderMap,
}

impl AiError {
    /// An error of `kind` with its default status and type.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        AiError(Box::new(Inner {
            kind,
            status: kind.status(),
            error_type: Cow::Borrowed(kind.error_type()),
            message: message.into(),
            retry_after: None,
            request_id: None,
            headers: HeaderMap::new(),
        }))
    }

    /// An error reported by an upstream: its status and `type` are kept as sent, the kind
    /// is derived from the type (or the status when the type is unknown).
    pub fn upstream(
        status: StatusCode,
        error_type: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        let error_type = error_type.into();
        let kind = ErrorKind::from_error_type(&error_type)
            .unwrap_or_else(|| ErrorKind::from_status(status));
        let mut e = AiError::new(kind, message);
        e.0.status = status;
        e.0.error_type = error_type;
        e
    }

    /// The error an `event: error` (or an error body's `error` object) describes; the
    /// status is the one its type maps to.
    pub fn from_detail(d: &crate::wire::ErrorDetail) -> Self {
        let status = ErrorKind::from_error_type(&d.kind)
            .map(ErrorKind::status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        AiError::upstream(status, d.kind.clone(), d.message.clone())
    }

    /// `invalid_request_error`, 400.
    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        AiError::new(ErrorKind::InvalidRequest, message)
    }

    /// `api_error`, 500.
    pub fn api(message: impl Into<Cow<'static, str>>) -> Self {
        AiError::new(ErrorKind::Api, message)
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The HTTP status the error renders with.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The Anthropic error `type` the error renders with.
    pub fn error_type(&self) -> &str {
        &self.0.error_type
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// When the client may retry.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    /// Sets `retry-after`.
    pub fn with_retry_after(mut self, after: impl Into<Option<Duration>>) -> Self {
        self.0.retry_after = after.into();
        self
    }

    /// The request id the upstream gave the failed request.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// Sets the request id written into the error body.
    pub fn with_request_id(mut self, id: impl Into<Option<String>>) -> Self {
        self.0.request_id = id.into();
        self
    }

    /// Overrides the status (keeping kind and type).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.0.status = status;
        self
    }

    /// Headers the client gets with the error (e.g. `x-should-retry`, rate-limit headers).
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// Mutable access to the headers the client gets with the error.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.0.headers
    }

    /// Adds one header the client gets with the error.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.append(name, value);
        self
    }

    /// The Anthropic error body:
    /// `{"type":"error","error":{"type":..,"message":..},"request_id":..}`.
    pub fn to_json(&self) -> Bytes {
        let mut out = Vec::with_capacity(96 + self.0.message.len());
        // Serializing strings into a Vec cannot fail.
        let _ = self.write_json(&mut serde_json::Serializer::new(&mut out));
        Bytes::from(out)
    }

    pub(crate) fn write_json<W: std::io::Write>(
        &self,
        ser: &mut serde_json::Serializer<W>,
    ) -> Result<(), serde_json::Error> {
        struct Detail<'a>(&'a AiError);
        impl serde::Serialize for Detail<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", self.0.error_type())?;
                m.serialize_entry("message", self.0.message())?;
                m.end()
            }
        }
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("type", "error")?;
        m.serialize_entry("error", &Detail(self))?;
        if let Some(id) = &self.0.request_id {
            m.serialize_entry("request_id", id)?;
        }
        m.end()
    }
}

impl fmt::Debug for AiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AiError")
            .field("kind", &self.0.kind)
            .field("status", &self.0.status.as_u16())
            .field("type", &self.0.error_type)
            .field("message", &self.0.message)
            .field("retry_after", &self.0.retry_after)
            .finish()
    }
}

impl fmt::Display for AiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.error_type, self.0.message)
    }
}

impl std::error::Error for AiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_anthropic_error_body() {
        let e = AiError::new(ErrorKind::RateLimit, "slow down")
            .with_request_id("req_1".to_owned())
            .with_retry_after(Duration::from_secs(3));
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_1"})
        );
    }

    #[test]
    fn upstream_keeps_status_and_unknown_type() {
        let e = AiError::upstream(
            StatusCode::from_u16(418).expect("status"),
            "teapot_error",
            "short and stout",
        );
        assert_eq!(e.status().as_u16(), 418);
        assert_eq!(e.error_type(), "teapot_error");
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        let e = AiError::upstream(OVERLOADED, "overloaded_error", "Overloaded");
        assert_eq!(e.kind(), ErrorKind::Overloaded);
        assert!(e.kind().is_retryable());
    }

    #[test]
    fn every_kind_maps_back_from_its_type() {
        use ErrorKind::*;
        for k in [
            InvalidRequest,
            Authentication,
            Permission,
            NotFound,
            RequestTooLarge,
            RateLimit,
            Api,
            Overloaded,
            BudgetExceeded,
            PolicyBlock,
            UpstreamTimeout,
            RequestTimeout,
        ] {
            assert_eq!(ErrorKind::from_error_type(k.error_type()), Some(k), "{k:?}");
            assert_eq!(
                ErrorKind::from_status(k.status()).status(),
                k.status(),
                "{k:?}"
            );
        }
    }
}
