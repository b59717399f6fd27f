//! Reading a few top-level fields of a JSON body without building the whole document.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
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
    fn not_an_object() {
        assert_eq!(top_level(b"[1,2]", &["id"]), None);
        assert_eq!(top_level(b"id=1&b=2", &["id"]), None);
        assert_eq!(top_level(br#"{"other":1} trailing"#, &["id"]), None);
        assert_eq!(top_level(b"", &["id"]), None);
    }
}
