//! The real gateway over real sockets, in front of a mock upstream replaying recorded
//! Anthropic responses.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn non_streaming_message_passes_through_unchanged() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let (status, headers, body) =
        post_json(gw, messages_body("replay/message_cache_usage", false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let got: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(got, fixture_json("anthropic/message_cache_usage.json"));
    assert_eq!(got["usage"]["cache_read_input_tokens"], 1111);
}

#[tokio::test]
async fn recorded_streams_replay_event_for_event() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    for name in [
        "stream_text",
        "stream_tool_use",
        "stream_tool_use_docs",
        "stream_thinking",
    ] {
        let (status, headers, body) =
            post_json(gw, messages_body(&format!("replay/{name}"), true)).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert!(
            headers["content-type"]
                .to_str()
                .expect("ct")
                .starts_with("text/event-stream")
        );
        let got = parse_sse(&body);
        let want = parse_sse(&fixture(&format!("anthropic/{name}.sse")));
        assert_eq!(got.len(), want.len(), "{name}: same number of events");
        for ((gn, gd), (wn, wd)) in got.iter().zip(&want) {
            assert_eq!(gn, wn, "{name}: event names");
            assert_eq!(
                gd, wd,
                "{name}: event data is semantically the recorded data"
            );
        }
    }
}

#[tokio::test]
async fn unknown_fields_and_block_types_reach_the_upstream_unchanged() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let sent = json!({
        "model": "replay/message_basic",
        "max_tokens": 64,
        "brand_new_top_level_field": {"nested": [1, 2, {"x": null}]},
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "hi", "future_text_flag": true},
                {"type": "hologram", "payload": {"frames": 3}, "fps": 24.5},
                {"payload_first": 1, "type": "image", "source": {"type": "url", "url": "https://example.invalid/a.png"}}
            ], "message_level_extra": "kept"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}], "is_error": false},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}, "title": "t", "citations": {"enabled": true}}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}, "strict": true},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-1"},
        "temperature": 0.5,
        "stop_sequences": ["END"]
    });
    let (status, _, _) = post_json(gw, sent.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let got: serde_json::Value =
        serde_json::from_slice(&up.last().body).expect("upstream got json");
    assert_eq!(got, sent);
}

#[tokio::test]
async fn a_stream_reaches_the_client_event_by_event() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let req = json_request(
        gw,
        "/v1/messages",
        &messages_body("pause/stream_text", true),
    );
    let resp = tokio::time::timeout(Duration::from_secs(10), client().request(req))
        .await
        .expect("headers arrive while the upstream is paused")
        .expect("ok");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // The upstream has sent exactly one event and now waits for us: if the gateway
    // buffered, this read would never complete.
    let mut first = Vec::new();
    while !first.ends_with(b"\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("first event arrives before the upstream continues")
            .expect("frame")
            .expect("ok");
        first.extend_from_slice(frame.data_ref().expect("data"));
    }
    let evs = parse_sse(&first);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].0, "message_start");
    up.release();
    let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("rest")
        .expect("ok")
        .to_bytes();
    let rest = parse_sse(&rest);
    assert_eq!(rest.last().expect("events").0, "message_stop");
    assert_eq!(
        rest.len() + 1,
        parse_sse(&fixture("anthropic/stream_text.sse")).len()
    );
}

