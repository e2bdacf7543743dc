//! OpenAiProvider against a local mock that replays the recorded OpenAI, vLLM and Ollama
//! answers: the request it sends, and the canonical events and messages it makes of the
//! answers.

use ai_core::{AiBody, AiError, ErrorKind, MessagesRequest};
use ai_provider::OpenAiProvider;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

fn fixture(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What the mock saw: the request head and the JSON body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A mock upstream answering by the request's model: `text`, `tool`, `message`, `429`,
/// `401`, `vllm`, `ollama`, `cut` (a stream that stops before it finishes).
async fn mock() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                let (head, body) = loop {
                    let n = s.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break (head, buf[end + 4..end + 4 + len].to_vec());
                        }
                    }
                };
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().expect("lock").push((head, v.clone()));
                let (status, ctype, extra, payload): (u16, &str, &str, Vec<u8>) =
                    match v["model"].as_str().unwrap_or_default() {
                        "text" => (200, "text/event-stream", "", fixture("openai/stream_text.sse")),
                        "tool" => (200, "text/event-stream", "", fixture("openai/stream_tool_use.sse")),
                        "message" => (200, "application/json", "", fixture("openai/message_basic.json")),
                        "429" => (
                            429,
                            "application/json",
                            "retry-after: 1\r\nx-request-id: req_replay_openai_429\r\n",
                            fixture("openai/errors/error_429.json"),
                        ),
                        "401" => (
                            401,
                            "application/json",
                            "",
                            br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#.to_vec(),
                        ),
                        "vllm" => (200, "text/event-stream", "", fixture("selfhosted/vllm_stream_no_usage.sse")),
                        "ollama" => (200, "text/event-stream", "", fixture("selfhosted/ollama_stream_text.sse")),
                        "cut" => {
                            let full = fixture("openai/stream_text.sse");
                            (200, "text/event-stream", "", full[..full.len() / 3].to_vec())
                        }
                        _ => (404, "application/json", "", b"{}".to_vec()),
                    };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
                    payload.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&payload).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn request(model: &str, stream: bool) -> http::Request<MessagesRequest> {
    http::Request::new(
        serde_json::from_value(json!({
            "model": model, "max_tokens": 200, "stream": stream,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
        }))
        .expect("request"),
    )
}

async fn events(p: &OpenAiProvider, model: &str) -> (Vec<Value>, Option<AiError>) {
    let resp = p
        .clone()
        .oneshot(request(model, true))
        .await
        .expect("response");
    let AiBody::Events(mut s) = resp.into_body() else {
        panic!("a stream")
    };
    let mut out = Vec::new();
    let mut err = None;
    while let Some(ev) = s.next().await {
        match ev {
            Ok(e) => out.push(serde_json::to_value(e).expect("json")),
            Err(e) => err = Some(e),
        }
    }
    (out, err)
}

fn openai(addr: SocketAddr) -> OpenAiProvider {
    OpenAiProvider::builder()
        .base_url(format!("http://{addr}/v1"))
        .api_key("sk-test-openai")
        .build()
        .expect("provider")
}

fn text_of(ev: &[Value]) -> String {
    ev.iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect()
}

/// The concatenated `delta.content` of a recorded stream.
fn recorded_text(raw: &[u8]) -> String {
    let mut p = ai_core::sse::SseParser::new();
    p.feed(raw);
    let mut out = String::new();
    while let Some(e) = p.next_event() {
        if let Ok(v) = serde_json::from_str::<Value>(&e.expect("sse").data) {
            out.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    out
}

#[tokio::test]
async fn a_text_stream_maps_to_canonical_events_and_the_request_is_mapped() {
    let (addr, seen) = mock().await;
    let (ev, err) = events(&openai(addr), "text").await;
    assert!(err.is_none());
    let kinds: Vec<&str> = ev
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds[..2], ["message_start", "content_block_start"]);
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(
        text_of(&ev),
        recorded_text(&fixture("openai/stream_text.sse"))
    );
    let md = &ev[ev.len() - 2];
    assert_eq!(md["delta"]["stop_reason"], "end_turn");
    assert!(md["usage"]["input_tokens"].as_u64().expect("in") > 0);
    let (head, body) = seen.lock().expect("lock")[0].clone();
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer sk-test-openai")
    );
    assert_eq!(body["max_completion_tokens"], 200);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
}

