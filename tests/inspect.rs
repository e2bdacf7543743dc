//! Output inspection in the real gateway: a credential the model leaks, split over 2, 3
//! and 10 deltas, is cut with the exact closing events and the upstream connection is
//! closed at once; whole messages are cut too; tool calls are withheld or passed and the
//! audit record names the reason code and each call's arguments hash.

mod common;

use ai_gateway::audit::WriterConfig;
use ai_gateway::inspect::{InspectLayer, InspectPolicy, SystemPromptLeak, ToolPolicy};
use ai_gateway::redact::{DetectorClassifier, Detectors};
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The default classifiers: ai-redact's detectors and the system-prompt leak detector.
fn layer(tools: ToolPolicy) -> InspectLayer {
    InspectLayer::new(InspectPolicy::default())
        .classifier(Arc::new(DetectorClassifier::new(Detectors::builtin())))
        .classifier(Arc::new(SystemPromptLeak::default()))
        .tools(tools)
}

async fn gateway(upstream: &str, opts: GatewayOpts) -> std::net::SocketAddr {
    start_gateway(
        upstream,
        GatewayOpts {
            inspect: Some(layer(ToolPolicy::default().allow(["get_weather"]))),
            ..opts
        },
    )
    .await
}

const CODE: &str = "completion.credential.detected";

#[tokio::test]
async fn a_key_split_across_deltas_is_cut_with_the_exact_closing_events() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up.url(), GatewayOpts::default()).await;
    for n in [2, 3, 10] {
        let (status, _, body) = post_json(gw, messages_body(&format!("secret/{n}"), true)).await;
        assert_eq!(status, 200);
        let events = parse_sse(&body);
        let deltas = leaking_deltas(n);
        // Generated up to the delta after the key (the one that settled the finding).
        let generated: usize = deltas[..deltas.len() - 1].iter().map(String::len).sum();
        let want: Vec<(String, Value)> = vec![
            (
                "message_start".into(),
                json!({"type": "message_start", "message": {
                    "id": "msg_leak", "type": "message", "role": "assistant", "content": [],
                    "model": "claude-sonnet-4-5-20250929", "stop_reason": null,
                    "stop_sequence": null, "usage": {"input_tokens": 30, "output_tokens": 1}}}),
            ),
            (
                "content_block_start".into(),
                json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta".into(),
                json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": BEFORE_KEY}}),
            ),
            (
                "content_block_stop".into(),
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta".into(),
                json!({"type": "message_delta",
                    "delta": {"stop_reason": "policy_block", "stop_sequence": null},
                    "usage": {"output_tokens": generated.div_ceil(4)}}),
            ),
            (
                "message_stop".into(),
                json!({"type": "message_stop", "policy_reason_code": CODE}),
            ),
        ];
        assert_eq!(events, want, "split over {n}");
        assert!(!String::from_utf8_lossy(&body).contains("rotates"));
    }
}

#[tokio::test]
async fn a_whole_message_is_cut_before_the_key() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up.url(), GatewayOpts::default()).await;
    let (status, _, body) = post_json(gw, messages_body("secret/3", false)).await;
    assert_eq!(status, 200);
    let m: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(m["content"], json!([{"type": "text", "text": BEFORE_KEY}]));
    assert_eq!(m["stop_reason"], "policy_block");
    assert_eq!(m["policy_reason_code"], CODE);
}

/// A hand-written upstream that streams the leak, then waits: the only way its socket
/// closes is the gateway dropping the request.
#[tokio::test]
async fn the_upstream_connection_is_closed_right_after_the_block() {
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let raw_addr = raw.local_addr().expect("addr");
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<Duration>();
    tokio::spawn(async move {
        let (mut s, _) = raw.accept().await.expect("accept");
        raw::read_request(&mut s).await;
        raw::write_sse_head(&mut s).await.expect("head");
        let frames = text_frames(&leaking_deltas(3));
        // Everything up to the delta after the key; not the rest, not the stop.
        for f in &frames[..2 + 5] {
            raw::write_chunk(&mut s, f).await.expect("chunk");
        }
        let sent = std::time::Instant::now();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "nothing but the close arrives");
        let _ = closed_tx.send(sent.elapsed());
        let _ = s.shutdown().await;
    });
    let gw = gateway(&format!("http://{raw_addr}"), GatewayOpts::default()).await;
    let mut client = raw::post_stream(gw).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("policy_reason_code") {
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
            .await
            .expect("the block arrives")
            .expect("read");
        assert!(n > 0, "the gateway closed before the block");
        got.extend_from_slice(&buf[..n]);
    }
    let waited = tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the upstream saw its connection closed right after the block")
        .expect("observer ran");
    assert!(waited < Duration::from_secs(5));
    // The client still holds its connection: the close came from the block, not from it.
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("\"stop_reason\":\"policy_block\""), "{text}");
    assert!(!text.contains(&leaked_key()[..20]));
}

