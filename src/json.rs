//! Reading a few top-level fields of a JSON body without building the whole document.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// The values of `fields` at the top level of the JSON object `body`, in order; `None` if the
/// body is not a JSON object. Other fields are skipped without being stored.
///
/// Reading stops once every field is found: the body was verified, so the rest of it proves
/// nothing more, and Stripe's `id` comes first in a body of up to a megabyte.
pub(crate) fn top_level(body: &[u8], fields: &[&str]) -> Option<Vec<Option<Value>>> {
    let mut found = vec![None; fields.len()];
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let read = Fields {
        wanted: fields,
        found: &mut found,
    }
    .deserialize(&mut deserializer);
    match read {
        Ok(()) => deserializer.end().ok()?,
        // The visitor stops with an error right after the last wanted field and at no other
        // time with every field found: no need to read the error's text.
        Err(_) if found.iter().all(Option::is_some) => {}
        Err(_) => return None,
    }
    Some(found)
}

/// The error that stops reading once every wanted field is found.
const ALL_FOUND: &str = "\u{0}all wanted fields found";

/// A field's value as id text: strings as they are, numbers and booleans as their JSON text;
/// nothing for null, arrays and objects.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

struct Fields<'a, 'f> {
    wanted: &'a [&'a str],
    found: &'f mut [Option<Value>],
}

