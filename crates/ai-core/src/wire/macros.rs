//! `wire_struct!`: a struct whose unknown JSON fields are kept in `extra` and written back.
//!
//! serde's `#[serde(flatten)]` would do this too, but it first buffers every object into an
//! intermediate tree and then deserializes it a second time, which costs several microseconds
//! on a 2 KB request and breaks borrowed and raw values inside. The macro writes the visitor
//! serde derive would write, with one extra arm that keeps unknown keys as
//! [`RawJson`](super::RawJson): the exact text the sender wrote.
//!
//! Fields are declared as `req name: Type` (always serialized; absent on input is an error,
//! unless `Type` is an `Option`, which then reads as `None` and writes `null`),
//! `opt name: Type` (stored as `Option<Type>`, skipped on output when `None`; an explicit
//! `null` reads as `None`) or `raw name: RawJson` (stored as `Option<RawJson>`, skipped
//! when absent; an explicit `null` is kept as `null`, so it is forwarded as sent). A field
//! whose JSON key is not its Rust name takes `= "key"`.
//!
//! A key that appears twice in one object is refused (`duplicate field`), as serde derive
//! does: JSON parsers disagree on which copy wins, and the gateway must read the same
//! value the upstream will act on.

macro_rules! wire_field_ty {
    (req $ty:ty) => { $ty };
    (opt $ty:ty) => { Option<$ty> };
    (raw $ty:ty) => { Option<$ty> };
}

macro_rules! wire_key {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident $key:literal) => {
        $key
    };
}

macro_rules! wire_ser_field {
    (req $map:ident, $key:expr, $value:expr) => {
        $map.serialize_entry($key, $value)?;
    };
    (opt $map:ident, $key:expr, $value:expr) => {
        if let Some(v) = $value {
            $map.serialize_entry($key, v)?;
        }
    };
    (raw $map:ident, $key:expr, $value:expr) => {
        wire_ser_field!(opt $map, $key, $value)
    };
}

macro_rules! wire_de_finish {
    (req $ty:ty, $slot:expr, $key:expr) => {
        match $slot {
            Some(v) => v,
            None => {
                <$ty as ::serde::Deserialize<'de>>::deserialize($crate::wire::de::MissingField::<
                    A::Error,
                >::new($key))?
            }
        }
    };
    (opt $ty:ty, $slot:expr, $key:expr) => {
        $slot.flatten()
    };
    (raw $ty:ty, $slot:expr, $key:expr) => {
        $slot.flatten()
    };
}

macro_rules! wire_de_value {
    (req $ty:ty, $map:ident) => {
        $map.next_value::<$ty>()?
    };
    (opt $ty:ty, $map:ident) => {
        $map.next_value::<Option<$ty>>()?
    };
    (raw $ty:ty, $map:ident) => {
        Some($map.next_value::<$ty>()?)
    };
}

macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $kind:ident $field:ident : $ty:ty $(= $key:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: wire_field_ty!($kind $ty),
            )*
            /// Fields this version does not model, kept as they came and written back
            /// unchanged, so a new API field passes through the gateway untouched.
            pub extra: $crate::wire::Extra,
        }

        impl $name {
            /// Writes every field (known, then unknown) into an open JSON map.
            #[allow(unused_variables)]
            pub(crate) fn serialize_fields<M: ::serde::ser::SerializeMap>(
                &self,
                map: &mut M,
            ) -> Result<(), M::Error> {
                $( wire_ser_field!($kind map, wire_key!($field $($key)?), &self.$field); )*
                for (k, v) in self.extra.iter() {
                    map.serialize_entry(k, v)?;
                }
                Ok(())
            }

            /// Reads the remaining entries of a JSON map; `skip` names a key already
            /// consumed by an enclosing tagged enum (its repeats are ignored).
            #[allow(unused_mut)]
            pub(crate) fn visit_fields<'de, A: ::serde::de::MapAccess<'de>>(
                mut map: A,
                skip: Option<&str>,
            ) -> Result<Self, A::Error> {
                $( let mut $field: Option<wire_field_ty!($kind $ty)> = None; )*
                let mut extra = $crate::wire::Extra::new();
                while let Some(key) = map.next_key::<$crate::wire::de::Key<'de>>()? {
                    let key = key.0;
                    match &*key {
                        $( wire_key!($field $($key)?) => {
                            if $field.is_some() {
                                return Err(<A::Error as ::serde::de::Error>::duplicate_field(
                                    wire_key!($field $($key)?),
                                ));
                            }
                            $field = Some(wire_de_value!($kind $ty, map));
                        } )*
                        k if Some(k) == skip => {
                            return Err(<A::Error as ::serde::de::Error>::custom(
                                format_args!("duplicate field `{k}`"),
                            ));
                        }
                        _ => {
                            if extra.get(&key).is_some() {
                                return Err(<A::Error as ::serde::de::Error>::custom(
                                    "duplicate field",
                                ));
                            }
                            let v = map.next_value::<$crate::wire::RawJson>()?;
                            extra.push(key.into_owned(), v);
                        }
                    }
                }
                Ok(Self {
                    $( $field: wire_de_finish!($kind $ty, $field, wire_key!($field $($key)?)), )*
                    extra,
                })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeMap;
                let mut map = s.serialize_map(None)?;
                self.serialize_fields(&mut map)?;
                map.end()
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("a JSON object (", stringify!($name), ")"))
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<$name, A::Error> {
                        $name::visit_fields(map, None)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

/// A tagged enum over `wire_struct!` payloads plus an `Other(OtherObject)` fallback for tags
/// this version does not know, kept as raw JSON. The tag is read in one pass when it is the
/// first key (as every SDK and the API itself write it); otherwise the members are captured
/// once as raw JSON and dispatched.
macro_rules! wire_tagged_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($tag:literal) {
            $(
                $(#[$vmeta:meta])*
                $variant:ident($payload:ty) = $value:literal
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant($payload),
            )*
            /// A tag this version does not model: the whole object, forwarded unchanged.
            Other($crate::wire::OtherObject),
        }

        impl $name {
            /// The value of the tag field, e.g. the `type` of a block or event.
            pub fn type_name(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $value, )*
                    Self::Other(o) => o.tag(),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeMap;
                match self {
                    $( Self::$variant(inner) => {
                        let mut map = s.serialize_map(None)?;
                        map.serialize_entry($tag, $value)?;
                        inner.serialize_fields(&mut map)?;
                        map.end()
                    } )*
                    Self::Other(o) => o.serialize(s),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("a JSON object with a `", $tag, "` field"))
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        use ::serde::de::Error as _;
                        let first = match map.next_key::<$crate::wire::de::Key<'de>>()? {
                            Some(k) => k.0,
                            None => return Err(A::Error::missing_field($tag)),
                        };
                        if &*first == $tag {
                            let tag = map.next_value::<$crate::wire::de::Key<'de>>()?.0;
                            return match &*tag {
                                $( $value => <$payload>::visit_fields(map, Some($tag)).map($name::$variant), )*
                                _ => {
                                    let mut members: Vec<(::std::borrow::Cow<'de, str>, $crate::wire::RawJson)> = Vec::new();
                                    while let Some(k) = map.next_key::<$crate::wire::de::Key<'de>>()? {
                                        if &*k.0 == $tag || members.iter().any(|(m, _)| *m == k.0) {
                                            return Err(A::Error::custom("duplicate field"));
                                        }
                                        members.push((k.0, map.next_value::<$crate::wire::RawJson>()?));
                                    }
                                    let json = $crate::wire::raw::object_text::<A::Error>(
                                        $tag,
                                        &tag,
                                        members.iter().map(|(k, v)| (&**k, v)),
                                    )?;
                                    Ok($name::Other($crate::wire::OtherObject::new(tag.into_owned(), json)))
                                }
                            };
                        }
                        // Slow path: the tag is not the first key. The members are kept as
                        // raw JSON and read again from it, so each nested level on this
                        // path costs one more pass: nesting on it is bounded.
                        let _depth = $crate::wire::de::SlowPathDepth::enter::<A::Error>()?;
                        let mut members: Vec<(::std::borrow::Cow<'de, str>, $crate::wire::RawJson)> = Vec::new();
                        members.push((first, map.next_value()?));
                        while let Some(k) = map.next_key::<$crate::wire::de::Key<'de>>()? {
                            if members.iter().any(|(m, _)| *m == k.0) {
                                return Err(A::Error::custom("duplicate field"));
                            }
                            members.push((k.0, map.next_value()?));
                        }
                        let tag: String = match members.iter().find(|(k, _)| k == $tag) {
                            Some((_, v)) => v
                                .as_string()
                                .ok_or_else(|| A::Error::custom(concat!("`", $tag, "` must be a string")))?,
                            None => return Err(A::Error::missing_field($tag)),
                        };
                        let rest = members.iter().filter(|(k, _)| k != $tag);
                        match tag.as_str() {
                            $( $value => {
                                let access = ::serde::de::value::MapDeserializer::<_, ::serde_json::Error>::new(
                                    rest.map(|(k, v)| (&**k, v.as_raw_value())),
                                );
                                <$payload>::visit_fields(access, None)
                                    .map($name::$variant)
                                    .map_err(A::Error::custom)
                            } )*
                            _ => Ok($name::Other($crate::wire::OtherObject::new(
                                tag.clone(),
                                $crate::wire::raw::object_text::<A::Error>(
                                    $tag,
                                    &tag,
                                    rest.map(|(k, v)| (&**k, v)),
                                )?,
                            ))),
                        }
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}
