//! Exact cost of every model call and hard spending caps, as a tower layer.
//!
//! - [`PriceTable`]: prices per million tokens as data (input, output, 5-minute and
//!   1-hour cache writes, cache reads, a long-context tier, the batch discount), shipped
//!   for the current Claude and common OpenAI models with their sources, overridable.
//!   Money is integer: [`Usd`] in nano-dollars, [`Rate`] in micro-dollars per million.
//! - [`BudgetLayer`]: budgets per subject, team, tenant, project header, gateway key or
//!   globally ([`Scope`]), in daily and monthly calendar windows of a time zone or for a
//!   lifetime ([`Period`], [`Calendar`]). Reserve an upper bound before the call (402
//!   `budget_exceeded` when it does not fit), settle the real cost after; a budget with
//!   the cut-off ends a stream cleanly (`stop_reason: "budget_exceeded"`) when its
//!   running cost reaches what is left.
//! - Alerts at thresholds (default 80% and 100%) once per window: [`AlertSink`],
//!   [`LogSink`], and `WebhookSink` (feature `webhook`).
//! - Stores: [`MemoryStore`] (saved to a file), `RedisStore` (feature `redis`).
//!
//! ```
//! use ai_budget::{Budget, BudgetLayer, BudgetPolicy, Period, PriceTable, Scope};
//! use ai_core::test_util::{MockProvider, Script};
//! use ai_core::{MessagesRequest, Principal};
//! use tower::{Layer, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let policy = BudgetPolicy::new(vec![
//!     Budget::new("per-user-daily", Scope::Subject, "0.01".parse().unwrap(), Period::Daily),
//! ]);
//! let layer = BudgetLayer::new(policy, PriceTable::defaults());
//! let mut svc = layer.layer(MockProvider::always(Script::text("hi")));
//!
//! let call = |max_tokens: u32| {
//!     let body: MessagesRequest = serde_json::from_value(serde_json::json!({
//!         "model": "claude-haiku-4-5", "max_tokens": max_tokens,
//!         "messages": [{"role": "user", "content": "hello"}]
//!     })).unwrap();
//!     let mut req = http::Request::new(body);
//!     req.extensions_mut().insert(Principal::new("alice"));
//!     req
//! };
//! // 100 output tokens of Haiku 4.5 ($5/M) fit in a cent ...
//! let ok = svc.ready().await.unwrap().call(call(100)).await.unwrap();
//! assert!(ok.headers().contains_key("x-gateway-cost-usd"));
//! // ... 10,000 do not: 402 budget_exceeded, naming the budget.
//! let err = svc.ready().await.unwrap().call(call(10_000)).await.unwrap_err();
//! assert_eq!(err.status(), 402);
//! assert!(err.message().contains("per-user-daily"));
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod alert;
mod cutoff;
mod layer;
mod money;
mod policy;
mod price;
#[cfg(feature = "redis")]
mod redis;
mod store;
mod window;

#[cfg(feature = "webhook")]
pub use alert::WebhookSink;
pub use alert::{Alert, AlertSink, Fanout, LogSink};
pub use cutoff::{RunningCost, STOP_REASON};
pub use layer::{
    BudgetLayer, BudgetService, BudgetStanding, COST_HEADER, OnStoreError, REMAINING_HEADER,
};
pub use money::{MoneyError, Rate, Usd};
pub use policy::{Budget, BudgetPolicy, Scope};
pub use price::{LongContext, ModelPrice, PriceError, PriceTable, Rates, UnknownModel};
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use store::{Hold, MemoryStore, Reservation, Settle, Standing, Store, StoreError};
pub use window::{Calendar, Period, Window};

/// Describes this crate's metrics to the installed `metrics` recorder (units and help
/// text for the Prometheus exporter).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "gen_ai_gateway_cost_nano_usd_total",
        "Priced cost of model calls, in nano-dollars (1e-9 USD)"
    );
    metrics::describe_counter!(
        "gen_ai_gateway_budget_refused_total",
        "Requests refused by a budget (402 budget_exceeded), per budget"
    );
    metrics::describe_counter!(
        "gen_ai_gateway_budget_cutoffs_total",
        "Streams ended by a budget's mid-stream cut-off"
    );
    metrics::describe_counter!(
        "gen_ai_gateway_budget_alerts_total",
        "Budget threshold alerts, per budget and threshold percent"
    );
    metrics::describe_counter!(
        "gen_ai_gateway_budget_alert_failures_total",
        "Budget alerts a webhook could not deliver after its retries"
    );
    metrics::describe_counter!(
        "gen_ai_gateway_budget_store_errors_total",
        "Budget store failures, per operation"
    );
}
