//! [`BedrockProvider`]: Anthropic models on AWS Bedrock (`InvokeModel`,
//! `InvokeModelWithResponseStream`), SigV4-signed with `aws-sigv4`, streams decoded from
//! the `application/vnd.amazon.eventstream` framing with `aws-smithy-eventstream`.

use crate::anthropic::{ConfigError, HttpsClient, read_limited};
use crate::stream::{FrameDecoder, FramedEvents, Queue};
use crate::upstream::{
    Call, Connection, connection_setters, header_str, provider_service, whole_answer,
};
use crate::{ModelMap, vendor_body};
use ai_core::{
    AiBody, AiError, CallReport, Endpoint, ErrorKind, MessagesRequest, Served, StreamEvent, Timings,
};
pub use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::{HeaderValue as FrameHeader, Message};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The `anthropic_version` Bedrock expects in the body.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";
/// The SigV4 service name of the Bedrock runtime.
pub const SIGNING_NAME: &str = "bedrock";

/// Path segment characters left as they are (RFC 3986 unreserved); everything else in a
/// model id (`:` in `...-v1:0`, `/` in an ARN) is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Settings of a [`BedrockProvider`].
#[must_use]
pub struct BedrockBuilder {
    name: String,
    region: Option<String>,
    endpoint: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    models: ModelMap,
    conn: Connection,
}

