//! The serde `Deserializer` over a [`Yaml`] tree: [`from_yaml`], whose
//! [`DeError`]s carry the position of the innermost node being read.

use super::{wording, Pos, Seg, Yaml, YamlKind};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use std::fmt;

/// An error while reading the tree into typed definitions.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    /// Where it happened, when known.
    pub pos: Option<Pos>,
    /// What was wrong, in hookflow's words.
    pub message: String,
    /// The node the error is about, from the root: for an unknown field, the
    /// path ends with that field's key.
    pub path: Vec<Seg>,
    /// What kind of error, for callers that recover from it.
    pub kind: DeErrorKind,
}

/// The kinds of [`DeError`] a caller may recover from.
#[derive(Debug, Clone, PartialEq)]
pub enum DeErrorKind {
    /// A mapping key that the type does not have.
    UnknownField(String),
    /// A field the type needs is absent.
    MissingField(&'static str),
    /// Anything else (a value of the wrong type, an unknown name…).
    Other,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl DeError {
    fn new(message: String, kind: DeErrorKind) -> DeError {
        DeError {
            pos: None,
            message,
            path: Vec::new(),
            kind,
        }
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string(), DeErrorKind::Other)
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(wording::invalid_type(unexp, exp), DeErrorKind::Other)
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(wording::invalid_value(unexp, exp), DeErrorKind::Other)
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DeError::new(
            format!(
                "expected {}, found a list of {len} item(s)",
                wording::expected(&exp.to_string())
            ),
            DeErrorKind::Other,
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(
            wording::unknown_value(variant, expected),
            DeErrorKind::Other,
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(
            wording::unknown_field(field, expected),
            DeErrorKind::UnknownField(field.to_string()),
        )
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(
            format!("missing field `{field}`"),
            DeErrorKind::MissingField(field),
        )
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(
            format!("duplicate key `{field}` in this mapping; remove one of them"),
            DeErrorKind::Other,
        )
    }
}

impl DeError {
    fn at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }

    /// Notes one more step of the path on the way out of a nested value.
    fn within(mut self, seg: Seg) -> Self {
        self.path.insert(0, seg);
        self
    }
}

/// Enums that are written as a mapping with a tag field (`type: condition`)
/// but read like serde's externally tagged enums, so that every field of the
/// variant keeps its position. Named by the enum's Rust name.
const TAGGED_ENUMS: &[(&str, &str, &str)] = &[
    ("NodeDef", "type", "node type"),
    ("VerifyDef", "preset", "verify preset"),
];

/// Reads a typed value from the tree; errors carry positions.
pub fn from_yaml<'a, T: de::Deserialize<'a>>(node: &'a Yaml) -> Result<T, DeError> {
    T::deserialize(node)
}

impl<'de> Deserializer<'de> for &'de Yaml {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.kind {
            YamlKind::Null => visitor.visit_unit(),
            YamlKind::Bool(b) => visitor.visit_bool(*b),
            YamlKind::Int(i) => visitor.visit_i64(*i),
            YamlKind::UInt(u) => visitor.visit_u64(*u),
            YamlKind::Float(f) => visitor.visit_f64(*f),
            YamlKind::Str(s) => visitor.visit_str(s),
            YamlKind::Seq(items) => visitor.visit_seq(SeqReader {
                items: items.iter(),
                index: 0,
            }),
            YamlKind::Map(entries) => visitor.visit_map(MapReader {
                entries: entries.iter(),
                skip: None,
                value: None,
                key: "",
            }),
        };
        result.map_err(|e| e.at(self.pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.kind {
            YamlKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(self.pos))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(self.pos))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let tagged = TAGGED_ENUMS.iter().find(|(n, _, _)| *n == name);
        match (&self.kind, tagged) {
            (YamlKind::Str(s), None) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| e.at(self.pos)),
            (YamlKind::Map(entries), Some((_, tag, what))) => {
                let Some((_, tag_pos, tag_value)) = entries.iter().find(|(k, _, _)| k == tag)
                else {
                    return Err(DeError::new(
                        format!(
                            "missing field `{tag}` (the {what}: one of {})",
                            variants.join(", ")
                        ),
                        DeErrorKind::MissingField(tag),
                    )
                    .at(self.pos));
                };
                let YamlKind::Str(variant) = &tag_value.kind else {
                    return Err(DeError::new(
                        format!(
                            "`{tag}` must be a string (the {what}: one of {}), found {}",
                            variants.join(", "),
                            tag_value.kind_name()
                        ),
                        DeErrorKind::Other,
                    )
                    .at(tag_value.pos));
                };
                if !variants.contains(&variant.as_str()) {
                    let close = crate::suggest::close_names(variant, variants.iter().copied());
                    let hint = match close.as_slice() {
                        [] => format!("; expected one of: {}", variants.join(", ")),
                        close => crate::suggest::did_you_mean(close, ""),
                    };
                    return Err(DeError::new(
                        format!("unknown {what} `{variant}`{hint}"),
                        DeErrorKind::Other,
                    )
                    .at(tag_value.pos));
                }
                let _ = tag_pos;
                visitor
                    .visit_enum(TaggedEnum {
                        node: self,
                        variant,
                        tag,
                    })
                    .map_err(|e| e.at(self.pos))
            }
            (_, Some((_, tag, what))) => Err(DeError::new(
                format!(
                    "expected a mapping with a `{tag}` field (the {what}), found {}",
                    self.kind_name()
                ),
                DeErrorKind::Other,
            )
            .at(self.pos)),
            (_, None) => Err(DeError::new(
                format!(
                    "expected one of: {}; found {}",
                    variants.join(", "),
                    self.kind_name()
                ),
                DeErrorKind::Other,
            )
            .at(self.pos)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

struct SeqReader<'a> {
    items: std::slice::Iter<'a, Yaml>,
    index: usize,
}

impl<'de> SeqAccess<'de> for SeqReader<'de> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(item) => {
                let index = self.index;
                self.index += 1;
                seed.deserialize(item)
                    .map(Some)
                    .map_err(|e| e.at(item.pos).within(Seg::Index(index)))
            }
            None => Ok(None),
        }
    }
}

