//! Which requests may change what the inbox holds: a CSRF token bound to who asks, and the
//! same-origin check every `POST` passes as well.

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, Uri};
use subtle::ConstantTimeEq;

use super::auth::{mac, sha256};

/// The CSRF tokens of a console: each bound to the identity of who asks, under a key of
/// this process.
#[derive(Clone)]
pub(super) struct Csrf([u8; 32]);

impl Csrf {
    pub(super) fn new() -> Self {
        let mut key = [0; 32];
        // Without the system's randomness, a key from the clock and the process: unguessable
        // enough only together with the same-origin checks, which every POST also passes.
        if getrandom::fill(&mut key).is_err() {
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            key = sha256(seed.as_bytes());
        }
        Self(key)
    }

    pub(super) fn token(&self, identity: &str) -> String {
        hex::encode(&mac(&self.0, identity.as_bytes())[..16])
    }

    pub(super) fn valid(&self, identity: &str, given: &str) -> bool {
        let expected = self.token(identity);
        given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// Whether a state-changing request comes from the console's own pages: refused where the
/// browser says it is cross-site (`Sec-Fetch-Site`) or its `Origin` is not the host asked.
///
/// The host asked is the request's authority: the URI's (HTTP/2's `:authority`, which has
/// no `Host` header), else `Host`. A proxy in front that rewrites `Host` to its upstream's
/// name keeps the browser's in `X-Forwarded-Host`, which is taken as well: a browser never
/// sends that header itself, so a cross-site page cannot choose it.
pub(super) fn same_origin(uri: &Uri, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return false;
        }
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let origin = origin.to_str().unwrap_or_default();
    let Some(origin_host) = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .filter(|host| !host.is_empty())
    else {
        return false;
    };
    let header = |name| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
    };
    [
        uri.authority().map(http::uri::Authority::as_str),
        header(HOST),
        header(http::HeaderName::from_static("x-forwarded-host")),
    ]
    .into_iter()
    .flatten()
    .any(|host| !host.is_empty() && origin_host.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::super::test_headers as headers;
    use super::*;

    #[test]
    fn cross_site_requests_are_told_apart() {
        let none = Uri::from_static("/replay");
        assert!(same_origin(&none, &headers(&[("host", "a.example")])));
        assert!(same_origin(
            &none,
            &headers(&[
                ("host", "a.example:8080"),
                ("origin", "https://a.example:8080"),
                ("sec-fetch-site", "same-origin"),
            ])
        ));
        assert!(!same_origin(
            &none,
            &headers(&[("host", "a.example"), ("origin", "https://evil.example")])
        ));
        assert!(!same_origin(
            &none,
            &headers(&[("host", "a.example"), ("sec-fetch-site", "cross-site")])
        ));
        assert!(!same_origin(
            &none,
            &headers(&[("host", "a.example"), ("origin", "null")])
        ));
        // HTTP/2: no Host, the authority in the URI.
        let h2 = Uri::from_static("https://a.example:8443/inbox/replay");
        assert!(same_origin(
            &h2,
            &headers(&[("origin", "https://a.example:8443")])
        ));
        assert!(!same_origin(
            &h2,
            &headers(&[("origin", "https://evil.example")])
        ));
        assert!(!same_origin(
            &none,
            &headers(&[("origin", "https://a.example")])
        ));
        // A proxy that rewrote Host kept the browser's in X-Forwarded-Host.
        assert!(same_origin(
            &none,
            &headers(&[
                ("host", "upstream:3000"),
                ("x-forwarded-host", "console.example"),
                ("origin", "https://console.example"),
            ])
        ));
        let csrf = Csrf::new();
        let token = csrf.token("me");
        assert!(csrf.valid("me", &token));
        assert!(!csrf.valid("you", &token));
        assert!(!csrf.valid("me", ""));
    }
}
