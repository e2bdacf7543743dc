//! The local input-token estimate (`ai_core::tokens::estimate_request`, what a request
//! reserves) against the real `usage` of recorded calls: the request bodies that produced
//! the fixtures, from the same public cassettes (`tests/data/estimator/*.json`, each
//! naming its source). The table printed here is the one in docs/ai-ratelimit.md.

use ai_core::MessagesRequest;

struct Row {
    name: String,
    chars: usize,
    estimate: u64,
    real: u64,
}

fn rows() -> Vec<Row> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/estimator");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("estimator data")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json");
            let mut request = v["request"].clone();
            // Bedrock bodies name the model in the URL, not the body.
            if request.get("model").is_none() {
                request["model"] = "bedrock".into();
            }
            let chars = serde_json::to_string(&request).expect("json").len();
            let req: MessagesRequest = serde_json::from_value(request).expect("a Messages request");
            let u = &v["usage"];
            let n = |k: &str| u.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            Row {
                name: p.file_stem().expect("stem").to_string_lossy().into_owned(),
                chars,
                estimate: ai_core::tokens::estimate_request(&req),
                real: n("input_tokens")
                    + n("cache_creation_input_tokens")
                    + n("cache_read_input_tokens"),
            }
        })
        .collect()
}

#[test]
fn the_estimate_stays_within_its_documented_error() {
    let rows = rows();
    assert!(rows.len() >= 4, "estimator data present");
    println!("| request | JSON chars | estimate | real input | estimate / real |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        let ratio = r.estimate as f64 / r.real as f64;
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            r.name, r.chars, r.estimate, r.real, ratio
        );
    }
    for r in &rows {
        // Documented: within 40 tokens or 50 %, whichever is larger.
        let bound = (r.real / 2).max(40);
        assert!(
            r.estimate.abs_diff(r.real) <= bound,
            "{}: estimate {} vs real {}",
            r.name,
            r.estimate,
            r.real
        );
    }
}
