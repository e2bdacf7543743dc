//! SHA-256 helpers: hex digests, the `sha256:` form records use, and a canonical JSON
//! hash (keys sorted, no whitespace) so the same tool arguments hash the same whether the
//! model streamed them or a client sent them back reformatted.

use ring::digest::{Context, SHA256};
use serde_json::Value;

/// A SHA-256 digest.
pub(crate) type Digest = [u8; 32];

/// The digest of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    let d = ring::digest::digest(&SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex of a digest.
pub(crate) fn hex(d: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in d {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// `sha256:<hex>`, the form record fields use.
pub(crate) fn tagged(d: &Digest) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    s.push_str(&hex(d));
    s
}

/// An incremental hash.
pub(crate) struct Hasher(Context);

impl Hasher {
    pub(crate) fn new() -> Self {
        Hasher(Context::new(&SHA256))
    }

    /// Adds one item, length-prefixed, so `["ab","c"]` and `["a","bc"]` differ.
    pub(crate) fn item(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> Digest {
        let d = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

/// Writes `v` as canonical JSON: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings and numbers as serde_json writes them.
pub(crate) fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_plain(&Value::String(k.clone()), out);
                out.push(b':');
                if let Some(v) = map.get(k) {
                    canonical_json(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        other => write_plain(other, out),
    }
}

fn write_plain(v: &Value, out: &mut Vec<u8>) {
    // Writing a scalar to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `sha256:` of the canonical form of a JSON text; a text that does not parse is hashed
/// as it is (the model may stop mid-arguments).
pub(crate) fn canonical_hash(json: &str) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(v) => {
            let mut buf = Vec::with_capacity(json.len());
            canonical_json(&v, &mut buf);
            tagged(&sha256(&buf))
        }
        Err(_) => tagged(&sha256(json.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn canonical_hash_ignores_key_order_and_spacing() {
        let a = canonical_hash(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#);
        let b = canonical_hash(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:"));
        assert_ne!(a, canonical_hash(r#"{"a":{"x":"s","y":[2,1]},"b":1}"#));
    }

    #[test]
    fn items_are_length_prefixed() {
        let mut h1 = Hasher::new();
        h1.item(b"ab");
        h1.item(b"c");
        let mut h2 = Hasher::new();
        h2.item(b"a");
        h2.item(b"bc");
        assert_ne!(h1.finish(), h2.finish());
    }
}
