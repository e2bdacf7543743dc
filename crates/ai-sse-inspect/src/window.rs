//! The sliding window over one content block's text.
//!
//! The window holds back the last `hold` bytes of the block and keeps up to
//! [`CONTEXT_BYTES`](crate::policy::CONTEXT_BYTES) of text already forwarded in front of
//! them. On every delta the classifiers run over context + held text; then everything
//! older than the last `hold` bytes is released, since a finding no longer than the
//! window cannot reach back into it.
//!
//! A finding that touches the end of the buffer may still grow (`bob@example.co` before
//! the `m` arrives), so it is acted on only once a byte follows it, or at block stop.

use crate::policy::{Action, CONTEXT_BYTES, InspectPolicy};
use ai_core::classify::{Classifier, Finding};
use std::sync::Arc;

/// What the window needs from the stream to run.
pub(crate) struct Env<'a> {
    pub(crate) classifiers: &'a [Arc<dyn Classifier>],
    pub(crate) policy: &'a InspectPolicy,
    pub(crate) findings: &'a mut Vec<Finding>,
    /// Told of every finding acted on without a block: (action, finding, offset in the
    /// block's output text).
    pub(crate) on_finding: &'a mut dyn FnMut(Action, &Finding, u64),
}

/// A finding that stops the answer.
#[derive(Debug)]
pub(crate) struct Cut {
    pub(crate) finding: Finding,
    /// Its offset in the block's output text.
    pub(crate) offset: u64,
}

#[derive(Debug)]
pub(crate) struct TextWindow {
    /// Context (already forwarded) followed by held text.
    buf: String,
    /// `buf[..released]` has been forwarded.
    released: usize,
    /// Findings ending at or before this were acted on.
    settled: usize,
    /// Bytes of output text dropped from the front of `buf`.
    base: u64,
    /// `buf[..scanned]` was classified at the last step.
    scanned: usize,
    hold: usize,
    /// In thinking, `redact` blocks (edited thinking fails its signature).
    redact_blocks: bool,
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

impl TextWindow {
    pub(crate) fn new(hold: usize, redact_blocks: bool) -> Self {
        TextWindow {
            buf: String::new(),
            released: 0,
            settled: 0,
            base: 0,
            scanned: 0,
            hold,
            redact_blocks,
        }
    }

    /// Bytes held back.
    pub(crate) fn held(&self) -> usize {
        self.buf.len() - self.released
    }

    /// Bytes kept in all (context and held).
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.buf.capacity()
    }

    /// Takes a delta's text: on `Ok`, `text` is replaced by what may now be forwarded
    /// (possibly nothing); on `Err`, by the text before the finding that stops the answer.
    pub(crate) fn push(&mut self, text: &mut String, env: &mut Env<'_>) -> Result<(), Cut> {
        if text.is_empty() {
            return Ok(());
        }
        self.buf.push_str(text);
        self.step(false, text, env)
    }

    /// The block ended: everything held is checked for the last time and released.
    pub(crate) fn finish(&mut self, out: &mut String, env: &mut Env<'_>) -> Result<(), Cut> {
        out.clear();
        if self.held() == 0 {
            return Ok(());
        }
        self.step(true, out, env)
    }

    fn step(&mut self, last: bool, out: &mut String, env: &mut Env<'_>) -> Result<(), Cut> {
        let findings = &mut *env.findings;
        findings.clear();
        for c in env.classifiers {
            // A classifier with a bounded reach rescans only the tail where a new
            // finding (or one that waited for the next byte) can be.
            let from = match c.lookback() {
                Some(n) => floor_boundary(&self.buf, self.scanned.saturating_sub(n)),
                None => 0,
            };
            let first = findings.len();
            c.classify(&self.buf[from..], findings);
            if from > 0 {
                for f in &mut findings[first..] {
                    f.start += from;
                    f.end += from;
                }
                // One that ends in text the last step saw was judged then, with all its
                // context; here it may be an artefact of the cut (`classified` inside
                // `declassified`).
                let scanned = self.scanned;
                let mut keep = first;
                for i in first..findings.len() {
                    if findings[i].end >= scanned {
                        findings.swap(keep, i);
                        keep += 1;
                    }
                }
                findings.truncate(keep);
            }
        }
        if !findings.is_empty() {
            self.act(last, out, env)?;
        }
        let keep_from = if last {
            self.buf.len()
        } else {
            ceil_boundary(&self.buf, self.buf.len().saturating_sub(self.hold))
        };
        self.scanned = self.buf.len();
        let to = keep_from.max(self.released);
        out.clear();
        out.push_str(&self.buf[self.released..to]);
        self.released = to;
        if self.released > CONTEXT_BYTES {
            // Cut the context after a space where there is one, so the text left does
            // not start inside a word or number (a tail of a long number could pass for
            // a card).
            let mut drop = floor_boundary(&self.buf, self.released - CONTEXT_BYTES);
            if let Some(sp) = self.buf.as_bytes()[drop..self.released]
                .iter()
                .position(u8::is_ascii_whitespace)
            {
                drop += sp + 1;
            }
            self.buf.drain(..drop);
            self.released -= drop;
            self.settled = self.settled.saturating_sub(drop);
            self.scanned -= drop;
            self.base += drop as u64;
        }
        Ok(())
    }