#[tokio::test]
async fn the_audit_record_names_the_reason_and_each_tool_call() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (audit, _) = audit::layer(dir.path(), WriterConfig::default());
    let gw = gateway(
        &up.url(),
        GatewayOpts {
            audit: Some(audit.clone()),
            ..GatewayOpts::default()
        },
    )
    .await;
    // A leak: the record says why the answer was cut, and where.
    let (_, headers, _) = post_json(gw, messages_body("secret/3", true)).await;
    let id = headers["x-request-id"].to_str().expect("id");
    let r = audit::wait_for(dir.path(), id).await;
    assert_eq!(r.outcome, "policy_cut");
    assert_eq!(r.reason.as_deref(), Some(CODE));
    assert_eq!(r.stop_reason.as_deref(), Some("policy_block"));
    let v: Vec<String> = r
        .verdicts
        .iter()
        .filter(|v| v.layer == "ai-sse-inspect")
        .map(|v| v.decision.clone())
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].starts_with("block:credential:"), "{v:?}");
    assert!(v[0].ends_with(&format!("@0:{}", BEFORE_KEY.len())), "{v:?}");

    // An allowed tool call: passed, its arguments hashed from what the client got.
    let (_, headers, body) = post_json(gw, messages_body("replay/stream_tool_use", true)).await;
    assert!(String::from_utf8_lossy(&body).contains("get_weather"));
    let id = headers["x-request-id"].to_str().expect("id");
    let passed = audit::wait_for(dir.path(), id).await;
    assert_eq!(passed.outcome, "complete");
    let call = &passed.tool_invocations[0];
    assert_eq!(call.tool_name.as_deref(), Some("get_weather"));
    assert_eq!(call.decision, "pass");
    let hash = call.arguments_hash.clone().expect("hash");
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");

    // The same call where the tool is not allowed: withheld, yet on the record with the
    // same arguments hash.
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            audit: Some(audit),
            inspect: Some(layer(ToolPolicy::default().allow(["search_*"]))),
            ..GatewayOpts::default()
        },
    )
    .await;
    let (_, headers, body) = post_json(gw, messages_body("replay/stream_tool_use", true)).await;
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains("get_weather"), "{text}");
    assert!(text.contains("completion.tool.not_allowed"));
    let id = headers["x-request-id"].to_str().expect("id");
    let blocked = audit::wait_for(dir.path(), id).await;
    assert_eq!(blocked.outcome, "policy_cut");
    assert_eq!(
        blocked.reason.as_deref(),
        Some("completion.tool.not_allowed")
    );
    let call = &blocked.tool_invocations[0];
    assert_eq!(call.tool_name.as_deref(), Some("get_weather"));
    assert_eq!(call.decision, "block:completion.tool.not_allowed");
    assert_eq!(call.arguments_hash.as_deref(), Some(hash.as_str()));
}

#[tokio::test]
async fn recorded_answers_pass_through_the_gateway_unchanged() {
    let up = MockUpstream::start().await;
    let plain = start_gateway(&up.url(), GatewayOpts::default()).await;
    let inspected = gateway(&up.url(), GatewayOpts::default()).await;
    for name in ["stream_text", "stream_thinking", "stream_tool_use_docs"] {
        let mut body = messages_body(&format!("replay/{name}"), true);
        body["system"] = json!("You are a helpful assistant for pedestrians and drivers.");
        let (_, _, a) = post_json(plain, body.clone()).await;
        let (_, _, b) = post_json(inspected, body).await;
        // Same events but for where text deltas split: compare the text per block and
        // every other event.
        let split = |raw: &[u8]| {
            let mut text = String::new();
            let mut others = Vec::new();
            for (event, data) in parse_sse(raw) {
                match data["delta"]["text"].as_str() {
                    Some(t) => text.push_str(t),
                    None => others.push((event, data)),
                }
            }
            (text, others)
        };
        assert_eq!(split(&a), split(&b), "{name}");
    }
}
