//! Secrets per tenant: a scheme looked up for each delivery, from a path segment or a header,
//! through a lookup the application writes, cached with a bound and a time to live.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::request::Parts;
use http::HeaderName;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::pipeline::key::escape_segment;
use crate::scheme::Scheme;

/// What a lookup found: the tenant's scheme, or `None` for a tenant that does not exist.
pub(crate) type Found = Option<Arc<dyn Scheme>>;

/// Why a lookup failed: the application's own error, boxed (never shown to a sender).
pub type TenantError = Box<dyn std::error::Error + Send + Sync>;

type Lookup = dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Found, TenantError>> + Send>>
    + Send
    + Sync;

/// A lookup under way, or its end.
pub(crate) type Resolving = Pin<Box<dyn Future<Output = Result<Found, TenantError>> + Send>>;

/// The longest tenant name taken from a request: longer ones are refused.
const MAX_TENANT: usize = 128;

/// The tenant of a delivery, in the request's extensions where the layer was made with
/// [`VerifyWebhookLayer::per_tenant`](crate::VerifyWebhookLayer::per_tenant) (axum:
/// `Extension<Tenant>`).
///
/// ```
/// use axum::Extension;
/// use tower_webhook::{Event, Tenant};
///
/// async fn handle(Extension(tenant): Extension<Tenant>, event: Event) {
///     println!("{} for {}", event.id(), tenant.as_str());
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(pub(crate) Arc<str>);

impl Tenant {
    /// The tenant's name, as read from the request.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a delivery's tenant is read.
///
/// ```
/// use tower_webhook::TenantFrom;
///
/// // https://example.com/webhooks/shopify/{tenant}: the third segment of the path.
/// let from_path = TenantFrom::path_segment(2);
/// // Shopify names the shop in a header of every delivery.
/// let from_header = TenantFrom::header("x-shopify-shop-domain");
/// ```
#[derive(Debug, Clone)]
pub struct TenantFrom(From);

#[derive(Debug, Clone)]
enum From {
    Header(HeaderName),
    PathSegment(usize),
}

impl TenantFrom {
    /// The value of the header `name`, sent once. A sender that puts the tenant in a header
    /// (Shopify's `X-Shopify-Shop-Domain`) may not sign it: the tenant's own secret must then
    /// verify the delivery, so a forged header only picks a secret that fails.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name: it is a constant of the application.
    pub fn header(name: &str) -> Self {
        Self(From::Header(
            HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
        ))
    }

    /// The path segment at `index`, counting from 0 after the leading `/`:
    /// `/webhooks/stripe/acme` has `acme` at 2. As the request reaches the layer: where the
    /// layer is mounted under a prefix that the router strips, count from there.
    pub fn path_segment(index: usize) -> Self {
        Self(From::PathSegment(index))
    }

