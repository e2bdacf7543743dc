//! [`DemoProvider`]: a built-in upstream that answers with a short canned reply, streamed
//! with the same events and usage fields the real API sends, so a gateway runs (and an
//! SDK can be pointed at it) with no vendor key.

use ai_core::wire::{
    ContentBlockStartEvent, ContentBlockStopEvent, MessageDeltaBody, MessageDeltaEvent,
    MessageStartEvent, MessageStopEvent, PingEvent,
};
use ai_core::{
    AiBody, AiError, ContentBlock, Endpoint, MessagesRequest, MessagesResponse, Role, Served,
    StreamEvent, Usage,
};
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;

/// The model name the demo upstream reports.
pub const DEMO_MODEL: &str = "demo-echo-1";

const ANSWER: &str = "Hello! This is the ai-gateway demo upstream. No ANTHROPIC_API_KEY is set, \
so this answer is streamed from inside the gateway. Set ANTHROPIC_API_KEY to reach Claude.";

/// The demo upstream. Streams when the request asks for it, pausing `delay` between
/// events (default 15 ms, so a terminal shows it arrive word by word).
#[derive(Debug, Clone)]
pub struct DemoProvider {
    delay: Duration,
}

impl Default for DemoProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl DemoProvider {
    /// A demo upstream with the default pacing.
    pub fn new() -> Self {
        DemoProvider {
            delay: Duration::from_millis(15),
        }
    }

    /// Pause between stream events. Default 15 ms.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

/// A rough token count (4 bytes a token) of every text in the request.
fn estimate_tokens(req: &MessagesRequest) -> u64 {
    let mut bytes = 0usize;
    let mut add = |t: &str| bytes += t.len();
    if let Some(s) = &req.system {
        s.for_each_text(&mut add);
    }
    for m in &req.messages {
        m.content.for_each_text(&mut add);
    }
    (bytes as u64).div_ceil(4).max(1)
}

/// The answer cut to `max_tokens` (the demo counts a word as a token), and its stop
/// reason: `max_tokens` when cut, `end_turn` otherwise.
fn answer_text(max_tokens: Option<u32>) -> (String, u64, &'static str) {
    let words: Vec<&str> = ANSWER.split_inclusive(' ').collect();
    let limit = max_tokens.map_or(usize::MAX, |m| m as usize);
    if words.len() <= limit {
        return (ANSWER.to_owned(), words.len() as u64, "end_turn");
    }
    (words[..limit].concat(), limit as u64, "max_tokens")
}

/// The text in stream-sized pieces of three words.
fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for (i, word) in text.split_inclusive(' ').enumerate() {
        cur.push_str(word);
        if i % 3 == 2 {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn message_id() -> String {
    format!("msg_demo_{}", &ai_core::RequestId::generate().as_str()[3..])
}

fn events(input_tokens: u64, max_tokens: Option<u32>, model: &str) -> Vec<StreamEvent> {
    let (text, output, stop_reason) = answer_text(max_tokens);
    let parts = chunks(&text);
    let mut evs = vec![
        StreamEvent::MessageStart(MessageStartEvent {
            message: Box::new(MessagesResponse {
                id: message_id(),
                kind: "message".into(),
                role: Role::Assistant,
                content: vec![],
                model: model.to_owned(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage {
                    input_tokens: Some(input_tokens),
                    output_tokens: Some(1),
                    cache_creation_input_tokens: Some(0),
                    cache_read_input_tokens: Some(0),
                    ..Default::default()
                },
                extra: Default::default(),
            }),
            extra: Default::default(),
        }),
        StreamEvent::ContentBlockStart(ContentBlockStartEvent {
            index: 0,
            content_block: Box::new(ContentBlock::text("")),
            extra: Default::default(),
        }),
        StreamEvent::Ping(PingEvent::default()),
    ];
    evs.extend(parts.into_iter().map(|p| StreamEvent::text_delta(0, p)));
    evs.push(StreamEvent::ContentBlockStop(ContentBlockStopEvent {
        index: 0,
        extra: Default::default(),
    }));
    evs.push(StreamEvent::MessageDelta(MessageDeltaEvent {
        delta: MessageDeltaBody {
            stop_reason: Some(stop_reason.into()),
            stop_sequence: None,
            extra: Default::default(),
        },
        usage: Some(Usage {
            output_tokens: Some(output),
            ..Default::default()
        }),
        extra: Default::default(),
    }));
    evs.push(StreamEvent::MessageStop(MessageStopEvent::default()));
    evs
}

fn answer(req: &Request<MessagesRequest>, delay: Duration) -> Response<AiBody> {
    let endpoint = req
        .extensions()
        .get::<Endpoint>()
        .cloned()
        .unwrap_or(Endpoint::Messages);
    let model = if req.body().model.is_empty() {
        DEMO_MODEL
    } else {
        &req.body().model
    };
    if let Some(r) = req.extensions().get::<ai_core::CallReport>() {
        r.push_attempt(ai_core::Attempt {
            provider: Arc::from("demo"),
            model: Arc::from(model),
            status: Some(200),
        });
    }
    let body = match endpoint {
        Endpoint::CountTokens => {
            AiBody::Json(serde_json::json!({ "input_tokens": estimate_tokens(req.body()) }))
        }
        Endpoint::ListModels => AiBody::Json(serde_json::json!({
            "data": [model_json(DEMO_MODEL)],
            "has_more": false,
            "first_id": DEMO_MODEL,
            "last_id": DEMO_MODEL,
        })),
        Endpoint::GetModel(id) => AiBody::Json(model_json(&id)),
        _ if req.body().is_stream() => {
            let items = events(estimate_tokens(req.body()), req.body().max_tokens, model);
            let stream = futures_util::stream::unfold(
                (items.into_iter(), true),
                move |(mut it, first)| async move {
                    let ev = it.next()?;
                    if !first && !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(ev), (it, false)))
                },
            );
            AiBody::from_events(stream)
        }
        _ => {
            let (text, output, stop_reason) = answer_text(req.body().max_tokens);
            AiBody::from(MessagesResponse {
                id: message_id(),
                kind: "message".into(),
                role: Role::Assistant,
                content: vec![ContentBlock::text(text)],
                model: model.to_owned(),
                stop_reason: Some(stop_reason.into()),
                stop_sequence: None,
                usage: Usage {
                    input_tokens: Some(estimate_tokens(req.body())),
                    output_tokens: Some(output),
                    cache_creation_input_tokens: Some(0),
                    cache_read_input_tokens: Some(0),
                    ..Default::default()
                },
                extra: Default::default(),
            })
        }
    };
    let mut resp = Response::new(body);
    resp.extensions_mut().insert(Served {
        provider: Arc::from("demo"),
        model: Arc::from(model),
        request_id: None,
    });
    resp
}

fn model_json(id: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "model",
        "id": id,
        "display_name": "Demo upstream (built into ai-gateway)",
        "created_at": "2025-01-01T00:00:00Z",
    })
}

