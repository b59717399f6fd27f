//! What the layer logs: the id and outcome of each delivery, at levels a service alerts on,
//! and never a secret, a signature or a body.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{counting, now_unix, request, scheme, Calls, SECRET};
use http::{HeaderValue, StatusCode};
use tower::{Layer, ServiceExt};
use tower_webhook::store::MemoryStore;
use tower_webhook::VerifyWebhookLayer;

const BODY: &str = r#"{"type":"card.charged","card_number":"4242424242424242"}"#;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_name_the_delivery_and_never_its_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let layer = VerifyWebhookLayer::new(scheme()).with_store(MemoryStore::new());
    let service = layer.layer(counting(Calls::default(), StatusCode::OK));
    let ts = now_unix();
    let headers = scheme().sign("msg_logged", ts, BODY.as_bytes()).unwrap();
    let signature = headers["webhook-signature"].to_str().unwrap().to_owned();

    for _ in 0..2 {
        let response = service
            .clone()
            .oneshot(request(headers.clone(), BODY))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut forged = headers.clone();
    forged.insert("webhook-id", HeaderValue::from_static("msg_forged"));
    let response = service.oneshot(request(forged, BODY)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    let line = |outcome: &str| {
        let field = format!("outcome=\"{outcome}\"");
        *lines
            .iter()
            .find(|line| line.contains(&field))
            .unwrap_or_else(|| panic!("no {outcome} line in:\n{logs}"))
    };
    let handled = line("handled");
    assert!(
        handled.contains(" INFO ")
            && handled.contains("id=\"msg_logged\"")
            && handled.contains("layer=\"standard-webhooks\""),
        "every handled delivery is logged at info with its id and layer: {logs}"
    );
    assert!(line("duplicate").contains(" INFO "), "{logs}");
    let rejected = line("rejected");
    assert!(
        rejected.contains(" WARN ") && rejected.contains("reason=no matching signature"),
        "{logs}"
    );
    // The id the forged delivery claimed, unverified, to match it with a sender's dashboard.
    assert!(rejected.contains("claimed_id=\"msg_forged\""), "{logs}");
    let secret_key = SECRET.strip_prefix("whsec_").unwrap();
    let tag = signature.strip_prefix("v1,").unwrap();
    for secret in [secret_key, tag, "4242424242424242", "card.charged"] {
        assert!(!logs.contains(secret), "logs leak {secret:?}:\n{logs}");
    }
}