    /// The tenant of `request`: 1 to 128 visible ASCII characters, or `None`.
    pub(crate) fn of(&self, request: &Parts) -> Option<String> {
        let text = match &self.0 {
            From::Header(name) => {
                let mut values = request.headers.get_all(name).iter();
                let value = values.next()?;
                if values.next().is_some() {
                    return None;
                }
                value.to_str().ok()?
            }
            From::PathSegment(index) => request
                .uri
                .path()
                .strip_prefix('/')?
                .split('/')
                .nth(*index)?,
        };
        let valid = !text.is_empty()
            && text.len() <= MAX_TENANT
            && text.bytes().all(|byte| byte.is_ascii_graphic());
        valid.then(|| text.to_owned())
    }
}

/// Secrets per tenant: each delivery is verified with the scheme of its own tenant, looked up
/// by a function the application writes and cached.
///
/// A service that lets each of its customers connect their own Stripe, Shopify or Zoom account
/// receives deliveries signed with a different secret per customer. The tenant is read from the
/// request ([`TenantFrom`]); the lookup returns the tenant's scheme (with every secret it
/// accepts: several during a rotation), `None` for a tenant that does not exist, or an error.
///
/// - An unknown tenant, or a request with no readable tenant, is refused with exactly the
///   answer a bad signature gets (400, `no matching signature`), so tenants cannot be
///   enumerated.
/// - A failed lookup answers 503 with `Retry-After`, as a store error does: the sender
///   retries, nothing is dropped. It is not cached.
/// - Found schemes, and unknown tenants, are cached for [`with_cache`](Self::with_cache)'s
///   time to live (5 minutes by default), at most 10 000 tenants (the oldest go first). One
///   lookup at a time per tenant: requests arriving meanwhile wait for it.
/// - Each tenant's dedup keys are its own: the same delivery id under two tenants is two
///   deliveries.
/// - Secrets are never logged: the lookup's result is a scheme, whose `Debug` shows none.
///
/// ```
/// use std::time::Duration;
/// use tower_webhook::{scheme::HmacScheme, store::MemoryStore, TenantFrom, Tenants, VerifyWebhookLayer};
///
/// let tenants = Tenants::new("shopify", TenantFrom::header("x-shopify-shop-domain"), |shop: String| async move {
///     // Look the shop's secret up in the application's database.
///     let secret = match shop.as_str() {
///         "acme.myshopify.com" => "shpss_acme",
///         _ => return Ok(None),
///     };
///     Ok::<_, tower_webhook::scheme::InvalidSecret>(Some(HmacScheme::shopify(secret)?))
/// })
/// .with_cache(1_000, Duration::from_secs(60));
/// let layer = VerifyWebhookLayer::per_tenant(tenants).with_store(MemoryStore::new());
/// ```
#[derive(Clone)]
pub struct Tenants {
    name: &'static str,
    from: TenantFrom,
    lookup: Arc<Lookup>,
    cache: Arc<Cache>,
}

impl Tenants {
    /// Tenants of the sender `name` (the layer's name, as a scheme's), read `from` each
    /// request, their scheme found by `lookup`.
    pub fn new<F, Fut, S, E>(name: &'static str, from: TenantFrom, lookup: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<S>, E>> + Send + 'static,
        S: Scheme,
        E: Into<TenantError>,
    {
        let lookup = move |tenant: String| -> Resolving {
            let found = lookup(tenant);
            Box::pin(async move {
                match found.await {
                    Ok(scheme) => Ok(scheme.map(|scheme| Arc::new(scheme) as Arc<dyn Scheme>)),
                    Err(err) => Err(err.into()),
                }
            })
        };
        Self {
            name,
            from,
            lookup: Arc::new(lookup),
            cache: Arc::new(Cache::new(10_000, Duration::from_secs(300))),
        }
    }

    /// Keeps at most `max_tenants` lookups (at least one), each for `ttl`. A secret changed in
    /// the application's database is seen after at most `ttl`, and so is a tenant added after
    /// a request for it was answered as unknown; during a rotation, return both secrets from
    /// the lookup.
    #[must_use]
    pub fn with_cache(mut self, max_tenants: usize, ttl: Duration) -> Self {
        self.cache = Arc::new(Cache::new(max_tenants.max(1), ttl));
        self
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn tenant(&self, request: &Parts) -> Option<String> {
        self.from.of(request)
    }

    /// The tenant's scheme: at once where it is cached, else its lookup.
    pub(crate) fn resolve(&self, tenant: &str) -> Result<Found, Resolving> {
        let cell = self.cache.slot(tenant);
        if let Some(found) = cell.get() {
            return Ok(found.clone());
        }
        let lookup = Arc::clone(&self.lookup);
        let tenant = tenant.to_owned();
        Err(Box::pin(async move {
            cell.get_or_try_init(|| lookup(tenant)).await.cloned()
        }))
    }
}

impl fmt::Debug for Tenants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenants")
            .field("name", &self.name)
            .field("from", &self.from)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// The namespace of a tenant's keys under the layer's: `%2F` never occurs in an escaped
/// segment (its `%` would be `%25`), so the pair reads back one way only.
pub(crate) fn namespace(layer: &str, tenant: &str) -> String {
    format!("{layer}%2F{}", escape_segment(tenant))
}

/// The lookups kept: one cell per tenant, filled once (the first request's lookup; the others
/// wait on it), dropped after the time to live or when the oldest must make room.
struct Cache {
    max: usize,
    ttl: Duration,
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    by_tenant: HashMap<Arc<str>, Slot>,
    /// Tenants in the order their slots were made, with the slot's number: the first is the
    /// one to drop.
    order: VecDeque<(Arc<str>, u64)>,
    next: u64,
}

struct Slot {
    cell: Arc<OnceCell<Found>>,
    expires: Instant,
    number: u64,
}

impl Cache {
    fn new(max: usize, ttl: Duration) -> Self {
        Self {
            max,
            ttl,
            slots: Mutex::new(Slots::default()),
        }
    }

    /// The tenant's cell: its live one, or a new one in place of an expired one.
    fn slot(&self, tenant: &str) -> Arc<OnceCell<Found>> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.by_tenant.get(tenant) {
            if slot.expires > now {
                return Arc::clone(&slot.cell);
            }
        }
        let Slots {
            by_tenant,
            order,
            next,
        } = &mut *slots;
        by_tenant.remove(tenant);
        while by_tenant.len() >= self.max {
            let Some((oldest, number)) = order.pop_front() else {
                break;
            };
            if by_tenant
                .get(&oldest)
                .is_some_and(|slot| slot.number == number)
            {
                by_tenant.remove(&oldest);
            }
        }
        // Numbers of slots dropped or replaced: pruned so the queue stays near the map.
        if order.len() > 2 * self.max {
            order.retain(|(tenant, number)| {
                by_tenant
                    .get(tenant)
                    .is_some_and(|slot| slot.number == *number)
            });
        }
        let key: Arc<str> = Arc::from(tenant);
        let cell = Arc::new(OnceCell::new());
        *next += 1;
        order.push_back((Arc::clone(&key), *next));
        by_tenant.insert(
            key,
            Slot {
                cell: Arc::clone(&cell),
                expires: now + self.ttl,
                number: *next,
            },
        );
        cell
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("max", &self.max)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, header: Option<&str>) -> Parts {
        let mut request = http::Request::post(uri).body(()).unwrap();
        if let Some(value) = header {
            request
                .headers_mut()
                .insert("x-tenant", http::HeaderValue::from_str(value).unwrap());
        }
        request.into_parts().0
    }

    #[test]
    fn tenants_are_read_strictly() {
        let path = TenantFrom::path_segment(2);
        assert_eq!(
            path.of(&parts("/webhooks/stripe/acme", None)).as_deref(),
            Some("acme")
        );
        assert_eq!(
            path.of(&parts("/webhooks/stripe/acme?x=1", None))
                .as_deref(),
            Some("acme")
        );
        assert_eq!(path.of(&parts("/webhooks/stripe", None)), None);
        assert_eq!(path.of(&parts("/webhooks/stripe/", None)), None);
        let header = TenantFrom::header("x-tenant");
        assert_eq!(
            header.of(&parts("/", Some("shop.example"))).as_deref(),
            Some("shop.example")
        );
        assert_eq!(header.of(&parts("/", Some("a b"))), None);
        assert_eq!(header.of(&parts("/", Some(&"a".repeat(129)))), None);
        assert_eq!(header.of(&parts("/", None)), None);
    }

    #[test]
    fn namespaces_read_back_one_way() {
        // The layer's part comes escaped, as `Config::namespace` gives it.
        let ns = |layer: &str, tenant: &str| namespace(&escape_segment(layer), tenant);
        assert_ne!(ns("a%2Fb", "c"), ns("a", "b%2Fc"));
        assert_ne!(ns("a:b", "c"), ns("a", "b:c"));
        assert_eq!(ns("stripe", "acme:1"), "stripe%2Facme%3A1");
    }

    #[test]
    fn the_oldest_tenants_make_room() {
        let cache = Cache::new(2, Duration::from_secs(60));
        let a = cache.slot("a");
        assert!(Arc::ptr_eq(&a, &cache.slot("a")));
        cache.slot("b");
        cache.slot("c");
        assert!(!Arc::ptr_eq(&a, &cache.slot("a")), "a was the oldest");
        assert!(cache.slots.lock().unwrap().by_tenant.len() <= 2);
    }
}
