//! Every outcome through the layer yields exactly one record with the right fields; facts
//! the other layers write (principal, classification, redactions, cost, template,
//! verdicts, tool decisions) are inserted directly, as those layers will.

use ai_audit::record::{AuditRecord, json_hash};
use ai_audit::{
    AuditLayer, AuditWriter, FailurePolicy, FileSink, FileSinkConfig, PublicKey, SigningKey, Sink,
    WriterConfig, list_segments, verify_dir,
};
use ai_core::test_util::{MockProvider, Script};
use ai_core::{
    AiBody, AiError, Attempt, AuthFailure, CallReport, ClientAddr, ComponentClass, Cost,
    DataCategories, DataCategory, DataClass, DataClassification, ErrorKind, MessagesRequest,
    Principal, PromptTemplate, RequestId, StreamEvent, Verdicts, Workload,
};
use futures_util::StreamExt;
use http::{Request, Response};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt, service_fn};

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(rel),
    )
    .expect("fixture")
}

struct Harness {
    dir: tempfile::TempDir,
    public: PublicKey,
    layer: AuditLayer,
}

impl Harness {
    fn new() -> Self {
        Self::with(WriterConfig::default())
    }

    fn with(cfg: WriterConfig) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let (key, _) = SigningKey::generate().expect("key");
        let public = key.public_key().clone();
        let sink = FileSink::open(FileSinkConfig::new(dir.path(), key)).expect("open");
        let layer = AuditLayer::new(AuditWriter::spawn(sink, cfg).expect("writer"));
        Harness { dir, public, layer }
    }

    fn records(&self) -> Vec<AuditRecord> {
        records_in(self.dir.path())
    }

    fn record_of(&self, id: &str) -> AuditRecord {
        let all: Vec<AuditRecord> = self
            .records()
            .into_iter()
            .filter(|r| r.request_id.as_deref() == Some(id))
            .collect();
        assert_eq!(all.len(), 1, "exactly one record for {id}: {all:?}");
        all.into_iter().next().expect("one")
    }

    async fn wait_record_of(&self, id: &str) -> AuditRecord {
        for _ in 0..200 {
            if self
                .records()
                .iter()
                .any(|r| r.request_id.as_deref() == Some(id))
            {
                return self.record_of(id);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no record for {id}");
    }
}

fn records_in(dir: &Path) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    for (_, path) in list_segments(dir).expect("segments") {
        for line in std::fs::read_to_string(path).expect("read").lines() {
            if line.contains("\"kind\":\"record\"") {
                out.push(serde_json::from_str(line).expect("record parses"));
            }
        }
    }
    out
}

fn request(id: &str, body: &str) -> Request<MessagesRequest> {
    let mut r = Request::new(serde_json::from_str::<MessagesRequest>(body).expect("request"));
    r.extensions_mut().insert(RequestId::new(id));
    r
}

fn simple(id: &str, stream: bool) -> Request<MessagesRequest> {
    request(
        id,
        &format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"hello"}}]}}"#
        ),
    )
}

/// An upstream: records an attempt (as providers do), then answers from the mock.
fn upstream(
    mock: MockProvider,
) -> impl Service<
    Request<MessagesRequest>,
    Response = Response<AiBody>,
    Error = AiError,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |req: Request<MessagesRequest>| {
        if let Some(r) = req.extensions().get::<CallReport>() {
            r.push_attempt(Attempt {
                provider: "anthropic".into(),
                model: req.body().model.as_str().into(),
                status: Some(200),
            });
        }
        mock.clone().oneshot(req)
    })
}