impl fmt::Debug for BedrockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockBuilder")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl BedrockBuilder {
    connection_setters!();

    /// The AWS region (`us-east-1`). Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, then
    /// the `region` of the profile in the shared config file.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Another endpoint than `https://bedrock-runtime.<region>.amazonaws.com` (a VPC
    /// endpoint, a FIPS endpoint, a local mock). Requests are still signed for the region.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Fixed credentials (an access key, its secret and maybe a session token).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(SharedCredentialsProvider::new(credentials));
        self
    }

    /// Any credentials provider, asked before every request: for example `aws-config`'s
    /// default chain, for SSO, assumed roles, web identity or instance metadata, which
    /// rotate their credentials. Default: [`credentials_from_env`], read once.
    pub fn credentials_provider(mut self, provider: impl ProvideCredentials + 'static) -> Self {
        self.credentials = Some(SharedCredentialsProvider::new(provider));
        self
    }

    /// Sends `model` to Bedrock as `bedrock_id` (`claude-sonnet-4-5` as
    /// `us.anthropic.claude-sonnet-4-5-20250929-v1:0`). Other models go as they are named.
    pub fn model(mut self, model: impl Into<String>, bedrock_id: impl Into<String>) -> Self {
        self.models.insert(model.into(), bedrock_id.into());
        self
    }

    /// The provider's name in `Served`, audit records and metrics. Default `bedrock`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Builds the provider and its connection pool. Without explicit credentials they
    /// are read from the environment and the shared files now ([`credentials_from_env`]),
    /// and their absence is an error.
    pub fn build(self) -> Result<BedrockProvider, ConfigError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let region = match self.region {
            Some(r) => r,
            None => region_from_env(&env).ok_or_else(|| {
                ConfigError(
                    "no AWS region: set one, or AWS_REGION, or a region in the profile".into(),
                )
            })?,
        };
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ConfigError(format!("invalid AWS region: {region}")));
        }
        let credentials = match self.credentials {
            Some(c) => c,
            None => SharedCredentialsProvider::new(credentials_from_env(&env)?),
        };
        let endpoint = self
            .endpoint
            .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
        let base: Uri = endpoint
            .parse()
            .map_err(|_| ConfigError(format!("invalid endpoint: {endpoint}")))?;
        let (Some(scheme), Some(authority)) = (base.scheme().cloned(), base.authority().cloned())
        else {
            return Err(ConfigError(format!(
                "the endpoint needs a scheme and a host: {endpoint}"
            )));
        };
        let client = self.conn.client()?;
        Ok(BedrockProvider {
            shared: Arc::new(Shared {
                name: Arc::from(self.name),
                region,
                scheme,
                authority,
                prefix: base.path().trim_end_matches('/').to_owned(),
                credentials,
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
    region: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    prefix: String,
    credentials: SharedCredentialsProvider,
    models: ModelMap,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_body: usize,
}

/// Sends canonical Messages requests to Anthropic models on AWS Bedrock and decodes the
/// answers into the same [`AiBody`] as from Anthropic. Clones share the connection pool.
///
/// - The body is the Messages request without `model` and `stream`, with
///   `anthropic_version: bedrock-2023-05-31` and the caller's `anthropic-beta` as
///   `anthropic_beta`; the model (mapped by [`BedrockBuilder::model`]) goes in the path,
///   `/model/{id}/invoke` or `/model/{id}/invoke-with-response-stream`.
/// - Each request is signed with SigV4 (`aws-sigv4`, service `bedrock`) with the
///   credentials of the moment; no credential or signature is logged.
/// - Stream frames are checked (both CRCs) and decoded by `aws-smithy-eventstream`; an
///   `exception` frame (`throttlingException`, `modelStreamErrorException`, ...) ends
///   the stream with the matching error.
/// - HTTP errors keep their meaning by `x-amzn-ErrorType`: `ThrottlingException` is
///   429 `rate_limit_error`, `ValidationException` 400, `ModelTimeoutException` 504,
///   `ServiceUnavailableException` 529 `overloaded_error`, a refused signature or
///   expired token 502 (the gateway's credentials, not the caller's); `x-amzn-RequestId`
///   is kept as the request id.
/// - Only `POST /v1/messages` is served (404 otherwise).
#[derive(Clone)]
pub struct BedrockProvider {
    shared: Arc<Shared>,
    client: HttpsClient,
}

impl fmt::Debug for BedrockProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockProvider")
            .field("name", &self.shared.name)
            .field("region", &self.shared.region)
            .field("authority", &self.shared.authority)
            .finish_non_exhaustive()
    }
}

impl BedrockProvider {
    /// A builder with the defaults.
    pub fn builder() -> BedrockBuilder {
        BedrockBuilder {
            name: "bedrock".to_owned(),
            region: None,
            endpoint: None,
            credentials: None,
            models: ModelMap::default(),
            conn: Connection::default(),
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.shared.region
    }

    async fn upstream_request(
        &self,
        req: &Request<MessagesRequest>,
    ) -> Result<Request<Full<Bytes>>, AiError> {
        let s = &self.shared;
        let id = s.models.get(&req.body().model);
        let action = if req.body().is_stream() {
            "invoke-with-response-stream"
        } else {
            "invoke"
        };
        let uri = Uri::builder()
            .scheme(s.scheme.clone())
            .authority(s.authority.clone())
            .path_and_query(format!(
                "{}/model/{}/{action}",
                s.prefix,
                utf8_percent_encode(id, SEGMENT)
            ))
            .build()
            .map_err(|_| AiError::invalid_request("the model id makes an invalid path"))?;
        let body = vendor_body(req, BEDROCK_ANTHROPIC_VERSION, false)?;
        let mut up = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|_| AiError::api("failed to build the upstream request"))?;
        let h = up.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(if req.body().is_stream() {
                "application/vnd.amazon.eventstream"
            } else {
                "application/json"
            }),
        );
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("ai-gateway/", env!("CARGO_PKG_VERSION"))),
        );
        let credentials = s.credentials.provide_credentials().await.map_err(|e| {
            tracing::warn!(provider = %s.name, error = %e, "no AWS credentials");
            AiError::api("the gateway could not load its AWS credentials")
        })?;
        sign_request(&mut up, &body, &credentials, &s.region, SystemTime::now())?;
        *up.body_mut() = Full::new(body);
        Ok(up)
    }

    async fn send(self, req: Request<MessagesRequest>) -> Result<Response<AiBody>, AiError> {
        let endpoint = req
            .extensions()
            .get::<Endpoint>()
            .cloned()
            .unwrap_or(Endpoint::Messages);
        if endpoint != Endpoint::Messages {
            return Err(AiError::new(
                ErrorKind::NotFound,
                "this upstream serves messages only (no count_tokens or model list)",
            ));
        }
        let s = self.shared.clone();
        let timings = req.extensions().get::<Timings>().cloned();
        let call = Call {
            provider: &s.name,
            model: &req.body().model,
            report: req.extensions().get::<CallReport>(),
            first_byte_timeout: s.first_byte_timeout,
        };
        let up = self.upstream_request(&req).await?;
        let resp = call.send(&self.client, up).await?;
        if let Some(t) = &timings {
            t.mark_first_byte();
        }
        let (parts, body) = resp.into_parts();
        let request_id = header_str(&parts.headers, "x-amzn-requestid").map(str::to_owned);
        if !parts.status.is_success() {
            let bytes = read_limited(body, 256 * 1024, s.idle_timeout)
                .await
                .unwrap_or_default();
            let error_type = header_str(&parts.headers, "x-amzn-errortype").unwrap_or("");
            let message = error_message(&bytes);
            let e = match http_error(parts.status, error_type, &message) {
                Some(e) => e,
                None => call.credentials_refused(parts.status, &message),
            };
            return Err(e.with_request_id(request_id));
        }
        let is_eventstream = header_str(&parts.headers, "content-type")
            .is_some_and(|v| v.starts_with("application/vnd.amazon.eventstream"));
        let body = if is_eventstream {
            AiBody::from_events(FramedEvents::new(
                body,
                EventStreamDecoder::new(),
                s.idle_timeout,
                timings,
            ))
        } else {
            let bytes = read_limited(body, s.max_body, s.idle_timeout).await?;
            whole_answer(&bytes, &Endpoint::Messages, req.body().is_stream())?
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

provider_service!(BedrockProvider);

/// Signs `req` (whose body is `body`) with SigV4 for the Bedrock runtime in `region` at
/// `time`: adds `x-amz-date`, `authorization` and, with a session token,
/// `x-amz-security-token`. Every header already on the request is signed (the
/// `aws-sigv4` defaults leave out `user-agent`), the path is encoded twice in the
/// canonical request as the non-S3 services expect.
pub fn sign_request<B>(
    req: &mut Request<B>,
    body: &[u8],
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<(), AiError> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| AiError::api("failed to sign the upstream request"))?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|_| AiError::api("failed to sign the upstream request"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|_| AiError::api("failed to sign the upstream request"))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

/// The `message` of a Bedrock error body (`{"message": ...}` or `{"Message": ...}`).
fn error_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    v.get("message")
        .or_else(|| v.get("Message"))
        .and_then(|m| m.as_str())
        .map_or_else(
            || String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            str::to_owned,
        )
}

/// The error for an HTTP error from Bedrock, by its `x-amzn-ErrorType`
/// (`ThrottlingException:http://internal.amazon.com/...`) and status. `None`: the
/// upstream refused the gateway's credentials.
pub(crate) fn http_error(status: StatusCode, error_type: &str, message: &str) -> Option<AiError> {
    let name = error_type.split(':').next().unwrap_or("").trim();
    let kind = match name {
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch" => return None,
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            return None;
        }
        _ => exception_kind(name).unwrap_or_else(|| ErrorKind::from_status(status)),
    };
    let message = if message.is_empty() {
        format!("upstream returned http {}", status.as_u16())
    } else {
        message.to_owned()
    };
    Some(AiError::new(kind, message))
}

