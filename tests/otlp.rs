//! With the `otlp` feature, the `gen_ai` span of a call reaches an OTLP/HTTP collector with
//! the GenAI attribute names (`cargo test --features otlp --test otlp`; scripts/test.sh
//! runs it). The collector here is a local HTTP server keeping what it is sent.
#![cfg(feature = "otlp")]

mod common;

use ai_gateway::audit::WriterConfig;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_ai_spans_reach_the_collector() {
    // The collector: keeps every POST body to /v1/traces.
    let got: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector = listener.local_addr().expect("addr");
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let keep = keep.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let keep = keep.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            keep.lock().expect("lock").push((path, body));
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(Bytes::new()),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let (otlp, guard) =
        ai_gateway::otlp::layer(&format!("http://{collector}"), "ai-gateway-test").expect("layer");
    tracing_subscriber::registry().with(otlp).init();

    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (audit_layer, _) = audit::layer(dir.path(), WriterConfig::default());
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            audit: Some(audit_layer),
            ..GatewayOpts::default()
        },
    )
    .await;
    let (status, _, _) = post_json(gw, messages_body("replay/message_basic", false)).await;
    assert_eq!(status, 200);
    tokio::task::spawn_blocking(move || guard.flush())
        .await
        .expect("flush");
    let mut body = Vec::new();
    for _ in 0..100 {
        let seen = got.lock().expect("lock").clone();
        if let Some((path, b)) = seen.iter().find(|(p, _)| p == "/v1/traces") {
            assert_eq!(path, "/v1/traces");
            body = b.to_vec();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!body.is_empty(), "the collector got the spans");
    // Protobuf keeps strings as they are: the attribute names and values are in the bytes.
    let has = |s: &str| body.windows(s.len()).any(|w| w == s.as_bytes());
    for name in [
        "gen_ai",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.system",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
        "replay/message_basic",
        "anthropic",
        "ai-gateway-test",
    ] {
        assert!(has(name), "{name} is not in the exported span");
    }
}
