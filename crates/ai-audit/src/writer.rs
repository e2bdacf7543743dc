//! [`AuditWriter`]: one writer thread per log, fed through a bounded queue, acknowledging
//! each record once the batch holding it is durable.

use crate::sink::Sink;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// When the writer makes records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch (group commit: under load one `fsync` covers many records).
    Always,
    /// Once per interval: the writer sleeps out the interval (handing a record over never
    /// wakes it), then writes and fsyncs everything queued. Responses do not wait for their
    /// record (it is acknowledged, internally, at that `fsync`): a crash can lose the
    /// records of the last interval or two.
    Every(Duration),
}

/// What happens when the sink cannot write (disk full, not writable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// New requests are refused with 503 until the sink writes again; responses waiting
    /// for their record fail. Records already queued are kept and retried. The default.
    #[default]
    Closed,
    /// Requests go on; records that cannot be written are kept in memory (up to the queue
    /// size, then the oldest are dropped) and counted in
    /// `gen_ai_gateway_audit_write_errors_total` and `..._records_dropped_total`.
    Open,
}

/// Settings of an [`AuditWriter`].
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Records queued or in flight at most; a request waits for room. Default 8192.
    pub queue: usize,
    /// Longest a request waits for room in the queue before it is refused with 503.
    /// Default 5 seconds.
    pub enqueue_timeout: Duration,
    /// Longest a response waits for its record to be acknowledged. Default 10 seconds.
    pub ack_timeout: Duration,
    /// When records are made durable. Default [`Fsync::Always`].
    pub fsync: Fsync,
    /// What a sink failure does. Default [`FailurePolicy::Closed`].
    pub failure: FailurePolicy,
    /// How often a failed sink is retried. Default 1 second.
    pub retry_interval: Duration,
    /// Most records in one batch. Default 512.
    pub max_batch: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 8192,
            enqueue_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(10),
            fsync: Fsync::Always,
            failure: FailurePolicy::Closed,
            retry_interval: Duration::from_secs(1),
            max_batch: 512,
        }
    }
}

/// Why a record could not be taken or confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// The sink is failing and the policy is fail-closed.
    SinkFailing,
    /// The queue stayed full for the whole enqueue timeout.
    QueueFull,
    /// The record was not durable within the acknowledgement timeout.
    AckTimeout,
    /// The record could not be written (fail-open: the request goes on).
    NotDurable,
    /// The writer has stopped.
    Closed,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::SinkFailing => {
                "the audit log cannot be written; requests are refused until it can (fail-closed)"
            }
            Unavailable::QueueFull => "the audit log is not keeping up; try again shortly",
            Unavailable::AckTimeout => {
                "the audit record of this request could not be written in time"
            }
            Unavailable::NotDurable => "the audit record of this request could not be written",
            Unavailable::Closed => "the audit log is closed",
        })
    }
}

impl std::error::Error for Unavailable {}

enum Msg {
    Record(Item),
    Close(oneshot::Sender<()>),
}

struct Item {
    bytes: Bytes,
    ack: Option<oneshot::Sender<Result<(), Unavailable>>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Item {
    fn ack(mut self, r: Result<(), Unavailable>) {
        if let Some(tx) = self.ack.take() {
            let _ = tx.send(r);
        }
    }
}

#[derive(Debug)]
struct Shared {
    healthy: AtomicBool,
    failure: FailurePolicy,
    written: AtomicU64,
    write_errors: AtomicU64,
    dropped: AtomicU64,
    /// The writer thread has stopped (closed, or a panic in the sink).
    dead: AtomicBool,
}

/// The handle to a log's writer thread. Clones share it; the thread seals the log on
/// [`close`](AuditWriter::close) or when the last handle is dropped.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    cfg: Arc<WriterConfig>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditWriter")
            .field("healthy", &self.is_healthy())
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Room for one record in the queue, taken before the request goes on so the record can
/// always be handed over when the response ends (which cannot wait).
#[derive(Debug)]
pub struct Slot {
    writer: AuditWriter,
    permit: OwnedSemaphorePermit,
}

/// The acknowledgement of one record: resolves once its batch is durable.
#[derive(Debug)]
pub struct Ack {
    rx: oneshot::Receiver<Result<(), Unavailable>>,
    timeout: Duration,
}

impl Ack {
    /// Waits for the acknowledgement (at most the configured timeout).
    pub async fn wait(self) -> Result<(), Unavailable> {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Unavailable::Closed),
            Err(_) => Err(Unavailable::AckTimeout),
        }
    }
}