/// The error kind of a Bedrock exception name, in the HTTP (`ThrottlingException`) or
/// the event-stream (`throttlingException`) spelling.
fn exception_kind(name: &str) -> Option<ErrorKind> {
    const KINDS: &[(&str, ErrorKind)] = &[
        ("ThrottlingException", ErrorKind::RateLimit),
        ("ServiceQuotaExceededException", ErrorKind::RateLimit),
        ("TooManyRequestsException", ErrorKind::RateLimit),
        ("ValidationException", ErrorKind::InvalidRequest),
        ("ResourceNotFoundException", ErrorKind::NotFound),
        ("ModelTimeoutException", ErrorKind::UpstreamTimeout),
        ("ServiceUnavailableException", ErrorKind::Overloaded),
        ("ModelNotReadyException", ErrorKind::Overloaded),
        ("InternalServerException", ErrorKind::Api),
        ("ModelErrorException", ErrorKind::Api),
        ("ModelStreamErrorException", ErrorKind::Api),
    ];
    KINDS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, k)| *k)
}

/// The error an `exception` (or `error`) frame ends a stream with.
fn frame_error(msg: &Message, message_type: &str) -> AiError {
    let header = |name: &str| {
        msg.headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str().to_owned())
    };
    let (name, message) = if message_type == "exception" {
        (
            header(":exception-type").unwrap_or_default(),
            error_message(msg.payload()),
        )
    } else {
        (
            header(":error-code").unwrap_or_default(),
            header(":error-message").unwrap_or_default(),
        )
    };
    let kind = exception_kind(&name).unwrap_or(ErrorKind::Api);
    let message = if message.is_empty() {
        format!("upstream stream failed: {name}")
    } else {
        message
    };
    AiError::new(kind, message)
}

