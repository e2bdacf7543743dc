//! JSON the gateway does not model, kept as the exact text the sender wrote.
//!
//! Unknown fields, unknown block and event types, and opaque values such as a tool's
//! `input` or `input_schema` are held as [`RawJson`]: numbers beyond 64 bits, long
//! decimals, escapes, key order and whitespace all reach the other side byte for byte.
//! A layer that needs to look inside parses on demand ([`RawJson::parse`],
//! [`RawJson::to_value`]) and writes a changed value back with [`RawJson::from_value`].

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;

/// One JSON value, stored as the text it arrived as and written back unchanged.
///
/// ```
/// use ai_core::wire::RawJson;
///
/// let raw: RawJson = serde_json::from_str(r#"{"n": 18446744073709551617, "b": 1, "a": 2}"#).unwrap();
/// assert_eq!(serde_json::to_string(&raw).unwrap(), r#"{"n": 18446744073709551617, "b": 1, "a": 2}"#);
/// assert_eq!(raw.to_value().unwrap()["a"], 2);
/// ```
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Checks that `json` is one JSON value and keeps it as is.
    pub fn from_string(json: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(json).map(RawJson)
    }

    /// The JSON text of `value` (compact).
    pub fn from_value(value: &serde_json::Value) -> Self {
        Self::from_serialize(value).unwrap_or_else(|_| Self::null())
    }

    /// The JSON text of any serializable value (compact).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    /// `null`.
    pub fn null() -> Self {
        // A literal that is valid JSON: the parse cannot fail.
        RawJson::from_string("null".to_owned())
            .unwrap_or_else(|_| unreachable!("`null` is valid json"))
    }

    /// An empty object, `{}`.
    pub fn empty_object() -> Self {
        RawJson::from_string("{}".to_owned())
            .unwrap_or_else(|_| unreachable!("`{{}}` is valid json"))
    }

    /// The JSON text, exactly as received.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses the value into a typed view.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// Parses the value into a [`serde_json::Value`] (numbers beyond `f64` precision and
    /// key order are not kept by `Value`: write back with the raw text when unchanged).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        self.parse()
    }

    /// The value when it is a JSON string.
    pub fn as_string(&self) -> Option<String> {
        if self.get().starts_with('"') {
            self.parse().ok()
        } else {
            None
        }
    }

    pub(crate) fn as_raw_value(&self) -> &RawValue {
        &self.0
    }

    /// Whether the value is `null`.
    pub fn is_null(&self) -> bool {
        self.get() == "null"
    }
}

impl Default for RawJson {
    /// `null`.
    fn default() -> Self {
        RawJson::null()
    }
}

impl PartialEq for RawJson {
    /// Textual equality: `1` and `1.0` differ, as they do on the wire.
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl From<serde_json::Value> for RawJson {
    fn from(v: serde_json::Value) -> Self {
        RawJson::from_value(&v)
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(RawJson)
    }
}

/// The members of an object that a wire type does not model, in the order they came,
/// each value kept as [`RawJson`]. Written back after the modelled fields.
#[derive(Clone, Default, PartialEq)]
pub struct Extra(Vec<(String, RawJson)>);

impl Extra {
    /// No members.
    pub const fn new() -> Self {
        Extra(Vec::new())
    }

