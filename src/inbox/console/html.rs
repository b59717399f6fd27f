//! The console's HTML: written out by hand, every value from a delivery escaped, no script.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::inbox::text::rfc3339;
use crate::inbox::{Activity, JobState};

/// `text` safe in HTML text and in a quoted attribute.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one value of a URL's query or path.
pub(super) fn url(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub(super) fn time(at: SystemTime) -> String {
    let text = rfc3339(at);
    format!(
        "<time datetime=\"{text}\">{}</time>",
        text.replace('T', " ").trim_end_matches('Z')
    )
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
pub(super) fn page(base: &str, title: &str, sign_out: Option<&str>, body: &str) -> String {
    let home = esc(&home(base));
    let base = esc(base);
    let title = esc(title);
    let sign_out = sign_out.map_or_else(String::new, |csrf| {
        format!(
            "<form method=\"post\" action=\"{base}/logout\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" class=\"link\">Sign out</button></form>",
            esc(csrf)
        )
    });
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <title>{title} · webhook inbox</title>\
         <link rel=\"stylesheet\" href=\"{base}/console.css\"></head><body>\
         <header><a href=\"{home}\" class=\"brand\">webhook inbox</a>\
         <nav><a href=\"{home}\">Overview</a> <a href=\"{base}/jobs\">Deliveries</a> \
         <a href=\"{base}/jobs?state=dead\">Dead letters</a> <a href=\"{base}/purge\">Purge</a> \
         {sign_out}</nav></header><main><h1>{title}</h1>{body}</main></body></html>\n"
    )
}

/// A state's badge.
pub(super) fn badge(state: JobState) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", state.as_str())
}

/// A small bar chart of `series`, one bar a bucket, the oldest first.
pub(super) fn chart(name: &str, class: &str, series: &[u64], activity: &Activity) -> String {
    let max = series.iter().copied().max().unwrap_or(0).max(1);
    let total: u64 = series.iter().sum();
    let buckets = u32::try_from(series.len()).unwrap_or(u32::MAX).max(1);
    let step = 240.0 / f64::from(buckets);
    let mut svg = format!(
        "<figure class=\"chart\"><figcaption>{} <strong>{total}</strong></figcaption>\
         <svg viewBox=\"0 0 240 48\" role=\"img\" aria-label=\"{} per bucket\">",
        esc(name),
        esc(name)
    );
    for (i, &count) in series.iter().enumerate() {
        // Counts past 2^52 would lose their last digits: no bar is that precise.
        #[allow(clippy::cast_precision_loss)]
        let height = (count as f64 / max as f64 * 44.0).max(if count > 0 { 2.0 } else { 0.5 });
        let start = activity.since + activity.bucket * u32::try_from(i).unwrap_or(0);
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\">\
             <title>{count} from {}</title></rect>",
            f64::from(u32::try_from(i).unwrap_or(0)) * step + 1.0,
            48.0 - height,
            (step - 2.0).max(1.0),
            rfc3339(start)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A form that asks to confirm an action: what it will do, and the button that does it.
pub(super) struct Confirm<'a> {
    /// Where the form posts.
    pub(super) action: &'a str,
    /// Where "Cancel" goes.
    pub(super) cancel: &'a str,
    pub(super) csrf: &'a str,
    pub(super) fields: &'a [(&'a str, &'a str)],
    /// What the action will do, as HTML.
    pub(super) what: &'a str,
    pub(super) button: &'a str,
}

pub(super) fn confirm(form: &Confirm<'_>) -> String {
    let Confirm {
        action,
        cancel,
        csrf,
        fields,
        what,
        button,
    } = *form;
    let mut hidden = String::new();
    for (name, value) in fields {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    format!(
        "<form method=\"post\" action=\"{}\" class=\"confirm\"><p>{what}</p>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">{hidden}\
         <button type=\"submit\" class=\"danger\" id=\"confirm\">{}</button> \
         <a href=\"{}\" class=\"cancel\">Cancel</a></form>",
        esc(action),
        esc(csrf),
        esc(button),
        esc(cancel)
    )
}

/// The console's stylesheet: served from its own route (the CSP allows no inline style).
pub(super) const CSS: &str = "\
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f8f9fb;--accent:#2e5bda;--bad:#c4320a;--ok:#067647;--warn:#b54708}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;align-items:center;gap:24px;padding:10px 24px;background:#fff;border-bottom:1px solid var(--line)}
header nav a,header nav .link{margin-right:14px;color:var(--fg);text-decoration:none}header nav a:hover{color:var(--accent)}
.brand{font-weight:700;color:var(--accent);text-decoration:none}main{padding:16px 24px;max-width:1200px}
h1{font-size:20px;margin:4px 0 16px}h2{font-size:16px;margin:24px 0 8px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:130px;text-decoration:none;color:var(--fg)}
.card .n{font-size:24px;font-weight:600;display:block}.card.dead .n{color:var(--bad)}.card.retrying .n{color:var(--warn)}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.chart{margin:0;background:#fff;border:1px solid var(--line);border-radius:8px;padding:8px 10px}.chart svg{width:100%;height:48px}
rect.accepted{fill:#84adff}rect.handled{fill:#32d583}rect.failed{fill:#fdb022}rect.dead{fill:#f97066}rect.rejected{fill:#98a2b3}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase}td.mono,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;background:#eef2f6}.badge.dead{background:#fee4e2;color:var(--bad)}
.badge.done{background:#dcfae6;color:var(--ok)}.badge.retrying{background:#fef0c7;color:var(--warn)}.badge.running{background:#d1e0ff;color:var(--accent)}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:12px}label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}
input,select{font:inherit;padding:5px 8px;border:1px solid #d0d5dd;border-radius:6px;background:#fff}
button{font:inherit;padding:5px 12px;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.danger{background:var(--bad);border-color:var(--bad)}button.link{background:none;border:none;color:var(--fg);padding:0}form.inline{display:inline}
pre{background:#0f1728;color:#e4e7ec;padding:12px;border-radius:8px;overflow:auto;max-height:480px;font-size:12.5px}
.notice{background:#ecfdf3;border:1px solid #abefc6;padding:10px 14px;border-radius:8px}.error{background:#fef3f2;border:1px solid #fecdca;padding:10px 14px;border-radius:8px}
.confirm{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px}.muted{color:var(--muted)}dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}dt{color:var(--muted)}dd{margin:0}
.pager{margin-top:10px}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(url("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
    }
}
