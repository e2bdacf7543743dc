//! Deserialization helpers shared by the wire macros.

use serde::de::{self, Deserializer, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A map key or tag, borrowed from the input when it has no escapes.
#[derive(Debug)]
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Stands in for a field that was absent: `Option<T>` reads as `None`, anything else
/// reports `missing field`. This is what serde derive does for absent fields.
pub(crate) struct MissingField<E> {
    name: &'static str,
    _e: PhantomData<E>,
}

impl<E> MissingField<E> {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            _e: PhantomData,
        }
    }
}

impl<'de, E: de::Error> Deserializer<'de> for MissingField<E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, E> {
        Err(E::missing_field(self.name))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// Most nested objects decoded on the tagged-enum slow path (tag not first). The API
/// nests content at most twice (a tool result's blocks); the bound keeps a crafted body
/// from costing (size x depth) work.
pub(crate) const MAX_SLOW_PATH_DEPTH: u32 = 8;

std::thread_local! {
    static SLOW_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts one level of slow-path nesting on this thread while alive.
#[derive(Debug)]
pub(crate) struct SlowPathDepth(());

impl SlowPathDepth {
    pub(crate) fn enter<E: de::Error>() -> Result<Self, E> {
        SLOW_DEPTH.with(|d| {
            let now = d.get() + 1;
            if now > MAX_SLOW_PATH_DEPTH {
                return Err(E::custom("content is nested too deeply"));
            }
            d.set(now);
            Ok(SlowPathDepth(()))
        })
    }
}

impl Drop for SlowPathDepth {
    fn drop(&mut self) {
        SLOW_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}
