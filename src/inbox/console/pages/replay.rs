//! Replay: the pages that ask to confirm a replay of one dead letter, or of those a filter
//! matches.

use maud::{html, Markup};

use super::{confirm, url, Confirm};
use crate::inbox::console::views::ListQuery;

/// Asks to confirm the replay of the job `id`.
pub(crate) fn replay_one_asked(base: &str, csrf: &str, id: &str) -> Markup {
    let action = format!("{base}/jobs/{}/replay", url(id));
    let cancel = format!("{base}/jobs/{}", url(id));
    confirm(&Confirm {
        action: &action,
        cancel: &cancel,
        csrf,
        fields: &[],
        what: html! {
            "Queue the dead-lettered job " span class="mono" { (id) }
            " again? Its handler runs again, with all its attempts."
        },
        button: "Replay",
    })
}

/// Asks to confirm the replay of the dead letters `query` matches.
pub(crate) fn replay_matching_asked(base: &str, csrf: &str, query: &ListQuery) -> Markup {
    let action = format!("{base}/replay");
    let cancel = format!("{base}/jobs?{}", query.query());
    let mut fields = vec![
        ("state", query.state.as_str()),
        ("layer", query.layer.as_str()),
        ("type", query.event_type.as_str()),
        ("event_id", query.event_id.as_str()),
    ];
    if query.is_empty() {
        fields.push(("all", "yes"));
    }
    confirm(&Confirm {
        action: &action,
        cancel: &cancel,
        csrf,
        fields: &fields,
        what: html! {
            "Queue again every dead-lettered delivery matching " (query.words())
            "? Their handlers run again."
        },
        button: "Replay them",
    })
}
