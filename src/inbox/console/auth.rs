//! Who may see the console, and which requests may change what the inbox holds.

use std::fmt;

use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The name of the console's session cookie (token access, after the sign-in form).
pub(super) const SESSION_COOKIE: &str = "tower_webhook_console";

/// The shortest token [`ConsoleAuth::token`] takes.
pub const MIN_TOKEN_LEN: usize = 16;

/// How the console checks who asks: building a console takes one, so it is never open by
/// accident.
///
/// - [`token`](Self::token): a secret of at least 16 characters, sent as
///   `Authorization: Bearer <token>` (scripts) or typed once into the console's sign-in form,
///   which sets an `HttpOnly`, `SameSite=Strict` cookie derived from it.
/// - [`basic`](Self::basic): HTTP basic credentials; the browser asks for them.
/// - [`behind_my_own_auth`](Self::behind_my_own_auth): your application authenticates the
///   routes the console is nested under (a login, an SSO proxy): the console checks nobody.
///
/// Tokens and passwords are compared in constant time (as SHA-256 digests, so their length
/// is not timed either), and never shown.
#[derive(Clone)]
pub struct ConsoleAuth(Kind);

#[derive(Clone)]
enum Kind {
    Token { digest: [u8; 32], session: String },
    Basic { user: [u8; 32], password: [u8; 32] },
    Outer,
}

impl fmt::Debug for ConsoleAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            Kind::Token { .. } => "token",
            Kind::Basic { .. } => "basic",
            Kind::Outer => "behind_my_own_auth",
        };
        f.debug_tuple("ConsoleAuth").field(&kind).finish()
    }
}

/// A token or credentials the console will not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakSecret(&'static str);

impl fmt::Display for WeakSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WeakSecret {}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

impl ConsoleAuth {
    /// Access with the secret `token`: at least [`MIN_TOKEN_LEN`] characters (make one with
    /// `openssl rand -hex 32`).
    pub fn token(token: impl AsRef<str>) -> Result<Self, WeakSecret> {
        let token = token.as_ref();
        if token.trim().len() < MIN_TOKEN_LEN {
            return Err(WeakSecret(
                "the console's token must be at least 16 characters",
            ));
        }
        let session = hex::encode(mac(token.as_bytes(), b"tower-webhook console session v1"));
        Ok(Self(Kind::Token {
            digest: sha256(token.as_bytes()),
            session,
        }))
    }

    /// Access with HTTP basic credentials: a user name and a password of at least
    /// [`MIN_TOKEN_LEN`] characters.
    pub fn basic(user: impl AsRef<str>, password: impl AsRef<str>) -> Result<Self, WeakSecret> {
        let (user, password) = (user.as_ref(), password.as_ref());
        if user.is_empty() || user.contains(':') {
            return Err(WeakSecret(
                "the console's user name must be set and hold no ':'",
            ));
        }
        if password.len() < MIN_TOKEN_LEN {
            return Err(WeakSecret(
                "the console's password must be at least 16 characters",
            ));
        }
        Ok(Self(Kind::Basic {
            user: sha256(user.as_bytes()),
            password: sha256(password.as_bytes()),
        }))
    }

    /// No check by the console: your own authentication layer is in front of the routes it
    /// is nested under. Say so only where it is: the console shows deliveries' bodies and
    /// replays them.
    pub fn behind_my_own_auth() -> Self {
        Self(Kind::Outer)
    }

    /// Whether the console shows its own sign-in form.
    pub(super) fn signs_in(&self) -> bool {
        matches!(self.0, Kind::Token { .. })
    }

    /// Whether `token`, typed into the sign-in form, is the token: the session cookie's
    /// value where it is.
    pub(super) fn sign_in(&self, token: &str) -> Option<&str> {
        match &self.0 {
            Kind::Token { digest, session } if equal(digest, &sha256(token.as_bytes())) => {
                Some(session)
            }
            _ => None,
        }
    }

