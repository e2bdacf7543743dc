//! 100 concurrent requests against a small cap, on every store: the memory store, a real
//! `redis-server` and a real three-node Redis Cluster. Settled spend never passes the cap
//! by more than one request's true cost, every call is charged what it cost, and nothing
//! stays held once all are over: some streamed, some cancelled, some failing upstream.

#[path = "../../ai-ratelimit/tests/support/redis_server.rs"]
mod redis_server;

use ai_budget::{
    Budget, BudgetLayer, BudgetPolicy, Hold, MemoryStore, Period, PriceTable, RedisStore,
    Reservation, Scope, Settle, Store, Usd,
};
use ai_core::wire::{ContentBlockStartEvent, MessageStartEvent};
use ai_core::{
    AiBody, AiError, CallReport, ContentBlock, MessagesRequest, MessagesResponse, Principal, Role,
    StreamEvent, Usage,
};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

const MODEL: &str = "claude-haiku-4-5";

fn response(input: u64, output: u64) -> MessagesResponse {
    MessagesResponse {
        id: "msg_1".into(),
        kind: "message".into(),
        role: Role::Assistant,
        content: vec![],
        model: MODEL.into(),
        stop_reason: None,
        stop_sequence: None,
        usage: Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            ..Default::default()
        },
        extra: Default::default(),
    }
}

/// Answers by the request's `x-kind`: `fail` (529), `message`, or a stream of 10 deltas
/// of 40 bytes (100 output tokens). The usage reports exactly the estimated input, so
/// every reservation is a true upper bound.
#[derive(Clone)]
struct Upstream;

impl Service<http::Request<MessagesRequest>> for Upstream {
    type Response = http::Response<AiBody>;
    type Error = AiError;
    type Future = futures_util::future::BoxFuture<'static, Result<http::Response<AiBody>, AiError>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), AiError>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<MessagesRequest>) -> Self::Future {
        let input = ai_core::tokens::estimate_request(req.body());
        let kind = req.headers()["x-kind"].to_str().unwrap_or("").to_owned();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            match kind.as_str() {
                "fail" => Err(AiError::new(ai_core::ErrorKind::Overloaded, "overloaded")),
                "message" => Ok(http::Response::new(AiBody::from(response(input, 100)))),
                _ => {
                    let mut start = response(input, 1);
                    start.stop_reason = None;
                    let mut evs = vec![
                        Ok(StreamEvent::MessageStart(MessageStartEvent {
                            message: Box::new(start),
                            extra: Default::default(),
                        })),
                        Ok(StreamEvent::ContentBlockStart(ContentBlockStartEvent {
                            index: 0,
                            content_block: Box::new(ContentBlock::text("")),
                            extra: Default::default(),
                        })),
                    ];
                    for _ in 0..10 {
                        evs.push(Ok(StreamEvent::text_delta(0, "y".repeat(40))));
                    }
                    let tail: Vec<StreamEvent> = serde_json::from_value(serde_json::json!([
                        {"type": "content_block_stop", "index": 0},
                        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 100}},
                        {"type": "message_stop"}
                    ]))
                    .expect("events");
                    evs.extend(tail.into_iter().map(Ok));
                    let paced = futures_util::stream::iter(evs).then(|e| async {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        e
                    });
                    Ok(http::Response::new(AiBody::from_events(paced)))
                }
            }
        })
    }
}

