//! [`RateLimitLayer`] on typed model calls, and [`RequestRateLimitLayer`] on any HTTP
//! service.

use crate::policy::{Axis, KeyContext, Limit, Policy};
use crate::queue::{Queues, Waiter};
use crate::rate::{Rate, Standing};
use crate::store::{Adjust, Admission, Charge, Gauge, MemoryStore, Store, StoreError};
pub use ai_core::Clock;
use ai_core::{
    AiBody, AiError, CodecBody, Completion, CompletionFuture, ErrorKind, MessagesRequest,
    Principal, RequestId, Verdicts,
};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::Either;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower::{Layer, Service};

/// What to do when the store cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnStoreError {
    /// Refuse the request: 503 `api_error` saying the limiter is unavailable (default).
    #[default]
    Closed,
    /// Enforce the limits in this process alone until the store is back.
    Open,
}

struct CompiledTier {
    limits: Vec<Arc<Limit>>,
    priority: u8,
    queue_wait: Duration,
}

#[derive(Clone)]
struct Core {
    common: Arc<[Arc<Limit>]>,
    tiers: Arc<HashMap<String, CompiledTier>>,
    default_tier: Option<Arc<str>>,
    lease: Duration,
    store: Arc<dyn Store>,
    local: Arc<MemoryStore>,
    on_error: OnStoreError,
    clock: Clock,
    queues: Arc<Queues>,
    anonymous: Arc<Principal>,
}

/// A tower layer that enforces rate limits on model calls (`Request<MessagesRequest>` to
/// `Response<AiBody>`): requests, input tokens and output tokens per period and requests
/// in flight, under every limit that applies at once (common limits and the caller's
/// tier), each kept per what the limit names (subject, tenant, team, agent, key, model).
///
/// Before the call it reserves, in one atomic check, one request, the request's estimated
/// input tokens ([`ai_core::tokens::estimate_request`]) and its `max_tokens` of output;
/// when the response is over (message, stream end, stream error, client cancel) it
/// settles with the real usage and gives back the rest. Over a limit the caller gets a
/// 429 `rate_limit_error` with `retry-after`, or waits in its tier's overflow queue. Every
/// response carries the caller's own standing in the `anthropic-ratelimit-*` headers,
/// which replace the upstream's organisation-wide ones.
#[derive(Clone)]
pub struct RateLimitLayer {
    core: Arc<Core>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limits", &self.core.common.len())
            .field("tiers", &self.core.tiers.len())
            .field("on_error", &self.core.on_error)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Limits kept in this process ([`MemoryStore`]).
    pub fn new(policy: Policy) -> Self {
        RateLimitLayer::with_store(policy, MemoryStore::new())
    }

    /// Limits kept in `store` (e.g. a `RedisStore` shared by every replica).
    pub fn with_store(policy: Policy, store: impl Store) -> Self {
        RateLimitLayer::with_shared_store(policy, Arc::new(store))
    }

    /// Limits kept in a store shared with other layers.
    pub fn with_shared_store(policy: Policy, store: Arc<dyn Store>) -> Self {
        let compile = |ls: Vec<Limit>| ls.into_iter().map(Arc::new).collect::<Vec<_>>();
        let tiers = policy
            .tiers
            .into_iter()
            .map(|(name, t)| {
                (
                    name,
                    CompiledTier {
                        limits: compile(t.limits),
                        priority: t.priority,
                        queue_wait: t.queue_wait,
                    },
                )
            })
            .collect();
        RateLimitLayer {
            core: Arc::new(Core {
                common: compile(policy.limits).into(),
                tiers: Arc::new(tiers),
                default_tier: policy.default_tier.map(Into::into),
                lease: policy.in_flight_lease.unwrap_or(Duration::from_secs(600)),
                store,
                local: Arc::new(MemoryStore::new()),
                on_error: OnStoreError::Closed,
                clock: Clock::system(),
                queues: Arc::default(),
                anonymous: Arc::new(Principal::new("anonymous")),
            }),
        }
    }

