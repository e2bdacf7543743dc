//! Alerts before a budget runs out: [`AlertSink`], the default [`LogSink`] and, with the
//! `webhook` feature, [`WebhookSink`].

use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// A budget crossed one of its thresholds in a window. Sent once per budget, window and
/// threshold: the settle that crosses it is the only one that sees spend go from under
/// to at-or-over, even across replicas sharing a store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// The budget's name.
    pub budget: Arc<str>,
    /// What it is kept per (`subject`, `team`, `tenant`, `project`, `key`, `global`).
    pub scope: &'static str,
    /// Whose budget (the subject, team, ... name).
    pub owner: Arc<str>,
    /// `daily`, `monthly` or `lifetime`.
    pub period: &'static str,
    /// The window (`2026-12`, `2026-12-02`, `all`).
    pub window: String,
    /// The threshold crossed, in percent of the cap.
    pub threshold_percent: u8,
    /// The cap, in dollars (decimal string).
    pub cap_usd: String,
    /// Spend after the call that crossed it, in dollars (decimal string).
    pub spent_usd: String,
}

/// Where alerts go. Called on the request's task: an implementation that does I/O spawns
/// it (as [`WebhookSink`] does) and never blocks.
pub trait AlertSink: Send + Sync + 'static {
    /// One alert.
    fn alert(&self, alert: Alert);
}

/// The default sink: a `warn` log line (target `ai_budget`) and the counter
/// `gen_ai_gateway_budget_alerts_total{budget, threshold}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSink;

impl AlertSink for LogSink {
    fn alert(&self, a: Alert) {
        metrics::counter!("gen_ai_gateway_budget_alerts_total",
            "budget" => a.budget.to_string(), "threshold" => a.threshold_percent.to_string())
        .increment(1);
        tracing::warn!(target: "ai_budget", budget = %a.budget, scope = a.scope, owner = %a.owner,
            window = %a.window, threshold = a.threshold_percent, spent_usd = %a.spent_usd,
            cap_usd = %a.cap_usd, "budget threshold reached");
    }
}

/// Several sinks at once (e.g. the log and a webhook).
#[derive(Clone, Default)]
pub struct Fanout(pub Vec<Arc<dyn AlertSink>>);

impl fmt::Debug for Fanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fanout").field(&self.0.len()).finish()
    }
}

impl AlertSink for Fanout {
    fn alert(&self, a: Alert) {
        for s in &self.0 {
            s.alert(a.clone());
        }
    }
}

#[cfg(feature = "webhook")]
pub use webhook::WebhookSink;

#[cfg(feature = "webhook")]
mod webhook {
    use super::{Alert, AlertSink};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use std::fmt;
    use std::sync::Arc;
    use std::time::Duration;

    type Https = hyper_rustls::HttpsConnector<HttpConnector>;

    /// POSTs each alert as JSON to a URL (`http://` or `https://`, public roots), with a
    /// timeout per attempt and retries with doubling backoff on a connection error, a
    /// timeout or a 5xx/429 answer. Delivery runs on its own task; a failure after the
    /// last retry is logged and counted
    /// (`gen_ai_gateway_budget_alert_failures_total`), never raised to a request.
    #[derive(Clone)]
    pub struct WebhookSink {
        inner: Arc<Inner>,
    }

    #[derive(Clone)]
    struct Inner {
        url: http::Uri,
        client: Client<Https, Full<Bytes>>,
        timeout: Duration,
        retries: u32,
        backoff: Duration,
        headers: http::HeaderMap,
    }

    impl fmt::Debug for WebhookSink {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("WebhookSink")
                .field("url", &self.inner.url)
                .field("timeout", &self.inner.timeout)
                .field("retries", &self.inner.retries)
                .finish_non_exhaustive()
        }
    }

    impl WebhookSink {
        /// A sink posting to `url`: 5 s timeout per attempt, 3 retries, 200 ms first
        /// backoff.
        pub fn new(url: &str) -> Result<Self, String> {
            let url: http::Uri = url
                .parse()
                .map_err(|e| format!("webhook url {url:?}: {e}"))?;
            if !matches!(url.scheme_str(), Some("http" | "https")) {
                return Err(format!("webhook url {url} must be http:// or https://"));
            }
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(Duration::from_secs(5)));
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            let client = Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .build(https);
            Ok(WebhookSink {
                inner: Arc::new(Inner {
                    url,
                    client,
                    timeout: Duration::from_secs(5),
                    retries: 3,
                    backoff: Duration::from_millis(200),
                    headers: http::HeaderMap::new(),
                }),
            })
        }

        fn inner_mut(&mut self) -> &mut Inner {
            Arc::make_mut(&mut self.inner)
        }

        /// Time allowed per attempt.
        pub fn timeout(mut self, t: Duration) -> Self {
            self.inner_mut().timeout = t;
            self
        }

        /// Attempts after the first, and the first wait (doubled each time).
        pub fn retries(mut self, n: u32, backoff: Duration) -> Self {
            let i = self.inner_mut();
            i.retries = n;
            i.backoff = backoff;
            self
        }

        /// A header sent with every POST (e.g. `authorization`).
        pub fn header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
            self.inner_mut().headers.insert(name, value);
            self
        }

        /// Delivers one alert, retrying; `Ok` with the attempts used, or the last error.
        pub async fn deliver(&self, alert: &Alert) -> Result<u32, String> {
            let body = Bytes::from(serde_json::to_vec(alert).map_err(|e| e.to_string())?);
            let i = &self.inner;
            let mut wait = i.backoff;
            let mut last = String::new();
            for attempt in 0..=i.retries {
                if attempt > 0 {
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                }
                let mut req = http::Request::post(i.url.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::USER_AGENT, "ai-gateway-budget-alerts")
                    .body(Full::new(body.clone()))
                    .map_err(|e| e.to_string())?;
                req.headers_mut().extend(i.headers.clone());
                let sent = tokio::time::timeout(i.timeout, async {
                    let resp = i.client.request(req).await.map_err(|e| e.to_string())?;
                    let status = resp.status();
                    // Read the answer so the connection can be reused.
                    let _ = resp.into_body().collect().await;
                    Ok::<_, String>(status)
                })
                .await;
                match sent {
                    Ok(Ok(s)) if s.is_success() => return Ok(attempt + 1),
                    Ok(Ok(s))
                        if s.is_server_error() || s == http::StatusCode::TOO_MANY_REQUESTS =>
                    {
                        last = format!("answered {s}");
                    }
                    Ok(Ok(s)) => return Err(format!("answered {s} (not retried)")),
                    Ok(Err(e)) => last = e,
                    Err(_) => last = format!("no answer within {:?}", i.timeout),
                }
            }
            Err(last)
        }
    }

    impl AlertSink for WebhookSink {
        fn alert(&self, alert: Alert) {
            let sink = self.clone();
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                tracing::warn!(target: "ai_budget", "no runtime to send a budget alert on");
                return;
            };
            rt.spawn(async move {
                if let Err(e) = sink.deliver(&alert).await {
                    metrics::counter!("gen_ai_gateway_budget_alert_failures_total").increment(1);
                    tracing::warn!(target: "ai_budget", url = %sink.inner.url, error = %e,
                        budget = %alert.budget, "could not deliver a budget alert");
                }
            });
        }
    }
}
