//! End-to-end overhead of the gateway: the same requests sent straight to a local mock
//! upstream and through the gateway, interleaved in one run, so the added latency reads
//! as a difference and a ratio on the same noisy machine (DESIGN.md section 7).
//!
//! ```sh
//! cargo run --release --example e2e_bench -- [--requests N]
//! ```
//!
//! Each of mock upstream, gateway and client runs on its own single-threaded runtime
//! (one thread each). On a small VM, cross-core wake-ups dominate sub-millisecond
//! latencies and depend on where the scheduler puts the threads; `taskset -c 0` (all
//! three threads on one core) gives the repeatable figure. `--demo` serves the gateway's
//! demo upstream instead of proxying, to isolate the server-side cost; `--access-log` turns
//! on the access log as the example binary has it by default (lines written to
//! `/dev/null`); `--auth` checks a gateway key on every request; `--audit always` writes
//! an audit record per request with an fsync before each response ends (`--audit 10ms`:
//! fsync every 10 ms, responses do not wait), into a directory under the system temp dir;
//! `--ratelimit memory` enforces three limits (per subject, per tenant, per model: requests,
//! input and output tokens, in flight; none ever refuses) with reserve and settle on every
//! request, `--ratelimit redis://...` the same on a Redis; `--budget memory` holds every call to
//! three budgets (per subject daily, per tenant monthly with the stream cut-off, global
//! lifetime; none ever refuses) with reserve, pricing and settle on every request,
//! `--budget redis://...` the same on a Redis; `--redact` runs the redaction layer with the
//! default policy over every request (the 2 KB request holds no personal data: the scan
//! runs, nothing is rewritten); `--inspect` runs output inspection with ai-redact's
//! detectors and the system-prompt leak detector over every answer (window 64 tokens;
//! the recorded answers hold nothing to find). Requests are the 2 KB Messages request
//! of `benches/data/request_2k.json`; non-streaming answers replay
//! `tests/fixtures/anthropic/message_basic.json`, streaming answers replay
//! `tests/fixtures/anthropic/stream_text.sse` one event per write.

use ai_gateway::provider::AnthropicProvider;
use ai_gateway::server::{ServerConfig, serve};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = include_bytes!("../benches/data/request_2k.json");
const MESSAGE: &[u8] = include_bytes!("../tests/fixtures/anthropic/message_basic.json");
const STREAM: &[u8] = include_bytes!("../tests/fixtures/anthropic/stream_text.sse");

static CONNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The gateway key every request carries (`--auth`).
static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn upstream(req: Request<hyper::body::Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let stream = memchr_contains(&body, b"\"stream\":true");
    let mut resp = if stream {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = std::str::from_utf8(STREAM)
            .expect("utf8")
            .split_inclusive("\n\n")
            .map(|e| Ok(Frame::data(Bytes::from_static(e.as_bytes()))))
            .collect();
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
            frames,
        ))));
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("text/event-stream"),
        );
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(MESSAGE)).boxed());
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    resp.headers_mut()
        .insert("request-id", http::HeaderValue::from_static("req_bench"));
    Ok(resp)
}

fn memchr_contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn start_upstream() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    break;
                };
                CONNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), hyper::service::service_fn(upstream))
                        .await;
                });
            }
        });
    });
    rx.recv().expect("upstream address")
}

/// Layers switched on by a flag alone.
#[derive(Clone, Copy, Debug, Default)]
struct Layers {
    redact: bool,
    inspect: bool,
}

