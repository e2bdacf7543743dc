//! VertexProvider against a local Vertex AI mock and a local OAuth2 token endpoint: the
//! token endpoint checks the JWT bearer grant (signature, issuer, audience, scope) and
//! counts its tokens; Vertex checks the bearer token and answers with the Anthropic
//! stream and message formats Vertex serves (the recorded Anthropic bodies) and Google's
//! error envelope (gzip-compressed, with the headers of a recorded 429).

use ai_core::{AiBody, AiError, Endpoint, ErrorKind, MessagesRequest, Served};
use ai_provider::VertexProvider;
use ai_provider::vertex::ServiceAccount;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

fn fixture(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[derive(Default)]
struct Mock {
    /// Tokens issued, in order.
    issued: Mutex<Vec<String>>,
    /// `expires_in` of the next tokens.
    lifetime: AtomicU64,
    /// The token endpoint refuses the grant.
    refuse: std::sync::atomic::AtomicBool,
    /// Each Vertex request: its path, bearer token and JSON body.
    calls: Mutex<Vec<(String, String, Value)>>,
    addr: Mutex<Option<SocketAddr>>,
}

fn reply(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from(body))).expect("response")
}

fn token_endpoint(m: &Mock, form: &[u8]) -> http::Response<Full<Bytes>> {
    let form = String::from_utf8_lossy(form);
    let field = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        field("grant_type"),
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    );
    let addr = m.addr.lock().expect("lock").expect("addr");
    let public = fixture("vertex/test_service_account.pub.pem");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[format!("http://{addr}/token")]);
    v.set_issuer(&["gateway-test@gateway-test-project.iam.gserviceaccount.com"]);
    let claims = jsonwebtoken::decode::<Value>(
        &field("assertion"),
        &jsonwebtoken::DecodingKey::from_rsa_pem(&public).expect("public key"),
        &v,
    );
    let Ok(claims) = claims else {
        return reply(
            400,
            &[],
            br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.to_vec(),
        );
    };
    assert_eq!(
        claims.claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert_eq!(
        claims.header.kid.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    if m.refuse.load(Ordering::Relaxed) {
        return reply(
            400,
            &[("content-type", "application/json")],
            br#"{"error":"invalid_grant","error_description":"Invalid grant: account not found"}"#
                .to_vec(),
        );
    }
    let mut issued = m.issued.lock().expect("lock");
    let token = format!("ya29.test-{}", issued.len() + 1);
    issued.push(token.clone());
    let body = json!({
        "access_token": token,
        "expires_in": m.lifetime.load(Ordering::Relaxed),
        "token_type": "Bearer",
    });
    // The recorded token answer's headers.
    let rec: Value =
        serde_json::from_slice(&fixture("vertex/oauth_token_refresh.headers.json")).expect("json");
    let mut r = http::Response::builder().status(200);
    for (k, val) in rec["headers"].as_object().expect("headers") {
        if !matches!(
            k.to_ascii_lowercase().as_str(),
            "content-length" | "transfer-encoding" | "content-encoding" | "date"
        ) {
            // A repeated header is recorded as a list.
            let values = match val {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                v => vec![v.as_str().expect("value")],
            };
            for v in values {
                r = r.header(k.as_str(), v);
            }
        }
    }
    r.body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    m: Arc<Mock>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    let path = parts.uri.path().to_owned();
    if path == "/token" {
        return token_endpoint(&m, &body);
    }
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    m.calls.lock().expect("lock").push((
        path.clone(),
        bearer.clone(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ));
    if !m.issued.lock().expect("lock").contains(&bearer) {
        return reply(
            401,
            &[("content-type", "application/json")],
            br#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#.to_vec(),
        );
    }
    let Some(rest) = path.strip_prefix(
        "/v1/projects/gateway-test-project/locations/us-east5/publishers/anthropic/models/",
    ) else {
        return reply(404, &[], b"{}".to_vec());
    };
    let sse = [("content-type", "text/event-stream; charset=utf-8")];
    let json_ct = [("content-type", "application/json")];
    match rest {
        "text:streamRawPredict" => reply(200, &sse, fixture("anthropic/stream_text.sse")),
        "claude-sonnet-4-5@20250929:streamRawPredict" => {
            reply(200, &sse, fixture("anthropic/stream_tool_use.sse"))
        }
        "overloaded:streamRawPredict" => {
            reply(200, &sse, fixture("anthropic/stream_error_overloaded.sse"))
        }
        "text:rawPredict" => reply(
            200,
            &[("content-type", "application/json"), ("request-id", "req_vrtx_1")],
            fixture("anthropic/message_basic.json"),
        ),
        "count-tokens:rawPredict" => reply(200, &json_ct, fixture("anthropic/count_tokens.json")),
        "quota:streamRawPredict" | "quota:rawPredict" => {
            // Google's 429 as it is sent: gzip, with the recorded headers.
            let rec: Value =
                serde_json::from_slice(&fixture("vertex/error_429_streamRawPredict.headers.json"))
                    .expect("json");
            let mut r = http::Response::builder().status(429);
            for (k, val) in rec["headers"].as_object().expect("headers") {
                if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "date") {
                    r = r.header(k.as_str(), val.as_str().expect("value"));
                }
            }
            let body = br#"[{
  "error": {
    "code": 429,
    "message": "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude-3-5-haiku. Please submit a quota increase request.",
    "status": "RESOURCE_EXHAUSTED"
  }
}
]"#;
            r.body(Full::new(Bytes::from(gzip(body))))
                .expect("response")
        }
        _ => reply(
            404,
            &json_ct,
            br#"{"error":{"code":404,"message":"Publisher Model not found.","status":"NOT_FOUND"}}"#
                .to_vec(),
        ),
    }
}