    /// Acts on the findings in `env.findings`: flags, redactions, or the first block.
    fn act(&mut self, last: bool, out: &mut String, env: &mut Env<'_>) -> Result<(), Cut> {
        let len = self.buf.len();
        let settled = self.settled;
        let buf = &self.buf;
        let findings = &mut *env.findings;
        findings.retain(|f| {
            f.start < f.end
                && f.end <= len
                && f.end > settled
                && buf.is_char_boundary(f.start)
                && buf.is_char_boundary(f.end)
                // Still growing: wait for a byte after it (or the block's end).
                && (last || f.end < len)
        });
        if findings.is_empty() {
            return Ok(());
        }
        findings.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let action = |f: &Finding| match env.policy.action_for(&f.kind) {
            Action::Redact if self.redact_blocks => Action::Block,
            a => a,
        };
        let block = findings
            .iter()
            .find(|f| action(f) == Action::Block)
            .cloned();
        let limit = block.as_ref().map_or(len, |b| b.start.max(self.released));
        // Redactions before the cut; overlapping ones merge into their union (named by
        // the first), so no tail of either is left.
        let mut reds: Vec<(usize, usize, Arc<str>)> = Vec::new();
        // (action, finding index, position in the buffer before the redactions)
        let mut told: Vec<(Action, usize)> = Vec::new();
        let mut new_settled = self.settled;
        for (i, f) in findings.iter().enumerate() {
            if f.start >= limit {
                continue;
            }
            match action(f) {
                Action::Block => {}
                Action::Flag => {
                    told.push((Action::Flag, i));
                    new_settled = new_settled.max(f.end);
                }
                Action::Redact => {
                    let start = f.start.max(self.released);
                    let end = f.end.min(limit);
                    if start >= end {
                        // Already forwarded (found late): all that is left is the record.
                        told.push((Action::Flag, i));
                        new_settled = new_settled.max(f.end);
                        continue;
                    }
                    match reds.last_mut() {
                        // Inside the previous one: nothing more to do or tell.
                        Some(last) if last.1 >= end => {}
                        Some(last) if last.1 > start => {
                            last.1 = end;
                            told.push((Action::Redact, i));
                        }
                        _ => {
                            reds.push((start, end, f.rule.clone()));
                            told.push((Action::Redact, i));
                        }
                    }
                }
            }
        }
        // Where a position before the redactions lands after them.
        let shift = |p: usize| -> usize {
            let mut q = p as isize;
            for (s, e, rule) in &reds {
                if *e <= p {
                    q += rule.len() as isize + 2 - (*e - *s) as isize;
                } else if *s < p {
                    // Inside a replacement: its end.
                    q += (*s as isize - p as isize) + rule.len() as isize + 2;
                }
            }
            q.max(0) as usize
        };
        for (a, i) in told {
            let f = &findings[i];
            (env.on_finding)(a, f, self.base + shift(f.start) as u64);
        }
        let mut limit = limit;
        if !reds.is_empty() {
            let mut next = String::with_capacity(self.buf.len() + 16 * reds.len());
            let mut at = 0;
            for (s, e, rule) in &reds {
                next.push_str(&self.buf[at..*s]);
                next.push('[');
                next.push_str(rule);
                next.push(']');
                at = *e;
            }
            next.push_str(&self.buf[at..]);
            let last_end = reds.last().map_or(0, |(_, e, _)| *e);
            new_settled = shift(new_settled.max(last_end));
            limit = shift(limit);
            self.buf = next;
        }
        self.settled = new_settled;
        if let Some(finding) = block {
            out.clear();
            out.push_str(&self.buf[self.released..limit.max(self.released)]);
            let offset = self.base + shift(finding.start) as u64;
            return Err(Cut { finding, offset });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finds every occurrence of fixed words, as kind = the word.
    struct Words(Vec<&'static str>);
    impl Classifier for Words {
        fn name(&self) -> &str {
            "words"
        }
        fn lookback(&self) -> Option<usize> {
            None
        }
        fn classify(&self, text: &str, out: &mut Vec<Finding>) {
            for w in &self.0 {
                let kind: Arc<str> = Arc::from(*w);
                for (i, m) in text.match_indices(w) {
                    out.push(Finding::new(
                        i,
                        i + m.len(),
                        &kind,
                        &Arc::from(w.to_uppercase()),
                    ));
                }
            }
        }
    }

    /// The same, promising its reach (the longest word).
    struct Reaching(Vec<&'static str>);
    impl Classifier for Reaching {
        fn name(&self) -> &str {
            "reaching"
        }
        fn lookback(&self) -> Option<usize> {
            self.0.iter().map(|w| w.len()).max()
        }
        fn classify(&self, text: &str, out: &mut Vec<Finding>) {
            Words(self.0.clone()).classify(text, out)
        }
    }

    fn run(
        deltas: &[&str],
        policy: &InspectPolicy,
        c: &Words,
    ) -> (Vec<String>, Option<Cut>, Vec<(Action, u64)>) {
        run_with(deltas, policy, Arc::new(Words(c.0.clone())))
    }

    fn run_with(
        deltas: &[&str],
        policy: &InspectPolicy,
        c: Arc<dyn Classifier>,
    ) -> (Vec<String>, Option<Cut>, Vec<(Action, u64)>) {
        let cs: Vec<Arc<dyn Classifier>> = vec![c];
        let mut w = TextWindow::new(policy.window_bytes(), false);
        let mut findings = Vec::new();
        let mut seen = Vec::new();
        let mut on = |a: Action, _: &Finding, at: u64| seen.push((a, at));
        let mut env = Env {
            classifiers: &cs,
            policy,
            findings: &mut findings,
            on_finding: &mut on,
        };
        let mut out = Vec::new();
        for d in deltas {
            let mut t = (*d).to_owned();
            match w.push(&mut t, &mut env) {
                Ok(()) => out.push(t),
                Err(cut) => {
                    out.push(t);
                    return (out, Some(cut), seen);
                }
            }
        }
        let mut t = String::new();
        let cut = w.finish(&mut t, &mut env).err();
        out.push(t);
        (out, cut, seen)
    }

    #[test]
    fn holds_back_the_window_and_releases_the_rest() {
        let p = InspectPolicy::default().window(2); // 8 bytes
        let (out, cut, _) = run(&["abcdef", "ghij", "klmnopq", "rs"], &p, &Words(vec![]));
        assert!(cut.is_none());
        assert_eq!(out, ["", "ab", "cdefghi", "jk", "lmnopqrs"]);
    }

    #[test]
    fn a_split_finding_blocks_before_it() {
        let p = InspectPolicy::default().window(4);
        let (out, cut, _) = run(&["hello SEC", "RET world"], &p, &Words(vec!["SECRET"]));
        let cut = cut.expect("blocked");
        assert_eq!(out.concat(), "hello ");
        assert_eq!((cut.offset, &*cut.finding.rule), (6, "SECRET"));
    }

    #[test]
    fn a_finding_at_the_end_waits_for_the_next_byte() {
        let p = InspectPolicy::default()
            .window(4)
            .action("ab", Action::Redact)
            .action("abc", Action::Redact);
        let (out, cut, seen) = run(&["x ab", "c y"], &p, &Words(vec!["ab", "abc"]));
        assert!(cut.is_none());
        assert_eq!(out.concat(), "x [ABC] y");
        assert_eq!(seen, [(Action::Redact, 2)]);
    }

    #[test]
    fn redactions_and_flags_go_on_once_each() {
        let p = InspectPolicy::default()
            .window(3)
            .action("cat", Action::Redact)
            .action("dog", Action::Flag);
        let (out, cut, seen) = run(
            &["a cat and a d", "og and a", "nother cat."],
            &p,
            &Words(vec!["cat", "dog"]),
        );
        assert!(cut.is_none());
        assert_eq!(out.concat(), "a [CAT] and a dog and another [CAT].");
        assert_eq!(
            seen,
            [
                (Action::Redact, 2),
                (Action::Flag, 14),
                (Action::Redact, 30)
            ]
        );
    }

    #[test]
    fn a_block_after_a_redaction_keeps_the_redaction() {
        let p = InspectPolicy::default()
            .window(16)
            .action("cat", Action::Redact);
        let (out, cut, _) = run(&["my cat ate the bird"], &p, &Words(vec!["cat", "bird"]));
        assert_eq!(out.concat(), "my [CAT] ate the ");
        assert_eq!(cut.expect("blocked").offset, 17);
    }

    #[test]
    fn overlapping_redactions_merge_and_offsets_are_in_the_output() {
        let p = InspectPolicy::default()
            .window(16)
            .action("abcdef", Action::Redact)
            .action("defghi", Action::Redact)
            .action("cat", Action::Redact);
        let (out, cut, seen) = run(&["abcdefghi x"], &p, &Words(vec!["abcdef", "defghi"]));
        assert!(cut.is_none());
        assert_eq!(out.concat(), "[ABCDEF] x");
        assert_eq!(seen.len(), 2);
        let (out, _, seen) = run(&["a cat and cat."], &p, &Words(vec!["cat"]));
        assert_eq!(out.concat(), "a [CAT] and [CAT].");
        assert_eq!(seen, [(Action::Redact, 2), (Action::Redact, 12)]);
        let p = p.action("bird", Action::Block);
        let (out, cut, _) = run(&["my cat ate the bird."], &p, &Words(vec!["cat", "bird"]));
        assert_eq!(out.concat(), "my [CAT] ate the ");
        assert_eq!(cut.expect("blocked").offset, 17);
    }

    #[test]
    fn a_bounded_reach_rescans_only_the_tail_and_finds_the_same() {
        let text = "the cat and the dog met a catfish; cat! dogs, cats and a cat";
        let words = vec!["cat", "dog", "catfish"];
        for window in [1, 2, 5, 40] {
            let p = InspectPolicy::default()
                .window(window)
                .action("cat", Action::Redact)
                .action("dog", Action::Flag)
                .action("catfish", Action::Block);
            for size in 1..9 {
                let deltas: Vec<&str> = text
                    .as_bytes()
                    .chunks(size)
                    .map(|c| std::str::from_utf8(c).expect("ascii"))
                    .collect();
                let full = run(&deltas, &p, &Words(words.clone()));
                let tail = run_with(&deltas, &p, Arc::new(Reaching(words.clone())));
                assert_eq!(
                    full.0.concat(),
                    tail.0.concat(),
                    "window {window} size {size}"
                );
                assert_eq!(full.2, tail.2, "window {window} size {size}");
                assert_eq!(
                    full.1.map(|c| c.offset),
                    tail.1.map(|c| c.offset),
                    "window {window} size {size}"
                );
            }
        }
    }

    #[test]
    fn memory_stays_bounded_by_the_window() {
        let p = InspectPolicy::default().window(8);
        let cs: Vec<Arc<dyn Classifier>> = vec![];
        let mut w = TextWindow::new(p.window_bytes(), false);
        let mut findings = Vec::new();
        let mut on = |_: Action, _: &Finding, _: u64| {};
        let mut env = Env {
            classifiers: &cs,
            policy: &p,
            findings: &mut findings,
            on_finding: &mut on,
        };
        let mut max = 0;
        for i in 0..10_000 {
            let mut t = format!("word{i} é ");
            w.push(&mut t, &mut env).expect("no findings");
            max = max.max(w.held());
            assert!(w.kept() <= 4 * (p.window_bytes() + CONTEXT_BYTES + 16));
        }
        assert!(max <= p.window_bytes());
    }
}