fn start_gateway(
    upstream: SocketAddr,
    demo: bool,
    auth: Option<ai_gateway::auth::AuthLayer>,
    audit: Option<ai_gateway::audit::Fsync>,
    ratelimit: Option<String>,
    budget: Option<String>,
    layers: Layers,
) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let provider = AnthropicProvider::builder()
                .api_key("sk-bench")
                .base_url(format!("http://{upstream}"))
                .build()
                .expect("provider");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let audit = audit.map(|fsync| {
                use ai_gateway::audit::{
                    AuditLayer, AuditWriter, FileSink, FileSinkConfig, SigningKey, WriterConfig,
                };
                let dir = std::env::temp_dir()
                    .join(format!("ai-gateway-e2e-audit-{}", std::process::id()));
                let (key, _) = SigningKey::generate().expect("key");
                let sink = FileSink::open(FileSinkConfig::new(&dir, key)).expect("audit log");
                println!("--audit: records in {} (fsync {fsync:?})", dir.display());
                AuditLayer::new(
                    AuditWriter::spawn(
                        sink,
                        WriterConfig {
                            fsync,
                            ..WriterConfig::default()
                        },
                    )
                    .expect("writer"),
                )
            });
            let ratelimit = ratelimit.map(|store| {
                use ai_gateway::ratelimit::{
                    KeyPart, Limit, Policy, Rate, RateLimitLayer, RedisStore,
                };
                let big = Rate::per_second(1_000_000_000);
                let limit = |name: &str, by: KeyPart| {
                    Limit::new(name)
                        .by([by])
                        .requests(big)
                        .input_tokens(big)
                        .output_tokens(big)
                        .in_flight(1_000_000)
                };
                let policy = Policy::new()
                    .limit(limit("user", KeyPart::Subject))
                    .limit(limit("tenant", KeyPart::Tenant))
                    .limit(limit("model", KeyPart::Model));
                println!("--ratelimit {store}: 3 limits x 4 axes, reserve and settle per request");
                if store == "memory" {
                    RateLimitLayer::new(policy)
                } else {
                    let redis =
                        RedisStore::connect(&store, Duration::from_secs(1)).expect("redis url");
                    RateLimitLayer::with_store(policy, redis)
                }
            });
            let budget = budget.map(|store| {
                use ai_gateway::budget::{
                    Budget, BudgetLayer, BudgetPolicy, Period, PriceTable, RedisStore, Scope,
                };
                let big = "1000000000".parse().expect("usd");
                let policy = BudgetPolicy::new(vec![
                    Budget::new("user", Scope::Subject, big, Period::Daily),
                    Budget::new("tenant", Scope::Tenant, big, Period::Monthly).cut_off(true),
                    Budget::new("gateway", Scope::Global, big, Period::Lifetime),
                ]);
                println!("--budget {store}: 3 budgets, reserve, price and settle per request");
                if store == "memory" {
                    BudgetLayer::new(policy, PriceTable::defaults())
                } else {
                    let redis =
                        RedisStore::connect(&store, Duration::from_secs(1)).expect("redis url");
                    BudgetLayer::with_store(policy, PriceTable::defaults(), redis)
                }
            });
            let redact = layers.redact.then(|| {
                use ai_gateway::redact::{RedactLayer, RedactPolicy, Redactor};
                println!("--redact: every request scanned by the built-in detectors");
                RedactLayer::new(Redactor::new(RedactPolicy::default()))
            });
            let inspect = layers.inspect.then(|| {
                use ai_gateway::inspect::{InspectLayer, InspectPolicy, SystemPromptLeak};
                use ai_gateway::redact::{DetectorClassifier, Detectors};
                println!(
                    "--inspect: every answer inspected (detectors and system-prompt leak, window 64)"
                );
                InspectLayer::new(InspectPolicy::default())
                    .classifier(std::sync::Arc::new(DetectorClassifier::new(
                        Detectors::builtin(),
                    )))
                    .classifier(std::sync::Arc::new(SystemPromptLeak::default()))
            });
            let config = ServerConfig {
                auth,
                audit,
                ratelimit,
                budget,
                redact,
                inspect,
                ..ServerConfig::default()
            };
            if demo {
                let demo = ai_gateway::provider::DemoProvider::new().delay(Duration::ZERO);
                let _ = serve(listener, demo, config, std::future::pending()).await;
            } else {
                let _ = serve(listener, provider, config, std::future::pending()).await;
            }
        });
    });
    rx.recv().expect("gateway address")
}

struct Stats(Vec<Duration>);