async fn mock(lifetime: u64) -> Arc<Mock> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let m = Arc::new(Mock::default());
    m.lifetime.store(lifetime, Ordering::Relaxed);
    *m.addr.lock().expect("lock") = Some(listener.local_addr().expect("addr"));
    let shared = m.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let m = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let m = m.clone();
                    async move { Ok::<_, Infallible>(answer(req, m).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    m
}

fn vertex(m: &Mock) -> VertexProvider {
    let addr = m.addr.lock().expect("lock").expect("addr");
    let account =
        ServiceAccount::from_json(&fixture("vertex/test_service_account.json")).expect("key");
    VertexProvider::builder()
        .service_account(account)
        .region("us-east5")
        .base_url(format!("http://{addr}/v1"))
        .token_uri(format!("http://{addr}/token"))
        .model("claude-sonnet-4-5", "claude-sonnet-4-5@20250929")
        .build()
        .expect("provider")
}

fn request(model: &str, stream: bool) -> http::Request<MessagesRequest> {
    http::Request::new(
        serde_json::from_value(json!({
            "model": model, "max_tokens": 200, "stream": stream,
            "messages": [{"role": "user", "content": "Hello"}],
        }))
        .expect("request"),
    )
}

async fn events(p: &VertexProvider, model: &str) -> (Vec<Value>, Option<AiError>, Served) {
    let resp = p
        .clone()
        .oneshot(request(model, true))
        .await
        .expect("response");
    let served = resp.extensions().get::<Served>().cloned().expect("served");
    let AiBody::Events(mut s) = resp.into_body() else {
        panic!("a stream")
    };
    let mut out = Vec::new();
    let mut err = None;
    while let Some(ev) = s.next().await {
        match ev {
            Ok(e) => out.push(serde_json::to_value(e).expect("json")),
            Err(e) => err = Some(e),
        }
    }
    (out, err, served)
}

/// The canonical events of a recorded Anthropic stream.
fn expected(path: &str) -> (Vec<Value>, Option<AiError>) {
    let mut out = Vec::new();
    let mut err = None;
    for item in ai_core::sse::parse_all(&fixture(path)) {
        match item {
            Ok(e) => out.push(serde_json::to_value(e).expect("json")),
            Err(e) => err = Some(e),
        }
    }
    (out, err)
}

#[tokio::test]
async fn streams_and_messages_come_back_as_canonical_events() {
    let m = mock(3599).await;
    let p = vertex(&m);
    let (ev, err, served) = events(&p, "text").await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ev, expected("anthropic/stream_text.sse").0);
    assert_eq!(&*served.provider, "vertex");
    // A tool call with its arguments split over deltas, and the usage in message_delta,
    // under the model's Vertex name.
    let (ev, err, served) = events(&p, "claude-sonnet-4-5").await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ev, expected("anthropic/stream_tool_use.sse").0);
    assert!(ev.iter().any(|e| e["delta"]["type"] == "input_json_delta"));
    assert!(
        ev.iter()
            .any(|e| e["type"] == "message_delta" && e["usage"]["output_tokens"].is_u64())
    );
    assert_eq!(&*served.model, "claude-sonnet-4-5");
    // A whole message, with its request id.
    let resp = p.clone().oneshot(request("text", false)).await.expect("ok");
    assert_eq!(
        resp.extensions()
            .get::<Served>()
            .and_then(|s| s.request_id.as_deref()),
        Some("req_vrtx_1")
    );
    let AiBody::Message(msg) = resp.into_body() else {
        panic!("a message")
    };
    let want: Value = serde_json::from_slice(&fixture("anthropic/message_basic.json")).expect("j");
    assert_eq!(
        serde_json::to_value(&msg).expect("json")["content"],
        want["content"]
    );
    // The requests as Vertex takes them.
    let calls = m.calls.lock().expect("lock").clone();
    let (path, bearer, body) = &calls[0];
    assert!(path.ends_with("/models/text:streamRawPredict"), "{path}");
    assert_eq!(bearer, "ya29.test-1");
    assert!(body.get("model").is_none());
    assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(body["stream"], true);
    assert!(
        calls[1]
            .0
            .ends_with("/models/claude-sonnet-4-5@20250929:streamRawPredict")
    );
    assert!(calls[2].0.ends_with("/models/text:rawPredict"));
}

