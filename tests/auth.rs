//! Gateway keys in the real server: who gets through, what reaches the upstream, model
//! grants, and the layer around a plain axum router.

mod common;

use common::*;
use http::StatusCode;

async fn gateway_with_keys() -> (MockUpstream, std::net::SocketAddr, String, String) {
    let up = MockUpstream::start().await;
    let (alice, a) = keys::mint("alice", "acme", &[]);
    let (sonnet_only, s) = keys::mint("sam", "globex", &["claude-sonnet-4-*"]);
    let opts = GatewayOpts {
        auth: Some(keys::layer(vec![a, s])),
        ..GatewayOpts::default()
    };
    let gw = start_gateway(&up.url(), opts).await;
    (up, gw, alice, sonnet_only)
}

fn keyed(
    gw: std::net::SocketAddr,
    model: &str,
    key: Option<(&str, &str)>,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = json_request(gw, "/v1/messages", &messages_body(model, false));
    if let Some((name, value)) = key {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    req
}

#[tokio::test]
async fn a_gateway_key_gets_through_and_goes_no_further() {
    let (up, gw, alice, _) = gateway_with_keys().await;
    for (header, value) in [
        ("x-api-key", alice.clone()),
        ("authorization", format!("Bearer {alice}")),
    ] {
        let (status, _, body) =
            send(keyed(gw, "replay/message_basic", Some((header, &value)))).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let seen = up.last();
        assert_eq!(
            seen.headers["x-api-key"], VENDOR_KEY,
            "the vendor key, not the caller's"
        );
        assert!(seen.headers.get("authorization").is_none());
        assert!(!format!("{:?}", seen.headers).contains(&alice));
    }
}

#[tokio::test]
async fn no_key_or_a_wrong_one_is_a_401_that_never_reaches_the_upstream() {
    let (up, gw, alice, _) = gateway_with_keys().await;
    let mut wrong = alice.clone();
    wrong.replace_range(wrong.len() - 4.., "AAAA");
    for key in [
        None,
        Some(("x-api-key", wrong.as_str())),
        Some(("x-api-key", "sk-ant-api03-not-ours")),
    ] {
        let (status, headers, body) = send(keyed(gw, "replay/message_basic", key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(headers.contains_key("request-id"));
        let (kind, _) = error_json(&body);
        assert_eq!(kind, "authentication_error");
    }
    assert!(up.seen().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn a_model_outside_the_key_s_grant_is_a_403_naming_the_model() {
    let (up, gw, _, sonnet_only) = gateway_with_keys().await;
    let (status, _, body) = send(keyed(
        gw,
        "replay/message_basic",
        Some(("x-api-key", &sonnet_only)),
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (kind, message) = error_json(&body);
    assert_eq!(kind, "permission_error");
    assert_eq!(
        message,
        "this api key may not use the model replay/message_basic"
    );
    assert!(
        !message.contains("claude-sonnet-4-*"),
        "the grants are not told"
    );
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn the_layer_guards_a_plain_axum_router_with_plain_text() {
    use ai_gateway::auth::Rejection;
    use ai_gateway::core::Principal;
    use axum::{Extension, Router, routing::get};
    use tower::ServiceExt;

    let (key, record) = keys::mint("ops", "acme", &[]);
    let app = Router::new()
        .route(
            "/whoami",
            get(|Extension(p): Extension<Principal>| async move { p.subject.to_string() }),
        )
        .layer(keys::layer(vec![record]).rejection(Rejection::PlainText));
    let ok = http::Request::get("/whoami")
        .header("x-api-key", &key)
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(ok).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"ops");
    let no = http::Request::get("/whoami")
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = app.oneshot(no).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn a_jwt_of_a_configured_issuer_gets_through_the_gateway() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let keys_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/ai-auth/tests/keys");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ai-gateway-auth-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("keys.toml"), "").expect("keys");
    let toml = format!(
        "[auth]\nkeys_file = \"keys.toml\"\nkey_pepper = \"${{PEPPER}}\"\n\n[[auth.issuers]]\nissuer = \"https://idp.test\"\naudiences = [\"gw\"]\nkeys = [{{ kid = \"e1\", algorithm = \"ES256\", pem_file = \"{keys_dir}/ec_public.pem\" }}]\n[auth.issuers.claims]\nscopes = \"groups\"\n"
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, &toml).expect("config");
    let config = ai_gateway::config::GatewayConfig::parse(&toml, "gateway.toml", |n| {
        (n == "PEPPER").then(|| keys::PEPPER.to_owned())
    })
    .expect("config parses");
    let mut auth = config.auth.expect("[auth]");
    auth.keys_file = dir.join("keys.toml");
    let (layer, _) = auth.build().expect("auth builds");

    let up = MockUpstream::start().await;
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            auth: Some(layer),
            ..GatewayOpts::default()
        },
    )
    .await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("e1".into());
    let token = encode(
        &h,
        &serde_json::json!({"iss": "https://idp.test", "aud": "gw", "sub": "alice", "exp": exp,
            "groups": ["eng", "messages"], "act": {"sub": "agent:ci"}}),
        &EncodingKey::from_ec_pem(
            &std::fs::read(format!("{keys_dir}/ec_private.pem")).expect("pem"),
        )
        .expect("key"),
    )
    .expect("sign");
    let bearer = format!("Bearer {token}");
    let (status, _, body) = send(keyed(
        gw,
        "replay/message_basic",
        Some(("authorization", &bearer)),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(
        up.last().headers.get("authorization").is_none(),
        "the token goes no further"
    );
    let (status, _, _) = send(keyed(
        gw,
        "replay/message_basic",
        Some(("authorization", "Bearer a.b.c")),
    ))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_layer_guards_a_tonic_service_with_grpc_statuses() {
    use ai_gateway::auth::Rejection;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let (key, record) = keys::mint("ops", "acme", &[]);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(keys::layer(vec![record]).rejection(Rejection::Grpc))
            .add_service(health)
            .serve(addr),
    );
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("endpoint");
    let mut channel = None;
    for _ in 0..100 {
        if let Ok(c) = endpoint.connect().await {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut client = HealthClient::new(channel.expect("the tonic server started"));

    let mut ok = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    ok.metadata_mut()
        .insert("x-api-key", key.parse().expect("metadata"));
    let resp = client.check(ok).await.expect("a gateway key gets through");
    assert_eq!(resp.get_ref().status, 1, "SERVING");

    let none = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    let status = client.check(none).await.expect_err("no key");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    wrong.metadata_mut().insert(
        "x-api-key",
        "gwk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .parse()
            .expect("metadata"),
    );
    let status = client.check(wrong).await.expect_err("wrong key");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "invalid api key");
}
