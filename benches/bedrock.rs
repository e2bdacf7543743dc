//! Bedrock's event-stream framing decoded into canonical events, per event, over the
//! recorded Bedrock streams (frame CRCs checked, base64 payload decoded, the Anthropic
//! event parsed), against the same Anthropic events sent as plain SSE and decoded by the
//! Anthropic path in the same run.

#![allow(missing_docs)]

use ai_gateway::provider::bedrock::EventStreamDecoder;
use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::VecDeque;

const TEXT: &[u8] = include_bytes!("../tests/fixtures/bedrock/stream_text.eventstream");
const TOOL: &[u8] = include_bytes!("../tests/fixtures/bedrock/stream_tool_use.eventstream");

/// The same events as an Anthropic SSE body.
fn as_sse(raw: &[u8]) -> Vec<u8> {
    let mut d = EventStreamDecoder::new();
    let mut q = VecDeque::new();
    d.decode(raw, &mut q);
    let mut out = BytesMut::new();
    for ev in q {
        ai_gateway::core::sse::encode_event(&ev.expect("event"), &mut out);
    }
    out.to_vec()
}

fn decode(c: &mut Criterion) {
    for (name, raw) in [("text", TEXT), ("tool_use", TOOL)] {
        let sse = as_sse(raw);
        let n = ai_gateway::core::sse::parse_all(&sse).len();
        let mut g = c.benchmark_group(format!("bedrock/stream_{name}"));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("eventstream_frames_to_canonical_events", |b| {
            let mut q = VecDeque::with_capacity(64);
            b.iter(|| {
                let mut d = EventStreamDecoder::new();
                q.clear();
                d.decode(raw, &mut q);
                q.len()
            })
        });
        g.bench_function("frames_only_crc_checked", |b| {
            use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
            b.iter(|| {
                let mut buf = bytes::Bytes::from_static(raw);
                let mut d = MessageFrameDecoder::new();
                let mut n = 0;
                while let Ok(DecodedFrame::Complete(m)) = d.decode_frame(&mut buf) {
                    n += m.payload().len();
                }
                n
            })
        });
        g.bench_function("baseline_same_events_as_anthropic_sse", |b| {
            b.iter(|| ai_gateway::core::sse::parse_all(&sse).len())
        });
        g.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
