//! BedrockProvider against a local mock of the Bedrock runtime that checks every request's
//! SigV4 signature (recomputed with `aws-sigv4` from the request it received) and replays
//! the recorded Bedrock answers: event-stream bodies, whole messages and errors.

use ai_core::{AiBody, AiError, CallReport, ErrorKind, MessagesRequest, Served};
use ai_provider::BedrockProvider;
use ai_provider::bedrock::{EventStreamDecoder, sign_request};
use aws_credential_types::Credentials;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower::ServiceExt;

const REGION: &str = "us-east-1";
const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/bedrock")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What the mock saw of each request: its path, headers and JSON body.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: http::HeaderMap,
    body: Value,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// `20240102T030405Z` as a time.
fn amz_date(s: &str) -> Option<SystemTime> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Recomputes the request's signature with the mock's copy of the key, from the headers
/// its `authorization` says were signed, and compares.
fn signature_ok(parts: &http::request::Parts, body: &[u8]) -> bool {
    let Some(auth) = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(time) = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(amz_date)
    else {
        return false;
    };
    let Some(signed) = auth
        .split(", ")
        .find_map(|p| p.strip_prefix("SignedHeaders="))
    else {
        return false;
    };
    let host = parts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let mut again = http::Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://{host}{}", parts.uri.path()))
        .body(())
        .expect("request");
    for name in signed.split(';') {
        if matches!(name, "host" | "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        if let Some(v) = parts.headers.get(name) {
            again.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                v.clone(),
            );
        }
    }
    let token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let creds = Credentials::new(KEY_ID, SECRET, token, None, "mock");
    if sign_request(&mut again, body, &creds, REGION, time).is_err() {
        return false;
    }
    again.headers().get("authorization") == parts.headers.get("authorization")
}

/// A frame as Bedrock sends them.
fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut m = Message::new(Bytes::copy_from_slice(payload));
    for (k, v) in headers {
        m = m.add_header(Header::new(
            (*k).to_owned(),
            HeaderValue::String((*v).to_owned().into()),
        ));
    }
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&m, &mut out).expect("frame");
    out
}

/// The offsets where the frames of a recorded body start.
fn frame_starts(raw: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut out = Vec::new();
    while at + 4 <= raw.len() {
        out.push(at);
        let len = u32::from_be_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        at += len as usize;
    }
    out
}

fn reply(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from(body))).expect("response")
}

