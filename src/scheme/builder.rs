//! `HmacSchemeBuilder`: an HMAC-SHA256 sender this crate has no preset for.

use std::fmt;
use std::time::Duration;

use http::HeaderName;

use super::engine::{Encoding, Engine, Format, Header, IdFrom, TimestampFrom, TypeFrom};
use super::signature::{self, Alg, Key};
use super::{HmacScheme, InvalidScheme, InvalidSchemeKind};

/// Builds an [`HmacScheme`] for a sender this crate has no preset for.
///
/// ```
/// use tower_webhook::scheme::HmacScheme;
///
/// let scheme = HmacScheme::builder("acme")
///     .signature_header("x-acme-signature")
///     .prefix("sha256=")
///     .signs("{timestamp}.{body}")
///     .timestamp_header("x-acme-timestamp")
///     .id_header("x-acme-delivery")
///     .event_type_header("x-acme-event")
///     .secret("acme secret")
///     .build()?;
/// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct HmacSchemeBuilder {
    name: &'static str,
    signature_header: Option<String>,
    prefix: String,
    encoding: Encoding,
    template: String,
    timestamp_header: Option<String>,
    tolerance: Duration,
    id_header: Option<String>,
    event_type_header: Option<String>,
    event_type_field: Option<String>,
    keys: Vec<Vec<u8>>,
}

