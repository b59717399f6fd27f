//! How the command line shows jobs: as JSON, or as text for a terminal.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::inbox::text::{body_text, printable, redacted, rfc3339, took};
use crate::inbox::{JobDetail, JobSummary};

/// A job of a listing, as JSON.
pub(super) fn summary_json(job: &JobSummary) -> Value {
    json!({
        "task_id": job.task_id,
        "event_id": job.event_id,
        "layer": job.layer,
        "event_type": job.event_type,
        "tenant": job.tenant,
        "state": job.state.as_str(),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "received_at": rfc3339(job.received_at),
        "last_error": job.last_error,
    })
}

pub(super) fn detail_json(detail: &JobDetail) -> Value {
    let mut value = summary_json(&detail.summary);
    let attempts: Vec<Value> = detail
        .attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt,
                "worker": a.worker,
                "started_at": rfc3339(a.started_at),
                "duration_ms": a.duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "outcome": a.outcome.as_str(),
                "error": a.error,
            })
        })
        .collect();
    let headers: Vec<Value> = detail
        .headers
        .iter()
        .map(|(name, value)| json!([name, value]))
        .collect();
    if let Value::Object(map) = &mut value {
        map.insert("scheme".to_owned(), json!(detail.scheme));
        map.insert("headers".to_owned(), Value::Array(headers));
        let body = redacted(&detail.body, &detail.secret_fields);
        map.insert("body".to_owned(), json!(String::from_utf8_lossy(&body)));
        map.insert("attempt_log".to_owned(), Value::Array(attempts));
    }
    value
}

/// One field of one line of text output, as in [`printable`].
pub(super) fn line(text: &str) -> std::borrow::Cow<'_, str> {
    printable(text, false)
}

/// A job as text. Whatever the sender or the handler wrote (ids, types, headers, errors, the
/// body) goes through [`printable`]: a body's terminal escapes are shown, not obeyed.
pub(super) fn detail_text(detail: &JobDetail) -> String {
    let job = &detail.summary;
    let mut out = String::new();
    let _ = writeln!(out, "job         {}", line(&job.task_id));
    let _ = writeln!(out, "event id    {}", line(&job.event_id));
    let _ = writeln!(
        out,
        "state       {} ({} of {} attempts)",
        job.state, job.attempts, job.max_attempts
    );
    let _ = writeln!(out, "layer       {} ({})", line(&job.layer), detail.scheme);
    let _ = writeln!(
        out,
        "event type  {}",
        line(job.event_type.as_deref().unwrap_or("-"))
    );
    if let Some(tenant) = &job.tenant {
        let _ = writeln!(out, "tenant      {}", line(tenant));
    }
    let _ = writeln!(out, "received    {}", rfc3339(job.received_at));
    if let Some(error) = &job.last_error {
        let _ = writeln!(out, "last error  {}", line(error));
    }
    let _ = writeln!(out, "\nheaders:");
    for (name, value) in &detail.headers {
        let _ = writeln!(out, "  {}: {}", line(name), line(value));
    }
    let _ = writeln!(out, "\nattempts:");
    if detail.attempts.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for a in &detail.attempts {
        let took = took(a.duration);
        let _ = writeln!(
            out,
            "  #{} {} {} {took} {}",
            a.attempt,
            rfc3339(a.started_at),
            a.outcome,
            line(a.error.as_deref().unwrap_or("")),
        );
    }
    let body = body_text(&redacted(&detail.body, &detail.secret_fields), usize::MAX).0;
    let _ = writeln!(out, "\nbody:\n{}", printable(&body, true));
    out
}
