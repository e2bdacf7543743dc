//! BudgetLayer end to end over the scripted provider: reservations, refusals, the
//! mid-stream cut-off, cancelled streams, alerts, window roll-over in virtual time and
//! spend that survives a restart.

use ai_budget::{
    Alert, AlertSink, Budget, BudgetLayer, BudgetPolicy, Calendar, MemoryStore, Period, PriceTable,
    STOP_REASON, Scope, Usd,
};
use ai_core::test_util::{MockProvider, Script};
use ai_core::wire::{ContentBlockStartEvent, MessageStartEvent};
use ai_core::{
    AiBody, AiError, CallReport, Clock, ContentBlock, MessagesRequest, MessagesResponse, Principal,
    Role, StreamEvent, Usage,
};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

fn request(
    model: &str,
    max_tokens: u32,
    stream: bool,
    who: &Principal,
) -> http::Request<MessagesRequest> {
    let body: MessagesRequest = serde_json::from_value(serde_json::json!({
        "model": model, "max_tokens": max_tokens, "stream": stream,
        "messages": [{"role": "user", "content": "hello"}]
    }))
    .expect("request");
    let mut req = http::Request::new(body);
    req.extensions_mut().insert(who.clone());
    req
}

fn alice() -> Principal {
    let mut p = Principal::new("alice");
    p.team = Some("eng".into());
    p.tenant = Some("acme".into());
    p
}

fn usd(s: &str) -> Usd {
    s.parse().expect("amount")
}

/// A message with the given usage.
fn message(input: u64, output: u64) -> Script {
    Script::Message(MessagesResponse {
        id: "msg_1".into(),
        kind: "message".into(),
        role: Role::Assistant,
        content: vec![ContentBlock::text("ok")],
        model: "claude-haiku-4-5".into(),
        stop_reason: Some("end_turn".into()),
        stop_sequence: None,
        usage: Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            ..Default::default()
        },
        extra: Default::default(),
    })
}

fn start(input: u64) -> StreamEvent {
    StreamEvent::MessageStart(MessageStartEvent {
        message: Box::new(MessagesResponse {
            id: "msg_s".into(),
            kind: "message".into(),
            role: Role::Assistant,
            content: vec![],
            model: "claude-haiku-4-5".into(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage {
                input_tokens: Some(input),
                output_tokens: Some(1),
                ..Default::default()
            },
            extra: Default::default(),
        }),
        extra: Default::default(),
    })
}

fn block_start() -> StreamEvent {
    StreamEvent::ContentBlockStart(ContentBlockStartEvent {
        index: 0,
        content_block: Box::new(ContentBlock::text("")),
        extra: Default::default(),
    })
}

/// An upstream that streams `message_start` (100 input tokens), a text block, then 40-byte
/// deltas for ever; `dropped` turns true when the gateway lets go of it.
#[derive(Clone)]
struct EndlessUpstream {
    dropped: Arc<AtomicBool>,
}

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Service<http::Request<MessagesRequest>> for EndlessUpstream {
    type Response = http::Response<AiBody>;
    type Error = AiError;
    type Future = std::future::Ready<Result<http::Response<AiBody>, AiError>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), AiError>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<MessagesRequest>) -> Self::Future {
        let flag = DropFlag(self.dropped.clone());
        let head = futures_util::stream::iter(vec![Ok(start(100)), Ok(block_start())]);
        let deltas = futures_util::stream::unfold(flag, |flag| async move {
            Some((Ok(StreamEvent::text_delta(0, "x".repeat(40))), flag))
        });
        std::future::ready(Ok(http::Response::new(AiBody::from_events(
            head.chain(deltas),
        ))))
    }
}

async fn events(resp: http::Response<AiBody>) -> Vec<StreamEvent> {
    let AiBody::Events(mut s) = resp.into_body() else {
        panic!("a stream")
    };
    let mut out = Vec::new();
    while let Some(ev) = s.next().await {
        out.push(ev.expect("event"));
    }
    out
}

fn haiku_team_budget(cap: &str, cut_off: bool) -> BudgetPolicy {
    BudgetPolicy::new(vec![
        Budget::new("eng-monthly", Scope::Team, usd(cap), Period::Monthly).cut_off(cut_off),
    ])
}