impl Slot {
    /// Hands the record (one JSON object) to the writer.
    pub fn send(self, record: Bytes) -> Ack {
        let (tx, rx) = oneshot::channel();
        let timeout = self.writer.cfg.ack_timeout;
        let item = Item {
            bytes: record,
            ack: Some(tx),
            permit: Some(self.permit),
        };
        if let Err(mpsc::SendError(Msg::Record(item))) = self.writer.tx.send(Msg::Record(item)) {
            item.ack(Err(Unavailable::Closed));
        }
        Ack { rx, timeout }
    }
}

impl AuditWriter {
    /// Starts the writer thread over `sink`.
    pub fn spawn(sink: impl Sink, cfg: WriterConfig) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            failure: cfg.failure,
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        });
        let cfg = Arc::new(cfg);
        let thread = std::thread::Builder::new()
            .name("ai-audit-writer".into())
            .spawn({
                let shared = shared.clone();
                let cfg = cfg.clone();
                move || {
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run(sink, rx, &shared, &cfg)
                    }));
                    shared.dead.store(true, Ordering::Relaxed);
                    if ran.is_err() {
                        shared.healthy.store(false, Ordering::Relaxed);
                        metrics::gauge!("gen_ai_gateway_audit_sink_healthy").set(0.0);
                        tracing::error!(
                            "audit log: the writer thread panicked; no record can be written"
                        );
                    }
                }
            })?;
        Ok(AuditWriter {
            tx,
            permits: Arc::new(Semaphore::new(cfg.queue.max(1))),
            shared,
            cfg,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Whether the sink is writing (false after a failure until a retry succeeds).
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &WriterConfig {
        &self.cfg
    }

    /// Records written (durable) since start.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Failed writes or syncs since start.
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// Whether responses wait for their record to be durable ([`Fsync::Always`]).
    pub fn waits_for_durable(&self) -> bool {
        self.cfg.fsync == Fsync::Always
    }

    /// Records dropped (fail-open only) since start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Takes room for one record: refused at once when the sink is failing under
    /// fail-closed, after the enqueue timeout when the queue stays full.
    pub async fn reserve(&self) -> Result<Slot, Unavailable> {
        if self.shared.dead.load(Ordering::Relaxed) {
            return Err(Unavailable::Closed);
        }
        if self.shared.failure == FailurePolicy::Closed && !self.is_healthy() {
            return Err(Unavailable::SinkFailing);
        }
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics::counter!("gen_ai_gateway_audit_queue_full_waits_total").increment(1);
                match tokio::time::timeout(
                    self.cfg.enqueue_timeout,
                    self.permits.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(Unavailable::Closed),
                    Err(_) => return Err(Unavailable::QueueFull),
                }
            }
        };
        Ok(Slot {
            writer: self.clone(),
            permit,
        })
    }

    /// Room for one record if there is some now (never waits).
    pub fn try_reserve(&self) -> Option<Slot> {
        if self.shared.dead.load(Ordering::Relaxed)
            || (self.shared.failure == FailurePolicy::Closed && !self.is_healthy())
        {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Slot {
            writer: self.clone(),
            permit,
        })
    }

    /// Hands over a record without room reserved and without an acknowledgement (for
    /// records the gateway writes on its own, e.g. aggregates of refused traffic).
    pub fn send_unreserved(&self, record: Bytes) {
        let _ = self.tx.send(Msg::Record(Item {
            bytes: record,
            ack: None,
            permit: None,
        }));
    }

    /// Writes what is queued, seals the log and stops the thread. Records handed over
    /// later are refused.
    pub fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.blocking_recv();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }

    /// [`close`](Self::close) from async code, after waiting up to `grace` for the
    /// records of requests still in flight (their room in the queue comes back once their
    /// record is handed over and written).
    pub async fn close_async(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.permits.available_permits() < self.cfg.queue.max(1) && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.close()).await;
    }
}

