//! The mid-stream cut-off: a stream whose running cost would pass what its budget holds
//! for it is ended cleanly, and its upstream dropped.

use crate::money::Rate;
use crate::price::{ModelPrice, PriceTable};
use ai_core::wire::{ContentBlockStopEvent, MessageDeltaBody, MessageDeltaEvent, MessageStopEvent};
use ai_core::{AiError, Delta, EventStream, StreamEvent, Usage};
use futures_util::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The stop reason of a stream ended by a budget.
pub const STOP_REASON: &str = "budget_exceeded";

/// The running-cost check of one stream, kept apart from the stream so it can be
/// measured on its own: input priced once at `message_start`, then every delta's bytes
/// counted (4 bytes a token, the estimate the completion hook uses for a stream that
/// did not finish) against the output tokens the allowance still pays for.
#[derive(Clone, Debug)]
pub struct RunningCost {
    allowance_pico: u128,
    price: Arc<ModelPrice>,
    max_output: u64,
    bytes: u64,
}

impl RunningCost {
    /// A check of a stream allowed `allowance` nano-dollars, priced at `price`.
    pub fn new(allowance_nanos: u64, price: Arc<ModelPrice>) -> Self {
        let allowance_pico = u128::from(allowance_nanos) * 1000;
        // Until `message_start` prices the input: the output the whole allowance pays for.
        let max_output = match price.rates.output {
            Rate(0) => u64::MAX,
            Rate(p) => u64::try_from(allowance_pico / u128::from(p)).unwrap_or(u64::MAX),
        };
        RunningCost {
            allowance_pico,
            price,
            max_output,
            bytes: 0,
        }
    }

    /// Prices the input reported by `message_start`; returns false when the input alone
    /// is over the allowance.
    pub fn start(&mut self, usage: &Usage) -> bool {
        let r = self.price.rates_for(usage.total_input());
        let input = Usage {
            output_tokens: Some(0),
            ..usage.clone()
        };
        let input_pico = u128::from(self.price.cost(&input).0) * 1000;
        let left = self.allowance_pico.saturating_sub(input_pico);
        self.max_output = match r.output {
            Rate(0) => u64::MAX,
            Rate(p) => u64::try_from(left / u128::from(p)).unwrap_or(u64::MAX),
        };
        input_pico <= self.allowance_pico && self.max_output > 0
    }

    /// Counts a delta of `len` bytes; returns false (and counts nothing) when it would
    /// take the output past what the allowance pays for.
    #[inline]
    pub fn admit(&mut self, len: usize) -> bool {
        let next = self.bytes + len as u64;
        if next.div_ceil(4) > self.max_output {
            return false;
        }
        self.bytes = next;
        true
    }

    /// Prices the rest of the stream at `price` (the model `message_start` names, when
    /// the response did not say which model served it).
    pub fn set_price(&mut self, price: Arc<ModelPrice>) {
        self.price = price;
    }

    /// Output tokens counted so far.
    pub fn output_tokens(&self) -> u64 {
        self.bytes.div_ceil(4)
    }
}

/// The stream wrapper.
pub(crate) struct CutOff {
    inner: Option<EventStream>,
    check: RunningCost,
    open_block: Option<u32>,
    queued: VecDeque<StreamEvent>,
    on_cut: Option<Box<dyn FnOnce() + Send>>,
    /// Without `Served`, the table to price the model `message_start` names.
    reprice: Option<Arc<PriceTable>>,
}

impl CutOff {
    pub(crate) fn new(
        inner: EventStream,
        check: RunningCost,
        on_cut: Box<dyn FnOnce() + Send>,
        reprice: Option<Arc<PriceTable>>,
    ) -> Self {
        CutOff {
            inner: Some(inner),
            check,
            open_block: None,
            queued: VecDeque::new(),
            on_cut: Some(on_cut),
            reprice,
        }
    }

    /// Drops the upstream at once and queues the clean ending.
    fn cut(&mut self) {
        self.inner = None;
        if let Some(index) = self.open_block.take() {
            self.queued
                .push_back(StreamEvent::ContentBlockStop(ContentBlockStopEvent {
                    index,
                    extra: Default::default(),
                }));
        }
        // The SDKs require `usage` on `message_delta`.
        self.queued
            .push_back(StreamEvent::MessageDelta(MessageDeltaEvent {
                delta: MessageDeltaBody {
                    stop_reason: Some(STOP_REASON.to_owned()),
                    stop_sequence: None,
                    extra: Default::default(),
                },
                usage: Some(Usage {
                    output_tokens: Some(self.check.output_tokens()),
                    ..Default::default()
                }),
                extra: Default::default(),
            }));
        self.queued
            .push_back(StreamEvent::MessageStop(MessageStopEvent {
                extra: Default::default(),
            }));
        if let Some(f) = self.on_cut.take() {
            f();
        }
    }
}

fn delta_len(d: &Delta) -> usize {
    match d {
        Delta::Text(t) => t.text.len(),
        Delta::Thinking(t) => t.thinking.len(),
        Delta::InputJson(j) => j.partial_json.len(),
        _ => 0,
    }
}

impl Stream for CutOff {
    type Item = Result<StreamEvent, AiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(ev) = this.queued.pop_front() {
            return Poll::Ready(Some(Ok(ev)));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let item = match inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                this.inner = None;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                this.inner = None;
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Some(Ok(ev))) => ev,
        };
        if let (StreamEvent::MessageStart(s), Some(table)) = (&item, &this.reprice) {
            if let Some(p) = table.get(&s.message.model) {
                this.check.set_price(p.clone());
            }
        }
        match &item {
            // The input alone is over: `message_start` goes out, then the ending.
            StreamEvent::MessageStart(s) if !this.check.start(&s.message.usage) => this.cut(),
            StreamEvent::ContentBlockStart(b) => this.open_block = Some(b.index),
            StreamEvent::ContentBlockStop(_) => this.open_block = None,
            // This delta would pass the allowance: it is not sent.
            StreamEvent::ContentBlockDelta(d) if !this.check.admit(delta_len(&d.delta)) => {
                this.cut();
                return Poll::Ready(this.queued.pop_front().map(Ok));
            }
            _ => {}
        }
        Poll::Ready(Some(Ok(item)))
    }
}
