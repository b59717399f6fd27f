//! The URL a sender called: part of what Twilio, Square and HubSpot sign.
//!
//! Behind a proxy or a load balancer the request the layer sees is not the one the sender
//! made (another scheme, host, port, sometimes path). The URL is therefore configured: the
//! endpoint's public URL, as it is entered at the sender, with the request's query string
//! (which the sender sent and signed) appended. Only where the user says the proxy in front
//! sets them are `X-Forwarded-Proto` and `X-Forwarded-Host` read instead.

use std::borrow::Cow;

use http::request::Parts;
use http::HeaderMap;

use super::{InvalidScheme, InvalidSchemeKind};

/// Where the URL a sender called comes from.
#[derive(Debug, Clone)]
pub(crate) enum SenderUrl {
    /// The public URL of the endpoint, scheme, host (and port) and path, without a query.
    Fixed(String),
    /// `X-Forwarded-Proto`, `X-Forwarded-Host` (else `Host`), and the request's path and
    /// query: only behind a proxy that sets them and strips any the client sent.
    Forwarded,
}

impl SenderUrl {
    /// The endpoint's public URL: `http` or `https`, a host, no fragment; a query is not
    /// part of it (the request's own is appended).
    pub(crate) fn fixed(url: &str) -> Result<Self, InvalidScheme> {
        let invalid = || InvalidScheme::new(InvalidSchemeKind::InvalidUrl);
        let url = url.trim();
        let uri: http::Uri = url.parse().map_err(|_| invalid())?;
        let scheme = uri.scheme_str().ok_or_else(invalid)?;
        if !matches!(scheme, "http" | "https") || uri.host().is_none() || url.contains('#') {
            return Err(invalid());
        }
        let without_query = url.split_once('?').map_or(url, |(head, _)| head);
        Ok(SenderUrl::Fixed(without_query.to_owned()))
    }

    /// The URL the sender called for `request`; `None` where it cannot be known (no
    /// forwarded host behind a proxy said to set one).
    pub(crate) fn of<'a>(&'a self, request: &Parts) -> Option<Cow<'a, str>> {
        let query = request.uri.query();
        match self {
            SenderUrl::Fixed(base) => Some(match query {
                Some(query) => Cow::Owned(format!("{base}?{query}")),
                None => Cow::Borrowed(base),
            }),
            SenderUrl::Forwarded => {
                let headers = &request.headers;
                let proto = one(headers, "x-forwarded-proto")?;
                let host = one(headers, "x-forwarded-host").or_else(|| one(headers, "host"))?;
                if !matches!(proto, "http" | "https") || host.is_empty() {
                    return None;
                }
                let path = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
                Some(Cow::Owned(format!("{proto}://{host}{path}")))
            }
        }
    }

    /// The URL without a request: the fixed one as it is.
    pub(crate) fn without_request(&self) -> Option<&str> {
        match self {
            SenderUrl::Fixed(base) => Some(base),
            SenderUrl::Forwarded => None,
        }
    }
}

/// The one value of a header, as text; a list (`a, b`) is refused, as a proxy that appends
/// leaves the client's value first.
fn one<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?.trim();
    (values.next().is_none() && !value.contains(',')).then_some(value)
}

/// `url` with its default port written out, or taken away: a sender may sign either, and
/// Twilio's own libraries try both.
pub(crate) fn other_port_form(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if let Some(host) = authority.strip_suffix(default) {
        Some(format!("{scheme}://{host}{tail}"))
    } else if authority.rsplit_once(':').is_some_and(|(_, port)| {
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
    }) {
        None
    } else {
        Some(format!("{scheme}://{authority}{default}{tail}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::post(uri).body(()).unwrap();
        for (name, value) in headers {
            request.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        request.into_parts().0
    }

    #[test]
    fn fixed_urls_take_the_requests_query() {
        let url = SenderUrl::fixed("https://example.com/twilio?ignored=1").unwrap();
        assert_eq!(
            url.of(&parts("/internal/path?a=1&b=2", &[])).as_deref(),
            Some("https://example.com/twilio?a=1&b=2")
        );
        assert_eq!(
            url.of(&parts("/x", &[])).as_deref(),
            Some("https://example.com/twilio")
        );
        for bad in [
            "example.com/x",
            "ftp://example.com/x",
            "https:///x",
            "https://e.com/#f",
            "",
        ] {
            assert!(SenderUrl::fixed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_urls_need_both_headers_once() {
        let url = SenderUrl::Forwarded;
        let seen = |headers: &[(&str, &str)]| url.of(&parts("/hook?x=1", headers));
        assert_eq!(
            seen(&[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "api.example.com")
            ])
            .as_deref(),
            Some("https://api.example.com/hook?x=1")
        );
        assert_eq!(
            seen(&[("x-forwarded-proto", "https"), ("host", "h.example.com")]).as_deref(),
            Some("https://h.example.com/hook?x=1")
        );
        assert_eq!(seen(&[("host", "h.example.com")]), None);
        assert_eq!(
            seen(&[("x-forwarded-proto", "https, http"), ("host", "h")]),
            None
        );
        assert_eq!(
            seen(&[("x-forwarded-proto", "gopher"), ("host", "h")]),
            None
        );
    }

    #[test]
    fn default_ports_both_ways() {
        assert_eq!(
            other_port_form("https://example.com/a?b=1").as_deref(),
            Some("https://example.com:443/a?b=1")
        );
        assert_eq!(
            other_port_form("https://example.com:443/a").as_deref(),
            Some("https://example.com/a")
        );
        assert_eq!(
            other_port_form("http://example.com").as_deref(),
            Some("http://example.com:80")
        );
        assert_eq!(other_port_form("https://example.com:8443/a"), None);
    }
}