/// The recorded status and headers of `name.headers.json`, minus the framing ones.
fn recorded(name: &str, body: Vec<u8>) -> http::Response<Full<Bytes>> {
    let v: Value = serde_json::from_slice(&fixture(&format!("{name}.headers.json"))).expect("json");
    let mut r = http::Response::builder().status(v["status"].as_u64().expect("status") as u16);
    for (k, val) in v["headers"].as_object().expect("headers") {
        let k = k.to_ascii_lowercase();
        if !matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "date"
        ) {
            r = r.header(k, val.as_str().expect("value"));
        }
    }
    r.body(Full::new(Bytes::from(body))).expect("response")
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    log: Log,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    log.lock().expect("lock").push(Seen {
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if !signature_ok(&parts, &body) {
        return reply(
            403,
            &[(
                "x-amzn-errortype",
                "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/",
            )],
            br#"{"message":"The request signature we calculated does not match the signature you provided."}"#.to_vec(),
        );
    }
    let path = parts.uri.path();
    let (model, action) = path
        .strip_prefix("/model/")
        .and_then(|p| p.rsplit_once('/'))
        .unwrap_or(("", ""));
    let es = "application/vnd.amazon.eventstream";
    match (model, action) {
        ("text", "invoke-with-response-stream") => {
            recorded("stream_text", fixture("stream_text.eventstream"))
        }
        ("nopad", "invoke-with-response-stream") => reply(
            200,
            &[("content-type", es)],
            fixture("stream_text_no_padding.eventstream"),
        ),
        ("tools", "invoke-with-response-stream") => {
            recorded("stream_tool_use", fixture("stream_tool_use.eventstream"))
        }
        ("tool", "invoke-with-response-stream") => reply(
            200,
            &[("content-type", es)],
            fixture("stream_tool_use_single.eventstream"),
        ),
        ("text", "invoke") => recorded("invoke_text", fixture("invoke_text.json")),
        ("cache", "invoke") => recorded("invoke_cache_read", fixture("invoke_cache_read.json")),
        ("tool", "invoke") => recorded("invoke_tool_use", fixture("invoke_tool_use.json")),
        ("throttle", _) => recorded("error_throttling_429", fixture("error_throttling_429.json")),
        ("invalid", _) => recorded("error_validation_400", fixture("error_validation_400.json")),
        ("expired", _) => recorded(
            "error_expired_token_403",
            fixture("error_expired_token_403.json"),
        ),
        ("midstream", _) | ("cut", _) => {
            // The first five recorded frames, then a throttling exception frame (as the
            // event-stream protocol defines it: no recording of one exists), or nothing.
            let raw = fixture("stream_text.eventstream");
            let starts = frame_starts(&raw);
            let mut body = raw[..starts[5]].to_vec();
            if model == "midstream" {
                body.extend(frame(
                    &[
                        (":message-type", "exception"),
                        (":exception-type", "throttlingException"),
                        (":content-type", "application/json"),
                    ],
                    br#"{"message":"Too many requests, please wait before trying again."}"#,
                ));
            }
            reply(200, &[("content-type", es)], body)
        }
        _ => reply(404, &[], b"{}".to_vec()),
    }
}

async fn mock() -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let l = l.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let l = l.clone();
                    async move { Ok::<_, Infallible>(answer(req, l).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, log)
}

fn bedrock(addr: SocketAddr, secret: &str, token: Option<&str>) -> BedrockProvider {
    BedrockProvider::builder()
        .region(REGION)
        .endpoint(format!("http://{addr}"))
        .credentials(Credentials::new(
            KEY_ID,
            secret,
            token.map(str::to_owned),
            None,
            "test",
        ))
        .model("claude-tool", "tool")
        .build()
        .expect("provider")
}

fn request(model: &str, stream: bool) -> http::Request<MessagesRequest> {
    let mut r = http::Request::new(
        serde_json::from_value(json!({
            "model": model, "max_tokens": 200, "stream": stream,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
        }))
        .expect("request"),
    );
    r.headers_mut().insert(
        "anthropic-beta",
        http::HeaderValue::from_static("token-efficient-tools-2025-02-19"),
    );
    r
}

async fn events(p: &BedrockProvider, model: &str) -> (Vec<Value>, Option<AiError>, Served) {
    let resp = p
        .clone()
        .oneshot(request(model, true))
        .await
        .expect("response");
    let served = resp.extensions().get::<Served>().cloned().expect("served");
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
    (out, err, served)
}

/// The Anthropic events inside a recorded body, found without the event-stream crate:
/// every `{"bytes":"..."}` payload, base64-decoded.
fn recorded_events(raw: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(raw);
    text.split(r#"{"bytes":""#)
        .skip(1)
        .map(|rest| {
            let b64 = &rest[..rest.find('"').expect("end quote")];
            let json = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            serde_json::from_slice(&json).expect("event json")
        })
        .collect()
}

fn text_of(ev: &[Value]) -> String {
    ev.iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect()
}

/// Each tool call's name and its assembled input.
fn tools_of(ev: &[Value]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in ev {
        if e["type"] == "content_block_start" && e["content_block"]["type"] == "tool_use" {
            let name = e["content_block"]["name"]
                .as_str()
                .expect("name")
                .to_owned();
            out.push((name, String::new()));
        }
        if let Some(p) = e["delta"]["partial_json"].as_str() {
            out.last_mut().expect("a tool block").1.push_str(p);
        }
    }
    out.into_iter()
        .map(|(n, j)| (n, serde_json::from_str(&j).expect("input json")))
        .collect()
}

fn types_of(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_recorded_text_stream_becomes_the_same_canonical_events() {
    let (addr, log) = mock().await;
    let p = bedrock(addr, SECRET, None);
    for (model, file) in [
        ("text", "stream_text.eventstream"),
        ("nopad", "stream_text_no_padding.eventstream"),
    ] {
        let (ev, err, served) = events(&p, model).await;
        assert!(err.is_none(), "{model}: {err:?}");
        let want = recorded_events(&fixture(file));
        assert_eq!(types_of(&ev), types_of(&want), "{model}");
        assert_eq!(text_of(&ev), text_of(&want), "{model}");
        assert!(!text_of(&ev).is_empty());
        let last_delta = ev
            .iter()
            .rfind(|e| e["type"] == "message_delta")
            .expect("delta");
        let want_delta = want
            .iter()
            .rfind(|e| e["type"] == "message_delta")
            .expect("delta");
        assert_eq!(
            last_delta["delta"]["stop_reason"],
            want_delta["delta"]["stop_reason"]
        );
        assert_eq!(
            last_delta["usage"]["output_tokens"],
            want_delta["usage"]["output_tokens"]
        );
        assert_eq!(
            ev[0]["message"]["usage"]["input_tokens"],
            want[0]["message"]["usage"]["input_tokens"]
        );
        assert_eq!(&*served.provider, "bedrock");
        if model == "text" {
            assert_eq!(
                served.request_id.as_deref(),
                Some("34a8c7a8-854e-4255-91d2-1d9840e60626")
            );
        }
    }
    // The request as Bedrock takes it: the model in the path, no model or stream in the
    // body, Bedrock's anthropic_version, the beta header as anthropic_beta, signed.
    let seen = log.lock().expect("lock")[0].clone();
    assert_eq!(seen.path, "/model/text/invoke-with-response-stream");
    assert!(seen.body.get("model").is_none() && seen.body.get("stream").is_none());
    assert_eq!(seen.body["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(
        seen.body["anthropic_beta"],
        json!(["token-efficient-tools-2025-02-19"])
    );
    assert_eq!(seen.body["system"], "Be brief.");
    assert_eq!(seen.body["max_tokens"], 200);
    let auth = seen.headers["authorization"].to_str().expect("ascii");
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/"))
            && auth.contains("/us-east-1/bedrock/aws4_request"),
        "{auth}"
    );
    assert!(seen.headers.contains_key("x-amz-date"));
    assert!(!seen.headers.contains_key("x-api-key"));
}

#[tokio::test]
async fn tool_call_streams_keep_their_split_arguments() {
    let (addr, log) = mock().await;
    let p = bedrock(addr, SECRET, None);
    // Two parallel calls, each starting with an empty input_json_delta.
    let (ev, err, _) = events(&p, "tools").await;
    assert!(err.is_none(), "{err:?}");
    let want = recorded_events(&fixture("stream_tool_use.eventstream"));
    let tools = tools_of(&ev);
    assert_eq!(tools, tools_of(&want));
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0].0, "get_current_weather");
    assert_eq!(types_of(&ev), types_of(&want));
    let stop = ev
        .iter()
        .rfind(|e| e["type"] == "message_delta")
        .expect("delta");
    assert_eq!(stop["delta"]["stop_reason"], "tool_use");
    // One call split over eight deltas, through the model map.
    let (ev, err, served) = events(&p, "claude-tool").await;
    assert!(err.is_none(), "{err:?}");
    let tools = tools_of(&ev);
    assert_eq!(
        tools,
        vec![(
            "get_weather".to_owned(),
            json!({"location": "San Francisco, CA", "unit": "fahrenheit"})
        )]
    );
    assert_eq!(&*served.model, "claude-tool");
    let paths: Vec<String> = log
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(paths[1], "/model/tool/invoke-with-response-stream");
}

#[tokio::test]
async fn whole_answers_map_and_keep_cache_usage() {
    let (addr, log) = mock().await;
    let p = bedrock(addr, SECRET, Some("session-token-xyz"));
    let resp = p.clone().oneshot(request("text", false)).await.expect("ok");
    let AiBody::Message(m) = resp.into_body() else {
        panic!("a message")
    };
    let want: Value = serde_json::from_slice(&fixture("invoke_text.json")).expect("json");
    let got = serde_json::to_value(&m).expect("json");
    assert_eq!(got["content"], want["content"]);
    assert_eq!(got["usage"], want["usage"]);
    assert_eq!(got["id"], want["id"]);
    // A session token is sent and signed.
    let seen = log.lock().expect("lock")[0].clone();
    assert_eq!(seen.path, "/model/text/invoke");
    assert_eq!(seen.headers["x-amz-security-token"], "session-token-xyz");
    let resp = p
        .clone()
        .oneshot(request("cache", false))
        .await
        .expect("ok");
    let AiBody::Message(m) = resp.into_body() else {
        panic!("a message")
    };
    assert_eq!(m.usage.cache_read_input_tokens, Some(18131));
    // A whole tool call.
    let resp = p
        .clone()
        .oneshot(request("claude-tool", false))
        .await
        .expect("ok");
    let AiBody::Message(m) = resp.into_body() else {
        panic!("a message")
    };
    let v = serde_json::to_value(&m).expect("json");
    assert_eq!(v["stop_reason"], "tool_use");
    assert!(
        v["content"]
            .as_array()
            .expect("content")
            .iter()
            .any(|b| b["type"] == "tool_use")
    );
}

#[tokio::test]
async fn throttling_and_errors_map_to_ai_errors() {
    let (addr, _) = mock().await;
    let p = bedrock(addr, SECRET, None);
    let report = CallReport::default();
    let mut req = request("throttle", true);
    req.extensions_mut().insert(report.clone());
    let e = p.clone().oneshot(req).await.expect_err("429");
    assert_eq!(e.kind(), ErrorKind::RateLimit);
    assert_eq!(e.status(), 429);
    assert_eq!(
        e.message(),
        "Too many requests, please wait before trying again."
    );
    assert_eq!(e.request_id(), Some("a08a73eb-05c5-416f-b6f4-51f9cab3f35f"));
    assert_eq!(report.snapshot().attempts[0].status, Some(429));
    let e = p
        .clone()
        .oneshot(request("invalid", false))
        .await
        .expect_err("400");
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert_eq!(e.message(), "The provided model identifier is invalid.");
    // The gateway's own token expired: a 502 that does not blame the caller.
    let e = p
        .clone()
        .oneshot(request("expired", false))
        .await
        .expect_err("403");
    assert_eq!(e.status(), 502);
    assert!(
        e.message().contains("gateway's own credentials"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("security token"));
}

#[tokio::test]
async fn the_mock_rejects_a_wrong_signature() {
    let (addr, log) = mock().await;
    let p = bedrock(addr, "not-the-secret", None);
    let e = p
        .clone()
        .oneshot(request("text", false))
        .await
        .expect_err("refused");
    assert_eq!(e.status(), 502);
    assert!(e.message().contains("gateway's own credentials"));
    // A signature made for another body does not pass either.
    let creds = Credentials::new(KEY_ID, SECRET, None, None, "t");
    let mut req = http::Request::post(format!("http://{addr}/model/text/invoke"))
        .header("content-type", "application/json")
        .body(())
        .expect("req");
    sign_request(&mut req, b"{\"a\":1}", &creds, REGION, SystemTime::now()).expect("sign");
    let (parts, ()) = req.into_parts();
    assert!(signature_ok(&parts, b"{\"a\":1}"));
    assert!(!signature_ok(&parts, b"{\"a\":2}"));
    assert_eq!(log.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn an_exception_mid_stream_ends_it_with_that_error() {
    let (addr, _) = mock().await;
    let p = bedrock(addr, SECRET, None);
    let (ev, err, _) = events(&p, "midstream").await;
    assert_eq!(ev.len(), 5);
    assert!(!text_of(&ev).is_empty());
    let err = err.expect("an error");
    assert_eq!(err.kind(), ErrorKind::RateLimit);
    assert_eq!(
        err.message(),
        "Too many requests, please wait before trying again."
    );
    let (ev, err, _) = events(&p, "cut").await;
    assert_eq!(ev.len(), 5);
    assert_eq!(
        err.expect("an error").kind(),
        ErrorKind::UpstreamUnavailable
    );
}

#[test]
fn the_decoder_takes_any_chunking_and_rejects_a_corrupt_frame() {
    let raw = fixture("stream_tool_use_single.eventstream");
    let whole = {
        let mut d = EventStreamDecoder::new();
        let mut q = std::collections::VecDeque::new();
        assert!(d.decode(&raw, &mut q), "ends at message_stop");
        q.into_iter().map(|r| r.expect("event")).collect::<Vec<_>>()
    };
    assert_eq!(whole.len(), recorded_events(&raw).len());
    for size in [1, 7, 64, 1000] {
        let mut d = EventStreamDecoder::new();
        let mut q = std::collections::VecDeque::new();
        for c in raw.chunks(size) {
            d.decode(c, &mut q);
        }
        let got: Vec<_> = q.into_iter().map(|r| r.expect("event")).collect();
        assert_eq!(got, whole, "chunks of {size}");
    }
    // One flipped payload byte fails the message CRC.
    let mut bad = raw.clone();
    bad[40] ^= 0x55;
    let mut d = EventStreamDecoder::new();
    let mut q = std::collections::VecDeque::new();
    assert!(d.decode(&bad, &mut q));
    let e = q.pop_back().expect("item").expect_err("invalid");
    assert_eq!(e.kind(), ErrorKind::UpstreamUnavailable);
}