#[tokio::test]
async fn version_and_beta_headers_reach_the_upstream_as_sent() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let body = Bytes::from(
        serde_json::to_vec(&messages_body("replay/message_basic", false)).expect("json"),
    );
    let req = Request::post(format!("http://{gw}/v1/messages"))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-01-01")
        .header(
            "anthropic-beta",
            "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19",
        )
        .header("anthropic-beta", "output-128k-2025-02-19")
        .header("x-api-key", "caller-key-must-not-leak")
        .header("authorization", "Bearer caller-token-must-not-leak")
        .body(Full::new(body.clone()))
        .expect("request");
    let (status, _, _) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.headers["anthropic-version"], "2023-01-01");
    let betas: Vec<_> = seen
        .headers
        .get_all("anthropic-beta")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(
        betas,
        [
            "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19",
            "output-128k-2025-02-19"
        ]
    );
    assert_eq!(
        seen.headers["x-api-key"], VENDOR_KEY,
        "the vendor key replaces the caller's"
    );
    assert!(
        seen.headers.get("authorization").is_none(),
        "caller credentials never reach the vendor"
    );

    // Without the header, the default version is sent and no beta header is invented.
    let req = Request::post(format!("http://{gw}/v1/messages"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("request");
    send(req).await;
    let seen = up.last();
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("anthropic-beta").is_none());
}

#[tokio::test]
async fn sdk_relevant_response_headers_reach_the_client() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    for stream in [false, true] {
        let (status, h, _) = post_json(
            gw,
            messages_body(
                if stream {
                    "replay/stream_text"
                } else {
                    "replay/message_basic"
                },
                stream,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h["request-id"], "req_replay_conformance_0001");
        assert_eq!(h["anthropic-ratelimit-requests-remaining"], "999");
        assert_eq!(
            h["anthropic-ratelimit-output-tokens-reset"],
            "2030-01-01T00:00:00Z"
        );
        assert!(
            h.get("anthropic-organization-id").is_none(),
            "the vendor account id stays inside"
        );
    }
    let (status, h, body) = post_json(gw, messages_body("error/429", false)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["x-should-retry"], "true");
    assert_eq!(h["request-id"], "req_01T5fCVnYdf9X5ZW6KayReBK");
    assert_eq!(h["anthropic-ratelimit-requests-remaining"], "0");
    assert_eq!(error_json(&body).0, "rate_limit_error");
}

#[tokio::test]
async fn an_upstream_401_is_the_gateway_s_vendor_key_not_the_caller_s() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let (status, _, body) = post_json(gw, messages_body("error/401", false)).await;
    assert_eq!(status, 502);
    let (kind, message) = error_json(&body);
    assert_eq!(kind, "api_error");
    assert_eq!(
        message,
        "the upstream refused the gateway's own credentials (http 401); the gateway's operator must fix them"
    );
    assert!(!message.contains(VENDOR_KEY));
}

#[tokio::test]
async fn upstream_errors_keep_their_status_type_and_message() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    for code in ["400", "429", "529", "529_request_id"] {
        let recorded = fixture_json(&format!("anthropic/errors/error_{code}.json"));
        let meta = fixture_json(&format!("anthropic/errors/error_{code}.headers.json"));
        let (status, h, body) = post_json(gw, messages_body(&format!("error/{code}"), false)).await;
        assert_eq!(
            status.as_u16() as u64,
            meta["status"].as_u64().expect("status"),
            "{code}"
        );
        assert_eq!(h["content-type"], "application/json");
        let got: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(got["type"], "error");
        assert_eq!(got["error"]["type"], recorded["error"]["type"], "{code}");
        assert_eq!(
            got["error"]["message"], recorded["error"]["message"],
            "{code}"
        );
        if let Some(id) = recorded.get("request_id") {
            assert_eq!(&got["request_id"], id, "{code}: upstream request id kept");
        }
        if let Some(x) = meta["headers"].get("x-should-retry") {
            assert_eq!(h["x-should-retry"], x.as_str().expect("str"));
        }
    }
}

#[tokio::test]
async fn an_error_event_mid_stream_reaches_the_client_as_an_error_event() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    for name in ["stream_error_overloaded", "stream_error_overloaded_first"] {
        let (status, _, body) = post_json(gw, messages_body(&format!("replay/{name}"), true)).await;
        assert_eq!(status, StatusCode::OK, "the stream had started with 200");
        let evs = parse_sse(&body);
        let (last_name, last) = evs.last().expect("events");
        assert_eq!(last_name, "error");
        assert_eq!(last["error"]["type"], "overloaded_error");
        assert_eq!(last["error"]["message"], "Overloaded");
        let want = parse_sse(&fixture(&format!("anthropic/{name}.sse")));
        assert_eq!(
            evs.len(),
            want.len(),
            "{name}: the events before the error all arrive"
        );
    }
}