    /// The value of member `key`.
    pub fn get(&self, key: &str) -> Option<&RawJson> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets member `key`, replacing its value in place when present; returns the old one.
    pub fn insert(&mut self, key: impl Into<String>, value: RawJson) -> Option<RawJson> {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.0.push((key, value));
                None
            }
        }
    }

    /// Removes member `key`.
    pub fn remove(&mut self, key: &str) -> Option<RawJson> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// The members, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &RawJson)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends a member as read (a repeated key is kept twice, as it was sent).
    pub(crate) fn push(&mut self, key: String, value: RawJson) {
        self.0.push((key, value));
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>> FromIterator<(K, RawJson)> for Extra {
    fn from_iter<I: IntoIterator<Item = (K, RawJson)>>(iter: I) -> Self {
        let mut out = Extra::new();
        for (k, v) in iter {
            out.insert(k, v);
        }
        out
    }
}

/// An object of a type (block, event, delta) this version does not model: its tag and
/// the whole object as received, forwarded unchanged.
#[derive(Clone, PartialEq)]
pub struct OtherObject {
    tag: String,
    json: RawJson,
}

impl OtherObject {
    /// Reads the tag (the `type` member) of an object given as raw JSON.
    pub fn from_raw(json: RawJson) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tag {
            #[serde(rename = "type")]
            tag: String,
        }
        let Tag { tag } = json.parse()?;
        Ok(OtherObject { tag, json })
    }

    pub(crate) fn new(tag: String, json: RawJson) -> Self {
        OtherObject { tag, json }
    }

    /// The value of the tag, e.g. `server_tool_use`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The whole object, as received.
    pub fn json(&self) -> &RawJson {
        &self.json
    }
}

impl fmt::Debug for OtherObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OtherObject").field(&self.json).finish()
    }
}

impl Serialize for OtherObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

/// Writes `{"<tag_key>":"<tag>", ...members}` as JSON text, keeping each member's value
/// as received (only keys are re-escaped).
pub(crate) fn object_text<'a, E: de::Error>(
    tag_key: &str,
    tag: &str,
    members: impl Iterator<Item = (&'a str, &'a RawJson)>,
) -> Result<RawJson, E> {
    let mut out = String::with_capacity(64);
    out.push('{');
    push_json_string(&mut out, tag_key);
    out.push(':');
    push_json_string(&mut out, tag);
    for (k, v) in members {
        out.push(',');
        push_json_string(&mut out, k);
        out.push(':');
        out.push_str(v.get());
    }
    out.push('}');
    RawJson::from_string(out).map_err(E::custom)
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a str into a String cannot fail.
    if let Ok(q) = serde_json::to_string(s) {
        out.push_str(&q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_text_is_kept_byte_for_byte() {
        let text = r#"{"z":18446744073709551617,"a":0.1000000000000000055511151231257827,"s":"\u0000\ud83d\ude00\/","e":1E400}"#;
        let raw: RawJson = serde_json::from_str(text).expect("raw");
        assert_eq!(raw.get(), text);
        assert_eq!(serde_json::to_string(&raw).expect("ser"), text);
    }

    #[test]
    fn extra_keeps_order_and_replaces_in_place() {
        let mut e = Extra::new();
        e.insert("b", RawJson::from_value(&serde_json::json!(1)));
        e.insert("a", RawJson::from_value(&serde_json::json!(2)));
        e.insert("b", RawJson::from_value(&serde_json::json!(3)));
        let keys: Vec<_> = e.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(e.get("b").map(RawJson::get), Some("3"));
        assert_eq!(
            e.remove("b").map(|v| v.get().to_owned()).as_deref(),
            Some("3")
        );
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn other_object_reads_its_tag() {
        let o = OtherObject::from_raw(
            RawJson::from_string(r#"{"x":1,"type":"new_block"}"#.into()).expect("json"),
        )
        .expect("tag");
        assert_eq!(o.tag(), "new_block");
        assert_eq!(
            serde_json::to_string(&o).expect("ser"),
            r#"{"x":1,"type":"new_block"}"#
        );
    }

    #[test]
    fn raw_json_reads_from_a_value_too() {
        let raw: RawJson = serde_json::from_value(serde_json::json!({"a": [1, "x"]})).expect("raw");
        assert_eq!(raw.get(), r#"{"a":[1,"x"]}"#);
        assert_eq!(raw.as_string(), None);
        let s: RawJson = serde_json::from_str(r#""hi\n""#).expect("raw");
        assert_eq!(s.as_string().as_deref(), Some("hi\n"));
    }
}
