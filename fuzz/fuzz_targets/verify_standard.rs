//! `StandardWebhooks::verify` (HMAC `v1` and Ed25519 `v1a`) on any headers and body: it never
//! panics, and it accepts nothing that an independent check of the specification refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhook::scheme::Scheme;
use tower_webhook_fuzz::{standard, standard_verifies, Delivery};

fuzz_target!(|data: &[u8]| {
    let Some(delivery) = Delivery::parse(data) else {
        return;
    };
    let scheme = standard();
    if let Ok(verified) = scheme.verify(&delivery.headers, &delivery.body, delivery.clock()) {
        assert!(
            standard_verifies(&delivery),
            "verified a delivery that an independent check refuses"
        );
        let _ = scheme.identify(&delivery.headers, &delivery.body, &verified);
    }
});
