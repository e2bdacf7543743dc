//! DESIGN.md section 7, request path: one request through the in-process chain (edge
//! codec + a scripted provider), non-streaming with a 2 KB body and streaming a
//! recorded response. `baseline/*` runs the same request through a bare `service_fn`
//! that returns canned bytes, so the codec's overhead reads as a difference in one run.

#![allow(missing_docs)]

use ai_gateway::core::test_util::{MockProvider, Script};
use ai_gateway::core::{MessagesCodecLayer, MessagesResponse};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

const REQUEST: &[u8] = include_bytes!("data/request_2k.json");
const MESSAGE: &[u8] = include_bytes!("../tests/fixtures/anthropic/message_basic.json");
const STREAM: &[u8] = include_bytes!("../tests/fixtures/anthropic/stream_thinking.sse");

fn request(stream: bool) -> Request<Full<Bytes>> {
    let body = if stream {
        let mut v: serde_json::Value = serde_json::from_slice(REQUEST).expect("json");
        v["stream"] = serde_json::json!(true);
        Bytes::from(serde_json::to_vec(&v).expect("json"))
    } else {
        Bytes::from_static(REQUEST)
    };
    Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(body))
        .expect("request")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let message: MessagesResponse = serde_json::from_slice(MESSAGE).expect("message");
    let events = ai_gateway::core::sse::parse_all(STREAM).len() as u64;

    let mut g = c.benchmark_group("chain");
    let svc = ServiceBuilder::new()
        .layer(MessagesCodecLayer::new())
        .service(MockProvider::always(Script::Message(message)).without_recording());
    g.bench_function("codec_mock/message_2k", |b| {
        b.to_async(&rt).iter_batched(
            || (svc.clone(), request(false)),
            |(s, r)| async move {
                s.oneshot(r)
                    .await
                    .expect("ok")
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes()
            },
            BatchSize::SmallInput,
        )
    });
    let base = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let _ = req.into_body().collect().await;
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(MESSAGE))))
    });
    g.bench_function("baseline/bytes_passthrough_2k", |b| {
        b.to_async(&rt).iter_batched(
            || (base, request(false)),
            |(s, r)| async move {
                s.oneshot(r)
                    .await
                    .expect("ok")
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes()
            },
            BatchSize::SmallInput,
        )
    });

    g.throughput(Throughput::Elements(events));
    let svc = ServiceBuilder::new()
        .layer(MessagesCodecLayer::new())
        .service(MockProvider::always(Script::sse(STREAM)).without_recording());
    g.bench_function("codec_mock/stream_thinking_per_event", |b| {
        b.to_async(&rt).iter_batched(
            || (svc.clone(), request(true)),
            |(s, r)| async move {
                let mut body = s.oneshot(r).await.expect("ok").into_body();
                let mut n = 0usize;
                while let Some(f) = body.frame().await {
                    n += f.expect("frame").into_data().map(|d| d.len()).unwrap_or(0);
                }
                n
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
