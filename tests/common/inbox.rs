//! Helpers of the inbox tests: a layer's answer to a delivery, waiting for a worker, unique
//! names per run.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_webhook::inbox::{DeadLetter, Dialect, Inbox, Job, Payload, RetryPolicy};
use tower_webhook::scheme::HmacScheme;
use tower_webhook::testkit::Delivery;
use tower_webhook::{Event, VerifyWebhookLayer, DUPLICATE_HEADER};

/// Retries at once, so the suite does not wait for a backoff.
pub fn no_wait() -> RetryPolicy {
    RetryPolicy::exponential(Duration::ZERO, 1, Duration::ZERO).with_attempts(3)
}

/// Sends `delivery` through a layer with `inbox`: the status and whether it is a duplicate.
pub async fn send(
    layer: &VerifyWebhookLayer,
    delivery: &Delivery,
) -> (StatusCode, bool, Option<String>) {
    let service = layer.layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
        // The layer answers every delivery itself.
        panic!("an inbox layer never calls the inner service");
        #[allow(unreachable_code)]
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let request: Request<Full<Bytes>> = delivery.request(&super::scheme()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    (
        response.status(),
        response.headers().contains_key(DUPLICATE_HEADER),
        response
            .headers()
            .get(http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned()),
    )
}

/// Polls `done` every 50 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// Reads with `read` every 50 ms for up to `secs` seconds, until what it reads is `done`;
/// the last reading.
pub async fn read_until<T, F: Future<Output = T>>(
    secs: u64,
    mut read: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    for _ in 0..secs * 20 {
        let value = read().await;
        if done(&value) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    read().await
}

/// The dead letters of `inbox` once there are some, or none after `secs`: on either
/// database, as the inbox is one type.
pub async fn first_dead_letters<D: Dialect>(inbox: &Inbox<D>, secs: u64) -> Vec<DeadLetter> {
    read_until(
        secs,
        || async { inbox.dead_letters(10).await.unwrap() },
        |dead| !dead.is_empty(),
    )
    .await
}

/// A handler of `Event<T>` that counts its runs in `runs` and succeeds.
pub fn counting<T: Payload>(
    runs: &Arc<AtomicU32>,
) -> impl Fn(Event<T>) -> std::future::Ready<Result<(), Infallible>> + Send + Sync + 'static {
    let runs = Arc::clone(runs);
    move |_: Event<T>| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(()))
    }
}

/// What the handlers saw: (id, attempt).
pub type Seen = Arc<Mutex<Vec<(String, u32)>>>;

/// A handler that records each (id, attempt) in `seen`, then answers from its future as
/// `then` does for that attempt (or panics there, where `then` does).
pub fn recording(
    seen: &Seen,
    then: fn(u32) -> Result<(), String>,
) -> impl Fn(Event, Job) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
       + Send
       + Sync
       + 'static {
    let seen = Arc::clone(seen);
    move |event, job| {
        seen.lock()
            .unwrap()
            .push((event.id().to_owned(), job.attempt()));
        let attempt = job.attempt();
        Box::pin(async move { then(attempt) })
    }
}

pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The `webhook-id` a delivery is sent with.
pub fn delivery_id(delivery: &Delivery) -> String {
    let request: Request<Full<Bytes>> = delivery.request(&super::scheme()).unwrap();
    request.headers()["webhook-id"].to_str().unwrap().to_owned()
}

/// Deletes the jobs and dedup marks this run wrote to the shared test database: every queue
/// and delivery id of a run carries its process id.
pub async fn remove_this_runs_rows() {
    use tower_webhook::store::postgres::sqlx;
    let Ok(inbox) = tower_webhook::inbox::PostgresInbox::connect(&super::database_url()).await
    else {
        return;
    };
    let tag = format!("-{}-", std::process::id());
    let _ =
        sqlx::query("DELETE FROM webhook_inbox_jobs WHERE queue LIKE 'test-queue' || $1 || '%'")
            .bind(&tag)
            .execute(inbox.pool())
            .await;
    let _ =
        sqlx::query("DELETE FROM webhook_claims WHERE position(convert_to($1, 'UTF8') in key) > 0")
            .bind(&tag)
            .execute(inbox.pool())
            .await;
}

pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";

