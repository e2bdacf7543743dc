//! The audit layer in the real gateway stack (auth, codec, model access, the Anthropic
//! provider) against the mock upstream replaying recorded streams: every outcome yields
//! exactly one record with the right outcome, a 529 reaches the client only after its
//! record is on disk, and a full disk (a tiny tmpfs) gives 503s without losing any
//! acknowledged record.

mod common;

use ai_gateway::audit::{FailurePolicy, WriterConfig, verify_dir};
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::time::Duration;

fn call(gw: SocketAddr, id: &str, model: &str, stream: bool, key: &str) -> Request<Full<Bytes>> {
    Request::post(format!("http://{gw}/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(
            messages_body(model, stream).to_string(),
        )))
        .expect("request")
}

/// (request id, model, stream, key, status, outcome, reason)
type Case<'a> = (
    &'a str,
    &'a str,
    bool,
    &'a str,
    u16,
    &'a str,
    Option<&'a str>,
);

#[tokio::test]
async fn every_outcome_through_the_stack_yields_exactly_one_record() {
    let up = MockUpstream::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (audit_layer, public) = audit::layer(dir.path(), WriterConfig::default());
    let (all, all_rec) = keys::mint("alice", "acme", &[]);
    let (replay_only, replay_rec) = keys::mint("bob", "acme", &["replay/*"]);
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            first_byte_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            auth: Some(keys::layer(vec![all_rec, replay_rec])),
            audit: Some(audit_layer),
            ..GatewayOpts::default()
        },
    )
    .await;
    let d = dir.path();

    let table: &[Case<'_>] = &[
        (
            "message",
            "replay/message_basic",
            false,
            &all,
            200,
            "complete",
            None,
        ),
        (
            "stream",
            "replay/stream_text",
            true,
            &all,
            200,
            "complete",
            None,
        ),
        (
            "tool-stream",
            "replay/stream_tool_use",
            true,
            &all,
            200,
            "complete",
            None,
        ),
        (
            "thinking-stream",
            "replay/stream_thinking",
            true,
            &all,
            200,
            "complete",
            None,
        ),
        (
            "upstream-529",
            "error/529",
            false,
            &all,
            529,
            "upstream_overloaded",
            Some("overloaded_error"),
        ),
        (
            "upstream-429",
            "error/429",
            false,
            &all,
            429,
            "upstream_error",
            Some("rate_limit_error"),
        ),
        (
            "upstream-400",
            "error/400",
            false,
            &all,
            400,
            "upstream_error",
            Some("invalid_request_error"),
        ),
        (
            "overloaded-mid-stream",
            "replay/stream_error_overloaded",
            true,
            &all,
            200,
            "upstream_overloaded",
            Some("overloaded_error"),
        ),
        (
            "cut-stream",
            "cut/clean",
            true,
            &all,
            200,
            "upstream_error",
            Some("api_error"),
        ),
        (
            "idle-timeout",
            "stall/idle",
            true,
            &all,
            200,
            "timeout",
            Some("upstream_timeout"),
        ),
        (
            "first-byte-timeout",
            "stall/first-byte",
            false,
            &all,
            504,
            "timeout",
            Some("upstream_timeout"),
        ),
        (
            "permission",
            "error/529",
            false,
            &replay_only,
            403,
            "rejected",
            Some("permission_error"),
        ),
        (
            "auth",
            "replay/message_basic",
            false,
            "gwk_0000000000000000_notarealkeynotarealkeynotarealkeynotarealk",
            401,
            "auth_failed",
            None,
        ),
    ];
    for &(id, model, stream, key, status, outcome, reason) in table {
        let (got, _, body) = send(call(gw, id, model, stream, key)).await;
        assert_eq!(
            got.as_u16(),
            status,
            "{id}: {}",
            String::from_utf8_lossy(&body)
        );
        // The answer is over: its record is already on disk (the 529 included), except
        // for refusals before the typed layer, which are queued, not waited for.
        let r = if outcome == "auth_failed" {
            audit::wait_for(d, id).await
        } else {
            let mut r = audit::of(d, id);
            assert_eq!(
                r.len(),
                1,
                "{id}: one record when the client has the answer"
            );
            r.remove(0)
        };
        assert_eq!(r.outcome, outcome, "{id}");
        if outcome == "auth_failed" {
            assert!(r.reason.is_some(), "the auth layer's precise reason");
            assert!(r.principal.is_none());
        } else {
            assert_eq!(r.reason.as_deref(), reason, "{id}");
            assert_eq!(
                r.principal.as_ref().map(|p| p.tenant.as_deref()),
                Some(Some("acme"))
            );
        }
    }
    let tool = &audit::of(d, "tool-stream")[0];
    assert_eq!(
        tool.tool_invocations[0].tool_name.as_deref(),
        Some("get_weather")
    );
    assert_eq!(
        tool.served.as_ref().map(|s| s.provider.as_str()),
        Some("anthropic")
    );
    assert!(tool.ttft_ms.is_some());
    assert_eq!(audit::of(d, "upstream-529")[0].status, 529);

    // A body the codec refuses (after authentication, before the typed layer).
    let bad = Request::post(format!("http://{gw}/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", &all)
        .header("x-request-id", "bad-json")
        .body(Full::new(Bytes::from_static(b"{not json")))
        .expect("request");
    let (status, _, _) = send(bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let r = audit::wait_for(d, "bad-json").await;
    assert_eq!(
        (r.outcome.as_str(), r.reason.as_deref()),
        ("rejected", Some("invalid_request_error"))
    );

    // The client goes away mid-stream (the mock holds the stream after one event).
    let resp = client()
        .request(call(gw, "cancelled", "pause/stream_text", true, &all))
        .await
        .expect("response head");
    let mut body = resp.into_body();
    let _ = body.frame().await;
    drop(body);
    let r = audit::wait_for(d, "cancelled").await;
    assert_eq!(r.outcome, "cancelled");
    up.release();

    assert_eq!(
        audit::records(d).len(),
        table.len() + 2,
        "no request without its record, none twice"
    );
    let report = verify_dir(d, &[public]).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
}

fn mount_tmpfs(path: &std::path::Path, size: &str) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The audit log on a 64 KiB tmpfs: once it is full, new requests get 503 (fail-closed)
/// and every request that got its answer has its record.
#[tokio::test]
async fn a_full_disk_gives_503_and_loses_no_acknowledged_record() {
    let mnt = tempfile::tempdir().expect("tmp");
    if !mount_tmpfs(mnt.path(), "64k") {
        eprintln!(
            "skipped: cannot mount a tmpfs here (needs root); the failing-sink tests in \
             crates/ai-audit/tests/layer.rs cover fail-closed without one"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // Lazy: the writer thread still holds the segment open.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(mnt.path().to_owned());
    let up = MockUpstream::start().await;
    let cfg = WriterConfig {
        failure: FailurePolicy::Closed,
        ack_timeout: Duration::from_millis(500),
        retry_interval: Duration::from_millis(100),
        ..WriterConfig::default()
    };
    let (audit_layer, public) = audit::layer(mnt.path(), cfg);
    let gw = start_gateway(
        &up.url(),
        GatewayOpts {
            audit: Some(audit_layer),
            ..GatewayOpts::default()
        },
    )
    .await;
    let (mut ok, mut refused) = (Vec::new(), 0);
    for i in 0..400 {
        let id = format!("full-{i}");
        let (status, _, body) = send(call(gw, &id, "replay/message_basic", false, "")).await;
        match status {
            StatusCode::OK => ok.push(id),
            StatusCode::SERVICE_UNAVAILABLE => {
                let (kind, message) = error_json(&body);
                assert_eq!(kind, "api_error");
                assert!(message.contains("audit"), "{message}");
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused >= 5, "the disk filled up: {} answered", ok.len());
    assert!(ok.len() > 10, "records were written before it filled");
    let records = audit::records(mnt.path());
    for id in &ok {
        assert!(
            records.iter().any(|r| r.request_id.as_deref() == Some(id)),
            "{id} was answered but has no record"
        );
    }
    let report = verify_dir(mnt.path(), &[public]).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
}
