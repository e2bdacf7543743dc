//! [`VertexProvider`]: Anthropic models on Google Vertex AI (`rawPredict`,
//! `streamRawPredict`), authorized by OAuth2 access tokens the provider gets from a
//! service-account key (the JWT bearer grant) and keeps fresh in the background.

use crate::anthropic::{ConfigError, HttpsClient, read_limited};
use crate::upstream::{
    Call, Connection, connection_setters, header_str, provider_service, retry_after, whole_answer,
};
use crate::{ModelMap, vendor_body};
use ai_core::sse::BodyEvents;
use ai_core::wire::ErrorEvent;
use ai_core::{AiBody, AiError, CallReport, Endpoint, ErrorKind, MessagesRequest, Served, Timings};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tower::ServiceExt;

/// The `anthropic_version` Vertex expects in the body.
pub const VERTEX_ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// Google's OAuth2 token endpoint, used when the key names none.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The scope asked for: Vertex AI is in `cloud-platform`.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Time allowed for a token request.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is renewed this long before it expires (or at half its life, if shorter).
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// The fields of a service-account key file the provider uses.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    project_id: Option<String>,
}

/// A Google service-account key: who the gateway is to Google, and the key it signs its
/// token requests with.
#[derive(Clone)]
pub struct ServiceAccount {
    client_email: String,
    key: jsonwebtoken::EncodingKey,
    key_id: Option<String>,
    token_uri: String,
    project_id: Option<String>,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads a key file as the Cloud console makes them (`"type": "service_account"`).
    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        let k: KeyFile = serde_json::from_slice(json)
            .map_err(|e| ConfigError(format!("not a service-account key: {e}")))?;
        if k.kind.as_deref().is_some_and(|t| t != "service_account") {
            return Err(ConfigError(
                "the Google credentials are not a service-account key (user credentials \
                 and workload identity are not read here)"
                    .into(),
            ));
        }
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(k.private_key.as_bytes())
            .map_err(|e| ConfigError(format!("the service-account private key is invalid: {e}")))?;
        Ok(ServiceAccount {
            client_email: k.client_email,
            key,
            key_id: k.private_key_id,
            token_uri: k.token_uri.unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned()),
            project_id: k.project_id,
        })
    }

    /// Reads a key file from `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let p = path.as_ref();
        let bytes = std::fs::read(p)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
        Self::from_json(&bytes)
    }

    /// The service account's e-mail (the JWT issuer).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }
}

/// Settings of a [`VertexProvider`].
#[must_use]
pub struct VertexBuilder {
    name: String,
    project: Option<String>,
    region: Option<String>,
    base_url: Option<String>,
    account: Option<ServiceAccount>,
    token_uri: Option<String>,
    models: ModelMap,
    conn: Connection,
}

