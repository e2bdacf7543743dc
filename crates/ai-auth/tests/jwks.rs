//! Keys published at a JWKS URL, served by a local HTTP server: first use fetches them, a
//! rotated key is picked up without a restart, and a flood of unknown `kid`s makes at most
//! the allowed number of fetches.

use ai_auth::jwt::Jwks;
use ai_auth::{AuthLayer, JwtAlgorithm as Alg, JwtIssuer};
use ai_core::AuthFailure;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Layer, ServiceExt};

const ISS: &str = "https://idp.example";
const AUD: &str = "ai-gateway";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("key")
}

fn jwk(private: &str, alg: Alg, kid: &str) -> Jwk {
    let key = match alg {
        Alg::RS256 => EncodingKey::from_rsa_pem(&pem(private)).expect("rsa"),
        Alg::ES256 => EncodingKey::from_ec_pem(&pem(private)).expect("ec"),
        other => panic!("{other:?}"),
    };
    let mut j = Jwk::from_encoding_key(&key, alg).expect("jwk");
    j.common.key_id = Some(kid.to_owned());
    j
}

fn token(private: &str, alg: Alg, kid: &str) -> String {
    let key = match alg {
        Alg::RS256 => EncodingKey::from_rsa_pem(&pem(private)).expect("rsa"),
        Alg::ES256 => EncodingKey::from_ec_pem(&pem(private)).expect("ec"),
        other => panic!("{other:?}"),
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    encode(
        &h,
        &json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": exp}),
        &key,
    )
    .expect("sign")
}

/// A JWKS endpoint on 127.0.0.1 serving whatever set the test puts in, counting requests.
struct Idp {
    url: String,
    set: Arc<Mutex<JwkSet>>,
    hits: Arc<AtomicUsize>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

async fn idp(keys: Vec<Jwk>) -> Idp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let set = Arc::new(Mutex::new(JwkSet { keys }));
    let hits = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, h, d) = (set.clone(), hits.clone(), down.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let (s, h, d) = (s.clone(), h.clone(), d.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let body = serde_json::to_vec(&*s.lock().expect("lock")).expect("json");
                    let failing = d.load(Ordering::SeqCst);
                    async move {
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        if failing {
                            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Idp {
        url: format!("http://{addr}/.well-known/jwks.json"),
        set,
        hits,
        down,
    }
}

async fn call(layer: &AuthLayer, token: &str) -> (StatusCode, Option<AuthFailure>) {
    let svc = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let req = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("req");
    let resp = svc.oneshot(req).await.expect("infallible");
    (
        resp.status(),
        resp.extensions().get::<AuthFailure>().copied(),
    )
}

fn layer(url: &str, min_refresh: Duration) -> AuthLayer {
    let jwks = Jwks::new(url, &[Alg::RS256, Alg::ES256])
        .expect("jwks")
        .min_refresh_interval(min_refresh);
    AuthLayer::jwt(vec![JwtIssuer::new(ISS, &[AUD]).jwks(jwks)]).jwt_cache_capacity(0)
}

#[tokio::test]
async fn published_keys_are_fetched_on_first_use_and_cached() {
    let idp = idp(vec![
        jwk("rsa_private", Alg::RS256, "k1"),
        jwk("ec_private", Alg::ES256, "e1"),
    ])
    .await;
    let auth = layer(&idp.url, Duration::from_secs(30));
    assert_eq!(
        call(&auth, &token("rsa_private", Alg::RS256, "k1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&auth, &token("ec_private", Alg::ES256, "e1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&auth, &token("rsa_private", Alg::RS256, "k1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        1,
        "one fetch serves every later token"
    );
    // A token signed by a key that is not published is refused.
    let (s, f) = call(&auth, &token("rsa2_private", Alg::RS256, "k1")).await;
    assert_eq!(
        (s, f),
        (
            StatusCode::UNAUTHORIZED,
            Some(AuthFailure("jwt_bad_signature"))
        )
    );
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart() {
    let idp = idp(vec![jwk("rsa_private", Alg::RS256, "k1")]).await;
    let auth = layer(&idp.url, Duration::from_millis(100));
    assert_eq!(
        call(&auth, &token("rsa_private", Alg::RS256, "k1")).await.0,
        StatusCode::OK
    );
    // The provider rotates: k2 is published and tokens are signed with it.
    idp.set
        .lock()
        .expect("lock")
        .keys
        .push(jwk("rsa2_private", Alg::RS256, "k2"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        call(&auth, &token("rsa2_private", Alg::RS256, "k2"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_makes_at_most_one_fetch_per_interval() {
    let idp = idp(vec![jwk("rsa_private", Alg::RS256, "k1")]).await;
    let auth = layer(&idp.url, Duration::from_secs(60));
    assert_eq!(
        call(&auth, &token("rsa_private", Alg::RS256, "k1")).await.0,
        StatusCode::OK
    );
    let mut refused = 0;
    for i in 0..200 {
        let (s, f) = call(
            &auth,
            &token("rsa_private", Alg::RS256, &format!("made-up-{i}")),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(f, Some(AuthFailure("jwt_unknown_kid")));
        refused += 1;
    }
    assert_eq!(refused, 200);
    assert_eq!(
        idp.hits.load(Ordering::SeqCst),
        1,
        "no fetch within the interval"
    );
    // HMAC is never accepted from a URL, nor plain http beyond loopback.
    assert!(Jwks::new(&idp.url, &[Alg::HS256]).is_err());
    assert!(Jwks::new("http://idp.example.com/jwks.json", &[Alg::RS256]).is_err());
    assert!(Jwks::new("https://idp.example.com/jwks.json", &[Alg::RS256]).is_ok());
}

#[tokio::test]
async fn an_identity_provider_that_is_down_does_not_lock_out_known_keys() {
    let idp = idp(vec![jwk("ec_private", Alg::ES256, "e1")]).await;
    let jwks = Jwks::new(&idp.url, &[Alg::ES256])
        .expect("jwks")
        .ttl(Duration::from_millis(100))
        .min_refresh_interval(Duration::from_millis(50));
    let auth = AuthLayer::jwt(vec![JwtIssuer::new(ISS, &[AUD]).jwks(jwks)]).jwt_cache_capacity(0);
    assert_eq!(
        call(&auth, &token("ec_private", Alg::ES256, "e1")).await.0,
        StatusCode::OK
    );
    idp.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The keys are stale and the refetch fails: the last good keys still answer.
    assert_eq!(
        call(&auth, &token("ec_private", Alg::ES256, "e1")).await.0,
        StatusCode::OK
    );
    assert!(idp.hits.load(Ordering::SeqCst) >= 2, "a refetch was tried");
}
