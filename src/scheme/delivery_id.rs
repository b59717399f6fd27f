//! The id of one delivery, as text that is cheap to clone.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use http::HeaderValue;

/// The id of one delivery: text, cheap to clone.
///
/// An id of up to 46 bytes (every sender's here) is kept in place: cloning it copies 48
/// bytes, which costs less than counting shares, and making one allocates nothing
/// (`tests/allocations.rs` holds the layer to 3 allocations a delivery; an `Arc<str>` id
/// would make it 4). A longer
/// id read from a header shares that header's bytes; any other is shared text. It reads
/// as a `&str` ([`Deref`]), and compares, hashes and prints as one.
///
/// ```
/// use tower_webhook::scheme::DeliveryId;
///
/// let id = DeliveryId::from("msg_1");
/// assert_eq!(id, "msg_1");
/// assert_eq!(id.len(), 5); // a `str` method, through `Deref`
///
/// let header = http::HeaderValue::from_static("msg_2");
/// assert_eq!(DeliveryId::from_header(&header).as_deref(), Some("msg_2"));
/// ```
#[derive(Clone)]
pub struct DeliveryId(Repr);

#[derive(Clone)]
enum Repr {
    /// Text of at most [`INLINE`] bytes, in place. Copying 48 bytes costs less than
    /// sharing: a shared id takes an atomic increment to clone and a decrement to drop,
    /// and the layer clones one for the store, the handler and the log.
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    /// A header value that is UTF-8, which [`DeliveryId::as_str`] relies on.
    Header(HeaderValue),
    Text(Arc<str>),
}

/// The longest id kept in place: as long as the type's tag and a length leave room for in
/// the 48 bytes it takes anyway (a shared header value and a tag). It holds the ids of every
/// sender here (Standard Webhooks' `msg_` and 27 characters, Stripe's `evt_` and 24,
/// GitHub's and Shopify's 36-character UUIDs).
const INLINE: usize = 46;

impl Repr {
    /// `text`, UTF-8, in place where it fits.
    #[inline]
    fn inline(text: &[u8]) -> Option<Self> {
        let len = u8::try_from(text.len())
            .ok()
            .filter(|&len| usize::from(len) <= INLINE)?;
        let mut bytes = [0; INLINE];
        bytes[..text.len()].copy_from_slice(text);
        Some(Repr::Inline { len, bytes })
    }
}

impl DeliveryId {
    /// The id a header holds, in place or sharing its bytes; `None` where the value is not
    /// UTF-8.
    ///
    /// ```
    /// use http::HeaderValue;
    /// use tower_webhook::scheme::DeliveryId;
    ///
    /// assert!(DeliveryId::from_header(&HeaderValue::from_static("msg_1")).is_some());
    /// assert!(DeliveryId::from_header(&HeaderValue::from_bytes(b"\xff").unwrap()).is_none());
    /// ```
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        std::str::from_utf8(value.as_bytes()).ok()?;
        Some(Self::from_checked_header(value))
    }

    /// The id a header holds whose bytes the caller has checked to be UTF-8 already (the
    /// scheme reads every header as text): no second check. Were they not, the id would
    /// read as empty, never as anything unchecked.
    // Always inlined: made where the verification builds its result, the id's bytes are
    // written once; made in a call, they are copied out of it right after their writes,
    // which stalls on store forwarding (about 15 ns of a 1 KiB verification).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn from_checked_header(value: &HeaderValue) -> Self {
        Self(Repr::inline(value.as_bytes()).unwrap_or_else(|| Repr::Header(value.clone())))
    }

    /// The id as text.
    ///
    /// ```
    /// use tower_webhook::scheme::DeliveryId;
    ///
    /// assert_eq!(DeliveryId::from(String::from("msg_1")).as_str(), "msg_1");
    /// ```
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // UTF-8 by construction; checking again costs a few nanoseconds for an id, and no
            // `unsafe`.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Header(value) => std::str::from_utf8(value.as_bytes()).unwrap_or_default(),
            Repr::Text(text) => text,
        }
    }
}

impl Deref for DeliveryId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for DeliveryId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for DeliveryId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for DeliveryId {
    fn from(text: &str) -> Self {
        Self(Repr::inline(text.as_bytes()).unwrap_or_else(|| Repr::Text(Arc::from(text))))
    }
}

impl From<String> for DeliveryId {
    fn from(text: String) -> Self {
        Self(Repr::inline(text.as_bytes()).unwrap_or_else(|| Repr::Text(Arc::from(text))))
    }
}

impl From<Arc<str>> for DeliveryId {
    fn from(text: Arc<str>) -> Self {
        Self(Repr::Text(text))
    }
}

impl From<DeliveryId> for String {
    fn from(id: DeliveryId) -> Self {
        id.as_str().to_owned()
    }
}

impl PartialEq for DeliveryId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for DeliveryId {}

impl PartialEq<str> for DeliveryId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for DeliveryId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for DeliveryId {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl Hash for DeliveryId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As a `str` hashes, which `Borrow<str>` requires.
        self.as_str().hash(state);
    }
}

impl fmt::Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn header_and_text_ids_are_one_kind_of_value() {
        let header = DeliveryId::from_header(&HeaderValue::from_static("msg_1")).unwrap();
        let text = DeliveryId::from("msg_1");
        assert_eq!(header, text);
        let set: HashSet<DeliveryId> = [header].into_iter().collect();
        assert!(set.contains("msg_1"));
        assert!(set.contains(&text));
        assert_eq!(format!("{text:?} {text}"), "\"msg_1\" msg_1");
        assert_eq!(String::from(text), "msg_1");
    }

    #[test]
    fn short_ids_in_place_and_long_ones_shared_read_alike() {
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 300] {
            let text: String = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let header = HeaderValue::from_str(&text).unwrap();
            let ids = [
                DeliveryId::from(text.as_str()),
                DeliveryId::from(text.clone()),
                DeliveryId::from_header(&header).unwrap(),
                DeliveryId::from(Arc::<str>::from(text.as_str())),
            ];
            let in_place = matches!(ids[0].0, Repr::Inline { .. });
            assert_eq!(in_place, text.len() <= INLINE, "{} bytes", text.len());
            for id in &ids {
                assert_eq!(id.as_str(), text);
                assert_eq!(id.clone(), ids[0]);
            }
        }
        // What the type's documentation says a clone copies.
        assert_eq!(std::mem::size_of::<DeliveryId>(), 48);
    }

    #[test]
    fn a_header_that_is_utf8_but_not_ascii() {
        let value = HeaderValue::from_bytes("msg_é".as_bytes()).unwrap();
        assert_eq!(DeliveryId::from_header(&value).unwrap(), "msg_é");
    }
}
