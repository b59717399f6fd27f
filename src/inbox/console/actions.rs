//! The console's actions: replay one job, replay what a filter matches, purge; each a
//! confirmation page, then a form posted with its CSRF token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, OriginalUri, Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::html::{confirm, esc, home, page, url, Confirm};
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
    let action = format!("{}/jobs/{}/replay", ctx.base, url(&id));
    let cancel = format!("{}/jobs/{}", ctx.base, url(&id));
    let what = format!(
        "Queue the dead-lettered job <span class=\"mono\">{}</span> again? Its handler runs \
         again, with all its attempts.",
        esc(&id)
    );
    let body = confirm(&Confirm {
        action: &action,
        cancel: &cancel,
        csrf: &ctx.csrf,
        fields: &[],
        what: &what,
        button: "Replay",
    });
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
            &format!(
                "Replayed <span class=\"mono\">{}</span>: it is queued again.",
                esc(&id)
            ),
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
    let action = format!("{}/replay", ctx.base);
    let cancel = format!("{}/jobs?{}", ctx.base, query.query());
    let what = format!(
        "Queue again every dead-lettered delivery matching {}? Their handlers run again.",
        query.words()
    );
    let mut fields = vec![
        ("state", query.state.as_str()),
        ("layer", query.layer.as_str()),
        ("type", query.event_type.as_str()),
        ("event_id", query.event_id.as_str()),
    ];
    if query.is_empty() {
        // Every dead letter: said in so many words, as the POST requires.
        fields.push(("all", "yes"));
    }
    let body = confirm(&Confirm {
        action: &action,
        cancel: &cancel,
        csrf: &ctx.csrf,
        fields: &fields,
        what: &what,
        button: "Replay them",
    });
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
            &format!(
                "Replayed {n} dead-lettered deliveries matching {}.",
                form.query.words()
            ),
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
    let base = esc(&ctx.base);
    let body = if query.before.trim().is_empty() {
        let month_ago = SystemTime::now()
            .checked_sub(Duration::from_secs(30 * 86_400))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let date = &rfc3339(month_ago)[..10];
        format!(
            "<form class=\"filters\" method=\"get\" action=\"{base}/purge\">\
             <label>Delete the done deliveries finished before<input type=\"date\" name=\"before\" id=\"before\" value=\"{date}\" required></label>\
             <button type=\"submit\">Next…</button></form>\
             <p class=\"muted\">Dead letters and jobs still to run are kept; you confirm on the next page.</p>"
        )
    } else {
        match parse_time(&query.before) {
            Err(err) => return message(&ctx.base, StatusCode::BAD_REQUEST, "Purge", &err),
            Ok(before) => {
                let action = format!("{}/purge", ctx.base);
                let cancel = format!("{}/purge", ctx.base);
                let what = format!(
                    "Delete every done delivery finished before {} UTC, with its attempts? This cannot be undone.",
                    esc(&rfc3339(before))
                );
                confirm(&Confirm {
                    action: &action,
                    cancel: &cancel,
                    csrf: &ctx.csrf,
                    fields: &[("before", query.before.trim())],
                    what: &what,
                    button: "Delete",
                })
            }
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
            &format!(
                "Deleted {n} done deliveries finished before {} UTC.",
                esc(&rfc3339(before))
            ),
            &home(&ctx.base),
        ),
        Err(err) => failed(&ctx, &err),
    }
}
