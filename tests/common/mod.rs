//! Shared test setup: a mock Anthropic upstream on 127.0.0.1:0 replaying the recorded
//! fixtures, the real gateway in front of it, and a small real HTTP client.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

use ai_gateway::core::{AiBody, AiError, Completion, CompletionFuture, MessagesRequest};
use ai_gateway::provider::AnthropicProvider;
use ai_gateway::server::{ServerConfig, serve};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tower::ServiceExt;

pub fn fixture_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(fixture_path(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

pub fn fixture_json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// Splits a recorded SSE body into its events (each with its blank line).
pub fn sse_frames(raw: &[u8]) -> Vec<Bytes> {
    let text = String::from_utf8(raw.to_vec()).expect("utf8 fixture");
    text.split_inclusive("\n\n")
        .map(|s| Bytes::from(s.to_owned()))
        .collect()
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The mock upstream. It picks its answer from the request's `model`:
///
/// - `replay/<name>`: `anthropic/<name>.sse` when `stream` is set, else `anthropic/<name>.json`;
/// - `error/<code>`: `anthropic/errors/error_<code>.json` with its recorded status and headers;
/// - `pause/<name>`: the first event of `<name>.sse`, then waits for [`MockUpstream::release`];
/// - `stall/first-byte`: never answers; `stall/mid-stream`: two events of `stream_text`, then silence.
/// - `cut/clean`: `stream_text` up to its second text delta, then the body ends cleanly;
///   `cut/mid-event`: the same plus half of the next event, then the body ends.
/// - `gzip/<name>`, `deflate/<name>`, `br/<name>`, `zstd/<name>`: the replay, compressed with
///   `content-encoding` set; a stream is compressed whole and sent in 40-byte pieces (so
///   events straddle compressed chunks).
/// - `bomb/gzip`: a gzip body that decodes to 8 MiB (a message over a small `max_body`).
/// - `json/<name>`: `<name>.json` as `application/json`, even to a stream request.
/// - `secret/<n>`: an answer that leaks [`leaked_key`] split over `n` text deltas.
/// - `echo/tokens`: answers with every redaction token (`<EMAIL_1>`) the request carried:
///   a text block and a `tool_use` block whose input holds them; streamed, each token is
///   split over several deltas (what a model does with tokens it repeats).
///
/// On `/v1/chat/completions` it is an OpenAI-compatible upstream: `replay/<name>` answers
/// `openai/<name>.sse` (or `.json`), `selfhosted/<name>` the vLLM and Ollama recordings.
///
/// `count_tokens` and `models` answer from `count_tokens.json` and a small list.
/// Successful answers carry the headers of `default_response_headers.json`.
#[derive(Clone)]
pub struct MockUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Notify>,
}

impl MockUpstream {
    pub async fn start() -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mock = MockUpstream {
            addr,
            seen: Arc::default(),
            gate: Arc::new(Notify::new()),
        };
        let m = mock.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let _ = stream.set_nodelay(true);
                let m = m.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let m = m.clone();
                        async move { Ok::<_, Infallible>(m.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        mock
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw a request")
    }

    /// Lets a `pause/...` stream continue.
    pub fn release(&self) {
        self.gate.notify_one();
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        self.seen.lock().expect("lock").push(Seen {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        let path = parts.uri.path();
        if path.ends_with("/v1/messages/count_tokens") {
            return json(StatusCode::OK, fixture("anthropic/count_tokens.json"), true);
        }
        if path.ends_with("/v1/models") {
            let list = br#"{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"}],"has_more":false,"first_id":"claude-sonnet-4-5-20250929","last_id":"claude-sonnet-4-5-20250929"}"#;
            return json(StatusCode::OK, list.to_vec(), true);
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let model = v["model"].as_str().unwrap_or_default().to_owned();
        let stream = v["stream"].as_bool().unwrap_or(false);
        if path.ends_with("/v1/chat/completions") {
            // An OpenAI-compatible upstream: `replay/<name>` answers `openai/<name>.sse`
            // (or `.json`), `selfhosted/<name>` answers `selfhosted/<name>.sse`.
            let (kind, name) = model.split_once('/').unwrap_or(("replay", "message_basic"));
            let dir = if kind == "selfhosted" {
                "selfhosted"
            } else {
                "openai"
            };
            return if stream {
                sse(sse_frames(&fixture(&format!("{dir}/{name}.sse"))), None)
            } else {
                json(
                    StatusCode::OK,
                    fixture(&format!("{dir}/{name}.json")),
                    false,
                )
            };
        }
        let (kind, name) = model.split_once('/').unwrap_or(("replay", "message_basic"));
        match kind {
            "error" => {
                let meta = fixture_json(&format!("anthropic/errors/error_{name}.headers.json"));
                let status = StatusCode::from_u16(meta["status"].as_u64().unwrap_or(500) as u16)
                    .expect("status");
                let mut resp = json(
                    status,
                    fixture(&format!("anthropic/errors/error_{name}.json")),
                    false,
                );
                for (k, val) in meta["headers"].as_object().expect("headers") {
                    if let Ok(val) = HeaderValue::from_str(val.as_str().unwrap_or_default()) {
                        resp.headers_mut().insert(
                            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                            val,
                        );
                    }
                }
                resp
            }
            "replay" if stream => sse(sse_frames(&fixture(&format!("anthropic/{name}.sse"))), None),
            "replay" => json(
                StatusCode::OK,
                fixture(&format!("anthropic/{name}.json")),
                true,
            ),
            "pause" => {
                let frames = sse_frames(&fixture(&format!("anthropic/{name}.sse")));
                sse(frames, Some((1, self.gate.clone())))
            }
            "cut" => {
                let mut frames = sse_frames(&fixture("anthropic/stream_text.sse"));
                frames.truncate(5);
                if name == "mid-event" {
                    let next = sse_frames(&fixture("anthropic/stream_text.sse"))[5].clone();
                    frames.push(next.slice(..next.len() / 2));
                }
                sse(frames, None)
            }
            "gzip" | "deflate" | "br" | "zstd" => {
                let (file, ctype) = if stream {
                    (format!("anthropic/{name}.sse"), "text/event-stream")
                } else {
                    (format!("anthropic/{name}.json"), "application/json")
                };
                let packed = Bytes::from(compress(kind, &fixture(&file)));
                let pieces: Vec<Bytes> = (0..packed.len())
                    .step_by(40)
                    .map(|i| packed.slice(i..(i + 40).min(packed.len())))
                    .collect();
                let mut resp = sse(pieces, None);
                resp.headers_mut()
                    .insert("content-type", HeaderValue::from_static(ctype));
                resp.headers_mut().insert(
                    "content-encoding",
                    HeaderValue::from_str(kind).expect("value"),
                );
                resp
            }
            "bomb" => {
                let mut body = b"{\"pad\":\"".to_vec();
                body.resize(8 << 20, b' ');
                body.extend_from_slice(b"\"}");
                let mut resp = json(StatusCode::OK, compress("gzip", &body), true);
                resp.headers_mut()
                    .insert("content-encoding", HeaderValue::from_static("gzip"));
                resp
            }
            "json" => json(
                StatusCode::OK,
                fixture(&format!("anthropic/{name}.json")),
                true,
            ),
            "echo" => echo(&body, stream),
            "secret" => {
                let n = name.parse().unwrap_or(3);
                if stream {
                    sse(text_frames(&leaking_deltas(n)), None)
                } else {
                    let m = serde_json::json!({
                        "id": "msg_leak", "type": "message", "role": "assistant",
                        "model": "claude-sonnet-4-5-20250929",
                        "content": [{"type": "text", "text": leaking_deltas(n).concat()}],
                        "stop_reason": "end_turn", "stop_sequence": null,
                        "usage": {"input_tokens": 30, "output_tokens": 40},
                    });
                    json(StatusCode::OK, m.to_string().into_bytes(), true)
                }
            }
            "stall" if name == "first-byte" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                json(StatusCode::OK, Vec::new(), false)
            }
            "stall" => {
                let frames = sse_frames(&fixture("anthropic/stream_text.sse"));
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
                tokio::spawn(async move {
                    for f in frames.into_iter().take(2) {
                        let _ = tx.send(Ok(Frame::data(f))).await;
                    }
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(tx);
                });
                sse_body(rx)
            }
            _ => json(StatusCode::NOT_FOUND, b"{}".to_vec(), false),
        }
    }
}

/// `data` compressed with `encoding` (`gzip`, `deflate`, `br` or `zstd`).
/// The redaction tokens (`<EMAIL_1>`) in `text`, each once, in order.
pub fn tokens_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|c| *c == b'<') {
        let at = i + off;
        let end = b[at + 1..]
            .iter()
            .position(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'))
            .map(|p| at + 1 + p);
        if let Some(e) = end.filter(|e| b[*e] == b'>') {
            let t = &text[at..=e];
            let shaped = t[1..t.len() - 1].rsplit_once('_').is_some_and(|(l, n)| {
                !l.is_empty() && !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())
            });
            if shaped && !out.iter().any(|x| x == t) {
                out.push(t.to_owned());
            }
            i = e + 1;
        } else {
            i = at + 1;
        }
    }
    out
}

/// A credential ai-redact's detectors find (the shape of an Anthropic key).
pub fn leaked_key() -> String {
    format!("sk-ant-api03-{}AA", "Xk9".repeat(31))
}

/// The text before the key in [`leaking_deltas`].
pub const BEFORE_KEY: &str = "Sure. The deploy key is ";

/// An answer that leaks [`leaked_key`] split over `n` deltas, then goes on.
pub fn leaking_deltas(n: usize) -> Vec<String> {
    let key = leaked_key();
    let mut out = vec![BEFORE_KEY.to_owned()];
    out.extend((0..n).map(|i| key[i * key.len() / n..(i + 1) * key.len() / n].to_owned()));
    out.push(" and it rotates weekly.".to_owned());
    out.push(" Keep it in the vault, never in chat.".to_owned());
    out
}

/// One SSE frame.
pub fn frame(event: &str, data: serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// A whole streamed answer: one text block made of `deltas`.
pub fn text_frames(deltas: &[String]) -> Vec<Bytes> {
    let mut frames = vec![
        frame(
            "message_start",
            serde_json::json!({"type": "message_start", "message": {
            "id": "msg_leak", "type": "message", "role": "assistant", "content": [],
            "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 30, "output_tokens": 1}}}),
        ),
        frame(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for d in deltas {
        frames.push(frame(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta",
            "index": 0, "delta": {"type": "text_delta", "text": d}}),
        ));
    }
    frames.push(frame(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(frame("message_delta", serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 40}})));
    frames.push(frame(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    frames
}

fn echo(body: &[u8], stream: bool) -> Response<Body> {
    let tokens = tokens_in(&String::from_utf8_lossy(body));
    let text = format!("Noted: {}.", tokens.join(" and "));
    let input = serde_json::json!({ "to": tokens.join(", "), "note": "as asked" });
    if !stream {
        let m = serde_json::json!({
            "id": "msg_echo", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "text", "text": text},
                {"type": "tool_use", "id": "toolu_echo", "name": "send_mail", "input": input},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 40, "output_tokens": 20},
        });
        return json(StatusCode::OK, m.to_string().into_bytes(), true);
    }
    let mut frames = vec![
        frame(
            "message_start",
            serde_json::json!({"type": "message_start", "message": {
            "id": "msg_echo", "type": "message", "role": "assistant", "content": [],
            "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 40, "output_tokens": 1}}}),
        ),
        frame(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    // Three-byte pieces: every token is split over several deltas.
    let pieces = |s: &str| -> Vec<String> {
        let chars: Vec<char> = s.chars().collect();
        chars.chunks(3).map(|c| c.iter().collect()).collect()
    };
    for p in pieces(&text) {
        frames.push(frame(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta",
            "index": 0, "delta": {"type": "text_delta", "text": p}}),
        ));
    }
    frames.push(frame(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(frame("content_block_start", serde_json::json!({"type": "content_block_start", "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_echo", "name": "send_mail", "input": {}}})));
    for p in pieces(&input.to_string()) {
        frames.push(frame(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta",
            "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}}),
        ));
    }
    frames.push(frame(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 1}),
    ));
    frames.push(frame("message_delta", serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 20}})));
    frames.push(frame(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    sse(frames, None)
}

pub fn compress(encoding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        }
        "deflate" => {
            // HTTP's `deflate` is the zlib format.
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).expect("deflate");
            e.finish().expect("deflate")
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).expect("br");
            }
            out
        }
        "zstd" => zstd::encode_all(data, 3).expect("zstd"),
        other => panic!("no encoder for {other}"),
    }
}

fn default_headers(h: &mut HeaderMap) {
    let meta = fixture_json("anthropic/default_response_headers.json");
    for (k, v) in meta["headers"].as_object().expect("headers") {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v.as_str().unwrap_or_default()).expect("value"),
        );
    }
}

