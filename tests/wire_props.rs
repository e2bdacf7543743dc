//! Property and fixture tests of the wire layer: SSE framing under any chunking, typed
//! round trips that lose nothing, and request decoding that keeps unknown fields.

mod common;

use ai_gateway::core::sse::{self, SseParser};
use ai_gateway::core::{MessagesRequest, MessagesResponse, StreamEvent};
use bytes::BytesMut;
use common::fixture;
use proptest::prelude::*;
use serde_json::{Value, json};

const STREAMS: &[&str] = &[
    "anthropic/stream_text.sse",
    "anthropic/stream_tool_use.sse",
    "anthropic/stream_tool_use_docs.sse",
    "anthropic/stream_thinking.sse",
    "anthropic/stream_error_overloaded.sse",
    "anthropic/stream_error_overloaded_first.sse",
    "openai/stream_text.sse",
    "openai/stream_tool_use.sse",
];

fn parse_chunked(input: &[u8], cuts: &[usize]) -> Vec<sse::SseEvent> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    let mut last = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    for c in cuts {
        p.feed(&input[last..c]);
        last = c;
        while let Some(ev) = p.next_event() {
            out.push(ev.expect("valid stream"));
        }
    }
    out
}

#[test]
fn every_single_split_point_of_every_recording_parses_the_same() {
    for name in STREAMS {
        let raw = fixture(name);
        let whole = parse_chunked(&raw, &[]);
        assert!(!whole.is_empty(), "{name}");
        for split in 0..=raw.len() {
            assert_eq!(
                parse_chunked(&raw, &[split]),
                whole,
                "{name} split at {split}"
            );
        }
    }
}

#[test]
fn recorded_events_round_trip_through_the_typed_model() {
    for name in STREAMS.iter().filter(|n| n.starts_with("anthropic/")) {
        for ev in parse_chunked(&fixture(name), &[]) {
            let original: Value = serde_json::from_str(&ev.data).expect("json");
            let typed: StreamEvent = serde_json::from_str(&ev.data).expect("typed");
            assert!(
                !matches!(typed, StreamEvent::Other(_)),
                "{name}: every recorded event type is modelled"
            );
            assert_eq!(ev.event.as_deref(), Some(typed.type_name()));
            assert_eq!(
                serde_json::to_value(&typed).expect("ser"),
                original,
                "{name}"
            );
        }
    }
}

#[test]
fn recorded_messages_round_trip_through_the_typed_model() {
    for name in [
        "anthropic/message_basic.json",
        "anthropic/message_cache_usage.json",
    ] {
        let original: Value = serde_json::from_slice(&fixture(name)).expect("json");
        let typed: MessagesResponse = serde_json::from_slice(&fixture(name)).expect("typed");
        assert_eq!(
            serde_json::to_value(&typed).expect("ser"),
            original,
            "{name}"
        );
    }
}

