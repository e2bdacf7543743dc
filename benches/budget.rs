//! ai-budget: reserve + settle per request on `MemoryStore` (3 budgets) and on
//! `RedisStore` (a real `redis-server` on 127.0.0.1, one round trip each way); the
//! pricing of a usage; the per-delta running-cost check of the mid-stream cut-off, and a
//! 1,000-delta stream through the cut-off against the bare stream (same run); the whole
//! layer per request against the same inner service without it.

#![allow(missing_docs)]

use ai_gateway::budget::{
    Budget, BudgetLayer, BudgetPolicy, Hold, MemoryStore, Period, PriceTable, RedisStore,
    Reservation, RunningCost, Scope, Settle, Store,
};
use ai_gateway::core::test_util::{MockProvider, Script};
use ai_gateway::core::{AiBody, MessagesRequest, Principal, StreamEvent, Usage};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::StreamExt;
use std::time::Duration;
use tower::{Layer, ServiceExt};

#[path = "../crates/ai-ratelimit/tests/support/redis_server.rs"]
mod redis_server;

const REQUEST: &[u8] = include_bytes!("data/request_2k.json");

/// Three budgets a request typically meets: its user's day, its team's month, its
/// tenant's lifetime.
fn holds() -> Vec<Hold> {
    [
        "aib:{subject:alice}:u:2026-12-02",
        "aib:{team:eng}:t:2026-12",
        "aib:{tenant:acme}:x:all",
    ]
    .iter()
    .map(|k| Hold {
        key: (*k).to_owned(),
        cap: u64::MAX / 4,
        flexible: false,
        expires_us: None,
    })
    .collect()
}

fn settles(holds: &[Hold]) -> Vec<Settle> {
    holds
        .iter()
        .map(|h| Settle {
            key: h.key.clone(),
            release: 30_000_000,
            spend: 12_000_000,
            expires_us: None,
        })
        .collect()
}

