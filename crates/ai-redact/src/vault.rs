//! Reversible tokens: the per-request vault and rehydration, whole or streamed.
//!
//! A token is `<LABEL_N>` (`<EMAIL_1>`, `<PERSON_2>`). Within one request the same value
//! always gets the same token, and a token never equals text the request already held
//! (numbers already present as literal text are skipped), so rehydrating the answer can
//! only ever turn the vault's own tokens back into values.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The longest token: `<`, a label of up to 32 bytes, `_`, up to 9 digits, `>`.
pub const MAX_TOKEN_LEN: usize = 44;

/// The tokens handed out for one request and the values behind them.
#[derive(Clone, Debug, Default)]
pub struct Vault {
    by_value: HashMap<(Box<str>, Box<str>), Box<str>>,
    by_token: HashMap<Box<str>, Box<str>>,
    counters: HashMap<Box<str>, u32>,
    reserved: HashSet<Box<str>>,
}

impl Vault {
    /// An empty vault.
    pub fn new() -> Self {
        Vault::default()
    }

    /// Marks `text` (token-shaped text found in the request) as taken: no token will
    /// equal it.
    pub fn reserve(&mut self, text: &str) {
        self.reserved.insert(text.into());
    }

    /// The token of `value` under `label`, handing out the next free one the first time.
    pub fn token(&mut self, label: &str, value: &str) -> &str {
        let key = (Box::<str>::from(label), Box::<str>::from(value));
        if !self.by_value.contains_key(&key) {
            let n = self.counters.entry(label.into()).or_insert(0);
            let token = loop {
                *n += 1;
                let t = format!("<{label}_{n}>");
                if !self.reserved.contains(t.as_str()) {
                    break t.into_boxed_str();
                }
            };
            self.by_token.insert(token.clone(), value.into());
            self.by_value.insert(key.clone(), token);
        }
        self.by_value.get(&key).map_or("", |t| t)
    }

    /// The value behind `token`.
    pub fn value(&self, token: &str) -> Option<&str> {
        self.by_token.get(token).map(|v| &**v)
    }

    /// How many tokens were handed out.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether no token was handed out.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// `text` with every token of this vault replaced by its value (borrowed when there
    /// is none). With `json`, values are escaped for the inside of a JSON string.
    pub fn rehydrate<'a>(&self, text: &'a str, json: bool) -> Cow<'a, str> {
        if self.is_empty() {
            return Cow::Borrowed(text);
        }
        let b = text.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut i = 0;
        while let Some(off) = memchr::memchr(b'<', &b[i..]) {
            let at = i + off;
            match token_end(&b[at..]) {
                TokenScan::Token(len) => {
                    if let Some(v) = self.value(&text[at..at + len]) {
                        let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
                        o.push_str(&text[copied..at]);
                        push_value(o, v, json);
                        copied = at + len;
                    }
                    i = at + len;
                }
                TokenScan::Partial | TokenScan::No => i = at + 1,
            }
        }
        match out {
            Some(mut o) => {
                o.push_str(&text[copied..]);
                Cow::Owned(o)
            }
            None => Cow::Borrowed(text),
        }
    }
}

