//! Who may see the console: a token and its sessions, basic credentials, or an outer auth layer.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The name of the console's session cookie (token access, after the sign-in form).
pub(super) const SESSION_COOKIE: &str = "tower_webhook_console";

/// The cookie that binds the CSRF tokens of a console behind your own auth to one browser.
pub(super) const BROWSER_COOKIE: &str = "tower_webhook_console_browser";

/// The shortest token [`ConsoleAuth::token`] takes.
pub const MIN_TOKEN_LEN: usize = 16;

/// How long a console session lasts after sign-in, unless
/// [`ConsoleAuth::with_session_lifetime`] says otherwise.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// How the console checks who asks: building a console takes one, so it is never open by
/// accident.
///
/// - [`token`](Self::token): a secret of at least 16 characters, sent as
///   `Authorization: Bearer <token>` (scripts) or typed once into the console's sign-in form,
///   which starts a session: an `HttpOnly`, `SameSite=Strict` cookie holding a random session
///   id and its expiry, signed with a key derived from the token. It lasts
///   [`DEFAULT_SESSION_LIFETIME`] (see [`with_session_lifetime`](Self::with_session_lifetime));
///   signing out revokes it at once.
/// - [`basic`](Self::basic): HTTP basic credentials; the browser asks for them.
/// - [`behind_my_own_auth`](Self::behind_my_own_auth): your application authenticates the
///   routes the console is nested under (a login, an SSO proxy): the console checks nobody.
///
/// Tokens and passwords are compared in constant time (as SHA-256 digests, so their length
/// is not timed either), and never shown.
///
/// # Sessions across replicas and restarts
///
/// A session cookie is signed with a key derived from the token, so every replica that has
/// the same token accepts it, and a restart keeps everyone signed in. A sign-out is
/// revoked in memory by the process that served it, until the session would have expired:
/// behind several replicas, the others still take the signed-out cookie (the browser has
/// dropped it already) until its expiry, so keep the lifetime short there or pin the
/// console to one replica. Changing the token ends every session at once.
#[derive(Clone)]
pub struct ConsoleAuth(Kind);

#[derive(Clone)]
enum Kind {
    Token {
        digest: [u8; 32],
        /// What signs the sessions: derived from the token, the same in every replica.
        key: [u8; 32],
        lifetime: Duration,
        /// Signed-out sessions, by id, with when they would have expired.
        revoked: Arc<Mutex<HashMap<String, u64>>>,
    },
    Basic {
        user: [u8; 32],
        password: [u8; 32],
    },
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

pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

impl ConsoleAuth {
    /// Access with the secret `token`: at least [`MIN_TOKEN_LEN`] characters (make one with
    /// `openssl rand -hex 32`). Whitespace around it is not part of it: a token read from a
    /// file with its trailing newline is the token.
    pub fn token(token: impl AsRef<str>) -> Result<Self, WeakSecret> {
        let token = token.as_ref().trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(WeakSecret(
                "the console's token must be at least 16 characters",
            ));
        }
        Ok(Self(Kind::Token {
            digest: sha256(token.as_bytes()),
            key: mac(token.as_bytes(), b"tower-webhook console session key v2"),
            lifetime: DEFAULT_SESSION_LIFETIME,
            revoked: Arc::default(),
        }))
    }

