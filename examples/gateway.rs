//! The example gateway: `cargo run --release --example gateway`.
//!
//! Without a configuration file it runs on defaults: it listens on 127.0.0.1:8080
//! (`--listen ADDR` or `GATEWAY_LISTEN`), forwards to Anthropic when `ANTHROPIC_API_KEY`
//! is set (`ANTHROPIC_BASE_URL` overrides the base URL) and otherwise serves the built-in
//! demo upstream. With `--config PATH` (or `GATEWAY_CONFIG`) the TOML file decides
//! (`examples/gateway.toml` documents every key); `--check-config PATH` validates one and
//! exits. See docs/gateway.md.

use ai_gateway::config::{
    AnthropicSection, AuditSinkKind, GatewayConfig, LogFormat, LogSection, OpenAiSection,
    RateLimitStoreKind,
};
use ai_gateway::core::{AiBody, AiError, Endpoint, MessagesRequest, Surface};
use ai_gateway::provider::DemoProvider;
use ai_gateway::server::{MetricsEndpoint, serve};
use clap::Parser;
use http::{Request, Response};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tower::util::BoxCloneService;

type Upstream = BoxCloneService<Request<MessagesRequest>, Response<AiBody>, AiError>;

/// An AI inference gateway: the Anthropic Messages API in front of Anthropic (or its
/// built-in demo upstream), built from tower layers.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    after_help = "Without a configuration file:\n  \
        ANTHROPIC_API_KEY   forward to Anthropic with this key (unset: the built-in demo upstream)\n  \
        ANTHROPIC_BASE_URL  upstream base URL (default https://api.anthropic.com)\n  \
        OPENAI_API_KEY      send OpenAI-surface requests (/v1/chat/completions) to OpenAI\n  \
        OPENAI_BASE_URL     ... or to this OpenAI-compatible server (vLLM, Ollama: key optional)\n\
        Always:\n  \
        RUST_LOG            log filter, wins over [log] level (e.g. info,ai_provider=debug)\n\n\
        Every configuration key, with its default: examples/gateway.toml and docs/gateway.md."
)]
struct Cli {
    /// Configuration file (TOML). Without one, the defaults and the variables below apply.
    #[arg(long, env = "GATEWAY_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    /// Check a configuration file and exit: 0 when the gateway would start with it, 1 and
    /// the reason (file, line, key) when not.
    #[arg(long, value_name = "PATH")]
    check_config: Option<PathBuf>,

