//! Runs the official `anthropic` Python SDK tests (`tests/python/`) against the real
//! gateway in front of the mock upstream. `scripts/test.sh` creates the venv; set
//! `AI_GATEWAY_PYTHON` to use another interpreter. Under CI a missing interpreter fails
//! the test instead of skipping it.

mod common;

use common::*;
use std::path::PathBuf;

fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("AI_GATEWAY_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    venv.exists().then_some(venv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_anthropic_sdk_against_the_gateway() {
    let Some(py) = python() else {
        if std::env::var_os("CI").is_some() {
            panic!("no python venv with the SDKs: run scripts/test.sh (it creates .venv)");
        }
        eprintln!("SKIPPED: no .venv with the anthropic SDK; run scripts/test.sh to create it");
        return;
    };
    let up = MockUpstream::start().await;
    let gw = start_gateway(&up.url(), GatewayOpts::default()).await;
    // A second gateway in front of the same upstream, with gateway keys.
    let (key, record) = keys::mint("sdk-user", "acme", &[]);
    let keyed = start_gateway(
        &up.url(),
        GatewayOpts {
            auth: Some(keys::layer(vec![record])),
            ..GatewayOpts::default()
        },
    )
    .await;
    // A third with a tight rate limit: one request per two seconds.
    let policy = ai_gateway::ratelimit::Policy::new().limit(
        ai_gateway::ratelimit::Limit::new("per-caller")
            .by([ai_gateway::ratelimit::KeyPart::Subject])
            .requests(ai_gateway::ratelimit::Rate::new(
                1,
                std::time::Duration::from_secs(2),
            )),
    );
    let limited = start_gateway(
        &up.url(),
        GatewayOpts {
            ratelimit: Some(ai_gateway::ratelimit::RateLimitLayer::new(policy)),
            ..GatewayOpts::default()
        },
    )
    .await;
    // A fourth with a $0.001 budget that cuts streams off. The mock's model names are
    // priced as Claude Sonnet 4 ($3 / $15 per million), what the recordings name.
    let mut prices = ai_gateway::budget::PriceTable::defaults();
    prices
        .set_unknown(ai_gateway::budget::UnknownModel::PriceAs(
            "claude-sonnet-4-0".into(),
        ))
        .expect("listed");
    let budget = ai_gateway::budget::BudgetLayer::new(
        ai_gateway::budget::BudgetPolicy::new(vec![
            ai_gateway::budget::Budget::new(
                "sdk-budget",
                ai_gateway::budget::Scope::Global,
                "0.001".parse().expect("usd"),
                ai_gateway::budget::Period::Monthly,
            )
            .cut_off(true),
        ]),
        prices,
    );
    let budgeted = start_gateway(
        &up.url(),
        GatewayOpts {
            budget: Some(budget),
            ..GatewayOpts::default()
        },
    )
    .await;
    // A fifth with redaction, in front of its own upstream so what reached it can be
    // checked after the SDK ran (the mock answers `echo/tokens` with the tokens it got).
    let redact_up = MockUpstream::start().await;
    let redacting = start_gateway(
        &redact_up.url(),
        GatewayOpts {
            redact: Some(ai_gateway::redact::RedactLayer::new(
                ai_gateway::redact::Redactor::new(ai_gateway::redact::RedactPolicy::default()),
            )),
            ..GatewayOpts::default()
        },
    )
    .await;
    // A sixth with output inspection (ai-redact's detectors over the answer): the mock's
    // `secret/<n>` answers leak a key split over n deltas.
    let inspecting = start_gateway(
        &up.url(),
        GatewayOpts {
            inspect: Some(
                ai_gateway::inspect::InspectLayer::new(
                    ai_gateway::inspect::InspectPolicy::default(),
                )
                .classifier(std::sync::Arc::new(
                    ai_gateway::redact::DetectorClassifier::new(
                        ai_gateway::redact::Detectors::builtin(),
                    ),
                )),
            ),
            ..GatewayOpts::default()
        },
    )
    .await;
    // A seventh in front of an OpenAI-compatible upstream (the mock's chat completions).
    let via_openai = serve_service(
        ai_gateway::provider::OpenAiProvider::self_hosted(format!("{}/v1", up.url()))
            .build()
            .expect("provider"),
        GatewayOpts::default(),
    )
    .await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let out = tokio::process::Command::new(&py)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "console_output_style=classic",
        ])
        .arg(&dir)
        .env("GATEWAY_URL", format!("http://{gw}"))
        .env("GATEWAY_AUTH_URL", format!("http://{keyed}"))
        .env("GATEWAY_KEY", &key)
        .env("GATEWAY_LIMITED_URL", format!("http://{limited}"))
        .env("GATEWAY_BUDGET_URL", format!("http://{budgeted}"))
        .env("GATEWAY_REDACT_URL", format!("http://{redacting}"))
        .env("GATEWAY_INSPECT_URL", format!("http://{inspecting}"))
        .env(
            "GATEWAY_OPENAI_UPSTREAM_URL",
            format!("http://{via_openai}"),
        )
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), out)
        .await
        .expect("pytest finished in time")
        .expect("pytest ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK tests failed:\n{stdout}");
    assert!(stdout.contains(" passed"), "pytest ran tests");
    assert!(!stdout.contains("skipped"), "no SDK test was skipped");
    // What the SDK sent through the redacting gateway never reached its upstream.
    let seen = redact_up.seen();
    assert!(
        seen.len() >= 2,
        "the redaction SDK tests reached the upstream"
    );
    for s in seen {
        let body = String::from_utf8_lossy(&s.body);
        for value in [
            "maria.lopez@north-wind.io",
            "+44 20 7946 0958",
            "Maria Lopez",
        ] {
            assert!(
                !body.contains(value),
                "{value} reached the upstream: {body}"
            );
        }
        assert!(body.contains("<EMAIL_1>"), "{body}");
    }
}
