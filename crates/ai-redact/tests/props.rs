//! Properties: rehydrate(tokenize(x)) == x for any text and any chunking of the reply,
//! and redaction never changes text outside findings.

use ai_redact::{Action, Detectors, RedactPolicy, Redactor, StreamRehydrator, Vault};
use proptest::prelude::*;
use std::sync::LazyLock;

// Compiled once: building the automata per case would dominate the run.
static TOKENIZE: LazyLock<Redactor> =
    LazyLock::new(|| Redactor::new(RedactPolicy::all(Action::Tokenize)));
static REDACT: LazyLock<Redactor> =
    LazyLock::new(|| Redactor::new(RedactPolicy::all(Action::Redact)));

/// Text that mixes prose, separators, look-alike token shapes and real values.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z ]{1,12}",
        "[ .,:;\n<>_]{1,3}",
        Just("jane.doe@acme.io".to_owned()),
        Just("+1 415 555 2671".to_owned()),
        Just("4111 1111 1111 1111".to_owned()),
        Just("Dr. Ann Lee".to_owned()),
        Just("ssn 536-22-8726".to_owned()),
        Just("<EMAIL_1>".to_owned()),
        Just("<PERSON_".to_owned()),
        Just("password = hZ8#kq2LmN4vQ9".to_owned()),
        Just("ghp_0123456789abcdefghijABCDEFGHIJ012345".to_owned()),
        "[0-9]{1,16}",
        "\\PC{1,4}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn chunked(s: &str, cuts: &[usize]) -> Vec<String> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| c % (s.len() + 1))
        .filter(|c| s.is_char_boundary(*c))
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(s[last..p].to_owned());
        last = p;
    }
    out.push(s[last..].to_owned());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rehydrate_of_tokenize_is_identity_for_any_chunking(x in text(), cuts in prop::collection::vec(0usize..4096, 0..12)) {
        let r = &*TOKENIZE;
        let mut vault = Vault::new();
        let tokenized = r.transform(&x, &mut vault);
        prop_assert_eq!(vault.rehydrate(&tokenized, false), x.as_str());
        let mut s = StreamRehydrator::new(false);
        let mut out = String::new();
        for piece in chunked(&tokenized, &cuts) {
            out.push_str(&s.push(&vault, &piece));
        }
        out.push_str(&s.finish(&vault));
        prop_assert_eq!(out, x);
    }

    #[test]
    fn redaction_changes_nothing_outside_findings(x in text()) {
        let r = &*REDACT;
        let d: &Detectors = r.detectors();
        let (mut found, mut tokens) = (Vec::new(), Vec::new());
        d.scan(&x, &mut found, &mut tokens);
        let mut vault = Vault::new();
        let out = r.transform(&x, &mut vault);
        // Rebuild the expected text: the gaps between findings verbatim, each finding
        // replaced by its label.
        let mut expected = String::new();
        let mut at = 0;
        for f in &found {
            prop_assert!(f.start >= at, "findings are ordered and disjoint");
            expected.push_str(&x[at..f.start]);
            expected.push('[');
            expected.push_str(&d.specs()[f.detector].label);
            expected.push(']');
            at = f.end;
        }
        expected.push_str(&x[at..]);
        prop_assert_eq!(out, expected);
    }
}