fn run<S: Sink>(mut sink: S, rx: mpsc::Receiver<Msg>, shared: &Shared, cfg: &WriterConfig) {
    // Records not yet appended (new, or kept after a failure).
    let mut backlog: VecDeque<Item> = VecDeque::new();
    // Appended, waiting for `fsync`.
    let mut unsynced: Vec<Item> = Vec::new();
    let mut oldest_unsynced: Option<Instant> = None;
    let mut next_retry = Instant::now();
    let mut last_tick = Instant::now();
    let mut last_drain = Instant::now();
    let mut closing: Option<oneshot::Sender<()>> = None;
    let mut close_tries = 0u32;
    let mut batch: Vec<Bytes> = Vec::with_capacity(cfg.max_batch);
    loop {
        let healthy = shared.healthy.load(Ordering::Relaxed);
        let wait = if !healthy {
            next_retry.saturating_duration_since(Instant::now())
        } else if let (Fsync::Every(d), Some(t)) = (cfg.fsync, oldest_unsynced) {
            (t + d).saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(500)
        };
        if closing.is_none() {
            let first = if let (Fsync::Every(d), true) = (cfg.fsync, healthy) {
                // Batches by time: the writer sleeps out the interval instead of waiting
                // on the queue, so handing a record over never wakes it (no cross-thread
                // wake-up per request), then takes everything queued at once.
                let until = last_drain + d;
                let now = Instant::now();
                if until > now {
                    std::thread::sleep(until - now);
                }
                last_drain = Instant::now();
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else if backlog.is_empty() || !healthy {
                rx.recv_timeout(wait)
            } else {
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            };
            let take = |m: Msg, backlog: &mut VecDeque<Item>| match m {
                Msg::Record(item) => {
                    backlog.push_back(item);
                    None
                }
                Msg::Close(tx) => Some(tx),
            };
            match first {
                Ok(m) => {
                    closing = take(m, &mut backlog);
                    let most = match cfg.fsync {
                        Fsync::Always => cfg.max_batch.max(1) * 4,
                        // Everything that came in the interval, up to the queue size.
                        Fsync::Every(_) => cfg.queue.max(cfg.max_batch).max(1),
                    };
                    while closing.is_none() && backlog.len() < most {
                        match rx.try_recv() {
                            Ok(m) => closing = take(m, &mut backlog),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let (tx, _rx) = oneshot::channel();
                    closing = Some(tx);
                }
            }
        }
        let was_healthy = shared.healthy.load(Ordering::Relaxed);
        if was_healthy || Instant::now() >= next_retry {
            let mut ok = true;
            // Append the backlog in batches.
            while !backlog.is_empty() {
                let n = backlog.len().min(cfg.max_batch.max(1));
                batch.clear();
                batch.extend(backlog.iter().take(n).map(|i| i.bytes.clone()));
                match sink.append(&batch) {
                    Ok(()) => {
                        unsynced.extend(backlog.drain(..n));
                        oldest_unsynced.get_or_insert_with(Instant::now);
                    }
                    Err(e) => {
                        fail(shared, &e, "append");
                        ok = false;
                        if shared.failure == FailurePolicy::Open {
                            shed(&mut backlog, shared, cfg.queue);
                        }
                        break;
                    }
                }
            }
            // One fsync per turn: per batch with `Always`; with an interval the loop turns
            // once per interval.
            if ok && !unsynced.is_empty() {
                match sink.sync() {
                    Ok(()) => {
                        shared
                            .written
                            .fetch_add(unsynced.len() as u64, Ordering::Relaxed);
                        metrics::counter!("gen_ai_gateway_audit_records_written_total")
                            .increment(unsynced.len() as u64);
                        for item in unsynced.drain(..) {
                            item.ack(Ok(()));
                        }
                        oldest_unsynced = None;
                    }
                    Err(e) => {
                        fail(shared, &e, "fsync");
                        ok = false;
                    }
                }
            }
            // Housekeeping (timed checkpoints, rotation) twice a second, and on every
            // retry of a failing sink.
            if ok && (!was_healthy || last_tick.elapsed() >= Duration::from_millis(500)) {
                last_tick = Instant::now();
                if let Err(e) = sink.tick() {
                    fail(shared, &e, "housekeeping");
                    ok = false;
                }
            }
            if !ok {
                next_retry = Instant::now() + cfg.retry_interval;
            } else if !was_healthy && backlog.is_empty() && unsynced.is_empty() {
                shared.healthy.store(true, Ordering::Relaxed);
                tracing::warn!("audit log: writing again");
                metrics::gauge!("gen_ai_gateway_audit_sink_healthy").set(1.0);
            }
        }
        if shared.failure == FailurePolicy::Open && !shared.healthy.load(Ordering::Relaxed) {
            // Fail-open: nobody waits on a record that cannot be written now, and its
            // room in the queue is given back so new requests are not held up. Records
            // appended but not synced keep only a count (their bytes are in the sink).
            for item in backlog.iter_mut() {
                if let Some(tx) = item.ack.take() {
                    let _ = tx.send(Err(Unavailable::NotDurable));
                }
                item.permit.take();
            }
            for item in unsynced.iter_mut() {
                if let Some(tx) = item.ack.take() {
                    let _ = tx.send(Err(Unavailable::NotDurable));
                }
                item.permit.take();
                item.bytes = Bytes::new();
            }
        }
        if let Some(done) = closing.take() {
            if backlog.is_empty() && unsynced.is_empty() {
                if let Err(e) = sink.close() {
                    tracing::error!(error = %e, "audit log: could not seal on close");
                }
                let _ = done.send(());
                return;
            }
            if !shared.healthy.load(Ordering::Relaxed) {
                // Closing with a failing sink: a few more tries, then give up loudly.
                close_tries += 1;
                if close_tries > 5 {
                    let left = backlog.len() + unsynced.len();
                    tracing::error!(
                        records = left,
                        "audit log: closing with records that could not be written"
                    );
                    for item in backlog.drain(..).chain(unsynced.drain(..)) {
                        item.ack(Err(Unavailable::Closed));
                    }
                    let _ = done.send(());
                    return;
                }
                std::thread::sleep(next_retry.saturating_duration_since(Instant::now()));
            }
            closing = Some(done);
        }
    }
}

fn fail(shared: &Shared, e: &std::io::Error, what: &str) {
    shared.write_errors.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("gen_ai_gateway_audit_write_errors_total").increment(1);
    if shared.healthy.swap(false, Ordering::Relaxed) {
        metrics::gauge!("gen_ai_gateway_audit_sink_healthy").set(0.0);
        tracing::error!(error = %e, step = what, policy = ?shared.failure, "audit log: write failed");
    }
}

fn shed(backlog: &mut VecDeque<Item>, shared: &Shared, cap: usize) {
    while backlog.len() > cap.max(1) {
        if let Some(item) = backlog.pop_front() {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("gen_ai_gateway_audit_records_dropped_total").increment(1);
            item.ack(Err(Unavailable::NotDurable));
        }
    }
}
