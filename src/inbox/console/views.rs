//! The console's pages and actions.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;

use super::html::{badge, chart, esc, page, time, url};
use super::{Ctx, Shared};
use crate::inbox::text::{body_text, redacted, took};
use crate::inbox::{Dialect, InboxError, JobFilter, JobState};

/// The most of a body a page shows.
const BODY_SHOWN: usize = 64 * 1024;
/// Jobs per page.
const PAGE: u32 = 50;

type Shared_<D> = State<Arc<Shared<D>>>;

/// A page with `status`, `title` and one paragraph of `text` (escaped).
pub(super) fn message(base: &str, status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!("<p class=\"error\">{}</p>", esc(text));
    (status, Html(page(base, title, None, &body))).into_response()
}

pub(super) fn failed(ctx: &Ctx, err: &InboxError) -> Response {
    let body = format!(
        "<p class=\"error\">The inbox's database did not answer: {}</p>",
        esc(&err.to_string())
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(page(&ctx.base, "Unavailable", ctx.nav(), &body)),
    )
        .into_response()
}

pub(super) fn forbidden(ctx: &Ctx) -> Response {
    let body = "<p class=\"error\">Refused: this request did not come from the console's own \
                page (a cross-site request, or a stale form). Nothing was changed.</p>";
    (
        StatusCode::FORBIDDEN,
        Html(page(&ctx.base, "Refused", ctx.nav(), body)),
    )
        .into_response()
}

pub(super) fn done(ctx: &Ctx, title: &str, what: &str, back: &str) -> Response {
    let body = format!(
        "<p class=\"notice\" id=\"result\">{what}</p><p><a href=\"{}\">Back</a></p>",
        esc(back)
    );
    Html(page(&ctx.base, title, ctx.nav(), &body)).into_response()
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

    /// The filter in words, escaped.
    pub(super) fn words(&self) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("state", &self.state),
            ("layer", &self.layer),
            ("type", &self.event_type),
            ("event id", &self.event_id),
        ] {
            if !value.trim().is_empty() {
                parts.push(format!("{name} <strong>{}</strong>", esc(value.trim())));
            }
        }
        if parts.is_empty() {
            "every delivery".to_owned()
        } else {
            parts.join(", ")
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
    let base = esc(&ctx.base);
    let mut body = String::from("<section class=\"cards\">");
    for (state, count) in [
        (
            JobState::Queued,
            counts.queued.saturating_sub(counts.failed),
        ),
        (JobState::Running, counts.running),
        (JobState::Retrying, counts.failed),
        (JobState::Dead, counts.dead),
        (JobState::Done, counts.done),
    ] {
        let _ = write!(
            body,
            "<a class=\"card {0}\" id=\"count-{0}\" href=\"{base}/jobs?state={0}\">{0}<span class=\"n\">{count}</span></a>",
            state.as_str()
        );
    }
    let _ = write!(
        body,
        "</section><h2>Find a delivery</h2><form class=\"filters\" method=\"get\" action=\"{base}/jobs\">\
         <label>Event id or job id<input name=\"event_id\" id=\"search\" size=\"40\" required></label>\
         <button type=\"submit\" id=\"search-go\">Search</button></form>"
    );
    for (title, activity) in [("The last hour", &hour), ("The last day", &day)] {
        let _ = write!(body, "<h2>{title}</h2><section class=\"charts\">");
        for (name, class, series) in [
            ("Accepted", "accepted", &activity.accepted),
            ("Handled", "handled", &activity.handled),
            ("Failed attempts", "failed", &activity.failed),
            ("Dead-lettered", "dead", &activity.dead_lettered),
        ] {
            body.push_str(&chart(name, class, series, activity));
        }
        body.push_str("</section>");
    }
    body.push_str(&rejections(&shared.stats));
    Html(page(&ctx.base, "Overview", ctx.nav(), &body)).into_response()
}

/// The layers' rejections by reason, where the app shared their stats.
fn rejections(stats: &[(String, crate::Stats)]) -> String {
    if stats.is_empty() {
        return String::new();
    }
    let reasons = crate::stats::REASONS;
    let mut out = String::from(
        "<h2>Rejected before the inbox, since this process started</h2><table id=\"rejections\"><tr><th>layer</th>",
    );
    for reason in reasons {
        let _ = write!(out, "<th>{}</th>", reason.replace('_', " "));
    }
    out.push_str("<th>queued</th><th>inbox full</th></tr>");
    for (layer, stats) in stats {
        let snapshot = stats.snapshot();
        let counts: std::collections::HashMap<&str, u64> = snapshot.iter().collect();
        let _ = write!(out, "<tr><td>{}</td>", esc(layer));
        for reason in reasons {
            let n = counts
                .get(format!("rejected.{reason}").as_str())
                .copied()
                .unwrap_or(0);
            let _ = write!(out, "<td>{n}</td>");
        }
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td></tr>",
            snapshot.queued, snapshot.inbox_full
        );
    }
    out.push_str("</table>");
    out
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
    let page_ = match shared.inbox.jobs(&filter, after, PAGE).await {
        Ok(page) => page,
        Err(err) => return failed(&ctx, &err),
    };
    let base = esc(&ctx.base);
    let mut body = filters_form(&ctx.base, &query);
    body.push_str(
        "<table id=\"jobs\"><tr><th>received</th><th>state</th><th>layer</th><th>type</th>\
         <th>event id</th><th>attempts</th><th>last error</th></tr>",
    );
    for job in &page_.jobs {
        let error = job.last_error.as_deref().unwrap_or("");
        let short: String = error.chars().take(120).collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"mono\"><a href=\"{base}/jobs/{}\">{}</a></td><td>{}/{}</td><td>{}</td></tr>",
            time(job.received_at),
            badge(job.state),
            esc(&job.layer),
            esc(job.event_type.as_deref().unwrap_or("")),
            url(&job.task_id),
            esc(&job.event_id),
            job.attempts,
            job.max_attempts,
            esc(&short)
        );
    }
    body.push_str("</table>");
    if page_.jobs.is_empty() {
        body.push_str("<p class=\"muted\" id=\"empty\">No delivery matches.</p>");
    }
    body.push_str("<p class=\"pager\">");
    if after.is_some() {
        let _ = write!(
            body,
            "<a href=\"{base}/jobs?{}\">Newest</a> ",
            esc(&query.query())
        );
    }
    if let Some(next) = &page_.next {
        let _ = write!(
            body,
            "<a href=\"{base}/jobs?{}&amp;after={}\" id=\"older\">Older</a>",
            esc(&query.query()),
            url(next)
        );
    }
    body.push_str("</p>");
    if matches!(filter.state, None | Some(JobState::Dead)) {
        let _ = write!(
            body,
            "<p><a href=\"{base}/replay?{}\" id=\"replay-matching\">Replay the dead letters matching this filter…</a></p>",
            esc(&query.query())
        );
    }
    Html(page(&ctx.base, "Deliveries", ctx.nav(), &body)).into_response()
}

