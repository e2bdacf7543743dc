//! The example binary as an operator meets it: `--help`, `--check-config` on good and bad
//! files, a busy port, the configured timeouts firing against a hanging upstream, and the
//! access log in both formats. These run the real `target/<profile>/examples/gateway`
//! that `cargo test` builds.

mod common;

#[path = "../crates/ai-ratelimit/tests/support/redis_server.rs"]
mod redis_server;

use common::*;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn gateway_bin() -> PathBuf {
    // target/<profile>/deps/cli-<hash> -> target/<profile>/examples/gateway
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    let bin = dir
        .join("examples")
        .join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: `cargo test` builds the examples",
        bin.display()
    );
    bin
}

/// A fresh working directory per run: the gateway writes its audit log to `./audit`.
fn work_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ai-gateway-cli-{}-run{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

fn command() -> Command {
    let mut c = Command::new(gateway_bin());
    c.current_dir(work_dir());
    c.env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("GATEWAY_CONFIG")
        .env_remove("GATEWAY_LISTEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(30), c.output())
        .await
        .expect("the binary finished in time")
        .expect("the binary ran")
}

/// An Ed25519 seed for the sample configuration's `[audit] signing_key`.
const AUDIT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp_config(name: &str, body: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ai-gateway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write config");
    path
}

#[tokio::test]
async fn help_goes_to_stdout_and_exits_zero() {
    let out = run(&["--help"], &[]).await;
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Usage: gateway [OPTIONS]"), "{stdout}");
    for flag in [
        "--config <PATH>",
        "--check-config <PATH>",
        "--listen <ADDR>",
    ] {
        assert!(stdout.contains(flag), "{flag} in {stdout}");
    }
    assert!(!stdout.contains("\\n"), "no literal escapes");
    assert!(out.stderr.is_empty());
    let out = run(&["--bogus"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unexpected argument '--bogus'"));
}

#[tokio::test]
async fn check_config_accepts_the_sample_with_every_key() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway.toml");
    let out = run(
        &["--check-config", sample],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("GATEWAY_KEY_PEPPER", keys::PEPPER),
            (
                "GATEWAY_USER_PSEUDONYM_KEY",
                "pseudonym key for the cli test",
            ),
            ("AUDIT_SIGNING_KEY", AUDIT_KEY),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ok (listen 127.0.0.1:8080, upstream anthropic at https://api.anthropic.com, gateway keys from ")
            && text(&out.stdout).contains(", audit log in ./audit, rate limits off, budgets off, redaction off, inspection off)"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn check_config_refuses_bad_files_with_a_clear_message() {
    let cases = [
        (
            "unknown.toml",
            "[server]\nlisten = \"127.0.0.1:8080\"\nheader_timeout = \"5s\"\n",
            ":3:1: [server] header_timeout: unknown field `header_timeout`",
        ),
        (
            "type.toml",
            "[log]\naccess_log = 1\n",
            ":2:14: [log] access_log: invalid type: integer `1`, expected a boolean",
        ),
        (
            "duration.toml",
            "[server]\nbody_timeout = \"ten seconds\"\n",
            ":2:16: [server] body_timeout: invalid duration \"ten seconds\"",
        ),
        (
            "env.toml",
            "[upstream.anthropic]\napi_key = \"${AI_GATEWAY_TEST_UNSET_KEY}\"\n",
            ":2:11: [upstream.anthropic] api_key: environment variable AI_GATEWAY_TEST_UNSET_KEY is not set",
        ),
        (
            "literal.toml",
            "[upstream.anthropic]\napi_key = \"sk-ant-literal\"\n",
            ":2:11: [upstream.anthropic] api_key: secrets are not written in the config file",
        ),
        (
            "url.toml",
            "[upstream.anthropic]\napi_key = \"${AI_GATEWAY_TEST_KEY}\"\nbase_url = \"not a url\"\n",
            "[upstream.anthropic] invalid base url: not a url",
        ),
    ];
    for (name, body, want) in cases {
        let path = temp_config(name, body);
        let out = run(
            &["--check-config", path.to_str().expect("utf8 path")],
            &[("AI_GATEWAY_TEST_KEY", "sk-test")],
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: want {want:?} in {stderr}");
        assert!(
            !stderr.contains("sk-ant-literal"),
            "secrets are never echoed"
        );
        assert!(out.stdout.is_empty(), "{name}");
        // The same file refuses to start the gateway, with the same message.
        let start = run(
            &["--config", path.to_str().expect("utf8 path")],
            &[("AI_GATEWAY_TEST_KEY", "sk-test")],
        )
        .await;
        assert_eq!(start.status.code(), Some(1), "{name}");
        assert!(text(&start.stderr).contains(want), "{name}");
    }
}

#[tokio::test]
async fn bedrock_and_vertex_upstreams_are_checked_and_named() {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vertex/test_service_account.json"
    );
    let path = temp_config(
        "clouds.toml",
        &format!(
            "[upstream]\ndefault = \"bedrock\"\n\
             [upstream.bedrock]\nregion = \"eu-west-3\"\naccess_key_id = \"${{AI_GATEWAY_TEST_AWS_ID}}\"\n\
             secret_access_key = \"${{AI_GATEWAY_TEST_AWS_SECRET}}\"\n\
             [upstream.vertex]\nregion = \"europe-west1\"\ncredentials_file = \"{key}\"\n"
        ),
    );
    let env = [
        ("AI_GATEWAY_TEST_AWS_ID", "AKIDEXAMPLE"),
        (
            "AI_GATEWAY_TEST_AWS_SECRET",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
    ];
    let out = run(&["--check-config", path.to_str().expect("utf8")], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("upstream bedrock in eu-west-3"), "{stdout}");
    assert!(
        !stdout.contains("wJalrXUtnFEMI"),
        "no secret echoed: {stdout}"
    );
    // Without `default`, two upstreams for the same models are an error that says so.
    let path = temp_config(
        "clouds-ambiguous.toml",
        &format!(
            "[upstream.bedrock]\nregion = \"eu-west-3\"\naccess_key_id = \"${{AI_GATEWAY_TEST_AWS_ID}}\"\n\
             secret_access_key = \"${{AI_GATEWAY_TEST_AWS_SECRET}}\"\n\
             [upstream.vertex]\nregion = \"europe-west1\"\ncredentials_file = \"{key}\"\n"
        ),
    );
    let out = run(&["--check-config", path.to_str().expect("utf8")], &env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("[upstream] default = \"bedrock\""),
        "{}",
        text(&out.stderr)
    );
    let path = temp_config(
        "vertex.toml",
        &format!("[upstream.vertex]\nregion = \"europe-west1\"\ncredentials_file = \"{key}\"\n"),
    );
    let out = run(&["--check-config", path.to_str().expect("utf8")], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(
            "upstream vertex at europe-west1-aiplatform.googleapis.com/v1/projects/gateway-test-project/locations/europe-west1/"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn a_busy_port_names_the_address_and_the_way_out() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run(&["--listen", &addr], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("error: cannot listen on {addr}: ")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen ADDR"), "{stderr}");
    assert!(!stderr.contains("Os {"), "no Debug output: {stderr}");
}

#[tokio::test]
async fn an_open_gateway_refuses_a_non_loopback_address() {
    let out = run(&["--listen", "0.0.0.0:0"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: refusing to serve 0.0.0.0:0 without authentication"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[auth]") && stderr.contains("allow_open"),
        "{stderr}"
    );
    let path = temp_config(
        "open.toml",
        "[server]\nlisten = \"0.0.0.0:0\"\nallow_open = true\n",
    );
    let out = run(&["--check-config", path.to_str().expect("utf8")], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("open on purpose"));
}

/// A running binary and the lines it logs.
struct Running {
    child: Child,
    addr: String,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// The lines logged before it listened.
    startup: Vec<String>,
}

impl Running {
    async fn start(config: &std::path::Path) -> Running {
        Self::start_with(config, &[]).await
    }

    async fn start_with(config: &std::path::Path, env: &[(&str, &str)]) -> Running {
        let mut cmd = command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .args(["--config", config.to_str().expect("utf8 path")])
            .env("AI_GATEWAY_TEST_KEY", "sk-test")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = r.next_line().await {
                let _ = tx.send(l);
            }
        });
        let mut startup = Vec::new();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let l = lines.recv().await.expect("the gateway started");
                startup.push(l.clone());
                if let Some(i) = l.find("listening on http://") {
                    let rest = &l[i + "listening on http://".len()..];
                    return rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':'))
                        .collect::<String>();
                }
            }
        })
        .await
        .expect("listening line");
        Running {
            child,
            addr,
            lines,
            startup,
        }
    }

    /// Every line logged so far, after a moment for the last ones to arrive.
    async fn drain(&mut self) -> Vec<String> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut out = Vec::new();
        while let Ok(l) = self.lines.try_recv() {
            out.push(l);
        }
        out
    }

    async fn line_containing(&mut self, needle: &str) -> String {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let l = self.lines.recv().await.expect("more log lines");
                if l.contains(needle) {
                    return l;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("a log line with {needle:?}"))
    }
}

#[tokio::test]
async fn the_configured_timeouts_are_the_ones_that_fire() {
    let up = MockUpstream::start().await;
    let config = temp_config(
        "timeouts.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[upstream.anthropic]\nbase_url = \"{}\"\napi_key = \"${{AI_GATEWAY_TEST_KEY}}\"\nfirst_byte_timeout = \"300ms\"\nidle_timeout = \"400ms\"\n",
            up.url()
        ),
    );
    let mut gw = Running::start(&config).await;
    let addr: std::net::SocketAddr = gw.addr.parse().expect("addr");

    let started = std::time::Instant::now();
    let (status, _, body) = post_json(addr, messages_body("stall/first-byte", false)).await;
    assert_eq!(status, 504);
    let (kind, message) = error_json(&body);
    assert_eq!(kind, "upstream_timeout");
    assert_eq!(message, "upstream sent no response within 300 ms");
    assert!(started.elapsed() < Duration::from_secs(5));

    let (status, _, body) = post_json(addr, messages_body("stall/mid-stream", true)).await;
    assert_eq!(status, 200);
    let events = parse_sse(&body);
    let (name, last) = events.last().expect("events");
    assert_eq!(name, "error");
    assert_eq!(last["error"]["type"], "upstream_timeout");
    assert_eq!(
        last["error"]["message"],
        "upstream sent nothing for 400 ms during the stream"
    );
    // The vendor key from the environment reference is what reached the upstream.
    assert_eq!(up.last().headers["x-api-key"], "sk-test");

    let line = gw.line_containing("status=504").await;
    assert!(
        line.contains("INFO ai_gateway::access: request method=POST path=\"/v1/messages\""),
        "{line}"
    );
    assert!(line.contains("model=\"stall/first-byte\""), "{line}");
    assert!(line.contains("request_id=\"gw_"), "{line}");
    assert!(line.contains("latency_ms="), "{line}");
    assert!(
        !line.contains("Hello"),
        "no content in the access log: {line}"
    );
    assert!(
        !line.contains('\u{1b}'),
        "no colour codes off a terminal: {line:?}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_a_line() {
    let config = temp_config(
        "json.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"json\"\n",
    );
    let mut gw = Running::start(&config).await;
    let addr: std::net::SocketAddr = gw.addr.parse().expect("addr");
    let (status, _, _) = post_json(addr, messages_body("claude-sonnet-4-5", false)).await;
    assert_eq!(status, 200);
    let line = gw.line_containing("ai_gateway::access").await;
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["target"], "ai_gateway::access");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/v1/messages");
    assert_eq!(v["status"], 200);
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["completed"], true);
    assert!(
        v["request_id"]
            .as_str()
            .expect("request id")
            .starts_with("gw_")
    );
    assert!(v["latency_ms"].as_f64().is_some());
}

#[tokio::test]
async fn the_sample_config_runs_a_working_gateway() {
    // examples/gateway.toml as shipped (every key), pointed at the mock upstream.
    let up = MockUpstream::start().await;
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gateway.toml"
    ))
    .expect("sample");
    let edited = sample
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("https://api.anthropic.com", &up.url())
        .replace("${ANTHROPIC_API_KEY}", "${AI_GATEWAY_TEST_KEY}");
    assert_ne!(edited, sample);
    let config = temp_config("sample.toml", &edited);
    // A key minted with the mint_key example: the record on stdout goes to the key file
    // (next to the config), the key itself comes on stderr.
    let minted = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(
            gateway_bin().with_file_name(format!("mint_key{}", std::env::consts::EXE_SUFFIX)),
        )
        .args([
            "--subject",
            "alice",
            "--tenant",
            "acme",
            "--model",
            "replay/*",
        ])
        .env("GATEWAY_KEY_PEPPER", keys::PEPPER)
        .output(),
    )
    .await
    .expect("mint_key in time")
    .expect("mint_key ran");
    assert!(minted.status.success(), "{}", text(&minted.stderr));
    let record = text(&minted.stdout);
    assert!(
        record.contains("[[keys]]") && !record.contains("gwk_"),
        "{record}"
    );
    std::fs::write(config.with_file_name("keys.toml"), &record).expect("key file");
    let key = text(&minted.stderr)
        .lines()
        .find(|l| l.starts_with("gwk_"))
        .expect("the key on stderr")
        .to_owned();

    let mut gw = Running::start_with(
        &config,
        &[
            ("GATEWAY_KEY_PEPPER", keys::PEPPER),
            (
                "GATEWAY_USER_PSEUDONYM_KEY",
                "pseudonym key for the cli test",
            ),
            ("AUDIT_SIGNING_KEY", AUDIT_KEY),
        ],
    )
    .await;
    let addr: std::net::SocketAddr = gw.addr.parse().expect("addr");
    let (status, _, _) = post_json(addr, messages_body("replay/stream_text", true)).await;
    assert_eq!(status, 401, "no key, no entry");
    let mut req = json_request(
        addr,
        "/v1/messages",
        &messages_body("replay/stream_text", true),
    );
    req.headers_mut()
        .insert("x-api-key", key.parse().expect("header"));
    let (status, _, body) = send(req).await;
    assert_eq!(status, 200);
    assert_eq!(parse_sse(&body).last().expect("events").0, "message_stop");
    let seen = up.last();
    assert_eq!(seen.headers["x-api-key"], "sk-test");
    // The vendor sees a pseudonym for alice, never her name or tenant.
    let sent: serde_json::Value = serde_json::from_slice(&seen.body).expect("json");
    let user = sent["metadata"]["user_id"].as_str().expect("user_id");
    assert!(user.starts_with("u_") && !user.contains("alice"), "{user}");
    let line = gw.line_containing("status=200").await;
    assert!(line.contains("model=\"replay/stream_text\""), "{line}");
    // Neither the vendor key nor the caller's key is ever logged.
    for l in gw.drain().await {
        assert!(!l.contains("sk-test") && !l.contains(&key), "{l}");
    }
}

