//! An [`IdSource`] at work: the id of one verified delivery, and the key it is claimed under.

use std::sync::Arc;

use http::request::Parts;
use serde_json::Value;

use super::{BodyHash, IdSource, Source};
use crate::json;
use crate::pipeline::key::dedup_key;
use crate::scheme::engine::body_hash;
use crate::scheme::{DeliveryId, Scheme, Verified};

/// The id of one delivery, the text its dedup key is made from where that differs (the JSON
/// values of body fields, which stay apart where their joined text would not), and whether
/// the key covers the body.
#[derive(Debug)]
pub(crate) struct Identified {
    pub(crate) id: DeliveryId,
    material: Option<String>,
    covers_body: bool,
}

impl Identified {
    /// Marks which source of an [`IdSource::or`] found the id, so that the two sources'
    /// keys never meet.
    fn found_by(mut self, branch: char) -> Self {
        let material = self.material.as_deref().unwrap_or(&self.id);
        self.material = Some(format!("{branch}:{material}"));
        self
    }
}

/// Why a verified delivery has no id, the more telling reason greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum NoId {
    /// The source found nothing, or an empty id.
    Missing,
    /// The id is read from the body, and the body is not a JSON object.
    NotJson,
}

impl IdSource {
    /// The id of one verified delivery, if it has a non-empty one; else why not.
    pub(crate) fn resolve(
        &self,
        scheme: &dyn Scheme,
        parts: &Parts,
        body: &[u8],
        verified: &Verified,
    ) -> Result<Identified, NoId> {
        let missing = NoId::Missing;
        let (id, material) = match &self.source {
            Source::Scheme => (
                scheme
                    .identify(&parts.headers, body, verified)
                    .ok_or(missing)?,
                None,
            ),
            Source::BodyHash => (body_hash(body).into(), None),
            Source::Header(name) => {
                let value = parts.headers.get(name).ok_or(missing)?;
                (DeliveryId::from_header(value).ok_or(missing)?, None)
            }
            Source::Json { fields, separator } => {
                let (id, material) = json_id(body, fields, separator)?;
                (id.into(), Some(material))
            }
            Source::Custom(f) => (f(parts, body).ok_or(missing)?.into(), None),
            Source::Or(first, fallback) => {
                let found = match first.resolve(scheme, parts, body, verified) {
                    Ok(found) => found.found_by('0'),
                    Err(first_failed) => fallback
                        .resolve(scheme, parts, body, verified)
                        // "not JSON" says more than "missing" about why neither found one.
                        .map_err(|failed| first_failed.max(failed))?
                        .found_by('1'),
                };
                let covers_body = self.covers_body(found.covers_body);
                return Ok(Identified {
                    covers_body,
                    ..found
                });
            }
        };
        if id.is_empty() {
            return Err(missing);
        }
        let unsigned = match self.source {
            Source::Scheme => !scheme.signs_id(),
            Source::Header(_) => true,
            _ => false,
        };
        Ok(Identified {
            id,
            material,
            covers_body: self.covers_body(unsigned),
        })
    }

    /// Whether the key covers the body: as set, or where the id is `unsigned`.
    fn covers_body(&self, unsigned: bool) -> bool {
        match self.body_hash {
            BodyHash::Always => true,
            BodyHash::Never => false,
            BodyHash::Unsigned => unsigned,
        }
    }

    /// The key a delivery is claimed under, in the layer's (escaped) `namespace`.
    pub(crate) fn dedup_key(namespace: &str, identified: &Identified, body: &[u8]) -> Arc<str> {
        let material = identified.material.as_deref().unwrap_or(&identified.id);
        dedup_key(namespace, material, identified.covers_body.then_some(body))
    }
}

