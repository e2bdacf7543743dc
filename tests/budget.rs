//! Budgets in the real gateway over real sockets: the mid-stream cut-off (the exact
//! events the client gets, the upstream's connection closed, the spend settled), the cost
//! header and the audit record's cost, the admin route, and a 402 in the vendor's shape.

mod common;

use ai_gateway::audit::WriterConfig;
use ai_gateway::budget::{
    Budget, BudgetLayer, BudgetPolicy, Period, PriceTable, Scope, UnknownModel, Usd,
};
use common::*;
use std::time::Duration;

fn usd(s: &str) -> Usd {
    s.parse().expect("amount")
}

fn global(cap: &str, cut_off: bool, prices: PriceTable) -> BudgetLayer {
    BudgetLayer::new(
        BudgetPolicy::new(vec![
            Budget::new("gateway-monthly", Scope::Global, usd(cap), Period::Monthly)
                .cut_off(cut_off),
        ]),
        prices,
    )
}

async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (http::StatusCode, serde_json::Value) {
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let (status, _, body) = send(
        req.body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req"),
    )
    .await;
    (status, serde_json::from_slice(&body).expect("json"))
}

#[tokio::test]
async fn a_stream_over_its_budget_is_cut_off_and_the_upstream_connection_closed() {
    // The upstream: message_start (100 input tokens), a text block, then 40-byte deltas
    // for as long as anyone reads.
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let raw_addr = raw.local_addr().expect("addr");
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<usize>();
    tokio::spawn(async move {
        let (mut s, _) = raw.accept().await.expect("accept");
        raw::read_request(&mut s).await;
        raw::write_sse_head(&mut s).await.expect("head");
        let head = [
            r#"{"type":"message_start","message":{"id":"msg_b","type":"message","role":"assistant","content":[],"model":"claude-haiku-4-5-20251001","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":100,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ];
        for (name, data) in ["message_start", "content_block_start"].iter().zip(head) {
            let frame = format!("event: {name}\ndata: {data}\n\n");
            raw::write_chunk(&mut s, frame.as_bytes())
                .await
                .expect("chunk");
        }
        let delta = format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{}\"}}}}\n\n",
            "x".repeat(40)
        );
        let mut sent = 0;
        while sent < 100_000 {
            if raw::write_chunk(&mut s, delta.as_bytes()).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let _ = closed_tx.send(sent);
    });
    // Claude Haiku 4.5 at $1 / $5 per million; $0.001 left: the input costs $0.0001 and
    // the rest pays for 180 output tokens (18 deltas of 40 bytes).
    let budget = global("0.001", true, PriceTable::defaults());
    let gw = start_gateway(
        &format!("http://{raw_addr}"),
        GatewayOpts {
            budget: Some(budget.clone()),
            admin_token: Some("admin-secret"),
            ..GatewayOpts::default()
        },
    )
    .await;
    let mut body = messages_body("claude-haiku-4-5", true);
    body["max_tokens"] = 4096.into();
    let (status, headers, bytes) = post_json(gw, body).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["x-gateway-cost-usd"], "0.001",
        "the hold: what was left"
    );
    let events = parse_sse(&bytes);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", 18));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(
        delta,
        &serde_json::json!({
            "type": "message_delta",
            "delta": {"stop_reason": "budget_exceeded", "stop_sequence": null},
            "usage": {"output_tokens": 180}
        })
    );
    let sent = tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the upstream sees its connection closed")
        .expect("observer");
    assert!(
        sent < 1000,
        "the upstream was dropped at once ({sent} deltas written)"
    );
    // Settled: 100 x $1 + 180 x $5 per million = $0.001, what was streamed.
    let (status, standing) = get(gw, "/admin/budgets/global:all", Some("admin-secret")).await;
    assert_eq!(status, 200);
    assert_eq!(standing["budgets"][0]["spent_usd"], "0.001");
    assert_eq!(standing["budgets"][0]["reserved_usd"], "0.00");
    assert_eq!(standing["budgets"][0]["remaining_usd"], "0.00");
    // The next call finds nothing left: 402 in the vendor's error shape.
    let (status, headers, bytes) = post_json(gw, messages_body("claude-haiku-4-5", true)).await;
    assert_eq!(status, 402);
    let (kind, message) = error_json(&bytes);
    assert_eq!(kind, "budget_exceeded");
    assert!(message.contains("gateway-monthly"), "{message}");
    assert_eq!(headers["x-gateway-budget"], "gateway-monthly");
}