/// An `application/vnd.amazon.eventstream` body decoded into canonical events: each
/// `chunk` frame's payload is `{"bytes": "<base64 Anthropic event>"}` (plus a random
/// `p` padding since 2025).
pub struct EventStreamDecoder {
    buf: BytesMut,
    frames: MessageFrameDecoder,
    event: Vec<u8>,
}

impl fmt::Debug for EventStreamDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStreamDecoder")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Default for EventStreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(serde::Deserialize)]
struct ChunkPayload<'a> {
    #[serde(borrow)]
    bytes: &'a str,
}

impl EventStreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        EventStreamDecoder {
            buf: BytesMut::new(),
            frames: MessageFrameDecoder::new(),
            event: Vec::new(),
        }
    }

    /// Decodes the frames `chunk` completes, pushing their events (or the error that
    /// ends the stream) to `out`. Returns `true` once the stream is over: after
    /// `message_stop` or an error.
    pub fn decode(
        &mut self,
        chunk: &[u8],
        out: &mut std::collections::VecDeque<Result<StreamEvent, AiError>>,
    ) -> bool {
        self.buf.extend_from_slice(chunk);
        loop {
            let msg = match self.frames.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Incomplete) => return false,
                Ok(DecodedFrame::Complete(m)) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "invalid event-stream frame");
                    out.push_back(Err(AiError::new(
                        ErrorKind::UpstreamUnavailable,
                        "upstream event stream is invalid",
                    )));
                    return true;
                }
            };
            match self.frame(&msg) {
                Ok(Some(ev)) => {
                    let stop = matches!(ev, StreamEvent::MessageStop(_));
                    out.push_back(Ok(ev));
                    if stop {
                        return true;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    out.push_back(Err(e));
                    return true;
                }
            }
        }
    }

    /// One frame: an event, nothing (an unknown event type), or the stream's error.
    fn frame(&mut self, msg: &Message) -> Result<Option<StreamEvent>, AiError> {
        let mut message_type = "event";
        let mut event_type = "";
        for h in msg.headers() {
            if let FrameHeader::String(v) = h.value() {
                match h.name().as_str() {
                    ":message-type" => message_type = v.as_str(),
                    ":event-type" => event_type = v.as_str(),
                    _ => {}
                }
            }
        }
        let invalid = || {
            AiError::new(
                ErrorKind::UpstreamUnavailable,
                "upstream sent an event that is not valid json",
            )
        };
        match message_type {
            "event" if event_type == "chunk" => {
                let p: ChunkPayload<'_> =
                    serde_json::from_slice(msg.payload()).map_err(|_| invalid())?;
                self.event.clear();
                base64::engine::general_purpose::STANDARD
                    .decode_vec(p.bytes, &mut self.event)
                    .map_err(|_| invalid())?;
                match serde_json::from_slice::<StreamEvent>(&self.event) {
                    Ok(StreamEvent::Error(e)) => Err(AiError::from_detail(&e.error)),
                    Ok(ev) => Ok(Some(ev)),
                    Err(_) => Err(invalid()),
                }
            }
            "event" => Ok(None),
            other => Err(frame_error(msg, other)),
        }
    }
}

