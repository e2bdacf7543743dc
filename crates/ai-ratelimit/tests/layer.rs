//! The layer: virtual time for refill, burst and `retry-after`; several limits at once;
//! reserve-then-settle under 50 concurrent streams (cancelled, failing); the overflow
//! queue; headers; store failure; the plain HTTP mode.

use ai_core::test_util::{MockProvider, Script};
use ai_core::{AiBody, AiError, Completion, ErrorKind, Message, MessagesRequest, Principal, Role};
use ai_ratelimit::{Axis, KeyPart, Limit, Policy, Rate, RateLimitLayer, Tier};
use futures_util::StreamExt;
use http::{HeaderValue, Request, Response};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

fn who(subject: &str, tenant: &str, tier: Option<&str>) -> Principal {
    Principal {
        tenant: Some(tenant.into()),
        tier: tier.map(Into::into),
        ..Principal::new(subject)
    }
}

fn request(p: &Principal, model: &str, max_tokens: u32, text: &str) -> Request<MessagesRequest> {
    let body = MessagesRequest {
        model: model.into(),
        max_tokens: Some(max_tokens),
        messages: vec![Message {
            role: Role::User,
            content: ai_core::Content::Text(text.to_owned()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut r = Request::new(body);
    r.extensions_mut().insert(p.clone());
    r
}

async fn standing(
    layer: &RateLimitLayer,
    p: &Principal,
    model: &str,
    name: &str,
    axis: Axis,
) -> u64 {
    layer
        .standing(p, None, Some(model))
        .await
        .expect("store")
        .into_iter()
        .find(|(l, a, _)| &*l.name == name && *a == axis)
        .map(|(_, _, s)| s.remaining)
        .expect("meter")
}

fn header(r: &Response<AiBody>, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn refill_burst_and_retry_after_in_virtual_time() {
    let policy = Policy::new().limit(
        Limit::new("user")
            .by([KeyPart::Subject])
            .requests(Rate::per_minute(3)),
    );
    let layer = RateLimitLayer::new(policy);
    let svc = layer.layer(MockProvider::always(Script::text("ok")));
    let bob = who("bob", "acme", None);
    for left in [2, 1, 0] {
        let r = svc
            .clone()
            .oneshot(request(&bob, "m", 10, "hi"))
            .await
            .expect("within burst");
        assert_eq!(
            header(&r, "anthropic-ratelimit-requests-remaining"),
            left.to_string()
        );
        assert_eq!(header(&r, "anthropic-ratelimit-requests-limit"), "3");
        // Full again in (3 - left) * 20 s, as an RFC 3339 instant.
        let reset = humantime::parse_rfc3339(&header(&r, "anthropic-ratelimit-requests-reset"))
            .expect("rfc3339");
        let wall = std::time::UNIX_EPOCH + Duration::from_micros(layer.clock().now_us());
        let ahead = reset.duration_since(wall).unwrap_or_default().as_secs_f64();
        assert!(
            (ahead - f64::from(3 - left) * 20.0).abs() <= 1.0,
            "reset {ahead}s ahead"
        );
    }
    let e = svc
        .clone()
        .oneshot(request(&bob, "m", 10, "hi"))
        .await
        .expect_err("4th");
    assert_eq!(e.kind(), ErrorKind::RateLimit);
    assert_eq!(e.status(), 429);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(20)));
    assert_eq!(e.headers()["retry-after-ms"], "20000");
    assert!(
        e.message().contains("requests per minute per subject"),
        "{}",
        e.message()
    );
    // Another caller is not affected.
    svc.clone()
        .oneshot(request(&who("ann", "acme", None), "m", 10, "hi"))
        .await
        .expect("ann");
    tokio::time::advance(Duration::from_millis(19_999)).await;
    assert!(
        svc.clone()
            .oneshot(request(&bob, "m", 10, "hi"))
            .await
            .is_err()
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    svc.clone()
        .oneshot(request(&bob, "m", 10, "hi"))
        .await
        .expect("refilled one");
    // A minute idle refills the whole burst, and no more.
    tokio::time::advance(Duration::from_secs(600)).await;
    for _ in 0..3 {
        svc.clone()
            .oneshot(request(&bob, "m", 10, "hi"))
            .await
            .expect("burst");
    }
    assert!(
        svc.clone()
            .oneshot(request(&bob, "m", 10, "hi"))
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn several_limits_at_once_and_the_refusal_names_the_one_that_bit() {
    let policy = Policy::new()
        .limit(
            Limit::new("per-user")
                .by([KeyPart::Subject])
                .requests(Rate::per_minute(100)),
        )
        .limit(
            Limit::new("per-tenant")
                .by([KeyPart::Tenant])
                .input_tokens(Rate::per_minute(1_000)),
        )
        .limit(
            Limit::new("per-model")
                .by([KeyPart::Model])
                .requests(Rate::per_minute(100)),
        );
    let layer = RateLimitLayer::new(policy);
    let Script::Message(mut answer) = Script::text("ok") else {
        unreachable!()
    };
    answer.usage.input_tokens = Some(400);
    let svc = layer.layer(MockProvider::always(Script::Message(answer)));
    // Each request is estimated at 4 + 1600 / 4 = 404 input tokens, and really costs 400.
    let text = "x".repeat(1_600);
    let alice = who("alice", "acme", None);
    let bob = who("bob", "acme", None);
    let r = svc
        .clone()
        .oneshot(request(&alice, "m", 10, &text))
        .await
        .expect("first");
    // The header shows the reservation; the meter then settles on the real 400.
    assert_eq!(
        header(&r, "anthropic-ratelimit-input-tokens-remaining"),
        "596"
    );
    assert_eq!(
        standing(&layer, &alice, "m", "per-tenant", Axis::InputTokens).await,
        600
    );
    svc.clone()
        .oneshot(request(&bob, "m", 10, &text))
        .await
        .expect("second");
    assert_eq!(
        standing(&layer, &bob, "m", "per-tenant", Axis::InputTokens).await,
        200
    );
    let e = svc
        .clone()
        .oneshot(request(&alice, "m", 10, &text))
        .await
        .expect_err("over the tenant");
    assert!(
        e.message().contains("input tokens per minute per tenant"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("per-tenant"));
    // 204 tokens short at 1000 a minute: 12.24 s.
    assert_eq!(e.retry_after(), Some(Duration::from_millis(12_240)));
    assert_eq!(
        e.headers()["anthropic-ratelimit-input-tokens-remaining"],
        "200"
    );
    // Another tenant has its own meter.
    svc.clone()
        .oneshot(request(
            &who("carl", "globex", None),
            "m",
            10,
            &"y".repeat(3_000),
        ))
        .await
        .expect("other tenant");
    assert!(!e.message().contains("globex"));
    // A request larger than the burst can never pass: 429 without retry-after.
    let e = svc
        .clone()
        .oneshot(request(&alice, "m", 10, &"z".repeat(8_000)))
        .await
        .expect_err("larger than the burst");
    assert_eq!(e.retry_after(), None);
    assert!(e.message().contains("reduce the input"), "{}", e.message());
}

#[tokio::test(start_paused = true)]
async fn tiers_take_effect_on_the_next_request() {
    let policy = Policy::new()
        .tier(
            "pilot",
            Tier::new([Limit::new("user")
                .by([KeyPart::Subject])
                .requests(Rate::per_minute(1))]),
        )
        .tier(
            "internal",
            Tier::new([Limit::new("user")
                .by([KeyPart::Subject])
                .requests(Rate::per_minute(10))]),
        )
        .default_tier("pilot");
    let svc = RateLimitLayer::new(policy).layer(MockProvider::always(Script::text("ok")));
    let pilot = who("dev", "acme", Some("pilot"));
    svc.clone()
        .oneshot(request(&pilot, "m", 10, "hi"))
        .await
        .expect("first");
    assert!(
        svc.clone()
            .oneshot(request(&pilot, "m", 10, "hi"))
            .await
            .is_err()
    );
    // Unknown tier: the default (pilot) applies.
    assert!(
        svc.clone()
            .oneshot(request(&who("dev", "acme", Some("nope")), "m", 10, "hi"))
            .await
            .is_err()
    );
    // Promoted: the same meter, a bigger limit, on the very next request.
    let internal = who("dev", "acme", Some("internal"));
    let r = svc
        .clone()
        .oneshot(request(&internal, "m", 10, "hi"))
        .await
        .expect("promoted");
    assert_eq!(header(&r, "anthropic-ratelimit-requests-remaining"), "8");
}

#[tokio::test]
async fn upstream_organisation_figures_never_reach_the_caller() {
    let upstream = tower::service_fn(|_req: Request<MessagesRequest>| async {
        let Script::Message(m) = Script::text("ok") else {
            unreachable!()
        };
        let mut r = Response::new(AiBody::from(m));
        for (k, v) in [
            ("anthropic-ratelimit-requests-limit", "4000"),
            ("anthropic-ratelimit-requests-remaining", "3999"),
            ("anthropic-ratelimit-tokens-remaining", "400000"),
            ("anthropic-priority-input-tokens-limit", "10000"),
            ("request-id", "req_upstream"),
        ] {
            r.headers_mut().insert(k, HeaderValue::from_static(v));
        }
        Ok::<_, AiError>(r)
    });
    let policy = Policy::new().limit(
        Limit::new("user")
            .by([KeyPart::Subject])
            .requests(Rate::per_minute(5)),
    );
    let r = RateLimitLayer::new(policy)
        .layer(upstream)
        .oneshot(request(&who("bob", "acme", None), "m", 10, "hi"))
        .await
        .expect("ok");
    assert_eq!(header(&r, "anthropic-ratelimit-requests-limit"), "5");
    assert_eq!(header(&r, "anthropic-ratelimit-requests-remaining"), "4");
    assert_eq!(header(&r, "request-id"), "req_upstream");
    for gone in [
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-priority-input-tokens-limit",
        "anthropic-ratelimit-input-tokens-limit",
    ] {
        assert!(r.headers().get(gone).is_none(), "{gone} leaked");
    }
}

// ---- 50 concurrent streams: reserve, then settle on what really happened ----

/// Upstream for the streams test, by model name: `ok` replays a recorded stream, `fail`
/// fails before any byte, `cut` fails mid-stream (the recorded overloaded error).
type Svc = tower::util::BoxCloneService<Request<MessagesRequest>, Response<AiBody>, AiError>;

fn stream_upstream() -> Svc {
    Svc::new(tower::service_fn(
        |req: Request<MessagesRequest>| async move {
            let recorded: &[u8] = match req.body().model.as_str() {
                "fail" => return Err(AiError::new(ErrorKind::Overloaded, "Overloaded")),
                "cut" => {
                    include_bytes!("../../../tests/fixtures/anthropic/stream_error_overloaded.sse")
                }
                _ => include_bytes!("../../../tests/fixtures/anthropic/stream_thinking.sse"),
            };
            let items = ai_core::sse::parse_all(recorded);
            let paced = futures_util::stream::iter(items).then(|e| async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                e
            });
            Ok(Response::new(AiBody::from_events(paced)))
        },
    ))
}

/// Adds up, per request, what the response's completion says it cost.
#[derive(Clone, Default)]
struct Spent(Arc<Mutex<(u64, u64, u64)>>);

impl Spent {
    fn layer(&self, inner: Svc) -> Svc {
        let spent = self.clone();
        Svc::new(tower::service_fn(move |req| {
            let spent = spent.clone();
            let call = inner.clone().oneshot(req);
            ai_core::CompletionFuture::new(call, move |c: Completion| {
                let mut s = spent.0.lock().expect("lock");
                s.0 += c.input_tokens();
                s.1 += c.output_tokens();
                s.2 += 1;
            })
        }))
    }
}

async fn fifty_streams(layer: RateLimitLayer) {
    let spent = Spent::default();
    let svc = layer.layer(spent.layer(stream_upstream()));
    let bob = who("bob", "acme", None);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let model = match i % 5 {
            0 => "fail",
            1 => "cut",
            _ => "ok",
        };
        let cancel_after = (i % 5 == 2).then_some(3 + i % 7);
        let req = request(&bob, model, 2_000, &"q".repeat(100 + i * 10));
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            match svc.oneshot(req).await {
                Err(_) => {}
                Ok(r) => {
                    let AiBody::Events(mut s) = r.into_body() else {
                        panic!("stream")
                    };
                    let mut n = 0;
                    while let Some(item) = s.next().await {
                        n += 1;
                        if item.is_err() || Some(n) == cancel_after {
                            break; // dropping the stream cancels it
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Settles on a network store finish in spawned tasks: wait for all 50.
    let expect = |axis| {
        let s = spent.0.lock().expect("lock");
        match axis {
            Axis::InputTokens => 1_000_000 - s.0,
            _ => 1_000_000 - s.1,
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let input = standing(&layer, &bob, "ok", "tokens", Axis::InputTokens).await;
        let output = standing(&layer, &bob, "ok", "tokens", Axis::OutputTokens).await;
        let flight = standing(&layer, &bob, "ok", "tokens", Axis::InFlight).await;
        let done = spent.0.lock().expect("lock").2 == 50;
        if done
            && input == expect(Axis::InputTokens)
            && output == expect(Axis::OutputTokens)
            && flight == 50
        {
            let s = spent.0.lock().expect("lock");
            // Real usage: 30 recorded streams' input, 20 of them in full, 10 cut or
            // cancelled ones' streamed output; the 10 failures cost nothing.
            assert!(s.0 > 0 && s.1 > 0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "remaining input {input}, output {output}, in flight {flight}; expected {} / {} / 50",
            expect(Axis::InputTokens),
            expect(Axis::OutputTokens)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn token_policy() -> Policy {
    // A year-long period: nothing refills while the test runs.
    let year = Duration::from_secs(365 * 86_400);
    Policy::new().limit(
        Limit::new("tokens")
            .by([KeyPart::Tenant])
            .input_tokens(Rate::new(1_000_000, year))
            .output_tokens(Rate::new(1_000_000, year))
            .in_flight(50),
    )
}

#[tokio::test(start_paused = true)]
async fn fifty_concurrent_streams_settle_exactly_on_memory() {
    fifty_streams(RateLimitLayer::new(token_policy())).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_streams_settle_exactly_on_redis() {
    let server = redis_server::RedisServer::start();
    let store =
        ai_ratelimit::RedisStore::connect(&server.url(), Duration::from_secs(2)).expect("client");
    fifty_streams(RateLimitLayer::with_store(token_policy(), store)).await;
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_before_its_answer_gives_back_its_tokens() {
    let policy = token_policy();
    let layer = RateLimitLayer::new(policy);
    let slow = tower::service_fn(|_r: Request<MessagesRequest>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Err::<Response<AiBody>, _>(AiError::api("never"))
    });
    let svc = layer.layer(slow);
    let bob = who("bob", "acme", None);
    let call = svc.oneshot(request(&bob, "m", 500, "hello"));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), call)
            .await
            .is_err()
    );
    assert_eq!(
        standing(&layer, &bob, "m", "tokens", Axis::InputTokens).await,
        1_000_000
    );
    assert_eq!(
        standing(&layer, &bob, "m", "tokens", Axis::OutputTokens).await,
        1_000_000
    );
    assert_eq!(
        standing(&layer, &bob, "m", "tokens", Axis::InFlight).await,
        50
    );
}

// ---- the overflow queue ----

fn queue_policy() -> Policy {
    Policy::new()
        .limit(
            Limit::new("tenant")
                .by([KeyPart::Tenant])
                .requests(Rate::new(1, Duration::from_secs(10))),
        )
        .tier(
            "low",
            Tier::new([])
                .priority(0)
                .queue_wait(Duration::from_secs(60)),
        )
        .tier(
            "short",
            Tier::new([])
                .priority(0)
                .queue_wait(Duration::from_secs(15)),
        )
        .tier(
            "high",
            Tier::new([])
                .priority(5)
                .queue_wait(Duration::from_secs(60)),
        )
}

type Log = Arc<Mutex<Vec<(&'static str, u64, bool)>>>;

fn spawn_call<S>(
    svc: &S,
    log: &Log,
    name: &'static str,
    tier: &str,
    start: Instant,
) -> tokio::task::JoinHandle<()>
where
    S: Service<Request<MessagesRequest>, Response = Response<AiBody>, Error = AiError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let req = request(&who(name, "acme", Some(tier)), "m", 10, "hi");
    let (svc, log) = (svc.clone(), log.clone());
    tokio::spawn(async move {
        let ok = svc.oneshot(req).await.is_ok();
        log.lock()
            .expect("lock")
            .push((name, start.elapsed().as_secs(), ok));
    })
}

#[tokio::test(start_paused = true)]
async fn a_higher_tier_overtakes_a_waiting_lower_tier() {
    let layer = RateLimitLayer::new(queue_policy());
    let svc = layer.layer(MockProvider::always(Script::text("ok")));
    let log: Log = Arc::default();
    let start = Instant::now();
    let first = spawn_call(&svc, &log, "first", "low", start);
    first.await.expect("first");
    let low = spawn_call(&svc, &log, "low", "low", start);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(layer.queued(), 1);
    let high = spawn_call(&svc, &log, "high", "high", start);
    high.await.expect("high");
    low.await.expect("low");
    let log = log.lock().expect("lock").clone();
    assert_eq!(
        log,
        vec![("first", 0, true), ("high", 10, true), ("low", 20, true)]
    );
    assert_eq!(layer.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_goes_away_gives_up_its_place() {
    let layer = RateLimitLayer::new(queue_policy());
    let svc = layer.layer(MockProvider::always(Script::text("ok")));
    let log: Log = Arc::default();
    let start = Instant::now();
    spawn_call(&svc, &log, "first", "low", start)
        .await
        .expect("first");
    let gone = spawn_call(&svc, &log, "gone", "low", start);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let next = spawn_call(&svc, &log, "next", "low", start);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(layer.queued(), 2);
    gone.abort(); // the client disconnected: its request future is dropped
    let _ = gone.await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(layer.queued(), 1);
    next.await.expect("next");
    // Served when the first unit came back (10 s), not after the one that left (20 s).
    assert_eq!(
        log.lock().expect("lock").clone(),
        vec![("first", 0, true), ("next", 10, true)]
    );
}

#[tokio::test(start_paused = true)]
async fn past_its_deadline_a_waiter_gets_the_429() {
    let layer = RateLimitLayer::new(queue_policy());
    let svc = layer.layer(MockProvider::always(Script::text("ok")));
    let log: Log = Arc::default();
    let start = Instant::now();
    spawn_call(&svc, &log, "first", "low", start)
        .await
        .expect("first");
    let high = spawn_call(&svc, &log, "high", "high", start);
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Waits behind `high` (10 s), then would need 10 s more: past its 15 s.
    let req = request(&who("short", "acme", Some("short")), "m", 10, "hi");
    let e = svc.clone().oneshot(req).await.expect_err("deadline");
    assert_eq!(e.status(), 429);
    assert!(e.message().contains("smaller context"), "{}", e.message());
    assert!(e.retry_after().is_some());
    assert!(start.elapsed() <= Duration::from_secs(15));
    high.await.expect("high");
}

#[tokio::test(start_paused = true)]
async fn a_tier_that_does_not_queue_does_not_jump_the_line() {
    let policy = queue_policy().tier("now", Tier::new([]).priority(0));
    let layer = RateLimitLayer::new(policy);
    let svc = layer.layer(MockProvider::always(Script::text("ok")));
    let log: Log = Arc::default();
    let start = Instant::now();
    spawn_call(&svc, &log, "first", "low", start)
        .await
        .expect("first");
    let waiting = spawn_call(&svc, &log, "waiting", "low", start);
    // Capacity is back at 10 s; the waiter is served, not a newcomer that does not queue.
    tokio::time::sleep(Duration::from_millis(9_999)).await;
    assert_eq!(layer.queued(), 1);
    let e = svc
        .clone()
        .oneshot(request(
            &who("impatient", "acme", Some("now")),
            "m",
            10,
            "hi",
        ))
        .await
        .expect_err("behind the line");
    assert_eq!(e.status(), 429);
    assert!(e.message().contains("waiting"), "{}", e.message());
    waiting.await.expect("waiting");
    assert_eq!(
        log.lock().expect("lock").last(),
        Some(&("waiting", 10, true))
    );
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_gets_an_in_flight_slot_when_one_frees() {
    let policy = Policy::new()
        .limit(Limit::new("flight").by([KeyPart::Tenant]).in_flight(1))
        .tier("low", Tier::new([]).queue_wait(Duration::from_secs(5)));
    let layer = RateLimitLayer::new(policy);
    let slow = tower::service_fn(|_r: Request<MessagesRequest>| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Script::Message(m) = Script::text("ok") else {
            unreachable!()
        };
        Ok::<_, AiError>(Response::new(AiBody::from(m)))
    });
    let svc = layer.layer(slow);
    let log: Log = Arc::default();
    let start = Instant::now();
    let a = spawn_call(&svc, &log, "a", "low", start);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let b = spawn_call(&svc, &log, "b", "low", start);
    a.await.expect("a");
    b.await.expect("b");
    // b waited for a's slot (2 s), then took its own 2 s.
    assert_eq!(
        log.lock().expect("lock").clone(),
        vec![("a", 2, true), ("b", 4, true)]
    );
}

// ---- the store fails ----

#[cfg(feature = "redis")]
fn unreachable_redis() -> ai_ratelimit::RedisStore {
    // Nothing listens on a port we just closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    ai_ratelimit::RedisStore::connect(
        &format!("redis://127.0.0.1:{port}/"),
        Duration::from_millis(200),
    )
    .expect("client")
}

/// A caller that goes away while its check is on the wire to Redis leaks nothing: the
/// check finishes in its own task, which gives the reservation back.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_gone_during_the_redis_check_leaks_nothing() {
    let server = redis_server::RedisServer::start();
    let store =
        ai_ratelimit::RedisStore::connect(&server.url(), Duration::from_secs(2)).expect("client");
    let layer = RateLimitLayer::with_store(token_policy(), store);
    let svc = layer.layer(MockProvider::always(Script::text("ok")));
    let bob = who("bob", "acme", None);
    for _ in 0..20 {
        let mut call = Box::pin(svc.clone().oneshot(request(&bob, "m", 500, "hello")));
        // One poll sends the check; then the caller is gone.
        assert!(futures_util::FutureExt::now_or_never(&mut call).is_none());
        drop(call);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let flight = standing(&layer, &bob, "m", "tokens", Axis::InFlight).await;
        let output = standing(&layer, &bob, "m", "tokens", Axis::OutputTokens).await;
        if flight == 50 && output == 1_000_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "in flight {flight}, output {output}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn store_down_fails_closed_with_a_503_by_default() {
    let policy = Policy::new().limit(
        Limit::new("user")
            .by([KeyPart::Subject])
            .requests(Rate::per_minute(2)),
    );
    let svc = RateLimitLayer::with_store(policy, unreachable_redis())
        .layer(MockProvider::always(Script::text("ok")));
    let e = svc
        .oneshot(request(&who("bob", "acme", None), "m", 10, "hi"))
        .await
        .expect_err("closed");
    assert_eq!(e.status(), 503);
    assert!(
        e.message().contains("rate limiter is unavailable"),
        "{}",
        e.message()
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn store_down_can_fail_open_to_local_limits() {
    let policy = Policy::new().limit(
        Limit::new("user")
            .by([KeyPart::Subject])
            .requests(Rate::per_minute(2)),
    );
    let mock = MockProvider::always(Script::text("ok"));
    let svc = RateLimitLayer::with_store(policy, unreachable_redis())
        .on_store_error(ai_ratelimit::OnStoreError::Open)
        .layer(mock.clone());
    let bob = who("bob", "acme", None);
    svc.clone()
        .oneshot(request(&bob, "m", 10, "hi"))
        .await
        .expect("open 1");
    svc.clone()
        .oneshot(request(&bob, "m", 10, "hi"))
        .await
        .expect("open 2");
    let e = svc
        .clone()
        .oneshot(request(&bob, "m", 10, "hi"))
        .await
        .expect_err("local limit");
    assert_eq!(e.status(), 429);
    assert_eq!(mock.requests().len(), 2);
}

// ---- plain HTTP ----

#[tokio::test(start_paused = true)]
async fn plain_http_services_get_request_limits() {
    use http_body_util::BodyExt;
    let policy = Policy::new().limit(
        Limit::new("user")
            .by([KeyPart::Subject])
            .requests(Rate::per_minute(2))
            .input_tokens(Rate::per_minute(1)),
    );
    let layer = RateLimitLayer::new(policy);
    let inner = tower::service_fn(|_r: Request<String>| async {
        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
            bytes::Bytes::from_static(b"pong"),
        )))
    });
    let svc = layer.plain().layer(inner);
    let call = || {
        let mut r = Request::new(String::new());
        r.extensions_mut().insert(Principal::new("bob"));
        svc.clone().oneshot(r)
    };
    let ok = call().await.expect("infallible");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["anthropic-ratelimit-requests-remaining"], "1");
    call().await.expect("infallible");
    let refused = call().await.expect("infallible");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "30");
    let body = refused
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}
