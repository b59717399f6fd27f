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
                // A gauge of jobs: a small whole number.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                (MetricKind::Gauge, DebugValue::Gauge(level)) => level.into_inner() as u64,
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

/// An inbox's worker: each attempt by outcome and its time, the delay to each first
/// attempt, and the queue's depth by state.
#[cfg(feature = "inbox-sqlite")]
#[test]
fn the_worker_side_is_recorded() {
    use std::time::Duration;
    use tower_webhook::inbox::{Job, RetryPolicy, SqliteInbox};
    use tower_webhook::metrics::{
        INBOX_JOBS, JOB_ATTEMPTS_TOTAL, JOB_ATTEMPT_DURATION_SECONDS, JOB_START_DELAY_SECONDS,
    };
    use tower_webhook::Event;

    let dir = std::env::temp_dir().join(format!("tw-metrics-worker-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let queue = "metrics-worker";
    let seen = record(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let retry =
                RetryPolicy::exponential(Duration::ZERO, 1, Duration::ZERO).with_attempts(2);
            let inbox = SqliteInbox::open(dir.join("inbox.db"))
                .await
                .unwrap()
                .with_queue(queue)
                .with_retry(retry)
                .with_heartbeat(Duration::from_secs(1));
            let layer = VerifyWebhookLayer::new(common::scheme())
                .with_name("clerk")
                .with_inbox(inbox.clone());
            for id in ["msg_ok", "msg_slow", "msg_bad"] {
                let service = layer.layer(counting(Calls::default(), StatusCode::OK));
                let response = service.oneshot(signed(id, "{}")).await.unwrap();
                assert_eq!(response.status(), StatusCode::ACCEPTED, "{id}");
            }
            // msg_slow passes its deadline once, then succeeds; msg_bad always fails.
            let worker = inbox
                .worker(|event: Event, job: Job| async move {
                    match (event.id(), job.attempt()) {
                        ("msg_slow", 1) => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            Ok(())
                        }
                        ("msg_bad", _) => Err("always fails"),
                        _ => Ok(()),
                    }
                })
                .attempt_timeout(Duration::from_millis(300));
            let task = tokio::spawn(worker.run());
            for _ in 0..100 {
                let counts = inbox.counts().await.unwrap();
                if counts.done == 2 && counts.dead == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // One more heartbeat, for the depth read after the last end.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            task.abort();
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
    let expect = |name: String, count: u64| {
        assert_eq!(seen.get(&name), Some(&count), "{name} in {seen:#?}");
    };
    let attempts = |outcome: &str| format!("{JOB_ATTEMPTS_TOTAL}{{layer=clerk,outcome={outcome}}}");
    expect(attempts("done"), 2);
    expect(attempts("timed_out"), 1);
    expect(attempts("failed"), 1);
    expect(attempts("dead_lettered"), 1);
    expect(format!("{JOB_ATTEMPT_DURATION_SECONDS}{{layer=clerk}}"), 5);
    expect(format!("{JOB_START_DELAY_SECONDS}{{layer=clerk}}"), 3);
    let jobs = |state: &str| format!("{INBOX_JOBS}{{queue={queue},state={state}}}");
    expect(jobs("done"), 2);
    expect(jobs("dead"), 1);
    expect(jobs("queued"), 0);
    for name in seen.keys() {
        assert!(!name.contains("msg_"), "an id in a label: {name}");
    }
}
