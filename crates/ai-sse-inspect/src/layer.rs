//! [`InspectLayer`]: the answer inspected as it streams, cut cleanly on a violation.

use crate::policy::{Action, InspectPolicy, reason_code};
use crate::tools::{INVALID_ARGUMENTS, ToolPolicy, ToolViolation};
use crate::window::{Cut, Env, TextWindow};
use ai_core::classify::{Classifier, Finding, bind_all};
use ai_core::wire::{
    ContentBlock, ContentBlockDeltaEvent, ContentBlockStopEvent, Delta, MessageDeltaBody,
    MessageDeltaEvent, MessageStopEvent, RawJson, TextDelta, ThinkingDelta,
};
use ai_core::{
    AiBody, AiError, CallReport, EventStream, MessagesRequest, MessagesResponse, Principal,
    StreamEvent, Usage, Verdicts, WithheldToolCall,
};
use futures_core::Stream;
use futures_util::future::{BoxFuture, FutureExt};
use http::{Request, Response};
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// The layer's name in verdicts.
const LAYER: &str = "ai-sse-inspect";

/// Most verdicts one response records (a flagged phrase repeated a thousand times is one
/// line of evidence, not a thousand).
const MAX_VERDICTS: usize = 64;

/// A tower layer that inspects the model's answer (`Response<AiBody>`): classifiers run
/// over a sliding window of each streamed text block (and over whole messages), tool
/// calls are held and checked before they reach the client, and a violation ends the
/// answer with `stop_reason: "policy_block"` and a reason code, dropping the upstream
/// request at once.
///
/// When an outer layer put them in the request extensions, verdicts go to [`Verdicts`]
/// and the reason code and withheld tool calls to the [`CallReport`] (the audit record);
/// counts go to the `gateway_inspect_*` metrics.
#[derive(Clone)]
pub struct InspectLayer {
    inner: Arc<Inspector>,
}

struct Inspector {
    policy: InspectPolicy,
    tools: ToolPolicy,
    classifiers: Vec<Arc<dyn Classifier>>,
}

impl fmt::Debug for InspectLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InspectLayer")
            .field("policy", &self.inner.policy)
            .field("tools", &self.inner.tools)
            .field(
                "classifiers",
                &self
                    .inner
                    .classifiers
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl InspectLayer {
    /// A layer with `policy`, no classifiers and no tool policy yet.
    pub fn new(policy: InspectPolicy) -> Self {
        InspectLayer {
            inner: Arc::new(Inspector {
                policy,
                tools: ToolPolicy::default(),
                classifiers: Vec::new(),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inspector)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(i) => f(i),
            None => {
                let mut i = Inspector {
                    policy: self.inner.policy.clone(),
                    tools: self.inner.tools.clone(),
                    classifiers: self.inner.classifiers.clone(),
                };
                f(&mut i);
                self.inner = Arc::new(i);
            }
        }
        self
    }

    /// Adds a classifier.
    pub fn classifier(self, c: Arc<dyn Classifier>) -> Self {
        self.edit(|i| i.classifiers.push(c))
    }

    /// Sets the tool-call policy.
    pub fn tools(self, tools: ToolPolicy) -> Self {
        self.edit(|i| i.tools = tools)
    }

    /// The policy.
    pub fn policy(&self) -> &InspectPolicy {
        &self.inner.policy
    }
}

impl<S> Layer<S> for InspectLayer {
    type Service = InspectService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InspectService {
            inner,
            inspector: self.inner.clone(),
        }
    }
}

/// The service of [`InspectLayer`].
#[derive(Clone)]
pub struct InspectService<S> {
    inner: S,
    inspector: Arc<Inspector>,
}

impl<S> fmt::Debug for InspectService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InspectService").finish_non_exhaustive()
    }
}

impl<S> Service<Request<MessagesRequest>> for InspectService<S>
where
    S: Service<Request<MessagesRequest>, Response = Response<AiBody>, Error = AiError>,
    S::Future: Send + 'static,
{
    type Response = Response<AiBody>;
    type Error = AiError;
    type Future = BoxFuture<'static, Result<Response<AiBody>, AiError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<MessagesRequest>) -> Self::Future {
        let ctx = RequestCtx {
            inspector: self.inspector.clone(),
            classifiers: bind_all(&self.inspector.classifiers, req.body()),
            principal: req.extensions().get::<Principal>().cloned(),
            report: req.extensions().get::<CallReport>().cloned(),
            verdicts: req.extensions().get::<Verdicts>().cloned(),
            recorded: 0,
        };
        let fut = self.inner.call(req);
        async move {
            let resp = fut.await?;
            Ok(resp.map(|body| inspect_body(body, ctx)))
        }
        .boxed()
    }
}

