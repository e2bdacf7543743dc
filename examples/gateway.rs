//! The example gateway: `cargo run --release --example gateway`.
//!
//! Listens on 127.0.0.1:8080 (`--listen ADDR` or `GATEWAY_LISTEN`) and serves
//! `POST /v1/messages`, `POST /v1/messages/count_tokens` and `GET /v1/models`.
//! With `ANTHROPIC_API_KEY` set it forwards to Anthropic (`ANTHROPIC_BASE_URL` overrides
//! the base URL); without it, it serves the built-in demo upstream.

use ai_gateway::core::{AiBody, AiError, MessagesRequest};
use ai_gateway::provider::{AnthropicProvider, DemoProvider};
use ai_gateway::server::{ServerConfig, serve};
use http::{Request, Response};
use tower::util::BoxCloneService;

type Upstream = BoxCloneService<Request<MessagesRequest>, Response<AiBody>, AiError>;

fn listen_addr() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let mut listen =
        std::env::var("GATEWAY_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .ok_or("--listen needs an address, e.g. 127.0.0.1:8080")?
            }
            s if s.starts_with("--listen=") => listen = s["--listen=".len()..].to_owned(),
            "-h" | "--help" => {
                return Err("usage: gateway [--listen ADDR]\n  env: GATEWAY_LISTEN, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, RUST_LOG".to_owned());
            }
            other => return Err(format!("unknown argument: {other} (try --help)")),
        }
    }
    Ok(listen)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let listen = listen_addr()?;

    let upstream: Upstream = match std::env::var("ANTHROPIC_API_KEY") {
        Ok(key) if !key.is_empty() => {
            let mut b = AnthropicProvider::builder().api_key(key);
            if let Ok(url) = std::env::var("ANTHROPIC_BASE_URL") {
                b = b.base_url(url);
            }
            BoxCloneService::new(b.build()?)
        }
        _ => {
            println!(
                "ANTHROPIC_API_KEY is not set: serving the built-in demo upstream (canned answers)."
            );
            BoxCloneService::new(DemoProvider::new())
        }
    };

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let local = listener.local_addr()?;
    println!("ai-gateway listening on http://{local}");
    if !local.ip().is_loopback() && std::env::var_os("ANTHROPIC_API_KEY").is_some() {
        println!(
            "warning: this build does not authenticate callers yet; anyone who reaches {local} spends the vendor key"
        );
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    };
    serve(listener, upstream, ServerConfig::default(), shutdown).await?;
    Ok(())
}
