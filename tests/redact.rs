//! The redaction layer in the real gateway, in front of a mock upstream that records what
//! it received and answers with the tokens it was given (`echo/tokens`).

mod common;

use ai_gateway::core::DataCategory;
use ai_gateway::redact::{Action, RedactLayer, RedactPolicy, Redactor};
use common::*;
use http::StatusCode;

const EMAIL: &str = "jane.doe@acme-corp.io";
const PHONE: &str = "+1 415 555 2671";
const CARD: &str = "4111 1111 1111 1111";
const NAME: &str = "Priya Raman";

fn key() -> String {
    format!("sk-ant-api03-{}AA", "Zq7".repeat(31))
}

fn body(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "echo/tokens",
        "max_tokens": 256,
        "stream": stream,
        "system": "You help Dr. Priya Raman's clinic answer patients.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": format!(
                    "Write to {EMAIL} or call {PHONE}. Card {CARD}. Our key is {}.", key())},
            ]},
        ],
    })
}

async fn gateway(up: &MockUpstream, policy: RedactPolicy) -> std::net::SocketAddr {
    start_gateway(
        &up.url(),
        GatewayOpts {
            redact: Some(RedactLayer::new(Redactor::new(policy))),
            ..GatewayOpts::default()
        },
    )
    .await
}

fn assert_upstream_saw_no_values(up: &MockUpstream) {
    let seen = up.last();
    let sent = String::from_utf8_lossy(&seen.body);
    for value in [
        EMAIL,
        PHONE,
        CARD,
        NAME,
        &key(),
        "415 555 2671",
        "1111 1111 1111",
    ] {
        assert!(
            !sent.contains(value),
            "{value:?} reached the upstream: {sent}"
        );
    }
    assert!(
        sent.contains("<EMAIL_1>") && sent.contains("<PHONE_1>"),
        "{sent}"
    );
    assert!(sent.contains("<PERSON_1>"), "the name is tokenized: {sent}");
    assert!(sent.contains("****1111"), "the card is masked: {sent}");
    assert!(sent.contains("[API_KEY]"), "the key is redacted: {sent}");
}

#[tokio::test]
async fn nothing_detected_reaches_the_upstream_and_the_caller_gets_values_back() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up, RedactPolicy::default()).await;
    let (status, _, resp) = post_json(gw, body(false)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
    assert_upstream_saw_no_values(&up);
    let m: serde_json::Value = serde_json::from_slice(&resp).expect("json");
    let text = m["content"][0]["text"].as_str().expect("text");
    assert!(
        text.contains(EMAIL) && text.contains(PHONE) && text.contains(NAME),
        "{text}"
    );
    assert!(!text.contains("<EMAIL_1>"), "{text}");
    let to = m["content"][1]["input"]["to"].as_str().expect("tool input");
    assert!(to.contains(EMAIL) && to.contains(PHONE), "{to}");
}

#[tokio::test]
async fn streamed_tokens_split_over_deltas_are_rehydrated() {
    let up = MockUpstream::start().await;
    let gw = gateway(&up, RedactPolicy::default()).await;
    let (status, _, resp) = post_json(gw, body(true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_upstream_saw_no_values(&up);
    let events = parse_sse(&resp);
    let mut text = String::new();
    let mut json = String::new();
    for (name, data) in &events {
        if name == "content_block_delta" {
            match data["delta"]["type"].as_str() {
                Some("text_delta") => text.push_str(data["delta"]["text"].as_str().expect("t")),
                Some("input_json_delta") => {
                    json.push_str(data["delta"]["partial_json"].as_str().expect("j"))
                }
                _ => {}
            }
        }
    }
    assert!(
        text.contains(EMAIL) && text.contains(PHONE) && text.contains(NAME),
        "{text}"
    );
    assert!(!text.contains('<'), "no token left: {text}");
    let input: serde_json::Value = serde_json::from_str(&json).expect("tool input is JSON");
    assert!(input["to"].as_str().expect("to").contains(EMAIL), "{input}");
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("message_stop"));
}

#[tokio::test]
async fn a_blocked_category_is_a_403_naming_category_and_component_not_the_value() {
    let up = MockUpstream::start().await;
    let gw = gateway(
        &up,
        RedactPolicy::default().set(DataCategory::Credential, Action::Block),
    )
    .await;
    let (status, _, resp) = post_json(gw, body(false)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (kind, message) = error_json(&resp);
    assert_eq!(kind, "permission_error");
    assert!(
        message.contains("credential") && message.contains("messages"),
        "{message}"
    );
    let raw = String::from_utf8_lossy(&resp);
    assert!(
        !raw.contains(&key()) && !raw.contains("sk-ant-api03"),
        "{raw}"
    );
    assert!(up.seen().is_empty(), "a blocked request never leaves");
}
