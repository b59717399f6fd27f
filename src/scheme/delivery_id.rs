//! The id of one delivery, as text that is cheap to clone.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use http::HeaderValue;

/// The id of one delivery: text, cheap to clone.
///
/// An id read from a header shares that header's bytes, so following it from the request to
/// the store, the handler and the log costs no copy; any other id is shared text. It reads
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
    /// A header value that is UTF-8, which [`DeliveryId::as_str`] relies on.
    Header(HeaderValue),
    Text(Arc<str>),
}

impl DeliveryId {
    /// The id a header holds, sharing its bytes; `None` where the value is not UTF-8.
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
    pub(crate) fn from_checked_header(value: &HeaderValue) -> Self {
        Self(Repr::Header(value.clone()))
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
        Self(Repr::Text(Arc::from(text)))
    }
}

impl From<String> for DeliveryId {
    fn from(text: String) -> Self {
        Self(Repr::Text(Arc::from(text)))
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
    fn a_header_that_is_utf8_but_not_ascii() {
        let value = HeaderValue::from_bytes("msg_é".as_bytes()).unwrap();
        assert_eq!(DeliveryId::from_header(&value).unwrap(), "msg_é");
    }
}
