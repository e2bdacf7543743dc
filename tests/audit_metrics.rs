//! `/metrics` after a scripted run: `promtool check metrics` (Debian package
//! `prometheus`, installed by scripts/test.sh) accepts it, and the counters show the run.
//! Its own test binary: the Prometheus recorder is process-wide.

mod common;

use ai_gateway::audit::WriterConfig;
use ai_gateway::server::MetricsEndpoint;
use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse::<f64>().expect("number"))
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_the_run() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (audit_layer, _) = audit::layer(dir.path(), WriterConfig::default());
    let (key, rec) = keys::mint("alice", "acme", &[]);
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            auth: Some(keys::layer(vec![rec])),
            audit: Some(audit_layer),
            metrics: Some(MetricsEndpoint::prometheus("/metrics").expect("recorder")),
            ..GatewayOpts::default()
        },
    )
    .await;
    let call = |model: &str, stream: bool, key: &str| {
        Request::post(format!("http://{gw}/v1/messages"))
            .header("content-type", "application/json")
            .header("x-api-key", key)
            .body(Full::new(Bytes::from(
                messages_body(model, stream).to_string(),
            )))
            .expect("request")
    };
    for _ in 0..3 {
        send(call("replay/message_basic", false, &key)).await;
    }
    for _ in 0..2 {
        send(call("replay/stream_text", true, &key)).await;
    }
    send(call("error/529", false, &key)).await;
    send(call("error/429", false, &key)).await;
    send(call("replay/message_basic", false, "wrong")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, headers, body) = send(
        Request::get(format!("http://{gw}/metrics"))
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(status, 200, "no credential needed for /metrics");
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body.to_vec()).expect("utf8");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let ok = r#"gen_ai_gateway_requests_total{surface="anthropic",model="replay/message_basic",provider="anthropic",outcome="complete"}"#;
    assert_eq!(value(&text, ok), 3.0);
    let stream = r#"gen_ai_gateway_requests_total{surface="anthropic",model="replay/stream_text",provider="anthropic",outcome="complete"}"#;
    assert_eq!(value(&text, stream), 2.0);
    assert_eq!(
        value(&text, r#"gen_ai_gateway_errors_total{class="overloaded"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"gen_ai_gateway_errors_total{class="rate_limit"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"gen_ai_gateway_errors_total{class="auth"}"#),
        1.0
    );
    assert!(
        value(
            &text,
            r#"gen_ai_gateway_tokens_total{type="input",model="replay/message_basic"}"#
        ) > 0.0
    );
    assert!(
        value(
            &text,
            r#"gen_ai_gateway_tokens_total{type="output",model="replay/stream_text"}"#
        ) > 0.0
    );
    assert_eq!(value(&text, "gen_ai_gateway_streams_in_flight"), 0.0);
    assert_eq!(
        value(
            &text,
            r#"gen_ai_gateway_request_duration_seconds_count{surface="anthropic",model="replay/message_basic"}"#
        ),
        3.0
    );
    assert!(text.contains("gen_ai_gateway_time_to_first_token_seconds_bucket{model=\"replay/stream_text\",le=\"0.005\"}"));
    assert!(value(&text, "gen_ai_gateway_audit_records_written_total") >= 7.0);
    assert!(!text.contains("alice"), "no user ids as labels");
}