#[test]
fn tag_not_first_still_parses_as_the_known_variant() {
    let b: ai_gateway::core::ContentBlock =
        serde_json::from_value(json!({"text": "hi", "x": 1, "type": "text"})).expect("block");
    let ai_gateway::core::ContentBlock::Text(t) = &b else {
        panic!("text block expected: {b:?}")
    };
    assert_eq!(t.text, "hi");
    assert_eq!(t.extra.get("x").map(|v| v.get()), Some("1"));
    assert_eq!(
        serde_json::to_value(&b).expect("ser"),
        json!({"type": "text", "text": "hi", "x": 1})
    );
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z \\u{e9}\\u{1F600}\"\\\\\n]{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Unknown keys: prefixed so they never collide with a modelled field.
fn extras() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map("zz_[a-z]{1,6}", json_value(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn block() -> impl Strategy<Value = Value> {
    let text = ("[a-zA-Z0-9 ]{0,20}", extras()).prop_map(|(t, mut x)| {
        x.insert("type".into(), json!("text"));
        x.insert("text".into(), json!(t));
        Value::Object(x)
    });
    let tool_use = ("[a-z]{1,8}", json_value(), extras()).prop_map(|(name, input, mut x)| {
        x.insert("type".into(), json!("tool_use"));
        x.insert("id".into(), json!("toolu_1"));
        x.insert("name".into(), json!(name));
        x.insert("input".into(), json!({"arg": input}));
        Value::Object(x)
    });
    let unknown = ("[a-z]{3,10}_block", extras()).prop_map(|(t, mut x)| {
        x.insert("type".into(), json!(t));
        Value::Object(x)
    });
    prop_oneof![text, tool_use, unknown]
}

fn request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(
            (
                any::<bool>(),
                prop::collection::vec(block(), 1..4),
                extras(),
            ),
            1..4,
        ),
        extras(),
        proptest::option::of(any::<bool>()),
        1u32..100_000,
    )
        .prop_map(|(messages, mut top, stream, max_tokens)| {
            let msgs: Vec<Value> = messages
                .into_iter()
                .map(|(user, blocks, mut x)| {
                    x.insert(
                        "role".into(),
                        json!(if user { "user" } else { "assistant" }),
                    );
                    x.insert("content".into(), Value::Array(blocks));
                    Value::Object(x)
                })
                .collect();
            top.insert("model".into(), json!("claude-sonnet-4-5"));
            top.insert("max_tokens".into(), json!(max_tokens));
            top.insert("messages".into(), Value::Array(msgs));
            if let Some(s) = stream {
                top.insert("stream".into(), json!(s));
            }
            Value::Object(top)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_chunking_parses_to_the_same_events(idx in 0..STREAMS.len(), cuts in prop::collection::vec(any::<usize>(), 0..40)) {
        let raw = fixture(STREAMS[idx]);
        prop_assert_eq!(parse_chunked(&raw, &cuts), parse_chunked(&raw, &[]));
    }

    #[test]
    fn encode_of_parse_is_semantically_the_input(idx in 0..STREAMS.len(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let raw = fixture(STREAMS[idx]);
        let events = parse_chunked(&raw, &[]);
        let mut out = BytesMut::new();
        for ev in &events {
            sse::encode(ev.event.as_deref(), &ev.data, &mut out);
        }
        let again = parse_chunked(&out, &cuts);
        prop_assert_eq!(again.len(), events.len());
        for (a, b) in again.iter().zip(&events) {
            prop_assert_eq!(&a.event, &b.event);
            prop_assert_eq!(&a.data, &b.data);
        }
        // And through the typed model for the Anthropic recordings.
        if STREAMS[idx].starts_with("anthropic/") {
            let mut typed_out = BytesMut::new();
            for ev in &events {
                match sse::typed_event(ev) {
                    Ok(t) => sse::encode_event(&t, &mut typed_out),
                    Err(e) => sse::encode_error(&e, &mut typed_out),
                }
            }
            let re = parse_chunked(&typed_out, &cuts);
            prop_assert_eq!(re.len(), events.len());
            for (a, b) in re.iter().zip(&events) {
                prop_assert_eq!(&a.event, &b.event);
                let (va, vb): (Value, Value) = (serde_json::from_str(&a.data).expect("json"), serde_json::from_str(&b.data).expect("json"));
                if a.event.as_deref() == Some("error") {
                    prop_assert_eq!(&va["error"]["type"], &vb["error"]["type"]);
                    prop_assert_eq!(&va["error"]["message"], &vb["error"]["message"]);
                } else {
                    prop_assert_eq!(va, vb);
                }
            }
        }
    }

    #[test]
    fn arbitrary_data_lines_round_trip(name in proptest::option::of("[a-z_]{1,12}"), data in "[^\r]{0,64}") {
        let mut out = BytesMut::new();
        sse::encode(name.as_deref(), &data, &mut out);
        let evs = parse_chunked(&out, &[]);
        prop_assert_eq!(evs.len(), 1);
        prop_assert_eq!(&evs[0].data, &data);
        prop_assert_eq!(&evs[0].event, &name);
    }

    #[test]
    fn requests_round_trip_with_unknown_fields_and_blocks(req in request()) {
        let bytes = serde_json::to_vec(&req).expect("json");
        let typed = ai_gateway::core::codec::parse_json(&bytes).expect("valid request");
        prop_assert_eq!(serde_json::to_value(&typed).expect("json"), req);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = ai_gateway::core::codec::parse_json(&bytes);
        let mut p = SseParser::new();
        p.feed(&bytes);
        while let Some(ev) = p.next_event() {
            if let Ok(ev) = ev {
                let _ = sse::typed_event(&ev);
            }
        }
    }
}

#[test]
fn typed_request_is_the_expected_shape() {
    let r: MessagesRequest = serde_json::from_value(json!({
        "model": "m", "max_tokens": 5, "system": "be nice",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    }))
    .expect("request");
    assert_eq!(r.max_tokens, Some(5));
    assert!(matches!(r.system, Some(ai_gateway::core::Content::Text(_))));
}

#[test]
fn deep_nesting_on_the_slow_path_is_refused_shallow_is_fine() {
    // A tool result whose content holds a tool result ..., each with `type` written last.
    fn nested(depth: usize) -> Value {
        let mut v = json!({"text": "leaf", "type": "text"});
        for _ in 0..depth {
            v = json!({"tool_use_id": "t", "content": [v], "type": "tool_result"});
        }
        json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [v]}]})
    }
    let ok = serde_json::to_vec(&nested(2)).expect("json");
    let typed = ai_gateway::core::codec::parse_json(&ok).expect("two levels are what the API uses");
    assert_eq!(
        serde_json::to_value(&typed).expect("json"),
        serde_json::from_slice::<Value>(&ok).expect("json")
    );
    let deep = serde_json::to_vec(&nested(40)).expect("json");
    let err = ai_gateway::core::codec::parse_json(&deep).expect_err("refused");
    assert_eq!(err.status(), 400);
    assert!(
        err.message().contains("nested too deeply"),
        "{}",
        err.message()
    );
}

