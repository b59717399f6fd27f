//! Signature schemes: how one sender signs its deliveries.
//!
//! The layer knows nothing of any sender's headers. It hands the request headers, the raw body
//! and the current time to a [`Scheme`], and goes on only if the scheme answers with
//! [`Verified`]. A new sender is a new `Scheme`; the layer does not change.
//!
//! | sender | scheme |
//! | --- | --- |
//! | Svix and every Standard Webhooks sender (Clerk, Resend, Crossmint, Self, ...) | [`StandardWebhooks`] |
//! | Stripe | [`HmacScheme::stripe`] |
//! | GitHub | [`HmacScheme::github`] |
//! | Shopify | [`HmacScheme::shopify`] |
//! | Slack | [`HmacScheme::slack`] |
//! | Paddle | [`HmacScheme::paddle`] |
//! | Zoom | [`HmacScheme::zoom`] |
//! | Meta (WhatsApp, Instagram, Messenger) | [`HmacScheme::meta`] |
//! | Lemon Squeezy | [`HmacScheme::lemon_squeezy`] |
//! | WooCommerce | [`HmacScheme::woocommerce`] |
//! | Typeform | [`HmacScheme::typeform`] |
//! | Calendly | [`HmacScheme::calendly`] |
//! | PagerDuty (v3) | [`HmacScheme::pagerduty`] |
//! | Dropbox | [`HmacScheme::dropbox`] |
//! | Twitch EventSub | [`HmacScheme::twitch`] |
//! | Linear | [`HmacScheme::linear`] |
//! | Intercom (HMAC-SHA1) | [`HmacScheme::intercom`] |
//! | Vercel (HMAC-SHA1) | [`HmacScheme::vercel`] |
//! | Discord interactions (Ed25519, feature `ed25519`) | `Discord` |
//! | Coinbase Commerce | [`HmacScheme::coinbase_commerce`] |
//! | Mailgun (the signature in the body) | [`Mailgun`] |
//! | Twilio (the URL it called, HMAC-SHA1) | [`Twilio`] |
//! | Square (its notification URL) | [`Square`] |
//! | HubSpot (signature v3: method, URL, time) | [`HubSpot`] |
//! | SendGrid Event Webhook (ECDSA P-256, feature `sendgrid`) | `SendGrid` |
//! | Microsoft Graph change notifications (a shared `clientState`) | [`MicrosoftGraph`] |
//! | GitLab (a shared token, no signature) | [`SharedToken::gitlab`] |
//! | anyone else who signs with HMAC-SHA256 | [`HmacScheme::builder`] |
//!
//! Most of them run on one verification core: a signature header in one of two shapes, a
//! template of what is signed, a timestamp rule and an id rule.

mod builder;
mod delivery_id;
#[cfg(feature = "ed25519")]
mod discord;
pub(crate) mod engine;
mod error;
mod graph;
mod handshake;
mod headers;
mod hmac;
mod mailgun;
mod presets;
mod secret;
#[cfg(feature = "sendgrid")]
mod sendgrid;
mod signature;
mod standard;
pub(crate) mod timestamp;
mod token;
mod url;
mod url_signed;
mod verify;

pub use self::hmac::{Encoding, HmacScheme};
pub use builder::HmacSchemeBuilder;
pub use delivery_id::DeliveryId;
#[cfg(feature = "ed25519")]
#[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
pub use discord::Discord;
pub use error::{
    InvalidScheme, InvalidSchemeKind, InvalidSecret, InvalidSecretKind, SignError, SignErrorKind,
    VerifyError, VerifyErrorKind,
};
pub use graph::MicrosoftGraph;
pub use handshake::Handshake;
pub use mailgun::Mailgun;
#[cfg(feature = "sendgrid")]
#[cfg_attr(docsrs, doc(cfg(feature = "sendgrid")))]
pub use sendgrid::SendGrid;
pub use standard::StandardWebhooks;
pub use token::SharedToken;
pub use url_signed::{HubSpot, Square, Twilio};
pub use verify::{is_common_credential, Scheme, Verified};
