//! [`BudgetLayer`]: reserve before the call, settle when it is over.

use crate::alert::{Alert, AlertSink, LogSink};
use crate::cutoff::{CutOff, RunningCost};
use crate::money::Usd;
use crate::policy::{Budget, BudgetPolicy, Scope, store_key};
use crate::price::{ModelPrice, PriceTable};
use crate::store::{Hold, MemoryStore, Reservation, Settle, Standing, Store, StoreError};
use crate::window::Window;
use ai_core::{
    AiBody, AiError, CallReport, Clock, Completion, CredentialId, ErrorKind, MessagesRequest,
    Principal, ServableModels, Served, Verdicts,
};
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// The cost of the call, in dollars: exact for a whole message; for a stream, the upper
/// bound held for it (the exact cost goes to the audit record through [`CallReport`]).
pub const COST_HEADER: HeaderName = HeaderName::from_static("x-gateway-cost-usd");
/// What the tightest budget that applies has left after this call's hold, in dollars.
pub const REMAINING_HEADER: HeaderName = HeaderName::from_static("x-gateway-budget-remaining-usd");

/// Output tokens a stream admitted by a cut-off budget must at least be able to pay for.
const MIN_STREAM_OUTPUT: u64 = 16;

/// What to do when the store cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnStoreError {
    /// Refuse the request: 503 `api_error` saying budgets cannot be checked (default).
    #[default]
    Closed,
    /// Let it through without a hold (its cost is still priced and reported).
    Open,
}

#[derive(Clone)]
struct Core {
    policy: BudgetPolicy,
    prices: Arc<PriceTable>,
    store: Arc<dyn Store>,
    local: Option<MemoryStore>,
    alerts: Arc<dyn AlertSink>,
    clock: Clock,
    on_error: OnStoreError,
}

/// A tower layer that prices every model call (`Request<MessagesRequest>` to
/// `Response<AiBody>`) and holds it to spending caps.
///
/// Before the call it reserves an upper bound (the estimated input at the input price and
/// `max_tokens` at the output price of the most expensive model the request may be served
/// by) against every budget that applies; a reservation that does not fit is refused with
/// a 402 `budget_exceeded` naming the budget. When the response is over it settles the
/// real cost from the usage of the model that answered (a cancelled stream pays for what
/// was streamed) and gives back the rest. Budgets with the cut-off admit a stream with
/// what they have left and end it cleanly when its running cost reaches that.
#[derive(Clone)]
pub struct BudgetLayer {
    core: Arc<Core>,
}

impl fmt::Debug for BudgetLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("budgets", &self.core.policy.budgets.len())
            .field("on_error", &self.core.on_error)
            .finish_non_exhaustive()
    }
}

impl BudgetLayer {
    /// Budgets kept in this process ([`MemoryStore::new`]).
    pub fn new(policy: BudgetPolicy, prices: PriceTable) -> Self {
        BudgetLayer::with_store(policy, prices, MemoryStore::new())
    }

    /// Budgets kept in `store` (a saved [`MemoryStore`], a `RedisStore`).
    pub fn with_store(policy: BudgetPolicy, prices: PriceTable, store: impl Store) -> Self {
        BudgetLayer::with_shared_store(policy, prices, Arc::new(store))
    }

    /// Budgets kept in a store shared with others.
    pub fn with_shared_store(
        policy: BudgetPolicy,
        prices: PriceTable,
        store: Arc<dyn Store>,
    ) -> Self {
        let local = store.memory().cloned();
        BudgetLayer {
            core: Arc::new(Core {
                policy,
                prices: Arc::new(prices),
                store,
                local,
                alerts: Arc::new(LogSink),
                clock: Clock::system(),
                on_error: OnStoreError::Closed,
            }),
        }
    }

    fn core_mut(&mut self) -> &mut Core {
        Arc::make_mut(&mut self.core)
    }

    /// Where alerts go (default [`LogSink`]).
    pub fn alerts(mut self, sink: impl AlertSink) -> Self {
        self.core_mut().alerts = Arc::new(sink);
        self
    }

