//! The overview: jobs by state, a search, the last hour and day, and the layers' rejections.

use maud::{html, Markup};

use super::chart;
use crate::inbox::{Activity, Counts, JobState};
use crate::Stats;

/// The overview's body.
pub(crate) fn overview(
    base: &str,
    counts: &Counts,
    hour: &Activity,
    day: &Activity,
    stats: &[(String, Stats)],
) -> Markup {
    let cards = [
        (
            JobState::Queued,
            counts.queued.saturating_sub(counts.failed),
        ),
        (JobState::Running, counts.running),
        (JobState::Retrying, counts.failed),
        (JobState::Dead, counts.dead),
        (JobState::Done, counts.done),
    ];
    html! {
        section class="cards" {
            @for (state, count) in cards {
                a class={ "card " (state.as_str()) } id={ "count-" (state.as_str()) }
                    href={ (base) "/jobs?state=" (state.as_str()) } {
                    (state.as_str()) span class="n" { (count) }
                }
            }
        }
        h2 { "Find a delivery" }
        form class="filters" method="get" action={ (base) "/jobs" } {
            label { "Event id or job id" input name="event_id" id="search" size="40" required; }
            button type="submit" id="search-go" { "Search" }
        }
        @for (title, activity) in [("The last hour", hour), ("The last day", day)] {
            h2 { (title) }
            section class="charts" {
                (chart("Accepted", "accepted", &activity.accepted, activity))
                (chart("Handled", "handled", &activity.handled, activity))
                (chart("Failed attempts", "failed", &activity.failed, activity))
                (chart("Dead-lettered", "dead", &activity.dead_lettered, activity))
            }
        }
        (rejections(stats))
    }
}

/// The layers' rejections by reason, where the app shared their stats.
fn rejections(stats: &[(String, Stats)]) -> Markup {
    let reasons = crate::stats::REASONS;
    html! {
        @if !stats.is_empty() {
            h2 { "Rejected before the inbox, since this process started" }
            table id="rejections" {
                tr {
                    th { "layer" }
                    @for reason in reasons { th { (reason.replace('_', " ")) } }
                    th { "queued" }
                    th { "inbox full" }
                }
                @for (layer, stats) in stats {
                    @let snapshot = stats.snapshot();
                    @let counts: std::collections::HashMap<&str, u64> = snapshot.iter().collect();
                    tr {
                        td { (layer) }
                        @for reason in reasons {
                            td {
                                (counts.get(format!("rejected.{reason}").as_str()).copied().unwrap_or(0))
                            }
                        }
                        td { (snapshot.queued) }
                        td { (snapshot.inbox_full) }
                    }
                }
            }
        }
    }
}