#[tokio::test]
async fn the_exact_cost_is_in_the_header_and_the_audit_record() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (audit, _) = audit::layer(dir.path(), WriterConfig::default());
    // The mock's model names are not priced: price them as Opus 4.1 for the hold; the
    // recorded answer names claude-sonnet-4-5-20250929, which is what it is billed as.
    let mut prices = PriceTable::defaults();
    prices
        .set_unknown(UnknownModel::PriceAs("claude-opus-4-1".into()))
        .expect("listed");
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            budget: Some(global("10", false, prices)),
            audit: Some(audit),
            ..GatewayOpts::default()
        },
    )
    .await;
    let (status, headers, _) =
        post_json(gw, messages_body("replay/message_cache_usage", false)).await;
    assert_eq!(status, 200);
    // 3 x $3 + 418 x $3.75 + 1,111 x $0.30 + 33 x $15 per million = $0.0024048
    assert_eq!(headers["x-gateway-cost-usd"], "0.0024048");
    let id = headers["x-request-id"].to_str().expect("id");
    let record = audit::wait_for(dir.path(), id).await;
    assert_eq!(record.cost_nano_usd, Some(2_404_800));
    // A stream: the header carries the hold; the record, the exact cost.
    let (status, headers, _) = post_json(gw, messages_body("replay/stream_thinking", true)).await;
    assert_eq!(status, 200);
    let held: Usd = headers["x-gateway-cost-usd"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("usd");
    let id = headers["x-request-id"].to_str().expect("id");
    let record = audit::wait_for(dir.path(), id).await;
    // claude-sonnet-4-20250514: 43 x $3 + 282 x $15 per million = $0.004359
    assert_eq!(record.cost_nano_usd, Some(4_359_000));
    assert!(held.nanos() >= 4_359_000, "the hold was an upper bound");
}

#[tokio::test]
async fn the_admin_route_needs_its_token_and_a_scope() {
    let up = MockUpstream::start().await;
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            budget: Some(global("5", false, PriceTable::defaults())),
            admin_token: Some("admin-secret"),
            ..GatewayOpts::default()
        },
    )
    .await;
    let (status, body) = get(gw, "/admin/budgets/global:all", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error");
    let (status, _) = get(gw, "/admin/budgets/global:all", Some("admin-secreT")).await;
    assert_eq!(status, 401);
    let (status, _) = get(
        gw,
        "/admin/budgets/global:all",
        Some("admin-secret-and-more"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = get(gw, "/admin/budgets/global:all", Some("")).await;
    assert_eq!(status, 401);
    let lower = http::Request::get(format!("http://{gw}/admin/budgets/global:all"))
        .header("authorization", "bearer admin-secret")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    assert_eq!(send(lower).await.0, 200, "the scheme is case-insensitive");
    let (status, body) = get(gw, "/admin/budgets/global:all", Some("admin-secret")).await;
    assert_eq!(status, 200);
    assert_eq!(body["budgets"][0]["budget"], "gateway-monthly");
    assert_eq!(body["budgets"][0]["cap_usd"], "5.00");
    assert_eq!(body["budgets"][0]["spent_usd"], "0.00");
    assert!(
        body["budgets"][0]["resets_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let (status, body) = get(
        gw,
        "/admin/budgets/team:eng%20platform",
        Some("admin-secret"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["owner"], "eng platform");
    assert_eq!(body["budgets"], serde_json::json!([]), "no team budgets");
    let (status, body) = get(gw, "/admin/budgets/org:x", Some("admin-secret")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _) = get(gw, "/admin/nothing", Some("admin-secret")).await;
    assert_eq!(status, 404);
    // Without a token configured there is no admin route: the path is the API's.
    let plain = start_gateway(&up.url(), GatewayOpts::default()).await;
    let (status, _) = get(plain, "/admin/budgets/global:all", Some("admin-secret")).await;
    assert_eq!(status, 404);
}