/// Sends a GitHub delivery (secret [`GITHUB_SECRET`]) of `kind` with `body` through an inbox layer named `layer`: its
/// delivery id.
pub async fn send_github<D: Dialect>(
    inbox: &Inbox<D>,
    layer: &str,
    kind: &str,
    body: &str,
) -> String {
    let id = unique("delivery");
    send_github_as(inbox, layer, kind, body, &id).await;
    id
}

/// [`send_github`] with the delivery id `id`.
pub async fn send_github_as<D: Dialect>(
    inbox: &Inbox<D>,
    layer: &str,
    kind: &str,
    body: &str,
    id: &str,
) {
    let scheme = HmacScheme::github(GITHUB_SECRET).unwrap();
    let delivery = Delivery::new(body.to_owned()).id(id).event_type(kind);
    let request: Request<Full<bytes::Bytes>> = delivery.request(&scheme).unwrap();
    let service = VerifyWebhookLayer::new(scheme)
        .with_name(layer)
        .with_inbox(inbox.clone())
        .layer(tower::service_fn(|_: Request<Full<bytes::Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::default()))
        }));
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Ids are ULIDs: a millisecond apart, their order is the order of arrival.
    tokio::time::sleep(Duration::from_millis(3)).await;
}

/// Sends `delivery`, signed by `scheme`, through an inbox layer named `layer`: its status.
pub async fn send_signed<D: Dialect, S>(
    inbox: &Inbox<D>,
    scheme: S,
    layer: &str,
    delivery: &Delivery,
) -> StatusCode
where
    S: tower_webhook::testkit::Sign + Clone,
{
    let request: Request<Full<Bytes>> = delivery.request(&scheme).unwrap();
    let service = VerifyWebhookLayer::new(scheme)
        .with_name(layer)
        .with_inbox(inbox.clone())
        .layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    let status = service.oneshot(request).await.unwrap().status();
    tokio::time::sleep(Duration::from_millis(3)).await;
    status
}

/// A handler that fails every time on a body saying "fail", once on one saying "flaky".
pub async fn flaky_handler(event: Event, job: tower_webhook::inbox::Job) -> Result<(), String> {
    let body = String::from_utf8_lossy(event.body()).into_owned();
    if body.contains("fail") || (body.contains("flaky") && job.attempt() == 1) {
        return Err(format!("the handler refused {body}"));
    }
    Ok(())
}

/// Five deliveries of two layers, `github` and `shop`, a few milliseconds apart: their
/// delivery ids, in the order sent. With [`flaky_handler`]: `a2` fails once, `a3` always.
pub struct Five {
    pub a1: String,
    pub a2: String,
    pub a3: String,
    pub b1: String,
    pub b2: String,
}

pub async fn send_five<D: Dialect>(inbox: &Inbox<D>) -> Five {
    Five {
        a1: send_github(inbox, "github", "push", r#"{"n":1}"#).await,
        a2: send_github(inbox, "github", "issues", r#"{"n":2,"flaky":true}"#).await,
        a3: send_github(inbox, "github", "push", r#"{"n":3,"fail":true}"#).await,
        b1: send_github(inbox, "shop", "push", r#"{"n":4}"#).await,
        b2: send_github(
            inbox,
            "shop",
            "orders",
            r#"{"n":5,"html":"<script>document.title='pwned'</script>"}"#,
        )
        .await,
    }
}

/// Runs a worker with [`flaky_handler`] until [`send_five`]'s deliveries are four done and
/// one dead, then stops it.
pub async fn work_five<D: Dialect>(inbox: &Inbox<D>) {
    work_until(inbox, 4, 1).await;
}

/// Runs a worker with [`flaky_handler`] until `done` jobs are done and `dead` dead, then
/// stops it.
pub async fn work_until<D: Dialect>(inbox: &Inbox<D>, done: u64, dead: u64) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(flaky_handler).run_until(async {
        let _ = stopped.await;
    }));
    let counts = read_until(
        20,
        || inbox.counts(),
        |counts| {
            counts
                .as_ref()
                .is_ok_and(|c| c.done == done && c.dead == dead)
        },
    )
    .await
    .unwrap();
    assert_eq!((counts.done, counts.dead), (done, dead), "{counts:?}");
    let _ = stop.send(());
    worker.await.unwrap().unwrap();
}

/// Whether an inbox can be opened on the test database: what the PostgreSQL trials need.
pub async fn postgres_reachable() -> Result<(), String> {
    tower_webhook::inbox::PostgresInbox::connect(&super::database_url())
        .await
        .map(drop)
        .map_err(|err| err.to_string())
}