    /// What to do when the store fails (default [`OnStoreError::Closed`]).
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.core_mut().on_error = policy;
        self
    }

    /// The clock windows are read from (tests set a date with [`Clock::at_us`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.core_mut().clock = clock;
        self
    }

    /// Saves the spend now, when the store is a [`MemoryStore`] opened on a file (what
    /// the gateway does at shutdown); nothing to do otherwise.
    pub fn save(&self) -> Result<(), StoreError> {
        match &self.core.local {
            Some(m) => m.save(self.core.clock.now_us()),
            None => Ok(()),
        }
    }

    /// The price table.
    pub fn prices(&self) -> &PriceTable {
        &self.core.prices
    }

    /// The policy.
    pub fn policy(&self) -> &BudgetPolicy {
        &self.core.policy
    }

    /// The current window of every budget of `scope` for `owner` (e.g. `Scope::Team`,
    /// `"eng"`): cap, spent, reserved and remaining, without changing anything. What the
    /// gateway's `GET /admin/budgets/{scope}:{owner}` answers.
    pub async fn standing(
        &self,
        scope: Scope,
        owner: &str,
    ) -> Result<Vec<BudgetStanding>, StoreError> {
        let now = self.core.clock.now_us();
        let mut keys = Vec::new();
        let mut meta = Vec::new();
        if scope == Scope::Global && owner != "all" {
            return Ok(Vec::new());
        }
        for b in self.core.policy.budgets.iter().filter(|b| b.scope == scope) {
            let w = self.core.policy.calendar.window(b.period, now);
            keys.push(store_key(scope, owner, &b.name, &w.id));
            meta.push((b, w));
        }
        let standings = self.core.store.read(&keys).await?;
        Ok(meta
            .into_iter()
            .zip(standings)
            .map(|((b, w), s)| BudgetStanding::new(b, owner, w, s))
            .collect())
    }
}

/// One budget's current window, as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetStanding {
    /// The budget's name.
    pub budget: Arc<str>,
    /// `subject`, `team`, ...
    pub scope: &'static str,
    /// Whose.
    pub owner: String,
    /// `daily`, `monthly`, `lifetime`.
    pub period: &'static str,
    /// The window's id.
    pub window: String,
    /// When it resets (RFC 3339, UTC), `None` for a lifetime.
    pub resets_at: Option<String>,
    /// Cap, spent, reserved and remaining, in dollars.
    pub cap_usd: String,
    /// Settled spend.
    pub spent_usd: String,
    /// Held by calls in flight.
    pub reserved_usd: String,
    /// Left for new calls.
    pub remaining_usd: String,
    /// Whether streams are cut off at the cap.
    pub cut_off: bool,
}

impl BudgetStanding {
    fn new(b: &Budget, owner: &str, w: Window, s: Standing) -> Self {
        BudgetStanding {
            budget: b.name.clone(),
            scope: b.scope.as_str(),
            owner: owner.to_owned(),
            period: b.period.as_str(),
            window: w.id.to_string(),
            resets_at: w.ends_us.and_then(|us| {
                jiff::Timestamp::from_microsecond(i64::try_from(us).ok()?)
                    .ok()
                    .map(|t| t.to_string())
            }),
            cap_usd: b.cap.to_string(),
            spent_usd: Usd(s.spent).to_string(),
            reserved_usd: Usd(s.reserved).to_string(),
            remaining_usd: Usd(s.available(b.cap.0)).to_string(),
            cut_off: b.cut_off,
        }
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;

    fn layer(&self, inner: S) -> BudgetService<S> {
        BudgetService {
            inner,
            core: self.core.clone(),
        }
    }
}

/// The service made by [`BudgetLayer`].
#[derive(Clone)]
pub struct BudgetService<S> {
    inner: S,
    core: Arc<Core>,
}

impl<S: fmt::Debug> fmt::Debug for BudgetService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// One request's budgets.
struct Plan {
    holds: Vec<Hold>,
    /// Per hold: its budget, owner and window.
    meta: Vec<(usize, Arc<str>, Window)>,
    want: u64,
    min: u64,
    /// The price the upper bound was taken at (the most expensive candidate).
    price: Arc<ModelPrice>,
}

impl Core {
    fn plan(&self, req: &Request<MessagesRequest>) -> Result<Plan, AiError> {
        let body = req.body();
        let ext = req.extensions();
        let input = ai_core::tokens::estimate_request(body);
        let output = body.max_tokens.map_or(0, u64::from);
        let priced = |m: &str| {
            self.prices
                .price(m)
                .map_err(|e| AiError::new(ErrorKind::InvalidRequest, e.0))
        };
        let mut price = priced(&body.model)?;
        let mut want = price.upper_bound(input, output);
        if let Some(ServableModels(models)) = ext.get::<ServableModels>() {
            for m in models.iter() {
                let p = priced(m)?;
                let w = p.upper_bound(input, output);
                if w > want {
                    (price, want) = (p, w);
                }
            }
        }
        let streaming = body.stream == Some(true);
        let principal = ext.get::<Principal>();
        let credential = ext.get::<CredentialId>();
        let project = req
            .headers()
            .get(&self.policy.project_header)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let now = self.clock.now_us();
        let mut plan = Plan {
            holds: Vec::with_capacity(self.policy.budgets.len()),
            meta: Vec::with_capacity(self.policy.budgets.len()),
            want: want.0,
            min: want.0,
            price: price.clone(),
        };
        for (i, b) in self.policy.budgets.iter().enumerate() {
            let Some(owner) = b.scope.owner(principal, credential, project) else {
                continue;
            };
            let w = self.policy.calendar.window(b.period, now);
            plan.holds.push(Hold {
                key: store_key(b.scope, owner, &b.name, &w.id),
                cap: b.cap.0,
                flexible: b.cut_off && streaming,
                expires_us: w.ends_us,
            });
            plan.meta.push((i, owner.into(), w));
        }
        if !plan.holds.is_empty() && body.max_tokens.is_none() {
            return Err(AiError::new(
                ErrorKind::InvalidRequest,
                "max_tokens: Field required (a budget holds a call to the most its output may cost)",
            ));
        }
        if plan.holds.iter().any(|h| h.flexible) {
            plan.min = price
                .upper_bound(input, output.min(MIN_STREAM_OUTPUT))
                .0
                .min(want.0);
        }
        Ok(plan)
    }