impl fmt::Debug for VertexBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexBuilder")
            .field("name", &self.name)
            .field("project", &self.project)
            .field("region", &self.region)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl VertexBuilder {
    connection_setters!();

    /// The Google Cloud project. Default: the key's `project_id`, or
    /// `ANTHROPIC_VERTEX_PROJECT_ID`, or `GOOGLE_CLOUD_PROJECT`.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// The region (`us-east5`, `europe-west1`, or `global`). Default: `CLOUD_ML_REGION`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Another base URL than `https://<region>-aiplatform.googleapis.com/v1` (a private
    /// endpoint, a local mock); up to and including `/v1`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The service-account key. Default: the file `GOOGLE_APPLICATION_CREDENTIALS` names.
    pub fn service_account(mut self, account: ServiceAccount) -> Self {
        self.account = Some(account);
        self
    }

    /// Another token endpoint than the key's `token_uri` (a local one in tests, a proxy).
    pub fn token_uri(mut self, url: impl Into<String>) -> Self {
        self.token_uri = Some(url.into());
        self
    }

    /// Sends `model` to Vertex as `vertex_id` (`claude-sonnet-4-5` as
    /// `claude-sonnet-4-5@20250929`). Other models go as they are named.
    pub fn model(mut self, model: impl Into<String>, vertex_id: impl Into<String>) -> Self {
        self.models.insert(model.into(), vertex_id.into());
        self
    }

    /// The provider's name in `Served`, audit records and metrics. Default `vertex`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds the provider and its connection pool. No token is fetched yet: the first
    /// request does it.
    pub fn build(self) -> Result<VertexProvider, ConfigError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let account = match self.account {
            Some(a) => a,
            None => {
                let path = env("GOOGLE_APPLICATION_CREDENTIALS").ok_or_else(|| {
                    ConfigError(
                        "no Google credentials: give a service-account key, or set \
                         GOOGLE_APPLICATION_CREDENTIALS to its file"
                            .into(),
                    )
                })?;
                ServiceAccount::from_file(path)?
            }
        };
        let project = self
            .project
            .or_else(|| account.project_id.clone())
            .or_else(|| env("ANTHROPIC_VERTEX_PROJECT_ID"))
            .or_else(|| env("GOOGLE_CLOUD_PROJECT"))
            .ok_or_else(|| ConfigError("no Google Cloud project".into()))?;
        let region = self
            .region
            .or_else(|| env("CLOUD_ML_REGION"))
            .ok_or_else(|| ConfigError("no Vertex region: set one, or CLOUD_ML_REGION".into()))?;
        for (what, v) in [("project", &project), ("region", &region)] {
            if v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError(format!("invalid Vertex {what}: {v}")));
            }
        }
        let base_url = self.base_url.unwrap_or_else(|| {
            if region == "global" {
                "https://aiplatform.googleapis.com/v1".to_owned()
            } else {
                format!("https://{region}-aiplatform.googleapis.com/v1")
            }
        });
        let base: Uri = base_url
            .parse()
            .map_err(|_| ConfigError(format!("invalid base url: {base_url}")))?;
        let (Some(scheme), Some(authority)) = (base.scheme().cloned(), base.authority().cloned())
        else {
            return Err(ConfigError(format!(
                "the base url needs a scheme and a host: {base_url}"
            )));
        };
        let token_uri: Uri = self
            .token_uri
            .as_deref()
            .unwrap_or(&account.token_uri)
            .parse()
            .map_err(|_| ConfigError("invalid token uri".into()))?;
        let client = self.conn.client()?;
        let prefix = format!(
            "{}/projects/{project}/locations/{region}/publishers/anthropic/models",
            base.path().trim_end_matches('/')
        );
        Ok(VertexProvider {
            shared: Arc::new(Shared {
                name: Arc::from(self.name),
                scheme,
                authority,
                prefix,
                tokens: Arc::new(TokenCache::new(account, token_uri, client.clone())),
                models: self.models,
                first_byte_timeout: self.conn.first_byte_timeout,
                idle_timeout: self.conn.idle_timeout,
                max_body: self.conn.max_body,
            }),
            client,
        })
    }
}

struct Shared {
    name: Arc<str>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// `/v1/projects/{p}/locations/{r}/publishers/anthropic/models`.
    prefix: String,
    tokens: Arc<TokenCache>,
    models: ModelMap,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_body: usize,
}