/// What one request's inspection needs.
struct RequestCtx {
    inspector: Arc<Inspector>,
    classifiers: Vec<Arc<dyn Classifier>>,
    principal: Option<Principal>,
    report: Option<CallReport>,
    verdicts: Option<Verdicts>,
    recorded: usize,
}

impl RequestCtx {
    fn verdict(&mut self, decision: String) {
        if self.recorded >= MAX_VERDICTS {
            return;
        }
        self.recorded += 1;
        if let Some(v) = &self.verdicts {
            v.push(LAYER, decision);
        }
    }

    fn finding(&mut self, action: Action, f: &Finding, index: u32, offset: u64) {
        metrics::counter!("gateway_inspect_findings_total", "kind" => f.kind.to_string(), "action" => action.as_str()).increment(1);
        self.verdict(format!(
            "{}:{}:{}@{index}:{offset}",
            action.as_str(),
            f.kind,
            f.rule
        ));
    }

    fn blocked(&mut self, code: &str) {
        metrics::counter!("gateway_inspect_blocks_total", "reason" => code.to_owned()).increment(1);
        if let Some(r) = &self.report {
            r.set_policy_reason(code);
        }
    }

    fn tool(&mut self, id: &str, name: &str, args: &str, result: &Result<(), ToolViolation>) {
        let decision = match result {
            Ok(()) => "pass".to_owned(),
            Err(v) => format!("block:{}", v.code),
        };
        metrics::counter!("gateway_inspect_tool_calls_total", "decision" => if result.is_ok() { "pass" } else { "block" }).increment(1);
        if let Some(r) = &self.report {
            r.set_tool_decision(id, decision.as_str());
            if result.is_err() {
                r.add_withheld_tool_call(WithheldToolCall {
                    id: id.into(),
                    name: name.into(),
                    arguments: args.into(),
                });
            }
        }
        let rule = match result {
            Err(v) => format!(":{}", v.rule),
            Ok(()) => String::new(),
        };
        self.verdict(format!("tool:{decision}:{name}{rule}"));
    }

    /// Checks a tool call: parse, classifiers (when asked), name and rules.
    fn check_tool(&mut self, id: &str, name: &str, args: &str) -> Result<(), ToolViolation> {
        let inspector = self.inspector.clone();
        let tools = &inspector.tools;
        let result = if args.len() > tools.max_input() {
            Err(ToolViolation {
                code: INVALID_ARGUMENTS,
                rule: "max_input_bytes".to_owned(),
            })
        } else {
            let text = if args.trim().is_empty() { "{}" } else { args };
            match serde_json::from_str::<serde_json::Value>(text) {
                Err(_) => Err(ToolViolation {
                    code: INVALID_ARGUMENTS,
                    rule: "json".to_owned(),
                }),
                Ok(v) => self
                    .scan_tool_input(text)
                    .and_then(|()| tools.check(name, &v, self.principal.as_ref())),
            }
        };
        self.tool(id, name, args, &result);
        result
    }

