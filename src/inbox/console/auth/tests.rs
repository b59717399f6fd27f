//! Tokens, credentials and sessions: who gets in, and for how long.

use super::super::csrf::Csrf;
use super::super::test_headers as headers;
use super::*;

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
    let (session, lifetime) = auth.sign_in("0123456789abcdef-secret").unwrap();
    assert_eq!(lifetime, DEFAULT_SESSION_LIFETIME);
    assert!(!session.contains("secret"));
    let cookie = format!("a=b; {SESSION_COOKIE}={session}");
    assert!(auth.check(&headers(&[("cookie", &cookie)])).is_ok());
    let forged = format!("{SESSION_COOKIE}={}", "0".repeat(session.len()));
    assert!(auth.check(&headers(&[("cookie", &forged)])).is_err());
    assert!(auth.sign_in("wrong").is_none());
    // Two sign-ins, two sessions: each browser its own, and its own CSRF identity.
    let (other, _) = auth.sign_in("0123456789abcdef-secret").unwrap();
    assert_ne!(session, other);
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
fn a_token_read_from_a_file_is_the_token() {
    let auth = ConsoleAuth::token("0123456789abcdef-secret\n").unwrap();
    let bearer = headers(&[("authorization", "Bearer 0123456789abcdef-secret")]);
    assert!(auth.check(&bearer).is_ok());
    assert!(auth.sign_in("0123456789abcdef-secret").is_some());
    assert!(auth.sign_in(" 0123456789abcdef-secret\r\n").is_some());
}

#[test]
fn sessions_expire_and_sign_out_revokes() {
    let auth = ConsoleAuth::token("0123456789abcdef-secret")
        .unwrap()
        .with_session_lifetime(Duration::from_secs(3600));
    let now = 1_800_000_000;
    let (session, lifetime) = auth.sign_in_at("0123456789abcdef-secret", now).unwrap();
    assert_eq!(lifetime, Duration::from_secs(3600));
    let with = headers(&[("cookie", &format!("{SESSION_COOKIE}={session}"))]);
    assert!(auth.check_at(&with, now + 3599).is_ok());
    assert_eq!(auth.check_at(&with, now + 3600), Err(Refused::SignIn));
    // The expiry is signed: moving it forward breaks the signature.
    let (id, rest) = session.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let extended = format!("{SESSION_COOKIE}={id}.{}.{signature}", now + 999_999);
    assert_eq!(
        auth.check_at(&headers(&[("cookie", &extended)]), now),
        Err(Refused::SignIn)
    );
    // Another token's console does not take it (the key is the token's).
    let other = ConsoleAuth::token("another-token-of-16-chars").unwrap();
    assert!(other.check_at(&with, now).is_err());
    // A replica with the same token does.
    let replica = ConsoleAuth::token("0123456789abcdef-secret").unwrap();
    assert!(replica.check_at(&with, now).is_ok());

    let (live, _) = auth.sign_in("0123456789abcdef-secret").unwrap();
    let live = headers(&[("cookie", &format!("{SESSION_COOKIE}={live}"))]);
    let (kept, _) = auth.sign_in("0123456789abcdef-secret").unwrap();
    let kept = headers(&[("cookie", &format!("{SESSION_COOKIE}={kept}"))]);
    assert!(auth.check(&live).is_ok());
    auth.sign_out(&live);
    assert_eq!(auth.check(&live), Err(Refused::SignIn));
    assert!(auth.check(&kept).is_ok(), "another browser's session stays");
    assert!(ConsoleAuth::token("0123456789abcdef-secret")
        .unwrap()
        .with_session_lifetime(Duration::ZERO)
        .sign_in("0123456789abcdef-secret")
        .is_some_and(|(_, lifetime)| lifetime == Duration::from_secs(60)));
}

#[test]
fn behind_your_own_auth_each_browser_has_its_own_csrf_identity() {
    let auth = ConsoleAuth::behind_my_own_auth();
    let a = auth
        .check(&headers(&[("cookie", &format!("{BROWSER_COOKIE}=aaaa"))]))
        .unwrap();
    let b = auth
        .check(&headers(&[("cookie", &format!("{BROWSER_COOKIE}=bbbb"))]))
        .unwrap();
    assert_ne!(a, b);
    let csrf = Csrf::new();
    assert!(!csrf.valid(&b, &csrf.token(&a)));
}
