//! The console's pages and actions.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, OriginalUri, Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

use super::auth::SESSION_COOKIE;
use super::html::{badge, chart, confirm, esc, home, page, time, url, Confirm};
use super::{Base, Ctx, Shared};
use crate::inbox::text::{body_text, parse_time, redacted, rfc3339, took};
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

fn failed(ctx: &Ctx, err: &InboxError) -> Response {
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

fn forbidden(ctx: &Ctx) -> Response {
    let body = "<p class=\"error\">Refused: this request did not come from the console's own \
                page (a cross-site request, or a stale form). Nothing was changed.</p>";
    (
        StatusCode::FORBIDDEN,
        Html(page(&ctx.base, "Refused", ctx.nav(), body)),
    )
        .into_response()
}

fn done(ctx: &Ctx, title: &str, what: &str, back: &str) -> Response {
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
    state: String,
    #[serde(default)]
    layer: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    after: String,
}

impl ListQuery {
    fn filter(&self) -> Result<JobFilter, String> {
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
    fn is_empty(&self) -> bool {
        [&self.state, &self.layer, &self.event_type, &self.event_id]
            .iter()
            .all(|value| value.trim().is_empty() || value.trim() == "any")
    }

    /// The filter as a query string (without `after`).
    fn query(&self) -> String {
        format!(
            "state={}&layer={}&type={}&event_id={}",
            url(&self.state),
            url(&self.layer),
            url(&self.event_type),
            url(&self.event_id)
        )
    }

    /// The filter in words, escaped.
    fn words(&self) -> String {
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

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
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

/// The sign-in form, with `status` and an error where the last try was wrong.
pub(super) fn login_page(base: &str, status: StatusCode, error: Option<&str>) -> Response {
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\">{}</p>", esc(e))
    });
    let body = format!(
        "{error}<form method=\"post\" action=\"{}/login\" class=\"filters\">\
         <label>Console token<input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form>",
        esc(base)
    );
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
    if !super::auth::same_origin(&uri, &headers) {
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
