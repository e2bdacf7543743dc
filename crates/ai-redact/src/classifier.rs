//! The detectors as an [`ai_core::Classifier`], for layers that inspect other text (the
//! model's answer in `ai-sse-inspect`) without depending on this crate.

use crate::detect::{Detectors, Finding as Hit};
use ai_core::DataCategory;
use ai_core::classify::{Classifier, Finding};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// [`Detectors`] behind the [`Classifier`] trait: each finding's `kind` is its data
/// category (`pii`, `phi`, `pci`, `secret`, `credential`) and its `rule` the detector's
/// label (`EMAIL`, `AWS_KEY_ID`). Redaction tokens (`<EMAIL_1>`) are not findings:
/// they are what this crate put in the request, and a model repeating them leaks nothing.
///
/// ```
/// use ai_core::Classifier;
/// use ai_redact::{DetectorClassifier, Detectors};
///
/// let c = DetectorClassifier::new(Detectors::builtin());
/// let mut out = Vec::new();
/// c.classify("key AKIAZ7QW3RT5YU2IOPLK here", &mut out);
/// assert_eq!((&*out[0].kind, &*out[0].rule), ("credential", "AWS_KEY_ID"));
/// ```
pub struct DetectorClassifier {
    detectors: Arc<Detectors>,
    kinds: [Arc<str>; 5],
    rules: Vec<Arc<str>>,
}

impl fmt::Debug for DetectorClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectorClassifier")
            .field("detectors", &self.rules.len())
            .finish()
    }
}

/// Per-thread buffers for a scan: findings, and token spans.
type Scratch = (Vec<Hit>, Vec<(usize, usize)>);

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new((Vec::new(), Vec::new())) };
}

impl DetectorClassifier {
    /// A classifier running `detectors`.
    pub fn new(detectors: Detectors) -> Self {
        Self::shared(Arc::new(detectors))
    }

    /// A classifier running detectors shared with other users (a [`Redactor`](crate::Redactor)).
    pub fn shared(detectors: Arc<Detectors>) -> Self {
        let rules = detectors.specs().iter().map(|s| s.label.clone()).collect();
        DetectorClassifier {
            detectors,
            kinds: DataCategory::ALL.map(|c| Arc::from(c.as_str())),
            rules,
        }
    }

    fn kind(&self, c: DataCategory) -> &Arc<str> {
        let i = DataCategory::ALL.iter().position(|x| *x == c).unwrap_or(0);
        &self.kinds[i]
    }
}

impl Classifier for DetectorClassifier {
    fn name(&self) -> &str {
        "detectors"
    }

    fn classify(&self, text: &str, out: &mut Vec<Finding>) {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (hits, tokens) = &mut *s;
            hits.clear();
            tokens.clear();
            self.detectors.scan(text, hits, tokens);
            for h in hits.iter() {
                out.push(Finding::new(
                    h.start,
                    h.end,
                    self.kind(h.category),
                    &self.rules[h.detector],
                ));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_carry_category_and_label_and_skip_tokens() {
        let c = DetectorClassifier::new(Detectors::builtin());
        let mut out = Vec::new();
        let text = "Write to jane.doe@acme.io or <EMAIL_1>; card 4111 1111 1111 1111.";
        c.classify(text, &mut out);
        let got: Vec<(&str, &str, &str)> = out
            .iter()
            .map(|f| (&*f.kind, &*f.rule, &text[f.range()]))
            .collect();
        assert_eq!(
            got,
            [
                ("pii", "EMAIL", "jane.doe@acme.io"),
                ("pci", "CARD", "4111 1111 1111 1111")
            ]
        );
        out.clear();
        c.classify("nothing to see", &mut out);
        assert!(out.is_empty());
    }
}