fn policy(cut_off: bool) -> BudgetPolicy {
    let big = "1000000".parse().expect("usd");
    BudgetPolicy::new(vec![
        Budget::new("user", Scope::Subject, big, Period::Daily),
        Budget::new("team", Scope::Team, big, Period::Monthly).cut_off(cut_off),
        Budget::new("tenant", Scope::Tenant, big, Period::Lifetime),
    ])
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("budget");

    let store = MemoryStore::new();
    let holds = holds();
    let settle = settles(&holds);
    g.bench_function("memory/reserve_settle_3_budgets", |b| {
        b.iter(|| {
            let r = store.reserve_now(&holds, 30_000_000, 30_000_000);
            assert!(matches!(r, Reservation::Granted { .. }));
            store.settle_now(&settle);
        })
    });

    let prices = PriceTable::defaults();
    let sonnet = prices.price("claude-sonnet-4-5").expect("listed").clone();
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 3, "cache_creation_input_tokens": 418, "cache_read_input_tokens": 1111,
        "output_tokens": 33, "cache_creation": {"ephemeral_5m_input_tokens": 418, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard"
    }))
    .expect("usage");
    g.bench_function("price/cost_of_a_cache_usage", |b| {
        b.iter(|| sonnet.cost(std::hint::black_box(&usage)))
    });

    // The per-delta check alone: one add, one divide-by-4, one compare.
    let mut check = RunningCost::new(u64::MAX / 2000, sonnet.clone());
    check.start(&Usage {
        input_tokens: Some(1000),
        ..Default::default()
    });
    g.bench_function("cutoff/running_cost_check_1000_deltas", |b| {
        b.iter(|| {
            let mut c = check.clone();
            for _ in 0..1000 {
                assert!(c.admit(std::hint::black_box(24)));
            }
            c
        })
    });

    // A 1,000-delta stream (24,000 bytes, counted as 6,000 output tokens) through the
    // whole layer, held to less than its upper bound by a cut-off budget ($0.11 of a
    // $0.125 bound) that still pays for every delta, against the same stream with no
    // budget layer (baseline, same run). Each iteration gets a fresh budget.
    let mut events: Vec<StreamEvent> = ai_gateway::core::sse::parse_all(include_bytes!(
        "../tests/fixtures/anthropic/stream_text.sse"
    ))
    .into_iter()
    .map(|e| e.expect("event"))
    .collect();
    if let StreamEvent::MessageStart(m) = &mut events[0] {
        m.message.model = "claude-sonnet-4-5".into();
    }
    let tail = events.split_off(3);
    for _ in 0..1000 {
        events.push(StreamEvent::text_delta(0, "a short streamed chunk!!"));
    }
    events.extend(tail.into_iter().skip(3));
    let streamed = MockProvider::always(Script::Events {
        items: events.into_iter().map(Ok).collect(),
        delay: Duration::ZERO,
    })
    .without_recording();
    let who = Principal {
        tenant: Some("acme".into()),
        team: Some("eng".into()),
        ..Principal::new("alice")
    };
    let body: MessagesRequest = serde_json::from_slice(REQUEST).expect("request");
    let request = |stream: bool| {
        let mut b = body.clone();
        b.stream = Some(stream);
        b.max_tokens = Some(8192);
        b.model = "claude-sonnet-4-5".into();
        let mut r = http::Request::new(b);
        r.extensions_mut().insert(who.clone());
        r
    };
    let drain = |resp: http::Response<AiBody>| async move {
        let AiBody::Events(mut s) = resp.into_body() else {
            panic!("a stream")
        };
        let mut n = 0;
        while let Some(ev) = s.next().await {
            if let Ok(StreamEvent::MessageDelta(d)) = &ev {
                assert_ne!(d.delta.stop_reason.as_deref(), Some("budget_exceeded"));
            }
            n += 1;
        }
        assert!(n > 1000, "the whole stream");
        n
    };
    g.bench_function("stream_1000_deltas/baseline_no_layer", |b| {
        b.to_async(&rt).iter_batched(
            || (streamed.clone(), request(true)),
            |(svc, req)| async move { drain(svc.oneshot(req).await.expect("ok")).await },
            BatchSize::SmallInput,
        )
    });
    let tight = || {
        let mut p = policy(true);
        p.budgets[1].cap = "0.11".parse().expect("usd");
        BudgetLayer::new(p, prices.clone()).layer(streamed.clone())
    };
    g.bench_function("stream_1000_deltas/3_budgets_with_cut_off", |b| {
        b.to_async(&rt).iter_batched(
            || (tight(), request(true)),
            |(svc, req)| async move { drain(svc.oneshot(req).await.expect("ok")).await },
            BatchSize::SmallInput,
        )
    });

    // The whole layer per non-streaming request (plan, reserve, price, settle, headers).
    let mock = MockProvider::always(Script::text("ok")).without_recording();
    g.bench_function("layer/baseline_no_layer", |b| {
        b.to_async(&rt).iter_batched(
            || (mock.clone(), request(false)),
            |(svc, req)| async move { svc.oneshot(req).await.expect("ok") },
            BatchSize::SmallInput,
        )
    });
    let layered = BudgetLayer::new(policy(false), PriceTable::defaults()).layer(mock.clone());
    g.bench_function("layer/3_budgets_memory", |b| {
        b.to_async(&rt).iter_batched(
            || (layered.clone(), request(false)),
            |(svc, req)| async move { svc.oneshot(req).await.expect("ok") },
            BatchSize::SmallInput,
        )
    });

    let server = redis_server::RedisServer::start();
    let redis = rt.block_on(async {
        RedisStore::connect(&server.url(), Duration::from_secs(2)).expect("client")
    });
    g.bench_function("redis/reserve_settle_3_budgets", |b| {
        b.to_async(&rt).iter(|| {
            let (redis, holds, settle) = (&redis, &holds, &settle);
            async move {
                let r = redis
                    .reserve(holds, 30_000_000, 30_000_000)
                    .await
                    .expect("redis");
                assert!(matches!(r, Reservation::Granted { .. }));
                redis.settle(settle).await.expect("redis");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