#[tokio::test]
async fn a_tool_call_stream_with_split_arguments_becomes_a_tool_use_block() {
    let (addr, _) = mock().await;
    let (ev, err) = events(&openai(addr), "tool").await;
    assert!(err.is_none());
    let start = ev
        .iter()
        .find(|e| e["type"] == "content_block_start")
        .expect("start");
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "get_weather");
    let args: String = ev
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert!(
        ev.iter()
            .filter(|e| e["delta"]["type"] == "input_json_delta")
            .count()
            > 2
    );
    let args: Value = serde_json::from_str(&args).expect("json arguments");
    assert!(args["city"].is_string());
    let md = &ev[ev.len() - 2];
    assert_eq!(md["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        md["usage"],
        json!({"input_tokens": 48, "output_tokens": 19})
    );
}

#[tokio::test]
async fn a_whole_answer_maps_and_a_stream_request_gets_events_from_it() {
    let (addr, _) = mock().await;
    let p = openai(addr);
    let resp = p
        .clone()
        .oneshot(request("message", false))
        .await
        .expect("response");
    let AiBody::Message(m) = resp.into_body() else {
        panic!("a message")
    };
    assert_eq!(m.usage.output_tokens, Some(37));
    assert_eq!(m.stop_reason.as_deref(), Some("end_turn"));
    let (ev, err) = events(&p, "message").await;
    assert!(err.is_none());
    assert!(text_of(&ev).starts_with("I'm unable to provide real-time weather"));
}

#[tokio::test]
async fn upstream_errors_keep_status_type_and_retry_after() {
    let (addr, _) = mock().await;
    let p = openai(addr);
    let e = p
        .clone()
        .oneshot(request("429", false))
        .await
        .expect_err("429");
    assert_eq!(e.kind(), ErrorKind::RateLimit);
    assert_eq!(e.status(), 429);
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(1)));
    assert_eq!(e.request_id(), Some("req_replay_openai_429"));
    assert!(e.message().contains("Rate limit"), "{}", e.message());
    // The vendor refusing the gateway's key is not the caller's fault.
    let e = p.oneshot(request("401", false)).await.expect_err("401");
    assert_eq!(e.status(), 502);
    assert!(!e.message().contains("Incorrect API key"));
}

#[tokio::test]
async fn self_hosted_streams_without_usage_are_estimated() {
    let (addr, seen) = mock().await;
    let p = OpenAiProvider::self_hosted(format!("http://{addr}/v1"))
        .build()
        .expect("provider");
    for name in ["vllm", "ollama"] {
        let (ev, err) = events(&p, name).await;
        assert!(err.is_none(), "{name}");
        let text = text_of(&ev);
        assert!(!text.is_empty());
        let md = &ev[ev.len() - 2];
        assert_eq!(
            md["usage"]["output_tokens"],
            text.len().div_ceil(4) as u64,
            "{name}"
        );
    }
    let (head, body) = seen.lock().expect("lock")[0].clone();
    assert!(
        !head.to_ascii_lowercase().contains("authorization"),
        "{head}"
    );
    assert_eq!(body["max_tokens"], 200);
    assert!(body.get("max_completion_tokens").is_none());
}

#[tokio::test]
async fn a_stream_cut_before_it_finishes_ends_with_an_error() {
    let (addr, _) = mock().await;
    let (ev, err) = events(&openai(addr), "cut").await;
    let err = err.expect("an error");
    assert_eq!(err.kind(), ErrorKind::UpstreamUnavailable);
    assert!(!ev.iter().any(|e| e["type"] == "message_stop"));
}