#[tokio::test]
async fn a_stream_is_cut_off_cleanly_when_its_running_cost_reaches_the_budget() {
    // claude-haiku-4-5: $1 input, $5 output per million. $0.001 left: 100 input tokens
    // cost $0.0001, so $0.0009 pays for 180 output tokens (720 bytes = 18 deltas of 40).
    let layer = BudgetLayer::new(haiku_team_budget("0.001", true), PriceTable::defaults());
    let dropped = Arc::new(AtomicBool::new(false));
    let mut svc = layer.layer(EndlessUpstream {
        dropped: dropped.clone(),
    });
    let report = CallReport::default();
    let mut req = request("claude-haiku-4-5", 4096, true, &alice());
    req.extensions_mut().insert(report.clone());
    let resp = svc
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("admitted with what is left");
    // The header carries what was held: the whole budget, not the $0.0205 upper bound.
    assert_eq!(resp.headers()["x-gateway-cost-usd"], "0.001");
    let evs = events(resp).await;
    assert!(dropped.load(Ordering::SeqCst), "the upstream is let go");
    let kinds: Vec<&str> = evs
        .iter()
        .map(|e| match e {
            StreamEvent::MessageStart(_) => "message_start",
            StreamEvent::ContentBlockStart(_) => "content_block_start",
            StreamEvent::ContentBlockDelta(_) => "delta",
            StreamEvent::ContentBlockStop(_) => "content_block_stop",
            StreamEvent::MessageDelta(_) => "message_delta",
            StreamEvent::MessageStop(_) => "message_stop",
            _ => "other",
        })
        .collect();
    let mut expected = vec!["message_start", "content_block_start"];
    expected.extend(std::iter::repeat_n("delta", 18));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(kinds, expected);
    let StreamEvent::MessageDelta(d) = &evs[evs.len() - 2] else {
        panic!("message_delta")
    };
    assert_eq!(d.delta.stop_reason.as_deref(), Some(STOP_REASON));
    assert_eq!(d.usage.as_ref().and_then(|u| u.output_tokens), Some(180));
    // Settled: 100 x $1 + 180 x $5 per million = exactly what was streamed.
    let spent = layer.standing(Scope::Team, "eng").await.expect("read");
    assert_eq!(spent[0].spent_usd, "0.001");
    assert_eq!(spent[0].reserved_usd, "0.00");
    assert_eq!(report.snapshot().cost.expect("cost").nano_usd, 1_000_000);
}

#[tokio::test]
async fn without_the_cut_off_a_request_must_fit_whole_and_is_refused_with_402() {
    let layer = BudgetLayer::new(haiku_team_budget("0.001", false), PriceTable::defaults());
    let mut svc = layer.layer(MockProvider::always(message(10, 10)));
    let err = svc
        .ready()
        .await
        .expect("ready")
        .call(request("claude-haiku-4-5", 4096, true, &alice()))
        .await
        .expect_err("upper bound $0.02 > $0.001");
    assert_eq!(err.status(), 402);
    assert_eq!(err.kind(), ai_core::ErrorKind::BudgetExceeded);
    assert!(
        err.message().contains("\"eng-monthly\""),
        "{}",
        err.message()
    );
    assert!(err.message().contains("team eng"), "{}", err.message());
    assert_eq!(err.headers()["x-gateway-budget"], "eng-monthly");
    // A smaller max_tokens fits.
    let ok = svc
        .ready()
        .await
        .expect("ready")
        .call(request("claude-haiku-4-5", 100, false, &alice()))
        .await
        .expect("fits");
    // 10 x $1 + 10 x $5 per million: exact for a whole message.
    assert_eq!(ok.headers()["x-gateway-cost-usd"], "0.00006");
    assert_eq!(
        ok.headers()["x-gateway-budget-remaining-usd"]
            .to_str()
            .ok()
            .map(|s| s.parse::<Usd>().is_ok()),
        Some(true)
    );
}

#[tokio::test]
async fn an_unknown_model_is_refused_or_priced_as_the_fallback() {
    let layer = BudgetLayer::new(haiku_team_budget("1", false), PriceTable::defaults());
    let mut svc = layer.layer(MockProvider::always(message(10, 10)));
    let err = svc
        .ready()
        .await
        .expect("ready")
        .call(request("my-finetune", 100, false, &alice()))
        .await
        .expect_err("no price");
    assert_eq!(err.status(), 400);
    assert!(err.message().contains("my-finetune"));
    let mut prices = PriceTable::defaults();
    prices
        .set_unknown(ai_budget::UnknownModel::PriceAs("claude-opus-4-1".into()))
        .expect("listed");
    let layer = BudgetLayer::new(haiku_team_budget("1", false), prices);
    let mut svc = layer.layer(MockProvider::always(message(10, 10)));
    let ok = svc
        .ready()
        .await
        .expect("ready")
        .call(request("my-finetune", 100, false, &alice()))
        .await
        .expect("priced as opus 4.1");
    // The answer names claude-haiku-4-5, which is listed: priced as the model that answered.
    assert_eq!(ok.headers()["x-gateway-cost-usd"], "0.00006");
}