    /// What to do when the store fails (default [`OnStoreError::Closed`]).
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        Arc::make_mut(&mut self.core).on_error = policy;
        self
    }

    /// The same limits and meters for any HTTP service (requests and in-flight axes only).
    pub fn plain(&self) -> RequestRateLimitLayer {
        RequestRateLimitLayer {
            core: self.core.clone(),
        }
    }

    /// The limiter's clock.
    pub fn clock(&self) -> Clock {
        self.core.clock
    }

    /// The standing of every meter that applies to a caller (for `model`, when given),
    /// without spending anything: what an admin page or a test reads.
    pub async fn standing(
        &self,
        principal: &Principal,
        credential: Option<&ai_core::CredentialId>,
        model: Option<&str>,
    ) -> Result<Vec<(Arc<Limit>, Axis, Standing)>, StoreError> {
        let mut ext = http::Extensions::new();
        ext.insert(principal.clone());
        if let Some(c) = credential {
            ext.insert(c.clone());
        }
        let mut plan = self.core.plan(
            &ext,
            model,
            Some(Costs {
                input: 0,
                output: 0,
            }),
        );
        for c in &mut plan.charges {
            c.cost = 0;
        }
        let now = self.core.clock.now_us();
        let standings = match self.core.store.acquire(now, &plan.charges).await? {
            Admission::Admitted(s) => s,
            Admission::Denied { standings, .. } => standings,
        };
        Ok(plan
            .meta
            .into_iter()
            .zip(standings)
            .map(|((l, a), s)| (l, a, s))
            .collect())
    }

    /// Requests waiting in the overflow queue now.
    pub fn queued(&self) -> usize {
        self.core.queues.waiting()
    }
}

/// Lease ids, unique across the process (one counter for every layer) and, with a random
/// start, across the replicas sharing a store.
fn next_lease() -> u64 {
    static NEXT: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    NEXT.get_or_init(|| {
        use std::hash::BuildHasher;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // `RandomState` is seeded from the operating system's random source.
        let seed =
            std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()));
        AtomicU64::new(seed)
    })
    .fetch_add(1, Ordering::Relaxed)
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            core: self.core.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    core: Arc<Core>,
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// One request's charges and what each stands for.
struct Plan {
    charges: Vec<Charge>,
    meta: Vec<(Arc<Limit>, Axis)>,
    priority: u8,
    queue_wait: Duration,
    lease: u64,
}

/// Estimated costs of a request.
#[derive(Clone, Copy, Debug)]
struct Costs {
    input: u64,
    output: u64,
}

impl Core {
    fn tier(&self, p: &Principal) -> Option<&CompiledTier> {
        p.tier
            .as_deref()
            .and_then(|t| self.tiers.get(t))
            .or_else(|| self.default_tier.as_deref().and_then(|t| self.tiers.get(t)))
    }

    fn plan(&self, ext: &http::Extensions, model: Option<&str>, costs: Option<Costs>) -> Plan {
        let cx = KeyContext::from_extensions(ext, &self.anonymous, model);
        let tier = self.tier(cx.principal);
        let mut plan = Plan {
            charges: Vec::with_capacity(4),
            meta: Vec::with_capacity(4),
            priority: tier.map_or(0, |t| t.priority),
            queue_wait: tier.map_or(Duration::ZERO, |t| t.queue_wait),
            lease: next_lease(),
        };
        let tier_limits = tier.map(|t| &t.limits[..]).unwrap_or(&[]);
        for limit in self.common.iter().chain(tier_limits) {
            let mut template: Option<(String, usize)> = None;
            for (axis, gauge) in limit.gauges(self.lease) {
                let cost = match (axis, costs) {
                    (Axis::Requests | Axis::InFlight, _) => 1,
                    (Axis::InputTokens, Some(c)) => c.input,
                    (Axis::OutputTokens, Some(c)) => c.output,
                    // Token axes do not apply to plain HTTP requests.
                    (Axis::InputTokens | Axis::OutputTokens, None) => continue,
                };
                if template.is_none() {
                    // A part the request lacks: the limit does not apply to it.
                    let Some(t) = limit.key_template(&cx) else {
                        break;
                    };
                    template = Some(t);
                }
                let Some((base, at)) = &template else { break };
                let mut key = base.clone();
                key.replace_range(*at..*at + 1, axis.code());
                plan.charges.push(Charge { key, gauge, cost });
                plan.meta.push((limit.clone(), axis));
            }
        }
        plan
    }

