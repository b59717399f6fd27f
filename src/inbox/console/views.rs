//! The console's pages that read: the overview, the deliveries, one delivery; and the
//! answers every handler shares (a message, a refusal, what an action did).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;

use super::pages::{self, page, paragraph, url};
use super::{Ctx, Shared};
use crate::inbox::{Dialect, InboxError, JobFilter, JobState};

/// Jobs per page.
const PAGE: u32 = 50;

type Shared_<D> = State<Arc<Shared<D>>>;

/// A page with `status`, `title` and one paragraph of `text`.
pub(super) fn message(base: &str, status: StatusCode, title: &str, text: &str) -> Response {
    let body = paragraph("error", text);
    (status, Html(page(base, title, None, &body))).into_response()
}

pub(super) fn failed(ctx: &Ctx, err: &InboxError) -> Response {
    let body = paragraph(
        "error",
        &format!("The inbox's database did not answer: {err}"),
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(page(&ctx.base, "Unavailable", ctx.nav(), &body)),
    )
        .into_response()
}

pub(super) fn forbidden(ctx: &Ctx) -> Response {
    let body = paragraph(
        "error",
        "Refused: this request did not come from the console's own page (a cross-site \
         request, or a stale form). Nothing was changed.",
    );
    (
        StatusCode::FORBIDDEN,
        Html(page(&ctx.base, "Refused", ctx.nav(), &body)),
    )
        .into_response()
}

/// What an action did (`what`), and the way `back`.
pub(super) fn done(ctx: &Ctx, title: &str, what: &Markup, back: &str) -> Response {
    Html(page(&ctx.base, title, ctx.nav(), &pages::done(what, back))).into_response()
}

/// A list's query: its filter and where its page starts.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    pub(super) state: String,
    #[serde(default)]
    pub(super) layer: String,
    #[serde(default, rename = "type")]
    pub(super) event_type: String,
    #[serde(default)]
    pub(super) event_id: String,
    #[serde(default)]
    pub(super) after: String,
}

impl ListQuery {
    pub(super) fn filter(&self) -> Result<JobFilter, String> {
        let state = match self.state.trim() {
            "" | "any" => None,
            name => Some(name.parse::<JobState>().map_err(|err| err.to_string())?),
        };
        Ok(JobFilter {
            state,
            layer: Some(self.layer.clone()),
            event_type: Some(self.event_type.clone()),
            event_id: Some(self.event_id.clone()),
        })
    }

    /// Whether no condition is set.
    pub(super) fn is_empty(&self) -> bool {
        [&self.state, &self.layer, &self.event_type, &self.event_id]
            .iter()
            .all(|value| value.trim().is_empty() || value.trim() == "any")
    }

    /// The filter as a query string (without `after`).
    pub(super) fn query(&self) -> String {
        format!(
            "state={}&layer={}&type={}&event_id={}",
            url(&self.state),
            url(&self.layer),
            url(&self.event_type),
            url(&self.event_id)
        )
    }

    /// The filter in words.
    pub(super) fn words(&self) -> Markup {
        let parts: Vec<(&str, &str)> = [
            ("state", &self.state),
            ("layer", &self.layer),
            ("type", &self.event_type),
            ("event id", &self.event_id),
        ]
        .into_iter()
        .map(|(name, value)| (name, value.trim()))
        .filter(|(_, value)| !value.is_empty())
        .collect();
        html! {
            @if parts.is_empty() {
                "every delivery"
            }
            @for (i, (name, value)) in parts.iter().enumerate() {
                @if i > 0 { ", " }
                (name) " " strong { (value) }
            }
        }
    }
}

pub(super) async fn overview<D: Dialect>(State(shared): Shared_<D>, ctx: Ctx) -> Response {
    let inbox = &shared.inbox;
    let (counts, hour, day) = match futures_util::future::try_join3(
        inbox.counts(),
        shared.charts.activity(inbox, Duration::from_secs(300), 12),
        shared.charts.activity(inbox, Duration::from_secs(3600), 24),
    )
    .await
    {
        Ok(read) => read,
        Err(err) => return failed(&ctx, &err),
    };
    let body = pages::overview(&ctx.base, &counts, &hour, &day, &shared.stats);
    Html(page(&ctx.base, "Overview", ctx.nav(), &body)).into_response()
}

pub(super) async fn list<D: Dialect>(
    State(shared): Shared_<D>,
    ctx: Ctx,
    Query(query): Query<ListQuery>,
) -> Response {
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(err) => return message(&ctx.base, StatusCode::BAD_REQUEST, "Deliveries", &err),
    };
    let after = Some(query.after.trim()).filter(|after| !after.is_empty());
    let jobs = match shared.inbox.jobs(&filter, after, PAGE).await {
        Ok(page) => page,
        Err(err) => return failed(&ctx, &err),
    };
    let body = pages::jobs(&ctx.base, &query, filter.state, &jobs, after);
    Html(page(&ctx.base, "Deliveries", ctx.nav(), &body)).into_response()
}

pub(super) async fn detail<D: Dialect>(
    State(shared): Shared_<D>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Response {
    let job = match shared.inbox.job(&id).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            return message(
                &ctx.base,
                StatusCode::NOT_FOUND,
                "Not found",
                "No such job in this inbox.",
            )
        }
        Err(err) => return failed(&ctx, &err),
    };
    let body = pages::job(&ctx.base, &job);
    Html(page(&ctx.base, "Delivery", ctx.nav(), &body)).into_response()
}