#[tokio::test]
async fn a_request_without_max_tokens_has_no_upper_bound_and_is_refused() {
    let layer = BudgetLayer::new(haiku_team_budget("1", false), PriceTable::defaults());
    let mut svc = layer.layer(MockProvider::always(message(10, 10)));
    let mut req = request("claude-haiku-4-5", 10, false, &alice());
    req.body_mut().max_tokens = None;
    let err = svc.call(req).await.expect_err("no bound");
    assert_eq!(err.status(), 400);
    assert!(err.message().contains("max_tokens"), "{}", err.message());
    // A global budget has one owner, "all".
    assert!(
        layer
            .standing(Scope::Global, "x")
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn a_cancelled_stream_pays_for_what_was_streamed_and_holds_nothing() {
    let layer = BudgetLayer::new(haiku_team_budget("1", true), PriceTable::defaults());
    let mut svc = layer.layer(EndlessUpstream {
        dropped: Arc::default(),
    });
    let resp = svc
        .ready()
        .await
        .expect("ready")
        .call(request("claude-haiku-4-5", 1000, true, &alice()))
        .await
        .expect("admitted");
    let AiBody::Events(mut s) = resp.into_body() else {
        panic!("stream")
    };
    for _ in 0..5 {
        s.next().await.expect("event").expect("ok");
    }
    let mid = layer.standing(Scope::Team, "eng").await.expect("read");
    assert_ne!(mid[0].reserved_usd, "0.00", "held while streaming");
    drop(s); // the client goes away after 3 deltas (120 bytes = 30 tokens)
    let after = layer.standing(Scope::Team, "eng").await.expect("read");
    // 100 x $1 + 30 x $5 per million = $0.00025
    assert_eq!(after[0].spent_usd, "0.00025");
    assert_eq!(after[0].reserved_usd, "0.00");
}

#[tokio::test]
async fn a_failing_upstream_costs_nothing_and_releases_its_hold() {
    let layer = BudgetLayer::new(haiku_team_budget("1", false), PriceTable::defaults());
    let mut svc = layer.layer(MockProvider::always(Script::Error(AiError::new(
        ai_core::ErrorKind::Overloaded,
        "overloaded",
    ))));
    let err = svc
        .ready()
        .await
        .expect("ready")
        .call(request("claude-haiku-4-5", 1000, false, &alice()))
        .await
        .expect_err("upstream error");
    assert_eq!(err.status(), 529);
    let s = layer.standing(Scope::Team, "eng").await.expect("read");
    assert_eq!(
        (s[0].spent_usd.as_str(), s[0].reserved_usd.as_str()),
        ("0.00", "0.00")
    );
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Alert>>>);
impl AlertSink for Collect {
    fn alert(&self, a: Alert) {
        self.0.lock().expect("lock").push(a);
    }
}
impl Collect {
    fn fired(&self) -> Vec<(String, u8)> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .map(|a| (a.window.clone(), a.threshold_percent))
            .collect()
    }
}

fn at(rfc3339: &str) -> Clock {
    let ts: jiff::Timestamp = rfc3339.parse().expect("time");
    Clock::at_us(ts.as_microsecond() as u64)
}

#[tokio::test(start_paused = true)]
async fn thresholds_fire_exactly_once_per_window_and_a_new_day_starts_from_zero() {
    let alerts = Collect::default();
    let policy = BudgetPolicy::new(vec![Budget::new(
        "alice-daily",
        Scope::Subject,
        usd("0.01"),
        Period::Daily,
    )]);
    let layer = BudgetLayer::new(policy, PriceTable::defaults())
        .clock(at("2026-12-02T10:00:00Z"))
        .alerts(alerts.clone());
    // Each call: 1,000 input + 200 output on Haiku 4.5 = $0.002; the cap is $0.01.
    let svc = layer.layer(MockProvider::always(message(1000, 200)));
    let run = |n: usize| {
        let svc = svc.clone();
        async move {
            let calls = (0..n).map(|_| {
                let mut s = svc.clone();
                async move {
                    s.ready()
                        .await
                        .expect("ready")
                        .call(request("claude-haiku-4-5", 200, false, &alice()))
                        .await
                }
            });
            futures_util::future::join_all(calls).await
        }
    };
    let day1 = run(8).await;
    let ok = day1.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 5, "five calls of $0.002 reach the $0.01 cap");
    assert!(
        day1.iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.status() == 402)
    );
    assert_eq!(
        alerts.fired(),
        vec![
            ("2026-12-02".to_owned(), 80),
            ("2026-12-02".to_owned(), 100)
        ]
    );
    tokio::time::advance(Duration::from_secs(14 * 3600)).await; // 2026-12-03T00:00Z
    let day2 = run(8).await;
    assert_eq!(day2.iter().filter(|r| r.is_ok()).count(), 5, "a new window");
    assert_eq!(alerts.fired().len(), 4);
    assert_eq!(
        alerts.fired()[2..],
        [
            ("2026-12-03".to_owned(), 80),
            ("2026-12-03".to_owned(), 100)
        ]
    );
    let s = layer.standing(Scope::Subject, "alice").await.expect("read");
    assert_eq!(s[0].window, "2026-12-03");
    assert_eq!(s[0].resets_at.as_deref(), Some("2026-12-04T00:00:00Z"));
}

