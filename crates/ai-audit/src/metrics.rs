//! Prometheus-style metrics through the `metrics` facade (names in `docs/ai-audit.md`).
//! Labels are bounded: model and tenant values beyond a cap become `other`; no user ids.

use crate::record::{AuditRecord, outcome};
use std::collections::HashSet;
use std::sync::Mutex;

/// Keeps at most `cap` distinct values of one label; later ones read `other`.
#[derive(Debug)]
pub(crate) struct LabelCap {
    seen: Mutex<HashSet<String>>,
    cap: usize,
}

impl LabelCap {
    pub(crate) fn new(cap: usize) -> Self {
        LabelCap {
            seen: Mutex::new(HashSet::new()),
            cap,
        }
    }

    pub(crate) fn get(&self, value: &str) -> String {
        let Ok(mut seen) = self.seen.lock() else {
            return "other".to_owned();
        };
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.cap && !value.is_empty() && value.len() <= 128 {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        "other".to_owned()
    }
}

#[derive(Debug)]
pub(crate) struct Metrics {
    models: LabelCap,
    tenants: Option<LabelCap>,
}

/// The error class of a record, for `gen_ai_gateway_errors_total`.
pub(crate) fn error_class(rec: &AuditRecord) -> Option<&'static str> {
    let reason = rec.reason.as_deref().unwrap_or("");
    Some(match rec.outcome.as_str() {
        outcome::COMPLETE | outcome::CANCELLED | outcome::INCOMPLETE => return None,
        outcome::AUTH_FAILED | outcome::AUTH_FAILED_AGGREGATE => "auth",
        outcome::UPSTREAM_OVERLOADED => "overloaded",
        outcome::TIMEOUT => "timeout",
        outcome::POLICY_CUT => "policy",
        _ if reason == "rate_limit_error" => "rate_limit",
        _ if reason == "budget_exceeded" => "budget",
        _ if reason == "policy_block" => "policy",
        _ if reason == "permission_error" => "permission",
        _ if rec.status >= 500 => "5xx",
        _ => "invalid_request",
    })
}

impl Metrics {
    pub(crate) fn new(tenant_label: bool) -> Self {
        Metrics {
            models: LabelCap::new(64),
            tenants: tenant_label.then(|| LabelCap::new(256)),
        }
    }

    pub(crate) fn has_tenant(&self) -> bool {
        self.tenants.is_some()
    }

    pub(crate) fn record(&self, rec: &AuditRecord) {
        let model = self
            .models
            .get(rec.requested_model.as_deref().unwrap_or("none"));
        let provider = rec
            .served
            .as_ref()
            .map_or("none".to_owned(), |s| s.provider.clone());
        let surface = rec.surface.clone();
        match &self.tenants {
            Some(t) => {
                let tenant = t.get(
                    rec.principal
                        .as_ref()
                        .and_then(|p| p.tenant.as_deref())
                        .unwrap_or("none"),
                );
                metrics::counter!("gen_ai_gateway_requests_total", "surface" => surface.clone(), "model" => model.clone(), "provider" => provider, "outcome" => rec.outcome.clone(), "tenant" => tenant).increment(1);
            }
            None => {
                metrics::counter!("gen_ai_gateway_requests_total", "surface" => surface.clone(), "model" => model.clone(), "provider" => provider, "outcome" => rec.outcome.clone()).increment(1);
            }
        }
        if let Some(class) = error_class(rec) {
            metrics::counter!("gen_ai_gateway_errors_total", "class" => class).increment(1);
        }
        if rec.attempts.len() > 1 {
            let first = &rec.attempts[0];
            let fallbacks = rec.attempts[1..]
                .iter()
                .filter(|a| a.provider != first.provider || a.model != first.model)
                .count() as u64;
            let retries = rec.attempts.len() as u64 - 1 - fallbacks;
            if retries > 0 {
                metrics::counter!("gen_ai_gateway_retries_total").increment(retries);
            }
            if fallbacks > 0 {
                metrics::counter!("gen_ai_gateway_fallbacks_total").increment(fallbacks);
            }
        }
        if let Some(u) = &rec.tokens.upstream {
            for (kind, n) in [
                ("input", u.input),
                ("output", u.output),
                ("cache_write", u.cache_creation_input),
                ("cache_read", u.cache_read_input),
            ] {
                if n > 0 {
                    metrics::counter!("gen_ai_gateway_tokens_total", "type" => kind, "model" => model.clone()).increment(n);
                }
            }
        }
        if let Some(c) = rec.cost_nano_usd {
            metrics::counter!("gen_ai_gateway_cost_nano_usd_total", "model" => model.clone())
                .increment(c);
        }
        metrics::histogram!("gen_ai_gateway_request_duration_seconds", "surface" => surface, "model" => model.clone())
            .record(rec.latency_ms / 1e3);
        if let Some(t) = rec.ttft_ms {
            metrics::histogram!("gen_ai_gateway_time_to_first_token_seconds", "model" => model)
                .record(t / 1e3);
        }
    }
}

