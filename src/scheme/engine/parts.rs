//! What a scheme is configured with: the signature header and its shape, the encoding,
//! and where the timestamp, the id and the event type come from.

use http::{HeaderName, HeaderValue};

use crate::json;
use crate::scheme::headers::Wanted;
use crate::scheme::signature::Alg;
use crate::scheme::timestamp::TimeText;
use crate::scheme::{DeliveryId, Verified, VerifyError};

/// How signatures are written in the signature header.
///
/// ```
/// use tower_webhook::scheme::{Encoding, HmacScheme};
///
/// // X-Acme-Signature: <base64 of HMAC(body)>
/// let acme = HmacScheme::builder("acme")
///     .signature_header("x-acme-signature")
///     .encoding(Encoding::Base64)
///     .secret("acme secret")
///     .build()?;
/// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// Hexadecimal digits (either case is read; lowercase is written).
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The shape of the signature header.
#[derive(Debug, Clone)]
pub(crate) enum Format {
    /// One signature of `alg` after a fixed prefix: `sha256=<hex>`, `v0=<hex>`, `<base64>`.
    Single { prefix: String, alg: Alg },
    /// `key<pair>value` entries separated by `entries` (whitespace when `b' '`): some keys
    /// name signature versions, one may carry the timestamp. `t=1,v1=ab,v1=cd`; `v1,AB= v1a,CD=`.
    /// The separators are ASCII, as the header is.
    List {
        entries: u8,
        pair: u8,
        versions: &'static [(&'static str, Alg)],
        timestamp: Option<&'static str>,
    },
}

/// A header, with the name an older version of the sender used, if any.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) name: HeaderName,
    pub(crate) fallback: Option<HeaderName>,
}

impl Header {
    pub(crate) fn new(name: HeaderName) -> Self {
        Self {
            name,
            fallback: None,
        }
    }

    /// The header's one value (text, not blank) and the name it came under: the fallback
    /// only where the main name is absent. A header missing under both names is reported
    /// under the main one.
    pub(super) fn read<'h>(&'h self, headers: &Wanted<'h>) -> Result<Found<'h>, VerifyError> {
        self.read_optional(headers)?
            .ok_or_else(|| VerifyError::missing_header(self.name.clone()))
    }

    /// As [`read`](Self::read), with a header absent under both names `None`.
    pub(super) fn read_optional<'h>(
        &'h self,
        headers: &Wanted<'h>,
    ) -> Result<Option<Found<'h>>, VerifyError> {
        let found =
            |name: &'h HeaderName| Ok(headers.get(name)?.map(|value| Found { name, value }));
        match (found(&self.name)?, &self.fallback) {
            (Some(main), _) => Ok(Some(main)),
            (None, Some(fallback)) => found(fallback),
            (None, None) => Ok(None),
        }
    }

    /// Its names, the main one first.
    pub(super) fn names(&self) -> [Option<&HeaderName>; 2] {
        [Some(&self.name), self.fallback.as_ref()]
    }
}

/// A header read by [`Header::read`]: its value is text, and not blank.
#[derive(Clone, Copy)]
pub(super) struct Found<'h> {
    pub(super) name: &'h HeaderName,
    value: &'h HeaderValue,
}

impl<'h> Found<'h> {
    pub(super) fn bytes(self) -> &'h [u8] {
        self.value.as_bytes()
    }

    /// The id it holds (its text is UTF-8, checked on reading).
    #[inline]
    pub(super) fn id(self) -> DeliveryId {
        DeliveryId::from_checked_header(self.value)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum TimestampFrom {
    /// A header of its own, written as the `TimeText` says.
    Header(Header, TimeText),
    /// The entry of the signature list named by `Format::List::timestamp`, in seconds.
    SignatureHeader,
    /// A top-level field of the JSON body (Linear's `webhookTimestamp`, in milliseconds):
    /// signed as part of the body, so checked once the signature is, and reported as the
    /// signature header's when it is missing or malformed.
    JsonField(&'static str, TimeText),
}

impl TimestampFrom {
    /// A header of its own in Unix seconds, as most senders write it.
    pub(crate) fn seconds(header: Header) -> Self {
        TimestampFrom::Header(header, TimeText::Seconds)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum IdFrom {
    Header(Header),
    JsonField(&'static str),
    /// `event_id` of an Events API body; a hash of any other body (a slash command), which
    /// the sender's retries repeat byte for byte.
    JsonFieldOrBodyHash(&'static str),
    /// A hash of the body, for a sender that sends no id: its retries resend the same bytes.
    BodyHash,
    /// A field of a top-level object of the JSON body: Coinbase Commerce's `event.id`.
    JsonNested(&'static str, &'static str),
}

/// Where a sender names the kind of event: a header, or a value of the JSON body (its path
/// of keys and array indexes).
#[derive(Debug, Clone)]
pub(crate) enum TypeFrom {
    Header(HeaderName),
    Json(Vec<String>),
}

impl TypeFrom {
    pub(crate) fn header(name: &'static str) -> Self {
        Self::Header(HeaderName::from_static(name))
    }

    pub(crate) fn json(path: &[&str]) -> Self {
        Self::Json(path.iter().map(|&key| key.to_owned()).collect())
    }

    /// The event type of a verified delivery: the header [`Engine::verify`] read already, or
    /// the body's value.
    pub(crate) fn read(&self, body: &[u8], verified: &Verified) -> Option<String> {
        match self {
            Self::Header(_) => verified.event_type.clone(),
            Self::Json(path) => json::text_at(body, path),
        }
    }
}
