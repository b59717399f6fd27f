//! One delivery: what it is, its attempts, its headers as verified, and its body.

use maud::{html, Markup};

use super::{badge, time, url};
use crate::inbox::text::{body_text, redacted, took};
use crate::inbox::{JobDetail, JobState};

/// The most of a body a page shows.
const BODY_SHOWN: usize = 64 * 1024;

/// The page of `job`.
pub(crate) fn job(base: &str, job: &JobDetail) -> Markup {
    let s = &job.summary;
    html! {
        dl {
            dt { "Event id" } dd class="mono" id="event-id" { (s.event_id) }
            dt { "Job" } dd class="mono" { (s.task_id) }
            dt { "State" }
            dd id="state" {
                (badge(s.state)) " after " (s.attempts) " of " (s.max_attempts) " attempts"
            }
            dt { "Layer" } dd { (s.layer) " (" (job.scheme) ")" }
            dt { "Event type" } dd { (s.event_type.as_deref().unwrap_or("-")) }
            dt { "Received" } dd { (time(s.received_at)) }
            @if let Some(tenant) = &s.tenant {
                dt { "Tenant" } dd { (tenant) }
            }
            @if let Some(error) = &s.last_error {
                dt { "Last error" } dd class="mono" { (error) }
            }
        }
        @if s.state == JobState::Dead {
            p {
                a href={ (base) "/jobs/" (url(&s.task_id)) "/replay" } id="replay" {
                    "Replay this delivery…"
                }
            }
        }
        h2 { "Attempts" }
        table id="attempts" {
            tr {
                th { "#" } th { "started" } th { "took" } th { "outcome" } th { "error" }
                th { "worker" }
            }
            @for a in &job.attempts {
                tr {
                    td { (a.attempt) }
                    td { (time(a.started_at)) }
                    td { (took(a.duration)) }
                    td { (a.outcome) }
                    td class="mono" { (a.error.as_deref().unwrap_or("")) }
                    td class="mono" { (a.worker.as_deref().unwrap_or("")) }
                }
            }
        }
        h2 { "Headers, as verified" }
        table id="headers" {
            @for (name, value) in &job.headers {
                tr { td class="mono" { (name) } td class="mono" { (value) } }
            }
        }
        h2 { "Body (" (job.body.len()) " bytes)" }
        (body(job))
    }
}

/// The body, pretty-printed where it is JSON, its secret fields redacted, cut at 64 KiB.
fn body(job: &JobDetail) -> Markup {
    if job.secret_fields.is_empty() || job.body.len() <= BODY_SHOWN {
        let shown = redacted(&job.body, &job.secret_fields);
        let (text, cut) = body_text(&shown, BODY_SHOWN);
        html! {
            pre id="body" { (text) }
            @if cut {
                p class="muted" id="body-cut" {
                    "Over 64 KiB: its first 64 KiB as received, not pretty-printed."
                }
            }
        }
    } else {
        // Redacting means reading it whole: a page costs no more than its cap.
        html! {
            p class="muted" id="body-cut" {
                "Not shown: over 64 KiB, and it holds the sender's secret."
            }
        }
    }
}
