//! [`Redactor`]: classify a request and transform it, in two walks over its strings.
//!
//! The first walk scans every string once and keeps the findings (and any token-shaped
//! text, so new tokens avoid it); the policy is decided on the whole request (a block
//! anywhere refuses it before anything is changed); the second walk rewrites only the
//! strings that had findings. Strings without findings are never copied.

use crate::detect::{Detectors, Finding};
use crate::inject::{self, InjectionAction};
use crate::policy::{Action, RedactPolicy, ToolResultRule};
use crate::vault::Vault;
use ai_core::wire::{Content, ContentBlock, RawJson};
use ai_core::{ComponentClass, DataCategories, DataCategory, DataClassification, MessagesRequest};
use serde_json::Value;
use std::fmt;

/// A part of a request, as classifications and block messages name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The system prompt.
    System,
    /// The conversation (text the caller typed, the model's earlier turns, tool calls).
    Messages,
    /// Tool definitions.
    Tools,
    /// Tool results and documents: content retrieved from elsewhere.
    ToolResults,
}

impl Component {
    /// `system`, `messages`, `tools` or `tool_results`.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::System => "system",
            Component::Messages => "messages",
            Component::Tools => "tools",
            Component::ToolResults => "tool_results",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocked {
    /// A category whose action is `block`.
    Category {
        /// What was found.
        category: DataCategory,
        /// Where.
        component: Component,
        /// The detector that found it.
        detector: String,
    },
    /// A tool result carried a category the prompt side did not.
    Escalation {
        /// The category only the tool results carried.
        category: DataCategory,
    },
    /// Retrieved content scored as a prompt injection.
    Injection {
        /// Where.
        component: Component,
        /// The score.
        score: f32,
    },
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Category {
                category,
                component,
                detector,
            } => write!(
                f,
                "request blocked by the data policy: {} data ({detector}) found in {}",
                category.as_str(),
                component.as_str()
            ),
            Blocked::Escalation { category } => write!(
                f,
                "request blocked by the data policy: a tool result carries {} data that the prompt did not",
                category.as_str()
            ),
            Blocked::Injection { component, score } => write!(
                f,
                "request blocked by the content policy: {} look like a prompt injection (score {score:.2})",
                component.as_str()
            ),
        }
    }
}

/// What the redactor did to one request.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The categories found per component (also those the policy allows).
    pub classification: DataClassification,
    /// Values replaced, per category (in [`DataCategory::ALL`] order).
    pub replaced: [u32; 5],
    /// The tokens handed out (empty when nothing was tokenized).
    pub vault: Vault,
    /// The highest injection score of retrieved content, and where.
    pub injection: Option<(f32, Component)>,
    /// Whether retrieved content was stripped of hidden text.
    pub stripped: bool,
    /// Images and documents seen.
    pub attachments: u32,
    /// Images replaced because the text read in them carried a category to remove.
    pub images_removed: u32,
}

impl Outcome {
    /// How many values were replaced.
    pub fn total_replaced(&self) -> u32 {
        self.replaced.iter().sum()
    }
}

/// Detectors and a policy: what a [`RedactLayer`](crate::RedactLayer) runs on each request.
#[derive(Clone, Debug)]
pub struct Redactor {
    detectors: Detectors,
    policy: RedactPolicy,
}

