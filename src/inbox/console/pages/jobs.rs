//! The deliveries: a filter, a page of jobs newest first, and the way to older ones.

use maud::{html, Markup};

use super::{badge, time, url};
use crate::inbox::console::views::ListQuery;
use crate::inbox::{JobPage, JobState};

/// The listing's body: `jobs` matching `query` (whose state is `state`, read by the
/// handler), the page after `after` where there is one.
pub(crate) fn jobs(
    base: &str,
    query: &ListQuery,
    state: Option<JobState>,
    jobs: &JobPage,
    after: Option<&str>,
) -> Markup {
    let filter = query.query();
    let dead_or_any = matches!(state, None | Some(JobState::Dead));
    html! {
        (filters(base, query))
        table id="jobs" {
            tr {
                th { "received" } th { "state" } th { "layer" } th { "type" }
                th { "event id" } th { "attempts" } th { "last error" }
            }
            @for job in &jobs.jobs {
                tr {
                    td { (time(job.received_at)) }
                    td { (badge(job.state)) }
                    td { (job.layer) }
                    td { (job.event_type.as_deref().unwrap_or("")) }
                    td class="mono" {
                        a href={ (base) "/jobs/" (url(&job.task_id)) } { (job.event_id) }
                    }
                    td { (job.attempts) "/" (job.max_attempts) }
                    td {
                        (job.last_error.as_deref().unwrap_or("").chars().take(120).collect::<String>())
                    }
                }
            }
        }
        @if jobs.jobs.is_empty() {
            p class="muted" id="empty" { "No delivery matches." }
        }
        p class="pager" {
            @if after.is_some() {
                a href={ (base) "/jobs?" (filter) } { "Newest" } " "
            }
            @if let Some(next) = &jobs.next {
                a href={ (base) "/jobs?" (filter) "&after=" (url(next)) } id="older" { "Older" }
            }
        }
        @if dead_or_any {
            p {
                a href={ (base) "/replay?" (filter) } id="replay-matching" {
                    "Replay the dead letters matching this filter…"
                }
            }
        }
    }
}

/// The filter's form, filled with `query`.
fn filters(base: &str, query: &ListQuery) -> Markup {
    html! {
        form class="filters" method="get" action={ (base) "/jobs" } {
            label {
                "State"
                select name="state" id="state" {
                    option value="" { "any" }
                    @for state in JobState::ALL {
                        option selected[query.state.trim() == state.as_str()] { (state.as_str()) }
                    }
                }
            }
            label { "Layer" input name="layer" value=(query.layer); }
            label { "Event type" input name="type" value=(query.event_type); }
            label {
                "Event id or job id"
                input name="event_id" id="search" value=(query.event_id) size="34";
            }
            button type="submit" { "Filter" }
        }
    }
}
