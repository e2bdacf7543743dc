//! [`RedactLayer`]: classify and transform the request, rehydrate the answer.

use crate::engine::{Blocked, Outcome, Redactor, Refused};
use crate::vault::{StreamRehydrator, Vault};
use ai_core::wire::{ContentBlock, ContentBlockDeltaEvent, Delta, RawJson, StreamEvent};
use ai_core::{
    AiBody, AiError, CallReport, DataCategory, ErrorKind, EventStream, MessagesRequest, Verdicts,
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

/// A tower layer that finds personal data and secrets in every request
/// (`Request<MessagesRequest>`), classifies it, and redacts, masks, tokenizes or blocks
/// as its [`RedactPolicy`](crate::RedactPolicy) says; tokens in the answer are turned back
/// into the real values, in whole messages and in streams.
///
/// It inserts the [`DataClassification`](ai_core::DataClassification) into the request
/// extensions (for routing) and, when an outer layer put them there, fills the
/// [`CallReport`] (classification, redaction counts) and [`Verdicts`].
#[derive(Clone)]
pub struct RedactLayer {
    redactor: Arc<Redactor>,
    #[cfg(feature = "ocr")]
    ocr: Option<Arc<crate::ocr::Ocr>>,
}

impl fmt::Debug for RedactLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactLayer")
            .field("redactor", &self.redactor)
            .finish()
    }
}

impl RedactLayer {
    /// A layer running `redactor`.
    pub fn new(redactor: Redactor) -> Self {
        RedactLayer {
            redactor: Arc::new(redactor),
            #[cfg(feature = "ocr")]
            ocr: None,
        }
    }

    /// Reads the text in base64 images with `ocr` and runs the detectors over it
    /// (feature `ocr`): see [`Redactor::process_with_images`]. An image that cannot be
    /// read refuses the request (503): it is never sent unchecked.
    #[cfg(feature = "ocr")]
    pub fn ocr(mut self, ocr: crate::ocr::Ocr) -> Self {
        self.ocr = Some(Arc::new(ocr));
        self
    }

    /// The redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

impl<S> Layer<S> for RedactLayer {
    type Service = RedactService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RedactService {
            inner,
            redactor: self.redactor.clone(),
            #[cfg(feature = "ocr")]
            ocr: self.ocr.clone(),
        }
    }
}

/// The service of [`RedactLayer`].
#[derive(Clone)]
pub struct RedactService<S> {
    inner: S,
    redactor: Arc<Redactor>,
    #[cfg(feature = "ocr")]
    ocr: Option<Arc<crate::ocr::Ocr>>,
}

impl<S: fmt::Debug> fmt::Debug for RedactService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

const LAYER: &str = "ai-redact";

fn report(parts: &http::request::Parts, o: &Outcome) {
    if let Some(r) = parts.extensions.get::<CallReport>() {
        r.set_classification(o.classification);
        for (c, n) in DataCategory::ALL.iter().zip(o.replaced) {
            if n > 0 {
                r.add_redactions(*c, n);
            }
        }
    }
    if let Some(v) = parts.extensions.get::<Verdicts>() {
        let n = o.total_replaced();
        v.push(
            LAYER,
            if n == 0 {
                "clean".to_owned()
            } else {
                format!("redacted:{n}")
            },
        );
        if let Some((score, comp)) = o.injection {
            let what = if o.stripped { "stripped" } else { "flagged" };
            v.push(
                LAYER,
                format!("injection:{what}:{score:.2}:{}", comp.as_str()),
            );
        }
    }
    metrics::counter!("gateway_redactions_total").increment(u64::from(o.total_replaced()));
}

fn blocked(parts: &http::request::Parts, refused: &Refused) -> AiError {
    let b = &refused.reason;
    if let Some(r) = parts.extensions.get::<CallReport>() {
        r.set_classification(refused.classification);
    }
    let decision = match b {
        Blocked::Category {
            category,
            component,
            ..
        } => {
            format!("block:{}:{}", category.as_str(), component.as_str())
        }
        Blocked::Escalation { category } => format!("block:{}:tool_results", category.as_str()),
        Blocked::Injection { component, .. } => format!("block:injection:{}", component.as_str()),
        Blocked::Unreadable { component } => format!("block:unreadable:{}", component.as_str()),
    };
    if let Some(v) = parts.extensions.get::<Verdicts>() {
        v.push(LAYER, decision);
    }
    metrics::counter!("gateway_redact_blocks_total").increment(1);
    let kind = match b {
        Blocked::Unreadable { .. } => ErrorKind::InvalidRequest,
        _ => ErrorKind::Permission,
    };
    AiError::new(kind, b.to_string())
}

