//! Upstreams that misbehave the way real upstreams and proxies do: a stream that ends
//! early (cleanly, or in the middle of an event), compressed answers, a whole message
//! answered to a stream request. Each test checks what the client gets over a real socket
//! and what the completion hook reports.

mod common;

use ai_gateway::core::{ErrorKind, Outcome};
use common::*;
use serde_json::{Value, json};

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn a_stream_cut_cleanly_after_two_deltas_ends_with_an_error_event() {
    let up = MockUpstream::start().await;
    let (gw, done) = start_observed_gateway(&up.url(), GatewayOpts::default()).await;
    let (status, headers, body) = post_json(gw, messages_body("cut/clean", true)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
    let events = parse_sse(&body);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(events[3].1["delta"]["text"], "Hello");
    assert_eq!(events[4].1["delta"]["text"], " there");
    let err = &events[5].1;
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "api_error");
    assert_eq!(
        err["error"]["message"],
        "upstream ended the stream early (no message_stop)"
    );

    let c = done.nth(1).await;
    assert_eq!(c.outcome, Outcome::Failed(ErrorKind::UpstreamUnavailable));
    assert_eq!(c.usage.input_tokens, Some(11), "usage seen before the cut");
    assert_eq!(c.events, 5);
}

#[tokio::test]
async fn a_stream_cut_in_the_middle_of_an_event_ends_with_an_error_event() {
    let up = MockUpstream::start().await;
    let (gw, done) = start_observed_gateway(&up.url(), GatewayOpts::default()).await;
    let (status, _, body) = post_json(gw, messages_body("cut/mid-event", true)).await;
    assert_eq!(status, 200);
    let events = parse_sse(&body);
    assert_eq!(events.len(), 6, "the half event is not delivered");
    assert_eq!(events[4].1["delta"]["text"], " there");
    assert_eq!(events[5].0, "error");
    assert_eq!(events[5].1["error"]["type"], "api_error");
    assert_eq!(
        events[5].1["error"]["message"],
        "upstream ended the stream early, in the middle of an event (no message_stop)"
    );
    let c = done.nth(1).await;
    assert_eq!(c.outcome, Outcome::Failed(ErrorKind::UpstreamUnavailable));
}

#[tokio::test]
async fn compressed_messages_are_decoded_for_every_encoding() {
    let up = MockUpstream::start().await;
    let (gw, done) = start_observed_gateway(&up.url(), GatewayOpts::default()).await;
    let want = fixture_json("anthropic/message_basic.json");
    for (n, enc) in ["gzip", "deflate", "br", "zstd"].into_iter().enumerate() {
        let (status, headers, body) =
            post_json(gw, messages_body(&format!("{enc}/message_basic"), false)).await;
        assert_eq!(status, 200, "{enc}: {}", String::from_utf8_lossy(&body));
        assert!(headers.get("content-encoding").is_none(), "{enc}");
        assert_eq!(headers["content-type"], "application/json");
        let got: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(got, want, "{enc}");
        let c = done.nth(n + 1).await;
        assert_eq!(c.outcome, Outcome::Complete, "{enc}");
        assert_eq!(c.usage.input_tokens, Some(20));
    }
    let accept = up.last().headers["accept-encoding"].clone();
    assert_eq!(accept, "gzip, deflate, br, zstd");
}

#[tokio::test]
async fn a_gzip_stream_whose_events_straddle_compressed_chunks_arrives_whole() {
    let up = MockUpstream::start().await;
    let (gw, done) = start_observed_gateway(&up.url(), GatewayOpts::default()).await;
    let (_, _, plain) = post_json(gw, messages_body("replay/stream_text", true)).await;
    let (status, headers, body) = post_json(gw, messages_body("gzip/stream_text", true)).await;
    assert_eq!(status, 200);
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(parse_sse(&body), parse_sse(&plain));
    assert_eq!(parse_sse(&body).len(), 9);
    let c = done.nth(2).await;
    assert_eq!(c.outcome, Outcome::Complete);
    assert_eq!(c.usage.output_tokens, Some(6));
    assert_eq!(c.stop_reason.as_deref(), Some("end_turn"));
    // A stream asks the upstream not to compress (a compressor that does not flush per
    // event would hold tokens back), and is decoded when it is compressed anyway.
    assert_eq!(up.last().headers["accept-encoding"], "identity");
}

#[tokio::test]
async fn a_decompression_bomb_counts_against_the_body_limit() {
    let up = MockUpstream::start().await;
    let opts = GatewayOpts {
        max_body: 1 << 20,
        ..GatewayOpts::default()
    };
    let (gw, done) = start_observed_gateway(&up.url(), opts).await;
    let (status, _, body) = post_json(gw, messages_body("bomb/gzip", false)).await;
    assert_eq!(status, 502);
    let (kind, message) = error_json(&body);
    assert_eq!(kind, "api_error");
    assert_eq!(message, "upstream response exceeds the size limit");
    assert_eq!(
        done.nth(1).await.outcome,
        Outcome::Failed(ErrorKind::UpstreamUnavailable)
    );
}

#[tokio::test]
async fn a_json_message_answered_to_a_stream_request_becomes_its_events() {
    let up = MockUpstream::start().await;
    let (gw, done) = start_observed_gateway(&up.url(), GatewayOpts::default()).await;
    let (status, headers, body) = post_json(gw, messages_body("json/message_basic", true)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream; charset=utf-8");
    let events = parse_sse(&body);
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let want = fixture_json("anthropic/message_basic.json");
    let start = &events[0].1["message"];
    assert_eq!(start["id"], want["id"]);
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(
        events[2].1["delta"],
        json!({"type": "text_delta", "text": "The capital of France is Paris."})
    );
    assert_eq!(events[4].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[4].1["usage"], want["usage"]);
    let c = done.nth(1).await;
    assert_eq!(c.outcome, Outcome::Complete);
    assert_eq!(c.usage.input_tokens, Some(20));
    assert_eq!(c.stop_reason.as_deref(), Some("end_turn"));
}

#[tokio::test]
async fn unknown_fields_and_tool_input_reach_the_upstream_byte_for_byte() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    let odd = r#"{"big":18446744073709551617,"neg":-99999999999999999999999,"dec":0.1000000000000000055511151231257827021181583404541015625,"exp":1E+400,"esc":"\u0000 \ud83d\ude00 \/ \"q\" \u00e9 \t","z":1,"a":[{"y":2,"x":1}]}"#;
    let body = format!(
        r#"{{"model":"replay/message_basic","max_tokens":5,"messages":[{{"role":"user","content":[{{"type":"text","text":"hi","x_block":{odd}}}]}},{{"role":"assistant","content":[{{"type":"tool_use","id":"toolu_1","name":"f","input":{odd}}},{{"type":"x_future_block","v":{odd}}}]}},{{"role":"user","content":"ok"}}],"tools":[{{"name":"f","input_schema":{odd}}}],"x_top":{odd}}}"#
    );
    let req = http::Request::post(format!("http://{gw}/v1/messages"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
        .expect("request");
    let (status, _, resp) = send(req).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let seen = String::from_utf8(up.last().body.to_vec()).expect("utf8");
    assert_eq!(seen.matches(odd).count(), 5, "{seen}");
    assert_eq!(seen, body, "nothing the gateway does not change is changed");
}
