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
    /// A JSON value could not be checked: it does not parse as JSON text (a lone
    /// surrogate, nesting over 128 levels), or it holds sensitive data where it cannot be
    /// rewritten (an object key, a number, a duplicated key).
    Unreadable {
        /// Where.
        component: Component,
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
            Blocked::Unreadable { component } => write!(
                f,
                "request refused: a JSON value in {} cannot be checked for sensitive data (invalid Unicode, nesting too deep, or sensitive data in a key, a number or a duplicated key)",
                component.as_str()
            ),
            Blocked::Injection { component, score } => write!(
                f,
                "request blocked by the content policy: {} look like a prompt injection (score {score:.2})",
                component.as_str()
            ),
        }
    }
}

/// A refused request: why, and what was found (for the audit record).
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    /// Why.
    pub reason: Blocked,
    /// The categories found per component before the refusal.
    pub classification: DataClassification,
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
    /// Signed text that is never changed: only read for token-shaped text to avoid.
    Signed(&'a str),
    /// A block of a type this crate does not model: every string in it is scanned.
    Other(&'a mut ai_core::wire::OtherObject),
}

enum Scanned {
    Text(Vec<Finding>),
    /// A JSON value to rewrite.
    Json(Option<JsonScan>),
    /// An image; with OCR text that carried a category to remove, the label that replaces it.
    Media(Option<String>),
}

/// A scanned JSON value: the value, its strings' findings, and whether stripping changed
/// it.
type JsonScan = (Value, Vec<Vec<Finding>>, bool);

/// Records one string's findings in its component (and the first block reason).
type NoteFn<'a> = dyn FnMut(Component, &[Finding], &mut Option<Blocked>) + 'a;

/// One image of a request, as [`Redactor::images`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageData {
    /// The decoded bytes of a base64 image.
    Bytes(Vec<u8>),
    /// Given by URL or file id: not in the request, not read.
    Elsewhere,
    /// Base64 that does not decode (refused: it cannot be checked).
    Broken,
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
                    ContentBlock::Thinking(t) => f(comp, retrieved, Field::Signed(&t.thinking)),
                    // Other block types (`search_result`, ...) carry retrieved content.
                    ContentBlock::Other(o) => {
                        let c = if retrieved {
                            comp
                        } else {
                            Component::ToolResults
                        };
                        f(c, true, Field::Other(o));
                    }
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
    pub fn images(req: &mut MessagesRequest) -> Vec<ImageData> {
        use base64::Engine;
        #[derive(serde::Deserialize)]
        struct Source<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            data: Option<std::borrow::Cow<'a, str>>,
        }
        let mut out = Vec::new();
        walk(req, &mut |_, _, field| {
            if let Field::Media(Some(ContentBlock::Image(i))) = field {
                let image = match i.source.parse::<Source<'_>>() {
                    Ok(s) if s.kind.as_deref() == Some("base64") => {
                        let data: Vec<u8> = s
                            .data
                            .as_deref()
                            .unwrap_or_default()
                            .bytes()
                            .filter(|b| !b.is_ascii_whitespace())
                            .collect();
                        let b64 = &base64::engine::general_purpose::STANDARD;
                        let b64_np = &base64::engine::general_purpose::STANDARD_NO_PAD;
                        match b64.decode(&data).or_else(|_| b64_np.decode(&data)) {
                            Ok(bytes) if !bytes.is_empty() => ImageData::Bytes(bytes),
                            _ => ImageData::Broken,
                        }
                    }
                    Ok(_) => ImageData::Elsewhere,
                    Err(_) => ImageData::Broken,
                };
                out.push(image);
            }
        });
        out
    }

    /// Classifies `req` and, unless the policy blocks it, rewrites it in place.
    pub fn process(&self, req: &mut MessagesRequest) -> Result<Outcome, Refused> {
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
    ) -> Result<Outcome, Refused> {
        let mut image_texts = image_texts.into_iter();
        let mut out = Outcome::default();
        let mut cats = [DataCategories::NONE; 4];
        let mut scanned: Vec<Scanned> = Vec::new();
        let mut tokens = Vec::new();
        let mut block_reason: Option<Blocked> = None;
        let policy = &self.policy;
        let strip_mode = policy.injection_action == InjectionAction::Strip;
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
        let mut stripped = false;
        let mut unreadable: Option<Component> = None;
        // Scores retrieved text, then (strip mode) removes its hidden parts before it is
        // scanned: invisible characters can also hide a value from the detectors.
        let mut prepare = |comp: Component, retrieved: bool, text: &mut String| {
            if !retrieved {
                return;
            }
            let s = inject::score(text);
            if s > 0.0 && injection.is_none_or(|(best, _)| s > best) {
                injection = Some((s, comp));
            }
            if strip_mode {
                if let std::borrow::Cow::Owned(x) = inject::strip(text) {
                    *text = x;
                    stripped = true;
                }
            }
        };
        // Every string of a JSON value, scanned; the raw text too, so that sensitive data
        // where it cannot be rewritten (keys, numbers, a duplicated key) is refused.
        let scan_json = |comp: Component,
                         retrieved: bool,
                         raw: &str,
                         prepare: &mut dyn FnMut(Component, bool, &mut String),
                         note: &mut NoteFn<'_>,
                         block_reason: &mut Option<Blocked>,
                         vault: &mut Vault,
                         tokens: &mut Vec<(usize, usize)>|
         -> Result<Option<JsonScan>, ()> {
            let mut value = serde_json::from_str::<Value>(raw).map_err(|_| ())?;
            let mut strings = Vec::new();
            json_strings_mut(&mut value, &mut strings);
            let mut per = Vec::with_capacity(strings.len());
            let mut any = false;
            let mut changed = false;
            let mut seen = DataCategories::NONE;
            for s in strings {
                let before = s.len();
                prepare(comp, retrieved, s);
                changed |= s.len() != before;
                let mut found = Vec::new();
                tokens.clear();
                self.detectors.scan(s, &mut found, tokens);
                for (a, b) in tokens.iter() {
                    vault.reserve(&s[*a..*b]);
                }
                note(comp, &found, block_reason);
                seen = seen.union(found.iter().map(|f| f.category).collect());
                any |= !found.is_empty();
                per.push(found);
            }
            let (mut raw_found, mut raw_tokens) = (Vec::new(), Vec::new());
            self.detectors.scan(raw, &mut raw_found, &mut raw_tokens);
            for (a, b) in &raw_tokens {
                vault.reserve(&raw[*a..*b]);
            }
            let raw_cats: DataCategories = raw_found.iter().map(|f| f.category).collect();
            if !raw_cats.is_subset(seen) {
                return Err(());
            }
            Ok((any || changed).then_some((value, per, changed)))
        };
        walk(req, &mut |comp, retrieved, field| match field {
            Field::Text(t) => {
                prepare(comp, retrieved, t);
                let mut found = Vec::new();
                tokens.clear();
                self.detectors.scan(t, &mut found, &mut tokens);
                for (s, e) in &tokens {
                    vault.reserve(&t[*s..*e]);
                }
                note(comp, &found, &mut block_reason);
                scanned.push(Scanned::Text(found));
            }
            Field::Json(raw) => {
                let r = scan_json(
                    comp,
                    retrieved,
                    raw.get(),
                    &mut prepare,
                    &mut note,
                    &mut block_reason,
                    &mut vault,
                    &mut tokens,
                );
                scanned.push(Scanned::Json(r.unwrap_or_else(|()| {
                    unreadable.get_or_insert(comp);
                    None
                })));
            }
            Field::Other(o) => {
                let r = scan_json(
                    comp,
                    retrieved,
                    o.json().get(),
                    &mut prepare,
                    &mut note,
                    &mut block_reason,
                    &mut vault,
                    &mut tokens,
                );
                scanned.push(Scanned::Json(r.unwrap_or_else(|()| {
                    unreadable.get_or_insert(comp);
                    None
                })));
            }
            Field::Signed(t) => {
                for (a, b) in crate::vault::token_shapes(t) {
                    vault.reserve(&t[a..b]);
                }
                scanned.push(Scanned::Text(Vec::new()));
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
        out.stripped = stripped;
        let refuse = |reason: Blocked| Refused {
            reason,
            classification: out.classification,
        };
        if let Some(b) = block_reason {
            return Err(refuse(b));
        }
        if let Some(component) = unreadable {
            return Err(refuse(Blocked::Unreadable { component }));
        }
        if self.policy.tool_results == ToolResultRule::NoEscalation {
            let prompt = cats[0].union(cats[1]).union(cats[2]);
            if let Some(category) = cats[3].iter().find(|c| !prompt.contains(*c)) {
                return Err(refuse(Blocked::Escalation { category }));
            }
        }
        if let Some((s, component)) = injection {
            if s >= self.policy.injection_threshold
                && self.policy.injection_action == InjectionAction::Block
            {
                return Err(refuse(Blocked::Injection {
                    component,
                    score: s,
                }));
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
        if !transforms {
            out.vault = vault;
            return Ok(out);
        }
        let mut queue = scanned.into_iter();
        let mut replaced = [0u32; 5];
        let mut out_images = 0u32;
        let mut rebuild_failed = None;
        walk(req, &mut |comp, _retrieved, field| {
            let Some(entry) = queue.next() else {
                return;
            };
            match (field, entry) {
                (Field::Text(t), Scanned::Text(found)) => {
                    if let Some(new) = self.apply(t, &found, &mut vault, &mut replaced) {
                        *t = new;
                    }
                }
                (Field::Media(Some(b)), Scanned::Media(Some(label))) => {
                    *b = ContentBlock::text(label);
                    out_images += 1;
                }
                (Field::Json(raw), Scanned::Json(Some((value, per, changed)))) => {
                    if let Some(v) = self.apply_json(value, per, changed, &mut vault, &mut replaced)
                    {
                        *raw = RawJson::from_value(&v);
                    }
                }
                (Field::Other(o), Scanned::Json(Some((value, per, changed)))) => {
                    if let Some(v) = self.apply_json(value, per, changed, &mut vault, &mut replaced)
                    {
                        match ai_core::wire::OtherObject::from_raw(RawJson::from_value(&v)) {
                            Ok(new) => *o = new,
                            Err(_) => rebuild_failed = Some(comp),
                        }
                    }
                }
                _ => {}
            }
        });
        if let Some(component) = rebuild_failed {
            return Err(Refused {
                reason: Blocked::Unreadable { component },
                classification: out.classification,
            });
        }
        out.replaced = replaced;
        out.vault = vault;
        out.images_removed = out_images;
        Ok(out)
    }

    /// A scanned JSON value with its findings applied; `None` when no string changed.
    fn apply_json(
        &self,
        mut value: Value,
        per: Vec<Vec<Finding>>,
        changed: bool,
        vault: &mut Vault,
        replaced: &mut [u32; 5],
    ) -> Option<Value> {
        let mut any = changed;
        let mut targets = Vec::new();
        json_strings_mut(&mut value, &mut targets);
        for (s, found) in targets.into_iter().zip(per) {
            if let Some(new) = self.apply(s, &found, vault, replaced) {
                *s = new;
                any = true;
            }
        }
        any.then_some(value)
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