impl<S> Service<Request<MessagesRequest>> for RedactService<S>
where
    S: Service<Request<MessagesRequest>, Response = Response<AiBody>, Error = AiError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<AiBody>;
    type Error = AiError;
    type Future = BoxFuture<'static, Result<Response<AiBody>, AiError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<MessagesRequest>) -> Self::Future {
        #[cfg_attr(not(feature = "ocr"), allow(unused_mut))]
        let (parts, mut body) = req.into_parts();
        #[cfg(feature = "ocr")]
        if let Some(ocr) = self.ocr.clone() {
            let images = Redactor::images(&mut body);
            if !images.is_empty() {
                // The inner service was made ready for this call: take it, leave a clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let redactor = self.redactor.clone();
                return async move {
                    let texts = read_images(&ocr, &images).await?;
                    forward(&redactor, &mut inner, parts, body, texts).await
                }
                .boxed();
            }
        }
        forward(&self.redactor, &mut self.inner, parts, body, Vec::new())
    }
}

#[cfg(feature = "ocr")]
async fn read_images(
    ocr: &crate::ocr::Ocr,
    images: &[crate::engine::ImageData],
) -> Result<crate::engine::ImageTexts, AiError> {
    use crate::engine::ImageData;
    let inline = images
        .iter()
        .filter(|i| matches!(i, ImageData::Bytes(_)))
        .count();
    if inline > ocr.image_limit() {
        return Err(AiError::new(
            ErrorKind::InvalidRequest,
            format!(
                "a request may carry at most {} images: each is read for sensitive data",
                ocr.image_limit()
            ),
        ));
    }
    let mut texts = Vec::with_capacity(images.len());
    for image in images {
        let bytes = match image {
            ImageData::Bytes(b) => b,
            ImageData::Elsewhere => {
                texts.push(None);
                continue;
            }
            ImageData::Broken => {
                return Err(AiError::invalid_request(
                    "an image's base64 data does not decode, so it cannot be checked for sensitive data",
                ));
            }
        };
        match ocr.read(bytes).await {
            Ok(t) => texts.push(Some(t)),
            Err(e) => {
                return Err(AiError::new(
                    ErrorKind::Api,
                    format!("an image could not be checked for sensitive data: {e}"),
                )
                .with_status(http::StatusCode::SERVICE_UNAVAILABLE));
            }
        }
    }
    Ok(texts)
}

/// Classifies and rewrites the request, calls `inner`, and rehydrates the answer.
fn forward<S>(
    redactor: &Redactor,
    inner: &mut S,
    mut parts: http::request::Parts,
    mut body: MessagesRequest,
    images: crate::engine::ImageTexts,
) -> BoxFuture<'static, Result<Response<AiBody>, AiError>>
where
    S: Service<Request<MessagesRequest>, Response = Response<AiBody>, Error = AiError>,
    S::Future: Send + 'static,
{
    let outcome = match redactor.process_with_images(&mut body, images) {
        Ok(o) => o,
        Err(r) => {
            let e = blocked(&parts, &r);
            return std::future::ready(Err(e)).boxed();
        }
    };
    report(&parts, &outcome);
    parts.extensions.insert(outcome.classification);
    let fut = inner.call(Request::from_parts(parts, body));
    if outcome.vault.is_empty() {
        return fut.boxed();
    }
    let vault = Arc::new(outcome.vault);
    async move {
        let resp = fut.await?;
        Ok(resp.map(|b| rehydrate_body(b, vault)))
    }
    .boxed()
}

