//! Token-aware rate limits for model calls, as a tower layer.
//!
//! Vendors limit requests per minute *and* input tokens per minute *and* output tokens per
//! minute. [`RateLimitLayer`] enforces the gateway's own limits on the same axes, plus
//! requests in flight, per user, team, tenant, key or model, before a request costs
//! anything, so one team cannot starve the others; with [`RedisStore`] (feature `redis`)
//! the limits hold across every replica.
//!
//! ```
//! use ai_core::{MessagesRequest, Principal, test_util::{MockProvider, Script}};
//! use ai_ratelimit::{KeyPart, Limit, Policy, Rate, RateLimitLayer, Tier};
//! use tower::{Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy = Policy::new()
//!     // Every tenant together: 1000 requests and 400k input tokens a minute.
//!     .limit(Limit::new("tenant").by([KeyPart::Tenant])
//!         .requests(Rate::per_minute(1_000))
//!         .input_tokens(Rate::per_minute(400_000)))
//!     // Pilot users: 2 requests a minute each.
//!     .tier("pilot", Tier::new([Limit::new("user").by([KeyPart::Subject])
//!         .requests(Rate::per_minute(2))]))
//!     .default_tier("pilot");
//! let svc = RateLimitLayer::new(policy).layer(MockProvider::always(Script::text("hi")));
//!
//! let call = || {
//!     let body = MessagesRequest { model: "claude-x".into(), max_tokens: Some(100), ..Default::default() };
//!     let mut req = http::Request::new(body);
//!     req.extensions_mut().insert(Principal { tenant: Some("acme".into()), ..Principal::new("bob") });
//!     svc.clone().oneshot(req)
//! };
//! let ok = call().await.expect("first");
//! assert_eq!(ok.headers()["anthropic-ratelimit-requests-remaining"], "1");
//! call().await.expect("second");
//! let refused = call().await.expect_err("third within the minute");
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.retry_after(), Some(std::time::Duration::from_secs(30)));
//! # }
//! ```
//!
//! # Semantics
//!
//! - **Algorithm**: GCRA ([`rate`]): a limit of `amount` per `period` is a bucket of
//!   `burst` (default `amount`) refilled continuously; no windows, so no double burst at a
//!   window edge. `retry-after` is the exact time until the refused charge fits.
//! - **Reserve, then settle**: a request reserves 1 request, its estimated input tokens
//!   and its `max_tokens` of output, on every limit that applies, all or nothing. When
//!   the response is over it settles the real usage (input: uncached input plus cache
//!   writes; output: the reported count, or what was streamed when a stream was cut) and
//!   gives back the rest, exactly once.
//! - **Headers**: every response carries `anthropic-ratelimit-{requests,input-tokens,
//!   output-tokens}-{limit,remaining,reset}` for the caller's tightest limit per axis;
//!   the upstream's organisation-wide `anthropic-ratelimit-*` headers never reach callers.
//! - **Overflow queue**: a tier with `queue_wait` lets a request over its limit wait for
//!   capacity, higher priority first; see [`Tier`].
//!
//! See `docs/ai-ratelimit.md` for the configuration, the Redis key layout and the failure
//! modes.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod layer;
mod policy;
mod queue;
pub mod rate;
#[cfg(feature = "redis")]
mod redis;
mod store;

pub use layer::{
    Clock, OnStoreError, RateLimit, RateLimitLayer, RequestRateLimit, RequestRateLimitLayer,
};
pub use policy::{Axis, KeyContext, KeyPart, Limit, Policy, Tier, model_family};
pub use rate::{Rate, Standing};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
pub use store::{Adjust, Admission, Charge, Gauge, MemoryStore, Store, StoreError};

/// Describes the limiter's metrics to the installed `metrics` recorder (names, help text):
///
/// - `gen_ai_gateway_ratelimit_rejected_total{axis}`: requests refused (429), by the axis
///   that refused them (`queue` for one refused behind a line of waiters);
/// - `gen_ai_gateway_ratelimit_queued_total`: requests that waited in the overflow queue;
/// - `gen_ai_gateway_ratelimit_queue_timeouts_total`: waiters refused at their deadline;
/// - `gen_ai_gateway_ratelimit_store_errors_total{policy}`: store failures (`closed`,
///   `open`, or `settle`).
pub fn describe_metrics() {
    use metrics::describe_counter;
    describe_counter!(
        "gen_ai_gateway_ratelimit_rejected_total",
        "Requests refused by a rate limit, by axis (requests, input_tokens, output_tokens, in_flight, queue)."
    );
    describe_counter!(
        "gen_ai_gateway_ratelimit_queued_total",
        "Requests that waited in the rate-limit overflow queue."
    );
    describe_counter!(
        "gen_ai_gateway_ratelimit_queue_timeouts_total",
        "Queued requests refused because no capacity came before their deadline."
    );
    describe_counter!(
        "gen_ai_gateway_ratelimit_store_errors_total",
        "Rate-limit store failures, by policy (closed: refused, open: limited locally, settle)."
    );
}
