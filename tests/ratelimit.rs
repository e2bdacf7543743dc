//! Rate limits in the real gateway over real sockets: two gateway replicas sharing one
//! real `redis-server` never admit more than the limit together; the caller's headers;
//! a limited stream settles on its real usage; Redis down fails closed with a 503.

mod common;

use ai_gateway::ratelimit::{Axis, KeyPart, Limit, Policy, Rate, RateLimitLayer, RedisStore};
use common::*;
use std::time::{Duration, Instant};

#[path = "../crates/ai-ratelimit/tests/support/redis_server.rs"]
mod redis_server;

fn redis_layer(url: &str, policy: Policy) -> RateLimitLayer {
    RateLimitLayer::with_store(
        policy,
        RedisStore::connect(url, Duration::from_secs(2)).expect("client"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_never_admit_more_than_the_limit() {
    let redis = redis_server::RedisServer::start();
    let url = redis.url();
    two_replicas(|| RedisStore::connect(&url, Duration::from_secs(2)).expect("client")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_a_redis_cluster_never_admit_more_than_the_limit() {
    let cluster = redis_server::RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    two_replicas(|| RedisStore::connect_cluster(&nodes, Duration::from_secs(2)).expect("client"))
        .await;
}

async fn two_replicas(store: impl Fn() -> RedisStore) {
    let up = MockUpstream::start().await;
    // 20 at once, then one every 100 ms: every replica enforces the same meter.
    let policy = || {
        Policy::new().limit(
            // No authentication here: every caller is the one `anonymous` subject.
            Limit::new("per-caller")
                .by([KeyPart::Subject])
                .requests(Rate::new(20, Duration::from_secs(2))),
        )
    };
    let a = start_gateway(
        &up.url(),
        GatewayOpts {
            ratelimit: Some(RateLimitLayer::with_store(policy(), store())),
            ..GatewayOpts::default()
        },
    )
    .await;
    let b = start_gateway(
        &up.url(),
        GatewayOpts {
            ratelimit: Some(RateLimitLayer::with_store(policy(), store())),
            ..GatewayOpts::default()
        },
    )
    .await;
    let started = Instant::now();
    let mut admitted_at = Vec::new();
    let mut refused = 0;
    // 8 clients, 240 requests alternating between the replicas, about 1.5 s of load.
    let mut tasks = Vec::new();
    for c in 0..8 {
        let targets = [a, b];
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..30 {
                let gw = targets[(c + i) % 2];
                let (status, headers, _) =
                    post_json(gw, messages_body("replay/message_basic", false)).await;
                out.push((
                    status.as_u16(),
                    headers.get("retry-after").is_some(),
                    Instant::now(),
                ));
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            out
        }));
    }
    for t in tasks {
        for (status, retry, at) in t.await.expect("client") {
            match status {
                200 => admitted_at.push(at.duration_since(started)),
                429 => {
                    assert!(retry, "a 429 carries retry-after");
                    refused += 1;
                }
                other => panic!("unexpected status {other}"),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Never more than the burst plus what refilled while the load ran (10 per second),
    // counted at every admission, not only at the end.
    admitted_at.sort();
    for (n, at) in admitted_at.iter().enumerate() {
        let allowed = 20.0 + at.as_secs_f64() * 10.0 + 1.0;
        assert!(
            (n + 1) as f64 <= allowed,
            "{} admitted by {at:?}: more than {allowed}",
            n + 1
        );
    }
    let admitted = admitted_at.len();
    assert!(admitted >= 20, "the burst was admitted ({admitted})");
    assert!(
        (admitted as f64) <= 20.0 + elapsed * 10.0 + 1.0,
        "{admitted} admitted in {elapsed:.2}s"
    );
    assert!(refused > 0, "the load went over the limit");
    assert_eq!(admitted + refused, 240);
    assert_eq!(
        up.seen().len(),
        admitted,
        "refused requests never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_stream_reports_the_caller_s_standing_and_settles_its_usage() {
    let up = MockUpstream::start().await;
    let policy = Policy::new().limit(
        Limit::new("tokens")
            .by([KeyPart::Subject])
            .input_tokens(Rate::new(100_000, Duration::from_secs(86_400)))
            .output_tokens(Rate::new(50_000, Duration::from_secs(86_400))),
    );
    let layer = RateLimitLayer::new(policy);
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            ratelimit: Some(layer.clone()),
            ..GatewayOpts::default()
        },
    )
    .await;
    let (status, headers, body) =
        post_json(gw, messages_body("replay/stream_thinking", true)).await;
    assert_eq!(status, 200);
    // Reserved: the estimate of "Hello" and max_tokens 256.
    assert_eq!(
        headers["anthropic-ratelimit-output-tokens-remaining"],
        "49744"
    );
    assert_eq!(headers["anthropic-ratelimit-output-tokens-limit"], "50000");
    assert!(
        headers
            .get("anthropic-ratelimit-tokens-remaining")
            .is_none()
    );
    assert!(!parse_sse(&body).is_empty());
    // Settled on the recording's usage (input 43, output 282) once the stream ended.
    let who = ai_gateway::core::Principal::new("anonymous");
    let mut output = 0;
    for _ in 0..100 {
        let s = layer.standing(&who, None, None).await.expect("store");
        output = s
            .iter()
            .find(|(_, a, _)| *a == Axis::OutputTokens)
            .map_or(0, |x| x.2.remaining);
        if output <= 50_000 - 282 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A day's rate refills about one token every 2 s while the test runs.
    assert!(
        (50_000 - 282..=50_000 - 282 + 5).contains(&output),
        "output remaining {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_with_a_clear_503() {
    let mut redis = redis_server::RedisServer::start();
    let up = MockUpstream::start().await;
    let policy = Policy::new().limit(
        Limit::new("u")
            .by([KeyPart::Subject])
            .requests(Rate::per_minute(100)),
    );
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            ratelimit: Some(redis_layer(&redis.url(), policy)),
            ..GatewayOpts::default()
        },
    )
    .await;
    let (status, _, _) = post_json(gw, messages_body("replay/message_basic", false)).await;
    assert_eq!(status, 200);
    redis.stop();
    let (status, _, body) = post_json(gw, messages_body("replay/message_basic", false)).await;
    assert_eq!(status, 503);
    let (kind, message) = error_json(&body);
    assert_eq!(kind, "api_error");
    assert!(message.contains("rate limiter is unavailable"), "{message}");
    assert_eq!(up.seen().len(), 1, "nothing unchecked reached the upstream");
}