#[tokio::test]
async fn count_tokens_goes_to_the_count_tokens_model() {
    let m = mock(3599).await;
    let p = vertex(&m);
    let mut req = request("claude-sonnet-4-5", false);
    req.extensions_mut().insert(Endpoint::CountTokens);
    let resp = p.clone().oneshot(req).await.expect("ok");
    let AiBody::Json(v) = resp.into_body() else {
        panic!("json")
    };
    assert_eq!(v["input_tokens"], 1114);
    let calls = m.calls.lock().expect("lock").clone();
    assert!(calls[0].0.ends_with("/models/count-tokens:rawPredict"));
    assert_eq!(calls[0].2["model"], "claude-sonnet-4-5@20250929");
}

#[tokio::test]
async fn google_errors_and_errors_mid_stream_map_to_ai_errors() {
    let m = mock(3599).await;
    let p = vertex(&m);
    // A gzip-compressed RESOURCE_EXHAUSTED list, as Vertex sends it.
    let e = p
        .clone()
        .oneshot(request("quota", true))
        .await
        .expect_err("429");
    assert_eq!(e.kind(), ErrorKind::RateLimit);
    assert_eq!(e.status(), 429);
    assert!(e.message().starts_with("Quota exceeded"), "{}", e.message());
    let e = p
        .clone()
        .oneshot(request("no-such-model", false))
        .await
        .expect_err("404");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    // An overloaded_error event after the first text.
    let (ev, err, _) = events(&p, "overloaded").await;
    let (want, want_err) = expected("anthropic/stream_error_overloaded.sse");
    assert_eq!(ev, want);
    let err = err.expect("an error");
    assert_eq!(err.error_type(), "overloaded_error");
    assert_eq!(err.message(), want_err.expect("recorded error").message());
    // A model name that would change the path is refused before anything is sent.
    let e = p
        .clone()
        .oneshot(request("../../x", false))
        .await
        .expect_err("invalid");
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
}

#[tokio::test]
async fn one_token_serves_a_hundred_concurrent_requests() {
    let m = mock(3599).await;
    let p = vertex(&m);
    let calls = (0..100).map(|_| {
        let p = p.clone();
        async move { p.oneshot(request("text", false)).await }
    });
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(m.issued.lock().expect("lock").len(), 1);
    assert_eq!(p.tokens_fetched(), 1);
    assert_eq!(m.calls.lock().expect("lock").len(), 100);
}

#[tokio::test]
async fn the_token_is_refreshed_ahead_in_the_background_and_after_it_expires() {
    // A two-second token: renewed after one second (half its life), expired after two.
    let m = mock(2).await;
    let p = vertex(&m);
    p.clone().oneshot(request("text", false)).await.expect("ok");
    assert_eq!(m.issued.lock().expect("lock").len(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Due for renewal but still valid: this request goes at once with the old token, and
    // one background fetch replaces it.
    p.clone().oneshot(request("text", false)).await.expect("ok");
    assert_eq!(m.calls.lock().expect("lock")[1].1, "ya29.test-1");
    for _ in 0..100 {
        if p.tokens_fetched() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m.issued.lock().expect("lock").len(), 2);
    p.clone().oneshot(request("text", false)).await.expect("ok");
    assert_eq!(m.calls.lock().expect("lock")[2].1, "ya29.test-2");
    // Past expiry with no renewal yet (a one-second token): requests wait for a new one.
    m.lifetime.store(1, Ordering::Relaxed);
    let p = vertex(&m);
    p.clone().oneshot(request("text", false)).await.expect("ok");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    p.clone().oneshot(request("text", false)).await.expect("ok");
    let issued = m.issued.lock().expect("lock").clone();
    assert_eq!(issued.len(), 4);
    let calls = m.calls.lock().expect("lock").clone();
    assert_eq!(calls.last().expect("call").1, "ya29.test-4");
    assert_eq!(p.tokens_fetched(), 2);
}

#[tokio::test]
async fn a_refused_grant_is_the_gateways_problem_not_the_callers() {
    let m = mock(3599).await;
    m.refuse.store(true, Ordering::Relaxed);
    let p = vertex(&m);
    let e = p
        .clone()
        .oneshot(request("text", false))
        .await
        .expect_err("no token");
    assert_eq!(e.status(), 502);
    assert!(e.message().contains("access token"), "{}", e.message());
    assert!(m.calls.lock().expect("lock").is_empty());
}