fn json(status: StatusCode, body: Vec<u8>, defaults: bool) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    if defaults {
        default_headers(resp.headers_mut());
    }
    resp
}

fn sse_body(rx: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>) -> Response<Body> {
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    default_headers(resp.headers_mut());
    resp
}

/// Streams `frames` one write each; with `pause = (n, gate)` waits on `gate` after `n` frames.
fn sse(frames: Vec<Bytes>, pause: Option<(usize, Arc<Notify>)>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
    tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            if let Some((n, gate)) = &pause {
                if i == *n {
                    gate.notified().await;
                }
            }
            if tx.send(Ok(Frame::data(f))).await.is_err() {
                return;
            }
        }
    });
    sse_body(rx)
}

#[derive(Clone, Debug)]
pub struct GatewayOpts {
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_limit: usize,
    pub body_timeout: Duration,
    pub header_read_timeout: Duration,
    pub write_timeout: Option<Duration>,
    pub max_body: usize,
    pub auth: Option<ai_gateway::auth::AuthLayer>,
    pub pseudonym: ai_gateway::auth::UserPseudonymLayer,
    pub audit: Option<ai_gateway::audit::AuditLayer>,
    pub metrics: Option<ai_gateway::server::MetricsEndpoint>,
    pub ratelimit: Option<ai_gateway::ratelimit::RateLimitLayer>,
    pub budget: Option<ai_gateway::budget::BudgetLayer>,
    pub redact: Option<ai_gateway::redact::RedactLayer>,
    pub inspect: Option<ai_gateway::inspect::InspectLayer>,
    pub admin_token: Option<&'static str>,
}