impl Service<Request<MessagesRequest>> for DemoProvider {
    type Response = Response<AiBody>;
    type Error = AiError;
    type Future = std::future::Ready<Result<Response<AiBody>, AiError>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), AiError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<MessagesRequest>) -> Self::Future {
        std::future::ready(Ok(answer(&req, self.delay)))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn honours_max_tokens_with_its_stop_reason() {
        let mut r = request(false);
        r.body_mut().max_tokens = Some(3);
        let AiBody::Message(m) = DemoProvider::new()
            .oneshot(r)
            .await
            .expect("ok")
            .into_body()
        else {
            panic!("message expected")
        };
        assert_eq!(m.stop_reason.as_deref(), Some("max_tokens"));
        assert_eq!(m.usage.output_tokens, Some(3));
        let ContentBlock::Text(t) = &m.content[0] else {
            panic!("text")
        };
        assert_eq!(t.text, "Hello! This is ");

        let mut r = request(true);
        r.body_mut().max_tokens = Some(4);
        let AiBody::Events(mut s) = DemoProvider::new()
            .delay(Duration::ZERO)
            .oneshot(r)
            .await
            .expect("ok")
            .into_body()
        else {
            panic!("stream expected")
        };
        let mut text = String::new();
        let mut stop = None;
        while let Some(ev) = s.next().await {
            match ev.expect("no error") {
                StreamEvent::ContentBlockDelta(d) => {
                    if let ai_core::Delta::Text(t) = &d.delta {
                        text.push_str(&t.text);
                    }
                }
                StreamEvent::MessageDelta(d) => {
                    stop = d.delta.stop_reason.clone();
                    assert_eq!(d.usage.and_then(|u| u.output_tokens), Some(4));
                }
                _ => {}
            }
        }
        assert_eq!(text, "Hello! This is the ");
        assert_eq!(stop.as_deref(), Some("max_tokens"));
    }

    use super::*;
    use ai_core::Content;
    use futures_util::StreamExt;
    use tower::ServiceExt;

    fn request(stream: bool) -> Request<MessagesRequest> {
        let mut r = MessagesRequest {
            model: "claude-sonnet-4-5".into(),
            max_tokens: Some(100),
            messages: vec![ai_core::Message {
                role: Role::User,
                content: Content::Text("hello there".into()),
                extra: Default::default(),
            }],
            ..Default::default()
        };
        r.stream = Some(stream);
        Request::new(r)
    }

    #[tokio::test]
    async fn streams_a_well_formed_answer() {
        let resp = DemoProvider::new()
            .delay(Duration::ZERO)
            .oneshot(request(true))
            .await
            .expect("ok");
        let AiBody::Events(mut s) = resp.into_body() else {
            panic!("stream expected")
        };
        let mut text = String::new();
        let mut types = vec![];
        while let Some(ev) = s.next().await {
            let ev = ev.expect("no error");
            types.push(ev.type_name().to_owned());
            if let StreamEvent::ContentBlockDelta(d) = &ev {
                if let ai_core::Delta::Text(t) = &d.delta {
                    text.push_str(&t.text);
                }
            }
        }
        assert_eq!(text, ANSWER);
        assert_eq!(types.first().map(String::as_str), Some("message_start"));
        assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    }

    #[tokio::test]
    async fn answers_whole_messages_and_counts_tokens() {
        let resp = DemoProvider::new()
            .oneshot(request(false))
            .await
            .expect("ok");
        let AiBody::Message(m) = resp.into_body() else {
            panic!("message expected")
        };
        assert_eq!(m.usage.input_tokens, Some(3));
        assert_eq!(m.stop_reason.as_deref(), Some("end_turn"));
        let mut r = request(false);
        r.extensions_mut().insert(Endpoint::CountTokens);
        let AiBody::Json(v) = DemoProvider::new()
            .oneshot(r)
            .await
            .expect("ok")
            .into_body()
        else {
            panic!()
        };
        assert_eq!(v["input_tokens"], 3);
    }
}