    fn scan_tool_input(&mut self, text: &str) -> Result<(), ToolViolation> {
        if !self.inspector.tools.scans_input() {
            return Ok(());
        }
        let mut found = Vec::new();
        for c in &self.classifiers {
            c.classify(text, &mut found);
        }
        for f in &found {
            if self.inspector.policy.action_for(&f.kind) == Action::Flag {
                self.finding(Action::Flag, f, u32::MAX, f.start as u64);
            } else {
                return Err(ToolViolation {
                    code: leak_code(&f.kind),
                    rule: f.rule.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Reason codes are `&'static` for tools; a finding's code in tool input is interned
/// from a small fixed set, falling back to a generic one.
fn leak_code(kind: &str) -> &'static str {
    match kind {
        "pii" => "completion.pii.detected",
        "phi" => "completion.phi.detected",
        "pci" => "completion.pci.detected",
        "secret" => "completion.secret.detected",
        "credential" => "completion.credential.detected",
        "system_prompt" => "completion.system_prompt.detected",
        "deny_list" => "completion.deny_list.detected",
        _ => "completion.tool.input_detected",
    }
}

fn inspect_body(body: AiBody, ctx: RequestCtx) -> AiBody {
    match body {
        AiBody::Message(mut m) => {
            let mut ctx = ctx;
            inspect_message(&mut m, &mut ctx);
            AiBody::Message(m)
        }
        AiBody::Events(inner) => {
            let ctx_has_work = !ctx.classifiers.is_empty() || ctx.inspector.tools.is_active();
            if !ctx_has_work {
                return AiBody::Events(inner);
            }
            AiBody::Events(Box::pin(InspectStream::new(inner, ctx)))
        }
        other => other,
    }
}

/// A whole message: every text (and thinking, when asked) block classified whole, tool
/// calls checked; a block cuts the message there.
fn inspect_message(m: &mut MessagesResponse, ctx: &mut RequestCtx) {
    let mut findings = Vec::new();
    let mut cut: Option<(usize, String)> = None;
    for (i, block) in m.content.iter_mut().enumerate() {
        let index = i as u32;
        let (text, thinking) = match block {
            ContentBlock::Text(t) => (&mut t.text, false),
            ContentBlock::Thinking(t) if ctx.inspector.policy.inspects_thinking() => {
                (&mut t.thinking, true)
            }
            ContentBlock::ToolUse(u) if ctx.inspector.tools.is_active() => {
                if let Err(v) = ctx.check_tool(&u.id, &u.name, u.input.get()) {
                    cut = Some((i, v.code.to_owned()));
                    break;
                }
                continue;
            }
            _ => continue,
        };
        if ctx.classifiers.is_empty() {
            continue;
        }
        let classifiers = std::mem::take(&mut ctx.classifiers);
        let inspector = ctx.inspector.clone();
        let mut w = TextWindow::new(usize::MAX, thinking);
        let mut seen = Vec::new();
        let mut on = |a: Action, f: &Finding, at: u64| seen.push((a, f.clone(), at));
        let mut env = Env {
            classifiers: &classifiers,
            policy: &inspector.policy,
            findings: &mut findings,
            on_finding: &mut on,
        };
        let mut t = std::mem::take(text);
        let mut rest = String::new();
        let result = w
            .push(&mut t, &mut env)
            .and_then(|()| w.finish(&mut rest, &mut env));
        ctx.classifiers = classifiers;
        for (a, f, at) in &seen {
            ctx.finding(*a, f, index, *at);
        }
        match result {
            Ok(()) => {
                t.push_str(&rest);
                *text = t;
            }
            Err(Cut { finding, offset }) => {
                ctx.finding(Action::Block, &finding, index, offset);
                // The text before the finding: from `push`, or from `finish` when the
                // finding waited for the end.
                t.push_str(&rest);
                *text = t;
                cut = Some((i + 1, reason_code(&finding.kind)));
                break;
            }
        }
    }
    if let Some((keep, code)) = cut {
        m.content.truncate(keep);
        m.stop_reason = Some("policy_block".to_owned());
        m.stop_sequence = None;
        m.extra.insert(
            "policy_reason_code",
            RawJson::from_value(&serde_json::Value::String(code.clone())),
        );
        ctx.blocked(&code);
    }
}

/// Per content block state.
enum BlockState {
    /// Text or thinking under the window; non-text deltas wait behind held text.
    Window {
        index: u32,
        window: TextWindow,
        thinking: bool,
        waiting: Vec<StreamEvent>,
    },
    /// A tool call held until its stop.
    Tool {
        index: u32,
        held: Vec<StreamEvent>,
        id: String,
        name: String,
        args: String,
        initial: String,
        over: bool,
    },
    /// Forwarded as it comes (started, not yet stopped).
    Open { index: u32 },
}

impl BlockState {
    fn index(&self) -> u32 {
        match self {
            BlockState::Window { index, .. }
            | BlockState::Tool { index, .. }
            | BlockState::Open { index } => *index,
        }
    }
}

/// The inspected stream.
struct InspectStream {
    inner: Option<EventStream>,
    ctx: RequestCtx,
    blocks: Vec<BlockState>,
    queue: VecDeque<Result<StreamEvent, AiError>>,
    findings: Vec<Finding>,
    /// Bytes the upstream generated (text, thinking, tool input), forwarded or not.
    generated: u64,
    start_output: u64,
}

impl InspectStream {
    fn new(inner: EventStream, ctx: RequestCtx) -> Self {
        InspectStream {
            inner: Some(inner),
            ctx,
            blocks: Vec::new(),
            queue: VecDeque::new(),
            findings: Vec::new(),
            generated: 0,
            start_output: 0,
        }
    }

    fn position(&self, index: u32) -> Option<usize> {
        self.blocks.iter().position(|b| b.index() == index)
    }

    /// Runs the window of block `pos` over `text` (or finishes it when `text` is
    /// `None`, queueing what it released), recording findings. On `Ok`, `text` holds what
    /// may be forwarded; on a cut, what comes before the violation (also queued at a
    /// finish).
    fn run_window(&mut self, pos: usize, text: Option<&mut String>) -> Result<(), Cut> {
        let inspector = self.ctx.inspector.clone();
        let classifiers = std::mem::take(&mut self.ctx.classifiers);
        let mut seen: Vec<(Action, Finding, u64)> = Vec::new();
        let mut rest = String::new();
        let (index, result) = match &mut self.blocks[pos] {
            BlockState::Window { index, window, .. } => {
                let mut on = |a: Action, f: &Finding, at: u64| seen.push((a, f.clone(), at));
                let mut env = Env {
                    classifiers: &classifiers,
                    policy: &inspector.policy,
                    findings: &mut self.findings,
                    on_finding: &mut on,
                };
                let r = match text {
                    Some(t) => window.push(t, &mut env),
                    None => window.finish(&mut rest, &mut env),
                };
                (*index, r)
            }
            BlockState::Tool { .. } | BlockState::Open { .. } => {
                self.ctx.classifiers = classifiers;
                return Ok(());
            }
        };
        self.ctx.classifiers = classifiers;
        for (a, f, at) in seen {
            self.ctx.finding(a, &f, index, at);
        }
        self.queue_text(index, rest);
        result
    }

    fn queue_text(&mut self, index: u32, text: String) {
        if text.is_empty() {
            return;
        }
        let thinking = self.blocks.iter().any(
            |b| matches!(b, BlockState::Window { index: i, thinking: true, .. } if *i == index),
        );
        self.queue.push_back(Ok(text_event(index, text, thinking)));
    }

    /// Ends the answer: what came before the violation, then the blocks still open are
    /// closed, `message_delta` with `policy_block` and usage, `message_stop` with the
    /// reason code. The upstream is dropped now.
    fn block(&mut self, code: String) {
        self.inner = None;
        self.ctx.blocked(&code);
        for b in std::mem::take(&mut self.blocks) {
            match b {
                BlockState::Window { index, waiting, .. } => {
                    // Deltas without text (citations) that waited behind held text.
                    self.queue.extend(waiting.into_iter().map(Ok));
                    self.queue.push_back(Ok(stop_event(index)));
                }
                BlockState::Open { index } => self.queue.push_back(Ok(stop_event(index))),
                BlockState::Tool { .. } => {}
            }
        }
        let output = self.start_output.max(self.generated.div_ceil(4));
        self.queue
            .push_back(Ok(StreamEvent::MessageDelta(MessageDeltaEvent {
                delta: MessageDeltaBody {
                    stop_reason: Some("policy_block".to_owned()),
                    stop_sequence: None,
                    ..Default::default()
                },
                usage: Some(Usage {
                    output_tokens: Some(output),
                    ..Default::default()
                }),
                ..Default::default()
            })));
        let mut stop = MessageStopEvent::default();
        stop.extra.insert(
            "policy_reason_code",
            RawJson::from_value(&serde_json::Value::String(code)),
        );
        self.queue.push_back(Ok(StreamEvent::MessageStop(stop)));
    }

    fn cut(&mut self, index: u32, before: String, cut: Cut) {
        self.ctx
            .finding(Action::Block, &cut.finding, index, cut.offset);
        self.queue_text(index, before);
        self.block(reason_code(&cut.finding.kind));
    }

    fn process(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::MessageStart(s) => {
                self.start_output = s.message.usage.output_tokens.unwrap_or(0);
                self.queue.push_back(Ok(StreamEvent::MessageStart(s)));
            }
            StreamEvent::ContentBlockStart(s) => self.start(s),
            StreamEvent::ContentBlockDelta(d) => self.delta(d),
            StreamEvent::ContentBlockStop(s) => self.stop(s),
            StreamEvent::MessageDelta(_) | StreamEvent::MessageStop(_) | StreamEvent::Error(_) => {
                if let StreamEvent::MessageDelta(d) = &ev {
                    // The upstream's own count, should finishing a block cut the answer.
                    if let Some(n) = d.usage.as_ref().and_then(|u| u.output_tokens) {
                        self.start_output = self.start_output.max(n);
                    }
                }
                // Blocks never stopped: what they hold goes out before the end.
                self.finish_blocks();
                if self.inner.is_some() {
                    self.queue.push_back(Ok(ev));
                }
            }
            other => self.queue.push_back(Ok(other)),
        }
    }

    /// Finishes every open block as at its stop (checking and releasing what it holds),
    /// without sending the stops the upstream did not send.
    fn finish_blocks(&mut self) {
        let open: Vec<u32> = self.blocks.iter().map(BlockState::index).collect();
        for index in open {
            if self.inner.is_none() {
                return;
            }
            self.stop(ContentBlockStopEvent {
                index,
                ..Default::default()
            });
            if self.inner.is_some() {
                if let Some(Ok(StreamEvent::ContentBlockStop(_))) = self.queue.back() {
                    self.queue.pop_back();
                }
            }
        }
    }

    fn start(&mut self, s: ai_core::wire::ContentBlockStartEvent) {
        let index = s.index;
        let inspect_text = !self.ctx.classifiers.is_empty();
        let hold = self.ctx.inspector.policy.window_bytes();
        let state = match &*s.content_block {
            ContentBlock::Text(_) if inspect_text => BlockState::Window {
                index,
                window: TextWindow::new(hold, false),
                thinking: false,
                waiting: Vec::new(),
            },
            ContentBlock::Thinking(_)
                if inspect_text && self.ctx.inspector.policy.inspects_thinking() =>
            {
                BlockState::Window {
                    index,
                    window: TextWindow::new(hold, true),
                    thinking: true,
                    waiting: Vec::new(),
                }
            }
            ContentBlock::ToolUse(u) if self.ctx.inspector.tools.is_active() => {
                let initial = u.input.get().to_owned();
                let (id, name) = (u.id.clone(), u.name.clone());
                self.blocks.push(BlockState::Tool {
                    index,
                    held: vec![StreamEvent::ContentBlockStart(s)],
                    id,
                    name,
                    args: String::new(),
                    initial,
                    over: false,
                });
                return;
            }
            _ => BlockState::Open { index },
        };
        self.blocks.push(state);
        self.queue.push_back(Ok(StreamEvent::ContentBlockStart(s)));
    }

    fn delta(&mut self, mut d: ContentBlockDeltaEvent) {
        let index = d.index;
        self.generated += match &d.delta {
            Delta::Text(t) => t.text.len(),
            Delta::Thinking(t) => t.thinking.len(),
            Delta::InputJson(j) => j.partial_json.len(),
            _ => 0,
        } as u64;
        let Some(pos) = self.position(index) else {
            self.queue.push_back(Ok(StreamEvent::ContentBlockDelta(d)));
            return;
        };
        let (windowed, thinking, quiet) = match &self.blocks[pos] {
            BlockState::Window {
                thinking,
                window,
                waiting,
                ..
            } => (true, *thinking, window.held() == 0 && waiting.is_empty()),
            BlockState::Tool { .. } | BlockState::Open { .. } => (false, false, false),
        };
        if windowed {
            let text = match (&mut d.delta, thinking) {
                (Delta::Text(t), false) => Some(&mut t.text),
                (Delta::Thinking(t), true) => Some(&mut t.thinking),
                _ => None,
            };
            let Some(text) = text else {
                if quiet {
                    self.queue.push_back(Ok(StreamEvent::ContentBlockDelta(d)));
                } else if let BlockState::Window { waiting, .. } = &mut self.blocks[pos] {
                    waiting.push(StreamEvent::ContentBlockDelta(d));
                }
                return;
            };
            let mut t = std::mem::take(text);
            match self.run_window(pos, Some(&mut t)) {
                Ok(()) if t.is_empty() => {}
                Ok(()) => {
                    match &mut d.delta {
                        Delta::Text(x) => x.text = t,
                        Delta::Thinking(x) => x.thinking = t,
                        _ => {}
                    }
                    self.queue.push_back(Ok(StreamEvent::ContentBlockDelta(d)));
                }
                Err(cut) => self.cut(index, t, cut),
            }
            return;
        }
        let max_input = self.ctx.inspector.tools.max_input();
        match &mut self.blocks[pos] {
            BlockState::Tool {
                held, args, over, ..
            } => {
                if let Delta::InputJson(j) = &d.delta {
                    if args.len() + j.partial_json.len() > max_input {
                        *over = true;
                    } else {
                        args.push_str(&j.partial_json);
                    }
                }
                if !*over {
                    held.push(StreamEvent::ContentBlockDelta(d));
                }
            }
            BlockState::Window { .. } | BlockState::Open { .. } => {
                self.queue.push_back(Ok(StreamEvent::ContentBlockDelta(d)));
            }
        }
    }

    fn stop(&mut self, s: ContentBlockStopEvent) {
        let index = s.index;
        let Some(pos) = self.position(index) else {
            self.queue.push_back(Ok(StreamEvent::ContentBlockStop(s)));
            return;
        };
        let kind = match &self.blocks[pos] {
            BlockState::Window { .. } => 0,
            BlockState::Tool { .. } => 1,
            BlockState::Open { .. } => 2,
        };
        match kind {
            0 => {
                if let Err(cut) = self.run_window(pos, None) {
                    // What came before the violation is queued already.
                    self.cut(index, String::new(), cut);
                    return;
                }
                if let BlockState::Window { waiting, .. } = self.blocks.remove(pos) {
                    self.queue.extend(waiting.into_iter().map(Ok));
                }
                self.queue.push_back(Ok(StreamEvent::ContentBlockStop(s)));
            }
            1 => {
                let BlockState::Tool {
                    held,
                    id,
                    name,
                    args,
                    initial,
                    over,
                    ..
                } = self.blocks.remove(pos)
                else {
                    return;
                };
                let args = if args.is_empty() { initial } else { args };
                let result = if over {
                    let v = Err(ToolViolation {
                        code: INVALID_ARGUMENTS,
                        rule: "max_input_bytes".to_owned(),
                    });
                    self.ctx.tool(&id, &name, &args, &v);
                    v
                } else {
                    self.ctx.check_tool(&id, &name, &args)
                };
                match result {
                    Ok(()) => {
                        self.queue.extend(held.into_iter().map(Ok));
                        self.queue.push_back(Ok(StreamEvent::ContentBlockStop(s)));
                    }
                    Err(v) => self.block(v.code.to_owned()),
                }
            }
            _ => {
                self.blocks.remove(pos);
                self.queue.push_back(Ok(StreamEvent::ContentBlockStop(s)));
            }
        }
    }
}

fn text_event(index: u32, text: String, thinking: bool) -> StreamEvent {
    let delta = if thinking {
        Delta::Thinking(ThinkingDelta {
            thinking: text,
            ..Default::default()
        })
    } else {
        Delta::Text(TextDelta {
            text,
            ..Default::default()
        })
    };
    StreamEvent::ContentBlockDelta(ContentBlockDeltaEvent {
        index,
        delta,
        ..Default::default()
    })
}

fn stop_event(index: u32) -> StreamEvent {
    StreamEvent::ContentBlockStop(ContentBlockStopEvent {
        index,
        ..Default::default()
    })
}

impl Stream for InspectStream {
    type Item = Result<StreamEvent, AiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            let Some(inner) = self.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(inner.as_mut().poll_next(cx)) {
                Some(Ok(ev)) => self.process(ev),
                Some(Err(e)) => {
                    // What the blocks hold was checked: it goes out before the error
                    // (unless finishing them finds a violation: then the answer ends
                    // with the block instead).
                    self.finish_blocks();
                    if self.inner.take().is_some() {
                        self.queue.push_back(Err(e));
                    }
                }
                None => {
                    // The upstream ended without closing its blocks: release what was
                    // checked, as at a block stop.
                    self.finish_blocks();
                    self.inner = None;
                }
            }
        }
    }
}
