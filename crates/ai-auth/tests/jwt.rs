//! JWT bearer tokens: the attack suite, every accepted algorithm, claim mapping,
//! delegation to agents, and the cache.

use ai_auth::{AuthLayer, ClaimMap, JwtAlgorithm as Alg, JwtIssuer};
use ai_core::{AuthFailure, Principal};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

const ISS: &str = "https://idp.example";
const AUD: &str = "ai-gateway";
const HS_SECRET: &[u8] = b"an hs256 secret of at least thirty-two bytes";

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/keys/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("key")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice@acme.example", "exp": now() + 600,
        "tenant_id": "acme", "scope": "messages models", "groups": ["eng"],
    })
}

fn issuer() -> JwtIssuer {
    JwtIssuer::new(ISS, &[AUD])
        .rsa_key(Some("rsa-1"), Alg::RS256, &pem("rsa_public"))
        .expect("rsa")
        .ec_key(Some("ec-1"), Alg::ES256, &pem("ec_public"))
        .expect("ec")
        .ed_key(Some("ed-1"), &pem("ed_public"))
        .expect("ed")
        .hs256_secret(Some("hs-1"), HS_SECRET)
        .expect("hs")
}

fn sign(alg: Alg, kid: &str, claims: &Value) -> String {
    let key = match alg {
        Alg::RS256 => EncodingKey::from_rsa_pem(&pem("rsa_private")).expect("rsa"),
        Alg::ES256 => EncodingKey::from_ec_pem(&pem("ec_private")).expect("ec"),
        Alg::EdDSA => EncodingKey::from_ed_pem(&pem("ed_private")).expect("ed"),
        Alg::HS256 => EncodingKey::from_secret(HS_SECRET),
        other => panic!("{other:?}"),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    encode(&h, claims, &key).expect("sign")
}

async fn call(
    layer: &AuthLayer,
    token: &str,
) -> (StatusCode, Option<Principal>, Option<AuthFailure>, String) {
    let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
        let mut resp = Response::new(Full::new(Bytes::new()));
        if let Some(p) = req.extensions().get::<Principal>() {
            resp.extensions_mut().insert(p.clone());
        }
        Ok::<_, std::convert::Infallible>(resp)
    }));
    let req = Request::post("/v1/messages")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("request");
    let resp = svc.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let p = resp.extensions().get::<Principal>().cloned();
    let f = resp.extensions().get::<AuthFailure>().copied();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, p, f, String::from_utf8_lossy(&body).into_owned())
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

#[tokio::test]
async fn every_allowed_algorithm_yields_the_mapped_principal() {
    let layer = AuthLayer::jwt(vec![issuer()]);
    for (alg, kid) in [
        (Alg::RS256, "rsa-1"),
        (Alg::ES256, "ec-1"),
        (Alg::EdDSA, "ed-1"),
        (Alg::HS256, "hs-1"),
    ] {
        let (status, p, _, body) = call(&layer, &sign(alg, kid, &claims())).await;
        assert_eq!(status, StatusCode::OK, "{alg:?}: {body}");
        let p = p.expect("principal");
        assert_eq!(&*p.subject, "alice@acme.example");
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert!(p.has_scope("messages") && p.has_scope("models"));
        assert_eq!(p.agent, None);
    }
    // A claim map: groups -> scopes, a tier claim.
    let mapped = AuthLayer::jwt(vec![issuer().claims(ClaimMap {
        scopes: Some("groups".into()),
        tier: Some("tier".into()),
        ..ClaimMap::default()
    })]);
    let mut c = claims();
    c["tier"] = json!("pro");
    let (_, p, _, _) = call(&mapped, &sign(Alg::ES256, "ec-1", &c)).await;
    let p = p.expect("principal");
    assert!(p.has_scope("eng") && !p.has_scope("messages"));
    assert_eq!(p.tier.as_deref(), Some("pro"));
}