/// Sends canonical Messages requests to Anthropic models on Google Vertex AI and decodes
/// the answers into the same [`AiBody`] as from Anthropic. Clones share the connection
/// pool and the token.
///
/// - The body is the Messages request without `model`, with
///   `anthropic_version: vertex-2023-10-16` and the caller's `anthropic-beta` as
///   `anthropic_beta`; the model (mapped by [`VertexBuilder::model`]) goes in the path,
///   `.../models/{model}:rawPredict` or `:streamRawPredict`. `count_tokens` goes to
///   `.../models/count-tokens:rawPredict`.
/// - The bearer token comes from the service-account key by the JWT bearer grant. It is
///   fetched once and shared; five minutes before it expires (or at half its life) one
///   background refresh replaces it while requests go on with the old one. Only when
///   there is no valid token at all do requests wait, all for the same fetch.
/// - Errors in Anthropic's shape keep their type and message; Google's
///   (`{"error": {"code", "message", "status"}}`, sometimes in a list) get the kind of
///   their status: 429 `RESOURCE_EXHAUSTED` is `rate_limit_error`. 401 and 403 are the
///   gateway's credentials refused (502).
#[derive(Clone)]
pub struct VertexProvider {
    shared: Arc<Shared>,
    client: HttpsClient,
}

impl fmt::Debug for VertexProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexProvider")
            .field("name", &self.shared.name)
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

impl VertexProvider {
    /// A builder with the defaults.
    pub fn builder() -> VertexBuilder {
        VertexBuilder {
            name: "vertex".to_owned(),
            project: None,
            region: None,
            base_url: None,
            account: None,
            token_uri: None,
            models: ModelMap::default(),
            conn: Connection::default(),
        }
    }

    /// Where the models are: `host/v1/projects/{p}/locations/{r}/publishers/anthropic/models`.
    pub fn models_url(&self) -> String {
        format!("{}{}", self.shared.authority, self.shared.prefix)
    }

    /// How many tokens this provider has fetched so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.shared.tokens.fetched.load(Ordering::Relaxed)
    }

    async fn upstream_request(
        &self,
        req: &Request<MessagesRequest>,
        endpoint: &Endpoint,
    ) -> Result<Request<Full<Bytes>>, AiError> {
        let s = &self.shared;
        let (path, body) = match endpoint {
            Endpoint::Messages => {
                let model = s.models.get(&req.body().model);
                if model.is_empty()
                    || !model
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b))
                {
                    return Err(AiError::invalid_request(
                        "the model name cannot be sent to Vertex",
                    ));
                }
                let action = if req.body().is_stream() {
                    "streamRawPredict"
                } else {
                    "rawPredict"
                };
                (
                    format!("{}/{model}:{action}", s.prefix),
                    vendor_body(req, VERTEX_ANTHROPIC_VERSION, true)?,
                )
            }
            Endpoint::CountTokens => {
                // Vertex counts with the model in the body, under its Vertex name.
                let mut mapped = Request::new(req.body().clone());
                *mapped.headers_mut() = req.headers().clone();
                mapped.body_mut().model = s.models.get(&req.body().model).to_owned();
                let mut v: serde_json::Value =
                    serde_json::from_slice(&vendor_body(&mapped, VERTEX_ANTHROPIC_VERSION, false)?)
                        .map_err(|_| AiError::api("failed to encode the upstream request"))?;
                v["model"] = mapped.body().model.clone().into();
                (
                    format!("{}/count-tokens:rawPredict", s.prefix),
                    Bytes::from(
                        serde_json::to_vec(&v)
                            .map_err(|_| AiError::api("failed to encode the upstream request"))?,
                    ),
                )
            }
            _ => {
                return Err(AiError::new(
                    ErrorKind::NotFound,
                    "this upstream serves messages and count_tokens only",
                ));
            }
        };
        let uri = Uri::builder()
            .scheme(s.scheme.clone())
            .authority(s.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| AiError::invalid_request("the model name makes an invalid path"))?;
        let token = s.tokens.token().await?;
        let mut up = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|_| AiError::api("failed to build the upstream request"))?;
        let h = up.headers_mut();
        h.insert(header::AUTHORIZATION, token);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("ai-gateway/", env!("CARGO_PKG_VERSION"))),
        );
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
        let s = self.shared.clone();
        let timings = req.extensions().get::<Timings>().cloned();
        let call = Call {
            provider: &s.name,
            model: &req.body().model,
            report: req.extensions().get::<CallReport>(),
            first_byte_timeout: s.first_byte_timeout,
        };
        let up = self.upstream_request(&req, &endpoint).await?;
        let resp = call.send(&self.client, up).await?;
        if let Some(t) = &timings {
            t.mark_first_byte();
        }
        let (parts, body) = resp.into_parts();
        let request_id = header_str(&parts.headers, "request-id")
            .or_else(|| header_str(&parts.headers, "x-request-id"))
            .map(str::to_owned);
        if !parts.status.is_success() {
            let bytes = read_limited(body, 256 * 1024, s.idle_timeout)
                .await
                .unwrap_or_default();
            if matches!(parts.status.as_u16(), 401 | 403) {
                return Err(call
                    .credentials_refused(parts.status, &String::from_utf8_lossy(&bytes))
                    .with_request_id(request_id));
            }
            return Err(error_from_body(parts.status, &bytes)
                .with_request_id(request_id)
                .with_retry_after(retry_after(&parts.headers)));
        }
        let is_sse = header_str(&parts.headers, "content-type")
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = if is_sse {
            AiBody::from_events(BodyEvents::new(body, s.idle_timeout).with_timings(timings))
        } else {
            let bytes = read_limited(body, s.max_body, s.idle_timeout).await?;
            whole_answer(&bytes, &endpoint, req.body().is_stream())?
        };
        let mut out = Response::new(body);
        out.extensions_mut().insert(Served {
            provider: s.name.clone(),
            model: Arc::from(req.body().model.as_str()),
            request_id: request_id.as_deref().map(Arc::from),
        });
        Ok(out)
    }
}

