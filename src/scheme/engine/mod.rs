//! The verification core that every built-in scheme is a configuration of.
//!
//! A scheme is: a signature header in one of two shapes, an encoding, a template of what is
//! signed, where the timestamp comes from, where the id comes from, and the keys. Verifying
//! feeds the template's pieces (id, timestamp, raw body) to one keyed MAC state per key, in
//! place, so the body is read once and never copied.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::headers::{text, Wanted, MAX_NAMES};
use super::signature::{add_candidate, Alg, Candidates, Key, Part, Signed};
use super::timestamp::{check_age, check_time, TimeText};
use super::{
    DeliveryId, InvalidSecret, InvalidSecretKind, SignError, SignErrorKind, Verified, VerifyError,
    VerifyErrorKind,
};
use crate::json;

mod parts;

pub use parts::Encoding;
use parts::Found;
pub(crate) use parts::{Format, Header, IdFrom, TimestampFrom, TypeFrom};

/// The most signature entries one header may carry: a rotation has two or three.
const MAX_ENTRIES: usize = 32;

/// The most Ed25519 verifications one delivery may cause, whatever its header holds. Each is
/// a SHA-512 pass over the whole body that no secret guards (the hash covers the entry's own
/// `R`, so passes cannot be shared): unbounded, 32 bogus entries times each public key would
/// cost a 1 MiB body about 100 ms of CPU. Four cover a rotation of two keys that both sign.
pub(crate) const MAX_ED25519_CHECKS: usize = 4;

/// One configured scheme.
#[derive(Clone)]
pub(crate) struct Engine {
    pub(crate) name: &'static str,
    pub(crate) signature: Header,
    pub(crate) format: Format,
    pub(crate) encoding: Encoding,
    pub(crate) template: Vec<Part>,
    pub(crate) timestamp: Option<TimestampFrom>,
    pub(crate) tolerance: Duration,
    pub(crate) id: Option<IdFrom>,
    pub(crate) event_type: Option<TypeFrom>,
    pub(crate) keys: Vec<Key>,
}

impl Engine {
    /// Adds an HMAC secret; an empty one proves nothing and is refused.
    pub(crate) fn add_hmac_key(&mut self, key: &[u8]) -> Result<(), InvalidSecret> {
        let key = Key::hmac(key).ok_or(InvalidSecret::new(InvalidSecretKind::Empty))?;
        self.keys.push(key);
        Ok(())
    }

    pub(crate) fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let headers = Wanted::new(headers, self.header_names());
        let signed_id = if self.template.contains(&Part::Id) {
            match &self.id {
                Some(IdFrom::Header(header)) => Some(header.read(&headers)?),
                _ => None,
            }
        } else {
            None
        };
        let timestamp_header = match &self.timestamp {
            Some(TimestampFrom::Header(header, format)) => Some((header.read(&headers)?, *format)),
            _ => None,
        };
        let signature = self.signature.read(&headers)?;
        let (signature_name, signature_text) = (signature.name, signature.bytes());
        if !signature_text.is_ascii() {
            return Err(VerifyError::invalid_header(signature_name.clone()));
        }
        let mut candidates = Candidates::new();
        let listed_timestamp = self.parse(signature_text, signature_name, &mut candidates)?;
        let (timestamp_text, timestamp_name, format) = match (&self.timestamp, timestamp_header) {
            (Some(TimestampFrom::SignatureHeader), _) => {
                let text = listed_timestamp.ok_or_else(|| {
                    VerifyError::invalid_header(signature_name.clone()).with_detail("no timestamp")
                })?;
                (Some(text), signature_name, TimeText::Seconds)
            }
            (_, Some((found, format))) => (Some(found.bytes()), found.name, format),
            (_, None) => (None, signature_name, TimeText::Seconds),
        };
        let mut timestamp = timestamp_text
            .map(|text| check_time(text, format, timestamp_name, now, self.tolerance))
            .transpose()?;
        if candidates.is_empty() {
            return Err(VerifyError::new(VerifyErrorKind::NoSupportedSignature));
        }

        let signed = Signed {
            parts: &self.template,
            id: signed_id.map_or(&[], Found::bytes),
            timestamp: timestamp_text.unwrap_or_default(),
            body,
        };
        let mut ed25519_budget = MAX_ED25519_CHECKS;
        if !self
            .keys
            .iter()
            .any(|key| signed.matches(key, &candidates, &mut ed25519_budget))
        {
            return Err(VerifyError::new(VerifyErrorKind::NoMatchingSignature));
        }
        if let Some(TimestampFrom::JsonField(field, format)) = &self.timestamp {
            timestamp = Some(self.body_time(body, field, *format, signature_name, now)?);
        }

