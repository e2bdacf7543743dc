//! DESIGN.md section 7, request path: decode + encode of a 2 KB Messages request, the
//! part of the 30 us budget that the edge codec and the provider spend on JSON.
//!
//! `baseline/serde_value_*` does the same work into a schemaless `serde_json::Value`
//! in the same run, so the typed model's cost reads as a ratio.

#![allow(missing_docs)]

use ai_gateway::core::MessagesRequest;
use ai_gateway::core::codec::parse_json;
use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};

const REQUEST: &[u8] = include_bytes!("data/request_2k.json");

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    g.bench_function("decode_2k_request", |b| {
        b.iter(|| parse_json(black_box(REQUEST)))
    });
    let typed: MessagesRequest = parse_json(REQUEST).expect("valid request");
    g.bench_function("encode_2k_request", |b| {
        b.iter(|| serde_json::to_vec(black_box(&typed)))
    });
    g.bench_function("decode_encode_2k_request", |b| {
        b.iter(|| {
            let r = parse_json(black_box(REQUEST)).expect("valid");
            serde_json::to_vec(&r)
        })
    });
    g.bench_function("baseline/serde_value_decode_encode_2k", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(black_box(REQUEST)).expect("valid");
            serde_json::to_vec(&v)
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
