//! ai-redact: scan throughput over ~1 MB of clean prose and code (this repository's docs
//! and sources) and of PII-dense text (the labelled corpus), against the same detectors
//! run as separate regexes (the naive way) in the same run; rehydration per streamed
//! delta; the whole layer per 2 KB request against the same inner service without it.

#![allow(missing_docs)]

use ai_gateway::core::MessagesRequest;
use ai_gateway::core::test_util::{MockProvider, Script};
use ai_gateway::redact::{
    Detectors, NaiveDetectors, RedactLayer, RedactPolicy, Redactor, StreamRehydrator, Vault, detect,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;
use tower::{Layer, ServiceExt};

const REQUEST: &[u8] = include_bytes!("data/request_2k.json");
const TARGET: usize = 1 << 20;

fn read_tree(dir: &Path, ext: &[&str], out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            read_tree(&p, ext, out);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ext.contains(&e))
        {
            if let Ok(s) = std::fs::read_to_string(&p) {
                out.push_str(&s);
            }
        }
    }
}

fn to_size(mut s: String) -> String {
    let seed = s.clone();
    while s.len() < TARGET {
        s.push_str(&seed);
    }
    let mut end = TARGET;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// Prose and code without personal data: the docs and the sources of the crates that
/// carry no test values.
fn clean() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = String::new();
    read_tree(&root.join("docs"), &["md"], &mut s);
    for c in ["ai-core", "ai-provider", "ai-ratelimit"] {
        read_tree(&root.join("crates").join(c).join("src"), &["rs"], &mut s);
    }
    to_size(s)
}

/// The labelled corpus with its markup removed: values every few lines.
fn dense() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ai-redact/tests/corpus");
    let mut raw = String::new();
    read_tree(&dir, &["txt"], &mut raw);
    let mut s = String::with_capacity(raw.len());
    let mut rest = raw.as_str();
    while let Some(i) = rest.find("[[") {
        s.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let bar = after.find('|').unwrap_or(0);
        let end = after.find("]]").unwrap_or(after.len());
        s.push_str(&after[(bar + 1).min(end)..end]);
        rest = after.get(end + 2..).unwrap_or("");
    }
    s.push_str(rest);
    to_size(s)
}

fn scan(c: &mut Criterion) {
    let d = Detectors::builtin();
    let naive = NaiveDetectors::new(&detect::builtin()).expect("naive");
    let mut g = c.benchmark_group("redact/scan");
    for (name, text) in [("clean_1mb", clean()), ("dense_1mb", dense())] {
        let (mut found, mut tokens) = (Vec::new(), Vec::new());
        d.scan(&text, &mut found, &mut tokens);
        eprintln!("{name}: {} bytes, {} findings", text.len(), found.len());
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("{name}/one_pass"), |b| {
            b.iter(|| {
                found.clear();
                tokens.clear();
                d.scan(&text, &mut found, &mut tokens);
                found.len()
            })
        });
        g.bench_function(format!("{name}/naive_separate_regexes"), |b| {
            b.iter(|| naive.count(&text))
        });
    }
    g.finish();
    // Where the time goes: each trigger group alone on the clean text.
    let text = clean();
    let mut g = c.benchmark_group("redact/scan_by_trigger_clean_1mb");
    g.throughput(Throughput::Bytes(text.len() as u64));
    fn kind(t: &detect::Trigger) -> &'static str {
        match t {
            detect::Trigger::Digit => "digits",
            detect::Trigger::Prefix {
                case_insensitive: true,
                ..
            } => "keywords",
            detect::Trigger::Prefix { .. } => "prefixes",
            detect::Trigger::Infix { .. } => "infix",
            _ => "full",
        }
    }
    for name in ["digits", "prefixes", "keywords", "infix"] {
        let specs: Vec<_> = detect::builtin()
            .into_iter()
            .filter(|s| kind(&s.trigger) == name)
            .collect();
        let d = Detectors::new(specs).expect("subset");
        let (mut found, mut tokens) = (Vec::new(), Vec::new());
        g.bench_function(name, |b| {
            b.iter(|| {
                found.clear();
                tokens.clear();
                d.scan(&text, &mut found, &mut tokens);
                found.len()
            })
        });
    }
    g.finish();
}

fn rehydrate(c: &mut Criterion) {
    let mut vault = Vault::new();
    vault.token("PERSON", "Ann Lee");
    vault.token("EMAIL", "ann.lee@acme.io");
    let plain = "The quarterly numbers look fine, and the team will meet on Tuesday ";
    let with_token = "Please forward this to <EMAIL_1> before the call with <PERSON_1>.";
    let mut g = c.benchmark_group("redact/rehydrate_delta");
    g.bench_function("plain_delta", |b| {
        let mut r = StreamRehydrator::new(false);
        b.iter(|| r.push(&vault, plain))
    });
    g.bench_function("delta_with_tokens", |b| {
        let mut r = StreamRehydrator::new(false);
        b.iter(|| r.push(&vault, with_token))
    });
    g.bench_function("token_split_over_deltas", |b| {
        let mut r = StreamRehydrator::new(false);
        b.iter(|| {
            let mut n = r.push(&vault, "write to <EMA").len();
            n += r.push(&vault, "IL_1> now").len();
            n
        })
    });
    g.finish();
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let body: MessagesRequest = serde_json::from_slice(REQUEST).expect("request");
    let mock = MockProvider::always(Script::text("Done.")).without_recording();
    let redacting = RedactLayer::new(Redactor::new(RedactPolicy::default())).layer(mock.clone());
    let mut g = c.benchmark_group("redact/layer_2k_request");
    g.bench_function("without", |b| {
        b.to_async(&rt).iter_batched(
            || http::Request::new(body.clone()),
            |req| mock.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("with_redact", |b| {
        b.to_async(&rt).iter_batched(
            || http::Request::new(body.clone()),
            |req| redacting.clone().oneshot(req),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, scan, rehydrate, layer);
criterion_main!(benches);
