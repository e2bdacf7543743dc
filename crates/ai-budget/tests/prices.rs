//! Exact cost of recorded usages, hand-computed from the published prices per million
//! tokens (sources in `data/prices.toml`).

use ai_budget::{PriceTable, Usd};
use ai_core::{AiBody, Completion, MessagesResponse, Usage};
use futures_util::StreamExt;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// Dollars written as the vendor writes them, to nano-dollars.
fn usd(s: &str) -> Usd {
    s.parse().expect("amount")
}

fn priced(model: &str, usage: &Usage) -> Usd {
    PriceTable::defaults()
        .price(model)
        .expect("listed")
        .cost(usage)
}

#[test]
fn a_recorded_message_with_cache_writes_and_reads() {
    // claude-sonnet-4-5-20250929: $3 input, $3.75 5-minute write, $0.30 read, $15 output.
    let m: MessagesResponse =
        serde_json::from_slice(&data("message_cache_usage.json")).expect("message");
    // 3 x 3 + 418 x 3.75 + 1,111 x 0.30 + 33 x 15 = 9 + 1,567.5 + 333.3 + 495
    // = 2,404.8 micro-dollars
    assert_eq!(priced(&m.model, &m.usage), usd("0.0024048"));
}

#[test]
fn recorded_bedrock_cache_write_and_read() {
    // claude-3-5-haiku-20241022: $0.80 input, $1 5-minute write, $0.08 read, $4 output.
    let write: MessagesResponse =
        serde_json::from_slice(&data("invoke_cache_write.json")).expect("message");
    // 4 x 0.80 + 18,131 x 1 + 50 x 4 = 18,334.2 micro-dollars
    assert_eq!(priced(&write.model, &write.usage), usd("0.0183342"));
    let read: MessagesResponse =
        serde_json::from_slice(&data("invoke_cache_read.json")).expect("message");
    // 4 x 0.80 + 18,131 x 0.08 + 50 x 4 = 1,653.68 micro-dollars
    assert_eq!(priced(&read.model, &read.usage), usd("0.00165368"));
}

#[tokio::test]
async fn a_recorded_stream_is_priced_from_its_merged_usage() {
    // claude-sonnet-4-20250514 (extended thinking): 43 input, 282 output (thinking
    // included) at $3 / $15: 129 + 4,230 = 4,359 micro-dollars.
    let items = ai_core::sse::parse_all(&data("stream_thinking.sse"));
    let (tx, rx) = std::sync::mpsc::channel::<Completion>();
    let body = AiBody::from_events(futures_util::stream::iter(items)).on_complete(move |c| {
        let _ = tx.send(c);
    });
    let AiBody::Events(mut s) = body else {
        panic!("a stream")
    };
    while s.next().await.is_some() {}
    let c = rx.recv().expect("completion");
    let model = c.model.clone().expect("model");
    let mut usage = c.usage.clone();
    usage.output_tokens = Some(c.output_tokens());
    assert_eq!(priced(&model, &usage), usd("0.004359"));
}

fn usage(json: serde_json::Value) -> Usage {
    serde_json::from_value(json).expect("usage")
}

#[test]
fn one_hour_writes_are_priced_apart_from_five_minute_ones() {
    // claude-opus-4-6: $6.25 5-minute write, $10 1-hour write.
    let u = usage(serde_json::json!({
        "input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 1500,
        "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000}
    }));
    // 500 x 6.25 + 1,000 x 10 = 13,125 micro-dollars
    assert_eq!(priced("claude-opus-4-6", &u), usd("0.013125"));
    // Without the breakdown every write is priced as a 5-minute one.
    let u = usage(serde_json::json!({"cache_creation_input_tokens": 1500}));
    assert_eq!(priced("claude-opus-4-6", &u), usd("0.009375"));
}