impl<'de> DeserializeSeed<'de> for Fields<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(position) = map.next_key_seed(Key(self.wanted))? {
            match position {
                Some(at) if self.found[at].is_none() => {
                    self.found[at] = Some(map.next_value()?);
                    if self.found.iter().all(Option::is_some) {
                        return Err(serde::de::Error::custom(ALL_FOUND));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The text at `path` as [`id_text`] makes it (a string, or a number's or a boolean's
/// digits), read straight into the one `String` it returns: no `Value` between.
pub(crate) fn text_at<S: AsRef<str>>(body: &[u8], path: &[S]) -> Option<String> {
    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let read = Path {
        path,
        found: &mut found,
    }
    .deserialize(&mut deserializer);
    match read {
        Ok(()) => deserializer.end().ok()?,
        Err(_) if found.is_some() => {}
        Err(_) => return None,
    }
    found.and_then(|Text(text)| text)
}

/// The segments of a JSON Pointer (`/data/object/id`), unescaped; a name that is not a
/// pointer (no leading `/`) is one top-level key.
pub(crate) fn pointer_path(field: &str) -> Vec<String> {
    match field.strip_prefix('/') {
        Some(pointer) => pointer
            .split('/')
            .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
            .collect(),
        None => vec![field.to_owned()],
    }
}

/// Reads the value at `path` into `found`, then stops with [`ALL_FOUND`].
struct Path<'a, 'f, S, T> {
    path: &'a [S],
    found: &'f mut Option<T>,
}

impl<'de, S: AsRef<str>, T: Deserialize<'de>> DeserializeSeed<'de> for Path<'_, '_, S, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            *self.found = Some(T::deserialize(deserializer)?);
            return Err(serde::de::Error::custom(ALL_FOUND));
        }
        deserializer.deserialize_any(self)
    }
}

/// A value's text as [`id_text`] makes it, read without a `Value`: `None` for a null, an
/// array or an object.
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<Text, E> {
        Ok(Text(Some(text.to_owned())))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Text, E> {
        Ok(Text(Some(value.to_string())))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Text, E> {
        Ok(Text(Some(value.to_string())))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Text, E> {
        Ok(Text(Some(value.to_string())))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Text, E> {
        Ok(Text(Some(Value::from(value).to_string())))
    }

    fn visit_unit<E>(self) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
}

impl<'de, S: AsRef<str>, T: Deserialize<'de>> Visitor<'de> for Path<'_, '_, S, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (first, rest) = (self.path[0].as_ref(), &self.path[1..]);
        let wanted = [first];
        while let Some(position) = map.next_key_seed(Key(&wanted))? {
            if position.is_some() {
                map.next_value_seed(Path {
                    path: rest,
                    found: &mut *self.found,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let index = self.path[0].as_ref().parse::<usize>().ok();
        let rest = &self.path[1..];
        let mut at = 0;
        loop {
            let more = if Some(at) == index {
                seq.next_element_seed(Path {
                    path: rest,
                    found: &mut *self.found,
                })?
            } else {
                seq.next_element::<IgnoredAny>()?.map(drop)
            };
            if more.is_none() {
                return Ok(());
            }
            at += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A map key, read as its position among the wanted fields, without allocating it.
struct Key<'a>(&'a [&'a str]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|wanted| *wanted == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_top_level_fields_only() {
        let body = br#"{"data":{"id":"inner"},"id":"evt_1","type":"x","n":7,"id":"dup"}"#;
        let found = top_level(body, &["id", "n", "missing"]).unwrap();
        assert_eq!(
            found[0].as_ref().and_then(id_text).as_deref(),
            Some("evt_1")
        );
        assert_eq!(found[1].as_ref().and_then(id_text).as_deref(), Some("7"));
        assert_eq!(found[2], None);
    }

    #[test]
    fn reading_stops_at_the_last_wanted_field() {
        // What follows the fields is not read: here, it would not parse.
        let found = top_level(
            br#"{"id":"evt_1","type":"x", !!! not json"#,
            &["id", "type"],
        )
        .unwrap();
        assert_eq!(
            found[0].as_ref().and_then(id_text).as_deref(),
            Some("evt_1")
        );
        assert_eq!(found[1].as_ref().and_then(id_text).as_deref(), Some("x"));
        // A field that is missing still needs the whole body read.
        assert_eq!(top_level(br#"{"id":"evt_1", !!!"#, &["id", "type"]), None);
    }

    #[test]
    fn values_at_a_path() {
        let body = br#"{"id":"evt","event":{"id":"in","type":"invoice.paid"},"value":[{"a":1},{"changeType":"created"}],"n":7}"#;
        let text = |path: &[&str]| text_at(body, path);
        assert_eq!(text(&["event", "type"]).as_deref(), Some("invoice.paid"));
        assert_eq!(
            text(&["value", "1", "changeType"]).as_deref(),
            Some("created")
        );
        assert_eq!(text(&["n"]).as_deref(), Some("7"));
        assert_eq!(text(&["value", "2", "changeType"]), None);
        assert_eq!(text(&["value", "x"]), None);
        assert_eq!(text(&["n", "deeper"]), None);
        assert_eq!(text(&["missing"]), None);
        // Reading stops at the value: what follows is not read.
        assert_eq!(
            text_at(br#"{"type":"a", !!!"#, &["type"]).as_deref(),
            Some("a")
        );
        assert_eq!(text_at(br#"{"other":1} trailing"#, &["type"]), None);
        assert_eq!(text_at(b"not json", &["type"]), None);
        assert_eq!(text_at(br#"{"type":{"a":[1]},"b":2}"#, &["type"]), None);
        assert_eq!(
            text_at(br#"{"type":1.5}"#, &["type"]).as_deref(),
            Some("1.5")
        );
        assert_eq!(
            text_at(br#"{"type":"a\"b"}"#, &["type"]).as_deref(),
            Some("a\"b")
        );
        assert_eq!(pointer_path("/data/a~1b/c~0d"), ["data", "a/b", "c~d"]);
        assert_eq!(pointer_path("type"), ["type"]);
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_read_or_refused(body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = text_at(&body, &["a", "0", "b"]);
        }
    }

    #[test]
    fn not_an_object() {
        assert_eq!(top_level(b"[1,2]", &["id"]), None);
        assert_eq!(top_level(b"id=1&b=2", &["id"]), None);
        assert_eq!(top_level(br#"{"other":1} trailing"#, &["id"]), None);
        assert_eq!(top_level(b"", &["id"]), None);
    }
}
