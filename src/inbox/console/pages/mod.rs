//! The console's pages, one file each, written with `maud`: a compile-time template in which
//! every interpolated value is escaped unless it is marked as markup already, so a value from
//! a delivery cannot become markup by a forgotten call. No script anywhere.
//!
//! This file holds the layout every page shares and the pieces several pages show (a state's
//! badge, a time, a chart, a form that asks to confirm, a notice).

use std::time::SystemTime;

use maud::{html, Markup, DOCTYPE};

use crate::inbox::text::rfc3339;
use crate::inbox::{Activity, JobState};

mod job;
mod jobs;
mod overview;
mod purge;
mod replay;
mod sign_in;

pub(super) use job::job;
pub(super) use jobs::jobs;
pub(super) use overview::overview;
pub(super) use purge::{purge_asked, purge_when};
pub(super) use replay::{replay_matching_asked, replay_one_asked};
pub(super) use sign_in::{credentials_needed, sign_in};

/// The console's stylesheet: served from its own route (the CSP allows no inline style).
pub(super) const CSS: &str = include_str!("../console.css");

/// `text` as one value of a URL's query or path.
pub(super) fn url(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The overview's address: where the console is nested (`/inbox`; axum's `nest` does not
/// route `/inbox/`), or `/` at the root.
pub(super) fn home(base: &str) -> String {
    if base.is_empty() {
        "/".to_owned()
    } else {
        base.to_owned()
    }
}

/// A whole page: `title`, the console's navigation, `body`.
/// `sign_out`: the CSRF token of the sign-out button, where there is one.
pub(super) fn page(base: &str, title: &str, sign_out: Option<&str>, body: &Markup) -> String {
    let home = home(base);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · webhook inbox" }
                link rel="stylesheet" href={ (base) "/console.css" };
            }
            body {
                header {
                    a href=(home) class="brand" { "webhook inbox" }
                    nav {
                        a href=(home) { "Overview" } " "
                        a href={ (base) "/jobs" } { "Deliveries" } " "
                        a href={ (base) "/jobs?state=dead" } { "Dead letters" } " "
                        a href={ (base) "/purge" } { "Purge" } " "
                        @if let Some(csrf) = sign_out {
                            form method="post" action={ (base) "/logout" } class="inline" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" class="link" { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// A state's badge.
pub(super) fn badge(state: JobState) -> Markup {
    html! { span class={ "badge " (state.as_str()) } { (state.as_str()) } }
}

/// A time, readable, with its RFC 3339 form for machines.
pub(super) fn time(at: SystemTime) -> Markup {
    let text = rfc3339(at);
    html! { time datetime=(text) { (text.replace('T', " ").trim_end_matches('Z')) } }
}

/// One paragraph: an error (`class` "error") or a notice ("notice").
pub(super) fn paragraph(class: &str, text: &str) -> Markup {
    html! { p class=(class) { (text) } }
}

/// What an action did, and the way back.
pub(super) fn done(what: &Markup, back: &str) -> Markup {
    html! {
        p class="notice" id="result" { (what) }
        p { a href=(back) { "Back" } }
    }
}

/// A small bar chart of `series`, one bar a bucket, the oldest first.
pub(super) fn chart(name: &str, class: &str, series: &[u64], activity: &Activity) -> Markup {
    let max = series.iter().copied().max().unwrap_or(0).max(1);
    let total: u64 = series.iter().sum();
    let buckets = u32::try_from(series.len()).unwrap_or(u32::MAX).max(1);
    let step = 240.0 / f64::from(buckets);
    let bars = series.iter().enumerate().map(|(i, &count)| {
        // Counts past 2^52 would lose their last digits: no bar is that precise.
        #[allow(clippy::cast_precision_loss)]
        let height = (count as f64 / max as f64 * 44.0).max(if count > 0 { 2.0 } else { 0.5 });
        let at = u32::try_from(i).unwrap_or(0);
        let start = activity.since + activity.bucket * at;
        (
            format!("{:.1}", f64::from(at) * step + 1.0),
            format!("{:.1}", 48.0 - height),
            format!("{:.1}", (step - 2.0).max(1.0)),
            format!("{height:.1}"),
            format!("{count} from {}", rfc3339(start)),
        )
    });
    html! {
        figure class="chart" {
            figcaption { (name) " " strong { (total) } }
            svg viewBox="0 0 240 48" role="img" aria-label={ (name) " per bucket" } {
                @for (x, y, width, height, title) in bars {
                    rect class=(class) x=(x) y=(y) width=(width) height=(height) {
                        title { (title) }
                    }
                }
            }
        }
    }
}

/// A form that asks to confirm an action: what it will do, and the button that does it.
pub(super) struct Confirm<'a> {
    /// Where the form posts.
    pub(super) action: &'a str,
    /// Where "Cancel" goes.
    pub(super) cancel: &'a str,
    pub(super) csrf: &'a str,
    pub(super) fields: &'a [(&'a str, &'a str)],
    /// What the action will do.
    pub(super) what: Markup,
    pub(super) button: &'a str,
}

pub(super) fn confirm(form: &Confirm<'_>) -> Markup {
    html! {
        form method="post" action=(form.action) class="confirm" {
            p { (form.what) }
            input type="hidden" name="csrf" value=(form.csrf);
            @for (name, value) in form.fields {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" class="danger" id="confirm" { (form.button) } " "
            a href=(form.cancel) class="cancel" { "Cancel" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_from_a_delivery_is_text_wherever_it_goes() {
        let hostile = r#"<script>alert("x")</script> & 'y'"#;
        let escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 'y'";
        assert!(paragraph("error", hostile).into_string().contains(escaped));
        let form = confirm(&Confirm {
            action: "/replay",
            cancel: "/jobs",
            csrf: "token",
            fields: &[("layer", hostile)],
            what: html! { "Replay " (hostile) "?" },
            button: hostile,
        })
        .into_string();
        assert!(!form.contains("<script>"), "{form}");
        assert!(form.contains(&format!("value=\"{escaped}\"")), "{form}");
        let page = page(hostile, hostile, Some(hostile), &html! {});
        assert!(!page.contains("<script>"), "{page}");
        assert_eq!(url("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
    }
}