#[test]
fn the_long_context_tier_applies_to_every_token_over_200k_input() {
    // claude-sonnet-4-5 over 200K input: $6 input, $0.60 read, $22.50 output.
    let over = usage(serde_json::json!({
        "input_tokens": 150000, "cache_read_input_tokens": 60000, "output_tokens": 1000
    }));
    // 150,000 x 6 + 60,000 x 0.60 + 1,000 x 22.50 = 958,500 micro-dollars
    assert_eq!(priced("claude-sonnet-4-5", &over), usd("0.9585"));
    let at = usage(serde_json::json!({
        "input_tokens": 140000, "cache_read_input_tokens": 60000, "output_tokens": 1000
    }));
    // exactly 200,000: standard, 140,000 x 3 + 60,000 x 0.30 + 1,000 x 15
    assert_eq!(priced("claude-sonnet-4-5", &at), usd("0.453"));
    // Claude Sonnet 4.6 has the 1M window at standard prices.
    assert_eq!(priced("claude-sonnet-4-6", &over), usd("0.483"));
}

#[test]
fn batch_us_inference_and_web_search() {
    let m: MessagesResponse =
        serde_json::from_slice(&data("message_cache_usage.json")).expect("message");
    let mut u = m.usage.clone();
    u.extra.insert(
        "service_tier",
        ai_core::wire::RawJson::from_string("\"batch\"".to_owned()).expect("json"),
    );
    assert_eq!(priced(&m.model, &u), usd("0.0012024"), "half of 2,404.8");
    let geo = usage(serde_json::json!({"input_tokens": 1000, "inference_geo": "us"}));
    assert_eq!(
        priced("claude-opus-4-6", &geo),
        usd("0.0055"),
        "1.1 x 1,000 x $5"
    );
    assert_eq!(
        priced("claude-opus-4-5", &geo),
        usd("0.005"),
        "older models: no uplift"
    );
    let search = usage(serde_json::json!({
        "input_tokens": 1000, "server_tool_use": {"web_search_requests": 3}
    }));
    assert_eq!(
        priced("claude-sonnet-4-5", &search),
        usd("0.033"),
        "$0.003 + 3 x $0.01"
    );
}

#[test]
fn table_figures_are_used_where_multipliers_do_not_hold() {
    // Claude Haiku 3: $0.30 write (not 1.25 x $0.25), $0.03 read (not 0.1 x $0.25).
    let u = usage(serde_json::json!({
        "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 1000
    }));
    assert_eq!(priced("claude-3-haiku-20240307", &u), usd("0.00033"));
    // OpenAI: cached input at its own price, no write price.
    let u = usage(serde_json::json!({
        "input_tokens": 1000, "cache_read_input_tokens": 1000, "output_tokens": 100
    }));
    // gpt-4o: 1,000 x 2.50 + 1,000 x 1.25 + 100 x 10 = 4,750 micro-dollars
    assert_eq!(priced("gpt-4o", &u), usd("0.00475"));
}

#[test]
fn overrides_from_config_replace_a_model_and_add_new_ones() {
    let mut t = PriceTable::defaults();
    t.merge_toml(
        r#"
[models."claude-sonnet-4-5"]
aliases = ["claude-sonnet-4-5-20250929"]
input = 2.5
output = "12"
source = "https://example.com/our-negotiated-rates"
as_of = "2026-12-01 contract"

[models."llama-3.3-70b"]
input = "0.10"
output = "0.30"
source = "self-hosted: GPU hours per token"
as_of = "2026-12"
"#,
    )
    .expect("toml");
    let u = usage(serde_json::json!({"input_tokens": 1000, "output_tokens": 1000}));
    assert_eq!(
        t.price("claude-sonnet-4-5-20250929")
            .expect("listed")
            .cost(&u),
        usd("0.0145")
    );
    assert_eq!(
        t.price("llama-3.3-70b").expect("listed").cost(&u),
        usd("0.0004")
    );
    // Replacing an id without its aliases drops them: no alias keeps the old price.
    t.merge_toml("[models.\"claude-haiku-4-5\"]\ninput = 2\noutput = 8\n")
        .expect("toml");
    assert!(t.get("claude-haiku-4-5-20251001").is_none());
    assert_eq!(
        t.price("claude-haiku-4-5").expect("listed").cost(&u),
        usd("0.01")
    );
    assert!(
        t.merge_toml("[models.x]\ninput = \"1.0000001\"\noutput = 1")
            .is_err()
    );
    assert!(
        t.merge_toml("[models.x]\ninput = 1\noutput = 1\ntypo = 2")
            .is_err()
    );
}
