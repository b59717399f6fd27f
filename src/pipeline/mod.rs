//! The layer's pipeline: what happens to one delivery, one file per step.
//!
//! [`VerifyWebhookLayer`] (`layer.rs`, with its settings in `config.rs`) makes a
//! [`VerifyWebhook`] service (`service.rs`) for the inner service; each request becomes a
//! [`ResponseFuture`] (`future/`: its states, and the moves between them), a state machine
//! that hands each step to its file and holds no logic of its own:
//!
//! 1. `body.rs`: the body collected once under the limit (`413`, `408`);
//! 2. `verify.rs`: the signature and timestamp checked, the delivery's id found (`key.rs`:
//!    the key it is claimed under), the [`Event`](crate::Event) built (`400`);
//! 3. `claim.rs`: the key claimed in the store, and settled (completed or released) after
//!    the inner service (`200` duplicate, `429`, `503`); or `handoff.rs`: the delivery
//!    written to the inbox (`202`);
//! 4. `response.rs` and `reject.rs`: the answer the layer makes itself, or the inner
//!    service's; `report.rs`: the outcome counted, logged and named in the span.
//!
//! `runtime.rs` holds what the steps take from Tokio: the timer that bounds a store call and
//! the task that finishes one nobody waits for any more.

mod body;
pub(crate) mod claim;
pub(crate) mod config;
mod future;
pub(crate) mod handoff;
pub(crate) mod key;
mod layer;
pub(crate) mod reject;
pub(crate) mod report;
pub(crate) mod response;
pub(crate) mod runtime;
mod service;
pub(crate) mod verify;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::VerifyWebhookLayer;
pub use reject::{Rejection, RejectionKind};
pub use response::{Duplicate, DUPLICATE_HEADER};
pub use service::VerifyWebhook;