    /// Address to listen on, e.g. 127.0.0.1:8080; wins over [server] listen.
    #[arg(long, env = "GATEWAY_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_config {
        return match load(Some(path)).and_then(|c| check(&c, cli.listen.as_deref())) {
            Ok(summary) => {
                println!("{}: ok ({summary})", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    let config = match load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    // Kept to the end: with the `otlp` feature it flushes the spans still batched.
    let _telemetry = match init_logging(&config.log) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(config, cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// The file when given; otherwise the defaults, with `[upstream.anthropic]` from
/// `ANTHROPIC_API_KEY` / `ANTHROPIC_BASE_URL` when the key is set.
fn load(path: Option<&Path>) -> Result<GatewayConfig, String> {
    if let Some(path) = path {
        return GatewayConfig::from_file(path).map_err(|e| e.to_string());
    }
    let mut config = GatewayConfig::default();
    if let Some(key) = std::env::var("ANTHROPIC_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        let mut section = AnthropicSection::with_key("ANTHROPIC_API_KEY", key);
        if let Some(url) = std::env::var("ANTHROPIC_BASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            section.base_url = url;
        }
        config.upstream.anthropic = Some(section);
    }
    // The same for the OpenAI surface: OPENAI_API_KEY (and/or OPENAI_BASE_URL, for a
    // self-hosted server without a key) sends /v1/chat/completions there.
    let openai_key = std::env::var("OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let openai_url = std::env::var("OPENAI_BASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if openai_key.is_some() || openai_url.is_some() {
        config.upstream.openai = Some(OpenAiSection::from_env(
            openai_url,
            openai_key.map(|k| ("OPENAI_API_KEY", k)),
        ));
    }
    Ok(config)
}

/// The upstream that serves Anthropic-model requests (`[upstream] default`, or the one
/// configured, or the demo), built, and how the startup line names it.
fn primary(config: &GatewayConfig) -> Result<(Upstream, String), String> {
    let u = &config.upstream;
    Ok(match u.primary().map_err(|e| e.to_string())? {
        Some("anthropic") => {
            let a = u.anthropic.as_ref().ok_or("no [upstream.anthropic]")?;
            (
                BoxCloneService::new(a.build().map_err(|e| e.to_string())?),
                format!("upstream anthropic at {}", shown_url(&a.base_url)),
            )
        }
        Some("bedrock") => {
            let b = u.bedrock.as_ref().ok_or("no [upstream.bedrock]")?;
            let p = b.build().map_err(|e| e.to_string())?;
            let what = format!("upstream bedrock in {}", p.region());
            (BoxCloneService::new(p), what)
        }
        Some(_) => {
            let v = u.vertex.as_ref().ok_or("no [upstream.vertex]")?;
            let p = v.build().map_err(|e| e.to_string())?;
            let what = format!("upstream vertex at {}", p.models_url());
            (BoxCloneService::new(p), what)
        }
        None => (
            BoxCloneService::new(DemoProvider::new()),
            "the built-in demo upstream".to_owned(),
        ),
    })
}

/// Everything the gateway checks before it serves, without serving.
fn check(config: &GatewayConfig, listen: Option<&str>) -> Result<String, String> {
    let listen = listen.unwrap_or(&config.server.listen);
    std::net::ToSocketAddrs::to_socket_addrs(listen).map_err(|e| {
        format!("[server] listen: \"{listen}\" is not an address to listen on: {e}")
    })?;
    log_filter(&config.log)?;
    let open = open_exposure(config, listen)?;
    let auth = match &config.auth {
        Some(a) => {
            a.build().map_err(|e| e.to_string())?;
            a.pseudonym().map_err(|e| e.to_string())?;
            format!("gateway keys from {}", a.keys_file.display())
        }
        None => open.to_owned(),
    };
    let (_, mut upstream) = primary(config)?;
    if let Some(o) = &config.upstream.openai {
        o.build().map_err(|e| e.to_string())?;
        upstream.push_str(&format!(
            " (OpenAI surface: upstream openai at {})",
            shown_url(&o.base_url)
        ));
    }
    let audit = if config.audit.enabled {
        if let Some(k) = &config.audit.signing_key {
            let v = k.value().unwrap_or_default();
            ai_gateway::audit::SigningKey::from_base64(v).map_err(|e| {
                format!(
                    "[audit] signing_key (environment variable {}): {e}",
                    k.name()
                )
            })?;
        }
        match config.audit.sink {
            AuditSinkKind::Stdout => "audit records on stdout".to_owned(),
            _ => format!("audit log in {}", config.audit.dir.display()),
        }
    } else {
        "audit log off".to_owned()
    };
    let ratelimit = if config.ratelimit.enabled {
        config.ratelimit.policy().map_err(|e| e.to_string())?;
        if config.ratelimit.store == RateLimitStoreKind::Redis
            && config.ratelimit.redis_url.is_none()
        {
            return Err("[ratelimit] store = \"redis\" needs redis_url = \"${VAR}\"".to_owned());
        }
        "rate limits on"
    } else {
        "rate limits off"
    };
    let budget = if config.budget.enabled {
        config.budget.policy().map_err(|e| e.to_string())?;
        config.budget.prices().map_err(|e| e.to_string())?;
        if config.budget.store == RateLimitStoreKind::Redis && config.budget.redis_url.is_none() {
            return Err("[budget] store = \"redis\" needs redis_url = \"${VAR}\"".to_owned());
        }
        "budgets on"
    } else {
        "budgets off"
    };
    let redact = if config.redact.enabled {
        config.redact.build().map_err(|e| e.to_string())?;
        "redaction on"
    } else {
        "redaction off"
    };
    let inspect = if config.inspect.enabled {
        config
            .inspect
            .build(&config.redact)
            .map_err(|e| e.to_string())?;
        "inspection on"
    } else {
        "inspection off"
    };
    Ok(format!(
        "listen {listen}, {upstream}, {auth}, {audit}, {ratelimit}, {budget}, {redact}, {inspect}"
    ))
}

/// Without `[auth]`, the gateway serves everyone: that is only allowed on loopback,
/// unless `[server] allow_open` says something in front authenticates callers.
fn open_exposure(config: &GatewayConfig, listen: &str) -> Result<&'static str, String> {
    if config.auth.is_some() {
        return Ok("");
    }
    let loopback = std::net::ToSocketAddrs::to_socket_addrs(listen)
        .map(|mut addrs| addrs.all(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    if loopback {
        return Ok("no authentication (loopback only)");
    }
    if config.server.allow_open {
        return Ok("no authentication, open on purpose ([server] allow_open)");
    }
    Err(format!(
        "refusing to serve {listen} without authentication: anyone who reaches it would spend \
         the vendor key. Add an [auth] section (gateway keys), listen on 127.0.0.1, or set \
         [server] allow_open = true if something in front authenticates callers"
    ))
}

fn log_filter(log: &LogSection) -> Result<tracing_subscriber::EnvFilter, String> {
    let (mut directives, origin) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => (v, "RUST_LOG"),
        _ => (log.level.clone(), "[log] level"),
    };
    if !log.access_log {
        directives.push_str(",ai_gateway::access=off");
    }
    // aws-sigv4 traces the canonical request it signs, session token included: never
    // logged, whatever the level asked for.
    directives.push_str(",aws_sigv4=off");
    tracing_subscriber::EnvFilter::try_new(&directives)
        .map_err(|e| format!("{origin}: \"{directives}\" is not a log filter: {e}"))
}

/// Logs go to stderr: plain text (colour only on a terminal) or JSON lines. Built with
/// the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, the `gen_ai` spans also go to
/// that OTLP/HTTP collector (the returned guard flushes them at exit).
fn init_logging(log: &LogSection) -> Result<Option<Box<dyn std::any::Any>>, String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(log)?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
    {
        let (otlp, guard) = ai_gateway::otlp::layer(&endpoint, "ai-gateway")?;
        registry.with(otlp).init();
        tracing::info!(%endpoint, "gen_ai spans exported over OTLP/HTTP");
        return Ok(Some(Box::new(guard)));
    }
    registry.init();
    Ok(None)
}

async fn run(config: GatewayConfig, cli: Cli) -> Result<(), String> {
    let (upstream, what) = primary(&config)?;
    match (&config.upstream.primary(), &cli.config) {
        (Ok(Some(_)), _) => tracing::info!("forwarding to {what}"),
        (_, Some(path)) => tracing::warn!(
            "{} configures no upstream: serving the built-in demo upstream (canned answers)",
            path.display()
        ),
        (_, None) => tracing::warn!(
            "ANTHROPIC_API_KEY is not set: serving the built-in demo upstream (canned answers)"
        ),
    }
    let upstream = match &config.upstream.openai {
        None => upstream,
        Some(o) => {
            let openai: Upstream = BoxCloneService::new(o.build().map_err(|e| e.to_string())?);
            tracing::info!(base_url = %shown_url(&o.base_url), "OpenAI-surface messages go to the OpenAI upstream");
            // Messages of the OpenAI surface go to the OpenAI upstream; everything else
            // (the Anthropic surface, the model list) to the Anthropic one or the demo.
            BoxCloneService::new(tower::service_fn(move |req: Request<MessagesRequest>| {
                let to_openai = req.extensions().get::<Surface>() == Some(&Surface::OPENAI)
                    && req.extensions().get::<Endpoint>() == Some(&Endpoint::Messages);
                let svc = if to_openai {
                    openai.clone()
                } else {
                    upstream.clone()
                };
                tower::ServiceExt::oneshot(svc, req)
            }))
        }
    };
    let listen = cli.listen.as_deref().unwrap_or(&config.server.listen);
    let open = open_exposure(&config, listen)?;
    let mut server = config.server_config();
    if let Some(a) = &config.auth {
        let (layer, keys) = a.build().map_err(|e| e.to_string())?;
        keys.watch(a.reload_interval);
        server.pseudonym = a.pseudonym().map_err(|e| e.to_string())?;
        tracing::info!(keys_file = %a.keys_file.display(), "callers authenticate with gateway keys");
        server.auth = Some(layer);
    } else {
        tracing::warn!("{open}: every caller is let in");
    }
    match config.audit.build().map_err(|e| e.to_string())? {
        Some((layer, what)) => {
            tracing::info!("{what}");
            if config.audit.signing_key.is_none() && config.audit.sink == AuditSinkKind::File {
                tracing::warn!(
                    "the audit signing key is kept next to the log: whoever can rewrite the log \
                     can re-sign it. Give [audit] signing_key = \"${{VAR}}\" a key kept elsewhere \
                     (cargo run -p ai-audit --bin audit-verify -- --generate-key)"
                );
            }
            server.audit = Some(layer);
        }
        None => tracing::warn!("the audit log is off ([audit] enabled = false)"),
    }
    match config.ratelimit.build().map_err(|e| e.to_string())? {
        Some((layer, what)) => {
            tracing::info!("{what}");
            if config.auth.is_none() {
                let by_caller = config
                    .ratelimit
                    .limits
                    .iter()
                    .chain(config.ratelimit.tiers.values().flat_map(|t| &t.limits))
                    .filter(|l| l.by.iter().any(|p| p.needs_auth()))
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>();
                if !by_caller.is_empty() {
                    tracing::warn!(
                        "without [auth] every caller is \"anonymous\" with no tenant, team or key: \
                         rate limits {by_caller:?} are kept per one of those and apply to nobody"
                    );
                }
            }
            server.ratelimit = Some(layer);
        }
        None => tracing::debug!("rate limits off ([ratelimit] enabled = false)"),
    }
    match config.budget.build().map_err(|e| e.to_string())? {
        Some((layer, what)) => {
            tracing::info!("{what}");
            match config.budget.admin_token.as_ref().and_then(|t| t.value()) {
                Some(token) => {
                    tracing::info!("budget admin API on GET /admin/budgets/{{scope}}:{{owner}}");
                    server.admin_token = Some(token.into());
                }
                None => tracing::debug!("no [budget] admin_token: the admin API is off"),
            }
            server.budget = Some(layer);
        }
        None => tracing::debug!("budgets off ([budget] enabled = false)"),
    }
    if config.redact.enabled {
        let layer = config.redact.build().map_err(|e| e.to_string())?;
        tracing::info!(
            detectors = layer.redactor().detectors().specs().len(),
            "redaction on"
        );
        server.redact = Some(layer);
    } else {
        tracing::debug!("redaction off ([redact] enabled = false)");
    }
    if config.inspect.enabled {
        let layer = config
            .inspect
            .build(&config.redact)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            window_tokens = layer.policy().window_tokens(),
            "output inspection on"
        );
        server.inspect = Some(layer);
    } else {
        tracing::debug!("output inspection off ([inspect] enabled = false)");
    }
    if config.audit.metrics {
        server.metrics = Some(MetricsEndpoint::prometheus("/metrics")?);
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| bind_error(listen, &e))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    tracing::info!("ai-gateway listening on http://{local}");
    serve(listener, upstream, server, shutdown_signal())
        .await
        .map_err(|e| format!("the server stopped: {e}"))
}

/// A URL as it may be shown: scheme, host, port and path, never `user:password@`.
fn shown_url(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(u) => format!(
            "{}://{}{}{}",
            u.scheme_str().unwrap_or("?"),
            u.host().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path().trim_end_matches('/')
        ),
        Err(_) => "(invalid url)".to_owned(),
    }
}

fn bind_error(listen: &str, e: &std::io::Error) -> String {
    let hint = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another process is using it; stop it, or choose another address with --listen ADDR (or [server] listen)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges; choose another with --listen ADDR (or [server] listen)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "that address is not on this machine; choose another with --listen ADDR (or [server] listen)"
        }
        _ => "choose another address with --listen ADDR (or [server] listen)",
    };
    format!("cannot listen on {listen}: {e}; {hint}")
}

/// Ctrl-C, or SIGTERM (how containers and service managers stop a process).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: open requests get the shutdown grace to finish");
}