impl Default for GatewayOpts {
    fn default() -> Self {
        GatewayOpts {
            first_byte_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            body_limit: 32 * 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Some(Duration::from_secs(10)),
            max_body: 64 * 1024 * 1024,
            auth: None,
            pseudonym: ai_gateway::auth::UserPseudonymLayer::disabled(),
            audit: None,
            metrics: None,
            ratelimit: None,
            budget: None,
            redact: None,
            inspect: None,
            admin_token: None,
        }
    }
}

pub const VENDOR_KEY: &str = "sk-ant-vendor-key-for-tests";

/// Starts the real gateway (the same `serve` the example binary runs) in front of `upstream`.
pub async fn start_gateway(upstream: &str, opts: GatewayOpts) -> SocketAddr {
    serve_provider(provider(upstream, &opts), opts).await
}

fn provider(upstream: &str, opts: &GatewayOpts) -> AnthropicProvider {
    AnthropicProvider::builder()
        .api_key(VENDOR_KEY)
        .base_url(upstream)
        .first_byte_timeout(opts.first_byte_timeout)
        .idle_timeout(opts.idle_timeout)
        .max_body(opts.max_body)
        .build()
        .expect("provider")
}

/// What the completion hook reported, one entry per finished request.
#[derive(Clone, Default)]
pub struct Completions(Arc<Mutex<Vec<Completion>>>);