/// The id of `fields` joined with `separator`, and the fields' JSON values joined with `,`:
/// each value's JSON text ends where it ends, so the second is injective.
fn json_id(body: &[u8], fields: &[String], separator: &str) -> Result<(String, String), NoId> {
    let values = if fields.iter().any(|field| field.starts_with('/')) {
        let root: Value = serde_json::from_slice(body).map_err(|_| NoId::NotJson)?;
        if !root.is_object() {
            return Err(NoId::NotJson);
        }
        fields
            .iter()
            .map(|field| {
                if field.starts_with('/') {
                    root.pointer(field)
                } else {
                    root.get(field)
                }
                .cloned()
            })
            .collect()
    } else {
        let names: Vec<&str> = fields.iter().map(String::as_str).collect();
        json::top_level(body, &names).ok_or(NoId::NotJson)?
    };
    let mut id = String::new();
    let mut material = String::new();
    for (i, value) in values.iter().enumerate() {
        let value = value.as_ref().ok_or(NoId::Missing)?;
        if i > 0 {
            id.push_str(separator);
            material.push(',');
        }
        id.push_str(&json::id_text(value).ok_or(NoId::Missing)?);
        material.push_str(&value.to_string());
    }
    Ok((id, material))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify(source: &IdSource, body: &str) -> Option<Identified> {
        try_identify(source, body).ok()
    }

    fn try_identify(source: &IdSource, body: &str) -> Result<Identified, NoId> {
        let (parts, ()) = http::Request::new(()).into_parts();
        let scheme = crate::scheme::StandardWebhooks::from_key(b"k").unwrap();
        source.resolve(
            &scheme,
            &parts,
            body.as_bytes(),
            &Verified::new().with_id("hdr"),
        )
    }

    fn resolve(source: &IdSource, body: &str) -> Option<String> {
        identify(source, body).map(|identified| identified.id.into())
    }

    fn key(source: &IdSource, body: &str) -> Arc<str> {
        let identified = identify(source, body).unwrap();
        IdSource::dedup_key("ns", &identified, body.as_bytes())
    }

    #[test]
    fn a_fallback_when_the_body_has_no_id() {
        let self_id = IdSource::json_fields(["verification_id", "type"], "-");
        let with_fallback = self_id.clone().or(IdSource::scheme());
        let ping = r#"{"type":"ping"}"#;
        assert_eq!(try_identify(&self_id, ping).unwrap_err(), NoId::Missing);
        assert_eq!(
            try_identify(&self_id, "not json").unwrap_err(),
            NoId::NotJson
        );
        assert_eq!(try_identify(&self_id, "[1]").unwrap_err(), NoId::NotJson);
        assert_eq!(resolve(&with_fallback, ping).as_deref(), Some("hdr"));
        assert_eq!(resolve(&with_fallback, "not json").as_deref(), Some("hdr"));
        let done = r#"{"verification_id":"v_1","type":"done"}"#;
        assert_eq!(resolve(&with_fallback, done).as_deref(), Some("v_1-done"));
        // Where neither finds one, the reason that says more wins.
        let neither = IdSource::json_field("id").or(IdSource::json_field("/other"));
        assert_eq!(try_identify(&neither, "x").unwrap_err(), NoId::NotJson);
        // The two sources' keys never meet, even for the same text.
        let a = IdSource::json_field("id").or(IdSource::scheme());
        assert_ne!(key(&a, r#"{"id":"hdr"}"#), key(&a, r#"{"x":1}"#));
    }

    #[test]
    fn self_style_joined_fields() {
        let source = IdSource::json_fields(["verification_id", "type"], "-");
        assert_eq!(
            resolve(&source, r#"{"verification_id":"v_1","type":"done","x":1}"#).as_deref(),
            Some("v_1-done")
        );
        assert_eq!(resolve(&source, r#"{"verification_id":"v_1"}"#), None);
        assert_eq!(
            resolve(&source, r#"{"verification_id":null,"type":"a"}"#),
            None
        );
        assert_eq!(resolve(&source, "not json"), None);
    }

    #[test]
    fn joined_fields_key_apart_where_their_text_does_not() {
        let source = IdSource::json_fields(["verification_id", "type"], "-");
        let a = r#"{"verification_id":"v-1","type":"done"}"#;
        let b = r#"{"verification_id":"v","type":"1-done"}"#;
        assert_eq!(resolve(&source, a), resolve(&source, b));
        assert_ne!(key(&source, a), key(&source, b));
        let single = IdSource::json_field("id");
        assert_eq!(resolve(&single, r#"{"id":1}"#).as_deref(), Some("1"));
        assert_eq!(resolve(&single, r#"{"id":"1"}"#).as_deref(), Some("1"));
        assert_ne!(key(&single, r#"{"id":1}"#), key(&single, r#"{"id":"1"}"#));
    }

    #[test]
    fn pointers_numbers_and_empty_ids() {
        let nested = IdSource::json_field("/data/id");
        assert_eq!(
            resolve(&nested, r#"{"data":{"id":42}}"#).as_deref(),
            Some("42")
        );
        assert_eq!(resolve(&IdSource::json_field("id"), r#"{"id":""}"#), None);
        assert_eq!(resolve(&IdSource::scheme(), "").as_deref(), Some("hdr"));
    }

    #[test]
    fn body_hashes() {
        let hashed = resolve(&IdSource::body_hash(), "token=x&command=/deploy").unwrap();
        assert_eq!(hashed.len(), "sha256:".len() + 64);
        assert_ne!(
            resolve(&IdSource::body_hash(), "token=x&command=/undo").unwrap(),
            hashed
        );
        // Standard Webhooks signs its id: the key is the id alone, unless asked.
        assert_eq!(&*key(&IdSource::scheme(), "body a"), "ns:i:hdr");
        let keyed = IdSource::scheme().with_body_hash();
        let a = key(&keyed, "body a");
        assert!(a.starts_with("ns:ib:") && a.ends_with(":hdr"), "{a}");
        assert_ne!(a, key(&keyed, "body b"));
    }
}