fn push_value(out: &mut String, v: &str, json: bool) {
    if !json {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

enum TokenScan {
    /// A whole token of this many bytes.
    Token(usize),
    /// The text ends while it could still become a token.
    Partial,
    /// Not a token.
    No,
}

/// Whether `b` (starting with `<`) starts with a token shape `<[A-Z][A-Z0-9_]*_[0-9]+>`.
fn token_end(b: &[u8]) -> TokenScan {
    let mut i = 1;
    let mut last_underscore = None;
    while i < b.len() && i < MAX_TOKEN_LEN {
        let c = b[i];
        match c {
            b'A'..=b'Z' => {}
            b'0'..=b'9' if i > 1 => {}
            b'_' if i > 1 => last_underscore = Some(i),
            b'>' => {
                return match last_underscore {
                    Some(u) if u + 1 < i && b[u + 1..i].iter().all(u8::is_ascii_digit) => {
                        TokenScan::Token(i + 1)
                    }
                    _ => TokenScan::No,
                };
            }
            _ => return TokenScan::No,
        }
        i += 1;
    }
    if i >= MAX_TOKEN_LEN {
        TokenScan::No
    } else {
        TokenScan::Partial
    }
}

/// The token-shaped pieces of `text` (`<EMAIL_1>`), as byte ranges.
pub fn token_shapes(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        let at = i + off;
        match token_end(&b[at..]) {
            TokenScan::Token(len) => {
                out.push((at, at + len));
                i = at + len;
            }
            TokenScan::Partial | TokenScan::No => i = at + 1,
        }
    }
    out
}

/// Rehydrates one streamed block (text deltas or tool-input JSON deltas): each piece is
/// emitted at once except the bytes at its end that could still start a token, which
/// wait for the next piece (at most [`MAX_TOKEN_LEN`] bytes).
#[derive(Debug, Default)]
pub struct StreamRehydrator {
    pending: String,
    json: bool,
}

impl StreamRehydrator {
    /// For text (`json` false) or for tool-input JSON fragments (`json` true: values are
    /// escaped for the inside of a JSON string).
    pub fn new(json: bool) -> Self {
        StreamRehydrator {
            pending: String::new(),
            json,
        }
    }

    /// What can be sent of `piece` now.
    pub fn push(&mut self, vault: &Vault, piece: &str) -> String {
        let joined: Cow<'_, str> = if self.pending.is_empty() {
            Cow::Borrowed(piece)
        } else {
            let mut s = std::mem::take(&mut self.pending);
            s.push_str(piece);
            Cow::Owned(s)
        };
        let hold = held_from(joined.as_bytes());
        let (now, later) = joined.split_at(hold);
        self.pending.push_str(later);
        vault.rehydrate(now, self.json).into_owned()
    }

    /// Whether this rehydrates tool-input JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Whether bytes are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The bytes still held (the block ended: they were not a token).
    pub fn finish(&mut self, vault: &Vault) -> String {
        let rest = std::mem::take(&mut self.pending);
        vault.rehydrate(&rest, self.json).into_owned()
    }
}

/// Where the tail that could still become a token starts (`b.len()` when none).
fn held_from(b: &[u8]) -> usize {
    let from = b.len().saturating_sub(MAX_TOKEN_LEN);
    let mut i = from;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        let at = i + off;
        if let TokenScan::Partial = token_end(&b[at..]) {
            return at;
        }
        i = at + 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_same_token_and_reserved_skipped() {
        let mut v = Vault::new();
        v.reserve("<EMAIL_1>");
        assert_eq!(v.token("EMAIL", "a@b.io"), "<EMAIL_2>");
        assert_eq!(v.token("EMAIL", "c@d.io"), "<EMAIL_3>");
        assert_eq!(v.token("EMAIL", "a@b.io"), "<EMAIL_2>");
        assert_eq!(v.token("PERSON", "Ann"), "<PERSON_1>");
        assert_eq!(
            v.rehydrate("to <EMAIL_2>, <EMAIL_1>, <PERSON_1>.", false),
            "to a@b.io, <EMAIL_1>, Ann."
        );
    }

    #[test]
    fn json_values_are_escaped() {
        let mut v = Vault::new();
        v.token("SECRET", "a\"b\\c\n");
        assert_eq!(
            v.rehydrate("{\"k\":\"<SECRET_1>\"}", true),
            "{\"k\":\"a\\\"b\\\\c\\n\"}"
        );
    }

    #[test]
    fn split_tokens_are_held_back() {
        let mut v = Vault::new();
        v.token("PERSON", "Ann Lee");
        let mut r = StreamRehydrator::new(false);
        let mut out = String::new();
        for piece in ["Dear <", "PER", "SON_", "1", ">, hi <b> x<"] {
            out.push_str(&r.push(&v, piece));
        }
        assert!(r.has_pending());
        out.push_str(&r.finish(&v));
        assert_eq!(out, "Dear Ann Lee, hi <b> x<");
    }
}
