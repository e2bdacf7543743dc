//! The gateway in front of an OpenAI-compatible upstream (the mock replaying the recorded
//! OpenAI, vLLM and Ollama answers): Anthropic-shaped callers get Anthropic answers.

mod common;

use ai_gateway::provider::OpenAiProvider;
use common::*;
use serde_json::Value;

/// The concatenated `delta.content` of a recorded OpenAI stream.
fn recorded_text(raw: &[u8]) -> String {
    let mut p = ai_gateway::core::sse::SseParser::new();
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
async fn anthropic_callers_get_anthropic_streams_from_an_openai_upstream() {
    let up = MockUpstream::start().await;
    let provider = OpenAiProvider::self_hosted(format!("{}/v1", up.url()))
        .build()
        .expect("provider");
    let gw = serve_service(provider, GatewayOpts::default()).await;
    for (model, fixture_path) in [
        ("replay/stream_text", "openai/stream_text.sse"),
        (
            "selfhosted/vllm_stream_no_usage",
            "selfhosted/vllm_stream_no_usage.sse",
        ),
        (
            "selfhosted/ollama_stream_text",
            "selfhosted/ollama_stream_text.sse",
        ),
    ] {
        let (status, headers, body) = post_json(gw, messages_body(model, true)).await;
        assert_eq!(status, 200, "{model}");
        assert!(
            headers["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/event-stream")
        );
        let events = parse_sse(&body);
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds[0], "message_start", "{model}");
        assert_eq!(kinds[kinds.len() - 1], "message_stop", "{model}");
        // Every event's name matches its type, as the Anthropic SDKs expect.
        assert!(
            events.iter().all(|(k, v)| v["type"] == k.as_str()),
            "{model}"
        );
        let text: String = events
            .iter()
            .filter_map(|(_, v)| v["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, recorded_text(&fixture(fixture_path)), "{model}");
        let (_, md) = &events[events.len() - 2];
        assert!(
            md["usage"]["output_tokens"].as_u64().expect("usage") > 0,
            "{model}"
        );
    }
    // A whole answer.
    let (status, _, body) = post_json(gw, messages_body("replay/message_basic", false)).await;
    assert_eq!(status, 200);
    let m: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(m["type"], "message");
    assert_eq!(m["usage"]["output_tokens"], 37);
    // The upstream got an OpenAI request.
    let seen = up.last();
    assert!(seen.uri.path().ends_with("/v1/chat/completions"));
}

#[tokio::test]
async fn usage_a_server_did_not_report_is_estimated_and_marked_so_up_to_the_audit_record() {
    let up = MockUpstream::start().await;
    let provider = OpenAiProvider::self_hosted(format!("{}/v1", up.url()))
        .build()
        .expect("provider");
    let dir = tempfile::tempdir().expect("tmp");
    let (audit_layer, _) = audit::layer(dir.path(), Default::default());
    let gw = serve_service(
        provider,
        GatewayOpts {
            audit: Some(audit_layer),
            ..GatewayOpts::default()
        },
    )
    .await;
    // vLLM without usage: the output is estimated and the usage says so.
    let (status, headers, body) =
        post_json(gw, messages_body("selfhosted/vllm_stream_no_usage", true)).await;
    assert_eq!(status, 200);
    let events = parse_sse(&body);
    let (_, md) = &events[events.len() - 2];
    assert_eq!(md["usage"]["estimated"], true, "{md}");
    let id = headers["request-id"].to_str().expect("ascii").to_owned();
    let rec = audit::wait_for(dir.path(), &id).await;
    let upstream = rec.tokens.upstream.expect("upstream tokens");
    assert!(upstream.estimated);
    assert!(upstream.output > 0);
    // OpenAI's recorded stream reports usage: not marked.
    let (_, headers, body) = post_json(gw, messages_body("replay/stream_text", true)).await;
    let events = parse_sse(&body);
    let (_, md) = &events[events.len() - 2];
    assert!(md["usage"].get("estimated").is_none(), "{md}");
    let id = headers["request-id"].to_str().expect("ascii").to_owned();
    let rec = audit::wait_for(dir.path(), &id).await;
    assert!(!rec.tokens.upstream.expect("upstream tokens").estimated);
}