impl Completions {
    /// Waits (up to 5 s) for the `n`th completion (from 1) and returns it: the hook runs
    /// in the server's task, a moment after the client saw the last byte.
    pub async fn nth(&self, n: usize) -> Completion {
        for _ in 0..500 {
            if let Some(c) = self.0.lock().expect("lock").get(n - 1) {
                return c.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no completion #{n} was reported");
    }
}

/// Starts the real gateway in front of `upstream` with the provider wrapped in the
/// ai-core completion hook, so a test sees each response's outcome and usage.
pub async fn start_observed_gateway(
    upstream: &str,
    opts: GatewayOpts,
) -> (SocketAddr, Completions) {
    let provider = provider(upstream, &opts);
    let seen = Completions::default();
    let log = seen.clone();
    let svc = tower::service_fn(move |req: Request<MessagesRequest>| {
        let log = log.clone();
        CompletionFuture::new(provider.clone().oneshot(req), move |c| {
            log.0.lock().expect("lock").push(c)
        })
    });
    (serve_service(svc, opts).await, seen)
}

/// Starts the real gateway with a provider built by the test.
pub async fn serve_provider(provider: AnthropicProvider, opts: GatewayOpts) -> SocketAddr {
    serve_service(provider, opts).await
}

/// Starts the real gateway (the example binary's `serve`) in front of any typed service.
pub async fn serve_service<P>(provider: P, opts: GatewayOpts) -> SocketAddr
where
    P: tower::Service<Request<MessagesRequest>, Response = Response<AiBody>, Error = AiError>
        + Clone
        + Send
        + 'static,
    P::Future: Send + 'static,
{
    let config = ServerConfig {
        header_read_timeout: opts.header_read_timeout,
        write_timeout: opts.write_timeout,
        shutdown_timeout: Duration::from_secs(5),
        codec: ai_gateway::core::MessagesCodecLayer::new()
            .body_limit(opts.body_limit)
            .body_timeout(opts.body_timeout),
        auth: opts.auth,
        pseudonym: opts.pseudonym,
        audit: opts.audit,
        ratelimit: opts.ratelimit,
        budget: opts.budget,
        redact: opts.redact,
        inspect: opts.inspect,
        admin_token: opts.admin_token.map(Into::into),
        metrics: opts.metrics,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, provider, config, std::future::pending()));
    addr
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and reads the whole answer.
pub async fn send(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let resp = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .expect("gateway answered in time")
        .expect("request");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (parts.status, parts.headers, body)
}

/// A `POST {path}` with a JSON body, as an SDK sends it.
pub fn json_request(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
        .expect("request")
}

pub async fn post_json(
    addr: SocketAddr,
    body: serde_json::Value,
) -> (StatusCode, HeaderMap, Bytes) {
    send(json_request(addr, "/v1/messages", &body)).await
}

pub fn messages_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": "Hello"}],
    })
}

