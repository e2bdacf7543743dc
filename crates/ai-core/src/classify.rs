//! The classifier trait: something that finds things in text.
//!
//! Output inspection runs classifiers over a model's answer as it streams; request-side
//! layers may run them over prompts. The trait lives here so that a detector from one
//! crate (the personal-data detectors of `ai-redact`) can be plugged into another
//! (`ai-sse-inspect`) without either depending on the other, and so that users can write
//! their own.
//!
//! A classifier reports [`Finding`]s: a byte range, a `kind` (what the policy is keyed
//! by, e.g. `pii`, `secret`, `system_prompt`) and a `rule` (which detector, e.g.
//! `EMAIL`). What to do about a finding is the caller's policy, not the classifier's.
//!
//! ```
//! use ai_core::classify::{Classifier, Finding};
//! use std::sync::Arc;
//!
//! /// Finds the word "classified", in any case.
//! struct Word { kind: Arc<str>, rule: Arc<str> }
//!
//! impl Classifier for Word {
//!     fn name(&self) -> &str { "word" }
//!     fn classify(&self, text: &str, out: &mut Vec<Finding>) {
//!         let lower = text.to_ascii_lowercase();
//!         for (start, m) in lower.match_indices("classified") {
//!             out.push(Finding::new(start, start + m.len(), &self.kind, &self.rule));
//!         }
//!     }
//! }
//!
//! let c = Word { kind: Arc::from("deny_list"), rule: Arc::from("classified") };
//! let mut out = Vec::new();
//! c.classify("This is CLASSIFIED.", &mut out);
//! assert_eq!((out[0].start, out[0].end), (8, 18));
//! ```

use crate::MessagesRequest;
use std::fmt;
use std::sync::Arc;

/// One thing a classifier found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Start (byte offset into the text, a char boundary).
    pub start: usize,
    /// End (exclusive, a char boundary).
    pub end: usize,
    /// What the policy is keyed by and what the reason code names: a data category
    /// (`pii`, `phi`, `pci`, `secret`, `credential`), `system_prompt`, `deny_list`, or a
    /// custom classifier's own kind. ASCII letters, digits and `_`.
    pub kind: Arc<str>,
    /// The rule that matched, for the audit record (a detector label such as `EMAIL`, a
    /// deny-list phrase's index). Never the matched text.
    pub rule: Arc<str>,
}

impl Finding {
    /// A finding over `start..end`.
    pub fn new(start: usize, end: usize, kind: &Arc<str>, rule: &Arc<str>) -> Self {
        Finding {
            start,
            end,
            kind: kind.clone(),
            rule: rule.clone(),
        }
    }

    /// The byte range.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// What a classifier does for one request (see [`Classifier::for_request`]).
pub enum Bound {
    /// Use the classifier as it is.
    Same,
    /// Nothing to check in this request (e.g. a system-prompt leak check on a request
    /// without a system prompt).
    Skip,
    /// Use this request-specific classifier instead.
    With(Arc<dyn Classifier>),
}

impl fmt::Debug for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Same => f.write_str("Same"),
            Bound::Skip => f.write_str("Skip"),
            Bound::With(c) => f.debug_tuple("With").field(&c.name()).finish(),
        }
    }
}

/// Finds things in text.
///
/// `classify` is called often (on every delta of a streamed answer, over a window of a
/// few hundred bytes), so it should not allocate when it finds nothing. Findings must be
/// within `text`, on char boundaries; their order does not matter.
pub trait Classifier: Send + Sync + 'static {
    /// A short name for logs and metrics, e.g. `detectors`, `deny_list`.
    fn name(&self) -> &str;

    /// Adds what `text` holds to `out`.
    fn classify(&self, text: &str, out: &mut Vec<Finding>);

    /// How far back a finding reaches: `Some(n)` promises that every finding, with all
    /// the text that decides it (a word boundary, a cue word), lies within the `n` bytes
    /// before the finding's end. A caller classifying a text that grows at its end (a
    /// streamed answer) then rescans only the tail where a new finding can be: for a
    /// deny-list that is its longest phrase plus a character, against a window of
    /// hundreds of bytes. `None` (the default): no bound, the whole text is rescanned.
    fn lookback(&self) -> Option<usize> {
        None
    }

    /// Called once per request before its answer is classified: a classifier that
    /// depends on the request (the system prompt, the caller) returns a bound copy.
    /// The default uses the classifier as it is.
    fn for_request(&self, req: &MessagesRequest) -> Bound {
        let _ = req;
        Bound::Same
    }
}

impl fmt::Debug for dyn Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("name", &self.name())
            .finish()
    }
}

/// Binds `classifiers` to `req`: the ones that apply, request-specific where they asked.
pub fn bind_all(
    classifiers: &[Arc<dyn Classifier>],
    req: &MessagesRequest,
) -> Vec<Arc<dyn Classifier>> {
    let mut out = Vec::with_capacity(classifiers.len());
    for c in classifiers {
        match c.for_request(req) {
            Bound::Same => out.push(c.clone()),
            Bound::Skip => {}
            Bound::With(b) => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Digits;
    impl Classifier for Digits {
        fn name(&self) -> &str {
            "digits"
        }
        fn classify(&self, text: &str, out: &mut Vec<Finding>) {
            let kind: Arc<str> = Arc::from("pii");
            let rule: Arc<str> = Arc::from("DIGITS");
            let b = text.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i].is_ascii_digit() {
                    let s = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    out.push(Finding::new(s, i, &kind, &rule));
                } else {
                    i += 1;
                }
            }
        }
    }

    struct OnlyWithSystem;
    impl Classifier for OnlyWithSystem {
        fn name(&self) -> &str {
            "system"
        }
        fn classify(&self, _: &str, _: &mut Vec<Finding>) {}
        fn for_request(&self, req: &MessagesRequest) -> Bound {
            match &req.system {
                None => Bound::Skip,
                Some(_) => Bound::With(Arc::new(Digits)),
            }
        }
    }

    #[test]
    fn binding_keeps_skips_and_replaces() {
        let all: Vec<Arc<dyn Classifier>> = vec![Arc::new(Digits), Arc::new(OnlyWithSystem)];
        let mut req = MessagesRequest::default();
        let bound = bind_all(&all, &req);
        assert_eq!(bound.len(), 1);
        assert_eq!(bound[0].name(), "digits");
        req.system = Some(crate::Content::Text("be brief".into()));
        let bound = bind_all(&all, &req);
        assert_eq!(
            bound.iter().map(|c| c.name()).collect::<Vec<_>>(),
            ["digits", "digits"]
        );
        let mut out = Vec::new();
        bound[1].classify("call 555 now", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].range(), 5..8);
        assert_eq!(format!("{:?}", bound[0]), "Classifier { name: \"digits\" }");
    }
}