/// `body` with the vault's tokens turned back into values.
pub fn rehydrate_body(body: AiBody, vault: Arc<Vault>) -> AiBody {
    match body {
        AiBody::Message(mut m) => {
            for b in &mut m.content {
                rehydrate_block(b, &vault);
            }
            AiBody::Message(m)
        }
        AiBody::Events(inner) => AiBody::Events(Box::pin(Rehydrate {
            inner,
            vault,
            blocks: Vec::new(),
            queue: VecDeque::new(),
            done: false,
        })),
        other => other,
    }
}

fn rehydrate_block(b: &mut ContentBlock, vault: &Vault) {
    match b {
        ContentBlock::Text(t) => {
            if let std::borrow::Cow::Owned(s) = vault.rehydrate(&t.text, false) {
                t.text = s;
            }
        }
        ContentBlock::ToolUse(u) => {
            if let std::borrow::Cow::Owned(s) = vault.rehydrate(u.input.get(), true) {
                if let Ok(raw) = RawJson::from_string(s) {
                    u.input = raw;
                }
            }
        }
        _ => {}
    }
}

/// The stream of a tokenized request's answer, rehydrated delta by delta.
struct Rehydrate {
    inner: EventStream,
    vault: Arc<Vault>,
    blocks: Vec<(u32, StreamRehydrator)>,
    queue: VecDeque<Result<StreamEvent, AiError>>,
    done: bool,
}

impl Rehydrate {
    fn state(&mut self, index: u32, json: bool) -> &mut StreamRehydrator {
        let pos = match self.blocks.iter().position(|(i, _)| *i == index) {
            Some(p) => p,
            None => {
                self.blocks.push((index, StreamRehydrator::new(json)));
                self.blocks.len() - 1
            }
        };
        &mut self.blocks[pos].1
    }

    /// Sends what a block still holds, as one last delta.
    fn flush(&mut self, index: Option<u32>) {
        let vault = self.vault.clone();
        let mut i = 0;
        while i < self.blocks.len() {
            if index.is_some_and(|x| x != self.blocks[i].0) {
                i += 1;
                continue;
            }
            let (idx, mut r) = self.blocks.remove(i);
            if r.has_pending() {
                let rest = r.finish(&vault);
                self.queue.push_back(Ok(delta(idx, rest, r.is_json())));
            }
        }
    }

    fn process(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::ContentBlockDelta(mut d) => {
                let vault = self.vault.clone();
                let index = d.index;
                match &mut d.delta {
                    Delta::Text(t) => {
                        t.text = self.state(index, false).push(&vault, &t.text);
                        if t.text.is_empty() {
                            return;
                        }
                    }
                    Delta::InputJson(j) => {
                        j.partial_json = self.state(index, true).push(&vault, &j.partial_json);
                        if j.partial_json.is_empty() {
                            return;
                        }
                    }
                    _ => {}
                }
                self.queue.push_back(Ok(StreamEvent::ContentBlockDelta(d)));
            }
            StreamEvent::ContentBlockStart(mut s) => {
                rehydrate_block(&mut s.content_block, &self.vault);
                self.queue.push_back(Ok(StreamEvent::ContentBlockStart(s)));
            }
            StreamEvent::ContentBlockStop(s) => {
                self.flush(Some(s.index));
                self.queue.push_back(Ok(StreamEvent::ContentBlockStop(s)));
            }
            StreamEvent::MessageDelta(_) | StreamEvent::MessageStop(_) => {
                self.flush(None);
                self.queue.push_back(Ok(ev));
            }
            other => self.queue.push_back(Ok(other)),
        }
    }
}

fn delta(index: u32, text: String, json: bool) -> StreamEvent {
    let delta = if json {
        Delta::InputJson(ai_core::wire::InputJsonDelta {
            partial_json: text,
            ..Default::default()
        })
    } else {
        Delta::Text(ai_core::wire::TextDelta {
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

impl Stream for Rehydrate {
    type Item = Result<StreamEvent, AiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(self.inner.as_mut().poll_next(cx)) {
                Some(Ok(ev)) => self.process(ev),
                Some(Err(e)) => {
                    self.flush(None);
                    self.queue.push_back(Err(e));
                    self.done = true;
                }
                None => {
                    self.flush(None);
                    self.done = true;
                }
            }
        }
    }
}