    /// How long a session started by the sign-in form lasts: [`DEFAULT_SESSION_LIFETIME`]
    /// unless set (at least a minute). Only [`token`](Self::token) access has sessions.
    #[must_use]
    pub fn with_session_lifetime(mut self, lifetime: Duration) -> Self {
        if let Kind::Token { lifetime: kept, .. } = &mut self.0 {
            *kept = lifetime.max(Duration::from_secs(60));
        }
        self
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

    /// Whether `token`, typed into the sign-in form, is the token: a new session's cookie
    /// value, and how long it lasts, where it is.
    pub(super) fn sign_in(&self, token: &str) -> Option<(String, Duration)> {
        self.sign_in_at(token, unix_now())
    }

    fn sign_in_at(&self, token: &str, now: u64) -> Option<(String, Duration)> {
        match &self.0 {
            Kind::Token {
                digest,
                key,
                lifetime,
                ..
            } if equal(digest, &sha256(token.trim().as_bytes())) => {
                let id = random_hex();
                let expires = now.saturating_add(lifetime.as_secs());
                Some((sign_session(key, &id, expires), *lifetime))
            }
            _ => None,
        }
    }

    /// Ends the session of `headers`' cookie, where it is a valid one: it is refused from
    /// now on by this process.
    pub(super) fn sign_out(&self, headers: &HeaderMap) {
        let now = unix_now();
        if let Kind::Token { key, revoked, .. } = &self.0 {
            if let Some((id, expires)) =
                cookie(headers, SESSION_COOKIE).and_then(|value| open_session(key, value, now))
            {
                let mut revoked = revoked.lock().unwrap_or_else(PoisonError::into_inner);
                revoked.retain(|_, until| *until > now);
                revoked.insert(id.to_owned(), expires);
            }
        }
    }

    /// Who `headers` says asks, where they may: the identity a request's CSRF token is bound
    /// to (a session, a token, credentials, or a browser behind your own auth).
    pub(super) fn check(&self, headers: &HeaderMap) -> Result<String, Refused> {
        self.check_at(headers, unix_now())
    }

    fn check_at(&self, headers: &HeaderMap, now: u64) -> Result<String, Refused> {
        match &self.0 {
            Kind::Outer => Ok(cookie(headers, BROWSER_COOKIE)
                .map(|browser| format!("browser:{browser}"))
                .unwrap_or_default()),
            Kind::Token {
                digest,
                key,
                revoked,
                ..
            } => {
                if let Some(token) = authorization(headers, "Bearer ") {
                    if equal(digest, &sha256(token.trim().as_bytes())) {
                        return Ok("bearer".to_owned());
                    }
                    return Err(Refused::SignIn);
                }
                let (id, _) = cookie(headers, SESSION_COOKIE)
                    .and_then(|value| open_session(key, value, now))
                    .ok_or(Refused::SignIn)?;
                let revoked = revoked.lock().unwrap_or_else(PoisonError::into_inner);
                if revoked.contains_key(id) {
                    return Err(Refused::SignIn);
                }
                Ok(format!("session:{id}"))
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

    /// Whether this console binds its CSRF tokens to a browser cookie of its own: behind
    /// your own auth, where it knows nobody's identity.
    pub(super) fn binds_browser(&self) -> bool {
        matches!(self.0, Kind::Outer)
    }
}

/// 16 random bytes in hex: a session's or a browser's id.
pub(super) fn random_hex() -> String {
    let mut id = [0; 16];
    if getrandom::fill(&mut id).is_err() {
        // Without the system's randomness, from the clock and the process: unique, and a
        // session id is also signed, so a guess of it forges nothing.
        let seed = format!("{:?}{}", SystemTime::now(), std::process::id());
        id.copy_from_slice(&sha256(seed.as_bytes())[..16]);
    }
    hex::encode(id)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A session's cookie value: `<id>.<expires>.<signature>`.
fn sign_session(key: &[u8; 32], id: &str, expires: u64) -> String {
    let signed = format!("{id}.{expires}");
    let signature = hex::encode(mac(key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// The id and expiry of the session `value`, where `key` signed it and it has not expired.
fn open_session<'v>(key: &[u8; 32], value: &'v str, now: u64) -> Option<(&'v str, u64)> {
    let (signed, signature) = value.rsplit_once('.')?;
    let (id, expires) = signed.split_once('.')?;
    let expected = hex::encode(mac(key, signed.as_bytes()));
    let valid: bool = signature.as_bytes().ct_eq(expected.as_bytes()).into();
    let expires: u64 = expires.parse().ok()?;
    (valid && expires > now).then_some((id, expires))
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

pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
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

#[cfg(test)]
mod tests;