    /// One check against the store, or the local fallback when it fails open.
    async fn check(&self, plan: &Arc<Plan>) -> Result<(Admission, bool), AiError> {
        let now = self.clock.now_us();
        if let Some(a) = self.store.try_acquire_local(now, plan.lease, &plan.charges) {
            return Ok((a, false));
        }
        // A network store's check runs in a task of its own: a caller that goes away while
        // the script is on the wire (a client disconnect) cannot leak what it reserved.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = self.store.clone();
        let owned = plan.clone();
        let clock = self.clock;
        let task = async move {
            let result = store.acquire_leased(now, owned.lease, &owned.charges).await;
            let give_back = match &result {
                Ok(Admission::Admitted(_)) => true,
                Ok(Admission::Denied { .. }) => false,
                // The script may have run before the reply was lost: free the in-flight
                // slots (idempotent); a rate reservation, if any, is paid back by time.
                Err(_) => {
                    let leases: Vec<Adjust<'_>> = owned
                        .refund_all()
                        .into_iter()
                        .filter(|a| matches!(a.gauge, Gauge::InFlight { .. }))
                        .collect();
                    if !leases.is_empty() {
                        let _ = store.settle(clock.now_us(), owned.lease, &leases).await;
                    }
                    false
                }
            };
            if tx.send(result).is_err() && give_back {
                let adjust = owned.refund_all();
                if let Err(e) = store.settle(clock.now_us(), owned.lease, &adjust).await {
                    tracing::warn!(target: "ai_ratelimit", error = %e, "could not give back the reservation of a request that went away");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(task);
            }
            Err(_) => task.await,
        }
        let result = rx
            .await
            .unwrap_or_else(|_| Err(StoreError("the store task ended".to_owned())));
        match result {
            Ok(a) => Ok((a, false)),
            Err(e) => {
                metrics::counter!("gen_ai_gateway_ratelimit_store_errors_total",
                    "policy" => if self.on_error == OnStoreError::Open { "open" } else { "closed" })
                .increment(1);
                match self.on_error {
                    OnStoreError::Closed => {
                        tracing::error!(target: "ai_ratelimit", error = %e, "rate limit store unavailable: refusing (fail closed)");
                        Err(unavailable(&e))
                    }
                    OnStoreError::Open => {
                        tracing::warn!(target: "ai_ratelimit", error = %e, "rate limit store unavailable: limiting in this process only (fail open)");
                        Ok((self.local.acquire_now(now, &plan.charges), true))
                    }
                }
            }
        }
    }

    /// Checks and reserves, waiting in the overflow queue when the tier allows.
    ///
    /// A request whose meters have a line of waiters of at least its priority does not
    /// go ahead of them: it joins the line when its tier queues, or is refused at once.
    async fn admit(&self, plan: &Arc<Plan>) -> Result<Admitted, AiError> {
        let queueing = !plan.queue_wait.is_zero();
        let blocked = self
            .queues
            .blocked_by(plan.charges.iter().map(|c| c.key.as_str()), plan.priority);
        if !queueing {
            if blocked.is_some() {
                return Err(self.refuse_behind(plan));
            }
            let (admission, local) = self.check(plan).await?;
            return match admission {
                Admission::Admitted(standings) => Ok(Admitted { standings, local }),
                Admission::Denied {
                    index,
                    retry_after,
                    standings,
                } => Err(self.refuse(plan, index, retry_after, &standings)),
            };
        }
        let deadline = tokio::time::Instant::now() + plan.queue_wait;
        let mut waiter: Option<Waiter> = blocked.map(|k| self.queues.join(k, plan.priority));
        loop {
            if let Some(w) = &waiter {
                if !w.is_head() {
                    tokio::select! {
                        () = w.turn() => continue,
                        () = tokio::time::sleep_until(deadline) => {
                            return Err(self.refuse_queued(plan, None));
                        }
                    }
                }
            }
            let (admission, local) = self.check(plan).await?;
            let (index, retry_after, standings) = match admission {
                Admission::Admitted(standings) => return Ok(Admitted { standings, local }),
                Admission::Denied {
                    index,
                    retry_after,
                    standings,
                } => (index, retry_after, standings),
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // A rate knows exactly when it fits; an in-flight slot frees when some other
            // request ends, so it is polled.
            let wait = match (plan.meta[index].1, retry_after) {
                (_, None) => None,
                (Axis::InFlight, Some(_)) => (!left.is_zero()).then(|| left.min(IN_FLIGHT_POLL)),
                (_, Some(w)) => (w <= left).then_some(w),
            };
            let Some(wait) = wait else {
                return Err(self.refuse_queued(plan, Some((index, retry_after, &standings))));
            };
            if waiter.is_none() {
                metrics::counter!("gen_ai_gateway_ratelimit_queued_total").increment(1);
                waiter = Some(self.queues.join(&plan.charges[index].key, plan.priority));
            }
            if waiter.as_ref().is_some_and(Waiter::is_head) {
                tokio::time::sleep(wait.max(Duration::from_micros(1))).await;
            }
        }
    }

    fn refuse_behind(&self, plan: &Plan) -> AiError {
        metrics::counter!("gen_ai_gateway_ratelimit_rejected_total", "axis" => "queue")
            .increment(1);
        let _ = plan;
        let retry = Some(Duration::from_secs(1));
        let e = AiError::new(
            ErrorKind::RateLimit,
            "rate limit exceeded: requests of the same or a higher tier are waiting for this limit's capacity; retry later or lower your request rate",
        )
        .with_retry_after(retry);
        with_retry_ms(e, retry)
    }

    fn refuse(
        &self,
        plan: &Plan,
        index: usize,
        retry: Option<Duration>,
        standings: &[Standing],
    ) -> AiError {
        let (limit, axis) = &plan.meta[index];
        let rate = rate_of(&plan.charges[index].gauge);
        metrics::counter!("gen_ai_gateway_ratelimit_rejected_total", "axis" => axis.label())
            .increment(1);
        let what = axis.describe(rate.as_ref());
        let figure = match (&plan.charges[index].gauge, rate) {
            (_, Some(r)) => r.amount,
            (Gauge::InFlight { max, .. }, None) => *max,
            _ => 0,
        };
        let message = match retry {
            Some(_) => format!(
                "rate limit exceeded: {what} {} (limit {:?}: {figure}); retry after the time in retry-after, or lower your request rate",
                limit.scope(),
                &*limit.name
            ),
            None => format!(
                "this request needs {} {} but limit {:?} ({} {}) allows at most {} at once: reduce the input or max_tokens",
                plan.charges[index].cost,
                what.split(" per ").next().unwrap_or(""),
                &*limit.name,
                what,
                limit.scope(),
                rate.map_or(figure, |r| r.burst),
            ),
        };
        let mut e = AiError::new(ErrorKind::RateLimit, message).with_retry_after(retry);
        self.write_headers(e.headers_mut(), plan, standings);
        with_retry_ms(e, retry)
    }

    fn refuse_queued(
        &self,
        plan: &Plan,
        denied: Option<(usize, Option<Duration>, &[Standing])>,
    ) -> AiError {
        metrics::counter!("gen_ai_gateway_ratelimit_queue_timeouts_total").increment(1);
        let waited = humantime::format_duration(plan.queue_wait);
        let (detail, retry, mut e_headers) = match denied {
            Some((i, retry, standings)) => {
                let (limit, axis) = &plan.meta[i];
                let rate = rate_of(&plan.charges[i].gauge);
                let mut h = HeaderMap::new();
                self.write_headers(&mut h, plan, standings);
                (
                    format!(
                        ": {} {} (limit {:?})",
                        axis.describe(rate.as_ref()),
                        limit.scope(),
                        &*limit.name
                    ),
                    retry,
                    h,
                )
            }
            None => (String::new(), None, HeaderMap::new()),
        };
        let message = format!(
            "rate limit exceeded{detail}; no capacity within the {waited} this tier may wait in the queue: send a smaller context (input or max_tokens) or lower the request rate"
        );
        let retry = retry.or(Some(Duration::from_secs(1)));
        let mut e = AiError::new(ErrorKind::RateLimit, message).with_retry_after(retry);
        std::mem::swap(e.headers_mut(), &mut e_headers);
        with_retry_ms(e, retry)
    }

    /// Replaces every `anthropic-ratelimit-*` header with the caller's own standing: per
    /// axis, the limit that applies with the least remaining.
    fn write_headers(&self, h: &mut HeaderMap, plan: &Plan, standings: &[Standing]) {
        strip_upstream(h);
        h.reserve(9);
        let mut wall = None;
        for (axis, [limit, remaining, reset]) in RATE_HEADERS {
            let tightest = plan
                .meta
                .iter()
                .zip(standings)
                .filter(|((_, a), s)| *a == axis && s.limit > 0)
                .map(|(_, s)| s)
                .min_by_key(|s| s.remaining);
            let Some(s) = tightest else { continue };
            let base = *wall.get_or_insert_with(|| self.clock.wall(Duration::ZERO));
            let reset_at = humantime::format_rfc3339_seconds(base + s.reset).to_string();
            if let Ok(v) = HeaderValue::try_from(reset_at) {
                h.insert(reset, v);
            }
            h.insert(limit, HeaderValue::from(s.limit));
            h.insert(remaining, HeaderValue::from(s.remaining));
        }
    }

    /// Gives back what the response did not use, once, when it is over.
    fn settle(&self, plan: &Arc<Plan>, costs: Option<Costs>, local: bool, c: &Completion) {
        let mut deltas: SmallVec<[(usize, i64); 8]> = SmallVec::new();
        for (i, (_, axis)) in plan.meta.iter().enumerate() {
            let delta = match (axis, costs) {
                (Axis::InFlight, _) => -1,
                (Axis::InputTokens, Some(k)) => {
                    signed(c.input_tokens()).saturating_sub(signed(k.input))
                }
                (Axis::OutputTokens, Some(k)) => {
                    signed(c.output_tokens()).saturating_sub(signed(k.output))
                }
                _ => continue,
            };
            if delta != 0 || *axis == Axis::InFlight {
                deltas.push((i, delta));
            }
        }
        if deltas.is_empty() {
            return;
        }
        let now = self.clock.now_us();
        let adjust: SmallVec<[Adjust<'_>; 8]> = deltas
            .iter()
            .map(|&(i, delta)| plan.adjust(i, delta))
            .collect();
        if local {
            self.local.settle_now(now, &adjust);
            return;
        }
        if self.store.try_settle_local(now, plan.lease, &adjust) {
            return;
        }
        let store = self.store.clone();
        let plan = plan.clone();
        let fut = async move {
            let adjust: SmallVec<[Adjust<'_>; 8]> = deltas
                .iter()
                .map(|&(i, delta)| plan.adjust(i, delta))
                .collect();
            if let Err(e) = store.settle(now, plan.lease, &adjust).await {
                metrics::counter!("gen_ai_gateway_ratelimit_store_errors_total", "policy" => "settle").increment(1);
                tracing::warn!(target: "ai_ratelimit", error = %e, "could not settle a rate limit reservation; it will expire on its own");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(fut);
            }
            Err(_) => {
                tracing::warn!(target: "ai_ratelimit", "no runtime to settle a rate limit reservation on")
            }
        }
    }
}

impl Plan {
    /// Gives back every charge (a reservation whose request went away).
    fn refund_all(&self) -> Vec<Adjust<'_>> {
        self.charges.iter().map(Charge::refund).collect()
    }

    fn adjust(&self, i: usize, delta: i64) -> Adjust<'_> {
        Adjust {
            key: &self.charges[i].key,
            gauge: self.charges[i].gauge,
            delta,
        }
    }
}

const RATE_HEADERS: [(Axis, [HeaderName; 3]); 3] = [
    (
        Axis::Requests,
        [
            HeaderName::from_static("anthropic-ratelimit-requests-limit"),
            HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
            HeaderName::from_static("anthropic-ratelimit-requests-reset"),
        ],
    ),
    (
        Axis::InputTokens,
        [
            HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
            HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
            HeaderName::from_static("anthropic-ratelimit-input-tokens-reset"),
        ],
    ),
    (
        Axis::OutputTokens,
        [
            HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
            HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
            HeaderName::from_static("anthropic-ratelimit-output-tokens-reset"),
        ],
    ),
];

/// How often a queued request over an in-flight limit looks for a free slot.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(50);

/// `retry-after-ms`: the exact wait, which the official SDKs prefer to `retry-after`'s
/// whole seconds.
fn with_retry_ms(mut e: AiError, retry: Option<Duration>) -> AiError {
    if let Some(r) = retry {
        let ms = r.as_millis().max(1) as u64;
        e.headers_mut()
            .insert("retry-after-ms", HeaderValue::from(ms));
    }
    e
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn rate_of(g: &Gauge) -> Option<Rate> {
    match g {
        Gauge::Rate(r) => Some(*r),
        Gauge::InFlight { .. } => None,
    }
}

fn unavailable(e: &StoreError) -> AiError {
    AiError::new(
        ErrorKind::Api,
        format!(
            "the rate limiter is unavailable, so the request was not sent ({e}); retry shortly"
        ),
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
    .with_retry_after(Some(Duration::from_secs(1)))
}

/// Removes the upstream's `anthropic-ratelimit-*` and `anthropic-priority-*` headers
/// (organisation-wide figures).
fn strip_upstream(h: &mut HeaderMap) {
    let upstream = |n: &HeaderName| {
        let n = n.as_str();
        n.starts_with("anthropic-ratelimit-") || n.starts_with("anthropic-priority-")
    };
    if !h.keys().any(upstream) {
        return;
    }
    let names: Vec<HeaderName> = h.keys().filter(|n| upstream(n)).cloned().collect();
    for n in names {
        h.remove(n);
    }
}

struct Admitted {
    standings: Vec<Standing>,
    local: bool,
}

impl<S> Service<Request<MessagesRequest>> for RateLimit<S>
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let core = self.core.clone();
        let body = req.body();
        let costs = Costs {
            input: ai_core::tokens::estimate_request(body),
            output: body.max_tokens.map_or(0, u64::from),
        };
        let plan = Arc::new(core.plan(req.extensions(), Some(&body.model), Some(costs)));
        let verdicts = req.extensions().get::<Verdicts>().cloned();
        Box::pin(async move {
            if plan.charges.is_empty() {
                return match inner.call(req).await {
                    Ok(mut r) => {
                        strip_upstream(r.headers_mut());
                        Ok(r)
                    }
                    Err(mut e) => {
                        strip_upstream(e.headers_mut());
                        Err(e)
                    }
                };
            }
            let admitted = match core.admit(&plan).await {
                Ok(a) => a,
                Err(e) => {
                    if let Some(v) = &verdicts {
                        v.push("ai-ratelimit", format!("refused:{}", e.status().as_u16()));
                    }
                    return Err(e);
                }
            };
            let settle = {
                let core = core.clone();
                let plan = plan.clone();
                let local = admitted.local;
                move |c: Completion| core.settle(&plan, Some(costs), local, &c)
            };
            // A panicking inner service must not leak the reservation: settle, then unwind.
            let call =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.call(req))) {
                    Ok(call) => call,
                    Err(panic) => {
                        settle(Completion::of_error(&AiError::api("panicked")));
                        std::panic::resume_unwind(panic);
                    }
                };
            match CompletionFuture::new(call, settle).await {
                Ok(mut r) => {
                    core.write_headers(r.headers_mut(), &plan, &admitted.standings);
                    Ok(r)
                }
                Err(mut e) => {
                    core.write_headers(e.headers_mut(), &plan, &admitted.standings);
                    Err(e)
                }
            }
        })
    }
}

