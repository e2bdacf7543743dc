//! DESIGN.md section 7, streaming: per-event cost of SSE parse + typed decode + encode on
//! a recorded stream (the 2 us-per-event budget covers the whole chain; this is the
//! framing and JSON part of it).
//!
//! `baseline/memchr_split` only finds the event boundaries, the floor any SSE proxy pays.

#![allow(missing_docs)]

use ai_gateway::core::sse::{self, SseParser};
use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use futures_util::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tower::ServiceExt;

const THINKING: &[u8] = include_bytes!("../tests/fixtures/anthropic/stream_thinking.sse");
const TOOL_USE: &[u8] = include_bytes!("../tests/fixtures/anthropic/stream_tool_use_docs.sse");

fn count_events(raw: &[u8]) -> u64 {
    let mut p = SseParser::new();
    p.feed(raw);
    let mut n = 0;
    while let Some(ev) = p.next_event() {
        ev.expect("valid");
        n += 1;
    }
    n
}

/// Feeds the stream in 512-byte chunks, as a network read would deliver it.
fn run(raw: &[u8], typed: bool, encode: bool, out: &mut BytesMut) -> usize {
    let mut p = SseParser::new();
    let mut n = 0;
    for chunk in raw.chunks(512) {
        p.feed(chunk);
        while let Some(ev) = p.next_event() {
            let ev = ev.expect("valid");
            if typed {
                match sse::typed_event(&ev) {
                    Ok(t) if encode => sse::encode_event(&t, out),
                    Ok(t) => {
                        black_box(t);
                    }
                    Err(e) => sse::encode_error(&e, out),
                }
            } else if encode {
                sse::encode(ev.event.as_deref(), &ev.data, out);
            }
            n += 1;
            out.clear();
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    for (name, raw) in [("thinking", THINKING), ("tool_use", TOOL_USE)] {
        let mut g = c.benchmark_group(format!("sse/{name}"));
        g.throughput(Throughput::Elements(count_events(raw)));
        let mut out = BytesMut::with_capacity(4096);
        g.bench_function("parse", |b| {
            b.iter(|| run(black_box(raw), false, false, &mut out))
        });
        g.bench_function("parse_typed", |b| {
            b.iter(|| run(black_box(raw), true, false, &mut out))
        });
        g.bench_function("parse_typed_encode", |b| {
            b.iter(|| run(black_box(raw), true, true, &mut out))
        });
        g.bench_function("baseline/memchr_split", |b| {
            b.iter(|| memchr_count(black_box(raw)))
        });
        g.finish();
    }
    body_events(c);
}

/// The provider's decode path: [`sse::BodyEvents`] over an HTTP body delivering the stream
/// in 512-byte frames, polled to the end (every check a provider runs per chunk and per
/// event is in it), bare and behind tower-http's decompression (identity, and gzip).
/// Baseline: the same frames through the bare parse + typed loop.
fn body_events(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (name, raw) in [("thinking", THINKING), ("tool_use", TOOL_USE)] {
        let mut g = c.benchmark_group(format!("sse_body/{name}"));
        g.throughput(Throughput::Elements(count_events(raw)));
        let frames: Vec<Bytes> = raw.chunks(512).map(Bytes::copy_from_slice).collect();
        g.bench_function("body_events", |b| {
            b.to_async(&rt).iter_batched(
                || frames.clone(),
                |frames| async move {
                    let body = StreamBody::new(futures_util::stream::iter(
                        frames
                            .into_iter()
                            .map(|f| Ok::<_, std::convert::Infallible>(Frame::data(f))),
                    ));
                    let mut events = sse::BodyEvents::new(body, None);
                    let mut n = 0usize;
                    while let Some(ev) = events.next().await {
                        black_box(ev.is_ok());
                        n += 1;
                    }
                    n
                },
                BatchSize::SmallInput,
            )
        });
        // The same body behind the provider's decompression layer: an identity answer
        // (what nearly every upstream sends) and a gzip one sent in 512-byte pieces.
        for (label, encoding) in [("identity", None), ("gzip", Some("gzip"))] {
            let pieces = match encoding {
                None => frames.clone(),
                Some(_) => gzip(raw).chunks(512).map(Bytes::copy_from_slice).collect(),
            };
            g.bench_function(format!("decompression_{label}/body_events"), |b| {
                b.to_async(&rt).iter_batched(
                    || pieces.clone(),
                    |pieces| async move {
                        let upstream = tower::service_fn(move |_req: http::Request<()>| {
                            let body = StreamBody::new(futures_util::stream::iter(
                                pieces
                                    .clone()
                                    .into_iter()
                                    .map(|f| Ok::<_, std::convert::Infallible>(Frame::data(f))),
                            ));
                            let mut resp = http::Response::new(body);
                            if let Some(e) = encoding {
                                resp.headers_mut().insert(
                                    http::header::CONTENT_ENCODING,
                                    http::HeaderValue::from_static(e),
                                );
                            }
                            async move { Ok::<_, std::convert::Infallible>(resp) }
                        });
                        let resp = tower_http::decompression::Decompression::new(upstream)
                            .oneshot(http::Request::new(()))
                            .await
                            .expect("response");
                        let mut events = sse::BodyEvents::new(resp.into_body(), None);
                        let mut n = 0usize;
                        while let Some(ev) = events.next().await {
                            black_box(ev.is_ok());
                            n += 1;
                        }
                        n
                    },
                    BatchSize::SmallInput,
                )
            });
        }
        let mut out = BytesMut::new();
        g.bench_function("baseline/parse_typed", |b| {
            b.iter(|| run(black_box(raw), true, false, &mut out))
        });
        g.finish();
    }
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(raw).expect("gzip");
    e.finish().expect("gzip")
}

fn memchr_count(raw: &[u8]) -> usize {
    raw.windows(2).filter(|w| w == b"\n\n").count()
}

criterion_group!(benches, bench);
criterion_main!(benches);