#[tokio::test(start_paused = true)]
async fn a_monthly_window_rolls_over_at_midnight_in_its_time_zone() {
    // 2026-11-30T23:59Z is 18:59 on November 30th in New York (UTC-5).
    let policy = BudgetPolicy::new(vec![Budget::new(
        "eng-monthly",
        Scope::Team,
        usd("0.002"),
        Period::Monthly,
    )])
    .calendar(Calendar::zone("America/New_York").expect("zone"));
    let layer = BudgetLayer::new(policy, PriceTable::defaults()).clock(at("2026-11-30T23:59:00Z"));
    let mut svc = layer.layer(MockProvider::always(message(1000, 200)));
    let mut call = || svc.call(request("claude-haiku-4-5", 200, false, &alice()));
    call()
        .await
        .expect("the first call spends the month's $0.002");
    assert_eq!(call().await.expect_err("spent").status(), 402);
    tokio::time::advance(Duration::from_secs(120)).await; // December in UTC, not in New York
    assert_eq!(
        call()
            .await
            .expect_err("still November in New York")
            .status(),
        402
    );
    tokio::time::advance(Duration::from_secs(5 * 3600)).await; // 00:01 December 1st, New York
    call().await.expect("a new month in New York");
    let s = layer.standing(Scope::Team, "eng").await.expect("read");
    assert_eq!(s[0].window, "2026-12");
    assert_eq!(s[0].resets_at.as_deref(), Some("2027-01-01T05:00:00Z"));
}

#[tokio::test]
async fn spend_survives_a_restart_of_the_memory_store() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("budget-spend.json");
    let policy = || haiku_team_budget("0.003", false);
    {
        let store = MemoryStore::open(&path).expect("open");
        let layer = BudgetLayer::with_store(policy(), PriceTable::defaults(), store.clone());
        let mut svc = layer.layer(MockProvider::always(message(1000, 200)));
        svc.call(request("claude-haiku-4-5", 200, false, &alice()))
            .await
            .expect("$0.002");
        store
            .save(Clock::system().now_us())
            .expect("saved at shutdown");
    }
    let store = MemoryStore::open(&path).expect("reopen");
    let layer = BudgetLayer::with_store(policy(), PriceTable::defaults(), store);
    let s = layer.standing(Scope::Team, "eng").await.expect("read");
    assert_eq!(s[0].spent_usd, "0.002");
    let mut svc = layer.layer(MockProvider::always(message(1000, 200)));
    assert_eq!(
        svc.call(request("claude-haiku-4-5", 200, false, &alice()))
            .await
            .expect_err("only $0.001 left after the restart")
            .status(),
        402
    );
}

#[tokio::test]
async fn every_scope_that_applies_is_charged_and_others_are_not() {
    let mut policy = BudgetPolicy::new(vec![
        Budget::new("user", Scope::Subject, usd("1"), Period::Daily),
        Budget::new("team", Scope::Team, usd("1"), Period::Monthly),
        Budget::new("tenant", Scope::Tenant, usd("1"), Period::Lifetime),
        Budget::new("project", Scope::Project, usd("1"), Period::Monthly),
        Budget::new("all", Scope::Global, usd("1"), Period::Monthly),
    ]);
    policy.project_header = http::HeaderName::from_static("x-cost-centre");
    let layer = BudgetLayer::new(policy, PriceTable::defaults());
    let mut svc = layer.layer(MockProvider::always(message(1000, 200)));
    let mut req = request("claude-haiku-4-5", 200, false, &alice());
    req.headers_mut()
        .insert("x-cost-centre", http::HeaderValue::from_static("cc-42"));
    svc.call(req).await.expect("ok");
    let mut bob = Principal::new("bob");
    bob.team = None;
    svc.call(request("claude-haiku-4-5", 200, false, &bob))
        .await
        .expect("ok");
    for (scope, owner, spent) in [
        (Scope::Subject, "alice", "0.002"),
        (Scope::Subject, "bob", "0.002"),
        (Scope::Team, "eng", "0.002"),
        (Scope::Tenant, "acme", "0.002"),
        (Scope::Project, "cc-42", "0.002"),
        (Scope::Global, "all", "0.004"),
    ] {
        let s = layer.standing(scope, owner).await.expect("read");
        assert_eq!(s[0].spent_usd, spent, "{scope:?} {owner}");
    }
}
