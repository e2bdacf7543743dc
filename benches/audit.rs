//! ai-audit: the cost of one record on the request path, and the sustained write rate of
//! the file log.
//!
//! - `audit/build_hash_enqueue`: build the record of a 2 KB request and its completion
//!   (prompt hash, cache-prefix hashes, token estimate), serialize it and hand it to the
//!   writer (which discards it on another thread). Baseline: building the 2 KB request's
//!   completion alone (the cost the layer adds is the difference).
//! - `audit/layer_null_sink`: the whole layer around a mock provider, waiting for the
//!   acknowledgement from a writer whose sink does nothing (the thread hand-off included);
//!   `layer_null_sink_no_wait`: the same with `fsync` on an interval, where the response
//!   does not wait. Baseline: the mock provider alone.
//! - `audit_write/*`: 10,000 records into a real `FileSink` (hash chain, checkpoints every
//!   1000) with `fsync` per batch and every 10 ms: records per second.

#![allow(missing_docs)]

use ai_audit::{
    AuditLayer, AuditWriter, FileSink, FileSinkConfig, Fsync, SigningKey, Sink, WriterConfig,
};
use ai_core::test_util::{MockProvider, Script};
use ai_core::{Completion, MessagesRequest, MessagesResponse, Principal, RequestId};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tower::{Layer, ServiceExt};

const REQUEST: &[u8] = include_bytes!("data/request_2k.json");

struct Discard;

impl Sink for Discard {
    fn append(&mut self, batch: &[Bytes]) -> std::io::Result<()> {
        black_box(batch);
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn request() -> Request<MessagesRequest> {
    let mut r = Request::new(serde_json::from_slice::<MessagesRequest>(REQUEST).expect("request"));
    r.extensions_mut().insert(RequestId::new("gw_bench"));
    r.extensions_mut().insert(Principal {
        tenant: Some("acme".into()),
        ..Principal::new("alice")
    });
    r
}

fn completion() -> Completion {
    let m: MessagesResponse = serde_json::from_slice(include_bytes!(
        "../tests/fixtures/anthropic/message_basic.json"
    ))
    .expect("message");
    Completion::of_message(&m)
}

fn record_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let writer = AuditWriter::spawn(Discard, WriterConfig::default()).expect("writer");
    let req = request();
    let done = completion();
    let mut g = c.benchmark_group("audit");
    g.bench_function("baseline/completion_only", |b| {
        b.iter(|| black_box(completion()))
    });
    g.bench_function("part/build", |b| {
        b.iter(|| black_box(ai_audit::record::build(black_box(&req), &done)))
    });
    let rec = ai_audit::record::build(&req, &done);
    g.bench_function("part/serialize", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&rec)).expect("json")))
    });
    let bytes = Bytes::from(serde_json::to_vec(&rec).expect("json"));
    g.bench_function("part/enqueue", |b| {
        b.iter(|| {
            let slot = rt.block_on(writer.reserve()).expect("room");
            drop(slot.send(bytes.clone()));
        })
    });
    g.bench_function("part/request_to_vec_sha256", |b| {
        b.iter(|| {
            let v = serde_json::to_vec(black_box(req.body())).expect("json");
            black_box(ring::digest::digest(&ring::digest::SHA256, &v))
        })
    });
    g.bench_function("build_hash_enqueue", |b| {
        b.iter(|| {
            let rec = ai_audit::record::build(black_box(&req), &done);
            let bytes = Bytes::from(serde_json::to_vec(&rec).expect("json"));
            let slot = rt.block_on(writer.reserve()).expect("room");
            drop(slot.send(bytes));
        })
    });
    let mock = MockProvider::always(Script::text("hello")).without_recording();
    g.bench_function("baseline/mock_provider", |b| {
        b.to_async(&rt).iter(|| {
            let mock = mock.clone();
            async move { black_box(mock.oneshot(request()).await.expect("ok")) }
        })
    });
    let layer =
        AuditLayer::new(AuditWriter::spawn(Discard, WriterConfig::default()).expect("writer"));
    let svc = layer.layer(mock.clone());
    g.bench_function("layer_null_sink", |b| {
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            async move { black_box(svc.oneshot(request()).await.expect("ok")) }
        })
    });
    // fsync on an interval: the response does not wait for the writer thread.
    let layer = AuditLayer::new(
        AuditWriter::spawn(
            Discard,
            WriterConfig {
                fsync: Fsync::Every(Duration::from_millis(10)),
                ..WriterConfig::default()
            },
        )
        .expect("writer"),
    );
    let svc = layer.layer(mock.clone());
    g.bench_function("layer_null_sink_no_wait", |b| {
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            async move { black_box(svc.oneshot(request()).await.expect("ok")) }
        })
    });
    g.finish();
}

fn sustained(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rec = Bytes::from(
        serde_json::to_vec(&ai_audit::record::build(&request(), &completion())).expect("json"),
    );
    const N: u64 = 10_000;
    let mut g = c.benchmark_group("audit_write");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (name, fsync) in [
        ("fsync_per_batch", Fsync::Always),
        ("fsync_every_10ms", Fsync::Every(Duration::from_millis(10))),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let (key, _) = SigningKey::generate().expect("key");
        let sink = FileSink::open(FileSinkConfig::new(dir.path(), key)).expect("open");
        let writer = AuditWriter::spawn(
            sink,
            WriterConfig {
                fsync,
                queue: N as usize,
                ..WriterConfig::default()
            },
        )
        .expect("writer");
        g.bench_function(BenchmarkId::new("file", name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    rt.block_on(async {
                        let mut last = None;
                        for _ in 0..N {
                            let slot = writer.reserve().await.expect("room");
                            last = Some(slot.send(rec.clone()));
                        }
                        // Every record before the last is in an earlier or the same batch.
                        last.expect("sent").wait().await.expect("durable");
                    });
                    total += t.elapsed();
                }
                total
            })
        });
        writer.close();
    }
    g.finish();
}

criterion_group!(benches, record_path, sustained);
criterion_main!(benches);