enum Field<'a> {
    Text(&'a mut String),
    Json(&'a mut RawJson),
    /// An image block (replaceable) or a base64 document (`None`).
    Media(Option<&'a mut ContentBlock>),
}

enum Scanned {
    Text(Vec<Finding>),
    Json(Option<(Value, Vec<Vec<Finding>>)>),
    /// An image; with OCR text that carried a category to remove, the label that replaces it.
    Media(Option<String>),
}

/// The text read in each image of a request, in the order [`Redactor::images`] gave them
/// (`None`: not read).
pub type ImageTexts = Vec<Option<String>>;

fn walk_content(
    c: &mut Content,
    comp: Component,
    retrieved: bool,
    f: &mut dyn FnMut(Component, bool, Field<'_>),
) {
    match c {
        Content::Text(t) => f(comp, retrieved, Field::Text(t)),
        Content::Blocks(blocks) => {
            for b in blocks {
                if matches!(b, ContentBlock::Image(_)) {
                    f(comp, retrieved, Field::Media(Some(b)));
                    continue;
                }
                match b {
                    ContentBlock::Text(t) => f(comp, retrieved, Field::Text(&mut t.text)),
                    ContentBlock::ToolUse(u) => f(comp, retrieved, Field::Json(&mut u.input)),
                    ContentBlock::ToolResult(r) => {
                        if let Some(c) = &mut r.content {
                            walk_content(c, Component::ToolResults, true, f);
                        }
                    }
                    ContentBlock::Document(d) => {
                        if let Some(t) = &mut d.title {
                            f(Component::ToolResults, true, Field::Text(t));
                        }
                        if let Some(t) = &mut d.context {
                            f(Component::ToolResults, true, Field::Text(t));
                        }
                        if is_base64_source(&d.source) {
                            f(Component::ToolResults, true, Field::Media(None));
                        } else {
                            f(Component::ToolResults, true, Field::Json(&mut d.source));
                        }
                    }
                    // Thinking is signed by the API: changing it would invalidate the turn.
                    _ => {}
                }
            }
        }
    }
}

fn is_base64_source(source: &RawJson) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    source
        .parse::<Kind<'_>>()
        .ok()
        .and_then(|k| k.kind)
        .is_some_and(|k| k == "base64")
}

fn walk(req: &mut MessagesRequest, f: &mut dyn FnMut(Component, bool, Field<'_>)) {
    if let Some(s) = &mut req.system {
        walk_content(s, Component::System, false, f);
    }
    if let Some(tools) = &mut req.tools {
        for t in tools {
            if let Some(d) = &mut t.description {
                f(Component::Tools, false, Field::Text(d));
            }
            if let Some(s) = &mut t.input_schema {
                f(Component::Tools, false, Field::Json(s));
            }
        }
    }
    for m in &mut req.messages {
        walk_content(&mut m.content, Component::Messages, false, f);
    }
}

fn json_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn json_strings_mut<'a>(v: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter_mut().for_each(|x| json_strings_mut(x, out)),
        Value::Object(o) => o.values_mut().for_each(|x| json_strings_mut(x, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

impl Redactor {
    /// The built-in detectors under `policy`.
    pub fn new(policy: RedactPolicy) -> Self {
        Redactor::with_detectors(Detectors::builtin(), policy)
    }

    /// These detectors under `policy`.
    pub fn with_detectors(detectors: Detectors, policy: RedactPolicy) -> Self {
        Redactor { detectors, policy }
    }

    /// The detectors.
    pub fn detectors(&self) -> &Detectors {
        &self.detectors
    }

    /// The policy.
    pub fn policy(&self) -> &RedactPolicy {
        &self.policy
    }

    /// The base64 images of `req` (media type and bytes), in walk order: what an OCR
    /// step reads before [`Redactor::process_with_images`].
    pub fn images(req: &mut MessagesRequest) -> Vec<(String, Vec<u8>)> {
        use base64::Engine;
        #[derive(serde::Deserialize)]
        struct Source<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            media_type: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            data: Option<std::borrow::Cow<'a, str>>,
        }
        let mut out = Vec::new();
        walk(req, &mut |_, _, field| {
            if let Field::Media(Some(ContentBlock::Image(i))) = field {
                let decoded = i.source.parse::<Source<'_>>().ok().and_then(|s| {
                    if s.kind.as_deref() != Some("base64") {
                        return None;
                    }
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(s.data?.as_bytes())
                        .ok()?;
                    Some((s.media_type.unwrap_or_default().into_owned(), bytes))
                });
                out.push(decoded.unwrap_or_default());
            }
        });
        out
    }

    /// Classifies `req` and, unless the policy blocks it, rewrites it in place.
    pub fn process(&self, req: &mut MessagesRequest) -> Result<Outcome, Blocked> {
        self.process_with_images(req, Vec::new())
    }

    /// [`Redactor::process`] with the text read in the request's images (feature `ocr`):
    /// it counts in the image's component; an image whose text carries a category the
    /// policy blocks refuses the request, and one whose text carries a category to mask,
    /// redact or tokenize is replaced by a text block naming the categories (pixels cannot
    /// be redacted).
    pub fn process_with_images(
        &self,
        req: &mut MessagesRequest,
        image_texts: ImageTexts,
    ) -> Result<Outcome, Blocked> {
        let mut image_texts = image_texts.into_iter();
        let mut out = Outcome::default();
        let mut cats = [DataCategories::NONE; 4];
        let mut scanned: Vec<Scanned> = Vec::new();
        let mut tokens = Vec::new();
        let mut block_reason: Option<Blocked> = None;
        let policy = &self.policy;
        let mut note = |comp: Component, found: &[Finding], block: &mut Option<Blocked>| {
            for f in found {
                cats[comp.slot()].insert(f.category);
                if block.is_none() && policy.action(f.category) == Action::Block {
                    *block = Some(Blocked::Category {
                        category: f.category,
                        component: comp,
                        detector: self.detectors.specs()[f.detector].name.to_string(),
                    });
                }
            }
        };
        let mut vault = Vault::new();
        let mut injection: Option<(f32, Component)> = None;
        let mut score = |comp: Component, text: &str| {
            let s = inject::score(text);
            if s > 0.0 && injection.is_none_or(|(best, _)| s > best) {
                injection = Some((s, comp));
            }
        };
        walk(req, &mut |comp, retrieved, field| match field {
            Field::Text(t) => {
                let mut found = Vec::new();
                tokens.clear();
                self.detectors.scan(t, &mut found, &mut tokens);
                for (s, e) in &tokens {
                    vault.reserve(&t[*s..*e]);
                }
                note(comp, &found, &mut block_reason);
                if retrieved {
                    score(comp, t);
                }
                scanned.push(Scanned::Text(found));
            }
            Field::Json(raw) => {
                let Ok(value) = serde_json::from_str::<Value>(raw.get()) else {
                    scanned.push(Scanned::Json(None));
                    return;
                };
                let mut strings = Vec::new();
                json_strings(&value, &mut strings);
                let mut per = Vec::with_capacity(strings.len());
                let mut any = false;
                for s in &strings {
                    let mut found = Vec::new();
                    tokens.clear();
                    self.detectors.scan(s, &mut found, &mut tokens);
                    for (a, b) in &tokens {
                        vault.reserve(&s[*a..*b]);
                    }
                    note(comp, &found, &mut block_reason);
                    if retrieved {
                        score(comp, s);
                    }
                    any |= !found.is_empty();
                    per.push(found);
                }
                drop(strings);
                scanned.push(Scanned::Json(any.then_some((value, per))));
            }
            Field::Media(block) => {
                let is_image = block.is_some();
                let text = if is_image {
                    image_texts.next().flatten()
                } else {
                    None
                };
                let mut replace = None;
                if let Some(t) = text {
                    let mut found = Vec::new();
                    tokens.clear();
                    self.detectors.scan(&t, &mut found, &mut tokens);
                    note(comp, &found, &mut block_reason);
                    let remove: DataCategories = found
                        .iter()
                        .map(|f| f.category)
                        .filter(|c| self.policy.action(*c) != Action::Allow)
                        .collect();
                    if !remove.is_empty() {
                        replace = Some(format!("[IMAGE REMOVED: {remove}]"));
                    }
                }
                scanned.push(Scanned::Media(replace));
            }
        });
        out.classification = DataClassification {
            system: ComponentClass::of(cats[0]),
            messages: ComponentClass::of(cats[1]),
            tools: ComponentClass::of(cats[2]),
            tool_results: ComponentClass::of(cats[3]),
        };
        out.injection = injection;
        if let Some(b) = block_reason {
            return Err(b);
        }
        if self.policy.tool_results == ToolResultRule::NoEscalation {
            let prompt = cats[0].union(cats[1]).union(cats[2]);
            if let Some(category) = cats[3].iter().find(|c| !prompt.contains(*c)) {
                return Err(Blocked::Escalation { category });
            }
        }
        let mut strip = false;
        if let Some((s, component)) = injection {
            if s >= self.policy.injection_threshold {
                match self.policy.injection_action {
                    InjectionAction::Block => {
                        return Err(Blocked::Injection {
                            component,
                            score: s,
                        });
                    }
                    InjectionAction::Strip => strip = true,
                    InjectionAction::Flag => {}
                }
            }
        }
        let transforms = scanned.iter().any(|s| match s {
            Scanned::Text(f) => !f.is_empty(),
            Scanned::Json(j) => j.is_some(),
            Scanned::Media(r) => r.is_some(),
        });
        out.attachments = scanned
            .iter()
            .filter(|s| matches!(s, Scanned::Media(_)))
            .count() as u32;
        if !transforms && !strip {
            out.vault = vault;
            return Ok(out);
        }
        let mut queue = scanned.into_iter();
        let mut replaced = [0u32; 5];
        let mut stripped = false;
        let mut out_images = 0u32;
        walk(req, &mut |_comp, retrieved, field| {
            let Some(entry) = queue.next() else {
                return;
            };
            match (field, entry) {
                (Field::Text(t), Scanned::Text(found)) => {
                    if let Some(new) = self.apply(t, &found, &mut vault, &mut replaced) {
                        *t = new;
                    }
                    if strip && retrieved {
                        if let std::borrow::Cow::Owned(s) = inject::strip(t) {
                            *t = s;
                            stripped = true;
                        }
                    }
                }
                (Field::Media(Some(b)), Scanned::Media(Some(label))) => {
                    *b = ContentBlock::text(label);
                    out_images += 1;
                }
                (Field::Json(raw), Scanned::Json(Some((mut value, per)))) => {
                    let mut targets = Vec::new();
                    json_strings_mut(&mut value, &mut targets);
                    for (s, found) in targets.into_iter().zip(per) {
                        if let Some(new) = self.apply(s, &found, &mut vault, &mut replaced) {
                            *s = new;
                        }
                        if strip && retrieved {
                            if let std::borrow::Cow::Owned(x) = inject::strip(s) {
                                *s = x;
                                stripped = true;
                            }
                        }
                    }
                    *raw = RawJson::from_value(&value);
                }
                _ => {}
            }
        });
        out.replaced = replaced;
        out.vault = vault;
        out.stripped = stripped;
        out.images_removed = out_images;
        Ok(out)
    }

    /// `text` with its findings replaced as the policy says; `None` when nothing changes.
    fn apply(
        &self,
        text: &str,
        found: &[Finding],
        vault: &mut Vault,
        replaced: &mut [u32; 5],
    ) -> Option<String> {
        let mut out: Option<String> = None;
        let mut copied = 0;
        for f in found {
            let action = self.policy.action(f.category);
            if action == Action::Allow || action == Action::Block {
                continue;
            }
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..f.start]);
            let value = &text[f.range()];
            let label = &*self.detectors.specs()[f.detector].label;
            match action {
                Action::Mask => {
                    o.push_str("****");
                    let tail: Vec<char> = value.chars().filter(|c| c.is_alphanumeric()).collect();
                    if tail.len() >= 8 {
                        o.extend(&tail[tail.len() - 4..]);
                    }
                }
                Action::Redact => {
                    o.push('[');
                    o.push_str(label);
                    o.push(']');
                }
                Action::Tokenize => o.push_str(vault.token(label, value)),
                Action::Allow | Action::Block => {}
            }
            copied = f.end;
            replaced[DataCategory::ALL
                .iter()
                .position(|c| *c == f.category)
                .unwrap_or(0)] += 1;
        }
        let mut o = out?;
        o.push_str(&text[copied..]);
        Some(o)
    }

    /// Scans one string: what the layer would find in it (for tools and tests).
    pub fn findings(&self, text: &str) -> Vec<Finding> {
        let (mut out, mut tokens) = (Vec::new(), Vec::new());
        self.detectors.scan(text, &mut out, &mut tokens);
        out
    }

    /// One string with the policy applied (blocked categories are left in place: use
    /// [`Redactor::process`] for the request-level decision). Tokens go to `vault`.
    pub fn transform(&self, text: &str, vault: &mut Vault) -> String {
        let (mut found, mut tokens) = (Vec::new(), Vec::new());
        self.detectors.scan(text, &mut found, &mut tokens);
        for (s, e) in &tokens {
            vault.reserve(&text[*s..*e]);
        }
        let mut replaced = [0; 5];
        self.apply(text, &found, vault, &mut replaced)
            .unwrap_or_else(|| text.to_owned())
    }
}
