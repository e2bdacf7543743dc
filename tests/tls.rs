//! The provider over TLS (rustls) to a local HTTPS upstream with a self-signed
//! certificate: HTTP/2 when the server offers it by ALPN, HTTP/1.1 otherwise, and an
//! untrusted certificate refused.

mod common;

use ai_gateway::provider::AnthropicProvider;
use bytes::Bytes;
use common::*;
use http::{Response, StatusCode, Version};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

struct TlsUpstream {
    addr: SocketAddr,
    cert_der: Vec<u8>,
    versions: Arc<Mutex<Vec<Version>>>,
}

async fn tls_upstream(alpn: &[&[u8]]) -> TlsUpstream {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let cert_der = cert.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert_der.clone().into()], key)
    .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let versions: Arc<Mutex<Vec<Version>>> = Arc::default();
    let seen = versions.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        seen.lock().expect("lock").push(req.version());
                        async move {
                            let mut resp = Response::new(Full::new(Bytes::from(fixture(
                                "anthropic/message_basic.json",
                            ))));
                            resp.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsUpstream {
        addr,
        cert_der,
        versions,
    }
}

async fn gateway_for(up: &TlsUpstream, trust: bool) -> SocketAddr {
    let mut b = AnthropicProvider::builder()
        .api_key(VENDOR_KEY)
        .base_url(format!("https://{}", up.addr));
    if trust {
        b = b.add_root_certificate(up.cert_der.clone());
    }
    serve_provider(b.build().expect("provider"), GatewayOpts::default()).await
}

#[tokio::test]
async fn http2_is_used_when_the_upstream_offers_it() {
    let up = tls_upstream(&[b"h2", b"http/1.1"]).await;
    let gw = gateway_for(&up, true).await;
    for _ in 0..2 {
        let (status, _, body) = post_json(gw, messages_body("m", false)).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v, fixture_json("anthropic/message_basic.json"));
    }
    assert_eq!(
        *up.versions.lock().expect("lock"),
        [Version::HTTP_2, Version::HTTP_2]
    );
}

#[tokio::test]
async fn http1_is_used_when_the_upstream_offers_only_http1() {
    let up = tls_upstream(&[b"http/1.1"]).await;
    let gw = gateway_for(&up, true).await;
    let (status, _, _) = post_json(gw, messages_body("m", false)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(*up.versions.lock().expect("lock"), [Version::HTTP_11]);
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_refused() {
    let up = tls_upstream(&[b"h2", b"http/1.1"]).await;
    let gw = gateway_for(&up, false).await;
    let (status, _, body) = post_json(gw, messages_body("m", false)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(error_json(&body).0, "api_error");
    assert!(
        up.versions.lock().expect("lock").is_empty(),
        "no request went over the untrusted connection"
    );
}
