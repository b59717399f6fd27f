//! Purge: the date of the done deliveries to delete, then the page that asks to confirm.

use std::time::{Duration, SystemTime};

use maud::{html, Markup};

use super::{confirm, Confirm};
use crate::inbox::text::rfc3339;

/// The form that asks for a date, a month ago at first.
pub(crate) fn purge_when(base: &str) -> Markup {
    let month_ago = SystemTime::now()
        .checked_sub(Duration::from_secs(30 * 86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let date = &rfc3339(month_ago)[..10];
    html! {
        form class="filters" method="get" action={ (base) "/purge" } {
            label {
                "Delete the done deliveries finished before"
                input type="date" name="before" id="before" value=(date) required;
            }
            button type="submit" { "Next…" }
        }
        p class="muted" {
            "Dead letters and jobs still to run are kept; you confirm on the next page."
        }
    }
}

/// Asks to confirm the purge of the done deliveries finished before `before` (as given:
/// `given`).
pub(crate) fn purge_asked(base: &str, csrf: &str, before: SystemTime, given: &str) -> Markup {
    let action = format!("{base}/purge");
    confirm(&Confirm {
        action: &action,
        cancel: &action,
        csrf,
        fields: &[("before", given)],
        what: html! {
            "Delete every done delivery finished before " (rfc3339(before))
            " UTC, with its attempts? This cannot be undone."
        },
        button: "Delete",
    })
}
