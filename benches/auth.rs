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

criterion_group!(benches, bench, bench_jwt);
criterion_main!(benches);

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/crates/ai-auth/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("key")
}

/// JWT bearer tokens: a cached token, and RS256 / ES256 signature checks with the cache
/// off. Baseline: the same request with no layer.
fn bench_jwt(c: &mut Criterion) {
    use ai_gateway::auth::{JwtAlgorithm as Alg, JwtIssuer};
    use jsonwebtoken::{EncodingKey, Header, encode};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let issuer = || {
        JwtIssuer::new("https://idp.example", &["ai-gateway"])
            .rsa_key(Some("rsa-1"), Alg::RS256, &pem("rsa_public"))
            .expect("rsa")
            .ec_key(Some("ec-1"), Alg::ES256, &pem("ec_public"))
            .expect("ec")
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let claims = serde_json::json!({
        "iss": "https://idp.example", "aud": "ai-gateway", "sub": "alice", "exp": exp,
        "tenant_id": "acme", "scope": "messages",
    });
    let token = |alg: Alg, kid: &str, key: EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_owned());
        encode(&h, &claims, &key).expect("sign")
    };
    let rs = token(
        Alg::RS256,
        "rsa-1",
        EncodingKey::from_rsa_pem(&pem("rsa_private")).expect("rsa"),
    );
    let es = token(
        Alg::ES256,
        "ec-1",
        EncodingKey::from_ec_pem(&pem("ec_private")).expect("ec"),
    );
    let bearer = |t: &str| {
        Request::post("/v1/messages")
            .header("authorization", format!("Bearer {t}"))
            .body(())
            .expect("request")
    };
    let mut g = c.benchmark_group("auth_jwt");
    let cached = AuthLayer::jwt(vec![issuer()]).layer(inner());
    g.bench_function("cached_rs256", |b| {
        b.to_async(&rt).iter_batched(
            || (cached.clone(), bearer(&rs)),
            |(s, r)| async move { s.oneshot(r).await.expect("ok").status() },
            BatchSize::SmallInput,
        )
    });
    let uncached = AuthLayer::jwt(vec![issuer()])
        .jwt_cache_capacity(0)
        .layer(inner());
    for (name, t) in [("uncached_rs256", &rs), ("uncached_es256", &es)] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || (uncached.clone(), bearer(t)),
                |(s, r)| async move { s.oneshot(r).await.expect("ok").status() },
                BatchSize::SmallInput,
            )
        });
    }
    let bare = inner();
    g.bench_function("baseline/no_layer", |b| {
        b.to_async(&rt).iter_batched(
            || (bare, bearer(&rs)),
            |(s, r)| async move { s.oneshot(r).await.expect("ok").status() },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}