/// The crash test: the example gateway under load from clients that keep every request id
/// they got a complete answer for; `kill -9` mid-load; a restart (which seals the segment
/// left open); the log verifies and every completed request id has its record.
#[tokio::test]
async fn after_kill_9_the_log_verifies_and_every_completed_request_has_its_record() {
    use ai_gateway::audit::SigningKey;
    use http_body_util::BodyExt;
    let up = MockUpstream::start().await;
    let (key, seed) = SigningKey::generate().expect("key");
    let public = key.public_key().clone();
    let dir = tempfile::tempdir().expect("tmp");
    let audit_dir = dir.path().join("audit");
    let config = temp_config(
        "crash.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[upstream.anthropic]\nbase_url = \"{}\"\napi_key = \"${{AI_GATEWAY_TEST_KEY}}\"\n\n[audit]\ndir = \"{}\"\nfsync = \"always\"\nsigning_key = \"${{AUDIT_SIGNING_KEY}}\"\ncheckpoint_every = 50\n",
            up.url(),
            audit_dir.display()
        ),
    );
    let env = [("AUDIT_SIGNING_KEY", seed.as_str())];
    let mut gw = Running::start_with(&config, &env).await;
    let addr: std::net::SocketAddr = gw.addr.parse().expect("addr");
    let completed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let completed = completed.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let http = client();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 2000 {
                i += 1;
                let stream = i % 2 == 0;
                let model = if stream {
                    "replay/stream_text"
                } else {
                    "replay/message_basic"
                };
                let req = json_request(addr, "/v1/messages", &messages_body(model, stream));
                let Ok(Ok(resp)) =
                    tokio::time::timeout(Duration::from_secs(5), http.request(req)).await
                else {
                    continue;
                };
                let id = resp
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let ok = resp.status() == 200;
                let Ok(Ok(body)) =
                    tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await
                else {
                    continue;
                };
                let body = body.to_bytes();
                let whole = if stream {
                    body.windows(12).any(|w| w == b"message_stop")
                } else {
                    body.ends_with(b"}")
                };
                if let (true, true, Some(id)) = (ok, whole, id) {
                    completed.lock().expect("lock").push(format!("{c}:{id}"));
                }
            }
        }));
    }
    // Let the load run, then kill -9 in the middle of it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    gw.child.start_kill().expect("SIGKILL");
    let _ = gw.child.wait().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let completed: Vec<String> = completed
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.split_once(':').expect("id").1.to_owned())
        .collect();
    assert!(
        completed.len() > 20,
        "the load ran: {} completed",
        completed.len()
    );
    eprintln!("{} requests completed before kill -9", completed.len());

    // Restart: the segment left open is sealed (a torn last line, never acknowledged, is cut).
    let _again = Running::start_with(&config, &env).await;
    let report = ai_gateway::audit::verify_dir(&audit_dir, &[public]).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
    assert!(report.segments >= 2);
    let ids: std::collections::HashSet<String> = std::fs::read_dir(&audit_dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .expect("read")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter_map(|v| v["request_id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = completed.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} completed requests without a record: {missing:?}",
        missing.len()
    );
}

#[tokio::test]
async fn the_ratelimit_section_limits_the_example_gateway_through_redis() {
    let redis = redis_server::RedisServer::start();
    limited_by_config(false, &redis.url(), "on Redis (${TEST_REDIS_URL})").await;
}

#[tokio::test]
async fn the_ratelimit_section_limits_the_example_gateway_through_a_redis_cluster() {
    let cluster = redis_server::RedisCluster::start();
    let urls = cluster.urls().join(",");
    limited_by_config(true, &urls, "on Redis Cluster (${TEST_REDIS_URL})").await;
}

async fn limited_by_config(cluster: bool, url: &str, store: &str) {
    let config = temp_config(
        &format!("ratelimit-{cluster}.toml"),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[ratelimit]\nenabled = true\nstore = \"redis\"\n\
             redis_url = \"${{TEST_REDIS_URL}}\"\nredis_cluster = {cluster}\n\n[[ratelimit.limits]]\n\
             name = \"everyone\"\nrequests_per_minute = 2\n\n[[ratelimit.limits]]\n\
             name = \"per-tenant\"\nby = [\"tenant\"]\nrequests_per_minute = 1\n"
        ),
    );
    let gw = Running::start_with(&config, &[("TEST_REDIS_URL", url)]).await;
    let line = gw
        .startup
        .iter()
        .find(|l| l.contains("rate limits:"))
        .expect("a line saying what is limited");
    assert!(
        line.contains(&format!("2 limits, 0 tiers, {store}")),
        "{line}"
    );
    // Without [auth] nobody has a tenant: the gateway says so at start.
    assert!(
        gw.startup.iter().any(|l| l.contains("WARN")
            && l.contains("[\"per-tenant\"]")
            && l.contains("apply to nobody")),
        "{:?}",
        gw.startup
    );
    assert!(
        !line.contains("127.0.0.1"),
        "the Redis URL is not logged: {line}"
    );
    let addr: std::net::SocketAddr = gw.addr.parse().expect("addr");
    for left in ["1", "0"] {
        let (status, headers, _) = post_json(addr, messages_body("claude-sonnet-4-5", false)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["anthropic-ratelimit-requests-remaining"], left);
    }
    let (status, headers, body) = post_json(addr, messages_body("claude-sonnet-4-5", false)).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "30");
    let (kind, message) = error_json(&body);
    assert_eq!(kind, "rate_limit_error");
    assert!(
        message.contains("requests per minute for everyone"),
        "{message}"
    );
}