#[tokio::test]
async fn the_attack_suite_is_refused_with_one_message() {
    let layer = AuthLayer::jwt(vec![issuer()]);
    let good = claims();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let mut without_exp = good.clone();
    without_exp.as_object_mut().expect("object").remove("exp");
    // alg none: a header and payload with an empty signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    // Algorithm confusion: HS256 "signed" with the RSA public key as the shared secret.
    let mut h = Header::new(Alg::HS256);
    h.kid = Some("rsa-1".into());
    let confused = encode(&h, &good, &EncodingKey::from_secret(&pem("rsa_public"))).expect("sign");
    let mut h = Header::new(Alg::HS256);
    h.kid = None;
    let confused_no_kid =
        encode(&h, &good, &EncodingKey::from_secret(&pem("rsa_public"))).expect("sign");
    // Signed by a key the issuer does not have, under a known and an unknown kid.
    let mut h = Header::new(Alg::RS256);
    h.kid = Some("rsa-1".into());
    let foreign = encode(
        &h,
        &good,
        &EncodingKey::from_rsa_pem(&pem("rsa2_private")).expect("rsa"),
    )
    .expect("sign");
    let valid = sign(Alg::RS256, "rsa-1", &good);
    let truncated = valid[..valid.len() - 10].to_owned();
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64(&with("sub", json!("mallory"))),
            parts[2]
        )
    };
    let cases: Vec<(String, &str)> = vec![
        // jsonwebtoken has no `none` algorithm: the header itself does not parse.
        (none, "jwt_malformed"),
        (confused, "jwt_unknown_kid"),
        (confused_no_kid, "jwt_bad_signature"),
        (foreign, "jwt_bad_signature"),
        (sign(Alg::RS256, "rsa-9", &good), "jwt_unknown_kid"),
        (
            sign(Alg::RS256, "rsa-1", &with("exp", json!(now() - 3600))),
            "jwt_expired",
        ),
        (
            sign(Alg::RS256, "rsa-1", &with("nbf", json!(now() + 3600))),
            "jwt_not_yet_valid",
        ),
        (
            sign(
                Alg::RS256,
                "rsa-1",
                &with("iss", json!("https://evil.example")),
            ),
            "jwt_unknown_issuer",
        ),
        (
            sign(Alg::RS256, "rsa-1", &with("aud", json!("another-service"))),
            "jwt_wrong_audience",
        ),
        (
            sign(Alg::RS256, "rsa-1", &with("exp", json!("tomorrow"))),
            "jwt_bad_claim",
        ),
        (
            sign(Alg::RS256, "rsa-1", &with("nbf", json!("soon"))),
            "jwt_bad_claim",
        ),
        (sign(Alg::RS256, "rsa-1", &without_exp), "jwt_bad_claim"),
        (tampered, "jwt_bad_signature"),
        (truncated, "jwt_bad_signature"),
        ("not.a.jwt".to_owned(), "jwt_malformed"),
        ("garbage".to_owned(), "jwt_malformed"),
        ("a.".repeat(600_000), "jwt_malformed"),
    ];
    let mut bodies = Vec::new();
    for (token, reason) in cases {
        let (status, p, failure, body) = call(&layer, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        assert_eq!(
            failure,
            Some(AuthFailure(reason)),
            "{}",
            &token[..token.len().min(80)]
        );
        assert!(p.is_none());
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one message for every refusal"
    );
}

#[tokio::test]
async fn an_agent_acts_for_its_person_and_never_gains_a_scope() {
    let layer = AuthLayer::jwt(vec![issuer()]);
    let mut c = claims();
    c["act"] = json!({"sub": "agent:release-bot"});
    let (status, p, _, _) = call(&layer, &sign(Alg::ES256, "ec-1", &c)).await;
    assert_eq!(status, StatusCode::OK);
    let p = p.expect("principal");
    assert_eq!(&*p.subject, "alice@acme.example", "the person");
    assert_eq!(p.agent.as_deref(), Some("agent:release-bot"), "the agent");
    assert!(p.has_scope("models"));

    c["act"] = json!({"sub": "agent:release-bot", "scope": "messages"});
    let (_, p, _, _) = call(&layer, &sign(Alg::ES256, "ec-1", &c)).await;
    let p = p.expect("principal");
    assert!(
        p.has_scope("messages") && !p.has_scope("models"),
        "narrowed to the agent's"
    );

    c["act"] = json!({"sub": "agent:release-bot", "scope": ""});
    let (status, _, failure, _) = call(&layer, &sign(Alg::ES256, "ec-1", &c)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an empty agent scope would read as no limits"
    );
    assert_eq!(failure, Some(AuthFailure("agent_scope_exceeds_person")));

    c["act"] = json!({"sub": "agent:release-bot", "scope": "messages admin"});
    let (status, p, failure, body) = call(&layer, &sign(Alg::ES256, "ec-1", &c)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(p.is_none());
    assert_eq!(failure, Some(AuthFailure("agent_scope_exceeds_person")));
    assert!(body.contains("permission_error"), "{body}");
}

#[tokio::test]
async fn a_verified_token_is_cached_until_it_expires() {
    let layer = AuthLayer::jwt(vec![issuer()]);
    let token = sign(Alg::RS256, "rsa-1", &claims());
    for _ in 0..3 {
        assert_eq!(call(&layer, &token).await.0, StatusCode::OK);
    }
    // A cached entry never outlives exp: with no leeway, an expired token fails at once.
    let short = AuthLayer::jwt(vec![issuer().leeway(std::time::Duration::ZERO)]);
    let expired = sign(Alg::RS256, "rsa-1", &{
        let mut c = claims();
        c["exp"] = json!(now() - 1);
        c
    });
    assert_eq!(
        call(&short, &expired).await.2,
        Some(AuthFailure("jwt_expired"))
    );
}

#[tokio::test]
async fn gateway_keys_and_tokens_work_side_by_side() {
    use ai_auth::{KeyHasher, KeyRecord, MemoryKeys, MintedKey};
    let hasher = KeyHasher::new(b"pepper for the jwt tests").expect("pepper");
    let m = MintedKey::generate(&hasher).expect("mint");
    let r: KeyRecord =
        serde_json::from_value(json!({"id": m.id, "hash": m.hash, "subject": "svc"}))
            .expect("record");
    let layer =
        AuthLayer::keys(MemoryKeys::new(vec![r]).expect("store"), hasher).with_jwt(vec![issuer()]);
    let (s, p, _, _) = call(&layer, &m.key).await;
    assert_eq!(
        (s, p.map(|p| p.subject.to_string())),
        (StatusCode::OK, Some("svc".into()))
    );
    let (s, p, _, _) = call(&layer, &sign(Alg::EdDSA, "ed-1", &claims())).await;
    assert_eq!(
        (s, p.map(|p| p.subject.to_string())),
        (StatusCode::OK, Some("alice@acme.example".into()))
    );
}
