//! Secrets per tenant: each tenant's secret verifies only its own deliveries, rotation,
//! an unknown tenant answered as a forgery is, the lookup cached (once per tenant within its
//! time to live, one at a time), a failed lookup a 503, and dedup keys per tenant.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{counting, now_unix, Calls};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};
use tower_webhook::scheme::{HmacScheme, StandardWebhooks};
use tower_webhook::store::MemoryStore;
use tower_webhook::{TenantFrom, Tenants, VerifyWebhookLayer, DUPLICATE_HEADER};

/// The secrets of the application's tenants: `acme` is rotating (two secrets).
fn secrets(tenant: &str) -> Option<Vec<&'static str>> {
    match tenant {
        "acme" => Some(vec!["whsec_acme_new", "whsec_acme_old"]),
        "globex" => Some(vec!["whsec_globex"]),
        _ => None,
    }
}

/// Stripe tenants from the path, `/webhooks/{tenant}`, with a lookup that counts its calls
/// and fails while `failing` is set.
fn stripe_tenants(lookups: Arc<AtomicUsize>, failing: Arc<AtomicUsize>) -> Tenants {
    Tenants::new(
        "stripe",
        TenantFrom::path_segment(1),
        move |tenant: String| {
            let (lookups, failing) = (Arc::clone(&lookups), Arc::clone(&failing));
            async move {
                lookups.fetch_add(1, Ordering::SeqCst);
                // Slow enough that concurrent requests overlap it.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if failing.load(Ordering::SeqCst) > 0 {
                    failing.fetch_sub(1, Ordering::SeqCst);
                    return Err("the database is down".into());
                }
                let Some(secrets) = secrets(&tenant) else {
                    return Ok(None);
                };
                let mut scheme = HmacScheme::stripe(secrets[0])?;
                for secret in &secrets[1..] {
                    scheme = scheme.with_secret(secret)?;
                }
                Ok::<_, tower_webhook::TenantError>(Some(scheme))
            }
        },
    )
}