        let id = match (&self.id, signed_id) {
            (Some(IdFrom::Header(_)), Some(found)) => Some(found),
            (Some(IdFrom::Header(header)), None) => header.read_optional(&headers)?,
            _ => None,
        };
        let event_type = match &self.event_type {
            Some(TypeFrom::Header(name)) => headers.get(name)?.map(|value| text(value).to_owned()),
            _ => None,
        };
        // The id is made last, in place: a copy of it right after its bytes are written
        // would stall on store forwarding (see `Candidates`).
        Ok(Verified {
            id: id.map(Found::id),
            timestamp,
            event_type,
        })
    }

    /// Every header name [`verify`](Self::verify) may read.
    fn header_names(&self) -> [Option<&HeaderName>; MAX_NAMES] {
        let [signature, signature_fallback] = self.signature.names();
        let [timestamp, timestamp_fallback] = match &self.timestamp {
            Some(TimestampFrom::Header(header, _)) => header.names(),
            _ => [None; 2],
        };
        let [id, id_fallback] = match &self.id {
            Some(IdFrom::Header(header)) => header.names(),
            _ => [None; 2],
        };
        [
            signature,
            signature_fallback,
            timestamp,
            timestamp_fallback,
            id,
            id_fallback,
            match &self.event_type {
                Some(TypeFrom::Header(name)) => Some(name),
                _ => None,
            },
        ]
    }

    /// Reads every signature entry of a version this scheme checks into `candidates`, and
    /// returns the timestamp entry of a list, if any. Entries that do not decode are skipped:
    /// one bad entry must not hide a good one.
    ///
    /// The text is ASCII, and read as bytes: each is a character.
    fn parse<'h>(
        &self,
        text: &'h [u8],
        name: &HeaderName,
        candidates: &mut Candidates,
    ) -> Result<Option<&'h [u8]>, VerifyError> {
        match &self.format {
            Format::Single { prefix, alg } => {
                if let Some(encoded) = text.trim_ascii().strip_prefix(prefix.as_bytes()) {
                    self.decode(encoded, *alg, candidates);
                }
                Ok(None)
            }
            Format::List {
                entries,
                pair,
                versions,
                timestamp,
            } => {
                let mut found_timestamp = None;
                let mut read = |n: usize, entry: &'h [u8]| {
                    if n == MAX_ENTRIES {
                        return Err(VerifyError::invalid_header(name.clone())
                            .with_detail("too many entries"));
                    }
                    let Some(at) = entry.iter().position(|byte| byte == pair) else {
                        return Ok(());
                    };
                    let (key, value) = (&entry[..at], &entry[at + 1..]);
                    if Some(key) == timestamp.map(str::as_bytes) {
                        if found_timestamp.replace(value).is_some() {
                            return Err(VerifyError::invalid_header(name.clone())
                                .with_detail("more than one timestamp"));
                        }
                    } else if let Some((_, alg)) = versions
                        .iter()
                        .find(|(version, _)| version.as_bytes() == key)
                    {
                        self.decode(value, *alg, candidates);
                    }
                    Ok(())
                };
                // A space separator stands for any run of whitespace. The usual header holds
                // one entry: where no byte is a space or below (as every ASCII whitespace
                // is), the text is that entry, found by a minimum the compiler
                // vectorizes instead of a split that goes byte by byte.
                if *entries == b' ' {
                    let text = text.trim_ascii();
                    if text.iter().fold(u8::MAX, |lowest, &byte| lowest.min(byte)) > b' ' {
                        return read(0, text).map(|()| found_timestamp);
                    }
                    let split = text
                        .split(u8::is_ascii_whitespace)
                        .filter(|entry| !entry.is_empty());
                    for (n, entry) in split.enumerate() {
                        read(n, entry)?;
                    }
                } else {
                    let split = text
                        .split(|byte| byte == entries)
                        .map(<[u8]>::trim_ascii)
                        .filter(|entry| !entry.is_empty());
                    for (n, entry) in split.enumerate() {
                        read(n, entry)?;
                    }
                }
                Ok(found_timestamp)
            }
        }
    }

    /// The time in the verified body's top-level `field`, within the tolerance.
    fn body_time(
        &self,
        body: &[u8],
        field: &str,
        format: TimeText,
        reported_as: &HeaderName,
        now: SystemTime,
    ) -> Result<i64, VerifyError> {
        let malformed =
            || VerifyError::invalid_header(reported_as.clone()).with_detail("no time in the body");
        let value = json::top_level(body, &[field])
            .and_then(|values| values.into_iter().next().flatten())
            .ok_or_else(malformed)?;
        let text = match &value {
            serde_json::Value::Number(number) => number.to_string(),
            serde_json::Value::String(text) => text.clone(),
            _ => return Err(malformed()),
        };
        let seconds = format.parse(text.as_bytes()).ok_or_else(malformed)?;
        check_age(seconds, now, self.tolerance)
    }

    fn decode(&self, encoded: &[u8], alg: Alg, candidates: &mut Candidates) {
        add_candidate(candidates, alg, |out| match self.encoding {
            Encoding::Hex => hex::decode_to_slice(encoded, out).is_ok(),
            // Canonical, padded standard base64 of exactly the signature's length.
            Encoding::Base64 => STANDARD.decode_slice(encoded, out) == Ok(out.len()),
        });
    }

    pub(crate) fn identify(&self, body: &[u8], verified: &Verified) -> Option<DeliveryId> {
        match self.id.as_ref()? {
            IdFrom::Header(_) => verified.id.clone(),
            IdFrom::JsonField(field) => json_field(body, field).map(DeliveryId::from),
            IdFrom::JsonFieldOrBodyHash(field) => Some(DeliveryId::from(
                json_field(body, field).unwrap_or_else(|| body_hash(body)),
            )),
            IdFrom::BodyHash => Some(DeliveryId::from(body_hash(body))),
            IdFrom::JsonNested(outer, inner) => {
                let object = json::top_level(body, &[outer])?.into_iter().next()??;
                let text = json::id_text(object.get(inner)?)?;
                Some(text).filter(|id| !id.is_empty()).map(DeliveryId::from)
            }
        }
    }

    /// The kind of event of a verified delivery, where this sender names it.
    pub(crate) fn event_type(&self, body: &[u8], verified: &Verified) -> Option<String> {
        self.event_type.as_ref()?.read(body, verified)
    }

    /// Whether the id [`identify`](Self::identify) returns is covered by the signature.
    pub(crate) fn signs_id(&self) -> bool {
        match &self.id {
            Some(IdFrom::Header(_)) => self.template.contains(&Part::Id),
            Some(
                IdFrom::JsonField(_)
                | IdFrom::JsonFieldOrBodyHash(_)
                | IdFrom::BodyHash
                | IdFrom::JsonNested(..),
            ) => true,
            None => false,
        }
    }

    /// The headers a sender would send, signed with the first key.
    pub(crate) fn sign(
        &self,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<HeaderMap, SignError> {
        let key = self
            .keys
            .first()
            .ok_or(SignError::new(SignErrorKind::NoSigningKey))?;
        // Written as the sender writes it, as signed: the header carries the same text.
        let timestamp_text = match &self.timestamp {
            Some(TimestampFrom::Header(_, format)) => format.write(timestamp),
            _ => timestamp.to_string(),
        };
        let signed = Signed {
            parts: &self.template,
            id: id.as_bytes(),
            timestamp: timestamp_text.as_bytes(),
            body,
        };
        let (version, alg) = match &self.format {
            Format::Single { alg, .. } => ("", *alg),
            Format::List { versions, .. } => versions
                .iter()
                .find(|(_, alg)| key.can(*alg))
                .copied()
                .ok_or(SignError::new(SignErrorKind::NoSigningKey))?,
        };
        let signature = self.encode(&signed.signature(key, alg)?);
        let value = match &self.format {
            Format::Single { prefix, .. } => format!("{prefix}{signature}"),
            Format::List {
                entries,
                pair,
                timestamp: listed,
                ..
            } => match (listed, &self.timestamp) {
                (Some(name), Some(TimestampFrom::SignatureHeader)) => {
                    let (pair, entries) = (char::from(*pair), char::from(*entries));
                    format!("{name}{pair}{timestamp_text}{entries}{version}{pair}{signature}")
                }
                _ => format!("{version}{}{signature}", char::from(*pair)),
            },
        };
        let mut headers = HeaderMap::new();
        headers.insert(self.signature.name.clone(), HeaderValue::from_str(&value)?);
        if let Some(TimestampFrom::Header(header, _)) = &self.timestamp {
            headers.insert(header.name.clone(), HeaderValue::from_str(&timestamp_text)?);
        }
        if let Some(IdFrom::Header(header)) = &self.id {
            headers.insert(header.name.clone(), HeaderValue::from_str(id)?);
        }
        Ok(headers)
    }

    fn encode(&self, bytes: &[u8]) -> String {
        match self.encoding {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => STANDARD.encode(bytes),
        }
    }
}

impl Engine {
    /// `Debug` for the scheme types built on an engine: never a key.
    pub(crate) fn debug(&self, f: &mut fmt::Formatter<'_>, type_name: &str) -> fmt::Result {
        f.debug_struct(type_name)
            .field("name", &self.name)
            .field("signature_header", &self.signature.name)
            .field("keys", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

pub(crate) fn json_field(body: &[u8], field: &str) -> Option<String> {
    let value = json::top_level(body, &[field])?.into_iter().next()??;
    let text = match value {
        // Taken, not cloned.
        serde_json::Value::String(text) => text,
        other => json::id_text(&other)?,
    };
    Some(text).filter(|id| !id.is_empty())
}

/// `sha256:` and the hex SHA-256 of `body`.
pub(crate) fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}
