//! The few request headers a scheme reads, found in one walk over the request's headers.
//!
//! A `HeaderMap` lookup of a custom name hashes it with FNV, one multiplication per byte in a
//! chain: about 20 ns for `webhook-signature`, three or four times per delivery, the largest
//! fixed cost of a verification after the clock. Walking the request's few headers once and
//! comparing names costs less: a standard name (`host`, `content-type`) differs from a custom
//! one in its representation alone, and a custom one of another length at its length.
//!
//! Measured with the perf bar (`../shared/perfbar/run svix`, one sitting): with a lookup per
//! name, a 1 KiB Standard Webhooks verification costs 1.32x raw HMAC, over the crate's bar of
//! 1.30x; with the walk, 1.26x. So the walk stays, and it is the only hand-made part left.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::VerifyError;

/// The most names one scheme reads: signature, timestamp and id, each with an older name,
/// and an event type.
pub(crate) const MAX_NAMES: usize = 7;

/// Above this many distinct names in a request, each header is looked up in the map instead:
/// a walk compares every name of the request with the scheme's, a lookup costs the same
/// however many there are. A sender's request has ten or so. Measured at 1 KiB
/// (`cargo bench --bench verify -- headers`), the walk costs 3 to 7 ns a header, and the two
/// ways cost the same at about 12 headers.
const WALK_LIMIT: usize = 12;

/// How often a request carries one name.
#[derive(Clone, Copy)]
enum Slot<'h> {
    Absent,
    Once(&'h HeaderValue),
    Repeated,
}

impl<'h> Slot<'h> {
    fn lookup(headers: &'h HeaderMap, name: &HeaderName) -> Self {
        let mut values = headers.get_all(name).into_iter();
        match (values.next(), values.next()) {
            (None, _) => Slot::Absent,
            (Some(value), None) => Slot::Once(value),
            (Some(_), Some(_)) => Slot::Repeated,
        }
    }

    fn add(self, value: &'h HeaderValue) -> Self {
        match self {
            Slot::Absent => Slot::Once(value),
            Slot::Once(_) | Slot::Repeated => Slot::Repeated,
        }
    }
}

/// The values a request holds for the names one scheme reads.
pub(crate) struct Wanted<'h> {
    headers: &'h HeaderMap,
    /// The names, each with its slot.
    names: [Option<&'h HeaderName>; MAX_NAMES],
    /// What the walk found for each name, or `None` where the map is looked up instead.
    slots: Option<[Slot<'h>; MAX_NAMES]>,
}

impl<'h> Wanted<'h> {
    /// Finds `names` in `headers`, in one walk where the request has few headers.
    pub(crate) fn new(headers: &'h HeaderMap, names: [Option<&'h HeaderName>; MAX_NAMES]) -> Self {
        let slots = (headers.keys_len() <= WALK_LIMIT).then(|| {
            let mut slots = [Slot::Absent; MAX_NAMES];
            for (name, value) in headers {
                // Every slot of the name: a scheme may name one header twice.
                for (slot, wanted) in slots.iter_mut().zip(&names) {
                    if *wanted == Some(name) {
                        *slot = slot.add(value);
                    }
                }
            }
            slots
        });
        Self {
            headers,
            names,
            slots,
        }
    }

    /// The one value of `name`, `None` where it is absent, or the error a scheme reports
    /// for it.
    ///
    /// Header values may hold any byte but control characters; a value that is not UTF-8 is
    /// malformed for every scheme here. A blank value counts as missing. A header sent twice
    /// is refused: which of the two was signed cannot be told.
    pub(crate) fn get(&self, name: &HeaderName) -> Result<Option<&'h HeaderValue>, VerifyError> {
        let walked = self.slots.as_ref().and_then(|slots| {
            let at = self.names.iter().position(|wanted| *wanted == Some(name))?;
            Some(slots[at])
        });
        let value = match walked.unwrap_or_else(|| Slot::lookup(self.headers, name)) {
            Slot::Absent => return Ok(None),
            Slot::Once(value) => value,
            Slot::Repeated => {
                return Err(
                    VerifyError::invalid_header(name.clone()).with_detail("sent more than once")
                )
            }
        };
        let bytes = value.as_bytes();
        // ASCII, the usual value, is text at once (checked eight bytes at a time, where a
        // UTF-8 check goes byte by byte until its input is aligned).
        let blank = if bytes.is_ascii() {
            bytes.iter().all(u8::is_ascii_whitespace)
        } else {
            std::str::from_utf8(bytes)
                .map_err(|_| VerifyError::invalid_header(name.clone()))?
                .trim()
                .is_empty()
        };
        if blank {
            return Err(VerifyError::missing_header(name.clone()));
        }
        Ok(Some(value))
    }
}

/// The text of a value [`Wanted::get`] returned: UTF-8, checked there.
pub(crate) fn text(value: &HeaderValue) -> &str {
    std::str::from_utf8(value.as_bytes()).unwrap_or_default()
}

/// The one value of `name` in `headers`, if sent: sent twice is refused, as no one can tell
/// which copy the sender signed. For the schemes outside the engine, which read a header or
/// two by name.
pub(crate) fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(VerifyError::invalid_header(name.clone()).with_detail("sent more than once"));
    }
    Ok(first)
}

/// As [`single`], required: absent or blank is a missing header.
pub(crate) fn required<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<&'h HeaderValue, VerifyError> {
    single(headers, name)?
        .filter(|value| !value.as_bytes().trim_ascii().is_empty())
        .ok_or_else(|| VerifyError::missing_header(name.clone()))
}