fn stripe_event(id: &str) -> Bytes {
    Bytes::from(format!(r#"{{"id":"{id}","type":"invoice.paid"}}"#))
}

/// A delivery of `body` to `path`, signed with `secret`.
fn delivery(path: &str, secret: &str, body: &Bytes) -> Request<Full<Bytes>> {
    let headers = HmacScheme::stripe(secret)
        .unwrap()
        .sign("", now_unix(), body)
        .unwrap();
    let mut request = Request::post(path).body(Full::new(body.clone())).unwrap();
    *request.headers_mut() = headers;
    request
}

/// The status, whether a duplicate, and the body of the answer.
async fn send(
    layer: &VerifyWebhookLayer,
    calls: &Calls,
    request: Request<Full<Bytes>>,
) -> (StatusCode, bool, Bytes) {
    let service = layer.layer(counting(calls.clone(), StatusCode::OK));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let duplicate = response.headers().contains_key(DUPLICATE_HEADER);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, duplicate, body)
}

struct Setup {
    layer: VerifyWebhookLayer,
    calls: Calls,
    lookups: Arc<AtomicUsize>,
    failing: Arc<AtomicUsize>,
}

fn setup(ttl: Duration) -> Setup {
    let (lookups, failing) = (Arc::default(), Arc::default());
    let tenants = stripe_tenants(Arc::clone(&lookups), Arc::clone(&failing)).with_cache(100, ttl);
    Setup {
        layer: VerifyWebhookLayer::per_tenant(tenants).with_store(MemoryStore::new()),
        calls: Calls::default(),
        lookups,
        failing,
    }
}

#[tokio::test]
async fn each_secret_verifies_its_own_tenant_only() {
    let s = setup(Duration::from_secs(60));
    let ok = |(status, duplicate, _): (StatusCode, bool, Bytes)| (status, duplicate);
    let body = stripe_event("evt_1");
    // Both of acme's secrets (a rotation), globex's own.
    for (path, secret) in [
        ("/webhooks/acme", "whsec_acme_new"),
        ("/webhooks/globex", "whsec_globex"),
    ] {
        let answer = send(&s.layer, &s.calls, delivery(path, secret, &body)).await;
        assert_eq!(ok(answer), (StatusCode::OK, false), "{path}");
    }
    let old = delivery("/webhooks/acme", "whsec_acme_old", &stripe_event("evt_2"));
    assert_eq!(
        ok(send(&s.layer, &s.calls, old).await),
        (StatusCode::OK, false)
    );
    // The same id under one tenant again: a duplicate; under the other it was its own.
    let again = delivery("/webhooks/globex", "whsec_globex", &body);
    assert_eq!(
        ok(send(&s.layer, &s.calls, again).await),
        (StatusCode::OK, true)
    );
    // One tenant's secret for the other tenant: refused.
    for (path, secret) in [
        ("/webhooks/acme", "whsec_globex"),
        ("/webhooks/globex", "whsec_acme_new"),
    ] {
        let answer = send(
            &s.layer,
            &s.calls,
            delivery(path, secret, &stripe_event("evt_9")),
        )
        .await;
        assert_eq!(
            ok(answer),
            (StatusCode::BAD_REQUEST, false),
            "{path} {secret}"
        );
    }
    assert_eq!(s.calls.get(), 3);
}

#[tokio::test]
async fn an_unknown_tenant_is_answered_as_a_forgery() {
    let s = setup(Duration::from_secs(60));
    let body = stripe_event("evt_1");
    let forged = send(
        &s.layer,
        &s.calls,
        delivery("/webhooks/acme", "whsec_wrong", &body),
    )
    .await;
    for path in [
        "/webhooks/initech",
        "/webhooks/",
        "/webhooks",
        "/webhooks/a%20b",
    ] {
        let unknown = send(&s.layer, &s.calls, delivery(path, "whsec_wrong", &body)).await;
        assert_eq!(unknown, forged, "{path}");
    }
    assert_eq!(forged.0, StatusCode::BAD_REQUEST);
    assert_eq!(s.calls.get(), 0);
}

#[tokio::test]
async fn the_lookup_runs_once_per_tenant_within_its_ttl() {
    let s = setup(Duration::from_secs(60));
    // Ten deliveries at once to one tenant: one lookup, which the others wait for.
    let mut set = tokio::task::JoinSet::new();
    for n in 0..10 {
        let (layer, calls) = (s.layer.clone(), s.calls.clone());
        let request = delivery(
            "/webhooks/acme",
            "whsec_acme_new",
            &stripe_event(&format!("evt_{n}")),
        );
        set.spawn(async move { send(&layer, &calls, request).await.0 });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!(s.lookups.load(Ordering::SeqCst), 1);
    // An unknown tenant is cached too.
    for _ in 0..3 {
        let request = delivery("/webhooks/initech", "whsec_x", &stripe_event("evt_x"));
        send(&s.layer, &s.calls, request).await;
    }
    assert_eq!(s.lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn after_its_ttl_the_tenant_is_looked_up_again() {
    let s = setup(Duration::from_secs(60));
    let request = || delivery("/webhooks/globex", "whsec_globex", &stripe_event("evt_t"));
    send(&s.layer, &s.calls, request()).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    send(&s.layer, &s.calls, request()).await;
    assert_eq!(s.lookups.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    send(&s.layer, &s.calls, request()).await;
    assert_eq!(s.lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_lookup_is_a_503_and_is_not_kept() {
    let s = setup(Duration::from_secs(60));
    s.failing.store(1, Ordering::SeqCst);
    let body = stripe_event("evt_f");
    let (status, _, _) = send(
        &s.layer,
        &s.calls,
        delivery("/webhooks/acme", "whsec_acme_new", &body),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The retry looks up again, and succeeds.
    let (status, duplicate, _) = send(
        &s.layer,
        &s.calls,
        delivery("/webhooks/acme", "whsec_acme_new", &body),
    )
    .await;
    assert_eq!((status, duplicate), (StatusCode::OK, false));
    assert_eq!(s.lookups.load(Ordering::SeqCst), 2);
    assert_eq!(s.calls.get(), 1);
}

#[tokio::test]
async fn a_tenant_from_a_header_and_the_tenant_in_the_request() {
    // Shopify names the shop in a header; the handler sees the tenant.
    let tenants = Tenants::new(
        "shopify",
        TenantFrom::header("x-shopify-shop-domain"),
        |shop: String| async move {
            let secret = match shop.as_str() {
                "acme.myshopify.com" => "shpss_acme",
                _ => return Ok(None),
            };
            Ok::<_, tower_webhook::scheme::InvalidSecret>(Some(HmacScheme::shopify(secret)?))
        },
    );
    let layer = VerifyWebhookLayer::per_tenant(tenants).with_store(MemoryStore::new());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let recorded = Arc::clone(&recorded);
        async move {
            let tenant = request.extensions().get::<tower_webhook::Tenant>().cloned();
            recorded
                .lock()
                .unwrap()
                .push(tenant.map(|t| t.as_str().to_owned()));
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
        }
    });
    let body = Bytes::from_static(br#"{"id":820982911946154508}"#);
    let mut headers: HeaderMap = HmacScheme::shopify("shpss_acme")
        .unwrap()
        .sign("wh-1", 0, &body)
        .unwrap();
    headers.insert(
        "x-shopify-shop-domain",
        HeaderValue::from_static("acme.myshopify.com"),
    );
    let mut request = Request::post("/webhooks/shopify")
        .body(Full::new(body.clone()))
        .unwrap();
    *request.headers_mut() = headers.clone();
    let response = layer.layer(inner.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        *seen.lock().unwrap(),
        [Some("acme.myshopify.com".to_owned())]
    );
    // Another shop's header with acme's signature: refused.
    headers.insert(
        "x-shopify-shop-domain",
        HeaderValue::from_static("evil.myshopify.com"),
    );
    let mut request = Request::post("/webhooks/shopify")
        .body(Full::new(body))
        .unwrap();
    *request.headers_mut() = headers;
    let response = layer.layer(inner).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_layer_per_tenant_takes_any_scheme() {
    let tenants = Tenants::new(
        "svix",
        TenantFrom::path_segment(1),
        |tenant: String| async move {
            let secret = if tenant == "acme" {
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            } else {
                return Ok(None);
            };
            Ok::<_, tower_webhook::scheme::InvalidSecret>(Some(StandardWebhooks::new(secret)?))
        },
    );
    let layer = VerifyWebhookLayer::per_tenant(tenants);
    let body = Bytes::from_static(b"{}");
    let headers = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap()
        .sign("msg_1", now_unix(), &body)
        .unwrap();
    let mut request = Request::post("/webhooks/acme")
        .body(Full::new(body))
        .unwrap();
    *request.headers_mut() = headers;
    let calls = Calls::default();
    assert_eq!(send(&layer, &calls, request).await.0, StatusCode::OK);
}

/// Behind an SQLite inbox, the worker's event still knows its tenant, and each tenant's
/// copy of one id is its own job.
#[cfg(feature = "inbox-sqlite")]
#[tokio::test]
async fn the_tenant_reaches_the_inbox_worker() {
    use tower_webhook::inbox::SqliteInbox;
    let dir = std::env::temp_dir().join(format!("tw-tenant-inbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inbox = SqliteInbox::open(dir.join("inbox.db")).await.unwrap();
    let (lookups, failing) = (Arc::default(), Arc::default());
    let layer =
        VerifyWebhookLayer::per_tenant(stripe_tenants(lookups, failing)).with_inbox(inbox.clone());
    let calls = Calls::default();
    let body = stripe_event("evt_inbox");
    for (path, secret) in [
        ("/webhooks/acme", "whsec_acme_new"),
        ("/webhooks/globex", "whsec_globex"),
    ] {
        let (status, _, _) = send(&layer, &calls, delivery(path, secret, &body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}");
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    let worker = inbox.worker(move |event: tower_webhook::Event| {
        let recorded = Arc::clone(&recorded);
        async move {
            recorded
                .lock()
                .unwrap()
                .push((event.id().to_owned(), event.tenant().map(str::to_owned)));
            Ok::<_, std::convert::Infallible>(())
        }
    });
    let task = tokio::spawn(worker.run());
    for _ in 0..200 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("evt_inbox".to_owned(), Some("acme".to_owned())),
            ("evt_inbox".to_owned(), Some("globex".to_owned())),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
