//! Embedding: the edge codec and a provider mounted in a plain axum `Router` next to a
//! non-AI route, as a Rust team would put them in its own service.

mod common;

use ai_gateway::core::MessagesCodecLayer;
use ai_gateway::provider::DemoProvider;
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

fn app() -> Router {
    let messages = ServiceBuilder::new()
        .layer(MessagesCodecLayer::new().body_limit(1024 * 1024))
        .service(DemoProvider::new().delay(Duration::ZERO));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route_service("/v1/messages", messages.clone())
        .route_service("/v1/messages/count_tokens", messages.clone())
        .route_service("/v1/models", messages)
}

#[tokio::test]
async fn codec_and_provider_serve_inside_an_axum_router() {
    let req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            r#"{"model":"claude-sonnet-4-5","max_tokens":32,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .expect("request");
    let resp = app().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let evs = common::parse_sse(&body);
    assert_eq!(evs.first().map(|e| e.0.as_str()), Some("message_start"));
    assert_eq!(evs.last().map(|e| e.0.as_str()), Some("message_stop"));

    let resp = app()
        .oneshot(
            Request::get("/healthz")
                .body(axum::body::Body::empty())
                .expect("req"),
        )
        .await
        .expect("ok");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn axum_served_over_a_real_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app()).await });
    let req = Request::post(format!("http://{addr}/v1/messages"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","messages":[]}"#,
        )))
        .expect("request");
    let (status, _, body) = common::send(req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(common::error_json(&body).1, "max_tokens: field required");
}

#[tokio::test]
async fn a_budget_inside_an_axum_router_prices_calls_and_serves_its_standing() {
    use ai_gateway::budget::{Budget, BudgetLayer, BudgetPolicy, Period, PriceTable, Scope};
    let budget = BudgetLayer::new(
        BudgetPolicy::new(vec![Budget::new(
            "service-daily",
            Scope::Global,
            "5.00".parse().expect("usd"),
            Period::Daily,
        )]),
        PriceTable::defaults(),
    );
    let messages = ServiceBuilder::new()
        .layer(MessagesCodecLayer::new())
        .layer(budget.clone())
        .service(DemoProvider::new().delay(Duration::ZERO));
    let b = budget.clone();
    let app = Router::new().route_service("/v1/messages", messages).route(
        "/budget",
        get(move || {
            let b = b.clone();
            async move {
                match b.standing(Scope::Global, "all").await {
                    Ok(s) => Ok((
                        [(http::header::CONTENT_TYPE, "application/json")],
                        serde_json::to_string(&s).unwrap_or_default(),
                    )),
                    Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
                }
            }
        }),
    );
    let req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            r#"{"model":"claude-sonnet-4-5","max_tokens":32,"messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let cost = resp.headers()["x-gateway-cost-usd"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let resp = app
        .oneshot(
            Request::get("/budget")
                .body(axum::body::Body::empty())
                .expect("req"),
        )
        .await
        .expect("ok");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v[0]["spent_usd"], cost.as_str());
    assert_eq!(v[0]["cap_usd"], "5.00");
}

#[tokio::test]
async fn redaction_inside_an_axum_router_blocks_and_tokenizes() {
    use ai_gateway::core::DataCategory;
    use ai_gateway::core::test_util::{MockProvider, Script};
    use ai_gateway::redact::{Action, RedactLayer, RedactPolicy, Redactor};
    let upstream = MockProvider::always(Script::text("Sent to <EMAIL_1>."));
    let policy = RedactPolicy::default().set(DataCategory::Credential, Action::Block);
    let messages = ServiceBuilder::new()
        .layer(MessagesCodecLayer::new())
        .layer(RedactLayer::new(Redactor::new(policy)))
        .service(upstream.clone());
    let app = Router::new().route_service("/v1/messages", messages);
    let post = |text: &str| {
        Request::post("/v1/messages")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                serde_json::json!({"model": "m", "max_tokens": 32,
                    "messages": [{"role": "user", "content": text}]})
                .to_string(),
            ))
            .expect("request")
    };
    let resp = app
        .clone()
        .oneshot(post("Mail the invoice to li.wei@harbor-freight.cn"))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["content"][0]["text"], "Sent to li.wei@harbor-freight.cn.");
    let sent = serde_json::to_string(&upstream.requests()[0].body).expect("json");
    assert!(
        sent.contains("<EMAIL_1>") && !sent.contains("harbor-freight"),
        "{sent}"
    );

    let key = format!("ghp_{}", "a1B2c3D4e5".repeat(4));
    let resp = app
        .oneshot(post(&format!("my token is {key}")))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("permission_error") && text.contains("credential"),
        "{text}"
    );
    assert!(!text.contains(&key), "{text}");
    assert_eq!(upstream.requests().len(), 1, "the blocked call never left");
}

#[tokio::test]
async fn output_inspection_inside_an_axum_router_cuts_a_leaking_stream() {
    use ai_gateway::core::test_util::{MockProvider, Script};
    use ai_gateway::inspect::{DenyList, InspectLayer, InspectPolicy};
    use std::sync::Arc;
    let sse = [
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"The codename is Blue Her"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"on, launching in May."}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}"#,
        r#"{"type":"message_stop"}"#,
    ]
    .iter()
    .map(|d| {
        let v: serde_json::Value = serde_json::from_str(d).expect("json");
        format!("event: {}\ndata: {d}\n\n", v["type"].as_str().expect("type"))
    })
    .collect::<String>();
    let upstream = MockProvider::always(Script::sse(sse.as_bytes()));
    let messages = ServiceBuilder::new()
        .layer(MessagesCodecLayer::new())
        .layer(
            InspectLayer::new(InspectPolicy::default())
                .classifier(Arc::new(DenyList::new(["Blue Heron"]).expect("list"))),
        )
        .service(upstream);
    let app = Router::new().route_service("/v1/messages", messages);
    let req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            serde_json::json!({"model": "m", "max_tokens": 32, "stream": true,
                "messages": [{"role": "user", "content": "codename?"}]})
            .to_string(),
        ))
        .expect("request");
    let resp = app.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("The codename is "), "{text}");
    assert!(!text.contains("Her"), "{text}");
    assert!(text.contains(r#""stop_reason":"policy_block""#), "{text}");
    assert!(
        text.contains(r#""policy_reason_code":"completion.deny_list.detected""#),
        "{text}"
    );
}