impl FrameDecoder for EventStreamDecoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Queue) -> bool {
        self.decode(chunk, out)
    }

    fn finish(&mut self, _out: &mut Queue) -> bool {
        false
    }
}

/// Reads AWS credentials the way the AWS CLI and SDKs do, for static keys:
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` first, then the
/// profile `AWS_PROFILE` (default `default`) in the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`) and in the shared config
/// file (`AWS_CONFIG_FILE`, default `~/.aws/config`). Profiles that assume a role, use
/// SSO or run a process are not resolved here: give such a chain (`aws-config`) to
/// [`BedrockBuilder::credentials_provider`].
pub fn credentials_from_env(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, ConfigError> {
    if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials::new(
            id,
            secret,
            env("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ));
    }
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    for (file, section) in profile_sections(env, &profile) {
        let Some(keys) = file else { continue };
        let Some(p) = keys.get(&section) else {
            continue;
        };
        match (p.get("aws_access_key_id"), p.get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => {
                return Ok(Credentials::new(
                    id.clone(),
                    secret.clone(),
                    p.get("aws_session_token").cloned(),
                    None,
                    "profile",
                ));
            }
            _ if p.contains_key("role_arn")
                || p.contains_key("sso_session")
                || p.contains_key("sso_start_url")
                || p.contains_key("credential_process") =>
            {
                return Err(ConfigError(format!(
                    "the AWS profile {profile} assumes a role, uses SSO or runs a process: \
                     give the gateway static keys, or embed it with an aws-config provider"
                )));
            }
            _ => {}
        }
    }
    Err(ConfigError(format!(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or keys for \
         the profile {profile} in ~/.aws/credentials"
    )))
}

/// The region: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`.
pub fn region_from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(r) = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
        return Some(r);
    }
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
    profile_sections(env, &profile)
        .into_iter()
        .filter_map(|(file, section)| file?.get(&section)?.get("region").cloned())
        .next()
}

type Profiles = HashMap<String, HashMap<String, String>>;