/// Shows the settings and how many secrets there are; never a secret.
impl fmt::Debug for HmacSchemeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSchemeBuilder")
            .field("name", &self.name)
            .field("signature_header", &self.signature_header)
            .field("prefix", &self.prefix)
            .field("encoding", &self.encoding)
            .field("template", &self.template)
            .field("timestamp_header", &self.timestamp_header)
            .field("tolerance", &self.tolerance)
            .field("id_header", &self.id_header)
            .field("event_type_header", &self.event_type_header)
            .field("event_type_field", &self.event_type_field)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl HmacSchemeBuilder {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            signature_header: None,
            prefix: String::new(),
            encoding: Encoding::Hex,
            template: "{body}".to_owned(),
            timestamp_header: None,
            tolerance: super::hmac::FIVE_MINUTES,
            id_header: None,
            event_type_header: None,
            event_type_field: None,
            keys: Vec::new(),
        }
    }

    /// The header that carries the signature. Required.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn signature_header(mut self, name: &str) -> Self {
        self.signature_header = Some(name.to_owned());
        self
    }

    /// What precedes the signature in its header, such as `sha256=`. None by default.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .prefix("sha256=") // X-Acme-Signature: sha256=<hex>
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// How the signature is written: [`Encoding::Hex`] (the default) or
    /// [`Encoding::Base64`].
    ///
    /// ```
    /// use tower_webhook::scheme::{Encoding, HmacScheme};
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .encoding(Encoding::Base64)
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// What is signed, as a template of `{body}` (exactly once), `{timestamp}` and `{id}`
    /// with any text between: `"{body}"` (the default), `"{timestamp}.{body}"`,
    /// `"v0:{timestamp}:{body}"`. The timestamp and id are the header values as sent.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .signs("v0:{timestamp}:{body}")
    ///     .timestamp_header("x-acme-timestamp")
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn signs(mut self, template: &str) -> Self {
        template.clone_into(&mut self.template);
        self
    }

    /// The header with the signed Unix timestamp, in seconds. With it, deliveries outside the
    /// tolerance are refused. The template must sign it (`{timestamp}`): a timestamp the
    /// signature does not cover can be set afresh by whoever replays a delivery, and checking
    /// it would protect nothing, so [`build`](Self::build) refuses that.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .signs("{timestamp}.{body}")
    ///     .timestamp_header("x-acme-timestamp")
    ///     .secret("acme secret")
    ///     .build()?;
    ///
    /// // Without {timestamp} in the template, the header would protect nothing: refused.
    /// let unsigned = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .timestamp_header("x-acme-timestamp")
    ///     .secret("acme secret")
    ///     .build();
    /// assert!(unsigned.is_err());
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn timestamp_header(mut self, name: &str) -> Self {
        self.timestamp_header = Some(name.to_owned());
        self
    }

    /// How far the timestamp may lie from now, either way. Five minutes by default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .signs("{timestamp}.{body}")
    ///     .timestamp_header("x-acme-timestamp")
    ///     .tolerance(Duration::from_secs(60))
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The header with the delivery's id.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .id_header("x-acme-delivery")
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn id_header(mut self, name: &str) -> Self {
        self.id_header = Some(name.to_owned());
        self
    }

    /// The header that names the kind of event.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .event_type_header("x-acme-event")
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn event_type_header(mut self, name: &str) -> Self {
        self.event_type_header = Some(name.to_owned());
        self.event_type_field = None;
        self
    }

    /// The field of the JSON body that names the kind of event: a top-level key (`type`),
    /// or a JSON Pointer (`/event/type`). Replaces a header set before, as a header set
    /// after replaces it.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .event_type_field("/event/type")
    ///     .secret("acme secret")
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn event_type_field(mut self, field: &str) -> Self {
        self.event_type_field = Some(field.to_owned());
        self.event_type_header = None;
        self
    }

    /// A secret, as the sender shows it: its UTF-8 bytes, without surrounding whitespace,
    /// are the key. Call again to add the secret of a rotation. A blank one fails the build.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .secret("the new secret")
    ///     .secret("the old secret") // a rotation: both verify
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn secret(self, secret: &str) -> Self {
        self.key(secret.trim().as_bytes())
    }

    /// A secret given as raw key bytes.
    ///
    /// ```
    /// use tower_webhook::scheme::HmacScheme;
    ///
    /// let scheme = HmacScheme::builder("acme")
    ///     .signature_header("x-acme-signature")
    ///     .key([0x2a_u8; 32]) // raw key bytes, not text
    ///     .build()?;
    /// # Ok::<(), tower_webhook::scheme::InvalidScheme>(())
    /// ```
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.keys.push(key.as_ref().to_vec());
        self
    }

    /// The scheme, or what is wrong with its settings.
    ///
    /// ```
    /// use tower_webhook::scheme::{HmacScheme, InvalidSchemeKind};
    ///
    /// let no_secret = HmacScheme::builder("acme").signature_header("x-acme-signature").build();
    /// assert_eq!(no_secret.unwrap_err().kind(), InvalidSchemeKind::NoSecret);
    /// ```
    pub fn build(self) -> Result<HmacScheme, InvalidScheme> {
        let header = |name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| InvalidScheme::new(InvalidSchemeKind::HeaderName))
        };
        let signature = header(
            self.signature_header
                .as_deref()
                .ok_or(InvalidScheme::new(InvalidSchemeKind::NoSignatureHeader))?,
        )?;
        let template = signature::template(&self.template).map_err(InvalidScheme::template)?;
        let timestamp = self.timestamp_header.as_deref().map(header).transpose()?;
        let id = self.id_header.as_deref().map(header).transpose()?;
        if template.contains(&signature::Part::Timestamp) && timestamp.is_none() {
            return Err(InvalidScheme::template(
                "{timestamp} needs a timestamp header",
            ));
        }
        if template.contains(&signature::Part::Id) && id.is_none() {
            return Err(InvalidScheme::template("{id} needs an id header"));
        }
        if timestamp.is_some() && !template.contains(&signature::Part::Timestamp) {
            return Err(InvalidScheme::new(InvalidSchemeKind::UnsignedTimestamp));
        }
        if self.keys.is_empty() {
            return Err(InvalidScheme::new(InvalidSchemeKind::NoSecret));
        }
        let keys = self
            .keys
            .iter()
            .map(|key| Key::hmac(key).ok_or(InvalidScheme::new(InvalidSchemeKind::EmptySecret)))
            .collect::<Result<_, _>>()?;
        Ok(HmacScheme::from_engine(Engine {
            name: self.name,
            signature: Header::new(signature),
            format: Format::Single {
                prefix: self.prefix,
                alg: Alg::HmacSha256,
            },
            encoding: self.encoding,
            template,
            timestamp: timestamp.map(|name| TimestampFrom::seconds(Header::new(name))),
            tolerance: self.tolerance,
            id: id.map(|name| IdFrom::Header(Header::new(name))),
            event_type: match (&self.event_type_header, &self.event_type_field) {
                (Some(name), _) => Some(TypeFrom::Header(header(name)?)),
                (None, Some(field)) => Some(TypeFrom::Json(crate::json::pointer_path(field))),
                (None, None) => None,
            },
            keys,
        }))
    }
}
