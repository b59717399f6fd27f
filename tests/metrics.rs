//! What the layer emits through the `metrics` facade, seen by a test recorder: the documented
//! names, bounded labels (never an id), and the split of rejections by reason.
#![cfg(feature = "metrics")]

mod common;

use std::collections::HashMap;

use common::{counting, signed, Calls};
use http::{HeaderValue, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use tower::{Layer, ServiceExt};
use tower_webhook::metrics::{
    DELIVERIES_TOTAL, HANDLER_DURATION_SECONDS, REJECTIONS_TOTAL, STORE_CALL_DURATION_SECONDS,
};
use tower_webhook::store::MemoryStore;
use tower_webhook::VerifyWebhookLayer;

/// Every metric as `name{label=value,...}`, with its counter value or histogram sample count.
type Seen = HashMap<String, u64>;

fn record(deliveries: impl FnOnce()) -> Seen {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, deliveries);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
            let value = match (key.kind(), value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => n,
                (MetricKind::Histogram, DebugValue::Histogram(samples)) => samples.len() as u64,
                (kind, value) => panic!("{name}: unexpected {kind:?} {value:?}"),
            };
            (name, value)
        })
        .collect()
}

#[test]
fn deliveries_rejections_store_calls_and_handler_time_are_recorded() {
    let seen = record(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let service = VerifyWebhookLayer::new(common::scheme())
                .with_name("clerk")
                .with_store(MemoryStore::new())
                .layer(counting(Calls::default(), StatusCode::OK));
            for _ in 0..2 {
                let response = service.clone().oneshot(signed("msg_m1", "{}")).await;
                assert_eq!(response.unwrap().status(), StatusCode::OK);
            }
            let mut forged = signed("msg_m2", "{}");
            forged
                .headers_mut()
                .insert("webhook-signature", HeaderValue::from_static("v1,AAAA"));
            let response = service.clone().oneshot(forged).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let mut stale = signed("msg_m3", "{}");
            stale
                .headers_mut()
                .insert("webhook-timestamp", HeaderValue::from_static("1"));
            let response = service.oneshot(stale).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        });
    });
    let expect = |name: String, count: u64| {
        assert_eq!(seen.get(&name), Some(&count), "{name} in {seen:#?}");
    };
    let deliveries = |outcome: &str| {
        format!("{DELIVERIES_TOTAL}{{layer=clerk,outcome={outcome},scheme=standard-webhooks}}")
    };
    expect(deliveries("handled"), 1);
    expect(deliveries("duplicate"), 1);
    expect(deliveries("rejected"), 2);
    expect(
        format!("{REJECTIONS_TOTAL}{{layer=clerk,reason=signature}}"),
        1,
    );
    expect(
        format!("{REJECTIONS_TOTAL}{{layer=clerk,reason=timestamp}}"),
        1,
    );
    expect(
        format!("{STORE_CALL_DURATION_SECONDS}{{call=claim,layer=clerk}}"),
        2,
    );
    expect(
        format!("{STORE_CALL_DURATION_SECONDS}{{call=complete,layer=clerk}}"),
        1,
    );
    expect(format!("{HANDLER_DURATION_SECONDS}{{layer=clerk}}"), 1);
    for name in seen.keys() {
        assert!(!name.contains("msg_"), "an id in a label: {name}");
    }
}
