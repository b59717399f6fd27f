//! The console's actions: replay one job, replay what a filter matches, purge; each a
//! confirmation page, then a form posted with its CSRF token.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, OriginalUri, Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use maud::html;

use super::pages::{self, home, page, url};
use super::views::{done, failed, forbidden, message, ListQuery};
use super::{Ctx, Shared};
use crate::inbox::text::{parse_time, rfc3339};
use crate::inbox::Dialect;

type Shared_<D> = State<Arc<Shared<D>>>;

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

pub(super) async fn replay_one_confirm(ctx: Ctx, Path(id): Path<String>) -> Response {
    let body = pages::replay_one_asked(&ctx.base, &ctx.csrf, &id);
    Html(page(&ctx.base, "Replay a delivery", ctx.nav(), &body)).into_response()
}

pub(super) async fn replay_one<D: Dialect>(
    State(shared): Shared_<D>,
    ctx: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Some(_) = ctx.allowed(&shared, &headers, form, |f| &f.csrf) else {
        return forbidden(&ctx);
    };
    let back = format!("{}/jobs/{}", ctx.base, url(&id));
    match shared.inbox.replay(&id).await {
        Ok(true) => done(
            &ctx,
            "Replayed",
            &html! { "Replayed " span class="mono" { (id) } ": it is queued again." },
            &back,
        ),
        Ok(false) => message(
            &ctx.base,
            StatusCode::CONFLICT,
            "Not replayed",
            "That job is not dead-lettered (replayed already, or never dead): nothing was changed.",
        ),
        Err(err) => failed(&ctx, &err),
    }
}

pub(super) async fn replay_matching_confirm(ctx: Ctx, Query(query): Query<ListQuery>) -> Response {
    if let Err(err) = query.filter() {
        return message(&ctx.base, StatusCode::BAD_REQUEST, "Replay", &err);
    }
    let body = pages::replay_matching_asked(&ctx.base, &ctx.csrf, &query);
    Html(page(&ctx.base, "Replay dead letters", ctx.nav(), &body)).into_response()
}

/// What a replay by filter posts: the filter it confirmed, in the form's body only. With no
/// filter it replays every dead letter only where `all=yes` says so.
#[derive(Debug, Deserialize)]
pub(super) struct ReplayForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    all: String,
    #[serde(flatten)]
    query: ListQuery,
}

pub(super) async fn replay_matching<D: Dialect>(
    State(shared): Shared_<D>,
    ctx: Ctx,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    form: Result<Form<ReplayForm>, FormRejection>,
) -> Response {
    let Some(form) = ctx.allowed(&shared, &headers, form, |f| &f.csrf) else {
        return forbidden(&ctx);
    };
    // The filter is read from one place, the form that was confirmed: one in the query
    // string would be a second, and was once ignored for an empty one, replaying all.
    if uri.query().is_some_and(|query| !query.is_empty()) {
        return message(
            &ctx.base,
            StatusCode::BAD_REQUEST,
            "Not replayed",
            "A replay's filter goes in the form's body (state, layer, type, event_id), not in \
             the query string. Nothing was changed.",
        );
    }
    if form.query.is_empty() && form.all != "yes" {
        return message(
            &ctx.base,
            StatusCode::BAD_REQUEST,
            "Not replayed",
            "No filter: to replay every dead letter, send all=yes. Nothing was changed.",
        );
    }
    let filter = match form.query.filter() {
        Ok(filter) => filter,
        Err(err) => return message(&ctx.base, StatusCode::BAD_REQUEST, "Replay", &err),
    };
    match shared.inbox.replay_matching(&filter).await {
        Ok(n) => done(
            &ctx,
            "Replayed",
            &html! { "Replayed " (n) " dead-lettered deliveries matching " (form.query.words()) "." },
            &format!("{}/jobs?{}", ctx.base, form.query.query()),
        ),
        Err(err) => failed(&ctx, &err),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct PurgeQuery {
    #[serde(default)]
    before: String,
    #[serde(default)]
    csrf: String,
}

pub(super) async fn purge_confirm(ctx: Ctx, Query(query): Query<PurgeQuery>) -> Response {
    let given = query.before.trim();
    let body = if given.is_empty() {
        pages::purge_when(&ctx.base)
    } else {
        match parse_time(given) {
            Err(err) => return message(&ctx.base, StatusCode::BAD_REQUEST, "Purge", &err),
            Ok(before) => pages::purge_asked(&ctx.base, &ctx.csrf, before, given),
        }
    };
    Html(page(&ctx.base, "Purge done deliveries", ctx.nav(), &body)).into_response()
}

pub(super) async fn purge<D: Dialect>(
    State(shared): Shared_<D>,
    ctx: Ctx,
    headers: HeaderMap,
    form: Result<Form<PurgeQuery>, FormRejection>,
) -> Response {
    let Some(form) = ctx.allowed(&shared, &headers, form, |f| &f.csrf) else {
        return forbidden(&ctx);
    };
    let before = match parse_time(&form.before) {
        Ok(before) => before,
        Err(err) => return message(&ctx.base, StatusCode::BAD_REQUEST, "Purge", &err),
    };
    match shared.inbox.purge_done_before(before).await {
        Ok(n) => done(
            &ctx,
            "Purged",
            &html! { "Deleted " (n) " done deliveries finished before " (rfc3339(before)) " UTC." },
            &home(&ctx.base),
        ),
        Err(err) => failed(&ctx, &err),
    }
}
