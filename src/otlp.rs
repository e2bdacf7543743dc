//! OTLP export of the gateway's GenAI spans (feature `otlp`): the `gen_ai` span of every
//! call (target `ai_audit`, OpenTelemetry GenAI attribute names) sent to a collector over
//! OTLP/HTTP (protobuf), batched off the request path.
//!
//! ```no_run
//! # #[cfg(feature = "otlp")]
//! # fn main() -> Result<(), String> {
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! let (otlp, guard) = ai_gateway::otlp::layer("http://127.0.0.1:4318", "ai-gateway")?;
//! tracing_subscriber::registry().with(otlp).init();
//! // ... serve; on exit, `drop(guard)` flushes the spans still batched.
//! # drop(guard); Ok(()) }
//! # #[cfg(not(feature = "otlp"))] fn main() {}
//! ```

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::fmt;
use std::sync::Arc;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// Flushes and stops the exporter when dropped.
pub struct OtlpGuard(SdkTracerProvider);

impl fmt::Debug for OtlpGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtlpGuard")
    }
}

impl OtlpGuard {
    /// Sends the spans still batched.
    pub fn flush(&self) {
        let _ = self.0.force_flush();
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// The OTLP/HTTP client: hyper-util on a runtime of its own (the SDK exports from its
/// batch thread, outside any runtime).
#[derive(Clone)]
struct OtlpHttp {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for OtlpHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtlpHttp")
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let call = async move {
            let (parts, body) = request.into_parts();
            let resp = client
                .request(Request::from_parts(parts, Full::new(body)))
                .await?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(Response::from_parts(parts, bytes))
        };
        self.rt.spawn(call).await?
    }
}

/// A tracing layer exporting the `gen_ai` spans (target `ai_audit`) to the OTLP/HTTP
/// collector at `endpoint` (e.g. `http://127.0.0.1:4318`; spans go to `/v1/traces`), as
/// service `service_name`. Keep the guard for the life of the process.
pub fn layer<S>(endpoint: &str, service_name: &str) -> Result<(impl Layer<S>, OtlpGuard), String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(|e| format!("otlp: cannot start its runtime: {e}"))?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let http = OtlpHttp {
        rt: Arc::new(rt),
        client: Client::builder(TokioExecutor::new()).build(connector),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| format!("otlp: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("ai-gateway");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target("ai_audit", tracing::Level::INFO));
    Ok((layer, OtlpGuard(provider)))
}