/// Buckets (seconds) for the latency histograms, for an exporter that needs them
/// (`metrics_exporter_prometheus::PrometheusBuilder::set_buckets_for_metric`).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The histogram metric names ([`LATENCY_BUCKETS`] suit both).
pub const HISTOGRAMS: &[&str] = &[
    "gen_ai_gateway_request_duration_seconds",
    "gen_ai_gateway_time_to_first_token_seconds",
];

/// Describes every metric (help text) to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "gen_ai_gateway_requests_total",
        "Model calls by surface, model, provider and outcome."
    );
    describe_counter!(
        "gen_ai_gateway_errors_total",
        "Failed calls by class: rate_limit, 5xx, overloaded, timeout, policy, budget, auth, permission, invalid_request."
    );
    describe_counter!(
        "gen_ai_gateway_retries_total",
        "Upstream retries of the same provider and model."
    );
    describe_counter!(
        "gen_ai_gateway_fallbacks_total",
        "Upstream calls to a fallback provider or model."
    );
    describe_counter!(
        "gen_ai_gateway_tokens_total",
        "Tokens as the upstream reported them, by type: input, output, cache_write, cache_read."
    );
    describe_counter!(
        "gen_ai_gateway_cost_nano_usd_total",
        "Cost of calls in billionths of a US dollar."
    );
    describe_histogram!(
        "gen_ai_gateway_request_duration_seconds",
        Unit::Seconds,
        "Time from request arrival to the end of the response."
    );
    describe_histogram!(
        "gen_ai_gateway_time_to_first_token_seconds",
        Unit::Seconds,
        "Time from request arrival to the first output token."
    );
    describe_gauge!(
        "gen_ai_gateway_streams_in_flight",
        "Streamed responses being delivered now."
    );
    describe_counter!(
        "gen_ai_gateway_audit_records_written_total",
        "Audit records made durable."
    );
    describe_counter!(
        "gen_ai_gateway_audit_write_errors_total",
        "Failed audit log writes or fsyncs."
    );
    describe_counter!(
        "gen_ai_gateway_audit_records_dropped_total",
        "Audit records dropped (fail-open only)."
    );
    describe_counter!(
        "gen_ai_gateway_audit_queue_full_waits_total",
        "Requests that waited for room in the audit queue."
    );
    describe_counter!(
        "gen_ai_gateway_audit_refused_total",
        "Requests refused because no audit record could be written."
    );
    describe_counter!(
        "gen_ai_gateway_audit_suppressed_total",
        "Refused unauthenticated requests counted in an aggregate record instead of their own."
    );
    describe_gauge!(
        "gen_ai_gateway_audit_sink_healthy",
        "1 while the audit sink writes, 0 after a failure."
    );
}
