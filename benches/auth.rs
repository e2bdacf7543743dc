//! ai-auth: the cost of a gateway-key check per request (id lookup among 10,000 keys,
//! HMAC-SHA256 of the secret, constant-time comparison, principal into the extensions,
//! credential headers removed). Baseline: the same request through the same inner
//! service with no layer, in the same run.

#![allow(missing_docs)]

use ai_gateway::auth::{AuthLayer, KeyHasher, KeyRecord, MemoryKeys, MintedKey};
use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, ServiceExt};

type Answer = Result<Response<Full<Bytes>>, std::convert::Infallible>;

fn answer(_req: Request<()>) -> std::future::Ready<Answer> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
}

fn inner() -> tower::util::ServiceFn<fn(Request<()>) -> std::future::Ready<Answer>> {
    tower::service_fn(answer as fn(Request<()>) -> std::future::Ready<Answer>)
}

fn request(key: &str) -> Request<()> {
    Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", key)
        .body(())
        .expect("request")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let hasher = KeyHasher::new(b"pepper for the benchmark").expect("pepper");
    let mut records = Vec::new();
    let mut key = String::new();
    for i in 0..10_000 {
        let m = MintedKey::generate(&hasher).expect("mint");
        if i == 5_000 {
            key = m.key.clone();
        }
        let r: KeyRecord = serde_json::from_value(serde_json::json!({
            "id": m.id, "hash": m.hash, "subject": format!("user-{i}"), "tenant": "acme",
            "team": "search", "tier": "pro", "scopes": ["messages"], "models": ["claude-*"],
        }))
        .expect("record");
        records.push(r);
    }
    let auth = AuthLayer::keys(MemoryKeys::new(records).expect("store"), hasher);

    let mut g = c.benchmark_group("auth");
    let guarded = auth.layer(inner());
    g.bench_function("gateway_key", |b| {
        b.to_async(&rt).iter_batched(
            || (guarded.clone(), request(&key)),
            |(s, r)| async move { s.oneshot(r).await.expect("ok").status() },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("unknown_key", |b| {
        let unknown = format!("gwk_0000000000000000_{}", &key[21..]);
        b.to_async(&rt).iter_batched(
            || (guarded.clone(), request(&unknown)),
            |(s, r)| async move { s.oneshot(r).await.expect("ok").status() },
            BatchSize::SmallInput,
        )
    });
    let bare = inner();
    g.bench_function("baseline/no_layer", |b| {
        b.to_async(&rt).iter_batched(
            || (bare, request(&key)),
            |(s, r)| async move { s.oneshot(r).await.expect("ok").status() },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