impl Stats {
    fn pct(&mut self, p: f64) -> Duration {
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i]
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn one(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    body: &Bytes,
) -> Duration {
    let key = KEY.get().map_or("sk-bench", String::as_str);
    let req = Request::post(format!("http://{addr}/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(body.clone()))
        .expect("request");
    let t = Instant::now();
    let resp = client.request(req).await.expect("response");
    assert!(resp.status().is_success(), "status {}", resp.status());
    let _ = resp.into_body().collect().await.expect("body");
    t.elapsed()
}

fn main() {
    let mut n = 2000usize;
    let mut demo = false;
    let mut access_log = false;
    let mut auth = false;
    let mut audit = None;
    let mut ratelimit = None;
    let mut budget = None;
    let mut layers = Layers::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--requests" => n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n),
            "--demo" => demo = true,
            "--access-log" => access_log = true,
            "--auth" => auth = true,
            "--ratelimit" => ratelimit = Some(args.next().unwrap_or_else(|| "memory".to_owned())),
            "--budget" => budget = Some(args.next().unwrap_or_else(|| "memory".to_owned())),
            "--redact" => layers.redact = true,
            "--inspect" => layers.inspect = true,
            "--audit" => {
                audit = Some(match args.next().as_deref() {
                    Some("always") | None => ai_gateway::audit::Fsync::Always,
                    Some(d) => ai_gateway::audit::Fsync::Every(
                        humantime::parse_duration(d).expect("--audit always|DURATION"),
                    ),
                })
            }
            other => {
                eprintln!(
                    "unknown argument {other}; usage: e2e_bench [--requests N] [--demo] [--access-log] [--auth] [--audit always|DURATION] [--ratelimit memory|REDIS_URL] [--budget memory|REDIS_URL] [--redact] [--inspect]"
                );
                return;
            }
        }
    }
    if access_log {
        // What the example binary does by default: one formatted info line per request,
        // written (here to /dev/null, one write each, as to a log file).
        let sink = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("/dev/null");
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::sync::Mutex::new(sink))
            .with_ansi(false)
            .init();
        println!("--access-log: one access line per request, formatted and written to /dev/null");
    }
    let auth = auth.then(|| {
        // A gateway key among 10,000 (the direct path ignores it).
        use ai_gateway::auth::{AuthLayer, KeyHasher, KeyRecord, MemoryKeys, MintedKey};
        let hasher = KeyHasher::new(b"pepper of the end-to-end bench").expect("pepper");
        let mut records = Vec::new();
        for i in 0..10_000 {
            let m = MintedKey::generate(&hasher).expect("mint");
            if i == 0 {
                let _ = KEY.set(m.key.clone());
            }
            let r: KeyRecord = serde_json::from_value(serde_json::json!({
                "id": m.id, "hash": m.hash, "subject": format!("user-{i}"), "tenant": "acme",
            }))
            .expect("record");
            records.push(r);
        }
        println!("--auth: every request carries a gateway key, checked among 10,000");
        AuthLayer::keys(MemoryKeys::new(records).expect("store"), hasher)
    });
    let up = start_upstream();
    let gw = start_gateway(up, demo, auth, audit, ratelimit, budget, layers);
    if demo {
        println!(
            "--demo: the gateway answers from its demo upstream (server-side cost only, no upstream hop)"
        );
    }
    let plain = Bytes::from_static(REQUEST);
    let mut v: serde_json::Value = serde_json::from_slice(REQUEST).expect("json");
    v["stream"] = serde_json::json!(true);
    let streaming = Bytes::from(serde_json::to_vec(&v).expect("json"));

    runtime().block_on(async move {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        for (name, body) in [("non-streaming 2 KB request", &plain), ("streaming (stream_text.sse, 10 events), whole stream", &streaming)] {
            // Warm up both paths (connections, caches).
            for _ in 0..200 {
                one(&client, up, body).await;
                one(&client, gw, body).await;
            }
            let (mut direct, mut through) = (Stats(Vec::with_capacity(n)), Stats(Vec::with_capacity(n)));
            for _ in 0..n / 50 {
                for _ in 0..50 {
                    direct.0.push(one(&client, up, body).await);
                }
                for _ in 0..50 {
                    through.0.push(one(&client, gw, body).await);
                }
            }
            let (d50, d99, g50, g99) = (direct.pct(0.5), direct.pct(0.99), through.pct(0.5), through.pct(0.99));
            println!("{name}, concurrency 1, {} requests each path, interleaved:", direct.0.len());
            println!("  direct   p50 {:8.1} us   p99 {:8.1} us", us(d50), us(d99));
            println!("  gateway  p50 {:8.1} us   p99 {:8.1} us", us(g50), us(g99));
            println!(
                "  added    p50 {:8.1} us   p99 {:8.1} us   ratio gateway/direct p50 {:.2}",
                us(g50) - us(d50),
                us(g99) - us(d99),
                us(g50) / us(d50)
            );
        }
        println!("upstream connections accepted: {}", CONNS.load(std::sync::atomic::Ordering::Relaxed));
        // Throughput of the gateway on its one core: 4 concurrent clients, 2 s.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let client = client.clone();
            let body = plain.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    one(&client, gw, &body).await;
                    done += 1;
                }
                done
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        println!("gateway throughput, non-streaming, 4 clients on one client thread: {:.0} req/s (client-bound on 2 cores)", total as f64 / 2.0);
    });
}