    /// Who `headers` says asks, where they may: the identity a request's CSRF token is bound
    /// to (`""` behind your own auth).
    pub(super) fn check(&self, headers: &HeaderMap) -> Result<String, Refused> {
        match &self.0 {
            Kind::Outer => Ok(String::new()),
            Kind::Token { digest, session } => {
                if let Some(token) = authorization(headers, "Bearer ") {
                    if equal(digest, &sha256(token.as_bytes())) {
                        return Ok(session.clone());
                    }
                    return Err(Refused::SignIn);
                }
                match cookie(headers, SESSION_COOKIE) {
                    Some(value)
                        if value.len() == session.len()
                            && bool::from(value.as_bytes().ct_eq(session.as_bytes())) =>
                    {
                        Ok(session.clone())
                    }
                    _ => Err(Refused::SignIn),
                }
            }
            Kind::Basic { user, password } => {
                let credentials = authorization(headers, "Basic ")
                    .and_then(|encoded| {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(encoded.trim())
                            .ok()
                    })
                    .and_then(|decoded| String::from_utf8(decoded).ok());
                let Some((given_user, given_password)) =
                    credentials.as_deref().and_then(|c| c.split_once(':'))
                else {
                    return Err(Refused::Basic);
                };
                // Both compared, whichever is wrong: the time says nothing of which.
                let user_ok = equal(user, &sha256(given_user.as_bytes()));
                let password_ok = equal(password, &sha256(given_password.as_bytes()));
                if user_ok & password_ok {
                    Ok(hex::encode(sha256(
                        credentials.unwrap_or_default().as_bytes(),
                    )))
                } else {
                    Err(Refused::Basic)
                }
            }
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// No token, or a wrong one: the sign-in form.
    SignIn,
    /// No credentials, or wrong ones: the browser's prompt.
    Basic,
}

fn authorization<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.split_at_checked(scheme.len())?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

pub(super) fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

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
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return false;
        }
    }
    match headers.get(ORIGIN) {
        None => true,
        Some(origin) => {
            let origin = origin.to_str().unwrap_or_default();
            let host = headers
                .get(HOST)
                .and_then(|host| host.to_str().ok())
                .unwrap_or_default();
            let origin_host = origin
                .split_once("://")
                .map_or("", |(_, rest)| rest.trim_end_matches('/'));
            !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    HeaderValue::from_str(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn tokens_and_credentials() {
        assert!(ConsoleAuth::token("short").is_err());
        assert!(ConsoleAuth::token(" ".repeat(20)).is_err());
        let auth = ConsoleAuth::token("0123456789abcdef-secret").unwrap();
        assert!(auth
            .check(&headers(&[(
                "authorization",
                "Bearer 0123456789abcdef-secret"
            )]))
            .is_ok());
        assert!(auth
            .check(&headers(&[(
                "authorization",
                "bearer 0123456789abcdef-secret"
            )]))
            .is_ok());
        assert_eq!(
            auth.check(&headers(&[(
                "authorization",
                "Bearer 0123456789abcdef-secreT"
            )])),
            Err(Refused::SignIn)
        );
        assert_eq!(auth.check(&HeaderMap::new()), Err(Refused::SignIn));
        let session = auth.sign_in("0123456789abcdef-secret").unwrap().to_owned();
        assert!(!session.contains("secret"));
        let cookie = format!("a=b; {SESSION_COOKIE}={session}");
        assert!(auth.check(&headers(&[("cookie", &cookie)])).is_ok());
        let forged = format!("{SESSION_COOKIE}={}", "0".repeat(session.len()));
        assert!(auth.check(&headers(&[("cookie", &forged)])).is_err());
        assert!(auth.sign_in("wrong").is_none());
        assert!(format!("{auth:?}").contains("token") && !format!("{auth:?}").contains("secret"));

        assert!(ConsoleAuth::basic("ops", "short").is_err());
        assert!(ConsoleAuth::basic("a:b", "0123456789abcdef").is_err());
        let basic = ConsoleAuth::basic("ops", "0123456789abcdef").unwrap();
        // "ops:0123456789abcdef"
        let good = "Basic b3BzOjAxMjM0NTY3ODlhYmNkZWY=";
        assert!(basic.check(&headers(&[("authorization", good)])).is_ok());
        assert_eq!(
            basic.check(&headers(&[("authorization", "Basic b3BzOndyb25n")])),
            Err(Refused::Basic)
        );
        assert_eq!(
            basic.check(&headers(&[("authorization", "Basic !!!")])),
            Err(Refused::Basic)
        );
        assert!(ConsoleAuth::behind_my_own_auth()
            .check(&HeaderMap::new())
            .is_ok());
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        assert!(same_origin(&headers(&[("host", "a.example")])));
        assert!(same_origin(&headers(&[
            ("host", "a.example:8080"),
            ("origin", "https://a.example:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a.example"),
            ("origin", "https://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a.example"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "a.example"),
            ("origin", "null"),
        ])));
        let csrf = Csrf::new();
        let token = csrf.token("me");
        assert!(csrf.valid("me", &token));
        assert!(!csrf.valid("you", &token));
        assert!(!csrf.valid("me", ""));
    }
}
