//! One behavioural suite, run against every store: `MemoryStore`, and `RedisStore` on a
//! real `redis-server` started for each test. Time is passed explicitly (`now`, in
//! microseconds), so the figures are exact on both.

use ai_ratelimit::{Adjust, Admission, Charge, Gauge, MemoryStore, Rate, Store};
use std::sync::Arc;
use std::time::Duration;

#[path = "support/redis_server.rs"]
mod redis_server;

const T0: u64 = 1_700_000_000_000_000;
const SEC: u64 = 1_000_000;

fn rate(key: &str, r: Rate, cost: u64) -> Charge {
    Charge {
        key: key.to_owned(),
        gauge: Gauge::Rate(r),
        cost,
    }
}

fn flight(key: &str, max: u64) -> Charge {
    Charge {
        key: key.to_owned(),
        gauge: Gauge::InFlight {
            max,
            lease: Duration::from_secs(60),
        },
        cost: 1,
    }
}

fn adjust(c: &Charge, delta: i64) -> Adjust<'_> {
    Adjust {
        key: &c.key,
        gauge: c.gauge,
        delta,
    }
}

async fn remaining(store: &dyn Store, now: u64, c: &Charge) -> u64 {
    let peek = Charge {
        cost: 0,
        ..c.clone()
    };
    match store
        .acquire(now, std::slice::from_ref(&peek))
        .await
        .expect("store")
    {
        Admission::Admitted(s) => s[0].remaining,
        other @ Admission::Denied { .. } => panic!("a zero-cost peek was refused: {other:?}"),
    }
}

fn admitted(a: &Admission) -> bool {
    matches!(a, Admission::Admitted(_))
}