pub fn error_json(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("json error body: {}", String::from_utf8_lossy(body)));
    assert_eq!(v["type"], "error", "anthropic error envelope: {v}");
    (
        v["error"]["type"].as_str().expect("error.type").to_owned(),
        v["error"]["message"]
            .as_str()
            .expect("error.message")
            .to_owned(),
    )
}

/// Parses an SSE body into (event name, data JSON) pairs.
pub fn parse_sse(body: &[u8]) -> Vec<(String, serde_json::Value)> {
    let mut p = ai_gateway::core::sse::SseParser::new();
    p.feed(body);
    let mut out = vec![];
    while let Some(ev) = p.next_event() {
        let ev = ev.expect("valid sse");
        out.push((
            ev.event.unwrap_or_default(),
            serde_json::from_str(&ev.data).expect("json data"),
        ));
    }
    out
}

/// Raw upstream helpers: a hand-written HTTP/1.1 server, so a test can watch its socket.
pub mod raw {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Reads one request (head + content-length body).
    pub async fn read_request(s: &mut TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 65536];
        let mut req = Vec::new();
        loop {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before the request was complete");
            req.extend_from_slice(&buf[..n]);
            if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&req[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().expect("len"))
                    .unwrap_or(0);
                if req.len() >= end + 4 + len {
                    return req;
                }
            }
        }
    }

    /// Writes the head of a chunked `text/event-stream` response.
    pub async fn write_sse_head(s: &mut TcpStream) -> std::io::Result<()> {
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
    }

    /// Opens a connection to the gateway `gw` and sends a streamed Messages request on
    /// it (by hand, so the test holds the socket and reads it as it likes).
    pub async fn post_stream(gw: std::net::SocketAddr) -> TcpStream {
        let mut client = TcpStream::connect(gw).await.expect("connect");
        let body = serde_json::to_vec(&super::messages_body("anything", true)).expect("json");
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes()).await.expect("write");
        client.write_all(&body).await.expect("write");
        client
    }

    /// Writes one chunk.
    pub async fn write_chunk(s: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
        s.write_all(format!("{:x}\r\n", data.len()).as_bytes())
            .await?;
        s.write_all(data).await?;
        s.write_all(b"\r\n").await
    }
}