struct MapReader<'a> {
    entries: std::slice::Iter<'a, (String, Pos, Yaml)>,
    skip: Option<&'static str>,
    value: Option<&'a Yaml>,
    key: &'a str,
}

impl<'de> MapAccess<'de> for MapReader<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for (key, pos, value) in self.entries.by_ref() {
            if Some(key.as_str()) == self.skip {
                continue;
            }
            self.value = Some(value);
            self.key = key;
            let de: de::value::StrDeserializer<'_, DeError> = key.as_str().into_deserializer();
            return seed
                .deserialize(de)
                .map(Some)
                .map_err(|e| e.at(*pos).within(Seg::from(key.as_str())));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value read before its key"))?;
        let key = self.key;
        seed.deserialize(value)
            .map_err(|e| e.at(value.pos).within(Seg::from(key)))
    }
}

struct TaggedEnum<'a> {
    node: &'a Yaml,
    variant: &'a str,
    tag: &'static str,
}

impl<'de> de::EnumAccess<'de> for TaggedEnum<'de> {
    type Error = DeError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let de: de::value::StrDeserializer<'_, DeError> = self.variant.into_deserializer();
        let v = seed.deserialize(de)?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for TaggedEnum<'de> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        // The variant's struct sees the mapping without the tag field.
        seed.deserialize(Untagged {
            node: self.node,
            tag: self.tag,
        })
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(<DeError as de::Error>::custom(
            "tuple variants are not supported",
        ))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        Untagged {
            node: self.node,
            tag: self.tag,
        }
        .deserialize_any(visitor)
    }
}

/// A mapping read as if its tag field were not there.
struct Untagged<'a> {
    node: &'a Yaml,
    tag: &'static str,
}

impl<'de> Deserializer<'de> for Untagged<'de> {
    type Error = DeError;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            YamlKind::Map(entries) => visitor
                .visit_map(MapReader {
                    entries: entries.iter(),
                    skip: Some(self.tag),
                    value: None,
                    key: "",
                })
                .map_err(|e| e.at(self.node.pos)),
            _ => self.node.deserialize_any(visitor),
        }
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
