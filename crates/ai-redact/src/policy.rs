//! What to do with each category of finding, and with retrieved content.

use crate::inject::InjectionAction;
use ai_core::{DataCategories, DataCategory};

/// What happens to a value of some category.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave it (it still counts in the classification).
    Allow,
    /// Keep the last four characters: `****1234`.
    Mask,
    /// Replace it by its label: `[EMAIL]`.
    Redact,
    /// Replace it by a reversible token (`<EMAIL_1>`) and put the value back in the answer.
    Tokenize,
    /// Refuse the request: 403 naming the category and where it was, never the value.
    Block,
}

impl Action {
    /// `allow`, `mask`, `redact`, `tokenize` or `block`.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "allow" => Action::Allow,
            "mask" => Action::Mask,
            "redact" => Action::Redact,
            "tokenize" => Action::Tokenize,
            "block" => Action::Block,
            _ => return None,
        })
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Mask => "mask",
            Action::Redact => "redact",
            Action::Tokenize => "tokenize",
            Action::Block => "block",
        }
    }
}

/// How tool results are held to the prompt side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ToolResultRule {
    /// The category actions apply to tool results like to everything else (default).
    #[default]
    Transform,
    /// A tool result carrying a category that neither the system prompt, the messages nor
    /// the tool definitions carried is refused (a tool must not widen what data the
    /// request sends), then the category actions apply.
    NoEscalation,
}

/// The policy of a [`RedactLayer`](crate::RedactLayer).
#[derive(Clone, Debug)]
pub struct RedactPolicy {
    actions: [Action; 5],
    /// How tool results are treated.
    pub tool_results: ToolResultRule,
    /// Injection scores at or above this trigger [`RedactPolicy::injection_action`]
    /// (default 0.7).
    pub injection_threshold: f32,
    /// What happens to retrieved content that scores at or above the threshold.
    pub injection_action: InjectionAction,
}

impl Default for RedactPolicy {
    /// Personal and health data tokenized (the caller gets the values back), card numbers
    /// masked, secrets and credentials redacted; tool results transformed; injection
    /// flagged at 0.7.
    fn default() -> Self {
        RedactPolicy {
            actions: [
                Action::Tokenize,
                Action::Tokenize,
                Action::Mask,
                Action::Redact,
                Action::Redact,
            ],
            tool_results: ToolResultRule::Transform,
            injection_threshold: 0.7,
            injection_action: InjectionAction::Flag,
        }
    }
}

fn slot(c: DataCategory) -> usize {
    DataCategory::ALL.iter().position(|x| *x == c).unwrap_or(0)
}

impl RedactPolicy {
    /// Every category gets `action`.
    pub fn all(action: Action) -> Self {
        RedactPolicy {
            actions: [action; 5],
            ..RedactPolicy::default()
        }
    }

    /// `category` gets `action`.
    pub fn set(mut self, category: DataCategory, action: Action) -> Self {
        self.actions[slot(category)] = action;
        self
    }

    /// The action of `category`.
    pub fn action(&self, category: DataCategory) -> Action {
        self.actions[slot(category)]
    }

    /// The categories whose action is `action`.
    pub fn with_action(&self, action: Action) -> DataCategories {
        DataCategory::ALL
            .into_iter()
            .filter(|c| self.action(*c) == action)
            .collect()
    }

    /// With this tool-result rule.
    pub fn tool_results(mut self, rule: ToolResultRule) -> Self {
        self.tool_results = rule;
        self
    }

    /// With this injection threshold and action.
    pub fn injection(mut self, threshold: f32, action: InjectionAction) -> Self {
        self.injection_threshold = threshold;
        self.injection_action = action;
        self
    }
}