/// [`RateLimitLayer::plain`]: request-count and in-flight limits for any
/// `http::Request<B>` service (a non-AI axum route, a tonic service). Keys come from the
/// `Principal` an authentication layer put in the extensions (`anonymous` without one).
/// A refusal is a 429 with an Anthropic-shaped JSON body and `retry-after`; an in-flight
/// slot is released when the response head is returned.
#[derive(Clone)]
pub struct RequestRateLimitLayer {
    core: Arc<Core>,
}

impl fmt::Debug for RequestRateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRateLimitLayer")
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RequestRateLimitLayer {
    type Service = RequestRateLimit<S>;

    fn layer(&self, inner: S) -> RequestRateLimit<S> {
        RequestRateLimit {
            inner,
            core: self.core.clone(),
        }
    }
}

/// The service made by [`RequestRateLimitLayer`].
#[derive(Clone)]
pub struct RequestRateLimit<S> {
    inner: S,
    core: Arc<Core>,
}

impl<S: fmt::Debug> fmt::Debug for RequestRateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Service<Request<B>> for RequestRateLimit<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<Either<RB, CodecBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let core = self.core.clone();
        let plan = Arc::new(core.plan(req.extensions(), None, None));
        let request_id = req.extensions().get::<RequestId>().cloned();
        Box::pin(async move {
            let admitted = match core.admit(&plan).await {
                Ok(a) => a,
                Err(e) => {
                    let id = request_id.unwrap_or_else(RequestId::generate);
                    return Ok(ai_core::codec::error_response(e, &id).map(Either::Right));
                }
            };
            // Released when the response head is out (or the call fails or is dropped).
            let release = ReleaseOnDrop {
                core: core.clone(),
                plan: plan.clone(),
                local: admitted.local,
            };
            let out = inner.call(req).await;
            drop(release);
            let mut resp = out?;
            core.write_headers(resp.headers_mut(), &plan, &admitted.standings);
            Ok(resp.map(Either::Left))
        })
    }
}

struct ReleaseOnDrop {
    core: Arc<Core>,
    plan: Arc<Plan>,
    local: bool,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        let done = Completion::of_error(&AiError::api("released"));
        self.core.settle(&self.plan, None, self.local, &done);
    }
}
