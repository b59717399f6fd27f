//! Every `HmacScheme` preset (Stripe, GitHub, Shopify, Slack, Paddle) on any headers and body:
//! none panics, and none accepts what an independent check of its sender's documentation
//! refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_webhook::scheme::Scheme;
use tower_webhook_fuzz::{hmac_schemes, hmac_verifies, Delivery};

fuzz_target!(|data: &[u8]| {
    let Some(delivery) = Delivery::parse(data) else {
        return;
    };
    for (name, scheme) in hmac_schemes() {
        if let Ok(verified) = scheme.verify(&delivery.headers, &delivery.body, delivery.clock()) {
            assert!(
                hmac_verifies(name, &delivery),
                "{name} verified a delivery that an independent check refuses"
            );
            let _ = scheme.identify(&delivery.headers, &delivery.body, &verified);
        }
    }
});