async fn burst_then_steady_refill(store: &dyn Store, ns: &str) {
    let c = rate(&format!("rl:{{{ns}}}:burst"), Rate::per_minute(60), 1);
    for i in 0..60 {
        match store
            .acquire(T0, std::slice::from_ref(&c))
            .await
            .expect("store")
        {
            Admission::Admitted(s) => assert_eq!(s[0].remaining, 59 - i),
            other @ Admission::Denied { .. } => panic!("request {i} refused: {other:?}"),
        }
    }
    match store
        .acquire(T0, std::slice::from_ref(&c))
        .await
        .expect("store")
    {
        Admission::Denied {
            index,
            retry_after,
            standings,
        } => {
            assert_eq!(index, 0);
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
            assert_eq!(standings[0].remaining, 0);
            assert_eq!(standings[0].limit, 60);
            assert_eq!(standings[0].reset, Duration::from_secs(60));
        }
        other @ Admission::Admitted(_) => panic!("61st admitted: {other:?}"),
    }
    // One back per second; no whole new window at the minute's edge.
    assert!(!admitted(
        &store
            .acquire(T0 + SEC - 1, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    assert!(admitted(
        &store
            .acquire(T0 + SEC, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    assert_eq!(remaining(store, T0 + 30 * SEC, &c).await, 29);
    assert_eq!(remaining(store, T0 + 120 * SEC, &c).await, 60);
}

async fn all_or_nothing(store: &dyn Store, ns: &str) {
    let a = rate(&format!("rl:{{{ns}}}:a"), Rate::per_minute(100), 10);
    let b = rate(&format!("rl:{{{ns}}}:b"), Rate::per_minute(5), 10);
    match store
        .acquire(T0, &[a.clone(), b.clone()])
        .await
        .expect("store")
    {
        Admission::Denied {
            index, retry_after, ..
        } => {
            assert_eq!(index, 1);
            assert_eq!(retry_after, None, "10 can never fit a burst of 5");
        }
        other @ Admission::Admitted(_) => panic!("admitted: {other:?}"),
    }
    assert_eq!(
        remaining(store, T0, &a).await,
        100,
        "a refused check spends nothing"
    );
}

async fn groups_on_different_hash_tags_roll_back(store: &dyn Store, ns: &str) {
    let a = rate(&format!("rl:{{{ns}-one}}:a"), Rate::per_minute(100), 10);
    let b = rate(&format!("rl:{{{ns}-two}}:b"), Rate::per_minute(5), 6);
    let r = store
        .acquire(T0, &[a.clone(), b.clone()])
        .await
        .expect("store");
    assert!(!admitted(&r));
    assert_eq!(
        remaining(store, T0, &a).await,
        100,
        "the first group's reservation was given back"
    );
    let b = Charge { cost: 5, ..b };
    assert!(admitted(
        &store.acquire(T0, &[a.clone(), b]).await.expect("store")
    ));
    assert_eq!(remaining(store, T0, &a).await, 90);
}

async fn settle_gives_back_and_charges_extra(store: &dyn Store, ns: &str) {
    let c = rate(&format!("rl:{{{ns}}}:tok"), Rate::per_minute(1000), 100);
    assert!(admitted(
        &store
            .acquire(T0, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    store
        .settle(T0, 0, &[adjust(&c, -60)])
        .await
        .expect("settle");
    assert_eq!(remaining(store, T0, &c).await, 960);
    store
        .settle(T0, 0, &[adjust(&c, 500)])
        .await
        .expect("settle");
    assert_eq!(remaining(store, T0, &c).await, 460);
    // Real usage beyond the burst leaves a debt the next request waits out.
    store
        .settle(T0, 0, &[adjust(&c, 1000)])
        .await
        .expect("settle");
    assert_eq!(remaining(store, T0, &c).await, 0);
    let one = Charge {
        cost: 1,
        ..c.clone()
    };
    match store.acquire(T0, &[one]).await.expect("store") {
        // Debt 1540 units of 60 ms each, capacity 1000: 541 units to pay back.
        Admission::Denied { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_millis(541 * 60)));
        }
        other @ Admission::Admitted(_) => panic!("admitted in debt: {other:?}"),
    }
    // Refunding more than is owed stops at a full meter.
    store
        .settle(T0, 0, &[adjust(&c, -1_000_000)])
        .await
        .expect("settle");
    assert_eq!(remaining(store, T0, &c).await, 1000);
}

async fn in_flight_slots(store: &dyn Store, ns: &str) {
    let c = flight(&format!("rl:{{{ns}}}:fl"), 2);
    assert!(admitted(
        &store
            .acquire_leased(T0, 1, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    assert!(admitted(
        &store
            .acquire_leased(T0, 2, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    assert!(!admitted(
        &store
            .acquire_leased(T0, 3, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    store
        .settle(T0, 1, &[adjust(&c, -1)])
        .await
        .expect("release");
    assert!(admitted(
        &store
            .acquire_leased(T0, 3, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    let too_big = Charge {
        cost: 3,
        ..c.clone()
    };
    match store
        .acquire_leased(T0, 4, &[too_big])
        .await
        .expect("store")
    {
        Admission::Denied { retry_after, .. } => assert_eq!(retry_after, None),
        other @ Admission::Admitted(_) => panic!("{other:?}"),
    }
}

async fn one_key_twice_in_one_check(store: &dyn Store, ns: &str) {
    let c = rate(&format!("rl:{{{ns}}}:dup"), Rate::per_minute(10), 6);
    let r = store
        .acquire(T0, &[c.clone(), c.clone()])
        .await
        .expect("store");
    assert!(!admitted(&r), "6 + 6 over a burst of 10");
    let c4 = Charge {
        cost: 4,
        ..c.clone()
    };
    assert!(admitted(
        &store.acquire(T0, &[c.clone(), c4]).await.expect("store")
    ));
    assert_eq!(remaining(store, T0, &c).await, 0);
}

async fn a_lagging_clock_never_pays_an_interval_back_twice(store: &dyn Store, ns: &str) {
    let c = rate(&format!("rl:{{{ns}}}:lag"), Rate::per_minute(60), 30);
    assert!(admitted(
        &store
            .acquire(T0 + 10 * SEC, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    // A replica whose clock is 10 s behind charges 10 more.
    let ten = Charge {
        cost: 10,
        ..c.clone()
    };
    assert!(admitted(&store.acquire(T0, &[ten]).await.expect("store")));
    store
        .settle(T0, 0, &[adjust(&c, -5)])
        .await
        .expect("settle");
    // 35 owed as of T0 + 10 s: had the meter's time gone back to T0, it would read 35.
    assert_eq!(remaining(store, T0 + 10 * SEC, &c).await, 25);
}

async fn concurrent_checks_never_oversell(store: Arc<dyn Store>, ns: &str) {
    let c = rate(&format!("rl:{{{ns}}}:race"), Rate::per_minute(50), 1);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = store.clone();
            let c = c.clone();
            tokio::spawn(async move { admitted(&store.acquire(T0, &[c]).await.expect("store")) })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.expect("task"));
    }
    assert_eq!(ok, 50);
}

macro_rules! suite {
    ($($name:ident),* ; $($shared:ident),*) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&ai_ratelimit::MemoryStore::new(), "m").await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    super::$shared(std::sync::Arc::new(ai_ratelimit::MemoryStore::new()), "m").await;
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis {
            use super::redis_server::RedisServer;
            use std::time::Duration;

            fn store(server: &RedisServer) -> ai_ratelimit::RedisStore {
                ai_ratelimit::RedisStore::connect(&server.url(), Duration::from_secs(2)).expect("client")
            }

            $(
                #[tokio::test]
                async fn $name() {
                    let server = RedisServer::start();
                    super::$name(&store(&server), stringify!($name)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    let server = RedisServer::start();
                    super::$shared(std::sync::Arc::new(store(&server)), stringify!($shared)).await;
                }
            )*
        }

        /// The same suite on a three-node Redis Cluster: keys of one hash tag go to the
        /// node owning their slot, different tags to different nodes.
        #[cfg(feature = "redis")]
        mod cluster {
            use super::redis_server::RedisCluster;
            use std::time::Duration;

            fn store(cluster: &RedisCluster) -> ai_ratelimit::RedisStore {
                let urls = cluster.urls();
                let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
                ai_ratelimit::RedisStore::connect_cluster(&nodes, Duration::from_secs(2)).expect("client")
            }

            $(
                #[tokio::test]
                async fn $name() {
                    let cluster = RedisCluster::start();
                    super::$name(&store(&cluster), stringify!($name)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $shared() {
                    let cluster = RedisCluster::start();
                    super::$shared(std::sync::Arc::new(store(&cluster)), stringify!($shared)).await;
                }
            )*
        }
    };
}

suite!(
    burst_then_steady_refill,
    all_or_nothing,
    groups_on_different_hash_tags_roll_back,
    settle_gives_back_and_charges_extra,
    in_flight_slots,
    one_key_twice_in_one_check,
    a_lagging_clock_never_pays_an_interval_back_twice;
    concurrent_checks_never_oversell
);

#[test]
fn memory_store_forgets_nothing_it_needs() {
    let s = MemoryStore::new();
    assert!(s.is_empty());
    let c = rate("k", Rate::per_minute(10), 10);
    assert!(admitted(&s.acquire_now(T0, std::slice::from_ref(&c))));
    assert_eq!(s.len(), 1);
}

/// Redis-only: keys expire on their own, with the right TTL, and a dead replica's lease
/// is forgotten after its lease time.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_keys_expire_on_their_own() {
    use redis_server::RedisServer;
    let server = RedisServer::start();
    let store =
        ai_ratelimit::RedisStore::connect(&server.url(), Duration::from_secs(2)).expect("client");
    let c = rate("rl:{t=acme}:user:r:subject=bob", Rate::per_minute(60), 30);
    assert!(admitted(
        &store
            .acquire(T0, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "PTTL", &c.key])
        .output();
    if let Ok(out) = out {
        let ttl: i64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(-99);
        // 30 units of a second each: full again in 30 s.
        assert!((29_000..=30_002).contains(&ttl), "PTTL {ttl}");
    }
    // Given back entirely: the key is deleted at once.
    store
        .settle(T0, 0, &[adjust(&c, -30)])
        .await
        .expect("settle");
    assert_eq!(remaining(&store, T0, &c).await, 60);
    // A lease held by a replica that died expires after the lease time.
    let f = flight("rl:{t=acme}:user:f:subject=bob", 1);
    assert!(admitted(
        &store
            .acquire_leased(T0, 7, std::slice::from_ref(&f))
            .await
            .expect("store")
    ));
    assert!(!admitted(
        &store
            .acquire_leased(T0 + SEC, 8, std::slice::from_ref(&f))
            .await
            .expect("store")
    ));
    assert!(admitted(
        &store
            .acquire_leased(T0 + 61 * SEC, 8, std::slice::from_ref(&f))
            .await
            .expect("store")
    ));
}

/// Redis unreachable: every call fails with a store error (the layer decides what then).
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_down_is_an_error_not_a_hang() {
    use redis_server::RedisServer;
    let mut server = RedisServer::start();
    let store = ai_ratelimit::RedisStore::connect(&server.url(), Duration::from_millis(300))
        .expect("client");
    let c = rate("rl:{x}:k", Rate::per_minute(60), 1);
    assert!(admitted(
        &store
            .acquire(T0, std::slice::from_ref(&c))
            .await
            .expect("store")
    ));
    server.stop();
    let started = std::time::Instant::now();
    let r = store.acquire(T0, std::slice::from_ref(&c)).await;
    assert!(r.is_err(), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