async fn drain(resp: Response<AiBody>) -> Vec<Result<StreamEvent, AiError>> {
    match resp.into_body() {
        AiBody::Events(s) => s.collect().await,
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn a_whole_message_carries_every_fact_and_no_text() {
    let h = Harness::new();
    let mock = MockProvider::new();
    let mut reply = match Script::text("the secret answer") {
        Script::Message(m) => m,
        _ => unreachable!(),
    };
    reply.content.push(
        serde_json::from_str(
            r#"{"type":"tool_use","id":"toolu_2","name":"lookup","input":{"b":2,"a":1}}"#,
        )
        .expect("block"),
    );
    mock.push(Script::Message(reply));
    let svc = h.layer.layer(upstream(mock));
    let mut req = request(
        "req-facts",
        r#"{"model":"claude-sonnet-4-5","max_tokens":64,
            "system":[{"type":"text","text":"You are a clinic assistant.","cache_control":{"type":"ephemeral"}}],
            "messages":[
              {"role":"user","content":"look up patient 7"},
              {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"lookup_customer_record","input":{"id": 7}}]},
              {"role":"user","content":[
                 {"type":"tool_result","tool_use_id":"toolu_1","content":"Jane Doe, diabetic"},
                 {"type":"image","source":{"type":"base64","media_type":"image/png","data":"aGVsbG8="}}]}]}"#,
    );
    let e = req.extensions_mut();
    e.insert(Principal {
        tenant: Some("acme".into()),
        team: Some("care".into()),
        agent: Some("triage-bot".into()),
        ..Principal::new("alice")
    });
    e.insert(Workload("triage".into()));
    let report = CallReport::default();
    report.set_classification(DataClassification {
        system: ComponentClass {
            level: DataClass::Restricted,
            categories: DataCategories::NONE.with(DataCategory::Phi),
        },
        ..Default::default()
    });
    report.add_redactions(DataCategory::Pii, 2);
    report.add_cost(Cost {
        nano_usd: 1_234_567,
    });
    report.set_template(PromptTemplate {
        id: "clinic".into(),
        version: "3".into(),
    });
    report.set_tool_decision("toolu_2", "block");
    e.insert(report);
    let verdicts = Verdicts::default();
    verdicts.push("ai-redact", "redacted:2");
    e.insert(verdicts);

    let resp = svc.oneshot(req).await.expect("ok");
    assert_eq!(resp.status(), 200);
    // The record is durable when the response is handed on: no waiting.
    let r = h.record_of("req-facts");
    assert_eq!(r.v, 1);
    assert_eq!(r.outcome, "complete");
    assert_eq!(r.status, 200);
    let p = r.principal.as_ref().expect("principal");
    assert_eq!(
        (
            p.subject.as_str(),
            p.tenant.as_deref(),
            p.team.as_deref(),
            p.agent.as_deref()
        ),
        ("alice", Some("acme"), Some("care"), Some("triage-bot"))
    );
    assert_eq!(r.workload.as_deref(), Some("triage"));
    assert_eq!(r.requested_model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(
        r.served.as_ref().map(|s| s.provider.as_str()),
        Some("anthropic")
    );
    assert_eq!(
        r.system_prompt_template
            .as_ref()
            .map(|t| t.version.as_str()),
        Some("3")
    );
    assert_eq!(r.cost_nano_usd, Some(1_234_567));
    let up = r.tokens.upstream.as_ref().expect("upstream tokens");
    assert_eq!((up.input, up.output), (10, 5));
    assert!(r.tokens.local.input > 0 && r.tokens.local.output > 0);
    assert_eq!(r.data_class.as_deref(), Some("phi"));
    let c = r.data_class_components.as_ref().expect("components");
    assert_eq!((c.system.as_str(), c.messages.as_str()), ("phi", "none"));
    assert_eq!(r.data_level.as_deref(), Some("restricted"));
    assert_eq!(r.redactions.get("pii"), Some(&2));
    assert_eq!(r.verdicts[0].decision, "redacted:2");
    assert!(
        r.prompt_hash
            .as_deref()
            .is_some_and(|h| h.starts_with("sha256:"))
    );
    assert!(r.cache_prefix_hash.is_some() && r.uncached_hash.is_some());
    assert_ne!(r.cache_prefix_hash, r.uncached_hash);
    // The tool result of this request, tied to the call of the previous turn...
    let result = &r.tool_invocations[0];
    assert_eq!(result.tool_use_id, "toolu_1");
    assert_eq!(result.tool_name.as_deref(), Some("lookup_customer_record"));
    assert_eq!(
        result.arguments_hash.as_deref(),
        Some(json_hash(r#"{"id":7}"#).as_str())
    );
    assert_eq!(
        result.result_hash.as_deref(),
        Some(json_hash(r#""Jane Doe, diabetic""#).as_str())
    );
    assert_eq!(result.decision, "pass");
    // ...and the call the model made in this response, with its policy decision.
    let call = &r.tool_invocations[1];
    assert_eq!(call.tool_name.as_deref(), Some("lookup"));
    assert_eq!(
        call.arguments_hash.as_deref(),
        Some(json_hash(r#"{"a":1,"b":2}"#).as_str())
    );
    assert_eq!(call.decision, "block");
    assert!(call.result_hash.is_none());
    // The image: the hash of its decoded bytes.
    let img = &r.attachments[0];
    assert_eq!(
        (img.block.as_str(), img.source.as_str()),
        ("image", "base64")
    );
    assert_eq!(
        img.sha256,
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    // No prompt or completion text anywhere.
    let raw =
        std::fs::read_to_string(&list_segments(h.dir.path()).expect("seg")[0].1).expect("read");
    for text in ["clinic assistant", "patient 7", "Jane Doe", "secret answer"] {
        assert!(!raw.contains(text), "{text} leaked into the log");
    }
    assert!(r.capture.is_none());
}

#[tokio::test]
async fn a_streamed_tool_call_is_hashed_like_the_same_call_sent_back() {
    let h = Harness::new();
    let svc = h
        .layer
        .layer(upstream(MockProvider::always(Script::sse(&fixture(
            "anthropic/stream_tool_use.sse",
        )))));
    let resp = svc.oneshot(simple("req-tool", true)).await.expect("ok");
    let events = drain(resp).await;
    assert!(matches!(
        events.last(),
        Some(Ok(StreamEvent::MessageStop(_)))
    ));
    let r = h.record_of("req-tool");
    assert_eq!(r.outcome, "complete");
    assert!(r.stream);
    let call = r
        .tool_invocations
        .iter()
        .find(|t| t.tool_name.as_deref() == Some("get_weather"))
        .expect("the tool call");
    // The arguments the fixture streams, as a client would send them back.
    let mut args = String::new();
    for ev in events.iter().flatten() {
        if let StreamEvent::ContentBlockDelta(d) = ev {
            if let ai_core::wire::Delta::InputJson(j) = &d.delta {
                args.push_str(&j.partial_json);
            }
        }
    }
    let reformatted = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(&args).expect("arguments json"),
    )
    .expect("pretty");
    assert_eq!(
        call.arguments_hash.as_deref(),
        Some(json_hash(&reformatted).as_str())
    );
    assert_eq!(r.tokens.upstream.as_ref().map(|u| u.input), Some(377));
}

/// (request id, stream, script, did an upstream call happen, outcome, reason)
type Case<'a> = (&'a str, bool, Script, bool, &'a str, Option<&'a str>);

/// One request per outcome; each yields exactly one record with the outcome and reason.
#[tokio::test]
async fn every_outcome_yields_exactly_one_record() {
    let h = Harness::new();
    let policy_cut = {
        let raw = String::from_utf8(fixture("anthropic/stream_text.sse")).expect("utf8");
        raw.replace(
            "\"stop_reason\":\"end_turn\"",
            "\"stop_reason\":\"policy_block\"",
        )
    };
    let no_stop = {
        let raw = String::from_utf8(fixture("anthropic/stream_text.sse")).expect("utf8");
        raw.split("event: message_stop")
            .next()
            .expect("part")
            .to_owned()
    };
    let table: Vec<Case<'_>> = vec![
        ("message", false, Script::text("hi"), true, "complete", None),
        (
            "stream",
            true,
            Script::sse(&fixture("anthropic/stream_text.sse")),
            true,
            "complete",
            None,
        ),
        (
            "policy-cut",
            true,
            Script::sse(policy_cut.as_bytes()),
            true,
            "policy_cut",
            Some("stop:policy_block"),
        ),
        (
            "policy-error-mid-stream",
            true,
            Script::Events {
                items: vec![
                    Ok(StreamEvent::text_delta(0, "a")),
                    Err(AiError::new(
                        ErrorKind::PolicyBlock,
                        "completion.pii.detected",
                    )),
                ],
                delay: Duration::ZERO,
            },
            false,
            "policy_cut",
            Some("policy_block"),
        ),
        (
            "incomplete",
            true,
            Script::sse(no_stop.as_bytes()),
            true,
            "incomplete",
            None,
        ),
        (
            "overloaded-mid-stream",
            true,
            Script::sse(&fixture("anthropic/stream_error_overloaded.sse")),
            true,
            "upstream_overloaded",
            Some("overloaded_error"),
        ),
        (
            "upstream-529",
            false,
            Script::Error(AiError::new(ErrorKind::Overloaded, "Overloaded")),
            true,
            "upstream_overloaded",
            Some("overloaded_error"),
        ),
        (
            "upstream-500",
            false,
            Script::Error(AiError::new(ErrorKind::Api, "boom")),
            true,
            "upstream_error",
            Some("api_error"),
        ),
        (
            "upstream-429",
            false,
            Script::Error(AiError::new(ErrorKind::RateLimit, "slow down")),
            true,
            "upstream_error",
            Some("rate_limit_error"),
        ),
        (
            "timeout",
            false,
            Script::Error(AiError::new(ErrorKind::UpstreamTimeout, "late")),
            true,
            "timeout",
            Some("upstream_timeout"),
        ),
        (
            "rate-limited",
            false,
            Script::Error(AiError::new(ErrorKind::RateLimit, "tier limit")),
            false,
            "rejected",
            Some("rate_limit_error"),
        ),
        (
            "budget",
            false,
            Script::Error(AiError::new(ErrorKind::BudgetExceeded, "cap")),
            false,
            "rejected",
            Some("budget_exceeded"),
        ),
        (
            "policy",
            false,
            Script::Error(AiError::new(ErrorKind::PolicyBlock, "phi to non-baa")),
            false,
            "rejected",
            Some("policy_block"),
        ),
        (
            "permission",
            false,
            Script::Error(AiError::new(ErrorKind::Permission, "model")),
            false,
            "rejected",
            Some("permission_error"),
        ),
    ];
    let n = table.len();
    for (id, stream, script, upstream_call, outcome, reason) in table {
        let mock = MockProvider::always(script);
        let resp = if upstream_call {
            h.layer
                .layer(upstream(mock))
                .oneshot(simple(id, stream))
                .await
        } else {
            h.layer.layer(mock).oneshot(simple(id, stream)).await
        };
        if let Ok(resp) = resp {
            drain(resp).await;
        }
        let r = h.record_of(id);
        assert_eq!(
            (r.outcome.as_str(), r.reason.as_deref()),
            (outcome, reason),
            "{id}"
        );
    }
    // The client goes away mid-stream.
    let mock = MockProvider::always(
        Script::sse(&fixture("anthropic/stream_text.sse")).paced(Duration::from_millis(20)),
    );
    let resp = h
        .layer
        .layer(upstream(mock))
        .oneshot(simple("cancelled", true))
        .await
        .expect("ok");
    let AiBody::Events(mut s) = resp.into_body() else {
        panic!("stream")
    };
    s.next().await;
    drop(s);
    let r = h.wait_record_of("cancelled").await;
    assert_eq!(r.outcome, "cancelled");
    // The caller's future dropped before any answer.
    let mock = MockProvider::always(Script::text("late").paced(Duration::from_secs(5)));
    let slow = service_fn(move |req| {
        let m = mock.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            m.oneshot(req).await
        }
    });
    let fut = h.layer.layer(slow).oneshot(simple("dropped-early", false));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), fut)
            .await
            .is_err()
    );
    let r = h.wait_record_of("dropped-early").await;
    assert_eq!(r.outcome, "cancelled");

    assert_eq!(h.records().len(), n + 2, "one record per request, no more");
    h.layer
        .writer()
        .close_async(std::time::Duration::from_secs(5))
        .await;
    let report = verify_dir(h.dir.path(), std::slice::from_ref(&h.public)).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
}

