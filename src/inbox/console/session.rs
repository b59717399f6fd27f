//! The console's session pages: log in with the token, log out.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, OriginalUri, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

use super::actions::CsrfForm;
use super::auth::SESSION_COOKIE;
use super::pages::{self, home, page};
use super::views::{forbidden, message};
use super::{Base, Ctx, Shared};
use crate::inbox::Dialect;

type Shared_<D> = State<Arc<Shared<D>>>;

/// The sign-in form, with `status` and an error where the last try was wrong.
pub(super) fn login_page(base: &str, status: StatusCode, error: Option<&str>) -> Response {
    let body = pages::sign_in(base, error);
    (status, Html(page(base, "Sign in", None, &body))).into_response()
}

pub(super) async fn login_form<D: Dialect>(
    State(shared): Shared_<D>,
    Base(base): Base,
) -> Response {
    if !shared.auth.signs_in() {
        return Redirect::to(&home(&base)).into_response();
    }
    login_page(&base, StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

pub(super) async fn login<D: Dialect>(
    State(shared): Shared_<D>,
    Base(base): Base,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    if !super::csrf::same_origin(&uri, &headers) {
        return message(
            &base,
            StatusCode::FORBIDDEN,
            "Refused",
            "Refused: a cross-site sign-in.",
        );
    }
    let token = form.map(|Form(form)| form.token).unwrap_or_default();
    let Some((session, lifetime)) = shared.auth.sign_in(&token) else {
        return login_page(
            &base,
            StatusCode::UNAUTHORIZED,
            Some("That is not the console's token."),
        );
    };
    let secure = if forwarded_https(&headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path={}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        home(&base),
        lifetime.as_secs()
    );
    let mut response = Redirect::to(&home(&base)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

pub(super) async fn logout<D: Dialect>(
    State(shared): Shared_<D>,
    ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if ctx.allowed(&shared, &headers, form, |f| &f.csrf).is_none() {
        return forbidden(&ctx);
    }
    // Revoked here and now: the cookie is refused even where it was kept.
    shared.auth.sign_out(&headers);
    let cookie = format!(
        "{SESSION_COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        home(&ctx.base)
    );
    let mut response = Redirect::to(&format!("{}/login", ctx.base)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// Whether the request reached the proxy in front over HTTPS (or this server directly): the
/// cookie is then `Secure`.
pub(super) fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
}
