//! The verified delivery a handler receives, and (feature `axum`) its extractor.

mod delivered;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
mod extract;
mod kind;

pub use delivered::{Event, Unparsed};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::{EventRejection, EventRejectionKind};
pub use kind::EventTypeSource;