provider_service!(VertexProvider);

/// An error answer from Vertex: Anthropic's envelope when the model answered, Google's
/// (`{"error": {"code", "message", "status"}}`, or a list of them) when the platform did.
fn error_from_body(status: StatusCode, body: &[u8]) -> AiError {
    if let Ok(e) = serde_json::from_slice::<ErrorEvent>(body) {
        return AiError::upstream(status, e.error.kind.clone(), e.error.message.clone());
    }
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let g = v.get(0).unwrap_or(&v);
    let message = g["error"]["message"].as_str().map_or_else(
        || format!("upstream returned http {}", status.as_u16()),
        str::to_owned,
    );
    let kind = match g["error"]["status"].as_str() {
        Some("RESOURCE_EXHAUSTED") => ErrorKind::RateLimit,
        Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => {
            ErrorKind::InvalidRequest
        }
        Some("NOT_FOUND") => ErrorKind::NotFound,
        Some("UNAVAILABLE") => ErrorKind::Overloaded,
        Some("DEADLINE_EXCEEDED") => ErrorKind::UpstreamTimeout,
        _ => ErrorKind::from_status(status),
    };
    AiError::upstream(status, kind.error_type(), message)
}

/// A fetched access token.
struct Token {
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

/// The access token shared by every request, fetched with the service-account key.
struct TokenCache {
    account: ServiceAccount,
    token_uri: Uri,
    client: HttpsClient,
    current: Mutex<Option<Arc<Token>>>,
    /// Held while a token is fetched: one fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    fetched: AtomicU64,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: String,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl TokenCache {
    fn new(account: ServiceAccount, token_uri: Uri, client: HttpsClient) -> Self {
        TokenCache {
            account,
            token_uri,
            client,
            current: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            fetched: AtomicU64::new(0),
        }
    }