async fn hundred_concurrent(store: Arc<dyn Store>) {
    let cap: Usd = "0.02".parse().expect("cap");
    let policy = BudgetPolicy::new(vec![
        Budget::new("team", Scope::Team, cap, Period::Monthly).cut_off(true),
        Budget::new(
            "tenant",
            Scope::Tenant,
            "10".parse().expect("cap"),
            Period::Monthly,
        ),
    ]);
    let layer = BudgetLayer::with_shared_store(policy, PriceTable::defaults(), store);
    let svc = layer.layer(Upstream);
    let text = "word ".repeat(400); // about 500 input tokens
    let tasks = (0..100).map(|i| {
        let mut svc = svc.clone();
        let text = text.clone();
        tokio::spawn(async move {
            let kind = ["fail", "message", "stream", "cancel"][i % 4];
            let body: MessagesRequest = serde_json::from_value(serde_json::json!({
                "model": MODEL, "max_tokens": 120, "stream": kind != "message",
                "messages": [{"role": "user", "content": text}]
            }))
            .expect("request");
            let mut req = http::Request::new(body);
            let mut p = Principal::new(format!("user-{i}"));
            p.team = Some("eng".into());
            p.tenant = Some("acme".into());
            req.extensions_mut().insert(p);
            let report = CallReport::default();
            req.extensions_mut().insert(report.clone());
            req.headers_mut()
                .insert("x-kind", http::HeaderValue::from_static(kind));
            let resp = svc.ready().await.expect("ready").call(req).await;
            let refused = matches!(&resp, Err(e) if e.status() == 402);
            if let Ok(r) = resp {
                if let AiBody::Events(mut s) = r.into_body() {
                    let keep = if kind == "cancel" { 4 } else { usize::MAX };
                    let mut n = 0;
                    while n < keep && s.next().await.is_some() {
                        n += 1;
                    }
                }
            }
            (report.snapshot().cost.map_or(0, |c| c.nano_usd), refused)
        })
    });
    let done: Vec<(u64, bool)> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let costs: Vec<u64> = done.iter().map(|d| d.0).collect();
    assert!(done.iter().any(|d| d.1), "the cap refused some calls");
    // Settles on a network store run on tasks of their own: wait until they are in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let standing = loop {
        let s = layer.standing(Scope::Team, "eng").await.expect("read");
        if s[0].reserved_usd == "0.00" || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let spent: Usd = standing[0].spent_usd.parse().expect("spent");
    let largest = costs.iter().copied().max().unwrap_or(0);
    assert!(largest > 0, "some calls were charged");
    assert!(
        spent.nanos() <= cap.nanos() + largest,
        "spent {spent} over the cap {cap} by more than one call ({largest} nano-dollars)"
    );
    assert_eq!(standing[0].reserved_usd, "0.00", "nothing stays held");
    assert_eq!(
        spent.nanos(),
        costs.iter().sum::<u64>(),
        "the budget holds exactly the sum of what the calls cost"
    );
    let tenant = layer.standing(Scope::Tenant, "acme").await.expect("read");
    assert_eq!(tenant[0].spent_usd, standing[0].spent_usd);
    assert_eq!(tenant[0].reserved_usd, "0.00");
    assert!(
        costs.iter().filter(|&&c| c == 0).count() >= 25,
        "the failing ones cost nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_on_memory() {
    hundred_concurrent(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_on_redis() {
    let server = redis_server::RedisServer::start();
    let store = RedisStore::connect(&server.url(), Duration::from_secs(2)).expect("store");
    hundred_concurrent(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_on_a_redis_cluster() {
    let cluster = redis_server::RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&nodes, Duration::from_secs(2)).expect("store");
    hundred_concurrent(Arc::new(store)).await;
}

fn hold(key: &str, cap: u64, flexible: bool) -> Hold {
    Hold {
        key: key.into(),
        cap,
        flexible,
        expires_us: None,
    }
}

/// The store contract, the same on every store.
async fn contract(store: &dyn Store) {
    // Two hash tags: on a Cluster, two scripts.
    let holds = [
        hold("aib:{team:a}:t:all", 1000, false),
        hold("aib:{user:b}:u:all", 300, true),
    ];
    let r = store.reserve(&holds, 500, 100).await.expect("reserve");
    let Reservation::Granted { amount, standings } = r else {
        panic!("granted: {r:?}")
    };
    assert_eq!(amount, 300, "the flexible budget has 300 left");
    assert_eq!(
        standings[0].reserved, 300,
        "the first group keeps only what was granted"
    );
    let read = store
        .read(&[holds[0].key.clone(), holds[1].key.clone()])
        .await
        .expect("read");
    assert_eq!((read[0].reserved, read[1].reserved), (300, 300));
    // Nothing left on the flexible one: refused, and the first group gives back.
    let r = store.reserve(&holds, 500, 100).await.expect("reserve");
    assert!(matches!(r, Reservation::Denied { index: 1, .. }), "{r:?}");
    let read = store.read(&[holds[0].key.clone()]).await.expect("read");
    assert_eq!(read[0].reserved, 300, "the refused attempt holds nothing");
    let out = store
        .settle(&[
            Settle {
                key: holds[0].key.clone(),
                release: 300,
                spend: 250,
                expires_us: None,
            },
            Settle {
                key: holds[1].key.clone(),
                release: 300,
                spend: 250,
                expires_us: None,
            },
        ])
        .await
        .expect("settle");
    assert_eq!(out, vec![(0, 250), (0, 250)]);
    let read = store
        .read(&[holds[0].key.clone(), holds[1].key.clone()])
        .await
        .expect("read");
    assert_eq!(
        (read[0].spent, read[0].reserved, read[1].spent),
        (250, 0, 250)
    );
    // Round amounts (1e8 nano-dollars = $0.10) reach HINCRBY as integers, not `1e+8`.
    let round = [hold("aib:{team:a}:round:all", 1_000_000_000, false)];
    let r = store
        .reserve(&round, 100_000_000, 100_000_000)
        .await
        .expect("reserve");
    assert!(
        matches!(
            r,
            Reservation::Granted {
                amount: 100_000_000,
                ..
            }
        ),
        "{r:?}"
    );
    let out = store
        .settle(&[Settle {
            key: round[0].key.clone(),
            release: 100_000_000,
            spend: 200_000_000,
            expires_us: None,
        }])
        .await
        .expect("settle");
    assert_eq!(out, vec![(0, 200_000_000)]);
    // A window's key expires when the window ends.
    let soon = ai_core::Clock::system().now_us() + 300_000;
    let short = [Hold {
        expires_us: Some(soon),
        ..hold("aib:{team:a}:day:x", 10, false)
    }];
    assert!(matches!(
        store.reserve(&short, 5, 5).await.expect("reserve"),
        Reservation::Granted { .. }
    ));
}

#[tokio::test]
async fn the_store_contract_on_memory() {
    contract(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_store_contract_on_redis_and_keys_expire_with_their_window() {
    let server = redis_server::RedisServer::start();
    let store = RedisStore::connect(&server.url(), Duration::from_secs(2)).expect("store");
    contract(&store).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let read = store
        .read(&["aib:{team:a}:day:x".to_owned()])
        .await
        .expect("read");
    assert_eq!(read[0].reserved, 0, "expired with its window");
}

#[tokio::test]
async fn the_store_contract_on_a_redis_cluster() {
    let cluster = redis_server::RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&nodes, Duration::from_secs(2)).expect("store");
    contract(&store).await;
}

#[tokio::test]
async fn a_store_that_is_down_fails_closed_with_a_503_or_open_when_configured() {
    let mut server = redis_server::RedisServer::start();
    let url = server.url();
    server.stop();
    let store = RedisStore::connect(&url, Duration::from_millis(300)).expect("lazy");
    let policy = || {
        BudgetPolicy::new(vec![Budget::new(
            "t",
            Scope::Team,
            "1".parse().expect("cap"),
            Period::Daily,
        )])
    };
    let req = || {
        let body: MessagesRequest = serde_json::from_value(serde_json::json!({
            "model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]
        }))
        .expect("request");
        let mut r = http::Request::new(body);
        let mut p = Principal::new("u");
        p.team = Some("eng".into());
        r.extensions_mut().insert(p);
        r.headers_mut()
            .insert("x-kind", http::HeaderValue::from_static("message"));
        r
    };
    let mut closed =
        BudgetLayer::with_store(policy(), PriceTable::defaults(), store.clone()).layer(Upstream);
    let e = closed.call(req()).await.expect_err("fail closed");
    assert_eq!(e.status(), 503);
    assert!(
        e.message().contains("budgets cannot be checked"),
        "{}",
        e.message()
    );
    let mut open = BudgetLayer::with_store(policy(), PriceTable::defaults(), store)
        .on_store_error(ai_budget::OnStoreError::Open)
        .layer(Upstream);
    let ok = open.call(req()).await.expect("fail open");
    assert!(ok.headers().contains_key("x-gateway-cost-usd"));
}