/// The edge part records refusals the typed layer never saw, and aggregates a flood of
/// failed authentications per source beyond the limit.
#[tokio::test]
async fn failed_authentications_are_recorded_and_a_flood_is_aggregated() {
    let h = Harness::new();
    let layer = h
        .layer
        .clone()
        .unauthenticated_limit(3, Duration::from_secs(60));
    let refuse = service_fn(|_req: Request<()>| async {
        let mut resp = Response::new(());
        *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
        resp.extensions_mut().insert(AuthFailure("unknown_key"));
        Ok::<_, std::convert::Infallible>(resp)
    });
    let edge = layer.edge().layer(refuse);
    for (i, ip) in (0..10).map(|i| (i, "10.0.0.1")).chain([(10, "10.0.0.2")]) {
        let mut req = Request::post("/v1/messages")
            .header("x-request-id", format!("auth-{i}"))
            .body(())
            .expect("req");
        req.extensions_mut()
            .insert(ClientAddr(format!("{ip}:5000").parse().expect("addr")));
        edge.clone().oneshot(req).await.expect("ok");
    }
    // A body refused before the typed layer (no auth failure): recorded as rejected.
    let bad = service_fn(|_req: Request<()>| async {
        let mut resp = Response::new(());
        *resp.status_mut() = http::StatusCode::BAD_REQUEST;
        Ok::<_, std::convert::Infallible>(resp)
    });
    let req = Request::post("/v1/messages")
        .header("x-request-id", "bad-json")
        .body(())
        .expect("req");
    layer.edge().layer(bad).oneshot(req).await.expect("ok");
    layer.flush_aggregates();
    layer
        .writer()
        .close_async(std::time::Duration::from_secs(5))
        .await;

    let recs = records_in(h.dir.path());
    let full: Vec<_> = recs.iter().filter(|r| r.outcome == "auth_failed").collect();
    assert_eq!(
        full.len(),
        4,
        "3 from the flooding source, 1 from the other"
    );
    assert!(
        full.iter()
            .all(|r| r.reason.as_deref() == Some("unknown_key") && r.status == 401)
    );
    assert_eq!(full[0].source.as_deref(), Some("10.0.0.1"));
    let agg: Vec<_> = recs
        .iter()
        .filter(|r| r.outcome == "auth_failed_aggregate")
        .collect();
    assert_eq!(agg.len(), 1);
    let a = agg[0].aggregate.as_ref().expect("aggregate");
    assert_eq!((agg[0].source.as_deref(), a.count), (Some("10.0.0.1"), 7));
    assert_eq!(a.reasons.get("unknown_key"), Some(&7));
    let bad = recs
        .iter()
        .find(|r| r.request_id.as_deref() == Some("bad-json"))
        .expect("bad json record");
    assert_eq!(
        (bad.outcome.as_str(), bad.reason.as_deref()),
        ("rejected", Some("invalid_request_error"))
    );
    assert!(
        bad.source.is_none(),
        "addresses only on unauthenticated refusals"
    );
    let report = verify_dir(h.dir.path(), std::slice::from_ref(&h.public)).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
}