    fn current(&self) -> Option<Arc<Token>> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// The `authorization` header for a request now.
    async fn token(self: &Arc<Self>) -> Result<HeaderValue, AiError> {
        let now = Instant::now();
        if let Some(t) = self.current() {
            if now < t.refresh_at {
                return Ok(t.header.clone());
            }
            if now < t.expires_at {
                // Still good: renew it in the background, once.
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let _one = this.fetching.lock().await;
                        let due = this
                            .current()
                            .is_none_or(|t| Instant::now() >= t.refresh_at);
                        if due {
                            if let Err(e) = this.fetch().await {
                                tracing::warn!(error = %e, "refreshing the Vertex access token failed; the current one is kept until it expires");
                            }
                        }
                        this.refreshing.store(false, Ordering::Release);
                    });
                }
                return Ok(t.header.clone());
            }
        }
        let _one = self.fetching.lock().await;
        if let Some(t) = self.current().filter(|t| Instant::now() < t.expires_at) {
            return Ok(t.header.clone());
        }
        self.fetch().await.map_err(|e| {
            tracing::warn!(error = %e, "getting a Vertex access token failed");
            AiError::new(
                ErrorKind::UpstreamUnavailable,
                "the gateway could not get an access token for Vertex AI",
            )
        })
    }

    /// Gets a new token (the caller holds `fetching`) and keeps it.
    async fn fetch(&self) -> Result<HeaderValue, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let claims = Claims {
            iss: &self.account.client_email,
            scope: CLOUD_PLATFORM_SCOPE,
            aud: self.token_uri.to_string(),
            iat: now,
            exp: now + 3600,
        };
        let mut head = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        head.kid = self.account.key_id.clone();
        let assertion = jsonwebtoken::encode(&head, &claims, &self.account.key)
            .map_err(|e| format!("signing the token request failed: {e}"))?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let req = Request::post(self.token_uri.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let resp = tokio::time::timeout(TOKEN_TIMEOUT, self.client.clone().oneshot(req))
            .await
            .map_err(|_| "the token endpoint did not answer in time".to_owned())?
            .map_err(|e| format!("the token endpoint could not be reached: {e}"))?;
        let (parts, body) = resp.into_parts();
        let bytes = read_limited(body, 64 * 1024, TOKEN_TIMEOUT)
            .await
            .map_err(|e| e.message().to_owned())?;
        if !parts.status.is_success() {
            // `{"error": "invalid_grant", "error_description": ...}`: no secret in it.
            return Err(format!(
                "the token endpoint answered http {}: {}",
                parts.status.as_u16(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes)
            .map_err(|_| "the token endpoint's answer is not a token".to_owned())?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
            .map_err(|_| "the access token is not a valid header value".to_owned())?;
        header.set_sensitive(true);
        let life = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let token = Token {
            header: header.clone(),
            refresh_at: started + life.saturating_sub(REFRESH_AHEAD.min(life / 2)),
            expires_at: started + life,
        };
        if let Ok(mut c) = self.current.lock() {
            *c = Some(Arc::new(token));
        }
        self.fetched.fetch_add(1, Ordering::Relaxed);
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_and_anthropic_errors_keep_their_meaning() {
        let e = error_from_body(
            StatusCode::TOO_MANY_REQUESTS,
            br#"[{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model","status":"RESOURCE_EXHAUSTED"}}]"#,
        );
        assert_eq!(e.kind(), ErrorKind::RateLimit);
        assert!(e.message().starts_with("Quota exceeded"));
        let e = error_from_body(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        let e = error_from_body(
            StatusCode::from_u16(529).expect("status"),
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(e.error_type(), "overloaded_error");
        assert_eq!(e.status(), 529);
        let e = error_from_body(StatusCode::SERVICE_UNAVAILABLE, b"<html>");
        assert_eq!(e.status(), 503);
    }

    #[test]
    fn a_key_that_is_not_a_service_account_is_refused() {
        assert!(ServiceAccount::from_json(b"{}").is_err());
        assert!(
            ServiceAccount::from_json(
                br#"{"type":"authorized_user","client_email":"a","private_key":"x"}"#
            )
            .is_err()
        );
        assert!(
            ServiceAccount::from_json(
                br#"{"type":"service_account","client_email":"a","private_key":"not pem"}"#
            )
            .is_err()
        );
    }
}