/// Gateway keys for tests: a pepper, and keys minted under it.
pub mod keys {
    use ai_gateway::auth::{AuthLayer, KeyHasher, KeyRecord, MemoryKeys, MintedKey};

    pub const PEPPER: &str = "pepper for the integration tests";

    /// Mints a key for `subject` in `tenant`, allowed `models` (empty: all).
    pub fn mint(subject: &str, tenant: &str, models: &[&str]) -> (String, KeyRecord) {
        let hasher = KeyHasher::new(PEPPER.as_bytes()).expect("pepper");
        let m = MintedKey::generate(&hasher).expect("mint");
        let record = serde_json::from_value(serde_json::json!({
            "id": m.id, "hash": m.hash, "subject": subject, "tenant": tenant, "models": models,
        }))
        .expect("record");
        (m.key, record)
    }

    /// An auth layer over these records.
    pub fn layer(records: Vec<KeyRecord>) -> AuthLayer {
        AuthLayer::keys(
            MemoryKeys::new(records).expect("store"),
            KeyHasher::new(PEPPER.as_bytes()).expect("pepper"),
        )
    }
}

/// A real audit log in a temporary directory.
#[allow(dead_code)]
pub mod audit {
    use ai_gateway::audit::record::AuditRecord;
    use ai_gateway::audit::{
        AuditLayer, AuditWriter, FileSink, FileSinkConfig, PublicKey, SigningKey, WriterConfig,
        list_segments,
    };
    use std::path::Path;
    use std::time::Duration;

    /// A layer writing to `dir` (fsync every batch) and the key that verifies it.
    pub fn layer(dir: &Path, cfg: WriterConfig) -> (AuditLayer, PublicKey) {
        let (key, _) = SigningKey::generate().expect("key");
        let public = key.public_key().clone();
        let sink = FileSink::open(FileSinkConfig::new(dir, key)).expect("open the log");
        let writer = AuditWriter::spawn(sink, cfg).expect("writer");
        (AuditLayer::new(writer), public)
    }

    /// Every record in the log.
    pub fn records(dir: &Path) -> Vec<AuditRecord> {
        let mut out = Vec::new();
        for (_, path) in list_segments(dir).expect("segments") {
            let text = std::fs::read_to_string(path).expect("read");
            for line in text.lines() {
                if line.contains("\"kind\":\"record\"") {
                    out.push(serde_json::from_str(line).expect("a record"));
                }
            }
        }
        out
    }

    /// The records of one request id.
    pub fn of(dir: &Path, id: &str) -> Vec<AuditRecord> {
        records(dir)
            .into_iter()
            .filter(|r| r.request_id.as_deref() == Some(id))
            .collect()
    }

    /// Waits (up to 5 s) for the record of `id` (a cancelled stream's record is written
    /// when the gateway notices the client left).
    pub async fn wait_for(dir: &Path, id: &str) -> AuditRecord {
        for _ in 0..500 {
            let mut r = of(dir, id);
            if !r.is_empty() {
                assert_eq!(r.len(), 1, "exactly one record for {id}");
                return r.remove(0);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no audit record for {id}");
    }
}