/// The shared credentials file's section for `profile`, then the config file's.
fn profile_sections(
    env: &dyn Fn(&str) -> Option<String>,
    profile: &str,
) -> [(Option<Profiles>, String); 2] {
    let home = env("HOME").map(PathBuf::from);
    let path = |var: &str, name: &str| {
        env(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let read = |p: Option<PathBuf>| {
        p.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| parse_profiles(&t))
    };
    let config_section = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    [
        (
            read(path("AWS_SHARED_CREDENTIALS_FILE", "credentials")),
            profile.to_owned(),
        ),
        (read(path("AWS_CONFIG_FILE", "config")), config_section),
    ]
}

/// The sections of an AWS shared file (`[name]`, `key = value`, `#` and `;` comments).
fn parse_profiles(text: &str) -> Profiles {
    let mut out = Profiles::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            if let Some(p) = out.get_mut(section) {
                p.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_like_the_cli() {
        let p = parse_profiles(
            "# comment\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key=s1\n\n\
             [profile  dev]\nregion = eu-west-1\n; c\nAWS_SESSION_TOKEN = t\n",
        );
        assert_eq!(p["default"]["aws_access_key_id"], "AKIA1");
        assert_eq!(p["default"]["aws_secret_access_key"], "s1");
        assert_eq!(p["profile dev"]["region"], "eu-west-1");
        assert_eq!(p["profile dev"]["aws_session_token"], "t");
    }

    #[test]
    fn credentials_come_from_the_environment_then_the_profile() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tmp")
            .join(format!("ai-provider-aws-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".aws")).expect("dir");
        std::fs::write(
            dir.join(".aws/credentials"),
            "[default]\naws_access_key_id=AKIAFILE\naws_secret_access_key=sf\n\
             [dev]\naws_access_key_id=AKIADEV\naws_secret_access_key=sd\naws_session_token=tok\n",
        )
        .expect("write");
        std::fs::write(
            dir.join(".aws/config"),
            "[profile dev]\nregion = eu-central-1\n[profile sso]\nsso_session = corp\n",
        )
        .expect("write");
        let home = dir.to_string_lossy().into_owned();
        let env_of = |pairs: Vec<(&'static str, String)>| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        let e = env_of(vec![
            ("AWS_ACCESS_KEY_ID", "AKIAENV".into()),
            ("AWS_SECRET_ACCESS_KEY", "se".into()),
            ("HOME", home.clone()),
        ]);
        assert_eq!(
            credentials_from_env(&e).expect("env").access_key_id(),
            "AKIAENV"
        );
        let e = env_of(vec![("HOME", home.clone())]);
        assert_eq!(
            credentials_from_env(&e).expect("file").access_key_id(),
            "AKIAFILE"
        );
        assert_eq!(region_from_env(&e), None);
        let e = env_of(vec![("HOME", home.clone()), ("AWS_PROFILE", "dev".into())]);
        let c = credentials_from_env(&e).expect("dev");
        assert_eq!(c.access_key_id(), "AKIADEV");
        assert_eq!(c.session_token(), Some("tok"));
        assert_eq!(region_from_env(&e).as_deref(), Some("eu-central-1"));
        let e = env_of(vec![("HOME", home.clone()), ("AWS_PROFILE", "sso".into())]);
        let err = credentials_from_env(&e).expect_err("sso");
        assert!(err.to_string().contains("SSO"), "{err}");
        let e = env_of(vec![("HOME", home), ("AWS_PROFILE", "none".into())]);
        assert!(credentials_from_env(&e).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn model_ids_are_one_encoded_path_segment() {
        assert_eq!(
            utf8_percent_encode("us.anthropic.claude-3-5-sonnet-20240620-v1:0", SEGMENT)
                .to_string(),
            "us.anthropic.claude-3-5-sonnet-20240620-v1%3A0"
        );
        assert_eq!(
            utf8_percent_encode("arn:aws:bedrock:us-east-1:1:x/y", SEGMENT).to_string(),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ax%2Fy"
        );
    }

    #[test]
    fn errors_keep_their_meaning() {
        let e = |s: u16, t: &str| http_error(StatusCode::from_u16(s).expect("status"), t, "m");
        let kind = |s, t| e(s, t).map(|e| e.kind());
        assert_eq!(
            kind(
                429,
                "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
            ),
            Some(ErrorKind::RateLimit)
        );
        assert_eq!(
            kind(400, "ValidationException:x"),
            Some(ErrorKind::InvalidRequest)
        );
        assert_eq!(
            kind(408, "ModelTimeoutException"),
            Some(ErrorKind::UpstreamTimeout)
        );
        assert_eq!(
            kind(503, "ServiceUnavailableException"),
            Some(ErrorKind::Overloaded)
        );
        assert_eq!(kind(500, ""), Some(ErrorKind::Api));
        assert!(e(403, "ExpiredTokenException:x").is_none());
        assert!(e(403, "").is_none());
        assert_eq!(
            exception_kind("throttlingException"),
            Some(ErrorKind::RateLimit)
        );
        assert_eq!(
            exception_kind("modelStreamErrorException"),
            Some(ErrorKind::Api)
        );
        assert_eq!(exception_kind("unknownException"), None);
    }
}
