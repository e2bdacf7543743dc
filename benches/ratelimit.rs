//! ai-ratelimit: check + reserve + settle per request on `MemoryStore` (3 limits, with
//! and without building the keys) and on `RedisStore` (a real `redis-server` on
//! 127.0.0.1, one round trip each way); the input-token estimate of the 2 KB request; and
//! the whole layer per request against the same inner service without it (baseline, same
//! run).

#![allow(missing_docs)]

use ai_gateway::core::test_util::{MockProvider, Script};
use ai_gateway::core::{MessagesRequest, Principal};
use ai_gateway::ratelimit::{
    Adjust, Admission, Charge, Gauge, KeyPart, Limit, MemoryStore, Policy, Rate, RateLimitLayer,
    RedisStore, Store,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::time::Duration;
use tower::{Layer, ServiceExt};

#[path = "../crates/ai-ratelimit/tests/support/redis_server.rs"]
mod redis_server;

const REQUEST: &[u8] = include_bytes!("data/request_2k.json");

/// Three limits a request typically meets: its user's requests, its tenant's input
/// tokens, its model's output tokens.
fn charges() -> Vec<Charge> {
    let big = Rate::per_second(1_000_000_000);
    vec![
        Charge {
            key: "rl:{t=acme}:user:r:subject=alice".into(),
            gauge: Gauge::Rate(big),
            cost: 1,
        },
        Charge {
            key: "rl:{t=acme}:tenant:i:tenant=acme".into(),
            gauge: Gauge::Rate(big),
            cost: 600,
        },
        Charge {
            key: "rl:{t=acme}:model:o:model=claude-sonnet-4-5".into(),
            gauge: Gauge::Rate(big),
            cost: 1024,
        },
    ]
}

fn settles(charges: &[Charge]) -> Vec<Adjust<'_>> {
    charges[1..]
        .iter()
        .map(|c| Adjust {
            key: &c.key,
            gauge: c.gauge,
            delta: -(c.cost as i64) / 2,
        })
        .collect()
}

fn policy() -> Policy {
    let big = Rate::per_second(1_000_000_000);
    Policy::new()
        .limit(Limit::new("user").by([KeyPart::Subject]).requests(big))
        .limit(Limit::new("tenant").by([KeyPart::Tenant]).input_tokens(big))
        .limit(Limit::new("model").by([KeyPart::Model]).output_tokens(big))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("ratelimit");

    let store = MemoryStore::new();
    let charges = charges();
    let adjust = settles(&charges);
    let mut now = 1_700_000_000_000_000u64;
    g.bench_function("memory/check_reserve_settle_3_limits", |b| {
        b.iter(|| {
            now += 1;
            let a = store.acquire_now(now, &charges);
            assert!(matches!(a, Admission::Admitted(_)));
            store.settle_now(now, &adjust);
        })
    });

    let who = Principal {
        tenant: Some("acme".into()),
        ..Principal::new("alice")
    };
    let limits: Vec<Limit> = policy().limits;
    let cx = ai_gateway::ratelimit::KeyContext {
        principal: &who,
        credential: None,
        model: Some("claude-sonnet-4-5"),
    };
    g.bench_function("memory/keys_check_reserve_settle_3_limits", |b| {
        b.iter(|| {
            now += 1;
            let ch: Vec<Charge> = limits
                .iter()
                .zip([
                    ai_gateway::ratelimit::Axis::Requests,
                    ai_gateway::ratelimit::Axis::InputTokens,
                    ai_gateway::ratelimit::Axis::OutputTokens,
                ])
                .zip(&charges)
                .map(|((l, axis), c)| Charge {
                    key: l.key(axis, &cx).expect("key"),
                    gauge: c.gauge,
                    cost: c.cost,
                })
                .collect();
            let a = store.acquire_now(now, &ch);
            assert!(matches!(a, Admission::Admitted(_)));
            store.settle_now(now, &settles(&ch));
        })
    });

    let body: MessagesRequest = serde_json::from_slice(REQUEST).expect("request");
    g.bench_function("estimate_request_2k", |b| {
        b.iter(|| ai_gateway::core::tokens::estimate_request(std::hint::black_box(&body)))
    });

    // The whole layer per request (keys, one check, headers, the settle on completion)
    // against the same mock provider without it.
    let mock = MockProvider::always(Script::text("ok")).without_recording();
    let limited = RateLimitLayer::new(policy()).layer(mock.clone());
    let request = || {
        let mut r = http::Request::new(body.clone());
        r.extensions_mut().insert(who.clone());
        r
    };
    g.bench_function("layer/baseline_no_layer", |b| {
        b.to_async(&rt).iter_batched(
            || (mock.clone(), request()),
            |(svc, req)| async move { svc.oneshot(req).await.expect("ok") },
            BatchSize::SmallInput,
        )
    });
    let empty = RateLimitLayer::new(Policy::new()).layer(mock.clone());
    g.bench_function("layer/no_limits", |b| {
        b.to_async(&rt).iter_batched(
            || (empty.clone(), request()),
            |(svc, req)| async move { svc.oneshot(req).await.expect("ok") },
            BatchSize::SmallInput,
        )
    });
    let one = RateLimitLayer::new(
        Policy::new().limit(
            Limit::new("user")
                .by([KeyPart::Subject])
                .requests(Rate::per_second(1_000_000_000)),
        ),
    )
    .layer(mock.clone());
    g.bench_function("layer/1_limit_memory", |b| {
        b.to_async(&rt).iter_batched(
            || (one.clone(), request()),
            |(svc, req)| async move { svc.oneshot(req).await.expect("ok") },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("layer/3_limits_memory", |b| {
        b.to_async(&rt).iter_batched(
            || (limited.clone(), request()),
            |(svc, req)| async move { svc.oneshot(req).await.expect("ok") },
            BatchSize::SmallInput,
        )
    });

    let server = redis_server::RedisServer::start();
    let redis = rt.block_on(async {
        RedisStore::connect(&server.url(), Duration::from_secs(2)).expect("client")
    });
    g.bench_function("redis/check_reserve_settle_3_limits", |b| {
        b.to_async(&rt).iter(|| {
            now += 1;
            let (redis, charges, adjust) = (&redis, &charges, &adjust);
            async move {
                let a = redis.acquire(now, charges).await.expect("redis");
                assert!(matches!(a, Admission::Admitted(_)));
                redis.settle(now, 0, adjust).await.expect("redis");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