/// `GET` on the gateway with the admin token.
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header("authorization", "Bearer admin-token-of-the-test")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let (status, _, body) = send(req).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test]
async fn the_budget_section_prices_calls_and_its_spend_survives_a_restart() {
    let state = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ai-gateway-budget-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&state);
    let config = temp_config(
        "budget.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[budget]\nenabled = true\nstate_file = {:?}\n\
             time_zone = \"Europe/Paris\"\nadmin_token = \"${{TEST_ADMIN_TOKEN}}\"\n\n\
             [[budget.budgets]]\nname = \"gateway\"\nby = \"global\"\nusd = \"1.00\"\nwindow = \"monthly\"\n",
            state.to_str().expect("utf8")
        ),
    );
    let env = [("TEST_ADMIN_TOKEN", "admin-token-of-the-test")];
    let mut gw = Running::start_with(&config, &env).await;
    let line = gw
        .startup
        .iter()
        .find(|l| l.contains("budgets:"))
        .expect("a line saying what is budgeted");
    assert!(
        line.contains("1 caps, windows in Europe/Paris, in memory, saved to"),
        "{line}"
    );
    let addr: std::net::SocketAddr = gw.addr.parse().expect("addr");
    let (status, headers, _) = post_json(addr, messages_body("claude-sonnet-4-5", false)).await;
    assert_eq!(status, 200);
    let cost: ai_gateway::budget::Usd = headers["x-gateway-cost-usd"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a dollar amount");
    assert!(cost.nanos() > 0);
    let before = admin_get(addr, "/admin/budgets/global:all").await;
    assert_eq!(before["budgets"][0]["spent_usd"], cost.to_string().as_str());
    // SIGTERM: a graceful shutdown saves the spend.
    let pid = gw.child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), gw.child.wait())
        .await
        .expect("the gateway stops")
        .expect("exit status");
    assert!(exit.success(), "{exit:?}");
    let _ = gw.drain().await;
    assert!(state.exists(), "the spend is saved at shutdown");
    let gw = Running::start_with(&config, &env).await;
    let addr: std::net::SocketAddr = gw.addr.parse().expect("addr");
    let after = admin_get(addr, "/admin/budgets/global:all").await;
    assert_eq!(
        after["budgets"][0]["spent_usd"],
        before["budgets"][0]["spent_usd"]
    );
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn openai_surface_messages_go_to_the_openai_upstream() {
    // An OpenAI-compatible upstream for the OpenAI surface; no Anthropic upstream, so the
    // Anthropic surface is served by the demo.
    let up = MockUpstream::start().await;
    let config = temp_config(
        "openai.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[upstream.openai]\nbase_url = \"{}/v1\"\n",
            up.url()
        ),
    );
    let gw = Running::start(&config).await;
    let addr: std::net::SocketAddr = gw.addr.parse().expect("addr");
    let req = json_request(
        addr,
        "/v1/chat/completions",
        &serde_json::json!({"model": "replay/stream_text", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}),
    );
    let (status, _, body) = send(req).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("chat.completion.chunk") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        content.starts_with("I'm unable to provide real-time weather"),
        "{content}"
    );
    assert_eq!(up.last().uri.path(), "/v1/chat/completions");
    let seen = up.seen().len();
    let (status, _, body) = post_json(addr, messages_body("anything", false)).await;
    assert_eq!(status, 200);
    let m: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(m["type"], "message");
    assert_eq!(
        up.seen().len(),
        seen,
        "the Anthropic surface went to the demo"
    );
}