fn filters_form(base: &str, query: &ListQuery) -> String {
    let mut options = String::from("<option value=\"\">any</option>");
    for state in JobState::ALL {
        let selected = if query.state.trim() == state.as_str() {
            " selected"
        } else {
            ""
        };
        let _ = write!(options, "<option{selected}>{}</option>", state.as_str());
    }
    format!(
        "<form class=\"filters\" method=\"get\" action=\"{}/jobs\">\
         <label>State<select name=\"state\" id=\"state\">{options}</select></label>\
         <label>Layer<input name=\"layer\" value=\"{}\"></label>\
         <label>Event type<input name=\"type\" value=\"{}\"></label>\
         <label>Event id or job id<input name=\"event_id\" id=\"search\" value=\"{}\" size=\"34\"></label>\
         <button type=\"submit\">Filter</button></form>",
        esc(base),
        esc(&query.layer),
        esc(&query.event_type),
        esc(&query.event_id)
    )
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
    let base = esc(&ctx.base);
    let s = &job.summary;
    let mut body = format!(
        "<dl><dt>Event id</dt><dd class=\"mono\" id=\"event-id\">{}</dd><dt>Job</dt><dd class=\"mono\">{}</dd>\
         <dt>State</dt><dd id=\"state\">{} after {} of {} attempts</dd><dt>Layer</dt><dd>{} ({})</dd>\
         <dt>Event type</dt><dd>{}</dd><dt>Received</dt><dd>{}</dd>",
        esc(&s.event_id),
        esc(&s.task_id),
        badge(s.state),
        s.attempts,
        s.max_attempts,
        esc(&s.layer),
        esc(&job.scheme),
        esc(s.event_type.as_deref().unwrap_or("-")),
        time(s.received_at)
    );
    if let Some(tenant) = &s.tenant {
        let _ = write!(body, "<dt>Tenant</dt><dd>{}</dd>", esc(tenant));
    }
    if let Some(error) = &s.last_error {
        let _ = write!(
            body,
            "<dt>Last error</dt><dd class=\"mono\">{}</dd>",
            esc(error)
        );
    }
    body.push_str("</dl>");
    if s.state == JobState::Dead {
        let _ = write!(
            body,
            "<p><a href=\"{base}/jobs/{}/replay\" id=\"replay\">Replay this delivery…</a></p>",
            url(&s.task_id)
        );
    }
    body.push_str("<h2>Attempts</h2><table id=\"attempts\"><tr><th>#</th><th>started</th><th>took</th><th>outcome</th><th>error</th><th>worker</th></tr>");
    for a in &job.attempts {
        let took = took(a.duration);
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{took}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            a.attempt,
            time(a.started_at),
            a.outcome,
            esc(a.error.as_deref().unwrap_or("")),
            esc(a.worker.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table><h2>Headers, as verified</h2><table id=\"headers\">");
    for (name, value) in &job.headers {
        let _ = write!(
            body,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            esc(name),
            esc(value)
        );
    }
    let _ = write!(body, "</table><h2>Body ({} bytes)</h2>", job.body.len());
    if job.secret_fields.is_empty() || job.body.len() <= BODY_SHOWN {
        let shown = redacted(&job.body, &job.secret_fields);
        let (text, cut) = body_text(&shown, BODY_SHOWN);
        let _ = write!(body, "<pre id=\"body\">{}</pre>", esc(&text));
        if cut {
            body.push_str(
                "<p class=\"muted\" id=\"body-cut\">Over 64 KiB: its first 64 KiB as \
                 received, not pretty-printed.</p>",
            );
        }
    } else {
        // Redacting means reading it whole: a page costs no more than its cap.
        body.push_str(
            "<p class=\"muted\" id=\"body-cut\">Not shown: over 64 KiB, and it holds the \
             sender's secret.</p>",
        );
    }
    Html(page(&ctx.base, "Delivery", ctx.nav(), &body)).into_response()
}