/// Folds stream events into a message the way the official SDKs do (`accumulate_event`).
fn accumulate(events: Vec<StreamEvent>) -> Value {
    let mut msg = Value::Null;
    let mut json_bufs: Vec<String> = Vec::new();
    for ev in events {
        let ev = serde_json::to_value(&ev).expect("ser");
        match ev["type"].as_str().expect("type") {
            "message_start" => msg = ev["message"].clone(),
            "content_block_start" => {
                msg["content"]
                    .as_array_mut()
                    .expect("content")
                    .push(ev["content_block"].clone());
                json_bufs.push(String::new());
            }
            "content_block_delta" => {
                let i = ev["index"].as_u64().expect("index") as usize;
                let block = &mut msg["content"][i];
                let d = &ev["delta"];
                match d["type"].as_str().expect("delta type") {
                    "text_delta" => {
                        let t = format!(
                            "{}{}",
                            block["text"].as_str().unwrap_or(""),
                            d["text"].as_str().expect("text")
                        );
                        block["text"] = json!(t);
                    }
                    "thinking_delta" => {
                        let t = format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap_or(""),
                            d["thinking"].as_str().expect("thinking")
                        );
                        block["thinking"] = json!(t);
                    }
                    "signature_delta" => block["signature"] = d["signature"].clone(),
                    "citations_delta" => match block["citations"].as_array_mut() {
                        Some(list) => list.push(d["citation"].clone()),
                        None => block["citations"] = json!([d["citation"].clone()]),
                    },
                    "input_json_delta" => {
                        json_bufs[i].push_str(d["partial_json"].as_str().expect("partial"));
                        block["input"] =
                            serde_json::from_str(&json_bufs[i]).expect("whole json at the end");
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "message_delta" => {
                msg["stop_reason"] = ev["delta"]["stop_reason"].clone();
                msg["stop_sequence"] = ev["delta"]["stop_sequence"].clone();
                for (k, v) in ev["usage"].as_object().expect("usage") {
                    msg["usage"][k] = v.clone();
                }
            }
            "content_block_stop" | "message_stop" | "ping" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    msg
}

#[test]
fn a_whole_message_as_events_accumulates_back_to_itself() {
    let mut finals: Vec<Value> = [
        "stream_text",
        "stream_thinking",
        "stream_tool_use",
        "stream_tool_use_docs",
    ]
    .iter()
    .map(|n| {
        serde_json::from_slice::<Value>(&fixture(&format!("expected/anthropic/{n}.json")))
            .expect("json")["final"]
            .clone()
    })
    .collect();
    finals.push(serde_json::from_slice(&fixture("anthropic/message_basic.json")).expect("json"));
    finals.push(
        serde_json::from_slice(&fixture("anthropic/message_cache_usage.json")).expect("json"),
    );
    // Citations, an unknown block type and a tool input with numbers Value would change.
    finals.push(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [
            {"type": "text", "text": "cited", "citations": [{"type": "char_location", "cited_text": "x"}, {"type": "char_location", "cited_text": "y"}]},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            {"type": "tool_use", "id": "toolu_1", "name": "t", "input": {"n": 1.5, "s": "\u{1F600}"}},
            {"type": "redacted_thinking", "data": "abc"}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 4, "service_tier": "standard"}
    }));
    for expected in finals {
        let typed: MessagesResponse = serde_json::from_value(expected.clone()).expect("typed");
        let events = typed.into_stream_events();
        assert!(matches!(events.first(), Some(StreamEvent::MessageStart(_))));
        assert!(matches!(events.last(), Some(StreamEvent::MessageStop(_))));
        assert_eq!(accumulate(events), expected);
    }
}

#[test]
fn what_the_gateway_does_not_model_is_forwarded_byte_for_byte() {
    // Unknown fields at every level and tool input: numbers beyond 64 bits and f64, long
    // decimals, escapes (incl. NUL and a surrogate pair), key order, whitespace.
    let odd = r#"{"big": 18446744073709551617, "neg": -99999999999999999999999, "dec": 0.1000000000000000055511151231257827021181583404541015625, "exp": 1E+400, "esc": "\u0000 \ud83d\ude00 \/ \"q\" \u00e9", "z": 1, "a": [ {"y": 2, "x": 1} ]}"#;
    let body = format!(
        r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":[{{"type":"text","text":"hi","unknown_block_field":{odd}}},{{"type":"future_block","payload":{odd}}}],"unknown_msg":{odd}}},{{"role":"assistant","content":[{{"type":"tool_use","id":"t1","name":"f","input":{odd}}}]}}],"tools":[{{"name":"f","input_schema":{odd}}}],"metadata":{odd},"unknown_top":{odd}}}"#
    );
    // Values stay byte for byte; members the gateway does not model follow the modelled
    // ones (here they already do, so the whole body comes out unchanged).
    let typed: MessagesRequest = serde_json::from_str(&body).expect("typed");
    let out = serde_json::to_string(&typed).expect("ser");
    assert_eq!(out.matches(odd).count(), 7, "{out}");
    assert_eq!(out, body);
}

#[test]
fn a_key_twice_in_one_object_is_refused() {
    // Parsers disagree on which copy wins; the gateway must read what the upstream acts on.
    for body in [
        r#"{"model":"a","model":"b","max_tokens":1,"messages":[]}"#,
        r#"{"model":"a","max_tokens":1,"messages":[],"x":1,"x":2}"#,
        r#"{"model":"a","max_tokens":1,"messages":[{"role":"user","content":[{"type":"zzz","type":"text","text":"t"}]}]}"#,
        r#"{"model":"a","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","type":"zzz","text":"t"}]}]}"#,
        r#"{"model":"a","max_tokens":1,"messages":[{"role":"user","content":[{"text":"t","type":"text","type":"zzz"}]}]}"#,
        r#"{"model":"a","max_tokens":1,"messages":[{"role":"user","content":[{"type":"zzz","k":1,"k":2}]}]}"#,
    ] {
        let err = serde_json::from_str::<MessagesRequest>(body).expect_err(body);
        assert!(err.to_string().contains("duplicate field"), "{body}: {err}");
    }
}

#[test]
fn an_explicit_null_in_a_raw_field_is_forwarded() {
    let body = r#"{"model":"a","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"t","cache_control":null}]}],"tool_choice":null,"metadata":null}"#;
    let typed: MessagesRequest = serde_json::from_str(body).expect("typed");
    assert_eq!(serde_json::to_string(&typed).expect("ser"), body);
}
