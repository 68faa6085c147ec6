//! Finding where a key path's value sits in the YAML text, so validation
//! errors carry a line and column. `serde_norway::Value` keeps no positions,
//! but its deserializer stamps each error with the position of the node being
//! read: walking the document along the path and failing on purpose at the
//! target yields exactly that node's position.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::keypath::{KeyPath, Seg};

/// Unlikely to occur in any real error message.
const FOUND: &str = "\u{1}switchyard-locate-found\u{1}";

/// Byte offset in `text` of the value at `path`, if the path exists there.
pub(crate) fn locate(text: &str, path: &KeyPath) -> Option<usize> {
    let de = serde_norway::Deserializer::from_str(text);
    match (Walk {
        rest: path.segments(),
    })
    .deserialize(de)
    {
        Ok(()) => None,
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| l.index()),
        Err(_) => None,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

struct Walk<'p> {
    rest: &'p [Seg],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    /// At the target, every `visit_*` falls back to serde's "invalid type"
    /// error, whose text includes this: that is the marker looked for.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rest.is_empty() {
            f.write_str(FOUND)
        } else {
            f.write_str("a mapping or sequence")
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(wanted), rest)) = self.rest.split_first() else {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        };
        while let Some(key) = map.next_key::<Key>()? {
            if key.0.as_deref() == Some(wanted.as_str()) {
                return map.next_value_seed(Walk { rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(wanted), rest)) = self.rest.split_first() else {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Walk { rest })?;
        Ok(())
    }
}

/// A mapping key as text; None for keys that are not scalars.
struct Key(Option<String>);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key(Some(v.to_owned())))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
        Ok(Key(Some(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Key(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Key(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
server:
  http_addr: 127.0.0.1:8080
providers:
  - name: openai
    kind: openai
  - {name: demo, kind: demo}
models:
  - name: chat
    routes:
      - provider: openai
        model: gpt-4o-mini
      - provider: opena
        model: x
";

    fn pos(path: &KeyPath) -> Option<(usize, usize)> {
        locate(DOC, path).map(|o| line_col(DOC, o))
    }

    #[test]
    fn finds_nested_values() {
        let p = KeyPath::root()
            .key("models")
            .index(0)
            .key("routes")
            .index(1)
            .key("provider");
        assert_eq!(pos(&p), Some((12, 19)));
        let p = KeyPath::root().key("providers").index(1).key("kind");
        assert_eq!(pos(&p), Some((6, 24)));
        let p = KeyPath::root().key("server").key("http_addr");
        assert_eq!(pos(&p), Some((2, 14)));
        let p = KeyPath::root().key("providers").index(0);
        assert_eq!(pos(&p).map(|p| p.0), Some(4));
    }

    #[test]
    fn missing_paths_have_no_position() {
        assert_eq!(pos(&KeyPath::root().key("bus")), None);
        assert_eq!(pos(&KeyPath::root().key("providers").index(5)), None);
        assert_eq!(pos(&KeyPath::root().key("server").index(0)), None);
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("x", 99), (1, 2));
    }
}
