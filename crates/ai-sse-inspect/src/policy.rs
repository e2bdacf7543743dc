//! What to do about a finding, and how much of the answer to hold back.

use std::sync::Arc;

/// Bytes of UTF-8 text counted as one token. The window is sized in tokens, and a token
/// here is this cheap approximation (English averages 3.5 to 4 characters per token on
/// Claude's and OpenAI's tokenizers); no tokenizer runs per delta.
pub const BYTES_PER_TOKEN: usize = 4;

/// Bytes of already-forwarded text kept in front of the window so detectors that need a
/// cue word before a value (`SSN: ...`) still see it, and a finding that starts in
/// forwarded text is still recognized (and blocked).
pub const CONTEXT_BYTES: usize = 64;

/// What happens when a classifier finds something in the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Stop the answer before the finding: the client gets the text before it, then
    /// `stop_reason: "policy_block"`; the upstream request is dropped.
    Block,
    /// Replace the finding with `[RULE]` (e.g. `[EMAIL]`) and go on. In a thinking block
    /// this acts as `Block`: edited thinking fails its signature check on the next turn.
    Redact,
    /// Go on, and record the verdict.
    Flag,
}

impl Action {
    /// `block`, `redact` or `flag`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Flag => "flag",
        }
    }

    /// The action named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "block" => Some(Action::Block),
            "redact" => Some(Action::Redact),
            "flag" => Some(Action::Flag),
            _ => None,
        }
    }
}

/// The window and the action per finding kind.
///
/// ```
/// use ai_sse_inspect::{Action, InspectPolicy};
/// let p = InspectPolicy::default().action("pii", Action::Redact).window(32);
/// assert_eq!(p.action_for("pii"), Action::Redact);
/// assert_eq!(p.action_for("secret"), Action::Block); // the default
/// assert_eq!(p.window_bytes(), 128);
/// ```
#[derive(Clone, Debug)]
pub struct InspectPolicy {
    window_tokens: usize,
    thinking: bool,
    actions: Vec<(Arc<str>, Action)>,
    default_action: Action,
}

impl Default for InspectPolicy {
    /// A window of 64 tokens over text blocks (not thinking), every kind blocked.
    fn default() -> Self {
        InspectPolicy {
            window_tokens: 64,
            thinking: false,
            actions: Vec::new(),
            default_action: Action::Block,
        }
    }
}

impl InspectPolicy {
    /// The window in tokens (at least 1): how much of the answer is held back, and so
    /// the longest finding caught before any of it is forwarded. Default 64.
    pub fn window(mut self, tokens: usize) -> Self {
        self.window_tokens = tokens.max(1);
        self
    }

    /// Whether thinking blocks (`thinking_delta`) are inspected too. Default `false`.
    pub fn thinking(mut self, on: bool) -> Self {
        self.thinking = on;
        self
    }

    /// The action for findings of `kind` (`pii`, `secret`, `system_prompt`, ...).
    pub fn action(mut self, kind: &str, action: Action) -> Self {
        match self.actions.iter_mut().find(|(k, _)| &**k == kind) {
            Some((_, a)) => *a = action,
            None => self.actions.push((Arc::from(kind), action)),
        }
        self
    }

    /// The action for kinds without one of their own. Default [`Action::Block`]: a
    /// classifier added later fails closed.
    pub fn default_action(mut self, action: Action) -> Self {
        self.default_action = action;
        self
    }

    /// The action for `kind`.
    pub fn action_for(&self, kind: &str) -> Action {
        self.actions
            .iter()
            .find(|(k, _)| &**k == kind)
            .map_or(self.default_action, |(_, a)| *a)
    }

    /// The window in tokens.
    pub fn window_tokens(&self) -> usize {
        self.window_tokens
    }

    /// The window in bytes ([`BYTES_PER_TOKEN`] per token).
    pub fn window_bytes(&self) -> usize {
        self.window_tokens.saturating_mul(BYTES_PER_TOKEN)
    }

    /// Whether thinking is inspected.
    pub fn inspects_thinking(&self) -> bool {
        self.thinking
    }
}

/// The reason code of a finding of `kind`: `completion.<kind>.detected`.
pub fn reason_code(kind: &str) -> String {
    format!("completion.{kind}.detected")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_later_actions_replace() {
        for a in [Action::Block, Action::Redact, Action::Flag] {
            assert_eq!(Action::from_name(a.as_str()), Some(a));
        }
        assert_eq!(Action::from_name("allow"), None);
        let p = InspectPolicy::default()
            .action("pii", Action::Flag)
            .action("pii", Action::Redact)
            .default_action(Action::Flag)
            .window(0);
        assert_eq!(p.action_for("pii"), Action::Redact);
        assert_eq!(p.action_for("other"), Action::Flag);
        assert_eq!(p.window_tokens(), 1);
        assert_eq!(reason_code("pii"), "completion.pii.detected");
    }
}