    /// Reserves; a network store's reserve runs in a task of its own, so a caller that
    /// goes away while it is on the wire cannot leave money held.
    async fn reserve(&self, plan: &Arc<Plan>) -> Result<Reservation, StoreError> {
        if let Some(m) = &self.local {
            return Ok(m.reserve_now(&plan.holds, plan.want, plan.min));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store = self.store.clone();
        let owned = plan.clone();
        let task = async move {
            let r = store.reserve(&owned.holds, owned.want, owned.min).await;
            if let Err(Ok(Reservation::Granted { amount, .. })) = tx.send(r) {
                let back = release_all(&owned, amount);
                if let Err(e) = store.settle(&back).await {
                    tracing::warn!(target: "ai_budget", error = %e, "could not give back the hold of a request that went away");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(task);
            }
            Err(_) => task.await,
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError("the store task ended".to_owned())))
    }

    fn refuse(&self, plan: &Plan, index: usize, standings: &[Standing]) -> AiError {
        let (bi, owner, w) = &plan.meta[index];
        let b = &self.policy.budgets[*bi];
        metrics::counter!("gen_ai_gateway_budget_refused_total", "budget" => b.name.to_string())
            .increment(1);
        let left = Usd(standings[index].available(b.cap.0));
        let need = Usd(plan.min.max(if plan.holds[index].flexible {
            0
        } else {
            plan.want
        }));
        let when = match w.ends_us {
            Some(_) => format!("{} window {}", b.period, w.id),
            None => "lifetime".to_owned(),
        };
        let mut e = AiError::new(
            ErrorKind::BudgetExceeded,
            format!(
                "budget {:?} ({} {owner}, {when}) has ${left} left of ${}, and this request may cost up to ${need}: lower max_tokens, wait for the window to reset, or ask for a larger budget",
                &*b.name,
                b.scope.as_str(),
                b.cap
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&b.name) {
            e.headers_mut().insert("x-gateway-budget", v);
        }
        e
    }

    /// Settles one finished call: gives back the hold, adds the cost, fires alerts.
    fn settle(&self, plan: &Plan, amount: u64, cost: Usd) {
        let items: Vec<Settle> = plan
            .holds
            .iter()
            .map(|h| Settle {
                key: h.key.clone(),
                release: amount,
                spend: cost.0,
                expires_us: h.expires_us,
            })
            .collect();
        if let Some(m) = &self.local {
            let out = m.settle_now(&items);
            self.alert(plan, &out);
            return;
        }
        let store = self.store.clone();
        let alerts = self.alerts.clone();
        let meta: Vec<_> = plan.meta.clone();
        let thresholds: Vec<Vec<u8>> = meta
            .iter()
            .map(|(bi, _, _)| self.thresholds_of(*bi).to_vec())
            .collect();
        let budgets: Vec<Budget> = meta
            .iter()
            .map(|(bi, _, _)| self.policy.budgets[*bi].clone())
            .collect();
        let fut = async move {
            match store.settle(&items).await {
                Ok(out) => {
                    for (k, (before, after)) in out.into_iter().enumerate() {
                        fire(
                            &*alerts,
                            &budgets[k],
                            &meta[k].1,
                            &meta[k].2,
                            &thresholds[k],
                            before,
                            after,
                        );
                    }
                }
                Err(e) => {
                    metrics::counter!("gen_ai_gateway_budget_store_errors_total", "op" => "settle")
                        .increment(1);
                    tracing::warn!(target: "ai_budget", error = %e, cost_usd = %cost, "could not settle a budget hold: it stays held until the window ends");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(fut);
            }
            Err(_) => {
                tracing::warn!(target: "ai_budget", "no runtime to settle a budget hold on")
            }
        }
    }

    fn thresholds_of(&self, bi: usize) -> &[u8] {
        self.policy.budgets[bi]
            .thresholds
            .as_deref()
            .unwrap_or(&self.policy.thresholds)
    }

    fn alert(&self, plan: &Plan, out: &[(u64, u64)]) {
        for ((bi, owner, w), &(before, after)) in plan.meta.iter().zip(out) {
            let b = &self.policy.budgets[*bi];
            fire(
                &*self.alerts,
                b,
                owner,
                w,
                self.thresholds_of(*bi),
                before,
                after,
            );
        }
    }
}

/// Sends an alert for every threshold that spend crossed from `before` to `after`.
fn fire(
    sink: &dyn AlertSink,
    b: &Budget,
    owner: &Arc<str>,
    w: &Window,
    thresholds: &[u8],
    before: u64,
    after: u64,
) {
    if b.cap.0 == 0 || after <= before {
        return;
    }
    for (k, &t) in thresholds.iter().enumerate() {
        if thresholds[..k].contains(&t) {
            continue;
        }
        let level = u128::from(b.cap.0) * u128::from(t) / 100;
        if u128::from(before) < level && u128::from(after) >= level {
            sink.alert(Alert {
                budget: b.name.clone(),
                scope: b.scope.as_str(),
                owner: owner.clone(),
                period: b.period.as_str(),
                window: w.id.to_string(),
                threshold_percent: t,
                cap_usd: b.cap.to_string(),
                spent_usd: Usd(after).to_string(),
            });
        }
    }
}

fn release_all(plan: &Plan, amount: u64) -> Vec<Settle> {
    plan.holds
        .iter()
        .map(|h| Settle {
            key: h.key.clone(),
            release: amount,
            spend: 0,
            expires_us: h.expires_us,
        })
        .collect()
}

/// Settles exactly once: with the call's cost, or with nothing when dropped first.
struct Pending {
    core: Arc<Core>,
    plan: Arc<Plan>,
    amount: u64,
    report: Option<CallReport>,
    done: bool,
}

impl Pending {
    fn finish(mut self, price: &ModelPrice, c: &Completion) -> Usd {
        self.done = true;
        let mut usage = c.usage.clone();
        usage.output_tokens = Some(c.output_tokens());
        let cost = price.cost(&usage);
        if let Some(r) = &self.report {
            r.add_cost(cost.into());
        }
        metrics::counter!("gen_ai_gateway_cost_nano_usd_total").increment(cost.0);
        if !self.plan.holds.is_empty() {
            self.core.settle(&self.plan, self.amount, cost);
        }
        cost
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done && !self.plan.holds.is_empty() {
            self.core.settle(&self.plan, self.amount, Usd::ZERO);
        }
    }
}

fn usd_header(v: Usd) -> HeaderValue {
    HeaderValue::try_from(v.to_string()).unwrap_or(HeaderValue::from_static("0.00"))
}

fn unavailable(e: &StoreError) -> AiError {
    AiError::new(
        ErrorKind::Api,
        format!(
            "budgets cannot be checked right now, so the request was not sent ({e}); retry shortly"
        ),
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
    .with_retry_after(Some(Duration::from_secs(1)))
}

impl<S> Service<Request<MessagesRequest>> for BudgetService<S>
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
        let verdicts = req.extensions().get::<Verdicts>().cloned();
        let report = req.extensions().get::<CallReport>().cloned();
        let plan = core.plan(&req).map(Arc::new);
        Box::pin(async move {
            let mut plan = plan?;
            let mut standings = Vec::new();
            let mut amount = plan.want;
            if !plan.holds.is_empty() {
                match core.reserve(&plan).await {
                    Ok(Reservation::Granted {
                        amount: a,
                        standings: s,
                    }) => {
                        amount = a;
                        standings = s;
                    }
                    Ok(Reservation::Denied { index, standings }) => {
                        if let Some(v) = &verdicts {
                            let b = &core.policy.budgets[plan.meta[index].0];
                            v.push("ai-budget", format!("refused:{}", b.name));
                        }
                        return Err(core.refuse(&plan, index, &standings));
                    }
                    Err(e) => {
                        metrics::counter!("gen_ai_gateway_budget_store_errors_total", "op" => "reserve").increment(1);
                        match core.on_error {
                            OnStoreError::Closed => {
                                tracing::error!(target: "ai_budget", error = %e, "budget store unavailable: refusing (fail closed)");
                                return Err(unavailable(&e));
                            }
                            OnStoreError::Open => {
                                tracing::warn!(target: "ai_budget", error = %e, "budget store unavailable: sending without a budget hold (fail open)");
                                plan = Arc::new(Plan {
                                    holds: Vec::new(),
                                    meta: Vec::new(),
                                    want: plan.want,
                                    min: plan.min,
                                    price: plan.price.clone(),
                                });
                            }
                        }
                    }
                }
            }
            let pending = Pending {
                core: core.clone(),
                plan: plan.clone(),
                amount,
                report,
                done: false,
            };
            // A panicking inner service must not leave money held: `pending` settles
            // with nothing as the panic unwinds.
            let out = inner.call(req).await;
            let resp = match out {
                Ok(r) => r,
                Err(e) => {
                    let _ = pending.finish(&plan.price, &Completion::of_error(&e));
                    return Err(e);
                }
            };
            let (mut parts, body) = resp.into_parts();
            // Priced as the model that answered: `Served`, else the model the answer
            // names, else the most expensive candidate.
            let served = parts
                .extensions
                .get::<Served>()
                .and_then(|s| core.prices.get(&s.model).cloned());
            // Only a stream held to less than its upper bound can run over: one held to
            // the whole bound is stopped by its own max_tokens first.
            let cut_off = amount < plan.want && plan.holds.iter().any(|h| h.flexible);
            let body = match body {
                AiBody::Message(m) => {
                    let p = served
                        .or_else(|| core.prices.get(&m.model).cloned())
                        .unwrap_or_else(|| plan.price.clone());
                    let cost = pending.finish(&p, &Completion::of_message(&m));
                    parts.headers.insert(COST_HEADER, usd_header(cost));
                    AiBody::Message(m)
                }
                AiBody::Events(stream) => {
                    let stream = if cut_off {
                        let v = verdicts.clone();
                        let on_cut = Box::new(move || {
                            metrics::counter!("gen_ai_gateway_budget_cutoffs_total").increment(1);
                            if let Some(v) = v {
                                v.push("ai-budget", "cut-off");
                            }
                        });
                        let check = RunningCost::new(
                            amount,
                            served.clone().unwrap_or_else(|| plan.price.clone()),
                        );
                        // Priced as the settle will price it: `Served`, else the model
                        // `message_start` names, else the upper bound's.
                        let reprice = served.is_none().then(|| core.prices.clone());
                        Box::pin(CutOff::new(stream, check, on_cut, reprice))
                            as ai_core::EventStream
                    } else {
                        stream
                    };
                    parts.headers.insert(COST_HEADER, usd_header(Usd(amount)));
                    let prices = core.prices.clone();
                    let fallback = plan.price.clone();
                    AiBody::Events(stream).on_complete(move |c| {
                        let p = served
                            .or_else(|| c.model.as_deref().and_then(|m| prices.get(m).cloned()))
                            .unwrap_or(fallback);
                        let _ = pending.finish(&p, &c);
                    })
                }
                other => {
                    drop(pending);
                    other
                }
            };
            if let Some(left) = plan
                .holds
                .iter()
                .zip(&standings)
                .map(|(h, s)| s.available(h.cap))
                .min()
            {
                parts
                    .headers
                    .insert(REMAINING_HEADER, usd_header(Usd(left)));
            }
            Ok(Response::from_parts(parts, body))
        })
    }
}