#[tokio::test]
async fn count_tokens_and_models_are_forwarded() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let req = Request::post(format!("http://{gw}/v1/messages/count_tokens"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .expect("request");
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).expect("json"),
        json!({"input_tokens": 1114})
    );
    assert_eq!(up.last().uri.path(), "/v1/messages/count_tokens");

    // The SDKs' beta resources add `?beta=true`: it reaches the upstream.
    let req = json_request(
        gw,
        "/v1/messages?beta=true",
        &messages_body("replay/message_basic", false),
    );
    let (status, _, _) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        up.last().uri.path_and_query().expect("pq").as_str(),
        "/v1/messages?beta=true"
    );

    // The Anthropic SDKs send anthropic-version: the Anthropic list. (Without it and
    // without x-api-key, the caller is an OpenAI SDK and gets OpenAI's shape.)
    let req = Request::get(format!("http://{gw}/v1/models"))
        .body(Full::default())
        .expect("request");
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (&v["object"], &v["data"][0]["object"]),
        (&json!("list"), &json!("model"))
    );
    let req = Request::get(format!("http://{gw}/v1/models?limit=5&after_id=abc"))
        .header("anthropic-version", "2023-06-01")
        .body(Full::default())
        .expect("request");
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["data"][0]["type"], "model");
    let seen = up.last();
    assert_eq!(seen.method, http::Method::GET);
    assert_eq!(
        seen.uri.path_and_query().expect("pq").as_str(),
        "/v1/models?limit=5&after_id=abc"
    );
    assert_eq!(seen.headers["x-api-key"], VENDOR_KEY);
}

