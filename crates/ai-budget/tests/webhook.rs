//! The webhook sink against a local HTTP server that fails the first time.

use ai_budget::{Alert, AlertSink, WebhookSink};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn alert() -> Alert {
    Alert {
        budget: "eng-monthly".into(),
        scope: "team",
        owner: "eng".into(),
        period: "monthly",
        window: "2026-12".into(),
        threshold_percent: 80,
        cap_usd: "100.00".into(),
        spent_usd: "80.01".into(),
    }
}

/// Serves on 127.0.0.1: the first `fail` requests get `first` (a status, or no answer at
/// all for 0), later ones 204. Returns the address, the request count and the bodies.
async fn server(
    fail: usize,
    first: u16,
) -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    Arc<Mutex<Vec<serde_json::Value>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (c, b) = (count.clone(), bodies.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (c, b) = (c.clone(), b.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (c, b) = (c.clone(), b.clone());
                    async move {
                        let n = c.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(req.headers()["content-type"], "application/json");
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        b.lock()
                            .expect("lock")
                            .push(serde_json::from_slice(&body).expect("json"));
                        let status = if n < fail {
                            if first == 0 {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                            }
                            first
                        } else {
                            204
                        };
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, count, bodies)
}

#[tokio::test]
async fn a_failed_delivery_is_retried_and_the_json_arrives() {
    let (addr, count, bodies) = server(1, 503).await;
    let sink = WebhookSink::new(&format!("http://{addr}/hooks/budget"))
        .expect("sink")
        .retries(3, Duration::from_millis(10));
    assert_eq!(
        sink.deliver(&alert()).await,
        Ok(2),
        "one failure, then delivered"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let got = bodies.lock().expect("lock").clone();
    assert_eq!(got[1]["budget"], "eng-monthly");
    assert_eq!(got[1]["threshold_percent"], 80);
    assert_eq!(got[1]["spent_usd"], "80.01");
    assert_eq!(got[0], got[1], "the same alert each time");
}

#[tokio::test]
async fn a_server_that_does_not_answer_times_out_and_is_retried() {
    let (addr, count, _) = server(1, 0).await;
    let sink = WebhookSink::new(&format!("http://{addr}/"))
        .expect("sink")
        .timeout(Duration::from_millis(200))
        .retries(2, Duration::from_millis(10));
    assert_eq!(sink.deliver(&alert()).await, Ok(2));
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retries_end_and_client_errors_are_not_retried() {
    let (addr, count, _) = server(usize::MAX, 500).await;
    let sink = WebhookSink::new(&format!("http://{addr}/"))
        .expect("sink")
        .retries(2, Duration::from_millis(5));
    let e = sink.deliver(&alert()).await.expect_err("always 500");
    assert!(e.contains("500"), "{e}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "the first attempt and two retries"
    );
    let (addr, count, _) = server(usize::MAX, 404).await;
    let sink = WebhookSink::new(&format!("http://{addr}/")).expect("sink");
    assert!(sink.deliver(&alert()).await.is_err());
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(WebhookSink::new("ftp://example.com/").is_err());
}

#[tokio::test]
async fn as_a_sink_it_delivers_in_the_background() {
    let (addr, count, _) = server(1, 502).await;
    let sink = WebhookSink::new(&format!("http://{addr}/"))
        .expect("sink")
        .retries(3, Duration::from_millis(10));
    sink.alert(alert());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivered in the background"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