/// A sink that fails (like a full disk) while `fail` is set.
struct Failing {
    inner: FileSink,
    fail: Arc<AtomicBool>,
}

impl Sink for Failing {
    fn append(&mut self, batch: &[bytes::Bytes]) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.append(batch)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
    fn tick(&mut self) -> std::io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        self.inner.tick()
    }
    fn close(&mut self) -> std::io::Result<()> {
        self.inner.close()
    }
}

fn failing(policy: FailurePolicy) -> (tempfile::TempDir, PublicKey, AuditLayer, Arc<AtomicBool>) {
    let dir = tempfile::tempdir().expect("tmp");
    let (key, _) = SigningKey::generate().expect("key");
    let public = key.public_key().clone();
    let fail = Arc::new(AtomicBool::new(false));
    let sink = Failing {
        inner: FileSink::open(FileSinkConfig::new(dir.path(), key)).expect("open"),
        fail: fail.clone(),
    };
    let cfg = WriterConfig {
        failure: policy,
        ack_timeout: Duration::from_millis(300),
        retry_interval: Duration::from_millis(50),
        ..WriterConfig::default()
    };
    let layer = AuditLayer::new(AuditWriter::spawn(sink, cfg).expect("writer"));
    (dir, public, layer, fail)
}

#[tokio::test]
async fn fail_closed_refuses_with_503_and_loses_no_acknowledged_record() {
    let (dir, public, layer, fail) = failing(FailurePolicy::Closed);
    let svc = layer.layer(upstream(MockProvider::always(Script::text("ok"))));
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..30 {
        if i == 10 {
            fail.store(true, Ordering::SeqCst);
        }
        if i == 20 {
            fail.store(false, Ordering::SeqCst);
            // A retry (every 50 ms) succeeds; on a loaded machine it may take longer.
            for _ in 0..250 {
                if layer.writer().is_healthy() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(layer.writer().is_healthy(), "the writer recovered");
        }
        let id = format!("r{i}");
        match svc.clone().oneshot(simple(&id, false)).await {
            Ok(_) => acknowledged.push(id),
            Err(e) => {
                assert_eq!(e.status(), 503, "{}", e.message());
                assert!(
                    e.message().contains("audit"),
                    "a clear message: {}",
                    e.message()
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 10, "every request while the disk was full got 503");
    assert_eq!(acknowledged.len(), 20);
    assert!(layer.writer().write_errors() > 0);
    layer
        .writer()
        .close_async(std::time::Duration::from_secs(5))
        .await;
    let recs = records_in(dir.path());
    for id in &acknowledged {
        assert!(
            recs.iter().any(|r| r.request_id.as_deref() == Some(id)),
            "{id} lost"
        );
    }
    let report = verify_dir(dir.path(), &[public]).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
}

#[tokio::test]
async fn fail_open_serves_on_and_counts() {
    let (dir, public, layer, fail) = failing(FailurePolicy::Open);
    let svc = layer.layer(upstream(MockProvider::always(Script::text("ok"))));
    fail.store(true, Ordering::SeqCst);
    for i in 0..5 {
        let resp = svc.clone().oneshot(simple(&format!("o{i}"), false)).await;
        assert!(resp.is_ok(), "fail-open serves while the log fails");
    }
    assert!(!layer.writer().is_healthy());
    assert!(layer.writer().write_errors() > 0);
    fail.store(false, Ordering::SeqCst);
    layer
        .writer()
        .close_async(std::time::Duration::from_secs(5))
        .await;
    // The records kept in memory were written once the sink recovered.
    assert_eq!(records_in(dir.path()).len(), 5);
    assert!(verify_dir(dir.path(), &[public]).expect("verify").is_ok());
}

/// A housekeeping step (a timed checkpoint, a rotation) that fails while nothing is
/// queued still marks the log failing, and the writer comes back once it works again.
#[tokio::test]
async fn a_failed_housekeeping_step_is_retried_and_the_writer_recovers() {
    let (dir, public, layer, fail) = failing(FailurePolicy::Closed);
    let svc = layer.layer(upstream(MockProvider::always(Script::text("ok"))));
    svc.clone()
        .oneshot(simple("before", false))
        .await
        .expect("ok");
    fail.store(true, Ordering::SeqCst);
    for _ in 0..100 {
        if !layer.writer().is_healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!layer.writer().is_healthy(), "the failing tick was noticed");
    let refused = svc.clone().oneshot(simple("during", false)).await;
    assert_eq!(
        refused.err().map(|e| e.status()),
        Some(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    fail.store(false, Ordering::SeqCst);
    for _ in 0..100 {
        if layer.writer().is_healthy() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        layer.writer().is_healthy(),
        "a retry of the tick brought the writer back"
    );
    svc.clone()
        .oneshot(simple("after", false))
        .await
        .expect("served again");
    layer.writer().close_async(Duration::from_secs(5)).await;
    assert_eq!(records_in(dir.path()).len(), 2);
    assert!(verify_dir(dir.path(), &[public]).expect("verify").is_ok());
}