async fn raw_post(
    gw: std::net::SocketAddr,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut b = Request::post(format!("http://{gw}/v1/messages"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    send(b.body(Full::new(Bytes::from(body))).expect("request")).await
}

#[tokio::test]
async fn bad_input_gets_a_typed_4xx_and_never_reaches_the_upstream() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            body_limit: 4096,
            ..Default::default()
        },
    )
    .await;

    let (s, _, b) = raw_post(
        gw,
        Some("application/json"),
        b"{\"model\": \"x\", \"max_tokens\": ".to_vec(),
    )
    .await;
    assert_eq!(
        (s, error_json(&b).0.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request_error")
    );
    assert!(error_json(&b).1.contains("not valid json"));

    let (s, _, b) = raw_post(
        gw,
        Some("text/plain"),
        serde_json::to_vec(&messages_body("x", false)).expect("json"),
    )
    .await;
    assert_eq!(
        (s, error_json(&b).0.as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request_error")
    );
    let (s, _, _) = raw_post(
        gw,
        None,
        serde_json::to_vec(&messages_body("x", false)).expect("json"),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, _, _) = raw_post(
        gw,
        Some("Application/JSON; charset=utf-8"),
        serde_json::to_vec(&messages_body("replay/message_basic", false)).expect("json"),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "media type parameters and case are accepted"
    );

    let mut big = messages_body("x", false);
    big["messages"][0]["content"] = json!("a".repeat(10_000));
    let (s, _, b) = raw_post(
        gw,
        Some("application/json"),
        serde_json::to_vec(&big).expect("json"),
    )
    .await;
    assert_eq!(
        (s, error_json(&b).0.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
    );

    // Over the limit without a content-length (chunked): caught while reading.
    let chunks = futures_util::stream::iter((0..10).map(|_| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![b' '; 1000])))
    }));
    let req = Request::post(format!("http://{gw}/v1/messages"))
        .header("content-type", "application/json")
        .body(http_body_util::StreamBody::new(chunks))
        .expect("request");
    let resp = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let mut invalid =
        br#"{"model":"x","max_tokens":5,"messages":[{"role":"user","content":"caf"#.to_vec();
    invalid.extend_from_slice(b"\xe9\xff\"}]}");
    let (s, _, b) = raw_post(gw, Some("application/json"), invalid).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_json(&b).1.contains("utf-8"));

    let (s, _, b) = raw_post(
        gw,
        Some("application/json"),
        br#"{"model":"x","messages":[]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_json(&b).1, "max_tokens: field required");

    let (s, _, b) = raw_post(
        gw,
        Some("application/json"),
        br#"{"max_tokens":1,"messages":[]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_json(&b).1.contains("missing field `model`"));

    // Wrong types: the message names the problem but never quotes the content.
    let (s, _, b) = raw_post(
        gw,
        Some("application/json"),
        br#"{"model":"x","max_tokens":"secret-prompt-text","messages":[]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        !error_json(&b).1.contains("secret-prompt-text"),
        "{}",
        error_json(&b).1
    );
    let (s, _, _) = raw_post(
        gw,
        Some("application/json"),
        br#"{"model":"x","max_tokens":1,"messages":[{"role":"robot","content":"hi"}]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = raw_post(gw, Some("application/json"), br#"[1,2,3]"#.to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = raw_post(gw, Some("application/json"), Vec::new()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, _, b) = send(
        Request::get(format!("http://{gw}/v2/unknown"))
            .body(Full::default())
            .expect("req"),
    )
    .await;
    assert_eq!(
        (s, error_json(&b).0.as_str()),
        (StatusCode::NOT_FOUND, "not_found_error")
    );
    let (s, h, b) = send(
        Request::get(format!("http://{gw}/v1/messages"))
            .body(Full::default())
            .expect("req"),
    )
    .await;
    assert_eq!(
        (s, error_json(&b).0.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error")
    );
    assert_eq!(h["allow"], "POST");

    assert_eq!(
        up.seen().len(),
        1,
        "only the one valid request reached the upstream"
    );
}

#[tokio::test]
async fn a_refused_upstream_connection_is_a_502_api_error() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let gw = start_gateway(&format!("http://127.0.0.1:{port}"), GatewayOpts::default()).await;
    let (s, _, b) = post_json(gw, messages_body("replay/message_basic", false)).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(error_json(&b).0, "api_error");
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_cut_off_with_504() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            first_byte_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let (s, _, b) = post_json(gw, messages_body("stall/first-byte", true)).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    let (t, m) = error_json(&b);
    assert_eq!(t, "upstream_timeout");
    assert!(m.contains("300 ms"), "{m}");
}

#[tokio::test]
async fn a_stream_that_stalls_ends_with_an_error_event() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            idle_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let (s, _, b) = post_json(gw, messages_body("stall/mid-stream", true)).await;
    assert_eq!(s, StatusCode::OK);
    let evs = parse_sse(&b);
    assert_eq!(evs.len(), 3, "two events, then the error: {evs:?}");
    assert_eq!(evs[0].0, "message_start");
    assert_eq!(evs[2].0, "error");
    assert_eq!(evs[2].1["error"]["type"], "upstream_timeout");
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            body_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
    >(1);
    tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(
        b"{\"model\":",
    ))))
    .await
    .expect("send");
    let stream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (f, rx))
    }));
    let req = Request::post(format!("http://{gw}/v1/messages"))
        .header("content-type", "application/json")
        .body(http_body_util::StreamBody::new(stream))
        .expect("request");
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http()
            .request(req),
    )
    .await
    .expect("answered")
    .expect("response");
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    let b = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(error_json(&b).0, "request_timeout");
    drop(tx);
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = MockUpstream::start().await;
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            header_read_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let mut sock = tokio::net::TcpStream::connect(gw).await.expect("connect");
    sock.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut buf))
        .await
        .expect("the gateway closes the connection instead of waiting forever");
    assert!(n.is_ok());
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_drops_the_upstream_request() {
    use tokio::io::AsyncReadExt;
    // A raw upstream that streams one event, then watches its socket: the read returning
    // 0 (or an error) means the gateway closed the upstream connection.
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let raw_addr = raw.local_addr().expect("addr");
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = raw.accept().await.expect("accept");
        raw::read_request(&mut s).await;
        let first = sse_frames(&fixture("anthropic/stream_text.sse"))[0].clone();
        raw::write_sse_head(&mut s).await.expect("head");
        raw::write_chunk(&mut s, &first).await.expect("chunk");
        // Now wait: no more events. The socket closes only if the gateway drops it.
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "nothing but the close arrives");
        let _ = closed_tx.send(());
    });
    let gw = start_gateway(&format!("http://{raw_addr}"), GatewayOpts::default()).await;

    let mut client = raw::post_stream(gw).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("message_start") {
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
            .await
            .expect("first event")
            .expect("read");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the upstream sees its connection closed promptly after the client left")
        .expect("observer ran");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let (_, h, b) = post_json(gw, json!({"model": "x"})).await;
    let id = h["x-request-id"].to_str().expect("id").to_owned();
    assert_eq!(h["request-id"], id.as_str());
    let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
    assert_eq!(v["request_id"], id.as_str());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_upstream_dropped() {
    use tokio::io::AsyncWriteExt;
    // The upstream streams large events as fast as it can; the client never reads. Once
    // every buffer on the way is full, the gateway's write to the client blocks; the write
    // timeout closes the client connection, which drops the upstream request.
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let raw_addr = raw.local_addr().expect("addr");
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<usize>();
    tokio::spawn(async move {
        let (mut s, _) = raw.accept().await.expect("accept");
        raw::read_request(&mut s).await;
        raw::write_sse_head(&mut s).await.expect("head");
        let start = sse_frames(&fixture("anthropic/stream_text.sse"));
        for f in &start[..2] {
            raw::write_chunk(&mut s, f).await.expect("chunk");
        }
        let text = "x".repeat(64 * 1024);
        let event = format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
        );
        let mut sent = 0usize;
        // Bounded: 4 GiB would take far longer than the test's timeout.
        while sent < 4 << 30 {
            if raw::write_chunk(&mut s, event.as_bytes()).await.is_err() {
                break;
            }
            sent += event.len();
        }
        let _ = s.shutdown().await;
        let _ = closed_tx.send(sent);
    });
    let gw = start_gateway(
        &format!("http://{raw_addr}"),
        GatewayOpts {
            write_timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    )
    .await;
    let client = raw::post_stream(gw).await;
    // Never read.
    let sent = tokio::time::timeout(Duration::from_secs(20), closed_rx)
        .await
        .expect("the upstream connection is dropped once the client stalls")
        .expect("observer ran");
    assert!(sent > 0);
    drop(client);
}

#[tokio::test]
async fn a_panicking_provider_gives_an_anthropic_shaped_500_and_the_server_lives_on() {
    let provider = tower::service_fn(
        |req: Request<ai_gateway::core::MessagesRequest>| async move {
            if req.body().model == "boom" {
                panic!("provider bug");
            }
            Ok::<_, ai_gateway::core::AiError>(http::Response::new(ai_gateway::core::AiBody::Json(
                json!({"ok": true}),
            )))
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gw = listener.local_addr().expect("addr");
    tokio::spawn(ai_gateway::server::serve(
        listener,
        provider,
        Default::default(),
        std::future::pending(),
    ));
    let (s, h, b) = post_json(gw, messages_body("boom", false)).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        error_json(&b),
        ("api_error".to_owned(), "internal error".to_owned())
    );
    let (s, _, _) = post_json(gw, messages_body("fine", false)).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn http2_clients_get_the_same_stream() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = json_request(
        gw,
        "/v1/messages",
        &messages_body("replay/stream_tool_use", true),
    );
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(
        parse_sse(&body),
        parse_sse(&fixture("anthropic/stream_tool_use.sse"))
    );
}
