//! The OpenAI mapping (ai_core::openai): canonical -> OpenAI and back per 2 KB request,
//! an OpenAI answer -> canonical message, and the stream decoder per chunk over the
//! recorded OpenAI streams, against parsing the same chunks as plain JSON in the same run.

#![allow(missing_docs)]

use ai_gateway::core::MessagesRequest;
use ai_gateway::core::openai::{
    ChunkDecoder, MaxTokensField, from_chat_completion, from_chat_request, to_chat_request,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const REQUEST: &[u8] = include_bytes!("data/request_2k.json");
const TEXT: &[u8] = include_bytes!("../tests/fixtures/openai/stream_text.sse");
const TOOL: &[u8] = include_bytes!("../tests/fixtures/openai/stream_tool_use.sse");
const MESSAGE: &[u8] = include_bytes!("../tests/fixtures/openai/message_basic.json");

fn payloads(raw: &[u8]) -> Vec<String> {
    let mut p = ai_gateway::core::sse::SseParser::new();
    p.feed(raw);
    let mut out = Vec::new();
    while let Some(e) = p.next_event() {
        out.push(e.expect("sse").data);
    }
    out
}

fn requests(c: &mut Criterion) {
    let req: MessagesRequest = serde_json::from_slice(REQUEST).expect("request");
    let oa = to_chat_request(&req, MaxTokensField::MaxCompletionTokens);
    let oa_bytes = serde_json::to_vec(&oa).expect("json");
    let mut g = c.benchmark_group("openai/request_2k");
    g.bench_function("canonical_to_openai_bytes", |b| {
        b.iter(|| {
            serde_json::to_vec(&to_chat_request(&req, MaxTokensField::MaxCompletionTokens))
                .expect("json")
        })
    });
    g.bench_function("openai_bytes_to_canonical", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(&oa_bytes).expect("json");
            from_chat_request(&v).expect("canonical")
        })
    });
    g.bench_function("baseline_canonical_serialize", |b| {
        b.iter(|| serde_json::to_vec(&req).expect("json"))
    });
    g.bench_function("answer_to_canonical", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(MESSAGE).expect("json");
            from_chat_completion(&v).expect("message")
        })
    });
    g.finish();
}

fn chunks(c: &mut Criterion) {
    for (name, raw) in [("text", TEXT), ("tool_call", TOOL)] {
        let data = payloads(raw);
        let mut g = c.benchmark_group(format!("openai/stream_{name}"));
        g.throughput(Throughput::Elements(data.len() as u64));
        g.bench_function("decode_to_canonical_events", |b| {
            let mut out = Vec::with_capacity(64);
            b.iter(|| {
                let mut d = ChunkDecoder::new();
                out.clear();
                for p in &data {
                    d.chunk(p, &mut out).expect("chunk");
                }
                out.len()
            })
        });
        g.bench_function("baseline_parse_json_only", |b| {
            b.iter(|| {
                data.iter()
                    .filter(|p| p.as_str() != "[DONE]")
                    .map(|p| serde_json::from_str::<serde_json::Value>(p).map(|v| v.is_object()))
                    .filter(|r| matches!(r, Ok(true)))
                    .count()
            })
        });
        g.finish();
    }
}

/// Canonical events to OpenAI chunks (the OpenAI surface), per event, over the recorded
/// Anthropic thinking answer (its text deltas become chunks, thinking is skipped).
fn encode(c: &mut Criterion) {
    let raw = include_bytes!("../tests/fixtures/anthropic/stream_thinking.sse");
    let events: Vec<ai_gateway::core::StreamEvent> = ai_gateway::core::sse::parse_all(raw)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let mut g = c.benchmark_group("openai/encode_recorded_anthropic_stream");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("canonical_events_to_openai_chunks", |b| {
        let mut out = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            let mut e = ai_gateway::core::openai::ChunkEncoder::new(1_700_000_000, true);
            for ev in &events {
                e.event(ev, &mut out);
            }
            out.len()
        })
    });
    g.bench_function("baseline_anthropic_sse_encode", |b| {
        let mut out = bytes::BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            for ev in &events {
                ai_gateway::core::sse::encode_event(ev, &mut out);
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, requests, chunks, encode);
criterion_main!(benches);
