//! [`OpenAiProvider`]: canonical requests to OpenAI Chat Completions, or to a self-hosted
//! OpenAI-compatible server (vLLM, Ollama, llama.cpp), answers mapped back to canonical
//! messages and events with [`ai_core::openai`].

use crate::anthropic::{ConfigError, HttpsClient, read_limited};
use crate::stream::{FrameDecoder, FramedEvents, Queue};
use crate::upstream::{
    Call, Connection, connection_setters, header_str, provider_service, retry_after,
};
use ai_core::openai::{ChunkDecoder, MaxTokensField, error_from_body, from_chat_completion};
use ai_core::sse::SseParser;
use ai_core::{
    AiBody, AiError, CallReport, Endpoint, ErrorKind, MessagesRequest, Served, StreamEvent, Timings,
};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// OpenAI's base URL (with its `/v1`, as the OpenAI SDKs take it).
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// Settings of an [`OpenAiProvider`].
pub struct OpenAiBuilder {
    name: String,
    base_url: String,
    api_key: Option<String>,
    key_required: bool,
    max_tokens: MaxTokensField,
    conn: Connection,
}

impl fmt::Debug for OpenAiBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiBuilder")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl OpenAiBuilder {
    connection_setters!();

    /// The base URL, up to and including `/v1` (`http://localhost:8000/v1`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The key, sent as `Authorization: Bearer`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The provider's name in `Served`, audit records and metrics. Default `openai`, or
    /// `selfhosted`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Which field carries the output cap.
    pub fn max_tokens_field(mut self, f: MaxTokensField) -> Self {
        self.max_tokens = f;
        self
    }

    /// Builds the provider and its connection pool.
    pub fn build(self) -> Result<OpenAiProvider, ConfigError> {
        let auth = match &self.api_key {
            Some(k) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {k}"))
                    .map_err(|_| ConfigError("the api key is not a valid header value".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None if self.key_required => {
                return Err(ConfigError("an api key is required".into()));
            }
            None => None,
        };
        let base: Uri = self
            .base_url
            .parse()
            .map_err(|_| ConfigError(format!("invalid base url: {}", self.base_url)))?;
        let (Some(scheme), Some(authority)) = (base.scheme().cloned(), base.authority().cloned())
        else {
            return Err(ConfigError(format!(
                "the base url needs a scheme and a host: {}",
                self.base_url
            )));
        };
        let client = self.conn.client()?;
        Ok(OpenAiProvider {
            shared: Arc::new(Shared {
                name: Arc::from(self.name),
                scheme,
                authority,
                prefix: base.path().trim_end_matches('/').to_owned(),
                auth,
                max_tokens: self.max_tokens,
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
    prefix: String,
    auth: Option<HeaderValue>,
    max_tokens: MaxTokensField,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    max_body: usize,
}

/// Sends canonical Messages requests to an OpenAI Chat Completions endpoint
/// (`POST <base>/chat/completions`) and maps the answers back, so the layers above see
/// the same `AiBody` as from Anthropic. Clones share the connection pool.
///
/// - Requests are mapped by [`ai_core::openai::to_chat_request`]; streams ask for
///   `stream_options.include_usage`. What does not map is listed in
///   `docs/ai-provider.md`.
/// - A stream is decoded by [`ChunkDecoder`]. A server that sends no usage chunk (vLLM,
///   Ollama) gets an estimate of the output (bytes / 4).
/// - Errors keep the upstream's status and message. 401 and 403 are the gateway's own key
///   refused, so they become 502 `api_error`. `retry-after` is kept.
/// - Only `POST /v1/messages` is served. `count_tokens` and the model list are not
///   (404).
#[derive(Clone)]
pub struct OpenAiProvider {
    shared: Arc<Shared>,
    client: HttpsClient,
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("name", &self.shared.name)
            .field("authority", &self.shared.authority)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// OpenAI: `https://api.openai.com/v1`, a key required, `max_completion_tokens`.
    pub fn builder() -> OpenAiBuilder {
        OpenAiBuilder {
            name: "openai".to_owned(),
            base_url: OPENAI_BASE_URL.to_owned(),
            api_key: None,
            key_required: true,
            max_tokens: MaxTokensField::MaxCompletionTokens,
            conn: Connection::default(),
        }
    }

    /// A self-hosted OpenAI-compatible server at `base_url` (`http://localhost:8000/v1`):
    /// the key is optional, the cap is sent as `max_tokens`.
    pub fn self_hosted(base_url: impl Into<String>) -> OpenAiBuilder {
        OpenAiBuilder {
            name: "selfhosted".to_owned(),
            base_url: base_url.into(),
            key_required: false,
            max_tokens: MaxTokensField::MaxTokens,
            ..Self::builder()
        }
    }

    fn upstream_request(&self, req: &MessagesRequest) -> Result<Request<Full<Bytes>>, AiError> {
        let s = &self.shared;
        let uri = Uri::builder()
            .scheme(s.scheme.clone())
            .authority(s.authority.clone())
            .path_and_query(format!("{}/chat/completions", s.prefix))
            .build()
            .map_err(|_| AiError::api("failed to build the upstream uri"))?;
        let body = serde_json::to_vec(&ai_core::openai::to_chat_request(req, s.max_tokens))
            .map_err(|_| AiError::api("failed to encode the upstream request"))?;
        let mut up = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| AiError::api("failed to build the upstream request"))?;
        let h = up.headers_mut();
        if let Some(a) = &s.auth {
            h.insert(header::AUTHORIZATION, a.clone());
        }
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
            HeaderValue::from_static(if req.is_stream() {
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
        let up = self.upstream_request(req.body())?;
        let resp = call.send(&self.client, up).await?;
        if let Some(t) = &timings {
            t.mark_first_byte();
        }
        let (parts, body) = resp.into_parts();
        let request_id = header_str(&parts.headers, "x-request-id").map(str::to_owned);
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
        let is_sse = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = if is_sse {
            AiBody::from_events(FramedEvents::new(
                body,
                OpenAiChunks::new(),
                s.idle_timeout,
                timings,
            ))
        } else {
            let bytes = read_limited(body, s.max_body, s.idle_timeout).await?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
                AiError::new(
                    ErrorKind::UpstreamUnavailable,
                    "upstream returned invalid json",
                )
            })?;
            let message = AiBody::from(from_chat_completion(&v)?);
            if req.body().is_stream() {
                message.into_stream()
            } else {
                message
            }
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

provider_service!(OpenAiProvider);

/// OpenAI's server-sent chunks decoded into canonical events.
pub(crate) struct OpenAiChunks {
    parser: SseParser,
    decoder: ChunkDecoder,
    scratch: Vec<StreamEvent>,
}

impl OpenAiChunks {
    pub(crate) fn new() -> Self {
        OpenAiChunks {
            parser: SseParser::new(),
            decoder: ChunkDecoder::new(),
            scratch: Vec::new(),
        }
    }
}

impl FrameDecoder for OpenAiChunks {
    fn feed(&mut self, chunk: &[u8], out: &mut Queue) -> bool {
        self.parser.feed(chunk);
        loop {
            match self.parser.next_event() {
                None => return false,
                Some(Err(_)) => {
                    out.push_back(Err(AiError::new(
                        ErrorKind::UpstreamUnavailable,
                        "upstream event stream is invalid",
                    )));
                    return true;
                }
                Some(Ok(ev)) => {
                    let r = self.decoder.chunk(&ev.data, &mut self.scratch);
                    out.extend(self.scratch.drain(..).map(Ok));
                    if let Err(e) = r {
                        out.push_back(Err(e));
                        return true;
                    }
                    if self.decoder.is_done() {
                        return true;
                    }
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Queue) -> bool {
        if !self.decoder.saw_finish() {
            return false;
        }
        // The answer is whole (a server that never sends `[DONE]`).
        self.decoder.finish(&mut self.scratch);
        out.extend(self.scratch.drain(..).map(Ok));
        true
    }
}
